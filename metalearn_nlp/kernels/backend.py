"""Which backend runs the fused kernels: Triton on CUDA, Triton's interpreter on CPU, or PyTorch.

The decision has two parts:

* **At definition time** (when :mod:`metalearn_nlp.kernels` is first imported) we
  record whether Triton imports and whether ``TRITON_INTERPRET=1`` was set.
  Triton reads that variable when a ``@triton.jit`` function is *decorated*,
  so setting it later has no effect on kernels that already exist.
* **At call time** each op looks at its input tensor: a CUDA tensor runs the
  compiled Triton kernel; a CPU tensor runs the interpreted kernel if the
  interpreter was on at definition time; anything else uses the PyTorch
  reference.

``METALEARN_NLP_KERNELS=torch`` forces the PyTorch reference everywhere (useful
to compare, or on a platform where Triton misbehaves).

Taught in: chapter 4.1 (Empirical risk and its gradient), section "A first fused kernel".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

TRITON = "triton"
INTERPRETER = "triton-interpreter"
TORCH = "torch"


@dataclass(frozen=True)
class BackendInfo:
    """What was decided when the kernels were defined.

    Attributes:
        triton_version: the imported Triton's version, or ``None`` if it does not import.
        interpret: whether ``TRITON_INTERPRET=1`` was set before the kernels were decorated.
        forced_torch: whether ``METALEARN_NLP_KERNELS=torch`` asks for the reference everywhere.
        import_error: why Triton is unavailable, when it is.
    """

    triton_version: str | None
    interpret: bool
    forced_torch: bool
    import_error: str | None = None


def _detect() -> BackendInfo:
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    forced = os.environ.get("METALEARN_NLP_KERNELS", "").lower() == TORCH
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything
        return BackendInfo(None, interpret, forced, f"{type(exc).__name__}: {exc}")
    return BackendInfo(triton.__version__, interpret, forced)


INFO: BackendInfo = _detect()


def backend_for(tensor: torch.Tensor) -> str:
    """The backend an op would use for ``tensor``: ``"triton"``, ``"triton-interpreter"`` or ``"torch"``."""
    if INFO.forced_torch or INFO.triton_version is None:
        return TORCH
    if tensor.is_cuda and not INFO.interpret:
        return TRITON
    if tensor.device.type == "cpu" and INFO.interpret:
        return INTERPRETER
    return TORCH


def describe() -> str:
    """One line saying which backend CPU and CUDA tensors get, and why."""
    cpu = backend_for(torch.empty(0, device="cpu"))
    if INFO.triton_version is None:
        why = f"Triton unavailable ({INFO.import_error})"
    elif INFO.forced_torch:
        why = "METALEARN_NLP_KERNELS=torch"
    else:
        why = f"Triton {INFO.triton_version}, TRITON_INTERPRET={'1' if INFO.interpret else '0'} at definition"
    cuda = "n/a (no CUDA device)"
    if torch.cuda.is_available():
        cuda = TRITON if (INFO.triton_version and not INFO.interpret and not INFO.forced_torch) else TORCH
    return f"CPU tensors -> {cpu}; CUDA tensors -> {cuda}; {why}"
