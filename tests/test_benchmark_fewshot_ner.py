"""The few-shot NER benchmark script runs end to end at a tiny size and writes the issue's record fields.

The benchmark measures (its numbers are in ``benchmarks/results/``); this test only keeps the
script from rotting: arguments, the episode file, the weight cache and the JSON record.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"corpus", "ways", "shots", "method", "encoder", "episodes", "seeds", "f1", "f1_ci95",
            "precision", "recall", "train_seconds", "eval_seconds_per_episode"}


@pytest.fixture
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("fewshot_ner_bench", ROOT / "benchmarks" / "fewshot_ner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(module, "EPISODES", tmp_path / "episodes")
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "cache"))
    return module


TINY = ["--setting", "wnut16", "--shots", "1", "--episodes", "2", "--dev-episodes", "1", "--steps", "1",
        "--seeds", "0", "--methods", "finetune,protonet,structshot"]


def test_tiny_run_writes_the_issue_s_record_fields(bench, tmp_path):
    assert bench.main(TINY) == 0
    records = json.loads(bench.RESULTS.read_text())
    assert [r["method"] for r in records] == ["finetune", "protonet", "structshot"]
    for record in records:
        assert REQUIRED <= set(record), REQUIRED - set(record)
        assert record["corpus"] == "wnut16" and record["ways"] == 5 and record["shots"] == "1~2"
        assert record["episodes"] == 2 and record["seeds"] == [0] and 0 <= record["f1"] <= 1
    assert [r["deterministic"] for r in records] == [True, False, False]
    assert records[1]["meta_training"]["train_shots"] == 1
    episode_file = bench.EPISODES / "wnut16_5way_1shot.jsonl"
    assert episode_file.is_file()
    # ProtoNet's weights and NNShot's (StructShot meta-trains NNShot on demand and reuses its encoder)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_structshot_trains_and_caches_nnshot_and_a_rerun_loads_it(bench, tmp_path):
    args = ["--setting", "wnut16", "--shots", "1", "--episodes", "2", "--dev-episodes", "1", "--steps", "1",
            "--seeds", "0", "--methods", "structshot"]
    assert bench.main(args) == 0
    first = json.loads(bench.RESULTS.read_text())[0]
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert bench.main(args) == 0  # loads NNShot's weights: same scores, the recorded training time carried over
    second = json.loads(bench.RESULTS.read_text())[0]
    assert second["f1"] == first["f1"] and second["train_seconds"] == first["train_seconds"]


def test_missing_reference_corpora_give_a_skipped_record(bench, tmp_path):
    assert bench.main(["--setting", "conll2003-wnut17", "--data", str(tmp_path / "nowhere"), "--methods", "nnshot"]) == 0
    (record,) = json.loads(bench.RESULTS.read_text())
    assert record["status"] == "skipped" and record["corpus"] == "conll2003->wnut17"


def test_unknown_method_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--methods", "protonet,maml-plus-plus"])
    with pytest.raises(SystemExit):  # options must be keyed by known methods
        bench.main(["--methods", "protonet", "--options", '{"protonet-x": {}}'])


def test_a_gradient_learner_runs_with_options_and_records_its_learning_curve(bench):
    argv = ["--setting", "wnut16", "--shots", "1", "--episodes", "2", "--dev-episodes", "1", "--steps", "2",
            "--seeds", "0", "--methods", "anil", "--head-lr", "1e-3",
            "--options", '{"anil": {"freeze": 5, "inner_steps": 2}}']
    assert bench.main(argv) == 0
    (record,) = json.loads(bench.RESULTS.read_text())
    assert record["method"] == "anil" and record["options"] == {"freeze": 5, "inner_steps": 2}
    assert record["learner"]["inner_steps"] == 2 and record["meta_training"]["head_lr"] == 1e-3
    (curve,) = record["learning_curve_per_seed"]
    assert [point["step"] for point in curve] == [0, 1, 2]
