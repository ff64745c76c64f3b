"""Intervals for few-shot results: over test episodes (bootstrap) and over seeds (Student-t).

* ``bootstrap_interval``: the book's interval over **test episodes**, a 95%
  percentile bootstrap that resamples whole episodes with replacement and
  recomputes the pooled F1 from their ``(gold, predicted, correct)`` counts
  (``Report.episode_counts``), so it never leaves [0, 1]; on class episodes
  also of the accuracy or the macro-F1.
* ``paired_difference_interval``: the difference of two learners' F1 on the
  same episodes, with the same resamples for both.
* ``summarize``: the mean and a 95% Student-t interval over **seeds**
  (reports of independent runs), ``mean ± t_{0.975, n-1} · s / sqrt(n)``.

``metalearn_nlp.evaluation`` re-exports all three.

Taught in: chapter 5.2 (one interval method for the book); chapters 6.1, 8 and 9.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .data.episode import CLASS_SCHEME

if TYPE_CHECKING:
    from .evaluation import Report

__all__ = ["bootstrap_interval", "paired_difference_interval", "summarize"]


def _pooled_f1(counts: Any) -> Any:
    gold, predicted, correct = counts[..., 0].sum(-1), counts[..., 1].sum(-1), counts[..., 2].sum(-1)
    total = gold + predicted
    return 2 * correct / (total + (total == 0))


def bootstrap_interval(
    counts: Report | Sequence[Sequence[int]],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    metric: str = "f1",
) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled F1 over test episodes.

    Whole episodes are resampled with replacement ``resamples`` times; each
    resample's F1 is computed from its pooled ``(gold, predicted, correct)``
    counts, and the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` percentiles of those F1s. Pooled counts cannot give
    an F1 outside [0, 1], so neither can the interval (a symmetric
    mean ± half-width interval can).

    Arguments:
        counts: a ``Report`` (its ``episode_counts``), or one
            ``(gold, predicted, correct)`` triple per episode.
        resamples (int, default 1000): bootstrap resamples.
        level (float, default 0.95): coverage of the interval.
        seed (int, default 0): seed of the resampling, so the interval is
            reproducible.
        metric (str, default ``"f1"``): ``"f1"``, the pooled F1; for a
            ``Report`` on class episodes also ``"accuracy"`` (the same number
            there: every text gets one label) or ``"macro_f1"``, recomputed
            on each resample from the pooled per-label counts
            (``Report.class_counts``).

    Returns:
        ``(low, high)`` as fractions in [0, 1].

    Raises:
        ValueError: no episodes, a report without ``episode_counts`` (one
            loaded from a file written before they were recorded), a count
            that is not a triple of non-negative integers, or a ``level``
            outside (0, 1).

    Example:
        >>> low, high = bootstrap_interval([(2, 2, 1), (3, 1, 1), (0, 1, 0)], seed=0)
        >>> 0 <= low <= high <= 1
        True

    Taught in: chapter 5.2; chapters 6.1, 8 and 9.
    """
    import numpy as np

    if metric not in ("f1", "accuracy", "macro_f1"):
        raise ValueError(f"metric must be 'f1', 'accuracy' or 'macro_f1', got {metric!r}")
    from .evaluation import Report

    if metric != "f1" and not (isinstance(counts, Report) and counts.scheme == CLASS_SCHEME):
        raise ValueError(f"metric={metric!r} needs a Report of evaluate() on class episodes (labelled texts)")
    if metric == "macro_f1":
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        return _bootstrap_macro_f1(counts.class_counts or [], resamples, level, seed)  # type: ignore[union-attr]
    if isinstance(counts, Report):
        if counts.episode_counts is None:
            raise ValueError("this report has no episode_counts (evaluate records them; a report read from an "
                             "older file lacks them): re-run evaluate")
        counts = counts.episode_counts
    array = np.asarray(counts, dtype=np.int64) if len(counts) else np.zeros((0, 3), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 3 or (array < 0).any():
        raise ValueError(f"counts must be one (gold, predicted, correct) triple of non-negative integers per "
                         f"episode; got an array of shape {array.shape}")
    if len(array) == 0:
        raise ValueError("bootstrap_interval needs at least one episode")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(array), size=(resamples, len(array)))
    f1 = _pooled_f1(array[index])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(f1, [tail, 100 - tail])
    return float(low), float(high)


def _bootstrap_macro_f1(class_counts: Sequence[Mapping[str, Sequence[int]]], resamples: int, level: float,
                        seed: int) -> tuple[float, float]:
    """``bootstrap_interval(metric="macro_f1")``: the same episode resamples, macro-F1 from pooled label counts."""
    import numpy as np

    if not class_counts:
        raise ValueError("bootstrap_interval needs at least one episode with class_counts (re-run evaluate)")
    labels = sorted({label for episode in class_counts for label in episode})
    column = {label: i for i, label in enumerate(labels)}
    array = np.zeros((len(class_counts), len(labels), 3), dtype=np.int64)
    for e, episode in enumerate(class_counts):
        for label, triple in episode.items():
            array[e, column[label]] = triple
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(array), size=(resamples, len(array)))
    weights = np.zeros((resamples, len(array)), dtype=np.int64)
    np.add.at(weights, (np.arange(resamples)[:, None], index), 1)
    pooled = (weights @ array.reshape(len(array), -1)).reshape(resamples, len(labels), 3)
    total = pooled[..., 0] + pooled[..., 1]
    present = total > 0
    f1 = np.where(present, 2 * pooled[..., 2] / np.maximum(total, 1), 0.0)
    macro = f1.sum(1) / np.maximum(present.sum(1), 1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(macro, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference_interval(a: Report, b: Report, *, resamples: int = 1000, level: float = 0.95,
                               seed: int = 0) -> tuple[float, float, float]:
    """F1(a) - F1(b) on the same test episodes, with a percentile bootstrap interval over episodes.

    The same resampled episodes are used for both learners in every
    resample (a paired bootstrap), so the episode-to-episode difficulty that
    both share cancels out; the interval is of the difference of pooled F1s.

    Arguments:
        a, b: reports of two learners on the same episodes, in the same order
            (``evaluate`` records ``episode_counts``).
        resamples, level, seed: as :func:`bootstrap_interval`.

    Returns:
        ``(difference, low, high)`` as fractions.

    Raises:
        ValueError: reports without ``episode_counts``, over different numbers
            of episodes, or a ``level`` outside (0, 1).

    Example:
        >>> diff, low, high = paired_difference_interval(remedy_report, plain_report)  # doctest: +SKIP

    Taught in: chapters 8.2 and 9.
    """
    import numpy as np

    ca, cb = (np.asarray(getattr(r, "episode_counts", None) or [], dtype=np.int64) for r in (a, b))
    if not len(ca) or ca.shape != cb.shape:
        raise ValueError(f"paired_difference_interval needs two reports with episode_counts over the same "
                         f"episodes; got {len(ca)} and {len(cb)} episodes")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(ca), size=(resamples, len(ca)))
    diffs = _pooled_f1(ca[index]) - _pooled_f1(cb[index])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(_pooled_f1(ca) - _pooled_f1(cb)), float(low), float(high)


def _t_quantile(n: int) -> float:
    """t_{0.975, n-1}, the two-sided 95% Student-t quantile."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


def _interval(values: Sequence[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": None, "half_width": None, "low": None, "high": None, "n": n}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(n) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "half_width": half, "low": mean - half, "high": mean + half, "n": n}


def summarize(reports: Sequence[Report | Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and 95% t-interval of precision, recall and F1 over independent runs (seeds).

    Each report is one run (one meta-training seed, or one set of test
    episodes). The interval is ``mean ± t_{0.975, n-1} s / sqrt(n)`` with
    ``s`` the sample standard deviation (n - 1 in the denominator). With one
    report the interval fields are None. Report at least 3 seeds.

    Arguments:
        reports: ``Report`` objects or their ``to_dict()``.

    Returns:
        ``{"n", "precision", "recall", "f1": {"mean", "std", "half_width",
        "low", "high", "n"}, "per_type": {type: {...F1 interval}}, "text"}``
        with ``text`` like ``"F1 41.20 ± 3.10 (95% t-interval, n=3)"``.

    Raises:
        ValueError: no reports.

    Example:
        >>> summary = summarize([report_seed0, report_seed1, report_seed2])  # doctest: +SKIP

    Taught in: chapter 5.3; chapter 8.
    """
    from .evaluation import Report

    if not reports:
        raise ValueError("summarize needs at least one report")
    items = [Report.from_dict(r) if isinstance(r, Mapping) else r for r in reports]
    out: dict[str, Any] = {"n": len(items)}
    for metric in ("precision", "recall", "f1"):
        out[metric] = _interval([getattr(r, metric) for r in items])
    types = sorted({t for r in items for t in r.per_type})
    # a type only some runs saw (different episodes) is summarised over those runs; see its "n"
    out["per_type"] = {t: _interval([r.per_type[t].f1 for r in items if t in r.per_type]) for t in types}
    f1 = out["f1"]
    if f1["half_width"] is None:
        out["text"] = f"F1 {100 * f1['mean']:.2f} (one run: no interval)"
    else:
        out["text"] = f"F1 {100 * f1['mean']:.2f} ± {100 * f1['half_width']:.2f} (95% t-interval, n={len(items)})"
    return out
