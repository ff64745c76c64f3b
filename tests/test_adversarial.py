"""FGM adversarial training: the perturbation's direction and size, no side effects, the wrapper learner."""

from __future__ import annotations

import pytest
import torch

from metalearn_nlp.data import FewNERDSampler
from metalearn_nlp.learners import FGM, ProtoNet, fgm_loss, get_learner
from metalearn_nlp.learners.base import NotMetaTrainableError
from metalearn_nlp.training import Trainer


def _loss_with_delta(learner, episode, delta_fn):
    """The learner's loss with delta_fn(output) added to the word-embedding output."""
    layer = learner.encoder.model.get_input_embeddings()
    handle = layer.register_forward_hook(lambda m, i, o: o + delta_fn(o))
    try:
        return learner.loss(episode)
    finally:
        handle.remove()


def test_epsilon_zero_is_the_clean_loss(tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder).eval()
    assert torch.allclose(fgm_loss(learner, toy_episode, epsilon=0.0), learner.loss(toy_episode))


def test_fgm_ascends_the_loss_more_than_a_random_direction_of_the_same_norm(tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder).eval()
    epsilon = 0.5
    clean = learner.loss(toy_episode).item()
    adversarial = 2 * fgm_loss(learner, toy_episode, epsilon=epsilon).item() - clean   # (L + L_adv) / 2
    generator = torch.Generator().manual_seed(0)

    def random_delta(output):
        d = torch.randn(output.shape, generator=generator)
        return epsilon * d / d.norm()

    randoms = [_loss_with_delta(learner, toy_episode, random_delta).item() for _ in range(5)]
    assert adversarial > clean
    assert adversarial > max(randoms)


def test_the_perturbation_has_norm_epsilon(tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder).eval()
    layer = learner.encoder.model.get_input_embeddings()
    seen = []
    # a hook registered first sees the clean output; fgm's own hook runs after it, so compare the two passes
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        fgm_loss(learner, toy_episode, epsilon=0.7)
    finally:
        handle.remove()
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])   # the clean output is the same both times

    captured = []

    def probe(module, inputs, output):
        captured.append(output.detach().clone())

    # the probe is registered after fgm's hooks (each call of fgm_loss registers its hook anew), so wrap loss
    original = learner.loss

    def loss_with_probe(episode):
        h = layer.register_forward_hook(probe)
        try:
            return original(episode)
        finally:
            h.remove()

    learner.loss = loss_with_probe
    try:
        fgm_loss(learner, toy_episode, epsilon=0.7)
    finally:
        del learner.loss
    clean, perturbed = captured
    assert (perturbed - clean).norm().item() == pytest.approx(0.7, rel=1e-4)


def test_no_weight_changes_and_no_hook_is_left_behind(tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    fgm_loss(learner, toy_episode, epsilon=1.0).backward()
    assert all(torch.equal(v, before[k]) for k, v in learner.state_dict().items())
    assert not learner.encoder.model.get_input_embeddings()._forward_hooks


def test_frozen_embeddings_still_get_a_perturbation_and_the_top_layer_a_different_gradient(tiny_encoder, toy_episode):
    tiny_encoder.freeze(1)                      # embeddings and layer 0 frozen
    learner = ProtoNet(tiny_encoder).eval()
    top = next(p for n, p in learner.named_parameters() if p.requires_grad)
    learner.loss(toy_episode).backward()
    clean_grad = top.grad.clone()
    top.grad = None
    loss = fgm_loss(learner, toy_episode, epsilon=1.0)
    loss.backward()
    assert loss.item() > learner.loss(toy_episode).item()
    assert not torch.allclose(top.grad, clean_grad)


def test_bad_epsilon_is_refused(tiny_encoder, toy_episode):
    learner = ProtoNet(tiny_encoder)
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="epsilon"):
            fgm_loss(learner, toy_episode, epsilon=bad)
    with pytest.raises(ValueError, match="epsilon"):
        FGM(tiny_encoder, epsilon=-0.1)


def test_a_loss_that_does_not_reach_the_embeddings_is_refused_not_silently_clean(tiny_encoder, toy_episode):
    from metalearn_nlp.frozen_cache import CachedEncoder

    tiny_encoder.freeze("all")
    learner = ProtoNet(CachedEncoder(tiny_encoder.eval()))  # states computed without gradients, then cached
    with pytest.raises(ValueError, match="does not depend on the output of the encoder's embedding layer"):
        fgm_loss(learner, toy_episode, epsilon=1.0)


def test_the_wrapper_learner_predicts_like_its_base_and_keeps_one_copy_of_the_encoder(tiny_encoder, toy_episode):
    learner = get_learner("fgm", tiny_encoder, base="protonet", epsilon=0.5, dropout=0.1)
    assert isinstance(learner.base, ProtoNet) and learner.base.dropout == 0.1
    assert learner.config()["base"] == "protonet" and learner.config()["epsilon"] == 0.5
    keys = list(learner.state_dict())
    assert keys and all(not k.startswith("base.encoder.") for k in keys)
    learner.load_state_dict(learner.state_dict())            # strict: the pre-hook fills base.encoder.*
    learner.eval()
    assert learner.adapt(toy_episode).predict(toy_episode.query) == \
        learner.base.adapt(toy_episode).predict(toy_episode.query)
    assert learner.param_groups(1e-3) and all(
        p is q for g, h in zip(learner.param_groups(1e-3), learner.base.param_groups(1e-3))
        for p, q in zip(g["params"], h["params"]))


def test_the_wrapper_meta_trains_with_the_trainer(tiny_encoder, toy_corpus):
    learner = FGM.wrap(ProtoNet(tiny_encoder), epsilon=1.0)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    episodes = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=2).episodes(3)
    result = Trainer(learner, episodes, steps=3, lr=1e-3, progress=False).fit()
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    assert any(not torch.equal(v, before[k]) for k, v in learner.state_dict().items())


def test_a_base_learner_that_is_not_meta_trainable_is_refused(tiny_encoder):
    with pytest.raises(NotMetaTrainableError, match="meta-trainable"):
        FGM(tiny_encoder, base="finetune")
    with pytest.raises(ValueError, match="wrap"):
        FGM(tiny_encoder, base=ProtoNet(tiny_encoder.clone()))
