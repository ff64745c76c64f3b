"""Fused kernels with three backends (Triton on CUDA, Triton's interpreter on CPU, PyTorch).

``from metalearn_nlp.kernels import describe; print(describe())`` says which one runs.
Set ``TRITON_INTERPRET=1`` *before* importing this package to run the Triton
kernels on CPU tensors (slow, but exact: this is how CI tests them).
:func:`choose` applies the rule of :mod:`.backend`: on CUDA a kernel runs only at the
sizes where it is (to be) measured faster than PyTorch.

* :func:`prototype_nll`: ProtoNet's loss, fused (distances by ``tl.dot``, online
  log-sum-exp, NLL), any number of classes; :mod:`.proto_nll`.
* :func:`prototype_log_softmax`: the N x C log-probabilities; :mod:`.proto_logsoftmax`.
* :func:`viterbi`: batched Viterbi decoding for StructShot; :mod:`.batched_viterbi`.

Each has a ``*_reference`` in plain PyTorch: the fallback, and the tests' oracle.

Taught in: chapter 4.1 (A first fused kernel); chapter 7 (GPU kernels), forthcoming.
"""

from .backend import CUDA_ENVELOPE, INFO, backend_for, choose, describe
from .proto_logsoftmax import prototype_log_softmax, prototype_log_softmax_reference
from .proto_nll import prototype_nll, prototype_nll_reference
from .batched_viterbi import viterbi, viterbi_reference

__all__ = [
    "CUDA_ENVELOPE",
    "INFO",
    "backend_for",
    "choose",
    "describe",
    "prototype_log_softmax",
    "prototype_log_softmax_reference",
    "prototype_nll",
    "prototype_nll_reference",
    "viterbi",
    "viterbi_reference",
]
