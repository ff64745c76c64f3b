"""Checks for the exercises of part 5 (Project).

Taught in: chapter 5.1 (Preparing the data), exercises ``ex-5-1-padding-cost`` and ``ex-5-1-metric``;
chapter 5.5 (Better few-shot NER), exercise ``ex-5-5-prior``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from ._core import Feedback, correct, not_yet
from ._util import as_float, call, close

__all__ = ["check_compute_metrics", "check_padding_cost", "check_prior_shift"]


def _positions(lengths: list[int], batch_size: int) -> int:
    return sum(len(lengths[i:i + batch_size]) * max(lengths[i:i + batch_size])
               for i in range(0, len(lengths), batch_size))


def check_padding_cost(answer: Any) -> Feedback:
    """Exercise ``ex-5-1-padding-cost``: ``answer(lengths, batch_size)`` counts the positions dynamic padding processes.

    ``lengths`` are subword counts per tweet, in corpus order; batches are
    consecutive runs of ``batch_size`` tweets (the last may be shorter), each
    padded to its own longest tweet. (Sorting first is then
    ``answer(sorted(lengths), batch_size)``.)

    Example:
        >>> check_padding_cost(lambda lengths, batch_size: sum(lengths)).passed
        False
    """
    rng = np.random.default_rng(3)
    cases = [([5, 3, 9, 2], 2), ([4, 4, 4], 16), ([7, 1, 1, 1, 8], 2), (rng.integers(3, 60, 101).tolist(), 16)]
    for lengths, batch_size in cases:
        result, problem = call(answer, list(lengths), batch_size, what="answer(lengths, batch_size)")
        if problem:
            return problem
        value = as_float(result)
        if value is None:
            return not_yet("return the number of positions as a number")
        expected = _positions(lengths, batch_size)
        if value != expected:
            if value == sum(lengths):
                return not_yet("that counts the real subwords only; the padded positions of each batch are "
                               "processed too")
            if value == len(lengths) * max(lengths):
                return not_yet("that pads every tweet to the longest tweet of the corpus; each batch is "
                               "padded to its own longest tweet")
            return not_yet("for each batch: the number of tweets in it times its longest tweet")
    return correct()


def _reference_metrics(pred: Any) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    ids = pred.predictions.argmax(-1)
    gold, guess = [], []
    for row_pred, row_gold in zip(ids, pred.label_ids):
        keep = row_gold != -100
        gold.append([_NAMES[i] for i in row_gold[keep]])
        guess.append([_NAMES[i] for i in row_pred[keep]])
    return {"precision": precision_score(gold, guess), "recall": recall_score(gold, guess), "f1": f1_score(gold, guess)}


_NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _predictions() -> list[SimpleNamespace]:
    gold = np.array([[-100, 1, 2, 0, 3, -100, -100],
                     [-100, 0, 3, 4, 0, 1, -100]])
    guess = np.array([[0, 1, 2, 0, 0, 3, 3],           # PER right, LOC missed, padding predicts LOC
                      [1, 0, 3, 0, 0, 1, 1]])          # LOC cut short (a wrong span), PER right
    logits = np.full(gold.shape + (len(_NAMES),), -1.0)
    np.put_along_axis(logits, guess[..., None], 2.0, axis=-1)
    perfect = np.full(gold.shape + (len(_NAMES),), -1.0)
    np.put_along_axis(perfect, np.where(gold == -100, 0, gold)[..., None], 2.0, axis=-1)
    return [SimpleNamespace(predictions=logits, label_ids=gold), SimpleNamespace(predictions=perfect, label_ids=gold)]


def check_compute_metrics(answer: Any) -> Feedback:
    """Exercise ``ex-5-1-metric``: ``answer(pred)`` returns entity-level ``precision``, ``recall`` and ``f1``.

    ``pred`` has ``predictions`` (logits, batch x length x labels) and
    ``label_ids`` (with -100 at ignored positions), like the ``EvalPrediction``
    of the Hugging Face ``Trainer``; the label names are
    ``["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]`` (ids 0 to 4): give your
    function a way to know them, e.g. a default argument.

    Example:
        >>> check_compute_metrics(lambda pred: {"precision": 1.0, "recall": 1.0, "f1": 1.0}).passed
        False
    """
    for pred in _predictions():
        result, problem = call(answer, pred, what="answer(pred) with pred.predictions and pred.label_ids")
        if problem:
            return problem
        if not isinstance(result, dict) or not {"precision", "recall", "f1"} <= set(result):
            return not_yet("return a dict with the keys 'precision', 'recall' and 'f1'")
        expected = _reference_metrics(pred)
        got = {k: as_float(result[k]) for k in expected}
        if any(v is None for v in got.values()):
            return not_yet("the three values must be numbers (fractions between 0 and 1)")
        if all(close(got[k], expected[k], 1e-6) for k in expected):
            continue
        if any(v > 1 for v in got.values()):
            return not_yet("give fractions between 0 and 1, not percentages")
        keep = pred.label_ids != -100
        accuracies = [float((pred.predictions.argmax(-1) == pred.label_ids)[mask].mean()) for mask in (keep, keep | True)]
        values = list(got.values())
        if all(close(v, values[0], 1e-9) for v in values) and any(close(values[0], a, 1e-6) for a in accuracies):
            return not_yet("that is a token accuracy; score whole entities, as seqeval does")
        return not_yet("drop the positions whose label is -100 before scoring (the padding and the later "
                       "subwords), then score entity spans, not tokens")
    return correct("it scores entities only at the positions the loss uses.")


def check_prior_shift(answer: Any) -> Feedback:
    """Exercise ``ex-5-5-prior``: ``answer(source, target)`` gives what to add to each label's logit under label shift.

    ``source`` and ``target`` are lists of label shares (each sums to 1, same
    label order); the answer is one number per label. Numbers that differ
    from the expected ones by the same constant for every label are right too:
    a softmax ignores such a constant.

    Example:
        >>> check_prior_shift(lambda source, target: [t - s for s, t in zip(source, target)]).passed
        False
    """
    cases = [([0.8, 0.1, 0.1], [0.9, 0.02, 0.08]), ([0.5, 0.5], [0.5, 0.5]), ([0.6, 0.3, 0.1], [0.7, 0.1, 0.2]),
             ([0.95, 0.05], [0.99, 0.01])]
    for source, target in cases:
        result, problem = call(answer, list(source), list(target), what="answer(source, target)")
        if problem:
            return problem
        try:
            got = [float(v) for v in result]
        except (TypeError, ValueError):
            return not_yet("return one number per label, in the labels' order (a list)")
        if len(got) != len(source):
            return not_yet(f"return one number per label: {len(source)} labels here, got {len(got)} numbers")
        expected = np.log(np.array(target) / np.array(source))
        offset = got[0] - expected[0]
        if all(close(g - offset, e, 1e-6) for g, e in zip(got, expected)):
            continue
        ratio = np.array(target) / np.array(source)
        if all(close(g, r, 1e-6) for g, r in zip(got, ratio)):
            return not_yet("logits add where probabilities multiply: the shift is not the ratio itself")
        flipped = got[0] + expected[0]  # the constant if the answer is the shift with its sign flipped
        if all(close(g - flipped, -e, 1e-6) for g, e in zip(got, expected)):
            return not_yet("check the direction: the posterior is multiplied by the target prior over the source prior")
        return not_yet("write the target posterior with Bayes' rule in both domains, keeping p(x | y) fixed, "
                       "and take logs")
    return correct("and a constant added to every label changes nothing.")
