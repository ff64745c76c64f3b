"""Trainer: resumable bit for bit (in process and after SIGKILL), NaN and Ctrl-C handling, torchrun, bf16."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metalearn_nlp.checkpoints import CheckpointError, load_checkpoint
from metalearn_nlp.data import Episode, FewNERDSampler, TaggedSentence
from metalearn_nlp.learners import ProtoNet
from metalearn_nlp.training import Trainer, TrainingDivergedError, episode_seed, meta_train

from test_training import Knob, _dev

WORKER = Path(__file__).parent / "workers" / "train_worker.py"


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def _trainer(encoder, toy_corpus, make_toy_sentences, **kw):
    learner = ProtoNet(encoder, dropout=0.1)
    sampler = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=4)
    dev = FewNERDSampler(make_toy_sentences(40, seed=3), ways=3, shots=1, seed=9).episodes(3)
    options = dict(steps=6, meta_batch_size=2, lr=3e-3, dev_episodes=dev, eval_every=2, progress=False)
    options.update(kw)
    return Trainer(learner, sampler, **options)


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_in_process_is_bit_identical(tiny_bert_path, toy_corpus, make_toy_sentences, tmp_path):
    from metalearn_nlp.encoders import load_encoder

    straight = _trainer(load_encoder(tiny_bert_path), toy_corpus, make_toy_sentences)
    full = straight.fit()
    stop_at = 3

    def stop(state, _):
        if state.step == stop_at and len(state.dev) == 2:  # after the step-2 evaluation and step 3
            raise KeyboardInterrupt

    first = _trainer(load_encoder(tiny_bert_path), toy_corpus, make_toy_sentences, checkpoint_dir=tmp_path,
                     checkpoint_every=1, callback=stop)
    with pytest.warns(UserWarning, match="interrupted at step 3"):
        part = first.fit()
    assert part.interrupted and part.steps == 3
    # Ctrl-C keeps the best weights, not the last ones
    assert _same(_weights(first.learner), first.best_weights)
    assert load_checkpoint(tmp_path)["state"]["step"] == 2  # step 3's checkpoint was never written

    second = _trainer(load_encoder(tiny_bert_path), toy_corpus, make_toy_sentences, checkpoint_dir=tmp_path)
    assert second.resume() and second.state.step == 2
    resumed = second.fit()
    assert resumed.losses == full.losses and resumed.dev == full.dev and resumed.best_step == full.best_step
    assert _same(_weights(second.learner), _weights(straight.learner))


def test_resume_after_sigkill_is_bit_identical(tiny_bert_path, tmp_path):
    ck = tmp_path / "run"
    subprocess.run([sys.executable, str(WORKER), str(tiny_bert_path), str(tmp_path / "straight.safetensors")],
                   check=True, env=_env(), timeout=300)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), str(tiny_bert_path), str(tmp_path / "killed.safetensors"),
         "--checkpoint-dir", str(ck), "--pause-after", "5"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("PAUSED 5"), line
        child.send_signal(signal.SIGKILL)  # a real kill: no cleanup runs
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL and not (tmp_path / "killed.safetensors").exists()
    assert load_checkpoint(ck)["state"]["step"] == 4
    assert not [p for p in ck.iterdir() if p.name != "checkpoint.pt"]  # no temporary file left behind
    subprocess.run([sys.executable, str(WORKER), str(tiny_bert_path), str(tmp_path / "resumed.safetensors"),
                    "--checkpoint-dir", str(ck), "--resume"], check=True, env=_env(), timeout=300)
    straight, resumed = load_file(tmp_path / "straight.safetensors"), load_file(tmp_path / "resumed.safetensors")
    assert _same(straight, resumed)
    a = json.loads((tmp_path / "straight.safetensors.json").read_text())
    b = json.loads((tmp_path / "resumed.safetensors.json").read_text())
    assert a["losses"] == b["losses"] and a["dev"] == b["dev"] and a["best_f1"] == b["best_f1"]


def test_torchrun_two_processes_match_one(tiny_bert_path, tmp_path):
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("no gloo backend")
    one = tmp_path / "one.safetensors"
    two = tmp_path / "two.safetensors"
    subprocess.run([sys.executable, str(WORKER), str(tiny_bert_path), str(one), "--meta-batch-size", "4",
                    "--steps", "4"], check=True, env=_env(), timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(WORKER), str(tiny_bert_path), str(two), "--meta-batch-size", "4", "--steps", "4"],
                   check=True, env=_env(), timeout=300)
    a, b = load_file(one), load_file(two)
    assert a.keys() == b.keys()
    moved = [k for k in a if not torch.equal(a[k], b[k])]
    for k in a:  # equal up to the order of the float additions in all_reduce
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ra = json.loads(Path(str(one) + ".json").read_text())
    rb = json.loads(Path(str(two) + ".json").read_text())
    assert ra["losses"] == pytest.approx(rb["losses"], rel=1e-5) and ra["dev"] == rb["dev"]
    assert len(moved) < len(a)  # most tensors bit-identical (the frozen ones at least)


class Exploding(Knob):
    def loss(self, episode):
        value = super().loss(episode)  # counts the call
        return value * (float("nan") if self.calls == 4 else 1.0)


def test_a_nan_loss_stops_with_the_step_and_episode_and_keeps_the_last_good_checkpoint(tmp_path):
    learner = Exploding()
    trainer = Trainer(learner, _dev(), steps=10, lr=0.1, warmup=0, dev_episodes=_dev(), eval_every=1,
                      checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    with pytest.raises(TrainingDivergedError, match=r"step 3: episode 0 of the meta-batch .*types \['per'\]"):
        trainer.fit()
    assert isinstance(TrainingDivergedError("x"), FloatingPointError)
    assert load_checkpoint(tmp_path)["state"]["step"] == 3  # the last good step
    assert learner.weight.item() == 1.0  # the best (step 0) weights


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    trainer = Trainer(Knob(), _dev(), steps=3, lr=0.1, progress=False, checkpoint_dir=tmp_path)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    flipped = bytearray(data)
    flipped[-len(data) // 3] ^= 0xFF  # inside the tensors: torch.load alone would not notice
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    (tmp_path / "other.pt").write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(CheckpointError, match="not a metalearn-nlp training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    path.write_bytes(data)
    other = Trainer(Knob(), _dev(), steps=5, lr=0.1, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="steps: checkpoint 3, now 5"):
        other.resume()
    assert Trainer(Knob(), _dev(), steps=3, lr=0.1, progress=False, checkpoint_dir=tmp_path / "new").resume() is False


def test_episode_seed_makes_dropout_independent_of_position():
    assert episode_seed(0, 1, 0) != episode_seed(0, 0, 1) and 0 <= episode_seed(7, 7, 7) < 2**63


def test_sampler_state_round_trips(toy_corpus):
    sampler = FewNERDSampler(toy_corpus, ways=2, shots=1, seed=3)
    sampler.episodes(2)
    state = json.loads(json.dumps(sampler.state_dict()))  # JSON-ready
    expected = sampler.episodes(3)
    sampler.load_state_dict(state)
    assert sampler.episodes(3) == expected
    with pytest.raises(ValueError, match="cannot be loaded"):
        sampler.load_state_dict({**state, "sampler": "ClassSampler"})


def test_bf16_autocast_keeps_float32_master_weights(tiny_encoder, toy_corpus):
    learner = ProtoNet(tiny_encoder)
    sampler = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=0)
    result = meta_train(learner, sampler, steps=2, lr=1e-3, precision="bf16", progress=False)
    assert all(math.isfinite(x) for x in result.losses) and result.settings["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in learner.parameters())
    with pytest.raises(ValueError, match="use bf16"):
        Trainer(learner, sampler, steps=1, precision="fp16")


def test_an_empty_episode_list_is_an_error():
    with pytest.raises(ValueError, match="empty list"):
        Trainer(Knob(), [], steps=1)
    ep = Episode([TaggedSentence(["a"], ["per"])], [TaggedSentence(["b"], ["per"])], ["per"], "io")
    assert meta_train(Knob(), [ep], steps=2, progress=False).steps == 2


def test_a_meta_batch_smaller_than_the_process_count_warns(monkeypatch):
    from metalearn_nlp import training

    monkeypatch.setattr(training, "rank_and_world", lambda: (0, 4))
    monkeypatch.setattr(training, "broadcast_module", lambda module: None)
    with pytest.warns(UserWarning, match="ranks 2 to 3 get no episode"):
        Trainer(Knob(), _dev(), steps=1, meta_batch_size=2, progress=False)


class NaNGradient(Knob):
    def loss(self, episode):
        super().loss(episode)
        return (self.weight * 0.0).sqrt()  # value 0, gradient 0.5 / sqrt(0) * 0 = nan


def test_a_finite_loss_with_a_nan_gradient_stops_before_the_update(tmp_path):
    learner = NaNGradient()
    with pytest.raises(TrainingDivergedError, match=r"step 0: the loss was finite .* gradient norm is nan"):
        Trainer(learner, _dev(), steps=3, lr=0.1, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False).fit()
    assert learner.weight.item() == 1.0 and not (tmp_path / "checkpoint.pt").exists()


def test_the_sampler_settings_are_part_of_the_run(toy_corpus, tmp_path):
    first = Trainer(Knob(), FewNERDSampler(toy_corpus, ways=2, shots=1, seed=3), steps=2, lr=0.1, progress=False,
                    checkpoint_dir=tmp_path)
    first.fit()
    other = Trainer(Knob(), FewNERDSampler(toy_corpus[:60], ways=2, shots=1, seed=3), steps=2, lr=0.1,
                    progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="sampler: checkpoint"):
        other.resume()
