"""REINFORCE: meta-train a tagger on its entity F1 with the score-function (policy-gradient) estimator.

The source text lists "REINFORCE: update the model parameters with a policy
gradient" among its meta-learning objectives. In few-shot NER the **policy**
is the tagger's distribution over tag sequences, the **action** a labelling
of the episode's whole query set, and the **reward** the entity-level
micro-F1 of that labelling: the number the book reports, and one that is
not differentiable (it is piecewise constant in the parameters, so its
gradient is zero wherever it exists).

**The score-function identity** (Williams, 1992). For a distribution
``p_θ(y)`` over a finite set and a reward ``R(y)`` that does not depend on
``θ``::

    ∇_θ E_{y~p_θ}[R(y)] = Σ_y R(y) ∇_θ p_θ(y) = Σ_y p_θ(y) R(y) ∇_θ log p_θ(y)
                        = E_{y~p_θ}[R(y) ∇_θ log p_θ(y)],

using ``∇p = p ∇log p``. So ``R(y) ∇log p_θ(y)`` with ``y`` drawn from the
policy is an unbiased estimate of the gradient of the expected reward, and
``R`` is only ever *evaluated*, never differentiated. **A baseline** ``b``
that does not depend on the sampled ``y`` leaves the estimate unbiased,
because ``E[∇log p_θ(y)] = Σ_y ∇p_θ(y) = ∇ Σ_y p_θ(y) = ∇1 = 0``::

    ∇_θ E[R] = E[(R(y) - b) ∇_θ log p_θ(y)],

while a good ``b`` (close to the typical reward) makes the estimate much
less noisy.
:func:`score_function_surrogate` builds the scalar whose autograd gradient
is this estimate: ``mean_s (R_s - b_s) log p_θ(y_s)``, with rewards and
baseline treated as constants (detached; a baseline that carried a graph
would add ``-log p ∇b``, which has non-zero mean, and bias the estimate).

**What the gradient does.** Per word, ``∇ log p(y_w)`` raises the logit of
the sampled label and lowers the others, so a sampled labelling that beats
the baseline (positive advantage) becomes more likely as a whole, and one
that does worse less likely. In NER this trades ``O`` against entity
labels by their effect on F1: a sample that drops a spurious entity raises
precision and is reinforced; one that tags an extra word wrongly is
suppressed; one that completes a half-found mention gains most, since a wrong
boundary counts as a miss *and* a false alarm. Cross-entropy, by contrast,
weighs every word alike, and most words are ``O``.

**The learner.** :class:`Reinforce` is ProtoNet (ProtoBERT) with this
term added to its meta-training loss::

    loss = ProtoNet's query cross-entropy - rl_weight · surrogate.

The policy is the per-word softmax of the scores the adapted ProtoNet would
output on the query words (negative squared distances to the support
prototypes, with ProtoNet's sibling back-off for a label without support
words), so the greedy labelling is exactly ProtoNet's prediction. Each
episode draws ``samples`` joint labellings of the query set, rewards each by
the episode's entity micro-F1 (:func:`metalearn_nlp.data.entity_scores`, in
the episode's scheme), and uses as baseline the F1 of the greedy (argmax)
labelling: the **self-critical** baseline of Rennie et al. (2017), which
rewards a sample only for beating the prediction the model would make at
test time. ``baseline="mean"`` uses the mean reward of the *other* samples
(leave-one-out, Kool et al., 2019; unbiased, needs ``samples >= 2``),
``"none"`` no baseline. Adaptation is ProtoNet's.

**In practice.** With a pre-trained encoder ProtoNet's softmax is nearly
one-hot (the best and second-best squared distances of a word differ by
tens), so every sample is the greedy labelling and the self-critical term
vanishes: start from a learner meta-trained with cross-entropy, or raise
``temperature``. A greedy F1 above the samples' average makes most
advantages negative, and can make the self-critical estimate noisier than
none at all; the leave-one-out baseline does not have that problem.

References:
    Williams (1992), Simple Statistical Gradient-Following Algorithms for
    Connectionist Reinforcement Learning, Machine Learning 8, 229-256.
    Rennie, Marcheret, Mroueh, Ross and Goel (2017), Self-Critical Sequence
    Training for Image Captioning, CVPR. Kool, van Hoof and Welling (2019),
    Buy 4 REINFORCE Samples, Get a Baseline for Free!, ICLR workshop.

Taught in: chapter 3.4 (Meta-learning with REINFORCE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from ..data import Episode, entity_scores
from ..encoders import Encoder
from .metric import prototype_scores, prototypical_loss, sibling_backoff
from .protonet import ProtoNet

__all__ = [
    "BASELINES",
    "PolicyStats",
    "Reinforce",
    "entity_f1_rewards",
    "labelling_log_probs",
    "labelling_tags",
    "leave_one_out_baseline",
    "policy_surrogate",
    "sample_labellings",
    "score_function_surrogate",
]

#: The baselines :class:`Reinforce` accepts.
BASELINES: tuple[str, ...] = ("greedy", "mean", "none")


# -- functional cores -------------------------------------------------------------------------
def score_function_surrogate(
    log_probs: torch.Tensor, rewards: torch.Tensor | Sequence[float], baseline: torch.Tensor | float | None = None
) -> torch.Tensor:
    """The scalar whose gradient is the REINFORCE estimate of ``∇ E[R]``: ``mean_s (R_s - b_s) log p(y_s)``.

    Derivation (module docstring): ``∇E[R] = E[R ∇log p] = E[(R - b) ∇log p]``
    for any ``b`` independent of the sample. Rewards and baseline are
    constants: both are detached here, so a baseline computed from the
    parameters (an estimate of ``E[R]``, say) cannot leak a gradient.
    *Maximise* the surrogate (or minimise its negative) to raise the
    expected reward; its value itself means nothing.

    Arguments:
        log_probs: ``(S,)`` log-probabilities of ``S`` sampled outcomes,
            with a graph to the parameters.
        rewards: ``(S,)`` their rewards.
        baseline: None (no baseline), a number, or ``(S,)`` one per sample.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: shapes do not match.

    Example:
        >>> theta = torch.zeros(2, requires_grad=True)
        >>> y = torch.tensor([0])                          # one sample of a 2-way categorical
        >>> log_p = torch.log_softmax(theta, 0)[y]
        >>> score_function_surrogate(log_p, [1.0], baseline=0.25).backward()
        >>> theta.grad                                     # (R - b) (onehot(y) - p)
        tensor([ 0.3750, -0.3750])
    """
    rewards = torch.as_tensor(rewards, dtype=log_probs.dtype, device=log_probs.device).detach()
    if log_probs.ndim != 1 or rewards.shape != log_probs.shape:
        raise ValueError(
            f"score_function_surrogate needs log_probs and rewards of the same shape (S,), got "
            f"{tuple(log_probs.shape)} and {tuple(rewards.shape)}"
        )
    advantage = rewards
    if baseline is not None:
        baseline = torch.as_tensor(baseline, dtype=log_probs.dtype, device=log_probs.device).detach()
        if baseline.ndim > 1 or (baseline.ndim == 1 and baseline.shape != rewards.shape):
            raise ValueError(
                f"baseline must be a number or of shape {tuple(rewards.shape)}, got {tuple(baseline.shape)}"
            )
        advantage = rewards - baseline
    return (advantage * log_probs).mean()


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """For each sample, the mean reward of the *other* samples (unbiased: it does not depend on the sample).

    Arguments:
        rewards: ``(..., S)``, the samples along the last dimension.

    Raises:
        ValueError: fewer than two samples.

    Example:
        >>> leave_one_out_baseline(torch.tensor([1.0, 0.0, 0.5]))
        tensor([0.2500, 0.7500, 0.5000])
    """
    if rewards.ndim == 0 or rewards.shape[-1] < 2:
        raise ValueError(f"the leave-one-out baseline needs at least 2 samples, got shape {tuple(rewards.shape)}")
    return (rewards.sum(-1, keepdim=True) - rewards) / (rewards.shape[-1] - 1)


def sample_labellings(logits: torch.Tensor, samples: int) -> torch.Tensor:
    """Draw ``samples`` joint labellings from the per-word softmax of ``logits`` (global torch RNG).

    Arguments:
        logits: ``(n, C)`` one row per word; -inf marks a label that cannot be chosen.
        samples: S.

    Returns:
        ``(S, n)`` label ids (no graph).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    probs = torch.softmax(logits.detach().float(), dim=-1)
    if probs.shape[0] == 0:
        return torch.zeros(samples, 0, dtype=torch.long, device=logits.device)
    return torch.multinomial(probs, samples, replacement=True).t()


def labelling_log_probs(logits: torch.Tensor, labellings: torch.Tensor) -> torch.Tensor:
    """``log p(y) = Σ_w log softmax(logits_w)[y_w]`` for each labelling (words are independent).

    Arguments:
        logits: ``(n, C)``.
        labellings: ``(S, n)`` label ids.

    Returns:
        ``(S,)``, with a graph to ``logits``.

    Example:
        >>> labelling_log_probs(torch.zeros(3, 2), torch.tensor([[0, 1, 1]])).exp()  # 3 fair coins
        tensor([0.1250])
    """
    log_softmax = torch.log_softmax(logits, dim=-1)
    words = torch.arange(logits.shape[0], device=logits.device)
    return log_softmax[words[None, :], labellings].sum(dim=1)


def labelling_tags(
    labels: Sequence[int] | torch.Tensor,
    sentence: Sequence[int] | torch.Tensor,
    position: Sequence[int] | torch.Tensor,
    lengths: Sequence[int],
    label_names: Sequence[str],
) -> list[list[str]]:
    """Label ids of the kept words -> one tag list per sentence; a word without a row (truncated) is ``O``.

    Example:
        >>> labelling_tags([1, 0], [0, 1], [0, 0], [2, 1], ["O", "person"])
        [['person', 'O'], ['O']]
    """
    tags = [["O"] * length for length in lengths]
    as_list = lambda v: v.tolist() if isinstance(v, torch.Tensor) else list(v)  # noqa: E731
    for label, s, p in zip(as_list(labels), as_list(sentence), as_list(position)):
        tags[s][p] = label_names[label]
    return tags


def entity_f1_rewards(
    labellings: torch.Tensor,
    gold: Sequence[Sequence[str]],
    sentence: torch.Tensor,
    position: torch.Tensor,
    label_names: Sequence[str],
    scheme: str,
) -> torch.Tensor:
    """The entity micro-F1 of each labelling of a set of sentences (:func:`~metalearn_nlp.data.entity_scores`).

    Arguments:
        labellings: ``(S, n)`` label ids of the ``n`` kept words.
        gold: the gold tags, one list per sentence (all words, truncated ones included).
        sentence, position: ``(n,)`` where each kept word sits.
        label_names: id -> tag.
        scheme: the tags' scheme (the episode's).

    Returns:
        ``(S,)`` float32 rewards in ``[0, 1]`` on the CPU.
    """
    lengths = [len(g) for g in gold]
    sentence, position = sentence.tolist(), position.tolist()
    return torch.tensor([
        entity_scores(gold, labelling_tags(row, sentence, position, lengths, label_names), scheme=scheme).f1
        for row in labellings.tolist()
    ], dtype=torch.float32, device="cpu")


class PolicyStats(NamedTuple):
    """What one policy-gradient term saw (kept in ``Reinforce.last_policy`` for plots and logs).

    Attributes:
        labellings: ``(S, n)`` the sampled label ids.
        rewards: ``(S,)`` F1 of the sampled labellings.
        greedy_reward: F1 of the argmax labelling.
        baseline: ``(S,)`` the baseline subtracted from each reward.
    """

    labellings: torch.Tensor
    rewards: torch.Tensor
    greedy_reward: float
    baseline: torch.Tensor


def policy_surrogate(
    logits: torch.Tensor,
    gold: Sequence[Sequence[str]],
    sentence: torch.Tensor,
    position: torch.Tensor,
    label_names: Sequence[str],
    scheme: str,
    *,
    samples: int = 4,
    baseline: str = "greedy",
) -> tuple[torch.Tensor, PolicyStats]:
    """Sample labellings of a query set, reward them by entity F1, and build the REINFORCE surrogate.

    Arguments:
        logits: ``(n, C)`` the policy's per-word scores (``softmax`` per row is the policy).
        gold, sentence, position, label_names, scheme: as :func:`entity_f1_rewards`.
        samples (int, default 4): labellings drawn.
        baseline (str, default ``"greedy"``): ``"greedy"`` (F1 of the argmax
            labelling: self-critical), ``"mean"`` (leave-one-out mean of the
            other samples' F1) or ``"none"``.

    Returns:
        ``(surrogate, stats)``: the scalar of :func:`score_function_surrogate`
        (its gradient estimates ``∇ E[F1]``) and a :class:`PolicyStats`.

    Example:
        >>> logits = torch.tensor([[0.0, 2.0], [1.0, 0.0]], requires_grad=True)
        >>> s, stats = policy_surrogate(logits, [["person", "O"]], torch.tensor([0, 0]), torch.tensor([0, 1]),
        ...                             ["O", "person"], "io")
        >>> stats.greedy_reward                   # argmax tags ['person', 'O'] are the gold ones
        1.0
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "mean" and samples < 2:
        raise ValueError("baseline='mean' (leave-one-out) needs samples >= 2")
    labellings = sample_labellings(logits, samples)
    rewards = entity_f1_rewards(labellings, gold, sentence, position, label_names, scheme)
    greedy_reward = float(entity_f1_rewards(logits.detach().argmax(-1)[None], gold, sentence, position,
                                            label_names, scheme)[0])
    if baseline == "greedy":
        b = torch.full_like(rewards, greedy_reward)
    elif baseline == "mean":
        b = leave_one_out_baseline(rewards)
    else:
        b = torch.zeros_like(rewards)
    rewards, b = rewards.to(logits.device), b.to(logits.device)
    surrogate = score_function_surrogate(labelling_log_probs(logits, labellings), rewards, b)
    return surrogate, PolicyStats(labellings.cpu(), rewards.cpu(), greedy_reward, b.cpu())


# -- the learner --------------------------------------------------------------------------------
class Reinforce(ProtoNet):
    """ProtoNet meta-trained on its query cross-entropy plus a policy gradient on the entity F1.

    ``loss(episode) = ProtoNet's loss - rl_weight · surrogate``, where the
    surrogate's gradient is the REINFORCE estimate of ``∇ E[F1]`` over the
    policy "label each query word from ProtoNet's softmax" (module
    docstring). Query words whose label has no support word follow ProtoNet's
    rules: the cross-entropy leaves them out; the policy scores such a label
    like its same-type sibling (:func:`sibling_backoff`), as ProtoNet's
    predictor does, and a type with no support word cannot be sampled. The
    F1 counts every query word, so missing such an entity costs recall, as it
    does at test time. Sampling uses torch's global RNG: ``torch.manual_seed``
    makes the loss reproducible. ``adapt`` is ProtoNet's.

    Arguments:
        encoder: the word encoder.
        rl_weight (float, default 1.0): weight of the policy-gradient term (0: ProtoNet).
        samples (int, default 4): labellings of the query set drawn per episode.
        temperature (float, default 1.0): the policy is ``softmax(scores / temperature)``.
            Squared distances between word vectors are tens of units apart, so
            at 1 the policy is nearly one-hot, every sample equals the greedy
            labelling and the self-critical advantage is zero; a higher
            temperature explores. The greedy labelling (the baseline, and the
            prediction) does not depend on it.
        baseline (str, default ``"greedy"``): ``"greedy"`` (self-critical),
            ``"mean"`` (leave-one-out mean of the other samples) or ``"none"``.
        dropout, name_weight, descriptions, batch_size: as :class:`ProtoNet`.

    Attributes:
        last_policy: the :class:`PolicyStats` of the last ``loss`` call (None before).

    Raises:
        ValueError: a negative ``rl_weight``, ``samples < 1``, an unknown
            baseline, ``"mean"`` with one sample, or ``temperature <= 0``.

    Example:
        >>> learner = Reinforce(load_encoder(), rl_weight=1.0, samples=4)  # doctest: +SKIP
        >>> learner.loss(episode).backward()  # cross-entropy + policy gradient on the F1  # doctest: +SKIP
        >>> learner.last_policy.greedy_reward  # F1 of ProtoNet's prediction on the query  # doctest: +SKIP

    References:
        Williams (1992), Machine Learning 8. Rennie et al. (2017), CVPR
        (self-critical baseline). Kool et al. (2019), ICLR workshop
        (leave-one-out baseline).

    Taught in: chapter 3.4.
    """

    name = "reinforce"

    def __init__(
        self,
        encoder: Encoder,
        *,
        rl_weight: float = 1.0,
        samples: int = 4,
        baseline: str = "greedy",
        temperature: float = 1.0,
        dropout: float = 0.0,
        name_weight: float = 0.0,
        descriptions: Mapping[str, str] | None = None,
        batch_size: int = 32,
        o_bias: float = 0.0,
    ) -> None:
        super().__init__(encoder, dropout=dropout, name_weight=name_weight, descriptions=descriptions,
                         batch_size=batch_size, o_bias=o_bias)
        if not rl_weight >= 0:
            raise ValueError(f"rl_weight must be >= 0, got {rl_weight}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        if baseline == "mean" and samples < 2:
            raise ValueError("baseline='mean' is the mean reward of the *other* samples: it needs samples >= 2")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.rl_weight = float(rl_weight)
        self.samples = samples
        self.baseline = baseline
        self.temperature = float(temperature)
        self.last_policy: PolicyStats | None = None

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "rl_weight": self.rl_weight, "samples": self.samples,
                "baseline": self.baseline, "temperature": self.temperature}

    def policy_logits(self, query: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor,
                      episode: Episode) -> torch.Tensor:
        """``(n, C)`` the policy's logits: ProtoNet's predictor scores of the query words / ``temperature``.

        The scores include ProtoNet's sibling back-off, so their argmax is
        ProtoNet's prediction.
        """
        index = sibling_backoff(episode.label_names, episode.scheme, present)
        return prototype_scores(query, prototypes[index], present[index]) / self.temperature

    def _loss(self, episode: Episode) -> torch.Tensor:
        support, query = self._embed_episode(episode)
        if self.dropout:
            support = dataclasses.replace(support, vectors=F.dropout(support.vectors, self.dropout, self.training))
            query = dataclasses.replace(query, vectors=F.dropout(query.vectors, self.dropout, self.training))
        protos, present = self.prototypes(support, episode)
        cross_entropy = prototypical_loss(query.vectors, query.labels, protos, present)
        logits = self.policy_logits(query.vectors, protos, present, episode)
        surrogate, self.last_policy = policy_surrogate(
            logits, [sentence.tags for sentence in episode.query], query.sentence - len(episode.support),
            query.position, episode.label_names, episode.scheme, samples=self.samples, baseline=self.baseline,
        )
        return cross_entropy - self.rl_weight * surrogate
