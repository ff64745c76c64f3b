"""How long each chapter took to execute, from the timings nbconvert stores in its cells (no re-run).

    python .ci/notebook_times.py                      # a Markdown table on stdout
    python .ci/notebook_times.py --write book/teachers.md   # replace the tables between the page's markers

It also lists the exercise checks (``metalearn_nlp.exercises``) for the
teachers' page, between the ``exercise-checks`` markers.

For each notebook in ``_toc.yml`` order: the sum over code cells of
``shell.execute_reply - iopub.execute_input`` (the kernel's time per cell, as
recorded by ``jupyter nbconvert --execute`` or ``jupyter-book build``), and
whether its last run trained a learner or loaded one from the training cache
(from the text ``train_or_load`` prints: "trained now" / "loaded from").
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- notebook-times:start -->", "<!-- notebook-times:end -->"
CHECKS_START, CHECKS_END = "<!-- exercise-checks:start -->", "<!-- exercise-checks:end -->"


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def toc_notebooks() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = [c for part in toc.get("parts", []) for c in part["chapters"]]
    files = [e["file"] for e in entries] + [s["file"] for e in entries for s in e.get("sections", [])]
    return [ROOT / (f + ".ipynb") for f in files if (ROOT / (f + ".ipynb")).is_file()]


def notebook_time(path: Path) -> tuple[float | None, str]:
    """(seconds, cache) for one notebook; seconds is None when a code cell has no timing."""
    nb = nbformat.read(path, as_version=4)
    seconds, complete, text = 0.0, True, []
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        timing = cell.metadata.get("execution", {})
        if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
            complete = False
            continue
        seconds += (_time(timing["shell.execute_reply"]) - _time(timing["iopub.execute_input"])).total_seconds()
        text += [str(o.get("text", "")) for o in cell.outputs]
    joined = "\n".join(text)
    cache = ("trained" if re.search(r"trained now", joined) else "loaded from cache"
             if re.search(r"loaded from (the cache|published)", joined) else "no training cache")
    return (seconds if complete else None), cache


def table() -> str:
    rows = ["| chapter | stored execution time | training in that run |", "|---|---:|---|"]
    total = 0.0
    for path in toc_notebooks():
        seconds, cache = notebook_time(path)
        title = nbformat.read(path, as_version=4).cells[0].source.lstrip("# ").splitlines()[0]
        shown = "not recorded" if seconds is None else f"{seconds:.0f} s"
        total += seconds or 0.0
        rows.append(f"| {title} | {shown} | {cache} |")
    rows.append(f"| **all chapters** | **{total:.0f} s** | |")
    return "\n".join(rows)


def checks_table() -> str:
    sys.path.insert(0, str(ROOT))
    import importlib

    exercises = importlib.import_module("metalearn_nlp.exercises")
    rows = ["| exercise | check | the student passes |", "|---|---|---|"]
    for module_name in exercises.part_modules():
        module = importlib.import_module(module_name)
        for name in sorted(n for n in dir(module) if n.startswith("check_")):
            function = getattr(module, name)
            if getattr(function, "__module__", "") != module_name:
                continue
            doc = (function.__doc__ or "").strip().splitlines()[0] if function.__doc__ else ""
            label = re.search(r"``(ex-[\w-]+)``", doc)
            what = re.sub(r"^Exercise ``ex-[\w-]+``:\s*", "", doc).replace("|", "\\|")
            rows.append(f"| {label.group(1) if label else module_name.rsplit('.', 1)[1]} | `{name}` | {what} |")
    return "\n".join(rows)


def _replace(page: str, start: str, end: str, body: str) -> str:
    before, rest = page.split(start, 1)
    return f"{before}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="a page holding the markers; its table is replaced")
    args = parser.parse_args(argv)
    result = table()
    if args.write is None:
        print(result)
        return 0
    page = args.write.read_text(encoding="utf-8")
    for start, end in ((START, END), (CHECKS_START, CHECKS_END)):
        if start not in page or end not in page:
            print(f"{args.write}: no {start} ... {end} markers", file=sys.stderr)
            return 2
    page = _replace(page, START, END, result)
    args.write.write_text(_replace(page, CHECKS_START, CHECKS_END, checks_table()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
