"""Checks for the exercises of part 2 (Core concepts).

Taught in: chapter 2 (Core concepts), exercises ``ex-2-io-score`` and ``ex-2-minimal``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ._core import Feedback, correct, not_yet
from ._util import as_float, call

__all__ = ["check_io_score", "check_removable"]


def check_io_score(precision: Any, recall: Any) -> Feedback:
    """Exercise ``ex-2-io-score``: precision and recall of the IO prediction scored against BIO gold.

    Example:
        >>> check_io_score(1.0, 1.0).passed
        False
    """
    p, r = as_float(precision), as_float(recall)
    if p is None or r is None:
        return not_yet("pass two numbers, precision and recall (fractions between 0 and 1)")
    if p > 1 or r > 1:
        return not_yet("give the scores as fractions between 0 and 1, not percentages")
    if (p, r) == (0.0, 0.0):
        return correct("the single predicted span matches neither gold span exactly.")
    if p == 1.0 and r == 1.0:
        return not_yet("that is the score against the IO gold; convert the prediction to BIO and score it "
                       "against the BIO gold tags")
    return not_yet("entity-level scores count a span as right only when its start, end and type all match: "
                   "how many predicted spans match a gold span exactly?")


def _spans(tags: list[str]) -> list[tuple[int, int, str]]:
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        if tag == "O" or tag.startswith("B-") or (kind is not None and tag[2:] != kind):
            if start is not None:
                spans.append((start, i, kind))
            start, kind = (i, tag[2:]) if tag != "O" else (None, None)
        elif start is None:
            start, kind = i, tag[2:]
    return spans


def _removable(support: list[list[str]], types: list[str], k: int) -> bool:
    per = [Counter(t for *_, t in _spans(tags)) for tags in support]
    total = sum(per, Counter())
    return any(all(total[t] - c[t] >= k for t in types) for c in per)


class _Sentence:
    def __init__(self, tags: list[str]):
        self.tags, self.tokens = tuple(tags), tuple(f"w{i}" for i in range(len(tags)))


class _Episode:
    def __init__(self, support: list[list[str]], types: list[str]):
        self.support, self.types, self.scheme = [_Sentence(t) for t in support], list(types), "bio"


_CASES: list[tuple[list[list[str]], list[str], int]] = [
    ([["B-a", "O"], ["B-b"]], ["a", "b"], 1),                           # minimal
    ([["B-a", "O"], ["B-a", "B-b"]], ["a", "b"], 1),                    # the first sentence is redundant
    ([["B-a", "I-a", "B-a"], ["O", "B-b"], ["B-b", "O"]], ["a", "b"], 2),  # minimal at k=2: each b counts
    ([["B-a", "B-b"], ["B-b", "B-a"], ["B-a"]], ["a", "b"], 2),          # the last one is redundant
    ([["B-a", "I-a"], ["B-a"]], ["a"], 2),                               # a two-word mention is one mention
    ([["B-a", "I-a"], ["B-a"], ["B-a"]], ["a"], 2),                      # ... so one of three is redundant
]


def check_removable(answer: Any) -> Feedback:
    """Exercise ``ex-2-minimal``: ``answer(episode, k)`` is True when some support sentence can be removed.

    The episodes are small BIO episodes (``episode.support``, ``episode.types``,
    ``episode.scheme``) built by the check; a sentence is removable when every
    type keeps at least ``k`` mentions without it.

    Example:
        >>> check_removable(lambda episode, k: False).passed
        False
    """
    for support, types, k in _CASES:
        result, problem = call(answer, _Episode(support, types), k, what="answer(episode, k)")
        if problem:
            return problem
        expected = _removable(support, types, k)
        if not isinstance(result, (bool,)) and type(result).__name__ != "bool_":
            return not_yet(f"return True or False, not {type(result).__name__}")
        if bool(result) != expected:
            if any(len(_spans(t)) < sum(x != "O" for x in t) for t in support):
                return not_yet("count mentions (spans), not entity words: a mention can span several words")
            return not_yet("a sentence is removable when *every* type still has at least k mentions without "
                           "it; check the mentions the other sentences add")
    return correct("your test finds exactly the redundant support sentences.")
