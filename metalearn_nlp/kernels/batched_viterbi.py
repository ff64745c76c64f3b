"""Batched Viterbi decoding: one Triton program per sentence, and the PyTorch reference.

A path ``y_1 .. y_n`` of a sentence of length ``n`` scores

    start[y_1] + sum_t emissions[t, y_t] + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_n]

and Viterbi finds the best one with the recursion ``score_t[j] = max_i (score_{t-1}[i] +
transitions[i, j]) + emissions[t, j]``, keeping the arg-max ``i`` (the back-pointer) of every
step, then following the pointers back from the best last label.

**Why a kernel.** The recursion is sequential in time. In PyTorch, vectorised over the batch,
each step is a handful of small kernel launches (add, max, where, ...), so a sentence of 40
words costs ~200 launches whatever the batch size; launch overhead, not arithmetic, is the
time. The Triton kernel runs one program per sentence: the ``C x C`` transitions and the
running scores stay in registers for the whole sentence, each step reads one row of
emissions and writes one row of back-pointers (int32, to global memory), and the backtrace
runs in the same program. One launch per batch.

**Ties** are broken towards the lower label id, in both the back-pointers and the choice of
the last label: ``torch.max(dim)`` returns the first maximal index, and the kernel uses
``tl.argmax(..., tie_break_left=True)``. Both compute in the same precision, with the
additions in the same order, so on float32 input the kernel and the reference return the
same paths and the same scores bit for bit, ties included.

**Conventions** (those of :func:`metalearn_nlp.learners.viterbi.viterbi_decode`): labels
past a sentence's length are 0; a sentence of length 0 scores 0; -inf in the emissions or
transitions forbids a label or a move.

Taught in: chapter 7 (GPU kernels), forthcoming; the recursion is chapter 4.2's.
"""

from __future__ import annotations

import torch

from . import backend

MAX_LABELS = 128  # the C x C transitions live in one tile
BLOCK_T = 64  # positions per store when clearing the padding of a path

if backend.INFO.triton_version is not None:
    import triton
    import triton.language as tl

    @triton.jit
    def _decode(EM, TR, START, END, LEN, BP, PATH, SCORE, C, T,
                seb, set_, sec, stf, stt, sbb, sbt, spb,
                BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
        b = tl.program_id(0)
        n = tl.load(LEN + b)
        labels = tl.arange(0, BLOCK_C)
        lmask = labels < C
        trans = tl.load(TR + labels[:, None] * stf + labels[None, :] * stt,
                        mask=lmask[:, None] & lmask[None, :], other=float("-inf")).to(tl.float32)
        em = EM + b * seb
        score = tl.load(START + labels, mask=lmask, other=float("-inf")).to(tl.float32) \
            + tl.load(em + labels * sec, mask=lmask, other=float("-inf")).to(tl.float32)
        for t in range(1, n):
            cand = score[:, None] + trans  # (from, to)
            best = tl.max(cand, axis=0)
            arg = tl.argmax(cand, axis=0, tie_break_left=True)
            score = best + tl.load(em + t * set_ + labels * sec, mask=lmask, other=float("-inf")).to(tl.float32)
            tl.store(BP + b * sbb + t * sbt + labels, arg.to(tl.int32), mask=lmask)
        final = tl.where(lmask, score + tl.load(END + labels, mask=lmask, other=0.0).to(tl.float32),
                         float("-inf"))
        best = tl.max(final, axis=0)
        last = tl.argmax(final, axis=0, tie_break_left=True).to(tl.int32)
        tl.store(SCORE + b, tl.where(n > 0, best, 0.0).to(SCORE.dtype.element_ty))
        path = PATH + b * spb
        for t0 in range(0, T, BLOCK_T):  # labels past the end are 0
            ts = t0 + tl.arange(0, BLOCK_T)
            tl.store(path + ts, tl.zeros((BLOCK_T,), dtype=tl.int64), mask=(ts < T) & (ts >= n))
        tl.store(path + n - 1, last.to(tl.int64), mask=n > 0)
        for i in range(0, n - 1):  # follow the back-pointers from position n - 1 down to 1
            t = n - 1 - i
            last = tl.load(BP + b * sbb + t * sbt + last)
            tl.store(path + t - 1, last.to(tl.int64))


def _empty(shape, dtype, device) -> torch.Tensor:
    """Allocation of every kernel output (tests replace it to poison outputs)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _launch(emissions, transitions, start, end, lengths):
    b, t, c = emissions.shape
    paths = _empty((b, t), torch.int64, emissions.device)
    scores = _empty((b,), emissions.dtype, emissions.device)
    pointers = torch.empty((b, max(t, 1), c), dtype=torch.int32, device=emissions.device)
    block_c = max(16, 1 << (c - 1).bit_length())
    _decode[(b,)](emissions, transitions, start.contiguous(), end.contiguous(),
                  lengths.to(torch.int32).contiguous(), pointers, paths, scores, c, t,
                  *emissions.stride(), *transitions.stride(), pointers.stride(0), pointers.stride(1),
                  paths.stride(0), BLOCK_C=block_c, BLOCK_T=BLOCK_T)
    return paths, scores


def _prepare(emissions, transitions, start, end, lengths):
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, T, C), got shape {tuple(emissions.shape)}")
    b, t, c = emissions.shape
    if transitions.shape != (c, c):
        raise ValueError(f"transitions must be ({c}, {c}) for {c} labels, got {tuple(transitions.shape)}")
    device, dtype = emissions.device, emissions.dtype
    start = torch.zeros(c, device=device, dtype=dtype) if start is None else start.to(device, dtype)
    end = torch.zeros(c, device=device, dtype=dtype) if end is None else end.to(device, dtype)
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=device)
    lengths = lengths.to(device)
    if lengths.shape != (b,):
        raise ValueError(f"lengths must be ({b},), got {tuple(lengths.shape)}")
    return transitions.to(device, dtype), start, end, lengths


def viterbi_reference(
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch: vectorised over the batch, one step per position. Same arguments as :func:`viterbi`."""
    transitions, start, end, lengths = _prepare(emissions, transitions, start, end, lengths)
    b, t, c = emissions.shape
    device, dtype = emissions.device, emissions.dtype
    if t == 0:
        return torch.zeros(b, 0, dtype=torch.long, device=device), torch.zeros(b, device=device, dtype=dtype)
    mask = torch.arange(t, device=device)[None, :] < lengths[:, None]
    score = start[None, :] + emissions[:, 0]  # (B, C): best path ending in each label
    pointers = []
    identity = torch.arange(c, device=device).expand(b, c)
    for i in range(1, t):
        candidates = score[:, :, None] + transitions[None, :, :]  # (B, from, to)
        best, arg = candidates.max(dim=1)
        live = mask[:, i, None]
        score = torch.where(live, best + emissions[:, i], score)
        pointers.append(torch.where(live, arg, identity))
    score = score + end[None, :]
    best_score, last = score.max(dim=1)
    path = [last]
    for arg in reversed(pointers):
        last = arg.gather(1, last[:, None]).squeeze(1)
        path.append(last)
    paths = torch.stack(path[::-1], dim=1)
    paths = torch.where(mask, paths, torch.zeros_like(paths))
    best_score = torch.where(lengths > 0, best_score, torch.zeros_like(best_score))
    return paths, best_score


def viterbi(
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best label path of every sentence of a batch, and its score.

    Arguments:
        emissions (Tensor, B x T x C): per-position label scores (padded past each length).
        transitions (Tensor, C x C): ``transitions[i, j]`` scores the move ``i -> j``.
        start, end (Tensor, C, optional): scores of the first and last labels (default 0).
        lengths (Tensor, B, optional): each sentence's length, ``0 <= length <= T`` (default T).

    Returns:
        ``(paths, scores)``: ``(B, T)`` int64 label ids (0 past each length) and ``(B,)``
        best scores in the emissions' dtype (0 for an empty sentence). Ties go to the lower
        label id, on every backend.

    The backend follows :func:`metalearn_nlp.kernels.choose` (op ``"viterbi"``); the kernel
    takes float32 emissions and at most :data:`MAX_LABELS` labels, everything else goes to
    :func:`viterbi_reference`. Not differentiable (paths are integers).

    Example:
        >>> e = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
        >>> viterbi(e, torch.tensor([[0.0, 0.0], [0.0, -5.0]]))[0]
        tensor([[1, 0]])

    Taught in: chapter 7 (GPU kernels), forthcoming; chapter 4.2 (Viterbi's recursion).
    """
    transitions, start, end, lengths = _prepare(emissions, transitions, start, end, lengths)
    b, t, c = emissions.shape
    where = backend.choose("viterbi", emissions, b=b, t=t, c=c)
    if where == backend.TORCH or emissions.dtype != torch.float32 or c > MAX_LABELS or b == 0 or t == 0:
        return viterbi_reference(emissions, transitions, start, end, lengths)
    if bool(((lengths < 0) | (lengths > t)).any()):
        raise ValueError(f"lengths must be in [0, {t}], got {lengths.tolist()}")
    return _launch(emissions, transitions, start, end, lengths)
