"""Adversarial training with the fast gradient method (FGM) on word embeddings, around any learner.

FGM (Miyato, Dai and Goodfellow, 2017) trains on the clean input *and* on
the input pushed a small step ``epsilon`` in the direction that raises the
loss most. Tokens are discrete, so the push is applied to the output of the
word-embedding layer, ``e``:

1. compute the clean loss ``L(e)`` and its gradient ``g = dL/de`` (one
   tensor per forward pass through the encoder, normalised together);
2. perturb: ``r = epsilon * g / ||g||``, the first-order worst case of
   ``L(e + r)`` over ``||r|| <= epsilon``;
3. recompute the loss at ``e + r``;
4. train on ``(L(e) + L(e + r)) / 2``.

The common implementation adds ``r`` to the embedding *weights*, runs the
second pass and then restores them; here ``r`` is added to the embedding
layer's *output* with a forward hook that is removed after the second pass,
so no weight is ever changed and there is nothing to restore, even when the
loss raises. The embeddings may be frozen: the gradient is taken with
respect to their output, not their weights.

:func:`fgm_loss` is the functional form, for any learner with ``loss``;
:class:`FGM` is the same as a learner (registered as ``"fgm"``), so
``Trainer`` and ``meta_train`` use it unchanged. FGM changes meta-training
only: adaptation and prediction are the base learner's.

Taught in: chapter 9 (FAQ: overfitting remedies, measured).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..data.episode import Episode
from ..encoders import Encoder
from .base import Learner, NotMetaTrainableError, Predictor

__all__ = ["FGM", "fgm_loss"]


def _embedding_layer(learner: Any) -> nn.Module:
    encoder = getattr(learner, "encoder", None)
    model = getattr(encoder, "model", None)
    if model is None or not hasattr(model, "get_input_embeddings"):
        raise TypeError(f"fgm_loss needs a learner whose .encoder.model has get_input_embeddings() (a Hugging Face "
                        f"model), got {type(learner).__name__}")
    return model.get_input_embeddings()


def fgm_loss(learner: Any, episode: Episode, *, epsilon: float = 1.0) -> torch.Tensor:
    """The FGM training loss ``(L(e) + L(e + r)) / 2`` of ``learner.loss`` on one episode.

    Arguments:
        learner: any learner with ``loss(episode)`` and a Hugging Face ``encoder.model``.
        episode: a training episode.
        epsilon (float, default 1.0): the norm of the perturbation ``r``, over
            all the embedding outputs of the episode together (0: the clean loss).

    Returns:
        A scalar with a graph to the learner's trainable weights.

    Raises:
        ValueError: ``epsilon`` is negative or not finite, or the loss does
            not depend on the embedding layer's output (vectors from a cache).
        RuntimeError: the second pass ran the embedding layer a different
            number of times, or on other shapes, than the first.

    Example:
        >>> loss = fgm_loss(learner, episode, epsilon=1.0)  # doctest: +SKIP
        >>> loss.backward()  # doctest: +SKIP

    References:
        Miyato, Dai and Goodfellow (2017), Adversarial Training Methods for
        Semi-Supervised Text Classification, ICLR.

    Taught in: chapter 9.
    """
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not math.isfinite(epsilon) \
            or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    layer = _embedding_layer(learner)
    outputs: list[torch.Tensor] = []

    def capture(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not output.requires_grad:  # frozen embeddings: still differentiate with respect to their output
            output = output.detach().requires_grad_(True)
        outputs.append(output)
        return output

    handle = layer.register_forward_hook(capture)
    try:
        clean = learner.loss(episode)
    finally:
        handle.remove()
    if epsilon == 0:
        return clean
    grads = torch.autograd.grad(clean, outputs, retain_graph=True, allow_unused=True) \
        if outputs and clean.requires_grad else []
    if all(g is None for g in grads):  # FGM would silently be plain training
        raise ValueError(f"FGM: the loss of {type(learner).__name__} does not depend on the output of the "
                         "encoder's embedding layer (vectors read from a cache, or computed without "
                         "gradients), so there is nothing to perturb; use an encoder that runs its "
                         "embeddings with gradients (not CachedEncoder or a frozen vector cache)")
    grads = [torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    if not torch.isfinite(norm) or norm.item() == 0.0:
        return clean
    deltas = [(epsilon * g / norm).detach().to(o.dtype) for o, g in zip(outputs, grads)]
    calls = iter(range(len(deltas)))

    def perturb(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        i = next(calls, None)
        if i is None or deltas[i].shape != output.shape:
            raise RuntimeError("fgm_loss: the perturbed pass embedded different inputs than the clean pass "
                               f"(call {i}, shape {tuple(output.shape)}); the learner's loss must be deterministic "
                               "in its inputs")
        return output + deltas[i]

    handle = layer.register_forward_hook(perturb)
    try:
        adversarial = learner.loss(episode)
    finally:
        handle.remove()
    return (clean + adversarial) / 2


class FGM(Learner):
    """A meta-trainable learner, meta-trained with FGM's adversarial embeddings (:func:`fgm_loss`).

    Arguments:
        encoder: the word encoder (shared with the base learner).
        base (str | Learner, default ``"protonet"``): the base learner's
            registry name (built on ``encoder`` with ``base_options``), or a
            learner built on this same encoder.
        epsilon (float, default 1.0): the perturbation's norm.
        batch_size (int, default 32): sentences per forward pass when predicting.
        **base_options: options of the base learner (e.g. ``dropout=0.1``).

    Raises:
        NotMetaTrainableError: the base learner is not meta-trainable.
        ValueError: ``epsilon`` < 0, or a base learner built on another encoder.

    Example:
        >>> learner = FGM(load_encoder(freeze=4), base="protonet", epsilon=1.0)  # doctest: +SKIP
        >>> meta_train(learner, sampler, steps=100)  # doctest: +SKIP

    Taught in: chapter 9.
    """

    name = "fgm"

    def __init__(self, encoder: Encoder, *, base: str | Learner = "protonet", epsilon: float = 1.0,
                 batch_size: int = 32, **base_options: Any) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
            raise ValueError(f"epsilon must be a number >= 0, got {epsilon!r}")
        if isinstance(base, Learner):
            if base.encoder is not encoder or base_options:
                raise ValueError("FGM(base=<learner>) needs the learner's own encoder and no base options: "
                                 "use FGM.wrap(learner, epsilon=...)")
            learner = base
        else:
            from . import get_learner

            learner = get_learner(base, encoder, batch_size=batch_size, **base_options)
        if not learner.meta_trainable:
            raise NotMetaTrainableError(f"FGM needs a meta-trainable base learner; {learner.name!r} is not")
        self.base = learner
        self.epsilon = float(epsilon)
        self.schemes = learner.schemes  # type: ignore[misc]
        # the encoder is registered twice (self.encoder and self.base.encoder): keep one copy in the state dict
        self._register_state_dict_hook(_drop_base_encoder)
        self.register_load_state_dict_pre_hook(_copy_encoder_to_base)

    @classmethod
    def wrap(cls, learner: Learner, *, epsilon: float = 1.0) -> FGM:
        """``learner`` (weights shared, not copied), meta-trained with FGM."""
        return cls(learner.encoder, base=learner, epsilon=epsilon, batch_size=learner.batch_size)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"base": self.base.name, "epsilon": self.epsilon, **self.base._hyperparameters()}

    def check_episode(self, episode: Episode) -> None:
        self.base.check_episode(episode)

    def _loss(self, episode: Episode) -> torch.Tensor:
        return fgm_loss(self.base, episode, epsilon=self.epsilon)

    def _adapt(self, support: Episode) -> Predictor:
        return self.base._adapt(support)


def _drop_base_encoder(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + "base.encoder.")]:
        del state[key]


def _copy_encoder_to_base(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + "encoder.")]:
        state.setdefault(prefix + "base." + key[len(prefix):], state[key])
