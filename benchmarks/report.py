"""Print the few-shot NER results (``results/fewshot_ner.json``) as Markdown tables, one per setting.

    python benchmarks/report.py                 # all settings
    python benchmarks/report.py wnut16          # settings whose corpus contains 'wnut16'

Reads only; the numbers come from ``benchmarks/fewshot_ner.py``. ``run_all.py`` skips this script.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "fewshot_ner.json"
ORDER = ("finetune", "protonet", "nnshot", "structshot", "zeroshot")


def tables(records: list[dict], select: str = "") -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        if select in record["corpus"]:
            groups[record["corpus"], record.get("ways"), record.get("shots")].append(record)
    out = []
    for (corpus, ways, shots), rows in sorted(groups.items(), key=lambda item: [str(v) for v in item[0]]):
        done = [r for r in rows if r.get("status") != "skipped"]
        out.append(f"### {corpus}, {ways}-way {shots}-shot\n")
        if not done:
            out.append(f"skipped: {rows[0].get('reason', '')}\n")
            continue
        first = next((r for r in done if not r.get("deterministic")), done[0])  # the full list of seeds
        training = next((r["meta_training"] for r in done if r.get("meta_training")), None)
        out.append(f"{first['episodes']} test episodes, seeds {first['seeds']}, {first['encoder']}"
                   + (f"; meta-trained {training['steps']} steps at lr {training['lr']:g} on "
                      f"{training.get('train_shots', '?')}-shot episodes" if training else "") + "\n")
        out.append("| method | F1 % | ±95% | P % | R % | F1 per seed | train s | eval s/episode |")
        out.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
        for r in sorted(done, key=lambda r: ORDER.index(r["method"]) if r["method"] in ORDER else 99):
            seeds = ", ".join(f"{100 * f:.1f}" for f in r.get("f1_per_seed", []))
            interval = "deterministic" if r.get("deterministic") else (
                "-" if r["f1_ci95"] is None else f"{100 * r['f1_ci95']:.2f}")
            out.append(f"| {r['method']} | {100 * r['f1']:.2f} | {interval} | "
                       f"{100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {seeds} | "
                       f"{r['train_seconds']:.0f} | {r['eval_seconds_per_episode']:.3f} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if not RESULTS.exists():
        print(f"{RESULTS}: not found; run benchmarks/fewshot_ner.py first")
        return 1
    print(tables(json.loads(RESULTS.read_text()), argv[0] if argv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
