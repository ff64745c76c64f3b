"""The transfer baseline (TransferBERT): supervised on the source types, then fine-tuned per episode.

What a practitioner does first with a few labelled sentences of new types
and a large corpus of other types (Hou et al., 2020, "TransferBERT"):

1. **Source training.** Train the encoder and a tagging head
   ``W_src (1 + |source types|, H)`` with plain supervised cross-entropy on
   the source corpus's sentences and types. Here this runs through the
   same trainer as meta-learning (``meta_train``), so it gets the same dev
   selection and patience: ``loss(episode)`` is the supervised loss on every
   sentence of a training episode (support and query alike) under the
   *global* source label set, not an episodic loss. The episodes are only a
   way to stream sentences.
2. **Per-episode fine-tuning.** For a test episode, copy the encoder, build
   a head with one row per episode label: the ``O`` row is the source
   head's ``O`` row, each new type's row starts at the mean of the source
   entity rows (so a new type starts as "some entity" rather than as
   nothing), and train on the support set only. ``train_layers`` says how
   many top encoder layers are trained with it (0: the head alone on frozen
   word vectors, seconds per episode on a CPU; ``"all"``: Hou et al.'s
   setting).

``adapt`` trains copies only; the learner's weights never change.

Taught in: chapter 5.5 (better few-shot NER: the baseline to beat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.episode import Episode
from ..data.tags import parse_tag
from ..encoders import Encoder, eval_mode
from .base import EpisodeMismatchError, Predictor, o_bias_vector
from .finetune import FineTune

__all__ = ["Transfer", "label_types"]


def label_types(label_names: Sequence[str], scheme: str) -> list[str | None]:
    """The entity type of each episode label (``None`` for ``O``).

    Example:
        >>> label_types(["O", "B-person", "I-person"], "bio")
        [None, 'person', 'person']
    """
    return [None if name == "O" else parse_tag(name, scheme)[1] for name in label_names]


class Transfer(FineTune):
    """Source-trained encoder + tagging head, fine-tuned on each episode's support set (TransferBERT).

    Arguments:
        encoder: the word encoder (source training updates it).
        source_types (sequence of str): the source corpus's entity types; the
            source head has one row per type plus ``O``.
        train_layers (int | ``"all"``, default 0): top encoder layers trained
            on each support set (0: the head alone).
        steps (int, default 100): fine-tuning steps per episode (full support batch).
        lr (float, default 5e-5): encoder learning rate when fine-tuning.
        head_lr (float, default 1e-2): head learning rate when fine-tuning.
        o_bias (float, default 0): added to the ``O`` logit after fine-tuning: a correction for a
            target domain whose words are names less often (> 0) or more often (< 0) than the
            source's. Adaptation-only (see ``adaptation_options``): choose it on target dev episodes.
        weight_decay, max_grad_norm, seed, batch_size: as ``FineTune``.

    Raises:
        ValueError: no source types, or repeated ones.
        EpisodeMismatchError: (``loss``) a training episode with a type outside ``source_types``.

    Example:
        >>> learner = Transfer(load_encoder(), source_types=corpus.types)  # doctest: +SKIP
        >>> meta_train(learner, train_sampler, steps=500, dev_episodes=dev)  # supervised source training  # doctest: +SKIP
        >>> learner.adapt(test_episode).predict(test_episode.query)  # doctest: +SKIP

    References:
        Hou et al. (2020), Few-shot Slot Tagging with Collapsed Dependency
        Transfer and Label-enhanced Task-adaptive Projection Network, ACL
        (TransferBERT). Huang et al. (2021), Few-Shot Named Entity
        Recognition: An Empirical Baseline Study, EMNLP.

    Taught in: chapter 5.5.
    """

    name = "transfer"
    meta_trainable = True
    adaptation_options = ("train_layers", "steps", "lr", "head_lr", "weight_decay", "o_bias")

    def __init__(self, encoder: Encoder, *, source_types: Sequence[str], train_layers: int | str = 0,
                 steps: int = 100, lr: float = 5e-5, head_lr: float = 1e-2, weight_decay: float = 0.01,
                 max_grad_norm: float = 1.0, o_bias: float = 0.0, seed: int = 0, batch_size: int = 32) -> None:
        super().__init__(encoder, train_layers=train_layers, steps=steps, lr=lr, head_lr=head_lr,
                         weight_decay=weight_decay, max_grad_norm=max_grad_norm, seed=seed, batch_size=batch_size)
        self.o_bias = float(o_bias)
        source_types = [str(t) for t in source_types]
        if not source_types or len(set(source_types)) != len(source_types):
            raise ValueError(f"Transfer needs distinct source_types (the source corpus's types), got {source_types}")
        self.source_types = source_types
        self._source_index = {t: i + 1 for i, t in enumerate(source_types)}  # 0 is O
        generator = torch.Generator().manual_seed(seed)
        self.source_head = torch.nn.utils.skip_init(nn.Linear, encoder.hidden_size, len(source_types) + 1)
        with torch.no_grad():  # seeded, independent of the global random state
            bound = encoder.hidden_size ** -0.5
            self.source_head.weight.copy_(torch.empty_like(self.source_head.weight).uniform_(-bound, bound,
                                                                                             generator=generator))
            self.source_head.bias.zero_()
        self.source_head.to(encoder.device)

    def _hyperparameters(self) -> dict[str, Any]:
        bias = {"o_bias": self.o_bias} if self.o_bias else {}  # absent by default: old configs unchanged
        return {**super()._hyperparameters(), **bias, "source_types": list(self.source_types)}

    def _global_labels(self, episode: Episode) -> torch.Tensor:
        """Map the episode's label ids to source-head rows."""
        index = []
        for type_ in label_types(episode.label_names, episode.scheme):
            if type_ is not None and type_ not in self._source_index:
                raise EpisodeMismatchError(
                    f"Transfer: training episode type {type_!r} is not a source type {self.source_types}; "
                    "source training needs episodes drawn from the source corpus")
            index.append(0 if type_ is None else self._source_index[type_])
        return torch.tensor(index, dtype=torch.long, device=self.encoder.device)

    def _loss(self, episode: Episode) -> torch.Tensor:
        support, query = self._embed_episode(episode)
        vectors = torch.cat([support.vectors, query.vectors])
        labels = self._global_labels(episode)[torch.cat([support.labels, query.labels])]
        return F.cross_entropy(self.source_head(vectors), labels)

    def initial_head(self, episode: Episode) -> nn.Linear:
        """The episode's head before fine-tuning: ``O`` from the source head, new types at the source entity mean.

        A type that is also a source type (same name) starts from its own source row.
        """
        with torch.no_grad():
            weight, bias = self.source_head.weight.detach(), self.source_head.bias.detach()
            entity_w, entity_b = weight[1:].mean(0), bias[1:].mean()
            head = torch.nn.utils.skip_init(nn.Linear, weight.shape[1], len(episode.label_names), device=weight.device)
            for row, type_ in enumerate(label_types(episode.label_names, episode.scheme)):
                if type_ is None:
                    head.weight[row], head.bias[row] = weight[0], bias[0]
                elif type_ in self._source_index:
                    head.weight[row], head.bias[row] = weight[self._source_index[type_]], bias[self._source_index[type_]]
                else:
                    head.weight[row], head.bias[row] = entity_w, entity_b
        return head

    def _adapt(self, support: Episode) -> Predictor:
        head = self.initial_head(support)
        if self.train_layers == 0:
            encoder = self.encoder
            with torch.no_grad(), eval_mode(self.encoder):
                words, _ = self._embed_episode(support, with_query=False)
            optimizer = torch.optim.AdamW(head.parameters(), lr=self.head_lr, weight_decay=self.weight_decay)
            losses = []
            with torch.enable_grad():
                for _ in range(self.steps):
                    loss = F.cross_entropy(head(words.vectors), words.labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
        else:
            encoder, head, losses = self._finetune_copy(support, head)
        head.requires_grad_(False)
        if self.o_bias:
            with torch.no_grad():
                head.bias += o_bias_vector(support.label_names, self.o_bias, head.bias.device)
        predictor = self._predictor(head, support, encoder=encoder)
        predictor.head = head  # type: ignore[attr-defined]
        predictor.losses = losses  # type: ignore[attr-defined]
        return predictor

    def _finetune_copy(self, support: Episode, head: nn.Linear | None = None) -> tuple[Encoder, nn.Linear, list[float]]:
        """FineTune's loop, started from the source-trained head rows (:meth:`initial_head`)."""
        return super()._finetune_copy(support, head if head is not None else self.initial_head(support))
