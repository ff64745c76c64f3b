"""Reptile (Nichol, Achiam and Schulman, 2018): move the initialisation toward the adapted weights.

Reptile runs the same inner loop as MAML (plain SGD on the support set,
:class:`~metalearn_nlp.learners.maml.GradientLearner`) but needs no query
loss gradient at all: its outer update is ``θ ← θ + ε (θ' - θ)``, the step
from the initialisation to the task's adapted weights. Nichol et al. show
that, to second order in the inner learning rate, this direction is the
sum of a term that minimises the expected task loss and a term that
maximises the inner product of gradients of different batches of the same
task (which is what MAML's second-order term does too).

To run under the same ``meta_train`` loop as every other learner (AdamW,
warm-up, clipping), ``loss`` returns a scalar whose *value* is the query
loss after adaptation (for monitoring) and whose *gradient* is ``θ - θ'``:
``L = L_Q(θ').detach() + ½ Σ ||θ - sg(θ')||²  - (same).detach()``. With SGD
at learning rate ε this is exactly Reptile's update; with Adam it is the
"Reptile with Adam" variant Nichol et al. also report. The shared entity
row of the learned head gets the mean of the entity rows' steps, so its
update does not grow with the number of ways.

Reptile's update is defined only for the weights that adapt: encoder
layers below the cut (``adapt_layers``) get no gradient and stay as they
are. Freeze them (``freeze=L - adapt_layers``, the parameter-efficient
setting) or adapt every layer (``adapt_layers="all"``). One exception: with
``head_init="prototypes"`` the head's starting point is computed by the
whole encoder, so the head's step also reaches the layers below the cut.

Taught in: chapter 3.2 (MAML and its first-order relatives).
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import Episode
from ..encoders import Encoder
from ..inner_loop import Params
from .maml import GradientLearner, head_logits, masked_cross_entropy

__all__ = ["Reptile", "reptile_surrogate"]


def reptile_surrogate(start: Params, adapted: Params, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``½ Σ w ||θ - sg(θ')||²``: a scalar whose gradient w.r.t. ``start`` is ``w (θ - θ')``.

    Arguments:
        start: θ, with a graph to the meta-parameters.
        adapted: θ' (detached here).
        weights: optional per-name weights broadcast against the tensors (default 1).

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> reptile_surrogate({"w": w}, {"w": torch.tensor([0.0, 0.0])}).backward()
        >>> w.grad
        tensor([1., 2.])
    """
    total = torch.zeros((), device=next(iter(start.values())).device)
    for name, theta in start.items():
        diff = theta - adapted[name].detach()
        weight = 1.0 if weights is None or name not in weights else weights[name]
        total = total + 0.5 * (weight * diff * diff).sum()
    return total


class Reptile(GradientLearner):
    """Reptile on the top layers and the head (see the module docstring and :class:`GradientLearner`).

    Arguments:
        encoder: the word encoder.
        inner_steps (int, default 5): SGD steps on the support set (Reptile needs several: with one
            step its update is plain multi-task training).
        **options: as :class:`GradientLearner` (``first_order`` is implied).
    """

    name = "reptile"

    def __init__(self, encoder: Encoder, **options: Any) -> None:
        options.setdefault("inner_steps", 5)
        options["first_order"] = True
        super().__init__(encoder, **options)

    def _loss(self, episode: Episode) -> torch.Tensor:
        support, query = self._batches(episode)
        start = self.functional.initial_params()
        n_labels = len(episode.label_names)
        trunk = self.functional.trunk(support)
        with torch.no_grad():  # the inner loop needs no graph to θ: Reptile's gradient is θ - θ'
            adapted, present, _ = self._inner(episode, trunk, start, self.inner_steps, True)
            words = self.functional.words(self.functional.trunk(query), adapted)
            query_loss = masked_cross_entropy(head_logits(words.vectors, adapted), words.labels, present)
        initial = {**start, **self._initial_head(n_labels, lambda p: self.functional.words(trunk, p), start)}
        weights = None
        if self.head_init == "learned" and n_labels > 2:
            row = torch.full((n_labels, 1), 1.0 / (n_labels - 1), device=query_loss.device)
            row[0] = 1.0
            weights = {"head.weight": row, "head.bias": row[:, 0]}
        surrogate = reptile_surrogate(initial, adapted, weights)
        return query_loss.detach() + surrogate - surrogate.detach()
