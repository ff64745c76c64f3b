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

**Published weights.** On Colab the cache lives and dies with the runtime,
so :func:`train_or_load` can also load weights that someone trained and
published with :func:`export_weights`: one ``.safetensors`` file that carries
its training settings and record in its header. Pass it as
``train_or_load(..., published=PATH_OR_URL, sha256=HEX)``, or point
``$METALEARN_NLP_WEIGHTS`` at a folder or base URL holding such files, named
``<settings sha256>.safetensors`` (:func:`settings_sha256`) with an optional
``.sha256`` file beside each. A published file is used only if its sha256
matches and its settings equal the notebook's, and it then fills the local
cache. Weights are never downloaded unless the reader asks for it.

**Style.** :func:`book_style` sets the one plot style of the book.

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

__all__ = ["BUDGET", "PALETTE", "CacheInfo", "PublishedWeightsError", "book_style", "budget_from_env", "cache_dir",
           "cache_key", "export_weights", "scaled", "settings_sha256", "train_or_load"]

#: Environment variable that multiplies every notebook budget.
BUDGET_VARIABLE = "METALEARN_NLP_BUDGET"
#: Environment variable that overrides the cache folder.
CACHE_VARIABLE = "METALEARN_NLP_CACHE"
#: Environment variable naming a folder or base URL of published weights (see :func:`train_or_load`).
WEIGHTS_VARIABLE = "METALEARN_NLP_WEIGHTS"
#: Package parts that cannot change what training produces: left out of :func:`code_sha256`.
_NOT_TRAINING_CODE = ("exercises", "student.py", "_install.py", "notebook.py")
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


#: The book's colours, in order (matplotlib's C0, C1, ...): seaborn's colour-blind-safe palette.
PALETTE: tuple[str, ...] = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
                            "#949494", "#ece133", "#56b4e9")
#: The default figure size, in inches (width, height): one text column.
FIGSIZE: tuple[float, float] = (7.5, 3.4)


def book_style() -> None:
    """Set the book's one plot style: seaborn's ``whitegrid``, :data:`PALETTE` and :data:`FIGSIZE`.

    Call it once in a chapter's imports cell, in place of ``sns.set_theme``.
    Colours named ``"C0"``, ``"C1"``, ... then follow the palette.

    Example:
        >>> import matplotlib
        >>> book_style()
        >>> tuple(matplotlib.rcParams["figure.figsize"]) == FIGSIZE
        True
    """
    import seaborn as sns

    sns.set_theme(style="whitegrid", palette=list(PALETTE), rc={
        "figure.figsize": FIGSIZE, "figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": "medium",
        "legend.fontsize": "small", "legend.title_fontsize": "small"})


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

    Modules that cannot change a training result (the exercise checks, the
    student edition, the install constant, this module: ``_NOT_TRAINING_CODE``)
    are left out, so editing them does not retrain the book's learners.

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
        if "__pycache__" in file.parts or file.relative_to(root).parts[0] in _NOT_TRAINING_CODE:
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
        source: ``"cache"``, ``"published"`` (a published weights file, now also in the cache) or ``"trained"``.
    """

    loaded: bool
    key: str
    folder: Path
    record: dict[str, Any]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", "cache" if self.loaded else "trained")

    def __str__(self) -> str:
        what = {"cache": "loaded from the cache", "published": "loaded from published weights and saved to the cache",
                "trained": "trained now and saved to the cache"}[self.source]
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


def settings_sha256(settings: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the settings alone (canonical JSON): the file name of published weights.

    Unlike :func:`cache_key` it leaves out the package's code, so a file
    published for a release is found by any checkout of it.

    Example:
        >>> settings_sha256({"b": 1, "a": 2}) == settings_sha256({"a": 2, "b": 1})
        True
    """
    return hashlib.sha256(_canonical(dict(settings)).encode()).hexdigest()


class PublishedWeightsError(ValueError):
    """A published weights file that cannot be used: unreadable, corrupt, or trained with other settings."""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_weights(learner: Any, key_settings: Mapping[str, Any], record: Mapping[str, Any] | None,
                   destination: str | os.PathLike) -> tuple[Path, str]:
    """Write a learner's weights as a publishable file for :func:`train_or_load`'s ``published=``.

    The file is a safetensors file whose header carries the settings, the
    record, the package version and code hash. A folder as ``destination``
    gets ``<settings sha256>.safetensors`` (the name ``$METALEARN_NLP_WEIGHTS``
    looks for) and a ``.sha256`` file beside it.

    Arguments:
        learner: the trained ``torch.nn.Module``.
        key_settings: the settings it was trained with (as passed to :func:`train_or_load`).
        record: the training record (``CacheInfo.record``), or None.
        destination: a ``.safetensors`` file name or an existing folder.

    Returns:
        ``(path, sha256)`` of the written file: publish both.

    Example:
        >>> path, digest = export_weights(learner, settings, info.record, "published/")  # doctest: +SKIP
    """
    from safetensors.torch import save_model

    from . import __version__

    destination = Path(destination)
    path = destination / f"{settings_sha256(key_settings)}.safetensors" if destination.is_dir() else destination
    metadata = {"metalearn_nlp.settings": _canonical(dict(key_settings)), "metalearn_nlp.record": _canonical(
        _as_record(record)), "metalearn_nlp.version": __version__, "metalearn_nlp.code": code_sha256()}
    _write_atomic(path, lambda p: save_model(learner, str(p), metadata=metadata))
    digest = _file_sha256(path)
    if destination.is_dir():
        (path.parent / (path.name + ".sha256")).write_text(f"{digest}  {path.name}\n", encoding="ascii")
    return path, digest


def _is_url(text: str) -> bool:
    return text.split("://", 1)[0].lower() in ("http", "https", "file") and "://" in text


class _NotPublished(LookupError):
    """A weights URL answered 404 (or a ``file://`` one does not exist): nothing is published for these settings."""


def _fetch(location: str, folder: Path) -> Path:
    """A local path for ``location`` (a path, or a URL downloaded into ``folder``)."""
    if not _is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise PublishedWeightsError(f"published weights {location!r}: no such file; pass the path of a file "
                                        "written by export_weights, or unset $METALEARN_NLP_WEIGHTS")
        return path
    import urllib.error
    import urllib.request

    target = folder / "published.download"
    try:
        with urllib.request.urlopen(location, timeout=60) as response, open(target, "wb") as out:  # noqa: S310
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise _NotPublished(location) from None
        raise PublishedWeightsError(f"published weights {location!r}: download failed ({error}); check the URL "
                                    "and the network, or leave it out to train here") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if location.lower().startswith("file:") and isinstance(reason, FileNotFoundError):
            raise _NotPublished(location) from None  # a file:// folder without this entry, like a 404
        raise PublishedWeightsError(f"published weights {location!r}: download failed ({error}); check the URL "
                                    "and the network, or leave it out to train here") from None
    return target


def _expected_sha256(location: str, given: str | None) -> str | None:
    """The sha256 to check: the argument, else a ``<location>.sha256`` file beside it, if there is one."""
    if given:
        if len(given) != 64 or any(c not in "0123456789abcdef" for c in given.lower()):
            raise ValueError(f"sha256={given!r}: expected 64 hexadecimal digits (as export_weights returns)")
        return given.lower()
    side = location + ".sha256"
    try:
        if _is_url(side):
            import urllib.request

            with urllib.request.urlopen(side, timeout=60) as response:  # noqa: S310
                text = response.read(4096).decode("ascii", "replace")
        else:
            text = Path(side).expanduser().read_text(encoding="ascii")
    except Exception:  # noqa: BLE001 - no sidecar: nothing to check against
        return None
    return text.split()[0].lower() if text.split() else None


def _published_location(settings: Mapping[str, Any], published: str | os.PathLike | None) -> str | None:
    if published is not None:
        return str(published)
    base = os.environ.get(WEIGHTS_VARIABLE, "").strip()
    if not base:
        return None
    name = f"{settings_sha256(settings)}.safetensors"
    if _is_url(base):
        return base.rstrip("/") + "/" + name
    candidate = Path(base).expanduser() / name
    return str(candidate) if candidate.is_file() else None          # a folder without this entry: train


def _load_published(learner: Any, settings: Mapping[str, Any], location: str, sha256: str | None,
                    folder: Path) -> dict[str, Any]:
    """Verify a published file and load it into ``learner``; returns its record."""
    import warnings

    from safetensors import safe_open
    from safetensors.torch import load_model

    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        path = _fetch(location, Path(scratch))
        expected = _expected_sha256(location, sha256)
        if _is_url(location) and expected is None:
            raise PublishedWeightsError(f"published weights {location!r}: a downloaded file needs its sha256; pass "
                                        "sha256= or publish a .sha256 file beside it")
        actual = _file_sha256(path)
        if expected is not None and actual != expected:
            raise PublishedWeightsError(f"published weights {location!r}: sha256 {actual} does not match the expected "
                                        f"{expected}; the file is corrupt or not the one published")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except Exception as error:  # noqa: BLE001 - safetensors raises several types
            raise PublishedWeightsError(f"published weights {location!r}: not a safetensors file ({error})") from None
        if "metalearn_nlp.settings" not in metadata:
            raise PublishedWeightsError(f"published weights {location!r}: no settings in the file's header; publish "
                                        "it with metalearn_nlp.notebook.export_weights")
        theirs, ours = json.loads(metadata["metalearn_nlp.settings"]), json.loads(_canonical(dict(settings)))
        if theirs != ours:
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise PublishedWeightsError(f"published weights {location!r} were trained with other settings "
                                        f"(they differ in: {', '.join(differ)}); use the file published for this "
                                        "chapter and package version, or leave it out to train here")
        if metadata.get("metalearn_nlp.code") != code_sha256():
            warnings.warn(f"published weights {location!r} were trained by other package code (version "
                          f"{metadata.get('metalearn_nlp.version', '?')}); their settings match, so they are used",
                          stacklevel=3)
        device = str(next(learner.parameters()).device)
        try:
            load_model(learner, str(path), strict=True, device=device)
        except RuntimeError as error:
            raise PublishedWeightsError(f"published weights {location!r} do not fit this learner: {error}") from None
        return json.loads(metadata.get("metalearn_nlp.record", "{}"))


def train_or_load(learner: Any, key_settings: Mapping[str, Any], train_fn: Callable[[], Any], *,
                  published: str | os.PathLike | None = None, sha256: str | None = None) -> tuple[Any, CacheInfo]:
    """Load the learner's trained weights from the cache or from published weights, or train it and fill the cache.

    The entry is ``cache_dir() / cache_key(key_settings)``. If it holds
    ``weights.safetensors`` and ``record.json``, the weights are loaded into
    ``learner`` (strictly: every tensor must match) and ``train_fn`` does not
    run. Otherwise, if published weights are given (``published=``, or a file
    ``<settings_sha256>.safetensors`` under ``$METALEARN_NLP_WEIGHTS``), they are
    verified and loaded, and copied into the cache. Otherwise ``train_fn()``
    runs (it trains ``learner`` in place and returns its record: a dict, an
    object with ``to_dict()`` such as ``TrainResult``, or None), and the
    weights, the record and the settings are written, each file atomically,
    weights last-but-one and the record last, so an interrupted run leaves no
    entry that looks complete.

    Put **everything that determines the result** in ``key_settings``: the
    learner's ``config()``, the encoder, the sampler's ``settings`` (with its
    data sha256), the training arguments, the seed. What is not in the
    settings is not part of the key.

    Arguments:
        learner: a ``torch.nn.Module`` (a ``Learner``), trained in place by ``train_fn``.
        key_settings: JSON-serialisable settings that identify the training.
        train_fn: runs the training; called only when neither the cache nor published weights have it.
        published: a path or URL (``https://``, ``file://``) of a file written by :func:`export_weights`
            (default: ``$METALEARN_NLP_WEIGHTS``, if set).
        sha256: the published file's sha256 (hex); required for a URL unless a ``<URL>.sha256`` file exists.

    Raises:
        PublishedWeightsError: the published file is missing, fails to download, has another sha256, was
            trained with other settings, or does not fit the learner (the message says which).
        RuntimeError: cached weights do not fit the learner.

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
    location = _published_location(key_settings, published)
    record, source = None, "trained"
    if location is not None:
        try:
            record, source = _as_record(_load_published(learner, key_settings, location, sha256, folder)), "published"
        except _NotPublished:
            if published is not None:  # asked for by name: it must exist
                raise PublishedWeightsError(f"published weights {location!r}: not found (no such file, or HTTP "
                                            "404); check the URL, or leave it out to train here") from None
            # $METALEARN_NLP_WEIGHTS is a base URL without an entry for these settings: train, as for a folder
    if record is None:
        record = _as_record(train_fn())
    text = _canonical(record)  # fails before anything is written if the record is not JSON
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / "settings.json",
                  lambda p: p.write_text(json.dumps(dict(key_settings), indent=2, sort_keys=True) + "\n", "utf-8"))
    _write_atomic(weights, lambda p: save_model(learner, str(p)))
    _write_atomic(record_file, lambda p: p.write_text(text + "\n", encoding="utf-8"))
    return learner, CacheInfo(source == "published", key, folder, record, source)
