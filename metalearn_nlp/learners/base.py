"""The learner protocol: ``loss(episode)`` to meta-train, ``adapt(episode) -> Predictor`` to use.

Every method in the book is a :class:`Learner`, a ``torch.nn.Module`` that
owns an :class:`~metalearn_nlp.encoders.Encoder` and speaks two verbs:

* ``loss(episode) -> Tensor``: the meta-training objective on one episode
  (adapt on its support set, score its query set). Learners that are not
  meta-trained (``meta_trainable = False``: the fine-tuning baseline) raise
  :class:`NotMetaTrainableError`.
* ``adapt(episode) -> Predictor``: fast adaptation to a new task. It is
  given the whole episode for convenience, but **the query set is removed
  before the learner sees it**: ``adapt`` passes
  :func:`support_only(episode) <support_only>` (support sentences, types,
  scheme) to the subclass's ``_adapt``. So no learner can peek at the query,
  by construction. ``adapt`` never changes the learner's own weights; what
  it trains, it copies.

A :class:`Predictor` tags new sentences: ``logits(sentences)`` gives one
``(len(sentence), C)`` tensor per sentence over the episode's
``label_names``, ``predict(sentences)`` the tags in the episode's scheme.

A new method is one file with a ``Learner`` subclass and one line in
``metalearn_nlp.learners.LEARNERS``.

Taught in: chapter 3.2 (Algorithm steps); chapter 5.2 (Source code).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.episode import CLASS_SCHEME, Episode, TaggedSentence
from ..encoders import Encoder, Text, as_sentences, eval_mode

__all__ = [
    "EpisodeMismatchError",
    "Learner",
    "NotMetaTrainableError",
    "Predictor",
    "WordScorePredictor",
    "support_only",
]


class NotMetaTrainableError(TypeError):
    """``loss`` was called on a learner that is not meta-trained."""


class EpisodeMismatchError(ValueError):
    """An episode does not fit the learner (scheme, kind of examples, empty support)."""


def support_only(episode: Episode) -> Episode:
    """The episode without its query set: what adaptation is allowed to see.

    Example:
        >>> ep = Episode([TaggedSentence(["Ada"], ["person"])], [TaggedSentence(["Bob"], ["person"])], ["person"])
        >>> support_only(ep).query, support_only(ep).types
        ((), ('person',))
    """
    return dataclasses.replace(episode, query=(), query_ids=())


def no_entity_row(n_labels: int, device: Any = None) -> torch.Tensor:
    """The logits row of a word lost to truncation: 0 for ``O`` (id 0), -inf for every entity label."""
    row = torch.full((n_labels,), float("-inf"), device=device)
    row[0] = 0.0
    return row


def o_bias_vector(label_names: Sequence[str], value: float, device: Any = None) -> torch.Tensor:
    """``(C,)``: ``value`` at the ``O`` label, 0 elsewhere: added to a word's scores, it shifts the log-odds
    of "not a name" by ``value`` (a label-prior correction; chapter 5.5).

    Example:
        >>> o_bias_vector(["O", "B-person", "I-person"], 1.5).tolist()
        [1.5, 0.0, 0.0]
    """
    return torch.tensor([float(value) if name == "O" else 0.0 for name in label_names], device=device)


class Predictor(ABC):
    """Tags sentences for one adapted task.

    Attributes:
        label_names: the episode's labels in id order (``O`` first).
        scheme: the episode's tag scheme.
        types: the episode's entity types.
    """

    def __init__(self, label_names: Sequence[str], scheme: str, types: Sequence[str]) -> None:
        self.label_names = list(label_names)
        self.scheme = scheme
        self.types = tuple(types)

    @abstractmethod
    def logits(self, sentences: Sequence[Text]) -> list[torch.Tensor]:
        """One ``(len(sentence), C)`` score tensor per sentence (higher = more likely).

        A word lost to truncation gets 0 for ``O`` and -inf elsewhere.
        """

    def predict(self, sentences: Sequence[Text]) -> list[list[str]]:
        """Tags in the episode's scheme, one list per sentence (argmax of ``logits``).

        Example:
            >>> predictor.predict(["Ada Lovelace wrote"])  # doctest: +SKIP
            [['person', 'person', 'O']]
        """
        return [[self.label_names[i] for i in row.argmax(-1).tolist()] for row in self.logits(sentences)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scheme={self.scheme!r}, labels={self.label_names})"


class WordScorePredictor(Predictor):
    """A predictor that embeds each word with an encoder and scores it with a function.

    Used by every metric learner: ProtoNet's ``score`` is the negative squared
    distance to each prototype, NNShot's the distance to the nearest support
    word, the fine-tuning baseline's a linear layer.

    Arguments:
        encoder: the encoder to embed query words with (never trained here).
        score: maps ``(n, H)`` float32 word vectors to ``(n, C)`` scores.
        label_names, scheme, types: from the episode.
        batch_size: sentences per forward pass.
        features: optional module with ``augment(words, sentences)`` that adds
            columns to the word vectors (e.g. ``ShapeEmbedding``); the learner's
            ``shapes``.
    """

    def __init__(
        self,
        encoder: Encoder,
        score: Callable[[torch.Tensor], torch.Tensor],
        label_names: Sequence[str],
        scheme: str,
        types: Sequence[str],
        *,
        batch_size: int = 32,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__(label_names, scheme, types)
        self.encoder = encoder
        self.score = score
        self.batch_size = batch_size
        self.features = features

    @torch.no_grad()
    def logits(self, sentences: Sequence[Text]) -> list[torch.Tensor]:
        items = as_sentences(sentences)
        out: list[torch.Tensor] = []
        with eval_mode(self.encoder):
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                words = self.encoder.encode(chunk)
                if self.features is not None:  # e.g. word-shape vectors (metalearn_nlp.features)
                    words = self.features.augment(words, chunk)
                scores = self.score(words.vectors.float())
                out.extend(t.cpu() for t in words.per_sentence(scores, no_entity_row(scores.shape[1], scores.device)))
        return out


class Learner(nn.Module, ABC):
    """Base class of every few-shot learner (see the module docstring).

    Subclasses set ``name`` and ``meta_trainable``, implement ``_adapt``
    (and ``_loss`` when meta-trainable), and may narrow ``schemes``.

    Arguments:
        encoder: the word encoder (a submodule: meta-training updates it).
        batch_size: sentences per forward pass when predicting.

    Attributes:
        name (str): the registry name.
        meta_trainable (bool): whether ``loss`` exists.
        schemes (tuple[str, ...]): episode schemes the learner handles.
        needs_support (bool): whether ``adapt`` needs support sentences.
        encoder: the encoder.

    Example:
        >>> learner = get_learner("protonet")  # doctest: +SKIP
        >>> learner.loss(train_episode).backward()  # meta-training  # doctest: +SKIP
        >>> learner.adapt(test_episode).predict(test_episode.query)  # doctest: +SKIP

    Taught in: chapter 3.2; chapter 5.2.
    """

    name: ClassVar[str] = "learner"
    meta_trainable: ClassVar[bool] = True
    schemes: ClassVar[tuple[str, ...]] = ("io", "bio", "bioes")
    needs_support: ClassVar[bool] = True
    #: Parameter-name prefixes never weight-decayed (e.g. Meta-SGD's learned learning rates).
    no_decay_prefixes: ClassVar[tuple[str, ...]] = ()
    #: Hyperparameters that only act in ``adapt`` (never in ``loss``): they can be changed on a trained
    #: learner without retraining it, e.g. chosen on target dev episodes (:meth:`adaptation_settings`).
    adaptation_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, encoder: Encoder, *, batch_size: int = 32) -> None:
        super().__init__()
        if not isinstance(encoder, Encoder):
            raise TypeError(f"{type(self).__name__} needs an Encoder (see load_encoder), got {type(encoder).__name__}")
        self.encoder = encoder
        self.batch_size = batch_size
        # optional word-shape features (metalearn_nlp.features.ShapeEmbedding), set by _use_shapes;
        # None (the default) leaves word vectors as the encoder gives them
        self.shapes: nn.Module | None = None

    # -- configuration, for reports ---------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The learner's name, encoder and hyperparameters (JSON-ready), for reports."""
        return {"learner": self.name, "encoder": self.encoder.name, "pooling": self.encoder.pooling,
                **self._hyperparameters()}

    def _hyperparameters(self) -> dict[str, Any]:
        return {}

    @contextmanager
    def adaptation_settings(self, **options: Any) -> Iterator[Learner]:
        """Temporarily change adaptation-only hyperparameters of a trained learner (restored on exit).

        Only names in ``adaptation_options`` are accepted: they do not change
        what meta-training learned, so one trained learner can be scored under
        several of them (the benchmark's ``--select`` chooses among them on
        target dev episodes).

        Raises:
            ValueError: an option this learner does not treat as adaptation-only.

        Example:
            >>> with transfer.adaptation_settings(o_bias=1.0, steps=200):  # doctest: +SKIP
            ...     report = evaluate(transfer, dev_episodes)
        """
        old = {name: getattr(self, name) for name in self._adaptation_names(options)}
        try:
            self.set_adaptation(**options)
            yield self
        finally:
            for name, value in old.items():
                setattr(self, name, value)

    def set_adaptation(self, **options: Any) -> Learner:
        """Change adaptation-only hyperparameters for good (e.g. the ones dev episodes chose); returns ``self``.

        ``save_pretrained`` then records them, and ``metalearn-nlp evaluate/predict --adapt`` sets them on a
        loaded learner.

        Raises:
            ValueError: an option this learner does not treat as adaptation-only.
        """
        old = {name: getattr(self, name) for name in self._adaptation_names(options)}
        try:
            for name in old:
                setattr(self, name, options[name])
            self._check_adaptation()
        except (TypeError, ValueError):
            for name, value in old.items():  # a refused value leaves the learner as it was
                setattr(self, name, value)
            raise
        return self

    def _check_adaptation(self) -> None:
        """Raise ``ValueError`` when an adaptation-only option holds a value the constructor would refuse."""
        bias = getattr(self, "o_bias", 0.0)
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise ValueError(f"o_bias must be a finite number, got {bias!r}")

    def _adaptation_names(self, options: dict[str, Any]) -> list[str]:
        unknown = sorted(set(options) - set(self.adaptation_options))
        if unknown:
            allowed = ", ".join(self.adaptation_options) or "none"
            raise ValueError(f"{type(self).__name__}: {unknown} are not adaptation-only options "
                             f"(allowed: {allowed}); options that change training need a new learner")
        return list(options)

    def save_pretrained(self, directory: Any, **kw: Any) -> Any:
        """Save the learner to a folder: ``save_learner(self, directory, **kw)`` (:mod:`metalearn_nlp.saving`).

        Example:
            >>> learner.save_pretrained("runs/protonet", metadata={"scheme": "io"})  # doctest: +SKIP
            >>> learner = load_learner("runs/protonet")  # doctest: +SKIP
        """
        from ..saving import save_learner

        return save_learner(self, directory, **kw)

    # -- the protocol -----------------------------------------------------------------------
    def check_episode(self, episode: Episode) -> None:
        """Raise ``EpisodeMismatchError`` when the episode does not fit this learner."""
        if not isinstance(episode, Episode):
            raise TypeError(f"{type(self).__name__} expects an Episode, got {type(episode).__name__}")
        if episode.scheme not in self.schemes:
            kind = "labelled texts (sentence classification)" if episode.scheme == CLASS_SCHEME else "tagged sentences"
            raise EpisodeMismatchError(
                f"{type(self).__name__} handles {'/'.join(self.schemes)} episodes; this episode is "
                f"{episode.scheme!r} ({kind}). Sample it with scheme= one of {self.schemes}"
            )
        if self.needs_support and not episode.support:
            raise EpisodeMismatchError(f"{type(self).__name__} needs a non-empty support set")

    def loss(self, episode: Episode) -> torch.Tensor:
        """The meta-training loss on one episode (a scalar with a graph to the encoder).

        Raises:
            NotMetaTrainableError: for learners that are not meta-trained.
            EpisodeMismatchError: the episode does not fit the learner.
        """
        if not self.meta_trainable:
            raise NotMetaTrainableError(
                f"{type(self).__name__} ({self.name!r}) is not meta-trained: it adapts to each support set "
                "from the pretrained encoder. Evaluate it directly with evaluate(learner, episodes)"
            )
        self.check_episode(episode)
        if not episode.query:
            raise EpisodeMismatchError("the meta-training loss needs a query set")
        return self._loss(episode)

    def _loss(self, episode: Episode) -> torch.Tensor:
        raise NotImplementedError

    def adapt(self, episode: Episode) -> Predictor:
        """Adapt to an episode's task from its support set only; returns a ``Predictor``.

        The query set is stripped (``support_only``) before the learner sees
        the episode, and the learner's own weights are left unchanged.

        Arguments:
            episode: an episode; only ``support``, ``types`` and ``scheme`` are
                used. For new data build one with an empty query:
                ``Episode(support, [], types, scheme)``.
        """
        self.check_episode(episode)
        return self._adapt(support_only(episode))

    @abstractmethod
    def _adapt(self, support: Episode) -> Predictor:
        """Adapt to ``support`` (an episode whose query set is empty)."""

    # -- helpers for subclasses -------------------------------------------------------------
    def _predictor(self, score: Callable[[torch.Tensor], torch.Tensor], episode: Episode,
                   encoder: Encoder | None = None) -> WordScorePredictor:
        return WordScorePredictor(encoder or self.encoder, score, episode.label_names, episode.scheme,
                                  episode.types, batch_size=self.batch_size, features=self.shapes)

    def _use_shapes(self, shape_dim: int) -> None:
        """Opt in to a learned word-shape embedding of width ``shape_dim`` (0: none), concatenated
        to every word vector this learner computes (``_embed_episode`` and its predictors)."""
        if not isinstance(shape_dim, int) or shape_dim < 0:
            raise ValueError(f"shape_dim must be an integer >= 0 (0: no shape features), got {shape_dim!r}")
        self.shape_dim = shape_dim
        if shape_dim:
            from ..features import ShapeEmbedding

            self.shapes = ShapeEmbedding(shape_dim).to(self.encoder.device)

    def _embed_episode(self, episode: Episode, *, with_query: bool = True):
        """Word vectors of support (and query) in one forward pass, as float32.

        Returns:
            ``(support_words, query_words)``; ``query_words`` is None when ``with_query`` is false.
        """
        sentences: list[TaggedSentence] = list(episode.support) + (list(episode.query) if with_query else [])
        words = self.encoder.encode(sentences, episode)
        if self.shapes is not None:
            words = self.shapes.augment(words, sentences)
        words = dataclasses.replace(words, vectors=words.vectors.float())
        in_support = words.sentence < len(episode.support)
        support = words.select(in_support)
        query = words.select(~in_support) if with_query else None
        return support, query

    def param_groups(self, lr: float, head_lr: float | None = None,
                     weight_decay: float = 0.01) -> list[dict[str, Any]]:
        """AdamW parameter groups for meta-training.

        Encoder parameters get ``lr``; the learner's own parameters (heads,
        thresholds) get ``head_lr`` (default ``lr``). Biases, LayerNorm
        weights and scalars get no weight decay (the BERT convention, also
        Few-NERD's). Only parameters with ``requires_grad`` are included.
        """
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            is_encoder = name.startswith("encoder.")
            no_decay = (parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
                        or name.startswith(self.no_decay_prefixes))
            groups.setdefault((is_encoder, no_decay), []).append(parameter)
        out = []
        for (is_encoder, no_decay), params in sorted(groups.items(), key=lambda item: (not item[0][0], item[0][1])):
            out.append({
                "params": params,
                "lr": lr if is_encoder else (head_lr if head_lr is not None else lr),
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{'encoder' if is_encoder else 'head'}{'-no-decay' if no_decay else ''}",
            })
        return out
