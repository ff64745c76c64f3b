"""ProtoNet and NNShot: prototypes are means, the linear-layer identity, clusters, nearest neighbours."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn_nlp.data import Episode, TaggedSentence, entity_scores
from metalearn_nlp.learners import (
    NNShot,
    ProtoNet,
    class_prototypes,
    nearest_neighbour_scores,
    prototype_scores,
    prototypical_loss,
    sibling_backoff,
    squared_distances,
)
from metalearn_nlp.learners.metric import embed_descriptions


def _clusters(n_classes=4, per_class=30, dim=16, spread=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = 6.0 * torch.randn(n_classes, dim, generator=generator)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    points = centres[labels] + spread * torch.randn(len(labels), dim, generator=generator)
    return points, labels


def test_class_prototypes_are_class_means():
    x, y = _clusters(seed=1)
    protos, counts = class_prototypes(x, y, 5)  # class 4 has no member
    for c in range(4):
        assert torch.allclose(protos[c], x[y == c].mean(0), atol=1e-6)
    assert counts.tolist() == [30, 30, 30, 30, 0] and protos[4].abs().sum() == 0


def test_prototype_scores_are_a_linear_layer_up_to_a_row_constant():
    x, y = _clusters(seed=2)
    protos, _ = class_prototypes(x, y, 4)
    x = x.double()
    protos = protos.double()
    scores = prototype_scores(x, protos)
    linear = x @ (2 * protos).t() - (protos * protos).sum(1)  # W = 2c, b = -||c||^2
    difference = scores - linear
    assert torch.allclose(difference, difference[:, :1].expand_as(difference), atol=1e-8)
    assert torch.allclose(difference[:, 0], -(x * x).sum(1), atol=1e-8)  # the constant is -||x||^2
    assert torch.equal(scores.argmax(1), linear.argmax(1))


def test_prototypes_and_nearest_neighbours_classify_clusters():
    x, y = _clusters(seed=3)
    support, query = torch.arange(len(y)) % 3 == 0, torch.arange(len(y)) % 3 != 0
    protos, _ = class_prototypes(x[support], y[support], 4)
    assert torch.equal(prototype_scores(x[query], protos).argmax(1), y[query])
    scores = nearest_neighbour_scores(x[query], x[support], y[support], 4)
    assert torch.equal(scores.argmax(1), y[query])


def test_nnshot_scores_are_the_nearest_support_word_per_class():
    generator = torch.Generator().manual_seed(4)
    query, support = torch.randn(20, 6, generator=generator), torch.randn(15, 6, generator=generator)
    labels = torch.randint(0, 3, (15,), generator=generator)
    labels[:3] = torch.tensor([0, 1, 2])
    scores = nearest_neighbour_scores(query, support, labels, 4)
    distances = torch.cdist(query.double(), support.double()) ** 2
    for c in range(3):
        assert torch.allclose(scores[:, c].double(), -distances[:, labels == c].min(1).values, atol=1e-4)
    assert torch.isinf(scores[:, 3]).all()  # no support word of class 3
    nearest = labels[distances.argmin(1)]
    assert torch.equal(scores.argmax(1), nearest)


def test_squared_distances_match_cdist():
    generator = torch.Generator().manual_seed(5)
    a, b = torch.randn(7, 5, generator=generator), torch.randn(4, 5, generator=generator)
    assert torch.allclose(squared_distances(a, b), torch.cdist(a, b) ** 2, atol=1e-5)
    assert (squared_distances(a, a).diagonal() >= 0).all()


def test_prototypical_loss_matches_cross_entropy_and_skips_absent_classes():
    x, y = _clusters(n_classes=3, per_class=5, dim=8, spread=3.0, seed=6)
    protos = x[[0, 5, 10]] + 0.1
    expected = F.cross_entropy(prototype_scores(x, protos), y)
    assert torch.allclose(prototypical_loss(x, y, protos), expected, atol=1e-4)
    present = torch.tensor([True, False, True])
    keep = y != 1
    scores = prototype_scores(x[keep], protos[present])
    expected = F.cross_entropy(scores, torch.where(y[keep] == 2, 1, 0))
    loss = prototypical_loss(x, y, protos, present)
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-4)


def _word_vectors(encoder, sentences, episode):
    encoder.eval()
    with torch.no_grad():
        return encoder.encode(sentences, episode)


def test_protonet_adapt_uses_support_means_and_predicts_clusters(lookup_encoder, toy_episode):
    learner = ProtoNet(lookup_encoder)
    predictor = learner.adapt(toy_episode)
    words = _word_vectors(lookup_encoder, toy_episode.support, toy_episode)
    for c in range(len(toy_episode.label_names)):
        assert torch.allclose(predictor.prototypes[c], words.vectors[words.labels == c].mean(0), atol=1e-5)
    tags = predictor.predict(toy_episode.query)
    assert tags == [list(s.tags) for s in toy_episode.query]


def test_nnshot_predicts_the_nearest_support_words_label(lookup_encoder, toy_episode):
    predictor = NNShot(lookup_encoder).adapt(toy_episode)
    support = _word_vectors(lookup_encoder, toy_episode.support, toy_episode)
    query = _word_vectors(lookup_encoder, toy_episode.query, toy_episode)
    nearest = support.labels[torch.cdist(query.vectors, support.vectors).argmin(1)]
    predicted = torch.cat([row.argmax(1) for row in predictor.logits(toy_episode.query)])
    assert torch.equal(predicted, nearest)
    assert predictor.predict(toy_episode.query) == [list(s.tags) for s in toy_episode.query]


def test_a_label_without_support_words_borrows_its_types_scores(lookup_encoder):
    # BIO with one-word support entities only: I-person and I-place have no support word
    support = [TaggedSentence(["Ada", "met", "Rome"], ["B-person", "O", "B-place"])]
    query = [TaggedSentence(["Grace", "Linus", "in", "Paris"], ["B-person", "I-person", "O", "B-place"])]
    episode = Episode(support, query, ["person", "place"], "bio")
    assert sibling_backoff(episode.label_names, "bio", torch.tensor([True, True, False, True, False])).tolist() \
        == [0, 1, 1, 3, 3]
    learner = ProtoNet(lookup_encoder)
    predictor = learner.adapt(episode)
    assert torch.equal(predictor.prototypes[2], predictor.prototypes[1])
    logits = predictor.logits(query)[0]
    assert torch.equal(logits[:, 2], logits[:, 1]) and torch.isfinite(logits).all()
    assert predictor.predict(query) == [["B-person", "B-person", "O", "B-place"]]  # ties go to B-
    nn_logits = NNShot(lookup_encoder).adapt(episode).logits(query)[0]
    assert torch.equal(nn_logits[:, 4], nn_logits[:, 3])
    # in the loss the I-person query word is left out, and nothing is NaN
    assert torch.isfinite(learner.loss(episode)) and torch.isfinite(NNShot(lookup_encoder).loss(episode))


def test_name_weight_blends_support_means_with_name_vectors(lookup_encoder):
    support = [TaggedSentence(["Ada", "met", "Rome"], ["B-person", "O", "B-place"])]
    episode = Episode(support, [], ["person", "place"], "bio")
    lam = 2.0
    predictor = ProtoNet(lookup_encoder, name_weight=lam).adapt(episode)
    with torch.no_grad():
        lookup_encoder.eval()
        names = embed_descriptions(lookup_encoder, ["person", "place"])
        words = lookup_encoder.encode(support, episode).vectors
    ada, o, rome = words
    expected = torch.stack([o, (ada + lam * names[0]) / (1 + lam), names[0], (rome + lam * names[1]) / (1 + lam),
                            names[1]])
    assert torch.allclose(predictor.prototypes, expected, atol=1e-5)
    assert predictor.present.all()  # every entity label has a name


@pytest.mark.parametrize("cls", [ProtoNet, NNShot])
def test_loss_has_gradients_into_the_encoder(cls, tiny_encoder, toy_episode):
    learner = cls(tiny_encoder)
    learner.train()
    loss = learner.loss(toy_episode)
    loss.backward()
    grads = [p.grad for p in tiny_encoder.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_protonet_on_the_tiny_bert_gives_valid_tags(tiny_encoder, toy_episode):
    predictor = ProtoNet(tiny_encoder).adapt(toy_episode)
    tags = predictor.predict(toy_episode.query)
    assert [len(t) for t in tags] == [len(s.tokens) for s in toy_episode.query]
    assert all(tag in toy_episode.label_names for row in tags for tag in row)
    entity_scores([s.tags for s in toy_episode.query], tags, scheme="io")


def test_o_bias_adds_to_the_o_score_only_and_is_recorded_only_when_set(lookup_encoder, toy_episode):
    learner = ProtoNet(lookup_encoder)
    plain = learner.adapt(toy_episode).logits(toy_episode.query)
    assert "o_bias" not in learner.config()  # old configs (and cache keys) unchanged
    with learner.adaptation_settings(o_bias=2.5):
        shifted = learner.adapt(toy_episode).logits(toy_episode.query)
        assert learner.config()["o_bias"] == 2.5
    o = list(toy_episode.label_names).index("O")
    for a, b in zip(plain, shifted):
        assert torch.allclose(b[:, o], a[:, o] + 2.5)
        assert torch.equal(torch.cat([b[:, :o], b[:, o + 1:]], 1), torch.cat([a[:, :o], a[:, o + 1:]], 1))
    assert learner.o_bias == 0.0
