"""Named corpora and local CoNLL folders; the hub code path with a stand-in ``load_dataset``."""

from __future__ import annotations

import warnings
from pathlib import Path

import datasets
import pytest
from huggingface_hub.errors import EntryNotFoundError

from metalearn_nlp.data import (
    ConllFormatError,
    CorpusUnavailableError,
    SkippedFilesWarning,
    TaggedSentence,
    load_corpus,
    spans,
)


def conll_text(*sentences: list[tuple[str, str]]) -> str:
    return "".join("".join(f"{token}\t{tag}\n" for token, tag in s) + "\n" for s in sentences)


TRAIN = conll_text([("Ada", "B-person"), ("in", "O"), ("Paris", "B-loc")], [("Bob", "I-person")])
DEV = conll_text([("London", "B-loc")])
TEST = conll_text([("Carol", "B-person"), ("Smith", "I-person")])


@pytest.fixture
def folder(write) -> Path:
    write("corpus/train.txt", TRAIN)
    write("corpus/valid.txt", DEV)
    write("corpus/test.txt", TEST)
    return write("corpus/README.md", "not data").parent


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)


# --- local files ------------------------------------------------------------


def test_folder_with_train_valid_test_files(folder: Path):
    corpus = load_corpus(folder)
    assert list(corpus.splits) == ["train", "dev", "test"]
    assert corpus.types == ["loc", "person"]
    assert corpus.tag_names == ["O", "B-loc", "I-loc", "B-person", "I-person"]
    features = corpus["train"].features
    assert features["tokens"].feature == datasets.Value("string")
    assert features["tags"].feature.names == corpus.tag_names
    # the orphan I-person of the second sentence was repaired and counted
    assert corpus.sentences("train") == [
        TaggedSentence(["Ada", "in", "Paris"], ["B-person", "O", "B-loc"]),
        TaggedSentence(["Bob"], ["B-person"]),
    ]
    assert corpus.report["train"].repaired == 1
    assert corpus.report["dev"].path.endswith("valid.txt")
    assert "1 I- tags repaired" in str(corpus)


def test_named_corpus_from_local_path_with_conll_names(write):
    write("w17/emerging.dev.conll", DEV)
    write("w17/train.conll", TRAIN)
    folder = write("w17/emerging.test.annotated", TEST).parent
    corpus = load_corpus("wnut17", path=folder)
    assert corpus.name == "wnut17"
    assert {split: len(data) for split, data in corpus.splits.items()} == {"train": 2, "dev": 1, "test": 1}


def test_split_argument_loads_one_split(folder: Path):
    corpus = load_corpus(folder, split="dev")
    assert list(corpus.splits) == ["dev"]
    with pytest.raises(KeyError, match=r"has no split 'train'; it has \['dev'\]"):
        corpus["train"]


def test_single_file_split_comes_from_its_name(write):
    assert list(load_corpus(write("x/test.conll", TEST)).splits) == ["test"]
    assert list(load_corpus(write("x/mydata.conll", TEST)).splits) == ["train"]


def test_two_files_for_one_split_is_an_error(write):
    write("c/train.txt", TRAIN)
    folder = write("c/train.conll", TRAIN).parent
    with pytest.raises(ValueError, match="more than one file for a split: train: train.conll, train.txt"):
        load_corpus(folder)


def test_folder_without_split_files_lists_what_it_holds(write):
    folder = write("c/notes.md", "x").parent
    with pytest.raises(FileNotFoundError, match=r"no train / dev / test file found \(it holds: notes.md\)"):
        load_corpus(folder)


def test_files_whose_names_name_no_split_or_two_are_reported_not_skipped_silently(write):
    write("c/train.txt", TRAIN)
    write("c/wnut17train.conll", TRAIN)  # "wnut17train" is one word: it names no split
    write("c/dev_test.txt", DEV)  # names two splits
    write("c/.hidden", "x")  # hidden files are not data
    folder = write("c/test.txt", TEST).parent
    with pytest.warns(SkippedFilesWarning) as caught:
        corpus = load_corpus(folder)
    message = str(caught[0].message)
    assert str(folder) in message
    assert "wnut17train.conll (names no split)" in message
    assert "dev_test.txt (names dev and test)" in message
    assert ".hidden" not in message
    assert corpus.skipped == ["dev_test.txt (names dev and test)", "wnut17train.conll (names no split)"]
    assert "skipped 2 files" in str(corpus)


def test_a_folder_whose_every_file_names_a_split_warns_nothing(write):
    write("c/train.txt", TRAIN)
    folder = write("c/test.txt", TEST).parent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_corpus(folder).skipped == []


def test_empty_split_file_is_an_error(write):
    write("c/train.txt", TRAIN)
    folder = write("c/dev.txt", "\n").parent
    with pytest.raises(ValueError, match=r"dev.txt: no sentences in the dev split"):
        load_corpus(folder)


def test_strict_propagates_to_the_reader(folder: Path):
    with pytest.raises(ConllFormatError, match=r"train.txt:5: expected 'B-person'"):
        load_corpus(folder, strict=True)


def test_fewnerd_local_io_files_become_bio(write):
    write("fewnerd/inter/train.txt", "Paul\tperson-other\nSimon\tperson-other\nsang\tO\n\nRome\tlocation-GPE\n\n")
    write("fewnerd/inter/dev.txt", "Oslo\tlocation-GPE\n\n")
    write("fewnerd/inter/test.txt", "Ann\tperson-other\n\n")
    corpus = load_corpus("fewnerd", variant="inter", path=write("fewnerd/README", "").parent)
    assert corpus.sentences("train")[0].tags == ("B-person-other", "I-person-other", "O")
    assert corpus.types == ["location-GPE", "person-other"]


def test_unknown_name_lists_the_known_ones(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown corpus 'conll03': expected one of wnut16, conll2003, wnut17, fewnerd"):
        load_corpus("conll03")


def test_bad_arguments():
    with pytest.raises(ValueError, match="fewnerd needs variant= one of supervised, inter, intra"):
        load_corpus("fewnerd")
    with pytest.raises(ValueError, match="variant= is for fewnerd only"):
        load_corpus("wnut16", variant="inter")
    with pytest.raises(ValueError, match="split must be 'train', 'dev' or 'test'"):
        load_corpus("wnut16", split="validation")


# --- wnut16, embedded -------------------------------------------------------


def test_wnut16_is_embedded_and_offline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = load_corpus("wnut16")
    assert list(corpus.splits) == ["train"] and len(corpus["train"]) == 2394
    assert corpus.types == [
        "company", "facility", "geo-loc", "movie", "musicartist",
        "other", "person", "product", "sportsteam", "tvshow",
    ]  # fmt: skip
    assert corpus.report["train"].whitespace_breaks == 2394  # its breaks are lone tabs
    with pytest.raises(KeyError, match="single split, 'train'"):
        load_corpus("wnut16", split="test")


# --- the hub, offline and online (stand-in load_dataset) --------------------


@pytest.mark.parametrize("name", ["conll2003", "wnut17"])
def test_offline_without_path_names_both_options(monkeypatch: pytest.MonkeyPatch, name: str):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not touch the hub"))
    with pytest.raises(CorpusUnavailableError) as caught:
        load_corpus(name)
    message = str(caught.value)
    assert "pass path=" in message and "go online" in message and "HF_HUB_OFFLINE" in message


def fake_hub(splits: dict[str, list[tuple[list[str], list[str]]]], names: list[str], column: str, extra: dict | None = None):
    """A DatasetDict shaped like the hub's: int tag ids with a ClassLabel."""
    features = {"tokens": datasets.Sequence(datasets.Value("string")), column: datasets.Sequence(datasets.ClassLabel(names=names))}
    features.update({key: feature for key, (feature, _) in (extra or {}).items()})
    result = {}
    for split, rows in splits.items():
        columns = {
            "tokens": [tokens for tokens, _ in rows],
            column: [[names.index(tag) for tag in tags] for _, tags in rows],
        }
        columns.update({key: [make(tokens) for tokens, _ in rows] for key, (_, make) in (extra or {}).items()})
        result[split] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    return datasets.DatasetDict(result)


CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def test_conll2003_from_the_hub(monkeypatch: pytest.MonkeyPatch, online):
    calls = []
    hub = fake_hub(
        {
            "train": [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]), (["Peter", "Blackburn"], ["I-PER", "I-PER"])],
            "validation": [(["BRUSSELS"], ["B-LOC"])],
            "test": [([], []), (["Japan"], ["B-LOC"])],
        },
        CONLL_NAMES,
        "ner_tags",
        extra={"pos_tags": (datasets.Sequence(datasets.Value("int32")), lambda tokens: [0] * len(tokens))},
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or hub)
    corpus = load_corpus("conll2003")
    assert calls == [(("eriktks/conll2003", "conll2003"), {"revision": "refs/convert/parquet"})]
    assert list(corpus.splits) == ["train", "dev", "test"]
    assert corpus.types == ["LOC", "MISC", "ORG", "PER"]
    assert corpus.sentences("train")[1].tags == ("B-PER", "I-PER")  # IOB1-style start repaired
    assert corpus.report["train"].repaired == 1
    assert "row 1, token 0: I-PER -> B-PER" in corpus.report["train"].repair_examples[0]
    assert len(corpus["test"]) == 1 and "1 rows without tokens were skipped" in corpus.report["test"].notes[0]
    with pytest.raises(ValueError, match="row 1, token 0: 'I-PER' does not continue an entity"):
        load_corpus("conll2003", strict=True)


def test_wnut17_from_the_hub_one_split(monkeypatch: pytest.MonkeyPatch, online):
    names = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-person", "I-person"]
    hub = fake_hub({"train": [], "validation": [], "test": [(["Game", "of", "Thrones"], ["B-creative-work", "I-creative-work", "I-creative-work"])]}, names, "ner_tags")
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: hub)
    corpus = load_corpus("wnut17", split="test")
    assert list(corpus.splits) == ["test"]
    assert spans(corpus.sentences("test")[0].tags) == [("creative-work", 0, 3)]


def test_fewnerd_from_the_hub_uses_fine_types_and_merges_adjacent(monkeypatch: pytest.MonkeyPatch, online):
    fine = ["O", "art-broadcastprogram", "person-actor", "location-GPE"]
    hub = fake_hub(
        {"train": [(["Paul", "Simon", "Art", "Garfunkel", "in", "Rome"], ["person-actor"] * 4 + ["O", "location-GPE"])]},
        fine,
        "fine_ner_tags",
        extra={"ner_tags": (datasets.Sequence(datasets.ClassLabel(names=["O", "art", "person", "location"])), lambda t: [0] * len(t))},
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append(args) or hub)
    corpus = load_corpus("fewnerd", variant="intra")
    assert calls == [("DFKI-SLT/few-nerd", "intra")]
    assert corpus.types == ["location-GPE", "person-actor"]
    # IO cannot separate "Paul Simon" from "Art Garfunkel": one entity
    assert spans(corpus.sentences("train")[0].tags) == [("person-actor", 0, 4), ("location-GPE", 5, 6)]


def test_hub_failure_is_reported_with_both_options(monkeypatch: pytest.MonkeyPatch, online):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'eriktks/conll2003' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(CorpusUnavailableError, match=r"ConnectionError: Couldn't reach.*pass path=.*go online") as caught:
        load_corpus("conll2003")
    assert isinstance(caught.value.__cause__, ConnectionError)


@pytest.mark.parametrize("bug", [TypeError("load_dataset() got an unexpected keyword argument 'x'"),
                                 AttributeError("'NoneType' object has no attribute 'split'"),
                                 KeyError("train")])
def test_programming_errors_in_the_hub_loader_are_not_reported_as_an_unavailable_hub(
    monkeypatch: pytest.MonkeyPatch, online, bug: Exception
):
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(type(bug)) as caught:
        load_corpus("conll2003")
    assert caught.value is bug and not isinstance(caught.value, CorpusUnavailableError)


@pytest.mark.parametrize(
    "failure",
    [FileNotFoundError("no such dataset"), TimeoutError("read timed out"), EntryNotFoundError("entry not found")],
)
def test_missing_files_and_network_and_hub_failures_are_reported_as_an_unavailable_hub(
    monkeypatch: pytest.MonkeyPatch, online, failure: Exception
):
    def unreachable(*args, **kwargs):
        raise failure

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(CorpusUnavailableError, match="the hub did not deliver it") as caught:
        load_corpus("wnut17")
    assert f"({type(failure).__name__}: " in str(caught.value)
    assert caught.value.__cause__ is failure


def test_hub_tags_without_class_label_names_are_refused(monkeypatch: pytest.MonkeyPatch, online):
    plain = datasets.Dataset.from_dict(
        {"tokens": [["EU"]], "ner_tags": [[3]]},
        features=datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": datasets.Sequence(datasets.Value("int64"))}),
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: datasets.DatasetDict({"train": plain}))
    with pytest.raises(ValueError, match="not a sequence of ClassLabel ids, so its tag names are unknown"):
        load_corpus("conll2003")
