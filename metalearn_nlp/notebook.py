"""Helpers for the book's notebooks: one budget knob and a disk cache for slow work.

**Budget.** Every chapter sizes its slow loops (meta-training steps,
evaluation episodes) for a 2-core laptop, and passes each size through
:func:`scaled`. One environment variable raises all of them at once::

    METALEARN_NLP_BUDGET=10 jupyter-book build .      # ten times the steps and episodes

On a Colab GPU, set it in the first cell (``%env METALEARN_NLP_BUDGET=10``)
before importing this module. :data:`BUDGET` is read once, at import.

**Cache.** Slow work is cached, never faked: :func:`train_or_load` runs the
training function when no cache entry exists for the given settings, and
saves the learner's weights (safetensors) and the training record (JSON);
the next run with the same settings loads both instead of training. The
entry's name is the sha256 of the settings and of the package's source code
(:func:`code_sha256`: any edit to the package retrains), so two notebooks that train the
same learner with the same settings share one entry, and any change of a
setting trains afresh. The code that fills the cache is the code in the
notebook, and it runs wherever the cache is absent (a fresh checkout, CI).
Delete the folder to retrain everything.

Cache folder: ``$METALEARN_NLP_CACHE`` if set, otherwise
``.cache/metalearn_nlp`` in the repository checkout the package is imported
from (the folder holding ``pyproject.toml`` next to the package), or in the
current directory when the package is installed (Colab).

Taught in: chapter 1 (Background); chapter 5.2 (Few-shot NER).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.files import canonical_json

__all__ = ["BUDGET", "CacheInfo", "budget_from_env", "cache_dir", "cache_key", "scaled", "train_or_load"]

#: Environment variable that multiplies every notebook budget.
BUDGET_VARIABLE = "METALEARN_NLP_BUDGET"
#: Environment variable that overrides the cache folder.
CACHE_VARIABLE = "METALEARN_NLP_CACHE"
#: Bumped when the layout of a cache entry changes (part of every key).
CACHE_FORMAT = 1


def budget_from_env(environ: Mapping[str, str] | None = None) -> float:
    """The budget multiplier from ``METALEARN_NLP_BUDGET`` (default 1).

    Raises:
        ValueError: the value is not a positive, finite number; the message
            names the variable and the value.

    Example:
        >>> budget_from_env({"METALEARN_NLP_BUDGET": "2.5"})
        2.5
    """
    environ = os.environ if environ is None else environ
    text = environ.get(BUDGET_VARIABLE, "1")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise ValueError(
            f"{BUDGET_VARIABLE}={text!r}: expected a positive number (1 = the book's CPU budget, "
            f"10 = ten times the steps and episodes); unset it to use 1"
        )
    return value


#: The budget multiplier, read from ``METALEARN_NLP_BUDGET`` at import (default 1).
BUDGET: float = budget_from_env()


def scaled(n: int, budget: float | None = None) -> int:
    """``n`` times the budget, rounded, and at least 1.

    Arguments:
        n: the size at budget 1 (steps, episodes), a positive integer.
        budget: the multiplier (default :data:`BUDGET`).

    Example:
        >>> scaled(150, budget=1), scaled(150, budget=0.001), scaled(150, budget=2)
        (150, 1, 300)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"scaled() needs a positive integer, got {n!r}")
    factor = BUDGET if budget is None else budget
    return max(1, int(round(n * factor)))


def _checkout_root() -> Path | None:
    """The source checkout the package is imported from (None when installed)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """The cache folder (created if missing): ``$METALEARN_NLP_CACHE``, else ``<checkout or cwd>/.cache/metalearn_nlp``."""
    override = os.environ.get(CACHE_VARIABLE)
    if override:
        folder = Path(override).expanduser()
    else:
        folder = (_checkout_root() or Path.cwd()) / ".cache" / "metalearn_nlp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _canonical(value: Any) -> str:
    """``canonical_json`` without NaN, its errors phrased for cache settings."""
    try:
        return canonical_json(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"cache settings must be JSON-serialisable (str, numbers, lists, dicts): {error}") from None


def code_sha256(root: Path | None = None) -> str:
    """The sha256 of the package's own source: every ``.py`` file under ``root``, by relative path and bytes.

    Part of every cache key, so weights trained by older code are never reused silently.

    Arguments:
        root: the package folder (default: this package, hashed once per process).
    """
    return _source_sha256(Path(root)) if root is not None else _package_sha256()


@functools.lru_cache(maxsize=1)
def _package_sha256() -> str:
    return _source_sha256(Path(__file__).resolve().parent)


def _source_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        if "__pycache__" in file.parts:
            continue
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(settings: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the settings as canonical JSON (sorted keys), with the cache format and the code's hash.

    Example:
        >>> cache_key({"a": 1, "b": [2, 3]}) == cache_key({"b": [2, 3], "a": 1})
        True
    """
    payload = {"cache_format": CACHE_FORMAT, "code": code_sha256(), "settings": dict(settings)}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


@dataclass(frozen=True)
class CacheInfo:
    """What :func:`train_or_load` did.

    Attributes:
        loaded: True when the weights came from the cache, False when ``train_fn`` ran.
        key: the sha256 of the settings and of the package's code (:func:`code_sha256`).
        folder: the cache entry (``weights.safetensors``, ``record.json``, ``settings.json``).
        record: the training record (``train_fn``'s result as a dict).
    """

    loaded: bool
    key: str
    folder: Path
    record: dict[str, Any]

    def __str__(self) -> str:
        what = "loaded from the cache" if self.loaded else "trained now and saved to the cache"
        return f"{what} (entry {self.key[:12]})"


def _as_record(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    if not isinstance(result, Mapping):
        raise TypeError(f"train_fn must return None, a dict or an object with to_dict(), got {type(result).__name__}")
    return dict(result)


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def train_or_load(learner: Any, key_settings: Mapping[str, Any], train_fn: Callable[[], Any]) -> tuple[Any, CacheInfo]:
    """Load the learner's trained weights from the cache, or train it and fill the cache.

    The entry is ``cache_dir() / cache_key(key_settings)``. If it holds
    ``weights.safetensors`` and ``record.json``, the weights are loaded into
    ``learner`` (strictly: every tensor must match) and ``train_fn`` does not
    run. Otherwise ``train_fn()`` runs (it trains ``learner`` in place and
    returns its record: a dict, an object with ``to_dict()`` such as
    ``TrainResult``, or None), and the weights, the record and the settings
    are written, each file atomically, weights last-but-one and the record
    last, so an interrupted run leaves no entry that looks complete.

    Put **everything that determines the result** in ``key_settings``: the
    learner's ``config()``, the encoder, the sampler's ``settings`` (with its
    data sha256), the training arguments, the seed. What is not in the
    settings is not part of the key.

    Arguments:
        learner: a ``torch.nn.Module`` (a ``Learner``), trained in place by ``train_fn``.
        key_settings: JSON-serialisable settings that identify the training.
        train_fn: runs the training; called only on a cache miss.

    Returns:
        ``(learner, info)``: the same learner, now trained, and a :class:`CacheInfo`.

    Example:
        >>> learner, info = train_or_load(learner, settings, lambda: meta_train(learner, sampler, steps=150))  # doctest: +SKIP
        >>> print(info)  # doctest: +SKIP
        loaded from the cache (entry 3f2a9c01d4e7)
    """
    from safetensors.torch import load_model, save_model

    key = cache_key(key_settings)
    folder = cache_dir() / key
    weights, record_file = folder / "weights.safetensors", folder / "record.json"
    if weights.is_file() and record_file.is_file():
        load_model(learner, str(weights), strict=True, device=str(next(learner.parameters()).device))
        record = json.loads(record_file.read_text(encoding="utf-8"))
        return learner, CacheInfo(True, key, folder, record)
    record = _as_record(train_fn())
    text = _canonical(record)  # fails before anything is written if the record is not JSON
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / "settings.json",
                  lambda p: p.write_text(json.dumps(dict(key_settings), indent=2, sort_keys=True) + "\n", "utf-8"))
    _write_atomic(weights, lambda p: save_model(learner, str(p)))
    _write_atomic(record_file, lambda p: p.write_text(text + "\n", encoding="utf-8"))
    return learner, CacheInfo(False, key, folder, record)
