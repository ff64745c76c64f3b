"""Overfitting in meta-training, and the four remedies of the source's FAQ, as one experiment.

Meta-learning overfits when there are few training *tasks*: the learner
memorises the training episodes (their F1 climbs towards 100%) while its
score on new episodes stalls or falls. This module runs the experiment of
chapter 9: a plain learner meta-trained on a small, fixed list of training
episodes, against the same learner with one remedy at a time:

* ``augmentation``: each training episode is re-drawn with its entity
  mentions replaced by other mentions of the same type, from the training
  episodes' own mentions (:class:`AugmentedEpisodes`, on
  :func:`~metalearn_nlp.data.perturb.replace_mentions`);
* ``dropout``, ``weight_decay``, ``early_stopping``: regularisation with the
  existing options (``ProtoNet(dropout=...)``, ``Trainer(weight_decay=...)``,
  ``Trainer(dev_episodes=..., patience=...)``, which keeps the best dev weights);
* ``fgm``: adversarial embeddings (:class:`~metalearn_nlp.learners.adversarial.FGM`);
* ``lora`` and ``freeze``: parameter-efficient meta-learning, LoRA adapters
  (:func:`~metalearn_nlp.parameter_efficient.add_lora`) or fewer trainable layers.

:func:`run_remedy` trains one variant and records train-episode and
dev-episode F1 along the way (the overfitting curves);
:func:`~metalearn_nlp.evaluation.paired_difference_interval` compares two
of them on the same test episodes.

Taught in: chapter 9 (FAQ: overfitting remedies, measured).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .data.episode import Episode
from .data.perturb import mention_pool, replace_mentions
from .encoders import load_encoder
from .evaluation import Report, evaluate
from .learners import FGM, ProtoNet
from .training import Trainer, TrainResult

__all__ = ["REMEDIES", "AugmentedEpisodes", "RemedyRun", "remedy_settings",
           "run_remedy"]

#: The variants the benchmark compares, ``"plain"`` first. :func:`run_remedy` also knows
#: ``"regularisation"``: dropout, weight decay and early stopping together.
REMEDIES: tuple[str, ...] = ("plain", "augmentation", "dropout", "weight_decay", "early_stopping", "fgm", "lora",
                             "freeze")


class AugmentedEpisodes:
    """Cycle through fixed episodes, replacing entity mentions within their type each time.

    Episode ``i`` of the stream is ``episodes[i % n]`` with every mention of
    its support and query sentences replaced, with probability
    ``probability``, by another mention of the same type from ``pool``. The
    tags follow the new mentions, so the types and the episode's shape stay.

    Arguments:
        episodes: the fixed training episodes (all in one scheme).
        pool (default None): ``{type: [mention tokens, ...]}``; None builds it
            from the episodes' own sentences (no data beyond the episodes).
        probability (float, default 0.5): chance that each mention is replaced.
        seed (int, default 0): seed of the replacements.

    Raises:
        ValueError: no episodes, or a probability outside [0, 1].

    Example:
        >>> sampler = AugmentedEpisodes(train_episodes, probability=0.5, seed=0)  # doctest: +SKIP
        >>> meta_train(learner, sampler, steps=100)  # doctest: +SKIP

    Taught in: chapter 9.
    """

    def __init__(self, episodes: Sequence[Episode], pool: Mapping[str, Sequence[tuple[str, ...]]] | None = None, *,
                 probability: float = 0.5, seed: int = 0) -> None:
        self.episodes = list(episodes)
        if not self.episodes:
            raise ValueError("AugmentedEpisodes needs at least one episode")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability!r}")
        self.scheme = self.episodes[0].scheme
        if pool is None:
            pool = mention_pool([s for e in self.episodes for s in (*e.support, *e.query)], scheme=self.scheme)
        self.pool = {k: list(v) for k, v in pool.items()}
        self.probability, self.seed = probability, seed
        self.settings = {"episodes": len(self.episodes), "probability": probability, "seed": seed,
                         "pool_mentions": sum(len(v) for v in self.pool.values())}
        self._rng, self._drawn = random.Random(seed), 0

    def sample(self) -> Episode:
        """The next augmented episode."""
        episode = self.episodes[self._drawn % len(self.episodes)]
        self._drawn += 1

        def swap(sentence: Any) -> Any:
            return replace_mentions(sentence, self.pool, self._rng, probability=self.probability,
                                    scheme=self.scheme)

        return replace(episode, support=[swap(s) for s in episode.support], query=[swap(s) for s in episode.query])


def remedy_settings(remedy: str, **overrides: Any) -> dict[str, Any]:
    """The settings of one variant: the plain learner's, changed only where the remedy says.

    The plain learner: ProtoNet on the encoder with its bottom ``freeze``
    layers frozen, AdamW at ``lr`` with no weight decay, no dropout, the
    *last* weights kept (no selection on dev). ``encoder`` is a name or
    path for :func:`~metalearn_nlp.encoders.load_encoder` (None: the offline MiniLM).

    Arguments:
        remedy: one of :data:`REMEDIES`, or ``"regularisation"``.
        **overrides: any setting, e.g. ``steps=40``.

    Raises:
        ValueError: an unknown remedy or setting.

    Example:
        >>> remedy_settings("dropout")["dropout"]
        0.5

    Taught in: chapter 9.
    """
    base = dict(freeze=4, max_length=64, lr=3e-4, weight_decay=0.0, dropout=0.0, steps=60, eval_every=10,
                patience=None, select_on_dev=False, augment_probability=0.0, epsilon=0.0, lora_rank=0, seed=0,
                encoder=None)
    changes = {
        "plain": {},
        "augmentation": {"augment_probability": 0.5},
        "dropout": {"dropout": 0.5},
        "weight_decay": {"weight_decay": 0.1},
        "early_stopping": {"select_on_dev": True, "patience": 3},
        "regularisation": {"dropout": 0.5, "weight_decay": 0.1, "select_on_dev": True, "patience": 3},
        "fgm": {"epsilon": 1.0},
        "lora": {"lora_rank": 8, "lr": 1e-3},
        "freeze": {"freeze": 5},
    }
    if remedy not in changes:
        raise ValueError(f"unknown remedy {remedy!r}; expected one of {', '.join(changes)}")
    unknown = set(overrides) - set(base)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; settings are {', '.join(base)}")
    return {**base, **changes[remedy], **overrides}


@dataclass
class RemedyRun:
    """One trained variant: the learner, its training record and its curves.

    Attributes:
        remedy: its name.
        settings: :func:`remedy_settings`' dict.
        learner: the trained learner (best dev weights with early stopping, else the last ones).
        result: the ``TrainResult``.
        curve: ``[{"step", "train_f1", "dev_f1"}, ...]`` every ``eval_every`` steps, step 0 included.
        trainable: trainable parameters.
        seconds: wall time of the run, evaluations included.
    """

    remedy: str
    settings: dict[str, Any]
    learner: Any
    result: TrainResult
    curve: list[dict[str, float]] = field(default_factory=list)
    trainable: int = 0
    seconds: float = 0.0


def _build_learner(settings: Mapping[str, Any]) -> Any:
    from .parameter_efficient import add_lora, trainable_report

    torch.manual_seed(settings["seed"])
    encoder = load_encoder(settings["encoder"], freeze=settings["freeze"], max_length=settings["max_length"])
    if settings["lora_rank"]:
        layers = list(range(settings["freeze"], len(encoder.layers)))
        add_lora(encoder, r=settings["lora_rank"], alpha=2 * settings["lora_rank"], layers=layers)
    learner: Any = ProtoNet(encoder, dropout=settings["dropout"])
    if settings["epsilon"]:
        learner = FGM.wrap(learner, epsilon=settings["epsilon"])
    return learner, trainable_report(learner).trainable


def run_remedy(remedy: str, train_episodes: Sequence[Episode], dev_episodes: Sequence[Episode], *,
               curve_episodes: int | None = None, **overrides: Any) -> RemedyRun:
    """Meta-train the plain learner or one remedy on fixed training episodes, recording train and dev F1.

    Arguments:
        remedy: one of :data:`REMEDIES`.
        train_episodes: the fixed training episodes (cycled, or augmented).
        dev_episodes: fixed dev episodes: the curves, and the selection of ``early_stopping``.
        curve_episodes (default None: all): how many training episodes the train curve is measured on.
        **overrides: settings (see :func:`remedy_settings`).

    Returns:
        A :class:`RemedyRun`.

    Example:
        >>> run = run_remedy("fgm", train, dev, steps=40, eval_every=10)  # doctest: +SKIP
        >>> evaluate(run.learner, test).f1  # doctest: +SKIP

    Taught in: chapter 9.
    """
    settings = remedy_settings(remedy, **overrides)
    start = time.perf_counter()
    learner, trainable = _build_learner(settings)
    sampler: Any = list(train_episodes)
    if settings["augment_probability"]:
        sampler = AugmentedEpisodes(train_episodes, probability=settings["augment_probability"],
                                    seed=settings["seed"])
    measured = list(train_episodes)[:curve_episodes] if curve_episodes else list(train_episodes)
    curve: list[dict[str, float]] = []

    def record(step: int) -> None:
        curve.append({"step": step, "train_f1": evaluate(learner, measured, progress=False).f1,
                      "dev_f1": evaluate(learner, dev_episodes, progress=False).f1})

    def callback(state: Any, model: Any) -> None:
        if state.step % settings["eval_every"] == 0 and (not curve or curve[-1]["step"] != state.step):
            was = model.training
            record(state.step)
            model.train(was)

    record(0)
    trainer = Trainer(learner, sampler, steps=settings["steps"], lr=settings["lr"],
                      weight_decay=settings["weight_decay"], seed=settings["seed"], progress=False,
                      dev_episodes=dev_episodes if settings["select_on_dev"] else None,
                      eval_every=settings["eval_every"] if settings["select_on_dev"] else None,
                      patience=settings["patience"], callback=callback)
    result = trainer.fit()
    return RemedyRun(remedy, settings, learner, result, curve, trainable, time.perf_counter() - start)
