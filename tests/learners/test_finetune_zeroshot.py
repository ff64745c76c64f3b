"""The fine-tuning baseline lowers the support loss; zero-shot prototypes come from names."""

from __future__ import annotations

import pytest
import torch

from metalearn_nlp.data import Episode, FewNERDSampler, TaggedSentence
from metalearn_nlp.learners import (
    DESCRIPTIONS,
    FineTune,
    ZeroShot,
    describe,
    embed_descriptions,
    train_linear_head,
)


def test_linear_head_lowers_the_loss_from_uniform():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    head, losses = train_linear_head(x, y, 3, steps=50, lr=0.05)
    assert losses[0] == pytest.approx(torch.log(torch.tensor(3.0)).item(), abs=1e-5)  # zero init: uniform
    assert losses[-1] < 0.5 * losses[0]
    assert not any(p.requires_grad for p in head.parameters())


def test_linear_probe_lowers_the_support_loss_and_fits_the_support(lookup_encoder, toy_episode):
    predictor = FineTune(lookup_encoder, steps=60, head_lr=0.05).adapt(toy_episode)
    assert predictor.losses[-1] < 0.2 * predictor.losses[0]
    assert predictor.predict(toy_episode.support) == [list(s.tags) for s in toy_episode.support]


def test_finetuning_top_layers_lowers_the_support_loss(tiny_encoder, toy_episode):
    predictor = FineTune(tiny_encoder, train_layers="all", steps=15, lr=1e-3, head_lr=1e-2).adapt(toy_episode)
    assert predictor.losses[-1] < predictor.losses[0]
    assert predictor.encoder is not tiny_encoder


def test_finetune_rejects_bad_settings(tiny_encoder):
    with pytest.raises(ValueError, match="2 layers"):
        FineTune(tiny_encoder, train_layers=5)
    with pytest.raises(ValueError, match="train_layers"):
        FineTune(tiny_encoder, train_layers=-1)


def test_descriptions():
    assert describe("geo-loc") == "location" == DESCRIPTIONS["geo-loc"]
    assert describe("person-actor") == "person actor"
    assert describe("geo-loc", {"geo-loc": "city or country"}) == "city or country"
    for type_ in ("person", "geo-loc", "other", "company", "facility", "product", "musicartist", "sportsteam",
                  "movie", "tvshow", "PER", "LOC", "ORG", "MISC", "corporation", "creative-work", "group",
                  "location"):
        assert type_ in DESCRIPTIONS


def test_zero_shot_prototypes_come_from_names(lookup_encoder):
    learner = ZeroShot(lookup_encoder, o_threshold=20.0, descriptions={"org": "org"}, normalize=False)
    episode = Episode([], [], ["org", "place"], "io")
    predictor = learner.adapt(episode)
    with torch.no_grad():
        expected = embed_descriptions(lookup_encoder, ["org", "place"])
        direct = lookup_encoder.encode([["org"], ["place"]]).vectors
    assert torch.allclose(predictor.type_vectors, expected) and torch.allclose(expected, direct)
    # the lookup world puts each type's words near the vector of its name
    query = [TaggedSentence(["Acme", "works", "in", "Rome", "."], ["org", "O", "O", "place", "O"])]
    assert predictor.predict(query) == [list(query[0].tags)]
    scores = predictor.logits(query)[0]
    assert torch.allclose(scores[:, 0], torch.full((5,), -20.0))  # O: minus the threshold


def test_zero_shot_calibration_learns_a_threshold_that_separates_o(lookup_encoder, toy_corpus, toy_episode):
    learner = ZeroShot(lookup_encoder)
    with pytest.raises(RuntimeError, match="calibrate"):
        learner.adapt(toy_episode)
    theta = learner.calibrate(toy_corpus)
    words = torch.cat([lookup_encoder.encode([s.tokens for s in toy_corpus]).vectors]).detach()
    assert torch.allclose(learner.center, words.mean(0), atol=1e-5)  # the corpus mean word vector
    # after centring and normalising, a word's squared distance to a type name is 2 - 2 cos, in [0, 4];
    # type words point the way of their name, O words do not
    assert 0.0 < theta < 4.0 and learner.o_threshold == pytest.approx(theta, rel=1e-5)
    assert learner.calibration_f1 == 1.0
    predictor = learner.adapt(toy_episode)
    assert predictor.predict(toy_episode.query) == [list(s.tags) for s in toy_episode.query]


def test_zero_shot_bio_output_is_converted_from_io(lookup_encoder, toy_corpus):
    episode = FewNERDSampler(toy_corpus, ways=3, shots=1, scheme="bio", seed=3).sample()
    predictor = ZeroShot(lookup_encoder, train_sentences=toy_corpus).adapt(episode)
    assert predictor.predict(episode.query) == [list(s.tags) for s in episode.query]


def test_zero_shot_loss_trains_the_threshold_and_the_encoder(tiny_encoder, toy_episode):
    learner = ZeroShot(tiny_encoder, o_threshold=1.0)
    learner.loss(toy_episode).backward()
    assert learner.log_threshold.grad is not None and learner.log_threshold.grad != 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_encoder.parameters())
