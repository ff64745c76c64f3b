"""The notebook helpers: the budget variable, scaled sizes, and the train-or-load disk cache."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from metalearn_nlp import notebook
from metalearn_nlp.notebook import budget_from_env, cache_dir, cache_key, scaled, train_or_load


# -- budget ----------------------------------------------------------------------------------
def test_budget_defaults_to_one_and_reads_numbers():
    assert budget_from_env({}) == 1.0
    assert budget_from_env({"METALEARN_NLP_BUDGET": "10"}) == 10.0
    assert budget_from_env({"METALEARN_NLP_BUDGET": " 0.5 "}) == 0.5


@pytest.mark.parametrize("value", ["", "abc", "0", "-2", "nan", "inf", "1e400"])
def test_budget_rejects_what_is_not_a_positive_number(value):
    with pytest.raises(ValueError, match=r"METALEARN_NLP_BUDGET=.*positive number"):
        budget_from_env({"METALEARN_NLP_BUDGET": value})


def test_an_invalid_budget_fails_at_import_with_the_variable_named():
    env = {**os.environ, "METALEARN_NLP_BUDGET": "fast"}
    run = subprocess.run([sys.executable, "-c", "import metalearn_nlp.notebook"], env=env,
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "METALEARN_NLP_BUDGET='fast'" in run.stderr


def test_scaled_multiplies_rounds_and_keeps_at_least_one():
    assert scaled(150, budget=1) == 150
    assert scaled(150, budget=2.5) == 375
    assert scaled(3, budget=0.5) == 2          # round(1.5) == 2
    assert scaled(10, budget=0.001) == 1
    assert scaled(7) == round(7 * notebook.BUDGET) or scaled(7) == 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_scaled_needs_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        scaled(bad)


# -- cache folder and key --------------------------------------------------------------------
def test_cache_dir_honours_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    assert cache_dir().is_dir()


def test_cache_dir_defaults_to_the_checkout(monkeypatch):
    monkeypatch.delenv("METALEARN_NLP_CACHE", raising=False)
    root = notebook._checkout_root()
    expected = (root if root is not None else os.getcwd())
    assert cache_dir() == type(cache_dir())(expected) / ".cache" / "metalearn_nlp"


def test_cache_key_ignores_key_order_and_sees_every_value():
    a = cache_key({"lr": 3e-5, "steps": 150, "sampler": {"seed": 0, "ways": 5}})
    assert a == cache_key({"sampler": {"ways": 5, "seed": 0}, "steps": 150, "lr": 3e-5})
    assert a != cache_key({"lr": 3e-5, "steps": 151, "sampler": {"seed": 0, "ways": 5}})
    assert len(a) == 64 and int(a, 16) >= 0


def test_cache_key_refuses_settings_that_are_not_json():
    with pytest.raises(TypeError, match="JSON"):
        cache_key({"device": torch.device("cpu")})


# -- train_or_load ---------------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.register_buffer("seen", torch.zeros(()))


def _trainer(model, calls):
    def train():
        calls.append(1)
        with torch.no_grad():
            model.layer.weight.fill_(0.25)
            model.layer.bias.copy_(torch.tensor([1.0, -1.0]))
            model.seen.fill_(7)
        return {"steps": 3, "losses": [1.0, 0.5, 0.25]}
    return train


def test_train_or_load_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path))
    settings = {"learner": "tiny", "lr": 0.1}
    calls = []
    first = Tiny()
    model, info = train_or_load(first, settings, _trainer(first, calls))
    assert model is first and calls == [1] and not info.loaded
    assert info.folder == tmp_path / cache_key(settings)
    assert {p.name for p in info.folder.iterdir()} == {"weights.safetensors", "record.json", "settings.json"}
    assert json.loads((info.folder / "settings.json").read_text()) == settings
    assert "trained now" in str(info)

    second = Tiny()                                  # fresh weights, same settings
    model, info2 = train_or_load(second, settings, _trainer(second, calls))
    assert calls == [1] and info2.loaded and info2.key == info.key
    assert info2.record == {"steps": 3, "losses": [1.0, 0.5, 0.25]}
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert "loaded from the cache" in str(info2)


def test_other_settings_train_again(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path))
    calls = []
    model = Tiny()
    train_or_load(model, {"lr": 0.1}, _trainer(model, calls))
    train_or_load(model, {"lr": 0.2}, _trainer(model, calls))
    assert calls == [1, 1]
    assert len(list(tmp_path.iterdir())) == 2


def test_an_incomplete_entry_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path))
    calls = []
    model = Tiny()
    _, info = train_or_load(model, {"lr": 0.1}, _trainer(model, calls))
    (info.folder / "record.json").unlink()            # as if the run had been interrupted
    _, info = train_or_load(model, {"lr": 0.1}, _trainer(model, calls))
    assert calls == [1, 1] and not info.loaded


def test_a_record_with_to_dict_is_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path))

    class Result:
        def to_dict(self):
            return {"best_f1": 0.5}

    _, info = train_or_load(Tiny(), {"x": 1}, Result)
    assert info.record == {"best_f1": 0.5}
    _, info = train_or_load(Tiny(), {"x": 1}, Result)
    assert info.loaded and info.record == {"best_f1": 0.5}


def test_weights_that_do_not_fit_are_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path))
    train_or_load(Tiny(), {"x": 1}, lambda: None)
    with pytest.raises(RuntimeError):
        train_or_load(nn.Linear(3, 2), {"x": 1}, lambda: None)


def test_docstring_examples():
    assert doctest.testmod(notebook).failed == 0


def test_cache_key_changes_with_the_package_code(tmp_path, monkeypatch):
    import shutil

    import metalearn_nlp
    from metalearn_nlp import notebook

    package = Path(metalearn_nlp.__file__).resolve().parent
    copy = tmp_path / "pkg"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert notebook.code_sha256(copy) == notebook.code_sha256(package)  # the hash sees sources only
    (copy / "training.py").write_text((copy / "training.py").read_text() + "\n# changed\n")
    assert notebook.code_sha256(copy) != notebook.code_sha256(package)
    before = notebook.cache_key({"a": 1})
    monkeypatch.setattr(notebook, "code_sha256", lambda root=None: "0" * 64)
    assert notebook.cache_key({"a": 1}) != before  # weights trained by other code are not reused
