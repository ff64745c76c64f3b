"""Training checkpoints: written atomically, read back safely, with every random state.

A checkpoint is one file: a first line (:data:`MAGIC`), the sha256 of the
payload and a newline, then a ``torch.save`` payload of tensors and plain
data (no pickled code: :func:`load_checkpoint` checks the sha256, then reads
the payload with ``weights_only=True``; plain ``torch.load`` cannot read the
file). It is written to a temporary file next to its place and renamed over
it, so a crash or a kill leaves either the old checkpoint or the new one,
never half a file. What goes in it is
:meth:`metalearn_nlp.training.Trainer.state_dict`.

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "MAGIC", "CheckpointError", "load_checkpoint", "rng_state",
           "set_rng_state", "write_atomic"]

#: Bumped when the layout of a checkpoint changes.
CHECKPOINT_FORMAT = 1

#: The file name inside a checkpoint folder.
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not belong to this run; the message names the file."""


def rng_state() -> dict[str, Any]:
    """The states of torch's (CPU and CUDA), Python's and NumPy's global generators."""
    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    import numpy as np

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


#: The first line of every checkpoint file; the second is the sha256 of the rest.
MAGIC = b"metalearn-nlp checkpoint\n"


def write_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as a checkpoint: into a temporary file next to ``path``, then rename.

    The file is :data:`MAGIC`, the sha256 (hex) of the payload and a newline,
    then the ``torch.save`` payload, so a corrupted byte anywhere is detected
    on reading; the rename means a crash never leaves half a file.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :meth:`~metalearn_nlp.training.Trainer.save_checkpoint`.

    The payload's sha256 is checked first, and it is read with
    ``weights_only=True``: tensors and plain data, never pickled code.

    Arguments:
        path: the checkpoint file, or the ``checkpoint_dir`` holding ``checkpoint.pt``.

    Raises:
        CheckpointError: no such file, a truncated or corrupted file, or a newer format; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: pass the file written by training "
                              f"(<checkpoint_dir>/{CHECKPOINT_NAME}) or its folder")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a metalearn-nlp training checkpoint (it does not start with "
                              f"{MAGIC.strip().decode()!r})")
    digest, _, payload = data[len(MAGIC):].partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted (its sha256 does not match). Delete it "
                              "and resume from another copy, or start again")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # written by other code: a bad pickle, an unknown class
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        why = next((line for line in lines if "error:" in line.lower()), lines[0] if lines else "")
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(error).__name__}: {why[:300]})") from error
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not a metalearn-nlp training checkpoint")
    if state["format"] > CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {state['format']}; this metalearn-nlp reads format "
                              f"{CHECKPOINT_FORMAT} and older: upgrade the package to resume it")
    return state
