"""The MAML speed benchmark's correctness half, on a tiny float64 BERT (its timing half is not run here).

Without ``higher`` / ``torchopt`` (CI does not install them: ``make compare-env`` does) this still
checks the package's path as the benchmark drives it: the adapted weights equal a deepcopy stepped
by ``torch.optim.SGD``, the first-order meta-gradient equals the deepcopy's query gradient, and the
second-order one equals a plain ``functional_call`` reference that itself passes a finite-difference
check. With the libraries installed, ``--quick`` compares all of them.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("maml_speed_bench", ROOT / "benchmarks" / "maml_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tiny(bench):
    """A tiny float64 tagger, its Encoder wrapper and one episode's (support, query) batches."""
    from metalearn_nlp.data import load_episodes
    from metalearn_nlp.encoders import Encoder, load_encoder

    tokenizer = load_encoder().tokenizer
    bert = bench.strip_pooler(bench.tiny_bert(tokenizer.vocab_size))
    encoder = Encoder(bert, tokenizer, name="tiny-bert")
    episodes, _ = load_episodes(bench.EPISODES)
    torch.manual_seed(1)
    tagger = bench.Tagger(bert, len(episodes[0].label_names)).eval()
    return tagger, encoder, bench.episode_batches(encoder, episodes[:1])[0]


def _sgd_copy(bench, tagger, support, steps, lr):
    """The textbook way: deepcopy the model and step it in place with torch.optim.SGD."""
    clone = copy.deepcopy(tagger)
    opt = torch.optim.SGD([p for p in clone.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        bench.ce(clone(support), support).backward()
        opt.step()
    return clone


@pytest.mark.parametrize("setting", ["full", "top2"])
def test_ours_matches_a_deepcopy_stepped_by_torch_sgd(bench, tiny, setting):
    tagger, encoder, (support, query) = tiny
    adapt = bench.SETTINGS[setting][1]
    bench.configure(tagger, adapt)
    ours = bench.Ours(tagger, encoder, adapt, 3, 0.05)
    clone = _sgd_copy(bench, tagger, support, 3, 0.05)
    expected = {n: p for n, p in clone.named_parameters() if p.requires_grad}

    with torch.no_grad():  # plain adaptation
        adapted = ours.adapt_params(support)
    prefix = {n[len("bert."):] if n.startswith("bert.") else n: n for n in expected}
    assert set(adapted) == set(prefix)
    for name, value in adapted.items():
        torch.testing.assert_close(value, expected[prefix[name]], rtol=1e-10, atol=1e-12)

    # first-order MAML: the meta-gradient is the query gradient at the adapted weights, applied to θ
    tagger.zero_grad(set_to_none=True)
    ours.query_loss(query, ours.adapt_params(support, first_order=True)).backward()
    clone.zero_grad(set_to_none=True)
    bench.ce(clone(query), query).backward()
    for name, p in tagger.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, dict(clone.named_parameters())[name].grad, rtol=1e-9, atol=1e-12)
    tagger.zero_grad(set_to_none=True)


def test_ours_second_order_meta_gradient_matches_the_reference_and_finite_differences(bench):
    record = bench.check_gradients(["ours"], steps=3, lr=0.05, tol=1e-5, n_episodes=1)
    for setting, result in record["settings"].items():
        assert result["max_rel_diff"]["ours"] <= 1e-5, (setting, result)
        assert max(result["reference_vs_finite_difference"]) <= 1e-6, (setting, result)
        assert result["first_order_rel_diff"] > 1e-3, (setting, result)  # the check can tell FOMAML apart
    assert record["agree"]


def test_quick_run_agrees_with_higher_and_torchopt(bench, capsys):
    missing = [name for name in ("higher", "torchopt") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (CI does not install them; `make compare-env` does)")
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "DISAGREE" not in out and out.count("(agree)") == len(bench.SETTINGS)


def test_recorded_results_have_the_issue_s_keys(bench):
    path = bench.RESULTS
    if not path.exists():
        pytest.skip(f"{path.name} not written yet (python benchmarks/maml_speed.py)")
    result = json.loads(path.read_text())
    assert result["gradient_agreement"]["agree"] is True
    assert {"versions", "machine", "loadavg"} <= set(result)
    for setting, record in result["settings"].items():
        for lib in bench.LIBRARIES:
            value = record[f"speedup_vs_{lib}"]
            assert isinstance(value, float) or "reason" in value, (setting, lib)
        assert {"seconds", "peak_mb", "overhead_over_floor"} <= set(record)
        assert "ours" in record["seconds"] and "floor" in record["seconds"] and "ours" in record["peak_mb"]
