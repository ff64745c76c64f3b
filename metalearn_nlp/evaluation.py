"""Few-shot NER evaluation: pooled entity-level micro scores, per-type scores, seeds.

Protocol (Few-NERD's, Ding et al., 2021, ``util/framework.py``: counts are
summed over every query sentence of every episode before dividing): for each
episode the learner adapts on the support set and tags the query set; the
gold and predicted entities of all query sentences of all episodes are
pooled, and precision, recall and F1 are computed once from the pooled
counts (micro-averaging). An entity is correct when its span and type match
exactly. Per-type scores pool the same way.

Entities are matched by :func:`metalearn_nlp.data.tags.count_entities`,
the package's one entity matcher (``entity_scores`` uses it too; this module
re-exports it as ``count_entities``). Schemes:

* **BIO** is read in seqeval's **default mode** (the conlleval rules): an
  ``I-X`` that does not continue an ``X`` entity starts a new one. Strict
  IOB2 mode would instead drop such entities, which punishes taggers that
  decode each word independently (ProtoNet, NNShot) for a formatting choice
  rather than for wrong spans; default mode is also what CoNLL-style results
  report. The test suite checks the spans against seqeval's own
  ``get_entities`` and the scores against ``seqeval.metrics``.
* **IO** (Few-NERD's scheme) and **BIOES** go through the same
  :func:`metalearn_nlp.data.tags.spans`: in IO an entity is a maximal run of
  one type, so adjacent same-type entities are one entity on both sides.
  On BIO input without adjacent same-type entities IO gives seqeval's
  numbers (tested).

Intervals (``bootstrap_interval`` over test episodes, ``summarize`` over
seeds, ``paired_difference_interval`` between two learners) live in
``metalearn_nlp.intervals`` and are re-exported here.
Class episodes (labelled texts, chapter 6.1) are scored by
``metalearn_nlp.class_evaluation``, which ``evaluate`` calls for them.

Taught in: chapter 5.3 (Code analysis: evaluation); chapter 8 (reporting results).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .data.episode import CLASS_SCHEME, Episode
from .data.tags import EntityScores, count_entities
from .intervals import bootstrap_interval, paired_difference_interval, summarize  # re-exported: one import path

__all__ = [
    "Report",
    "SentencePrediction",
    "TypeScores",
    "bootstrap_interval",
    "count_entities",
    "evaluate",
    "paired_difference_interval",
    "summarize",
]


TypeScores = EntityScores
"""Scores of one type, or of all types pooled: ``metalearn_nlp.data.EntityScores``."""


class SentencePrediction(NamedTuple):
    """One query sentence's gold and predicted tags, kept for error analysis."""

    episode: int
    tokens: tuple[str, ...]
    gold: tuple[str, ...]
    predicted: tuple[str, ...]


@dataclass
class Report:
    """Scores of one learner on a set of episodes.

    Attributes:
        learner: the learner's ``config()`` (name, encoder, hyperparameters).
        scheme: the episodes' tag scheme.
        overall: pooled micro ``TypeScores``.
        per_type: ``{type: TypeScores}``.
        episodes: number of episodes.
        sentences: query sentences scored.
        seconds: wall time of the evaluation.
        predictions: per-sentence gold and predicted tags when kept.
        episode_counts: ``(gold, predicted, correct)`` entities of each
            episode, all types summed, in episode order (the input of
            ``bootstrap_interval``).

    Example:
        >>> report = evaluate(learner, episodes)  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
        >>> report.save_json("results/protonet.json")  # doctest: +SKIP

    Taught in: chapter 5.3.
    """

    learner: dict[str, Any]
    scheme: str
    overall: TypeScores
    per_type: dict[str, TypeScores]
    episodes: int
    sentences: int
    seconds: float
    predictions: list[SentencePrediction] | None = field(default=None, repr=False)
    episode_counts: list[tuple[int, int, int]] | None = field(default=None, repr=False)
    #: Class episodes only: each episode's ``{label: (gold, predicted, correct)}`` (``bootstrap_interval``'s
    #: input for ``metric="macro_f1"``); see :func:`evaluate`.
    class_counts: list[dict[str, tuple[int, int, int]]] | None = field(default=None, repr=False)

    @property
    def accuracy(self) -> float:
        """Class episodes: the fraction of query texts labelled right (= pooled micro-F1 there)."""
        self._needs_classes("accuracy")
        return self.overall.correct / self.overall.gold if self.overall.gold else 0.0

    @property
    def macro_f1(self) -> float:
        """Class episodes: the unweighted mean of per-label F1 over every label gold or predicted (sklearn's macro)."""
        self._needs_classes("macro_f1")
        scores = [s.f1 for s in self.per_type.values() if s.gold or s.predicted]
        return sum(scores) / len(scores) if scores else 0.0

    def _needs_classes(self, what: str) -> None:
        if self.scheme != CLASS_SCHEME:
            raise ValueError(f"{what} is defined for class episodes (labelled texts); this report is {self.scheme!r} "
                             "(tagging): use f1")

    @property
    def precision(self) -> float:
        return self.overall.precision

    @property
    def recall(self) -> float:
        return self.overall.recall

    @property
    def f1(self) -> float:
        return self.overall.f1

    @property
    def seconds_per_episode(self) -> float:
        return self.seconds / self.episodes if self.episodes else 0.0

    def table(self) -> str:
        """A plain-text table: one row per type, then the pooled micro scores (for classes: accuracy, macro-F1)."""
        name = self.learner.get("learner", "?")
        if self.scheme == CLASS_SCHEME:
            return (f"{name} on {self.episodes} episodes ({self.sentences} query texts): "
                    f"accuracy {100 * self.accuracy:.2f}, macro-F1 {100 * self.macro_f1:.2f} "
                    f"over {len(self.per_type)} labels, {self.seconds_per_episode:.3f} s/episode")
        lines = [
            f"{name} on {self.episodes} episodes ({self.sentences} query sentences, {self.scheme.upper()}), "
            f"{self.seconds_per_episode:.2f} s/episode",
            f"{'type':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'gold':>7} {'pred':>7} {'correct':>7}",
        ]

        def row(label: str, s: TypeScores) -> str:
            return (f"{label:<20} {100 * s.precision:>9.2f} {100 * s.recall:>9.2f} {100 * s.f1:>9.2f} "
                    f"{s.gold:>7} {s.predicted:>7} {s.correct:>7}")

        lines += [row(type_, scores) for type_, scores in self.per_type.items()]
        lines.append("-" * len(lines[1]))
        lines.append(row("micro (pooled)", self.overall))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``from_dict`` restores it)."""
        out: dict[str, Any] = {
            "learner": self.learner,
            "scheme": self.scheme,
            "overall": self.overall._asdict(),
            "per_type": {t: s._asdict() for t, s in self.per_type.items()},
            "episodes": self.episodes,
            "sentences": self.sentences,
            "seconds": self.seconds,
            "seconds_per_episode": self.seconds_per_episode,
        }
        if self.episode_counts is not None:
            out["episode_counts"] = [list(c) for c in self.episode_counts]
        if self.class_counts is not None:
            out["class_counts"] = [{k: list(v) for k, v in c.items()} for c in self.class_counts]
        if self.predictions is not None:
            out["predictions"] = [p._asdict() for p in self.predictions]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        predictions = data.get("predictions")
        episode_counts = data.get("episode_counts")
        return cls(
            learner=dict(data["learner"]),
            scheme=data["scheme"],
            overall=TypeScores(**data["overall"]),
            per_type={t: TypeScores(**s) for t, s in data["per_type"].items()},
            episodes=data["episodes"],
            sentences=data["sentences"],
            seconds=data["seconds"],
            predictions=None if predictions is None else [
                SentencePrediction(p["episode"], tuple(p["tokens"]), tuple(p["gold"]), tuple(p["predicted"]))
                for p in predictions
            ],
            episode_counts=None if episode_counts is None else [tuple(c) for c in episode_counts],
            class_counts=None if data.get("class_counts") is None else [
                {k: tuple(v) for k, v in c.items()} for c in data["class_counts"]],
        )

    def save_json(self, path: str | Path) -> None:
        """Write ``to_dict()`` as indented UTF-8 JSON (creating parent folders)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load_json(cls, path: str | Path) -> Report:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@contextmanager
def episode_loop(learner: Any, episodes: list[Episode], progress: bool) -> Iterator[Any]:
    """The evaluation loop's frame: the learner in eval mode (restored after), a tqdm bar over the episodes."""
    import torch
    from tqdm.auto import tqdm

    module = learner if isinstance(learner, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    bar = tqdm(episodes, desc=f"evaluate {getattr(learner, 'name', '')}".strip(), disable=not progress,
               unit="episode", leave=False)
    try:
        yield bar
    finally:
        bar.close()
        if module is not None:
            module.train(was_training)


def evaluate(
    learner: Any,
    episodes: Iterable[Episode],
    *,
    progress: bool = True,
    keep_predictions: bool = False,
) -> Report:
    """Adapt on each episode's support set, tag its query set, pool the entity counts.

    Arguments:
        learner: a ``Learner`` (anything with ``adapt(episode) -> Predictor``).
        episodes: the test episodes, all in one tag scheme.
        progress (bool, default True): show a tqdm bar with the running F1.
        keep_predictions (bool, default False): keep every query sentence's
            gold and predicted tags in ``report.predictions``.

    Returns:
        A ``Report``. On class episodes (labelled texts, ``scheme="class"``,
        chapter 6.1) the predictor gives one label per query text and the
        report has ``accuracy``, ``macro_f1`` and ``class_counts``;
        ``bootstrap_interval(report, metric="accuracy" | "macro_f1")``
        gives their intervals over episodes.

    Raises:
        ValueError: no episodes, or episodes in different schemes.

    Example:
        >>> report = evaluate(get_learner("protonet"), test_episodes)  # doctest: +SKIP
        >>> round(report.f1, 3)  # doctest: +SKIP

    Taught in: chapter 5.3.
    """
    episodes = list(episodes)
    if not episodes:
        raise ValueError("evaluate needs at least one episode")
    schemes = sorted({episode.scheme for episode in episodes})
    if len(schemes) > 1:
        raise ValueError(f"episodes mix tag schemes {schemes}; pooled scores need one scheme")
    scheme = schemes[0]
    if scheme == CLASS_SCHEME:
        from .class_evaluation import evaluate_classes  # imports this module: not at the top

        return evaluate_classes(learner, episodes, progress=progress, keep_predictions=keep_predictions)
    counts: dict[str, list[int]] = {}
    sentences = 0
    kept: list[SentencePrediction] = []
    per_episode: list[tuple[int, int, int]] = []
    start = time.perf_counter()
    with episode_loop(learner, episodes, progress) as bar:
        for index, episode in enumerate(bar):
            predictor = learner.adapt(episode)
            tags = predictor.predict(episode.query) if episode.query else []
            if len(tags) != len(episode.query):
                raise RuntimeError(f"episode {index}: the predictor tagged {len(tags)} of {len(episode.query)} "
                                   "query sentences")
            gold = [list(sentence.tags) for sentence in episode.query]
            predicted = [list(t) for t in tags]
            for sentence, tagged in zip(episode.query, predicted):
                if len(tagged) != len(sentence.tokens):
                    raise RuntimeError(f"episode {index}: the predictor gave {len(tagged)} tags for "
                                       f"{len(sentence.tokens)} words")
                if keep_predictions:
                    kept.append(SentencePrediction(index, sentence.tokens, sentence.tags, tuple(tagged)))
            # entities never cross sentences, so counts pooled episode by episode are the pooled counts
            this_episode = [0, 0, 0]
            for type_, episode_counts in count_entities(gold, predicted, scheme).items():
                total = counts.setdefault(type_, [0, 0, 0])
                for i in range(3):
                    total[i] += episode_counts[i]
                    this_episode[i] += episode_counts[i]
            per_episode.append((this_episode[0], this_episode[1], this_episode[2]))
            sentences += len(gold)
            if progress:
                totals = [sum(c[i] for c in counts.values()) for i in range(3)]
                bar.set_postfix(f1=f"{100 * TypeScores.from_counts(*totals).f1:.1f}", refresh=False)
    seconds = time.perf_counter() - start
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    config = learner.config() if hasattr(learner, "config") else {"learner": type(learner).__name__}
    return Report(
        learner=config,
        scheme=scheme,
        overall=TypeScores.from_counts(*totals),
        per_type={type_: TypeScores.from_counts(*counts[type_]) for type_ in sorted(counts)},
        episodes=len(episodes),
        sentences=sentences,
        seconds=seconds,
        predictions=kept if keep_predictions else None,
        episode_counts=per_episode,
    )

