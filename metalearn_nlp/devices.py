"""Where and in what precision to run: ``resolve_device`` and ``autocast``.

**Devices.** Every learner follows its encoder: its own weights are created
on ``encoder.device`` and every tensor it makes on the way is created on the
device of the tensors it works with, so ``load_encoder(device=...)`` (or
``learner.to(device)``) is the one place a device is chosen.
:func:`resolve_device` turns what a user wrote (``"auto"``, ``"cuda"``,
``"cpu"``, ``"mps"``, ``"cuda:1"``) into a ``torch.device``, with a clear
error when the device asked for is absent::

    device = resolve_device("auto")        # cuda if available, else mps, else cpu
    encoder = load_encoder(device=device)

**Precision.** :func:`autocast` runs a block in mixed precision: the weights
(and their gradients, and the optimiser's state) stay float32, the "master
weights", while matrix products run in a 16-bit type. ``"bf16"`` (bfloat16)
has float32's range, so it needs no loss scaling and works on CPUs and recent
GPUs; ``"fp16"`` (float16) is CUDA only and, with its narrow range, needs a
``torch.amp.GradScaler`` around the optimiser step; ``"fp32"`` changes
nothing. Only the forward pass (the loss) goes inside the block::

    with autocast(device, "bf16"):
        loss = learner.loss(episode)
    loss.backward()                       # gradients are float32, like the weights

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch

__all__ = ["PRECISIONS", "autocast", "resolve_device"]

#: The precisions :func:`autocast` accepts.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` to run on, checked against what this machine has.

    Arguments:
        device (str | torch.device | None, default ``"auto"``): ``"auto"`` (or
            None) picks CUDA if available, else Apple's MPS if available, else
            the CPU; anything else is a device such as ``"cpu"``, ``"cuda"``,
            ``"cuda:1"`` or ``"mps"``.

    Returns:
        A ``torch.device``.

    Raises:
        ValueError: the device is not one PyTorch knows (the message names
            the value), or it is CUDA (MPS) and this machine has none (the
            message suggests ``--device cpu`` or ``auto``).
        TypeError: ``device`` is neither a string, a ``torch.device`` nor None.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto")  # doctest: +SKIP
        device(type='cuda')

    Taught in: chapter 5.4.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, str):
        try:
            resolved = torch.device(device.strip().lower())
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
            ) from error
    elif isinstance(device, torch.device):
        resolved = device
    else:
        raise TypeError(f"device must be a string, a torch.device or None, got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: CUDA is not available on this machine (no GPU, or a CPU-only PyTorch); "
                "use --device cpu, or --device auto to take the best device present"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0; use --device cuda or --device auto"
            )
    elif resolved.type == "mps" and not _mps_available():
        raise ValueError(
            f"device {device!r}: MPS (Apple GPU) is not available on this machine; "
            "use --device cpu, or --device auto to take the best device present"
        )
    return resolved


def autocast(device: torch.device | str, precision: str) -> ContextManager[Any]:
    """A context manager that runs its block in ``precision`` on ``device`` (mixed precision).

    Arguments:
        device (torch.device | str): where the block runs (its ``type``
            selects the autocast backend).
        precision (str): ``"fp32"`` (a no-op), ``"bf16"`` (bfloat16
            autocast; CPU and GPU) or ``"fp16"`` (float16 autocast; CUDA
            only, pair it with a ``torch.amp.GradScaler``).

    Returns:
        The context manager. Weights stay float32 inside it; autocast picks
        the ops that run in the 16-bit type (matrix products) and those
        kept in float32 (softmax, losses, reductions).

    Raises:
        ValueError: an unknown precision (the message lists
            :data:`PRECISIONS`), or ``"fp16"`` on a device that is not CUDA.

    Example:
        >>> layer = torch.nn.Linear(4, 2)
        >>> with autocast(torch.device("cpu"), "bf16"):
        ...     layer(torch.ones(1, 4)).dtype
        torch.bfloat16

    Taught in: chapter 5.4.
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError(
                f"precision 'fp16' needs a CUDA device, got {device.type!r}; use 'bf16' (CPU and recent "
                "GPUs) or 'fp32'"
            )
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, dtype=torch.bfloat16)
