"""A functional inner loop for gradient-based meta-learning on a transformer encoder.

MAML and its relatives adapt a copy of the weights to each task with a few
gradient steps on the support set, then score the adapted weights on the
query set. Written with ``torch.func.functional_call`` the adapted weights
are a plain dictionary of tensors ``{name: tensor}`` computed from the
learner's parameters, so

* the learner's own weights are never touched (no ``deepcopy``, no in-place
  surgery): ``adapt`` is a pure function of the parameters and the support set;
* second-order MAML is exact: each inner step ``θ' = θ - α ∇L_S(θ)`` keeps
  its graph (``create_graph=True``), so the query loss differentiates
  through the inner gradients (Hessian-vector products included);
* first-order MAML is the same code with the inner gradients detached: then
  ``∂θ'/∂θ = I`` and the outer gradient is ``∇L_Q(θ')``, applied to ``θ``.

**Which weights adapt.** :class:`FunctionalEncoder` cuts the encoder at a
layer boundary. Everything below the cut (the *trunk*) is run once per
batch: its output does not depend on the adapted weights, so recomputing it
at every inner step would be wasted work (this is exactly where this
package is faster than wrapping the whole model in ``higher`` or
``torchopt``). The top ``adapt_layers`` transformer layers are then run
functionally with the adapted weights. ``adapt_layers=0`` adapts no encoder
layer (the head only: ANIL); ``"all"`` adapts every encoder weight,
embeddings included, and runs the whole model functionally.

**Attention and double backward.** PyTorch's fused scaled-dot-product
attention kernels have no double backward on the CPU; :func:`math_attention`
selects the plain ("math") implementation while a graph of the gradient is
built. The learners in :mod:`metalearn_nlp.learners.maml` use it
automatically.

**Memory.** Second-order MAML keeps the graph of every inner step.
``checkpoint=True`` recomputes each adapted layer's activations in the
backward pass instead of storing them (``torch.utils.checkpoint``,
non-reentrant, which supports gradients of gradients).

Taught in: chapter 3.2 (MAML and its first-order relatives); chapter 4.2
(the meta-gradient, derived and checked); chapter 5.3 (MAML for few-shot NER).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint as _checkpoint

from .data.collate import Batch
from .encoders import Encoder, WordVectors, eval_mode, pool_words

__all__ = [
    "FunctionalEncoder",
    "InnerLoopResult",
    "Params",
    "Trunk",
    "inner_loop",
    "math_attention",
    "sgd_step",
]

#: Adapted weights: parameter name -> tensor (with or without a graph to the meta-parameters).
Params = dict[str, torch.Tensor]


@contextlib.contextmanager
def math_attention(enabled: bool = True) -> Iterator[None]:
    """Use the plain ("math") scaled-dot-product attention inside the block.

    The fused SDPA kernels (flash, memory-efficient) cannot be differentiated
    twice on the CPU; the math kernel can, and gives the same values.

    Arguments:
        enabled (bool, default True): False makes this a no-op.
    """
    if not enabled:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


class _StopForward(Exception):
    """Raised by a pre-hook to stop a forward pass at the cut."""


@dataclass
class Trunk:
    """The output of the encoder below the cut, for one batch (computed once, reused at every inner step).

    Attributes:
        batch: the collated batch.
        hidden: ``(B, T, H)`` the input of the first adapted layer (or, when no
            layer adapts, the last hidden state); None when every weight adapts.
        args, kwargs: the other arguments the model passed to that layer
            (attention mask, ...), captured from the model's own forward pass.
    """

    batch: Batch
    hidden: torch.Tensor | None
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class FunctionalEncoder:
    """An encoder cut into a trunk (run once) and adapted top layers (run functionally).

    Arguments:
        encoder: the learner's ``Encoder`` (its weights are read, never changed).
        adapt_layers (int | "all", default 2): how many top transformer layers
            adapt; 0 = none (head only, ANIL); ``"all"`` = every weight of the
            encoder, embeddings included.
        checkpoint (bool, default False): recompute adapted layers in the
            backward pass instead of storing their activations.

    Attributes:
        names: the encoder parameter names that adapt (as in ``encoder.model.named_parameters()``).

    Example:
        >>> fenc = FunctionalEncoder(encoder, adapt_layers=2)  # doctest: +SKIP
        >>> trunk = fenc.trunk(encoder.collate(sentences, episode))  # doctest: +SKIP
        >>> words = fenc.words(trunk, fenc.initial_params())  # same vectors as encoder.encode  # doctest: +SKIP
    """

    def __init__(self, encoder: Encoder, adapt_layers: int | str = 2, *, checkpoint: bool = False) -> None:
        self.encoder = encoder
        self.checkpoint = checkpoint
        model = encoder.model
        if adapt_layers == "all":
            self.first = None
            self.layers: list[nn.Module] = []
            self.prefixes: list[str] = []
            self.names = [name for name, _ in model.named_parameters() if not name.startswith("pooler.")]
        elif adapt_layers == 0 and not isinstance(adapt_layers, bool):  # the head only: any encoder will do
            self.first, self.layers, self.prefixes, self.names = 0, [], [], []
        else:
            layers = encoder.layers
            if isinstance(adapt_layers, bool) or not isinstance(adapt_layers, int) or not 0 <= adapt_layers <= len(layers):
                raise ValueError(
                    f"adapt_layers must be 'all' or an int in 0..{len(layers)} (the encoder has {len(layers)} "
                    f"layers), got {adapt_layers!r}"
                )
            stack_name = next(name for name, module in model.named_modules() if module is layers)
            self.first = len(layers) - adapt_layers
            self.layers = list(layers[self.first :])
            self.prefixes = [f"{stack_name}.{i}." for i in range(self.first, len(layers))]
            self.names = [
                name for name, _ in model.named_parameters() if any(name.startswith(p) for p in self.prefixes)
            ]
        self.adapt_layers = adapt_layers
        self._checked = False

    def initial_params(self) -> Params:
        """The encoder's own adapted weights, as a dictionary (the same tensors: gradients reach them)."""
        params = dict(self.encoder.model.named_parameters())
        return {name: params[name] for name in self.names}

    def trunk(self, batch: Batch) -> Trunk:
        """Run the encoder up to the cut (with a graph to its weights when grad mode is on and they train)."""
        batch = batch.to(self.encoder.device)
        if self.layers and not self._checked:
            self._check_cut(batch)
        adapted = set(self.names)
        frozen = not any(p.requires_grad for n, p in self.encoder.model.named_parameters() if n not in adapted)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self._trunk(batch)

    def _check_cut(self, batch: Batch) -> None:
        """Once: the trunk and the adapted layers with the encoder's own weights must give its last hidden state.

        Catches models that do something after their layer stack (a final LayerNorm) or pass each layer
        different arguments, which the cut cannot reproduce.
        """
        with torch.no_grad(), eval_mode(self.encoder.model):
            expected = self.encoder.hidden_states(batch)
            got = self.hidden(self._trunk(batch), self.initial_params())
        scale = float(expected.abs().max()) or 1.0
        tolerance = (1e-4 if expected.dtype in (torch.float32, torch.float64) else 3e-2) * scale
        if got.shape != expected.shape or not torch.allclose(got, expected, atol=tolerance, rtol=0.0):
            raise ValueError(
                f"{type(self.encoder.model).__name__}: running layers {self.first}.. functionally does not "
                "reproduce the model's last hidden state (does it apply a final norm, or pass each layer its "
                "own arguments?). Use adapt_layers='all' or adapt_layers=0 with this encoder"
            )
        self._checked = True

    def _trunk(self, batch: Batch) -> Trunk:
        if self.first is None:
            return Trunk(batch, None)
        if not self.layers:
            return Trunk(batch, self.encoder.hidden_states(batch))
        captured: dict[str, Any] = {}

        def stop(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            captured["args"], captured["kwargs"] = args, kwargs
            raise _StopForward

        handle = self.layers[0].register_forward_pre_hook(stop, with_kwargs=True)
        try:
            self.encoder.hidden_states(batch)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "args" not in captured:
            raise RuntimeError(f"{type(self.encoder.model).__name__} never called layer {self.first}")
        args, kwargs = captured["args"], captured["kwargs"]
        return Trunk(batch, args[0], tuple(args[1:]), dict(kwargs))

    def hidden(self, trunk: Trunk, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, T, H)`` last hidden states with the adapted weights ``params``."""
        if self.first is None:
            batch = trunk.batch
            out = functional_call(
                self.encoder.model, {name: params[name] for name in self.names},
                kwargs={"input_ids": batch.input_ids, "attention_mask": batch.attention_mask},
            )  # fmt: skip
            return out.last_hidden_state
        hidden = trunk.hidden
        assert hidden is not None
        for layer, prefix in zip(self.layers, self.prefixes):
            local = {name[len(prefix) :]: params[name] for name in self.names if name.startswith(prefix)}
            hidden = self._layer(layer, local, hidden, trunk)
        return hidden

    def _layer(self, layer: nn.Module, local: Params, hidden: torch.Tensor, trunk: Trunk) -> torch.Tensor:
        keys = list(local)

        def run(h: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
            out = functional_call(layer, dict(zip(keys, values)), (h, *trunk.args), trunk.kwargs)
            return out[0] if isinstance(out, tuple) else out

        if self.checkpoint and torch.is_grad_enabled():
            return _checkpoint(run, hidden, *local.values(), use_reentrant=False)
        return run(hidden, *local.values())

    def words(self, trunk: Trunk, params: Mapping[str, torch.Tensor]) -> WordVectors:
        """Word vectors with the adapted weights, pooled as the encoder pools (float32, or float64 if the encoder is)."""
        hidden = self.hidden(trunk, params)
        words = pool_words(hidden, trunk.batch, self.encoder.pooling, self.encoder._special_ids)
        return WordVectors(words.vectors.to(self.dtype), words.sentence, words.position, words.labels, words.lengths)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of word vectors and heads: float64 for a float64 encoder, else float32."""
        return torch.float64 if next(self.encoder.model.parameters()).dtype == torch.float64 else torch.float32


def sgd_step(params: Params, grads: Mapping[str, torch.Tensor], lr: float | Mapping[str, torch.Tensor]) -> Params:
    """``θ - α ∇``: one plain gradient step (``lr`` a number, or one tensor per parameter: Meta-SGD).

    Example:
        >>> sgd_step({"w": torch.tensor(1.0)}, {"w": torch.tensor(0.5)}, 0.1)
        {'w': tensor(0.9500)}
    """
    # torch.add(p, g, alpha=-lr) rather than p - lr * g: the same value, but its backward passes the outer
    # gradient through unchanged instead of negating a copy of it (measurably faster for big embeddings)
    if isinstance(lr, Mapping):
        return {name: torch.addcmul(p, lr[name], grads[name], value=-1.0) for name, p in params.items()}
    return {name: torch.add(p, grads[name], alpha=-lr) for name, p in params.items()}


@dataclass
class InnerLoopResult:
    """What :func:`inner_loop` returns.

    Attributes:
        params: the adapted weights after the last step.
        losses: the support loss before each step (floats).
    """

    params: Params
    losses: list[float]


def inner_loop(
    loss_fn: Callable[[Params], torch.Tensor],
    params: Params,
    *,
    steps: int,
    update: Callable[[Params, Params, int], Params],
    first_order: bool = False,
) -> InnerLoopResult:
    """Take ``steps`` gradient steps on ``loss_fn`` from ``params``, functionally.

    Arguments:
        loss_fn: maps adapted weights to the support loss (a scalar).
        params: the starting weights; tensors that require grad (they may
            be the meta-parameters themselves, or functions of them).
        steps (int): inner steps (0 returns ``params`` unchanged).
        update: ``update(params, grads, step) -> params``, e.g.
            ``lambda p, g, t: sgd_step(p, g, 0.01)``; Meta-SGD and the learned
            optimiser supply their own.
        first_order (bool, default False): detach the inner gradients (FOMAML).
            Otherwise they keep their graph (``create_graph=True``) and the
            outer gradient is MAML's exact second-order one, whenever grad
            mode is on.

    Returns:
        An ``InnerLoopResult``.

    Raises:
        ValueError: a negative ``steps``.

    Example:
        >>> w = torch.tensor(2.0, requires_grad=True)
        >>> out = inner_loop(lambda p: p["w"] ** 2, {"w": w}, steps=1, update=lambda p, g, t: sgd_step(p, g, 0.25))
        >>> out.params["w"]  # 2 - 0.25 * 4
        tensor(1., grad_fn=<AddBackward0>)
    """
    if steps < 0:
        raise ValueError(f"inner steps must be >= 0, got {steps}")
    outer_graph = torch.is_grad_enabled()
    create_graph = not first_order and outer_graph
    losses: list[float] = []
    for step in range(steps):
        with torch.enable_grad():
            loss = loss_fn(params)
            names = [name for name, p in params.items() if p.requires_grad]
            grads = torch.autograd.grad(
                loss, [params[n] for n in names], create_graph=create_graph, retain_graph=outer_graph,
                allow_unused=True,
            )  # retain: the starting weights' own graph (e.g. a head built from support prototypes) is still needed
        losses.append(float(loss.detach()))
        unused = [n for n, g in zip(names, grads) if g is None]
        if unused:  # a weight that cannot reach the loss would silently never move: say so
            raise ValueError(
                f"inner step {step}: the support loss does not depend on {unused[:5]}"
                f"{' and more' if len(unused) > 5 else ''}. Leave them out of params, or, if they were made "
                "under torch.no_grad(), create them as leaves: p.detach().requires_grad_()"
            )
        full = dict(zip(names, grads))
        if not create_graph:
            full = {n: g.detach() for n, g in full.items()}
        moving = {n: params[n] for n in names}
        with torch.set_grad_enabled(outer_graph):
            stepped = update(moving, full, step)
        if not outer_graph:  # plain adaptation (no meta-gradient wanted): fresh leaves for the next step
            stepped = {n: p.detach().requires_grad_(True) for n, p in stepped.items()}
        params = {**params, **stepped}
    return InnerLoopResult(params, losses)
