"""Metric learners: ProtoNet (ProtoBERT), NNShot and StructShot.

All three embed every word with the encoder and score a query word by its
distance to the support words; none trains anything at adaptation time, so
``adapt`` is one forward pass over the support set.

* **ProtoNet** (Snell et al., 2017; ProtoBERT in Few-NERD, Ding et al.,
  2021): the prototype of label ``c`` is the mean of the support words
  labelled ``c`` (``O`` included: ``O`` gets a prototype like any type), and
  a query word's score for ``c`` is ``-||x - p_c||^2``. Expanding the
  square, ``-||x - p_c||^2 = 2 p_c.x - ||p_c||^2 - ||x||^2``: a linear layer
  with ``W_c = 2 p_c``, ``b_c = -||p_c||^2``, up to ``-||x||^2``, which is
  the same for every class and so changes no prediction and no softmax.
  Meta-training minimises the cross-entropy of the query words under
  ``softmax_c(-||x - p_c||^2)``, computed by the fused kernel
  :func:`metalearn_nlp.kernels.prototype_log_softmax`.
* **NNShot** (Yang and Katiyar, 2020): a query word's score for ``c`` is
  ``-min ||x - s||^2`` over the support words ``s`` labelled ``c``: the
  label of the nearest support word wins. Meta-trained (as Few-NERD does)
  with the cross-entropy of these scores.
* **StructShot** (same paper): NNShot's scores, turned into probabilities,
  decoded by Viterbi with abstract transitions counted on the training
  corpus; see :mod:`metalearn_nlp.learners.viterbi`.

A label with no support word (e.g. ``I-person`` when every support person
is one word long, in BIO, common in 1-shot episodes) has no prototype and no
neighbour. When predicting, it borrows the scores of a label of the same
type that has words (``I-person`` scores as ``B-person``;
:func:`sibling_backoff`): an argmax decoder then picks ``B-person`` (the
lower id wins ties), and StructShot's transitions decide between the two.
``O``, or a type with no word at all, scores -inf. In the meta-training loss,
query words whose label has no support word are left out (the reference
implementations average over an empty set and get NaN). Optionally (``name_weight > 0``) ProtoNet's
prototypes start from the label's *name*, see :class:`ProtoNet`.

Taught in: chapter 3.1 (Prototypical networks: prototypes as class means,
the linear-layer view); chapter 3.2 (Algorithm steps); chapter 4.2;
chapter 5.2 (Few-shot NER with ProtoBERT, NNShot and StructShot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data.episodes import Episode, TaggedSentence
from ..data.tags import parse_tag
from ..encoders import Encoder, Text, WordVectors, eval_mode
from ..kernels import prototype_log_softmax
from .base import EpisodeMismatchError, Learner, Predictor
from .viterbi import AbstractTransitions, estimate_transitions, transition_scores, viterbi_decode

__all__ = [
    "NNShot",
    "ProtoNet",
    "StructShot",
    "class_prototypes",
    "nearest_neighbour_scores",
    "prototype_scores",
    "prototypical_loss",
    "sibling_backoff",
    "squared_distances",
]


# -- functional cores -------------------------------------------------------------------------
def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(n, m)`` matrix of ``||x_i - y_j||^2`` (expanded form, clamped at 0).

    Example:
        >>> squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([[25.]])
    """
    sq = (x * x).sum(1, keepdim=True) - 2.0 * x @ y.t() + (y * y).sum(1)[None, :]
    return sq.clamp_min(0.0)


def class_prototypes(
    vectors: torch.Tensor, labels: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean vector of each class.

    Arguments:
        vectors: ``(n, H)`` support word vectors.
        labels: ``(n,)`` their label ids in ``0..n_classes-1``.
        n_classes: C.

    Returns:
        ``(prototypes, counts)``: ``(C, H)`` means (zeros for a class with no
        word) and ``(C,)`` the number of words of each class.

    Example:
        >>> protos, counts = class_prototypes(torch.tensor([[0.0], [2.0], [5.0]]), torch.tensor([0, 0, 1]), 3)
        >>> protos.squeeze(1).tolist(), counts.tolist()
        ([1.0, 5.0, 0.0], [2, 1, 0])
    """
    sums = torch.zeros(n_classes, vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    sums = sums.index_add(0, labels, vectors)
    counts = torch.bincount(labels, minlength=n_classes)
    return sums / counts.clamp_min(1).to(vectors.dtype)[:, None], counts


def prototype_scores(x: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """``-||x - p_c||^2`` for every word and class; -inf for classes not ``present``.

    Example:
        >>> prototype_scores(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        tensor([[-1., -1.]])
    """
    scores = -squared_distances(x, prototypes)
    if present is not None:
        scores = scores.masked_fill(~present[None, :], float("-inf"))
    return scores


def prototypical_loss(
    x: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of query words under ``softmax_c(-||x - p_c||^2)`` (fused kernel).

    Classes not ``present`` are dropped from the softmax, and words of those
    classes from the mean. With no word left the loss is 0 (with a graph).

    Arguments:
        x: ``(n, H)`` query word vectors.
        labels: ``(n,)`` their label ids.
        prototypes: ``(C, H)``.
        present: ``(C,)`` bool, default all.

    Returns:
        A scalar.
    """
    c = prototypes.shape[0]
    if present is None:
        present = torch.ones(c, dtype=torch.bool, device=prototypes.device)
    compact = torch.cumsum(present.long(), 0) - 1  # old id -> id among present classes
    keep = present[labels]
    if not bool(keep.any()):
        return x.sum() * 0.0 + prototypes.sum() * 0.0
    log_probs = prototype_log_softmax(x[keep], prototypes[present])
    return F.nll_loss(log_probs, compact[labels[keep]])


def nearest_neighbour_scores(
    x: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """NNShot's scores: ``max over support words s of class c of -||x - s||^2``.

    Arguments:
        x: ``(n, H)`` query word vectors.
        support: ``(m, H)`` support word vectors.
        support_labels: ``(m,)`` their label ids.
        n_classes: C.

    Returns:
        ``(n, C)``; -inf for a class with no support word. Differentiable.

    Example:
        >>> s = torch.tensor([[0.0], [1.0], [10.0]])
        >>> nearest_neighbour_scores(torch.tensor([[2.0]]), s, torch.tensor([0, 0, 1]), 3)
        tensor([[ -1., -64., -inf]])
    """
    scores = -squared_distances(x, support)  # (n, m)
    out = torch.full((x.shape[0], n_classes), float("-inf"), dtype=scores.dtype, device=scores.device)
    index = support_labels[None, :].expand_as(scores)
    return out.scatter_reduce(1, index, scores, reduce="amax", include_self=True)


def sibling_backoff(label_names: Sequence[str], scheme: str, present: torch.Tensor) -> torch.Tensor:
    """For each label, the label whose scores it uses: itself, or a same-type label with support words.

    A label that is ``present`` maps to itself; an absent ``B-t``/``I-t``/...
    maps to the first present label of type ``t``; anything else (``O``, or a
    type with no word) maps to itself and keeps its -inf.

    Arguments:
        label_names: the episode's labels.
        scheme: their scheme.
        present: ``(C,)`` bool, labels with at least one support word.

    Returns:
        ``(C,)`` long index: use ``scores[:, index]`` or ``prototypes[index]``.

    Example:
        >>> sibling_backoff(["O", "B-x", "I-x"], "bio", torch.tensor([True, True, False])).tolist()
        [0, 1, 1]
    """
    types = [parse_tag(name, scheme)[1] for name in label_names]
    flags = present.tolist()
    index = []
    for c, type_ in enumerate(types):
        if flags[c] or not type_:
            index.append(c)
        else:
            index.append(next((j for j, t in enumerate(types) if t == type_ and flags[j]), c))
    return torch.tensor(index, device=present.device)


# -- learners ---------------------------------------------------------------------------------
class ProtoNet(Learner):
    """Prototypical network on word vectors (ProtoBERT).

    Arguments:
        encoder: the word encoder.
        dropout (float, default 0.0): dropout on word vectors while
            meta-training (Few-NERD uses 0.5; the encoder's own dropout
            already applies).
        name_weight (float, default 0.0): λ. When positive, each entity
            label's prototype starts from the embedding ``e_t`` of its
            type's name or description (see :mod:`.zeroshot`) and the
            support words update it like λ pseudo-observations:
            ``p_c = (sum of support vectors of c + λ e_t) / (n_c + λ)``.
            ``λ = 0`` is plain ProtoNet; as ``n_c`` grows the support mean
            dominates; a label with no support word gets ``e_t``. ``O`` has
            no name and keeps its support mean.
        descriptions: ``{type: text}`` overriding the default descriptions
            (only used with ``name_weight > 0``).
        batch_size (int, default 32): sentences per forward pass when predicting.

    Example:
        >>> learner = ProtoNet(load_encoder())  # doctest: +SKIP
        >>> learner.adapt(episode).predict(episode.query)  # doctest: +SKIP

    References:
        Snell, Swersky and Zemel (2017), Prototypical Networks for Few-shot
        Learning. Ding et al. (2021), Few-NERD, ``model/proto.py``.

    Taught in: chapter 3.1; chapter 3.2; chapter 4.2; chapter 5.2.
    """

    name = "protonet"

    def __init__(
        self,
        encoder: Encoder,
        *,
        dropout: float = 0.0,
        name_weight: float = 0.0,
        descriptions: Mapping[str, str] | None = None,
        batch_size: int = 32,
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if name_weight < 0:
            raise ValueError(f"name_weight must be >= 0, got {name_weight}")
        self.dropout = dropout
        self.name_weight = name_weight
        self.descriptions = dict(descriptions or {})

    def _hyperparameters(self) -> dict[str, Any]:
        return {"dropout": self.dropout, "name_weight": self.name_weight}

    def prototypes(self, support: WordVectors, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prototypes (C, H), present (C,))`` from support word vectors."""
        c = len(episode.label_names)
        protos, counts = class_prototypes(support.vectors, support.labels, c)
        if self.name_weight > 0:
            from .zeroshot import label_name_vectors

            names, has_name = label_name_vectors(self.encoder, episode, self.descriptions)
            lam = self.name_weight
            weight = counts.to(protos.dtype)[:, None]
            sums = protos * weight
            blended = (sums + lam * names) / (weight + lam)
            protos = torch.where(has_name[:, None], blended, protos)
            present = (counts > 0) | has_name
        else:
            present = counts > 0
        return protos, present

    def _loss(self, episode: Episode) -> torch.Tensor:
        support, query = self._embed_episode(episode)
        if self.dropout:
            support = _dropout(support, self.dropout, self.training)
            query = _dropout(query, self.dropout, self.training)
        protos, present = self.prototypes(support, episode)
        return prototypical_loss(query.vectors, query.labels, protos, present)

    @torch.no_grad()
    def _adapt(self, support: Episode) -> Predictor:
        with eval_mode(self.encoder):
            words, _ = self._embed_episode(support, with_query=False)
            protos, present = self.prototypes(words, support)
        index = sibling_backoff(support.label_names, support.scheme, present)
        protos, present = protos[index].detach(), present[index].detach()
        predictor = self._predictor(lambda x: prototype_scores(x, protos, present), support)
        predictor.prototypes = protos  # type: ignore[attr-defined]
        predictor.present = present  # type: ignore[attr-defined]
        return predictor


def _dropout(words: WordVectors, p: float, training: bool) -> WordVectors:
    return dataclasses.replace(words, vectors=F.dropout(words.vectors, p, training))


class NNShot(Learner):
    """Nearest-neighbour tagger: each query word takes the label of its nearest support word.

    Arguments:
        encoder: the word encoder.
        normalize (bool, default False): L2-normalise word vectors before
            the distance. Few-NERD's NNShot does not; Yang and Katiyar's
            released code does (``_euclidean_metric(..., normalize=True)``),
            which bounds squared distances to ``[0, 4]``.
        dropout (float, default 0.0): dropout on word vectors while meta-training.
        batch_size (int, default 32): sentences per forward pass when predicting.

    Example:
        >>> predictor = NNShot(load_encoder()).adapt(episode)  # doctest: +SKIP
        >>> predictor.logits(episode.query)[0].shape  # (words, labels)  # doctest: +SKIP

    References:
        Yang and Katiyar (2020), Simple and Effective Few-Shot Named Entity
        Recognition with Structured Nearest Neighbor Learning, EMNLP.
        Few-NERD ``model/nnshot.py``.

    Taught in: chapter 3.2; chapter 5.2.
    """

    name = "nnshot"

    def __init__(
        self, encoder: Encoder, *, normalize: bool = False, dropout: float = 0.0, batch_size: int = 32
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        self.normalize = normalize
        self.dropout = dropout

    def _hyperparameters(self) -> dict[str, Any]:
        return {"normalize": self.normalize, "dropout": self.dropout}

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def _loss(self, episode: Episode) -> torch.Tensor:
        support, query = self._embed_episode(episode)
        if self.dropout:
            support = _dropout(support, self.dropout, self.training)
            query = _dropout(query, self.dropout, self.training)
        c = len(episode.label_names)
        scores = nearest_neighbour_scores(
            self._prepare(query.vectors), self._prepare(support.vectors), support.labels, c
        )
        present = torch.bincount(support.labels, minlength=c) > 0
        keep = present[query.labels]
        if not bool(keep.any()):
            return scores.nan_to_num(0.0, 0.0, 0.0).sum() * 0.0
        return F.cross_entropy(scores[keep], query.labels[keep])

    def _support_vectors(self, support: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), eval_mode(self.encoder):
            words, _ = self._embed_episode(support, with_query=False)
        return self._prepare(words.vectors).detach(), words.labels.detach()

    def _scorer(self, support: Episode):
        """The per-word score function of an adapted episode (NNShot scores with sibling back-off)."""
        vectors, labels = self._support_vectors(support)
        c = len(support.label_names)
        index = sibling_backoff(support.label_names, support.scheme, torch.bincount(labels, minlength=c) > 0)
        return lambda x: nearest_neighbour_scores(self._prepare(x), vectors, labels, c)[:, index]

    def _adapt(self, support: Episode) -> Predictor:
        return self._predictor(self._scorer(support), support)


class StructShot(NNShot):
    """NNShot's scores decoded by Viterbi with abstract transitions (Yang and Katiyar, 2020).

    Emissions: NNShot's scores ``s`` turned into log-probabilities with a
    temperature, ``log softmax(s / temperature)``. Transitions: abstract
    transitions counted on the training corpus, spread over the episode's
    labels and re-normalised with ``tau`` (:func:`.viterbi.transition_scores`).
    Viterbi finds the tag path maximising the sum of both.

    The two temperatures are related: dividing emissions by ``T`` gives the
    same Viterbi path as multiplying the log-transitions by ``T`` (the
    softmax's log-normaliser is the same for every label at a position).
    Few-NERD and the original code set the emission temperature to 1 and
    tune ``tau``; ``tau`` additionally re-normalises each row.

    Meta-training is NNShot's (the loss ignores the transitions), as in Few-NERD.

    Arguments:
        encoder: the word encoder.
        transitions: from ``estimate_transitions(train_sentences, scheme)``.
        train_sentences: alternatively, training sentences (BIO) to count
            them on, in ``scheme``.
        scheme (str, default ``"io"``): scheme for ``train_sentences``.
        tau (float, default 0.05): transition temperature (Few-NERD's default;
            the StructShot code uses 0.1).
        temperature (float, default 1.0): emission temperature.
        normalize, dropout, batch_size: as ``NNShot``.

    Raises:
        ValueError: neither or both of ``transitions`` and ``train_sentences``.

    Example:
        >>> learner = StructShot(load_encoder(), train_sentences=groups["train"], tau=0.05)  # doctest: +SKIP
        >>> learner.adapt(episode).predict(episode.query)  # Viterbi paths  # doctest: +SKIP

    References:
        Yang and Katiyar (2020), EMNLP, section 3.2; asappresearch/structshot
        ``run_pl_pred.py``. Few-NERD ``util/framework.py`` (``viterbi_decode``)
        and ``util/viterbi.py``.

    Taught in: chapter 3.2; chapter 4.2; chapter 5.2.
    """

    name = "structshot"

    def __init__(
        self,
        encoder: Encoder,
        transitions: AbstractTransitions | None = None,
        *,
        train_sentences: Sequence[TaggedSentence] | None = None,
        scheme: str = "io",
        tau: float = 0.05,
        temperature: float = 1.0,
        normalize: bool = False,
        dropout: float = 0.0,
        batch_size: int = 32,
    ) -> None:
        super().__init__(encoder, normalize=normalize, dropout=dropout, batch_size=batch_size)
        if (transitions is None) == (train_sentences is None):
            raise ValueError(
                "StructShot needs abstract transitions counted on the training corpus: pass either "
                "transitions=estimate_transitions(train_sentences, scheme) or train_sentences= (not both)"
            )
        if transitions is None:
            transitions = estimate_transitions(train_sentences, scheme)  # type: ignore[arg-type]
        if tau <= 0 or temperature <= 0:
            raise ValueError(f"tau and temperature must be positive, got tau={tau}, temperature={temperature}")
        self.transitions = transitions
        self.tau = tau
        self.temperature = temperature
        self.schemes = (transitions.scheme,)

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "tau": self.tau, "temperature": self.temperature,
                "transitions": self.transitions.to_dict()}

    def check_episode(self, episode: Episode) -> None:
        if isinstance(episode, Episode) and episode.scheme != self.transitions.scheme:
            raise EpisodeMismatchError(
                f"StructShot's transitions were counted in {self.transitions.scheme!r} but the episode is "
                f"{episode.scheme!r}; count them in the episode's scheme: "
                f"estimate_transitions(train_sentences, {episode.scheme!r})"
            )
        super().check_episode(episode)

    def _adapt(self, support: Episode) -> Predictor:
        start, trans = transition_scores(self.transitions, support.label_names, tau=self.tau)
        base = self._predictor(self._scorer(support), support)
        return ViterbiPredictor(base, start, trans, self.temperature)


class ViterbiPredictor(Predictor):
    """Wraps a predictor: same ``logits``, but ``predict`` decodes them with Viterbi.

    Arguments:
        base: the predictor giving per-word scores.
        start, transitions: ``(C,)`` and ``(C, C)`` log-transition scores.
        temperature: emissions are ``log_softmax(logits / temperature)``.
    """

    def __init__(self, base: Predictor, start: torch.Tensor, transitions: torch.Tensor, temperature: float = 1.0):
        super().__init__(base.label_names, base.scheme, base.types)
        self.base = base
        self.start = start
        self.transitions = transitions
        self.temperature = temperature

    def logits(self, sentences: Sequence[Text]) -> list[torch.Tensor]:
        return self.base.logits(sentences)

    def emissions(self, sentences: Sequence[Text]) -> list[torch.Tensor]:
        """Per-sentence ``(len, C)`` emission log-probabilities."""
        return [torch.log_softmax(row / self.temperature, dim=-1) for row in self.logits(sentences)]

    def predict(self, sentences: Sequence[Text]) -> list[list[str]]:
        emissions = self.emissions(sentences)
        if not emissions:
            return []
        lengths = torch.tensor([e.shape[0] for e in emissions])
        padded = torch.nn.utils.rnn.pad_sequence(emissions, batch_first=True)
        mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
        paths, _ = viterbi_decode(padded, self.transitions, self.start, mask=mask)
        return [[self.label_names[i] for i in path[:n].tolist()] for path, n in zip(paths, lengths.tolist())]
