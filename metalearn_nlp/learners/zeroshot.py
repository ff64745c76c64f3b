"""Zero-shot tagging from type names: prototypes from descriptions and a distance threshold for ``O``.

**Type prototypes from names.** With no support example, a type's prototype
is the encoder's embedding of its name or a short description
(:func:`~metalearn_nlp.learners.metric.describe`,
:func:`~metalearn_nlp.learners.metric.embed_descriptions`;
``"geo-loc"`` -> ``"location"``). The description machinery, with its
defaults :data:`~metalearn_nlp.learners.metric.DESCRIPTIONS`, lives in
:mod:`metalearn_nlp.learners.metric`, which ProtoNet shares.

**The geometry.** Contextual word vectors are anisotropic: they share a
large common component, so raw Euclidean distances mostly measure how
"typical" a vector is. On WNUT-16 with the offline MiniLM, raw distances
to the type descriptions rank ``O`` words *closer* than entity words (AUC
0.24), while after subtracting the corpus mean word vector and normalising
to unit length (cosine geometry) entity words are closer (AUC 0.60) and the
nearest description has the right type for half of the entity words (chance:
a fifth). So by default (``normalize=True``) every vector, word or
description, is mapped by ``f(x) = (x - μ) / ||x - μ||``, with ``μ`` the mean
word vector of the training sentences (estimated by ``calibrate``, not type
specific), and distances are ``||f(x) - f(e_t)||^2 = 2 - 2 cos``
(Ethayarajh, 2019, on anisotropy; Mu and Viswanath, 2018, on removing the
common mean). Zero-shot with an encoder that was never meta-trained stays
weak; meta-training with this learner's ``loss`` is the way up.

**O.** ``O`` has no name: "not an entity" is not a thing a description can
point at, and the ``O`` words of a corpus (function words, verbs, numbers)
are spread all over the space, so neither a name nor a mean of ``O`` words
makes a useful prototype. Instead ``O`` gets a constant score, a **distance
threshold**: a word's scores are ``-θ`` for ``O`` and ``-||x - e_t||^2`` for
type ``t``, so a word is tagged with its nearest type when that type is
closer than ``sqrt(θ)``, and ``O`` otherwise. ``θ`` is one number, not
type-specific, so it transfers to new types under one assumption (say so
when reporting): mentions sit about as far from their type's description for
the test types as for the training types. It is *estimated* on the
training corpus by :meth:`ZeroShot.calibrate` (the θ among quantiles of the
nearest-type distances that maximises entity-level F1 on training sentences,
with the training types' own descriptions) and can then be *learned* with the
encoder by meta-training (``loss`` is the cross-entropy of these scores; θ is
a parameter).

**Few-shot prototypes initialised from names** live in
:class:`~metalearn_nlp.learners.protonet.ProtoNet` (``name_weight``), which
calls :func:`~metalearn_nlp.learners.metric.label_name_vectors`.

Taught in: chapter 3.2 (zero-shot prototypes); chapter 5.2 (Source code).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.episode import Episode, TaggedSentence
from ..data.tags import convert_tags, entity_scores, parse_tag, spans
from ..encoders import Encoder, Text, eval_mode
from .base import Learner, Predictor, WordScorePredictor
from .metric import describe, embed_descriptions, io_index, squared_distances

__all__ = ["ZeroShot", "ZeroShotPredictor"]

class ZeroShot(Learner):
    """Tag with type-name prototypes and a distance threshold for ``O``: no support examples.

    Arguments:
        encoder: the word encoder.
        descriptions: ``{type: text}`` overriding
            :data:`~metalearn_nlp.learners.metric.DESCRIPTIONS`.
        o_threshold (float | None): θ, the squared distance under which a
            word joins its nearest type. None: estimate it with
            ``calibrate`` (or pass ``train_sentences``).
        train_sentences: training sentences (BIO) to calibrate θ and μ on now.
        max_sentences (int, default 200): sentences ``calibrate`` uses.
        normalize (bool, default True): centre on μ and normalise (see the
            module docstring); False: raw squared distances. Before
            ``calibrate`` runs, μ is 0.
        batch_size (int, default 32): sentences per forward pass.

    Example:
        >>> learner = ZeroShot(load_encoder(), train_sentences=groups["train"])  # doctest: +SKIP
        >>> learner.adapt(Episode([], [], ["musicartist"], "io")).predict(["Adele sings"])  # doctest: +SKIP

    References:
        Ethayarajh (2019), How Contextual are Contextualized Word
        Representations?, EMNLP (anisotropy). Mu and Viswanath (2018),
        All-but-the-Top, ICLR (removing the common mean).
        Prototypes from label names as in zero-shot slot filling and NER with
        label semantics (e.g. Hou et al., 2020, "Few-shot slot tagging with
        collapsed dependency transfer and label-enhanced task-adaptive
        projection network", ACL; Ma et al., 2022, "Label semantics for
        few shot named entity recognition", Findings of ACL).

    Taught in: chapter 3.2; chapter 5.2.
    """

    name = "zeroshot"
    needs_support = False

    def __init__(
        self,
        encoder: Encoder,
        *,
        descriptions: Mapping[str, str] | None = None,
        o_threshold: float | None = None,
        train_sentences: Sequence[TaggedSentence] | None = None,
        max_sentences: int = 200,
        normalize: bool = True,
        batch_size: int = 32,
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        self.descriptions = dict(descriptions or {})
        self.max_sentences = max_sentences
        self.normalize = normalize
        self.register_buffer("center", torch.zeros(encoder.hidden_size, device=encoder.device))
        if o_threshold is not None and o_threshold <= 0:
            raise ValueError(f"o_threshold is a squared distance and must be positive, got {o_threshold}")
        self.log_threshold = nn.Parameter(torch.tensor(math.log(o_threshold) if o_threshold else 0.0,
                                                       device=encoder.device))
        self.register_buffer("calibrated", torch.tensor(o_threshold is not None, device=encoder.device))
        if train_sentences is not None:
            self.calibrate(train_sentences)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"o_threshold": self.o_threshold, "normalize": self.normalize, "descriptions": dict(self.descriptions),
                "max_sentences": self.max_sentences}

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Centre on the corpus mean word vector, then (``normalize``) scale to unit length."""
        x = x - self.center.to(x.device, x.dtype)
        return F.normalize(x, dim=-1) if self.normalize else x

    @property
    def o_threshold(self) -> float | None:
        """θ, or None before calibration."""
        return self.log_threshold.detach().exp().item() if bool(self.calibrated) else None

    def io_scores(self, x: torch.Tensor, type_vectors: torch.Tensor) -> torch.Tensor:
        """``(n, 1 + N)``: ``-θ`` for ``O`` then ``-||f(x) - f(e_t)||^2`` for each type (``f = transform``)."""
        distances = squared_distances(self.transform(x), self.transform(type_vectors))
        threshold = self.log_threshold.exp().to(x.device, x.dtype).expand(x.shape[0], 1)
        return torch.cat([-threshold, -distances], dim=1)

    @torch.no_grad()
    def calibrate(self, sentences: Sequence[TaggedSentence], *, candidates: int = 64) -> float:
        """Estimate μ and θ on training sentences (BIO tags).

        μ is the mean word vector of the sentences. Then θ is the cut of
        nearest-type distances with the best F1:
        Each word's squared distance to its nearest training-type
        description is computed once; the candidate thresholds are
        ``candidates`` evenly spaced midpoints between consecutive observed
        distances (so no word sits exactly on θ), and θ is the one that
        maximises the pooled entity-level F1 (IO) of the resulting tags
        against the gold tags (the smallest such θ on ties).

        Arguments:
            sentences: tagged sentences of the training types (the first
                ``max_sentences`` are used).
            candidates (int, default 64): thresholds tried.

        Returns:
            θ (also stored in the learner).
        """
        items = [s for s in sentences][: self.max_sentences]
        gold = [convert_tags(s.tags, "bio", "io") for s in items]
        types = sorted({span.type for tags in gold for span in spans(tags, "io")})
        if not types:
            raise ValueError("calibrate needs sentences with entities (BIO tags)")
        with eval_mode(self.encoder):
            vectors = embed_descriptions(self.encoder, [describe(t, self.descriptions) for t in types])
            batches = [self.encoder.encode([s.tokens for s in items[start : start + self.batch_size]])
                       for start in range(0, len(items), self.batch_size)]
        self.center.copy_(torch.cat([words.vectors.float() for words in batches]).mean(0))
        nearest: list[torch.Tensor] = []
        which: list[torch.Tensor] = []
        for words in batches:
            d = squared_distances(self.transform(words.vectors.float()), self.transform(vectors))
            value, arg = d.min(1)
            fill = torch.tensor([float("inf"), -1.0], device=d.device)
            for row in words.per_sentence(torch.stack([value, arg.float()], 1), fill):
                nearest.append(row[:, 0].cpu())
                which.append(row[:, 1].long().cpu())
        flat = torch.cat(nearest).double()
        values = torch.unique(flat[torch.isfinite(flat)])  # sorted
        # thresholds strictly between observed distances (midpoints), so no word ties with θ
        cuts = torch.cat([values[:1] / 2, (values[:-1] + values[1:]) / 2, values[-1:] * 2])
        grid = cuts[torch.linspace(0, len(cuts) - 1, candidates, device=cuts.device).round().long().unique()].tolist()
        best = (-1.0, grid[0])
        for theta in grid:
            predicted = [
                [types[w] if d < theta else "O" for d, w in zip(dist.tolist(), arg.tolist())]
                for dist, arg in zip(nearest, which)
            ]
            f1 = entity_scores(gold, predicted, scheme="io").f1
            if f1 > best[0]:
                best = (f1, theta)
        self.log_threshold.data.fill_(math.log(best[1]))
        self.calibrated.fill_(True)
        self.calibration_f1 = best[0]
        return best[1]

    def _check_calibrated(self) -> None:
        if not bool(self.calibrated):
            raise RuntimeError(
                "ZeroShot has no O threshold yet: call learner.calibrate(train_sentences) on training "
                "sentences, pass train_sentences= or o_threshold= when creating it, or meta-train it"
            )

    def _loss(self, episode: Episode) -> torch.Tensor:
        sentences = list(episode.support) + list(episode.query)
        words = self.encoder.encode(sentences, episode)
        vectors = embed_descriptions(self.encoder, [describe(t, self.descriptions) for t in episode.types])
        scores = self.io_scores(words.vectors.float(), vectors)
        return F.cross_entropy(scores, io_index(episode, scores.device)[words.labels.to(scores.device)])

    @torch.no_grad()
    def _adapt(self, support: Episode) -> Predictor:
        self._check_calibrated()
        with eval_mode(self.encoder):
            vectors = embed_descriptions(self.encoder, [describe(t, self.descriptions) for t in support.types])
        index = io_index(support, vectors.device)
        threshold = self.log_threshold.detach().exp().item()

        vectors = self.transform(vectors)

        def score(x: torch.Tensor) -> torch.Tensor:
            distances = squared_distances(self.transform(x), vectors)
            io = torch.cat([torch.full_like(distances[:, :1], -threshold), -distances], dim=1)
            return io[:, index]

        predictor = ZeroShotPredictor(self.encoder, score, support.label_names, support.scheme, support.types,
                                      batch_size=self.batch_size)
        predictor.type_vectors = vectors  # type: ignore[attr-defined]
        return predictor


class ZeroShotPredictor(WordScorePredictor):
    """Scores are per type; ``B-t`` and ``I-t`` share them, so tags are decoded in IO and converted."""

    def predict(self, sentences: Sequence[Text]) -> list[list[str]]:
        columns = [0] + [self.label_names.index(_first_label(self.label_names, t, self.scheme)) for t in self.types]
        out = []
        for row in self.logits(sentences):
            io = [["O", *self.types][i] for i in row[:, columns].argmax(-1).tolist()]
            out.append(convert_tags(io, "io", self.scheme) if self.scheme != "io" else io)
        return out


def _first_label(label_names: Sequence[str], type_: str, scheme: str) -> str:
    return next(name for name in label_names if name != "O" and parse_tag(name, scheme)[1] == type_)
