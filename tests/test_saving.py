"""Saving and loading learners: every registered learner round-trips exactly; damaged folders fail clearly."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch

import metalearn_nlp
from metalearn_nlp.data import canonical_json
from metalearn_nlp.learners import LEARNERS, get_learner
from metalearn_nlp.saving import (
    DATA_ARGUMENTS,
    FORMAT_VERSION,
    LearnerFileError,
    _constructor_options,
    load_learner,
    read_learner_config,
    save_learner,
)

# Non-default options where possible, so that an option that is not saved changes the rebuilt learner.
OPTIONS = {
    "finetune": {"steps": 3, "head_lr": 0.05, "seed": 3, "max_grad_norm": 0.5, "weight_decay": 0.02},
    "protonet": {"name_weight": 0.5, "dropout": 0.1, "descriptions": {"org": "a company"}},
    "nnshot": {"normalize": True},
    "structshot": {"train_sentences": "corpus", "tau": 0.1, "temperature": 2.0},
    "zeroshot": {"train_sentences": "corpus", "max_sentences": 40, "descriptions": {"place": "a city"}},
    "reinforce": {"rl_weight": 0.5, "samples": 2, "baseline": "mean", "temperature": 3.0},
    **{name: {"adapt_layers": 1, "adapt_steps": 2, "inner_lr": 0.03}
       for name in ("maml", "fomaml", "anil", "protomaml", "reptile", "metasgd")},
    "learned_optimizer": {"adapt_layers": 1, "adapt_steps": 2, "hidden": 5},
    "transfer": {"source_types": ["person", "place", "org"], "steps": 3, "head_lr": 0.05},
    "decomposed": {"typing_weight": 0.5, "detect_steps": 3, "shape_dim": 4},
}


def build(name, encoder, corpus, **extra):
    options = {k: (corpus if v == "corpus" else v) for k, v in OPTIONS.get(name, {}).items()}
    return get_learner(name, encoder, batch_size=5, **{**options, **extra})


def perturb(learner, seed=0):
    """Move every floating tensor (encoder included) away from its initial value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in learner.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator).to(tensor.dtype))
    return learner


def resign(folder, edit):
    """Edit learner.json and write it back with a valid checksum (to reach the checks behind it)."""
    path = folder / "learner.json"
    config = json.loads(path.read_text())
    edit(config)
    fields = {k: v for k, v in config.items() if k != "sha256"}
    config["sha256"] = hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    path.write_text(json.dumps(config))


@pytest.fixture
def saved(tiny_encoder, tmp_path):
    """A saved ZeroShot learner (it has tensors of its own) and the learner."""
    learner = perturb(get_learner("zeroshot", tiny_encoder, o_threshold=1.5))
    return save_learner(learner, tmp_path / "saved"), learner


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_every_learner_round_trips_exactly(name, tiny_encoder, toy_corpus, toy_episode, tmp_path):
    learner = perturb(build(name, tiny_encoder, toy_corpus))
    folder = learner.save_pretrained(tmp_path / name, metadata={"scheme": "io", "types": ["person"]})
    loaded = load_learner(folder)
    assert type(loaded) is type(learner) and not loaded.training
    before, after = learner.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before), name
    assert loaded.config() == learner.config()
    expected, got = learner.adapt(toy_episode), loaded.adapt(toy_episode)
    assert all(torch.equal(a, b) for a, b in zip(expected.logits(toy_episode.query), got.logits(toy_episode.query)))
    assert expected.predict(toy_episode.query) == got.predict(toy_episode.query)
    config = read_learner_config(folder)
    assert config["learner"]["name"] == name and config["metadata"] == {"scheme": "io", "types": ["person"]}
    # every constructor option is recorded, training data and options left at their default excepted
    at_default = ({"o_bias"} if name in ("protonet", "reinforce", "transfer", "decomposed") else set()) | (
        {"shape_dim"} if name in ("protonet", "nnshot") else set())
    assert _constructor_options(type(learner)) - DATA_ARGUMENTS - at_default <= set(config["learner"]["options"])


def test_an_option_at_its_default_may_go_unrecorded_but_not_otherwise(tiny_encoder, tmp_path):
    from metalearn_nlp.learners import ProtoNet
    from metalearn_nlp.saving import _learner_options

    plain = ProtoNet(tiny_encoder)
    assert "shape_dim" not in plain.config()  # configs of ProtoNets without shapes are unchanged
    assert load_learner(plain.save_pretrained(tmp_path / "plain")).shape_dim == 0
    shaped = ProtoNet(tiny_encoder, shape_dim=4)
    loaded = load_learner(shaped.save_pretrained(tmp_path / "shaped"))
    assert loaded.shape_dim == 4 and loaded.config() == shaped.config()

    class Forgetful(ProtoNet):  # does not record its own option
        def __init__(self, encoder, *, margin: float = 0.0, **options):
            super().__init__(encoder, **options)
            self.margin = margin

    assert "margin" not in _learner_options(Forgetful(tiny_encoder))  # at its default: nothing is lost
    with pytest.raises(LearnerFileError, match=r"does not record its option\(s\) margin"):
        _learner_options(Forgetful(tiny_encoder, margin=0.5))


def test_the_folder_layout_and_its_checksums(saved):
    folder, learner = saved
    config = read_learner_config(folder)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == {"learner.json", *config["files"]}
    assert {"learner.safetensors", "encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json"} \
        <= files
    for name, entry in config["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    from safetensors.torch import load_file

    assert set(load_file(folder / "learner.safetensors")) == {"center", "log_threshold", "calibrated"}
    assert config["format_version"] == FORMAT_VERSION and config["package"]["version"] == metalearn_nlp.__version__
    assert {"torch", "transformers"} <= set(config["versions"])
    assert config["encoder"]["hidden_size"] == 32 and config["encoder"]["model_type"] == "bert"
    assert config["encoder"]["pooling"] == "first" and config["encoder"]["dtype"] == "float32"
    assert config["learner"]["options"]["o_threshold"] == pytest.approx(learner.o_threshold)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_the_top_level_exports():
    assert metalearn_nlp.load_learner is load_learner and metalearn_nlp.LearnerFileError is LearnerFileError


def test_structshot_reloads_without_its_training_data(tiny_encoder, toy_corpus, toy_episode, tmp_path):
    learner = get_learner("structshot", tiny_encoder, train_sentences=toy_corpus)
    folder = save_learner(learner, tmp_path / "structshot")
    assert "train_sentences" not in read_learner_config(folder)["learner"]["options"]
    loaded = load_learner(folder)
    assert loaded.transitions == learner.transitions  # probabilities, not the raw counts
    assert loaded.adapt(toy_episode).predict(toy_episode.query) == learner.adapt(toy_episode).predict(toy_episode.query)


def test_a_truncated_weights_file_is_refused_before_anything_loads(saved, monkeypatch):
    folder, _ = saved
    path = folder / "learner.safetensors"
    path.write_bytes(path.read_bytes()[:-40])
    import metalearn_nlp.encoders as encoders

    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: pytest.fail("loaded after a failed check"))
    with pytest.raises(LearnerFileError, match=r"learner\.safetensors does not match its sha256.*truncated.*save the"):
        load_learner(folder)


def test_one_flipped_byte_in_the_encoder_weights_is_refused(saved):
    folder, _ = saved
    path = folder / "encoder" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(LearnerFileError, match=r"encoder/model\.safetensors does not match its sha256.*corrupted"):
        load_learner(folder)


def test_a_missing_file_is_named(saved):
    folder, _ = saved
    (folder / "encoder" / "tokenizer.json").unlink()
    with pytest.raises(LearnerFileError, match=r"tokenizer\.json is missing"):
        load_learner(folder)


def test_a_hand_edited_learner_json_is_refused(saved):
    folder, _ = saved
    path = folder / "learner.json"
    path.write_text(path.read_text().replace('"normalize": true', '"normalize": false'))
    with pytest.raises(LearnerFileError, match=r"learner\.json was changed after it was written"):
        read_learner_config(folder)


def test_a_format_from_the_future_is_refused(saved):
    folder, _ = saved
    resign(folder, lambda c: c.update(format_version="1.1"))
    with pytest.raises(LearnerFileError, match=r"format 1\.1 .*newer than this .*upgrade metalearn-nlp"):
        load_learner(folder)
    resign(folder, lambda c: c.update(format_version="2.0"))
    with pytest.raises(LearnerFileError, match=r"format 2\.0"):
        load_learner(folder)


def test_another_package_version_loads_and_warns_only_across_minor_versions(saved):
    folder, learner = saved
    major, minor, *_ = metalearn_nlp.__version__.split(".")
    resign(folder, lambda c: c["package"].update(version=f"{major}.{minor}.999"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_learner(folder).o_threshold == learner.o_threshold
    resign(folder, lambda c: c["package"].update(version=f"{major}.{int(minor) + 1}.0"))
    with pytest.warns(UserWarning, match=rf"saved by metalearn-nlp {major}\.{int(minor) + 1}\.0"):
        load_learner(folder)


def test_an_unknown_learner_name_is_refused(saved):
    folder, _ = saved
    resign(folder, lambda c: c["learner"].update(name="zeroshot9000"))
    with pytest.raises(LearnerFileError, match=r"'zeroshot9000' learner, which this metalearn-nlp .* does not know"):
        load_learner(folder)


def _other_encoder(kind, toy_tokenizer, cased_tokenizer, lookup_encoder):
    from transformers import BertConfig, BertModel

    from metalearn_nlp.encoders import Encoder

    if kind == "model type":
        return lookup_encoder
    hidden, tokenizer = (16, toy_tokenizer) if kind == "hidden size" else (32, cased_tokenizer)
    config = BertConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                        vocab_size=64, max_position_embeddings=64)
    return Encoder(BertModel(config), tokenizer, name=f"other-{kind}")


@pytest.mark.parametrize("kind", ["hidden size", "model type", "vocabulary"])
def test_a_different_encoder_is_refused(kind, saved, toy_tokenizer, cased_tokenizer, lookup_encoder):
    folder, _ = saved
    other = _other_encoder(kind, toy_tokenizer, cased_tokenizer, lookup_encoder)
    with pytest.raises(LearnerFileError, match=rf"made with encoder '.*tiny-bert.*\), you passed '{other.name}'.*"
                                               rf"{kind.split()[0]}.*leave out encoder="):
        load_learner(folder, encoder=other)


def test_a_matching_encoder_is_used_and_other_weights_warn(saved, tiny_bert_path, tiny_encoder, toy_episode):
    folder, learner = saved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = load_learner(folder, encoder=learner.encoder)
    assert same.encoder is learner.encoder
    from metalearn_nlp.encoders import load_encoder

    fresh = load_encoder(tiny_bert_path)  # the weights before perturb(): the saved ones differ
    with pytest.warns(UserWarning, match="different weights"):
        loaded = load_learner(folder, encoder=fresh)
    assert loaded.encoder is fresh and torch.equal(loaded.center, learner.center)


def test_an_existing_folder_is_kept_unless_overwrite(saved, tiny_encoder):
    folder, learner = saved
    before = (folder / "learner.json").read_bytes()
    other = get_learner("protonet", tiny_encoder)
    with pytest.raises(LearnerFileError, match=r"already exists and is not empty; pass overwrite=True"):
        save_learner(other, folder)
    assert (folder / "learner.json").read_bytes() == before
    save_learner(other, folder, overwrite=True)
    assert read_learner_config(folder)["learner"]["name"] == "protonet"
    assert load_learner(folder).name == "protonet"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_overwrite_never_replaces_a_folder_that_is_not_a_saved_learner(tiny_encoder, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(LearnerFileError, match=r"not a saved learner \(no learner\.json\)"):
        save_learner(get_learner("protonet", tiny_encoder), tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    save_learner(get_learner("protonet", tiny_encoder), tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "learner.json").is_file()


def test_an_interrupted_save_leaves_nothing_that_looks_complete(saved, tiny_encoder, monkeypatch):
    import metalearn_nlp.saving as saving

    folder, _ = saved
    before = (folder / "learner.json").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(saving, "_save_encoder", crash)
    with pytest.raises(KeyboardInterrupt):
        save_learner(get_learner("protonet", tiny_encoder), folder.parent / "new")
    with pytest.raises(KeyboardInterrupt):
        save_learner(get_learner("protonet", tiny_encoder), folder, overwrite=True)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["saved"]  # no "new", no temporary folder
    assert (folder / "learner.json").read_bytes() == before


def test_a_missing_folder_is_named(tmp_path):
    missing = tmp_path / "no" / "such-learner"
    with pytest.raises(LearnerFileError, match=rf"no saved learner at {missing}: the folder does not exist") as caught:
        load_learner(missing)
    assert caught.value.path == missing
    (tmp_path / "empty").mkdir()
    with pytest.raises(LearnerFileError, match=r"is not a saved learner: it has no learner\.json"):
        read_learner_config(tmp_path / "empty")


def test_unregistered_learners_and_bad_metadata_are_refused_before_writing(tiny_encoder, tmp_path):
    from metalearn_nlp.learners import ProtoNet

    class Custom(ProtoNet):
        pass

    with pytest.raises(LearnerFileError, match="register it in LEARNERS"):
        save_learner(Custom(tiny_encoder), tmp_path / "custom")
    with pytest.raises(TypeError, match="metadata must be JSON-ready"):
        save_learner(ProtoNet(tiny_encoder), tmp_path / "bad", metadata={"when": object()})
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_offline_minilm_round_trips(toy_episode, tmp_path):
    from metalearn_nlp.encoders import load_encoder

    learner = perturb(get_learner("protonet", load_encoder(pooling="mean", max_length=64)))
    loaded = load_learner(save_learner(learner, tmp_path / "minilm"))
    assert loaded.encoder.name == learner.encoder.name and loaded.encoder.max_length == 64
    assert all(torch.equal(a, b) for a, b in zip(learner.adapt(toy_episode).logits(toy_episode.query),
                                                 loaded.adapt(toy_episode).logits(toy_episode.query)))


def test_encoder_weights_that_do_not_load_as_saved_are_refused(saved, monkeypatch):
    import metalearn_nlp.encoders as encoders

    folder, _ = saved
    original = encoders.load_encoder

    def misread(*args, **kwargs):  # as if another transformers version read the checkpoint differently
        encoder = original(*args, **kwargs)
        with torch.no_grad():
            next(encoder.model.parameters()).mul_(2.0)
        return encoder

    monkeypatch.setattr(encoders, "load_encoder", misread)
    with pytest.raises(LearnerFileError, match=r"encoder loads, but not with the weights that were saved"):
        load_learner(folder)


def test_frozen_encoder_weights_stay_frozen_after_loading(tiny_bert_path, tmp_path):
    from metalearn_nlp.encoders import load_encoder

    learner = get_learner("protonet", load_encoder(tiny_bert_path, freeze=1))
    frozen = {n for n, p in learner.encoder.model.named_parameters() if not p.requires_grad}
    assert frozen and any(n.startswith("encoder.layer.0.") for n in frozen)
    learner.save_pretrained(tmp_path / "frozen")
    loaded = load_learner(tmp_path / "frozen")
    assert {n for n, p in loaded.encoder.model.named_parameters() if not p.requires_grad} == frozen
    assert read_learner_config(tmp_path / "frozen")["encoder"]["frozen"] == sorted(frozen)


def test_metadata_with_integer_keys_reloads(tiny_encoder, tmp_path):
    get_learner("protonet", tiny_encoder).save_pretrained(tmp_path / "ints", metadata={"ids": {9: "a", 10: "b"}})
    assert read_learner_config(tmp_path / "ints")["metadata"] == {"ids": {"9": "a", "10": "b"}}
    load_learner(tmp_path / "ints")


@pytest.mark.parametrize("name", sorted(n for n, cls in LEARNERS.items() if cls.adaptation_options))
def test_adaptation_options_set_on_a_learner_survive_saving(name, tiny_encoder, toy_corpus, toy_episode, tmp_path):
    learner = build(name, tiny_encoder, toy_corpus)
    option = learner.adaptation_options[-1]
    value = {"o_bias": 1.5, "steps": 3, "detect_steps": 2}.get(option, getattr(learner, option))
    learner.set_adaptation(**{option: value})
    loaded = load_learner(learner.save_pretrained(tmp_path / name))
    assert getattr(loaded, option) == value and loaded.config() == learner.config()
