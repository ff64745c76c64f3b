"""The transfer baseline: supervised source training on global labels, source-initialised heads, per-episode fine-tuning."""

from __future__ import annotations

import pytest
import torch

from metalearn_nlp.data import Episode, FewNERDSampler, TaggedSentence
from metalearn_nlp.learners import EpisodeMismatchError, Transfer, get_learner
from metalearn_nlp.learners.transfer import label_types
from metalearn_nlp.training import meta_train


def test_label_types():
    assert label_types(["O", "a", "b"], "io") == [None, "a", "b"]
    assert label_types(["O", "B-a", "I-a"], "bio") == [None, "a", "a"]


def test_source_loss_uses_the_global_source_rows_whatever_the_episode_order(lookup_encoder):
    learner = Transfer(lookup_encoder, source_types=["person", "place", "org"])
    s = TaggedSentence(["Ada", "in", "Paris"], ["person", "O", "place"])
    # the same sentences in two episodes with the types in opposite orders: the same loss
    a = Episode([s], [s], ["person", "place"], "io")
    b = Episode([s], [s], ["place", "person"], "io")
    assert learner._global_labels(a).tolist() == [0, 1, 2] and learner._global_labels(b).tolist() == [0, 2, 1]
    assert torch.allclose(learner.loss(a), learner.loss(b))
    movie = TaggedSentence(["Ada"], ["movie"])
    with pytest.raises(EpisodeMismatchError, match="not a source type"):
        learner.loss(Episode([movie], [movie], ["movie"], "io"))


def test_source_training_learns_the_source_types(lookup_encoder, toy_corpus):
    learner = Transfer(lookup_encoder, source_types=["person", "place", "org"])
    sampler = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0)
    episode = sampler.episodes(1)[0]
    before = learner.loss(episode).item()
    meta_train(learner, sampler, steps=30, lr=1e-3, head_lr=5e-2, progress=False, warmup=0)
    assert learner.loss(episode).item() < 0.5 * before


def test_initial_head_copies_o_and_shared_types_and_starts_new_types_at_the_entity_mean(lookup_encoder):
    learner = Transfer(lookup_encoder, source_types=["person", "place"])
    with torch.no_grad():
        learner.source_head.weight.copy_(torch.arange(24.0).view(3, 8))
        learner.source_head.bias.copy_(torch.tensor([1.0, 2.0, 4.0]))
    episode = Episode([TaggedSentence(["Acme", "Paris"], ["org", "place"])], [], ["org", "place"], "io")
    head = learner.initial_head(episode)
    w = learner.source_head.weight
    assert torch.equal(head.weight[0], w[0]) and head.bias[0] == 1.0  # O
    assert torch.equal(head.weight[1], (w[1] + w[2]) / 2) and head.bias[1] == 3.0  # org: new, entity mean
    assert torch.equal(head.weight[2], w[2]) and head.bias[2] == 4.0  # place: a source type keeps its row


def test_adapt_fits_the_support_and_leaves_the_learner_unchanged(lookup_encoder, toy_episode):
    learner = get_learner("transfer", lookup_encoder, source_types=["x", "y"], steps=50)
    state = {k: v.clone() for k, v in learner.state_dict().items()}
    predictor = learner.adapt(toy_episode)
    assert predictor.losses[-1] < predictor.losses[0]
    assert predictor.predict(toy_episode.support) == [list(s.tags) for s in toy_episode.support]
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in state.items())
    assert learner.config()["source_types"] == ["x", "y"]


def test_fine_tuning_top_layers_trains_a_copy(tiny_encoder, toy_episode):
    learner = Transfer(tiny_encoder, source_types=["person"], train_layers=1, steps=3, lr=1e-2)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    predictor = learner.adapt(toy_episode)
    assert len(predictor.losses) == 3
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in before.items())
    top = dict(predictor.encoder.named_parameters())
    changed = [k for k, v in top.items() if not torch.equal(v, dict(tiny_encoder.named_parameters())[k])]
    assert changed and all(".layer.1." in k for k in changed)  # only the top layer moved


@pytest.mark.parametrize("types", [[], ["a", "a"]])
def test_bad_source_types(lookup_encoder, types):
    with pytest.raises(ValueError, match="distinct source_types"):
        Transfer(lookup_encoder, source_types=types)


def test_o_bias_shifts_only_the_o_logit_and_fewer_words_are_tagged(lookup_encoder, toy_episode):
    learner = get_learner("transfer", lookup_encoder, source_types=["x", "y"], steps=20)
    plain = learner.adapt(toy_episode)
    with learner.adaptation_settings(o_bias=3.0):
        assert learner.config()["o_bias"] == 3.0
        shifted = learner.adapt(toy_episode)
    assert learner.o_bias == 0.0  # restored
    o_row = list(toy_episode.label_names).index("O")
    delta = shifted.head.bias - plain.head.bias
    assert delta[o_row].item() == pytest.approx(3.0)
    assert torch.count_nonzero(delta).item() == 1 and torch.equal(shifted.head.weight, plain.head.weight)
    names = lambda p: sum(t != "O" for tags in p.predict(toy_episode.query) for t in tags)  # noqa: E731
    assert names(shifted) <= names(plain)
    with learner.adaptation_settings(o_bias=1e4):  # O everywhere
        assert names(learner.adapt(toy_episode)) == 0


def test_adaptation_settings_refuse_options_that_change_training(lookup_encoder):
    learner = Transfer(lookup_encoder, source_types=["x"])
    with pytest.raises(ValueError, match=r"\['source_types'\] are not adaptation-only.*o_bias"):
        with learner.adaptation_settings(source_types=["y"]):
            pass
    with pytest.raises(RuntimeError), learner.adaptation_settings(steps=7):
        assert learner.steps == 7
        raise RuntimeError
    assert learner.steps == 100  # restored after an error too


def test_set_adaptation_is_kept_and_saved(tiny_encoder, tmp_path):
    from metalearn_nlp.saving import load_learner

    learner = Transfer(tiny_encoder, source_types=["x"])
    assert learner.set_adaptation(o_bias=1.5, steps=7) is learner and (learner.o_bias, learner.steps) == (1.5, 7)
    loaded = load_learner(learner.save_pretrained(tmp_path / "t"))
    assert (loaded.o_bias, loaded.steps) == (1.5, 7)
    with pytest.raises(ValueError, match="not adaptation-only"):
        learner.set_adaptation(seed=3)


@pytest.mark.parametrize("options, message", [({"steps": 0}, "steps"), ({"train_layers": 99}, "train_layers"),
                                              ({"o_bias": "x"}, "o_bias"), ({"o_bias": float("nan")}, "o_bias")])
def test_set_adaptation_refuses_what_the_constructor_would(tiny_encoder, options, message):
    learner = Transfer(tiny_encoder, source_types=["x"])
    with pytest.raises(ValueError, match=message):
        learner.set_adaptation(**options)
    assert (learner.steps, learner.train_layers, learner.o_bias) == (100, 0, 0.0)  # left as it was
