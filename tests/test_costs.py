"""Tests for metalearn_nlp.costs."""

from __future__ import annotations

import pytest
import torch

from metalearn_nlp.costs import saved_tensor_bytes, time_call


def test_saved_bytes_counts_each_storage_once_and_scales_with_input():
    w = torch.randn(8, 8, requires_grad=True)

    def forward(n):
        x = torch.randn(n, 8)
        return lambda: torch.tanh(x @ w).sum()

    _, small = saved_tensor_bytes(forward(4))
    _, large = saved_tensor_bytes(forward(40))
    # d/dw of x @ w needs x (n x 8; w is not needed, x needs no gradient); tanh saves its output (n x 8)
    assert small == 4 * (4 * 8 + 4 * 8)
    assert large == 4 * (40 * 8 + 40 * 8)
    # A tensor saved twice (x used in two products) is counted once.
    x = torch.randn(5, 8)
    _, twice = saved_tensor_bytes(lambda: ((x @ w).sum() + (x @ w).sum()))
    assert twice == 4 * 5 * 8


def test_no_grad_saves_nothing_and_result_returned():
    w = torch.randn(8, requires_grad=True)
    with torch.no_grad():
        result, n = saved_tensor_bytes(lambda: (w * 2).sum())
    assert n == 0 and float(result) == pytest.approx(float(w.detach().sum() * 2))
    with pytest.raises(TypeError, match="must be callable"):
        saved_tensor_bytes(3)  # type: ignore[arg-type]


def test_time_call():
    calls = []
    assert time_call(lambda: calls.append(1), repeats=3, warmup=2) >= 0
    assert len(calls) == 5
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_call(lambda: None, repeats=0)


def test_truncated_keeps_bottom_layers_and_leaves_original(tiny_encoder, toy_corpus):
    from metalearn_nlp.costs import truncated

    tiny_encoder.eval()
    small = truncated(tiny_encoder, 1)
    assert len(small.layers) == 1 and len(tiny_encoder.layers) == 2
    assert small.layers[0] is not tiny_encoder.layers[0]
    torch.testing.assert_close(small.layers[0].state_dict(), tiny_encoder.layers[0].state_dict())
    assert small.encode(toy_corpus[:2]).vectors.shape == tiny_encoder.encode(toy_corpus[:2]).vectors.shape
    with pytest.raises(ValueError, match=r"layers must be an integer in 1\.\.2"):
        truncated(tiny_encoder, 3)


def test_learner_costs_memory_grows_with_depth(tiny_encoder, toy_episode):
    from metalearn_nlp.costs import learner_costs, truncated
    from metalearn_nlp.learners import FineTune, ProtoNet

    deep = learner_costs(ProtoNet(tiny_encoder), toy_episode, repeats=1, warmup=0)
    shallow = learner_costs(ProtoNet(truncated(tiny_encoder, 1)), toy_episode, repeats=1, warmup=0)
    assert deep["meta_step_saved_mb"] > shallow["meta_step_saved_mb"] > 0
    assert deep["adapt_seconds"] > 0 and deep["meta_step_seconds"] > 0
    assert all(p.grad is None for p in tiny_encoder.parameters())  # gradients cleared after timing
    baseline = learner_costs(FineTune(tiny_encoder, steps=2), toy_episode, repeats=1, warmup=0)
    assert baseline["adapt_seconds"] > 0 and baseline["meta_step_seconds"] != baseline["meta_step_seconds"]  # NaN


def test_weights_can_be_left_out_of_the_saved_bytes():
    layer = torch.nn.Linear(100, 100, bias=False)
    x = torch.randn(3, 100, requires_grad=True)
    _, everything = saved_tensor_bytes(lambda: layer(x).sum())
    _, activations = saved_tensor_bytes(lambda: layer(x).sum(), exclude=layer.parameters())
    assert everything == activations + 100 * 100 * 4  # the weight matrix, saved for d/dx
    assert activations == 3 * 100 * 4  # the input, saved for d/dW
