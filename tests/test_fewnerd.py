"""Few-NERD's official episode files: read into IO episodes, clear errors with line numbers, usable by evaluate."""

from __future__ import annotations

import json

import pytest

from metalearn_nlp.data import (
    EpisodeFileError,
    FewNERDSampler,
    TaggedSentence,
    fewnerd_episode,
    is_fewnerd_file,
    load_fewnerd_episodes,
    save_episodes,
)
from metalearn_nlp.evaluation import evaluate
from metalearn_nlp.learners import ProtoNet

EPISODE = {
    "support": {"word": [["Ada", "met", "Grace"], ["in", "Paris", "today"]],
                "label": [["person", "O", "person"], ["O", "place", "O"]]},
    "query": {"word": [["Alan", "visited", "Rome"]], "label": [["person", "O", "place"]]},
    "types": ["place", "person"],
}  # fmt: skip


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_reads_episodes_in_the_file_s_type_order(tmp_path):
    second = {**EPISODE, "types": ["person", "place"]}
    path = _write(tmp_path / "test_2_1.jsonl", [json.dumps(EPISODE), "", json.dumps(second)])
    episodes, settings = load_fewnerd_episodes(path)
    assert settings == {"format": "fewnerd", "file": "test_2_1.jsonl", "ways": 2, "shots": 1, "episodes": 2}
    first = episodes[0]
    assert first.scheme == "io" and first.types == ("place", "person")
    assert first.label_names == ["O", "place", "person"] and episodes[1].label_names == ["O", "person", "place"]
    assert [s.tokens for s in first.support] == [("Ada", "met", "Grace"), ("in", "Paris", "today")]
    assert first.query[0].tags == ("person", "O", "place")
    assert first.encode_tags(first.query[0]) == [2, 0, 1]


def test_a_name_without_n_and_k_gives_none(tmp_path):
    _, settings = load_fewnerd_episodes(_write(tmp_path / "mine.jsonl", [json.dumps(EPISODE)]))
    assert settings["ways"] is None and settings["shots"] is None


@pytest.mark.parametrize("bad, message", [
    ("{not json", r"line 2: not valid JSON"),
    (json.dumps({**EPISODE, "types": []}), r"line 2: 'types' must be a non-empty list"),
    (json.dumps({k: v for k, v in EPISODE.items() if k != "query"}), r"line 2: missing key\(s\) \['query'\]"),
    (json.dumps({**EPISODE, "query": {"word": [["a", "b"]], "label": [["O"]]}}), r"line 2: query sentence 0: .*2 tokens but 1 tags"),
    (json.dumps({**EPISODE, "query": {"word": [["a"], ["b"]], "label": [["O"]]}}), r"line 2: query: 'word' and 'label'"),
    (json.dumps({**EPISODE, "types": ["person"]}), r"line 2: support\[1\] has labels \['place'\]"),
    ("[1, 2]", r"line 2: expected a JSON object"),
])  # fmt: skip
def test_a_malformed_line_is_named_with_its_number(tmp_path, bad, message):
    path = _write(tmp_path / "test_5_1.jsonl", [json.dumps(EPISODE), bad, json.dumps(EPISODE)])
    with pytest.raises(EpisodeFileError, match=message) as info:
        load_fewnerd_episodes(path)
    assert info.value.path == str(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="Few-NERD"):
        load_fewnerd_episodes(tmp_path / "absent.jsonl")
    with pytest.raises(EpisodeFileError, match="empty"):
        load_fewnerd_episodes(_write(tmp_path / "empty.jsonl", ["", " "]))


def test_tells_few_nerd_files_from_the_package_s_own(tmp_path, toy_corpus):
    ours = tmp_path / "ours.jsonl"
    sampler = FewNERDSampler(toy_corpus, 2, 1, seed=0)
    save_episodes(ours, sampler.episodes(2), sampler.settings)
    theirs = _write(tmp_path / "test_2_1.jsonl", [json.dumps(EPISODE)])
    assert is_fewnerd_file(theirs) and not is_fewnerd_file(ours)


def test_evaluate_runs_on_a_few_nerd_file(tmp_path, lookup_encoder):
    path = _write(tmp_path / "test_2_1.jsonl", [json.dumps(EPISODE)] * 3)
    episodes, _ = load_fewnerd_episodes(path)
    report = evaluate(ProtoNet(lookup_encoder), episodes, progress=False)
    assert report.episodes == 3 and report.f1 == 1.0  # the lookup encoder's clusters are separable


def test_fewnerd_episode_rejects_non_objects():
    with pytest.raises(ValueError, match="JSON object"):
        fewnerd_episode(["support"])


def test_load_episode_file_reads_both_kinds(tmp_path, toy_corpus):
    from metalearn_nlp.data import load_episode_file

    ours = tmp_path / "ours.jsonl"
    sampler = FewNERDSampler(toy_corpus, 2, 1, seed=0)
    save_episodes(ours, sampler.episodes(2), sampler.settings)
    theirs = _write(tmp_path / "test_2_1.jsonl", [json.dumps(EPISODE)])
    assert len(load_episode_file(ours)[0]) == 2 and load_episode_file(ours)[1] == sampler.settings
    assert load_episode_file(theirs)[1]["format"] == "fewnerd"
    with pytest.raises(FileNotFoundError):
        load_episode_file(tmp_path / "none.jsonl")


@pytest.fixture
def fewnerd_bench(tmp_path, monkeypatch):
    """The benchmark script as a module, its weight cache in tmp_path, Few-NERD-style files under tmp_path/episode-data."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("fewshot_ner_bench_fewnerd", root / "benchmarks" / "fewshot_ner.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("METALEARN_NLP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "episode-data" / "inter"
    folder.mkdir(parents=True)
    for part in ("train", "dev", "test"):
        _write(folder / f"{part}_2_1.jsonl", [json.dumps(EPISODE)] * 2)
    return bench


def test_the_benchmark_evaluates_on_few_nerd_files(tmp_path, fewnerd_bench):
    """``benchmarks/fewshot_ner.py --setting fewnerd`` trains on the official train file, selects on dev, tests on test."""
    bench = fewnerd_bench
    out = tmp_path / "small.json"
    argv = ["--setting", "fewnerd", "--fewnerd", str(tmp_path / "episode-data"), "--ways", "2", "--shots", "1",
            "--episodes", "2", "--dev-episodes", "1", "--steps", "1", "--seeds", "0", "--bootstrap", "50",
            "--methods", "transfer,decomposed", "--decomposition", "--results", str(out)]
    assert bench.main(argv) == 0
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == ["transfer", "decomposed"]
    for record in records:
        assert record["corpus"] == "fewnerd-inter" and record["episodes"] == 2 and record["ways"] == 2
        assert record["command"].startswith("python benchmarks/fewshot_ner.py --setting fewnerd")
        low, high = record["f1_bootstrap95_per_seed"][0]
        assert 0 <= low <= record["f1"] <= high <= 1
    assert records[0]["learner"]["source_types"] == ["person", "place"]
    assert set(records[1]["decomposition_per_seed"][0]) == {"detection", "typing"}


def test_the_benchmark_chooses_adaptation_options_on_dev_episodes_only(tmp_path, monkeypatch, capsys, fewnerd_bench):
    """``--select`` scores each combination on the dev file, records every score, and tests only the choice."""
    bench = fewnerd_bench
    scored = []
    real_evaluate = bench.evaluate

    def spy(learner, episodes, **kw):
        scored.append((learner.name, learner.o_bias, len(episodes)))
        return real_evaluate(learner, episodes, **kw)

    monkeypatch.setattr(bench, "evaluate", spy)
    out = tmp_path / "small.json"
    argv = ["--setting", "fewnerd", "--fewnerd", str(tmp_path / "episode-data"), "--ways", "2", "--shots", "1",
            "--episodes", "2", "--dev-episodes", "1", "--steps", "1", "--seeds", "0,1", "--bootstrap", "0",
            "--methods", "transfer", "--select", '{"transfer": {"o_bias": [10000.0, 0.0], "steps": [5]}}',
            "--select-episodes", "1", "--results", str(out)]
    assert bench.main(argv) == 0
    (record,) = json.loads(out.read_text())
    selection = record["selection"]
    assert [s["options"] for s in selection["scores"]] == [{"o_bias": 1e4, "steps": 5}, {"o_bias": 0.0, "steps": 5}]
    assert selection["scores"][0]["f1_per_seed"] == [0.0, 0.0]  # O everywhere: nothing found
    best = max(selection["scores"], key=lambda s: s["f1"])
    assert selection["chosen"] == (best["options"] if best["f1"] > 0 else {"o_bias": 1e4, "steps": 5})
    assert selection["dev"]["episodes"] == 1 and selection["dev"]["fewnerd"] == "dev_2_1.jsonl"
    assert selection["name_share"] is None  # recorded for conll2003-wnut17 only
    sentences = [TaggedSentence(["Ada", "met", "Grace", "Hopper"], ["B-person", "O", "B-person", "I-person"])]
    assert bench.name_share(sentences) == 0.75
    assert record["learner"].get("o_bias", 0.0) == selection["chosen"]["o_bias"] and record["learner"]["steps"] == 5
    # dev: 2 combinations x 2 seeds on 1 episode; test: the chosen combination only, 2 episodes per seed
    assert [n for _, _, n in scored] == [1, 1, 1, 1, 2, 2]
    assert {b for _, b, n in scored if n == 2} == {selection["chosen"]["o_bias"]}
    for argv_bad, message in [
        (["--select", '{"protonet": {"shape_dim": [0, 16]}}'], "not adaptation-only"),
        (["--select", '{"transfer": {"o_bias": 1}}'], "non-empty"),
    ]:
        capsys.readouterr()
        with pytest.raises(SystemExit):
            bench.main(argv_bad)
        assert message in capsys.readouterr().err
