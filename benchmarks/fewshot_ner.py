"""Few-shot NER quality: every learner on fixed test episodes, several meta-training seeds.

    python benchmarks/fewshot_ner.py --setting wnut16 --shots 1          # the embedded default
    python benchmarks/fewshot_ner.py --setting conll2003-wnut17 --shots 5 [--data ../shared/data]
    python benchmarks/fewshot_ner.py --setting wnut16 --shots 1 --episodes 100 --seeds 0 --methods protonet,finetune

Protocol (Few-NERD's, Ding et al. 2021): entity-level micro-F1 pooled over every query
sentence of every test episode, per seed; the record gives the mean over seeds and a 95%
t-interval. Test episodes are sampled once with a fixed seed, saved under
``benchmarks/episodes/`` with their sha256, and reused by every method and seed; a seed
changes meta-training (its episodes and initialisation) and the fine-tuning baseline's
initialisation, not the test episodes.

Settings:
* ``wnut16``: WNUT-16 tweets (embedded), ``WNUT16_SPLIT``: meta-train on the five
  frequent types, test 5-way K~2K-shot episodes (Few-NERD sampler, IO) on the five rare
  ones. Model selection on held-out training sentences (``hold_out``): the split has no
  dev types (see ``WNUT16_SPLIT``).
* ``conll2003-wnut16``: the WNUT-16 test episodes above, learners trained on CoNLL-2003 as in
  ``conll2003-wnut17`` (the same training settings, so the same cached weights): what a large
  news source buys on the tweets' rare types. Reads ``conll2003/`` and ``wnut17/`` (dev, for
  ``--select``) from ``--data``.
* ``conll2003-wnut17``: meta-train on CoNLL-2003 train episodes (4-way K~2K), select on
  CoNLL-2003 dev episodes, test on WNUT-17 test episodes over all six WNUT-17 types in the
  style of Hou et al. 2020 (``CrossDatasetSampler``: >= K support mentions per type,
  20 query sentences). Reads ``conll2003/`` and ``wnut17/`` from ``--data``; writes a
  ``skipped`` record when they are absent.

Methods: ``finetune`` (linear probe on the frozen encoder, trained on the support set
only), ``transfer`` (TransferBERT, chapter 5.5: encoder + head trained supervised on the source
types through the same trainer, then the head fine-tuned on each support set; the baseline),
``decomposed`` (chapter 5.5: type-agnostic mention detector + span prototypes; ``--decomposition``
also records its detection F1 and typing accuracy per seed), ``protonet``, ``nnshot`` (meta-trained), ``structshot`` (the meta-trained NNShot
encoder + Viterbi with transitions counted on the meta-training sentences), ``zeroshot``
(type descriptions, meta-trained), the gradient-based learners ``maml``, ``fomaml``, ``anil``,
``protomaml``, ``reptile``, ``metasgd``, ``learned_optimizer`` and ``reinforce`` (ProtoNet with a
REINFORCE term on entity-F1). ``--options '{"maml": {"freeze": 4}}'`` passes learner options;
``--head-lr`` the learning rate of a learner's own parameters (heads, learned rates).
Results are merged into ``benchmarks/results/fewshot_ner.json`` (one record per setting, shots,
method, encoder, meta-training settings and options), each with its dev learning curve per seed.

Word-shape features (chapter 5.5) are a learner option: ``--options '{"protonet": {"shape_dim": 16}}'``.
Few-NERD's official episode files: ``--setting fewnerd --fewnerd DIR [--fewnerd-split inter] --ways 5
--shots 1`` reads ``DIR/inter/{train,dev,test}_5_1.jsonl`` (training on the official training episodes,
selection on the dev file). ``--results FILE`` writes the records to another JSON file (a small run
must not overwrite ``fewshot_ner.json``); ``--episodes n`` below the stored count uses the first n
of the same fixed test episodes. Every record holds its command, a 95% Student-t interval over seeds
(``f1_ci95``), a 95% percentile bootstrap interval over test episodes per seed
(``f1_bootstrap95_per_seed``) and the F1 on test types whose name is not a training type
(``f1_novel_types``: zero-shot tagging from descriptions is inflated on the others).

Adaptation settings chosen on target dev episodes: ``--select '{"transfer": {"o_bias": [0, 1, 2]}}'``
scores every combination of the listed adaptation-only options (``Learner.adaptation_options``: they
act in ``adapt`` only, so the trained learner is reused) on ``--select-episodes`` episodes of the
*target* dev split (WNUT-17 dev for ``conll2003-wnut17``, in its test episodes' shape; for
``wnut16`` and ``conll2003-wnut16``, whose split has no dev types, 5-way K~2K episodes of WNUT-17
dev, text disjoint from WNUT-16's, so these need ``--data``; for ``fewnerd`` the official dev file,
whose first ``--dev-episodes`` episodes also choose the training checkpoint), keeps the
combination with the best mean F1 over seeds, and scores only that one on the test episodes. The
record's ``selection`` holds the grid, every combination's dev F1 per seed and the choice. The test
episodes are never used for a choice.

Meta-trained weights go to the package's disk cache (``metalearn_nlp.notebook.train_or_load``,
``.cache/metalearn_nlp/``), keyed by the sha256 of everything that determines them (learner,
training episodes, dev episodes, steps, learning rate, seed). ``--train-shots 1 --shots 5``
tests 1~2-shot meta-trained learners on 5~10-shot episodes and reuses the weights a
``--shots 1`` run trained; the record's ``meta_training.train_shots`` says which was done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from metalearn_nlp import __version__
from metalearn_nlp.data import (
    WNUT16_SPLIT,
    load_fewnerd_episodes,
    CrossDatasetSampler,
    FewNERDSampler,
    hold_out,
    load_corpus,
    load_episodes,
    save_episodes,
    split_types,
)
from metalearn_nlp.devices import resolve_device
from metalearn_nlp.encoders import load_encoder
from metalearn_nlp.evaluation import bootstrap_interval, evaluate, summarize
from metalearn_nlp.learners import LEARNERS, decomposition_scores, get_learner
from metalearn_nlp.notebook import train_or_load
from metalearn_nlp.training import meta_train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fewshot_ner.json"
EPISODES = ROOT / "benchmarks" / "episodes"
GRADIENT = ("maml", "fomaml", "anil", "protomaml", "reptile", "metasgd", "learned_optimizer")
METHODS = ("finetune", "protonet", "nnshot", "structshot", "zeroshot", *GRADIENT, "reinforce", "transfer",
           "decomposed")
META_TRAINED = {"protonet", "nnshot", "zeroshot", *GRADIENT, "reinforce", "transfer", "decomposed"}
DETERMINISTIC = {"finetune"}  # the same predictions for every seed (see main)
TEST_SEED = 2026  # fixes the test episodes, independent of the training seeds
TARGET_DEV_SEED = 7  # fixes the target dev episodes of --select (a split the test episodes never draw from)


def default_data() -> Path:
    return Path(os.environ.get("METALEARN_NLP_SHARED_DATA", ROOT.parent / "shared" / "data"))


def test_episodes(name: str, sampler: Any, n: int) -> list:
    """Load the fixed test episodes if their file exists with these settings, else sample and save them."""
    path = EPISODES / f"{name}.jsonl"
    settings = {**sampler.settings, "episodes": n}
    if path.exists():
        episodes, saved = load_episodes(path)  # verifies the sha256
        if saved == settings:
            return episodes
        if {**saved, "episodes": n} == settings and saved.get("episodes", 0) >= n:
            return episodes[:n]  # a smaller run uses the first n of the same fixed test episodes
        print(f"{path.name}: settings changed, re-sampling")
    episodes = sampler.episodes(n)
    EPISODES.mkdir(parents=True, exist_ok=True)
    save_episodes(path, episodes, settings)
    return episodes


def wnut16_test(args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    """The fixed WNUT-16 test episodes (5-way K~2K on the five rare types) and the type split's groups."""
    groups = split_types(load_corpus("wnut16").sentences("train"), *WNUT16_SPLIT.values())
    sampler = FewNERDSampler(groups["test"], 5, args.shots, seed=TEST_SEED)
    return test_episodes(f"wnut16_5way_{args.shots}shot", sampler, args.episodes), groups


def wnut17_dev_episodes(data: Path, k: int, sampler: str) -> dict[str, Any]:
    """Target dev episodes for ``--select`` from WNUT-17 dev (social media; text disjoint from WNUT-16's).

    ``sampler`` is the shape of the test episodes: ``"cross"`` (Hou et al.'s, for WNUT-17 test) or
    ``"fewnerd"`` (5-way K~2K, for the WNUT-16 test episodes, whose query sentences all hold names).
    """
    dev_sentences = load_corpus("wnut17", path=data / "wnut17").sentences("dev")

    def make() -> Any:  # a new sampler per call: every method of one command sees the same dev episodes
        if sampler == "cross":
            return CrossDatasetSampler(dev_sentences, k, seed=TARGET_DEV_SEED)
        return FewNERDSampler(dev_sentences, 5, k, seed=TARGET_DEV_SEED)

    def episodes(n: int) -> tuple[list, dict[str, Any]]:
        return make().episodes(n), {"split": "wnut17 dev", **make().settings}

    return {"episodes": episodes, "sentences": dev_sentences}


def episode_sentences(episodes: list) -> list:
    return [s for e in episodes for s in (*e.support, *e.query)]


def has_reference(data: Path, *corpora: str) -> bool:
    if all((data / c).is_dir() for c in corpora):
        return True
    print(f"{data}: {' or '.join(c + '/' for c in corpora)} not found; pass --data DIR (skipped)")
    return False


def prepare(args: argparse.Namespace) -> dict[str, Any] | None:
    """Training sentences, a training-episode factory, dev and test episodes for one setting."""
    k, train_k = args.shots, args.train_shots or args.shots
    data = args.data or default_data()
    if args.setting == "wnut16":
        test, groups = wnut16_test(args)
        train, dev_sentences = hold_out(groups["train"], 0.2, seed=0)
        ways = 5
        dev_sampler = FewNERDSampler(dev_sentences, ways, train_k, seed=1)
        setup = {"corpus": "wnut16", "ways": ways, "shots": f"{k}~{2 * k}", "train": train,
                 "source_types": list(WNUT16_SPLIT["train"]),
                 "train_sampler": lambda seed: FewNERDSampler(train, ways, train_k, seed=seed),
                 "dev_sampler": dev_sampler, "dev": dev_sampler.episodes(args.dev_episodes), "test": test}
        selecting = set(args.select) & {m.strip() for m in args.methods.split(",")}
        if selecting:  # the split has no dev types: the target dev episodes come from WNUT-17 dev
            if not has_reference(data, "wnut17"):
                return None
            target = wnut17_dev_episodes(data, k, "fewnerd")
            setup["target_dev"] = target["episodes"]
            setup["name_share"] = {"source train": name_share(train), "target dev episodes":
                                   name_share(episode_sentences(target["episodes"](args.select_episodes)[0]))}
        return setup
    if args.setting == "fewnerd":
        return prepare_fewnerd(args)
    if not has_reference(data, "conll2003", "wnut17"):
        return None
    conll = load_corpus("conll2003", path=data / "conll2003")
    train = conll.sentences("train")
    ways = len(conll.types)
    dev_sampler = FewNERDSampler(conll.sentences("dev"), ways, train_k, seed=1)
    # the same source training for both targets: one cache entry serves both settings
    setup = {"source_types": list(conll.types), "train": train,
             "train_sampler": lambda seed: FewNERDSampler(train, ways, train_k, seed=seed),
             "dev_sampler": dev_sampler, "dev": dev_sampler.episodes(args.dev_episodes)}
    if args.setting == "conll2003-wnut16":  # a large news source, the WNUT-16 test episodes
        target = wnut17_dev_episodes(data, k, "fewnerd")
        test, _ = wnut16_test(args)
        share = {"source train": name_share(train), "target dev episodes":
                 name_share(episode_sentences(target["episodes"](args.select_episodes)[0]))}
        return {**setup, "corpus": "conll2003->wnut16", "ways": 5, "shots": f"{k}~{2 * k}", "test": test,
                "name_share": share, "target_dev": target["episodes"]}
    wnut17 = load_corpus("wnut17", path=data / "wnut17")
    test = test_episodes(f"conll2003-wnut17_{k}shot",
                         CrossDatasetSampler(wnut17.sentences("test"), k, seed=TEST_SEED), args.episodes)
    target = wnut17_dev_episodes(data, k, "cross")
    share = {"source train": name_share(train), "target dev": name_share(target["sentences"])}
    return {**setup, "corpus": "conll2003->wnut17", "ways": len(wnut17.types), "shots": str(k), "test": test,
            "name_share": share, "target_dev": target["episodes"]}


def prepare_fewnerd(args: argparse.Namespace) -> dict[str, Any] | None:
    """Few-NERD's official episode files: train/dev/test_{N}_{K}.jsonl under --fewnerd DIR/{intra,inter}."""
    if args.fewnerd is None:
        print("--setting fewnerd needs --fewnerd DIR (Few-NERD's episode-data folder) (skipped)")
        return None
    folder = args.fewnerd / args.fewnerd_split
    n, k = args.ways, args.shots
    paths = {part: folder / f"{part}_{n}_{k}.jsonl" for part in ("train", "dev", "test")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        print(f"Few-NERD episode files not found: {missing} (skipped)")
        return None
    train_episodes = load_fewnerd_episodes(paths["train"])[0]
    dev = load_fewnerd_episodes(paths["dev"])[0][: args.dev_episodes]
    test = load_fewnerd_episodes(paths["test"])[0][: args.episodes]
    train = [s for episode in train_episodes for s in (*episode.support, *episode.query)]

    def train_sampler(seed: int) -> list:  # the official training episodes, in a seed-dependent order
        import random

        order = list(train_episodes)
        random.Random(seed).shuffle(order)
        return order

    class _Settings:  # the record of what the training and dev episodes were
        def __init__(self, path: Path) -> None:
            self.settings = {"fewnerd": str(path.name), "split": args.fewnerd_split,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}  # another copy: other weights

    return {"corpus": f"fewnerd-{args.fewnerd_split}", "ways": n, "shots": str(k), "train": train,
            "source_types": sorted({t for e in train_episodes for t in e.types}),
            "train_sampler": train_sampler, "train_settings": _Settings(paths["train"]).settings,
            "dev_sampler": _Settings(paths["dev"]), "dev": dev, "test": test,
            "target_dev": lambda m: (load_fewnerd_episodes(paths["dev"])[0][:m], _Settings(paths["dev"]).settings)}


def novel_type_scores(reports: list, source_types: list[str]) -> dict[str, Any] | None:
    """Pooled F1 over the test types whose name is not a training (source) type, per seed.

    Zero-shot tagging from type descriptions is inflated on types that share a name (and so a
    description) with a training type (WNUT-17's person, location vs CoNLL-2003's); this is the
    score on the others.
    """
    source = {t.lower() for t in source_types}
    out = []
    for report in reports:
        novel = {t: s for t, s in report.per_type.items() if t.lower() not in source}
        if not novel:
            return None
        gold = sum(s.gold for s in novel.values())
        predicted = sum(s.predicted for s in novel.values())
        correct = sum(s.correct for s in novel.values())
        out.append(2 * correct / (gold + predicted) if gold + predicted else 0.0)
    types = sorted(t for t in reports[0].per_type if t.lower() not in source)
    return {"types": types, "f1_per_seed": out, "f1": sum(out) / len(out)}


def run_seed(method: str, seed: int, setup: dict[str, Any], args: argparse.Namespace, trained: dict) -> tuple:
    """Build (and meta-train) one learner for one seed; returns (learner, train_seconds, train_record)."""
    if (method, seed) in trained:  # trained earlier in this run (e.g. for --select)
        return trained[(method, seed)]
    torch.manual_seed(seed)
    if method == "structshot":  # NNShot's meta-trained encoder + Viterbi (Few-NERD's StructShot)
        nnshot, seconds, record = trained.get(("nnshot", seed)) or run_seed("nnshot", seed, setup, args, trained)
        if getattr(nnshot, "shape_dim", 0):
            raise SystemExit("structshot takes no word-shape features (StructShot has no shape_dim): its "
                             "emissions would drop NNShot's learned shapes; leave shape_dim out of --options "
                             "for nnshot when structshot is among --methods")
        return get_learner("structshot", nnshot.encoder, train_sentences=setup["train"]), seconds, record
    encoder = load_encoder(max_length=args.max_length, device=args.device)
    if method == "finetune":
        return get_learner("finetune", encoder, seed=seed), 0.0, None
    options = {"train_sentences": setup["train"]} if method == "zeroshot" else {}
    if method == "transfer":
        options["source_types"] = setup["source_types"]
    options.update(args.options.get(method, {}))
    learner = get_learner(method, encoder, **options)
    if args.steps == 0:  # the pretrained encoder as it is: what meta-training adds is measured against this
        trained[(method, seed)] = (learner, 0.0, None)
        return learner, 0.0, None
    sampler = setup["train_sampler"](seed)
    sampler_settings = setup.get("train_settings") or sampler.settings
    training = {"steps": args.steps, "lr": args.lr, "eval_every": args.eval_every or max(1, args.steps // 5),
                "seed": seed}
    if args.head_lr is not None:
        training["head_lr"] = args.head_lr
    if args.patience is not None:
        training["patience"] = args.patience
    settings = {"benchmark": "fewshot_ner", "package": __version__, "learner": learner.config(),
                "max_length": args.max_length,
                "train": sampler_settings, "dev": {**setup["dev_sampler"].settings, "episodes": len(setup["dev"])},
                "training": training}
    learner, cache = train_or_load(learner, settings, lambda: meta_train(
        learner, sampler, dev_episodes=setup["dev"], progress=False, **training))
    record = cache.record
    seconds = record["seconds"]  # the training's own time, also when its weights come from the cache
    trained[(method, seed)] = (learner, seconds, record)
    return learner, seconds, record


def name_share(sentences: list) -> float:
    """The share of words tagged as (part of) a name: the label prior that ``o_bias`` corrects for."""
    tags = [t for s in sentences for t in s.tags]
    return sum(t != "O" for t in tags) / len(tags)


def select_adaptation(learners: list, grid: dict[str, list], dev: list, dev_settings: dict) -> dict[str, Any]:
    """Score every combination of ``grid``'s adaptation options on the target dev episodes; keep the best.

    The best is the highest mean F1 over the seeds' learners (the first in grid order on a tie).
    """
    names = list(grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    scored = []
    for combo in combos:
        f1 = []
        for learner in learners:
            with learner.adaptation_settings(**combo):
                f1.append(evaluate(learner, dev, progress=False).f1)
        scored.append({"options": combo, "f1_per_seed": f1, "f1": sum(f1) / len(f1)})
        print(f"  select {json.dumps(combo)}: dev F1 {100 * scored[-1]['f1']:.2f}", flush=True)
    best = max(range(len(scored)), key=lambda i: (scored[i]["f1"], -i))
    return {"grid": grid, "dev": {**dev_settings, "episodes": len(dev)}, "scores": scored,
            "chosen": scored[best]["options"]}


def merge(records: list[dict[str, Any]]) -> None:
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    key = lambda r: json.dumps([r["corpus"], r.get("ways"), r.get("shots"), r["method"], r.get("encoder"),  # noqa: E731
                                r.get("meta_training"), r.get("options"), (r.get("selection") or {}).get("grid")],
                               sort_keys=True)
    new_keys = {key(r) for r in records}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([r for r in old if key(r) not in new_keys] + records, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=("wnut16", "conll2003-wnut16", "conll2003-wnut17", "fewnerd"),
                    default="wnut16")
    ap.add_argument("--fewnerd", type=Path, default=None,
                    help="Few-NERD's episode-data folder (setting fewnerd): reads {split}/{train,dev,test}_N_K.jsonl")
    ap.add_argument("--fewnerd-split", choices=("intra", "inter"), default="inter")
    ap.add_argument("--ways", type=int, default=5, help="N of the Few-NERD episode files (setting fewnerd)")
    ap.add_argument("--results", type=Path, default=None,
                    help="JSON file the records are merged into (default benchmarks/results/fewshot_ner.json)")
    ap.add_argument("--bootstrap", type=int, default=1000,
                    help="bootstrap resamples of the test episodes for the per-seed interval (0: none)")
    ap.add_argument("--decomposition", action="store_true",
                    help="for decomposed: also score detection and typing separately on the test episodes")
    ap.add_argument("--shots", type=int, default=1, help="K: K~2K-shot (WNUT-16 test episodes) or >= K (conll2003-wnut17)")
    ap.add_argument("--train-shots", type=int, default=None,
                    help="K of the meta-training and dev episodes (default: --shots)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--episodes", type=int, default=500, help="fixed test episodes")
    ap.add_argument("--dev-episodes", type=int, default=50)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=200, help="meta-training steps (0: the pretrained encoder)")
    ap.add_argument("--lr", type=float, default=1e-4, help="meta-training learning rate (Few-NERD uses 1e-4)")
    ap.add_argument("--head-lr", type=float, default=None,
                    help="learning rate of the learner's own parameters (heads, learned rates; default --lr)")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between dev evaluations (default steps/5)")
    ap.add_argument("--patience", type=int, default=None, help="stop after this many dev evaluations without gain")
    ap.add_argument("--device", default="auto", type=resolve_device,
                    help="where to train and evaluate: auto (CUDA when present, default), cpu, cuda, cuda:1")
    ap.add_argument("--options", type=json.loads, default={},
                    help='learner options by method, JSON: \'{"maml": {"freeze": 4, "inner_steps": 5}}\'')
    ap.add_argument("--max-length", type=int, default=256,
                    help="subwords per sentence (WNUT-17 test and CoNLL-2003 train have a few over 128, none over 256)")
    ap.add_argument("--select", type=json.loads, default={},
                    help='adaptation options to choose on target dev episodes, by method, each a list of values '
                         '(every combination is scored): \'{"transfer": {"o_bias": [0, 1, 2], "steps": [100, 200]}}\'')
    ap.add_argument("--select-episodes", type=int, default=50, help="target dev episodes for --select")
    ap.add_argument("--data", type=Path, default=None, help="folder with conll2003/ and wnut17/ (default ../shared/data)")
    ap.add_argument("--no-save", action="store_true", help="print only (exploration)")
    args = ap.parse_args(argv)
    global RESULTS
    if args.results is not None:
        RESULTS = args.results
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not isinstance(args.options, dict) or set(args.options) - set(METHODS):
        ap.error(f"--options must be a JSON object keyed by method names ({', '.join(METHODS)}), got {args.options!r}")

    if not isinstance(args.select, dict) or set(args.select) - set(METHODS) or not all(
            isinstance(g, dict) and g and all(isinstance(v, list) and v for v in g.values())
            for g in args.select.values()):
        ap.error("--select must be a JSON object keyed by method names, each an object of option -> non-empty "
                 f"list of values, e.g. '{{\"transfer\": {{\"o_bias\": [0, 1]}}}}'; got {args.select!r}")
    for method, grid in args.select.items():
        allowed = LEARNERS[method].adaptation_options
        if set(grid) - set(allowed):
            ap.error(f"--select {method}: {sorted(set(grid) - set(allowed))} are not adaptation-only options of "
                     f"{method} (allowed: {', '.join(allowed) or 'none'})")

    setup = prepare(args)
    if setup is None:
        if not args.no_save:
            corpus = {"fewnerd": f"fewnerd-{args.fewnerd_split}", "wnut16": "wnut16"}.get(
                args.setting, args.setting.replace("-", "->"))
            wnut16_test_set = args.setting in ("wnut16", "conll2003-wnut16")  # its 5-way K~2K episodes
            reason = ("--select needs WNUT-17 dev (wnut17/ under --data), not found" if args.setting == "wnut16"
                      else "reference corpora not found")
            merge([{"corpus": corpus, "ways": 5 if wnut16_test_set else None, "method": m, "status": "skipped",
                    "shots": f"{args.shots}~{2 * args.shots}" if wnut16_test_set else str(args.shots),
                    "reason": reason} for m in methods])
        return 0
    encoder_name = load_encoder().name
    print(f"{setup['corpus']}: {setup['ways']}-way {setup['shots']}-shot, {len(setup['test'])} test episodes, "
          f"seeds {seeds}, {args.steps} meta-training steps at lr {args.lr}, encoder {encoder_name}")
    print(f"{'method':<11} {'seed':>4} {'F1':>6} {'P':>6} {'R':>6} {'train s':>8} {'eval s/ep':>9}", flush=True)
    trained: dict = {}
    records = []
    for method in methods:
        reports, train_seconds, train_records, learners, parts = [], [], [], [], []
        # the linear probe is deterministic (zero-initialised head, full-batch AdamW on frozen vectors):
        # a seed cannot change it, so it runs once and its record has no interval over seeds
        method_seeds = seeds[:1] if method in DETERMINISTIC else seeds
        selection, chosen = None, {}
        if method in args.select:  # every seed's learner trained first, the choice made on target dev
            dev, dev_settings = setup["target_dev"](args.select_episodes)
            selection = select_adaptation([run_seed(method, seed, setup, args, trained)[0] for seed in method_seeds],
                                          args.select[method], dev, dev_settings)
            selection["name_share"] = setup.get("name_share")  # words in names: source train vs target dev
            chosen = selection["chosen"]
            print(f"{method:<11} chosen on target dev: {json.dumps(chosen)}", flush=True)
        configs = []
        for seed in method_seeds:
            learner, seconds, record = run_seed(method, seed, setup, args, trained)
            with learner.adaptation_settings(**chosen):
                report = evaluate(learner, setup["test"], progress=False)
                if method == "decomposed" and args.decomposition:
                    parts.append(decomposition_scores(learner, setup["test"]))
                configs.append(learner.config())
            reports.append(report)
            learners.append(learner)
            train_seconds.append(seconds)
            train_records.append(record)
            print(f"{method:<11} {seed:>4} {100 * report.f1:>6.2f} {100 * report.precision:>6.2f} "
                  f"{100 * report.recall:>6.2f} {seconds:>8.0f} {report.seconds_per_episode:>9.3f}", flush=True)
        summary = summarize(reports)
        novel = novel_type_scores(reports, setup.get("source_types") or [])
        records.append({
            "command": shlex.join(["python", "benchmarks/fewshot_ner.py", *(sys.argv[1:] if argv is None else argv)]),
            "corpus": setup["corpus"], "ways": setup["ways"], "shots": setup["shots"], "method": method,
            "encoder": encoder_name, "episodes": len(setup["test"]), "seeds": method_seeds, "scheme": "io",
            "max_length": args.max_length,
            "f1": summary["f1"]["mean"], "f1_ci95": summary["f1"]["half_width"],
            "precision": summary["precision"]["mean"], "recall": summary["recall"]["mean"],
            "f1_per_seed": [r.f1 for r in reports],
            "f1_interval_over": "seeds (Student-t, f1_ci95); test episodes (95% percentile bootstrap, "
                                "f1_bootstrap95_per_seed)",
            "f1_bootstrap95_per_seed": [list(bootstrap_interval(r, resamples=args.bootstrap, seed=seed))
                                        for r, seed in zip(reports, method_seeds)] if args.bootstrap else None,
            "f1_novel_types": novel,
            "decomposition_per_seed": parts or None,
            "deterministic": method in DETERMINISTIC,
            "per_type_f1": {t: v["mean"] for t, v in summary["per_type"].items()},
            "train_seconds": sum(train_seconds) / len(train_seconds),
            "eval_seconds_per_episode": sum(r.seconds_per_episode for r in reports) / len(reports),
            "meta_training": {"steps": args.steps, "lr": args.lr, "head_lr": args.head_lr,
                              "patience": args.patience, "dev_episodes": len(setup["dev"]),
                              "train_shots": args.train_shots or args.shots}
            if method in META_TRAINED | {"structshot"} else None,
            "options": args.options.get(method) or None,
            "selection": selection,
            "learner": {k: v for k, v in configs[0].items() if k != "transitions"},
            "learning_curve_per_seed": [r.get("dev") for r in train_records if r] or None,
            "best_dev_f1_per_seed": [r["best_f1"] for r in train_records if r] or None,
            "best_step_per_seed": [r["best_step"] for r in train_records if r] or None,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "date": dt.date.today().isoformat(),
        })
        print(f"{method:<11} {summary['text']}", flush=True)
        if not args.no_save:  # after every method, so a long run keeps what it finished
            merge(records[-1:])
    if not args.no_save:
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
