"""The auto-checks of chapters 6.2 and 6.3 accept the reference solutions and reject typical mistakes."""

from __future__ import annotations

import torch

from metalearn_nlp.applications import centroid_scores, precision_at_k
from metalearn_nlp.exercises.part6 import check_centroid_classify, check_precision_at_k, check_user_weights


# -- ex-6-2-centroid --------------------------------------------------------------------------------
def reference_centroid(support, labels, query, n_classes):
    return centroid_scores(support, labels, query, n_classes).argmax(1)


def from_scratch_centroid(support, labels, query, n_classes):
    means = torch.stack([support[labels == c].mean(0) for c in range(n_classes)])
    return torch.cdist(query, means).argmin(1).tolist()


def sum_not_mean(support, labels, query, n_classes):
    sums = torch.stack([support[labels == c].sum(0) for c in range(n_classes)])
    return torch.cdist(query, sums).argmin(1)


def nearest_neighbour(support, labels, query, n_classes):
    return labels[torch.cdist(query, support).argmin(1)]


def farthest(support, labels, query, n_classes):
    return reference_centroid(support, labels, query, n_classes).neg().add(n_classes - 1)


def test_centroid_check_accepts_references():
    assert check_centroid_classify(reference_centroid).passed
    assert check_centroid_classify(from_scratch_centroid).passed


def test_centroid_check_rejects_typical_mistakes():
    for wrong in (sum_not_mean, nearest_neighbour, farthest, lambda s, l, q, n: [0] * len(q)):
        feedback = check_centroid_classify(wrong)
        assert not feedback.passed and "mean" in feedback.message
    assert "one class id per query row" in check_centroid_classify(lambda s, l, q, n: [0]).message
    assert "raised ZeroDivisionError" in check_centroid_classify(lambda s, l, q, n: 1 / 0).message
    assert not check_centroid_classify(reference_centroid(torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 2), 1))


# -- ex-6-3-precision -------------------------------------------------------------------------------
def test_precision_check_accepts_reference_and_a_plain_python_answer():
    assert check_precision_at_k(precision_at_k).passed

    def plain(scores, liked, k):
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return sum(liked[i] for i in top) / k

    assert check_precision_at_k(plain).passed


def test_precision_check_rejects_typical_mistakes():
    def ascending(scores, liked, k):
        top = sorted(range(len(scores)), key=lambda i: scores[i])[:k]
        return sum(liked[i] for i in top) / k

    def recall(scores, liked, k):
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return sum(liked[i] for i in top) / sum(liked)

    def count(scores, liked, k):
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return sum(liked[i] for i in top) + 1.0

    for wrong in (ascending, recall):
        feedback = check_precision_at_k(wrong)
        assert not feedback.passed and "top k" in feedback.message
    assert "divide" in check_precision_at_k(count).message and not check_precision_at_k(count).passed
    assert "one number" in check_precision_at_k(lambda s, l, k: "high").message


# -- ex-6-3-linear ----------------------------------------------------------------------------------
def test_user_weights_check_accepts_reference():
    def weights(liked, disliked):
        plus, minus = liked.mean(0), disliked.mean(0)
        return 2 * (plus - minus), float(minus @ minus - plus @ plus)

    assert check_user_weights(weights).passed


def test_user_weights_check_rejects_typical_mistakes():
    def no_bias(liked, disliked):
        return 2 * (liked.mean(0) - disliked.mean(0)), 0.0

    def no_factor_two(liked, disliked):
        plus, minus = liked.mean(0), disliked.mean(0)
        return plus - minus, float(minus @ minus - plus @ plus)

    feedback = check_user_weights(no_bias)
    assert not feedback.passed and "w is right" in feedback.message
    feedback = check_user_weights(no_factor_two)
    assert not feedback.passed and "what multiplies x" in feedback.message
    assert "pair (w, b)" in check_user_weights(lambda l, d: 3.0).message
    assert "one weight per dimension" in check_user_weights(lambda l, d: (torch.zeros(3), 0.0)).message


def test_checks_are_exported_with_the_others():
    import metalearn_nlp.exercises as exercises

    assert exercises.check_centroid_classify is check_centroid_classify
    assert exercises.check_user_weights is check_user_weights


def test_checks_never_raise_on_broken_answers():
    def broken(*args):
        raise ZeroDivisionError("oops")

    for check in (check_centroid_classify, check_precision_at_k, check_user_weights):
        for answer in (broken, 42, None, lambda *args: None, lambda *args: float("nan")):
            feedback = check(answer)
            assert not feedback.passed and feedback.message, (check.__name__, answer)
