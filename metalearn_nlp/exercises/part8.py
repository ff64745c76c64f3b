"""Checks for the exercises of part 8 (trends and challenges, measured).

Each ``check_*`` runs the student's answer on inputs of its own and returns a
:class:`~metalearn_nlp.exercises._core.Feedback`: ``correct()`` or ``not_yet(hint)``,
where the hint points at the mistake without giving the solution away.

Taught in: chapter 8.1 (Data need and compute cost), chapter 8.2 (Interpretability,
robustness and the trends).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from ._core import Feedback, correct, not_yet
from ._util import call

__all__ = ["check_log_log_slope", "check_token_confusion"]


def check_log_log_slope(log_log_slope: Callable[[Any, Any], float]) -> Feedback:
    """Check ``log_log_slope(xs, ys)``: the least-squares slope of ``log y`` against ``log x``.

    Example:
        >>> import numpy as np
        >>> def slope(xs, ys):
        ...     x, y = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
        ...     return float(np.polyfit(x, y, 1)[0])
        >>> check_log_log_slope(slope).passed
        True

    Taught in: chapter 8.1.
    """
    cases = [
        ([1, 2, 4, 8], [3.0, 6.0, 12.0, 24.0], 1.0, "a straight line through the origin (slope 1)"),
        ([2, 4, 8], [4.0, 16.0, 64.0], 2.0, "a quadratic, y = x^2"),
        ([10, 100, 1000], [5.0, 5.0, 5.0], 0.0, "a constant"),
        ([1, 2, 3, 4], [1.0, 2.2, 2.9, 4.3], None, "noisy points, where only least squares gives the answer"),
    ]
    for xs, ys, expected, what in cases:
        if expected is None:
            lx = [math.log(x) for x in xs]
            ly = [math.log(y) for y in ys]
            mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
            expected = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
        value, failed = call(log_log_slope, list(xs), list(ys), what="log_log_slope(xs, ys)")
        if failed is not None:
            return failed
        try:
            value = float(value)
        except (TypeError, ValueError):
            return not_yet(f"return one number (the slope), got {type(value).__name__}")
        if not math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9):
            hint = "use natural (or any) logarithms of both x and y, then fit a line"
            if expected is not None and what.startswith("noisy"):
                hint = ("with more than two points, the slope must be the least-squares fit over all of them, "
                        "not the slope between the first and the last point")
            return not_yet(f"on {what} your slope is {value:.4g}: {hint}")
    return correct("on a log-log plot, cost = a * x^b is a line of slope b.")


def check_token_confusion(token_confusion: Callable[[Any, Any], Counter]) -> Feedback:
    """Check ``token_confusion(gold, predicted) -> Counter`` of ``(gold_tag, predicted_tag)`` word pairs.

    Example:
        >>> from collections import Counter
        >>> def confusion(gold, predicted):
        ...     pairs = Counter()
        ...     for g, p in zip(gold, predicted, strict=True):
        ...         if len(g) != len(p):
        ...             raise ValueError("lengths differ")
        ...         pairs.update(zip(g, p))
        ...     return pairs
        >>> check_token_confusion(confusion).passed
        True

    Taught in: chapter 8.2.
    """
    gold = [["movie", "movie", "O", "O"], ["O", "tvshow"], ["product"]]
    predicted = [["movie", "tvshow", "O", "movie"], ["O", "O"], ["product"]]
    expected = Counter({("movie", "movie"): 1, ("movie", "tvshow"): 1, ("O", "O"): 2, ("O", "movie"): 1,
                        ("tvshow", "O"): 1, ("product", "product"): 1})
    value, failed = call(token_confusion, [list(s) for s in gold], [list(s) for s in predicted],
                         what="token_confusion(gold, predicted)")
    if failed is not None:
        return failed
    if not isinstance(value, Counter):
        return not_yet(f"return a collections.Counter of (gold, predicted) pairs, got {type(value).__name__}")
    if sum(value.values()) != 7:
        return not_yet(f"the sentences hold 7 words, and each gives exactly one pair; your counts add up to "
                       f"{sum(value.values())}")
    if any(not (isinstance(k, tuple) and len(k) == 2) for k in value):
        return not_yet("each key should be a (gold_tag, predicted_tag) tuple")
    if value.get(("tvshow", "O"), 0) != 1 or value.get(("O", "tvshow"), 0) != 0:
        return not_yet("check the order inside each pair: the gold tag comes first, the predicted tag second")
    if +value != expected:
        return not_yet("some pair counts are off: pair each word's gold tag with the predicted tag of the same word")
    try:
        token_confusion([["O", "movie"]], [["O"]])
    except ValueError:
        pass
    except Exception as exc:
        return not_yet(f"a length mismatch should raise ValueError, not {type(exc).__name__}")
    else:
        return not_yet("a sentence whose gold and predicted tags differ in length should raise ValueError, "
                       "not be silently cut short")
    return correct("rows of this counter, normalised, are the rows of the chapter's confusion matrix.")
