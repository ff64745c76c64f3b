"""What every exercise check returns: a verdict and a hint, never the solution.

A check is a function ``check_<name>(answer, ...) -> Feedback`` in the module
of its part (``part3.py``, ``part6.py``, ...). It accepts the student's
function or number, runs it on inputs of its own, and says whether it is
right; when it is not, the message is a hint that points at the mistake
without giving the answer away.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Feedback", "correct", "not_yet"]


@dataclass(frozen=True)
class Feedback:
    """The verdict of one check: ``passed`` and a message for the student."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return ("Correct. " if self.passed else "Not yet. ") + self.message

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        return ("**Correct.** " if self.passed else "**Not yet.** ") + self.message


def correct(message: str = "") -> Feedback:
    """A passed check, with an optional remark."""
    return Feedback(True, message)


def not_yet(hint: str) -> Feedback:
    """A failed check; ``hint`` must not reveal the solution."""
    return Feedback(False, hint)
