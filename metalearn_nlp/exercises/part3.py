"""Checks for the exercises of part 3 (Algorithms).

Taught in: chapter 3.4 (REINFORCE), exercises ``ex-3-4-optimal-baseline`` and ``ex-3-4-own-reward``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Feedback, correct, not_yet
from ._util import as_float, call, close

__all__ = ["check_optimal_baseline", "check_own_reward_shrink"]


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    scores = rng.normal(size=200)
    return [
        (np.array([1.0, 0.0, 1.0, 0.0]), np.array([2.0, 0.5, 2.0, 0.5])),   # reward large where |s| is large
        (rng.uniform(size=200), scores),
        (np.array([0.3, 0.3, 0.3]), np.array([1.0, -1.0, 2.0])),             # constant reward
    ]


def check_optimal_baseline(answer: Any) -> Feedback:
    """Exercise ``ex-3-4-optimal-baseline``: ``answer(rewards, scores)`` returns the variance-minimising baseline.

    ``rewards`` and ``scores`` are 1-d NumPy arrays of samples of $R$ and of
    $s = \\partial_\\theta \\log p_\\theta(y)$; the answer is the constant $b$
    that minimises the sample variance of $(R - b)s$, estimated from them.

    Example:
        >>> check_optimal_baseline(lambda rewards, scores: rewards.mean()).passed
        False
    """
    for rewards, scores in _cases():
        result, problem = call(answer, rewards.copy(), scores.copy(), what="answer(rewards, scores)")
        if problem:
            return problem
        value = as_float(result)
        if value is None:
            return not_yet("return one number, the baseline b")
        expected = float((rewards * scores**2).mean() / (scores**2).mean())
        if not close(value, expected, 1e-6):
            if close(value, float(rewards.mean()), 1e-9):
                return not_yet("the mean reward is a good baseline but not the best one: which factor multiplies "
                               "(R - b) inside the variance?")
            return not_yet("write the variance as E[(R - b)^2 s^2] minus a term that does not depend on b, "
                           "and set its derivative in b to zero")
    return correct("and notice when it equals the mean reward.")


def check_own_reward_shrink(answer: Any) -> Feedback:
    """Exercise ``ex-3-4-own-reward``: ``answer(K)`` is the factor by which the own-reward baseline scales the gradient.

    Example:
        >>> check_own_reward_shrink(lambda K: 1.0).passed
        False
    """
    for k in (2, 3, 5, 10):
        result, problem = call(answer, k, what="answer(K)")
        if problem:
            return problem
        value = as_float(result)
        if value is None:
            return not_yet("return the factor as a number")
        if not close(value, (k - 1) / k, 1e-9):
            if close(value, 1.0, 1e-9):
                return not_yet("the baseline contains the sample's own reward, which is correlated with its "
                               "score: the estimate is not unbiased")
            return not_yet("write the mean of all K rewards as (R_k + (K-1) x mean of the others) / K and "
                           "substitute it into (R_k - baseline)")
    return correct()
