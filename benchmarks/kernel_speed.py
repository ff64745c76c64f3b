"""Accuracy and speed of the fused kernels against eager PyTorch and ``torch.compile``.

    python benchmarks/kernel_speed.py                 # CUDA if present: checks + timings -> kernels_cuda.json
    python benchmarks/kernel_speed.py --with-tests    # also the kernel tests, compiled -> kernels_cuda_pytest.log
    python benchmarks/kernel_speed.py --quick         # CPU: a few small checks, records that GPU timings are missing

Kernels: ``prototype_nll`` (ProtoNet's loss, fused), ``prototype_log_softmax`` and ``viterbi``
(StructShot's decoder), at the sizes of ``metalearn_nlp.kernels.CUDA_ENVELOPE`` and a few
below it.

On a CUDA device, for each kernel and shape:

* **checks** in float32, float16 and bfloat16: the kernel's error against float64 (on the
  same rounded inputs) next to eager PyTorch's error in the same dtype;
* **timings** with ``triton.testing.do_bench`` (median, CUDA events) of the kernel itself
  (called directly, whatever the backend rule says), the eager PyTorch version and the same
  compiled with ``torch.compile``; forward, and forward + backward for the losses;
* **bytes**: what the op must move at the least (its inputs read once, its outputs written
  once), the bandwidth the kernel achieves on that floor, and the fraction of the GPU's peak
  (for the GPUs in ``PEAK_GBPS``);
* ``triton_fastest``: whether the kernel beat both PyTorch versions; the CUDA rule in
  ``metalearn_nlp/kernels/backend.py`` should keep Triton only where this is true.

The JSON names the GPU, its driver, and the torch, Triton and CUDA versions. On CPU the
package uses the PyTorch reference (the Triton interpreter is a correctness tool, never
timed): the script checks the references against float64, times them, and records that
the GPU timings are missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import metalearn_nlp
from metalearn_nlp.kernels import (
    CUDA_ENVELOPE,
    INFO,
    backend,
    batched_viterbi,
    describe,
    proto_logsoftmax,
    proto_nll,
    prototype_log_softmax_reference,
    prototype_nll_reference,
    viterbi_reference,
)

RESULTS = Path(__file__).resolve().parent / "results"
LOSS_SHAPES = [(512, 11, 768), (2048, 6, 384), (8192, 11, 768), (65536, 11, 768), (8192, 65, 768),
               (65536, 33, 1024)]
VITERBI_SHAPES = [(1, 40, 11), (32, 40, 11), (256, 64, 11), (32, 128, 33)]
QUICK_LOSS = [(300, 11, 384)]
QUICK_VITERBI = [(8, 40, 11)]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Nominal peak memory bandwidth, GB/s, by a substring of ``torch.cuda.get_device_name()``.
PEAK_GBPS = {"H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H100 NVL": 3900,
             "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100-SXM4-40GB": 1555, "A100-PCIE-40GB": 1555,
             "L40S": 864, "L4": 300, "A10G": 600, "T4": 320, "RTX 4090": 1008}


# -- the competitors ---------------------------------------------------------------------------
def eager_nll(x, p, labels):
    """What one writes in PyTorch: expanded distances in float32, then cross-entropy (no boolean indexing)."""
    xf, pf = x.float(), p.float()
    sq = (xf * xf).sum(1, keepdim=True) - 2.0 * xf @ pf.t() + (pf * pf).sum(1)[None, :]
    return F.cross_entropy(-sq, labels, ignore_index=-100)


def kernel_nll(x, p, labels):
    return proto_nll._PrototypeNLL.apply(x, p, labels, -100)[0]


def kernel_log_softmax(x, p):
    return proto_logsoftmax._PrototypeLogSoftmax.apply(x, p)


def kernel_viterbi(emissions, transitions, start, end, lengths):
    return batched_viterbi._launch(emissions, transitions, start, end, lengths)


# -- measuring ---------------------------------------------------------------------------------
def timed(fn, device) -> float:
    """Median milliseconds: ``triton.testing.do_bench`` on CUDA, ``perf_counter`` on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    fn()
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return sorted(samples)[len(samples) // 2]


def compiled(fn):
    try:
        return torch.compile(fn, dynamic=False)
    except Exception as exc:  # no compiler on this machine: recorded, not fatal
        print(f"torch.compile unavailable: {exc}")
        return None


def safe_time(fn, device):
    try:
        return round(timed(fn, device), 5)
    except Exception as exc:  # e.g. a compile failure: keep the rest of the run
        return f"failed: {type(exc).__name__}: {str(exc)[:200]}"


def bandwidth(nbytes: int, ms, peak):
    if not isinstance(ms, float) or ms <= 0:
        return None, None
    gbps = nbytes / (ms * 1e-3) / 1e9
    return round(gbps, 1), (round(gbps / peak, 3) if peak else None)


def _loss_problem(n, c, d, device, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    p = x[torch.randint(0, n, (c,), generator=gen)] + 0.5 * torch.randn(c, d, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, c, (n,), generator=gen)
    labels[1::7] = -100
    return x.to(device), p.to(device), labels.to(device)


def _grads(fn, x, p, *rest):
    x, p = x.detach().requires_grad_(), p.detach().requires_grad_()
    out = fn(x, p, *rest)
    g = torch.ones_like(out) if out.dim() else None
    return (out, *torch.autograd.grad(out, (x, p), g))


def _err(got, ref):
    scale = max(1.0, ref.abs().max().item())
    return float((got.double() - ref).abs().max().item() / scale)


def check_losses(shapes, device, dtypes, kernels_on):
    """Relative max errors (values and both gradients) against float64, per dtype."""
    rows = []
    for n, c, d in shapes:
        x64, p64, labels = _loss_problem(n, c, d, device)
        for name, dtype in dtypes.items():
            x, p = x64.to(dtype), p64.to(dtype)
            ref = _grads(prototype_nll_reference, x.double(), p.double(), labels)
            eager = _grads(eager_nll, x, p, labels)
            rec = {"op": "prototype_nll", "n": n, "c": c, "d": d, "dtype": name,
                   "eager_err": [_err(a, b) for a, b in zip(eager, ref)]}
            if kernels_on:
                rec["kernel_err"] = [_err(a, b) for a, b in zip(_grads(kernel_nll, x, p, labels), ref)]
            rows.append(rec)
            ref_ls = prototype_log_softmax_reference(x.double(), p.double())
            rec = {"op": "prototype_log_softmax", "n": n, "c": c, "d": d, "dtype": name,
                   "eager_err": [_err(prototype_log_softmax_reference(x, p), ref_ls)]}
            if kernels_on and c <= proto_logsoftmax.MAX_CLASSES:
                rec["kernel_err"] = [_err(kernel_log_softmax(x, p), ref_ls)]
            rows.append(rec)
    return rows


def _viterbi_problem(b, t, c, device, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    emissions = torch.randn(b, t, c, generator=gen).log_softmax(-1)
    transitions, start, end = torch.randn(c, c, generator=gen), torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    lengths = torch.randint(max(1, t // 2), t + 1, (b,), generator=gen)
    return tuple(v.to(device) for v in (emissions, transitions, start, end, lengths))


def check_viterbi(shapes, device, kernels_on):
    rows = []
    for b, t, c in shapes:
        args = _viterbi_problem(b, t, c, device)
        ref_paths, ref_scores = viterbi_reference(*args)
        rec = {"op": "viterbi", "b": b, "t": t, "c": c, "dtype": "float32"}
        if kernels_on:
            paths, scores = kernel_viterbi(*args)
            rec["paths_equal"] = bool(torch.equal(paths, ref_paths))
            rec["scores_equal"] = bool(torch.equal(scores, ref_scores))
        rows.append(rec)
    return rows


def time_losses(shapes, device, dtypes, peak, use_compile):
    rows = []
    compiled_eager = compiled(eager_nll) if use_compile else None
    compiled_ls = compiled(prototype_log_softmax_reference) if use_compile else None
    for n, c, d in shapes:
        x64, p64, labels = _loss_problem(n, c, d, device)
        for name, dtype in dtypes.items():
            e = torch.tensor([], dtype=dtype).element_size()
            x = x64.to(dtype).requires_grad_()
            p = p64.to(dtype).requires_grad_()
            ins = n * d * e + c * d * e
            floors = {"prototype_nll": {"fwd": ins + n * 8 + 4, "fwd_bwd": 2 * (ins + n * 8) + 4 + ins},
                      "prototype_log_softmax": {"fwd": ins + n * c * 4, "fwd_bwd": 2 * ins + 3 * n * c * 4 + ins}}
            ops = {
                "prototype_nll": ({"triton": kernel_nll, "eager": eager_nll, "compiled": compiled_eager},
                                  (labels,), None),
                "prototype_log_softmax": ({"triton": kernel_log_softmax, "eager": prototype_log_softmax_reference,
                                           "compiled": compiled_ls}, (), torch.randn(n, c, device=device)),
            }
            for op, (methods, extra, g) in ops.items():
                if op == "prototype_log_softmax" and c > proto_logsoftmax.MAX_CLASSES:
                    continue
                rec = {"op": op, "n": n, "c": c, "d": d, "dtype": name, "bytes_floor": floors[op],
                       "rule_picks": backend.choose(op, x, n=n, c=c, d=d)}
                for method, fn in methods.items():
                    if fn is None:
                        continue
                    fwd = safe_time(lambda fn=fn: fn(x, p, *extra), device)
                    both = safe_time(lambda fn=fn: torch.autograd.grad(fn(x, p, *extra), (x, p), g), device)
                    rec[method] = {"fwd_ms": fwd, "fwd_bwd_ms": both}
                    if method == "triton":
                        for key, ms in (("fwd", fwd), ("fwd_bwd", both)):
                            gbps, frac = bandwidth(floors[op][key], ms, peak)
                            rec[method][f"{key}_GBps_on_floor"] = gbps
                            rec[method][f"{key}_fraction_of_peak"] = frac
                rec["triton_fastest"] = _fastest(rec, "fwd_bwd_ms")
                rows.append(rec)
                print(_line(rec, "fwd_bwd_ms"))
    return rows


def time_viterbi(shapes, device, peak, use_compile):
    rows = []
    compiled_ref = compiled(viterbi_reference) if use_compile else None
    for b, t, c in shapes:
        args = _viterbi_problem(b, t, c, device)
        floor = b * t * c * 4 + c * c * 4 + 2 * c * 4 + b * 8 + b * t * 8 + b * 4
        rec = {"op": "viterbi", "b": b, "t": t, "c": c, "dtype": "float32", "bytes_floor": floor,
               "rule_picks": backend.choose("viterbi", args[0], b=b, t=t, c=c)}
        for method, fn in (("triton", kernel_viterbi), ("eager", viterbi_reference), ("compiled", compiled_ref)):
            if fn is None:
                continue
            ms = safe_time(lambda fn=fn: fn(*args), device)
            rec[method] = {"ms": ms}
            if method == "triton":
                rec[method]["GBps_on_floor"], rec[method]["fraction_of_peak"] = bandwidth(floor, ms, peak)
        rec["triton_fastest"] = _fastest(rec, "ms")
        rows.append(rec)
        print(_line(rec, "ms"))
    return rows


def _fastest(rec, key):
    def get(method):
        value = rec.get(method, {}).get(key)
        return value if isinstance(value, float) else None
    mine = get("triton")
    others = [v for v in (get("eager"), get("compiled")) if v is not None]
    return None if mine is None or not others else bool(mine < min(others))


def _line(rec, key):
    size = " ".join(f"{k}={rec[k]}" for k in ("n", "b", "t", "c", "d") if k in rec)
    times = "  ".join(f"{m} {rec[m][key]}" for m in ("triton", "eager", "compiled") if m in rec)
    return f"{rec['op']:<22} {size:<26} {rec['dtype']:<9} {times}  triton_fastest={rec['triton_fastest']}"


def environment(device):
    env = {"torch": torch.__version__, "triton": INFO.triton_version, "python": platform.python_version(),
           "metalearn_nlp": metalearn_nlp.__version__, "kernels": describe(), "cuda_envelope": CUDA_ENVELOPE}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                   capability=".".join(map(str, torch.cuda.get_device_capability())))
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except Exception as exc:
            env["driver"] = f"unknown ({type(exc).__name__})"
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def run_tests(out: Path) -> int:
    """The kernel tests, compiled (no interpreter), their log written next to the JSON."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("TRITON_INTERPRET", "METALEARN_NLP_KERNELS")}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_kernels.py", "tests/test_viterbi_kernel.py",
                           "-q", "-rs"], cwd=root, env=env, capture_output=True, text=True)
    (out / "kernels_cuda_pytest.log").write_text(proc.stdout + proc.stderr)
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    return proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for kernels_<device>.json")
    ap.add_argument("--quick", action="store_true", help="small shapes only (CPU, or a smoke test on a GPU)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile competitor")
    ap.add_argument("--dtypes", default="float32,float16,bfloat16", help="comma-separated, for checks and timings")
    ap.add_argument("--with-tests", action="store_true", help="CUDA: also run the kernel tests, log to the out folder")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = {name: DTYPES[name] for name in args.dtypes.split(",")}
    quick = args.quick or device.type == "cpu"
    loss_shapes, viterbi_shapes = (QUICK_LOSS, QUICK_VITERBI) if quick else (LOSS_SHAPES, VITERBI_SHAPES)
    kernels_on = device.type == "cuda" and INFO.triton_version is not None and not INFO.interpret
    kernels_on = kernels_on or backend.backend_for(torch.empty(0, device=device)) == backend.INTERPRETER
    print(describe())
    result = {"benchmark": "kernels", "date": dt.date.today().isoformat(), "environment": environment(device),
              "checks": check_losses(loss_shapes, device, dtypes, kernels_on)
              + check_viterbi(viterbi_shapes, device, kernels_on)}
    args.out.mkdir(parents=True, exist_ok=True)
    rc = 0
    if device.type == "cuda":
        peak = next((v for k, v in PEAK_GBPS.items() if k in torch.cuda.get_device_name()), None)
        result["environment"]["peak_GBps"] = peak
        result["timings"] = (time_losses(loss_shapes, device, dtypes, peak, not args.no_compile)
                             + time_viterbi(viterbi_shapes, device, peak, not args.no_compile))
        if args.with_tests:
            rc = run_tests(args.out)
    else:
        result["gpu_timings"] = ("missing: no CUDA device here. On a GPU machine run "
                                 "`python benchmarks/kernel_speed.py --with-tests` (see benchmarks/README.md)")
        # the CPU path is the PyTorch reference: time it (never the interpreter)
        x64, p64, labels = _loss_problem(*QUICK_LOSS[0], device)
        x, p = x64.float().requires_grad_(), p64.float().requires_grad_()
        vit = _viterbi_problem(*QUICK_VITERBI[0], device)
        result["cpu_reference_ms"] = {
            "prototype_nll_fwd_bwd": round(timed(lambda: torch.autograd.grad(prototype_nll_reference(x, p, labels),
                                                                             (x, p)), device), 4),
            "viterbi": round(timed(lambda: viterbi_reference(*vit), device), 4),
            "shapes": {"prototype_nll": QUICK_LOSS[0], "viterbi": QUICK_VITERBI[0]}}
        print(result["gpu_timings"])
    path = args.out / f"kernels_{device.type}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
