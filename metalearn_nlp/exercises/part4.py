"""Checks for the exercises of part 4 (Mathematics).

Taught in: chapter 4.1 (Empirical risk), ``ex-4-1-sigmoid``; chapter 4.2 (Meta-gradient), ``ex-4-2-maml-optimum``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._core import Feedback, correct, not_yet
from ._util import as_float, call, close

__all__ = ["check_maml_optimum", "check_sigmoid_derivative"]


def check_sigmoid_derivative(answer: Any) -> Feedback:
    """Exercise ``ex-4-1-sigmoid``: ``answer(z)`` returns $\\sigma'(z)$ for a float64 tensor ``z``, from $\\sigma$ alone.

    Example:
        >>> check_sigmoid_derivative(torch.sigmoid).passed
        False
    """
    z = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64)
    result, problem = call(answer, z.clone(), what="answer(z) with z a float64 tensor")
    if problem:
        return problem
    if not isinstance(result, torch.Tensor) or result.shape != z.shape:
        return not_yet("return a tensor of the same shape as z (one derivative per element)")
    z_leaf = z.clone().requires_grad_()
    (expected,) = torch.autograd.grad(torch.sigmoid(z_leaf).sum(), z_leaf)
    result = result.detach().double()
    if torch.allclose(result, expected, rtol=1e-6, atol=1e-12):
        return correct("now use it to see why the BCE gradient in the logit is y_hat - y.")
    if torch.allclose(result, torch.sigmoid(z)):
        return not_yet("that is sigma itself; differentiate 1 / (1 + exp(-z)) with the chain rule")
    if (result < 0).any():
        return not_yet("sigma is increasing, so its derivative is positive everywhere")
    return not_yet("check your formula at z = 0, where sigma(0) = 1/2 and the slope is largest")


def _optimum(a: list[float], w: list[float], alpha: float) -> tuple[float, float]:
    m = [1 - alpha * ai for ai in a]
    maml = sum(mi**2 * ai * wi for mi, ai, wi in zip(m, a, w)) / sum(mi**2 * ai for mi, ai in zip(m, a))
    pre = sum(ai * wi for ai, wi in zip(a, w)) / sum(a)
    return maml, pre


_CASES = [([1.0, 4.0], [0.0, 1.0], 0.1), ([2.0, 0.5, 1.0], [1.0, -1.0, 3.0], 0.3), ([3.0, 3.0], [0.0, 2.0], 0.2)]


def check_maml_optimum(answer: Any) -> Feedback:
    """Exercise ``ex-4-2-maml-optimum``: ``answer(a, w, alpha)`` returns ``(theta_maml, theta_pre)``.

    ``a`` and ``w`` are lists of the tasks' curvatures and optima; one inner
    step of size ``alpha``. The check uses its own tasks, not the exercise's.

    Example:
        >>> check_maml_optimum(lambda a, w, alpha: (0.0, 0.0)).passed
        False
    """
    for a, w, alpha in _CASES:
        result, problem = call(answer, list(a), list(w), alpha, what="answer(a, w, alpha)")
        if problem:
            return problem
        try:
            maml, pre = (as_float(x) for x in result)
        except (TypeError, ValueError):
            return not_yet("return a pair of numbers: (theta_maml, theta_pre)")
        if maml is None or pre is None:
            return not_yet("return a pair of numbers: (theta_maml, theta_pre)")
        want_maml, want_pre = _optimum(a, w, alpha)
        if not close(pre, want_pre, 1e-6):
            if close(pre, sum(w) / len(w), 1e-9) and len(set(a)) > 1:
                return not_yet("theta_pre is not the plain mean of the optima: tasks with more curvature pull harder")
            return not_yet("theta_pre minimises the sum of the query losses at theta itself, without adaptation")
        if not close(maml, want_maml, 1e-6):
            if close(maml, want_pre, 1e-9) and len(set(a)) > 1:
                return not_yet("theta_maml should differ from theta_pre here: write theta_1 - w_i after one "
                               "inner step as a multiple of theta - w_i")
            return not_yet("after one step theta_1 - w_i = (1 - alpha a_i)(theta - w_i); the query loss is then "
                           "quadratic in theta with which weight per task?")
    return correct("and compare: when do the two coincide?")
