"""Episode files: fixed episodes saved with their settings and a sha256, in canonical JSON.

Test episodes are sampled once and saved, so that every method and every
seed is scored on the same tasks. ``save_episodes`` writes JSON lines after
a header with the settings, the seed, the count and a sha256;
``load_episodes`` verifies them. ``canonical_json`` is the one JSON form
the package hashes (episode files, the samplers' data digest, the notebook
cache keys).

Taught in: chapter 2 (episodes and samplers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .episode import Episode

__all__ = ["EpisodeFileError", "canonical_json", "load_episodes", "save_episodes"]

_FILE_FORMAT = "metalearn_nlp.episodes"
_FILE_VERSION = 1


class EpisodeFileError(ValueError):
    """An episode file is malformed or fails its checksum; ``.path`` names it."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


def canonical_json(value: Any, *, allow_nan: bool = True) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, non-ASCII characters kept.

    Equal values give equal strings, so the result can be hashed.

    Arguments:
        value: JSON-ready data.
        allow_nan: write NaN and infinities (as ``json`` does); False raises
            ``ValueError`` on them instead.

    Raises:
        TypeError: a value JSON cannot hold.
        ValueError: NaN or infinity with ``allow_nan=False``.

    Example:
        >>> canonical_json({"b": [1, 2], "a": "é"})
        '{"a":"é","b":[1,2]}'
    """
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=allow_nan)


def save_episodes(path: str | Path, episodes: Iterable[Episode], settings: Mapping[str, Any]) -> None:
    """Write episodes as JSON lines after a header with settings, seed, count and sha256.

    Line 1 is the header; each further line is one episode
    (``Episode.to_dict``) as canonical JSON (sorted keys, no spaces,
    UTF-8). The header's ``sha256`` covers the header's other fields (format,
    version, count, seed, settings) and the bytes of all episode lines, so an
    edit to either is detected, and the same episodes with the same settings
    give the same file, byte for byte.

    Arguments:
        path: the file to write.
        episodes: the episodes.
        settings: how they were made (JSON-ready; a sampler's ``.settings``);
            must contain ``"seed"``. Save the first episodes of a fresh
            sampler, so that the settings re-create them.

    Raises:
        ValueError: ``settings`` has no ``"seed"``.

    Example:
        >>> sampler = FewNERDSampler(sentences, ways=5, shots=1, seed=7)  # doctest: +SKIP
        >>> save_episodes("test_episodes.jsonl", sampler.episodes(1000), sampler.settings)  # doctest: +SKIP

    Taught in: chapter 2.
    """
    if "seed" not in settings:
        raise ValueError("settings must record the 'seed' the episodes were sampled with")
    body = "".join(canonical_json(episode.to_dict()) + "\n" for episode in episodes).encode("utf-8")
    header: dict[str, Any] = {
        "format": _FILE_FORMAT,
        "version": _FILE_VERSION,
        "count": body.count(b"\n"),
        "seed": settings["seed"],
        "settings": dict(settings),
    }
    header["sha256"] = _file_digest(header, body)
    Path(path).write_bytes(canonical_json(header).encode("utf-8") + b"\n" + body)


def _file_digest(header: Mapping[str, Any], body: bytes) -> str:
    """sha256 of the header (without its ``sha256`` field) as canonical JSON, a newline, then the body."""
    fields = {key: value for key, value in header.items() if key != "sha256"}
    return hashlib.sha256(canonical_json(fields).encode("utf-8") + b"\n" + body).hexdigest()


def load_episodes(path: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """Read an episode file written by ``save_episodes``, verifying its sha256.

    Arguments:
        path: the file.

    Returns:
        ``(episodes, settings)``.

    Raises:
        EpisodeFileError: the header is missing or malformed, the checksum
            or the count does not match (the file was changed or truncated).

    Example:
        >>> episodes, settings = load_episodes("test_episodes.jsonl")  # doctest: +SKIP

    Taught in: chapter 2.
    """
    data = Path(path).read_bytes()
    first, _, body = data.partition(b"\n")
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or not {"format", "sha256", "count", "settings"} <= header.keys():
        raise EpisodeFileError(path, f"line 1: expected the JSON header written by save_episodes, got {first[:80]!r}")
    if header["format"] != _FILE_FORMAT or header.get("version") != _FILE_VERSION:
        raise EpisodeFileError(
            path, f"expected format {_FILE_FORMAT!r} version {_FILE_VERSION}, got {header['format']!r} "
            f"version {header.get('version')!r}"
        )
    digest = _file_digest(header, body)
    if digest != header["sha256"]:
        raise EpisodeFileError(
            path,
            f"sha256 mismatch: the header records {header['sha256']}, the settings and episode lines hash "
            f"to {digest}; the file was changed or truncated after save_episodes wrote it. Restore the "
            "original file or re-create it from its settings.",
        )
    lines = body.decode("utf-8").split("\n")[:-1] if body else []
    if len(lines) != header["count"]:
        raise EpisodeFileError(path, f"the header counts {header['count']} episodes, the file holds {len(lines)}")
    episodes = [Episode.from_dict(json.loads(line)) for line in lines]
    return episodes, header["settings"]
