"""Learning to optimise, 2: a learned update rule (after Andrychowicz et al., 2016; Ravi and Larochelle, 2017).

Meta-SGD learns one number per weight; a learned optimiser learns a
*function* from what it sees about a weight to the step it takes. Here it
is a small network ``m_φ`` applied to every coordinate independently (the
coordinate-wise design of Andrychowicz et al., which makes the same ``φ``
serve weights of any shape). For a coordinate with gradient ``g`` at inner
step ``t`` of ``T`` the input is

    u = (log(|g| + ε) / p clipped to [-1, 1],  sign(g),  t / T)

(a simplification of the gradient preprocessing of Andrychowicz et al.,
appendix A, with ``p = 10``: they feed ``(-1, e^p g)`` instead of the clipped
log and the sign when ``|g| < e^{-p}``, so their network can still tell
tiny gradients apart, which this one cannot below about ``4.5e-5``), the
network gives two numbers ``(a, b)``, and the step is

    θ' = θ - α (e^a g + b · rms(g)),

where ``rms(g)`` is the root-mean-square gradient of the weight tensor (a
constant that puts ``b`` on the gradient's scale). The last layer starts at
zero, so before meta-training the rule *is* SGD with rate ``α``; from there
the outer loop can learn per-coordinate step sizes that depend on the
gradient's size, momentum-free sign steps (``b``), or step-dependent
schedules. As Andrychowicz et al. do, the gradients fed to the network are
treated as constants in the outer loop (``first_order=True`` by default):
``φ`` gets the gradient through the steps it produced, exact for one inner
step; with several, how a step changes the *later gradients* is dropped.

Ravi and Larochelle (2017) use an LSTM with per-coordinate state, which
can express momentum; the stateless network here cannot, which is the
price of its small size (see exercise in chapter 3.3).

Taught in: chapter 3.3 (Learning to optimise).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..encoders import Encoder
from ..inner_loop import Params
from .maml import GradientLearner

__all__ = ["CoordinateRule", "LearnedOptimizer"]


class CoordinateRule(nn.Module):
    """The coordinate-wise network: ``(n, 3)`` features -> ``(n, 2)`` = (log-scale ``a``, offset ``b``).

    Arguments:
        hidden (int, default 16): hidden units.
        p (float, default 10): the preprocessing constant.
        device, dtype: where and in what dtype to create the weights (default: torch's defaults).

    Example:
        >>> rule = CoordinateRule()
        >>> rule.step(torch.tensor([1.0, -2.0]), step=0, steps=1, lr=0.1)  # starts as SGD: -lr * g
        tensor([-0.1000,  0.2000], grad_fn=<NegBackward0>)
    """

    def __init__(self, hidden: int = 16, p: float = 10.0, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.p = p
        factory = {"device": device, "dtype": dtype}
        self.net = nn.Sequential(nn.Linear(3, hidden, **factory), nn.Tanh(), nn.Linear(hidden, 2, **factory))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def features(self, g: torch.Tensor, step: int, steps: int) -> torch.Tensor:
        flat = g.reshape(-1, 1)
        magnitude = (torch.log(flat.abs() + 1e-20) / self.p).clamp(-1.0, 1.0)
        when = torch.full_like(flat, step / max(steps, 1))
        return torch.cat([magnitude, torch.sign(flat), when], dim=1)

    def step(self, g: torch.Tensor, *, step: int, steps: int, lr: float) -> torch.Tensor:
        """The update ``Δθ`` (to add) for a gradient tensor ``g``."""
        out = self.net(self.features(g, step, steps))
        a, b = out[:, 0].reshape(g.shape), out[:, 1].reshape(g.shape)
        rms = torch.sqrt((g.detach() ** 2).mean() + 1e-20)
        return -(lr * (torch.exp(a) * g + b * rms))


class LearnedOptimizer(GradientLearner):
    """A gradient learner whose inner steps come from a meta-learned :class:`CoordinateRule`.

    Arguments:
        encoder: the word encoder.
        hidden (int, default 16): the rule's hidden units.
        **options: as :class:`~metalearn_nlp.learners.maml.GradientLearner` (default
            ``first_order=True``, ``adapt_layers=1``: the rule runs on every coordinate at
            every step, so it is kept to the top layer and the head by default).

    References:
        Andrychowicz et al. (2016), Learning to learn by gradient descent by gradient descent,
        NeurIPS. Ravi and Larochelle (2017), Optimization as a Model for Few-Shot Learning, ICLR.
    """

    name = "learned_optimizer"

    def __init__(self, encoder: Encoder, *, hidden: int = 16, **options: Any) -> None:
        options.setdefault("first_order", True)
        options.setdefault("adapt_layers", 1)
        super().__init__(encoder, **options)
        # initialised on the CPU (the same start on every device for a given seed), then moved
        self.rule = CoordinateRule(hidden, device="cpu").to(device=encoder.device, dtype=self.functional.dtype)
        self.hidden = hidden

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "hidden": self.hidden}

    def _update(self, params: Params, grads: Params, step: int) -> Params:
        steps = max(self.inner_steps, self.adapt_steps, 1)
        return {n: p + self.rule.step(grads[n], step=step, steps=steps, lr=self.inner_lr) for n, p in params.items()}

