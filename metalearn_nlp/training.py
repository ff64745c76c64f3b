"""Episodic meta-training for any meta-trainable learner.

One loop for every method: draw a meta-batch of episodes, sum
``learner.loss(episode) / meta_batch_size`` (gradient accumulation), clip the
gradient norm, take an AdamW step, advance a linear warm-up + linear (or
cosine) decay schedule. Every ``eval_every`` steps the learner is evaluated
on *fixed* dev episodes (pooled micro-F1, :func:`~metalearn_nlp.evaluation.evaluate`);
the best weights are kept and restored at the end, and training stops early
after ``patience`` evaluations without improvement. The dev score of the
untrained learner (step 0) counts too, so meta-training never returns a
learner that is worse on dev than the one it started from.

The loop's state is a small dataclass, :class:`TrainState`, and a
``callback(state, learner)`` runs after every step and every evaluation:
the seams where checkpoints, resuming and logging (and, for several GPUs,
a DDP-wrapped learner) plug in.

Taught in: chapter 3.2 (episodic training); chapter 5.2 (Source code).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .data.episode import Episode
from .evaluation import evaluate

__all__ = ["TrainResult", "TrainState", "lr_schedule", "meta_train"]


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
        seconds: wall time so far.
    """

    step: int = 0
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    dev: list[dict[str, float]] = field(default_factory=list)
    best_f1: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


@dataclass
class TrainResult:
    """What ``meta_train`` did.

    Attributes:
        steps: steps run.
        losses, grad_norms, dev: the histories (see ``TrainState``).
        best_f1, best_step: the dev optimum whose weights the learner now holds
            (None without dev episodes: the learner holds the last weights).
        stopped_early: whether patience ran out.
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


def _episode_stream(sampler: Any) -> Iterator[Episode]:
    if hasattr(sampler, "sample"):
        return iter(sampler.sample, None)
    if isinstance(sampler, Sequence):
        if not sampler:
            raise ValueError("meta_train got an empty list of episodes")
        return itertools.cycle(sampler)
    if isinstance(sampler, Iterable):
        return iter(sampler)
    raise TypeError(f"sampler must have .sample() or be an iterable of episodes, got {type(sampler).__name__}")


def meta_train(
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
    progress: bool = True,
    callback: Callable[[TrainState, Any], None] | None = None,
) -> TrainResult:
    """Meta-train a learner on episodes (AdamW, warm-up + decay, clipping, early stopping).

    Arguments:
        learner: a meta-trainable ``Learner``.
        sampler: an episode sampler (``.sample()``, e.g. ``FewNERDSampler``;
            its own seed fixes the episodes), a list of episodes (cycled) or
            any iterable of episodes.
        steps (int): optimisation steps.
        meta_batch_size (int, default 1): episodes per step (gradients are
            averaged over them).
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
        seed (int, default 0): ``torch.manual_seed`` (dropout, initialisation).
        progress (bool, default True): a tqdm bar with the loss and dev F1.
        callback: ``callback(state, learner)`` after every step and every evaluation.

    Returns:
        A ``TrainResult``; the learner holds the best dev weights (or the last ones).

    Raises:
        NotMetaTrainableError: the learner is not meta-trainable.
        ValueError: bad settings, or nothing to train (every parameter frozen).
        FloatingPointError: the loss became NaN or infinite.

    Example:
        >>> sampler = FewNERDSampler(groups["train"], ways=5, shots=1, seed=0)  # doctest: +SKIP
        >>> result = meta_train(ProtoNet(load_encoder()), sampler, steps=200, dev_episodes=dev)  # doctest: +SKIP

    Taught in: chapter 3.2; chapter 5.2.
    """
    from tqdm.auto import tqdm

    from .learners.base import NotMetaTrainableError

    if not getattr(learner, "meta_trainable", False):
        raise NotMetaTrainableError(
            f"{type(learner).__name__} is not meta-trainable: it adapts to each support set from the "
            "pretrained encoder. Evaluate it directly with evaluate(learner, episodes)"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(meta_batch_size, int) or meta_batch_size < 1:
        raise ValueError(f"meta_batch_size must be a positive integer, got {meta_batch_size!r}")
    if patience is not None and not dev_episodes:
        raise ValueError("patience needs dev_episodes to evaluate on")
    dev_episodes = list(dev_episodes) if dev_episodes else None
    if dev_episodes:
        eval_every = eval_every or max(1, steps // 10)
    groups = learner.param_groups(lr, head_lr, weight_decay)
    if not groups:
        raise ValueError(
            f"{type(learner).__name__} has no trainable parameter (is the encoder frozen with freeze='all'?)"
        )
    settings = {
        "learner": learner.config() if hasattr(learner, "config") else type(learner).__name__,
        "steps": steps, "meta_batch_size": meta_batch_size, "lr": lr, "head_lr": head_lr,
        "weight_decay": weight_decay, "warmup": warmup, "schedule": schedule, "max_grad_norm": max_grad_norm,
        "dev_episodes": len(dev_episodes) if dev_episodes else 0, "eval_every": eval_every, "patience": patience,
        "seed": seed, "sampler_seed": getattr(sampler, "seed", None),
    }  # fmt: skip

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(steps, warmup, schedule))
    parameters = [p for g in groups for p in g["params"]]
    episodes = _episode_stream(sampler)
    state = TrainState()
    best_weights: dict[str, torch.Tensor] | None = None
    was_training = learner.training
    start = time.perf_counter()
    train_seconds = 0.0

    def evaluate_dev() -> None:
        nonlocal best_weights
        report = evaluate(learner, dev_episodes, progress=False)  # type: ignore[arg-type]
        state.dev.append({"step": state.step, "f1": report.f1, "precision": report.precision,
                          "recall": report.recall})
        if state.best_f1 is None or report.f1 > state.best_f1:
            state.best_f1, state.best_step, state.bad_evals = report.f1, state.step, 0
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in learner.state_dict().items()}
        else:
            state.bad_evals += 1
        if callback is not None:
            callback(state, learner)

    bar = tqdm(total=steps, desc=f"meta-train {getattr(learner, 'name', '')}".strip(), disable=not progress,
               unit="step")
    try:
        if dev_episodes:
            evaluate_dev()
        learner.train()
        while state.step < steps:
            tick = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(meta_batch_size):
                try:
                    episode = next(episodes)
                except StopIteration:
                    raise ValueError(f"the episode source ran out after {state.step} steps") from None
                loss = learner.loss(episode)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"step {state.step}: the loss is {loss.item()} on an episode of types {episode.types}"
                    )
                (loss / meta_batch_size).backward()
                total += loss.item() / meta_batch_size
            grads = [p.grad for p in parameters if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item() \
                if grads else 0.0
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
            optimizer.step()
            scheduler.step()
            state.step += 1
            state.losses.append(total)
            state.grad_norms.append(norm)
            train_seconds += time.perf_counter() - tick
            state.seconds = time.perf_counter() - start
            bar.update(1)
            postfix = {"loss": f"{total:.3f}"}
            if callback is not None:
                callback(state, learner)
            if dev_episodes and (state.step % eval_every == 0 or state.step == steps):  # type: ignore[operator]
                evaluate_dev()
                learner.train()
                postfix["dev_f1"] = f"{100 * state.dev[-1]['f1']:.1f}"
                if patience is not None and state.bad_evals >= patience:
                    state.stopped_early = True
            bar.set_postfix(postfix)
            if state.stopped_early:
                break
    finally:
        bar.close()
        learner.train(was_training)
    if best_weights is not None:
        learner.load_state_dict(best_weights)
    state.seconds = time.perf_counter() - start
    return TrainResult(
        steps=state.step,
        losses=state.losses,
        grad_norms=state.grad_norms,
        dev=state.dev,
        best_f1=state.best_f1,
        best_step=state.best_step,
        stopped_early=state.stopped_early,
        seconds=state.seconds,
        seconds_per_step=train_seconds / state.step if state.step else 0.0,
        settings=settings,
    )
