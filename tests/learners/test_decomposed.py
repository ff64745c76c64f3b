"""The decomposed learner: type-agnostic detection labels, span prototypes, end-to-end tags, separate scores."""

from __future__ import annotations

import pytest
import torch

from metalearn_nlp.data import Episode, FewNERDSampler, Span, TaggedSentence, spans
from metalearn_nlp.evaluation import evaluate
from metalearn_nlp.learners import Decomposed, decomposition_scores, get_learner
from metalearn_nlp.learners.decomposed import detection_labels, span_vectors
from metalearn_nlp.training import meta_train


def _sentences():
    return [TaggedSentence(["met", "Ada", "Lovelace", "in", "Paris"], ["O", "person", "person", "O", "place"]),
            TaggedSentence(["Grace", "saw", "Rome"], ["person", "O", "place"])]


def test_detection_labels_are_type_agnostic_bio_per_word(lookup_encoder):
    sentences = _sentences()
    words = lookup_encoder.encode(sentences)
    gold = [spans(s.tags, "io") for s in sentences]
    assert detection_labels(words, gold).tolist() == [0, 1, 2, 0, 1, 1, 0, 1]


def test_span_vectors_are_means_of_their_words(lookup_encoder):
    words = lookup_encoder.encode(_sentences())
    z, kept = span_vectors(words, [(0, Span("person", 1, 3)), (1, Span("place", 2, 3)), (1, Span("x", 5, 7))])
    assert kept == [0, 1]  # the range with no word (past the sentence) is dropped
    assert torch.allclose(z[0], words.vectors[1:3].mean(0)) and torch.allclose(z[1], words.vectors[7])


def _entity_detector(learner):
    """Hand-set detector for the lookup encoder: a word far from the origin (an entity) is B, else O."""
    with torch.no_grad():
        learner.detector.weight.zero_()
        learner.detector.bias.copy_(torch.tensor([0.0, -5.0, -100.0]))
        learner.detector.weight[1, :3] = 1.0  # entity centres are 10 * e_k, O at the origin


def test_with_a_perfect_detector_the_typing_step_tags_io_episodes_exactly(lookup_encoder, toy_corpus):
    learner = Decomposed(lookup_encoder)
    _entity_detector(learner)
    episodes = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=3).episodes(4)
    report = evaluate(learner, episodes, progress=False)
    assert report.f1 == 1.0  # IO merges the one-word spans of a two-word name back into one
    scores = decomposition_scores(learner, episodes)
    assert scores["typing"]["accuracy"] == 1.0 and scores["typing"]["mentions"] == report.overall.gold
    # a detector that only says B splits every multi-word mention: exactly those are missed
    gold = [sp for e in episodes for s in e.query for sp in spans(s.tags, "io")]
    single = sum(sp.end - sp.start == 1 for sp in gold)
    found = sum(sp.end - sp.start for sp in gold)
    assert scores["detection"]["gold"] == len(gold) and scores["detection"]["found"] == found
    assert scores["detection"]["recall"] == pytest.approx(single / len(gold))
    assert scores["detection"]["precision"] == pytest.approx(single / found)


def test_logits_agree_with_the_decoded_tags(lookup_encoder, toy_episode):
    learner = Decomposed(lookup_encoder)
    _entity_detector(learner)
    predictor = learner.adapt(toy_episode)
    tags = predictor.predict(toy_episode.query)
    argmax = [[predictor.label_names[i] for i in row.argmax(-1).tolist()] for row in predictor.logits(toy_episode.query)]
    assert argmax == tags


def test_meta_training_learns_detection_and_typing(lookup_encoder, toy_corpus):
    learner = get_learner("decomposed", lookup_encoder)
    sampler = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0)
    test = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=9).episodes(5)
    before = decomposition_scores(learner, test)
    assert before["detection"]["found"] == 0  # the untrained detector says O everywhere
    meta_train(learner, sampler, steps=60, lr=1e-3, head_lr=5e-2, warmup=0, progress=False)
    after = decomposition_scores(learner, test)
    assert after["detection"]["recall"] > 0.4 and after["typing"]["accuracy"] > 0.9


def test_typing_loss_reaches_the_encoder_and_excludes_absent_types(tiny_encoder, toy_episode):
    learner = Decomposed(tiny_encoder, shape_dim=2)
    with torch.no_grad():  # a detector that is not zero, so gradients flow through it into its inputs
        learner.detector.weight.normal_(generator=torch.Generator().manual_seed(0))
    loss = learner.loss(toy_episode)
    loss.backward()
    assert learner.detector.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_encoder.parameters())
    assert learner.shapes.embedding.weight.grad.abs().sum() > 0
    # a query mention of a type the support lacks is left out of the typing loss, not NaN
    s = TaggedSentence(["Ada", "in", "Paris"], ["B-person", "O", "B-place"])
    episode = Episode([s.for_episode(["person"], "io")], [s.for_episode(["person", "place"], "io")],
                      ["person", "place"], "io")
    assert torch.isfinite(learner.loss(episode))


def test_adapting_the_detector_trains_a_copy(lookup_encoder, toy_episode):
    learner = Decomposed(lookup_encoder, detect_steps=20, detect_lr=0.1)
    before = learner.detector.weight.clone()
    predictor = learner.adapt(toy_episode)
    assert predictor.losses[-1] < predictor.losses[0]
    assert torch.equal(learner.detector.weight, before)
    assert predictor.detector.weight.abs().sum() > 0


def test_bad_options(lookup_encoder):
    with pytest.raises(ValueError, match="typing_weight"):
        Decomposed(lookup_encoder, typing_weight=-1)


def test_o_bias_makes_the_detector_propose_fewer_mentions(lookup_encoder, toy_corpus):
    learner = Decomposed(lookup_encoder)
    _entity_detector(learner)
    episode = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=3).episodes(1)[0]
    before = learner.detector.bias.clone()
    counts = []
    for bias in (-2.0, 0.0, 2.0, 1e4):
        with learner.adaptation_settings(o_bias=bias):
            found = learner.adapt(episode).detect(episode.query)
        counts.append(sum(len(spans) for spans in found))
    assert counts[0] >= counts[1] >= counts[2] > counts[3] == 0
    assert torch.equal(learner.detector.bias, before) and learner.o_bias == 0.0
    with pytest.raises(ValueError, match="not adaptation-only"), learner.adaptation_settings(shape_dim=4):
        pass
