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


def _reference_corpora(root: Path) -> Path:
    """Tiny stand-ins for ``../shared/data``'s ``conll2003/`` and ``wnut17/`` (the benchmark's ``--data``)."""
    def sentences(types: list[str], copies: int) -> str:
        lines = []
        for i in range(copies):
            for type_ in types:
                lines += [f"Name{i}\tB-{type_}", f"Two{i}\tI-{type_}", "went\tO", "home\tO", ""]
        return "\n".join(lines) + "\n"

    for folder, files, types in [("conll2003", ("train.txt", "dev.txt", "test.txt"), ["person", "location"]),
                                 ("wnut17", ("train.conll", "dev.conll", "test.conll"),
                                  ["person", "location", "group", "corporation", "product", "creative-work"])]:
        (root / folder).mkdir(parents=True)
        for name in files:  # only WNUT-17 dev has an `event`: a sampler that drew from another split would lack it
            extra = ["event"] if name == "dev.conll" else []
            (root / folder / name).write_text(sentences(types + extra, 8))
    return root


def test_a_conll2003_source_on_the_wnut16_test_episodes(bench, tmp_path):
    """``conll2003-wnut16``: CoNLL-trained learners (the cache entries of ``conll2003-wnut17``) on WNUT-16's test episodes."""
    data = _reference_corpora(tmp_path / "data")
    common = ["--shots", "1", "--episodes", "2", "--dev-episodes", "1", "--steps", "1", "--seeds", "0",
              "--bootstrap", "0", "--data", str(data), "--methods", "protonet"]
    assert bench.main(["--setting", "conll2003-wnut16", *common, "--select", '{"protonet": {"o_bias": [0, 1]}}',
                       "--select-episodes", "2"]) == 0
    (record,) = json.loads(bench.RESULTS.read_text())
    assert (record["corpus"], record["ways"], record["shots"]) == ("conll2003->wnut16", 5, "1~2")
    assert (bench.EPISODES / "wnut16_5way_1shot.jsonl").is_file()  # the wnut16 setting's test episodes
    assert record["f1_novel_types"]["types"] == sorted(bench.WNUT16_SPLIT["test"])  # none is a CoNLL-2003 type
    dev = record["selection"]["dev"]
    assert dev["split"] == "wnut17 dev" and dev["sampler"] == "FewNERDSampler" and dev["ways"] == 5
    assert dev["shots"] == "1~2" and dev["episodes"] == 2 and "event" in dev["types"]   # drawn from WNUT-17 dev
    share = record["selection"]["name_share"]
    assert set(share) == {"source train", "target dev episodes"} and share["source train"] == 0.5
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 1
    assert bench.main(["--setting", "conll2003-wnut17", *common]) == 0  # the same source training: loaded
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached
    episodes = (bench.EPISODES / "wnut16_5way_1shot.jsonl").read_bytes()
    assert bench.main(["--setting", "wnut16", *common]) == 0          # the same test episodes: read, not re-sampled
    assert (bench.EPISODES / "wnut16_5way_1shot.jsonl").read_bytes() == episodes
    bench.RESULTS.unlink()
    assert bench.main(["--setting", "conll2003-wnut16", *common[:-4], "--data", str(tmp_path / "nowhere"),
                       "--methods", "protonet"]) == 0
    (skipped,) = json.loads(bench.RESULTS.read_text())
    assert (skipped["status"], skipped["corpus"], skipped["ways"], skipped["shots"]) == (
        "skipped", "conll2003->wnut16", 5, "1~2")


def test_wnut16_chooses_its_adaptation_on_wnut17_dev_and_needs_the_data_for_it(bench, tmp_path):
    common = ["--setting", "wnut16", "--shots", "1", "--episodes", "2", "--dev-episodes", "1", "--steps", "1",
              "--seeds", "0", "--bootstrap", "0", "--methods", "protonet",
              "--select", '{"protonet": {"o_bias": [0, 1]}}', "--select-episodes", "1"]
    assert bench.main([*common, "--data", str(tmp_path / "nowhere")]) == 0
    (record,) = json.loads(bench.RESULTS.read_text())
    assert record["status"] == "skipped" and record["corpus"] == "wnut16" and "WNUT-17 dev" in record["reason"]
    bench.RESULTS.unlink()
    no_select = [*common[:common.index("--select")], "--data", str(tmp_path / "nowhere")]
    assert bench.main([*no_select[:-2], "--select", '{"transfer": {"o_bias": [0]}}', *no_select[-2:]]) == 0
    assert json.loads(bench.RESULTS.read_text())[0]["f1"] >= 0   # no method to select for: runs without the data
    bench.RESULTS.unlink()
    assert bench.main([*common, "--data", str(_reference_corpora(tmp_path / "data"))]) == 0
    (record,) = json.loads(bench.RESULTS.read_text())
    assert record["corpus"] == "wnut16" and record["selection"]["dev"]["split"] == "wnut17 dev"
    assert record["learner"].get("o_bias", 0) == record["selection"]["chosen"]["o_bias"]
