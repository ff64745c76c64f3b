#!/usr/bin/env python3
"""Copy the book's JavaScript libraries into a folder that the HTML build serves as _static.

The rendered book must read offline (opened from disk, no network), so MathJax and mermaid
come from packages of the registries, never from a CDN at reading time:

* MathJax 2.7.9: the PyPI package ``jupyter-server-mathjax`` (a dependency of the ``book``
  extra), copied from the virtual environment to ``DEST/mathjax/``.
* mermaid: ``dist/mermaid.min.js`` of the npm package ``mermaid`` (no PyPI package ships a
  script build of it), fetched with ``npm pack`` at the version that ``_config.yml`` names in
  ``sphinx.config.mermaid_version``, checked against the sha512 below and cached in
  ``.cache/npm/``, copied to ``DEST/mermaid/``.

Usage: python .ci/vendor_assets.py [DEST]   (default: _build/vendor; `make` runs it)
Idempotent; DEST/vendor_assets.json is written last and records versions and checksums.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# npm's own integrity strings (`npm view mermaid@VERSION dist.integrity`); a version missing
# here is refused, so that changing mermaid_version in _config.yml is a reviewed change.
MERMAID_INTEGRITY = {
    "11.12.1": "sha512-UlIZrRariB11TY1RtTgUWp65tphtBv4CSq7vyS2ZZ2TgoMjs2nloq+wFqxiwcxlhHUvs7DPGgMjs2aeQxz5h9g==",
}


def fail(msg: str) -> None:
    print(f"vendor_assets: {msg}", file=sys.stderr)
    sys.exit(1)


def mermaid_version() -> str:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    version = ((config.get("sphinx") or {}).get("config") or {}).get("mermaid_version")
    if not version:
        fail("_config.yml sets no sphinx.config.mermaid_version")
    return str(version)


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_mathjax(dest: Path) -> dict:
    try:
        import jupyter_server_mathjax
    except ImportError:
        fail("jupyter-server-mathjax is not installed (pip install -e '.[book]')")
    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (src / "MathJax.js").is_file():
        fail(f"no MathJax.js in {src}")
    target = dest / "mathjax"
    shutil.copytree(src, target, dirs_exist_ok=True)  # no rmtree: a build may be reading it
    found = re.search(r'version:"(2\.[0-9.]+)"', (src / "MathJax.js").read_text(encoding="utf8"))
    version = found.group(1) if found else "unknown"
    return {"package": "jupyter-server-mathjax (PyPI)", "mathjax": version, "MathJax.js sha256": sha256(target / "MathJax.js")}


def fetch_mermaid(dest: Path, version: str) -> dict:
    expected = MERMAID_INTEGRITY.get(version)
    if expected is None:
        fail(
            f"mermaid {version} (from _config.yml) has no integrity recorded in {Path(__file__).name}: "
            f"add the output of `npm view mermaid@{version} dist.integrity` to MERMAID_INTEGRITY"
        )
    cache = ROOT / ".cache" / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"mermaid-{version}.tgz"
    if not tarball.is_file() or integrity(tarball) != expected:
        npm = shutil.which("npm")
        if npm is None:
            fail("npm (Node.js) is needed once to fetch mermaid from the npm registry: apt-get install -y npm")
        env = dict(os.environ, npm_config_cache=str(cache / "_cacache"), npm_config_update_notifier="false")
        subprocess.run(
            [npm, "pack", f"mermaid@{version}", "--pack-destination", str(cache), "--ignore-scripts", "--silent"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )
    got = integrity(tarball)
    if got != expected:
        tarball.unlink()
        fail(f"{tarball.name}: integrity {got} is not the recorded {expected}")
    target = dest / "mermaid"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        for member, name in (("package/dist/mermaid.min.js", "mermaid.min.js"), ("package/LICENSE", "LICENSE")):
            data = tar.extractfile(member)
            if data is None:
                fail(f"{member} missing from {tarball.name}")
            (target / name).write_bytes(data.read())
    return {"package": "mermaid (npm)", "version": version, "tarball": expected,
            "mermaid.min.js sha256": sha256(target / "mermaid.min.js")}


def up_to_date(manifest: Path, version: str) -> bool:
    """The manifest says this mermaid version and the installed MathJax.js, and the files are there."""
    try:
        record = json.loads(manifest.read_text())
        import jupyter_server_mathjax

        mathjax_js = Path(jupyter_server_mathjax.__file__).parent / "static" / "MathJax.js"
        return (
            record["mermaid"]["version"] == version
            and record["mathjax"]["MathJax.js sha256"] == sha256(mathjax_js)
            and sha256(manifest.parent / "mathjax" / "MathJax.js") == sha256(mathjax_js)
            and sha256(manifest.parent / "mermaid" / "mermaid.min.js") == record["mermaid"]["mermaid.min.js sha256"]
        )
    except (OSError, KeyError, ValueError, ImportError):
        return False


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "vendor"
    dest = dest if dest.is_absolute() else ROOT / dest
    manifest = dest / "vendor_assets.json"
    version = mermaid_version()
    if up_to_date(manifest, version):
        print(f"vendor_assets: {dest} is up to date")
        return
    dest.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    record = {"mathjax": copy_mathjax(dest), "mermaid": fetch_mermaid(dest, version)}
    manifest.write_text(json.dumps(record, indent=2) + "\n")
    print(f"vendor_assets: MathJax {record['mathjax']['mathjax']} and mermaid {version} in {dest}")


if __name__ == "__main__":
    main()
