"""Save a trained learner to a folder and load it back, every file checked.

A saved learner is a folder::

    my-learner/
        learner.json          format version, package and library versions, the learner's registry
                              name and options, encoder settings, your metadata, every file's sha256
        learner.safetensors   the learner's own tensors (heads, thresholds, learned rates...)
        encoder/              the transformer (``save_pretrained``, safetensors) and its tokenizer

``learner.safetensors`` is the learner's ``state_dict`` without the
encoder's weights (``encoder.*``, meta-trained or not), which are kept once,
in ``encoder/``, a folder ``load_encoder`` also reads on its own. No pickle.
:func:`save_learner` writes into a hidden temporary sibling folder and
renames it into place at the end, so an interrupted save leaves no folder
that looks complete. :func:`load_learner` checks every file's sha256 and the
format version before it loads anything, then rebuilds the learner from
:data:`~metalearn_nlp.learners.LEARNERS` with its options (no training data
needed) and loads its tensors strictly. Failures raise
:class:`LearnerFileError`, which names the folder or file and what to do.

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .data.files import canonical_json

if TYPE_CHECKING:
    from .encoders import Encoder
    from .learners import Learner

__all__ = ["FORMAT_VERSION", "LearnerFileError", "load_learner", "read_learner_config", "save_learner"]

FORMAT = "metalearn-nlp-learner"
#: ``major.minor`` of the layout; this code reads major 1 up to this minor.
FORMAT_VERSION = "1.0"
CONFIG_FILE, WEIGHTS_FILE, ENCODER_DIR = "learner.json", "learner.safetensors", "encoder"
#: Constructor arguments that are training data (or say how to read it), not options: what
#: they produce is saved instead (StructShot's ``transitions``, ZeroShot's calibrated buffers).
DATA_ARGUMENTS = frozenset({"train_sentences", "scheme"})


class LearnerFileError(ValueError):
    """A learner cannot be saved to or loaded from a folder; the message names it and says what to do.

    Attributes:
        path: the folder or file concerned (None when there is none).
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


# -- digests and descriptions -------------------------------------------------------------------
def _file_sha256(path: Path, *, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        if sync:  # on disk before the folder is renamed into place
            os.fsync(handle.fileno())
    return digest.hexdigest()


def _tensors_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of tensors by name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(canonical_json([name, str(tensor.dtype), list(tensor.shape)]).encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of ``learner.json``'s fields but ``sha256``, as canonical JSON."""
    fields = json.loads(json.dumps({k: v for k, v in config.items() if k != "sha256"}))  # as read back (str keys)
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def _constructor_options(cls: type) -> set[str]:
    """The keyword arguments of ``cls(encoder, ...)``, following ``**options`` up the class tree."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        parameters = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        names |= {p.name for p in parameters
                  if p.name not in ("self", "encoder") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
    return names


def _at_default(learner: Learner, name: str) -> bool:
    """Whether option ``name`` may go unrecorded: the learner keeps it as an attribute of that name, at
    the constructor's default (``ProtoNet``'s ``shape_dim=0``), so rebuilding without it changes nothing."""
    for klass in type(learner).__mro__:
        parameter = inspect.signature(klass.__dict__["__init__"]).parameters.get(name) \
            if "__init__" in klass.__dict__ else None
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            missing = object()
            return getattr(learner, name, missing) == parameter.default
    return False


def _registered() -> dict[str, type[Learner]]:
    """Every learner ``save_learner`` can save and ``load_learner`` rebuild, by name: the word taggers
    (``LEARNERS``) and the text classifiers of chapter 6.1 (``SENTENCE_LEARNERS``); no name is in both."""
    from .learners import LEARNERS, SENTENCE_LEARNERS

    return {**LEARNERS, **SENTENCE_LEARNERS}


def _learner_options(learner: Learner) -> dict[str, Any]:
    """The options that rebuild ``learner``: ``_hyperparameters()`` and ``batch_size``, checked complete."""
    kind = type(learner).__name__
    options = {**learner._hyperparameters(), "batch_size": learner.batch_size}
    missing = {name for name in _constructor_options(type(learner)) - options.keys() - DATA_ARGUMENTS
               if not _at_default(learner, name)}
    if missing:
        raise LearnerFileError(f"cannot save {kind}: {kind}._hyperparameters() does not record its option(s) "
                               f"{', '.join(sorted(missing))}, so it could not be rebuilt; add them there")
    try:
        canonical_json(options)
    except (TypeError, ValueError) as error:
        raise LearnerFileError(f"cannot save {kind}: its options are not JSON-ready ({error}); make "
                               "_hyperparameters() return numbers, strings, lists and dicts") from None
    return options


def _transitions_from_dict(data: Mapping[str, Any]) -> Any:
    """The inverse of ``AbstractTransitions.to_dict`` (the raw counts are not kept)."""
    from .learners.viterbi import AbstractTransitions

    rows = {source: {(key.partition("/")[0], key.partition("/")[2]): float(p) for key, p in row.items()}
            for source, row in data["transitions"].items()}
    return AbstractTransitions(data["scheme"], {k: float(p) for k, p in data["start"].items()}, rows)


#: Options saved as JSON that the constructor takes as objects: name -> decoder.
_DECODERS = {"transitions": _transitions_from_dict}


def _encoder_settings(encoder: Encoder, *, weights: bool = True) -> dict[str, Any]:
    model, vocab = encoder.model, encoder.tokenizer.get_vocab()
    config = getattr(model, "config", None)
    floating = next((p for p in model.parameters() if p.is_floating_point()), None)
    settings = {
        "name": encoder.name, "pooling": encoder.pooling, "max_length": encoder.max_length,
        "hidden_size": encoder.hidden_size, "model_type": getattr(config, "model_type", None),
        "architecture": type(model).__name__, "attn_implementation": getattr(config, "_attn_implementation", None),
        "dtype": str(floating.dtype).removeprefix("torch.") if floating is not None else None,
        "vocab_size": len(vocab), "vocab_sha256": hashlib.sha256(canonical_json(vocab).encode()).hexdigest(),
    }  # fmt: skip
    if weights:
        settings["weights_sha256"] = _tensors_sha256(model.state_dict())
        # which weights were frozen (load_encoder(freeze=...)): restored on loading, so that meta-training
        # a reloaded learner (re-meta-learning) trains what the original run trained
        settings["frozen"] = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    return settings


def _versions() -> dict[str, str]:
    import platform, safetensors, transformers  # noqa: E401

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__}


def _major_minor(version: Any) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)", str(version))
    return (int(match[1]), int(match[2])) if match else None


# -- saving -------------------------------------------------------------------------------------
def _check_target(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise LearnerFileError(f"cannot save a learner to {directory}: it is a file; choose a folder", directory)
    if not directory.is_dir():
        return
    if Path.cwd().resolve().is_relative_to(directory.resolve()):  # it is replaced, not written into
        raise LearnerFileError(f"cannot save a learner to {directory}: it holds the working directory; choose a "
                               "sub-folder", directory)
    if not any(directory.iterdir()):
        return
    if not overwrite:
        raise LearnerFileError(f"cannot save a learner to {directory}: the folder already exists and is not "
                               "empty; pass overwrite=True to replace it, or choose another folder", directory)
    if not (directory / CONFIG_FILE).is_file():
        raise LearnerFileError(f"will not overwrite {directory}: it is not a saved learner (no {CONFIG_FILE}) and "
                               "replacing it could delete other work; choose another folder", directory)


def _save_encoder(encoder: Encoder, folder: Path) -> None:
    from .encoders import _quiet_loading

    model, tokenizer = encoder.model, encoder.tokenizer
    if not hasattr(model, "save_pretrained") or not hasattr(tokenizer, "save_pretrained"):
        raise LearnerFileError(f"cannot save encoder {encoder.name!r}: its model ({type(model).__name__}) has no "
                               "save_pretrained; only Hugging Face encoders (load_encoder) can be saved")
    parameters = inspect.signature(model.save_pretrained).parameters
    safe = {"safe_serialization": True} if "safe_serialization" in parameters else {}  # transformers 4
    with _quiet_loading():  # no progress bar
        model.save_pretrained(folder, **safe)
        tokenizer.save_pretrained(folder)


def _move_into_place(temporary: Path, directory: Path) -> None:
    if not directory.exists():
        os.rename(temporary, directory)
        return
    old = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}.old")
    os.rename(directory, old)
    try:
        os.rename(temporary, directory)
    except BaseException:
        os.rename(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_learner(learner: Learner, directory: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None,
                 overwrite: bool = False) -> Path:
    """Save a learner (its tensors, its encoder, its options) to a folder, atomically.

    Arguments:
        learner: a registered learner (``LEARNERS[learner.name]`` is its class).
        directory: the folder to write (parents are created).
        metadata: JSON-ready facts to keep with it: training settings, tag
            scheme, the types it was trained on...
        overwrite (bool, default False): replace an existing non-empty
            folder (only one that holds a saved learner).

    Returns:
        The folder, as a ``Path``.

    Raises:
        LearnerFileError: the folder is not empty (without ``overwrite``) or
            not a saved learner; the learner is not registered or its options
            are incomplete or not JSON; the encoder is not a Hugging Face model.
        TypeError: ``learner`` is not a ``Learner``; ``metadata`` is not JSON-ready.

    Example:
        >>> save_learner(learner, "runs/protonet", metadata={"train_types": train_types})  # doctest: +SKIP
        PosixPath('runs/protonet')
    """
    from safetensors.torch import save_file

    from .learners import Learner

    if not isinstance(learner, Learner):
        raise TypeError(f"save_learner needs a Learner, got {type(learner).__name__}")
    directory = Path(directory).expanduser()
    if _registered().get(learner.name) is not type(learner):
        raise LearnerFileError(f"cannot save {type(learner).__name__} to {directory}: it is not the registered "
                               f"learner {learner.name!r}, so it could not be rebuilt by name; register it in "
                               "LEARNERS (word taggers) or SENTENCE_LEARNERS (text classifiers)", directory)
    metadata = dict(metadata or {})
    try:
        canonical_json(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must be JSON-ready (str, numbers, lists, dicts): {error}") from None
    _check_target(directory, overwrite)
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "package": {"name": "metalearn-nlp", "version": __version__}, "versions": _versions(),
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "learner": {"name": learner.name, "class": f"{type(learner).__module__}.{type(learner).__qualname__}",
                    "options": _learner_options(learner), "config": learner.config()},
        "encoder": _encoder_settings(learner.encoder), "metadata": metadata,
    }  # fmt: skip
    tensors = {k: v.detach().to("cpu", copy=True).contiguous()
               for k, v in learner.state_dict().items() if not k.startswith("encoder.")}
    target = directory.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    temporary.mkdir()
    try:
        save_file(tensors, str(temporary / WEIGHTS_FILE), metadata={"format": FORMAT, "format_version": FORMAT_VERSION})
        _save_encoder(learner.encoder, temporary / ENCODER_DIR)
        config["files"] = {p.relative_to(temporary).as_posix(): {"sha256": _file_sha256(p, sync=True),
                                                                 "bytes": p.stat().st_size}
                           for p in sorted(temporary.rglob("*")) if p.is_file()}
        config["sha256"] = _config_sha256(config)
        with open(temporary / CONFIG_FILE, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        _move_into_place(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return directory


# -- loading ------------------------------------------------------------------------------------
def read_learner_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``learner.json`` of a saved learner, its own checksum verified (other files are not read).

    Arguments:
        directory: a folder written by :func:`save_learner`.

    Returns:
        A dict with ``format``, ``format_version``, ``package``, ``versions``,
        ``saved_at``, ``learner`` (``name``, ``class``, ``options``,
        ``config``), ``encoder`` (its settings), ``metadata``, ``files``
        (``{path: {"sha256", "bytes"}}``) and ``sha256``.

    Raises:
        LearnerFileError: no such folder; no ``learner.json``, or one that is
            not valid JSON, not a saved learner's, or changed since it was written.

    Example:
        >>> read_learner_config("runs/protonet")["metadata"]["train_types"]  # doctest: +SKIP
    """
    directory = Path(directory).expanduser()
    path = directory / CONFIG_FILE
    if not directory.exists():
        raise LearnerFileError(f"no saved learner at {directory}: the folder does not exist; check the path (save "
                               "one with save_learner(learner, folder) or learner.save_pretrained(folder))", directory)
    if not path.is_file():
        raise LearnerFileError(f"{directory} is not a saved learner: it has no {CONFIG_FILE} (an interrupted save "
                               "leaves no folder); pass the folder save_learner wrote, or save again", directory)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # UnicodeDecodeError included
        raise LearnerFileError(f"{path} is not valid JSON ({error}): it is corrupted or truncated; restore the "
                               "folder from a copy or save the learner again", path) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise LearnerFileError(f"{path} is not a saved learner's {CONFIG_FILE} (no \"format\": {FORMAT!r}); pass a "
                               "folder written by save_learner", path)
    if config.get("sha256") != _config_sha256(config):
        raise LearnerFileError(f"{path} was changed after it was written (its sha256 does not match); edits are "
                               "not supported: restore the file, or load the learner and save it again", path)
    return config


def _check_versions(config: Mapping[str, Any], directory: Path) -> None:
    saved, ours = _major_minor(config.get("format_version")), _major_minor(FORMAT_VERSION) or (0, 0)
    by = f"metalearn-nlp {config.get('package', {}).get('version', '?')}"
    newer = saved is not None and saved > ours
    if saved is None or newer or saved[0] != ours[0]:
        why = (f"newer than this metalearn-nlp {__version__} can read (format {FORMAT_VERSION}); upgrade "
               "metalearn-nlp to load it" if newer else
               f"which this metalearn-nlp {__version__} cannot read; load it with {by} and retrain or save again")
        raise LearnerFileError(f"{directory} was saved in format {config.get('format_version')} by {by}, {why}",
                               directory)
    if _major_minor(config.get("package", {}).get("version")) != _major_minor(__version__):
        warnings.warn(f"{directory} was saved by {by}, this is metalearn-nlp {__version__}: it loads, but may "
                      "behave differently than when it was saved", UserWarning, stacklevel=3)


def _verify_files(directory: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    for name, expected in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            raise LearnerFileError(f"{path} is missing from the saved learner {directory}, so nothing was loaded; "
                                   "restore the folder from a copy or save the learner again", path)
        size, digest = path.stat().st_size, _file_sha256(path)
        if digest != expected.get("sha256"):
            how = (f"truncated: {size} of {expected['bytes']} bytes" if size < expected.get("bytes", 0) else
                   f"sha256 {digest[:12]}..., expected {str(expected.get('sha256'))[:12]}...")
            raise LearnerFileError(f"{path} does not match its sha256 in {CONFIG_FILE} ({how}): the file is "
                                   "corrupted, so nothing was loaded; restore the folder from a copy or save the "
                                   "learner again", path)


def _check_encoder(encoder: Any, saved: Mapping[str, Any], directory: Path) -> None:
    from .encoders import Encoder

    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder= must be an Encoder (see load_encoder), got {type(encoder).__name__}")
    theirs = _encoder_settings(encoder, weights=False)
    labels = {"hidden_size": "hidden size", "model_type": "model type", "vocab_sha256": "vocabulary"}
    differ = " and ".join(label for key, label in labels.items() if saved.get(key) != theirs[key])
    if differ:
        def describe(s: Mapping[str, Any]) -> str:
            return (f"{s.get('name')!r} ({s.get('model_type')}, hidden size {s.get('hidden_size')}, vocabulary "
                    f"of {s.get('vocab_size')} tokens)")

        raise LearnerFileError(f"{directory} was made with encoder {describe(saved)}, you passed {describe(theirs)}: "
                               f"the {differ} {'differ' if ' and ' in differ else 'differs'}. Pass a matching "
                               "encoder, or leave out encoder= to load the saved one", directory)
    notes = [f"{k} {theirs[k]!r} (saved: {saved.get(k)!r})" for k in ("pooling", "max_length")
             if saved.get(k) != theirs[k]]
    if saved.get("weights_sha256") != _tensors_sha256(encoder.model.state_dict()):
        notes.append("different weights (e.g. the saved encoder was meta-trained)")
    if notes:
        warnings.warn(f"the encoder you passed differs from the one saved in {directory}: {'; '.join(notes)}; "
                      "predictions will differ from the saved learner's (leave out encoder= to load the saved "
                      "encoder)", UserWarning, stacklevel=3)


def _load_encoder(directory: Path, saved: Mapping[str, Any], device: Any) -> Encoder:
    from . import encoders

    attn, dtype = saved.get("attn_implementation"), saved.get("dtype")
    try:
        encoder = encoders.load_encoder(
            directory / ENCODER_DIR, pooling=saved["pooling"], max_length=saved["max_length"], device=device,
            dtype=dtype if dtype in encoders._DTYPES else None,
            attn_implementation=attn if attn in ("eager", "sdpa") else None,
        )
    except encoders.EncoderUnavailableError as error:
        raise LearnerFileError(f"the encoder saved in {directory / ENCODER_DIR} does not load ({error}); save the "
                               "learner again", directory / ENCODER_DIR) from error
    encoder.name = saved["name"]
    frozen = set(saved.get("frozen", ()))
    for name, parameter in encoder.model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    if _tensors_sha256(encoder.model.state_dict()) != saved.get("weights_sha256"):
        raise LearnerFileError(
            f"{directory / ENCODER_DIR} loads, but not with the weights that were saved (saved with transformers "
            f"{saved.get('transformers', '?')}, read with {_versions()['transformers']}); load it with the "
            "versions in learner.json", directory / ENCODER_DIR,
        )
    return encoder


def load_learner(directory: str | os.PathLike[str], *, device: Any = None, encoder: Encoder | None = None) -> Learner:
    """Load a learner saved by :func:`save_learner`, every file checked first.

    Every file's sha256 is checked against ``learner.json`` before anything
    loads; the learner is rebuilt from ``LEARNERS`` with its saved options on
    the saved encoder (with its pooling, maximum length and dtype), its
    tensors are loaded strictly, and it is returned in eval mode.

    Arguments:
        directory: a folder written by :func:`save_learner`.
        device: where to put the learner (None: the CPU, or ``encoder``'s device).
        encoder: an ``Encoder`` to use instead of the saved one (one already
            loaded, say). It must have the saved encoder's hidden size, model
            type and vocabulary; another pooling, maximum length or weights
            (the saved encoder was meta-trained) only warns. It becomes the
            learner's encoder (moved to ``device`` if given).

    Returns:
        The learner.

    Raises:
        LearnerFileError: the folder or a file is missing; a file is
            corrupted or truncated; the format is newer than this code reads;
            the learner is not registered here; ``encoder`` does not match;
            the tensors do not fit the rebuilt learner.

    Warns:
        UserWarning: saved by another major or minor version of metalearn-nlp
            (another patch version loads silently); ``encoder`` differs in
            pooling, maximum length or weights.

    Example:
        >>> learner = load_learner("runs/protonet", device="cuda")  # doctest: +SKIP
        >>> learner.adapt(episode).predict(["Ada Lovelace wrote"])  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    registered = _registered()
    config = read_learner_config(directory)
    _check_versions(config, directory)
    _verify_files(directory, config.get("files", {}))
    name, saved = config["learner"]["name"], {**config["encoder"], **config.get("versions", {})}
    if name not in registered:
        raise LearnerFileError(f"{directory} holds a {name!r} learner, which this metalearn-nlp {__version__} does not "
                               f"know (registered: {', '.join(sorted(registered))}); upgrade metalearn-nlp, or load "
                               f"it with the version that saved it ({config['package'].get('version')})", directory)
    if encoder is not None:
        _check_encoder(encoder, saved, directory)
    else:
        encoder = _load_encoder(directory, saved, device)
    options = {k: _DECODERS[k](v) if k in _DECODERS and isinstance(v, Mapping) else v
               for k, v in config["learner"]["options"].items()}
    try:
        learner = registered[name](encoder, **options)
    except (TypeError, ValueError) as error:
        raise LearnerFileError(f"{directory}: the saved options do not rebuild a {name!r} learner ({error}); load "
                               "it with the metalearn-nlp version that saved it", directory) from error
    learner.to(device if device is not None else encoder.device)
    tensors = load_file(str(directory / WEIGHTS_FILE))
    own = {k for k in learner.state_dict() if not k.startswith("encoder.")}
    try:
        if set(tensors) != own:
            raise RuntimeError(f"unexpected {sorted(set(tensors) - own)[:5]}, missing {sorted(own - set(tensors))[:5]}")
        learner.load_state_dict(tensors, strict=False)
    except RuntimeError as error:  # names or shapes
        path = directory / WEIGHTS_FILE
        raise LearnerFileError(f"{path} does not fit the rebuilt {name!r} learner ({error}); load it with the "
                               "metalearn-nlp version that saved it", path) from error
    return learner.eval()
