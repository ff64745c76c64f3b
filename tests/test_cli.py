"""The metalearn-nlp command: every sub-command end to end on the tiny encoder, exit codes, messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from metalearn_nlp import __version__, cli
from metalearn_nlp.checkpoints import CheckpointError, load_checkpoint
from metalearn_nlp.data import load_episodes, write_conll

COMMANDS = ("info", "sample", "train", "evaluate", "predict", "report")


def run(*argv: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "metalearn_nlp.cli", *argv], capture_output=True, text=True,
                          env=environment, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_path, make_toy_sentences):
    """A toy CoNLL corpus, a support file and a trained run folder (4 steps on the tiny BERT)."""
    folder = tmp_path_factory.mktemp("cli")
    write_conll(folder / "toy.conll", make_toy_sentences(120, seed=0))
    write_conll(folder / "support.conll", make_toy_sentences(12, seed=5))
    run_dir = folder / "run"
    code = cli.main(["train", "--corpus", str(folder / "toy.conll"), "--encoder", str(tiny_bert_path),
                     "--steps", "4", "--dev-episodes", "2", "--eval-every", "2", "--lr", "1e-3", "--quiet",
                     "--device", "cpu", "--out", str(run_dir)])
    assert code == 0
    return folder


def test_info_reports_version_and_backend(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"metalearn-nlp {__version__}" in out and "kernels: CPU tensors ->" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0 and f"usage: metalearn-nlp {command}" in capsys.readouterr().out


def test_unknown_command_exits_with_usage():
    proc = run("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_train_saves_a_learner_that_evaluate_predict_report_and_info_use(world, capsys):
    run_dir = world / "run"
    assert {"learner", "checkpoints", "config.json", "training.json"} <= {p.name for p in run_dir.iterdir()}
    training = json.loads((run_dir / "training.json").read_text())
    assert training["steps"] == 4 and [d["step"] for d in training["dev"]] == [0, 2, 4]
    assert cli.main(["sample", "-o", str(world / "test.jsonl"), "--corpus", str(world / "toy.conll"),
                     "--episodes", "3", "--seed", "7"]) == 0
    episodes, settings = load_episodes(world / "test.jsonl")
    assert len(episodes) == 3 and settings["seed"] == 7 and settings["data"]["corpus"].endswith("toy.conll")
    capsys.readouterr()
    assert cli.main(["evaluate", str(run_dir), str(world / "test.jsonl"), "--json", str(world / "report.json"),
                     "--quiet", "--device", "cpu"]) == 0
    assert "micro (pooled)" in capsys.readouterr().out
    report = json.loads((world / "report.json").read_text())
    assert report["episodes"] == 3 and report["episode_settings"]["seed"] == 7
    assert cli.main(["report", str(world / "report.json")]) == 0
    assert "micro (pooled)" in capsys.readouterr().out
    text = "Ada  met\tBob in Paris ."
    assert cli.main(["predict", str(run_dir), "--support", str(world / "support.conll"), text,
                     "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["text"] == text
    for entity in line["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"] and 0 <= entity["score"] <= 1
    assert cli.main(["predict", str(run_dir), "--support", str(world / "support.conll"), "--conll",
                     str(world / "support.conll"), "--output", str(world / "tagged.conll"), "--device", "cpu"]) == 0
    blocks = (world / "tagged.conll").read_text().strip().split("\n\n")
    assert len(blocks) == 12 and all("\t" in row for row in blocks[0].splitlines())
    (world / "texts.txt").write_text("Ada met Bob\u2028in Paris\nsecond line\n", encoding="utf-8")
    assert cli.main(["predict", str(run_dir), "--support", str(world / "support.conll"), "--input",
                     str(world / "texts.txt"), "--device", "cpu"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().split("\n")]
    assert [x["text"] for x in lines] == ["Ada met Bob\u2028in Paris", "second line"]  # one record per line
    assert cli.main(["info", str(run_dir)]) == 0
    assert '"learner": "protonet"' in capsys.readouterr().out


def test_input_errors_exit_2_with_an_actionable_message(world, tmp_path):
    assert cli.main(["sample", "-o", str(tmp_path / "good.jsonl"), "--corpus", str(world / "toy.conll"),
                     "--episodes", "2"]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes((tmp_path / "good.jsonl").read_bytes().replace(b'"O"', b'"X"', 1))
    assert bad.read_bytes() != (tmp_path / "good.jsonl").read_bytes()
    cases = [
        (["evaluate", str(tmp_path / "nowhere"), "x.jsonl"], "no such folder"),
        (["train", "--learner", "protonett", "--out", str(tmp_path / "r"), "--corpus", str(world / "toy.conll"),
          "--steps", "1", "--dev-episodes", "0", "--encoder", str(tmp_path / "no-encoder")], ""),
        (["predict", str(world / "run"), "--support", str(world / "support.conll"), "--types", "person,spaceship",
          "x"], "no example of spaceship"),
        (["train", "--out", str(world / "run"), "--steps", "1"], "pass --resume"),
        (["train", "--config", str(tmp_path / "missing.json"), "--out", str(tmp_path / "r")], "no such file"),
        (["report", str(world / "run" / "config.json")], "not a results file"),
    ]
    for argv, message in cases:
        proc = run(*argv)
        assert proc.returncode == 2, (argv, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and f"metalearn-nlp {argv[0]}: error:" in proc.stderr
        assert message in proc.stderr, proc.stderr
    proc = run("train", "--learner", "protonett", "--out", str(tmp_path / "r"), "--corpus", str(world / "toy.conll"),
               "--steps", "1", "--dev-episodes", "0", "--device", "cpu")
    assert proc.returncode == 2 and "did you mean 'protonet'" in proc.stderr
    proc = run("evaluate", str(world / "run"), str(bad), "--device", "cpu")
    assert proc.returncode == 2 and "sha256 mismatch" in proc.stderr


def test_config_file_values_are_defaults_and_flags_win(tmp_path, world, tiny_bert_path):
    config = {"learner": "nnshot", "steps": 3, "lr": 1e-3, "dev_episodes": 0, "corpus": str(world / "toy.conll"),
              "encoder": str(tiny_bert_path), "device": "cpu"}
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--steps", "2", "--quiet",
                     "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["learner"] == "nnshot" and saved["steps"] == 2 and saved["lr"] == 1e-3
    (tmp_path / "bad.json").write_text(json.dumps({"stpes": 3}))
    assert cli.main(["train", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r2")]) == 2
    (tmp_path / "choice.json").write_text(json.dumps({**config, "scheme": "bioes"}))
    assert cli.main(["train", "--config", str(tmp_path / "choice.json"), "--out", str(tmp_path / "r5")]) == 2
    (tmp_path / "types.json").write_text(json.dumps({**config, "types": ["person", "place"], "steps": 1}))
    assert cli.main(["train", "--config", str(tmp_path / "types.json"), "--quiet", "--out", str(tmp_path / "r6")]) == 0
    assert json.loads((tmp_path / "r6" / "config.json").read_text())["types"] == "person,place"
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--freeze", "lots", "--out", str(tmp_path / "r3")]) == 2
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--freeze", "1", "--steps", "1", "--quiet",
                     "--out", str(tmp_path / "r4")]) == 0
    frozen = json.loads((tmp_path / "r4" / "learner" / "learner.json").read_text())["encoder"]["frozen"]
    assert any(name.startswith("encoder.layer.0.") for name in frozen)
    assert not any(name.startswith("encoder.layer.1.") for name in frozen)


def test_train_resume_after_sigkill_ends_bit_identical(tmp_path, world, tiny_bert_path):
    args = ["train", "--corpus", str(world / "toy.conll"), "--encoder", str(tiny_bert_path), "--steps", "40",
            "--dev-episodes", "2", "--eval-every", "10", "--checkpoint-every", "1", "--lr", "1e-3", "--quiet",
            "--device", "cpu", "--seed", "3"]
    straight = run(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "metalearn_nlp.cli", *args, "--out", str(killed_dir)],
                             env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    step = 0
    while time.time() < deadline and child.poll() is None:
        try:
            step = load_checkpoint(killed_dir / "checkpoints")["state"]["step"]
        except CheckpointError:
            step = 0
        if step >= 5:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 5 <= step < 40 and not (killed_dir / "learner").exists()
    resumed = run("train", "--out", str(killed_dir), "--resume")  # the run's config.json supplies the rest
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "learner" / "learner.safetensors")
    b = load_file(killed_dir / "learner" / "learner.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads((tmp_path / "straight" / "training.json").read_text())
    rb = json.loads((killed_dir / "training.json").read_text())
    assert ra["losses"] == rb["losses"] and ra["dev"] == rb["dev"]


def test_re_meta_learning_continues_from_a_saved_learner(world, tmp_path, make_toy_sentences):
    from metalearn_nlp.saving import load_learner

    write_conll(tmp_path / "new.conll", make_toy_sentences(60, seed=11))
    assert cli.main(["train", "--from", str(world / "run"), "--corpus", str(tmp_path / "new.conll"), "--steps", "2",
                     "--dev-episodes", "0", "--lr", "1e-3", "--quiet", "--device", "cpu",
                     "--out", str(tmp_path / "v2")]) == 0
    before = load_learner(world / "run" / "learner").state_dict()
    after = load_learner(tmp_path / "v2" / "learner")
    assert after.name == "protonet"
    changed = [k for k, v in after.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # it trained further from the saved weights
    metadata = json.loads((tmp_path / "v2" / "learner" / "learner.json").read_text())["metadata"]
    assert metadata["config"]["start_from"] == str(world / "run")
    # the first step starts from the saved weights: with lr 0 nothing moves
    assert cli.main(["train", "--from", str(world / "run"), "--corpus", str(tmp_path / "new.conll"), "--steps", "1",
                     "--dev-episodes", "0", "--lr", "0", "--quiet", "--device", "cpu",
                     "--out", str(tmp_path / "v3")]) == 0
    same = load_learner(tmp_path / "v3" / "learner").state_dict()
    assert all(torch.equal(v, before[k]) for k, v in same.items())


def test_commands_that_tag_refuse_a_saved_text_classifier(world, tmp_path, tiny_encoder, capsys):
    from metalearn_nlp.learners import get_learner

    get_learner("intent_centroid", tiny_encoder).save_pretrained(tmp_path / "intents")
    code = cli.main(["predict", str(tmp_path / "intents"), "--support", str(world / "support.conll"), "Ada met Alan"])
    assert code == 2 and "text classifier" in capsys.readouterr().err


def test_adapt_sets_adaptation_only_options_of_a_loaded_learner(world, tmp_path, capsys):
    """``--adapt '{"o_bias": ...}'``: a huge O bias leaves nothing tagged; options that change training are refused."""
    assert cli.main(["sample", "-o", str(tmp_path / "t.jsonl"), "--corpus", str(world / "toy.conll"),
                     "--episodes", "2", "--seed", "3"]) == 0
    out = {}
    for name, adapt in (("plain", []), ("biased", ["--adapt", '{"o_bias": 10000}'])):
        assert cli.main(["evaluate", str(world / "run"), str(tmp_path / "t.jsonl"), "--quiet", "--device", "cpu",
                         "--json", str(tmp_path / f"{name}.json"), *adapt]) == 0
        out[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert out["plain"]["learner"].get("o_bias") is None and out["biased"]["learner"]["o_bias"] == 10000
    assert out["biased"]["overall"]["predicted"] == 0 < out["plain"]["overall"]["predicted"]
    capsys.readouterr()
    assert cli.main(["predict", str(world / "run"), "--support", str(world / "support.conll"), "Ada met Bob",
                     "--device", "cpu", "--adapt", '{"o_bias": 10000}']) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["entities"] == []
    for bad, message in (('{"dropout": 0.5}', "not adaptation-only"), ("[1]", "JSON object"), ("{o_bias", "JSON")):
        assert cli.main(["evaluate", str(world / "run"), str(tmp_path / "t.jsonl"), "--quiet", "--device", "cpu",
                         "--adapt", bad]) == 2
        assert message in capsys.readouterr().err
