"""Devices and precision: learners follow their encoder's device; ``resolve_device`` and ``autocast``.

No GPU is needed. A tensor created without ``device=`` lands on the *default*
device, so with ``torch.set_default_device("meta")`` active and the encoder on
the CPU, any such tensor in the package is a meta tensor, and the first op that
mixes it with a CPU tensor (or reads its data) raises. That is exactly the
failure a CUDA encoder would give, found on a CPU-only machine.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch import nn

from metalearn_nlp.devices import PRECISIONS, autocast, resolve_device
from metalearn_nlp.learners import LEARNERS, get_learner

# small settings, as in tests/learners/test_protocol.py (the tiny BERT has 2 layers)
OPTIONS = {
    "finetune": {"steps": 2, "head_lr": 0.05},
    "structshot": {"train_sentences": "corpus"},
    "zeroshot": {"train_sentences": "corpus"},
    "reinforce": {"samples": 2},
    "transfer": {"source_types": ["person", "place", "org"], "steps": 2, "head_lr": 0.05},
    **{name: {"adapt_layers": 1, "inner_steps": 1, "adapt_steps": 1, "inner_lr": 0.1}
       for name in ("maml", "fomaml", "anil", "protomaml", "reptile", "metasgd", "learned_optimizer")},
}
OPTIONS["anil"]["adapt_layers"] = 0


def _build(name, encoder, corpus, **extra):
    options = {k: (corpus[:40] if v == "corpus" else v) for k, v in OPTIONS.get(name, {}).items()}
    return get_learner(name, encoder, **{**options, **extra})


@contextmanager
def default_device(device):
    """``torch.set_default_device(device)`` for the block, always restored."""
    previous = torch.get_default_device() if hasattr(torch, "get_default_device") else torch.empty(0).device
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(previous)


def test_default_device_context_restores_the_default():
    with pytest.raises(RuntimeError), default_device("meta"):
        raise RuntimeError("inside")
    assert torch.empty(1).device.type == "cpu"


# -- learners follow their encoder's device ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_creates_no_tensor_on_the_default_device(name, tiny_encoder, toy_corpus, toy_episode):
    """Built, meta-trained one step and adapted with "meta" as the default device: all on the CPU.

    The learner is built *inside* the block too: construction (ZeroShot's and
    StructShot's calibration on ``train_sentences`` included) must put its
    weights and tables on the encoder's device, not on the default one.
    """
    torch.manual_seed(0)
    with default_device("meta"):
        learner = _build(name, tiny_encoder, toy_corpus)
        assert all(t.device.type == "cpu" for t in [*learner.parameters(), *learner.buffers()]), name
        if learner.meta_trainable:
            loss = learner.loss(toy_episode)
            assert loss.device.type == "cpu" and torch.isfinite(loss), name
            loss.backward()
        predictor = learner.adapt(toy_episode)
        logits = predictor.logits(toy_episode.query)
        tags = predictor.predict(toy_episode.query)
    assert all(t.device.type == "cpu" for t in logits)
    assert [len(t) for t in tags] == [len(s.tokens) for s in toy_episode.query]
    assert [t.shape[0] for t in logits] == [len(s.tokens) for s in toy_episode.query]


def test_mean_pooling_and_collate_create_no_tensor_on_the_default_device(tiny_bert_path, toy_episode):
    from metalearn_nlp.encoders import load_encoder

    encoder = load_encoder(tiny_bert_path, pooling="mean")
    with default_device("meta"):
        batch = encoder.collate(toy_episode.support, toy_episode)
        words = encoder.encode(toy_episode.support, toy_episode)
    assert {t.device.type for t in (batch.input_ids, batch.attention_mask, batch.labels, batch.word_index,
                                    batch.word_labels)} == {"cpu"}
    assert words.vectors.device.type == "cpu" and torch.isfinite(words.vectors).all()


def test_evaluate_creates_no_tensor_on_the_default_device(tiny_encoder, toy_corpus):
    from metalearn_nlp.data import FewNERDSampler
    from metalearn_nlp.evaluation import evaluate

    episodes = FewNERDSampler(toy_corpus, ways=3, shots=1, seed=4).episodes(2)
    learner = get_learner("protonet", tiny_encoder)
    with default_device("meta"):
        report = evaluate(learner, episodes, progress=False)
    assert 0.0 <= report.f1 <= 1.0


# -- resolve_device --------------------------------------------------------------------------------
def test_exported_lazily_from_the_package_top():
    import doctest

    import metalearn_nlp
    import metalearn_nlp.devices as devices

    assert metalearn_nlp.resolve_device is resolve_device and metalearn_nlp.autocast is autocast
    assert devices.__doc__.rstrip().endswith("Taught in: chapter 5.4 (Training, evaluation and deployment).")
    assert doctest.testmod(devices).failed == 0


def test_auto_resolves_to_the_best_available_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device().type == expected


def test_auto_is_cpu_on_this_machine():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("an accelerator is available here")
    assert resolve_device("auto") == torch.device("cpu")


def test_explicit_devices_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_cuda_without_cuda_raises_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for asked in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match=r"CUDA is not available.*--device cpu.*auto"):
            resolve_device(asked)


def test_invalid_device_names_the_value():
    with pytest.raises(ValueError, match="'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="3"):
        resolve_device(3)  # type: ignore[arg-type]


# -- autocast --------------------------------------------------------------------------------------
def test_precisions():
    assert PRECISIONS == ("fp32", "bf16", "fp16")


def test_fp32_autocast_changes_nothing():
    layer = nn.Linear(4, 3)
    with autocast(torch.device("cpu"), "fp32"):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.float32


def test_bf16_autocast_on_cpu_computes_in_bf16_and_keeps_fp32_weights():
    layer = nn.Linear(4, 3)
    with autocast(torch.device("cpu"), "bf16"):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32 and layer.bias.dtype == torch.float32
    assert layer(torch.randn(2, 4)).dtype == torch.float32  # off again after the block


def test_fp16_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="fp16.*CUDA.*bf16"):
        autocast(torch.device("cpu"), "fp16")


def test_invalid_precision_raises():
    with pytest.raises(ValueError, match=r"'fp8'.*fp32, bf16, fp16"):
        autocast(torch.device("cpu"), "fp8")


@pytest.mark.parametrize("name", ["protonet", "fomaml"])
def test_bf16_autocast_loss_is_finite_and_grads_are_fp32(name, tiny_encoder, toy_corpus, toy_episode):
    torch.manual_seed(0)
    learner = _build(name, tiny_encoder, toy_corpus)
    with autocast(torch.device("cpu"), "bf16"):
        loss = learner.loss(toy_episode)
    assert torch.isfinite(loss)
    loss.backward()
    trained = [(n, p) for n, p in learner.named_parameters() if p.grad is not None]
    assert trained, name
    for n, p in trained:
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, n
        assert torch.isfinite(p.grad).all(), n


def _bert_sized(n=40, c=5, d=384):
    """Word vectors with a large common component (as BERT's are) and prototypes near some of them."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=generator) * 0.8 + 1.0
    return x, x[:c] + 0.3 * torch.randn(c, d, generator=generator)


@pytest.mark.parametrize("op", ["dispatch", "reference"])
def test_prototype_log_softmax_stays_fp32_under_bf16_autocast(op):
    """The expanded distance cancels large terms: in bf16 the log-probabilities would be off by ~5."""
    from metalearn_nlp.kernels import prototype_log_softmax, prototype_log_softmax_reference

    fn = prototype_log_softmax if op == "dispatch" else prototype_log_softmax_reference
    x, p = _bert_sized()
    oracle = prototype_log_softmax_reference(x.double(), p.double())
    with autocast(torch.device("cpu"), "bf16"):
        out = fn(x, p)
    assert out.dtype == torch.float32
    assert (out.double() - oracle).abs().max().item() < 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_prototype_log_softmax_takes_16_bit_inputs(dtype):
    """bf16/fp16 inputs (a bf16 encoder) go through whichever backend runs here, with float32 output."""
    from metalearn_nlp.kernels import prototype_log_softmax, prototype_log_softmax_reference

    x, p = (t.to(dtype).requires_grad_() for t in _bert_sized(n=9, c=3, d=40))
    out = prototype_log_softmax(x, p)
    oracle = prototype_log_softmax_reference(x.detach().double(), p.detach().double())
    assert out.dtype == torch.float32 and (out.double() - oracle).abs().max().item() < 1e-3
    out.sum().backward()
    assert x.grad.dtype == dtype and p.grad.dtype == dtype
    assert torch.isfinite(x.grad.float()).all() and torch.isfinite(p.grad.float()).all()
