"""LoRA adapters through peft: the adapted encoder starts where it was, only adapters train, clear errors."""

from __future__ import annotations

import sys

import pytest
import torch

from metalearn_nlp.learners import ProtoNet
from metalearn_nlp.parameter_efficient import PeftMissingError, add_lora, trainable_report

pytest.importorskip("peft")


def test_trainable_report_counts_numbers_and_names():
    layer = torch.nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    report = trainable_report(layer)
    assert (report.trainable, report.total, report.names) == (6, 8, ("weight",))
    assert report.fraction == pytest.approx(0.75) and "6 of 8" in str(report)
    with pytest.raises(TypeError, match="nn.Module"):
        trainable_report("not a module")


def test_lora_starts_at_the_pretrained_function_and_trains_only_the_adapters(tiny_encoder, toy_episode):
    sentences = list(toy_episode.support)
    tiny_encoder.eval()
    before = tiny_encoder.encode(sentences).vectors.detach()
    report = add_lora(tiny_encoder, r=4, alpha=8)
    after = tiny_encoder.encode(sentences).vectors.detach()
    assert torch.allclose(before, after, atol=1e-6)                 # B = 0 at initialisation
    # 2 layers x (query, value) x (A: r x 32, B: 32 x r)
    assert report.trainable == 2 * 2 * (4 * 32 + 32 * 4)
    assert report.names and all("lora_" in n for n in report.names)
    assert report.total > 10 * report.trainable


def test_layers_restricts_the_adapters(tiny_encoder):
    report = add_lora(tiny_encoder, r=2, layers=[1])
    assert report.trainable == 2 * (2 * 32 + 32 * 2)
    assert all(".layer.1." in n for n in report.names)


def test_a_training_step_changes_the_adapters_and_nothing_else(tiny_encoder, toy_episode):
    add_lora(tiny_encoder, r=4)
    learner = ProtoNet(tiny_encoder)
    frozen = {n: p.detach().clone() for n, p in learner.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in learner.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=1.0)
    for _ in range(2):          # step 1 moves B off zero; step 2 then moves A too
        optimizer.zero_grad()
        learner.loss(toy_episode).backward()
        optimizer.step()
    named = dict(learner.named_parameters())
    assert all(torch.equal(named[n], v) for n, v in frozen.items())
    assert all(not torch.equal(named[n], v) for n, v in adapters.items())


def test_bad_arguments_are_refused(tiny_encoder):
    with pytest.raises(ValueError, match="r must be a positive integer"):
        add_lora(tiny_encoder, r=0)
    with pytest.raises(ValueError, match="dropout"):
        add_lora(tiny_encoder, dropout=1.0)
    with pytest.raises(ValueError, match="no module matched|no adapter"):
        add_lora(tiny_encoder, target_modules=("no_such_layer",))
    with pytest.raises(TypeError, match="Encoder or an nn.Module"):
        add_lora("bert")


def test_missing_peft_names_the_extra(tiny_encoder, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)      # `import peft` now raises ImportError
    with pytest.raises(PeftMissingError, match=r"metalearn-nlp\[peft\]"):
        add_lora(tiny_encoder)
    assert issubclass(PeftMissingError, ImportError)
