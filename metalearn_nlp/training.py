"""Episodic meta-training for any meta-trainable learner, resumable and on several processes.

One loop for every method (:class:`Trainer`; :func:`meta_train` is the
one-call form): draw a meta-batch of episodes, sum
``learner.loss(episode) / meta_batch_size`` (gradient accumulation), clip the
gradient norm, take an AdamW step, advance a linear warm-up + linear (or
cosine) decay schedule. Every ``eval_every`` steps the learner is evaluated
on *fixed* dev episodes (pooled micro-F1, :func:`~metalearn_nlp.evaluation.evaluate`);
the best weights are kept and restored at the end, and training stops early
after ``patience`` evaluations without improvement. The dev score of the
untrained learner (step 0) counts too, so meta-training never returns a
learner that is worse on dev than the one it started from.

Training you can leave running:

* ``Trainer.state_dict()`` holds everything the run depends on: the
  learner, the optimiser and the schedule, every random state, the
  sampler's position, the step, the histories, the best dev score and its
  weights, the settings and the library versions. With ``checkpoint_dir``
  it is written atomically (a temporary file, then a rename) every
  ``checkpoint_every`` steps and whenever the dev score improves;
  ``Trainer.resume(path)`` continues, and on the CPU with a fixed seed the
  resumed run ends with the same weights as an uninterrupted one, bit for bit.
* Each episode's randomness (dropout, REINFORCE's samples) is seeded by
  ``(seed, step, episode)``: a run does not depend on when it was resumed or
  on how many processes share the meta-batch (:mod:`metalearn_nlp.distributed`).
* A NaN or infinite loss stops training with :class:`TrainingDivergedError`,
  naming the step and the episode; the learner holds the best weights and
  the last checkpoint on disk is the last good one.
* Ctrl-C (``KeyboardInterrupt``) stops training cleanly: the learner holds
  the best dev weights, not the last ones, and the result says
  ``interrupted=True``.

The loop's state is a small dataclass, :class:`TrainState`, and a
``callback(state, learner)`` runs after every step and every evaluation.

Taught in: chapter 3.2 (episodic training); chapter 5.2 (Source code);
chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_NAME, CheckpointError, load_checkpoint, rng_state, \
    set_rng_state, write_atomic
from .data.episode import Episode
from .distributed import all_reduce_gradients, all_reduce_sum, broadcast_module, rank_and_world
from .evaluation import evaluate

__all__ = [
    "CheckpointError",
    "Trainer",
    "TrainingDivergedError",
    "TrainResult",
    "TrainState",
    "episode_seed",
    "load_checkpoint",
    "lr_schedule",
    "meta_train",
]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the episode."""


@dataclass
class TrainState:
    """Everything the loop tracks (the seam for checkpoints and resuming).

    Attributes:
        step: optimisation steps done.
        losses: mean meta-batch loss of every step.
        grad_norms: gradient norm of every step, before clipping.
        dev: ``[{"step", "f1", "precision", "recall"}, ...]`` dev evaluations.
        best_f1: best dev F1 so far (None without dev episodes).
        best_step: the step it was reached at.
        bad_evals: evaluations since the last improvement.
        stopped_early: whether patience ran out.
        interrupted: whether Ctrl-C stopped the run.
        seconds: wall time so far.
        train_seconds: wall time of the training steps only.
        episodes_drawn: episodes taken from the sampler (the position a resumed run skips to).
    """

    step: int = 0
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    dev: list[dict[str, float]] = field(default_factory=list)
    best_f1: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    train_seconds: float = 0.0
    episodes_drawn: int = 0


@dataclass
class TrainResult:
    """What ``meta_train`` did.

    Attributes:
        steps: steps run.
        losses, grad_norms, dev: the histories (see ``TrainState``).
        best_f1, best_step: the dev optimum whose weights the learner now holds
            (None without dev episodes: the learner holds the last weights).
        stopped_early: whether patience ran out.
        interrupted: whether Ctrl-C stopped the run (the learner holds the best weights).
        seconds: wall time, dev evaluations included.
        seconds_per_step: wall time of the training steps only, per step.
        settings: the arguments, for reports.
    """

    steps: int
    losses: list[float]
    grad_norms: list[float]
    dev: list[dict[str, float]]
    best_f1: float | None
    best_step: int | None
    stopped_early: bool
    seconds: float
    seconds_per_step: float
    settings: dict[str, Any]
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def lr_schedule(steps: int, warmup: float | int = 0.1, schedule: str = "linear") -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warm-up, then linear or cosine decay to 0.

    Arguments:
        steps: total optimisation steps.
        warmup: warm-up steps, as a fraction of ``steps`` (a float < 1) or a count (an int).
        schedule: ``"linear"``, ``"cosine"`` or ``"constant"`` (after warm-up).

    Example:
        >>> f = lr_schedule(10, warmup=0.2)
        >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
        [0.333, 0.667, 1.0, 0.5, 0.0]
    """
    if schedule not in ("linear", "cosine", "constant"):
        raise ValueError(f"schedule must be 'linear', 'cosine' or 'constant', got {schedule!r}")
    warm = int(round(warmup * steps)) if isinstance(warmup, float) and warmup < 1 else int(warmup)
    if warm < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")

    def factor(step: int) -> float:
        # step is the number of steps already taken; the multiplier applies to the next one
        if step < warm:
            return (step + 1) / (warm + 1)
        if schedule == "constant" or steps <= warm:
            return 1.0
        progress = min(1.0, (step - warm) / (steps - warm))
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def episode_seed(seed: int, step: int, index: int) -> int:
    """The seed of one episode's randomness (dropout, sampling): a hash of ``(seed, step, index)``.

    ``index`` is the episode's place in its meta-batch, so the seed does not
    depend on which process runs the episode or on when a run was resumed.

    Example:
        >>> episode_seed(0, 3, 1) == episode_seed(0, 3, 1) != episode_seed(0, 3, 0)
        True
    """
    digest = hashlib.sha256(f"metalearn-nlp/{seed}/{step}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _EpisodeSource:
    """The episode stream, with a position that a checkpoint can record and a resume restore."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        if hasattr(sampler, "sample"):
            self._next: Callable[[], Episode] = sampler.sample
        elif isinstance(sampler, Sequence):
            if not sampler:
                raise ValueError("meta_train got an empty list of episodes")
            self._next = itertools.cycle(sampler).__next__
        elif isinstance(sampler, Iterable):
            self._next = iter(sampler).__next__
        else:
            raise TypeError(f"sampler must have .sample() or be an iterable of episodes, got {type(sampler).__name__}")

    def next(self, step: int) -> Episode:
        try:
            return self._next()
        except StopIteration:
            raise ValueError(f"the episode source ran out after {step} steps") from None

    def state(self) -> dict[str, Any] | None:
        return self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else None

    def restore(self, state: Mapping[str, Any] | None, drawn: int) -> None:
        """Go to the position after ``drawn`` episodes: the sampler's own state, or by drawing and dropping."""
        if state is not None and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state)
            return
        if isinstance(self.sampler, Sequence):
            drawn %= len(self.sampler)
        for _ in range(drawn):  # a seeded sampler without state_dict, or a re-created iterable
            self.next(0)


class Trainer:
    """Meta-train a learner on episodes: AdamW, warm-up + decay, clipping, early stopping, checkpoints.

    Arguments:
        learner: a meta-trainable ``Learner``.
        sampler: an episode sampler (``.sample()``, e.g. ``FewNERDSampler``;
            its own seed fixes the episodes), a list of episodes (cycled) or
            any iterable of episodes.
        steps (int): optimisation steps.
        meta_batch_size (int, default 1): episodes per step (gradients are
            averaged over them; with several processes, shared out among them).
        lr (float, default 2e-5): encoder learning rate.
        head_lr (float | None, default None): learning rate of the learner's
            own parameters (heads, thresholds); None: ``lr``.
        weight_decay (float, default 0.01): AdamW decay (not on biases,
            LayerNorm and scalars).
        warmup (float | int, default 0.1): warm-up fraction of ``steps`` or step count.
        schedule (str, default ``"linear"``): decay after warm-up:
            ``"linear"``, ``"cosine"`` or ``"constant"``.
        max_grad_norm (float | None, default 1.0): clip the global gradient
            norm (None: no clipping).
        dev_episodes: fixed episodes for model selection (None: no
            evaluation, the last weights are kept).
        eval_every (int | None): steps between dev evaluations (default:
            ``steps // 10``, at least 1).
        patience (int | None): stop after this many evaluations without a
            better dev F1 (None: never stop early).
        seed (int, default 0): seeds every episode's dropout and sampling
            (:func:`episode_seed`). The learner is built before the trainer:
            call ``torch.manual_seed(seed)`` before building it for a seeded
            initialisation (``metalearn-nlp train`` does).
        precision (str, default ``"fp32"``): ``"bf16"`` runs the loss under
            bfloat16 autocast (the weights, gradients and optimiser stay float32).
        checkpoint_dir (str | Path | None): where to write ``checkpoint.pt``
            (None: no checkpoints).
        checkpoint_every (int | None): steps between checkpoints (default:
            ``eval_every``, or ``steps // 10``); a checkpoint is also written
            whenever the dev score improves.
        progress (bool, default True): a tqdm bar with the loss and dev F1.
        callback: ``callback(state, learner)`` after every step and every evaluation.

    Example:
        >>> trainer = Trainer(learner, sampler, steps=200, dev_episodes=dev, checkpoint_dir="run")  # doctest: +SKIP
        >>> result = trainer.fit()  # doctest: +SKIP
        >>> # after a crash, in a new process with the same settings:
        >>> trainer = Trainer(learner, sampler, steps=200, dev_episodes=dev, checkpoint_dir="run")  # doctest: +SKIP
        >>> trainer.resume("run"); result = trainer.fit()  # doctest: +SKIP

    Taught in: chapter 5.4.
    """

    CHECKPOINT_NAME = CHECKPOINT_NAME

    def __init__(
        self,
        learner: Any,
        sampler: Any,
        *,
        steps: int,
        meta_batch_size: int = 1,
        lr: float = 2e-5,
        head_lr: float | None = None,
        weight_decay: float = 0.01,
        warmup: float | int = 0.1,
        schedule: str = "linear",
        max_grad_norm: float | None = 1.0,
        dev_episodes: Sequence[Episode] | None = None,
        eval_every: int | None = None,
        patience: int | None = None,
        seed: int = 0,
        precision: str = "fp32",
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        progress: bool = True,
        callback: Callable[[TrainState, Any], None] | None = None,
    ) -> None:
        from .learners.base import NotMetaTrainableError

        if not getattr(learner, "meta_trainable", False):
            raise NotMetaTrainableError(
                f"{type(learner).__name__} is not meta-trainable: it adapts to each support set from the "
                "pretrained encoder. Evaluate it directly with evaluate(learner, episodes)"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(meta_batch_size, bool) or not isinstance(meta_batch_size, int) or meta_batch_size < 1:
            raise ValueError(f"meta_batch_size must be a positive integer, got {meta_batch_size!r}")
        if patience is not None and not dev_episodes:
            raise ValueError("patience needs dev_episodes to evaluate on")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r} (fp16 needs loss scaling: "
                             "use bf16, which has float32's range)")
        self.dev_episodes = list(dev_episodes) if dev_episodes else None
        if self.dev_episodes:
            eval_every = eval_every or max(1, steps // 10)
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        groups = learner.param_groups(lr, head_lr, weight_decay)
        if not groups:
            raise ValueError(
                f"{type(learner).__name__} has no trainable parameter (is the encoder frozen with freeze='all'?)"
            )
        self.learner, self.steps, self.meta_batch_size = learner, steps, meta_batch_size
        self.max_grad_norm, self.eval_every, self.patience, self.seed = max_grad_norm, eval_every, patience, seed
        self.precision, self.progress, self.callback = precision, progress, callback
        self.settings: dict[str, Any] = {
            "learner": learner.config() if hasattr(learner, "config") else type(learner).__name__,
            "steps": steps, "meta_batch_size": meta_batch_size, "lr": lr, "head_lr": head_lr,
            "weight_decay": weight_decay, "warmup": warmup, "schedule": schedule, "max_grad_norm": max_grad_norm,
            "dev_episodes": len(self.dev_episodes) if self.dev_episodes else 0, "eval_every": eval_every,
            "patience": patience, "seed": seed, "sampler_seed": getattr(sampler, "seed", None),
            "sampler": getattr(sampler, "settings", None), "precision": precision,
        }  # fmt: skip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every or eval_every or max(1, steps // 10)

        rank, world = rank_and_world()
        if world > meta_batch_size and rank == 0:
            warnings.warn(f"meta_batch_size {meta_batch_size} < {world} processes: ranks {meta_batch_size} to "
                          f"{world - 1} get no episode and only wait; use a meta-batch of at least {world}",
                          stacklevel=2)
        torch.manual_seed(seed)
        broadcast_module(learner)  # every rank starts from rank 0's weights
        self.optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_schedule(steps, warmup, schedule))
        self.parameters = [p for g in groups for p in g["params"]]
        self.source = _EpisodeSource(sampler)
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.resumed_from: Path | None = None

    # -- state --------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint_dir / "checkpoint.pt"`` (None without a checkpoint folder)."""
        return self.checkpoint_dir / self.CHECKPOINT_NAME if self.checkpoint_dir is not None else None

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors and plain data; see the module docstring)."""
        from . import __version__

        return {
            "format": CHECKPOINT_FORMAT,
            "versions": {"metalearn_nlp": __version__, "torch": str(torch.__version__)},
            "settings": self.settings,
            "state": asdict(self.state),
            "learner": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_weights": self.best_weights,
            "rng": rng_state(),
            "sampler": self.source.state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the settings must be the ones this trainer was built with.

        Raises:
            CheckpointError: the checkpoint was made with other settings or another learner.
        """
        saved = state["settings"]
        differ = sorted(k for k in set(saved) | set(self.settings) if saved.get(k) != self.settings.get(k))
        if differ:
            detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {self.settings.get(k)!r}" for k in differ)
            raise CheckpointError(f"the checkpoint was made with other settings ({detail}). Resume with the "
                                  "settings it was made with, or start a new run in another folder")
        try:
            self.learner.load_state_dict(state["learner"])
        except RuntimeError as error:
            raise CheckpointError(f"the checkpoint's weights do not fit this learner: {error}") from error
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        known = {f.name for f in fields(TrainState)}
        self.state = TrainState(**{k: v for k, v in state["state"].items() if k in known})
        self.best_weights = state["best_weights"]
        set_rng_state(state["rng"])
        self.source.restore(state["sampler"], self.state.episodes_drawn)

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Write :meth:`state_dict` atomically (rank 0 only); returns the path (None on other ranks)."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise ValueError("no checkpoint path: pass one, or build the Trainer with checkpoint_dir=")
        if rank_and_world()[0] != 0:
            return None
        write_atomic(target, self.state_dict())
        return target

    def resume(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Continue from a checkpoint (a file, or a folder holding ``checkpoint.pt``; None: ``checkpoint_dir``).

        Returns:
            True when a checkpoint was loaded; False when ``path`` is None and
            ``checkpoint_dir`` holds none yet (a fresh start).
        """
        if path is None:
            if self.checkpoint_path is None or not self.checkpoint_path.is_file():
                return False
            path = self.checkpoint_path
        self.load_state_dict(load_checkpoint(path))
        self.resumed_from = Path(path)
        return True

    # -- the loop -----------------------------------------------------------------------------
    def _evaluate_dev(self) -> None:
        from .evaluation import TypeScores

        rank, world = rank_and_world()
        share = self.dev_episodes[rank::world]  # type: ignore[index]
        counts = [0, 0, 0]
        if share:
            overall = evaluate(self.learner, share, progress=False).overall
            counts = [overall.gold, overall.predicted, overall.correct]
        gold, predicted, correct = (int(round(c)) for c in all_reduce_sum(counts))
        scores = TypeScores.from_counts(gold, predicted, correct)
        state = self.state
        state.dev.append({"step": state.step, "f1": scores.f1, "precision": scores.precision, "recall": scores.recall})
        if state.best_f1 is None or scores.f1 > state.best_f1:
            state.best_f1, state.best_step, state.bad_evals = scores.f1, state.step, 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.learner.state_dict().items()}
            if self.checkpoint_dir is not None and state.step > 0:
                self.save_checkpoint()
        else:
            state.bad_evals += 1
        if self.patience is not None and state.bad_evals >= self.patience:
            state.stopped_early = True
        if self.callback is not None:
            self.callback(state, self.learner)

    def _step(self) -> float:
        """One optimisation step on one meta-batch; returns the mean loss."""
        rank, world = rank_and_world()
        state, learner = self.state, self.learner
        self.optimizer.zero_grad(set_to_none=True)
        total, bad, failure = 0.0, "", None
        context = _autocast(learner, self.precision)
        for index in range(self.meta_batch_size):
            episode = self.source.next(state.step)
            state.episodes_drawn += 1
            if index % world != rank or bad or failure:
                continue
            torch.manual_seed(episode_seed(self.seed, state.step, index))
            try:
                with context():
                    loss = learner.loss(episode)
                if not torch.isfinite(loss).item():
                    bad = (f"episode {index} of the meta-batch (episode {state.episodes_drawn - 1} of the stream, "
                           f"types {list(episode.types)}) gave loss {loss.item()}")
                    continue
                (loss / self.meta_batch_size).backward()
            except Exception as error:  # noqa: BLE001 - re-raised below, on every rank together
                if world == 1:
                    raise
                failure = error
                continue
            total += loss.item() / self.meta_batch_size
        total, n_bad, n_failed = all_reduce_sum([total, float(bool(bad)), float(failure is not None)])
        if n_failed:  # an error on one process: every process stops, instead of waiting in all_reduce
            if failure is not None:
                raise failure
            raise RuntimeError(f"step {state.step}: meta-training failed on another process (see its error)")
        if n_bad:
            last = self.checkpoint_path if self.checkpoint_path is not None and self.checkpoint_path.is_file() else None
            raise TrainingDivergedError(
                f"step {state.step}: {bad or 'an episode on another process gave a non-finite loss'}. Training "
                f"stopped; the learner holds the best weights so far"
                + (f" and {last} is the last good checkpoint" if last else "")
                + ". Lower the learning rate, clip harder (max_grad_norm) or check that episode's data"
            )
        if world > 1:
            all_reduce_gradients(self.parameters)
        grads = [p.grad for p in self.parameters if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item() \
            if grads else 0.0
        if not math.isfinite(norm):  # a finite loss with a NaN or infinite gradient: stop before the weights change
            raise TrainingDivergedError(
                f"step {state.step}: the loss was finite ({total:.4g}) but its gradient norm is {norm}. Training "
                "stopped before the update; the learner holds the best weights so far. Lower the learning rate or "
                "look for a division by zero or a norm of a zero vector in the loss"
            )
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        state.step += 1
        state.losses.append(total)
        state.grad_norms.append(norm)
        return total

    def fit(self) -> TrainResult:
        """Train to ``steps`` (or until early stopping or Ctrl-C), from the current state.

        Returns:
            A ``TrainResult``; the learner holds the best dev weights (or the last ones).

        Raises:
            TrainingDivergedError: the loss became NaN or infinite (the learner holds the best weights).
            ValueError: the episode source ran out.
        """
        from tqdm.auto import tqdm

        learner, state = self.learner, self.state
        rank, _ = rank_and_world()
        was_training = learner.training
        start = time.perf_counter() - state.seconds
        bar = tqdm(total=self.steps, initial=state.step, unit="step", disable=not self.progress or rank != 0,
                   desc=f"meta-train {getattr(learner, 'name', '')}".strip())
        try:
            if self.dev_episodes and not state.dev:
                self._evaluate_dev()
            learner.train()
            while state.step < self.steps and not state.stopped_early:
                tick = time.perf_counter()
                loss = self._step()
                state.train_seconds += time.perf_counter() - tick
                state.seconds = time.perf_counter() - start
                bar.update(1)
                postfix = {"loss": f"{loss:.3f}"}
                if self.callback is not None:
                    self.callback(state, learner)
                saved = False
                if self.dev_episodes and (state.step % self.eval_every == 0 or state.step == self.steps):  # type: ignore[operator]
                    best_before = state.best_step
                    self._evaluate_dev()
                    saved = state.best_step != best_before and self.checkpoint_dir is not None
                    learner.train()
                    postfix["dev_f1"] = f"{100 * state.dev[-1]['f1']:.1f}"
                if self.checkpoint_dir is not None and not saved and (
                        state.step % self.checkpoint_every == 0 or state.step == self.steps or state.stopped_early):
                    state.seconds = time.perf_counter() - start
                    self.save_checkpoint()
                bar.set_postfix(postfix)
        except KeyboardInterrupt:
            state.interrupted = True
            warnings.warn(
                f"training interrupted at step {state.step}: the learner holds the best weights"
                + (f" (dev F1 {100 * state.best_f1:.2f} at step {state.best_step})" if state.best_f1 is not None
                   else " (no dev episodes: the last ones)")
                + (f"; resume from {self.checkpoint_path}" if self.checkpoint_path is not None else ""),
                stacklevel=2,
            )
        except TrainingDivergedError:
            if self.best_weights is not None:
                learner.load_state_dict(self.best_weights)
            raise
        finally:
            bar.close()
            learner.train(was_training)
        if self.best_weights is not None:
            learner.load_state_dict(self.best_weights)
        state.seconds = time.perf_counter() - start
        return TrainResult(
            steps=state.step,
            losses=list(state.losses),
            grad_norms=list(state.grad_norms),
            dev=list(state.dev),
            best_f1=state.best_f1,
            best_step=state.best_step,
            stopped_early=state.stopped_early,
            seconds=state.seconds,
            seconds_per_step=state.train_seconds / state.step if state.step else 0.0,
            settings=dict(self.settings),
            interrupted=state.interrupted,
        )


def _autocast(learner: Any, precision: str) -> Callable[[], Any]:
    """A factory of the context the loss runs in (:func:`metalearn_nlp.devices.autocast`)."""
    from .devices import autocast

    device = next(learner.parameters()).device
    return lambda: autocast(device, precision)


def meta_train(learner: Any, sampler: Any, *, steps: int, **options: Any) -> TrainResult:
    """Meta-train a learner on episodes: ``Trainer(learner, sampler, steps=steps, **options).fit()``.

    Arguments:
        learner: a meta-trainable ``Learner``.
        sampler: an episode sampler, a list of episodes (cycled) or an iterable of episodes.
        steps (int): optimisation steps.
        **options: the other arguments of :class:`Trainer` (``meta_batch_size``,
            ``lr``, ``head_lr``, ``weight_decay``, ``warmup``, ``schedule``,
            ``max_grad_norm``, ``dev_episodes``, ``eval_every``, ``patience``,
            ``seed``, ``precision``, ``checkpoint_dir``, ``checkpoint_every``,
            ``progress``, ``callback``).

    Returns:
        A ``TrainResult``; the learner holds the best dev weights (or the last ones).

    Raises:
        NotMetaTrainableError: the learner is not meta-trainable.
        ValueError: bad settings, or nothing to train (every parameter frozen).
        TrainingDivergedError: the loss became NaN or infinite (a ``FloatingPointError``).

    Example:
        >>> sampler = FewNERDSampler(groups["train"], ways=5, shots=1, seed=0)  # doctest: +SKIP
        >>> result = meta_train(ProtoNet(load_encoder()), sampler, steps=200, dev_episodes=dev)  # doctest: +SKIP

    Taught in: chapter 3.2; chapter 5.2; chapter 5.4.
    """
    return Trainer(learner, sampler, steps=steps, **options).fit()
