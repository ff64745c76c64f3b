"""Checks for the exercises of part 9 (FAQ, and the overfitting remedies measured).

Taught in: chapter 9, exercises ``ex-9-fgm-delta``, ``ex-9-lora-count`` and ``ex-9-best-step``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._core import Feedback, correct, not_yet
from ._util import as_float, call, close

__all__ = ["check_best_step", "check_fgm_delta", "check_lora_count"]


def check_fgm_delta(answer: Any) -> Feedback:
    """Exercise ``ex-9-fgm-delta``: FGM's perturbation from the gradients of the embedding outputs.

    ``answer(grads, epsilon)`` gets a list of gradient tensors (one per
    forward pass of the embedding layer) and must return the list of
    perturbations, one per tensor, of norm ``epsilon`` *together*, pointing
    along the gradient; all zeros when every gradient is zero.

    Example:
        >>> check_fgm_delta(lambda grads, epsilon: grads).passed
        False
    """
    generator = torch.Generator().manual_seed(9)
    cases = [
        ([torch.randn(3, 5, generator=generator)], 1.0),
        ([torch.randn(2, 4, 3, generator=generator), torch.randn(1, 2, 3, generator=generator)], 0.5),
        ([torch.tensor([[3.0, 4.0]])], 2.0),
    ]
    for grads, epsilon in cases:
        result, problem = call(answer, [g.clone() for g in grads], epsilon, what="answer(grads, epsilon)")
        if problem:
            return problem
        if not isinstance(result, (list, tuple)) or len(result) != len(grads) or \
                any(not torch.is_tensor(r) or r.shape != g.shape for r, g in zip(result, grads)):
            return not_yet("return a list with one tensor per gradient, each of the same shape as its gradient")
        total = torch.linalg.vector_norm(torch.cat([r.flatten() for r in result])).item()
        own = [torch.linalg.vector_norm(r).item() for r in result]
        if len(result) > 1 and all(abs(n - epsilon) < 1e-4 for n in own):
            return not_yet("each tensor has norm epsilon on its own; the norm is taken over all of them together")
        if abs(total - epsilon) > 1e-4 * max(1.0, epsilon):
            return not_yet(f"the perturbation should have norm epsilon={epsilon} in all; yours has {total:.4g}")
        flat_r = torch.cat([r.flatten() for r in result])
        flat_g = torch.cat([g.flatten() for g in grads])
        cosine = torch.dot(flat_r, flat_g) / (flat_r.norm() * flat_g.norm())
        if cosine < 0.999:
            return not_yet("the perturbation must point along the gradient (the direction that raises the loss)"
                           if cosine > -0.999 else "it points down the loss: FGM pushes the loss up")
    zeros = [torch.zeros(2, 3)]
    result, problem = call(answer, zeros, 1.0, what="answer(grads, epsilon)")
    if problem:
        return not_yet("a zero gradient has no direction: return zeros rather than dividing by a zero norm")
    if not isinstance(result, (list, tuple)) or any(not torch.is_tensor(r) or not torch.isfinite(r).all()
                                                    or r.abs().sum() > 0 for r in result):
        return not_yet("a zero gradient has no direction: return zeros rather than dividing by a zero norm")
    return correct("the same perturbation as metalearn_nlp.learners.fgm_loss.")


def check_lora_count(answer: Any) -> Feedback:
    """Exercise ``ex-9-lora-count``: trainable numbers of rank-r LoRA on some square projections.

    ``answer(hidden, r, modules, layers)`` must return how many numbers LoRA
    trains with rank ``r`` adapters on ``modules`` square ``hidden x hidden``
    linear layers in each of ``layers`` transformer layers.

    Example:
        >>> check_lora_count(lambda hidden, r, modules, layers: r * hidden).passed
        False
    """
    for hidden, r, modules, layers in ((384, 8, 2, 2), (32, 4, 2, 2), (768, 16, 4, 12), (10, 1, 1, 1)):
        result, problem = call(answer, hidden, r, modules, layers, what="answer(hidden, r, modules, layers)")
        if problem:
            return problem
        value = as_float(result)
        expected = 2 * hidden * r * modules * layers
        if value is None:
            return not_yet("return a number")
        if close(value, expected / 2):
            return not_yet("LoRA has two matrices per adapted layer, A and B: count both")
        if close(value, expected + hidden * modules * layers):
            return not_yet("LoRA trains no bias of its own here; count A and B only")
        if not close(value, expected):
            return not_yet(f"wrong count for hidden={hidden}, r={r}, {modules} module(s) in {layers} layer(s): "
                           "A is r x d_in and B is d_out x r")
    return correct("the count add_lora's report gives (compare with the chapter's).")


def check_best_step(answer: Any) -> Feedback:
    """Exercise ``ex-9-best-step``: the step early stopping with patience returns.

    ``answer(dev_f1, patience)`` gets the dev F1 of evaluations 0, 1, 2, ...
    (evaluation 0 is the untrained learner) and must return ``(best, stopped)``:
    the index of the evaluation whose weights the ``Trainer`` keeps (the first
    best among the evaluations it made) and the index of the evaluation after
    which it stopped (the last one when patience never runs out).

    Example:
        >>> check_best_step(lambda dev_f1, patience: (0, 0)).passed
        False
    """
    def reference(dev_f1: list[float], patience: int) -> tuple[int, int]:
        best, bad = 0, 0
        for i in range(1, len(dev_f1)):
            if dev_f1[i] > dev_f1[best]:
                best, bad = i, 0
            else:
                bad += 1
                if bad >= patience:
                    return best, i
        return best, len(dev_f1) - 1

    cases = [([0.2, 0.3, 0.4, 0.35, 0.3, 0.5], 2), ([0.2, 0.3, 0.3, 0.3, 0.3], 3), ([0.5, 0.4, 0.3, 0.6], 3),
             ([0.1, 0.2, 0.3], 1), ([0.4, 0.3, 0.45, 0.44, 0.6, 0.1, 0.1, 0.1], 2)]
    for dev_f1, patience in cases:
        result, problem = call(answer, list(dev_f1), patience, what="answer(dev_f1, patience)")
        if problem:
            return problem
        expected = reference(dev_f1, patience)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            return not_yet("return a pair (best, stopped)")
        if tuple(result) == expected:
            continue
        if result[0] != expected[0] and result[0] == max(range(len(dev_f1)), key=lambda i: (dev_f1[i], -i)):
            return not_yet("the trainer cannot keep an evaluation it never made: it stops when patience runs out")
        if len(set(dev_f1)) < len(dev_f1) and result[0] != expected[0]:
            return not_yet("a tie is not an improvement: only a strictly better dev F1 resets the patience")
        return not_yet(f"for dev F1 {dev_f1} and patience {patience} the answer is not {tuple(result)}; "
                       "count evaluations without improvement since the last best")
    return correct("the same rule as Trainer(patience=...).")
