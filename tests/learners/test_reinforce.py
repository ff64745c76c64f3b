"""REINFORCE: the score-function estimator is unbiased, its baseline lowers the variance, the learner wires it in.

The statistical tests draw many estimates with a fixed seed and compare
their mean with a gradient known exactly, coordinate by coordinate, in
standard errors. Each check is run on a plausible bug too (sign flipped,
baseline with a graph, a baseline that includes the sample's own reward)
to show that it would catch it.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from metalearn_nlp.data import Episode, TaggedSentence, entity_scores
from metalearn_nlp.learners import ProtoNet
from metalearn_nlp.learners.reinforce import (
    Reinforce,
    entity_f1_rewards,
    labelling_log_probs,
    labelling_tags,
    leave_one_out_baseline,
    policy_surrogate,
    sample_labellings,
    score_function_surrogate,
)

@pytest.fixture
def one_thread():
    """Thousands of tiny tensor ops: one intra-op thread is much faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- a toy problem with a closed-form gradient --------------------------------------------------
# Policy: d independent coins, y_i ~ Bernoulli(sigmoid(theta_i)).
# Reward: R(y) = c + w.y + v y_0 y_1, so E[R] = c + w.s + v s_0 s_1 with s = sigmoid(theta).
THETA = torch.tensor([0.8, -0.4, 1.5, -1.2, 0.1], dtype=torch.float64)
W = torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0], dtype=torch.float64)
V, C = 2.0, 3.0


def reward(y: torch.Tensor) -> torch.Tensor:
    return C + y @ W + V * y[..., 0] * y[..., 1]


def expected_reward(theta: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(theta)
    return C + s @ W + V * s[..., 0] * s[..., 1]


def exact_gradient() -> torch.Tensor:
    theta = THETA.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(expected_reward(theta), theta)
    return grad


def bernoulli_log_prob(theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y * torch.nn.functional.logsigmoid(theta) + (1 - y) * torch.nn.functional.logsigmoid(-theta)).sum(-1)


def per_draw_gradients(estimator, draws: int = 20000, samples: int = 1, seed: int = 0) -> torch.Tensor:
    """``(draws, d)``: one gradient estimate per draw, each from ``samples`` coin vectors.

    ``estimator(log_probs, rewards, theta)`` gets ``(draws * samples,)`` log-probabilities
    and rewards (draw-major) and the ``(draws, d)`` parameter copies; it returns a scalar
    whose gradient with respect to row m of the copies is (1 / draws) times draw m's estimate.
    """
    generator = torch.Generator().manual_seed(seed)
    theta = THETA.repeat(draws, 1).requires_grad_(True)  # one copy of the parameters per draw
    probs = torch.sigmoid(THETA).expand(draws, samples, -1)
    y = torch.bernoulli(probs, generator=generator)
    log_probs = bernoulli_log_prob(theta[:, None, :], y).reshape(-1)
    (grad,) = torch.autograd.grad(estimator(log_probs, reward(y).reshape(-1), theta, samples), theta)
    return grad * draws


def greedy_reward() -> torch.Tensor:
    return reward((THETA > 0).double())


def package(baseline_fn):
    def estimator(log_probs, rewards, theta, samples):
        return score_function_surrogate(log_probs, rewards, baseline_fn(rewards, theta, samples))
    return estimator


NONE = package(lambda rewards, theta, samples: None)
GREEDY = package(lambda rewards, theta, samples: greedy_reward())
# a baseline computed from the parameters, with a graph (each draw's own copy): the package must detach it
VALUE = package(lambda rewards, theta, samples: expected_reward(theta).repeat_interleave(samples))
LEAVE_ONE_OUT = package(lambda rewards, theta, samples: leave_one_out_baseline(rewards.view(-1, samples)).reshape(-1))


def z_scores(gradients: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``(mean - exact) / standard error`` per coordinate."""
    se = gradients.std(0) / gradients.shape[0] ** 0.5
    return (gradients.mean(0) - exact) / se


def total_variance(gradients: torch.Tensor) -> float:
    """Trace of the covariance of the per-draw estimates."""
    return gradients.var(0).sum().item()


def test_closed_form_matches_enumeration():
    theta = THETA.clone().requires_grad_(True)
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=len(THETA))), dtype=torch.float64)
    enumerated = (bernoulli_log_prob(theta, outcomes).exp() * reward(outcomes)).sum()
    (grad,) = torch.autograd.grad(enumerated, theta)
    assert torch.allclose(enumerated, expected_reward(THETA), atol=1e-12)
    assert torch.allclose(grad, exact_gradient(), atol=1e-12)


def test_surrogate_gradient_is_advantage_times_score():
    # categorical policy: d log p(y) / d logits = onehot(y) - p, so the gradient is (R - b)(onehot - p)
    logits = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    y = torch.tensor([0, 2, 2])
    rewards = torch.tensor([1.0, 0.2, 0.6])
    log_probs = torch.log_softmax(logits, 0)[y]
    score_function_surrogate(log_probs, rewards, baseline=0.5).backward()
    p = torch.softmax(logits.detach(), 0)
    expected = ((rewards - 0.5)[:, None] * (torch.nn.functional.one_hot(y, 3) - p)).mean(0)
    assert torch.allclose(logits.grad, expected, atol=1e-6)


@pytest.mark.parametrize("name", ["none", "greedy", "value (graph, detached inside)", "leave-one-out"])
def test_estimator_is_unbiased(name):
    estimator, samples = {"none": (NONE, 1), "greedy": (GREEDY, 1), "value (graph, detached inside)": (VALUE, 1),
                          "leave-one-out": (LEAVE_ONE_OUT, 2)}[name]
    gradients = per_draw_gradients(estimator, samples=samples)
    z = z_scores(gradients, exact_gradient())
    assert z.abs().max() < 4.0, f"{name}: the Monte-Carlo mean is {z.tolist()} standard errors off"


def test_baselines_lower_the_variance():
    none = total_variance(per_draw_gradients(NONE))
    greedy = total_variance(per_draw_gradients(GREEDY))
    value = total_variance(per_draw_gradients(VALUE))
    assert greedy < 0.5 * none and value < 0.5 * none, (none, greedy, value)
    # two samples with the leave-one-out baseline beat two samples without one
    pair_none = total_variance(per_draw_gradients(NONE, samples=2))
    pair_loo = total_variance(per_draw_gradients(LEAVE_ONE_OUT, samples=2))
    assert pair_loo < 0.5 * pair_none, (pair_none, pair_loo)


def sign_flipped(log_probs, rewards, theta, samples):
    return -score_function_surrogate(log_probs, rewards, greedy_reward())


def baseline_not_detached(log_probs, rewards, theta, samples):
    b = expected_reward(theta).repeat_interleave(samples)  # a graph: adds -log p * grad b, whose mean is not 0
    return ((rewards - b) * log_probs).mean()


def baseline_includes_own_reward(log_probs, rewards, theta, samples):
    r = rewards.view(-1, samples)
    return score_function_surrogate(log_probs, rewards, r.mean(1, keepdim=True).expand_as(r).reshape(-1))


@pytest.mark.parametrize(("bug", "samples"), [(sign_flipped, 1), (baseline_not_detached, 1),
                                              (baseline_includes_own_reward, 2)])
def test_the_unbiasedness_check_catches_plausible_bugs(bug, samples):
    z = z_scores(per_draw_gradients(bug, samples=samples), exact_gradient())
    assert z.abs().max() > 10.0, f"{bug.__name__} went unnoticed: z = {z.tolist()}"


def test_surrogate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        score_function_surrogate(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="baseline"):
        score_function_surrogate(torch.zeros(3), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_baseline(torch.zeros(1))


# -- the entity-F1 reward -----------------------------------------------------------------------
LABELS = ["O", "person", "place"]
GOLD = [["person", "person", "O", "place"]]
SENTENCE, POSITION = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 2, 3])


def test_rewards_are_the_packages_entity_f1():
    perfect = torch.tensor([[1, 1, 0, 2]])
    assert entity_f1_rewards(perfect, GOLD, SENTENCE, POSITION, LABELS, "io").tolist() == [1.0]
    labellings = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 2], [2, 2, 2, 2]])
    rewards = entity_f1_rewards(labellings, GOLD, SENTENCE, POSITION, LABELS, "io")
    expected = [entity_scores(GOLD, [[LABELS[i] for i in row]], scheme="io").f1 for row in labellings.tolist()]
    assert rewards.tolist() == pytest.approx(expected) and rewards[1].item() == pytest.approx(2 / 3)


def test_words_without_a_row_are_tagged_o():
    # the second sentence lost its last word to truncation: it is O, as the predictor makes it
    assert labelling_tags([1, 2, 2], [0, 1, 1], [0, 0, 1], [1, 3], LABELS) == [["person"], ["place", "place", "O"]]


def _exact_expected_f1(logits):
    outcomes = torch.tensor(list(itertools.product(range(3), repeat=4)))
    f1 = entity_f1_rewards(outcomes, GOLD, SENTENCE, POSITION, LABELS, "io").double()
    return (labelling_log_probs(logits, outcomes).exp() * f1).sum()


@pytest.mark.parametrize(("baseline", "samples"), [("none", 1), ("greedy", 1), ("mean", 2)])
def test_policy_surrogate_is_unbiased_for_the_expected_entity_f1(baseline, samples, one_thread):
    torch.manual_seed(0)
    logits = torch.tensor([[0.2, 0.9, -0.3], [0.5, 0.1, 0.0], [1.0, -0.5, 0.2], [0.1, -0.2, 0.6]],
                          dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(_exact_expected_f1(logits), logits)
    estimates = []
    for _ in range(2000):
        surrogate, _ = policy_surrogate(logits, GOLD, SENTENCE, POSITION, LABELS, "io", samples=samples,
                                        baseline=baseline)
        estimates.append(torch.autograd.grad(surrogate, logits)[0].flatten())
    z = z_scores(torch.stack(estimates), exact.flatten())
    assert z.abs().max() < 4.0, z.tolist()
    z_flipped = z_scores(-torch.stack(estimates), exact.flatten())
    assert z_flipped.abs().max() > 10.0


def test_self_critical_advantage_is_zero_when_every_sample_is_the_greedy_labelling():
    logits = torch.tensor([[0.0, 50.0, 0.0], [0.0, 50.0, 0.0], [50.0, 0.0, 0.0], [0.0, 0.0, 50.0]],
                          requires_grad=True)
    surrogate, stats = policy_surrogate(logits, GOLD, SENTENCE, POSITION, LABELS, "io", samples=4)
    (grad,) = torch.autograd.grad(surrogate, logits)
    assert stats.greedy_reward == 1.0 and stats.rewards.tolist() == [1.0] * 4
    assert torch.equal(grad, torch.zeros_like(grad))


def test_sample_labellings_respects_impossible_labels():
    logits = torch.tensor([[0.0, float("-inf"), 0.0]] * 50)
    torch.manual_seed(0)
    drawn = sample_labellings(logits, 8)
    assert drawn.shape == (8, 50) and not (drawn == 1).any()


# -- the learner --------------------------------------------------------------------------------
def test_loss_is_finite_and_backpropagates_to_the_encoder(tiny_encoder, toy_episode):
    learner = Reinforce(tiny_encoder, temperature=10.0)
    learner.train()
    torch.manual_seed(0)
    loss = learner.loss(toy_episode)
    loss.backward()
    grads = [p.grad for p in tiny_encoder.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads)
    assert learner.last_policy.rewards.shape == (4,)


def _encoder_grads(learner, episode):
    learner.zero_grad()
    loss = learner.loss(episode)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in learner.encoder.parameters() if p.grad is not None]


def test_rl_weight_zero_is_protonet(tiny_encoder, toy_episode):
    reinforce, protonet = Reinforce(tiny_encoder, rl_weight=0.0), ProtoNet(tiny_encoder)
    reinforce.eval(), protonet.eval()
    torch.manual_seed(0)
    loss, grads = _encoder_grads(reinforce, toy_episode)
    reference, reference_grads = _encoder_grads(protonet, toy_episode)
    assert torch.equal(loss, reference)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads, reference_grads))
    # and with a positive weight the policy term changes the gradient (a tiny BERT is far from one-hot)
    reinforce.rl_weight, reinforce.temperature = 1.0, 10.0
    torch.manual_seed(0)
    _, rl_grads = _encoder_grads(reinforce, toy_episode)
    assert any(not torch.allclose(a, b) for a, b in zip(rl_grads, reference_grads))


def test_loss_is_cross_entropy_minus_weighted_surrogate(tiny_encoder, toy_episode):
    learner = Reinforce(tiny_encoder, rl_weight=2.5, samples=3, temperature=10.0)
    learner.eval()
    torch.manual_seed(7)
    loss = learner.loss(toy_episode)
    # the same computation by hand, replaying the RNG
    support, query = learner._embed_episode(toy_episode)
    protos, present = learner.prototypes(support, toy_episode)
    cross_entropy = ProtoNet(tiny_encoder).eval().loss(toy_episode)
    logits = learner.policy_logits(query.vectors, protos, present, toy_episode)
    torch.manual_seed(7)
    surrogate, stats = policy_surrogate(logits, [s.tags for s in toy_episode.query],
                                        query.sentence - len(toy_episode.support), query.position,
                                        toy_episode.label_names, "io", samples=3)
    assert torch.allclose(loss, cross_entropy - 2.5 * surrogate, atol=1e-5)
    assert torch.equal(stats.rewards, learner.last_policy.rewards)


def test_greedy_reward_is_the_f1_of_protonets_prediction(tiny_encoder, toy_episode):
    learner = Reinforce(tiny_encoder)
    learner.eval()
    learner.loss(toy_episode)
    predicted = learner.adapt(toy_episode).predict(toy_episode.query)
    f1 = entity_scores([s.tags for s in toy_episode.query], predicted, scheme="io").f1
    assert learner.last_policy.greedy_reward == pytest.approx(f1)


def test_a_label_without_support_words_follows_protonets_back_off(lookup_encoder):
    support = [TaggedSentence(["Ada", "met", "Rome"], ["B-person", "O", "B-place"])]
    query = [TaggedSentence(["Grace", "Linus", "in", "Paris"], ["B-person", "I-person", "O", "B-place"])]
    episode = Episode(support, query, ["person", "place"], "bio")
    learner = Reinforce(lookup_encoder)
    learner.eval()
    loss = learner.loss(episode)
    predicted = learner.adapt(episode).predict(query)
    assert predicted == [["B-person", "B-person", "O", "B-place"]]  # ties between B- and I- go to B-
    f1 = entity_scores([s.tags for s in query], predicted, scheme="bio").f1
    assert torch.isfinite(loss) and learner.last_policy.greedy_reward == pytest.approx(f1)


def test_adapt_leaves_the_weights_bit_identical(tiny_encoder, toy_episode):
    learner = Reinforce(tiny_encoder)
    before = {k: v.detach().clone() for k, v in learner.state_dict().items()}
    learner.adapt(toy_episode).predict(toy_episode.query)
    after = learner.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_loss_is_deterministic_under_manual_seed(tiny_encoder, toy_episode):
    learner = Reinforce(tiny_encoder, samples=6, temperature=10.0, dropout=0.1)
    learner.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        loss = learner.loss(toy_episode)
        runs.append((loss.detach(), learner.last_policy.rewards))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_hyperparameters_are_reported_and_checked(tiny_encoder):
    config = Reinforce(tiny_encoder, rl_weight=0.5, samples=2, baseline="mean", temperature=4.0).config()
    assert config["learner"] == "reinforce"
    assert {k: config[k] for k in ("rl_weight", "samples", "baseline", "temperature")} == \
        {"rl_weight": 0.5, "samples": 2, "baseline": "mean", "temperature": 4.0}
    for bad in [dict(rl_weight=-1.0), dict(samples=0), dict(baseline="critic"), dict(baseline="mean", samples=1),
                dict(temperature=0.0)]:
        with pytest.raises(ValueError):
            Reinforce(tiny_encoder, **bad)
