"""Checks for the exercises of part 1 (Background).

Taught in: chapter 1 (Background), exercise ``ex-1-cost``.
"""

from __future__ import annotations

from typing import Any

from ._core import Feedback, correct, not_yet
from ._util import call

__all__ = ["check_reading_cost"]


def _reading_cost(stream: list[list[str]], types: list[str], k: int) -> int | None:
    counts = dict.fromkeys(types, 0)
    for read, mentions in enumerate(stream, start=1):
        for t in mentions:
            if t in counts:
                counts[t] += 1
        if all(c >= k for c in counts.values()):
            return read
    return None


_CASES: list[tuple[list[list[str]], list[str], int]] = [
    ([["movie"], [], ["tvshow"], []], ["movie", "tvshow"], 1),
    ([[], ["movie", "movie"], [], ["tvshow"], ["movie"]], ["movie"], 2),            # two mentions in one tweet
    ([["movie"], ["movie"], ["tvshow"], [], ["tvshow"], ["movie"]], ["movie", "tvshow"], 2),
    ([["person"], ["movie"], []], ["movie", "tvshow"], 1),                          # never found: None
    ([["movie", "tvshow"], ["person"]], ["movie", "tvshow"], 1),                    # one tweet finds both
    ([[]] * 7 + [["tvshow"]], ["tvshow"], 1),
]


def check_reading_cost(answer: Any) -> Feedback:
    """Exercise ``ex-1-cost``: how many tweets must be read to find ``k`` mentions of every type.

    ``answer(stream, types, k)`` gets ``stream``, one list per tweet in
    reading order holding the entity type of each mention in it, and must
    return how many tweets were read when every type in ``types`` first has
    at least ``k`` mentions, or None when the stream runs out first.

    Example:
        >>> check_reading_cost(lambda stream, types, k: len(stream)).passed
        False
    """
    for stream, types, k in _CASES:
        result, problem = call(answer, stream, types, k, what="answer(stream, types, k)")
        if problem:
            return problem
        expected = _reading_cost(stream, types, k)
        if result != expected:
            if expected is None:
                return not_yet("when the stream ends before every type has k mentions, return None")
            if result is not None and result == expected - 1:
                return not_yet("count tweets from 1: reading the first tweet costs one tweet")
            if any(len(m) > 1 for m in stream):
                return not_yet("a tweet can hold several mentions, and all of them count")
            return not_yet(f"wrong number of tweets for k={k} and {len(types)} type(s): every type must "
                           "reach k, not just the first one")
    return correct("your simulation counts tweets the way the chapter does.")
