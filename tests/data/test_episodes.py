"""Examples, episodes, type splits and the WNUT-16 split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalearn_nlp.data import (
    CLASS_SCHEME,
    WNUT16_SPLIT,
    Episode,
    FewNERDSampler,
    LabelledText,
    TaggedSentence,
    hold_out,
    load_corpus,
    spans,
    split_types,
)


def sentence(*pairs: str) -> TaggedSentence:
    """``sentence("Ada/B-person", "wrote/O")``."""
    tokens, tags = zip(*(pair.rsplit("/", 1) for pair in pairs))
    return TaggedSentence(tokens, tags)


# --- examples ---------------------------------------------------------------


def test_tagged_sentence_validates_and_stores_tuples():
    s = TaggedSentence(["a", "b"], ["O", "B-x"])
    assert s.tokens == ("a", "b") and s.tags == ("O", "B-x")
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        TaggedSentence(["a", "b"], ["O"])
    with pytest.raises(ValueError, match="at least one token"):
        TaggedSentence([], [])


def test_mentions_are_counted_in_the_episode_scheme():
    s = sentence("Simon/B-person", "Garfunkel/B-person", "and/O", "Rome/B-loc")
    assert s.mentions("bio") == {"person": 2, "loc": 1}
    assert s.mentions("io") == {"person": 1, "loc": 1}  # adjacent people merge in IO


def test_for_episode_relabels_other_types_o_and_writes_the_scheme():
    s = sentence("Ada/B-person", "Lovelace/I-person", "in/O", "London/B-loc")
    assert s.for_episode(["loc"], "io").tags == ("O", "O", "O", "loc")
    assert s.for_episode(["person"], "bioes").tags == ("B-person", "E-person", "O", "O")


def test_labelled_text_is_one_mention_of_its_label():
    text = LabelledText("wake me at 7", "alarm")
    assert text.mentions(CLASS_SCHEME) == {"alarm": 1}
    assert text.for_episode(["alarm", "timer"]) is text
    with pytest.raises(ValueError, match="label 'alarm' is not one of"):
        text.for_episode(["timer"])


# --- episodes ---------------------------------------------------------------


def io_episode() -> Episode:
    return Episode(
        support=[sentence("Ada/person", "in/O", "Rome/loc")],
        query=[sentence("Bob/person", "left/O")],
        types=["loc", "person"],
        scheme="io",
        support_ids=[4],
        query_ids=[9],
    )


def test_label_names_per_scheme():
    assert io_episode().label_names == ["O", "loc", "person"]
    bio = Episode([sentence("Ada/B-p")], [sentence("Bob/I-p")], ["p", "q"], "bio")
    assert bio.label_names == ["O", "B-p", "I-p", "B-q", "I-q"]
    bioes = Episode([sentence("Ada/S-p")], [sentence("Bob/O")], ["p"], "bioes")
    assert bioes.label_names == ["O", "B-p", "I-p", "E-p", "S-p"]
    texts = Episode([LabelledText("hi", "greet")], [LabelledText("bye", "leave")], ["greet", "leave"], CLASS_SCHEME)
    assert texts.label_names == ["greet", "leave"] and texts.encode_label(texts.query[0]) == 1


def test_encode_and_decode_tags():
    episode = io_episode()
    assert episode.ways == 2 and episode.label2id == {"O": 0, "loc": 1, "person": 2}
    assert episode.encode_tags(episode.support[0]) == [2, 0, 1]
    assert episode.decode_tags([2, 0, 1]) == ["person", "O", "loc"]
    with pytest.raises(ValueError, match=r"tag 'B-person' is not a label of this io episode"):
        episode.encode_tags(sentence("Ada/B-person"))


def test_episode_round_trips_through_dict():
    for episode in (io_episode(), Episode([LabelledText("hi", "a")], [LabelledText("yo", "a")], ["a"], CLASS_SCHEME)):
        assert Episode.from_dict(episode.to_dict()) == episode


def test_episode_rejects_labels_it_does_not_have():
    with pytest.raises(ValueError, match=r"query\[0\] has labels \['org'\] outside this episode's"):
        Episode([sentence("Ada/person")], [sentence("IBM/org")], ["person"], "io")
    with pytest.raises(ValueError, match="'class' episodes hold LabelledTexts"):
        Episode([sentence("Ada/person")], [], ["person"], CLASS_SCHEME)
    with pytest.raises(ValueError, match="distinct"):
        Episode([], [], ["a", "a"], "io")
    with pytest.raises(ValueError, match="2 support_ids for 1 support examples"):
        Episode([sentence("Ada/person")], [], ["person"], "io", support_ids=[1, 2])


# --- type-disjoint splits ---------------------------------------------------


def test_split_types_rule_test_then_dev_then_train():
    data = [
        sentence("Ada/B-person", "Paris/B-loc"),  # person (train) + loc (test) -> test
        sentence("Ada/B-person", "IBM/B-org"),  # person (train) + org (dev) -> dev
        sentence("Ada/B-person", "sang/O"),  # train
        sentence("nothing/O"),  # unused
        sentence("Big/B-misc"),  # a type in no group -> unused
    ]
    groups = split_types(data, ["person"], ["org"], ["loc"])
    assert {name: len(items) for name, items in groups.items()} == {"train": 1, "dev": 1, "test": 1, "unused": 2}
    assert groups["test"][0].tags == ("O", "B-loc")
    assert groups["dev"][0].tags == ("O", "B-org")
    assert groups["unused"] == data[3:]


def test_split_types_errors():
    data = [sentence("Ada/B-person"), sentence("Paris/B-loc")]
    with pytest.raises(ValueError, match=r"types \['person'\] are listed in more than one group"):
        split_types(data, ["person"], [], ["person", "loc"])
    with pytest.raises(ValueError, match=r"types \['Person'\] do not occur in the sentences; mentions per type: loc 1, person 1"):
        split_types(data, ["Person"], [], ["loc"])


TAG = st.one_of(st.just("O"), st.builds("{}-{}".format, st.sampled_from("BI"), st.sampled_from("abcde")))
SENTENCES = st.lists(st.lists(TAG, min_size=1, max_size=8).map(lambda tags: TaggedSentence(["w"] * len(tags), tags)), max_size=30)


@given(SENTENCES)
def test_split_types_is_a_partition_without_leaks(sentences: list[TaggedSentence]):
    groups_of_types = {"train": {"a", "b"}, "dev": {"c"}, "test": {"d"}}
    present = {t for s in sentences for t in (span.type for span in spans(s.tags))}
    listed = {name: sorted(types & present) for name, types in groups_of_types.items()}
    groups = split_types(sentences, listed["train"], listed["dev"], listed["test"])
    assert sum(len(items) for items in groups.values()) == len(sentences)
    for name, items in groups.items():
        if name == "unused":
            continue
        for s in items:
            types = {span.type for span in spans(s.tags)}
            assert types and types <= groups_of_types[name]
    test_types = set(listed["test"])
    for s in groups["train"] + groups["dev"]:
        assert s.tokens and not any(tag[2:] in test_types for tag in s.tags)


def test_hold_out_is_a_seeded_partition():
    kept, held = hold_out(list(range(20)), 0.25, seed=3)
    assert len(held) == 5 and sorted(kept + held) == list(range(20))
    assert hold_out(list(range(20)), 0.25, seed=3) == (kept, held)
    with pytest.raises(ValueError, match="between 0 and 1"):
        hold_out([1, 2], 1.0)


# --- WNUT-16 ----------------------------------------------------------------


def test_wnut16_split_covers_its_ten_types_disjointly_with_five_test_types():
    types = load_corpus("wnut16").types
    listed = [t for group in WNUT16_SPLIT.values() for t in group]
    assert sorted(listed) == types and len(set(listed)) == len(listed) == 10
    assert len(WNUT16_SPLIT["test"]) == 5 and len(WNUT16_SPLIT["train"]) == 5


@pytest.mark.parametrize("shots", [1, 5])
def test_wnut16_split_allows_five_way_test_and_train_episodes(shots: int):
    groups = split_types(load_corpus("wnut16").sentences("train"), **{f"{k}_types": v for k, v in WNUT16_SPLIT.items()})
    for group in ("train", "test"):
        sampler = FewNERDSampler(groups[group], ways=5, shots=shots, seed=0)
        episode = sampler.sample()
        assert sorted(episode.types) == sorted(WNUT16_SPLIT[group])
