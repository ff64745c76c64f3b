"""Tag schemes, spans, conversions, evaluation and subword alignment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.metrics.sequence_labeling import get_entities

from metalearn_nlp.data import (
    Span,
    align_labels,
    convert_tags,
    entity_scores,
    entity_types,
    parse_tag,
    repair_bio,
    spans,
    spans_to_tags,
)

TYPES = st.sampled_from(["person", "geo-loc", "org"])
BIO_TAG = st.one_of(st.just("O"), st.builds("{}-{}".format, st.sampled_from("BI"), TYPES))


@st.composite
def span_lists(draw: st.DrawFn) -> tuple[list[Span], int]:
    """Non-overlapping spans (possibly adjacent, possibly of the same type) and a length."""
    length = draw(st.integers(0, 25))
    result, position = [], 0
    while position < length:
        position += draw(st.integers(0, 2))
        width = draw(st.integers(1, 3))
        if position + width > length:
            break
        result.append(Span(draw(TYPES), position, position + width))
        position += width
    return result, length


def merge_adjacent(entity_spans: list[Span]) -> list[Span]:
    """What IO keeps of a list of spans: touching spans of one type become one."""
    merged: list[Span] = []
    for span in entity_spans:
        if merged and merged[-1].type == span.type and merged[-1].end == span.start:
            merged[-1] = Span(span.type, merged[-1].start, span.end)
        else:
            merged.append(span)
    return merged


# --- parse_tag -------------------------------------------------------------


def test_parse_tag_splits_on_the_first_hyphen_so_types_may_contain_hyphens():
    assert parse_tag("B-geo-loc") == ("B", "geo-loc")
    assert parse_tag("O") == ("O", "")
    assert parse_tag("S-x", "bioes") == ("S", "x")


def test_parse_tag_io_accepts_bare_types_and_drops_an_i_prefix():
    assert parse_tag("person-actor", "io") == ("I", "person-actor")
    assert parse_tag("I-person", "io") == ("I", "person")


@pytest.mark.parametrize(
    ("tag", "scheme", "expected"),
    [
        ("person", "bio", "expected a BIO tag"),
        ("X-PER", "bio", "expected a BIO tag"),
        ("E-PER", "bio", "expected a BIO tag"),
        ("B-", "bio", "expected a BIO tag"),
        ("B-PER", "io", "IO has no B- prefix"),
        ("", "io", "expected an IO tag"),
        ("o", "bioes", "expected a BIOES tag"),
    ],
)
def test_parse_tag_rejects_tags_outside_the_scheme(tag: str, scheme: str, expected: str):
    with pytest.raises(ValueError, match=expected):
        parse_tag(tag, scheme)


def test_unknown_scheme_is_an_error():
    with pytest.raises(ValueError, match="unknown tag scheme 'iob'"):
        spans(["O"], "iob")


# --- spans ----------------------------------------------------------------


def test_bio_spans_end_exclusive():
    tags = ["B-person", "I-person", "O", "B-geo-loc", "B-geo-loc", "I-org"]
    assert spans(tags) == [
        Span("person", 0, 2),
        Span("geo-loc", 3, 4),
        Span("geo-loc", 4, 5),
        Span("org", 5, 6),
    ]


def test_bio_orphan_i_starts_an_entity_like_seqeval():
    tags = ["I-person", "I-person", "O", "I-org", "B-person", "I-org"]
    assert spans(tags) == [Span("person", 0, 2), Span("org", 3, 4), Span("person", 4, 5), Span("org", 5, 6)]


def test_bioes_spans():
    tags = ["S-a", "B-a", "I-a", "E-a", "B-b", "E-b", "E-a", "O"]
    assert spans(tags, "bioes") == [Span("a", 0, 1), Span("a", 1, 4), Span("b", 4, 6), Span("a", 6, 7)]


def test_io_spans_merge_adjacent_entities_of_one_type():
    assert spans(["person", "person", "org", "O", "person"], "io") == [
        Span("person", 0, 2),
        Span("org", 2, 3),
        Span("person", 4, 5),
    ]


def test_spans_report_the_position_of_a_bad_tag():
    with pytest.raises(ValueError, match=r"tag 2: expected a BIO tag .* got 'PER'"):
        spans(["O", "B-PER", "PER"])


@given(st.lists(BIO_TAG, max_size=30))
def test_bio_spans_equal_seqeval(tags: list[str]):
    assert [(s.type, s.start, s.end - 1) for s in spans(tags)] == get_entities(tags)


# --- conversions ----------------------------------------------------------


def test_bio_to_io_merges_adjacent_same_type_entities_and_io_to_bio_cannot_split_them():
    two_people = ["B-person", "B-person", "I-person", "O"]
    io = convert_tags(two_people, "bio", "io")
    assert io == ["person", "person", "person", "O"]
    assert len(spans(two_people)) == 2 and len(spans(io, "io")) == 1
    assert convert_tags(io, "io", "bio") == ["B-person", "I-person", "I-person", "O"]


def test_adjacent_entities_of_different_types_survive_io():
    bio = ["B-person", "B-org", "O"]
    assert convert_tags(convert_tags(bio, "bio", "io"), "io", "bio") == bio


def test_bio_bioes_conversions():
    bio = ["B-a", "I-a", "I-a", "B-a", "O", "B-b", "I-b"]
    bioes = ["B-a", "I-a", "E-a", "S-a", "O", "B-b", "E-b"]
    assert convert_tags(bio, "bio", "bioes") == bioes
    assert convert_tags(bioes, "bioes", "bio") == bio


def test_spans_to_tags_rejects_overlaps_and_out_of_range_spans():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([Span("a", 0, 2), Span("b", 1, 3)], 4)
    with pytest.raises(ValueError, match="outside a sentence of 2 words"):
        spans_to_tags([Span("a", 1, 3)], 2)


@given(span_lists(), st.sampled_from(["bio", "bioes"]))
def test_spans_round_trip_through_bio_and_bioes(case: tuple[list[Span], int], scheme: str):
    entity_spans, length = case
    assert spans(spans_to_tags(entity_spans, length, scheme), scheme) == entity_spans


@given(span_lists())
def test_io_round_trip_keeps_spans_up_to_merging_adjacent_same_type(case: tuple[list[Span], int]):
    entity_spans, length = case
    io = spans_to_tags(entity_spans, length, "io")
    assert spans(io, "io") == merge_adjacent(entity_spans)
    assert spans(convert_tags(io, "io", "bio")) == merge_adjacent(entity_spans)


@given(st.lists(BIO_TAG, max_size=30))
def test_bio_bioes_bio_round_trip_equals_repair(tags: list[str]):
    assert convert_tags(convert_tags(tags, "bio", "bioes"), "bioes", "bio") == repair_bio(tags)[0]


# --- repair and types -----------------------------------------------------


def test_repair_bio_rewrites_and_counts_i_tags_that_start_entities():
    assert repair_bio(["I-a", "I-a", "O", "I-a", "B-b", "I-a", "I-b"]) == (
        ["B-a", "I-a", "O", "B-a", "B-b", "B-a", "B-b"],
        4,
    )
    assert repair_bio(["B-a", "I-a"]) == (["B-a", "I-a"], 0)


@given(st.lists(BIO_TAG, max_size=30))
def test_repair_bio_keeps_spans_and_is_idempotent(tags: list[str]):
    repaired, count = repair_bio(tags)
    assert spans(repaired) == spans(tags)
    assert repair_bio(repaired) == (repaired, 0)
    assert count == sum(old != new for old, new in zip(tags, repaired))


def test_entity_types_sorted_unique():
    assert entity_types(["B-person", "O", "I-org", "I-person"]) == ["org", "person"]
    assert entity_types(["person-actor", "O"], "io") == ["person-actor"]


# --- evaluation -----------------------------------------------------------


def test_entity_scores_use_the_scheme_they_are_given():
    gold_bio = [["B-person", "B-person", "O"]]  # two people side by side
    predicted_io = [["person", "person", "O"]]
    # Scored in the scheme the episode was sampled with (IO), the prediction is right:
    gold_io = [convert_tags(gold_bio[0], "bio", "io")]
    assert entity_scores(gold_io, predicted_io, scheme="io").f1 == 1.0
    # Against the BIO gold it would be a miss: two gold entities, one predicted.
    mixed = entity_scores(gold_bio, [convert_tags(predicted_io[0], "io", "bio")], scheme="bio")
    assert (mixed.gold, mixed.predicted, mixed.correct) == (2, 1, 0)


def test_entity_scores_reject_misaligned_input():
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]], scheme="bio")
    with pytest.raises(ValueError, match="1 gold sentences but 0 predicted"):
        entity_scores([["O"]], [], scheme="bio")


@given(st.lists(st.tuples(BIO_TAG, BIO_TAG), min_size=1, max_size=20))
def test_entity_f1_in_bio_equals_seqeval(pairs: list[tuple[str, str]]):
    gold, predicted = [[g for g, _ in pairs]], [[p for _, p in pairs]]
    assert entity_scores(gold, predicted, scheme="bio").f1 == pytest.approx(seqeval_f1(gold, predicted, zero_division=0))


# --- alignment ------------------------------------------------------------


def test_align_labels_first_subword_only():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None, None]
    assert align_labels(word_ids, [3, 0, 1]) == [-100, 3, -100, 0, 1, -100, -100, -100, -100]


def test_align_labels_all_subwords_and_custom_ignore_index():
    assert align_labels([None, 0, 0, 1, None], [3, 0], ignore_index=-1, label_all_subwords=True) == [-1, 3, 3, 0, -1]
