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


# -- published weights -------------------------------------------------------------------------
def _trained_tiny():
    model = Tiny()
    with torch.no_grad():
        model.layer.weight.fill_(0.5)
        model.seen.fill_(3)
    return model


def _never():
    raise AssertionError("train_fn must not run when published weights are given")


def test_published_weights_load_from_a_file_and_fill_the_cache(tmp_path, monkeypatch):
    settings = {"learner": "tiny", "lr": 0.1}
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "first"))
    trained = _trained_tiny()
    path, digest = notebook.export_weights(trained, settings, {"steps": 3}, tmp_path / "tiny.safetensors")
    assert path == tmp_path / "tiny.safetensors" and len(digest) == 64
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "fresh"))
    model, info = train_or_load(Tiny(), settings, _never, published=path, sha256=digest)
    assert info.loaded and info.source == "published" and info.record == {"steps": 3}
    assert torch.equal(model.layer.weight, trained.layer.weight) and model.seen.item() == 3
    assert "published weights" in str(info)
    again, info2 = train_or_load(Tiny(), settings, _never)                 # now from the local cache
    assert info2.source == "cache" and torch.equal(again.layer.weight, trained.layer.weight)


def test_published_weights_from_a_url_and_from_the_variable(tmp_path, monkeypatch):
    settings = {"learner": "tiny", "lr": 0.2}
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "first"))
    folder = tmp_path / "published"
    folder.mkdir()
    path, digest = notebook.export_weights(_trained_tiny(), settings, None, folder)
    assert path.name == f"{notebook.settings_sha256(settings)}.safetensors"
    assert (folder / (path.name + ".sha256")).read_text().split()[0] == digest

    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "a"))
    model, info = train_or_load(Tiny(), settings, _never, published=path.as_uri())   # file:// URL, .sha256 beside
    assert info.source == "published" and model.seen.item() == 3

    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "b"))
    monkeypatch.setenv("METALEARN_NLP_WEIGHTS", folder.as_uri())
    _, info = train_or_load(Tiny(), settings, _never)
    assert info.source == "published"

    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("METALEARN_NLP_WEIGHTS", str(folder))
    _, info = train_or_load(Tiny(), settings, _never)
    assert info.source == "published"
    calls = []                                               # a folder without this entry: train as usual
    model = Tiny()
    _, info = train_or_load(model, {"other": 1}, _trainer(model, calls))
    assert calls == [1] and info.source == "trained"
    monkeypatch.setenv("METALEARN_NLP_WEIGHTS", folder.as_uri())     # the same as a file:// base URL
    calls, model = [], Tiny()
    _, info = train_or_load(model, {"other": 4}, _trainer(model, calls))
    assert calls == [1] and info.source == "trained"
    with pytest.raises(notebook.PublishedWeightsError, match="not found"):  # named explicitly: it must exist
        train_or_load(Tiny(), {"other": 5}, _never, published=(folder / "missing.safetensors").as_uri())


def test_a_weights_url_without_an_entry_trains_and_a_named_one_must_exist(tmp_path, monkeypatch):
    import functools
    import http.server
    import threading

    folder = tmp_path / "published"
    folder.mkdir()
    settings = {"learner": "tiny", "lr": 0.3}
    notebook.export_weights(_trained_tiny(), settings, None, folder)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)                        # the local server, never a proxy
    try:
        monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "a"))
        monkeypatch.setenv("METALEARN_NLP_WEIGHTS", base)
        model, info = train_or_load(Tiny(), settings, _never)                 # published: downloaded
        assert info.source == "published" and model.seen.item() == 3
        calls, model = [], Tiny()
        _, info = train_or_load(model, {"other": 2}, _trainer(model, calls))  # 404 for these settings: train
        assert calls == [1] and info.source == "trained"
        monkeypatch.delenv("METALEARN_NLP_WEIGHTS")
        with pytest.raises(notebook.PublishedWeightsError, match="not found"):
            train_or_load(Tiny(), {"other": 3}, _never, published=f"{base}/missing.safetensors")
    finally:
        server.shutdown()
        server.server_close()


def test_published_weights_are_verified(tmp_path, monkeypatch):
    settings = {"learner": "tiny", "lr": 0.3}
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "cache"))
    path, digest = notebook.export_weights(_trained_tiny(), settings, {"steps": 3}, tmp_path / "w.safetensors")
    error = notebook.PublishedWeightsError
    with pytest.raises(error, match="sha256 .* does not match"):
        train_or_load(Tiny(), settings, _never, published=path, sha256="0" * 64)
    with pytest.raises(ValueError, match="64 hexadecimal"):
        train_or_load(Tiny(), settings, _never, published=path, sha256="abc")
    with pytest.raises(error, match="other settings .*differ in: lr"):
        train_or_load(Tiny(), {"learner": "tiny", "lr": 0.4}, _never, published=path, sha256=digest)
    with pytest.raises(error, match="no such file"):
        train_or_load(Tiny(), settings, _never, published=tmp_path / "missing.safetensors")
    with pytest.raises(error, match="needs its sha256"):                     # a URL with nothing to check against
        train_or_load(Tiny(), settings, _never, published=path.as_uri())
    with pytest.raises(error, match="not found"):
        train_or_load(Tiny(), settings, _never, published=(tmp_path / "nope.safetensors").as_uri(), sha256=digest)
    with pytest.raises(error, match="do not fit"):
        train_or_load(nn.Linear(3, 2), settings, _never, published=path, sha256=digest)
    bare = tmp_path / "bare.safetensors"
    from safetensors.torch import save_model
    save_model(_trained_tiny(), str(bare))
    with pytest.raises(error, match="no settings"):
        train_or_load(Tiny(), settings, _never, published=bare)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(error, match="not a safetensors file"):
        train_or_load(Tiny(), settings, _never, published=corrupt)
    assert not any((tmp_path / "cache").iterdir())                          # nothing was cached


def test_published_weights_from_other_code_warn(tmp_path, monkeypatch):
    settings = {"x": 1}
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "cache"))
    path, _ = notebook.export_weights(_trained_tiny(), settings, None, tmp_path / "w.safetensors")
    monkeypatch.setattr(notebook, "code_sha256", lambda root=None: "1" * 64)
    with pytest.warns(UserWarning, match="other package code"):
        _, info = train_or_load(Tiny(), settings, _never, published=path)
    assert info.source == "published"


def test_exercise_and_notebook_modules_do_not_change_the_code_hash(tmp_path):
    import shutil

    import metalearn_nlp

    copy = tmp_path / "pkg"
    shutil.copytree(Path(metalearn_nlp.__file__).resolve().parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = notebook.code_sha256(copy)
    (copy / "exercises" / "part1.py").write_text("# edited\n")
    (copy / "notebook.py").write_text("# edited\n")
    assert notebook.code_sha256(copy) == before
    (copy / "learners" / "__init__.py").write_text((copy / "learners" / "__init__.py").read_text() + "\n# edited\n")
    assert notebook.code_sha256(copy) != before


def test_book_style_sets_the_palette_and_size():
    import matplotlib

    notebook.book_style()
    assert tuple(matplotlib.rcParams["figure.figsize"]) == notebook.FIGSIZE
    cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    assert [matplotlib.colors.to_hex(c) for c in cycle[:4]] == list(notebook.PALETTE[:4])
    assert matplotlib.rcParams["axes.grid"] is True
