"""Tests for metalearn_nlp.frozen_cache.CachedEncoder."""

from __future__ import annotations

import pytest
import torch

from metalearn_nlp.evaluation import evaluate
from metalearn_nlp.frozen_cache import CachedEncoder
from metalearn_nlp.learners import ProtoNet


@pytest.fixture
def frozen(tiny_encoder):
    tiny_encoder.freeze("all")
    tiny_encoder.eval()
    return tiny_encoder


def test_same_vectors_as_the_wrapped_encoder(frozen, toy_corpus):
    cached = CachedEncoder(frozen)
    sentences = toy_corpus[:6]
    expected = frozen.encode(sentences).vectors
    first = cached.encode(sentences).vectors
    assert cached.misses == 6 and cached.hits == 0 and len(cached) == 6
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    # A different batch (other padding width, other order) reads the cache and still matches.
    again = cached.encode(list(reversed(sentences[:3])) + toy_corpus[6:8]).vectors
    reference = frozen.encode(list(reversed(sentences[:3])) + toy_corpus[6:8]).vectors
    torch.testing.assert_close(again, reference, atol=1e-5, rtol=1e-5)
    assert cached.hits == 3 and cached.misses == 8


def test_duplicate_sentences_in_one_batch_computed_once(frozen, toy_corpus):
    cached = CachedEncoder(frozen)
    cached.encode([toy_corpus[0], toy_corpus[0], toy_corpus[1]])
    assert cached.misses == 2 and cached.hits == 1
    cached.clear()
    assert len(cached) == 0 and cached.misses == 0


def test_learner_scores_unchanged_by_caching(frozen, toy_episode):
    plain = evaluate(ProtoNet(frozen), [toy_episode, toy_episode], progress=False)
    cached = CachedEncoder(frozen)
    report = evaluate(ProtoNet(cached), [toy_episode, toy_episode], progress=False)
    assert report.episode_counts == plain.episode_counts
    assert cached.hits > 0  # the second episode read the first one's sentences


def test_refuses_trainable_encoder_and_clone(tiny_encoder, frozen):
    tiny_encoder.freeze("none")
    with pytest.raises(ValueError, match="needs a frozen encoder"):
        CachedEncoder(tiny_encoder)
    tiny_encoder.freeze("all")
    with pytest.raises(TypeError, match="cannot be cloned"):
        CachedEncoder(tiny_encoder).clone()


def test_projection_starts_as_identity_and_is_the_only_trainable_part(frozen, toy_corpus, toy_episode):
    from metalearn_nlp.training import meta_train

    cached = CachedEncoder(frozen, project=True)
    torch.testing.assert_close(cached.encode(toy_corpus[:3]).vectors, frozen.encode(toy_corpus[:3]).vectors,
                               atol=1e-5, rtol=1e-5)
    learner = ProtoNet(cached)
    trainable = [n for n, p in learner.named_parameters() if p.requires_grad]
    assert trainable == ["encoder.projection.weight"]
    before = cached.projection.weight.detach().clone()
    misses = cached.misses
    meta_train(learner, [toy_episode], steps=3, lr=1e-2, progress=False)
    assert not torch.equal(before, cached.projection.weight.detach())
    distinct = {s.tokens for s in toy_episode.support + toy_episode.query}
    assert cached.misses - misses <= len(distinct)  # each episode sentence embedded at most once
    assert cached.hits >= 2 * len(toy_episode.support + toy_episode.query)  # steps 2 and 3 read the cache


def test_states_cached_in_training_mode_carry_no_dropout(frozen, toy_corpus):
    for module in frozen.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5  # heavy dropout: any leak into the cache would show
    expected = frozen.encode(toy_corpus[:4]).vectors  # eval mode: no dropout
    cached = CachedEncoder(frozen)
    cached.train()
    first = cached.encode(toy_corpus[:4]).vectors
    assert frozen.model.training, "the wrapped model's mode is restored after computing the states"
    cached.eval()
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.encode(toy_corpus[:4]).vectors, expected, atol=1e-5, rtol=1e-5)
