import subprocess
import sys

from metalearn_nlp import __version__, cli


def test_info_reports_version_and_backend(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"metalearn-nlp {__version__}" in out and "kernels: CPU tensors ->" in out


def test_unknown_command_exits_with_usage():
    proc = subprocess.run([sys.executable, "-m", "metalearn_nlp.cli", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
