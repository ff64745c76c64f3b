"""The bibliography: every citation in the book resolves, every entry is complete, no key twice.

``book/references.bib`` is the book's one bibliography.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
VENUE_FIELDS = ("journal", "booktitle", "publisher", "eprint", "howpublished", "school", "institution")
ENTRY = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
FIELD = re.compile(r"^\s*(\w+)\s*=", re.MULTILINE)
# a {cite} role, not one quoted as inline code (`{cite}`); keys are separated by commas
CITE = re.compile(r"(?<!`)\{cite(?::[a-z]+)?\}`([\w:.\-]+(?:\s*,\s*[\w:.\-]+)*)`")


def bib_files() -> list[Path]:
    return [BOOK / "references.bib"]


def parse(text: str, where: str) -> list[tuple[str, str, set[str], str]]:
    """``(type, key, field names, location)`` per entry of a BibTeX file (enough for these checks)."""
    entries = []
    starts = list(ENTRY.finditer(text))
    for i, match in enumerate(starts):
        body = text[match.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        line = text.count("\n", 0, match.start()) + 1
        fields = {name.lower() for name in FIELD.findall(body)}
        entries.append((match.group(1).lower(), match.group(2), fields, f"{where}:{line}"))
    return entries


def all_entries() -> list[tuple[str, str, set[str], str]]:
    out = []
    for path in bib_files():
        out += parse(path.read_text(encoding="utf-8"), str(path.relative_to(BOOK.parent)))
    return out


def cited_keys() -> dict[str, str]:
    """Every key cited in the book's notebooks and Markdown pages, with the first file citing it."""
    keys: dict[str, str] = {}
    pages = sorted(BOOK.rglob("*.ipynb")) + sorted(BOOK.rglob("*.md"))
    for page in pages:
        if ".ipynb_checkpoints" in page.parts or "_build" in page.parts:
            continue
        if page.suffix == ".ipynb":
            cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        else:
            text = page.read_text(encoding="utf-8")
        for group in CITE.findall(text):
            for key in group.split(","):
                keys.setdefault(key.strip(), str(page.relative_to(BOOK.parent)))
    return keys


def test_cite_pattern_finds_roles_and_skips_quoted_ones():
    text = "see {cite}`a1` and {cite:p}`b2, c3`; write `{cite}` roles like {cite:t}`d4`"
    assert CITE.findall(text) == ["a1", "b2, c3", "d4"]


def test_parser_reads_fields_and_keys():
    text = "@article{a1,\n  title = {T},\n  author = {A},\n  year = {2020},\n  journal = {J}\n}\n@misc{b2,\n title={X}}\n"
    (t1, k1, f1, w1), (t2, k2, f2, _) = parse(text, "x.bib")
    assert (t1, k1, t2, k2) == ("article", "a1", "misc", "b2")
    assert f1 == {"title", "author", "year", "journal"} and f2 == {"title"} and w1 == "x.bib:1"


def test_the_bibliography_is_not_empty():
    assert len(all_entries()) >= 40


def test_no_key_is_defined_twice():
    seen: dict[str, str] = {}
    for _, key, _, where in all_entries():
        assert key not in seen, f"{where}: key {key!r} is already defined at {seen[key]}"
        seen[key] = where


@pytest.mark.parametrize("entry", all_entries(), ids=lambda e: e[1])
def test_every_entry_names_authors_title_year_and_venue(entry):
    kind, key, fields, where = entry
    missing = [name for name in ("title", "year") if name not in fields]
    if not {"author", "editor"} & fields:
        missing.append("author (or editor)")
    if not set(VENUE_FIELDS) & fields:
        missing.append("a venue (one of " + ", ".join(VENUE_FIELDS) + ")")
    assert not missing, f"{where}: @{kind}{{{key}}} lacks {', '.join(missing)}"


def test_no_paper_is_entered_twice_under_two_keys():
    seen: dict[str, str] = {}
    for path in bib_files():
        text = path.read_text(encoding="utf-8")
        for match in ENTRY.finditer(text):
            body = text[match.end():]
            title = re.search(r"(?<![a-z])title\s*=\s*\{(.*?)\},?\s*\n", body, re.S)
            if not title:
                continue
            norm = re.sub(r"[^a-z0-9]", "", title.group(1).lower())
            key = f"{match.group(2)} ({path.name})"
            assert norm not in seen, f"{key} and {seen[norm]} have the same title: keep one key"
            seen[norm] = key


def test_years_are_plausible():
    for path in bib_files():
        for match in re.finditer(r"year\s*=\s*\{?(\d+)\}?", path.read_text(encoding="utf-8")):
            assert 1900 <= int(match.group(1)) <= 2030, f"{path}: year {match.group(1)}"


def test_every_citation_in_the_book_resolves():
    defined = {key for _, key, _, _ in all_entries()}
    cited = cited_keys()
    assert cited, "no {cite} roles found: the pattern or the book's layout changed"
    unknown = {key: page for key, page in cited.items() if key not in defined}
    assert not unknown, "cited but not in references.bib: " + ", ".join(
        f"{key} ({page})" for key, page in sorted(unknown.items()))
