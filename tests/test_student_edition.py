"""The student edition: no solution text leaks, stubs replace marked cells, it builds, a notebook runs to its stub."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from metalearn_nlp.cli import main
from metalearn_nlp.student import (STUB, STUB_TAG, remove_solutions, solution_blocks, stub_source,
                                   write_student_edition)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _book_texts(root: Path) -> dict[Path, list[str]]:
    """Every markdown and code source of the book under ``root``, per file."""
    texts = {}
    for path in sorted((root / "book").rglob("*")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        if path.suffix == ".ipynb":
            texts[path.relative_to(root)] = [c.source for c in nbformat.read(path, as_version=4).cells]
        elif path.suffix == ".md":
            texts[path.relative_to(root)] = [path.read_text(encoding="utf-8")]
    return texts


def _stub_cells(root: Path) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((root / "book").rglob("*.ipynb")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and STUB_TAG in cell.metadata.get("tags", []):
                found.append((path.relative_to(root), cell.source))
    return found


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "edition"
    assert main(["student-edition", str(out), "--book", str(ROOT)]) == 0
    return out


# -- the pieces ----------------------------------------------------------------------------------
def test_solution_blocks_are_found_with_any_fence_and_inner_code():
    text = ("Intro\n```{exercise}\n:label: ex-a\nQ\n```\n\n```{solution} ex-a\n:class: dropdown\nA\n~~~python\nx = 1\n"
            "~~~\nmore\n```\nbetween\n````{solution} ex-b\n```python\ny\n```\n````\n:::{solution} ex-c\nC\n:::\nend\n")
    blocks = solution_blocks(text)
    assert len(blocks) == 3
    left = remove_solutions(text)
    assert "{exercise}" in left and "between" in left and left.rstrip().endswith("end")
    assert "A\n" not in left and "x = 1" not in left and "y\n" not in left and "C\n" not in left


def test_stub_keeps_leading_comments_only():
    assert stub_source("x = 1") == STUB
    assert stub_source("# NBVAL_CHECK_OUTPUT\n# why\n\ny = 2  # not kept\n# later comment") == \
        "# NBVAL_CHECK_OUTPUT\n# why\n" + STUB


def test_the_book_marks_some_stubs_and_has_solutions():
    stubs = _stub_cells(ROOT)
    chapters = {p.parts[1] for p, _ in stubs}
    assert {"02_concepts", "04_mathematics", "05_project"} <= chapters, chapters
    assert sum(len(solution_blocks(t)) for texts in _book_texts(ROOT).values() for t in texts) >= 20


def test_refuses_to_overwrite_or_to_write_into_the_book(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="--force"):
        write_student_edition(ROOT, tmp_path / "busy")
    with pytest.raises(ValueError, match="folder of its own"):
        write_student_edition(ROOT, ROOT / "book" / "student")
    with pytest.raises(FileNotFoundError, match="_toc.yml"):
        write_student_edition(tmp_path, tmp_path / "out")
    assert main(["student-edition", str(tmp_path / "busy"), "--book", str(ROOT)]) == 2
    # --force never deletes a folder that holds the book, nor one that is not an earlier edition
    with pytest.raises(ValueError, match="folder that holds it"):
        write_student_edition(ROOT, ROOT.parent, force=True)
    with pytest.raises(FileExistsError, match="not a student edition written before"):
        write_student_edition(ROOT, tmp_path / "busy", force=True)
    assert (tmp_path / "busy" / "file").read_text() == "x" and (ROOT / "_toc.yml").is_file()
    copy = tmp_path / "copy"                      # a copy of the book itself (say, from a zip): never replaced
    (copy / "book").mkdir(parents=True)
    for name in ("_toc.yml", "_config.yml"):
        (copy / name).write_text((ROOT / name).read_text())
    with pytest.raises(FileExistsError, match="not a student edition written before"):
        write_student_edition(ROOT, copy, force=True)
    assert (copy / "_toc.yml").is_file()


# -- the edition -----------------------------------------------------------------------------------
def test_no_solution_text_leaks(edition):
    original, copy = _book_texts(ROOT), _book_texts(edition)
    assert set(copy) == set(original)
    everything = "\n".join(t for texts in copy.values() for t in texts)
    outside = "\n".join(remove_solutions(t) for texts in original.values() for t in texts)
    checked = 0
    for texts in original.values():
        for text in texts:
            for block in solution_blocks(text):
                body = block.split("\n", 1)[1].rsplit("\n", 2)[0]
                assert body.strip() not in everything, block[:200]
                for line in body.splitlines():                   # each telling line, unless the chapter has it too
                    line = line.strip()
                    if len(line) >= 30 and line not in outside:
                        assert line not in everything, f"solution line leaks: {line[:120]}"
                        checked += 1
    assert checked >= 20
    assert solution_blocks(everything) == [] and not re.search(r"^(`{3,}|:{3,})\{solution\}", everything, re.M)


def test_stubbed_cells_hide_their_code(edition):
    stubs = _stub_cells(ROOT)
    assert stubs and _stub_cells(edition) != stubs
    for path, source in stubs:
        cells = nbformat.read(edition / path, as_version=4).cells
        stubbed = [c for c in cells if STUB_TAG in c.metadata.get("tags", [])]
        assert stubbed and all(c.source.endswith(STUB) and not c.outputs for c in stubbed)
        others = "\n".join(c.source for c in cells if c not in stubbed)
        for line in source.splitlines():
            if len(line.strip()) >= 25 and not line.lstrip().startswith("#"):
                assert line not in "\n".join(c.source for c in stubbed), line
        code = [line for line in source.splitlines() if len(line.strip()) >= 25 and line not in others
                and not line.lstrip().startswith("#")]
        assert code, f"{path}: a stub cell should hold code of its own"


def test_the_config_turns_execution_off(edition):
    import yaml

    config = yaml.safe_load((edition / "_config.yml").read_text())
    original = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["title"].endswith("(student edition)")
    assert config["sphinx"] == original["sphinx"] and config["repository"] == original["repository"]


def test_a_notebook_runs_up_to_its_first_stub(edition, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)       # the kernel runs the book's way, not the tests'

    path = edition / "book" / "04_mathematics" / "4_2_meta_gradient.ipynb"
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if STUB_TAG in c.metadata.get("tags", []))
    nb.cells = nb.cells[:first + 1]
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    assert nb.cells[first].source.endswith(STUB)
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_the_edition_builds_with_jupyter_book(edition):
    if shutil.which("jupyter-book", path=str(BIN)) is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    done = subprocess.run([str(BIN / "jupyter-book"), "build", str(edition), "--builder", "html"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = edition / "_build" / "html"
    assert (html / "index.html").is_file() or any(html.glob("**/*.html"))
    page = (html / "book" / "04_mathematics" / "4_2_meta_gradient.html").read_text(encoding="utf-8")
    assert STUB in page and "(student edition)" in page
    assert "solution" not in json.dumps([p.name for p in html.rglob("*.html")])


@pytest.mark.parametrize("config", [
    'title: My book\nexecute:\n  execute_notebooks: cache   # a comment\n  timeout: 9\n',
    "title: 'My book'\nexecute:\n  timeout: 9\n",
    'title: "My book"\nauthor: me\n',
])
def test_the_config_edit_keeps_everything_else(tmp_path, config):
    import yaml

    from metalearn_nlp.student import _edit_config

    path = tmp_path / "_config.yml"
    path.write_text(config)
    _edit_config(path)
    before, after = yaml.safe_load(config), yaml.safe_load(path.read_text())
    assert after["title"] == "My book (student edition)"
    assert after["execute"]["execute_notebooks"] == "off"
    assert after["execute"].get("timeout") == before.get("execute", {}).get("timeout")
    assert {k: v for k, v in after.items() if k not in ("title", "execute")} == \
        {k: v for k, v in before.items() if k not in ("title", "execute")}


def test_force_replaces_an_earlier_edition(edition):
    (edition / "stale.txt").write_text("from an earlier run")
    write_student_edition(ROOT, edition, force=True)
    assert not (edition / "stale.txt").exists() and (edition / "_toc.yml").is_file()
