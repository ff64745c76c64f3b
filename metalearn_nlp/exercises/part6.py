"""Checks for the exercises of part 6 (Applications).

Taught in: chapters 6.1 to 6.3.
"""

from __future__ import annotations

from typing import Any

from ._core import Feedback, correct, not_yet
from ._util import as_float, call, close


# -- chapters 6.2 and 6.3 (financial sentiment, recommendation) ------------------------------------
def _centroid_cases() -> list[tuple[Any, Any, Any, int, list[int]]]:
    import torch

    cases = []
    # unequal shots: the mean of each class, not the sum, decides
    support = torch.tensor([[0.9, 0.0], [1.0, 0.0], [1.1, 0.0], [3.5, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    query = torch.tensor([[3.1, 0.0], [0.8, 0.0]])
    cases.append((support, labels, query, 2, [1, 0]))
    # nearest centroid and nearest neighbour disagree: class 0 is spread out, its mean lies far from q
    support = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [2.0, 1.5]])
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[2.5, 0.0], [0.0, 0.4]])
    cases.append((support, labels, query, 2, [1, 0]))
    # labels not in order of appearance, three classes, higher dimension
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 5, generator=g) * 4
    labels = torch.tensor([2, 0, 1, 2, 0, 1])
    support = centres[labels] + 0.1 * torch.randn(6, 5, generator=g)
    query_labels = [1, 2, 0, 0]
    query = centres[query_labels] + 0.1 * torch.randn(4, 5, generator=g)
    cases.append((support, labels, query, 3, query_labels))
    return cases


def check_centroid_classify(answer: Any) -> Feedback:
    """Exercise ``ex-6-2-centroid``: ``answer(support, support_labels, query, n_classes)`` predicts class ids.

    Taught in: chapter 6.2.
    """
    import torch

    for support, labels, query, n_classes, expected in _centroid_cases():
        result, failure = call(answer, support.clone(), labels.clone(), query.clone(), n_classes,
                               what="answer(support, support_labels, query, n_classes)")
        if failure is not None:
            return failure
        try:
            predicted = torch.as_tensor(result).reshape(-1).long().tolist()
        except (TypeError, ValueError, RuntimeError):
            return not_yet("return one class id per query row (a list or a 1-d tensor of integers)")
        if len(predicted) != len(query):
            return not_yet(f"return one class id per query row: {len(query)} rows, got {len(predicted)} ids")
        if predicted != expected:
            return not_yet("some query is assigned to the wrong class. Does each class get one vector, the "
                           "mean (not the sum) of its support vectors? Is each query compared with every "
                           "class mean and given the nearest, rather than the class of its nearest example?")
    return correct("the nearest class mean, with unequal shots and labels in any order.")


def check_precision_at_k(answer: Any) -> Feedback:
    """Exercise ``ex-6-3-precision``: ``answer(scores, liked, k)`` is precision at k.

    Taught in: chapter 6.3.
    """
    cases = [
        ([0.9, 0.1, 0.8, 0.3], [True, False, False, True], 2, 0.5),
        ([0.1, 0.2, 0.3, 0.4, 0.5], [True, True, False, False, True], 1, 1.0),
        ([0.1, 0.2, 0.3, 0.4, 0.5], [True, True, False, False, True], 3, 1 / 3),
        ([5.0, -1.0, 3.0, 2.0], [True, True, True, False], 4, 0.75),
        ([0.3, 0.9, 0.5], [False, True, True], 2, 1.0),
    ]
    for scores, liked, k, expected in cases:
        result, failure = call(answer, list(scores), list(liked), k, what="answer(scores, liked, k)")
        if failure is not None:
            return failure
        value = as_float(result)
        if value is None:
            return not_yet("return one number, a fraction between 0 and 1")
        if not close(value, expected):
            if value > 1:
                return not_yet("precision at k is a fraction: divide the number of liked items among the top k "
                               "by k")
            return not_yet("check which items are the top k (the *highest* scores) and what you divide by: "
                           "precision asks what fraction of the k recommended items the user likes")
    return correct()


def check_user_weights(answer: Any) -> Feedback:
    """Exercise ``ex-6-3-linear``: ``answer(liked, disliked) -> (w, b)`` with
    ``w @ x + b == ||x - c_disliked||^2 - ||x - c_liked||^2`` for every ``x``.

    Taught in: chapter 6.3.
    """
    import torch

    g = torch.Generator().manual_seed(1)
    liked, disliked = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g,
                                                                                         dtype=torch.float64)
    result, failure = call(answer, liked.clone(), disliked.clone(), what="answer(liked, disliked)")
    if failure is not None:
        return failure
    try:
        w, b = result
        w = torch.as_tensor(w, dtype=torch.float64).reshape(-1)
        b = float(torch.as_tensor(b, dtype=torch.float64).reshape(()))
    except (TypeError, ValueError, RuntimeError):
        return not_yet("return a pair (w, b): a vector with one weight per dimension and one number")
    if w.shape != (4,):
        return not_yet(f"w needs one weight per dimension of the vectors (4 here), got shape {tuple(w.shape)}")
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    c_plus, c_minus = liked.mean(0), disliked.mean(0)
    target = ((x - c_minus) ** 2).sum(1) - ((x - c_plus) ** 2).sum(1)
    got = x @ w + b
    if torch.allclose(got, target, atol=1e-6):
        return correct("the per-user score is a linear model, a user vector learned from a few ratings.")
    if torch.allclose(x @ w, x @ (2 * (c_plus - c_minus)), atol=1e-6):
        return not_yet("w is right; expand both squared norms and collect the terms that do not involve x")
    return not_yet("expand ||x - c||^2 = ||x||^2 - 2 c.x + ||c||^2 for both centroids and subtract: the "
                   "||x||^2 terms cancel; what multiplies x?")


# -- chapter 6.1 (few-shot intent detection) -------------------------------------------------------
def _reference_macro_f1(gold: list[str], predicted: list[str]) -> float:
    labels = sorted(set(gold) | set(predicted))
    scores = []
    for label in labels:
        right = sum(g == p == label for g, p in zip(gold, predicted))
        total = gold.count(label) + predicted.count(label)
        scores.append(2 * right / total)
    return sum(scores) / len(scores)


def check_macro_f1(answer: Any) -> Feedback:
    """Exercise ``ex-6-1-macro-f1``: ``answer(gold, predicted)`` is the macro-F1 of two label lists.

    The mean over every label that is gold or predicted (``oos`` included) of
    that label's F1, as ``sklearn.metrics.f1_score(gold, predicted, average="macro")``.

    Example:
        >>> check_macro_f1(lambda gold, predicted: sum(g == p for g, p in zip(gold, predicted)) / len(gold)).passed
        False

    Taught in: chapter 6.1.
    """
    cases = [
        (["a", "a", "b", "b"], ["a", "a", "b", "b"]),
        (["a", "a", "a", "b"], ["a", "a", "a", "a"]),                       # accuracy 0.75, macro-F1 lower
        (["a", "b", "c", "a", "b", "c"], ["a", "b", "oos", "a", "c", "c"]),  # a predicted-only label counts
        (["x", "x", "x", "x", "y"], ["x", "y", "x", "x", "y"]),
    ]
    for gold, predicted in cases:
        result, failure = call(answer, list(gold), list(predicted), what="answer(gold, predicted)")
        if failure is not None:
            return failure
        value = as_float(result)
        if value is None:
            return not_yet("return one number between 0 and 1")
        expected = _reference_macro_f1(gold, predicted)
        if not close(value, expected):
            accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
            if close(value, accuracy):
                return not_yet("that is the accuracy (micro-F1 when every text gets one label); macro-F1 "
                               "computes an F1 per label and averages those, each label weighing the same")
            if "oos" in predicted:
                return not_yet("which labels do you average over? A label that is only ever predicted, never "
                               "gold, still has an F1 (of 0)")
            return not_yet("per label: precision = right / predicted, recall = right / gold, F1 their harmonic "
                           "mean; then the unweighted mean over labels")
    return correct("the same definition as sklearn's average='macro' and evaluate()'s macro_f1.")


def check_oos_threshold(answer: Any) -> Feedback:
    """Exercise ``ex-6-1-threshold``: ``answer(in_scope, in_scope_right, oos)`` picks the OOS threshold.

    ``in_scope`` are the nearest-prototype squared distances of dev in-scope
    queries, ``in_scope_right`` whether their nearest prototype is their
    intent, ``oos`` the distances of dev out-of-scope texts. The answer must
    maximise balanced accuracy: the mean of in-scope accuracy (a rejected
    text, distance > threshold, is wrong) and OOS recall (distance >
    threshold); any threshold achieving the maximum is accepted.

    Taught in: chapter 6.1.
    """
    def balanced(t: float, near: list[float], right: list[bool], oos: list[float]) -> float:
        accuracy = sum(r and d <= t for d, r in zip(near, right)) / len(near)
        return (accuracy + sum(d > t for d in oos) / len(oos)) / 2

    cases = [
        ([0.2, 0.3, 0.4, 0.5], [True, True, True, True], [0.9, 1.0, 1.2]),
        ([0.2, 0.6, 0.4, 0.9], [True, True, False, True], [0.5, 1.1, 0.8, 1.3]),
        ([0.5, 0.7, 0.3], [True, True, True], [0.1, 0.2, 0.25, 0.35, 0.9]),
        ([0.2, 0.3, 0.25, 2.0], [True, True, True, True], [0.8, 0.9, 1.0, 1.5]),  # one in-scope outlier
    ]
    for near, right, oos in cases:
        result, failure = call(answer, list(near), list(right), list(oos),
                               what="answer(in_scope, in_scope_right, oos)")
        if failure is not None:
            return failure
        value = as_float(result)
        if value is None:
            return not_yet("return one number: the squared distance beyond which a text is rejected")
        best = max(balanced(t, near, right, oos) for t in [*near, *oos, -1.0, 1e9])
        if not close(balanced(value, near, right, oos), best):
            return not_yet("scan candidate thresholds (every observed distance is enough) and keep the one with "
                           "the highest mean of in-scope accuracy and OOS recall; a rejected in-scope text counts "
                           "as wrong, and a text is rejected when its distance is *greater* than the threshold")
    return correct("the same rule as choose_oos_threshold.")
