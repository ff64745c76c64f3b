"""Robustness of one few-shot learner: domain shift (newswire vs tweets) and input noise.

    python benchmarks/robustness.py [--data ../shared/data] [--episodes 200]   # results/robustness.json
    python benchmarks/robustness.py --quick                                      # smoke run, nothing written

The learner is ProtoNet on the frozen offline MiniLM encoder (no meta-training: it has no
training domain, so any gap between the two corpora is the test domain's own difficulty for
the encoder, not a train/test mismatch). Its word vectors are cached per sentence
(``metalearn_nlp.frozen_cache.CachedEncoder``): every condition costs one forward pass per
distinct sentence.

**Domain shift.** The same task on two domains: 2-way episodes over the two types both corpora
annotate with the same meaning, ``person`` and ``location``, at K = 1 and K = 5 (the sampler's
K~2K), other types relabelled ``O``. Newswire: CoNLL-2003 test (Reuters). Tweets: WNUT-17 test.
``--episodes`` fixed episodes per corpus and K, sampled with seed 100 (never used to tune
anything: there is nothing to tune).

**Input noise.** The query sentences of the same episodes, perturbed with
``metalearn_nlp.data.perturb`` (the support set stays clean: a learner adapted on clean
examples meets noisy input): all lower case, all upper case, a random case per word, typos in
20% of the words, and every mention swapped for another mention of its type from the same
corpus's test set (does the learner rely on the names it has seen in the support set?). The
pool holds every test mention, the support sets' included, so a swap can also copy a support
name into a query; chapter 8.2 measures how often on WNUT-16, where this raises the F1. The
perturbation of episode ``i`` draws from ``random.Random(1000 + i)``.

Every F1 carries a 95% percentile bootstrap interval over episodes
(``metalearn_nlp.evaluation.bootstrap_interval``, 1000 resamples, seed 0); the clean and
perturbed runs use the same episodes, so the record also keeps each episode's counts for a
paired comparison (``episode_counts``).

Needs ``conll2003/`` and ``wnut17/`` under ``--data`` (default ``../shared/data`` or
``$METALEARN_NLP_SHARED_DATA``); skips with a message when they are missing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metalearn_nlp.data import FewNERDSampler, load_corpus  # noqa: E402
from metalearn_nlp.data.perturb import (  # noqa: E402
    add_typos,
    change_case,
    mention_pool,
    perturb_episode,
    replace_mentions,
)
from metalearn_nlp.encoders import load_encoder  # noqa: E402
from metalearn_nlp.evaluation import bootstrap_interval, evaluate  # noqa: E402
from metalearn_nlp.frozen_cache import CachedEncoder  # noqa: E402
from metalearn_nlp.learners import ProtoNet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "robustness.json"
TYPES = ("person", "location")
CORPORA = {"newswire (CoNLL-2003 test)": "conll2003", "tweets (WNUT-17 test)": "wnut17"}
EPISODE_SEED = 100


def perturbations(pool):
    """name -> (sentence, rng, scheme) -> perturbed sentence."""
    return {
        "clean": None,
        "lower case": lambda s, rng, scheme: change_case(s, rng, mode="lower"),
        "upper case": lambda s, rng, scheme: change_case(s, rng, mode="upper"),
        "random case": lambda s, rng, scheme: change_case(s, rng, mode="random"),
        "typos (20% of words)": lambda s, rng, scheme: add_typos(s, rng, rate=0.2),
        "entity swap": lambda s, rng, scheme: replace_mentions(s, pool, rng, scheme=scheme),
    }


def perturbed(episodes, transform):
    if transform is None:
        return episodes
    out = []
    for i, episode in enumerate(episodes):
        rng = random.Random(1000 + i)
        out.append(perturb_episode(episode, lambda s: transform(s, rng, episode.scheme)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("METALEARN_NLP_SHARED_DATA",
                                                                     ROOT.parent / "shared" / "data")))
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--shots", default="1,5")
    ap.add_argument("--quick", action="store_true", help="10 episodes, K = 1, nothing written")
    args = ap.parse_args(argv)
    if args.quick:
        args.episodes, args.shots = 10, "1"
    if not all((args.data / c).is_dir() for c in CORPORA.values()):
        print(f"{args.data}: conll2003/ or wnut17/ not found; pass --data DIR (skipped)")
        return 0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder = CachedEncoder(load_encoder(freeze="all", max_length=256))
    learner = ProtoNet(encoder)
    records = []
    for domain, name in CORPORA.items():
        sentences = load_corpus(name, path=args.data / name).sentences("test")
        pool = mention_pool(sentences, "bio")
        pool = {t: pool[t] for t in TYPES}
        for k in (int(x) for x in args.shots.split(",")):
            sampler = FewNERDSampler(sentences, ways=len(TYPES), shots=k, types=TYPES, seed=EPISODE_SEED)
            episodes = sampler.episodes(args.episodes)
            for condition, transform in perturbations(pool).items():
                start = time.perf_counter()
                report = evaluate(learner, perturbed(episodes, transform), progress=False)
                low, high = bootstrap_interval(report, seed=0)
                records.append({
                    "domain": domain, "corpus": name, "types": list(TYPES), "ways": len(TYPES),
                    "shots": f"{k}~{2 * k}", "condition": condition, "episodes": len(episodes),
                    "f1": report.f1, "f1_ci95": [low, high], "precision": report.precision,
                    "recall": report.recall,
                    "per_type_f1": {t: s.f1 for t, s in report.per_type.items()},
                    "episode_counts": [list(c) for c in report.episode_counts],
                    "seconds": round(time.perf_counter() - start, 2),
                })
                print(f"{domain:28s} K={k} {condition:22s} F1 {100 * report.f1:5.1f} "
                      f"[{100 * low:5.1f}, {100 * high:5.1f}]  ({records[-1]['seconds']:.1f} s)", flush=True)
    if args.quick:
        print("quick run: nothing written")
        return 0
    result = {
        "command": "python benchmarks/robustness.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "learner": learner.config(),
        "encoder": "all-MiniLM-L6-v2 (offline), frozen, max_length 256",
        "episode_seed": EPISODE_SEED,
        "interval": "95% percentile bootstrap over episodes, 1000 resamples, seed 0",
        "perturbed": "query sentences only; support clean",
        "sentences_embedded": encoder.misses,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "records": records,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
