"""Inference on raw text: word splitting with offsets, entities with offsets and scores, the Tagger."""

from __future__ import annotations

import importlib.util
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import metalearn_nlp
from metalearn_nlp.data import Episode, TaggedSentence, TruncationWarning
from metalearn_nlp.data.tags import spans
from metalearn_nlp.learners import ProtoNet
from metalearn_nlp.learners.base import Learner, Predictor
from metalearn_nlp.tagger import PROGRESS_THRESHOLD, Entity, Tagger, Word, split_words


def texts(text: str) -> list[str]:
    return [w.text for w in split_words(text)]


def assert_offsets(text: str, words: list[Word]) -> None:
    for word in words:
        assert text[word.start : word.end] == word.text


SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # a flag made of tag characters


# -- split_words ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris.", ["Paris", "."]),
        ("Ada\tLovelace", ["Ada", "Lovelace"]),
        ("Ada   \n\n  Lovelace ", ["Ada", "Lovelace"]),
        ("Ada\u00a0Lovelace\u3000wrote", ["Ada", "Lovelace", "wrote"]),
        ("Zoë met Renée in Besançon", ["Zoë", "met", "Renée", "in", "Besançon"]),
        ("Zoe\u0308 cafe\u0301", ["Zoe\u0308", "cafe\u0301"]),  # decomposed accents stay on their letter
        ("東京タワー\u3000に行った。", ["東京タワー", "に行った", "。"]),
        ("family 👩‍👩‍👧 in 🇫🇷!", ["family", "👩‍👩‍👧", "in", "🇫🇷", "!"]),
        ("👍🏽👍🏽", ["👍🏽", "👍🏽"]),
        ("the U.S. and e.g. Mr. Smith", ["the", "U.S.", "and", "e.g.", "Mr", ".", "Smith"]),
        ("don't O'Brien 'quoted'", ["don't", "O'Brien", "'", "quoted", "'"]),
        ("state-of-the-art -- well-", ["state-of-the-art", "--", "well", "-"]),
        ("3.5 1,000 10:30 24/7 5.", ["3.5", "1,000", "10:30", "24/7", "5", "."]),
        ("wait... what?!", ["wait", "...", "what", "?!"]),
        ("@ada_l loves #NLP, see https://t.co/x?a=1.",
         ["@ada_l", "loves", "#NLP", ",", "see", "https://t.co/x?a=1", "."]),
        (f"हिन्दी भाषा 1\ufe0f\u20e3 {SCOTLAND}", ["हिन्दी", "भाषा", "1\ufe0f\u20e3", SCOTLAND]),  # marks, keycap, tags
        ("(www.acme.com) mail ada@acme.co.uk", ["(", "www.acme.com", ")", "mail", "ada@acme.co.uk"]),
        ("", []),
        (" \t\n\u00a0\u3000\u2003", []),
    ],
)
def test_split_words(text: str, expected: list[str]):
    words = split_words(text)
    assert [w.text for w in words] == expected
    assert_offsets(text, words)


def test_split_words_offsets_point_into_the_original_string():
    text = "\tAda\u00a0\u00a0Lovelace  👩‍👩‍👧\u3000Paris."
    words = split_words(text)
    assert [(w.start, w.end) for w in words] == [(1, 4), (6, 14), (16, 21), (22, 27), (27, 28)]
    assert_offsets(text, words)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.text(alphabet=" \t\n\u00a0\u3000\u200d\ufe0f\u0301\u0600.'-@#:/a1é東🇫👩🏽", max_size=40))
def test_split_words_properties(text: str):
    words = split_words(text)
    covered = [False] * len(text)
    previous_end = 0
    for word in words:
        assert word.text and word.start < word.end
        assert text[word.start : word.end] == word.text
        assert not any(c.isspace() for c in word.text)
        assert word.start >= previous_end  # in order, no overlap
        previous_end = word.end
        for i in range(word.start, word.end):
            covered[i] = True
    assert all(covered[i] for i, c in enumerate(text) if not c.isspace())


# -- a learner whose predictions are known ------------------------------------------------------
LEXICON = {"Ada": "person", "Lovelace": "person", "Grace": "person", "Paris": "place", "Oslo": "place"}
BOOST = math.log(8.0)  # the chosen label scores log 8, the other two 0: p = 8 / (8 + 1 + 1) = 0.8
UNSURE = {"Paris", "Lovelace"}  # log 2 instead: p = 2 / (2 + 1 + 1) = 0.5


class StubPredictor(Predictor):
    """Logits from a lexicon (IO label, or B- in BIO): p = 0.8 for the lexicon's label, 0.5 for ``UNSURE`` words."""

    def __init__(self, episode: Episode) -> None:
        super().__init__(episode.label_names, episode.scheme, episode.types)
        self.calls = 0

    def logits(self, sentences):
        self.calls += 1
        out = []
        for sentence in sentences:
            rows = torch.zeros(len(sentence.tokens), len(self.label_names))
            for i, word in enumerate(sentence.tokens):
                type_ = LEXICON.get(word)
                label = next((x for x in (type_, f"B-{type_}") if x in self.label_names), "O")
                rows[i, self.label_names.index(label)] = math.log(2.0) if word in UNSURE else BOOST
            out.append(rows)
        return out


class ViterbiLikePredictor(StubPredictor):
    """Overrides ``predict`` (as StructShot's Viterbi does) and, for the test, tags everything O."""

    def predict(self, sentences):
        return [["O"] * len(row) for row in self.logits(sentences)]


class StubLearner(Learner):
    name = "stub"
    meta_trainable = False

    def __init__(self, encoder, predictor_class=StubPredictor):
        super().__init__(encoder)
        self.predictor_class = predictor_class
        self.adapted: list[Episode] = []

    def _adapt(self, support):
        self.adapted.append(support)
        return self.predictor_class(support)


SUPPORT = [
    TaggedSentence(["Ada", "Lovelace", "visited", "Paris"], ["B-person", "I-person", "O", "B-place"]),
    TaggedSentence(["Grace", "saw", "Oslo"], ["B-person", "O", "B-place"]),
]


@pytest.fixture
def stub_tagger(lookup_encoder):
    return Tagger(StubLearner(lookup_encoder), SUPPORT, scheme="io")


def test_entities_have_exact_offsets_surface_strings_and_scores(stub_tagger):
    text = "  Ada\t Lovelace\u00a0met 🇫🇷 friends in Paris."
    entities = stub_tagger.tag(text)
    assert entities == [
        Entity("person", 2, 15, "Ada\t Lovelace", pytest.approx(0.65), (0, 2)),  # mean of 0.8 and 0.5
        Entity("place", 34, 39, "Paris", pytest.approx(0.5), (6, 7)),  # the flag is 2 code points
    ]
    for entity in entities:
        assert text[entity.start : entity.end] == entity.text
        assert 0.0 <= entity.score <= 1.0


def test_the_support_set_is_adapted_once_in_the_right_scheme(stub_tagger):
    learner = stub_tagger.learner
    stub_tagger.tag(["Ada", "Oslo"])
    stub_tagger.tag("Grace")
    assert len(learner.adapted) == 1
    episode = learner.adapted[0]
    assert episode.types == ("person", "place") and episode.scheme == "io" and episode.query == ()
    assert episode.support[0].tags == ("person", "person", "O", "place")


def test_support_scheme_and_types(lookup_encoder):
    learner = StubLearner(lookup_encoder)
    assert Tagger(learner, SUPPORT).scheme == "bio"  # BIO tags say bio
    io = [TaggedSentence(s.tokens, [t.replace("B-", "I-") for t in s.tags]) for s in SUPPORT]
    assert Tagger(learner, io).scheme == "io"
    only = Tagger(learner, SUPPORT, types=["place"])
    assert only.types == ("place",) and learner.adapted[-1].support[0].tags == ("O", "O", "O", "B-place")
    assert only.tag("Ada in Paris") == [Entity("place", 7, 12, "Paris", pytest.approx(0.5), (2, 3))]
    episode = Episode(learner.adapted[0].support, [], ("person", "place"), "bio")
    assert Tagger(learner, episode).types == ("person", "place")
    with pytest.raises(ValueError, match="support Episode"):
        Tagger(learner, episode, scheme="io")
    with pytest.raises(ValueError, match="no entity"):
        Tagger(learner, [TaggedSentence(["a"], ["O"])])


def test_single_string_list_and_empty_inputs(stub_tagger):
    assert stub_tagger.tag("") == [] and stub_tagger.tag(" \t\n\u3000") == []
    assert stub_tagger.tag([]) == []
    out = stub_tagger.tag(["", "Ada", "   ", "no one"])
    assert [[e.text for e in es] for es in out] == [[], ["Ada"], [], []]
    assert stub_tagger.tag_words([[], ["Oslo"]]) == [[], [Entity("place", 0, 4, "Oslo", pytest.approx(0.8), (0, 1))]]
    with pytest.raises(TypeError, match="tag_words"):
        stub_tagger.tag([["Ada"]])


def test_batches_keep_the_input_order(lookup_encoder):
    tagger = Tagger(StubLearner(lookup_encoder), SUPPORT, scheme="io", batch_size=2)
    inputs = ["Ada", "x y z Oslo", "", "Grace a b c d e f", "Paris x", "q"]
    out = tagger.tag(inputs)
    assert [[e.text for e in es] for es in out] == [["Ada"], ["Oslo"], [], ["Grace"], ["Paris"], []]
    assert tagger.predictor.calls == 3  # 5 non-empty texts in batches of 2


def test_tag_words_offsets_are_into_the_space_joined_words(stub_tagger):
    out = stub_tagger.tag_words([["met", "Ada", "Lovelace", "."], TaggedSentence(["in", "Oslo"], ["O", "O"])])
    assert out == [[Entity("person", 4, 16, "Ada Lovelace", pytest.approx(0.65), (1, 3))],
                   [Entity("place", 3, 7, "Oslo", pytest.approx(0.8), (1, 2))]]
    with pytest.raises(ValueError, match="without whitespace"):
        stub_tagger.tag_words([["Ada Lovelace"]])


def test_an_overridden_predict_gives_the_tags_from_one_forward_pass(lookup_encoder):
    tagger = Tagger(StubLearner(lookup_encoder, ViterbiLikePredictor), SUPPORT, scheme="io")
    assert tagger.tag(["Ada met Grace"]) == [[]]  # the tags are predict's (all O), not the argmax
    assert tagger.predictor.calls == 1


@pytest.mark.parametrize(
    ("n", "progress", "shown"),
    [(PROGRESS_THRESHOLD + 1, None, True), (PROGRESS_THRESHOLD, None, False), (3, True, True),
     (PROGRESS_THRESHOLD + 1, False, False)],
)
def test_progress_bar_rule(lookup_encoder, capsys, n, progress, shown):
    tagger = Tagger(StubLearner(lookup_encoder), SUPPORT, scheme="io", batch_size=64, progress=progress)
    capsys.readouterr()
    out = tagger.tag(["Ada met Grace"] * n)
    assert len(out) == n
    err = capsys.readouterr().err
    assert ("tagging" in err) is shown
    if shown:
        assert f"{n}/{n}" in err


# -- real learners ------------------------------------------------------------------------------
def test_truncated_words_are_tagged_o_and_reported(lookup_encoder, toy_episode):
    tagger = Tagger(ProtoNet(lookup_encoder), toy_episode)
    long = "Ada met Alan in Paris and Grace saw Oslo today"  # 10 words of one subword each
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full = tagger.tag(long)
    assert not [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert [e.text for e in full] == ["Ada", "Alan", "Paris", "Grace", "Oslo"]
    lookup_encoder.max_length = 8  # [CLS] + 6 words + [SEP]: the last 4 words are cut
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = tagger.tag([long, "Ada met Alan"])
    truncation = [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert len(truncation) == 1, [str(w.message) for w in caught]
    assert "1 of 2 texts" in str(truncation[0].message) and "4 words" in str(truncation[0].message)
    assert truncation[0].filename == __file__  # points at the caller
    assert [e.text for e in out[0]] == ["Ada", "Alan", "Paris"]
    assert [e.text for e in out[1]] == ["Ada", "Alan"]


def test_protonet_on_a_tiny_bert_end_to_end(tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder)
    tagger = Tagger(learner, toy_episode)
    raw = ["Ada  met\tAlan in Paris.", "", "Acme\u00a0works with Hooli today 🇫🇷", "Grace visited Oslo and Rome"]
    out = tagger.tag(raw)
    assert len(out) == len(raw) and out[1] == []
    predicted = tagger.predictor.predict([[w.text for w in split_words(t)] for t in raw if t])
    expected_spans = [spans(tags, toy_episode.scheme) for tags in predicted]
    for text, entities, want in zip([t for t in raw if t], [o for t, o in zip(raw, out) if t], expected_spans):
        words = split_words(text)
        assert [(e.type, e.words) for e in entities] == [(s.type, (s.start, s.end)) for s in want]
        for entity in entities:
            assert entity.text == text[entity.start : entity.end]
            assert (entity.start, entity.end) == (words[entity.words[0]].start, words[entity.words[1] - 1].end)
            assert entity.type in toy_episode.types and 0.0 <= entity.score <= 1.0
    assert sum(map(len, out)) > 0  # a random tiny BERT still finds something here


def test_exported_at_the_top():
    for name in ("Tagger", "Entity", "Word", "split_words"):
        assert name in metalearn_nlp.__all__
        assert getattr(metalearn_nlp, name) is getattr(metalearn_nlp.tagger, name)


@pytest.mark.skipif(importlib.util.find_spec("metalearn_nlp.saving") is None,
                    reason="metalearn_nlp.saving not written yet")
def test_from_pretrained_round_trip(tmp_path, tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder)
    learner.save_pretrained(tmp_path / "protonet")
    raw = ["Ada met Alan in Paris", "Acme and Hooli saw Oslo today", ""]
    tagger = Tagger.from_pretrained(tmp_path / "protonet", toy_episode, batch_size=2)
    assert tagger.learner is not learner and tagger.batch_size == 2
    assert tagger.tag(raw) == Tagger(learner, toy_episode).tag(raw)


def test_structshot_entities_follow_its_viterbi_tags(lookup_encoder, toy_episode, toy_corpus):
    from metalearn_nlp.learners import StructShot

    tagger = Tagger(StructShot(lookup_encoder, train_sentences=toy_corpus), toy_episode)
    raw = ["Ada Lovelace met Alan in Paris .", "Acme and Hooli saw Oslo today"]
    viterbi = tagger.predictor.predict([t.split() for t in raw])
    for text, entities, tags in zip(raw, tagger.tag(raw), viterbi):
        assert [(e.type, e.words) for e in entities] == [(s.type, (s.start, s.end)) for s in spans(tags, "io")]
        assert all(e.text == text[e.start : e.end] and 0.0 <= e.score <= 1.0 for e in entities)
    assert sum(map(len, tagger.tag(raw))) >= 4
