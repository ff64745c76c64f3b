"""benchmarks/robustness.py: skips without data, perturbs only query sentences, deterministically."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from metalearn_nlp.data import Episode, TaggedSentence

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("robustness_benchmark", ROOT / "benchmarks" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_episode() -> Episode:
    s = TaggedSentence(["Ada", "visited", "Paris", "today"], ["person", "O", "location", "O"])
    t = TaggedSentence(["Grace", "left", "Rome"], ["person", "O", "location"])
    return Episode(support=(s,), query=(t, s), types=("person", "location"), scheme="io")


def test_skips_without_data(tmp_path, capsys):
    assert load_script().main(["--data", str(tmp_path)]) == 0
    assert "not found" in capsys.readouterr().out


def test_perturbations_touch_queries_only_and_are_deterministic():
    bench = load_script()
    pool = {"person": [("Ada",), ("Grace",), ("Alan", "Turing")], "location": [("Paris",), ("Rome",), ("Oslo",)]}
    episodes = [toy_episode(), toy_episode()]
    for name, transform in bench.perturbations(pool).items():
        out = bench.perturbed(episodes, transform)
        if transform is None:
            assert out is episodes
            continue
        assert out == bench.perturbed(episodes, transform), name
        for before, after in zip(episodes, out):
            assert after.support == before.support
            assert [len(q.tokens) == len(q.tags) for q in after.query] == [True, True]
    upper = bench.perturbed(episodes, bench.perturbations(pool)["upper case"])
    assert upper[0].query[0].tokens == ("GRACE", "LEFT", "ROME")
    swapped = bench.perturbed(episodes, bench.perturbations(pool)["entity swap"])
    assert swapped[0].query[0].tokens[0] in {"Ada", "Alan"}
