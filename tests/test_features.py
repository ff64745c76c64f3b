"""Word-shape features: the shape classes, the embedding's alignment with words, and the learners' opt-in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalearn_nlp.data import Episode, TaggedSentence
from metalearn_nlp.encoders import Encoder
from metalearn_nlp.features import SHAPES, ShapeEmbedding, shape_ids, word_shape
from metalearn_nlp.learners import NNShot, ProtoNet


@pytest.mark.parametrize("token, shape", [
    ("Paris", "capitalised"), ("paris", "lower"), ("NASA", "upper"), ("A", "capitalised"),
    ("iPhone", "mixed"), ("McDonald", "mixed"), ("2026", "digits"), ("B52", "alphanumeric"),
    ("@bob", "mention"), ("#nlp", "hashtag"), ("http://x.org", "url"), ("www.x.org", "url"),
    (",", "punctuation"), ("...", "punctuation"), ("@", "punctuation"), ("\U0001F600", "other"),
    ("東京", "other"), ("Émile", "capitalised"),
])  # fmt: skip
def test_word_shapes(token, shape):
    assert word_shape(token) == shape


def test_word_shape_rejects_non_strings():
    with pytest.raises(TypeError, match="string token"):
        word_shape(3)


def test_shape_embedding_is_seeded_and_validated():
    a, b = ShapeEmbedding(4, seed=1), ShapeEmbedding(4, seed=1)
    state = torch.random.get_rng_state()
    ShapeEmbedding(4, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator is not touched
    assert torch.equal(a.embedding.weight, b.embedding.weight)
    assert a.embedding.weight.shape == (len(SHAPES), 4)
    with pytest.raises(ValueError, match="dim"):
        ShapeEmbedding(0)
    with pytest.raises(ValueError, match="scale"):
        ShapeEmbedding(2, scale=0)


def test_augment_appends_each_word_s_own_shape_vector(lookup_encoder):
    sentences = [TaggedSentence(["Ada", "met", "Grace", "."], ["O"] * 4), TaggedSentence(["in", "Paris"], ["O"] * 2)]
    words = lookup_encoder.encode(sentences)
    shapes = ShapeEmbedding(3)
    out = shapes.augment(words, sentences)
    assert out.vectors.shape == (len(words), words.vectors.shape[1] + 3)
    assert torch.equal(out.vectors[:, :-3], words.vectors)
    for row, (s, p) in enumerate(zip(words.sentence.tolist(), words.position.tolist())):
        expected = shapes.embedding.weight[shape_ids(sentences[s].tokens)[p]]
        assert torch.equal(out.vectors[row, -3:], expected)


def _blind_encoder(tokenizer) -> Encoder:
    """An encoder that gives every word the same (zero) vector: only features can tell words apart."""
    from types import SimpleNamespace

    class Zeros(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))
            self.config = SimpleNamespace(hidden_size=4)

        def forward(self, input_ids, attention_mask=None):
            return SimpleNamespace(last_hidden_state=torch.zeros(*input_ids.shape, 4) + 0 * self.dummy)

    return Encoder(Zeros(), tokenizer, name="zeros")


def _case_episode() -> Episode:
    def s(tokens, tags):
        return TaggedSentence(tokens, tags)

    support = [s(["met", "Ada", "in", "the"], ["O", "person", "O", "O"])]
    query = [s(["Grace", "visited", "Linus", "today"], ["person", "O", "person", "O"])]
    return Episode(support, query, ["person"], "io")


@pytest.mark.parametrize("cls", [ProtoNet, NNShot])
def test_shapes_let_a_metric_learner_see_capitalisation(cls, toy_tokenizer):
    episode = _case_episode()
    blind = cls(_blind_encoder(toy_tokenizer))
    assert "shape_dim" not in blind.config()  # opt-in: default configs (and cache keys) unchanged
    assert blind.shapes is None
    # with identical vectors everywhere, every word ties and takes label 0 (O)
    assert blind.adapt(episode).predict(episode.query) == [["O"] * 4]
    seeing = cls(_blind_encoder(toy_tokenizer), shape_dim=4)
    assert seeing.config()["shape_dim"] == 4
    assert seeing.adapt(episode).predict(episode.query) == [list(episode.query[0].tags)]


def test_meta_training_reaches_the_shape_embedding(lookup_encoder, toy_episode):
    learner = ProtoNet(lookup_encoder, shape_dim=4)
    learner.loss(toy_episode).backward()
    grad = learner.shapes.embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    names = {g["name"]: g for g in learner.param_groups(1e-4, head_lr=1e-3)}
    head = [p for key, g in names.items() if key.startswith("head") for p in g["params"]]
    assert any(p is learner.shapes.embedding.weight for p in head)  # trained at the head learning rate


def test_shape_dim_is_validated_and_exclusive_with_name_weight(lookup_encoder):
    with pytest.raises(ValueError, match="shape_dim"):
        ProtoNet(lookup_encoder, shape_dim=-1)
    with pytest.raises(ValueError, match="cannot be combined"):
        ProtoNet(lookup_encoder, shape_dim=2, name_weight=1.0)
