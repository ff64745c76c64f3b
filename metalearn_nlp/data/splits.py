"""Type-disjoint splits of a corpus for meta-learning, and random held-out slices.

``split_types`` partitions a corpus's sentences so that training, model
selection and testing see disjoint entity types; ``WNUT16_SPLIT`` is the
fixed split of WNUT-16 used throughout the book; ``hold_out`` takes a random
slice of any examples (for model selection on the training types).

Taught in: chapter 2 (episodes and samplers); chapter 5.1 Preparing the data.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

from .episode import TaggedSentence
from .samplers import count_table
from .tags import spans

__all__ = ["WNUT16_SPLIT", "hold_out", "split_types"]

T = TypeVar("T")


def split_types(
    sentences: Iterable[TaggedSentence],
    train_types: Sequence[str],
    dev_types: Sequence[str],
    test_types: Sequence[str],
) -> dict[str, list[TaggedSentence]]:
    """Partition a corpus's sentences for type-disjoint meta-learning.

    Rule: a sentence goes to the **first** of test, dev, train whose types it
    mentions; in that group, entities of types outside the group are
    relabelled ``O``. Test comes first so that no test-type mention is ever
    seen during training or model selection, not even as ``O``; dev comes
    before train for the same reason. Sentences that mention none of the
    listed types go to ``"unused"`` (unchanged), so nothing is dropped
    silently: the four lists are a partition of the input.

    Arguments:
        sentences: BIO-tagged sentences.
        train_types, dev_types, test_types: disjoint sets of entity types
            (``dev_types`` may be empty).

    Returns:
        ``{"train": [...], "dev": [...], "test": [...], "unused": [...]}``
        with BIO tags.

    Raises:
        ValueError: the groups overlap, or a listed type never occurs (the
            message lists the types that do, with their counts).

    Example:
        >>> s = [TaggedSentence(["Ada", "Paris"], ["B-person", "B-place"]), TaggedSentence(["Ada"], ["B-person"])]
        >>> groups = split_types(s, ["person"], [], ["place"])
        >>> [len(groups[g]) for g in ("train", "dev", "test", "unused")], groups["test"][0].tags
        ([1, 0, 1, 0], ('O', 'B-place'))

    Taught in: chapter 2.
    """
    sentences = list(sentences)
    groups = {"test": list(test_types), "dev": list(dev_types), "train": list(train_types)}
    listed = [type_ for types in groups.values() for type_ in types]
    repeated = sorted({type_ for type_ in listed if listed.count(type_) > 1})
    if repeated:
        raise ValueError(f"types {repeated} are listed in more than one group; the groups must be disjoint")
    present = [[span.type for span in spans(sentence.tags, "bio")] for sentence in sentences]
    counts: dict[str, int] = {}
    for types in present:
        for type_ in types:
            counts[type_] = counts.get(type_, 0) + 1
    missing = [type_ for type_ in listed if type_ not in counts]
    if missing:
        raise ValueError(f"types {missing} do not occur in the sentences; " + count_table(counts, "mentions"))
    out: dict[str, list[TaggedSentence]] = {"train": [], "dev": [], "test": [], "unused": []}
    group_sets = {name: set(types) for name, types in groups.items()}
    for sentence, types in zip(sentences, present):
        for name in ("test", "dev", "train"):
            if group_sets[name].intersection(types):
                out[name].append(sentence.for_episode(groups[name], "bio"))
                break
        else:
            out["unused"].append(sentence)
    return out


WNUT16_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("person", "geo-loc", "other", "company", "facility"),
    "dev": (),
    "test": ("product", "musicartist", "sportsteam", "movie", "tvshow"),
}
"""Fixed type split of WNUT-16's 10 entity types, for ``split_types``.

Mentions in the 2,394 training tweets: person 449, geo-loc 276, other 225,
company 171, facility 104 (train); product 97, musicartist 55, sportsteam 51,
movie 34, tvshow 34 (test).

* Test takes five types so that test episodes can be 5-way. They are the five
  rarest types: few-shot learning is meant for rare types, and leaving the
  frequent ones to training gives meta-training the most data. Each test type
  has enough mentions for 5-way 5~10-shot support and query sets.
* Train takes the other five, so training episodes can be 5-way too (with
  five types, every training episode has all of them).
* Dev is empty: a type-disjoint dev split would need types taken from
  train or test, and ten types cannot give 5-way train, dev and test. The
  honest alternative used in this package: select models on a held-out
  slice of the *training sentences* (``hold_out`` on
  ``split_types(...)["train"]``). That checks generalisation to new
  sentences of the training types, not to new types, so it is a weaker
  signal than a type-disjoint dev set; say so when reporting results. Never
  select on the test types.
* Beware the overlaps: musicartist is a kind of person and sportsteam a
  kind of organisation, so the test types are close to training types. And
  WNUT-16's tweets are the first 2,394 sentences of WNUT-17's training file:
  never train on one and test on the other.
"""


def hold_out(examples: Sequence[T], fraction: float, *, seed: int = 0) -> tuple[list[T], list[T]]:
    """Split examples at random into a kept part and a held-out part.

    Arguments:
        examples: the examples (any kind).
        fraction: share to hold out, in (0, 1); the held-out part has
            ``round(fraction * len(examples))`` examples.
        seed: seed of the shuffle.

    Returns:
        ``(kept, held_out)``, each in the input order.

    Example:
        >>> kept, held = hold_out(list(range(10)), 0.2, seed=1)
        >>> len(kept), len(held)
        (8, 2)

    Taught in: chapter 2.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    n_held = round(fraction * len(examples))
    held = set(random.Random(seed).sample(range(len(examples)), n_held))
    kept = [example for i, example in enumerate(examples) if i not in held]
    return kept, [example for i, example in enumerate(examples) if i in held]
