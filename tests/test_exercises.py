"""The exercise checks of parts 1-5: each accepts a reference solution and rejects typical wrong answers.

Also: every ``check_*`` of every part module is exported by ``metalearn_nlp.exercises``
and is referenced by at least one test file.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import metalearn_nlp.exercises as exercises
from metalearn_nlp.exercises import (Feedback, check_compute_metrics, check_io_score, check_maml_optimum,
                                     check_optimal_baseline, check_own_reward_shrink, check_padding_cost,
                                     check_reading_cost, check_removable, check_sigmoid_derivative)

TESTS = Path(__file__).resolve().parent


def _passes(feedback):
    assert isinstance(feedback, Feedback)
    return feedback.passed


# -- the registry ------------------------------------------------------------------------------
def _all_checks():
    found = {}
    for module_name in exercises.part_modules():
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if name.startswith("check_") and callable(obj) and getattr(obj, "__module__", "") == module_name:
                found[name] = (module_name, obj)
    return found


def test_part_modules_are_found_in_order():
    names = exercises.part_modules()
    assert {"metalearn_nlp.exercises.part1", "metalearn_nlp.exercises.part5"} <= set(names)
    numbers = [int(n.rsplit("part", 1)[1]) for n in names]
    assert numbers == sorted(numbers)


def test_every_check_is_exported_and_tested():
    checks = _all_checks()
    assert len(checks) >= 9
    text = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py"))
    for name, (module_name, obj) in checks.items():
        assert getattr(exercises, name, None) is obj, f"{module_name}.{name} is not exported by metalearn_nlp.exercises"
        assert name in exercises.__all__
        uses = len(re.findall(rf"\b{name}\b", text.replace(inspect.getsource(test_every_check_is_exported_and_tested),
                                                               "")))
        assert uses >= 1, f"{module_name}.{name}: no test under tests/ refers to it"


MINE = {f"metalearn_nlp.exercises.part{n}" for n in range(1, 6)}     # parts 1-5; parts 6-9 have their own tests


def test_checks_have_docstrings_naming_their_exercise():
    for name, (module_name, obj) in _all_checks().items():
        assert obj.__doc__, f"{module_name}.{name} needs a docstring"
        assert module_name not in MINE or "ex-" in obj.__doc__, f"{module_name}.{name} needs a docstring naming its exercise label"


def test_a_check_never_raises_on_a_broken_answer():
    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")
    for name, (module_name, check) in _all_checks().items():
        if module_name not in MINE or len(inspect.signature(check).parameters) != 1:
            continue
        for answer in (broken, 42, None):
            feedback = check(answer)
            assert isinstance(feedback, Feedback) and not feedback.passed, name
            assert feedback.message, name


# -- part 1 ------------------------------------------------------------------------------------
def reading_cost(stream, types, k):
    counts = Counter()
    for read, mentions in enumerate(stream, start=1):
        counts.update(mentions)
        if all(counts[t] >= k for t in types):
            return read
    return None


def test_reading_cost_accepts_the_reference():
    assert _passes(check_reading_cost(reading_cost))


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, types, k: next((i for i in range(len(s)) if all(sum(m.count(t) for m in s[:i + 1]) >= k
                                                                for t in types)), None), "count tweets from 1"),
    (lambda s, types, k: next((i + 1 for i in range(len(s)) if all(sum(t in m for m in s[:i + 1]) >= k
                                                                    for t in types)), None), "several mentions"),
    (lambda s, types, k: next((i + 1 for i in range(len(s)) if any(sum(m.count(t) for m in s[:i + 1]) >= k
                                                                    for t in types)), None), "every type"),
    (lambda s, types, k: next((i + 1 for i in range(len(s)) if all(sum(m.count(t) for m in s[:i + 1]) >= k
                                                                    for t in types)), len(s)), "return None"),
])
def test_reading_cost_rejects_typical_mistakes(wrong, hint):
    feedback = check_reading_cost(wrong)
    assert not feedback.passed and hint in feedback.message


# -- part 2 ------------------------------------------------------------------------------------
def test_io_score():
    assert _passes(check_io_score(0, 0.0)) and _passes(check_io_score(np.float64(0), torch.tensor(0.0)))
    assert "IO gold" in check_io_score(1.0, 1.0).message
    assert not check_io_score(0.5, 0.5).passed and not check_io_score(0.0, 1.0).passed
    assert "fractions" in check_io_score(100, 0).message
    assert "two numbers" in check_io_score("zero", 0).message


def _mentions(tags):
    return Counter(t[2:] for i, t in enumerate(tags)
                   if t.startswith("B-") or (t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:])))


def removable(episode, k):
    per = [_mentions(s.tags) for s in episode.support]
    total = sum(per, Counter())
    return any(all(total[t] - c[t] >= k for t in episode.types) for c in per)


def test_removable_accepts_the_reference():
    assert _passes(check_removable(removable))


def test_removable_rejects_typical_mistakes():
    def counts_words(episode, k):
        per = [Counter(t[2:] for t in s.tags if t != "O") for s in episode.support]
        total = sum(per, Counter())
        return any(all(total[t] - c[t] >= k for t in episode.types) for c in per)

    def any_type(episode, k):                       # removable if *some* type keeps k
        per = [_mentions(s.tags) for s in episode.support]
        total = sum(per, Counter())
        return any(any(total[t] - c[t] >= k for t in episode.types) for c in per)

    assert "spans" in check_removable(counts_words).message
    assert "every" in check_removable(any_type).message
    assert "True or False" in check_removable(lambda episode, k: "no").message


# -- part 3 ------------------------------------------------------------------------------------
def test_optimal_baseline():
    assert _passes(check_optimal_baseline(lambda r, s: (r * s**2).mean() / (s**2).mean()))
    assert _passes(check_optimal_baseline(lambda r, s: torch.tensor((r * s * s).sum() / (s * s).sum())))
    assert "mean reward" in check_optimal_baseline(lambda r, s: r.mean()).message
    assert not check_optimal_baseline(lambda r, s: (r * s).mean() / s.mean()).passed
    assert "one number" in check_optimal_baseline(lambda r, s: r).message


def test_own_reward_shrink():
    assert _passes(check_own_reward_shrink(lambda K: (K - 1) / K))
    assert "not unbiased" in check_own_reward_shrink(lambda K: 1).message
    assert not check_own_reward_shrink(lambda K: 1 / K).passed
    assert not check_own_reward_shrink(lambda K: 0.5).passed            # right at K = 2 only


# -- part 4 ------------------------------------------------------------------------------------
def test_sigmoid_derivative():
    assert _passes(check_sigmoid_derivative(lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z))))
    assert "sigma itself" in check_sigmoid_derivative(torch.sigmoid).message
    assert "positive" in check_sigmoid_derivative(lambda z: torch.sigmoid(z) * (torch.sigmoid(z) - 1)).message
    assert not check_sigmoid_derivative(lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)) ** 2).passed
    assert "same shape" in check_sigmoid_derivative(lambda z: 0.25).message


def maml_optimum(a, w, alpha):
    m2a = [(1 - alpha * ai) ** 2 * ai for ai in a]
    return (sum(x * wi for x, wi in zip(m2a, w)) / sum(m2a), sum(ai * wi for ai, wi in zip(a, w)) / sum(a))


def test_maml_optimum():
    assert _passes(check_maml_optimum(maml_optimum))
    assert _passes(check_maml_optimum(lambda a, w, alpha: np.array(maml_optimum(a, w, alpha))))
    plain_mean = check_maml_optimum(lambda a, w, alpha: (maml_optimum(a, w, alpha)[0], sum(w) / len(w)))
    assert "plain mean" in plain_mean.message
    same = check_maml_optimum(lambda a, w, alpha: (maml_optimum(a, w, alpha)[1],) * 2)
    assert "should differ" in same.message
    one_power = check_maml_optimum(lambda a, w, alpha: (                      # (1 - alpha a) not squared
        sum((1 - alpha * x) * x * y for x, y in zip(a, w)) / sum((1 - alpha * x) * x for x in a),
        maml_optimum(a, w, alpha)[1]))
    assert not one_power.passed and "quadratic" in one_power.message
    assert "pair" in check_maml_optimum(lambda a, w, alpha: 0.5).message


# -- part 5 ------------------------------------------------------------------------------------
def padding_cost(lengths, batch_size):
    return sum(len(lengths[i:i + batch_size]) * max(lengths[i:i + batch_size])
               for i in range(0, len(lengths), batch_size))


def test_padding_cost():
    assert _passes(check_padding_cost(padding_cost))
    assert "real subwords" in check_padding_cost(lambda lengths, b: sum(lengths)).message
    assert "own longest" in check_padding_cost(lambda lengths, b: len(lengths) * max(lengths)).message
    full_batches = check_padding_cost(lambda lengths, b: sum(b * max(lengths[i:i + b]) for i in range(0, len(lengths), b)))
    assert not full_batches.passed


def compute_metrics(pred, names=("O", "B-PER", "I-PER", "B-LOC", "I-LOC")):
    from seqeval.metrics import f1_score, precision_score, recall_score

    ids = pred.predictions.argmax(-1)
    gold = [[names[g] for g in row if g != -100] for row in pred.label_ids]
    guess = [[names[p] for p, g in zip(prow, grow) if g != -100] for prow, grow in zip(ids, pred.label_ids)]
    return {"precision": precision_score(gold, guess), "recall": recall_score(gold, guess), "f1": f1_score(gold, guess)}


def test_compute_metrics():
    assert _passes(check_compute_metrics(compute_metrics))

    def keeps_ignored(pred, names=("O", "B-PER", "I-PER", "B-LOC", "I-LOC")):   # -100 read as a label id
        from seqeval.metrics import f1_score, precision_score, recall_score
        ids = pred.predictions.argmax(-1)
        gold = [[names[g] if g != -100 else "O" for g in row] for row in pred.label_ids]
        guess = [[names[p] for p in row] for row in ids]
        return {"precision": precision_score(gold, guess), "recall": recall_score(gold, guess),
                "f1": f1_score(gold, guess)}

    def token_accuracy(pred):
        ids, gold = pred.predictions.argmax(-1), pred.label_ids
        acc = float((ids == gold).mean())
        return {"precision": acc, "recall": acc, "f1": acc}

    assert "-100" in check_compute_metrics(keeps_ignored).message
    assert "token accuracy" in check_compute_metrics(token_accuracy).message
    percent = check_compute_metrics(lambda pred: {k: 100 * v for k, v in compute_metrics(pred).items()})
    assert "percentages" in percent.message
    assert "dict" in check_compute_metrics(lambda pred: 0.5).message


def test_feedback_never_contains_the_reference_code():
    for name, (module_name, check) in _all_checks().items():
        if module_name not in MINE or len(inspect.signature(check).parameters) != 1:
            continue
        source = inspect.getsource(importlib.import_module(module_name))
        wrong = check(lambda *args, **kwargs: None)
        for line in source.splitlines():
            line = line.strip()
            if line.startswith("return sum(") or line.startswith("maml = "):
                assert line not in wrong.message, name


def test_prior_shift():
    from metalearn_nlp.exercises import check_prior_shift

    def prior_shift(source, target):
        return [math.log(t / s) for s, t in zip(source, target)]

    assert _passes(check_prior_shift(prior_shift))
    assert check_prior_shift(lambda s, t: [v + 3.0 for v in prior_shift(s, t)]).passed   # a common constant
    assert "ratio itself" in check_prior_shift(lambda s, t: [b / a for a, b in zip(s, t)]).message
    assert "direction" in check_prior_shift(lambda s, t: [math.log(a / b) for a, b in zip(s, t)]).message
    assert "one number per label" in check_prior_shift(lambda s, t: prior_shift(s, t)[:1]).message
    assert not check_prior_shift(lambda s, t: [b - a for a, b in zip(s, t)]).passed
