"""The benchmark scripts run as ``python benchmarks/<name>.py``, so their folder is first on ``sys.path``.

A script named like an installed module hides that module from every library: ``benchmarks/kernels.py``
once hid the ``kernels`` package that ``transformers`` imports when it builds a model, and every
benchmark that loaded the encoder failed with an ImportError.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def test_no_benchmark_script_hides_an_installed_or_standard_module() -> None:
    installed = importlib.metadata.packages_distributions()  # top-level module -> distributions
    clashes = {p.name: installed.get(p.stem, ["the standard library"])
               for p in sorted(BENCHMARKS.glob("*.py"))
               if p.stem in installed or p.stem in sys.stdlib_module_names}
    assert not clashes, (f"rename these benchmark scripts, they hide modules of the same name when run "
                         f"as `python benchmarks/<script>`: {clashes}")


def test_the_encoder_libraries_import_with_the_scripts_folder_first_on_the_path() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import transformers.modeling_utils, transformers.models.bert.modeling_bert")
    proc = subprocess.run([sys.executable, "-c", code, str(BENCHMARKS)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
