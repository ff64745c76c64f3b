"""Few-shot classification on frozen sentence vectors: the models of part 6's worked examples.

Chapters 6.2 and 6.3 treat each company, or each user, as a task with a few
labelled texts. The encoder is frozen and run once per notebook
(:func:`sentence_vectors`); everything after that works on the ``(n, H)``
matrix of sentence vectors, so a whole evaluation takes milliseconds:

* :func:`centroid_scores`: per-task nearest centroid (ProtoNet's rule with
  the identity as embedding, no training at all);
* :func:`fit_linear_classifier`: one "global" softmax classifier trained on
  the pooled examples of other tasks, applied unchanged to a new task;
* :func:`meta_train_projection`: a linear map meta-trained ProtoNet-style on
  episodes of other tasks, then used with :func:`centroid_scores` on a new
  task's support set;
* :func:`episode_indices`, :func:`outcome_counts` and
  :func:`precision_at_k`: sampling and scoring.

Accuracy intervals use the book's one method, the percentile bootstrap of
:func:`metalearn_nlp.evaluation.bootstrap_interval`: when every example has
one gold and one predicted label, the pooled micro-F1 of ``(n, n, correct)``
triples is the pooled accuracy, so :func:`outcome_counts` gives those triples.

Taught in: chapter 6.2 (Financial sentiment monitoring); chapter 6.3
(Personalised recommendation).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .learners.metric import class_prototypes, prototype_scores

__all__ = [
    "centroid_scores",
    "episode_indices",
    "fit_linear_classifier",
    "meta_train_projection",
    "outcome_counts",
    "precision_at_k",
    "sentence_vectors",
]

#: ``sample(rng) -> (support_index, support_labels, query_index, query_labels, n_classes)``
EpisodeFn = Callable[[random.Random], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]]


@torch.no_grad()
def sentence_vectors(encoder: Any, texts: Sequence[str], *, batch_size: int = 64,
                     normalize: bool = True) -> torch.Tensor:
    """One vector per text: the mean of its subword hidden states, as sentence-transformers pools.

    The mean runs over every position the attention mask keeps (``[CLS]``
    and ``[SEP]`` included), which is how ``all-MiniLM-L6-v2`` was trained
    to be pooled; ``normalize`` then scales each vector to unit length, as
    that model's last module does, so squared distances lie in [0, 4].

    Arguments:
        encoder: an ``Encoder`` from ``load_encoder``.
        texts: the texts (whitespace splits them into words).
        batch_size (int, default 64): texts per forward pass.
        normalize (bool, default True): unit-length vectors.

    Returns:
        ``(len(texts), H)`` float32 tensor on the CPU.

    Raises:
        ValueError: no texts, or an empty text (the message gives its index).

    Example:
        >>> vectors = sentence_vectors(load_encoder(), ["Shares rise", "Shares fall"])  # doctest: +SKIP
        >>> vectors.shape  # doctest: +SKIP
        torch.Size([2, 384])

    Taught in: chapter 6.2.
    """
    from .encoders import as_sentences, eval_mode
    from .learners.sentence import mean_pool  # chapter 6.1's pooling, shared

    if not texts:
        raise ValueError("sentence_vectors needs at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.split():
            raise ValueError(f"texts[{i}] is empty or not a string: {text!r}")
    sentences = as_sentences(list(texts))
    rows = []
    with eval_mode(encoder):
        for start in range(0, len(sentences), batch_size):
            batch = encoder.collate(sentences[start:start + batch_size])
            hidden = encoder.hidden_states(batch).float()
            rows.append(mean_pool(hidden, batch.attention_mask.to(hidden.device)).cpu())
    vectors = torch.cat(rows)
    return nn.functional.normalize(vectors, dim=1) if normalize else vectors


def centroid_scores(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                    n_classes: int) -> torch.Tensor:
    """``-||q - c_k||^2`` of every query vector to every class centroid of the support set.

    Arguments:
        support: ``(n, H)`` support vectors.
        support_labels: ``(n,)`` their class ids in ``0..n_classes-1``.
        query: ``(m, H)`` query vectors.
        n_classes (int): number of classes.

    Returns:
        ``(m, n_classes)`` scores; ``-inf`` for a class with no support example.

    Raises:
        ValueError: shapes that do not match, or a label outside ``0..n_classes-1``.

    Example:
        >>> s = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> centroid_scores(s, torch.tensor([0, 1]), torch.tensor([[0.5, 0.0]]), 2).argmax(1).tolist()
        [0]

    Taught in: chapter 6.2.
    """
    if support.ndim != 2 or query.ndim != 2 or support.shape[1] != query.shape[1]:
        raise ValueError(f"support and query must be (n, H) and (m, H); got {tuple(support.shape)} and "
                         f"{tuple(query.shape)}")
    if support_labels.shape != (support.shape[0],):
        raise ValueError(f"support_labels must have shape ({support.shape[0]},), got {tuple(support_labels.shape)}")
    if len(support_labels) and (support_labels.min() < 0 or support_labels.max() >= n_classes):
        raise ValueError(f"support_labels must lie in 0..{n_classes - 1}, got {support_labels.tolist()}")
    prototypes, counts = class_prototypes(support, support_labels, n_classes)
    return prototype_scores(query, prototypes, counts > 0)


def episode_indices(labels: Sequence[int], shots: int, rng: random.Random,
                    n_classes: int | None = None) -> tuple[list[int], list[int]]:
    """Split one task's examples into a support set of ``shots`` per class and a query set of the rest.

    Arguments:
        labels: the class id of each of the task's examples.
        shots (int): support examples per class.
        rng (random.Random): the source of randomness.
        n_classes (int | None, default None): classes that must appear
            (None: those present in ``labels``).

    Returns:
        ``(support, query)`` as positions into ``labels``; the query holds
        every example not in the support set.

    Raises:
        ValueError: ``shots`` < 1, or a class with fewer than ``shots + 1``
            examples (no query example would be left for it).

    Example:
        >>> episode_indices([0, 0, 1, 1, 1], 1, random.Random(0))[0]
        [1, 3]

    Taught in: chapter 6.2.
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    classes = range(n_classes) if n_classes is not None else sorted(set(labels))
    support: list[int] = []
    for c in classes:
        members = [i for i, label in enumerate(labels) if label == c]
        if len(members) < shots + 1:
            raise ValueError(f"class {c} has {len(members)} examples; {shots} shots need at least {shots + 1} "
                             "(one left for the query)")
        support += sorted(rng.sample(members, shots))
    chosen = set(support)
    return support, [i for i in range(len(labels)) if i not in chosen]


def fit_linear_classifier(vectors: torch.Tensor, labels: torch.Tensor, n_classes: int, *, steps: int = 300,
                          lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 0) -> nn.Linear:
    """Softmax regression on fixed vectors (full-batch Adam): the "global" baseline.

    Arguments:
        vectors: ``(n, H)`` training vectors (all tasks pooled).
        labels: ``(n,)`` class ids.
        n_classes (int): number of classes.
        steps (int, default 300): optimisation steps.
        lr (float, default 0.05): Adam's learning rate.
        weight_decay (float, default 1e-4): L2 penalty (AdamW style).
        seed (int, default 0): seed of the initialisation.

    Returns:
        The trained ``nn.Linear(H, n_classes)``; ``model(x).argmax(1)`` predicts.

    Raises:
        ValueError: no vectors, or labels that do not match them.

    Example:
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> fit_linear_classifier(x, torch.tensor([0, 1]), 2, steps=50)(x).argmax(1).tolist()
        [0, 1]

    Taught in: chapter 6.2.
    """
    if vectors.ndim != 2 or len(vectors) == 0 or labels.shape != (len(vectors),):
        raise ValueError(f"vectors must be (n, H) with n >= 1 and labels (n,); got {tuple(vectors.shape)} and "
                         f"{tuple(labels.shape)}")
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(vectors.shape[1], n_classes)
    with torch.no_grad():
        model.weight.normal_(0.0, 0.01, generator=generator)
        model.bias.zero_()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(vectors), labels).backward()
        optimiser.step()
    return model.requires_grad_(False)


def meta_train_projection(vectors: torch.Tensor, sample: EpisodeFn, *, steps: int = 200, lr: float = 1e-3,
                          scale: float = 10.0, seed: int = 0) -> tuple[nn.Linear, list[float]]:
    """Meta-train a linear map ``W`` with ProtoNet's loss on episodes of training tasks.

    Each step draws one episode from ``sample``, maps support and query
    vectors through ``W``, and minimises the cross-entropy of
    ``scale * centroid_scores`` on the query. ``W`` starts as the identity,
    so step 0 *is* the frozen nearest-centroid rule; training can only move
    away from it where the training tasks say so.

    Arguments:
        vectors: ``(n, H)`` fixed sentence vectors of every example.
        sample: ``sample(rng) -> (support_index, support_labels,
            query_index, query_labels, n_classes)`` for one training episode.
        steps (int, default 200): meta-training episodes.
        lr (float, default 1e-3): Adam's learning rate.
        scale (float, default 10.0): multiplies the scores before the
            softmax (unit vectors have squared distances of at most 4).
        seed (int, default 0): seeds the episode sampler.

    Returns:
        ``(projection, losses)``: the ``nn.Linear(H, H, bias=False)`` (no
        gradients) and the loss of every step.

    Raises:
        ValueError: ``steps`` < 0.

    Example:
        >>> projection, losses = meta_train_projection(vectors, sample, steps=100)  # doctest: +SKIP
        >>> scores = centroid_scores(projection(s), s_labels, projection(q), 3)  # doctest: +SKIP

    Taught in: chapter 6.2; chapter 6.3.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    rng = random.Random(seed)
    projection = nn.Linear(vectors.shape[1], vectors.shape[1], bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.eye(vectors.shape[1]))
    optimiser = torch.optim.Adam(projection.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        support, support_labels, query, query_labels, n_classes = sample(rng)
        scores = centroid_scores(projection(vectors[support]), support_labels, projection(vectors[query]), n_classes)
        loss = nn.functional.cross_entropy(scale * scores, query_labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return projection.requires_grad_(False), losses


def outcome_counts(predicted: torch.Tensor | Sequence[int], gold: torch.Tensor | Sequence[int]) -> tuple[int, int, int]:
    """``(n, n, correct)``: one task's predictions as a triple for ``bootstrap_interval``.

    With one gold and one predicted label per example, pooled micro-F1 over
    such triples equals pooled accuracy, so the book's bootstrap over
    episodes (or tasks) applies unchanged.

    Raises:
        ValueError: the two have different lengths.

    Example:
        >>> outcome_counts([0, 1, 2], [0, 1, 1])
        (3, 3, 2)

    Taught in: chapter 6.2.
    """
    predicted, gold = torch.as_tensor(predicted), torch.as_tensor(gold)
    if predicted.shape != gold.shape or predicted.ndim != 1:
        raise ValueError(f"predicted and gold must be 1-d and of equal length, got {tuple(predicted.shape)} "
                         f"and {tuple(gold.shape)}")
    n = len(gold)
    return n, n, int((predicted == gold).sum())


def precision_at_k(scores: torch.Tensor | Sequence[float], liked: torch.Tensor | Sequence[bool], k: int) -> float:
    """Fraction of the ``k`` highest-scored items that the user likes.

    Ties are broken by position (the earlier item first), so the result is
    deterministic.

    Raises:
        ValueError: lengths differ, or ``k`` is not in ``1..len(scores)``.

    Example:
        >>> precision_at_k([0.9, 0.1, 0.8, 0.3], [True, False, False, True], 2)
        0.5

    Taught in: chapter 6.3.
    """
    scores, liked = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(liked, dtype=torch.bool)
    if scores.shape != liked.shape or scores.ndim != 1:
        raise ValueError(f"scores and liked must be 1-d and of equal length, got {tuple(scores.shape)} and "
                         f"{tuple(liked.shape)}")
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in 1..{len(scores)}, got {k}")
    top = torch.sort(-scores, stable=True).indices[:k]
    return float(liked[top].double().mean())
