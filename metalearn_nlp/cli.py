"""The ``metalearn-nlp`` command: sample episodes, meta-train, evaluate, tag raw text, report.

::

    metalearn-nlp sample -o test.jsonl --group test --ways 5 --shots 1 --episodes 100
    metalearn-nlp train --learner protonet --steps 200 --out runs/protonet
    metalearn-nlp train --out runs/protonet --resume          # after a crash or Ctrl-C: its config.json
    metalearn-nlp evaluate runs/protonet test.jsonl --json runs/protonet/test.json
    metalearn-nlp predict runs/protonet --support support.conll "Watching Star Wars with Ann"
    metalearn-nlp train --from runs/protonet --corpus new.conll --steps 50 --out runs/protonet-v2
    metalearn-nlp report benchmarks/results/fewshot_ner.json
    metalearn-nlp info [runs/protonet]
    metalearn-nlp student-edition student-book/              # the book without solutions, for a class

Every default runs offline on the embedded WNUT-16 tweets and MiniLM encoder.
Exit codes: 0 success; 2 a usage or input error (the message says which
file, argument or value, and what to do; ``METALEARN_NLP_DEBUG=1`` shows
the traceback); 3 training diverged (NaN loss); 130 interrupted (``train``
still saves the best weights so far). With several machines, ``--out`` must
be on storage they all share.

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__

EXIT_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback, exit code 2."""


# -- shared pieces -----------------------------------------------------------------------------
def _types(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _data_options(parser: argparse.ArgumentParser, group: str) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--corpus", default="wnut16",
                      help="a named corpus (wnut16, conll2003, wnut17, fewnerd) or a CoNLL file or folder "
                           "(default: wnut16, embedded)")
    data.add_argument("--path", help="local files of a named corpus (a CoNLL file or a folder of splits)")
    data.add_argument("--split", default=None, help="corpus split to read (default: train; a lone file: all)")
    data.add_argument("--group", default=group, choices=("train", "test", "all"),
                      help=f"wnut16's fixed type split: its training or its test types (default: {group})")
    data.add_argument("--types", help="comma-separated entity types to use (other mentions become O)")
    data.add_argument("--ways", type=int, default=None, help="N: types per episode (default: min(5, types))")
    data.add_argument("--shots", type=int, default=1, help="K: support mentions per type, K~2K (default 1)")
    data.add_argument("--query-shots", type=int, default=None, help="query mentions per type (default K)")
    data.add_argument("--scheme", default="io", choices=("io", "bio"), help="episode tag scheme (default io)")
    data.add_argument("--seed", type=int, default=0, help="seed of the episodes and of training (default 0)")


def _sentences(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The sentences the options select, and a JSON-ready description of them."""
    from .data import WNUT16_SPLIT, load_corpus, split_types

    local = args.path is None and Path(args.corpus).exists()
    split = args.split or (None if local and Path(args.corpus).is_file() else "train")
    corpus = load_corpus(args.corpus, path=args.path, split=split)
    name = split or next(iter(corpus.splits))
    sentences = corpus.sentences(name)
    types = _types(args.types)
    if types:
        sentences = split_types(sentences, types, [], [])["train"]
    elif corpus.name == "wnut16" and args.group != "all":
        types = list(WNUT16_SPLIT[args.group])
        sentences = split_types(sentences, types, [], [])["train"]
    return sentences, {"corpus": str(args.corpus), "path": args.path, "split": name, "types": types,
                       "group": args.group if not _types(args.types) else None}


def _sampler(args: argparse.Namespace, sentences: list[Any], seed: int) -> Any:
    from .data import FewNERDSampler
    from .data.tags import entity_types

    found = sorted({t for s in sentences for t in entity_types(s.tags, "bio")})
    ways = args.ways or min(5, len(found))
    return FewNERDSampler(sentences, ways, args.shots, query_shots=args.query_shots, scheme=args.scheme, seed=seed)


def _count(text: Any, flag: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise CommandError(f"{flag} {text!r}: expected none, all or a number of layers (0, 1, 2, ...)")
    return value


def _learner_dir(path: str) -> Path:
    """A learner folder, or a ``train`` run folder holding ``learner/``."""
    folder = Path(path)
    if (folder / "learner").is_dir() and not (folder / "learner.json").exists():
        folder = folder / "learner"
    if not folder.is_dir():
        raise CommandError(f"{path}: no such folder; pass a folder written by `metalearn-nlp train --out` "
                           "(or by Learner.save_pretrained)")
    return folder


def _load(path: str, device: str, adapt: str | None = None) -> Any:
    from .devices import resolve_device
    from .saving import load_learner

    from .learners import SENTENCE_LEARNERS

    learner = load_learner(_learner_dir(path), device=resolve_device(device))
    if learner.name in SENTENCE_LEARNERS:
        raise CommandError(f"{path} holds {learner.name!r}, a text classifier (chapter 6.1), and this command "
                           "tags words; use it from Python: load_learner(folder).adapt(episode).predict(texts)")
    try:
        options = json.loads(adapt) if adapt else {}
        return learner.set_adaptation(**options)  # a JSON list or number fails here too
    except (ValueError, TypeError) as error:
        raise CommandError(f"--adapt {adapt}: {error}; give a JSON object of adaptation-only options, "
                           "e.g. '{\"o_bias\": 1.0}'") from None


def _write_json(path: str | Path, value: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- commands ----------------------------------------------------------------------------------
def _info(args: argparse.Namespace) -> int:
    import torch

    from .kernels import describe

    print(f"metalearn-nlp {__version__}")
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print(f"kernels: {describe()}")
    if args.learner:
        from .saving import read_learner_config

        print(json.dumps(read_learner_config(_learner_dir(args.learner)), indent=2, ensure_ascii=False))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .data import save_episodes

    sentences, data = _sentences(args)
    sampler = _sampler(args, sentences, args.seed)
    episodes = sampler.episodes(args.episodes)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_episodes(args.output, episodes, {**sampler.settings, "episodes": args.episodes, "data": data})
    print(f"wrote {len(episodes)} {sampler.ways}-way {args.shots}~{2 * args.shots}-shot episodes "
          f"({', '.join(sampler.types)}) to {args.output}")
    return 0


TRAIN_KEYS = ("learner", "options", "encoder", "max_length", "freeze", "steps", "meta_batch_size", "lr", "head_lr",
              "weight_decay", "warmup", "schedule", "max_grad_norm", "eval_every", "patience", "dev_episodes",
              "dev_file", "checkpoint_every", "precision", "device", "corpus", "path", "split", "group", "types",
              "ways", "shots", "query_shots", "scheme", "seed", "out", "start_from")


def _train(args: argparse.Namespace) -> int:
    from .data import FewNERDSampler, hold_out, load_episodes
    from .devices import resolve_device
    from .distributed import init_distributed
    from .encoders import load_encoder
    from .learners import get_learner
    from .training import Trainer, TrainingDivergedError
    import torch

    if not args.out:
        raise CommandError("train needs --out DIR (where the learner, its checkpoints and its record go)")
    out = Path(args.out)
    checkpoints = out / "checkpoints"
    if (checkpoints / "checkpoint.pt").exists() and not args.resume:
        raise CommandError(f"{checkpoints / 'checkpoint.pt'} exists: pass --resume to continue that run, "
                           "or choose another --out")
    if args.resume and not (checkpoints / "checkpoint.pt").exists():
        raise CommandError(f"--resume: no checkpoint in {checkpoints}; run without --resume to start (with "
                           "several machines, --out must be on storage they all share)")
    device = resolve_device(args.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.type == "cuda":  # torchrun: one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = init_distributed("nccl" if device.type == "cuda" else "gloo")
    sentences, data = _sentences(args)
    train, dev_sentences = hold_out(sentences, 0.2, seed=0) if not args.dev_file and args.dev_episodes else \
        (sentences, [])
    sampler = _sampler(args, train, args.seed)
    if args.dev_file:
        dev, _ = load_episodes(args.dev_file)
    elif args.dev_episodes:
        dev = FewNERDSampler(dev_sentences, sampler.ways, args.shots, scheme=args.scheme,
                             seed=args.seed + 1).episodes(args.dev_episodes)
    else:
        dev = None
    torch.manual_seed(args.seed)  # the learner's own initialisation (heads, learned rules) follows --seed
    if args.start_from:  # re-meta-learning: continue from a saved learner on new data
        learner = _load(args.start_from, str(device))
    else:
        options = json.loads(args.options) if isinstance(args.options, str) else dict(args.options or {})
        freeze = args.freeze if args.freeze in ("none", "all") else _count(args.freeze, "--freeze")
        encoder = load_encoder(args.encoder, max_length=args.max_length, device=device, freeze=freeze)
        learner = get_learner(args.learner, encoder, **options)
    config = {k: getattr(args, k) for k in TRAIN_KEYS}
    trainer = Trainer(learner, sampler, steps=args.steps, meta_batch_size=args.meta_batch_size, lr=args.lr,
                      head_lr=args.head_lr, weight_decay=args.weight_decay, warmup=args.warmup,
                      schedule=args.schedule, max_grad_norm=args.max_grad_norm, dev_episodes=dev,
                      eval_every=args.eval_every, patience=args.patience, seed=args.seed,
                      precision=args.precision, checkpoint_dir=checkpoints,
                      checkpoint_every=args.checkpoint_every, progress=not args.quiet and rank == 0)
    if args.resume:
        trainer.resume()  # refuses other settings, before config.json is touched
        print(f"resuming {checkpoints / 'checkpoint.pt'} at step {trainer.state.step}", file=sys.stderr)
    if rank == 0:
        _write_json(out / "config.json", config)
    try:
        result = trainer.fit()
    except TrainingDivergedError as error:
        print(f"metalearn-nlp train: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    if rank == 0:
        metadata = {"training": result.to_dict(), "data": data, "sampler": sampler.settings,
                    "world_size": world, "config": config}
        learner.save_pretrained(out / "learner", metadata=metadata, overwrite=True)
        _write_json(out / "training.json", result.to_dict())
        best = "-" if result.best_f1 is None else f"{100 * result.best_f1:.2f} at step {result.best_step}"
        print(f"{'interrupted' if result.interrupted else 'trained'}: {result.steps} steps, "
              f"best dev F1 {best}; learner saved to {out / 'learner'}")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return EXIT_INTERRUPTED if result.interrupted else 0


def _evaluate(args: argparse.Namespace) -> int:
    from .data import load_episode_file
    from .evaluation import evaluate

    folder = _learner_dir(args.learner)
    if not Path(args.episodes).is_file():
        raise CommandError(f"{args.episodes}: no such episode file; write one with `metalearn-nlp sample -o FILE`")
    episodes, settings = load_episode_file(args.episodes)
    learner = _load(str(folder), args.device, args.adapt)
    report = evaluate(learner, episodes, progress=not args.quiet, keep_predictions=args.keep_predictions)
    print(report.table())
    if args.json:
        _write_json(args.json, {**report.to_dict(), "episodes_file": str(args.episodes),
                                "episode_settings": settings})
    return 0


def _support(path: str, types: list[str] | None, scheme: str) -> Any:
    from .data import Episode, read_conll
    from .data.tags import entity_types

    sentences, _ = read_conll(path)
    found = sorted({t for s in sentences for t in entity_types(s.tags, "bio")})
    if not found:
        raise CommandError(f"{path}: the support file has no entity; tag a few examples of each type (BIO)")
    missing = [t for t in types or () if t not in found]
    if missing:
        raise CommandError(f"{path}: the support file has no example of {', '.join(missing)} (it has "
                           f"{', '.join(found)}); add a sentence for each, or leave them out of --types")
    types = types or found
    return Episode([s.for_episode(types, scheme) for s in sentences], [], types, scheme)


def _predict(args: argparse.Namespace) -> int:
    from .tagger import Tagger

    learner = _load(args.learner, args.device, args.adapt)
    tagger = Tagger(learner, _support(args.support, _types(args.types), args.scheme),
                    batch_size=args.batch_size)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        if args.conll:
            from .data import read_conll

            sentences, _ = read_conll(args.conll)
            words = [list(s.tokens) for s in sentences]
            tags = tagger.predictor.predict(words) if words else []
            for tokens, row in zip(words, tags):
                out.write("".join(f"{t}\t{g}\n" for t, g in zip(tokens, row)) + "\n")
            return 0
        if args.input:
            texts = [line.removesuffix("\r") for line in Path(args.input).read_text(encoding="utf-8").split("\n")]
            if texts and texts[-1] == "":
                texts.pop()  # the file's final newline
        else:
            texts = list(args.text) or [line.rstrip("\n") for line in sys.stdin]
        for text, entities in zip(texts, tagger.tag(texts)):
            found = [{"type": e.type, "start": e.start, "end": e.end, "text": e.text, "score": round(e.score, 4)}
                     for e in entities]
            out.write(json.dumps({"text": text, "entities": found}, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _report(args: argparse.Namespace) -> int:
    from .reporting import render

    path = Path(args.results)
    if not path.is_file():
        raise CommandError(f"{path}: no such file; pass a benchmark or evaluation JSON")
    print(render(json.loads(path.read_text(encoding="utf-8")), args.select, source=str(path)))
    return 0


# -- the parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalearn-nlp", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
    parser.add_argument("--version", action="version", version=f"metalearn-nlp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="versions, the kernel backend, and a saved learner's settings")
    p.add_argument("learner", nargs="?", help="a learner or run folder to describe")
    p.set_defaults(func=_info)

    p = sub.add_parser("sample", help="sample episodes into a checksummed episode file")
    p.add_argument("-o", "--output", required=True, help="the episode file to write (.jsonl)")
    p.add_argument("--episodes", type=int, default=100, help="how many (default 100)")
    _data_options(p, group="test")
    p.set_defaults(func=_sample)

    p = sub.add_parser("train", help="meta-train a learner (checkpoints, early stopping, --resume)")
    p.add_argument("--config", help="a JSON file of these options (keys as the long flags, with _); "
                                    "flags given on the command line win")
    p.add_argument("--out", help="run folder: learner/, checkpoints/, config.json, training.json")
    p.add_argument("--learner", default="protonet", help="a registered learner (default protonet)")
    p.add_argument("--options", default="{}", help='learner options as JSON, e.g. \'{"inner_steps": 5}\'')
    p.add_argument("--from", dest="start_from", help="continue meta-learning from a saved learner (new data)")
    p.add_argument("--encoder", help="encoder folder or hub name (default: the offline MiniLM)")
    p.add_argument("--max-length", type=int, default=128, help="subwords per sentence (default 128)")
    p.add_argument("--freeze", default="none",
                   help="encoder layers kept frozen: none, all, or N (embeddings + the bottom N layers; default none)")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps (default 200)")
    p.add_argument("--meta-batch-size", type=int, default=1, help="episodes per step (default 1)")
    p.add_argument("--lr", type=float, default=1e-4, help="encoder learning rate (default 1e-4)")
    p.add_argument("--head-lr", type=float, default=None, help="learning rate of the learner's own weights")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps (default 0.1)")
    p.add_argument("--schedule", default="linear", choices=("linear", "cosine", "constant"))
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--dev-episodes", type=int, default=20,
                   help="dev episodes from 20%% held-out training sentences (the same 20%% for every --seed, so "
                        "dev scores of seeds compare; default 20; 0: no dev)")
    p.add_argument("--dev-file", help="dev episodes from an episode file instead")
    p.add_argument("--eval-every", type=int, default=None, help="steps between dev evaluations (default steps/10)")
    p.add_argument("--patience", type=int, default=None, help="stop after this many evaluations without gain")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="bf16: autocast, fp32 weights")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _data_options(p, group="train")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a saved learner on an episode file (pooled micro-F1)")
    p.add_argument("learner", help="a learner or run folder")
    p.add_argument("episodes", help="an episode file: from `sample` (its checksum is verified) or Few-NERD's "
                   "episode-data JSONL")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--keep-predictions", action="store_true", help="keep every sentence's tags in the JSON")
    p.add_argument("--adapt", help='adaptation-only options as JSON, e.g. \'{"o_bias": 1.0}\' (chapter 5.5)')
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="tag raw text (or a CoNLL file) after adapting on a support file")
    p.add_argument("learner", help="a learner or run folder")
    p.add_argument("text", nargs="*", help="texts to tag (none: --input, --conll or standard input)")
    p.add_argument("--support", required=True, help="a CoNLL file (BIO) with a few examples of each type")
    p.add_argument("--types", help="the types to tag (default: every type in the support file)")
    p.add_argument("--scheme", default="io", choices=("io", "bio"))
    p.add_argument("--input", help="a text file, one text per line")
    p.add_argument("--conll", help="a CoNLL file to tag word by word (its tags are ignored)")
    p.add_argument("--output", help="write here (default: standard output); JSON lines, or CoNLL for --conll")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--adapt", help='adaptation-only options as JSON, e.g. \'{"o_bias": 1.0}\' (chapter 5.5)')
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_predict)

    p = sub.add_parser("report", help="benchmark or evaluation JSON -> Markdown tables")
    p.add_argument("results", help="e.g. benchmarks/results/fewshot_ner.json, or an `evaluate --json` file")
    p.add_argument("--select", default="", help="only settings whose corpus contains this")
    p.set_defaults(func=_report)

    p = sub.add_parser("student-edition", help="copy the book without solutions, marked cells as stubs")
    p.add_argument("out", help="the folder to write (new or empty); build it with `jupyter-book build OUT`")
    p.add_argument("--book", default=".", help="the book's root, the folder holding _toc.yml (default: .)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_student_edition)
    return parser


def _student_edition(args: argparse.Namespace) -> int:
    from .student import write_student_edition

    try:
        report = write_student_edition(args.book, args.out, force=args.force)
    except (FileExistsError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(report)
    for notebook, count in report.stubs.items():
        print(f"  {Path(notebook).relative_to(report.out)}: {count} stub(s)")
    print(f"next: jupyter-book build {args.out}")
    return 0


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``train --config FILE``: the file's values become the defaults, so explicit flags win.

    ``train --out DIR --resume`` without ``--config`` reads ``DIR/config.json``, the options the run
    was started with, so resuming needs no other flag.
    """
    if "train" not in argv:
        return
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config")
    probe.add_argument("--out")
    probe.add_argument("--resume", action="store_true")
    known, _ = probe.parse_known_args(argv[argv.index("train") + 1:])
    if known.config:
        path = Path(known.config)
    elif known.resume and known.out and (Path(known.out) / "config.json").is_file():
        path = Path(known.out) / "config.json"
    else:
        return
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"--config {path}: no such file") from None
    except ValueError as error:
        raise CommandError(f"--config {path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise CommandError(f"--config {path}: expected a JSON object of option: value")
    unknown = sorted(set(config) - set(TRAIN_KEYS))
    if unknown:
        raise CommandError(f"--config {path}: unknown options {unknown}; known: {', '.join(TRAIN_KEYS)}")
    if isinstance(config.get("options"), dict):
        config["options"] = json.dumps(config["options"])
    if isinstance(config.get("types"), list):
        config["types"] = ",".join(map(str, config["types"]))
    train = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    for action in train._actions:  # argparse checks choices on the command line only: check the file's values
        if action.dest in config and action.choices is not None and config[action.dest] not in action.choices:
            raise CommandError(f"--config {path}: {action.dest} {config[action.dest]!r} is not one of "
                               f"{', '.join(map(str, action.choices))}")
    train.set_defaults(**config)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        _apply_config(parser, argv)
        args, extra = parser.parse_known_args(argv)
        if extra and args.command == "predict" and not any(e.startswith("-") for e in extra):
            args.text = [*args.text, *extra]  # texts given after the options
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args.func(args)
    except KeyboardInterrupt:
        print("metalearn-nlp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # errors a user can act on; anything else is a bug and shows its traceback
        if not _is_input_error(error) or os.environ.get("METALEARN_NLP_DEBUG"):
            raise
        command = argv[0] if argv else ""
        message = f"{error.filename}: no such file or folder" if isinstance(error, FileNotFoundError) \
            and error.filename else str(error)
        print(f"metalearn-nlp {command}: error: {message}", file=sys.stderr)
        return EXIT_INPUT


def _is_input_error(error: Exception) -> bool:
    from .checkpoints import CheckpointError
    from .data import EpisodeFileError

    names = {"LearnerFileError", "EncoderUnavailableError", "CorpusUnavailableError", "ConllFormatError",
             "EpisodeSamplingError", "UnknownLearnerError"}
    return isinstance(error, (CommandError, CheckpointError, EpisodeFileError, FileNotFoundError,
                              json.JSONDecodeError)) or type(error).__name__ in names or (
        isinstance(error, ValueError) and type(error) is ValueError)


if __name__ == "__main__":
    sys.exit(main())
