"""Sentence-level few-shot learners: intent detection with prototypes of pooled sentence vectors.

The token-level learners give one vector per *word*; an intent is a label of
a whole *utterance*. The learners here pool the encoder's subword hidden
states into one sentence vector (the attention-masked mean, the pooling
``all-MiniLM-L6-v2`` was trained with), optionally pass it through a small
meta-learned head, and score an utterance by its distance to each intent's
prototype, the mean of that intent's support vectors:

    score_c(x) = -s * ||z(x) - p_c||^2,   p_c = mean of z(support texts of c)

with ``z = normalize(head(pool(encoder(x))))`` and ``s`` a (learned)
inverse temperature: unit vectors are at most 2 apart, so without ``s`` the
softmax over classes would be nearly flat.

* ``intent_centroid`` (:class:`SentenceCentroid`): no head, nothing trained:
  the nearest-centroid baseline on the frozen encoder, the floor that every
  meta-learner must beat.
* ``intent_protonet`` (:class:`SentenceProtoNet`): a prototypical network
  (Snell et al., 2017) over the same vectors. By default the encoder is
  frozen and the head is a linear map initialised to the identity, so the
  untrained learner *is* the centroid baseline and meta-training starts at
  the floor; ``freeze=`` unfreezes encoder layers instead (slower, on a GPU).
* ``intent_protomaml`` (:class:`SentenceProtoMAML`): ProtoMAML
  (Triantafillou et al., 2020): the ProtoNet written as a linear layer, then
  a few gradient steps on the support set; meta-trained through the steps.

Out of scope: ``SentencePredictor.predict`` answers :data:`OOS_LABEL` when
the query's nearest prototype is farther than ``threshold`` (a squared
distance); :func:`choose_oos_threshold` picks it on dev intents and
:func:`oos_scores` measures it.

When the encoder is frozen, its sentence vectors never change, so the
learner caches them by text (``precompute``): meta-training then costs a
few small matrix products per episode.

Taught in: chapter 6.1 (Few-shot intent detection).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.episode import CLASS_SCHEME, Episode, LabelledText
from ..data.intents import OOS
from ..encoders import Encoder, eval_mode
from .base import EpisodeMismatchError, Learner

__all__ = [
    "OOS_LABEL",
    "LinearSentencePredictor",
    "SentenceCentroid",
    "SentencePredictor",
    "SentenceProtoMAML",
    "SentenceProtoNet",
    "choose_oos_threshold",
    "mean_pool",
    "oos_scores",
]

#: The label a predictor with a threshold gives an utterance that fits no intent: the intent files'
#: own out-of-scope label (``metalearn_nlp.data.intents.OOS``), so a rejection matches a gold ``oos``.
OOS_LABEL = OOS


def _texts(items: Iterable[LabelledText | str]) -> list[str]:
    texts = []
    for i, item in enumerate(items):
        text = item.text if isinstance(item, LabelledText) else item
        if not isinstance(text, str) or not text.split():
            raise ValueError(f"text {i}: expected a LabelledText or a non-empty string, got {item!r}")
        texts.append(text)
    return texts


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each sentence's hidden states over its attended positions.

    Arguments:
        hidden: ``(B, T, H)`` hidden states.
        attention_mask: ``(B, T)``, 1 for real tokens, 0 for padding.

    Returns:
        ``(B, H)`` sentence vectors.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> mean_pool(h, torch.tensor([[1, 1, 0]])).tolist()
        [[2.0]]
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class SentencePredictor:
    """Classifies utterances for one adapted episode by their nearest prototype.

    Arguments:
        embed: maps a list of texts to ``(n, D)`` vectors (the learner's ``embed``).
        prototypes: ``(C, D)``, one row per class of ``types``.
        types: the episode's classes.
        scale (float): the inverse temperature ``s`` of the logits.
        threshold (float | None, default None): squared distance beyond
            which ``predict`` answers ``OOS_LABEL``; None never does.

    Example:
        >>> predictor = learner.adapt(episode)  # doctest: +SKIP
        >>> predictor.predict(["where is my parcel"])  # doctest: +SKIP
        ['track_order']
    """

    scheme = CLASS_SCHEME

    def __init__(self, embed: Any, prototypes: torch.Tensor, types: Sequence[str], scale: float,
                 threshold: float | None = None) -> None:
        self.embed, self.prototypes, self.types = embed, prototypes.detach(), tuple(types)
        self.label_names = list(self.types)
        self.scale, self.threshold = float(scale), threshold

    def with_threshold(self, threshold: float | None) -> SentencePredictor:
        """The same predictor with another out-of-scope threshold."""
        return SentencePredictor(self.embed, self.prototypes, self.types, self.scale, threshold)

    @torch.no_grad()
    def distances(self, texts: Sequence[LabelledText | str]) -> torch.Tensor:
        """``(n, C)`` squared distances from each text's vector to each prototype."""
        return torch.cdist(self.embed(_texts(texts)).float(), self.prototypes.float()).pow(2)

    def logits(self, texts: Sequence[LabelledText | str]) -> torch.Tensor:
        """``(n, C)`` scores ``-scale * distance``."""
        return -self.scale * self.distances(texts)

    def predict(self, texts: Sequence[LabelledText | str]) -> list[str]:
        """One label per text: the nearest prototype's class, or ``OOS_LABEL`` beyond the threshold."""
        if not len(texts):
            return []
        d = self.distances(texts)
        nearest, index = d.min(1)
        return [OOS_LABEL if self.threshold is not None and dist > self.threshold else self.types[i]
                for dist, i in zip(nearest.tolist(), index.tolist())]

    def __repr__(self) -> str:
        return f"SentencePredictor(types={list(self.types)}, threshold={self.threshold})"


class SentenceProtoNet(Learner):
    """Prototypical network on pooled sentence vectors, for few-shot intent detection.

    Arguments:
        encoder: the encoder (its hidden states are mean-pooled per sentence).
        head (bool, default True): a linear map ``D -> D`` after pooling,
            initialised to the identity (so the untrained learner is the
            nearest-centroid baseline) and meta-trained.
        normalize (bool, default True): L2-normalise the vectors (cosine geometry).
        scale (float, default 10.0): the initial inverse temperature ``s``.
        learn_scale (bool, default True): meta-train ``log s`` too.
        freeze (``"all"`` | ``"none"`` | int, default ``"all"``): encoder
            layers to freeze (``Encoder.freeze``). Frozen entirely, the
            encoder runs in eval mode without gradients and its vectors are
            cached by text.
        batch_size (int, default 32): texts per forward pass.

    Raises:
        ValueError: ``scale`` is not positive.
        EpisodeMismatchError: (from ``loss`` / ``adapt``) an episode that is
            not over labelled texts (``scheme="class"``).

    Example:
        >>> learner = get_learner("intent_protonet", load_encoder())  # doctest: +SKIP
        >>> meta_train(learner, ClassSampler(train, ways=5, shots=1), steps=200, lr=1e-3)  # doctest: +SKIP
        >>> learner.adapt(episode).predict(episode.query)  # doctest: +SKIP

    Taught in: chapter 6.1 (Few-shot intent detection).
    """

    name: ClassVar[str] = "intent_protonet"
    schemes: ClassVar[tuple[str, ...]] = (CLASS_SCHEME,)

    def __init__(self, encoder: Encoder, *, head: bool = True, normalize: bool = True, scale: float = 10.0,
                 learn_scale: bool = True, freeze: str | int = "all", batch_size: int = 32) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.freeze_setting, self.initial_scale = freeze, scale
        encoder.freeze(freeze)
        width = encoder.hidden_size
        self.head: nn.Linear | None = None
        if head:
            self.head = nn.Linear(width, width)
            with torch.no_grad():
                self.head.weight.copy_(torch.eye(width))
                self.head.bias.zero_()
        self.normalize, self.learn_scale = normalize, learn_scale
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self._cache: dict[str, torch.Tensor] = {}

    def _hyperparameters(self) -> dict[str, Any]:
        return {"head": self.head is not None, "normalize": self.normalize, "scale": self.initial_scale,
                "learn_scale": self.learn_scale, "freeze": self.freeze_setting}

    @property
    def frozen(self) -> bool:
        """True when no encoder parameter is trained (its vectors are then cached)."""
        if getattr(self, "_encoder_parameters", None) is None:  # the list, once; their flags, live
            self._encoder_parameters = list(self.encoder.parameters())
        return not any(p.requires_grad for p in self._encoder_parameters)

    @property
    def scale(self) -> float:
        """The current inverse temperature ``s``."""
        return float(self.log_scale.detach().exp())

    # -- sentence vectors ------------------------------------------------------------------
    def _pooled(self, texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.encoder.collate(texts[start : start + self.batch_size])
            hidden = self.encoder.hidden_states(batch)
            out.append(mean_pool(hidden, batch.attention_mask.to(hidden.device)).float())
        return torch.cat(out)

    @torch.no_grad()
    def precompute(self, texts: Iterable[LabelledText | str]) -> int:
        """Embed texts with the frozen encoder once and cache their pooled vectors.

        Returns:
            The number of cached texts.

        Raises:
            ValueError: the encoder is not frozen (its vectors would go stale).
        """
        if not self.frozen:
            raise ValueError("precompute needs a frozen encoder (freeze='all'): trained layers change the vectors")
        missing = sorted(set(_texts(texts)) - self._cache.keys())
        if missing:
            with eval_mode(self.encoder):
                vectors = self._pooled(missing).cpu()
            self._cache.update(zip(missing, vectors))
        return len(self._cache)

    def pooled(self, texts: Sequence[LabelledText | str]) -> torch.Tensor:
        """``(n, H)`` mean-pooled encoder vectors (cached when the encoder is frozen)."""
        texts = _texts(texts)
        if self.frozen:
            self.precompute(texts)
            return torch.stack([self._cache[t] for t in texts]).to(self.encoder.device)
        return self._pooled(texts)

    def embed(self, texts: Sequence[LabelledText | str]) -> torch.Tensor:
        """``(n, D)`` sentence vectors: pooled, through the head, normalised."""
        z = self.pooled(texts)
        if self.head is not None:
            z = self.head(z)
        return F.normalize(z, dim=-1) if self.normalize else z

    # -- the protocol ----------------------------------------------------------------------
    def _prototypes(self, episode: Episode, support: torch.Tensor) -> torch.Tensor:
        labels = torch.tensor([episode.encode_label(x) for x in episode.support], device=support.device)
        counts = torch.bincount(labels, minlength=episode.ways)
        if (counts == 0).any():
            empty = [episode.types[i] for i in (counts == 0).nonzero().flatten().tolist()]
            raise EpisodeMismatchError(f"classes {empty} have no support example; every class needs at least one")
        sums = torch.zeros(episode.ways, support.shape[1], device=support.device).index_add(0, labels, support)
        return sums / counts[:, None].to(support.dtype)

    def _loss(self, episode: Episode) -> torch.Tensor:
        vectors = self.embed(list(episode.support) + list(episode.query))
        support, query = vectors[: len(episode.support)], vectors[len(episode.support) :]
        prototypes = self._prototypes(episode, support)
        logits = -self.log_scale.exp() * torch.cdist(query, prototypes).pow(2)
        target = torch.tensor([episode.encode_label(x) for x in episode.query], device=logits.device)
        return F.cross_entropy(logits, target)

    def _adapt(self, support: Episode) -> SentencePredictor:
        learner = self

        def embed(texts: Sequence[str]) -> torch.Tensor:
            # a frozen encoder is read from the cache (filled in eval mode), and the head has no dropout:
            # switching the whole transformer to eval mode on every call would cost more than the distances
            with torch.no_grad(), (contextlib.nullcontext() if learner.frozen else eval_mode(learner)):
                return learner.embed(texts)

        prototypes = self._prototypes(support, embed(support.support))

        return SentencePredictor(embed, prototypes, support.types, self.scale)


class SentenceCentroid(SentenceProtoNet):
    """Nearest centroid on the frozen encoder's normalised mean-pooled vectors: the floor.

    ``SentenceProtoNet`` with no head and nothing to train; ``adapt`` only
    averages the support vectors. Arguments as ``SentenceProtoNet`` (``head``
    and ``learn_scale`` are fixed to False).

    Example:
        >>> baseline = get_learner("intent_centroid", load_encoder())  # doctest: +SKIP
        >>> evaluate(baseline, test_episodes).accuracy  # doctest: +SKIP

    Taught in: chapter 6.1.
    """

    name: ClassVar[str] = "intent_centroid"
    meta_trainable: ClassVar[bool] = False

    def __init__(self, encoder: Encoder, *, normalize: bool = True, scale: float = 10.0,
                 batch_size: int = 32) -> None:
        super().__init__(encoder, head=False, normalize=normalize, scale=scale, learn_scale=False, freeze="all",
                         batch_size=batch_size)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"normalize": self.normalize, "scale": self.initial_scale}  # head, learn_scale, freeze: fixed


def _nearest(learner: Learner, episodes: Sequence[Episode], oos_texts: Sequence[str]):
    """Per episode: (in-scope nearest distances, in-scope correct flags, OOS nearest distances)."""
    out = []
    for episode in episodes:
        predictor = learner.adapt(episode)
        if not hasattr(predictor, "distances"):
            raise TypeError(f"{type(learner).__name__} predicts with a linear head, not distances to "
                            "prototypes, so it has no out-of-scope threshold; use intent_centroid or "
                            "intent_protonet")
        nearest, index = predictor.distances(list(episode.query)).min(1)
        gold = torch.tensor([episode.encode_label(x) for x in episode.query])
        out.append((nearest.cpu(), index.cpu() == gold,  # on the CPU, whatever the encoder's device
                    predictor.distances(list(oos_texts)).min(1).values.cpu()))
    return out


def oos_scores(learner: Learner, episodes: Sequence[Episode], oos_texts: Sequence[LabelledText | str],
               threshold: float | None) -> dict[str, float]:
    """In-scope accuracy and out-of-scope recall of a thresholded learner.

    Each episode's predictor classifies its in-scope query texts and all
    ``oos_texts``. An in-scope text is right when it gets its intent (a
    rejection as ``oos`` is wrong); an OOS text is right when rejected.

    Returns:
        ``{"in_scope_accuracy", "oos_recall", "balanced", "threshold"}``,
        ``balanced`` the mean of the first two.

    Raises:
        ValueError: no episodes or no OOS texts.

    Taught in: chapter 6.1.
    """
    if not episodes or not oos_texts:
        raise ValueError("oos_scores needs episodes and out-of-scope texts")
    rows = _nearest(learner, episodes, _texts(oos_texts))
    limit = math.inf if threshold is None else threshold
    right = torch.cat([ok & (near <= limit) for near, ok, _ in rows]).float().mean().item()
    rejected = torch.cat([oos > limit for _, _, oos in rows]).float().mean().item()
    return {"in_scope_accuracy": right, "oos_recall": rejected, "balanced": (right + rejected) / 2,
            "threshold": threshold}


def choose_oos_threshold(learner: Learner, episodes: Sequence[Episode],
                         oos_texts: Sequence[LabelledText | str]) -> float:
    """The threshold (a squared distance) that maximises balanced accuracy on dev episodes.

    Balanced accuracy is the mean of in-scope accuracy (a rejected in-scope
    text counts as wrong) and OOS recall, so neither side wins by its size.
    Every observed nearest distance is a candidate; ties go to the smallest.
    Use dev intents and dev OOS texts, never the test ones.

    Raises:
        ValueError: no episodes or no OOS texts.

    Example:
        >>> t = choose_oos_threshold(learner, dev_episodes, dev_oos)  # doctest: +SKIP
        >>> predictor = learner.adapt(episode).with_threshold(t)  # doctest: +SKIP

    Taught in: chapter 6.1.
    """
    if not episodes or not oos_texts:
        raise ValueError("choose_oos_threshold needs dev episodes and out-of-scope texts")
    rows = _nearest(learner, episodes, _texts(oos_texts))
    near = torch.cat([n for n, _, _ in rows])
    ok = torch.cat([k for _, k, _ in rows])
    oos = torch.cat([o for _, _, o in rows])
    candidates = torch.cat([near, oos]).unique()
    in_scope = (ok[None, :] & (near[None, :] <= candidates[:, None])).float().mean(1)
    recall = (oos[None, :] > candidates[:, None]).float().mean(1)
    best = int(((in_scope + recall) / 2).argmax())
    return float(candidates[best])


class LinearSentencePredictor:
    """Classifies utterances with an adapted linear layer on sentence vectors (``SentenceProtoMAML``).

    Arguments:
        embed: maps texts to ``(n, D)`` vectors.
        weight, bias: ``(C, D)`` and ``(C,)``, the adapted classifier.
        types: the episode's classes.

    No out-of-scope option: a linear layer has no distance to threshold
    (use ``intent_protonet`` or ``intent_centroid`` for that).
    """

    scheme = CLASS_SCHEME

    def __init__(self, embed: Any, weight: torch.Tensor, bias: torch.Tensor, types: Sequence[str]) -> None:
        self.embed, self.weight, self.bias = embed, weight.detach(), bias.detach()
        self.types = tuple(types)
        self.label_names = list(self.types)

    @torch.no_grad()
    def logits(self, texts: Sequence[LabelledText | str]) -> torch.Tensor:
        """``(n, C)`` scores of the adapted linear layer."""
        return self.embed(_texts(texts)) @ self.weight.T + self.bias

    def predict(self, texts: Sequence[LabelledText | str]) -> list[str]:
        """One label per text: the highest-scoring class."""
        if not len(texts):
            return []
        return [self.types[i] for i in self.logits(texts).argmax(1).tolist()]


class SentenceProtoMAML(SentenceProtoNet):
    """ProtoMAML (Triantafillou et al., 2020) on pooled sentence vectors.

    The classifier starts as the ProtoNet of the support set written as a
    linear layer, ``W_c = 2 s p_c``, ``b_c = -s ||p_c||^2`` (the same softmax
    as ``-s ||z - p_c||^2``, whose ``-s ||z||^2`` is equal for every class),
    then takes ``inner_steps`` gradient steps of size ``inner_lr`` on the
    support cross-entropy. Meta-training backpropagates the query loss of the
    adapted layer into the head and the temperature (through the prototypes);
    ``first_order=True`` drops the second-order terms of the inner steps.

    Arguments:
        encoder: the encoder.
        inner_steps (int, default 3): support steps per episode.
        inner_lr (float, default 0.5): their step size.
        first_order (bool, default False): first-order meta-gradient.
        **options: as ``SentenceProtoNet`` (``head``, ``normalize``, ``scale``, ``freeze``...).

    Raises:
        ValueError: ``inner_steps`` negative or ``inner_lr`` not positive.

    Example:
        >>> learner = get_learner("intent_protomaml", load_encoder(), inner_steps=3)  # doctest: +SKIP

    Taught in: chapter 6.1 (package only; the chapter runs the ProtoNet).
    """

    name: ClassVar[str] = "intent_protomaml"

    def __init__(self, encoder: Encoder, *, inner_steps: int = 3, inner_lr: float = 0.5, first_order: bool = False,
                 **options: Any) -> None:
        super().__init__(encoder, **options)
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 0:
            raise ValueError(f"inner_steps must be a non-negative integer, got {inner_steps!r}")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be positive, got {inner_lr!r}")
        self.inner_steps, self.inner_lr, self.first_order = inner_steps, inner_lr, first_order

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "inner_steps": self.inner_steps, "inner_lr": self.inner_lr,
                "first_order": self.first_order}

    def _inner_loop(self, episode: Episode, support: torch.Tensor, *, create_graph: bool):
        """The adapted ``(weight, bias)`` after the support steps."""
        prototypes = self._prototypes(episode, support)
        s = self.log_scale.exp()
        weight, bias = 2 * s * prototypes, -s * prototypes.pow(2).sum(1)
        labels = torch.tensor([episode.encode_label(x) for x in episode.support], device=support.device)
        for _ in range(self.inner_steps):
            with torch.enable_grad():
                if not weight.requires_grad:
                    weight, bias = weight.requires_grad_(), bias.requires_grad_()
                loss = F.cross_entropy(support @ weight.T + bias, labels)
                grad_w, grad_b = torch.autograd.grad(loss, (weight, bias), create_graph=create_graph)
            weight, bias = weight - self.inner_lr * grad_w, bias - self.inner_lr * grad_b
        return weight, bias

    def _loss(self, episode: Episode) -> torch.Tensor:
        vectors = self.embed(list(episode.support) + list(episode.query))
        support, query = vectors[: len(episode.support)], vectors[len(episode.support) :]
        weight, bias = self._inner_loop(episode, support, create_graph=not self.first_order)
        target = torch.tensor([episode.encode_label(x) for x in episode.query], device=query.device)
        return F.cross_entropy(query @ weight.T + bias, target)

    def _adapt(self, support: Episode) -> LinearSentencePredictor:
        learner = self

        def embed(texts: Sequence[str]) -> torch.Tensor:
            with torch.no_grad(), (contextlib.nullcontext() if learner.frozen else eval_mode(learner)):
                return learner.embed(texts)

        vectors = embed(support.support)
        weight, bias = self._inner_loop(support, vectors.detach(), create_graph=False)
        return LinearSentencePredictor(embed, weight, bias, support.types)
