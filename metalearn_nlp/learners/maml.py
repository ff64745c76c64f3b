"""MAML and its relatives on a transformer tagger: MAML, first-order MAML, ANIL and ProtoMAML.

A gradient-based learner holds a word encoder and a linear tagging head. On
an episode it copies the adapted weights ``θ`` (the top ``adapt_layers``
encoder layers and the head) into a dictionary, takes ``inner_steps``
gradient steps on the support set's word-level cross-entropy,

    θ'_0 = θ,    θ'_{t+1} = θ'_t - α ∇_θ' L_S(θ'_t),

and scores the query set with ``θ' = θ'_K``. Meta-training minimises the
query loss ``L_Q(θ'(θ))`` over the episodes: the MAML objective of Finn et
al. (2017), ``min_θ Σ_i L_{Q_i}(θ - α ∇L_{S_i}(θ))``. Its gradient contains
the Jacobian of the inner steps, ``Π_t (I - α ∇²L_S(θ'_t))``; first-order
MAML (FOMAML) replaces it by the identity, ANIL (Raghu et al., 2020) adapts
the head only, and ProtoMAML (Triantafillou et al., 2020) starts the head
from the support set's prototypes. All of them share the functional inner
loop of :mod:`metalearn_nlp.inner_loop`: ``adapt`` never changes the
learner's weights.

**The head of an N-way episode.** Each episode has its own labels, so the
head cannot be one fixed matrix. Its starting point is

* ``"learned"`` (MAML, FOMAML, ANIL, default): two meta-learned rows, one
  for ``O`` and one shared by every entity label, ``W_0 = [w_O; w_E; ...;
  w_E]`` (and the same for the bias). A shared row is permutation-invariant
  and lets meta-training learn a good starting point for *any* new type
  (Ye and Chao, 2022, learn one shared row for the same reason); the first
  inner step separates the entity rows, since their support words differ.
* ``"prototypes"`` (ProtoMAML): ``W_c = 2 p_c``, ``b_c = -||p_c||²`` from
  the support prototypes ``p_c`` computed with the current weights (the
  linear-layer view of a prototypical network, chapter 3.1), so before any
  inner step the tagger *is* ProtoNet, and gradients flow through ``p_c``.
* ``"zeros"``: an all-zero head (uniform predictions before adaptation).

Labels with no support word (``I-person`` when every support person has one
word, in BIO) are left out of both losses, like ProtoNet; when predicting
they borrow the head row of a same-type label (:func:`.metric.sibling_backoff`).

Taught in: chapter 3.2 (MAML and its first-order relatives); chapter 4.2
(the meta-gradient); chapter 5.3 (MAML for few-shot NER).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Episode
from ..encoders import Encoder, Text, as_sentences, eval_mode
from ..inner_loop import FunctionalEncoder, Params, Trunk, inner_loop, math_attention, sgd_step
from .base import Learner, Predictor, no_entity_row
from .metric import class_prototypes, sibling_backoff

__all__ = ["ANIL", "FOMAML", "MAML", "AdaptedPredictor", "ProtoMAML", "masked_cross_entropy"]

_HEAD_INITS = ("learned", "prototypes", "zeros")
HEAD = ("head.weight", "head.bias")


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labels that are ``present``; words of other labels are left out.

    Returns 0 (with a graph) when no word is left.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 9.0]])
        >>> round(masked_cross_entropy(logits, torch.tensor([0]), torch.tensor([True, True, False])).item(), 4)
        0.1269
    """
    logits = logits.masked_fill(~present[None, :], float("-inf"))
    keep = present[labels]
    if not bool(keep.any()):
        return logits.masked_fill(~present[None, :], 0.0).sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


def head_logits(x: torch.Tensor, params: Params) -> torch.Tensor:
    """``x W^T + b`` with the episode's head from the adapted weights."""
    return x @ params["head.weight"].t() + params["head.bias"]


class GradientLearner(Learner):
    """Base of the learners that adapt by gradient steps (see the module docstring).

    Arguments:
        encoder: the word encoder.
        adapt_layers (int | "all", default 2): top encoder layers adapted in
            the inner loop (0: the head only; ``"all"``: every weight).
        inner_steps (int, default 3): inner gradient steps while meta-training.
        inner_lr (float, default 0.05): α, the inner learning rate.
        adapt_steps (int | None): inner steps at test time (default ``inner_steps``).
        first_order (bool, default False): FOMAML's approximation.
        head_init (str, default ``"learned"``): ``"learned"``, ``"prototypes"`` or ``"zeros"``.
        freeze (str | int | None, default None): if given, ``encoder.freeze(freeze)``
            (e.g. the bottom layers, so that only the adapted layers and the
            head are meta-trained: the parameter-efficient setting).
        checkpoint (bool, default False): recompute adapted layers in the
            backward pass to bound memory with many inner steps.
        batch_size (int, default 32): sentences per forward pass when predicting.

    References:
        Finn, Abbeel and Levine (2017), Model-Agnostic Meta-Learning for Fast
        Adaptation of Deep Networks, ICML. Nichol, Achiam and Schulman (2018),
        On First-Order Meta-Learning Algorithms. Raghu et al. (2020), Rapid
        Learning or Feature Reuse?, ICLR. Triantafillou et al. (2020),
        Meta-Dataset, ICLR.

    Taught in: chapter 3.2; chapter 4.2; chapter 5.3.
    """

    name = "gradient"
    no_decay_prefixes = ("head_rows",)  # a learned starting point (with a bias column), not a weight to shrink

    def __init__(
        self,
        encoder: Encoder,
        *,
        adapt_layers: int | str = 2,
        inner_steps: int = 3,
        inner_lr: float = 0.05,
        adapt_steps: int | None = None,
        first_order: bool = False,
        head_init: str = "learned",
        freeze: str | int | None = None,
        checkpoint: bool = False,
        batch_size: int = 32,
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if head_init not in _HEAD_INITS:
            raise ValueError(f"head_init must be one of {_HEAD_INITS}, got {head_init!r}")
        if inner_steps < 0 or (adapt_steps is not None and adapt_steps < 0):
            raise ValueError(f"inner_steps and adapt_steps must be >= 0, got {inner_steps}, {adapt_steps}")
        if inner_lr <= 0:
            raise ValueError(f"inner_lr must be positive, got {inner_lr}")
        if freeze is not None:
            encoder.freeze(freeze)
        self.functional = FunctionalEncoder(encoder, adapt_layers, checkpoint=checkpoint)
        self.adapt_layers = adapt_layers
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.adapt_steps = inner_steps if adapt_steps is None else adapt_steps
        self.first_order = first_order
        self.head_init = head_init
        self.freeze_option = freeze
        self.checkpoint = checkpoint
        if head_init == "learned":
            # Row 0: O; row 1: shared by every entity label. Columns: H weights, then the bias.
            self.head_rows = nn.Parameter(
                torch.zeros(2, encoder.hidden_size + 1, dtype=self.functional.dtype, device=encoder.device)
            )

    def _hyperparameters(self) -> dict[str, Any]:
        return {"adapt_layers": self.adapt_layers, "inner_steps": self.inner_steps, "inner_lr": self.inner_lr,
                "adapt_steps": self.adapt_steps, "first_order": self.first_order, "head_init": self.head_init,
                "freeze": self.freeze_option, "checkpoint": self.checkpoint}  # fmt: skip

    # -- pieces -----------------------------------------------------------------------------------
    def _initial_head(self, n_labels: int, words: Any, params: Params) -> Params:
        """``{"head.weight": (C, H), "head.bias": (C,)}`` before adaptation."""
        h = self.encoder.hidden_size
        if self.head_init == "learned":
            rows = self.head_rows[[0] + [1] * (n_labels - 1)]
            return {"head.weight": rows[:, :h], "head.bias": rows[:, h]}
        if self.head_init == "zeros":
            zeros = torch.zeros(n_labels, h + 1, device=self.encoder.device, dtype=self.functional.dtype)
            return {"head.weight": zeros[:, :h].requires_grad_(), "head.bias": zeros[:, h].requires_grad_()}
        support = words(params)
        protos, _ = class_prototypes(support.vectors, support.labels, n_labels)
        return {"head.weight": 2.0 * protos, "head.bias": -(protos * protos).sum(1)}

    def _update(self, params: Params, grads: Params, step: int) -> Params:
        """One inner step (plain SGD; Meta-SGD and the learned optimiser override this)."""
        return sgd_step(params, grads, self.inner_lr)

    def _inner(self, episode: Episode, trunk: Trunk, start: Params, steps: int, first_order: bool):
        """Adapt ``start`` (encoder weights) on the support trunk; returns ``(params, present, losses)``."""
        n_labels = len(episode.label_names)
        memo: dict[str, Any] = {}

        def words(params: Params):
            # The support words depend only on the encoder part of params: embed once per distinct weights
            # (once in all when no encoder layer adapts; the prototype head and the first step share one).
            key = [torch.is_grad_enabled()] + [params[n] for n in self.functional.names]
            if "key" not in memo or any(a is not b for a, b in zip(memo["key"], key)):
                memo["key"], memo["words"] = key, self.functional.words(trunk, params)
            return memo["words"]

        head = self._initial_head(n_labels, words, start)
        if torch.is_grad_enabled():
            # The inner gradient is the *partial* derivative w.r.t. each adapted weight, as in adapt(): a head
            # built from θ (ProtoMAML's prototypes) must not add its own path to θ's inner gradient. Aliases of
            # θ give exactly that and keep the outer graph to θ. A frozen adapted weight adapts (a fresh leaf)
            # but is not meta-trained.
            start = {n: p.view_as(p) if p.requires_grad else p.detach().requires_grad_(True) for n, p in start.items()}
            params = {**start, **head}
        else:  # adaptation only: every weight is a leaf of its own
            params = {n: p if p.is_leaf and p.requires_grad else p.detach().requires_grad_(True)
                      for n, p in {**start, **head}.items()}
        batch = trunk.batch
        labels = batch.word_labels[batch.word_index >= 0]
        present = torch.bincount(labels, minlength=n_labels) > 0

        def support_loss(p: Params) -> torch.Tensor:
            support = words(p)
            return masked_cross_entropy(head_logits(support.vectors, p), support.labels, present)

        result = inner_loop(support_loss, params, steps=steps, update=self._update, first_order=first_order)
        return result.params, present, result.losses

    def _batches(self, episode: Episode):
        support = self.encoder.collate(list(episode.support), episode)
        query = self.encoder.collate(list(episode.query), episode) if episode.query else None
        return support, query

    # -- the protocol -----------------------------------------------------------------------------
    def _loss(self, episode: Episode) -> torch.Tensor:
        with math_attention(not self.first_order):
            support, query = self._batches(episode)
            params, present, _ = self._inner(
                episode, self.functional.trunk(support), self.functional.initial_params(), self.inner_steps,
                self.first_order,
            )
            words = self.functional.words(self.functional.trunk(query), params)
            return masked_cross_entropy(head_logits(words.vectors, params), words.labels, present)

    def _adapt(self, support: Episode) -> Predictor:
        batch, _ = self._batches(support)
        with eval_mode(self.encoder), torch.no_grad():
            trunk = self.functional.trunk(batch)
            start = {n: p.detach().requires_grad_(True) for n, p in self.functional.initial_params().items()}
            params, present, losses = self._inner(support, trunk, start, self.adapt_steps, True)
        params = {n: p.detach() for n, p in params.items()}
        index = sibling_backoff(support.label_names, support.scheme, present)
        params["head.weight"], params["head.bias"] = params["head.weight"][index], params["head.bias"][index]
        predictor = AdaptedPredictor(self, params, present[index], support)
        predictor.support_losses = losses  # type: ignore[attr-defined]
        return predictor


class AdaptedPredictor(Predictor):
    """Tags sentences with a gradient learner's adapted weights (never the learner's own).

    Arguments:
        learner: the ``GradientLearner`` it was adapted from.
        params: the adapted weights (encoder part and head).
        present: ``(C,)`` bool, labels with a usable head row.
        episode: the support episode (labels, scheme, types).
    """

    def __init__(self, learner: GradientLearner, params: Params, present: torch.Tensor, episode: Episode) -> None:
        super().__init__(episode.label_names, episode.scheme, episode.types)
        self.learner = learner
        self.params = params
        self.present = present

    @torch.no_grad()
    def logits(self, sentences: Sequence[Text]) -> list[torch.Tensor]:
        items = as_sentences(sentences)
        functional, out = self.learner.functional, []
        with eval_mode(self.learner.encoder):
            for start in range(0, len(items), self.learner.batch_size):
                batch = self.learner.encoder.collate(items[start : start + self.learner.batch_size])
                words = functional.words(functional.trunk(batch), self.params)
                scores = head_logits(words.vectors, self.params).masked_fill(~self.present[None, :], float("-inf"))
                fill = no_entity_row(scores.shape[1], scores.device)
                out.extend(t.cpu() for t in words.per_sentence(scores, fill))
        return out


class MAML(GradientLearner):
    """Second-order MAML (Finn et al., 2017) on the top layers and a learned head (see :class:`GradientLearner`)."""

    name = "maml"


class FOMAML(GradientLearner):
    """First-order MAML: the inner gradients are treated as constants (Finn et al., 2017, section 5.2)."""

    name = "fomaml"

    def __init__(self, encoder: Encoder, **options: Any) -> None:
        options.setdefault("first_order", True)
        super().__init__(encoder, **options)


class ANIL(GradientLearner):
    """Almost No Inner Loop (Raghu et al., 2020): only the head adapts; the encoder is meta-trained in the outer loop."""

    name = "anil"

    def __init__(self, encoder: Encoder, **options: Any) -> None:
        options.setdefault("adapt_layers", 0)
        options.setdefault("inner_steps", 5)
        super().__init__(encoder, **options)


class ProtoMAML(GradientLearner):
    """ProtoMAML (Triantafillou et al., 2020): the head starts as the support prototypes' linear layer.

    Defaults to first-order (their "fo-Proto-MAML"); pass ``first_order=False`` for the exact meta-gradient.
    """

    name = "protomaml"

    def __init__(self, encoder: Encoder, **options: Any) -> None:
        options.setdefault("head_init", "prototypes")
        options.setdefault("first_order", True)
        options.setdefault("inner_lr", 0.01)
        super().__init__(encoder, **options)
