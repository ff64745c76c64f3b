"""The batched Viterbi kernel against the batched PyTorch reference and a per-sentence oracle.

Under ``make test`` (``TRITON_INTERPRET=1``) :func:`metalearn_nlp.kernels.viterbi` runs the
Triton kernel in the interpreter; the tests that must see the kernel are skipped otherwise.
"""

import pytest
import torch

from metalearn_nlp import kernels
from metalearn_nlp.kernels import backend, viterbi, viterbi_reference
from metalearn_nlp.kernels import batched_viterbi as viterbi_module
from metalearn_nlp.learners import viterbi_decode

_KERNEL_ACTIVE = kernels.backend_for(torch.empty(1)) != backend.TORCH
_needs_kernel = pytest.mark.skipif(
    not _KERNEL_ACTIVE, reason=f"no Triton backend for CPU tensors ({kernels.describe()}); set TRITON_INTERPRET=1")


def _oracle(emissions, transitions, start, end, n):
    """One sentence, plain Python in float64: strict ``>`` keeps the first (lowest) maximal label."""
    c = emissions.shape[1]
    if n == 0:
        return [], 0.0
    e, tr, st, en = (v.double().tolist() for v in (emissions, transitions, start, end))
    score = [st[j] + e[0][j] for j in range(c)]
    pointers = []
    for t in range(1, n):
        new, arg = [], []
        for j in range(c):
            best, best_i = score[0] + tr[0][j], 0
            for i in range(1, c):
                if score[i] + tr[i][j] > best:
                    best, best_i = score[i] + tr[i][j], i
            new.append(best + e[t][j])
            arg.append(best_i)
        score, pointers = new, pointers + [arg]
    final = [score[j] + en[j] for j in range(c)]
    last = max(range(c), key=lambda j: (final[j], -j))
    path = [last]
    for arg in reversed(pointers):
        path.append(arg[path[-1]])
    return path[::-1], final[last]


def _problem(b, t, c, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(b, t, c, generator=gen).log_softmax(-1).to(dtype)
    transitions = torch.randn(c, c, generator=gen).to(dtype)
    start, end = torch.randn(c, generator=gen).to(dtype), torch.randn(c, generator=gen).to(dtype)
    lengths = torch.randint(0, t + 1, (b,), generator=gen)
    lengths[0] = t  # one full-length sentence
    if b > 2:
        lengths[1] = 0  # and an empty one
    return emissions, transitions, start, end, lengths


def _poison(monkeypatch):
    """Every kernel output starts as garbage (NaN, or a label id out of range) so unwritten entries show."""
    def empty(shape, dtype, device):
        fill = float("nan") if dtype.is_floating_point else 12345
        return torch.full(shape, fill, dtype=dtype, device=device)
    monkeypatch.setattr(viterbi_module, "_empty", empty)


def _rescore(emissions, transitions, start, end, path):
    e, tr = emissions.double(), transitions.double()
    if not path:
        return 0.0
    score = start.double()[path[0]] + end.double()[path[-1]] + sum(e[t, y] for t, y in enumerate(path))
    return float(score + sum(tr[a, b] for a, b in zip(path, path[1:])))


@_needs_kernel
@pytest.mark.parametrize("b,t,c", [(1, 1, 2), (5, 37, 6), (9, 23, 11), (3, 70, 65), (2, 301, 6)])
def test_kernel_matches_reference_bitwise_and_oracle(b, t, c, monkeypatch):
    _poison(monkeypatch)
    emissions, transitions, start, end, lengths = _problem(b, t, c, seed=b * 100 + c)
    calls = []
    real = viterbi_module._launch
    monkeypatch.setattr(viterbi_module, "_launch", lambda *a: calls.append(1) or real(*a))
    paths, scores = viterbi(emissions, transitions, start, end, lengths)
    assert calls == [1], "the kernel must run"
    ref_paths, ref_scores = viterbi_reference(emissions, transitions, start, end, lengths)
    assert torch.equal(paths, ref_paths)
    assert torch.equal(scores, ref_scores)  # same float32 additions in the same order
    for i, n in enumerate(lengths.tolist()):
        path, best = _oracle(emissions[i], transitions, start, end, n)
        got = paths[i, :n].tolist()
        # float32 vs float64 may reorder near-ties: then the kernel's path must score as well
        if got != path:
            assert _rescore(emissions[i], transitions, start, end, got) == pytest.approx(best, abs=1e-4)
        assert scores[i].item() == pytest.approx(best, abs=1e-4)
        assert paths[i, n:].eq(0).all()


def _tied_problem(b, t, c, seed):
    """Integer scores from a tiny range: exact in float32 and float64, and full of ties."""
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randint(-2, 1, (b, t, c), generator=gen).float()
    transitions = torch.randint(-1, 1, (c, c), generator=gen).float()
    start, end = torch.zeros(c), torch.randint(-1, 1, (c,), generator=gen).float()
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    return emissions, transitions, start, end, lengths


@_needs_kernel
@pytest.mark.parametrize("c", [2, 6, 11])
def test_ties_break_towards_the_lower_label_like_the_oracle(c, monkeypatch):
    _poison(monkeypatch)
    emissions, transitions, start, end, lengths = _tied_problem(6, 9, c, seed=c)
    emissions[0] = 0.0  # everything tied: the all-zero path
    transitions_flat = torch.zeros(c, c)
    paths, scores = viterbi(emissions, transitions, start, end, lengths)
    ref_paths, ref_scores = viterbi_reference(emissions, transitions, start, end, lengths)
    assert torch.equal(paths, ref_paths) and torch.equal(scores, ref_scores)
    for i, n in enumerate(lengths.tolist()):
        path, best = _oracle(emissions[i], transitions, start, end, n)
        assert paths[i, :n].tolist() == path  # exact arithmetic: identical choices, ties included
        assert scores[i].item() == best
    flat, _ = viterbi(torch.zeros(2, 5, c), transitions_flat, lengths=torch.tensor([5, 3]))
    assert flat.eq(0).all()


@_needs_kernel
def test_forbidden_labels_and_strided_inputs(monkeypatch):
    _poison(monkeypatch)
    emissions, transitions, start, end, lengths = _problem(7, 31, 6, seed=7)
    emissions[:, :, 2] = float("-inf")  # label 2 never allowed
    transitions[0, 1] = float("-inf")
    wide = torch.randn(7, 31, 12)
    wide[:, :, ::2] = emissions  # emissions as a view with stride 2 over labels
    strided = wide[:, :, ::2]
    trans_t = transitions.t().contiguous().t()  # column-major
    paths, scores = viterbi(strided, trans_t, start, end, lengths)
    ref_paths, ref_scores = viterbi_reference(emissions, transitions, start, end, lengths)
    assert torch.equal(paths, ref_paths) and torch.equal(scores, ref_scores)
    assert not paths.eq(2).any()


def test_learners_viterbi_decode_goes_through_the_dispatch(monkeypatch):
    """``viterbi_decode`` (StructShot) decodes the batch in one call of ``kernels.viterbi``."""
    emissions, transitions, start, end, lengths = _problem(4, 12, 5, seed=3)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    ref = viterbi_reference(emissions, transitions, start, end, lengths)
    got = viterbi_decode(emissions, transitions, start, end, mask)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_other_dtypes_and_empty_batches_take_the_reference():
    emissions, transitions, start, end, lengths = _problem(3, 5, 4, seed=1, dtype=torch.float64)
    paths, scores = viterbi(emissions, transitions, start, end, lengths)
    assert scores.dtype == torch.float64
    for i, n in enumerate(lengths.tolist()):
        assert paths[i, :n].tolist() == _oracle(emissions[i], transitions, start, end, n)[0]
    empty_paths, empty_scores = viterbi(torch.zeros(0, 4, 3), torch.zeros(3, 3))
    assert empty_paths.shape == (0, 4) and empty_scores.shape == (0,)
    no_time, _ = viterbi(torch.zeros(2, 0, 3), torch.zeros(3, 3))
    assert no_time.shape == (2, 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"emissions": torch.zeros(2, 3)}, "B, T, C"),
    ({"transitions": torch.zeros(2, 2)}, "transitions"),
    ({"lengths": torch.tensor([1])}, "lengths must be"),
])
def test_bad_inputs_are_named(kwargs, match):
    args = {"emissions": torch.zeros(2, 3, 4), "transitions": torch.zeros(4, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        viterbi(**args)


@_needs_kernel
def test_lengths_beyond_t_are_refused():
    with pytest.raises(ValueError, match="lengths must be in"):
        viterbi(torch.zeros(2, 3, 4), torch.zeros(4, 4), lengths=torch.tensor([1, 4]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("b,t,c", [(1, 1, 2), (37, 41, 6), (256, 64, 11), (5, 300, 33), (3, 70, 65)])
def test_cuda_kernel_matches_reference_bitwise(b, t, c, monkeypatch):
    _poison(monkeypatch)
    args = [v.cuda() for v in _problem(b, t, c, seed=c)]
    paths, scores = viterbi_module._launch(*args)  # the kernel itself, whatever the size rule says
    ref_paths, ref_scores = viterbi_reference(*args)
    assert torch.equal(paths, ref_paths) and torch.equal(scores, ref_scores)
    tied = [v.cuda() for v in _tied_problem(b, t, c, seed=c)]
    assert torch.equal(viterbi_module._launch(*tied)[0], viterbi_reference(*tied)[0])
