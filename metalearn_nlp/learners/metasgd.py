"""Learning to optimise, 1: Meta-SGD (Li, Zhou, Chen and Li, 2017).

MAML meta-learns where the inner loop starts; Meta-SGD also meta-learns how
it moves. Every adapted weight ``θ_j`` gets its own inner learning rate
``α_j`` (a tensor of the same shape as the weight), and the inner step is

    θ'_j = θ_j - α_j ⊙ ∇_j L_S(θ),

with ``α`` trained in the outer loop together with ``θ`` through the query
loss. The gradient w.r.t. ``α_j`` is ``-∇_j L_S(θ) ⊙ ∇_{θ'_j} L_Q(θ')`` (for
one step): a learning rate grows where the support and query gradients
agree, and shrinks or turns negative where they disagree. ``α`` starts at
``inner_lr``. The episode's head has one row per label, and the number of
labels varies, so the head's rates are two rows (``O``, and one shared by
every entity label), like the head's learned starting point.

The learned rates are meta-parameters (``learner.learning_rates()`` gives
them by weight name); chapter 3.3 plots them per layer.

Taught in: chapter 3.3 (Learning to optimise).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..encoders import Encoder
from ..inner_loop import Params, sgd_step
from .maml import GradientLearner

__all__ = ["MetaSGD"]


def _key(name: str) -> str:
    return name.replace(".", "__")


class MetaSGD(GradientLearner):
    """MAML with a learned learning rate per adapted weight (see the module docstring).

    Arguments:
        encoder: the word encoder.
        **options: as :class:`~metalearn_nlp.learners.maml.GradientLearner`; ``inner_lr`` is
            the rates' starting value; ``first_order`` (default False) still trains the rates.

    References:
        Li, Zhou, Chen and Li (2017), Meta-SGD: Learning to Learn Quickly for Few-Shot Learning.
    """

    name = "metasgd"
    no_decay_prefixes = ("head_rows", "rates.", "head_rates")  # decay would pull matrix rates, not bias rates, to 0

    def __init__(self, encoder: Encoder, **options: Any) -> None:
        super().__init__(encoder, **options)
        params = self.functional.initial_params()
        self.rates = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.full_like(p, self.inner_lr)) for n, p in params.items()}
        )
        self.head_rates = nn.Parameter(torch.full((2, encoder.hidden_size + 1), self.inner_lr, dtype=self.functional.dtype,
                                                 device=encoder.device))

    def learning_rates(self) -> dict[str, torch.Tensor]:
        """The learned inner learning rates by weight name (the head's two rows as ``head.rows``)."""
        out = {n: self.rates[_key(n)].detach() for n in self.functional.names}
        out["head.rows"] = self.head_rates.detach()
        return out

    def _update(self, params: Params, grads: Params, step: int) -> Params:
        h = self.encoder.hidden_size
        rates = {n: self.rates[_key(n)] for n in params if not n.startswith("head.")}
        if "head.weight" in params:
            rows = self.head_rates[[0] + [1] * (params["head.weight"].shape[0] - 1)]
            rates["head.weight"], rates["head.bias"] = rows[:, :h], rows[:, h]
        return sgd_step(params, grads, rates)
