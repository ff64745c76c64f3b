"""The fused prototype kernels (log-softmax, and the NLL loss) against float64 PyTorch oracles.

Under ``make test`` (``TRITON_INTERPRET=1``) the CPU tensors here run the Triton
kernels in the interpreter; without it they run the reference, and the
subprocess tests below still exercise the interpreter.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from metalearn_nlp import kernels
from metalearn_nlp.kernels import backend, prototype_log_softmax, prototype_log_softmax_reference

SHAPES = [(1, 1, 1), (7, 3, 5), (33, 5, 97), (257, 11, 384), (1823, 7, 781)]


def _inputs(n, c, d, dtype=torch.float32):
    # fresh random data every run, never zeros; prototypes near the data so softmax is not one-hot
    x = torch.randn(n, d, dtype=torch.float64)
    p = x[torch.randint(0, n, (c,))] + 0.5 * torch.randn(c, d, dtype=torch.float64)
    return x, p


def _max_err(a, ref):
    return (a.double() - ref).abs().max().item()


def _fp32_torch(x64, p64, g):
    """What plain PyTorch achieves in float32 on the same data: the bar the kernel must meet."""
    x, p = x64.detach().float().requires_grad_(), p64.detach().float().requires_grad_()
    out = prototype_log_softmax_reference(x, p)
    out.backward(g.float())
    return out, x.grad, p.grad


def _assert_as_accurate_as_fp32_torch(out, dx, dp, x64, p64, ref, g):
    """The kernel's error against float64 is within 8x PyTorch's own float32 error (plus a floor).

    Both round every distance to float32 (error ~ eps * ||x - p||^2); they differ only in the
    order of summation, which moves the error by a small factor either way (up to ~4x seen in
    100 random runs). A wrong formula is
    off by O(1), far outside this bar.
    """
    t_out, t_dx, t_dp = _fp32_torch(x64, p64, g)
    for name, got, bar, exact in (("values", out, t_out, ref), ("dx", dx, t_dx, x64.grad), ("dp", dp, t_dp, p64.grad)):
        err, bar_err = _max_err(got, exact), _max_err(bar, exact)
        floor = 1e-6 * max(1.0, exact.abs().max().item())
        assert err <= 8 * bar_err + floor, f"{name}: kernel error {err:.3g} vs float32 PyTorch {bar_err:.3g}"


@pytest.mark.parametrize("n,c,d", SHAPES)
def test_values_and_gradients_match_float64(n, c, d):
    x64, p64 = _inputs(n, c, d)
    x64.requires_grad_(); p64.requires_grad_()
    ref = prototype_log_softmax_reference(x64, p64)
    g = torch.randn_like(ref)
    ref.backward(g)

    x32 = x64.detach().float().requires_grad_()
    p32 = p64.detach().float().requires_grad_()
    out = prototype_log_softmax(x32, p32)
    out.backward(g.float())

    assert out.dtype == torch.float32 and out.shape == (n, c)
    _assert_as_accurate_as_fp32_torch(out, x32.grad, p32.grad, x64, p64, ref, g)


def test_rows_are_log_distributions_and_nearest_prototype_wins():
    x, p = _inputs(50, 6, 16)
    logp = prototype_log_softmax(x.float(), p.float())
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(50))
    dist = torch.cdist(x, p)
    assert torch.equal(logp.argmax(1), dist.argmin(1))


def test_half_precision_inputs_give_float32_output():
    x, p = _inputs(20, 4, 32)
    out = prototype_log_softmax(x.to(torch.bfloat16), p.to(torch.bfloat16))
    assert out.dtype == torch.float32
    ref = prototype_log_softmax_reference(x.to(torch.bfloat16).double(), p.to(torch.bfloat16).double())
    assert (out.double() - ref).abs().max() < 1e-3 * max(1.0, ref.abs().max().item())


def test_non_contiguous_inputs():
    x, p = _inputs(40, 5, 24)
    xt = x.float().t().contiguous().t()  # same values, column-major strides
    torch.testing.assert_close(prototype_log_softmax(xt, p.float()), prototype_log_softmax(x.float(), p.float()))


@pytest.mark.parametrize("x,p,err,match", [
    (torch.randn(3, 4), torch.randn(2, 5), ValueError, "D=4"),
    (torch.randn(3, 4, 1), torch.randn(2, 4), ValueError, "must be 2-D"),
    (torch.randn(3, 4), torch.randn(0, 4), ValueError, "at least one prototype"),
    (torch.ones(3, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), TypeError, "floating-point"),
])
def test_bad_inputs_are_named(x, p, err, match):
    with pytest.raises(err, match=match):
        prototype_log_softmax(x, p)


def test_backend_follows_environment_at_definition():
    expected = backend.INTERPRETER if os.environ.get("TRITON_INTERPRET") == "1" else backend.TORCH
    if kernels.INFO.triton_version is None or kernels.INFO.forced_torch:
        expected = backend.TORCH
    assert kernels.backend_for(torch.empty(1)) == expected
    assert expected in kernels.describe()


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "METALEARN_NLP_KERNELS")}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(kernels.INFO.triton_version is None, reason="Triton is not installed")
def test_interpreter_only_when_set_before_definition():
    code = """
        import os, torch
        from metalearn_nlp import kernels
        before = kernels.backend_for(torch.empty(1))
        os.environ["TRITON_INTERPRET"] = "1"   # too late: kernels are already defined
        print(before, kernels.backend_for(torch.empty(1)))
    """
    assert _run(code) == "torch torch"
    assert _run(code, TRITON_INTERPRET="1") == "triton-interpreter triton-interpreter"
    assert _run(code, TRITON_INTERPRET="1", METALEARN_NLP_KERNELS="torch") == "torch torch"


@pytest.mark.skipif(kernels.INFO.triton_version is None, reason="Triton is not installed")
def test_interpreted_kernel_matches_reference_in_subprocess():
    code = """
        import torch
        from metalearn_nlp.kernels import prototype_log_softmax, prototype_log_softmax_reference, backend_for
        x, p = torch.randn(45, 19, dtype=torch.float64), torch.randn(9, 19, dtype=torch.float64)
        err = (prototype_log_softmax(x.float(), p.float()).double() - prototype_log_softmax_reference(x, p)).abs().max()
        print(backend_for(x), bool(err < 1e-4))
    """
    assert _run(code, TRITON_INTERPRET="1") == "triton-interpreter True"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n,c,d", SHAPES)
def test_cuda_kernel_matches_float64(n, c, d):
    x64, p64 = _inputs(n, c, d)
    x64, p64 = x64.cuda().requires_grad_(), p64.cuda().requires_grad_()
    ref = prototype_log_softmax_reference(x64, p64)
    g = torch.randn_like(ref)
    ref.backward(g)
    x32 = x64.detach().float().requires_grad_()
    p32 = p64.detach().float().requires_grad_()
    assert kernels.backend_for(x32) == backend.TRITON
    from metalearn_nlp.kernels import proto_logsoftmax as mod
    out = mod._PrototypeLogSoftmax.apply(x32, p32)  # the kernel itself, whatever the size rule says
    out.backward(g.float())
    _assert_as_accurate_as_fp32_torch(out, x32.grad, p32.grad, x64, p64, ref, g)


# ---------------------------------------------------------------------------------------------
# Higher-order gradients. MAML differentiates through the gradient of this loss
# (torch.autograd.grad(..., create_graph=True)), so second-order gradients through the fused
# kernel must equal the reference's, not merely exist. Before the fix the kernel's backward was
# neither differentiable nor marked once_differentiable: the graph of the gradient silently
# missed the softmax's dependence on x and p, and second-order gradients were off by ~100 on a
# scale of ~330 without any error.
# ---------------------------------------------------------------------------------------------

_KERNEL_ACTIVE = kernels.backend_for(torch.empty(1)) != backend.TORCH
_needs_kernel = pytest.mark.skipif(
    not _KERNEL_ACTIVE,
    reason=f"no Triton backend for CPU tensors ({kernels.describe()}); "
           "set TRITON_INTERPRET=1 before import (as `make test` does) to test the kernel's autograd",
)


def _seeded_problem(n=37, c=5, d=16, seed=0):
    """Float64 x (N x D), prototypes near the data (C x D), labels and a weight like p: all seeded."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    p = x[torch.randint(0, n, (c,), generator=gen)] + 0.5 * torch.randn(c, d, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, c, (n,), generator=gen)
    w = torch.randn(c, d, dtype=torch.float64, generator=gen)
    return x, p, labels, w


def _on_kernel(fn, x):
    """Call ``fn`` and check its output came out of the fused autograd.Function, not the reference."""
    out = fn()
    assert type(out.grad_fn).__name__ == "_PrototypeLogSoftmaxBackward", (
        f"expected the fused kernel on {kernels.backend_for(x)}, got grad_fn {out.grad_fn}")
    return out


def _second_order(op, x, p, labels, w):
    """loss = summed nll(op(x, p)); g = d loss / d(x, p) with a graph; h = sum(g_x^2) + sum(g_p * w); dh/d(x, p)."""
    loss = torch.nn.functional.nll_loss(op(x, p), labels, reduction="sum")
    gx, gp = torch.autograd.grad(loss, (x, p), create_graph=True)
    h = (gx ** 2).sum() + (gp * w.to(gp.dtype)).sum()
    hx, hp = torch.autograd.grad(h, (x, p))
    return loss, gx, gp, h, hx, hp


def _assert_close_to(got, exact, name, rtol=1e-4):
    """Float32 kernel result vs float64 reference, relative to the reference's largest entry."""
    scale = max(1.0, exact.abs().max().item())
    err = _max_err(got.detach(), exact.detach())
    assert err <= rtol * scale, f"{name}: max error {err:.3g} on a scale of {exact.abs().max().item():.3g}"


@_needs_kernel
@pytest.mark.parametrize("layout", ["contiguous", "column-major"])
def test_second_order_gradients_match_reference(layout):
    x64, p64, labels, w = _seeded_problem()
    x64.requires_grad_(); p64.requires_grad_()
    ref = _second_order(prototype_log_softmax_reference, x64, p64, labels, w)

    x32, p32 = x64.detach().float(), p64.detach().float()
    if layout == "column-major":  # the graph must reach the caller's tensors, not a contiguous copy
        x32, p32 = x32.t().contiguous().t(), p32.t().contiguous().t()
    x32.requires_grad_(); p32.requires_grad_()
    got = _second_order(lambda a, b: _on_kernel(lambda: prototype_log_softmax(a, b), a), x32, p32, labels, w)

    for name, g, r in zip(("loss", "dloss/dx", "dloss/dp", "h", "dh/dx", "dh/dp"), got, ref):
        _assert_close_to(g, r, name)


@_needs_kernel
@pytest.mark.parametrize("create_graph", [False, True])
def test_first_order_gradients_unchanged(create_graph, monkeypatch):
    """First-order gradients match the reference, and without create_graph the Triton backward runs."""
    from metalearn_nlp.kernels import proto_logsoftmax as mod

    calls = []
    real = mod._launch_bwd
    monkeypatch.setattr(mod, "_launch_bwd", lambda *a: calls.append(1) or real(*a))

    x64, p64, labels, _ = _seeded_problem(seed=1)
    x64.requires_grad_(); p64.requires_grad_()
    ref = torch.autograd.grad(torch.nn.functional.nll_loss(prototype_log_softmax_reference(x64, p64), labels),
                              (x64, p64))
    x32 = x64.detach().float().requires_grad_()
    p32 = p64.detach().float().requires_grad_()
    out = _on_kernel(lambda: prototype_log_softmax(x32, p32), x32)
    got = torch.autograd.grad(torch.nn.functional.nll_loss(out, labels), (x32, p32), create_graph=create_graph)

    for name, g, r in zip(("dx", "dp"), got, ref):
        _assert_close_to(g, r, name)
    assert calls == ([] if create_graph else [1]), "first-order backward must use the Triton kernel"
    assert all(g.requires_grad == create_graph for g in got)


def test_reference_gradcheck_and_gradgradcheck():
    x, p, _, _ = _seeded_problem(n=6, c=3, d=4, seed=2)
    x.requires_grad_(); p.requires_grad_()
    assert torch.autograd.gradcheck(prototype_log_softmax_reference, (x, p))
    assert torch.autograd.gradgradcheck(prototype_log_softmax_reference, (x, p))


def _maml_outer_grad(op, x, p, labels, query_labels, lr=0.1):
    """Two-step inner loop on x (the fast weights), then an outer loss; its gradient w.r.t. x and p."""
    fast = x
    for _ in range(2):
        inner = torch.nn.functional.nll_loss(op(fast, p), labels)
        (g,) = torch.autograd.grad(inner, fast, create_graph=True)
        fast = fast - lr * g
    outer = torch.nn.functional.nll_loss(op(fast, p), query_labels)
    return (outer, *torch.autograd.grad(outer, (x, p)))


@_needs_kernel
def test_maml_inner_loop_through_kernel_matches_reference():
    x64, p64, labels, _ = _seeded_problem(seed=3)
    query_labels = torch.roll(labels, 1)
    x64.requires_grad_(); p64.requires_grad_()
    ref = _maml_outer_grad(prototype_log_softmax_reference, x64, p64, labels, query_labels)

    x32 = x64.detach().float().requires_grad_()
    p32 = p64.detach().float().requires_grad_()
    got = _maml_outer_grad(lambda a, b: _on_kernel(lambda: prototype_log_softmax(a, b), a),
                           x32, p32, labels, query_labels)
    for name, g, r in zip(("outer loss", "d outer/dx", "d outer/dp"), got, ref):
        _assert_close_to(g, r, name)


@_needs_kernel
def test_torch_func_maml_through_kernel_matches_reference(monkeypatch):
    """The same two-step inner loop written with torch.func.grad (grad of grad), as functional MAML does."""
    from metalearn_nlp.kernels import proto_logsoftmax as mod

    calls = []
    real = mod._launch_fwd
    monkeypatch.setattr(mod, "_launch_fwd", lambda *a: calls.append(1) or real(*a))

    x64, p64, labels, _ = _seeded_problem(seed=4)
    query_labels = torch.roll(labels, 1)

    def outer_loss(op):
        def loss(x, p, y):
            return torch.nn.functional.nll_loss(op(x, p), y, reduction="sum")

        def outer(x, p):
            fast = x
            for _ in range(2):
                fast = fast - 0.1 * torch.func.grad(loss)(fast, p, labels)
            return loss(fast, p, query_labels)
        return outer

    ref = torch.func.grad(outer_loss(prototype_log_softmax_reference), argnums=(0, 1))(x64, p64)
    got = torch.func.grad(outer_loss(prototype_log_softmax), argnums=(0, 1))(x64.float(), p64.float())
    assert len(calls) == 3, "the forward passes must run the fused kernel"
    for name, g, r in zip(("d outer/dx", "d outer/dp"), got, ref):
        _assert_close_to(g, r, name)


def test_log_softmax_kernel_beyond_one_tile_of_classes_and_fallback_past_max():
    """C = 65 runs the kernel (a 128-wide tile); C > MAX_CLASSES goes to the reference, not an error."""
    from metalearn_nlp.kernels import proto_logsoftmax as mod

    for c in (65, mod.MAX_CLASSES + 1):
        x64, p64, _, _ = _seeded_problem(n=37, c=c, d=16, seed=c)
        out = prototype_log_softmax(x64.float(), p64.float())
        expected = "_PrototypeLogSoftmaxBackward" if (_KERNEL_ACTIVE and c <= mod.MAX_CLASSES) else None
        assert (type(out.grad_fn).__name__ if out.grad_fn else None) in (expected, "LogSoftmaxBackward0", None)
        _assert_close_to(out, prototype_log_softmax_reference(x64, p64), f"C={c}")


# ---------------------------------------------------------------------------------------------
# The fused prototypical loss (prototype_nll): distances by tl.dot, online log-sum-exp over
# class blocks of 16, NLL over the tokens whose label is not ignored, and its backward kernels.
# ---------------------------------------------------------------------------------------------

from metalearn_nlp.kernels import prototype_nll, prototype_nll_reference  # noqa: E402
from metalearn_nlp.kernels import proto_nll as nll_mod  # noqa: E402

NLL_SHAPES = [(1, 2, 16), (37, 6, 16), (37, 65, 16), (37, 11, 384), (300, 11, 16), (300, 6, 384)]


def _poison_nll(monkeypatch):
    """Kernel outputs start as NaN, so an element the kernel forgets to write shows up."""
    monkeypatch.setattr(nll_mod, "_empty", lambda shape, dtype, device: torch.full(shape, float("nan"), dtype=dtype,
                                                                                  device=device))


def _nll_problem(n, c, d, seed, ignore_every=5):
    x, p, labels, _ = _seeded_problem(n=n, c=c, d=d, seed=seed)
    labels[1::ignore_every] = -100  # some tokens left out, as ProtoNet's loss does
    return x, p, labels


def _nll_grads(op, x, p, labels):
    x, p = x.detach().requires_grad_(), p.detach().requires_grad_()
    loss = op(x, p, labels)
    return (loss, *torch.autograd.grad(loss, (x, p)))


def _on_nll_kernel(x, p, labels):
    loss = prototype_nll(x, p, labels)
    assert type(loss.grad_fn).__name__ == "_PrototypeNLLBackward", f"expected the fused loss, got {loss.grad_fn}"
    return loss


@_needs_kernel
@pytest.mark.parametrize("n,c,d", NLL_SHAPES)
def test_nll_values_and_gradients_match_float64(n, c, d, monkeypatch):
    _poison_nll(monkeypatch)
    x64, p64, labels = _nll_problem(n, c, d, seed=n + c + d)
    ref = _nll_grads(prototype_nll_reference, x64, p64, labels)
    fp32 = _nll_grads(prototype_nll_reference, x64.float(), p64.float(), labels)  # PyTorch's own float32
    got = _nll_grads(_on_nll_kernel, x64.float(), p64.float(), labels)
    for name, g, bar, r in zip(("loss", "dx", "dp"), got, fp32, ref):
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
        err, bar_err = _max_err(g, r), _max_err(bar, r)
        assert err <= 8 * bar_err + 1e-6 * max(1.0, r.abs().max().item()), f"{name}: {err:.3g} vs {bar_err:.3g}"
    assert got[1][1::5].eq(0).all(), "ignored tokens get no gradient"


@_needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_nll_large_norm_close_vectors_do_not_cancel(dtype):
    """Vectors of norm ~1000 within ~1 of each other: the expanded form must not lose the differences."""
    gen = torch.Generator().manual_seed(5)
    centre = 1000.0 * torch.nn.functional.normalize(torch.randn(1, 64, dtype=torch.float64, generator=gen))
    x = (centre + 0.3 * torch.randn(37, 64, dtype=torch.float64, generator=gen)).to(dtype)
    p = (centre + 0.3 * torch.randn(6, 64, dtype=torch.float64, generator=gen)).to(dtype)
    labels = torch.randint(0, 6, (37,), generator=gen)
    ref = _nll_grads(prototype_nll_reference, x.double(), p.double(), labels)  # exact on the rounded inputs
    naive = _nll_grads(prototype_nll_reference, x.float(), p.float(), labels)  # float32, uncentred
    got = _nll_grads(_on_nll_kernel, x, p, labels)
    assert got[1].dtype == dtype and got[2].dtype == dtype
    grad_tol = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]  # output rounding
    for name, g, bad, r, tol in zip(("loss", "dx", "dp"), got, naive, ref, (1e-4, grad_tol, grad_tol)):
        scale = max(1.0, r.abs().max().item())
        assert _max_err(g, r) <= tol * scale, f"{name}: {_max_err(g, r):.3g} on a scale of {scale:.3g}"
    assert _max_err(naive[0], ref[0]) > 100 * _max_err(got[0], ref[0])  # what centring buys


@_needs_kernel
@pytest.mark.parametrize("layout", ["column-major", "strided-slice"])
def test_nll_non_contiguous_inputs(layout, monkeypatch):
    _poison_nll(monkeypatch)
    x64, p64, labels = _nll_problem(45, 7, 40, seed=6)
    if layout == "column-major":
        x, p = x64.float().t().contiguous().t(), p64.float().t().contiguous().t()
    else:  # every other row and column of bigger tensors, labels strided too
        x = torch.zeros(90, 80).index_put_((torch.arange(0, 90, 2)[:, None], torch.arange(0, 80, 2)[None, :]),
                                           x64.float())[::2, ::2]
        p = torch.zeros(7, 80)[:, ::2].copy_(p64.float())
        labels = torch.stack([labels, labels]).t()[:, 0]
    assert not (x.is_contiguous() and p.is_contiguous())
    got = _nll_grads(_on_nll_kernel, x, p, labels)
    ref = _nll_grads(prototype_nll_reference, x64, p64, labels)
    for name, g, r in zip(("loss", "dx", "dp"), got, ref):
        _assert_close_to(g, r, name)


@_needs_kernel
def test_nll_second_order_and_create_graph_path(monkeypatch):
    """create_graph=True differentiates PyTorch ops (exact second order); without it the kernels run."""
    calls = []
    real = nll_mod._launch_bwd
    monkeypatch.setattr(nll_mod, "_launch_bwd", lambda *a: calls.append(1) or real(*a))
    x64, p64, labels = _nll_problem(37, 6, 16, seed=8)
    w = torch.randn(6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(9))

    def second(op, x, p):
        x, p = x.detach().requires_grad_(), p.detach().requires_grad_()
        loss = op(x, p, labels)
        gx, gp = torch.autograd.grad(loss, (x, p), create_graph=True)
        h = (gx ** 2).sum() + (gp * w.to(gp.dtype)).sum()
        return (loss, gx, gp, h, *torch.autograd.grad(h, (x, p)))

    ref = second(prototype_nll_reference, x64, p64)
    got = second(_on_nll_kernel, x64.float(), p64.float())
    for name, g, r in zip(("loss", "dx", "dp", "h", "dh/dx", "dh/dp"), got, ref):
        _assert_close_to(g, r, name)
    assert calls == [], "create_graph=True must not use the (non-differentiable) backward kernels"
    _nll_grads(_on_nll_kernel, x64.float(), p64.float(), labels)
    assert calls == [1]


@_needs_kernel
def test_nll_second_order_against_finite_differences():
    """gradgradcheck-style: the float32 kernel's Hessian-vector product against central differences."""
    x64, p64, labels = _nll_problem(11, 3, 16, seed=10)
    v = torch.randn_like(x64)
    x = x64.float().requires_grad_()
    (gx,) = torch.autograd.grad(_on_nll_kernel(x, p64.float(), labels), x, create_graph=True)
    (hv,) = torch.autograd.grad((gx * v.float()).sum(), x)

    def grad_at(xx):
        xx = xx.detach().requires_grad_()
        return torch.autograd.grad(prototype_nll_reference(xx, p64, labels), xx)[0]

    eps = 1e-5
    fd = (grad_at(x64 + eps * v) - grad_at(x64 - eps * v)) / (2 * eps)
    _assert_close_to(hv, fd, "Hessian-vector product", rtol=1e-3)


@_needs_kernel
def test_nll_torch_func_maml_matches_reference(monkeypatch):
    calls = []
    real = nll_mod._launch_fwd
    monkeypatch.setattr(nll_mod, "_launch_fwd", lambda *a: calls.append(1) or real(*a))
    x64, p64, labels = _nll_problem(37, 5, 16, seed=11)
    query = torch.roll(labels, 1)

    def outer(op):
        def loss(x, p, y):
            return op(x, p, y)

        def run(x, p):
            fast = x
            for _ in range(2):
                fast = fast - 0.1 * torch.func.grad(loss)(fast, p, labels)
            return loss(fast, p, query)
        return run

    ref = torch.func.grad(outer(prototype_nll_reference), argnums=(0, 1))(x64, p64)
    got = torch.func.grad(outer(prototype_nll), argnums=(0, 1))(x64.float(), p64.float())
    assert len(calls) == 3, "the forward passes must run the fused kernel"
    for name, g, r in zip(("d outer/dx", "d outer/dp"), got, ref):
        _assert_close_to(g, r, name)


def test_nll_reference_is_protonet_loss_bit_for_bit():
    """The PyTorch path gives exactly the bits of ProtoNet's loss as written before the fused kernel."""
    x, p, labels, _ = _seeded_problem(n=50, c=6, d=24, seed=12)
    x, p = x.float(), p.float()
    present = torch.tensor([True, False, True, True, False, True])
    compact = torch.cumsum(present.long(), 0) - 1
    keep = present[labels]
    before = torch.nn.functional.nll_loss(prototype_log_softmax_reference(x[keep], p[present]), compact[labels[keep]])
    now = prototype_nll_reference(x, p[present], torch.where(keep, compact[labels], -100))
    assert torch.equal(before, now)


def test_nll_edge_cases():
    x, p, labels, _ = _seeded_problem(n=9, c=3, d=16, seed=13)
    assert torch.isnan(prototype_nll(x.float(), p.float(), torch.full((9,), -100)))  # as F.nll_loss
    with pytest.raises(ValueError, match="labels must be"):
        prototype_nll(x.float(), p.float(), labels[:4])
    if _KERNEL_ACTIVE:
        with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
            prototype_nll(x.float(), p.float(), torch.full((9,), 3))
    out64 = prototype_nll(x, p, labels)
    assert out64.dtype == torch.float64 and out64.grad_fn is None  # float64 takes the reference


def test_backend_rule(monkeypatch):
    """CPU: the reference (or the interpreter when on); CUDA: Triton only inside the envelope."""
    cpu = torch.empty(1)
    assert kernels.choose("prototype_nll", cpu, n=4096, c=11, d=768) == kernels.backend_for(cpu)
    monkeypatch.setattr(backend, "backend_for", lambda t: backend.TRITON)  # pretend a CUDA tensor
    assert backend.choose("prototype_nll", cpu, n=4096, c=11, d=768) == backend.TRITON
    assert backend.choose("prototype_nll", cpu, n=64, c=11, d=768) == backend.TORCH  # too small: unmeasured
    assert backend.choose("viterbi", cpu, b=32, t=40, c=11) == backend.TRITON
    assert backend.choose("viterbi", cpu, b=32, t=40, c=65) == backend.TORCH
    with pytest.raises(KeyError):
        backend.choose("nope", cpu)
    with pytest.raises(TypeError, match="sizes"):
        backend.choose("viterbi", cpu, b=1)


@pytest.mark.skipif(kernels.INFO.triton_version is None, reason="Triton is not installed")
def test_forced_torch_takes_the_reference_for_every_op():
    code = """
        import torch
        from metalearn_nlp.kernels import prototype_nll, viterbi
        x = torch.randn(5, 16, requires_grad=True)
        loss = prototype_nll(x, torch.randn(3, 16), torch.tensor([0, 1, 2, -100, 0]))
        print(type(loss.grad_fn).__name__)
    """
    assert _run(code, TRITON_INTERPRET="1", METALEARN_NLP_KERNELS="torch") == "NllLossBackward0"
    assert _run(code, TRITON_INTERPRET="1") == "_PrototypeNLLBackward"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,c,d", [(37, 6, 384), (4099, 11, 768), (8192, 65, 1024)])
def test_cuda_nll_kernel_matches_float64(n, c, d, dtype):
    x64, p64, labels = (t.cuda() for t in _nll_problem(n, c, d, seed=14))
    x, p = x64.to(dtype), p64.to(dtype)
    ref = _nll_grads(prototype_nll_reference, x.double(), p.double(), labels)
    got = _nll_grads(lambda a, b, y: nll_mod._PrototypeNLL.apply(a, b, y, -100)[0], x, p, labels)
    tol = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    for name, g, r in zip(("loss", "dx", "dp"), got, ref):
        _assert_close_to(g, r, name, rtol=tol)
