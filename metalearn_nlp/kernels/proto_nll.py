"""The prototypical loss in one fused pass: distances by ``tl.dot``, online log-sum-exp, NLL.

For query embeddings ``x`` (N x D), prototypes ``p`` (C x D) and labels ``y`` (N,) this op
returns ProtoNet's loss

    loss = mean over n with y_n != ignore_index of  -log_softmax_c(-||x_n - p_c||^2)[y_n]

without ever storing the N x C distances, logits or log-probabilities.

**Distances as a matrix product.** ``-||x - p_c||^2 = 2 x.p_c - ||p_c||^2 - ||x||^2``. The
last term is the same for every class, so it cancels in the softmax and the kernel drops it;
the logits it uses are ``s[n, c] = 2 x_n.p_c - ||p_c||^2``, and ``x @ p.T`` is a ``tl.dot`` on
tiles of ``BLOCK_N`` tokens by ``BLOCK_C`` classes, accumulated over ``BLOCK_D`` slices of the
width. The class tile is fixed: a loop over class blocks keeps a running maximum ``m`` and
sum ``l`` of ``exp(s - m)`` (the online log-sum-exp), so any C fits, and the label's logit is
picked up as its block goes by. One program per block of tokens writes the token's NLL,
``(m - s_y) + log l``, and keeps ``m`` and ``log l`` for the backward, *apart*: their sum
``lse`` is as large as the logits (hundreds for BERT-sized vectors), and ``s - lse`` rounds
away digits that ``(s - m) - log l`` keeps (softmax, hence gradient, errors 20x larger than
PyTorch's in float32 when we stored ``lse``). The mean is a sum over N numbers.

**Cancellation.** The expanded form subtracts large numbers when vectors are long and close
(BERT's word vectors have norms of ~15-30 and are close to their class mean): the error of
``2 x.p - ||p||^2`` in float32 is about ``eps * ||x|| ||p||``. The kernel therefore (a) loads
every input as float32 (bf16/fp16 inputs are upcast in registers, accumulation is float32),
(b) asks ``tl.dot`` for IEEE float32 (``input_precision="ieee"``: TF32, the GPU default for
float32 dots, has a 10-bit mantissa), and (c) subtracts ``mu``, the mean of the prototypes,
from ``x`` and ``p`` as it loads them. Distances do not change under a shift, so neither the
loss nor its gradient does, but the vectors whose products are formed are now as short as
their spread around ``mu``; the error drops by ``(||x - mu|| / ||x||)^2``.

**Backward** (``g`` the upstream scalar, ``w_n = g / #valid`` for valid tokens, 0 otherwise,
``q = softmax(s)``): ``dl[n, c] = w_n (q[n, c] - [c = y_n])``, then with centred vectors

    dx_n = 2 (sum_c dl[n, c] (p_c - mu) - (x_n - mu) sum_c dl[n, c])
    dp_c = 2 (sum_n dl[n, c] (x_n - mu) - (p_c - mu) sum_n dl[n, c])

``_bwd_dx`` (one program per token block and slice of D) recomputes ``s`` from ``x``, ``p`` and
the saved ``m`` and ``log l``, forms ``dl`` and accumulates ``dl @ (p - mu)`` with ``tl.dot``; it also
writes ``dl`` (N x C, small next to N x D) for ``_bwd_dp``, which reduces over tokens in
independent chunks of :data:`ROWS_PER_SPLIT` tokens (up to 64 partial sums, added by
PyTorch: deterministic, no atomics, and enough programs to fill a GPU when C and D are small).
The ``x sum_c dl`` term is zero in exact arithmetic; kept, it cancels the rounding of ``dl``
(see :mod:`.proto_logsoftmax`).

**Higher-order gradients** (MAML differentiates through this gradient). When the caller asks
for a graph of the gradient (``torch.is_grad_enabled()`` inside ``backward``), ``backward``
computes the same formulas with PyTorch ops on the saved inputs, the log-probabilities coming
from :func:`.proto_logsoftmax.prototype_log_softmax_reference`; autograd then differentiates
those to any order. Without ``create_graph`` the two Triton kernels run.

Block sizes are fixed (no autotuning: the interpreter cannot run several configurations);
with them the three kernels compile for sm_90 without register spills worth the name (checked
ahead of time with ``triton.compile(..., target=GPUTarget("cuda", 90, 32))``: 168, 255 and 137
registers per thread). Timings on a GPU are pending (see :mod:`.backend`).

Files follow one pattern: ``_fwd`` / ``_bwd_*`` kernels, launchers, an
``autograd.Function``, the functional wrapper :func:`prototype_nll`, and
:func:`prototype_nll_reference`, the PyTorch fallback and test oracle.

Taught in: chapter 7 (GPU kernels), forthcoming; the loss is chapter 3.1's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import backend
from .proto_logsoftmax import _autocast_off, _check, prototype_log_softmax_reference

IGNORE_INDEX = -100  # as torch.nn.functional.nll_loss

BLOCK_N = 32  # tokens per program
BLOCK_C = 16  # classes per tile (fixed: the loop over class blocks takes any C)
BLOCK_D = 32  # width of one slice of the encoder dimension (64 spills registers on sm_90)
ROWS_PER_SPLIT = 256  # tokens per partial sum of dp

if backend.INFO.triton_version is not None:
    import triton
    import triton.language as tl

    @triton.jit
    def _scores(X, P, MU, rows, cols, rmask, cmask, sxn, sxd, spc, spd,
                D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
        """``2 (x - mu).(p - mu) - ||p - mu||^2`` on a token x class tile, -inf on padded classes."""
        acc = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)
        pn = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):  # D is a constant: one build per encoder width
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            mu = tl.load(MU + ds, mask=dmask, other=0.0)
            xm = rmask[:, None] & dmask[None, :]
            pm = cmask[:, None] & dmask[None, :]
            x = tl.load(X + rows[:, None] * sxn + ds[None, :] * sxd, mask=xm, other=0.0).to(tl.float32)
            p = tl.load(P + cols[:, None] * spc + ds[None, :] * spd, mask=pm, other=0.0).to(tl.float32)
            x = tl.where(xm, x - mu[None, :], 0.0)
            p = tl.where(pm, p - mu[None, :], 0.0)
            acc += tl.dot(x, tl.trans(p), input_precision="ieee")
            pn += tl.sum(p * p, axis=1)
        return tl.where(cmask[None, :], 2.0 * acc - pn[None, :], float("-inf"))

    @triton.jit
    def _fwd(X, P, MU, Y, NLL, MAX, LOGSUM, N, C, sxn, sxd, spc, spd, ignore_index,
             D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        y = tl.load(Y + rows, mask=rmask, other=ignore_index)
        m = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
        l = tl.zeros((BLOCK_N,), dtype=tl.float32)
        sy = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            s = _scores(X, P, MU, rows, cols, rmask, cols < C, sxn, sxd, spc, spd, D, BLOCK_N, BLOCK_C, BLOCK_D)
            m_new = tl.maximum(m, tl.max(s, axis=1))
            l = l * tl.exp(m - m_new) + tl.sum(tl.exp(s - m_new[:, None]), axis=1)
            m = m_new
            sy += tl.sum(tl.where(cols[None, :] == y[:, None], s, 0.0), axis=1)
        # keep the maximum and log(sum) apart: their sum, lse, is as large as the logits, and
        # s - lse would lose the digits that (s - max) - log(sum) keeps (softmax errors x20)
        logsum = tl.log(l)
        tl.store(MAX + rows, m, mask=rmask)
        tl.store(LOGSUM + rows, logsum, mask=rmask)
        tl.store(NLL + rows, tl.where(y != ignore_index, (m - sy) + logsum, 0.0), mask=rmask)

    @triton.jit
    def _bwd_dx(X, P, MU, Y, MAX, LOGSUM, W, DX, DL, N, C, sxn, sxd, spc, spd, sdx, sdl, ignore_index,
                D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_DX: tl.constexpr):
        pid_d = tl.program_id(1)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        y = tl.load(Y + rows, mask=rmask, other=ignore_index)
        m = tl.load(MAX + rows, mask=rmask, other=0.0)
        logsum = tl.load(LOGSUM + rows, mask=rmask, other=0.0)
        w = tl.where(rmask & (y != ignore_index), tl.load(W), 0.0)
        dout = pid_d * BLOCK_DX + tl.arange(0, BLOCK_DX)
        omask = dout < D
        mu = tl.load(MU + dout, mask=omask, other=0.0)
        acc = tl.zeros((BLOCK_N, BLOCK_DX), dtype=tl.float32)
        rowsum = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cmask = cols < C
            s = _scores(X, P, MU, rows, cols, rmask, cmask, sxn, sxd, spc, spd, D, BLOCK_N, BLOCK_C, BLOCK_D)
            dl = w[:, None] * (tl.exp((s - m[:, None]) - logsum[:, None]) - tl.where(cols[None, :] == y[:, None], 1.0, 0.0))
            dl = tl.where(cmask[None, :], dl, 0.0)
            rowsum += tl.sum(dl, axis=1)
            pm = cmask[:, None] & omask[None, :]
            p = tl.load(P + cols[:, None] * spc + dout[None, :] * spd, mask=pm, other=0.0).to(tl.float32)
            p = tl.where(pm, p - mu[None, :], 0.0)
            acc += tl.dot(dl, p, input_precision="ieee")
            tl.store(DL + rows[:, None] * sdl + cols[None, :], dl,
                     mask=rmask[:, None] & cmask[None, :] & (pid_d == 0))
        xm = rmask[:, None] & omask[None, :]
        x = tl.load(X + rows[:, None] * sxn + dout[None, :] * sxd, mask=xm, other=0.0).to(tl.float32)
        x = tl.where(xm, x - mu[None, :], 0.0)
        dx = 2.0 * (acc - x * rowsum[:, None])
        tl.store(DX + rows[:, None] * sdx + dout[None, :], dx.to(DX.dtype.element_ty), mask=xm)

    @triton.jit
    def _bwd_dp(X, P, MU, DL, PART, N, C, sxn, sxd, spc, spd, sdl, rows_per_split,
                D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
        cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        ds = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        split = tl.program_id(2)
        cmask = cols < C
        dmask = ds < D
        mu = tl.load(MU + ds, mask=dmask, other=0.0)
        acc = tl.zeros((BLOCK_C, BLOCK_D), dtype=tl.float32)
        colsum = tl.zeros((BLOCK_C,), dtype=tl.float32)
        first = split * rows_per_split
        for n0 in range(first, first + rows_per_split, BLOCK_N):
            rows = n0 + tl.arange(0, BLOCK_N)
            rmask = rows < N
            dl = tl.load(DL + rows[:, None] * sdl + cols[None, :], mask=rmask[:, None] & cmask[None, :], other=0.0)
            xm = rmask[:, None] & dmask[None, :]
            x = tl.load(X + rows[:, None] * sxn + ds[None, :] * sxd, mask=xm, other=0.0).to(tl.float32)
            x = tl.where(xm, x - mu[None, :], 0.0)
            acc += tl.dot(tl.trans(dl), x, input_precision="ieee")
            colsum += tl.sum(dl, axis=0)
        pm = cmask[:, None] & dmask[None, :]
        p = tl.load(P + cols[:, None] * spc + ds[None, :] * spd, mask=pm, other=0.0).to(tl.float32)
        p = tl.where(pm, p - mu[None, :], 0.0)
        part = 2.0 * (acc - p * colsum[:, None])
        tl.store(PART + split * C * D + cols[:, None] * D + ds[None, :], part, mask=pm)


def _empty(shape, dtype, device) -> torch.Tensor:
    """Allocation of every kernel output (tests replace it to poison outputs with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _check_labels(x: torch.Tensor, labels: torch.Tensor, c: int, ignore_index: int) -> None:
    if labels.shape != (x.shape[0],) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"prototype_nll: labels must be an integer vector of length N={x.shape[0]}, "
                         f"got {labels.dtype} of shape {tuple(labels.shape)}")
    if labels.device != x.device:
        raise ValueError(f"prototype_nll: labels are on {labels.device} but x is on {x.device}")


def _launch_fwd(x, p, labels, ignore_index):
    """Per-token NLL (0 for ignored tokens), row maximum and log-sum of the logits, and mu."""
    n, d = x.shape
    c = p.shape[0]
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= c))
    if bool(bad.any()):
        raise ValueError(f"prototype_nll: labels must be in [0, {c}) or {ignore_index}, "
                         f"got {labels[bad][:5].tolist()}")
    with torch.no_grad():
        mu = p.detach().float().mean(0)
    nll = _empty((n,), torch.float32, x.device)
    row_max = _empty((n,), torch.float32, x.device)
    logsum = _empty((n,), torch.float32, x.device)
    _fwd[(triton.cdiv(n, BLOCK_N),)](
        x, p, mu, labels, nll, row_max, logsum, n, c, x.stride(0), x.stride(1), p.stride(0), p.stride(1), ignore_index,
        D=d, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C, BLOCK_D=BLOCK_D)
    return nll, row_max, logsum, mu


def _block_dx(d: int) -> int:
    return min(64, max(16, 1 << (d - 1).bit_length()))


def _launch_bwd(x, p, labels, ignore_index, row_max, logsum, mu, w):
    """``(dx, dp)`` for the loss scaled per valid token by the 0-d tensor ``w``."""
    n, d = x.shape
    c = p.shape[0]
    dx = _empty((n, d), x.dtype, x.device)
    dl = _empty((n, c), torch.float32, x.device)
    bdx = _block_dx(d)
    _bwd_dx[(triton.cdiv(n, BLOCK_N), triton.cdiv(d, bdx))](
        x, p, mu, labels, row_max, logsum, w, dx, dl, n, c, x.stride(0), x.stride(1), p.stride(0), p.stride(1),
        dx.stride(0), dl.stride(0), ignore_index,
        D=d, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C, BLOCK_D=BLOCK_D, BLOCK_DX=bdx)
    splits = max(1, min(64, triton.cdiv(n, ROWS_PER_SPLIT)))
    rows_per_split = triton.cdiv(triton.cdiv(n, splits), BLOCK_N) * BLOCK_N
    part = _empty((splits, c, d), torch.float32, x.device)
    _bwd_dp[(triton.cdiv(c, BLOCK_C), triton.cdiv(d, BLOCK_D), splits)](
        x, p, mu, dl, part, n, c, x.stride(0), x.stride(1), p.stride(0), p.stride(1), dl.stride(0),
        rows_per_split, D=d, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C, BLOCK_D=BLOCK_D)
    return dx, part.sum(0).to(p.dtype)


def _differentiable_grads(x, p, labels, ignore_index, w):
    """The backward's formulas in PyTorch ops on the saved inputs, for ``create_graph=True``."""
    valid = labels != ignore_index
    with _autocast_off(x.device):
        xf, pf = x.float(), p.float()
        q = prototype_log_softmax_reference(xf, pf).exp()
        onehot = F.one_hot(torch.where(valid, labels, 0).long(), p.shape[0]).to(q.dtype)
        dl = torch.where(valid[:, None], w * (q - onehot), torch.zeros_like(q))
        dx = 2.0 * (dl @ pf - xf * dl.sum(1, keepdim=True))
        dp = 2.0 * (dl.t() @ xf - pf * dl.sum(0)[:, None])
    return dx.to(x.dtype), dp.to(p.dtype)


class _PrototypeNLL(torch.autograd.Function):
    """The fused loss; returns ``(loss, row_max, logsum, mu)``, the last three kept for backward only."""

    @staticmethod
    def forward(x, p, labels, ignore_index):  # type: ignore[override]
        nll, row_max, logsum, mu = _launch_fwd(x, p, labels, ignore_index)
        count = (labels != ignore_index).sum()
        return nll.sum() / count, row_max, logsum, mu

    @staticmethod
    def setup_context(ctx, inputs, output):  # separate from forward so torch.func.grad accepts it
        x, p, labels, ignore_index = inputs
        _, row_max, logsum, mu = output
        ctx.mark_non_differentiable(row_max, logsum, mu)
        ctx.ignore_index = ignore_index
        ctx.save_for_backward(x, p, labels, row_max, logsum, mu)  # the caller's x and p: double backward reaches them

    @staticmethod
    def backward(ctx, g, *_unused):  # type: ignore[override]
        x, p, labels, row_max, logsum, mu = ctx.saved_tensors
        w = g.float() / (labels != ctx.ignore_index).sum()
        if torch.is_grad_enabled():  # create_graph=True (MAML): differentiable PyTorch ops
            dx, dp = _differentiable_grads(x, p, labels, ctx.ignore_index, w)
        else:
            dx, dp = _launch_bwd(x, p, labels, ctx.ignore_index, row_max, logsum, mu, w.detach().reshape(()))
        return (dx if ctx.needs_input_grad[0] else None), (dp if ctx.needs_input_grad[1] else None), None, None


def prototype_nll_reference(
    x: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Plain PyTorch: ``nll_loss(log_softmax(-||x - p||^2))`` over the tokens whose label is not ignored.

    Exactly the operations ProtoNet's loss ran before the fused kernel (select the kept tokens,
    :func:`.proto_logsoftmax.prototype_log_softmax_reference`, ``F.nll_loss``), so the
    PyTorch path gives the same bits as before. The fallback, and the oracle of the tests.
    """
    _check(x, prototypes)
    _check_labels(x, labels, prototypes.shape[0], ignore_index)
    keep = labels != ignore_index
    return F.nll_loss(prototype_log_softmax_reference(x[keep], prototypes), labels[keep])


def prototype_nll(
    x: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """ProtoNet's loss: mean cross-entropy of ``softmax_c(-||x_n - p_c||^2)`` at the labels.

    Arguments:
        x (Tensor, N x D): query token embeddings, any float dtype, any strides.
        prototypes (Tensor, C x D): one per class, any C >= 1, on the same device.
        labels (Tensor, N): class ids in ``[0, C)``, or ``ignore_index`` for tokens to leave out.
        ignore_index (int, default -100): as in ``F.nll_loss``.

    Returns:
        A 0-d float32 tensor (float64 if an input is), NaN when every token is ignored (as
        ``F.nll_loss``). Differentiable in ``x`` and ``prototypes`` to any order:
        ``create_graph=True`` (MAML) and nested ``torch.func.grad`` get the reference's
        higher-order gradients.

    Raises:
        ValueError: shapes that do not match, or (kernel path) a label outside ``[0, C)``.

    The backend follows :func:`metalearn_nlp.kernels.choose` (op ``"prototype_nll"``); the
    PyTorch path is :func:`prototype_nll_reference`. Float64 inputs take the reference.

    Example:
        >>> import torch
        >>> x, p = torch.tensor([[0.0, 0.0], [3.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
        >>> round(prototype_nll(x, p, torch.tensor([0, -100])).item(), 6)   # log(1 + e^-9)
        0.000123

    References:
        Snell, Swersky and Zemel (2017), Prototypical Networks for Few-shot Learning.

    Taught in: chapter 7 (GPU kernels), forthcoming; used by ProtoNet's loss (chapter 3.1).
    """
    _check(x, prototypes)
    _check_labels(x, labels, prototypes.shape[0], ignore_index)
    (n, d), c = x.shape, prototypes.shape[0]
    where = backend.choose("prototype_nll", x, n=n, c=c, d=d)
    if where == backend.TORCH or torch.float64 in (x.dtype, prototypes.dtype):
        return prototype_nll_reference(x, prototypes, labels, ignore_index)
    return _PrototypeNLL.apply(x, prototypes, labels, ignore_index)[0]
