"""Viterbi against brute force; abstract transitions counted by hand; StructShot decoding."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from metalearn_nlp.data import Episode, TaggedSentence
from metalearn_nlp.learners import (
    EpisodeMismatchError,
    NNShot,
    StructShot,
    estimate_transitions,
    transition_scores,
    viterbi_decode,
)


def _brute_force(emissions, transitions, start, end, length):
    best, best_path = -math.inf, None
    c = emissions.shape[1]
    for path in itertools.product(range(c), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        score += sum(transitions[a, b] for a, b in zip(path, path[1:]))
        if score > best:
            best, best_path = float(score), list(path)
    return best, best_path


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_equals_brute_force_on_random_cases(seed):
    generator = torch.Generator().manual_seed(seed)
    b, t, c = 4, 5, 2 + seed % 3
    emissions = torch.randn(b, t, c, generator=generator, dtype=torch.float64)
    transitions = torch.randn(c, c, generator=generator, dtype=torch.float64)
    start, end = torch.randn(c, generator=generator, dtype=torch.float64), torch.randn(c, generator=generator,
                                                                                        dtype=torch.float64)
    lengths = torch.tensor([5, 1, 3, 4])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    paths, scores = viterbi_decode(emissions, transitions, start, end, mask)
    for i, n in enumerate(lengths.tolist()):
        best, path = _brute_force(emissions[i], transitions, start, end, n)
        assert paths[i, :n].tolist() == path
        assert scores[i].item() == pytest.approx(best, abs=1e-9)
        assert paths[i, n:].eq(0).all()


def test_viterbi_respects_forbidden_labels_and_transitions():
    emissions = torch.tensor([[[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]]])
    emissions[0, 1, 1] = float("-inf")  # label 1 forbidden at position 1
    transitions = torch.zeros(3, 3)
    transitions[1, 2] = float("-inf")  # 1 -> 2 forbidden
    paths, _ = viterbi_decode(emissions, transitions)
    assert paths.tolist() == [[1, 0]]


def test_viterbi_rejects_bad_shapes_and_masks():
    with pytest.raises(ValueError, match="transitions"):
        viterbi_decode(torch.zeros(1, 2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="prefix"):
        viterbi_decode(torch.zeros(1, 3, 2), torch.zeros(2, 2), mask=torch.tensor([[True, False, True]]))


CORPUS = [
    TaggedSentence(["Ada", "Lovelace", "met", "Paris"], ["B-per", "I-per", "O", "B-loc"]),
    TaggedSentence(["in", "Rome", "Ada"], ["O", "B-loc", "B-per"]),
    TaggedSentence(["Ada", "Grace", "."], ["B-per", "B-per", "O"]),
    TaggedSentence(["the", "end"], ["O", "O"]),
]


def test_io_transitions_counted_by_hand():
    t = estimate_transitions(CORPUS, "io")
    # IO: Ada Grace (B-per B-per) merges into one run: per per
    # starts: I, O, I, O -> s_o = s_i = 1/2
    # from O: O->I (met Paris), O->I (in Rome), O->O (the end) -> o_o = 1/3, o_i = 2/3
    # from I: per->per (Ada Lovelace), per->O (Lovelace met), loc->per (Rome Ada), per->per (Ada Grace), per->O
    #   -> i_o = 2/5, i_i = 2/5, x_y = 1/5
    assert t.few_nerd() == pytest.approx((1 / 2, 1 / 2, 1 / 3, 2 / 3, 2 / 5, 2 / 5, 1 / 5))
    assert t.counts["I"] == {("O", ""): 2, ("I", "same"): 2, ("I", "other"): 1}


def test_bio_transitions_counted_by_hand():
    t = estimate_transitions(CORPUS, "bio")
    assert t.start == pytest.approx({"B": 0.5, "O": 0.5})
    assert t.transitions["O"] == pytest.approx({("B", ""): 2 / 3, ("O", ""): 1 / 3})
    # from B: B-per->I-per, B-loc->B-per, B-per->B-per, B-per->O
    assert t.transitions["B"] == pytest.approx(
        {("I", "same"): 1 / 4, ("B", "other"): 1 / 4, ("B", "same"): 1 / 4, ("O", ""): 1 / 4}
    )
    assert t.transitions["I"] == pytest.approx({("O", ""): 1.0})
    with pytest.raises(ValueError, match="Few-NERD"):
        t.few_nerd()


def _few_nerd_projection(n, abstract, tau):
    """Few-NERD's construction (util/viterbi.py), re-derived: tags START, O, I_1..I_n."""
    s_o, s_i, o_o, o_i, i_o, i_i, x_y = abstract
    k = n + 2
    trans = torch.eye(k, dtype=torch.float64) * i_i + (torch.ones(k, k) - torch.eye(k)) * x_y / (n - 1)
    trans[0, 1], trans[0, 2:] = s_o, s_i / n
    trans[1, 1], trans[1, 2:] = o_o, o_i / n
    trans[2:, 1] = i_o
    trans[:, 0] = 0.0
    powered = trans**tau
    trans = powered / powered.sum(1, keepdim=True)
    return torch.where(trans > 0, trans, torch.tensor(1e-6, dtype=torch.float64)).log()


@pytest.mark.parametrize("tau", [1.0, 0.05])
def test_transition_scores_reproduce_few_nerds_projection(tau):
    t = estimate_transitions(CORPUS, "io")
    start, trans = transition_scores(t, ["O", "a", "b", "c"], tau=tau)
    reference = _few_nerd_projection(3, t.few_nerd(), tau)
    assert torch.allclose(start.double(), reference[0, 1:], atol=1e-6)
    assert torch.allclose(trans.double(), reference[1:, 1:], atol=1e-6)
    assert torch.allclose(trans.exp().sum(1), torch.ones(4), atol=1e-5)


def test_transition_scores_with_one_way_do_not_divide_by_zero():
    t = estimate_transitions(CORPUS, "io")
    start, trans = transition_scores(t, ["O", "a"], tau=1.0)
    s_o, s_i, o_o, o_i, i_o, i_i, _ = t.few_nerd()
    expected = torch.tensor([[o_o, o_i], [i_o / (i_o + i_i), i_i / (i_o + i_i)]]).log()
    assert torch.isfinite(trans).all() and torch.allclose(trans, expected.float(), atol=1e-6)


def test_structshot_with_flat_transitions_equals_nnshot(lookup_encoder, toy_episode, toy_corpus):
    nnshot = NNShot(lookup_encoder).adapt(toy_episode).predict(toy_episode.query)
    flat = StructShot(lookup_encoder, train_sentences=toy_corpus, tau=1e-9).adapt(toy_episode)
    assert flat.predict(toy_episode.query) == nnshot


def test_structshot_transitions_change_the_path(lookup_encoder):
    # emissions prefer 'place' on the second word; in a corpus where an entity is only ever
    # followed by the same type, Viterbi keeps 'person'
    corpus = [TaggedSentence(["met", "Ada", "Grace"], ["O", "B-person", "I-person"])] * 5 + [
        TaggedSentence(["in", "Rome"], ["O", "B-place"])
    ]
    learner = StructShot(lookup_encoder, train_sentences=corpus, tau=1.0, temperature=50.0)
    episode = Episode([TaggedSentence(["Ada", "Rome", "met"], ["person", "place", "O"])], [],
                      ["person", "place"], "io")
    predictor = learner.adapt(episode)
    query = [["met", "Ada", "Rome"]]
    argmax = predictor.base.predict(query)
    assert argmax == [["O", "person", "place"]]
    assert predictor.predict(query) == [["O", "person", "person"]]  # only 'I-same' was seen after I


def test_structshot_rejects_an_episode_in_another_scheme(lookup_encoder, toy_corpus, toy_episode):
    learner = StructShot(lookup_encoder, train_sentences=toy_corpus, scheme="bio")
    with pytest.raises(EpisodeMismatchError, match="counted in 'bio'.*episode is 'io'"):
        learner.adapt(toy_episode)
    with pytest.raises(ValueError, match="transitions"):
        StructShot(lookup_encoder)


def test_structshot_decodes_bio_episodes(lookup_encoder, toy_corpus):
    from metalearn_nlp.data import FewNERDSampler

    episode = FewNERDSampler(toy_corpus, ways=3, shots=1, scheme="bio", seed=2).sample()
    predictor = StructShot(lookup_encoder, train_sentences=toy_corpus, scheme="bio", tau=1.0).adapt(episode)
    assert predictor.predict(episode.query) == [list(s.tags) for s in episode.query]
