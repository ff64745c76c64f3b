"""Labelled examples, few-shot episodes, the samplers that draw them, and episode files.

The sampled unit is a *labelled example*: anything that can say how many
mentions of each class it holds (``mentions``) and give a copy of itself
labelled for an episode (``for_episode``). Two kinds exist:

* ``TaggedSentence``: a sentence with one tag per token (NER); its
  mentions are entity spans.
* ``LabelledText``: a text with one label (intent classification); it
  holds exactly one mention, of its label.

So one greedy sampler serves both: on tagged sentences it is Few-NERD's
N-way K~2K-shot sampler, on labelled texts it gives classic N-way K-shot
episodes (a text adds exactly one mention, so every class stops at K).

Reproducibility: every sampler draws from its own ``random.Random(seed)``,
never from global state, and never iterates over a ``set`` of strings (whose
order changes with ``PYTHONHASHSEED``), so the same seed gives the same
episodes in every process and on every platform. The reference Few-NERD
sampler draws its types from ``list(set(...))`` and the global ``random``
module, so its episodes depend on the process's hash seed.

Taught in: chapter 2 (episodes and samplers); chapter 5.1 Preparing the data.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Protocol, TypeVar, Union

from .tags import SCHEMES, convert_tags, spans, spans_to_tags

__all__ = [
    "CLASS_SCHEME",
    "WNUT16_SPLIT",
    "ClassSampler",
    "CrossDatasetSampler",
    "Episode",
    "EpisodeFileError",
    "EpisodeSamplingError",
    "Example",
    "FewNERDSampler",
    "LabelledText",
    "TaggedSentence",
    "hold_out",
    "load_episodes",
    "save_episodes",
    "split_types",
]

#: The ``scheme`` of episodes over ``LabelledText`` (one label per example).
CLASS_SCHEME = "class"

_FILE_FORMAT = "metalearn_nlp.episodes"
_FILE_VERSION = 1
# How many times a sampler retries the greedy search for one episode's types
# before it reports that it is stuck.
_ATTEMPTS = 100

E = TypeVar("E", bound="Example")
T = TypeVar("T")


class Example(Protocol):
    """What a sampler needs from a labelled example."""

    def mentions(self, scheme: str) -> dict[str, int]:
        """Mentions per class when the example is labelled in ``scheme``."""
        ...

    def for_episode(self: E, types: Sequence[str], scheme: str) -> E:
        """A copy labelled for an episode over ``types`` in ``scheme``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        ...


@dataclass(frozen=True)
class TaggedSentence:
    """A sentence and its tags, one per token.

    Readers and corpora produce BIO tags; an episode's sentences carry tags in
    the episode's scheme. Lists are accepted and stored as tuples.

    Arguments:
        tokens: the words.
        tags: one tag per word.

    Raises:
        ValueError: no tokens, or token and tag counts differ.

    Example:
        >>> s = TaggedSentence(["Ada", "Lovelace", "wrote"], ["B-person", "I-person", "O"])
        >>> s.mentions("io")
        {'person': 1}

    Taught in: chapter 5.1 Preparing the data.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "tags", tuple(self.tags))
        if len(self.tokens) != len(self.tags):
            raise ValueError(
                f"TaggedSentence: {len(self.tokens)} tokens but {len(self.tags)} tags; "
                "every token needs exactly one tag"
            )
        if not self.tokens:
            raise ValueError("TaggedSentence: a sentence needs at least one token")

    def mentions(self, scheme: str = "io") -> dict[str, int]:
        """Entity mentions per type once the BIO tags are written in ``scheme``.

        In IO adjacent same-type entities merge, so they count as one mention,
        exactly as an IO episode will show them.

        Arguments:
            scheme: ``"io"``, ``"bio"`` or ``"bioes"``.

        Returns:
            ``{type: count}`` for the types present.

        Example:
            >>> TaggedSentence(["A", "B"], ["B-person", "B-person"]).mentions("io")
            {'person': 1}
        """
        counts: dict[str, int] = {}
        for span in spans(convert_tags(self.tags, "bio", scheme), scheme):
            counts[span.type] = counts.get(span.type, 0) + 1
        return counts

    def for_episode(self, types: Sequence[str], scheme: str) -> TaggedSentence:
        """The sentence with entities of other types relabelled ``O``, in ``scheme``.

        Arguments:
            types: the entity types to keep.
            scheme: the scheme of the returned tags.

        Returns:
            A new sentence with the same tokens.

        Example:
            >>> s = TaggedSentence(["Ada", "in", "Paris"], ["B-person", "O", "B-place"])
            >>> s.for_episode(["place"], "io").tags
            ('O', 'O', 'place')
        """
        keep = set(types)
        kept = [span for span in spans(self.tags, "bio") if span.type in keep]
        return TaggedSentence(self.tokens, spans_to_tags(kept, len(self.tags), scheme))

    def to_dict(self) -> dict[str, Any]:
        """``{"tokens": [...], "tags": [...]}``."""
        return {"tokens": list(self.tokens), "tags": list(self.tags)}


@dataclass(frozen=True)
class LabelledText:
    """A text with one class label, the unit of sentence-level few-shot tasks.

    Example:
        >>> LabelledText("wake me up at 7", "alarm").mentions(CLASS_SCHEME)
        {'alarm': 1}

    Taught in: chapter 2.
    """

    text: str
    label: str

    def mentions(self, scheme: str = CLASS_SCHEME) -> dict[str, int]:
        """One mention, of the label."""
        return {self.label: 1}

    def for_episode(self, types: Sequence[str], scheme: str = CLASS_SCHEME) -> LabelledText:
        """The example itself; raises ``ValueError`` when its label is not in ``types``."""
        if self.label not in types:
            raise ValueError(f"label {self.label!r} is not one of the episode's classes {list(types)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"text": ..., "label": ...}``."""
        return {"text": self.text, "label": self.label}


AnyExample = Union[TaggedSentence, LabelledText]


@dataclass(frozen=True)
class Episode:
    """One few-shot task: a support set to learn from, a query set to predict.

    Label ids are local to the episode and follow ``label_names``:

    * IO: ``["O", t1, t2, ...]`` (IO tags are bare type names);
    * BIO: ``["O", "B-t1", "I-t1", "B-t2", ...]``;
    * BIOES: ``["O", "B-t1", "I-t1", "E-t1", "S-t1", ...]``;
    * ``"class"`` (labelled texts): ``[t1, t2, ...]``, no ``O``.

    The order of ``types`` is the sampler's draw, so a type gets a different
    id in different episodes (a learner cannot memorise ids across tasks).

    Arguments:
        support: labelled examples, already in this episode's labels.
        query: labelled examples to predict.
        types: the episode's classes (N = ``len(types)``, the ways).
        scheme: ``"io"``, ``"bio"``, ``"bioes"`` (tagged sentences) or
            ``"class"`` (labelled texts).
        support_ids, query_ids: positions of the examples in the sampler's
            input list (``()`` when unknown), to trace an episode back to the corpus.

    Raises:
        ValueError: examples of the wrong kind, a tag or label outside
            ``label_names``, repeated types, or ids that do not match.

    Example:
        >>> ep = Episode([TaggedSentence(["Ada"], ["person"])], [TaggedSentence(["Bob"], ["person"])], ["person"], "io")
        >>> ep.label_names, ep.encode_tags(ep.query[0])
        (['O', 'person'], [1])

    Taught in: chapter 2.
    """

    support: tuple[AnyExample, ...]
    query: tuple[AnyExample, ...]
    types: tuple[str, ...]
    scheme: str = "io"
    support_ids: tuple[int, ...] = ()
    query_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("support", "query", "types", "support_ids", "query_ids"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.scheme not in (*SCHEMES, CLASS_SCHEME):
            raise ValueError(f"unknown episode scheme {self.scheme!r}: expected one of {(*SCHEMES, CLASS_SCHEME)}")
        if not self.types or len(set(self.types)) != len(self.types):
            raise ValueError(f"episode types must be non-empty and distinct, got {list(self.types)}")
        if self.scheme != CLASS_SCHEME and "O" in self.types:
            raise ValueError("'O' is not an entity type")
        kind = LabelledText if self.scheme == CLASS_SCHEME else TaggedSentence
        labels = self.label2id
        for part in ("support", "query"):
            examples = getattr(self, part)
            ids = getattr(self, f"{part}_ids")
            if ids and len(ids) != len(examples):
                raise ValueError(f"{len(ids)} {part}_ids for {len(examples)} {part} examples")
            for i, example in enumerate(examples):
                if not isinstance(example, kind):
                    raise ValueError(
                        f"{part}[{i}] is a {type(example).__name__}; {self.scheme!r} episodes hold {kind.__name__}s"
                    )
                found = [example.label] if isinstance(example, LabelledText) else example.tags
                unknown = [label for label in found if label not in labels]
                if unknown:
                    raise ValueError(
                        f"{part}[{i}] has labels {sorted(set(unknown))} outside this episode's "
                        f"{self.label_names}; relabel it with example.for_episode(types, scheme)"
                    )

    @property
    def ways(self) -> int:
        """N, the number of classes."""
        return len(self.types)

    @cached_property
    def label_names(self) -> list[str]:
        """Label names in id order (see the class docstring)."""
        if self.scheme == CLASS_SCHEME:
            return list(self.types)
        if self.scheme == "io":
            return ["O", *self.types]
        prefixes = "BI" if self.scheme == "bio" else "BIES"
        return ["O"] + [f"{prefix}-{type_}" for type_ in self.types for prefix in prefixes]

    @cached_property
    def label2id(self) -> dict[str, int]:
        """``{label name: id}``; ``O`` is 0 for tagging episodes."""
        return {name: i for i, name in enumerate(self.label_names)}

    def encode_tags(self, sentence: TaggedSentence) -> list[int]:
        """Label ids of a sentence whose tags are in this episode's scheme and types.

        Raises:
            ValueError: a tag is not one of ``label_names``.
        """
        try:
            return [self.label2id[tag] for tag in sentence.tags]
        except KeyError as error:
            raise ValueError(
                f"tag {error.args[0]!r} is not a label of this {self.scheme} episode "
                f"({self.label_names}); relabel with sentence.for_episode(episode.types, episode.scheme)"
            ) from None

    def encode_label(self, example: LabelledText) -> int:
        """The label id of a labelled text (``"class"`` episodes)."""
        if example.label not in self.label2id:
            raise ValueError(f"label {example.label!r} is not one of this episode's {self.label_names}")
        return self.label2id[example.label]

    def decode_tags(self, ids: Iterable[int]) -> list[str]:
        """Tags (in this episode's scheme) for predicted label ids."""
        return [self.label_names[i] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` restores an equal episode."""
        return {
            "types": list(self.types),
            "scheme": self.scheme,
            "support": [example.to_dict() for example in self.support],
            "query": [example.to_dict() for example in self.query],
            "support_ids": list(self.support_ids),
            "query_ids": list(self.query_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Episode:
        """Rebuild an episode from ``to_dict`` output."""
        scheme = data["scheme"]

        def build(item: Mapping[str, Any]) -> AnyExample:
            if scheme == CLASS_SCHEME:
                return LabelledText(item["text"], item["label"])
            return TaggedSentence(item["tokens"], item["tags"])

        return cls(
            support=tuple(build(item) for item in data["support"]),
            query=tuple(build(item) for item in data["query"]),
            types=tuple(data["types"]),
            scheme=scheme,
            support_ids=tuple(data.get("support_ids", ())),
            query_ids=tuple(data.get("query_ids", ())),
        )


class EpisodeSamplingError(ValueError):
    """The requested episodes cannot be sampled; the message lists every type and its count."""


def _count_table(counts: Mapping[str, int], unit: str) -> str:
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f"{unit} per type: " + ", ".join(f"{type_} {count:,}" for type_, count in rows)


class _Sampler:
    """Shared machinery: mention counts, per-type example indices, the seeded RNG."""

    _unit = "mentions"

    def __init__(self, examples: Iterable[AnyExample], *, scheme: str, seed: int, types: Sequence[str] | None) -> None:
        if scheme not in (*SCHEMES, CLASS_SCHEME):
            raise ValueError(f"unknown scheme {scheme!r}: expected one of {(*SCHEMES, CLASS_SCHEME)}")
        self.examples: list[AnyExample] = list(examples)
        self.scheme = scheme
        self.seed = seed
        self._rng = random.Random(seed)
        kind = LabelledText if scheme == CLASS_SCHEME else TaggedSentence
        self._counts: list[dict[str, int]] = []
        by_type: dict[str, list[int]] = {}
        for i, example in enumerate(self.examples):
            if not isinstance(example, kind):
                raise TypeError(
                    f"example {i} is a {type(example).__name__}; scheme {scheme!r} samples {kind.__name__}s"
                )
            try:
                counts = example.mentions(scheme)
            except ValueError as error:
                raise ValueError(
                    f"example {i}: {error}; samplers read BIO tags (load_corpus gives BIO; "
                    "convert IO data with convert_tags(tags, 'io', 'bio'))"
                ) from None
            self._counts.append(counts)
            for type_ in counts:
                by_type.setdefault(type_, []).append(i)
        self._by_type = by_type
        #: Mentions of every type in the examples, in the episode scheme.
        self.mention_counts: dict[str, int] = {
            type_: sum(self._counts[i][type_] for i in by_type[type_]) for type_ in sorted(by_type)
        }
        if types is None:
            self.types: list[str] = sorted(by_type)
        else:
            self.types = list(dict.fromkeys(types))
            missing = [type_ for type_ in self.types if type_ not in by_type]
            if missing:
                raise EpisodeSamplingError(
                    f"types {missing} do not occur in the {len(self.examples):,} examples; "
                    + _count_table(self.mention_counts, self._unit)
                )

    def sample(self) -> Episode:
        """Draw the next episode."""
        raise NotImplementedError

    def episodes(self, n: int) -> list[Episode]:
        """Draw the next ``n`` episodes."""
        return [self.sample() for _ in range(n)]

    def __iter__(self) -> Iterator[Episode]:
        """An endless stream of episodes."""
        while True:
            yield self.sample()

    @cached_property
    def data_sha256(self) -> str:
        """sha256 of the input examples (canonical JSON lines), to tie episodes to their data."""
        digest = hashlib.sha256()
        for example in self.examples:
            digest.update(_canonical_json(example.to_dict()).encode("utf-8") + b"\n")
        return digest.hexdigest()

    @property
    def settings(self) -> dict[str, Any]:
        """Everything needed to re-create this sampler's episodes (JSON-ready)."""
        return {
            "sampler": type(self).__name__,
            "scheme": self.scheme,
            "seed": self.seed,
            "types": list(self.types),
            "examples": len(self.examples),
            "data_sha256": self.data_sha256,
        }

    def _relabel(self, indices: Sequence[int], types: Sequence[str]) -> tuple[AnyExample, ...]:
        return tuple(self.examples[i].for_episode(types, self.scheme) for i in indices)


class FewNERDSampler(_Sampler):
    """Few-NERD's greedy N-way K~2K-shot episode sampler (Ding et al., 2021).

    For each episode: draw N types uniformly; then go through the sentences
    that mention at least one of them in random order and keep a sentence
    when (a) it adds a mention to a type that still has fewer than K and (b)
    no type would exceed 2K. Stop when every type has at least K. So each of
    the N types ends with between K and 2K mentions in the support set. The
    query set is drawn the same way, with Q~2Q, from the sentences not in the
    support set. Entities of other types in a chosen sentence are relabelled
    ``O`` (``other_types="relabel"``); ``other_types="exclude"`` instead
    skips such sentences, as the reference implementation
    (thunlp/Few-NERD ``util/fewshotsampler.py``) does.

    Mentions are counted in the episode's scheme: with IO, adjacent
    same-type entities are one mention, as the learner will see them.

    Going through a random permutation once is the same distribution as the
    reference's "draw, reject, repeat" loop (a rejected sentence can never
    become acceptable later, since counts only grow), but it ends: when the
    greedy search gets stuck (every sentence left would push a type past 2K)
    it retries, and after 100 attempts raises ``EpisodeSamplingError``
    instead of looping forever.

    Over ``LabelledText`` (scheme ``"class"``) every example is one
    mention, so the result is classic N-way K-shot (see ``ClassSampler``).

    Arguments:
        sentences: BIO-tagged sentences (or labelled texts with ``scheme="class"``).
        ways: N, types per episode.
        shots: K; the support set has K to 2K mentions of each type.
        query_shots: Q for the query set (default: K).
        scheme: tag scheme of the episodes: ``"io"`` (Few-NERD's), ``"bio"``, ``"bioes"``.
        seed: seed of this sampler's own ``random.Random``.
        types: the types to draw from (default: all types in ``sentences``).
        other_types: ``"relabel"`` (default) or ``"exclude"``, see above.

    Attributes:
        examples: the input list; ``episode.support_ids`` index into it.
        types: the types episodes are drawn from.
        mention_counts: mentions of every type in ``examples`` (episode scheme).
        settings: a JSON-ready dict of all the above, with the seed and a
            sha256 of the examples, for ``save_episodes``.

    Raises:
        EpisodeSamplingError: more ways than types, or a type with fewer
            than K + Q mentions; the message lists every type and its count.
            ``sample`` raises it too when the greedy search is stuck.

    Example:
        >>> corpus = [TaggedSentence([w], [f"B-{t}"]) for t in ("a", "b", "c") for w in "xyzw"]
        >>> episode = FewNERDSampler(corpus, ways=2, shots=1, seed=3).sample()
        >>> episode.ways, len(episode.support) >= 2
        (2, True)

    Taught in: chapter 2.
    """

    def __init__(
        self,
        sentences: Iterable[AnyExample],
        ways: int,
        shots: int,
        *,
        query_shots: int | None = None,
        scheme: str = "io",
        seed: int = 0,
        types: Sequence[str] | None = None,
        other_types: str = "relabel",
    ) -> None:
        super().__init__(sentences, scheme=scheme, seed=seed, types=types)
        query_shots = shots if query_shots is None else query_shots
        for name, value in (("ways", ways), ("shots", shots), ("query_shots", query_shots)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if other_types not in ("relabel", "exclude"):
            raise ValueError(f"other_types must be 'relabel' or 'exclude', got {other_types!r}")
        self.ways, self.shots, self.query_shots = ways, shots, query_shots
        self.other_types = other_types
        # Candidate lists per (sorted) type set, cached per sampler: building one is O(corpus).
        self._candidates = lru_cache(maxsize=256)(self._union)
        needed = shots + query_shots
        short = [type_ for type_ in self.types if self.mention_counts[type_] < needed]
        if ways > len(self.types) or short:
            problem = (
                f"only {len(self.types)} types are available"
                if ways > len(self.types)
                else f"types {short} have fewer than K + Q = {needed} {self._unit}"
            )
            available = {type_: self.mention_counts[type_] for type_ in self.types}
            raise EpisodeSamplingError(
                f"cannot sample {ways}-way {self._shots(shots)}-shot episodes "
                f"(query {self._shots(query_shots)}): {problem}.\n{_count_table(available, self._unit)}.\n"
                "Ask for fewer ways or shots, or pass types= to leave rare types out."
            )

    def _shots(self, k: int) -> str:
        return f"{k}~{2 * k}"

    @property
    def settings(self) -> dict[str, Any]:
        """The sampler's settings; shots are written ``"1~2"`` (K~2K)."""
        return {
            **super().settings,
            "ways": self.ways,
            "shots": self._shots(self.shots),
            "query_shots": self._shots(self.query_shots),
            "other_types": self.other_types,
        }

    def sample(self) -> Episode:
        """Draw the next episode (see the class docstring)."""
        types = self._rng.sample(self.types, self.ways)
        candidates = self._candidates(tuple(sorted(types)))
        for _ in range(_ATTEMPTS):
            support = self._greedy(candidates, types, self.shots, frozenset())
            if support is None:
                continue
            query = self._greedy(candidates, types, self.query_shots, frozenset(support))
            if query is not None:
                return Episode(
                    self._relabel(support, types),
                    self._relabel(query, types),
                    tuple(types),
                    self.scheme,
                    tuple(support),
                    tuple(query),
                )
        counts = {type_: self.mention_counts[type_] for type_ in types}
        raise EpisodeSamplingError(
            f"gave up after {_ATTEMPTS} attempts at a {self.ways}-way {self._shots(self.shots)}-shot episode "
            f"(query {self._shots(self.query_shots)}) over types {sorted(types)}: the greedy search kept "
            "getting stuck (every sentence left would push a type past 2K, or too few were left for the "
            f"query set). {_count_table(counts, self._unit)}. Use fewer shots or leave these types out with types=."
        )

    def _union(self, types: tuple[str, ...]) -> list[int]:
        """Indices of the examples that mention at least one of ``types`` (sorted), in a fixed order."""
        union = list(dict.fromkeys(chain.from_iterable(self._by_type[t] for t in types)))
        if self.other_types == "exclude":
            allowed = set(types)
            union = [i for i in union if self._counts[i].keys() <= allowed]
        return union

    def _greedy(self, candidates: list[int], types: Sequence[str], k: int, taken: frozenset[int]) -> list[int] | None:
        """One greedy pass over a random permutation of ``candidates``; ``None`` if stuck."""
        rng = self._rng
        pool = candidates.copy()
        n = len(pool)
        cap = 2 * k
        count = dict.fromkeys(types, 0)
        unfinished = len(types)
        chosen: list[int] = []
        for i in range(n):
            j = rng.randrange(i, n)  # lazy Fisher-Yates shuffle: only as far as needed
            pool[i], pool[j] = pool[j], pool[i]
            index = pool[i]
            if index in taken:
                continue
            mentions = [(t, m) for t, m in self._counts[index].items() if t in count]
            if any(count[t] + m > cap for t, m in mentions) or all(count[t] >= k for t, _ in mentions):
                continue
            for t, m in mentions:
                if count[t] < k <= count[t] + m:
                    unfinished -= 1
                count[t] += m
            chosen.append(index)
            if unfinished == 0:
                return chosen
        return None


class ClassSampler(FewNERDSampler):
    """Classic N-way K-shot episodes over labelled texts (intent classification).

    The same greedy machinery as ``FewNERDSampler``: each text is one
    mention of its label, so every class gets exactly K support and Q query
    examples, drawn uniformly without replacement.

    Arguments:
        examples: the labelled texts.
        ways: N, classes per episode.
        shots: K, support examples per class.
        query_shots: Q, query examples per class (default: K).
        seed: seed of this sampler's ``random.Random``.

    Raises:
        EpisodeSamplingError: more ways than classes, or a class with fewer
            than K + Q examples; the message lists every class and its count.

    Example:
        >>> data = [LabelledText(f"text {i}", label) for label in "abc" for i in range(4)]
        >>> episode = ClassSampler(data, ways=2, shots=1, query_shots=2).sample()
        >>> len(episode.support), len(episode.query), episode.label_names == list(episode.types)
        (2, 4, True)

    Taught in: chapter 2; the intent-classification chapter.
    """

    _unit = "examples"

    def __init__(
        self,
        examples: Iterable[LabelledText],
        ways: int,
        shots: int,
        query_shots: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(examples, ways, shots, query_shots=query_shots, scheme=CLASS_SCHEME, seed=seed)

    def _shots(self, k: int) -> str:
        return str(k)


class CrossDatasetSampler(_Sampler):
    """K-shot episodes over all of a corpus's types, in the style of Hou et al. (2020).

    Cross-dataset few-shot NER meta-trains on episodes of a *source* corpus's
    types and tests on episodes of a *target* corpus's types (e.g. CoNLL-2003
    -> WNUT-17): make one sampler per corpus.

    Support set ("minimum-including"): for each type in turn, add random
    sentences that mention it until it has at least K mentions; then drop,
    in the order they were added, every sentence whose removal leaves all
    types with at least K. The result has >= K mentions of every type and no
    sentence that could be left out. Query set: ``query_size`` sentences drawn
    uniformly from the sentences not in the support set, with or without
    entities. Entities of types outside ``types`` are relabelled ``O``.

    How it differs from ``FewNERDSampler``: the ways are fixed (every
    episode has all the corpus's types, in a fixed order), there is no 2K
    cap, so a frequent type can get many more than K mentions, and the query
    set is a plain random sample of sentences (it follows the corpus's own
    mix of types and entity-free sentences) rather than a Q~2Q set.

    Arguments:
        sentences: BIO-tagged sentences.
        shots: K, the minimum number of support mentions per type.
        query_size: query sentences per episode (20 by default, a choice of
            this package).
        scheme: tag scheme of the episodes.
        seed: seed of this sampler's ``random.Random``.
        types: the types to use (default: all types in ``sentences``).

    Raises:
        EpisodeSamplingError: a type has fewer than K mentions, or fewer than
            ``query_size`` sentences are left for the query set.

    Example:
        >>> corpus = [TaggedSentence([w], [f"B-{t}"]) for t in ("a", "b") for w in "xyz"]
        >>> episode = CrossDatasetSampler(corpus, shots=1, query_size=2).sample()
        >>> episode.types, len(episode.support), len(episode.query)
        (('a', 'b'), 2, 2)

    Taught in: chapter 2.
    """

    def __init__(
        self,
        sentences: Iterable[TaggedSentence],
        shots: int,
        *,
        query_size: int = 20,
        scheme: str = "io",
        seed: int = 0,
        types: Sequence[str] | None = None,
    ) -> None:
        super().__init__(sentences, scheme=scheme, seed=seed, types=types)
        for name, value in (("shots", shots), ("query_size", query_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.shots, self.query_size = shots, query_size
        short = [type_ for type_ in self.types if self.mention_counts[type_] < shots]
        if short:
            available = {type_: self.mention_counts[type_] for type_ in self.types}
            raise EpisodeSamplingError(
                f"cannot sample {shots}-shot episodes: types {short} have fewer than {shots} mentions.\n"
                f"{_count_table(available, 'mentions')}.\nAsk for fewer shots or pass types= to leave them out."
            )

    @property
    def ways(self) -> int:
        """N: every type, in every episode."""
        return len(self.types)

    @property
    def settings(self) -> dict[str, Any]:
        """The sampler's settings; shots are written ``">=K"``."""
        return {**super().settings, "ways": self.ways, "shots": f">={self.shots}", "query_size": self.query_size}

    def sample(self) -> Episode:
        """Draw the next episode (see the class docstring)."""
        rng, k = self._rng, self.shots
        count = dict.fromkeys(self.types, 0)
        support: list[int] = []
        taken: set[int] = set()
        for type_ in self.types:
            pool = self._by_type[type_].copy()
            i = 0
            while count[type_] < k:  # ends: the type has >= K mentions in all
                j = rng.randrange(i, len(pool))
                pool[i], pool[j] = pool[j], pool[i]
                index = pool[i]
                i += 1
                if index in taken:
                    continue
                support.append(index)
                taken.add(index)
                for t, m in self._counts[index].items():
                    if t in count:
                        count[t] += m
        for index in list(support):
            mentions = [(t, m) for t, m in self._counts[index].items() if t in count]
            if all(count[t] - m >= k for t, m in mentions):
                support.remove(index)
                taken.discard(index)
                for t, m in mentions:
                    count[t] -= m
        left = len(self.examples) - len(support)
        if left < self.query_size:
            raise EpisodeSamplingError(
                f"only {left} sentences are left after the support set, fewer than query_size={self.query_size}"
            )
        drawn = rng.sample(range(len(self.examples)), self.query_size + len(support))
        query = [index for index in drawn if index not in taken][: self.query_size]
        return Episode(
            self._relabel(support, self.types),
            self._relabel(query, self.types),
            tuple(self.types),
            self.scheme,
            tuple(support),
            tuple(query),
        )


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
        raise ValueError(f"types {missing} do not occur in the sentences; " + _count_table(counts, "mentions"))
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


class EpisodeFileError(ValueError):
    """An episode file is malformed or fails its checksum; ``.path`` names it."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def save_episodes(path: str | Path, episodes: Iterable[Episode], settings: Mapping[str, Any]) -> None:
    """Write episodes as JSON lines after a header with settings, seed, count and sha256.

    Line 1 is the header; each further line is one episode
    (``Episode.to_dict``) as canonical JSON (sorted keys, no spaces,
    UTF-8). The header's ``sha256`` covers the header's other fields (format,
    version, count, seed, settings) and the bytes of all episode lines, so an
    edit to either is detected, and the same episodes with the same settings
    give the same file, byte for byte.

    Arguments:
        path: the file to write.
        episodes: the episodes.
        settings: how they were made (JSON-ready; a sampler's ``.settings``);
            must contain ``"seed"``. Save the first episodes of a fresh
            sampler, so that the settings re-create them.

    Raises:
        ValueError: ``settings`` has no ``"seed"``.

    Example:
        >>> sampler = FewNERDSampler(sentences, ways=5, shots=1, seed=7)  # doctest: +SKIP
        >>> save_episodes("test_episodes.jsonl", sampler.episodes(1000), sampler.settings)  # doctest: +SKIP

    Taught in: chapter 2.
    """
    if "seed" not in settings:
        raise ValueError("settings must record the 'seed' the episodes were sampled with")
    body = "".join(_canonical_json(episode.to_dict()) + "\n" for episode in episodes).encode("utf-8")
    header: dict[str, Any] = {
        "format": _FILE_FORMAT,
        "version": _FILE_VERSION,
        "count": body.count(b"\n"),
        "seed": settings["seed"],
        "settings": dict(settings),
    }
    header["sha256"] = _file_digest(header, body)
    Path(path).write_bytes(_canonical_json(header).encode("utf-8") + b"\n" + body)


def _file_digest(header: Mapping[str, Any], body: bytes) -> str:
    """sha256 of the header (without its ``sha256`` field) as canonical JSON, a newline, then the body."""
    fields = {key: value for key, value in header.items() if key != "sha256"}
    return hashlib.sha256(_canonical_json(fields).encode("utf-8") + b"\n" + body).hexdigest()


def load_episodes(path: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """Read an episode file written by ``save_episodes``, verifying its sha256.

    Arguments:
        path: the file.

    Returns:
        ``(episodes, settings)``.

    Raises:
        EpisodeFileError: the header is missing or malformed, the checksum
            or the count does not match (the file was changed or truncated).

    Example:
        >>> episodes, settings = load_episodes("test_episodes.jsonl")  # doctest: +SKIP

    Taught in: chapter 2.
    """
    data = Path(path).read_bytes()
    first, _, body = data.partition(b"\n")
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or not {"format", "sha256", "count", "settings"} <= header.keys():
        raise EpisodeFileError(path, f"line 1: expected the JSON header written by save_episodes, got {first[:80]!r}")
    if header["format"] != _FILE_FORMAT or header.get("version") != _FILE_VERSION:
        raise EpisodeFileError(
            path, f"expected format {_FILE_FORMAT!r} version {_FILE_VERSION}, got {header['format']!r} "
            f"version {header.get('version')!r}"
        )
    digest = _file_digest(header, body)
    if digest != header["sha256"]:
        raise EpisodeFileError(
            path,
            f"sha256 mismatch: the header records {header['sha256']}, the settings and episode lines hash "
            f"to {digest}; the file was changed or truncated after save_episodes wrote it. Restore the "
            "original file or re-create it from its settings.",
        )
    lines = body.decode("utf-8").split("\n")[:-1] if body else []
    if len(lines) != header["count"]:
        raise EpisodeFileError(path, f"the header counts {header['count']} episodes, the file holds {len(lines)}")
    episodes = [Episode.from_dict(json.loads(line)) for line in lines]
    return episodes, header["settings"]
