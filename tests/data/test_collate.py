"""Collating tagged sentences with fast tokenizers: the uncased MiniLM one and a cased one built here."""

from __future__ import annotations

import warnings

import pytest
import torch

from metalearn_nlp.data import Episode, TaggedSentence, TruncationWarning, collate

LABELS = {"O": 0, "B-person": 1, "I-person": 2, "B-loc": 3, "I-loc": 4}
SENTENCES = [
    TaggedSentence(["Ada", "Lovelace", "wrote", "in", "Paris"], ["B-person", "I-person", "O", "O", "B-loc"]),
    TaggedSentence(["Babbage", "met", "Ada", "in", "New York"], ["B-person", "O", "B-person", "O", "B-loc"]),
]


@pytest.fixture(params=["minilm_tokenizer", "cased_tokenizer"])
def tokenizer(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


def test_labels_sit_on_first_subwords_only(tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is truncated, so nothing may warn
        batch = collate(SENTENCES, tokenizer, LABELS)
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.labels.shape
    assert batch.word_index.shape == batch.word_labels.shape == (2, 5)
    for row, sentence in enumerate(SENTENCES):
        word_ids = tokenizer(list(sentence.tokens), is_split_into_words=True)
        positions = batch.word_index[row].tolist()
        expected = [LABELS[tag] for tag in sentence.tags]
        assert batch.word_labels[row].tolist() == expected
        assert [batch.labels[row, p].item() for p in positions] == expected
        # every other position (specials, later subwords, padding) is ignored
        labelled = (batch.labels[row] != -100).nonzero().flatten().tolist()
        assert labelled == positions
        # word_index points at the first subword of each word
        ids = word_ids.word_ids()
        assert [ids.index(w) for w in range(len(sentence.tokens))] == positions
    assert batch.report.truncated == () and batch.report.words_lost == 0


def test_multi_subword_words_get_one_label(cased_tokenizer):
    batch = collate(SENTENCES[:1], cased_tokenizer, LABELS)
    tokens = cased_tokenizer.convert_ids_to_tokens(batch.input_ids[0].tolist())
    assert tokens == ["[CLS]", "Ada", "Love", "##lace", "wrote", "in", "Paris", "[SEP]"]
    assert batch.labels[0].tolist() == [-100, 1, 2, -100, 0, 0, 3, -100]


def test_case_is_kept_by_a_cased_tokenizer_and_dropped_by_minilm(cased_tokenizer, minilm_tokenizer):
    upper, lower = TaggedSentence(["Paris"], ["B-loc"]), TaggedSentence(["paris"], ["O"])
    cased = collate([upper, lower], cased_tokenizer, LABELS).input_ids
    uncased = collate([upper, lower], minilm_tokenizer, LABELS).input_ids
    assert cased[0, 1] != cased[1, 1]
    assert uncased[0, 1] == uncased[1, 1]


def test_truncation_is_reported_and_warned(tokenizer):
    long = TaggedSentence(["in"] * 8 + ["Ada", "Lovelace", "in", "Paris"], ["O"] * 8 + ["B-person", "I-person", "O", "B-loc"])
    with pytest.warns(TruncationWarning, match=r"1 of 2 sentences truncated at max_length=11: 3 words and 2 entities lost"):
        batch = collate([SENTENCES[0], long], tokenizer, LABELS, max_length=11)
    report = batch.report
    assert (report.truncated, report.words_lost, report.entities_lost) == ((1,), 3, 2)
    assert batch.input_ids.shape[1] == 11
    # the lost words keep their gold labels, with no position
    assert batch.word_index[1, 9:].tolist() == [-1, -1, -1]
    assert batch.word_labels[1, 9:].tolist() == [2, 0, 3]
    assert batch.word_index[0, 5:].tolist() == [-1] * 7 and batch.word_labels[0, 5:].tolist() == [-100] * 7


@pytest.mark.parametrize(
    ("name", "vanishing"),
    [("minilm_tokenizer", "\ufe0f"), ("cased_tokenizer", "\u200b")],  # U+FE0F occurs alone in WNUT-17
)
def test_words_without_subwords_become_the_unknown_token(request: pytest.FixtureRequest, name: str, vanishing: str):
    tokenizer = request.getfixturevalue(name)
    assert tokenizer([[vanishing]], is_split_into_words=True, add_special_tokens=False)["input_ids"] == [[]]
    sentence = TaggedSentence(["Ada", vanishing, "wrote"], ["B-person", "O", "O"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = collate([sentence], tokenizer, LABELS)
    assert batch.report.unknown_words == 1 and batch.report.words_lost == 0
    position = batch.word_index[0, 1].item()
    assert batch.input_ids[0, position].item() == tokenizer.unk_token_id
    assert batch.labels[0, position].item() == 0


def test_an_episode_supplies_labels_and_scheme(minilm_tokenizer):
    episode = Episode(
        support=[TaggedSentence(["Ada", "Lovelace", "in", "Paris"], ["person", "person", "O", "loc"])],
        query=[TaggedSentence(["Bob"], ["person"])],
        types=["loc", "person"],
        scheme="io",
    )
    batch = collate(episode.support, minilm_tokenizer, episode)
    assert batch.word_labels[0].tolist() == [2, 2, 0, 1]
    with pytest.raises(ValueError, match="contradicts the episode's scheme 'io'"):
        collate(episode.support, minilm_tokenizer, episode, scheme="bio")


def test_errors(minilm_tokenizer):
    with pytest.raises(ValueError, match=r"tags \['B-org'\] have no id in the label mapping"):
        collate([TaggedSentence(["IBM"], ["B-org"])], minilm_tokenizer, LABELS)
    with pytest.raises(TypeError, match="collate needs a fast tokenizer"):
        collate(SENTENCES, object(), LABELS)
    with pytest.raises(ValueError, match="at least one sentence"):
        collate([], minilm_tokenizer, LABELS)


def test_batch_moves_to_a_device(minilm_tokenizer):
    batch = collate(SENTENCES, minilm_tokenizer, LABELS).to("cpu")
    assert batch.labels.device == torch.device("cpu") and batch.report.sentences == 2
