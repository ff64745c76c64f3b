"""Evaluation on class episodes (one label per text): accuracy, per-label counts, macro-F1.

``metalearn_nlp.evaluation.evaluate`` calls ``evaluate_classes`` when the
episodes' scheme is ``"class"`` (intent detection, chapter 6.1), so users
call ``evaluate`` for both kinds of episode. The returned ``Report`` is the
same class as for tagging; its ``class_counts`` feed
``bootstrap_interval(report, metric="macro_f1")``.

Taught in: chapter 6.1.
"""

from __future__ import annotations

import time
from typing import Any

from .data.episode import CLASS_SCHEME, Episode
from .evaluation import Report, SentencePrediction, TypeScores, episode_loop

__all__ = ["evaluate_classes"]


def evaluate_classes(learner: Any, episodes: list[Episode], *, progress: bool, keep_predictions: bool) -> Report:
    """``evaluate`` on class episodes: one label per query text; accuracy, per-label and macro-F1.

    ``overall`` holds ``(texts, texts, right)``, so its F1 is the accuracy;
    ``per_type`` one-vs-rest counts per label (a predicted label outside the
    episode, such as ``"oos"``, is a label too); ``class_counts`` the same per
    episode. The predictor's ``predict(texts)`` must return one label per text.
    """
    counts: dict[str, list[int]] = {}
    per_episode: list[tuple[int, int, int]] = []
    per_class: list[dict[str, tuple[int, int, int]]] = []
    kept: list[SentencePrediction] = []
    texts = 0
    start = time.perf_counter()
    with episode_loop(learner, episodes, progress) as bar:
        for index, episode in enumerate(bar):
            predicted = list(learner.adapt(episode).predict(list(episode.query))) if episode.query else []
            if len(predicted) != len(episode.query) or not all(isinstance(p, str) for p in predicted):
                raise RuntimeError(f"episode {index}: the predictor must give one label (a str) per query text; "
                                   f"got {len(predicted)} items for {len(episode.query)} texts")
            this: dict[str, list[int]] = {}
            for example, label in zip(episode.query, predicted):
                this.setdefault(example.label, [0, 0, 0])[0] += 1
                this.setdefault(label, [0, 0, 0])[1] += 1
                if label == example.label:
                    this[label][2] += 1
                if keep_predictions:
                    kept.append(SentencePrediction(index, (example.text,), (example.label,), (label,)))
            for label, triple in this.items():
                total = counts.setdefault(label, [0, 0, 0])
                for i in range(3):
                    total[i] += triple[i]
            right = sum(triple[2] for triple in this.values())
            per_episode.append((len(predicted), len(predicted), right))
            per_class.append({label: (t[0], t[1], t[2]) for label, t in sorted(this.items())})
            texts += len(predicted)
            if progress:
                bar.set_postfix(accuracy=f"{100 * sum(c[2] for c in per_episode) / max(texts, 1):.1f}", refresh=False)
    right = sum(c[2] for c in per_episode)
    config = learner.config() if hasattr(learner, "config") else {"learner": type(learner).__name__}
    return Report(
        learner=config,
        scheme=CLASS_SCHEME,
        overall=TypeScores.from_counts(texts, texts, right),
        per_type={label: TypeScores.from_counts(*counts[label]) for label in sorted(counts)},
        episodes=len(episodes),
        sentences=texts,
        seconds=time.perf_counter() - start,
        predictions=kept if keep_predictions else None,
        episode_counts=per_episode,
        class_counts=per_class,
    )
