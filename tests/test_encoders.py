"""load_encoder: local folders, the offline error, freezing, pooling, truncation, the real MiniLM."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from metalearn_nlp.data import TaggedSentence
from metalearn_nlp.encoders import (
    Encoder,
    EncoderUnavailableError,
    as_sentences,
    freeze_encoder,
    load_encoder,
)


def test_loads_a_local_folder(tiny_bert_path):
    encoder = load_encoder(tiny_bert_path)
    assert isinstance(encoder, Encoder)
    assert encoder.hidden_size == 32 and encoder.name == str(tiny_bert_path)
    assert encoder.tokenizer.is_fast
    words = encoder.encode(["Ada met Grace in Paris ."])
    assert words.vectors.shape == (6, 32) and words.lengths == (6,)
    assert words.position.tolist() == list(range(6))


def test_attention_implementation_and_dtype_pass_through(tiny_bert_path):
    encoder = load_encoder(tiny_bert_path, attn_implementation="eager", dtype="bfloat16")
    assert encoder.model.config._attn_implementation == "eager"
    assert next(encoder.model.parameters()).dtype == torch.bfloat16
    assert encoder.encode(["Ada"]).vectors.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        load_encoder(tiny_bert_path, dtype="float8")


def test_offline_hub_name_gives_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailableError) as caught:
        load_encoder("bert-base-cased")
    message = str(caught.value)
    assert "'bert-base-cased'" in message
    assert "local path" in message and "go online" in message and "HF_HUB_OFFLINE" in message


@pytest.fixture(scope="module")
def tiny_roberta_path(tmp_path_factory) -> Path:
    """A random tiny RoBERTa with a byte-level BPE tokenizer trained in memory, saved without add_prefix_space."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["Ada Lovelace wrote the first program", "Grace met Ada in Paris today"] * 10,
                            vocab_size=300, min_frequency=1, special_tokens=special)
    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "RobertaTokenizerFast", "add_prefix_space": False, "bos_token": "<s>",
        "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>",
    }))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           vocab_size=len(tokenizer), max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config).save_pretrained(folder)
    return folder


def test_byte_level_bpe_tokenizers_get_add_prefix_space_for_pre_split_words(tiny_roberta_path):
    # RoBERTa saw every word but the first after a space ("Ġwrote"); is_split_into_words needs
    # add_prefix_space=True to give each word that space, otherwise "wrote" is cut as if glued on
    encoder = load_encoder(tiny_roberta_path)
    assert encoder.tokenizer.add_prefix_space is True
    batch = encoder.collate([["Ada", "Lovelace", "wrote", "Paris"]])
    tokens = encoder.tokenizer.convert_ids_to_tokens(batch.input_ids[0].tolist())
    firsts = [tokens[i] for i in batch.word_index[0].tolist()]
    assert all(token.startswith("\u0120") for token in firsts), tokens  # U+0120 is BPE's "Ġ"
    assert encoder.encode(["Grace met Ada"]).vectors.shape == (3, 32)


def test_wordpiece_tokenizers_are_loaded_unchanged(tiny_bert_path, toy_tokenizer):
    encoder = load_encoder(tiny_bert_path)
    words = ["Ada", "Lovelace", "met", "Grace"]
    assert encoder.collate([words]).input_ids[0].tolist() == toy_tokenizer(words, is_split_into_words=True)["input_ids"]


def test_missing_local_folder(tmp_path):
    with pytest.raises(EncoderUnavailableError, match="no such folder"):
        load_encoder(tmp_path / "not-there")


def _trainable(encoder):
    return {name for name, p in encoder.model.named_parameters() if p.requires_grad}


def test_freeze_options_leave_exactly_the_expected_parameters(tiny_bert_path):
    encoder = load_encoder(tiny_bert_path)
    names = {name for name, _ in encoder.model.named_parameters()}
    pooler = {n for n in names if n.startswith("pooler.")}
    embeddings = {n for n in names if n.startswith("embeddings.")}
    layer0 = {n for n in names if n.startswith("encoder.layer.0.")}
    layer1 = {n for n in names if n.startswith("encoder.layer.1.")}
    assert names == pooler | embeddings | layer0 | layer1 and pooler and embeddings

    assert _trainable(encoder) == names - pooler  # "none" is the default
    assert _trainable(load_encoder(tiny_bert_path, freeze="all")) == set()
    assert _trainable(load_encoder(tiny_bert_path, freeze=0)) == names - pooler
    assert _trainable(load_encoder(tiny_bert_path, freeze=1)) == layer1
    assert _trainable(load_encoder(tiny_bert_path, freeze=2)) == set()
    assert set(encoder.freeze(1)) == layer1 == _trainable(encoder)
    with pytest.raises(ValueError, match="0..2"):
        freeze_encoder(encoder.model, 3)
    with pytest.raises(ValueError, match="freeze must be"):
        encoder.freeze("top")


def test_mean_pooling_averages_subwords_and_first_takes_the_first(cased_tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 vocab_size=len(cased_tokenizer))).eval()
    first = Encoder(model, cased_tokenizer, pooling="first")
    mean = Encoder(model, cased_tokenizer, pooling="mean")
    sentence = ["Ada", "Lovelace", "met", "Babbage", "in", "Paris"]  # Love ##lace, Bab ##bage
    batch = first.collate([sentence])
    with torch.no_grad():
        hidden = first.hidden_states(batch)[0]
        a, b = first.embed_words(batch).vectors, mean.embed_words(batch).vectors
    # positions: [CLS] Ada Love ##lace met Bab ##bage in Paris [SEP]
    assert batch.word_index[0].tolist() == [1, 2, 4, 5, 7, 8]
    assert torch.allclose(a, hidden[[1, 2, 4, 5, 7, 8]])
    assert torch.allclose(b[1], hidden[2:4].mean(0)) and torch.allclose(b[3], hidden[5:7].mean(0))
    single = [0, 2, 4, 5]  # one-subword words: both poolings agree
    assert torch.allclose(a[single], b[single])
    assert not torch.allclose(a[1], b[1]) and not torch.allclose(a[3], b[3])


def test_truncated_words_have_no_vector_and_get_the_fill_row(tiny_encoder):
    long = ["Ada", "met", "Grace", "in", "Paris", "today", "with", "Alan", "."]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        words = tiny_encoder.encode([long, ["Ada"]], max_length=6)  # [CLS] + 4 words + [SEP]
    assert words.lengths == (9, 1)
    assert words.sentence.tolist() == [0, 0, 0, 0, 1] and words.position.tolist() == [0, 1, 2, 3, 0]
    scores = torch.arange(10.0).reshape(5, 2)
    rows = words.per_sentence(scores, torch.tensor([0.0, float("-inf")]))
    assert rows[0].shape == (9, 2) and rows[1].tolist() == [[8.0, 9.0]]
    assert rows[0][:4].tolist() == scores[:4].tolist()
    assert rows[0][4:].tolist() == [[0.0, float("-inf")]] * 5


def test_mean_pooling_handles_truncation_and_padding(tiny_bert_path):
    encoder = load_encoder(tiny_bert_path, pooling="mean")
    encoder.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        batch = encoder.collate([["Lovelace", "met", "Ada", "in", "Rome"], ["Ada"]], max_length=5)
        hidden = encoder.hidden_states(batch)
        words = encoder.embed_words(batch)
    # row 0: [CLS] Love ##lace met [SEP] -> two words kept; row 1: [CLS] Ada [SEP] [PAD]
    assert words.lengths == (5, 1) and words.sentence.tolist() == [0, 0, 1]
    assert torch.allclose(words.vectors[0], hidden[0, 1:3].mean(0))
    assert torch.allclose(words.vectors[1], hidden[0, 3]) and torch.allclose(words.vectors[2], hidden[1, 1])


def test_encode_accepts_strings_token_lists_and_sentences(tiny_encoder):
    sentences = as_sentences(["Ada met Grace", ["in", "Paris"], TaggedSentence(["Rome"], ["B-place"])])
    assert [s.tokens for s in sentences] == [("Ada", "met", "Grace"), ("in", "Paris"), ("Rome",)]
    assert tiny_encoder.encode(sentences).lengths == (3, 2, 1)
    with pytest.raises(ValueError, match="text 0"):
        as_sentences([[]])


def test_clone_copies_the_model_and_shares_the_tokenizer(tiny_encoder):
    copy = tiny_encoder.clone()
    assert copy.tokenizer is tiny_encoder.tokenizer
    first_param = next(copy.model.parameters())
    with torch.no_grad():
        first_param.add_(1.0)
    assert not torch.equal(first_param, next(tiny_encoder.model.parameters()))


def test_real_minilm_loads_offline_and_embeds_a_wnut16_sentence():
    from metalearn_nlp.data import load_corpus

    sentence = load_corpus("wnut16").sentences("train")[0]
    encoder = load_encoder()
    encoder.eval()
    with torch.no_grad():
        words = encoder.encode([sentence])
    assert encoder.hidden_size == 384 and len(encoder.layers) == 6
    assert words.vectors.shape == (len(sentence.tokens), 384)
    assert torch.isfinite(words.vectors).all()


def test_docstring_examples():
    import doctest

    from metalearn_nlp import encoders

    assert doctest.testmod(encoders).failed == 0
