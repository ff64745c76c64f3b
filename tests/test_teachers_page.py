"""The teachers' page: its generated tables are present, cover every chapter and list every exercise check."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "teachers.md"


def _script():
    spec = importlib.util.spec_from_file_location("notebook_times", ROOT / ".ci" / "notebook_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_time_table_lists_every_chapter_of_the_toc():
    times = _script()
    page = PAGE.read_text(encoding="utf-8")
    table = page.split(times.START, 1)[1].split(times.END, 1)[0]
    import nbformat

    for path in times.toc_notebooks():
        title = nbformat.read(path, as_version=4).cells[0].source.lstrip("# ").splitlines()[0]
        assert f"| {title} |" in table, f"{path.name} is missing from the page's table: run .ci/notebook_times.py --write"
    assert "**all chapters**" in table


def test_the_checks_table_is_generated_from_the_package():
    times = _script()
    page = PAGE.read_text(encoding="utf-8")
    listed = page.split(times.CHECKS_START, 1)[1].split(times.CHECKS_END, 1)[0].strip()
    assert listed == times.checks_table(), "the page's checks table is stale: run .ci/notebook_times.py --write"


def test_notebook_time_sums_cell_timings(tmp_path):
    import nbformat

    times = _script()
    cells = [nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="trained now")])
             for _ in range(2)]
    for cell in cells:
        cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00.000Z",
                                      "shell.execute_reply": "2026-01-01T00:00:02.500Z"}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), *cells])
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert times.notebook_time(tmp_path / "a.ipynb") == (5.0, "trained")
    del nb.cells[2].metadata["execution"]
    nbformat.write(nb, tmp_path / "b.ipynb")
    assert times.notebook_time(tmp_path / "b.ipynb")[0] is None
