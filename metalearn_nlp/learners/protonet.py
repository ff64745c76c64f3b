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
  ``softmax_c(-||x - p_c||^2)``, computed by the fused loss
  :func:`metalearn_nlp.kernels.prototype_nll`.
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
:func:`~metalearn_nlp.learners.metric.sibling_backoff`): an argmax decoder then picks ``B-person`` (the
lower id wins ties), and StructShot's transitions decide between the two.
``O``, or a type with no word at all, scores -inf. In the meta-training loss,
query words whose label has no support word are left out (the reference
implementations average over an empty set and get NaN). Optionally (``name_weight > 0``) ProtoNet's
prototypes start from the label's *name*, see :class:`ProtoNet`.

The distances, prototypes, scores and losses are pure functions in
:mod:`metalearn_nlp.learners.metric`, shared with zero-shot tagging; this
module holds the learners built on them.

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

from ..data.episode import Episode, TaggedSentence
from ..encoders import Encoder, Text, WordVectors, eval_mode
from .base import EpisodeMismatchError, Learner, Predictor, o_bias_vector
from .metric import (
    class_prototypes,
    label_name_vectors,
    nearest_neighbour_scores,
    prototype_scores,
    prototypical_loss,
    sibling_backoff,
)
from .viterbi import AbstractTransitions, estimate_transitions, transition_scores, viterbi_decode

__all__ = ["NNShot", "ProtoNet", "StructShot", "ViterbiPredictor"]


class ProtoNet(Learner):
    """Prototypical network on word vectors (ProtoBERT).

    Arguments:
        encoder: the word encoder.
        dropout (float, default 0.0): dropout on word vectors while
            meta-training (Few-NERD uses 0.5; the encoder's own dropout
            already applies).
        name_weight (float, default 0.0): λ. When positive, each entity
            label's prototype starts from the embedding ``e_t`` of its
            type's name or description (see :mod:`.metric`) and the
            support words update it like λ pseudo-observations:
            ``p_c = (sum of support vectors of c + λ e_t) / (n_c + λ)``.
            ``λ = 0`` is plain ProtoNet; as ``n_c`` grows the support mean
            dominates; a label with no support word gets ``e_t``. ``O`` has
            no name and keeps its support mean.
        descriptions: ``{type: text}`` overriding the default descriptions
            (only used with ``name_weight > 0``).
        batch_size (int, default 32): sentences per forward pass when predicting.
        shape_dim (int, default 0): when positive, a learned word-shape
            embedding of this width is concatenated to every word vector
            (:mod:`metalearn_nlp.features`; chapter 5.5). 0: none.
        o_bias (float, default 0): added to every word's ``O`` score at
            prediction: a label-prior correction for a target domain whose
            words are names less (> 0) or more (< 0) often than the source's.
            Adaptation-only (``adaptation_options``; chapter 5.5).

    Example:
        >>> learner = ProtoNet(load_encoder())  # doctest: +SKIP
        >>> learner.adapt(episode).predict(episode.query)  # doctest: +SKIP

    References:
        Snell, Swersky and Zemel (2017), Prototypical Networks for Few-shot
        Learning. Ding et al. (2021), Few-NERD, ``model/proto.py``.

    Taught in: chapter 3.1; chapter 3.2; chapter 4.2; chapter 5.2.
    """

    name = "protonet"
    adaptation_options = ("o_bias",)

    def __init__(
        self,
        encoder: Encoder,
        *,
        dropout: float = 0.0,
        name_weight: float = 0.0,
        descriptions: Mapping[str, str] | None = None,
        batch_size: int = 32,
        shape_dim: int = 0,
        o_bias: float = 0.0,
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if name_weight < 0:
            raise ValueError(f"name_weight must be >= 0, got {name_weight}")
        if name_weight > 0 and shape_dim:
            raise ValueError("name_weight > 0 and shape_dim > 0 cannot be combined: type-name vectors have no "
                             "word shape; use one of them")
        self.dropout = dropout
        self.name_weight = name_weight
        self.descriptions = dict(descriptions or {})
        self.o_bias = float(o_bias)
        self._use_shapes(shape_dim)

    def _hyperparameters(self) -> dict[str, Any]:
        shape = {"shape_dim": self.shape_dim} if self.shape_dim else {}  # absent by default: old configs unchanged
        bias = {"o_bias": self.o_bias} if self.o_bias else {}
        return {"dropout": self.dropout, "name_weight": self.name_weight, "descriptions": dict(self.descriptions),
                **shape, **bias}

    def prototypes(self, support: WordVectors, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prototypes (C, H), present (C,))`` from support word vectors."""
        c = len(episode.label_names)
        protos, counts = class_prototypes(support.vectors, support.labels, c)
        if self.name_weight > 0:
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
        if self.o_bias:  # the O log-odds shifted for the target domain (adaptation only; chapter 5.5)
            bias = o_bias_vector(support.label_names, self.o_bias, protos.device)
            predictor = self._predictor(lambda x: prototype_scores(x, protos, present) + bias, support)
        else:
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
        shape_dim (int, default 0): width of a learned word-shape embedding
            concatenated to word vectors (:mod:`metalearn_nlp.features`); 0: none.

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
        self, encoder: Encoder, *, normalize: bool = False, dropout: float = 0.0, batch_size: int = 32,
        shape_dim: int = 0,
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        self.normalize = normalize
        self.dropout = dropout
        self._use_shapes(shape_dim)

    def _hyperparameters(self) -> dict[str, Any]:
        shape = {"shape_dim": self.shape_dim} if self.shape_dim else {}  # absent by default: old configs unchanged
        return {"normalize": self.normalize, "dropout": self.dropout, **shape}

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
        padded = torch.nn.utils.rnn.pad_sequence(emissions, batch_first=True)
        lengths = torch.tensor([e.shape[0] for e in emissions], device=padded.device)
        mask = torch.arange(padded.shape[1], device=padded.device)[None, :] < lengths[:, None]
        paths, _ = viterbi_decode(padded, self.transitions, self.start, mask=mask)
        return [[self.label_names[i] for i in path[:n].tolist()] for path, n in zip(paths, lengths.tolist())]
