"""Speed and accuracy of the fused prototype log-softmax against plain PyTorch.

    python benchmarks/kernels.py            # on whatever device torch sees (CUDA if present)
    python benchmarks/kernels.py --out DIR  # write kernels_<device>.json there instead

Times forward and forward+backward for the package op (``prototype_log_softmax``,
whatever backend it picks), the PyTorch reference (matmul expansion) and the
naive broadcast version a tutorial would write, at sizes a few-shot NER episode
produces (N query tokens, C = ways + 1 classes, D = encoder width). Errors are
against float64. On CPU the package op takes the reference path unless
``TRITON_INTERPRET=1``, which is a correctness tool, not a speed one: do not
time the interpreter.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

from metalearn_nlp.kernels import backend_for, describe, prototype_log_softmax, prototype_log_softmax_reference

SHAPES = [(2048, 6, 384), (8192, 11, 768), (65536, 11, 768), (65536, 33, 1024)]


def naive(x, p):
    return torch.log_softmax(-((x[:, None, :] - p[None, :, :]) ** 2).sum(-1), dim=1)


def timed(fn, device, reps=20):
    """Median milliseconds of ``fn()``: CUDA events through triton's do_bench on GPU, perf_counter on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    fn()
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    return sorted(samples)[len(samples) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--max-n", type=int, default=None, help="skip shapes with more rows (CPU runs)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    max_n = args.max_n if args.max_n is not None else (10**9 if device.type == "cuda" else 8192)
    records = []
    print(describe())
    print(f"{'N':>6} {'C':>3} {'D':>5} | {'method':<10} {'fwd ms':>8} {'fwd+bwd ms':>11} {'max err':>9}")
    for n, c, d in SHAPES:
        if n > max_n:
            continue
        x64 = torch.randn(n, d, dtype=torch.float64, device=device)
        p64 = x64[torch.randint(0, n, (c,), device=device)] + 0.5 * torch.randn(c, d, dtype=torch.float64, device=device)
        exact = prototype_log_softmax_reference(x64, p64)
        g = torch.randn(n, c, device=device)
        for name, fn in (("package", prototype_log_softmax), ("reference", prototype_log_softmax_reference), ("naive", naive)):
            x = x64.float().requires_grad_()
            p = p64.float().requires_grad_()
            with torch.no_grad():
                err = (fn(x, p).double() - exact).abs().max().item()
            fwd = timed(lambda: fn(x, p), device)
            both = timed(lambda: torch.autograd.grad(fn(x, p), (x, p), g), device)
            rec = {"n": n, "c": c, "d": d, "method": name,
                   "backend": backend_for(x) if name == "package" else "torch",
                   "fwd_ms": round(fwd, 4), "fwd_bwd_ms": round(both, 4), "max_abs_err": err}
            records.append(rec)
            print(f"{n:>6} {c:>3} {d:>5} | {name:<10} {fwd:>8.3f} {both:>11.3f} {err:>9.1e}")
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    result = {"benchmark": "prototype_log_softmax", "device": device_name, "torch": torch.__version__,
              "kernels": describe(), "date": dt.date.today().isoformat(), "records": records}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"kernels_{device.type}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
