"""Tests for metalearn_nlp.data.perturb: entity swaps, case changes, typos."""

from __future__ import annotations

import random

import pytest

from metalearn_nlp.data import Episode, TaggedSentence, spans
from metalearn_nlp.data.perturb import (
    add_typos,
    change_case,
    mention_pool,
    perturb_episode,
    replace_mentions,
)

S1 = TaggedSentence(
    ["Ada", "Lovelace", "met", "Babbage", "in", "London", "."],
    ["B-person", "I-person", "O", "B-person", "O", "B-loc", "O"],
)
S2 = TaggedSentence(
    ["Grace", "Hopper", "lived", "in", "New", "York", "City"],
    ["B-person", "I-person", "O", "O", "B-loc", "I-loc", "I-loc"],
)
S3 = TaggedSentence(["Turing", "visited", "London"], ["B-person", "O", "B-loc"])


def types_of(sentence: TaggedSentence, scheme: str = "bio") -> list[str]:
    return [s.type for s in spans(sentence.tags, scheme)]


def test_mention_pool_sorted_deduplicated_and_order_free():
    pool = mention_pool([S1, S2, S3])
    assert pool == {
        "loc": [("London",), ("New", "York", "City")],
        "person": [("Ada", "Lovelace"), ("Babbage",), ("Grace", "Hopper"), ("Turing",)],
    }
    assert mention_pool([S3, S2, S1]) == pool
    assert list(pool) == ["loc", "person"]


def test_mention_pool_io_scheme_and_bad_tag():
    io = TaggedSentence(["Ada", "Lovelace", "spoke"], ["person", "person", "O"])
    assert mention_pool([io], "io") == {"person": [("Ada", "Lovelace")]}
    with pytest.raises(ValueError, match=r"sentences\[1\]: tag 0"):
        mention_pool([S1, io], "bio")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        mention_pool([S1], "bilou")
    with pytest.raises(TypeError, match=r"sentences\[0\] must be a TaggedSentence"):
        mention_pool([("Ada",)])


@pytest.mark.parametrize("seed", range(20))
def test_replace_mentions_keeps_alignment_and_types(seed):
    pool = mention_pool([S1, S2, S3])
    out = replace_mentions(S1, pool, random.Random(seed))
    assert len(out.tokens) == len(out.tags)
    assert types_of(out) == types_of(S1)
    # Every mention changed (probability 1, each type has other mentions) and comes from the pool.
    for old, new in zip(spans(S1.tags), spans(out.tags)):
        new_tokens = out.tokens[new.start : new.end]
        assert new_tokens in pool[new.type]
        assert new_tokens != S1.tokens[old.start : old.end]
    # Context words are untouched and in order.
    assert [t for t, g in zip(out.tokens, out.tags) if g == "O"] == ["met", "in", "."]


def test_replace_mentions_rebuilds_tags_for_new_lengths():
    pool = {"loc": [("New", "York", "City")], "person": [("X",)]}
    out = replace_mentions(S3, pool, random.Random(0))
    assert out.tokens == ("X", "visited", "New", "York", "City")
    assert out.tags == ("B-person", "O", "B-loc", "I-loc", "I-loc")
    bioes = TaggedSentence(["Turing", "visited", "London"], ["S-person", "O", "S-loc"])
    out = replace_mentions(bioes, pool, random.Random(0), scheme="bioes")
    assert out.tags == ("S-person", "O", "B-loc", "I-loc", "E-loc")


def test_replace_mentions_deterministic_and_probability():
    pool = mention_pool([S1, S2, S3])
    a = [replace_mentions(S2, pool, random.Random(7), probability=0.5) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert replace_mentions(S1, pool, random.Random(1), probability=0.0) == S1
    # With p = 0.5 over many seeds, some but not all mentions change.
    changed = sum(replace_mentions(S3, pool, random.Random(s), probability=0.5) != S3 for s in range(50))
    assert 5 < changed < 50


def test_replace_mentions_keeps_mention_without_alternatives():
    out = replace_mentions(S3, {"person": [("Turing",)]}, random.Random(0))
    assert out == S3


def test_replace_mentions_bad_arguments():
    pool = mention_pool([S1])
    with pytest.raises(ValueError, match="probability must be a number in"):
        replace_mentions(S1, pool, random.Random(0), probability=1.5)
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        replace_mentions(S1, pool, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty mention"):
        replace_mentions(S3, {"person": [()]}, random.Random(0))
    with pytest.raises(ValueError, match="unknown tag scheme"):
        replace_mentions(S1, pool, random.Random(0), scheme="BIO")


def test_change_case_modes():
    rng = random.Random(0)
    assert change_case(S2, rng, mode="lower").tokens[:2] == ("grace", "hopper")
    assert change_case(S2, rng, mode="upper").tokens[4:] == ("NEW", "YORK", "CITY")
    assert change_case(TaggedSentence(["mcDONALD"], ["O"]), rng, mode="title").tokens == ("Mcdonald",)
    for mode in ("lower", "upper", "title", "random"):
        out = change_case(S1, random.Random(3), mode=mode)
        assert out.tags == S1.tags
        assert [t.lower() for t in out.tokens] == [t.lower() for t in S1.tokens]
    long = TaggedSentence(["word"] * 60, ["O"] * 60)
    random_case = change_case(long, random.Random(5), mode="random")
    assert set(random_case.tokens) == {"word", "WORD", "Word"}
    assert random_case == change_case(long, random.Random(5), mode="random")
    with pytest.raises(ValueError, match="unknown case mode 'shout'"):
        change_case(S1, rng, mode="shout")


def test_add_typos_edits_words_keeps_tags():
    out = add_typos(S1, random.Random(0), rate=1.0)
    assert out.tags == S1.tags
    assert len(out.tokens) == len(S1.tokens)
    for old, new in zip(S1.tokens, out.tokens):
        if old == ".":
            assert new == "."  # no letters: left alone
        else:
            assert new != old and new
            assert abs(len(new) - len(old)) <= 1
    assert add_typos(S1, random.Random(0), rate=0.0) == S1
    assert add_typos(S2, random.Random(9), rate=0.3) == add_typos(S2, random.Random(9), rate=0.3)


def test_add_typos_rate_is_per_word_and_never_empties():
    words = TaggedSentence(["a", "ab", "hello"] * 100, ["O"] * 300)
    out = add_typos(words, random.Random(1), rate=0.3)
    changed = sum(a != b for a, b in zip(words.tokens, out.tokens))
    assert 60 < changed < 120
    assert all(out.tokens)
    with pytest.raises(ValueError, match="rate must be a number in"):
        add_typos(S1, random.Random(0), rate=-0.1)


def test_perturb_episode_query_only_by_default():
    q = TaggedSentence(["Ada", "spoke"], ["person", "O"])
    ep = Episode(support=(S3.for_episode(["person", "loc"], "io"),), query=(q,), types=("person", "loc"), scheme="io")
    out = perturb_episode(ep, lambda s: change_case(s, random.Random(0), mode="upper"))
    assert out.query[0].tokens == ("ADA", "SPOKE")
    assert out.support == ep.support
    both = perturb_episode(ep, lambda s: change_case(s, random.Random(0), mode="upper"), support=True)
    assert both.support[0].tokens == ("TURING", "VISITED", "LONDON")
    with pytest.raises(ValueError, match="nothing to perturb"):
        perturb_episode(ep, lambda s: s, query=False)
    with pytest.raises(TypeError, match="transform"):
        perturb_episode(ep, lambda s: s.tokens)  # type: ignore[arg-type, return-value]
