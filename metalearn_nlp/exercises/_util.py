"""Small helpers shared by the part modules: call the student's code and turn its failures into hints."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._core import Feedback, not_yet


def call(function: Any, *args: Any, what: str, **kwargs: Any) -> tuple[Any, Feedback | None]:
    """``function(*args, **kwargs)``, or a hint when it is not callable or raises."""
    if not callable(function):
        return None, not_yet(f"pass your function itself ({what}), not {type(function).__name__}; "
                             "write `check_...(my_function)` without parentheses after its name")
    try:
        return function(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 - any error of the student's code becomes a hint
        return None, not_yet(f"your function raised {type(error).__name__}: {error}. It is called as {what}.")


def as_float(value: Any) -> float | None:
    """A Python float from a number, a 0-d tensor or array; None if it is not one."""
    try:
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


Check = Callable[[Any], Feedback]
