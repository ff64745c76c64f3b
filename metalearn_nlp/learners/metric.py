"""The metric core of ProtoNet, NNShot, StructShot and zero-shot tagging.

**Distances and scores.** Pure functions on word vectors:
:func:`squared_distances`; ProtoNet's :func:`class_prototypes` (class
means), :func:`prototype_scores` (``-||x - p_c||^2``) and
:func:`prototypical_loss` (the cross-entropy of those scores, through the
fused loss :func:`metalearn_nlp.kernels.prototype_nll`); NNShot's
:func:`nearest_neighbour_scores` (``-min ||x - s||^2`` over the support words
of a class); and :func:`sibling_backoff`, which lets a label with no support
word (``I-person`` in a 1-shot BIO episode) borrow the scores of a
same-type label that has words.

**Type prototypes from names.** With no support example, a type's prototype
is the encoder's embedding of its name or a short description: the mean of
the word vectors of the description, embedded as a sentence of its own
(``"geo-loc"`` -> ``"location"``). :data:`DESCRIPTIONS` holds defaults for
the WNUT-16, CoNLL-2003 and WNUT-17 types; a type without one is described
by its own name with ``-``, ``_`` and ``/`` read as spaces
(``"person-actor"`` -> ``"person actor"``); user descriptions override both.
:func:`label_name_vectors` gives every label of an episode its type's
vector. :class:`~metalearn_nlp.learners.zeroshot.ZeroShot` tags with these
prototypes alone; :class:`~metalearn_nlp.learners.protonet.ProtoNet` can
start its prototypes from them (``name_weight``).

Both learners import from here, and neither imports the other.

Taught in: chapter 3.1 (Prototypical networks: prototypes as class means,
the linear-layer view); chapter 3.2 (Algorithm steps; zero-shot prototypes);
chapter 4.2; chapter 5.2 (Source code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..data.episode import Episode
from ..data.tags import parse_tag
from ..encoders import Encoder
from ..kernels import prototype_nll

__all__ = [
    "DESCRIPTIONS",
    "class_prototypes",
    "describe",
    "embed_descriptions",
    "io_index",
    "label_name_vectors",
    "nearest_neighbour_scores",
    "prototype_scores",
    "prototypical_loss",
    "sibling_backoff",
    "squared_distances",
]


# -- distances and scores ---------------------------------------------------------------------
def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(n, m)`` matrix of ``||x_i - y_j||^2`` (expanded form, clamped at 0).

    Example:
        >>> squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([[25.]])
    """
    sq = (x * x).sum(1, keepdim=True) - 2.0 * x @ y.t() + (y * y).sum(1)[None, :]
    return sq.clamp_min(0.0)


def class_prototypes(
    vectors: torch.Tensor, labels: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean vector of each class.

    Arguments:
        vectors: ``(n, H)`` support word vectors.
        labels: ``(n,)`` their label ids in ``0..n_classes-1``.
        n_classes: C.

    Returns:
        ``(prototypes, counts)``: ``(C, H)`` means (zeros for a class with no
        word) and ``(C,)`` the number of words of each class.

    Example:
        >>> protos, counts = class_prototypes(torch.tensor([[0.0], [2.0], [5.0]]), torch.tensor([0, 0, 1]), 3)
        >>> protos.squeeze(1).tolist(), counts.tolist()
        ([1.0, 5.0, 0.0], [2, 1, 0])
    """
    sums = torch.zeros(n_classes, vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    sums = sums.index_add(0, labels, vectors)
    counts = torch.bincount(labels, minlength=n_classes)
    return sums / counts.clamp_min(1).to(vectors.dtype)[:, None], counts


def prototype_scores(x: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """``-||x - p_c||^2`` for every word and class; -inf for classes not ``present``.

    Example:
        >>> prototype_scores(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        tensor([[-1., -1.]])
    """
    scores = -squared_distances(x, prototypes)
    if present is not None:
        scores = scores.masked_fill(~present[None, :], float("-inf"))
    return scores


def prototypical_loss(
    x: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of query words under ``softmax_c(-||x - p_c||^2)`` (fused kernel).

    Classes not ``present`` are dropped from the softmax, and words of those
    classes from the mean. With no word left the loss is 0 (with a graph).

    Arguments:
        x: ``(n, H)`` query word vectors.
        labels: ``(n,)`` their label ids.
        prototypes: ``(C, H)``.
        present: ``(C,)`` bool, default all.

    Returns:
        A scalar.
    """
    c = prototypes.shape[0]
    if present is None:
        present = torch.ones(c, dtype=torch.bool, device=prototypes.device)
    compact = torch.cumsum(present.long(), 0) - 1  # old id -> id among present classes
    keep = present[labels]
    if not bool(keep.any()):
        return x.sum() * 0.0 + prototypes.sum() * 0.0
    targets = torch.where(keep, compact[labels], torch.full_like(labels, -100))
    return prototype_nll(x, prototypes[present], targets)


def nearest_neighbour_scores(
    x: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """NNShot's scores: ``max over support words s of class c of -||x - s||^2``.

    Arguments:
        x: ``(n, H)`` query word vectors.
        support: ``(m, H)`` support word vectors.
        support_labels: ``(m,)`` their label ids.
        n_classes: C.

    Returns:
        ``(n, C)``; -inf for a class with no support word. Differentiable.

    Example:
        >>> s = torch.tensor([[0.0], [1.0], [10.0]])
        >>> nearest_neighbour_scores(torch.tensor([[2.0]]), s, torch.tensor([0, 0, 1]), 3)
        tensor([[ -1., -64., -inf]])
    """
    scores = -squared_distances(x, support)  # (n, m)
    out = torch.full((x.shape[0], n_classes), float("-inf"), dtype=scores.dtype, device=scores.device)
    index = support_labels[None, :].expand_as(scores)
    return out.scatter_reduce(1, index, scores, reduce="amax", include_self=True)


def sibling_backoff(label_names: Sequence[str], scheme: str, present: torch.Tensor) -> torch.Tensor:
    """For each label, the label whose scores it uses: itself, or a same-type label with support words.

    A label that is ``present`` maps to itself; an absent ``B-t``/``I-t``/...
    maps to the first present label of type ``t``; anything else (``O``, or a
    type with no word) maps to itself and keeps its -inf.

    Arguments:
        label_names: the episode's labels.
        scheme: their scheme.
        present: ``(C,)`` bool, labels with at least one support word.

    Returns:
        ``(C,)`` long index: use ``scores[:, index]`` or ``prototypes[index]``.

    Example:
        >>> sibling_backoff(["O", "B-x", "I-x"], "bio", torch.tensor([True, True, False])).tolist()
        [0, 1, 1]
    """
    types = [parse_tag(name, scheme)[1] for name in label_names]
    flags = present.tolist()
    index = []
    for c, type_ in enumerate(types):
        if flags[c] or not type_:
            index.append(c)
        else:
            index.append(next((j for j, t in enumerate(types) if t == type_ and flags[j]), c))
    return torch.tensor(index, device=present.device)


# -- type prototypes from names ---------------------------------------------------------------
#: Default short descriptions of the types of WNUT-16, CoNLL-2003 (hub and file names) and WNUT-17.
DESCRIPTIONS: dict[str, str] = {
    # WNUT-16
    "person": "person",
    "geo-loc": "location",
    "other": "other named entity",
    "company": "company",
    "facility": "facility building",
    "product": "product",
    "musicartist": "musician band",
    "sportsteam": "sports team",
    "movie": "movie",
    "tvshow": "television show",
    # CoNLL-2003
    "PER": "person",
    "LOC": "location",
    "ORG": "organization",
    "MISC": "miscellaneous named entity",
    "location": "location",
    "organisation": "organization",
    "organization": "organization",
    "misc": "miscellaneous named entity",
    # WNUT-17
    "corporation": "corporation company",
    "creative-work": "creative work title",
    "group": "group",
}


def describe(type_: str, descriptions: Mapping[str, str] | None = None) -> str:
    """The text that stands for a type: the user's description, the default, or the name itself.

    Example:
        >>> describe("geo-loc"), describe("person-actor"), describe("x", {"x": "a thing"})
        ('location', 'person actor', 'a thing')
    """
    if descriptions and type_ in descriptions:
        return descriptions[type_]
    if type_ in DESCRIPTIONS:
        return DESCRIPTIONS[type_]
    text = type_.replace("-", " ").replace("_", " ").replace("/", " ").strip()
    return text or type_


def embed_descriptions(encoder: Encoder, texts: Sequence[str]) -> torch.Tensor:
    """``(N, H)`` float32: each text embedded as a sentence, its word vectors averaged.

    Runs with the encoder's current mode and gradient setting (so it can be
    meta-trained); wrap in ``torch.no_grad()`` to predict.
    """
    words = encoder.encode([text.split() or [text] for text in texts])
    vectors = words.vectors.float()
    sums = torch.zeros(len(texts), vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    sums = sums.index_add(0, words.sentence, vectors)
    counts = torch.bincount(words.sentence, minlength=len(texts)).clamp_min(1).to(vectors.dtype)
    return sums / counts[:, None]


def io_index(episode: Episode, device: torch.device | str = "cpu") -> torch.Tensor:
    """For each label id, the id of its type in ``["O", *types]`` (0 for ``O``).

    It maps an episode's labels onto per-type (IO) scores: ``B-t`` and
    ``I-t`` share the column of ``t``. The tensor is made on ``device``
    (default the CPU; pass the device of the scores it indexes).

    Example:
        >>> io_index(Episode([], [], ["x", "y"], "bio")).tolist()
        [0, 1, 1, 2, 2]
    """
    position = {type_: i + 1 for i, type_ in enumerate(episode.types)}
    return torch.tensor([0 if name == "O" else position[parse_tag(name, episode.scheme)[1]]
                         for name in episode.label_names], device=device)


def label_name_vectors(
    encoder: Encoder, episode: Episode, descriptions: Mapping[str, str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Name vector of every label of an episode: its type's description embedding (``O``: none).

    Returns:
        ``(vectors (C, H), has_name (C,))``: ``B-t`` and ``I-t`` share the
        vector of ``t``; the ``O`` row is zeros with ``has_name`` false.
    """
    types = embed_descriptions(encoder, [describe(t, descriptions) for t in episode.types])
    index = io_index(episode, types.device)
    vectors = torch.cat([torch.zeros_like(types[:1]), types])[index]
    return vectors, index > 0
