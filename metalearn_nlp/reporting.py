"""Results JSON -> Markdown tables: the few-shot NER benchmark's records and ``evaluate`` reports.

``metalearn-nlp report FILE`` and ``benchmarks/report.py`` print with
:func:`render`; the numbers come from the scripts that wrote the files.

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["benchmark_tables", "method_label", "render"]

#: Method order in the tables: the baselines first, then the metric and gradient-based learners.
ORDER = ("finetune", "transfer", "protonet", "nnshot", "structshot", "zeroshot", "maml", "fomaml", "anil",
         "protomaml", "reptile", "metasgd", "learned_optimizer", "reinforce", "decomposed")


def method_label(record: dict[str, Any]) -> str:
    """The method with what sets its record apart: options, adaptation chosen on dev, other training shots.

    Example:
        >>> method_label({"method": "protonet", "shots": "5", "options": {"shape_dim": 16},
        ...               "meta_training": {"train_shots": 1}})
        'protonet (shape_dim=16; trained 1-shot)'
        >>> method_label({"method": "transfer", "shots": "1", "selection": {"chosen": {"o_bias": 1.0}}})
        'transfer (o_bias=1 chosen on dev)'
    """
    notes = [", ".join(f"{k}={v}" for k, v in (record.get("options") or {}).items())]
    chosen = (record.get("selection") or {}).get("chosen")
    if chosen:
        notes.append(", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())
                     + " chosen on dev")
    trained = (record.get("meta_training") or {}).get("train_shots")
    shots = str(record.get("shots", "")).split("~")[0]
    if trained is not None and record["method"] != "transfer" and shots.isdigit() and trained != int(shots):
        notes.append(f"trained {trained}-shot")
    notes = [n for n in notes if n]
    return record["method"] + (f" ({'; '.join(notes)})" if notes else "")


def benchmark_tables(records: list[dict[str, Any]], select: str = "") -> str:
    """One Markdown table per (corpus, ways, shots) of ``benchmarks/results/fewshot_ner.json``.

    Arguments:
        records: the file's records.
        select: only settings whose corpus contains this string.
    """
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
                   + (f"; meta-trained {training['steps']} steps at lr {training['lr']:g} on episodes of the "
                      "test shot count unless the method says otherwise" if training else "") + "\n")
        out.append("| method | F1 % | ±95% | P % | R % | F1 per seed | train s | eval s/episode |")
        out.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
        labels = [method_label(r) for r in done]
        for r in sorted(done, key=lambda r: ORDER.index(r["method"]) if r["method"] in ORDER else 99):
            label = method_label(r)
            if labels.count(label) > 1 and (r.get("selection") or {}).get("grid"):  # same choice, other grids
                grid = "; ".join(f"{k} in {v}" for k, v in r["selection"]["grid"].items())
                label = label[:-1] + f" from {grid})"
            seeds = ", ".join(f"{100 * f:.1f}" for f in r.get("f1_per_seed", []))
            interval = "deterministic" if r.get("deterministic") else (
                "-" if r["f1_ci95"] is None else f"{100 * r['f1_ci95']:.2f}")
            out.append(f"| {label} | {100 * r['f1']:.2f} | {interval} | "
                       f"{100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {seeds} | "
                       f"{r['train_seconds']:.0f} | {r['eval_seconds_per_episode']:.3f} |")
        out.append("")
    return "\n".join(out)


def render(data: Any, select: str = "", *, source: str = "the file") -> str:
    """Tables for a results JSON: benchmark records (a list) or an ``evaluate`` report (a dict with ``overall``).

    Raises:
        ValueError: any other JSON; the message names ``source`` and the formats it knows.
    """
    if isinstance(data, list) and all(isinstance(r, dict) and "corpus" in r and "method" in r for r in data):
        return benchmark_tables(data, select) or f"no settings match {select!r}"
    if isinstance(data, dict) and {"overall", "per_type", "learner", "scheme"} <= data.keys():
        from .evaluation import Report

        return Report.from_dict(data).table()
    raise ValueError(f"{source}: not a results file this command knows: expected the records of "
                     "benchmarks/fewshot_ner.py (a list) or an `evaluate --json` report")
