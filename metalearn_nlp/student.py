"""The student edition: a copy of the book without solutions, with marked code cells turned into stubs.

::

    metalearn-nlp student-edition student-book/          # then: jupyter-book build student-book/

What changes in the copy:

- every ``{solution}`` block (a fenced ```` ```{solution} ```` or
  ``:::{solution}`` directive, in a notebook's markdown cell or in a ``.md``
  page) is removed, and a markdown cell left empty (or holding only a
  ``## Solutions`` heading) is dropped;
- every code cell tagged ``student-stub`` keeps its leading comment lines and
  gets ``# YOUR CODE HERE`` instead of its code; its outputs are cleared. The
  cells before the first stub are unchanged, so a notebook runs up to it;
- ``_config.yml`` gets ``execute_notebooks: "off"`` (the stored outputs of the
  other cells are kept; students run the notebooks themselves) and
  " (student edition)" in its title.

Everything else (``_toc.yml``, pages, bibliography) is copied as it is.
``tests/test_student_edition.py`` checks that no solution text leaks, that the
copy builds with Jupyter Book and that a notebook runs up to its first stub.

Taught in: the teachers' page (``book/teachers.md``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STUB", "STUB_TAG", "EditionReport", "remove_solutions", "solution_blocks", "stub_source",
           "write_student_edition"]

#: The tag that marks a code cell the student writes.
STUB_TAG = "student-stub"
#: What a stubbed cell holds after its leading comments.
STUB = "# YOUR CODE HERE"
#: What is copied from the book's root (the rest of the checkout is not part of the book).
_ROOT_FILES = ("_config.yml", "_toc.yml")
_IGNORE = shutil.ignore_patterns("_build", ".ipynb_checkpoints", "__pycache__", ".jupyter_cache", "*.pyc")

# a directive opened by 3+ backticks or 3+ colons, its name {solution}, closed by the same fence alone on a line
_SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}[^\n]*\n.*?^(?P=fence)[ \t]*$\n?", re.M | re.S)


def solution_blocks(text: str) -> list[str]:
    """The ``{solution}`` directives in a markdown text, each whole (fences included).

    Example:
        >>> solution_blocks("Q\\n```{solution} ex-a\\nA\\n```\\nafter")
        ['```{solution} ex-a\\nA\\n```\\n']
    """
    return [m.group(0) for m in _SOLUTION.finditer(text)]


def remove_solutions(text: str) -> str:
    """``text`` without its ``{solution}`` directives (and without the blank lines they leave)."""
    return re.sub(r"\n{3,}", "\n\n", _SOLUTION.sub("", text))


def stub_source(source: str) -> str:
    """A stubbed cell: its leading comment lines, then :data:`STUB`.

    Example:
        >>> stub_source("# NBVAL_CHECK_OUTPUT\\n# a comment\\nx = 1\\nprint(x)")
        '# NBVAL_CHECK_OUTPUT\\n# a comment\\n# YOUR CODE HERE'
    """
    lines = source.splitlines()
    head = []
    for line in lines:
        if line.lstrip().startswith("#") or not line.strip() and head:
            head.append(line)
        else:
            break
    while head and not head[-1].strip():
        head.pop()
    return "\n".join([*head, STUB])


@dataclass
class EditionReport:
    """What :func:`write_student_edition` did."""

    out: Path
    notebooks: int = 0
    pages: int = 0
    solutions_removed: int = 0
    stubs: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"wrote the student edition to {self.out}: {self.notebooks} notebooks and {self.pages} pages, "
                f"{self.solutions_removed} solutions removed, {sum(self.stubs.values())} code cells stubbed")


def _markdown_drop(text: str) -> bool:
    rest = text.strip()
    return not rest or re.fullmatch(r"#+\s*Solutions?", rest) is not None


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def _edit_notebook(path: Path, report: EditionReport) -> None:
    """Edit one notebook in place (plain JSON, written the way Jupyter writes it)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells, stubs = [], 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = _source(cell)
            found = solution_blocks(text)
            if found:
                report.solutions_removed += len(found)
                text = remove_solutions(text).strip("\n")
                if _markdown_drop(text):
                    continue
                _set_source(cell, text)
        elif cell.get("cell_type") == "code" and STUB_TAG in cell.get("metadata", {}).get("tags", []):
            _set_source(cell, stub_source(_source(cell)))
            cell["outputs"], cell["execution_count"] = [], None
            stubs += 1
        cells.append(cell)
    nb["cells"] = cells
    if stubs:
        report.stubs[path.as_posix()] = stubs
    path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    report.notebooks += 1


def _edit_config(path: Path) -> None:
    """Title " (student edition)" and ``execute_notebooks: "off"``, edited as text so the comments stay."""
    text = path.read_text(encoding="utf-8")
    title = re.search(r"^title:[ \t]*(.*?)[ \t]*$", text, re.M)
    if title:
        old = title.group(1)
        name = old[1:-1] if len(old) >= 2 and old[0] == old[-1] and old[0] in "'\"" else old
        text = text[:title.start()] + f"title: {json.dumps(name + ' (student edition)', ensure_ascii=False)}" + \
            text[title.end():]
    else:
        text = 'title: "The book (student edition)"\n' + text
    if re.search(r"^[ \t]+execute_notebooks:", text, re.M):
        text = re.sub(r"^([ \t]+execute_notebooks:)[^\n]*$", r'\1 "off"             # the student edition', text,
                      count=1, flags=re.M)
    elif re.search(r"^execute:[ \t]*$", text, re.M):
        text = re.sub(r"^execute:[ \t]*$", 'execute:\n  execute_notebooks: "off"', text, count=1, flags=re.M)
    else:
        text = text.rstrip("\n") + '\n\nexecute:\n  execute_notebooks: "off"\n'
    path.write_text(EDITION_HEADER + text, encoding="utf-8")


#: The first line of an edition's ``_config.yml``: what ``--force`` looks for before replacing a folder.
EDITION_HEADER = "# The student edition, written by `metalearn-nlp student-edition`: solutions removed, stubs to fill.\n"


def _is_edition(folder: Path) -> bool:
    config = folder / "_config.yml"
    try:
        return config.is_file() and config.read_text(encoding="utf-8").startswith(EDITION_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def write_student_edition(book: str | Path, out: str | Path, *, force: bool = False) -> EditionReport:
    """Write the student edition of the book at ``book`` (the folder holding ``_toc.yml``) into ``out``.

    Arguments:
        book: the book's root: ``_config.yml``, ``_toc.yml`` and the ``book/`` folder.
        out: the folder to write; must not exist, or be empty, unless ``force``.
        force: replace an existing ``out``.

    Raises:
        FileNotFoundError: ``book`` has no ``_toc.yml`` or ``_config.yml`` (the message names the folder).
        FileExistsError: ``out`` exists and is not empty, and ``force`` is False.

    Example:
        >>> report = write_student_edition(".", "/tmp/student-book", force=True)  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        wrote the student edition to /tmp/student-book: 12 notebooks and 3 pages, 52 solutions removed, ...
    """
    book, out = Path(book).resolve(), Path(out).resolve()
    for name in _ROOT_FILES:
        if not (book / name).is_file():
            raise FileNotFoundError(f"{book}: no {name}; pass the book's root folder (the one holding _toc.yml)")
    if out == book or book / "book" in (out, *out.parents) or out in book.parents:
        raise ValueError(f"{out}: the student edition must go to a folder of its own, not into the book "
                         "or a folder that holds it")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty; choose another folder or pass --force")
        if not _is_edition(out) or (out / ".git").exists():
            raise FileExistsError(f"{out} is not a student edition written before (its _config.yml does not start "
                                  "with the edition's header line): --force only replaces an earlier student "
                                  "edition; choose another folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in _ROOT_FILES:
        shutil.copy2(book / name, out / name)
    shutil.copytree(book / "book", out / "book", ignore=_IGNORE, dirs_exist_ok=True)
    (out / "_build" / "vendor").mkdir(parents=True, exist_ok=True)     # html_static_path; `make vendor` fills it
    report = EditionReport(out)
    for path in sorted((out / "book").rglob("*.ipynb")):
        _edit_notebook(path, report)
    for path in sorted((out / "book").rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        found = solution_blocks(text)
        if found:
            report.solutions_removed += len(found)
            path.write_text(remove_solutions(text), encoding="utf-8")
        report.pages += 1
    _edit_config(out / "_config.yml")
    return report
