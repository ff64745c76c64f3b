"""Auto-checks for the book's exercises: ``check_<name>(answer)`` says right or not yet, with a hint.

Every check of every part module (``part1.py``, ``part2.py``, ...) is
importable from here, found automatically, so a new part module needs no
edit to this file::

    from metalearn_nlp.exercises import check_maml_optimum
    check_maml_optimum(my_function)        # Feedback: "Correct." or "Not yet." and a hint

A check runs the student's function (or compares the student's number) on
inputs of its own and never reveals the reference solution.

Taught in: every chapter's exercises; the teachers' page explains grading.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._core import Feedback, correct, not_yet

__all__ = ["Feedback", "correct", "not_yet", "part_modules"]


def part_modules() -> list[str]:
    """The names of the part modules (``metalearn_nlp.exercises.partN``), in order of N."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("part") and m.name[4:].isdigit()]
    return [f"{__name__}.{n}" for n in sorted(names, key=lambda n: int(n[4:]))]


def _export_checks() -> None:
    for module_name in part_modules():
        module = importlib.import_module(module_name)
        for name in dir(module):
            if name.startswith("check_") and callable(getattr(module, name)):
                if name in globals() and globals()[name] is not getattr(module, name):
                    raise ImportError(f"{module_name}.{name}: another part module already defines {name}; "
                                      "rename one of the two checks")
                globals()[name] = getattr(module, name)
                __all__.append(name)


_export_checks()
