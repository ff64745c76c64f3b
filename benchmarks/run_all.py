"""Run every benchmark script in this folder; each prints a table and writes JSON to results/.

    python benchmarks/run_all.py            # all of them
    python benchmarks/run_all.py sampling   # only those whose name contains 'sampling'

Benchmarks measure; tests assert. Nothing here runs in CI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in (Path(__file__).name, "report.py"))
    if argv:
        scripts = [p for p in scripts if any(word in p.stem for word in argv)]
        if not scripts:
            print(f"no benchmark matches {argv}; available: {[p.stem for p in HERE.glob('*.py')]}")
            return 2
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"== {script.name}: exit {rc}, {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
