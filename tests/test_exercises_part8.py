"""The part 8 exercise checks accept the reference solutions and reject typical mistakes."""

from __future__ import annotations

from collections import Counter

import numpy as np

from metalearn_nlp.exercises.part8 import check_log_log_slope, check_token_confusion


def reference_slope(xs, ys):
    x, y = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


def test_log_log_slope_accepts_reference():
    assert check_log_log_slope(reference_slope).passed


def test_log_log_slope_rejects_typical_mistakes():
    endpoints = lambda xs, ys: float(np.log(ys[-1] / ys[0]) / np.log(xs[-1] / xs[0]))  # noqa: E731
    linear = lambda xs, ys: float(np.polyfit(xs, ys, 1)[0])  # noqa: E731 - no logarithms
    log_y_only = lambda xs, ys: float(np.polyfit(xs, np.log(ys), 1)[0])  # noqa: E731
    for wrong in (endpoints, linear, log_y_only):
        feedback = check_log_log_slope(wrong)
        assert not feedback.passed
    assert "least-squares" in check_log_log_slope(endpoints).message
    assert "raised ZeroDivisionError" in check_log_log_slope(lambda xs, ys: 1 / 0).message
    assert "pass your function" in check_log_log_slope(1.0).message


def reference_confusion(gold, predicted):
    pairs = Counter()
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: lengths differ")
        pairs.update(zip(g, p))
    return pairs


def test_token_confusion_accepts_reference():
    assert check_token_confusion(reference_confusion).passed


def test_token_confusion_rejects_typical_mistakes():
    def swapped(gold, predicted):
        return reference_confusion(predicted, gold)

    def silent_zip(gold, predicted):
        return Counter(pair for g, p in zip(gold, predicted) for pair in zip(g, p))

    def per_sentence(gold, predicted):
        return Counter((tuple(g), tuple(p)) for g, p in zip(gold, predicted))

    def as_dict(gold, predicted):
        return dict(reference_confusion(gold, predicted))

    assert "order inside each pair" in check_token_confusion(swapped).message
    assert "ValueError" in check_token_confusion(silent_zip).message
    assert not check_token_confusion(per_sentence).passed
    assert "collections.Counter" in check_token_confusion(as_dict).message
