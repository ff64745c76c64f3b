"""The readers and samplers on the real reference files in ``../shared/data``.

Skipped when the folder is absent. Each behaviour checked here is also
covered, on files the tests write themselves, in test_conll.py (whitespace
breaks, blank-line runs, HTML entity pieces, emoji), test_corpora.py (local
folders, wnut16), test_samplers.py (invariants, impossible requests) and
test_collate.py (words without subwords).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from metalearn_nlp.data import EpisodeSamplingError, FewNERDSampler, collate, load_corpus, read_conll, spans

pytestmark = pytest.mark.shared_data

# (sentences, tokens) per file; CoNLL-2003's README counts 14,985 / 3,464 / 3,682
# "sentences" because it counts blank lines, several of which follow each other
# where documents met.
EXPECTED = {
    "conll2003/train.txt": (14_041, 203_621),
    "conll2003/dev.txt": (3_250, 51_362),
    "conll2003/test.txt": (3_453, 46_435),
    "wnut17/train.conll": (3_394, 62_730),
    "wnut17/dev.conll": (1_009, 15_733),
    "wnut17/test.conll": (1_287, 23_394),
}


@pytest.fixture(scope="module")
def conll_train(shared_data: Path):
    return read_conll(shared_data / "conll2003/train.txt")[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_file_reads_completely(shared_data: Path, name: str):
    sentences, report = read_conll(shared_data / name, strict=True)
    assert (len(sentences), report.tokens) == EXPECTED[name]
    lines = (shared_data / name).read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":  # what follows the final newline is not a line
        lines.pop()
    blank_lines = sum(not line.strip() for line in lines)
    assert report.tokens == len(lines) - blank_lines  # no token line dropped
    last_sentence_ends_the_file = bool(lines[-1].strip())
    assert report.extra_breaks == blank_lines - (len(sentences) - last_sentence_ends_the_file)


def test_wnut17_train_lone_tab_breaks(shared_data: Path):
    _, report = read_conll(shared_data / "wnut17/train.conll")
    assert report.whitespace_breaks == 2_394


def test_tweet_quirks_survive(shared_data: Path):
    test, _ = read_conll(shared_data / "wnut17/test.conll")
    tokens = [token for sentence in test for token in sentence.tokens]
    assert test[0].tokens[:3] == ("&", "gt", ";")  # "&gt;" split into pieces
    dev, _ = read_conll(shared_data / "wnut17/dev.conll")
    assert "😂" in {token for sentence in dev for token in sentence.tokens}
    assert any(token.startswith("@") for token in tokens) and any(token.startswith("http") for token in tokens)


def test_named_corpora_from_local_folders(shared_data: Path):
    conll = load_corpus("conll2003", path=shared_data / "conll2003")
    assert conll.types == ["location", "misc", "organisation", "person"]
    assert {split: len(data) for split, data in conll.splits.items()} == {"train": 14_041, "dev": 3_250, "test": 3_453}
    wnut17 = load_corpus("wnut17", path=shared_data / "wnut17")
    assert wnut17.types == ["corporation", "creative-work", "group", "location", "person", "product"]


def test_wnut16_is_the_start_of_wnut17_train(shared_data: Path):
    wnut16 = load_corpus("wnut16").sentences("train")
    wnut17, _ = read_conll(shared_data / "wnut17/train.conll")
    assert [s.tokens for s in wnut16] == [s.tokens for s in wnut17[:2_394]]


def test_five_way_on_conll_is_impossible_and_says_why(conll_train):
    with pytest.raises(EpisodeSamplingError, match="only 4 types are available") as caught:
        FewNERDSampler(conll_train, ways=5, shots=1)
    assert "location 7,129, person 6,600, organisation 6,297, misc 3,403" in str(caught.value)


def test_four_way_episodes_on_conll_keep_the_invariants(conll_train):
    sampler = FewNERDSampler(conll_train, ways=4, shots=1, seed=0)
    for episode in sampler.episodes(200):
        support = Counter(span.type for s in episode.support for span in spans(s.tags, "io"))
        query = Counter(span.type for s in episode.query for span in spans(s.tags, "io"))
        assert all(1 <= support[t] <= 2 and 1 <= query[t] <= 2 for t in episode.types)
        assert not set(episode.support_ids) & set(episode.query_ids)


@pytest.mark.parametrize("name", ["minilm_tokenizer", "cased_tokenizer"])
def test_collating_real_tweets_loses_nothing_silently(request: pytest.FixtureRequest, shared_data: Path, name: str):
    tokenizer = request.getfixturevalue(name)
    sentences, _ = read_conll(shared_data / "wnut17/train.conll")
    sentences = [s for s in sentences if "\ufe0f" in s.tokens][:16] + sentences[:48]
    labels = {tag: i for i, tag in enumerate(sorted({t for s in sentences for t in s.tags}))}
    batch = collate(sentences, tokenizer, labels, max_length=512)
    assert batch.report.words_lost == 0
    assert (batch.word_index >= 0).sum().item() == sum(len(s.tokens) for s in sentences)
