"""Which backend runs each fused kernel: Triton on CUDA, Triton's interpreter on CPU, or PyTorch.

The decision has three parts:

* **At definition time** (when :mod:`metalearn_nlp.kernels` is first imported) we
  record whether Triton imports and whether ``TRITON_INTERPRET=1`` was set.
  Triton reads that variable when a ``@triton.jit`` function is *decorated*,
  so setting it later has no effect on kernels that already exist.
* **Per tensor** (:func:`backend_for`): a CUDA tensor *can* run the compiled
  Triton kernels; a CPU tensor can run the interpreted kernels if the
  interpreter was on at definition time; anything else uses the PyTorch
  reference.
* **Per call** (:func:`choose`), the rule: a kernel runs only where it was
  measured faster than PyTorch.

  - CPU: always the PyTorch reference. The interpreter is a correctness tool
    (it is how CI tests the kernels), never a speed one; with
    ``TRITON_INTERPRET=1`` every call the kernel supports goes to it, so that
    the tests exercise the kernel at every size.
  - CUDA: Triton only inside :data:`CUDA_ENVELOPE`, the sizes that
    ``benchmarks/kernel_speed.py`` times (kernel against eager PyTorch and
    ``torch.compile``). **GPU timings of the current kernels are pending**: no
    GPU was available when they were written, so the envelope is the
    benchmark's grid, not a measured win. Whoever runs the benchmark on a GPU
    narrows each entry to where ``"triton_fastest"`` is true in its JSON (or
    empties it), and records the numbers in ``benchmarks/results``.
  - Outside the envelope, for float64 inputs, and for shapes a kernel does not
    support, the PyTorch reference runs.

``METALEARN_NLP_KERNELS=torch`` forces the PyTorch reference everywhere (useful
to compare, or on a platform where Triton misbehaves).

Taught in: chapter 4.1 (Empirical risk and its gradient), section "A first fused kernel";
chapter 7 (GPU kernels), forthcoming.
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


#: Per op, the CUDA sizes where the Triton kernel is used (inclusive bounds). GPU timings are
#: pending (see the module docstring): these are the sizes ``benchmarks/kernel_speed.py`` measures,
#: to be narrowed to where the kernel wins once it has run on a GPU. ``n``: query tokens,
#: ``c``: classes, ``d``: encoder width; for Viterbi ``b``: sentences, ``t``: longest sentence.
CUDA_ENVELOPE: dict[str, dict[str, tuple[int, int]]] = {
    "prototype_nll": {"n": (2048, 65536), "c": (2, 65), "d": (256, 1024)},
    "prototype_log_softmax": {"n": (2048, 65536), "c": (2, 33), "d": (256, 1024)},
    "viterbi": {"b": (1, 1024), "t": (1, 512), "c": (2, 33)},
}


def choose(op: str, tensor: torch.Tensor, **sizes: int) -> str:
    """The backend one call of ``op`` uses: ``"triton"``, ``"triton-interpreter"`` or ``"torch"``.

    Arguments:
        op: a key of :data:`CUDA_ENVELOPE`.
        tensor: the call's main input (its device decides, as in :func:`backend_for`).
        sizes: the call's sizes, named as in :data:`CUDA_ENVELOPE`.

    Returns:
        The interpreter for CPU tensors when it was on at definition (testing), Triton for
        CUDA tensors inside the op's envelope, the PyTorch reference otherwise (see the
        module docstring). The op itself still sends shapes its kernel cannot handle to the
        reference.

    Example:
        >>> choose("prototype_nll", torch.empty(0), n=4096, c=11, d=768) in ("torch", "triton-interpreter")
        True
    """
    if op not in CUDA_ENVELOPE:
        raise KeyError(f"unknown kernel {op!r}; expected one of {sorted(CUDA_ENVELOPE)}")
    where = backend_for(tensor)
    if where != TRITON:
        return where
    bounds = CUDA_ENVELOPE[op]
    missing = set(bounds) - set(sizes)
    if missing:
        raise TypeError(f"choose({op!r}): sizes {sorted(missing)} are needed")
    inside = all(lo <= sizes[name] <= hi for name, (lo, hi) in bounds.items())
    return TRITON if inside else TORCH


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
        cuda = "triton inside CUDA_ENVELOPE (GPU timings pending), torch elsewhere"
        if not (INFO.triton_version and not INFO.interpret and not INFO.forced_torch):
            cuda = TORCH
    return f"CPU tensors -> {cpu}; CUDA tensors -> {cuda}; {why}"
