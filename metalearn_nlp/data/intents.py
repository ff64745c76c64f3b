"""Intent data: the built-in customer-service set, CLINC150 and BANKING77, and intent-disjoint splits.

An utterance with its intent is a :class:`~metalearn_nlp.data.episode.LabelledText`;
``ClassSampler`` draws N-way K-shot episodes from a list of them.

* ``load_intents()`` (or ``"builtin"``): the package's own small set,
  written for this book: 32 customer-service intents (banking, travel,
  shop orders, accounts, telecoms, support) with 8 or 9 utterances each,
  and 24 out-of-scope utterances. It ships in the package
  (``intents.jsonl``), so the chapter runs offline anywhere.
* ``load_intents("clinc150", path=...)``: CLINC150 (Larson et al., 2019),
  the ``data_full.json`` file (``{"train": [[text, intent], ...],
  "val": ..., "test": ..., "oos_train": ..., ...}``): 150 intents in 10
  domains and out-of-scope queries.
* ``load_intents("banking77", path=...)``: BANKING77 (Casanueva et al.,
  2020), a folder with ``train.csv`` and ``test.csv`` (``text,category``).

Without ``path`` the two benchmarks come from the Hugging Face hub
(``clinc/clinc_oos`` config ``plus``, ``PolyAI/banking77``) when it is
reachable; offline that raises ``CorpusUnavailableError`` naming both ways out.

Few-shot intent detection tests on intents never seen in meta-training:
:func:`split_intents` splits the *intents* (not the utterances) into
disjoint train / dev / test groups, deterministically from a seed.

Taught in: chapter 6.1 (Few-shot intent detection).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .corpora import CorpusUnavailableError
from .episode import LabelledText

__all__ = ["INTENT_SETS", "IntentFormatError", "IntentSet", "OOS", "load_intents", "read_intent_jsonl",
           "split_intents"]

#: The label of out-of-scope utterances in every intent set.
OOS = "oos"
#: Names ``load_intents`` knows.
INTENT_SETS: tuple[str, ...] = ("builtin", "clinc150", "banking77")
_HUB = {"clinc150": ("clinc/clinc_oos", "plus", "intent"), "banking77": ("PolyAI/banking77", None, "label")}


class IntentFormatError(ValueError):
    """A malformed intent file; the message names the file, the line (or item) and what was expected."""


@dataclass(frozen=True)
class IntentSet:
    """Utterances with intents, by split, out-of-scope ones labelled ``OOS``.

    Attributes:
        name: ``"builtin"``, ``"clinc150"``, ``"banking77"`` or the file name.
        splits: ``{split: [LabelledText, ...]}`` (``"all"`` for the built-in set).

    Example:
        >>> data = load_intents()
        >>> len(data.intents), len(data.out_of_scope()) > 0
        (32, True)

    Taught in: chapter 6.1.
    """

    name: str
    splits: dict[str, list[LabelledText]]

    def examples(self, split: str | None = None) -> list[LabelledText]:
        """In-scope utterances of one split (None: all splits)."""
        return [x for x in self._items(split) if x.label != OOS]

    def out_of_scope(self, split: str | None = None) -> list[LabelledText]:
        """Out-of-scope utterances of one split (None: all splits)."""
        return [x for x in self._items(split) if x.label == OOS]

    @property
    def intents(self) -> list[str]:
        """The in-scope intents, sorted."""
        return sorted({x.label for x in self.examples()})

    def _items(self, split: str | None) -> list[LabelledText]:
        if split is None:
            return [x for items in self.splits.values() for x in items]
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def __str__(self) -> str:
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        return f"{self.name}: {len(self.intents)} intents; utterances {sizes} (out-of-scope included)"


def _text_label(item: Any, where: str) -> LabelledText:
    if (not isinstance(item, (list, tuple)) or len(item) != 2 or not all(isinstance(v, str) for v in item)
            or not item[0].strip() or not item[1].strip()):
        raise IntentFormatError(f"{where}: expected [text, intent] (two non-empty strings), got {item!r}")
    return LabelledText(item[0].strip(), item[1].strip())


def read_intent_jsonl(path: str | Path) -> list[LabelledText]:
    """Read JSON lines ``{"text": ..., "label": ...}`` (the built-in set's format).

    Raises:
        IntentFormatError: ``<file>:<line>: ...`` for a line that is not a
            JSON object with non-empty string ``text`` and ``label``.

    Example:
        >>> read_intent_jsonl("my_intents.jsonl")  # doctest: +SKIP
    """
    path = Path(path)
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise IntentFormatError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(record, dict) or set(record) != {"text", "label"}:
            raise IntentFormatError(f'{where}: expected {{"text": ..., "label": ...}}, got {line.strip()[:80]!r}')
        out.append(_text_label([record["text"], record["label"]], where))
    if not out:
        raise IntentFormatError(f"{path}: no utterances")
    return out


def _read_clinc150(path: Path) -> IntentSet:
    file = path / "data_full.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IntentFormatError(f"{file}:{error.lineno}: not JSON ({error.msg})") from None
    needed = ("train", "val", "test")
    if not isinstance(data, dict) or not all(k in data for k in needed):
        raise IntentFormatError(f"{file}: expected an object with keys {needed} (and oos_*), "
                                f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    splits: dict[str, list[LabelledText]] = {}
    for split in needed:
        items = []
        for key in (split, f"oos_{split}"):
            for i, item in enumerate(data.get(key, [])):
                items.append(_text_label(item, f"{file}: {key}[{i}]"))
        splits["dev" if split == "val" else split] = items
    return IntentSet("clinc150", splits)


def _read_banking77(path: Path) -> IntentSet:
    files = {"train": path / "train.csv", "test": path / "test.csv"} if path.is_dir() else {"test": path}
    splits: dict[str, list[LabelledText]] = {}
    for split, file in files.items():
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing; a BANKING77 folder holds train.csv and test.csv")
        with file.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != ["text", "category"]:
                raise IntentFormatError(f"{file}:1: expected the header 'text,category', got {header}")
            items = []
            for row in reader:
                if not row:
                    continue
                if len(row) != 2:
                    raise IntentFormatError(f"{file}:{reader.line_num}: expected 2 columns (text,category), "
                                            f"got {len(row)}")
                items.append(_text_label(row, f"{file}:{reader.line_num}"))
        splits[split] = items
    return IntentSet("banking77", splits)


def _from_hub(name: str) -> IntentSet:
    from .._hub import hub_errors, hub_offline

    repo, config, column = _HUB[name]
    ways_out = (f"pass path= to the local files (e.g. load_intents({name!r}, path='data/{name}')), or go "
                f"online so that it downloads from the Hugging Face hub ({repo}; unset HF_HUB_OFFLINE and "
                "HF_DATASETS_OFFLINE)")
    if hub_offline("HF_DATASETS_OFFLINE"):
        raise CorpusUnavailableError(f"cannot load {name!r}: the Hugging Face hub is switched off; {ways_out}")
    import datasets

    try:
        loaded = datasets.load_dataset(repo, config)
    except hub_errors() as error:
        raise CorpusUnavailableError(f"cannot load {name!r}: {type(error).__name__}: {error}; {ways_out}") from error
    splits = {}
    for split, dataset in loaded.items():
        names = dataset.features[column].names
        splits["dev" if split == "validation" else split] = [
            LabelledText(row["text"], names[row[column]]) for row in dataset]
    return IntentSet(name, splits)


def load_intents(name: str = "builtin", path: str | Path | None = None) -> IntentSet:
    """Load an intent set: the built-in one, CLINC150 or BANKING77.

    Arguments:
        name (str, default ``"builtin"``): one of ``INTENT_SETS``.
        path: local files (CLINC150: ``data_full.json`` or its folder;
            BANKING77: the folder with ``train.csv`` and ``test.csv``); None:
            the package data (built-in) or the hub.

    Raises:
        ValueError: an unknown name.
        IntentFormatError: a malformed file (the message names file and line).
        CorpusUnavailableError: no ``path`` and the hub is off or unreachable.

    Example:
        >>> load_intents().examples()[0]
        LabelledText(text='how much money is in my checking account', label='check_balance')

    Taught in: chapter 6.1.
    """
    if name not in INTENT_SETS:
        raise ValueError(f"unknown intent set {name!r}; known: {INTENT_SETS}")
    if name == "builtin":
        if path is None:
            with resources.as_file(resources.files(__package__) / "intents.jsonl") as file:
                return IntentSet("builtin", {"all": read_intent_jsonl(file)})
        return IntentSet(Path(path).name, {"all": read_intent_jsonl(path)})
    if path is None:
        return _from_hub(name)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder for {name!r}")
    return _read_clinc150(path) if name == "clinc150" else _read_banking77(path)


def split_intents(examples: Iterable[LabelledText], *, dev: int, test: int,
                  seed: int = 0) -> dict[str, list[LabelledText]]:
    """Split utterances into intent-disjoint train / dev / test groups.

    The sorted intents are shuffled with ``random.Random(seed)``; the first
    ``test`` go to test, the next ``dev`` to dev, the rest to train, so the
    split depends only on the intents and the seed. Out-of-scope utterances
    are refused: keep them apart (``IntentSet.out_of_scope``).

    Arguments:
        examples: in-scope labelled texts.
        dev, test: how many intents the dev and test groups get.
        seed (int, default 0): seed of the shuffle.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``, each in input order.

    Raises:
        ValueError: ``OOS`` utterances, or fewer than ``dev + test + 1`` intents.

    Example:
        >>> groups = split_intents(load_intents().examples(), dev=8, test=8)
        >>> sorted(len({x.label for x in groups[g]}) for g in groups)
        [8, 8, 16]
    """
    examples = list(examples)
    intents = sorted({x.label for x in examples})
    if OOS in intents:
        raise ValueError(f"split_intents got {OOS!r} utterances; split in-scope intents only (IntentSet.examples())")
    if dev < 0 or test < 1 or dev + test >= len(intents):
        raise ValueError(f"cannot split {len(intents)} intents into dev={dev}, test={test} and a non-empty train group")
    random.Random(seed).shuffle(intents)
    group = {intent: "test" for intent in intents[:test]}
    group.update({intent: "dev" for intent in intents[test : test + dev]})
    out: dict[str, list[LabelledText]] = {"train": [], "dev": [], "test": []}
    for x in examples:
        out[group.get(x.label, "train")].append(x)
    return out


def intents_of(examples: Sequence[LabelledText]) -> list[str]:
    """The sorted labels of ``examples``."""
    return sorted({x.label for x in examples})
