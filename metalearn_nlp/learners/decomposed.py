"""Decomposed few-shot NER: find the mentions first, then name them (after Ma et al., 2022).

A token-level ProtoNet asks one softmax to do two jobs at once: decide
whether a word is part of a name at all, and which of the episode's types it
is. In a 1-shot episode the ``O`` prototype is the mean of hundreds of
unrelated words and each type's prototype the mean of one or two, so ``O``
wins almost everywhere and recall collapses. The decomposed learner splits
the jobs:

1. **Mention detection (type-agnostic).** A linear head ``D`` over word
   vectors tags each word ``O``, ``B`` or ``I`` (begin / inside a mention
   of *any* type). Detection does not depend on the episode's types, so
   ``D`` and the encoder are trained on every word of every source episode
   and transfer directly; ``detect_steps > 0`` additionally fine-tunes a copy
   of ``D`` on the support set's words (an adaptation step).
2. **Span typing (a ProtoNet over spans).** A span's vector is the mean of
   its word vectors, ``z = mean_{i in span} h_i``. The prototype of type
   ``t`` is the mean of the support spans of ``t``, ``p_t``, and a detected
   span gets ``P(t | z) = softmax_t(-||z - p_t||^2)``. There is no ``O``
   prototype: ``O`` was decided by step 1.

Meta-training minimises the sum of both cross-entropies on each training
episode: ``L = CE(D(h_i), bio_i)`` over every support and query word, plus
``typing_weight * CE(-||z - p_t||^2, t)`` over the query's gold spans with
prototypes from the support's gold spans (spans of types absent from the
support are left out).

Prediction: detect spans (argmax of ``D``, read as BIO), type each, write the
typed spans in the episode's scheme. :func:`decomposition_scores` reports
detection F1 (untyped spans) and typing accuracy (on gold spans) separately;
:func:`metalearn_nlp.evaluation.evaluate` gives the end-to-end F1.

Differences from Ma et al. (2022): their detector and typer are adapted with
MAML on the support set and are separate BERTs; here one encoder is shared,
the detector is adapted (optionally) by plain fine-tuning of its head, and
typing uses plain prototypes.

Taught in: chapter 5.5 (better few-shot NER).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.episode import Episode, TaggedSentence
from ..data.tags import Span, spans, spans_to_tags
from ..encoders import Encoder, Text, WordVectors, as_sentences, eval_mode
from .base import Learner, Predictor, no_entity_row

__all__ = ["DETECTION_TAGS", "Decomposed", "DecomposedPredictor", "decomposition_scores", "span_vectors"]

#: The detector's labels, in id order.
DETECTION_TAGS = ("O", "B", "I")


def detection_labels(words: WordVectors, gold: Sequence[Sequence[Span]]) -> torch.Tensor:
    """Type-agnostic BIO ids (``DETECTION_TAGS``) of each word row, from each sentence's gold spans."""
    per_sentence = []
    for sentence_spans, length in zip(gold, words.lengths):
        tags = [0] * length
        for span in sentence_spans:
            tags[span.start] = 1
            for i in range(span.start + 1, span.end):
                tags[i] = 2
        per_sentence.append(tags)
    ids = [per_sentence[s][p] for s, p in zip(words.sentence.tolist(), words.position.tolist())]
    return torch.tensor(ids, dtype=torch.long, device=words.vectors.device)


def span_vectors(words: WordVectors, sentence_spans: Sequence[tuple[int, Span]]) -> tuple[torch.Tensor, list[int]]:
    """Mean word vector of each ``(sentence, span)``; spans with no kept word (truncated) are dropped.

    Returns:
        ``(vectors (m, H), kept)``: ``kept`` lists the indices (into ``sentence_spans``) of the rows.

    Example:
        >>> z, kept = span_vectors(words, [(0, Span("person", 0, 2))])  # doctest: +SKIP
    """
    rows = {(s, p): i for i, (s, p) in enumerate(zip(words.sentence.tolist(), words.position.tolist()))}
    out, kept = [], []
    for k, (s, span) in enumerate(sentence_spans):
        index = [rows[(s, p)] for p in range(span.start, span.end) if (s, p) in rows]
        if index:
            out.append(words.vectors[index].mean(0))
            kept.append(k)
    if not out:
        return words.vectors.new_zeros((0, words.vectors.shape[1])), kept
    return torch.stack(out), kept


def _typing_scores(z: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    scores = -torch.cdist(z, prototypes).pow(2)
    return scores.masked_fill(~present, float("-inf"))


class Decomposed(Learner):
    """Type-agnostic mention detector + span typing against support-span prototypes.

    Arguments:
        encoder: the word encoder (shared by detection and typing).
        typing_weight (float, default 1.0): weight of the typing loss in meta-training.
        detect_steps (int, default 0): steps of fine-tuning a copy of the
            detector head on the support set's words at adaptation (0: the
            meta-trained detector as it is).
        detect_lr (float, default 1e-3): learning rate of that fine-tuning.
        o_bias (float, default 0): added to the detector's ``O`` logit at adaptation: fewer
            proposed mentions (> 0) for a target domain whose words are names less often than
            the source's. Adaptation-only, like ``detect_steps`` and ``detect_lr``
            (``adaptation_options``): choose them on target dev episodes.
        shape_dim (int, default 0): width of a learned word-shape embedding
            concatenated to the word vectors (:mod:`metalearn_nlp.features`); 0: none.
        batch_size (int, default 32): sentences per forward pass when predicting.

    Raises:
        ValueError: a negative ``typing_weight`` or ``detect_steps``.

    Example:
        >>> learner = Decomposed(load_encoder(), shape_dim=16)  # doctest: +SKIP
        >>> meta_train(learner, sampler, steps=300, dev_episodes=dev)  # doctest: +SKIP
        >>> learner.adapt(episode).predict(episode.query)  # doctest: +SKIP

    References:
        Ma et al. (2022), Decomposed Meta-Learning for Few-Shot Named Entity
        Recognition, Findings of ACL.

    Taught in: chapter 5.5.
    """

    name = "decomposed"
    schemes = ("io", "bio")
    adaptation_options = ("detect_steps", "detect_lr", "o_bias")

    def __init__(self, encoder: Encoder, *, typing_weight: float = 1.0, detect_steps: int = 0,
                 detect_lr: float = 1e-3, o_bias: float = 0.0, shape_dim: int = 0, batch_size: int = 32) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if typing_weight < 0 or detect_steps < 0:
            raise ValueError(f"typing_weight and detect_steps must be >= 0, got {typing_weight}, {detect_steps}")
        self.typing_weight = typing_weight
        self.detect_steps = detect_steps
        self.detect_lr = detect_lr
        self.o_bias = float(o_bias)
        self._use_shapes(shape_dim)
        self.detector = torch.nn.utils.skip_init(nn.Linear, encoder.hidden_size + shape_dim, len(DETECTION_TAGS))
        with torch.no_grad():  # start at zero (ties: argmax says O everywhere) without drawing random numbers
            self.detector.weight.zero_()
            self.detector.bias.zero_()
        self.detector.to(encoder.device)

    def _check_adaptation(self) -> None:
        super()._check_adaptation()
        steps = self.detect_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"detect_steps must be an integer >= 0, got {steps!r}")

    def _hyperparameters(self) -> dict[str, Any]:
        bias = {"o_bias": self.o_bias} if self.o_bias else {}  # absent by default: old configs unchanged
        return {"typing_weight": self.typing_weight, "detect_steps": self.detect_steps,
                "detect_lr": self.detect_lr, **bias, "shape_dim": self.shape_dim}

    @staticmethod
    def _gold(sentences: Iterable[TaggedSentence], scheme: str) -> list[list[Span]]:
        return [spans(s.tags, scheme) for s in sentences]

    def prototypes(self, words: WordVectors, gold: Sequence[Sequence[Span]],
                   types: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prototypes (T, H), present (T,))``: the mean support-span vector of each episode type."""
        flat = [(s, span) for s, sentence_spans in enumerate(gold) for span in sentence_spans]
        z, kept = span_vectors(words, flat)
        index = {t: i for i, t in enumerate(types)}
        labels = torch.tensor([index[flat[k][1].type] for k in kept], dtype=torch.long, device=z.device)
        sums = z.new_zeros((len(types), z.shape[1])).index_add_(0, labels, z)
        counts = torch.bincount(labels, minlength=len(types))
        return sums / counts.clamp(min=1)[:, None].to(z.dtype), counts > 0

    def _loss(self, episode: Episode) -> torch.Tensor:
        support, query = self._embed_episode(episode)
        gold_support = self._gold(episode.support, episode.scheme)
        gold_query = self._gold(episode.query, episode.scheme)
        vectors = torch.cat([support.vectors, query.vectors])
        gold_all = gold_support + gold_query  # word rows carry episode-wide sentence ids
        targets = torch.cat([detection_labels(support, gold_all), detection_labels(query, gold_all)])
        loss = F.cross_entropy(self.detector(vectors), targets)
        protos, present = self.prototypes(support, gold_support, episode.types)
        # query sentence ids are offset by the support size in _embed_episode
        offset = len(episode.support)
        flat = [(offset + s, span) for s, sentence_spans in enumerate(gold_query) for span in sentence_spans]
        z, kept = span_vectors(query, flat)
        if z.shape[0] and self.typing_weight:
            index = {t: i for i, t in enumerate(episode.types)}
            labels = torch.tensor([index[flat[k][1].type] for k in kept], dtype=torch.long, device=z.device)
            keep = present[labels]
            if bool(keep.any()):
                loss = loss + self.typing_weight * F.cross_entropy(_typing_scores(z[keep], protos, present),
                                                                   labels[keep])
        return loss

    def _adapt(self, support: Episode) -> Predictor:
        with torch.no_grad(), eval_mode(self.encoder):
            words, _ = self._embed_episode(support, with_query=False)
            gold = self._gold(support.support, support.scheme)
            protos, present = self.prototypes(words, gold, support.types)
        detector = copy.deepcopy(self.detector).requires_grad_(False)
        losses: list[float] = []
        if self.detect_steps:
            targets = detection_labels(words, gold)
            detector.requires_grad_(True)
            optimizer = torch.optim.AdamW(detector.parameters(), lr=self.detect_lr)
            with torch.enable_grad():
                for _ in range(self.detect_steps):
                    loss = F.cross_entropy(detector(words.vectors), targets)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
            detector.requires_grad_(False)
        if self.o_bias:  # the detector's O log-odds shifted for the target domain (adaptation only)
            with torch.no_grad():
                detector.bias[0] += self.o_bias
        predictor = DecomposedPredictor(self.encoder, self.shapes, detector, protos.detach(), present, support,
                                        batch_size=self.batch_size)
        predictor.losses = losses  # type: ignore[attr-defined]
        return predictor


class DecomposedPredictor(Predictor):
    """Tags sentences by detecting mentions, then typing each against the support-span prototypes.

    ``predict`` decodes spans (the learner's decision). ``logits`` gives a
    per-word view of the same model: the ``O`` column is the detector's
    ``log P(O)``, the column of type ``t`` is ``log P(not O) + log P(t | span)``
    for the detected span holding the word (the word alone when it is in none),
    on ``B-t`` at a span's first word and ``I-t`` inside it (BIO).

    Methods ``detect`` and ``type_spans`` expose the two steps.
    """

    def __init__(self, encoder: Encoder, shapes: nn.Module | None, detector: nn.Linear, prototypes: torch.Tensor,
                 present: torch.Tensor, episode: Episode, *, batch_size: int = 32) -> None:
        super().__init__(episode.label_names, episode.scheme, episode.types)
        self.encoder, self.shapes, self.detector = encoder, shapes, detector
        self.prototypes, self.present = prototypes, present
        self.batch_size = batch_size

    @torch.no_grad()
    def _words(self, sentences: Sequence[TaggedSentence]) -> WordVectors:
        with eval_mode(self.encoder):
            words = self.encoder.encode(sentences)
            if self.shapes is not None:
                words = self.shapes.augment(words, sentences)
        return WordVectors(words.vectors.float(), words.sentence, words.position, words.labels, words.lengths)

    def _chunks(self, sentences: Sequence[Text]):
        items = as_sentences(sentences)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            yield chunk, self._words(chunk)

    def _detect(self, words: WordVectors) -> tuple[list[list[Span]], torch.Tensor]:
        log_p = F.log_softmax(self.detector(words.vectors), -1)
        fill = torch.tensor([0.0, float("-inf"), float("-inf")], device=log_p.device)
        found = []
        for row in words.per_sentence(log_p, fill):
            tags = [("O", "B-X", "I-X")[i] for i in row.argmax(-1).tolist()]
            found.append(spans(tags, "bio"))
        return found, log_p

    def _type(self, words: WordVectors, found: Sequence[Sequence[Span]]) -> list[list[tuple[Span, torch.Tensor]]]:
        flat = [(s, span) for s, sentence_spans in enumerate(found) for span in sentence_spans]
        z, kept = span_vectors(words, flat)
        log_q = F.log_softmax(_typing_scores(z, self.prototypes, self.present), -1) if z.shape[0] else z
        out: list[list[tuple[Span, torch.Tensor]]] = [[] for _ in found]
        for row, k in enumerate(kept):
            s, span = flat[k]
            out[s].append((span, log_q[row]))
        return out

    def detect(self, sentences: Sequence[Text]) -> list[list[tuple[int, int]]]:
        """Detected mention ranges ``(start, end)`` (end exclusive), untyped, one list per sentence."""
        out = []
        for _, words in self._chunks(sentences):
            found, _ = self._detect(words)
            out.extend([(span.start, span.end) for span in sentence_spans] for sentence_spans in found)
        return out

    def type_spans(self, sentences: Sequence[Text], ranges: Sequence[Sequence[tuple[int, int]]]) -> list[list[str]]:
        """The type given to each ``(start, end)`` range of each sentence (e.g. gold mentions)."""
        out: list[list[str]] = []
        items = as_sentences(sentences)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            words = self._words(chunk)
            given = [[Span("X", a, b) for a, b in r] for r in ranges[start : start + self.batch_size]]
            typed = self._type(words, given)
            for sentence_ranges, result in zip(given, typed):
                names = {(span.start, span.end): self.types[int(q.argmax())] for span, q in result}
                out.append([names.get((span.start, span.end), "O") for span in sentence_ranges])
        return out

    def predict(self, sentences: Sequence[Text]) -> list[list[str]]:
        out = []
        for chunk, words in self._chunks(sentences):
            found, _ = self._detect(words)
            typed = self._type(words, found)
            for sentence, result in zip(chunk, typed):
                named = [Span(self.types[int(q.argmax())], span.start, span.end) for span, q in result]
                out.append(spans_to_tags(named, len(sentence.tokens), self.scheme))
        return out

    def logits(self, sentences: Sequence[Text]) -> list[torch.Tensor]:
        out = []
        label = {name: i for i, name in enumerate(self.label_names)}
        for _, words in self._chunks(sentences):
            found, log_p = self._detect(words)
            # every word outside a detected span is typed as a one-word span
            covered = [{p for span in sentence_spans for p in range(span.start, span.end)} for sentence_spans in found]
            singles = [[Span("X", p, p + 1) for p in range(length) if p not in covered[s]]
                       for s, length in enumerate(words.lengths)]
            typed = self._type(words, [list(a) + b for a, b in zip(found, singles)])
            c = len(self.label_names)
            fill = no_entity_row(c, log_p.device)
            full = [fill.expand(length, c).clone() for length in words.lengths]
            rows = {(s, p): i for i, (s, p) in enumerate(zip(words.sentence.tolist(), words.position.tolist()))}
            for s, result in enumerate(typed):
                for span, q in result:
                    for p in range(span.start, span.end):
                        if (s, p) not in rows:
                            continue
                        p_o = log_p[rows[(s, p)], 0]
                        entity = torch.log1p(-p_o.exp().clamp(max=1 - 1e-6))
                        full[s][p] = float("-inf")
                        full[s][p, 0] = p_o
                        for t, type_ in enumerate(self.types):
                            name = type_ if self.scheme == "io" else f"{'B' if p == span.start else 'I'}-{type_}"
                            full[s][p, label[name]] = entity + q[t]
            out.extend(t.cpu() for t in full)
        return out


def decomposition_scores(learner: Decomposed, episodes: Sequence[Episode]) -> dict[str, dict[str, float]]:
    """Detection and typing scores of a decomposed learner, pooled over the query sets of ``episodes``.

    * ``detection``: precision, recall and F1 of the detected mention
      ranges against the gold ranges, types ignored.
    * ``typing``: accuracy of the type given to each *gold* mention (the
      typing step alone, with perfect detection).

    End to end, use :func:`metalearn_nlp.evaluation.evaluate`.

    Example:
        >>> scores = decomposition_scores(learner, test_episodes[:20])  # doctest: +SKIP
        >>> scores["detection"]["f1"], scores["typing"]["accuracy"]  # doctest: +SKIP

    Taught in: chapter 5.5.
    """
    gold_n = found_n = correct = typed = typed_right = 0
    with eval_mode(learner):
        for episode in episodes:
            predictor = learner.adapt(episode)
            gold = [spans(s.tags, episode.scheme) for s in episode.query]
            detected = predictor.detect(episode.query)
            for g, d in zip(gold, detected):
                g_set = {(span.start, span.end) for span in g}
                gold_n, found_n, correct = gold_n + len(g_set), found_n + len(set(d)), correct + len(g_set & set(d))
            types = predictor.type_spans(episode.query, [[(span.start, span.end) for span in g] for g in gold])
            for g, t in zip(gold, types):
                typed += len(g)
                typed_right += sum(span.type == name for span, name in zip(g, t))
    precision = correct / found_n if found_n else 0.0
    recall = correct / gold_n if gold_n else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"detection": {"precision": precision, "recall": recall, "f1": f1, "gold": gold_n, "found": found_n},
            "typing": {"accuracy": typed_right / typed if typed else 0.0, "mentions": typed}}
