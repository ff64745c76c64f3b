"""Fused kernels with three backends (Triton on CUDA, Triton's interpreter on CPU, PyTorch).

``from metalearn_nlp.kernels import describe; print(describe())`` says which one runs.
Set ``TRITON_INTERPRET=1`` *before* importing this package to run the Triton
kernels on CPU tensors (slow, but exact: this is how CI tests them).
"""

from .backend import INFO, backend_for, describe
from .proto_logsoftmax import prototype_log_softmax, prototype_log_softmax_reference

__all__ = [
    "INFO",
    "backend_for",
    "describe",
    "prototype_log_softmax",
    "prototype_log_softmax_reference",
]
