"""The functional inner loop and the gradient-based learners (MAML, FOMAML, ANIL, ProtoMAML, Reptile, Meta-SGD,
the learned optimiser): each test is built to fail on a plausible bug."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_nlp.data import Episode, FewNERDSampler
from metalearn_nlp.encoders import load_encoder
from metalearn_nlp.evaluation import evaluate
from metalearn_nlp.inner_loop import FunctionalEncoder, inner_loop, math_attention, sgd_step
from metalearn_nlp.learners import get_learner
from metalearn_nlp.learners.learned_optimizer import CoordinateRule, LearnedOptimizer
from metalearn_nlp.learners.maml import ANIL, FOMAML, MAML, ProtoMAML, head_logits, masked_cross_entropy
from metalearn_nlp.learners.metasgd import MetaSGD
from metalearn_nlp.learners.reptile import Reptile, reptile_surrogate

GRADIENT_LEARNERS = ["maml", "fomaml", "anil", "protomaml", "reptile", "metasgd", "learned_optimizer"]


@pytest.fixture
def episodes(toy_corpus):
    return FewNERDSampler(toy_corpus, ways=3, shots=1, query_shots=2, seed=3).episodes(3)


@pytest.fixture
def encoder64(tiny_bert_path):
    """The tiny BERT in float64 with eager attention and no dropout (for finite differences)."""
    encoder = load_encoder(tiny_bert_path, attn_implementation="eager", dtype=torch.float64)
    encoder.eval()
    return encoder


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- the functional encoder --------------------------------------------------------------------------
@pytest.mark.parametrize("adapt_layers", [0, 1, 2, "all"])
def test_functional_encoder_reproduces_the_encoder(tiny_encoder, episodes, adapt_layers):
    tiny_encoder.eval()
    episode = episodes[0]
    batch = tiny_encoder.collate(list(episode.support) + list(episode.query), episode)
    functional = FunctionalEncoder(tiny_encoder, adapt_layers)
    expected = tiny_encoder.hidden_states(batch)
    got = functional.hidden(functional.trunk(batch), functional.initial_params())
    assert torch.allclose(got, expected, atol=1e-6)
    n_layer_params = sum(1 for _ in tiny_encoder.layers[0].parameters())
    expected_names = {0: 0, 1: n_layer_params, 2: 2 * n_layer_params}
    if adapt_layers != "all":
        assert len(functional.names) == expected_names[adapt_layers]
    else:
        assert any(n.startswith("embeddings.") for n in functional.names)


def test_functional_encoder_uses_the_given_weights(tiny_encoder, episodes):
    tiny_encoder.eval()
    batch = tiny_encoder.collate(list(episodes[0].support), episodes[0])
    functional = FunctionalEncoder(tiny_encoder, 1)
    params = functional.initial_params()
    changed = {n: p + 0.1 * torch.randn_like(p) for n, p in params.items()}
    trunk = functional.trunk(batch)
    assert not torch.allclose(functional.hidden(trunk, changed), functional.hidden(trunk, params))


def test_bad_adapt_layers_is_refused(tiny_encoder):
    with pytest.raises(ValueError, match="adapt_layers"):
        FunctionalEncoder(tiny_encoder, 3)
    with pytest.raises(ValueError, match="adapt_layers"):
        FunctionalEncoder(tiny_encoder, True)


# -- the inner loop on a tiny MLP ----------------------------------------------------------------------
def _mlp_task(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    xs, ys = torch.randn(8, 3, generator=g).double(), torch.randint(0, 2, (8,), generator=g)
    xq, yq = torch.randn(6, 3, generator=g).double(), torch.randint(0, 2, (6,), generator=g)
    return net, (xs, ys), (xq, yq)


def _maml_objective(net, support, query, lr=0.3, steps=2, first_order=False):
    def loss(params, data):
        x, y = data
        return F.cross_entropy(torch.func.functional_call(net, params, (x,)), y)

    params = dict(net.named_parameters())
    adapted = inner_loop(lambda p: loss(p, support), params, steps=steps,
                         update=lambda p, g, t: sgd_step(p, g, lr), first_order=first_order).params
    return loss(adapted, query)


def test_second_order_meta_gradient_matches_finite_differences_on_an_mlp():
    net, support, query = _mlp_task()
    grads = torch.autograd.grad(_maml_objective(net, support, query), list(net.parameters()))
    direction = [torch.randn_like(p) for p in net.parameters()]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps, base = 1e-5, [p.detach().clone() for p in net.parameters()]
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, b, d in zip(net.parameters(), base, direction):
                p.copy_(b + sign * eps * d)
        values.append(_maml_objective(net, support, query).item())
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic.item() - numeric) < 1e-6 * max(1.0, abs(numeric))
    # the first-order gradient is a different number: the test above really saw the second-order term
    with torch.no_grad():
        for p, b in zip(net.parameters(), base):
            p.copy_(b)
    fo = torch.autograd.grad(_maml_objective(net, support, query, first_order=True), list(net.parameters()))
    assert abs(sum((g * d).sum() for g, d in zip(fo, direction)).item() - numeric) > 1e-4


def test_first_order_gradient_matches_a_deepcopy_reference():
    net, support, query = _mlp_task(seed=1)
    fo = torch.autograd.grad(_maml_objective(net, support, query, first_order=True), list(net.parameters()))
    clone = copy.deepcopy(net)
    optimizer = torch.optim.SGD(clone.parameters(), lr=0.3)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(clone(support[0]), support[1]).backward()
        optimizer.step()
    optimizer.zero_grad()
    F.cross_entropy(clone(query[0]), query[1]).backward()
    for mine, reference in zip(fo, clone.parameters()):
        assert torch.allclose(mine, reference.grad, atol=1e-12)


def test_inner_loop_without_grad_mode_adapts_and_keeps_no_graph():
    net, support, _ = _mlp_task(seed=2)

    def loss(p):
        return F.cross_entropy(torch.func.functional_call(net, p, (support[0],)), support[1])

    start = {n: p.detach().requires_grad_() for n, p in net.named_parameters()}
    with torch.no_grad():
        result = inner_loop(loss, start, steps=5, update=lambda p, g, t: sgd_step(p, g, 0.5))
    assert result.losses[-1] < result.losses[0]
    assert all(p.grad_fn is None for p in result.params.values())
    with pytest.raises(ValueError, match="inner steps"):
        inner_loop(loss, start, steps=-1, update=lambda p, g, t: p)


# -- the learners on the tiny BERT -----------------------------------------------------------------
@pytest.mark.parametrize("name", GRADIENT_LEARNERS)
def test_registry_builds_every_gradient_learner_and_it_tags(tiny_encoder, episodes, name):
    learner = get_learner(name, tiny_encoder)
    assert learner.name == name and learner.meta_trainable
    loss = learner.loss(episodes[0])
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    report = evaluate(learner, episodes[1:], progress=False)
    assert report.episodes == 2 and 0.0 <= report.f1 <= 1.0


@pytest.mark.parametrize("name", GRADIENT_LEARNERS)
def test_adapt_leaves_the_weights_bit_identical_and_lowers_the_support_loss(tiny_encoder, episodes, name):
    learner = get_learner(name, tiny_encoder, adapt_steps=5)
    before = _state(learner)
    predictor = learner.adapt(episodes[0])
    predictor.predict(episodes[0].query)
    after = _state(learner)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    losses = predictor.support_losses
    assert len(losses) == 5 and losses[-1] < losses[0]


def test_one_inner_step_lowers_the_support_loss(tiny_encoder, episodes):
    learner = MAML(tiny_encoder, inner_lr=0.1, adapt_steps=2)
    losses = learner.adapt(episodes[1]).support_losses
    assert losses[1] < losses[0]


def test_meta_gradients_reach_every_meta_parameter(tiny_encoder, episodes):
    rule_learner = LearnedOptimizer(tiny_encoder, inner_lr=0.1)
    with torch.no_grad():  # its last layer starts at zero (exactly SGD), which blocks the first layer's gradient
        rule_learner.rule.net[2].weight.normal_(0.0, 0.01)
    for learner in (MAML(tiny_encoder), MetaSGD(tiny_encoder), rule_learner, ANIL(tiny_encoder),
                    Reptile(tiny_encoder), ProtoMAML(tiny_encoder)):
        learner.zero_grad()
        learner.loss(episodes[0]).backward()
        adapted = {f"encoder.model.{n}" for n in learner.functional.names}
        missing = [n for n, p in learner.named_parameters()
                   if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
                   # Reptile's update exists only for the weights that adapt (module docstring)
                   and not (learner.name == "reptile" and n.startswith("encoder.") and n not in adapted)]
        assert not missing, f"{learner.name}: no meta-gradient for {missing}"


def test_learned_rates_and_rule_get_gradients(tiny_encoder, episodes):
    metasgd = MetaSGD(tiny_encoder, inner_lr=0.05)
    metasgd.loss(episodes[0]).backward()
    assert all(metasgd.rates[k].grad.abs().sum() > 0 for k in metasgd.rates)
    assert metasgd.head_rates.grad.abs().sum() > 0
    rule_learner = LearnedOptimizer(tiny_encoder, inner_lr=0.05)
    rule_learner.loss(episodes[0]).backward()
    assert rule_learner.rule.net[2].weight.grad.abs().sum() > 0


def test_learned_rule_starts_as_sgd():
    rule = CoordinateRule()
    g = torch.randn(7, 3)
    assert torch.allclose(rule.step(g, step=0, steps=3, lr=0.2), -0.2 * g)


def test_second_order_learner_gradient_matches_finite_differences(encoder64, episodes):
    torch.manual_seed(0)
    learner = MAML(encoder64, adapt_layers=1, inner_steps=2, inner_lr=0.3)
    with torch.no_grad():
        learner.head_rows.copy_(0.1 * torch.randn_like(learner.head_rows))
    learner.eval()
    episode = episodes[0]
    params = [p for p in learner.parameters() if p.requires_grad]
    grads = torch.autograd.grad(learner.loss(episode), params, allow_unused=True)
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    analytic = sum((gr * d).sum() for gr, d in zip(grads, direction) if gr is not None).item()
    base = [p.detach().clone() for p in params]
    eps, values = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            for p, b, d in zip(params, base, direction):
                p.copy_(b + sign * eps * d)
            values.append(learner.loss(episode).item())
    with torch.no_grad():
        for p, b in zip(params, base):
            p.copy_(b)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) < 1e-5 * max(1.0, abs(numeric)), (analytic, numeric)
    fomaml = FOMAML(encoder64, adapt_layers=1, inner_steps=2, inner_lr=0.3)
    fomaml.load_state_dict(learner.state_dict())
    fo = torch.autograd.grad(fomaml.loss(episode), [p for p in fomaml.parameters() if p.requires_grad],
                             allow_unused=True)
    fo_value = sum((gr * d).sum() for gr, d in zip(fo, direction) if gr is not None).item()
    assert abs(fo_value - numeric) > 1e-4 * max(1.0, abs(numeric))  # the second-order term is really there


def test_checkpointing_gives_the_same_meta_gradients(encoder64, episodes):
    plain = MAML(encoder64, adapt_layers=2, inner_steps=2)
    checkpointed = MAML(encoder64, adapt_layers=2, inner_steps=2, checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    a = torch.autograd.grad(plain.loss(episodes[0]), [p for p in plain.parameters() if p.requires_grad],
                            allow_unused=True)
    b = torch.autograd.grad(checkpointed.loss(episodes[0]),
                            [p for p in checkpointed.parameters() if p.requires_grad], allow_unused=True)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.allclose(x, y, atol=1e-10)


def test_second_order_through_sdpa_attention_in_eval_mode(tiny_bert_path, episodes):
    encoder = load_encoder(tiny_bert_path, attn_implementation="sdpa")
    learner = MAML(encoder, inner_steps=1)
    learner.eval()
    loss = learner.loss(episodes[0])  # the package picks the math kernel: no error reaches the user
    loss.backward()
    assert learner.head_rows.grad is not None


def test_reptile_gradient_is_the_step_to_the_adapted_weights(tiny_encoder, episodes):
    torch.manual_seed(0)
    learner = Reptile(tiny_encoder, adapt_layers=1, inner_steps=3, inner_lr=0.1, head_init="zeros")
    learner.eval()
    learner.zero_grad()
    learner.loss(episodes[0]).backward()
    start = {n: p.detach().clone() for n, p in learner.functional.initial_params().items()}
    adapted = learner.adapt(episodes[0]).params
    encoder_params = dict(learner.encoder.model.named_parameters())
    for name in learner.functional.names:
        assert torch.allclose(encoder_params[name].grad, start[name] - adapted[name], atol=1e-6)
    w = torch.tensor([3.0, -1.0], requires_grad=True)
    reptile_surrogate({"w": w}, {"w": torch.tensor([1.0, 1.0])}).backward()
    assert w.grad.tolist() == [2.0, -2.0]


def test_protomaml_head_starts_as_protonet(tiny_encoder, episodes):
    from metalearn_nlp.learners import ProtoNet

    episode = episodes[0]
    proto = ProtoNet(tiny_encoder).adapt(episode)
    learner = ProtoMAML(tiny_encoder, adapt_steps=0)
    adapted = learner.adapt(episode)
    for mine, theirs in zip(adapted.logits(episode.query), proto.logits(episode.query)):
        # prototype scores are -||x-p||^2 = (2p.x - ||p||^2) - ||x||^2: equal up to a per-word constant
        finite = torch.isfinite(theirs)
        diff = (mine - theirs)[finite[:, 0]]
        assert torch.allclose(diff - diff[:, :1], torch.zeros_like(diff), atol=1e-3)


def test_masked_cross_entropy_leaves_out_absent_labels():
    logits = torch.tensor([[0.0, 1.0, 5.0], [2.0, 0.0, 0.0]], requires_grad=True)
    present = torch.tensor([True, True, False])
    loss = masked_cross_entropy(logits, torch.tensor([1, 2]), present)
    assert torch.allclose(loss, F.cross_entropy(torch.tensor([[0.0, 1.0]]), torch.tensor([1])))
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 2] == 0
    assert masked_cross_entropy(logits, torch.tensor([2, 2]), present).item() == 0.0


def test_bad_options_are_refused(tiny_encoder):
    with pytest.raises(ValueError, match="head_init"):
        MAML(tiny_encoder, head_init="random")
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(tiny_encoder, inner_lr=0)
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(tiny_encoder, inner_steps=-1)


def test_head_logits_is_a_linear_layer():
    x = torch.randn(4, 3)
    params = {"head.weight": torch.randn(2, 3), "head.bias": torch.randn(2)}
    assert torch.allclose(head_logits(x, params), F.linear(x, params["head.weight"], params["head.bias"]))


def test_meta_training_a_gradient_learner_improves_the_query_loss(tiny_encoder, toy_corpus):
    from metalearn_nlp.training import meta_train

    sampler = FewNERDSampler(toy_corpus, ways=3, shots=1, query_shots=2, seed=5)
    fixed = FewNERDSampler(toy_corpus, ways=3, shots=1, query_shots=2, seed=99).episodes(4)
    learner = FOMAML(tiny_encoder, adapt_layers=1, inner_lr=0.1)

    def mean_loss():
        with torch.no_grad():
            return sum(learner.loss(e).item() for e in fixed) / len(fixed)

    before = mean_loss()
    meta_train(learner, sampler, steps=30, lr=3e-3, progress=False, seed=0)
    assert mean_loss() < before


def test_episode_of_the_wrong_kind_is_refused(tiny_encoder):
    from metalearn_nlp.data import LabelledText
    from metalearn_nlp.learners import EpisodeMismatchError

    episode = Episode([LabelledText("hi", "greet")], [LabelledText("hello", "greet")], ["greet"], "class")
    with pytest.raises(EpisodeMismatchError):
        MAML(tiny_encoder).loss(episode)


def test_metasgd_rates_are_never_weight_decayed(tiny_encoder):
    learner = MetaSGD(tiny_encoder)
    names = {id(p): n for n, p in learner.named_parameters()}
    for group in learner.param_groups(1e-4, 1e-3, weight_decay=0.01):
        rates = [names[id(p)] for p in group["params"] if "rates" in names[id(p)]]
        assert not rates or group["weight_decay"] == 0.0, (group["name"], rates)


def test_every_weight_can_adapt(tiny_encoder, episodes):
    learner = FOMAML(tiny_encoder, adapt_layers="all", inner_lr=0.1)
    learner.loss(episodes[0]).backward()
    assert tiny_encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert len(learner.adapt(episodes[1]).support_losses) == learner.adapt_steps


def test_a_weight_that_cannot_reach_the_loss_is_an_error_not_a_skipped_step():
    w = torch.tensor([2.0], requires_grad=True)
    with torch.no_grad():
        view = w.expand(1, 1)  # claims requires_grad but is not in any graph
        with pytest.raises(ValueError, match="does not depend on"):
            inner_loop(lambda p: (p["w"] ** 2).sum(), {"w": view}, steps=2, update=lambda p, g, t: sgd_step(p, g, 0.25))


@pytest.mark.parametrize("head_init", ["learned", "prototypes", "zeros"])
def test_meta_training_adapts_exactly_as_adapt_does(encoder64, episodes, head_init):
    # the inner gradient is the partial derivative w.r.t. each adapted weight in both paths
    # (a prototype head built from θ must not add its own path to θ's inner gradient)
    learner = MetaSGD(encoder64, adapt_layers=1, inner_steps=2, adapt_steps=2, head_init=head_init)
    learner.eval()
    episode = episodes[0]
    batch, _ = learner._batches(episode)
    trunk = learner.functional.trunk(batch)
    trained, _, _ = learner._inner(episode, trunk, learner.functional.initial_params(), 2, False)
    with torch.no_grad():
        start = {n: p.detach().requires_grad_(True) for n, p in learner.functional.initial_params().items()}
        adapted, _, _ = learner._inner(episode, learner.functional.trunk(batch), start, 2, True)
    for name in adapted:
        assert torch.allclose(trained[name], adapted[name], atol=1e-12), name


def test_learned_optimizer_follows_the_encoder_dtype(encoder64, episodes):
    learner = LearnedOptimizer(encoder64, adapt_layers=1)
    assert learner.rule.net[0].weight.dtype == torch.float64
    learner.loss(episodes[0]).backward()
    learner.adapt(episodes[1]).predict(episodes[1].query)


def test_a_frozen_adapted_weight_adapts_in_training_as_in_adapt(tiny_encoder, episodes):
    learner = MAML(tiny_encoder, adapt_layers=1, freeze="all", inner_steps=2)
    learner.eval()
    batch, _ = learner._batches(episodes[0])
    trained, _, _ = learner._inner(episodes[0], learner.functional.trunk(batch),
                                   learner.functional.initial_params(), 2, True)
    name = learner.functional.names[0]
    assert not torch.equal(trained[name], dict(tiny_encoder.model.named_parameters())[name])


def test_a_model_the_cut_cannot_reproduce_is_refused(tiny_encoder, episodes):
    # a final step after the layer stack (some encoders end with a norm): the functional top layers cannot see it
    final = torch.nn.Linear(tiny_encoder.hidden_size, tiny_encoder.hidden_size)
    tiny_encoder.model.encoder.register_forward_hook(
        lambda module, args, out: type(out)(last_hidden_state=final(out.last_hidden_state)))
    batch = tiny_encoder.collate(list(episodes[0].support), episodes[0])
    with pytest.raises(ValueError, match="does not reproduce"):
        FunctionalEncoder(tiny_encoder, 1).trunk(batch)
    FunctionalEncoder(tiny_encoder, 0).trunk(batch)  # the head only: nothing to reproduce
