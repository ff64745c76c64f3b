"""Episode samplers: Few-NERD's N-way K~2K-shot, cross-dataset (Hou et al.), classic N-way K-shot."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from metalearn_nlp.data import (
    ClassSampler,
    CrossDatasetSampler,
    Episode,
    EpisodeSamplingError,
    FewNERDSampler,
    LabelledText,
    TaggedSentence,
    spans,
)


def mentions(examples, scheme: str) -> Counter:
    return Counter(span.type for s in examples for span in spans(s.tags, scheme))


def corpus(counts: dict[str, int], per_sentence: int = 1) -> list[TaggedSentence]:
    """Sentences ``w O w O ...`` holding ``per_sentence`` mentions of one type each."""
    result = []
    for type_, n in counts.items():
        for i in range(n):
            tags = [tag for _ in range(per_sentence) for tag in (f"B-{type_}", "O")]
            result.append(TaggedSentence([f"{type_}{i}"] * len(tags), tags))
    return result


MIXED = [
    TaggedSentence(["Ada", "met", "Bob", "in", "Rome"], ["B-person", "O", "B-person", "O", "B-loc"]),
    TaggedSentence(["IBM", "and", "Ada"], ["B-org", "O", "B-person"]),
    *corpus({"person": 6, "loc": 6, "org": 6, "misc": 3}),
]


# --- FewNERDSampler ---------------------------------------------------------


def check_few_nerd_episode(episode: Episode, sampler: FewNERDSampler) -> None:
    """The invariants every Few-NERD episode must satisfy."""
    k, q, scheme = sampler.shots, sampler.query_shots, sampler.scheme
    assert len(episode.types) == sampler.ways == len(set(episode.types))
    support, query = mentions(episode.support, scheme), mentions(episode.query, scheme)
    for type_ in episode.types:
        assert k <= support[type_] <= 2 * k, (type_, support)
        assert q <= query[type_] <= 2 * q, (type_, query)
    # no leaked labels: only the episode's types appear, in its scheme
    assert set(support) | set(query) <= set(episode.types)
    labels = set(episode.label_names)
    assert all(tag in labels for s in episode.support + episode.query for tag in s.tags)
    # support and query are disjoint sets of corpus sentences
    assert not set(episode.support_ids) & set(episode.query_ids)
    assert len(set(episode.support_ids)) == len(episode.support_ids)
    assert len(set(episode.query_ids)) == len(episode.query_ids)
    # each sentence is the corpus sentence, relabelled, and each one counts
    for part, ids in ((episode.support, episode.support_ids), (episode.query, episode.query_ids)):
        for example, index in zip(part, ids):
            assert example == sampler.examples[index].for_episode(episode.types, scheme)
            assert spans(example.tags, scheme)


def test_few_nerd_episode_invariants_on_a_small_corpus():
    sampler = FewNERDSampler(MIXED, ways=3, shots=1, seed=0)
    for episode in sampler.episodes(50):
        check_few_nerd_episode(episode, sampler)


def test_other_types_in_a_chosen_sentence_are_relabelled_o():
    sampler = FewNERDSampler(MIXED, ways=1, shots=1, types=["loc"], seed=0)
    episode = next(e for e in sampler.episodes(30) if 0 in e.support_ids + e.query_ids)
    first = (episode.support + episode.query)[(episode.support_ids + episode.query_ids).index(0)]
    assert first.tags == ("O", "O", "O", "O", "loc")


def test_exclude_mode_skips_sentences_with_other_types_like_the_reference():
    sampler = FewNERDSampler(MIXED, ways=1, shots=1, types=["loc"], other_types="exclude", seed=0)
    for episode in sampler.episodes(30):
        assert 0 not in episode.support_ids + episode.query_ids


def test_exclude_mode_redraws_types_that_no_usable_sentence_mentions():
    # c only occurs next to a: when {b, c} is drawn no sentence is usable, so other types are drawn
    sentences = corpus({"a": 4, "b": 4}) + [TaggedSentence(["x", "y"], ["B-a", "B-c"])] * 4
    sampler = FewNERDSampler(sentences, ways=2, shots=1, other_types="exclude", seed=0)
    episodes = sampler.episodes(60)  # {b, c} is a third of the draws: it comes up
    assert {frozenset(e.types) for e in episodes} == {frozenset("ab"), frozenset("ac")}
    for episode in episodes:
        check_few_nerd_episode(episode, sampler)


def test_exclude_mode_gives_up_when_no_type_set_has_usable_sentences():
    # each type has two usable mentions, but any two types share a single sentence
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    sentences = [TaggedSentence(["x", "y"], [f"B-{s}", f"B-{t}"]) for s, t in pairs]
    FewNERDSampler(sentences, ways=2, shots=1, seed=0).sample()  # relabel mode: fine
    stuck = FewNERDSampler(sentences, ways=2, shots=1, other_types="exclude", seed=0)
    with pytest.raises(EpisodeSamplingError, match=r"drew 100 type sets .* other_types='relabel'"):
        stuck.sample()


def test_exclude_mode_precheck_counts_only_the_sentences_it_can_use():
    # every mention of c sits in a sentence with three types: a 2-way episode can never use it
    sentences = corpus({"a": 4, "b": 4}) + [TaggedSentence(["x", "y", "z"], ["B-a", "B-b", "B-c"])] * 4
    FewNERDSampler(sentences, ways=2, shots=1)  # relabel mode uses them
    expected = r"types \['c'\] have fewer than K \+ Q = 2 mentions in the sentences other_types='exclude' can use"
    with pytest.raises(EpisodeSamplingError, match=expected) as caught:
        FewNERDSampler(sentences, ways=2, shots=1, other_types="exclude")
    assert "mentions in usable sentences per type: a 4, b 4, c 0" in str(caught.value)
    # mentions next to a type left out with types= are not usable either
    beside_d = corpus({"a": 4}) + [TaggedSentence(["x", "y"], ["B-b", "B-d"])] * 4
    FewNERDSampler(beside_d, ways=1, shots=1, types=["a", "b"])
    with pytest.raises(EpisodeSamplingError, match=r"types \['b'\] have fewer than K \+ Q"):
        FewNERDSampler(beside_d, ways=1, shots=1, types=["a", "b"], other_types="exclude")


def test_same_seed_same_episodes_other_seed_other_episodes():
    first = FewNERDSampler(MIXED, ways=3, shots=1, seed=5).episodes(20)
    assert FewNERDSampler(MIXED, ways=3, shots=1, seed=5).episodes(20) == first
    assert FewNERDSampler(MIXED, ways=3, shots=1, seed=6).episodes(20) != first


def test_iteration_and_settings():
    sampler = FewNERDSampler(MIXED, ways=2, shots=1, query_shots=2, seed=1)
    stream = iter(sampler)
    assert isinstance(next(stream), Episode)
    assert sampler.settings == {
        "sampler": "FewNERDSampler",
        "scheme": "io",
        "seed": 1,
        "types": ["loc", "misc", "org", "person"],
        "examples": len(MIXED),
        "data_sha256": sampler.data_sha256,
        "ways": 2,
        "shots": "1~2",
        "query_shots": "2~4",
        "other_types": "relabel",
    }
    assert len(sampler.data_sha256) == 64


def test_more_ways_than_types_lists_every_type_and_its_count():
    with pytest.raises(EpisodeSamplingError) as caught:
        FewNERDSampler(MIXED, ways=5, shots=1)
    message = str(caught.value)
    assert "cannot sample 5-way 1~2-shot episodes" in message and "only 4 types" in message
    assert "mentions per type: person 9, loc 7, org 7, misc 3" in message


def test_more_shots_than_mentions_lists_every_type_and_its_count():
    with pytest.raises(EpisodeSamplingError, match=r"(?s)types \['misc'\] have fewer than K \+ Q = 4 mentions") as caught:
        FewNERDSampler(MIXED, ways=2, shots=2)
    assert "person 9, loc 7, org 7, misc 3" in str(caught.value)


def test_types_argument_must_name_existing_types():
    with pytest.raises(EpisodeSamplingError, match=r"(?s)types \['PER'\] do not occur .* person 9"):
        FewNERDSampler(MIXED, ways=1, shots=1, types=["PER"])


def test_a_stuck_greedy_search_raises_instead_of_looping_forever():
    # every sentence has 3 mentions: with K = 1 each would exceed 2K = 2
    stuck = corpus({"a": 4, "b": 4}, per_sentence=3)
    sampler = FewNERDSampler(stuck, ways=2, shots=1)
    with pytest.raises(EpisodeSamplingError, match=r"gave up after 100 attempts .* types \['a', 'b'\]"):
        sampler.sample()


def test_bad_arguments():
    with pytest.raises(ValueError, match="shots must be a positive integer, got 0"):
        FewNERDSampler(MIXED, ways=1, shots=0)
    with pytest.raises(ValueError, match="other_types must be"):
        FewNERDSampler(MIXED, ways=1, shots=1, other_types="drop")
    with pytest.raises(ValueError, match="example 0: tag 0: expected a BIO tag .* got 'person'.*samplers read BIO"):
        FewNERDSampler([TaggedSentence(["Ada"], ["person"])], ways=1, shots=1)
    with pytest.raises(TypeError, match="example 0 is a LabelledText; scheme 'io' samples TaggedSentences"):
        FewNERDSampler([LabelledText("hi", "a")], ways=1, shots=1)


TYPES = "abcdef"


@st.composite
def tagged_corpora(draw: st.DrawFn) -> list[TaggedSentence]:
    """Random BIO sentences over up to six types, adjacent same-type entities included."""
    sentences = []
    for _ in range(draw(st.integers(1, 40))):
        tags = []
        for _ in range(draw(st.integers(1, 6))):
            if draw(st.booleans()):
                tags.append("O")
            else:
                type_ = draw(st.sampled_from(TYPES))
                tags += [f"B-{type_}"] + [f"I-{type_}"] * draw(st.integers(0, 2))
        sentences.append(TaggedSentence(["w"] * len(tags), tags))
    return sentences


@settings(max_examples=150, deadline=None)
@given(
    tagged_corpora(),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from(["io", "bio", "bioes"]),
    st.integers(0, 2**32),
)
def test_few_nerd_invariants_hold_on_random_corpora(sentences, ways, shots, query_shots, scheme, seed):
    try:
        sampler = FewNERDSampler(sentences, ways, shots, query_shots=query_shots, scheme=scheme, seed=seed)
    except EpisodeSamplingError as error:
        counts = mentions([s.for_episode(TYPES, scheme) for s in sentences], scheme)
        assert len(counts) < ways or min(counts.values()) < shots + query_shots
        assert all(f"{t} {n}" in str(error) for t, n in counts.items())
        event("impossible request")
        return
    for _ in range(3):
        try:
            episode = sampler.sample()
        except EpisodeSamplingError as error:
            assert "gave up after 100 attempts" in str(error)
            event("greedy search stuck")
            continue
        event("episode checked")
        check_few_nerd_episode(episode, sampler)


@settings(max_examples=80, deadline=None)
@given(tagged_corpora(), st.integers(1, 3), st.integers(1, 2), st.sampled_from(["io", "bio"]), st.integers(0, 2**32))
def test_exclude_mode_invariants_hold_on_random_corpora(sentences, ways, shots, scheme, seed):
    try:
        sampler = FewNERDSampler(sentences, ways, shots, scheme=scheme, seed=seed, other_types="exclude")
    except EpisodeSamplingError as error:
        event("impossible request")
        assert "only" in str(error) or "other_types='exclude' can use" in str(error)
        return
    for _ in range(3):
        try:
            episode = sampler.sample()
        except EpisodeSamplingError as error:
            assert "gave up after 100 attempts" in str(error) or "drew 100 type sets" in str(error)
            event("stuck")
            continue
        event("episode checked")
        check_few_nerd_episode(episode, sampler)
        for index in episode.support_ids + episode.query_ids:  # no sentence mentions another type
            assert set(sampler.examples[index].mentions(scheme)) <= set(episode.types)


# --- CrossDatasetSampler ----------------------------------------------------


def check_cross_dataset_episode(episode: Episode, sampler: CrossDatasetSampler) -> None:
    k, scheme = sampler.shots, sampler.scheme
    assert list(episode.types) == sampler.types
    counts = mentions(episode.support, scheme)
    assert all(counts[t] >= k for t in episode.types)
    # minimal: without any one support sentence some type drops below K
    for example in episode.support:
        without = counts - mentions([example], scheme)
        assert any(without[t] < k for t in episode.types)
    assert len(episode.query) == sampler.query_size
    assert not set(episode.support_ids) & set(episode.query_ids)
    assert len(set(episode.query_ids)) == len(episode.query_ids)
    for example, index in zip(episode.support + episode.query, episode.support_ids + episode.query_ids):
        assert example == sampler.examples[index].for_episode(episode.types, scheme)


def test_cross_dataset_episodes_cover_every_type_minimally():
    sampler = CrossDatasetSampler(MIXED, shots=2, query_size=5, seed=0)
    assert sampler.ways == 4 and sampler.settings["shots"] == ">=2"
    for episode in sampler.episodes(30):
        check_cross_dataset_episode(episode, sampler)


def test_cross_dataset_errors_list_counts():
    with pytest.raises(EpisodeSamplingError, match=r"(?s)types \['misc'\] have fewer than 4 mentions.*misc 3"):
        CrossDatasetSampler(MIXED, shots=4)
    with pytest.raises(EpisodeSamplingError, match="fewer than query_size=100"):
        CrossDatasetSampler(MIXED, shots=1, query_size=100).sample()


@settings(max_examples=100, deadline=None)
@given(tagged_corpora(), st.integers(1, 3), st.integers(1, 5), st.sampled_from(["io", "bio"]), st.integers(0, 2**32))
def test_cross_dataset_invariants_hold_on_random_corpora(sentences, shots, query_size, scheme, seed):
    counts = mentions([s.for_episode(TYPES, scheme) for s in sentences], scheme)
    assume(counts and min(counts.values()) >= shots)
    sampler = CrossDatasetSampler(sentences, shots, query_size=query_size, scheme=scheme, seed=seed)
    try:
        episode = sampler.sample()
    except EpisodeSamplingError:
        assume(False)  # too few sentences left for the query set
    event("episode checked")
    check_cross_dataset_episode(episode, sampler)


# --- ClassSampler -----------------------------------------------------------


INTENTS = [LabelledText(f"{label} {i}", label) for label in ("alarm", "timer", "weather", "music") for i in range(5)]


def test_class_episodes_have_exactly_k_and_q_per_class():
    sampler = ClassSampler(INTENTS, ways=3, shots=2, query_shots=3, seed=0)
    assert sampler.settings["shots"] == "2" and sampler.settings["query_shots"] == "3"
    for episode in sampler.episodes(30):
        assert episode.scheme == "class" and episode.label_names == list(episode.types)
        assert Counter(e.label for e in episode.support) == dict.fromkeys(episode.types, 2)
        assert Counter(e.label for e in episode.query) == dict.fromkeys(episode.types, 3)
        assert not set(episode.support_ids) & set(episode.query_ids)


def test_class_sampler_impossible_requests_list_counts():
    with pytest.raises(EpisodeSamplingError, match=r"(?s)fewer than K \+ Q = 6 examples.*examples per type: alarm 5"):
        ClassSampler(INTENTS, ways=2, shots=3)
    with pytest.raises(EpisodeSamplingError, match="only 4 types are available"):
        ClassSampler(INTENTS, ways=5, shots=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=40), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 99))
def test_class_sampler_invariants(labels, ways, shots, query_shots, seed):
    examples = [LabelledText(str(i), label) for i, label in enumerate(labels)]
    counts = Counter(labels)
    try:
        sampler = ClassSampler(examples, ways, shots, query_shots, seed)
    except EpisodeSamplingError:
        assert len(counts) < ways or min(counts.values()) < shots + query_shots
        return
    episode = sampler.sample()
    assert Counter(e.label for e in episode.support) == dict.fromkeys(episode.types, shots)
    assert Counter(e.label for e in episode.query) == dict.fromkeys(episode.types, query_shots)
    assert not set(episode.support_ids) & set(episode.query_ids)
