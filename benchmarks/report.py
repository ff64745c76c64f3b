"""Print the few-shot NER results (``results/fewshot_ner.json``) as Markdown tables, one per setting.

    python benchmarks/report.py                 # all settings
    python benchmarks/report.py wnut16          # settings whose corpus contains 'wnut16'

The same as ``metalearn-nlp report benchmarks/results/fewshot_ner.json [--select wnut16]``
(the tables come from ``metalearn_nlp.reporting``). Reads only; the numbers come from
``benchmarks/fewshot_ner.py``. ``run_all.py`` skips this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from metalearn_nlp.reporting import benchmark_tables as tables

RESULTS = Path(__file__).resolve().parent / "results" / "fewshot_ner.json"

__all__ = ["tables"]


def main(argv: list[str]) -> int:
    if not RESULTS.exists():
        print(f"{RESULTS}: not found; run benchmarks/fewshot_ner.py first")
        return 1
    print(tables(json.loads(RESULTS.read_text()), argv[0] if argv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
