"""meta_train: lowers the episode loss, reaches the encoder, early-stops, restores the best, is seeded."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

from metalearn_nlp import training
from metalearn_nlp.data import Episode, FewNERDSampler, TaggedSentence
from metalearn_nlp.learners import FineTune, NotMetaTrainableError, ProtoNet
from metalearn_nlp.learners.base import Predictor
from metalearn_nlp.training import lr_schedule, meta_train


def _mean_loss(learner, episodes):
    learner.eval()
    with torch.no_grad():
        return sum(learner.loss(e).item() for e in episodes) / len(episodes)


def test_meta_training_protonet_lowers_the_episode_loss_and_updates_the_encoder(tiny_encoder, toy_corpus):
    learner = ProtoNet(tiny_encoder)
    held_out = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=99).episodes(4)
    before = _mean_loss(learner, held_out)
    weights = {k: v.clone() for k, v in tiny_encoder.state_dict().items()}
    sampler = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0)
    result = meta_train(learner, sampler, steps=25, lr=3e-3, warmup=0.1, progress=False)
    after = _mean_loss(learner, held_out)
    assert after < 0.7 * before
    assert result.steps == 25 and len(result.losses) == 25 and all(n > 0 for n in result.grad_norms)
    changed = [k for k, v in tiny_encoder.state_dict().items() if not torch.equal(v, weights[k])]
    assert any(k.startswith("model.embeddings.") for k in changed)
    assert any(k.startswith("model.encoder.layer.0.") for k in changed)
    assert result.best_f1 is None and result.dev == [] and result.seconds_per_step > 0


def test_meta_training_is_seeded(tiny_bert_path, toy_corpus):
    from metalearn_nlp.encoders import load_encoder

    def run():
        learner = ProtoNet(load_encoder(tiny_bert_path))
        sampler = FewNERDSampler(toy_corpus, ways=2, shots=1, seed=5)
        return meta_train(learner, sampler, steps=3, lr=1e-3, meta_batch_size=2, seed=7, progress=False).losses

    assert run() == run()


class Knob(nn.Module):
    """A toy learner: one weight; dev predictions are right while the weight stays below 1.5."""

    name = "knob"
    meta_trainable = True

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0))
        self.calls = 0

    def loss(self, episode):
        self.calls += 1
        return (self.weight - 5.0) ** 2  # pulls the weight away from the good region

    def adapt(self, episode):
        right = self.weight.item() < 1.5

        class P(Predictor):
            def logits(self, sentences):  # pragma: no cover
                raise NotImplementedError

            def predict(self, sentences):
                return [list(s.tags) if right else ["O"] * len(s.tokens) for s in sentences]

        return P(episode.label_names, episode.scheme, episode.types)

    def param_groups(self, lr, head_lr=None, weight_decay=0.0):
        return [{"params": [self.weight], "lr": lr, "weight_decay": 0.0, "name": "head"}]

    def config(self):
        return {"learner": self.name}


def _dev():
    return [Episode([TaggedSentence(["Ada"], ["per"])], [TaggedSentence(["Bob"], ["per"])], ["per"], "io")]


def test_early_stopping_restores_the_best_weights():
    learner = Knob()
    states = []
    result = meta_train(learner, _dev(), steps=50, lr=0.2, warmup=0, dev_episodes=_dev(), eval_every=2,
                        patience=2, progress=False, callback=lambda state, _: states.append(state.step))
    assert result.stopped_early and result.steps < 50
    assert result.best_step == 0 and result.best_f1 == 1.0  # the untrained learner was the best
    assert [d["step"] for d in result.dev][:2] == [0, 2] and result.dev[-1]["f1"] == 0.0
    assert learner.weight.item() == 1.0  # restored
    assert learner.calls == result.steps and states  # the callback ran


def test_meta_batches_average_the_episode_losses():
    learner = Knob()
    result = meta_train(learner, _dev(), steps=1, meta_batch_size=3, lr=0.0, progress=False)
    assert learner.calls == 3 and result.losses == [pytest.approx(16.0)]
    assert result.grad_norms == [pytest.approx(8.0)]  # d/dw (w - 5)^2 at w = 1, averaged over 3


def test_meta_train_errors(tiny_encoder, toy_corpus):
    sampler = FewNERDSampler(toy_corpus, ways=2, shots=1)
    with pytest.raises(NotMetaTrainableError, match="not meta-trainable"):
        meta_train(FineTune(tiny_encoder), sampler, steps=1, progress=False)
    tiny_encoder.freeze("all")
    with pytest.raises(ValueError, match="no trainable parameter"):
        meta_train(ProtoNet(tiny_encoder), sampler, steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        meta_train(Knob(), sampler, steps=0, progress=False)
    with pytest.raises(ValueError, match="patience needs dev_episodes"):
        meta_train(Knob(), sampler, steps=1, patience=1, progress=False)
    with pytest.raises(ValueError, match="ran out"):
        meta_train(Knob(), iter(_dev()), steps=2, progress=False)


def test_lr_schedule():
    linear = lr_schedule(10, warmup=0.2)
    assert [linear(s) for s in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert linear(6) == pytest.approx(0.5) and linear(10) == 0.0
    cosine = lr_schedule(10, warmup=0, schedule="cosine")
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    assert lr_schedule(10, warmup=3)(2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(10, schedule="step")


def test_docstring_examples():
    assert doctest.testmod(training).failed == 0
