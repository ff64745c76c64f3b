"""The fused prototype log-softmax kernel against a float64 PyTorch oracle.

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
    out = prototype_log_softmax(x32, p32)
    out.backward(g.float())
    _assert_as_accurate_as_fp32_torch(out, x32.grad, p32.grad, x64, p64, ref, g)
