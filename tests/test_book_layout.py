"""The book's skeleton: every TOC entry exists, every page has a title, every notebook has a Colab cell."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files.extend(s["file"] for s in chapter.get("sections", []))
    return files


def _resolve(entry):
    for ext in (".ipynb", ".md"):
        if (ROOT / (entry + ext)).exists():
            return ROOT / (entry + ext)
    raise AssertionError(f"_toc.yml lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists")


@pytest.mark.parametrize("entry", _toc_files())
def test_toc_entry_has_a_title(entry):
    path = _resolve(entry)
    if path.suffix == ".md":
        first = path.read_text().lstrip().splitlines()[0]
    else:
        first = nbformat.read(path, as_version=4).cells[0].source.lstrip().splitlines()[0]
    assert first.startswith("# "), f"{path}: the first line must be a '# Title' (jupyter-book -W needs one)"


def test_every_notebook_is_in_the_toc_and_starts_with_the_colab_cell():
    listed = {_resolve(e) for e in _toc_files()}
    for nb_path in sorted((ROOT / "book").rglob("*.ipynb")):
        if "_build" in nb_path.parts or ".ipynb_checkpoints" in nb_path.parts:
            continue
        assert nb_path in listed, f"{nb_path} is not listed in _toc.yml"
        cell = nbformat.read(nb_path, as_version=4).cells[1]
        assert "except ModuleNotFoundError" in cell.source and "hide-output" in cell.metadata.get("tags", []), (
            f"{nb_path}: the first code cell must be the hidden Colab install cell")


def _title(entry):
    path = _resolve(entry)
    text = path.read_text() if path.suffix == ".md" else nbformat.read(path, as_version=4).cells[0].source
    return text.lstrip().splitlines()[0][2:].strip()


def test_the_sidebar_never_repeats_a_part_name_as_its_chapter_name():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert len([p for p in toc["parts"] if p["caption"].startswith("Part ")]) == 9, "all nine parts of the source"
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            name = re.sub(r"^[\d.]+\s*", "", _title(chapter["file"])).lower()
            caption = re.sub(r"^Part \d+:?\s*", "", part["caption"]).lower()
            assert not caption or caption not in name and name not in caption, (
                f"_toc.yml: part {part['caption']!r} repeats its chapter {_title(chapter['file'])!r} in the sidebar")


def test_glued_numbers_are_plain_numbers():
    """``{glue:text}`key:.1f``` cannot format a stored ``np.float64(...)``: glue ``float(x)``, not a NumPy scalar."""
    bad = []
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                name = output.get("metadata", {}).get("scrapbook", {}).get("name")
                text = "".join(output.get("data", {}).get("application/papermill.record/text/plain", ""))
                if name and re.match(r"np\.\w+\(", text):
                    bad.append(f"{path.name}: {name} = {text[:40]}")
    assert not bad, "glue float(...) or int(...) instead: " + "; ".join(bad)
