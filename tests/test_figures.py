"""The book's figure conventions: every plot is glued and shown by a numbered ``glue:figure`` with alt text.

A figure cell ends with ``glue("fig-...", fig, display=False)`` and closes the figure; the next markdown
cell is a ``{glue:figure}`` directive with ``:name:`` (the number and cross-reference) and ``:alt:``.
No plot is displayed bare, and the chapters use the one plot style (``book_style()``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every chapter that draws a figure (a new one is added here).
CHAPTERS = ["book/01_background/1_background.ipynb", "book/02_concepts/2_core_concepts.ipynb",
            "book/03_algorithms/3_1_prototypical_networks.ipynb", "book/03_algorithms/3_2_maml.ipynb",
            "book/03_algorithms/3_3_learning_to_optimise.ipynb", "book/03_algorithms/3_4_reinforce.ipynb",
            "book/04_mathematics/4_1_empirical_risk.ipynb", "book/04_mathematics/4_2_meta_gradient.ipynb",
            "book/05_project/5_1_preparing_the_data.ipynb", "book/05_project/5_2_fewshot_ner.ipynb",
            "book/05_project/5_3_maml_for_ner.ipynb", "book/05_project/5_4_training_and_deployment.ipynb",
            "book/05_project/5_5_better_fewshot_ner.ipynb",
            "book/06_applications/6_1_intent_detection.ipynb", "book/06_applications/6_2_financial_sentiment.ipynb",
            "book/06_applications/6_3_recommendation.ipynb", "book/08_challenges/8_1_data_and_compute.ipynb",
            "book/08_challenges/8_2_interpretability_and_robustness.ipynb", "book/09_faq/9_1_faq.ipynb"]
# Chapters 7.1 and 7.2 draw no figures (tables only).
GLUE_FIG = re.compile(r"""glue\(\s*["'](fig-[\w-]+)["']\s*,\s*fig\b[^)]*display\s*=\s*False""")
DIRECTIVE = re.compile(r"^```\{glue:figure\} (?P<key>\S+)\n(?P<options>(?::[\w-]+:.*\n)+)\n(?P<caption>.+?)\n```$",
                       re.S)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: Path(c).stem)
def test_every_figure_has_a_numbered_caption_and_alt_text(chapter):
    nb = nbformat.read(ROOT / chapter, as_version=4)
    figures = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert "plt.show()" not in cell.source, f"{chapter} cell {i}: glue the figure instead of plt.show()"
        for output in cell.get("outputs", []):
            assert "image/png" not in output.get("data", {}), f"{chapter} cell {i}: a bare plot in the outputs"
        keys = GLUE_FIG.findall(cell.source)
        for key in keys:
            figures += 1
            assert "plt.close(fig)" in cell.source, f"{chapter} cell {i}: close the figure after gluing it"
            following = nb.cells[i + 1]
            match = DIRECTIVE.match(following.source.strip()) if following.cell_type == "markdown" else None
            assert match and match["key"] == key, f"{chapter} cell {i}: {key} needs a glue:figure cell right after"
            options = dict(re.findall(r"^:([\w-]+):\s*(.*)$", match["options"], re.M))
            assert options.get("name") == key, f"{chapter}: {key} needs ':name: {key}' (its number and label)"
            assert len(options.get("alt", "")) >= 40, f"{chapter}: {key} needs an :alt: sentence describing the plot"
            assert len(match["caption"].strip()) >= 20, f"{chapter}: {key} needs a caption"
    assert figures >= 1, f"{chapter}: no glued figure found"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: Path(c).stem)
def test_chapters_use_the_book_style(chapter):
    code = "\n".join(c.source for c in nbformat.read(ROOT / chapter, as_version=4).cells if c.cell_type == "code")
    assert "book_style()" in code and "sns.set_theme" not in code


def test_figure_names_are_unique_across_the_book():
    seen = {}
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        if "_build" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                for name in re.findall(r"^:name:\s*(\S+)", cell.source, re.M):
                    assert name not in seen, f"{name} is used in {seen.get(name)} and {path.name}"
                    seen[name] = path.name


def test_every_chapter_with_a_figure_is_checked():
    drawing = {path.relative_to(ROOT).as_posix() for path in (ROOT / "book").rglob("*.ipynb")
               if "_build" not in path.parts and ".ipynb_checkpoints" not in path.parts
               and any(GLUE_FIG.search(c.source) for c in nbformat.read(path, as_version=4).cells
                       if c.cell_type == "code")}
    assert not drawing - set(CHAPTERS), f"add these chapters to CHAPTERS: {sorted(drawing - set(CHAPTERS))}"
