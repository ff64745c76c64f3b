"""Fused prototype scores: squared Euclidean distance to every prototype, then log-softmax.

For query embeddings ``x`` (N x D) and class prototypes ``p`` (C x D) this op returns

    log_probs[n, c] = log_softmax_c( -||x_n - p_c||^2 )

which is exactly what a prototypical network feeds to its NLL loss. Written
naively it materialises the N x C distance matrix, then the logits, then the
log-probabilities (three N x C tensors in memory and three passes); the Triton
kernel does the distances, the max, the log-sum-exp and the store in one pass
per block of rows.

Backward (derived in chapter 4.1): with upstream gradient ``g`` and
``q = exp(log_probs)``, the gradient with respect to the logits is
``dl = g - q * sum_c(g)`` (row-wise). Because ``logit = -||x - p||^2``,

    dx = -2 * sum_c dl[n, c] (x_n - p_c)  = 2 * (dl @ p - x * dl.sum(1)[:, None])
    dp =  2 * sum_n dl[n, c] (x_n - p_c)  = 2 * (dl.T @ x - p * dl.sum(0)[:, None])

In exact arithmetic the rows of ``dl`` sum to zero and the ``x * dl.sum(1)`` term
vanishes; we keep it because in float32 it cancels the rounding error of ``dl``
against ``p`` (the error then multiplies ``p_c - x_n``, not ``p_c``): dropping it
makes ``dx`` about three times less accurate than PyTorch's own float32 autograd.

The row-wise part (``dl``) is a Triton kernel; the two matrix products are
left to PyTorch's GEMMs, which already run at peak.

Higher-order gradients. MAML differentiates through the gradient of this loss
(``torch.autograd.grad(..., create_graph=True)``), so ``backward`` must itself be
differentiable, with the right derivative. Inside ``backward``,
``torch.is_grad_enabled()`` is true exactly when the caller asked for a graph of the
gradient; then ``dl`` is computed with PyTorch ops from the saved output ``logp`` and
``g`` (``logp`` is differentiated through this same op, so ``dl`` depends on ``x``
and ``p`` as it should), and the two matrix products, already PyTorch ops on the
saved ``x`` and ``p``, carry the rest. Without ``create_graph`` the Triton ``_bwd``
kernel runs as before. Until this was fixed, ``backward`` was neither
differentiable nor marked ``once_differentiable``: the graph of the gradient
treated ``dl`` as a constant (and, for non-contiguous inputs, ``x`` and ``p`` too),
so second-order gradients came out wrong (off by ~230 on a scale of ~230 in
``tests/test_kernels.py``) with no error raised.

Files follow one pattern (see ``../shared/STYLE.md``): ``_fwd`` / ``_bwd``
kernels, a launcher, an ``autograd.Function``, the functional wrapper
:func:`prototype_log_softmax`, and :func:`prototype_log_softmax_reference`, the
plain PyTorch version that is both the fallback and the test oracle.

The loss itself (log-softmax and NLL in one pass, distances through ``tl.dot``, any number
of classes) is :func:`metalearn_nlp.kernels.prototype_nll`; this op remains for callers that
need the N x C log-probabilities. Its class tile grows with C, so the kernel takes at most
:data:`MAX_CLASSES` prototypes (more go to the reference), and on CUDA it runs only inside
``backend.CUDA_ENVELOPE["prototype_log_softmax"]``.

Taught in: chapter 4.1 (Empirical risk and its gradient), "A first fused kernel";
chapter 7 (GPU kernels), forthcoming.
"""

from __future__ import annotations

import contextlib

import torch

from . import backend

MAX_CLASSES = 128  # one row of log-probabilities must fit one block (tested up to 65 in the interpreter)

if backend.INFO.triton_version is not None:
    import triton
    import triton.language as tl

    @triton.jit
    def _fwd(X, P, OUT, N, C, stride_x, stride_p, stride_o, D: tl.constexpr,
             BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
        # D (the encoder width) is a compile-time constant: one compilation per model, a
        # fully unrolled loop, and no runtime-int range, which Triton 3.6's interpreter
        # cannot iterate under NumPy 2.5
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_C)
        rmask = rows < N
        cmask = cols < C
        dist = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            x = tl.load(X + rows[:, None] * stride_x + ds[None, :],
                        mask=rmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
            p = tl.load(P + cols[:, None] * stride_p + ds[None, :],
                        mask=cmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
            # direct differences, not ||x||^2 - 2 x.p + ||p||^2: exact, never negative,
            # and free of the TF32 rounding that tl.dot applies to fp32 on GPUs
            diff = x[:, None, :] - p[None, :, :]
            dist += tl.sum(diff * diff, axis=2)
        logits = tl.where(cmask[None, :], -dist, float("-inf"))
        row_max = tl.max(logits, axis=1)
        shifted = logits - row_max[:, None]
        lse = tl.log(tl.sum(tl.exp(shifted), axis=1))
        out = shifted - lse[:, None]
        tl.store(OUT + rows[:, None] * stride_o + cols[None, :], out,
                 mask=rmask[:, None] & cmask[None, :])

    @triton.jit
    def _bwd(G, LOGP, DL, N, C, stride_g, stride_l, stride_d,
             BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_C)
        mask = (rows < N)[:, None] & (cols < C)[None, :]
        g = tl.load(G + rows[:, None] * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        logp = tl.load(LOGP + rows[:, None] * stride_l + cols[None, :], mask=mask, other=float("-inf"))
        dl = g - tl.exp(logp) * tl.sum(g, axis=1)[:, None]
        tl.store(DL + rows[:, None] * stride_d + cols[None, :], dl, mask=mask)


BLOCK_N = 16
BLOCK_D = 32


def _block_c(c: int) -> int:
    # powers of two (the interpreter needs them) and >= 16 (tile floor on real GPUs)
    return max(16, 1 << (c - 1).bit_length())


def _check(x: torch.Tensor, p: torch.Tensor) -> None:
    if x.dim() != 2 or p.dim() != 2:
        raise ValueError(f"prototype_log_softmax: x and prototypes must be 2-D (N x D, C x D); "
                         f"got shapes {tuple(x.shape)} and {tuple(p.shape)}")
    if x.shape[1] != p.shape[1]:
        raise ValueError(f"prototype_log_softmax: x has D={x.shape[1]} but prototypes have D={p.shape[1]}")
    if p.shape[0] == 0:
        raise ValueError("prototype_log_softmax: need at least one prototype (C >= 1)")
    if x.device != p.device:
        raise ValueError(f"prototype_log_softmax: x is on {x.device} but prototypes are on {p.device}")
    if not (x.is_floating_point() and p.is_floating_point()):
        raise TypeError(f"prototype_log_softmax: floating-point inputs needed, got {x.dtype} and {p.dtype}")


def _launch_fwd(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    n, d = x.shape
    c = p.shape[0]
    if c > MAX_CLASSES:
        raise ValueError(f"prototype_log_softmax: the Triton kernel handles at most {MAX_CLASSES} "
                         f"prototypes, got {c}; set METALEARN_NLP_KERNELS=torch to use the reference")
    out = torch.empty((n, c), device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(n, BLOCK_N),)
    _fwd[grid](x, p, out, n, c, x.stride(0), p.stride(0), out.stride(0), D=d,
               BLOCK_N=BLOCK_N, BLOCK_C=_block_c(c), BLOCK_D=BLOCK_D)
    return out


def _launch_bwd(g: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    n, c = logp.shape
    dl = torch.empty_like(logp)
    grid = (triton.cdiv(n, BLOCK_N),)
    _bwd[grid](g, logp, dl, n, c, g.stride(0), logp.stride(0), dl.stride(0),
               BLOCK_N=BLOCK_N, BLOCK_C=_block_c(c))
    return dl


class _PrototypeLogSoftmax(torch.autograd.Function):
    """The fused op; its ``backward`` is itself differentiable (see the module docstring)."""

    @staticmethod
    def forward(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _launch_fwd(x.contiguous(), p.contiguous())

    @staticmethod
    def setup_context(ctx, inputs, output):  # separate from forward so torch.func.grad accepts it
        x, p = inputs
        # save the caller's x and p, not contiguous copies: a copy made inside forward (grad
        # mode off) is cut off from the graph, and double backward must reach x and p
        ctx.save_for_backward(x, p, output)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, p, logp = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True (e.g. MAML): build dl from differentiable ops. logp is this op's
            # saved output, so autograd differentiates it through this Function again (whose
            # first-order backward is the Triton kernel below); g enters linearly.
            gf = g.float()
            dl = gf - logp.exp() * gf.sum(1, keepdim=True)
        else:
            dl = _launch_bwd(g.contiguous(), logp)
        dx = dp = None
        if ctx.needs_input_grad[0]:
            dx = (2.0 * (dl @ p.float() - x.float() * dl.sum(1)[:, None])).to(x.dtype)
        if ctx.needs_input_grad[1]:
            dp = (2.0 * (dl.t() @ x.float() - p.float() * dl.sum(0)[:, None])).to(p.dtype)
        return dx, dp


def prototype_log_softmax_reference(x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch: ``log_softmax(-||x_n - p_c||^2)`` over c, computed in float32 (or float64 if given).

    The fallback when no Triton backend applies, and the oracle the kernel is tested against.
    Inside ``torch.autocast`` it still computes in float32, as the kernel does: autocast would
    run ``xf @ pf.t()`` in bf16/fp16, and the expanded distance ``|x|^2 - 2 x.p + |p|^2``
    cancels large terms (log-probabilities off by ~5 for BERT-sized vectors in bf16).
    """
    _check(x, prototypes)
    dtype = torch.float64 if torch.float64 in (x.dtype, prototypes.dtype) else torch.float32
    with _autocast_off(x.device):
        xf, pf = x.to(dtype), prototypes.to(dtype)
        sq = (xf * xf).sum(1, keepdim=True) - 2.0 * xf @ pf.t() + (pf * pf).sum(1)[None, :]
        return torch.log_softmax(-sq.clamp_min(0.0), dim=1)


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast disabled for ``device`` (CPU and CUDA, the types every supported torch knows)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def prototype_log_softmax(x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of each row of ``x`` under a softmax over negative squared distances.

    Arguments:
        x (Tensor, N x D): query embeddings, any float dtype.
        prototypes (Tensor, C x D): one prototype per class, on the same device.

    Returns:
        Tensor (N x C), float32 (float64 on the reference path when an input is float64):
        ``log_softmax(-||x_n - p_c||^2, dim=1)``. Differentiable in both inputs, to any
        order: ``torch.autograd.grad(..., create_graph=True)`` (MAML) and nested
        ``torch.func.grad`` give the reference's higher-order gradients. ``torch.func.vmap``
        over the kernel path is not supported.

    The backend (see :func:`metalearn_nlp.kernels.choose`) is chosen from ``x`` and the
    sizes: Triton on CUDA inside its envelope, Triton's interpreter on CPU when
    ``TRITON_INTERPRET=1`` was set before import, the PyTorch reference otherwise. Float64
    inputs and more than :data:`MAX_CLASSES` prototypes always take the reference.

    Example:
        >>> import torch
        >>> from metalearn_nlp.kernels import prototype_log_softmax
        >>> logp = prototype_log_softmax(torch.randn(5, 8), torch.randn(3, 8))
        >>> logp.exp().sum(1)   # each row is a distribution
        tensor([1.0000, 1.0000, 1.0000, 1.0000, 1.0000])

    References:
        Snell, Swersky and Zemel (2017), Prototypical Networks for Few-shot Learning.

    Taught in: chapter 4.1; used by the ProtoNet learner (chapter 3.1).
    """
    _check(x, prototypes)
    (n, d), c = x.shape, prototypes.shape[0]
    where = backend.choose("prototype_log_softmax", x, n=n, c=c, d=d)
    if where == backend.TORCH or c > MAX_CLASSES or torch.float64 in (x.dtype, prototypes.dtype):
        return prototype_log_softmax_reference(x, prototypes)
    return _PrototypeLogSoftmax.apply(x, prototypes)
