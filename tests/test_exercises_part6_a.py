"""The chapter 6.1 exercise checks accept the reference solutions and reject typical wrong answers."""

from __future__ import annotations

import pytest

from metalearn_nlp.exercises.part6 import check_macro_f1, check_oos_threshold


def macro_f1(gold, predicted):
    labels = set(gold) | set(predicted)
    scores = []
    for label in labels:
        right = sum(g == p == label for g, p in zip(gold, predicted))
        p = right / predicted.count(label) if predicted.count(label) else 0.0
        r = right / gold.count(label) if gold.count(label) else 0.0
        scores.append(2 * p * r / (p + r) if p + r else 0.0)
    return sum(scores) / len(scores)


def test_macro_f1_check_agrees_with_sklearn_and_rejects_wrong_answers():
    metrics = pytest.importorskip("sklearn.metrics")
    f1_score = metrics.f1_score

    assert check_macro_f1(macro_f1).passed
    assert check_macro_f1(lambda g, p: f1_score(g, p, average="macro", zero_division=0)).passed
    accuracy = check_macro_f1(lambda g, p: sum(a == b for a, b in zip(g, p)) / len(g))
    assert not accuracy.passed and "accuracy" in accuracy.message
    gold_only = check_macro_f1(lambda g, p: f1_score(g, p, labels=sorted(set(g)), average="macro", zero_division=0))
    assert not gold_only.passed and "only ever predicted" in gold_only.message
    weighted = check_macro_f1(lambda g, p: f1_score(g, p, average="weighted", zero_division=0))
    assert not weighted.passed
    assert not check_macro_f1(macro_f1(["a"], ["a"])).passed       # a number, not a function
    assert not check_macro_f1(lambda g, p: 1 / 0).passed


def best_threshold(in_scope, right, oos):
    def balanced(t):
        accuracy = sum(r and d <= t for d, r in zip(in_scope, right)) / len(in_scope)
        return (accuracy + sum(d > t for d in oos) / len(oos)) / 2

    return max(sorted(in_scope + oos), key=balanced)


@pytest.mark.parametrize("wrong", [
    lambda near, right, oos: max(near),                     # accepts every in-scope text, ignores OOS
    lambda near, right, oos: min(oos),                      # rejects every OOS text, whatever it costs
    lambda near, right, oos: sum(near) / len(near),         # the mean in-scope distance
])
def test_threshold_check(wrong):
    assert check_oos_threshold(best_threshold).passed
    assert not check_oos_threshold(wrong).passed
