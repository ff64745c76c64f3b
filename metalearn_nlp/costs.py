"""Measure what one step costs: wall time and the memory autograd keeps for the backward pass.

Peak memory on a CPU is hard to read from inside a process (the resident set
size only grows, and other allocations mix in). The memory that *scales* with
a model's depth and the input's length is the activations autograd saves for
the backward pass, and those can be counted exactly:
:func:`saved_tensor_bytes` runs a function under
``torch.autograd.graph.saved_tensors_hooks`` and adds up the bytes of every
distinct storage saved. It is deterministic (the same model and input give the
same number on every machine), which wall time is not. A forward pass under
``torch.no_grad`` saves nothing, which is the point of adapting without
gradients.

Taught in: chapter 8 (Trends and challenges, measured).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import copy

import torch

__all__ = ["learner_costs", "saved_tensor_bytes", "time_call", "truncated"]


def saved_tensor_bytes(fn: Callable[[], Any], *, exclude: Iterable[torch.Tensor] = ()) -> tuple[Any, int]:
    """Run ``fn()`` and count the bytes of the tensors autograd saves for backward.

    Each storage is counted once, however many saved tensors view it.

    Arguments:
        fn: a function of no arguments (a forward pass, a loss).
        exclude (tensors, default none): storages not to count, such as a
            model's weights, which autograd saves but which exist anyway;
            what is left is the activation memory of the pass.

    Returns:
        ``(fn's result, bytes)``.

    Raises:
        TypeError: ``fn`` is not callable.

    Example:
        >>> w, v = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
        >>> saved_tensor_bytes(lambda: (w * torch.ones(3)).sum())[1]  # d/dw needs the constant: 3 floats
        12
        >>> saved_tensor_bytes(lambda: (w * v).sum())[1]  # both need gradients: each saves the other
        24
        >>> saved_tensor_bytes(lambda: (w * v).sum(), exclude=[w])[1]  # w is a weight: only v counts
        12

    Taught in: chapter 8 (Trends and challenges, measured).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (a function of no arguments), got {type(fn).__name__}")
    seen: dict[int, int] = {}
    skip = {tensor.untyped_storage().data_ptr() for tensor in exclude}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(seen.values())


def time_call(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` calls.

    Arguments:
        fn: a function of no arguments.
        repeats (int, default 3): timed calls (>= 1).
        warmup (int, default 1): untimed calls first (>= 0).

    Raises:
        ValueError: ``repeats < 1`` or ``warmup < 0``.

    Example:
        >>> time_call(lambda: sum(range(1000)), repeats=3) >= 0
        True

    Taught in: chapter 8 (Trends and challenges, measured).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_call needs repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def truncated(encoder: Any, layers: int) -> Any:
    """A deep copy of an :class:`~metalearn_nlp.encoders.Encoder` that keeps only its bottom ``layers`` layers.

    Arguments:
        encoder: the encoder (left unchanged).
        layers: how many transformer layers to keep, ``1 <= layers <= L``.

    Returns:
        The shallower encoder (same tokenizer, embeddings and hidden size).

    Raises:
        ValueError: ``layers`` out of range, or the model's layers are not
            where BERT-style models keep them (``model.encoder.layer``).

    Example:
        >>> small = truncated(load_encoder(), 2)  # doctest: +SKIP
        >>> len(small.layers)  # doctest: +SKIP
        2

    Taught in: chapter 8 (Trends and challenges, measured).
    """
    stack = getattr(getattr(encoder.model, "encoder", None), "layer", None)
    if stack is None:
        raise ValueError(f"truncated: {type(encoder.model).__name__} has no model.encoder.layer list "
                         "(a BERT-style model is needed)")
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= len(stack):
        raise ValueError(f"layers must be an integer in 1..{len(stack)}, got {layers!r}")
    small = encoder.clone()
    small.model.encoder.layer = small.model.encoder.layer[:layers]
    small.model.config.num_hidden_layers = layers
    return small


def learner_costs(learner: Any, episode: Any, *, repeats: int = 1, warmup: int = 1) -> dict[str, float]:
    """Time and autograd memory of one learner's adaptation and meta-training step on one episode.

    * ``adapt_seconds``: ``learner.adapt(episode)`` (what a user waits for at test time).
    * ``meta_step_seconds``: ``learner.loss(episode)`` forward and backward (one
      episode of meta-training; the optimiser update is left out), for
      meta-trainable learners, else NaN.
    * ``meta_step_saved_mb``: MiB of activations autograd saves for that
      backward pass (:func:`saved_tensor_bytes`, the learner's own weights
      not counted), else NaN.

    Arguments:
        learner: a ``Learner``.
        episode: the episode.
        repeats, warmup: passed to :func:`time_call`.

    Returns:
        The three numbers, by name.

    Example:
        >>> learner_costs(ProtoNet(load_encoder()), episode)  # doctest: +SKIP
        {'adapt_seconds': ..., 'meta_step_seconds': ..., 'meta_step_saved_mb': ...}

    Taught in: chapter 8 (Trends and challenges, measured).
    """
    out = {"adapt_seconds": time_call(lambda: learner.adapt(episode), repeats=repeats, warmup=warmup),
           "meta_step_seconds": float("nan"), "meta_step_saved_mb": float("nan")}
    if getattr(learner, "meta_trainable", True):
        was_training = learner.training
        learner.train()

        def step() -> None:
            learner.loss(episode).backward()
            learner.zero_grad(set_to_none=True)

        try:
            out["meta_step_seconds"] = time_call(step, repeats=repeats, warmup=warmup)
            loss, saved = saved_tensor_bytes(lambda: learner.loss(episode), exclude=list(learner.parameters()))
            del loss
            out["meta_step_saved_mb"] = saved / 2**20
        finally:
            learner.train(was_training)
    return out
