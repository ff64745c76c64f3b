"""The Colab install cell: one source for every notebook, pinned to this version's tag, skipped when installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

import metalearn_nlp
from metalearn_nlp._install import INSTALL_SPEC, REPOSITORY, TAG, install_cell_source

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                   if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)


def test_the_spec_installs_this_versions_tag_from_the_books_repository():
    assert TAG == f"v{metalearn_nlp.__version__}"
    assert INSTALL_SPEC == f"metalearn-nlp @ git+{REPOSITORY}@{TAG}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == REPOSITORY, "_config.yml's repository.url must equal _install.REPOSITORY"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_holds_the_generated_install_cell(path):
    cell = nbformat.read(path, as_version=4).cells[1]
    assert cell.source == install_cell_source(), (
        f"{path.relative_to(ROOT)}: the install cell differs; run `python .ci/sync_install_cells.py`")
    assert "hide-output" in cell.metadata.get("tags", [])


def _run_cell(source: str, importable: bool) -> list[tuple[str, str]]:
    """Run the cell's IPython source as IPython would, with a fake ``%pip``: the calls it made."""
    from IPython.core.inputtransformer2 import TransformerManager

    calls = []
    saved = sys.modules.get("metalearn_nlp")

    class FakeShell:
        def run_line_magic(self, name, line):
            calls.append((name, line))
            sys.modules["metalearn_nlp"] = saved           # "installed": importable from now on

    if not importable:
        sys.modules["metalearn_nlp"] = None                 # import raises ModuleNotFoundError
    try:
        code = TransformerManager().transform_cell(source)
        exec(compile(code, "<install cell>", "exec"), {"get_ipython": FakeShell})  # noqa: S102
    finally:
        sys.modules["metalearn_nlp"] = saved
    return calls


def test_the_cell_skips_the_install_when_the_package_is_importable():
    assert _run_cell(install_cell_source(), importable=True) == []


def test_the_cell_installs_the_pinned_spec_when_the_package_is_missing():
    calls = _run_cell(install_cell_source(), importable=False)
    assert len(calls) == 1 and calls[0][0] == "pip"
    assert f'"{INSTALL_SPEC}"' in calls[0][1] and "install" in calls[0][1]


def test_the_sync_script_is_idempotent(tmp_path):
    stale = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 9 A chapter"),
        nbformat.v4.new_code_cell('try:\n    import metalearn_nlp\nexcept ModuleNotFoundError:\n    %pip install x\n'),
        nbformat.v4.new_code_cell("print(1)")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(stale, path)
    script = [sys.executable, str(ROOT / ".ci" / "sync_install_cells.py")]
    assert subprocess.run([*script, "--check", str(path)], capture_output=True).returncode == 1
    assert subprocess.run([*script, str(path)], capture_output=True).returncode == 0
    first = path.read_bytes()
    cell = nbformat.read(path, as_version=4).cells[1]
    assert cell.source == install_cell_source() and cell.metadata["tags"] == ["hide-output"]
    assert subprocess.run([*script, str(path)], capture_output=True).returncode == 0
    assert path.read_bytes() == first
    assert subprocess.run([*script, "--check", str(path)], capture_output=True).returncode == 0
    executed = nbformat.read(path, as_version=4)  # an executed notebook numbers the cell: not a difference
    executed.cells[1].execution_count = 1
    nbformat.write(executed, path)
    assert subprocess.run([*script, "--check", str(path)], capture_output=True).returncode == 0
