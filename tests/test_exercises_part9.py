"""The part 9 exercise checks accept the reference solutions and reject the usual mistakes."""

from __future__ import annotations

import torch

from metalearn_nlp.exercises.part9 import check_best_step, check_fgm_delta, check_lora_count


def fgm_delta(grads, epsilon):
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    if norm == 0:
        return [torch.zeros_like(g) for g in grads]
    return [epsilon * g / norm for g in grads]


def test_fgm_delta_check():
    assert check_fgm_delta(fgm_delta)
    wrong = {
        "each tensor has norm epsilon on its own": lambda gs, e: [e * g / g.norm() for g in gs],
        "points down the loss": lambda gs, e: [-d for d in fgm_delta(gs, e)],
        "norm epsilon": lambda gs, e: [g / torch.cat([h.flatten() for h in gs]).norm() for g in gs],
        "zero gradient": lambda gs, e: [e * g / torch.cat([h.flatten() for h in gs]).norm() for g in gs],
        "one tensor per gradient": lambda gs, e: fgm_delta(gs, e)[0],
        "along the gradient": lambda gs, e: [e * torch.sign(g) / torch.sign(g).norm() / len(gs) ** 0.5 for g in gs],
    }
    for hint, answer in wrong.items():
        feedback = check_fgm_delta(answer)
        assert not feedback and hint in feedback.message, (hint, feedback.message)
    assert not check_fgm_delta(42)


def test_lora_count_check():
    assert check_lora_count(lambda hidden, r, modules, layers: 2 * hidden * r * modules * layers)
    assert "two matrices" in check_lora_count(lambda h, r, m, l: h * r * m * l).message
    assert "no bias" in check_lora_count(lambda h, r, m, l: 2 * h * r * m * l + h * m * l).message
    assert not check_lora_count(lambda h, r, m, l: h * h * m * l)
    assert "return a number" in check_lora_count(lambda h, r, m, l: "many").message


def best_step(dev_f1, patience):
    best, bad = 0, 0
    for i in range(1, len(dev_f1)):
        if dev_f1[i] > dev_f1[best]:
            best, bad = i, 0
        else:
            bad += 1
            if bad >= patience:
                return best, i
    return best, len(dev_f1) - 1


def test_best_step_check():
    assert check_best_step(best_step)
    overall = lambda f, p: (max(range(len(f)), key=lambda i: (f[i], -i)), len(f) - 1)  # noqa: E731
    assert "never made" in check_best_step(overall).message

    def ties_count(f, p):
        best, bad = 0, 0
        for i in range(1, len(f)):
            if f[i] >= f[best]:
                best, bad = i, 0
            else:
                bad += 1
                if bad >= p:
                    return best, i
        return best, len(f) - 1

    assert "tie" in check_best_step(ties_count).message
    assert not check_best_step(lambda f, p: best_step(f, p)[0])
    assert not check_best_step(lambda f, p: (best_step(f, p)[0], len(f) - 1))
