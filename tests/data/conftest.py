"""Fixtures for the data-path tests: small files written per test (tokenizers: ``tests/conftest.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``$METALEARN_NLP_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("METALEARN_NLP_SHARED_DATA", REPO / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The optional reference corpora; the test is skipped when they are absent."""
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the reference corpora are optional")
    return folder


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """``write(name, content)`` creates ``tmp_path / name`` (text is written as UTF-8, ``\\n`` kept)."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return _write
