"""Rewrite every notebook's Colab install cell from metalearn_nlp/_install.py (idempotent).

    python .ci/sync_install_cells.py                 # every notebook under book/
    python .ci/sync_install_cells.py book/02_concepts/2_core_concepts.ipynb
    python .ci/sync_install_cells.py --check         # exit 1 and list the notebooks that differ

The install cell is the first code cell whose source contains
``except ModuleNotFoundError`` (the book puts it second, after the title);
a notebook without one gets it inserted after its first cell. The cell is
tagged ``hide-output`` and its outputs are cleared (its execution count is
kept, so an executed notebook is not rewritten for it). A notebook is written
only when something changed, so running the script twice changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metalearn_nlp._install import install_cell_source  # noqa: E402

MARKER = "except ModuleNotFoundError"


def notebooks(paths: list[str]) -> list[Path]:
    if paths:
        return [Path(p).resolve() for p in paths]
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)


def sync(nb: nbformat.NotebookNode) -> bool:
    """Make ``nb``'s install cell the generated one; True if anything changed."""
    source = install_cell_source()
    cell = next((c for c in nb.cells if c.cell_type == "code" and MARKER in c.source), None)
    if cell is None:
        cell = nbformat.v4.new_code_cell(source)
        cell.pop("id", None)
        nb.cells.insert(1, cell)
        changed = True
    else:
        # the execution count is left as it is: an executed notebook keeps its numbering
        changed = cell.source != source or bool(cell.outputs)
        cell.source, cell.outputs = source, []
    tags = cell.metadata.setdefault("tags", [])
    if "hide-output" not in tags:
        tags.append("hide-output")
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to rewrite (default: every one under book/)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook differs")
    args = parser.parse_args(argv)
    stale = []
    for path in notebooks(args.notebooks):
        nb = nbformat.read(path, as_version=4)
        if sync(nb):
            stale.append(path)
            if not args.check:
                nbformat.write(nb, path)
    for path in stale:
        print(f"{'differs' if args.check else 'rewrote'}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
