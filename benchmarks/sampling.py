"""Benchmark: read CoNLL-2003 train and sample 1,000 N-way 1~2-shot episodes.

Few-NERD's greedy sampler, IO scheme, one process. Reads
``conll2003/train.txt`` from ``--data`` (default: ``$METALEARN_NLP_SHARED_DATA``
or ``../shared/data`` next to the repository); when it is absent, prints why,
writes a ``"skipped"`` record and exits 0.

CoNLL-2003 has 4 entity types, so a 5-way request is impossible: the script
shows the sampler's error and samples 4-way episodes (all the types) instead,
recording both the requested and the used ways.

Usage::

    .venv/bin/python benchmarks/sampling.py [--data DIR] [--episodes 1000]

Writes ``benchmarks/results/sampling.json``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from metalearn_nlp.data import EpisodeSamplingError, FewNERDSampler, read_conll

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sampling.json"


def default_data() -> Path:
    """``$METALEARN_NLP_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("METALEARN_NLP_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="folder holding conll2003/train.txt")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    record: dict[str, object] = {
        "corpus": "conll2003/train",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    train = args.data / "conll2003" / "train.txt"
    if not train.is_file():
        print(f"skipped: {train} not found (pass --data DIR or set METALEARN_NLP_SHARED_DATA)")
        record.update(status="skipped", reason=f"{train} not found")
        write(args.output, record)
        return 0

    start = time.perf_counter()
    sentences, report = read_conll(train)
    read_seconds = time.perf_counter() - start
    print(report)

    ways, note = args.ways, None
    start = time.perf_counter()
    try:
        sampler = FewNERDSampler(sentences, ways, args.shots, scheme="io", seed=args.seed)
    except EpisodeSamplingError as error:
        print(f"\n{error}\n")
        ways = len({t for s in sentences for t in s.mentions("io")})
        note = f"{args.ways}-way is impossible on CoNLL-2003 ({ways} entity types); sampled {ways}-way"
        print(f"-> {note}\n")
        start = time.perf_counter()
        sampler = FewNERDSampler(sentences, ways, args.shots, scheme="io", seed=args.seed)
    episodes = sampler.episodes(args.episodes)
    sample_seconds = time.perf_counter() - start

    digest = hashlib.sha256()
    for episode in episodes:
        digest.update(json.dumps(episode.to_dict(), sort_keys=True).encode("utf-8"))
    record.update(
        status="ok",
        sentences=len(sentences),
        requested_ways=args.ways,
        ways=ways,
        shots=sampler.settings["shots"],
        scheme="io",
        seed=args.seed,
        episodes=args.episodes,
        read_seconds=round(read_seconds, 4),
        sample_seconds=round(sample_seconds, 4),
        episodes_per_second=round(args.episodes / sample_seconds, 1),
        mean_support_sentences=round(sum(len(e.support) for e in episodes) / len(episodes), 2),
        mean_query_sentences=round(sum(len(e.query) for e in episodes) / len(episodes), 2),
        episodes_sha256=digest.hexdigest(),
        note=note,
    )
    rows = [
        ("sentences", f"{len(sentences):,}"),
        ("episodes", f"{args.episodes:,} x {ways}-way {sampler.settings['shots']}-shot (IO)"),
        ("read", f"{read_seconds:.3f} s"),
        ("sample (incl. indexing)", f"{sample_seconds:.3f} s"),
        ("episodes / s", f"{args.episodes / sample_seconds:,.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    write(args.output, record)
    return 0


def write(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
