"""Episode samplers: Few-NERD's N-way K~2K-shot, classic N-way K-shot, cross-dataset K-shot.

Samplers draw episodes (:mod:`metalearn_nlp.data.episode`) from labelled
examples. One greedy sampler serves both kinds of example: on tagged
sentences it is Few-NERD's N-way K~2K-shot sampler (``FewNERDSampler``), on
labelled texts it gives classic N-way K-shot episodes (``ClassSampler``: a
text adds exactly one mention, so every class stops at K).
``CrossDatasetSampler`` gives K-shot episodes over all of a corpus's types,
for cross-dataset few-shot NER.

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
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property, lru_cache
from itertools import chain
from typing import Any

from .episode import CLASS_SCHEME, AnyExample, Episode, LabelledText, TaggedSentence
from .files import canonical_json
from .tags import SCHEMES

__all__ = ["ClassSampler", "CrossDatasetSampler", "EpisodeSamplingError", "FewNERDSampler"]

# How many times a sampler retries the greedy search for one episode's types
# before it reports that it is stuck.
_ATTEMPTS = 100


class EpisodeSamplingError(ValueError):
    """The requested episodes cannot be sampled; the message lists every type and its count."""


def count_table(counts: Mapping[str, int], unit: str) -> str:
    """``"<unit> per type: a 12, b 3"``, most frequent first: the table every sampling error shows.

    Example:
        >>> count_table({"b": 3, "a": 12}, "mentions")
        'mentions per type: a 12, b 3'
    """
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
                    + count_table(self.mention_counts, self._unit)
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

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position (its RNG state, JSON-ready), for resuming training where it stopped.

        Example:
            >>> sampler = FewNERDSampler(sentences, ways=2, shots=1, seed=0)  # doctest: +SKIP
            >>> state = sampler.state_dict(); first = sampler.sample()  # doctest: +SKIP
            >>> sampler.load_state_dict(state); sampler.sample() == first  # doctest: +SKIP
            True
        """
        version, internal, gauss = self._rng.getstate()
        return {"sampler": type(self).__name__, "seed": self.seed, "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a position from :meth:`state_dict` (of a sampler of the same class)."""
        if state.get("sampler") != type(self).__name__:
            raise ValueError(f"a {state.get('sampler')} state cannot be loaded into a {type(self).__name__}")
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))

    @cached_property
    def data_sha256(self) -> str:
        """sha256 of the input examples (canonical JSON lines), to tie episodes to their data."""
        digest = hashlib.sha256()
        for example in self.examples:
            digest.update(canonical_json(example.to_dict()).encode("utf-8") + b"\n")
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
    (thunlp/Few-NERD ``util/fewshotsampler.py``) does. When that leaves too
    few sentences for the drawn types (a type with fewer than K + Q mentions
    in the sentences that mention no other type), the types are drawn again,
    as the reference redraws types that have no candidate sentence; after
    100 draws ``sample`` raises ``EpisodeSamplingError``.

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
            than K + Q mentions (with ``other_types="exclude"``: in the
            sentences it can ever use, those that mention at most N types,
            all of them among ``types``); the message lists every type and
            its count. ``sample`` raises it too when the greedy search is
            stuck, or (exclude) when no drawn set of types has enough sentences.

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
        self._enough = lru_cache(maxsize=256)(self._has_enough)
        needed = shots + query_shots
        exclude = other_types == "exclude"
        available = self._usable_counts() if exclude else {t: self.mention_counts[t] for t in self.types}
        unit = f"{self._unit} in usable sentences" if exclude else self._unit
        short = [type_ for type_ in self.types if available[type_] < needed]
        if ways > len(self.types) or short:
            problem = f"types {short} have fewer than K + Q = {needed} {self._unit}" + (
                f" in the sentences other_types='exclude' can use (those that mention at most {ways} types, "
                "all of them among the sampler's types)" if exclude else ""
            )
            if ways > len(self.types):
                problem = f"only {len(self.types)} types are available"
            raise EpisodeSamplingError(
                f"cannot sample {ways}-way {self._shots(shots)}-shot episodes "
                f"(query {self._shots(query_shots)}): {problem}.\n{count_table(available, unit)}.\n"
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
        types, candidates = self._draw_types()
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
            f"query set). {count_table(counts, self._unit)}. Use fewer shots or leave these types out with types=."
        )

    def _draw_types(self) -> tuple[list[str], list[int]]:
        """N types and their candidate sentences; in exclude mode, types without enough candidates are redrawn."""
        for _ in range(_ATTEMPTS):
            types = self._rng.sample(self.types, self.ways)
            key = tuple(sorted(types))
            if self.other_types == "relabel" or self._enough(key):  # relabel: the __init__ check suffices
                return types, self._candidates(key)
        raise EpisodeSamplingError(
            f"drew {_ATTEMPTS} type sets for a {self.ways}-way {self._shots(self.shots)}-shot episode "
            f"(query {self._shots(self.query_shots)}), and in each a type had fewer than K + Q = "
            f"{self.shots + self.query_shots} {self._unit} in the sentences that mention no other type, which "
            f"other_types='exclude' requires (the last draw: {sorted(types)}). Use other_types='relabel', fewer "
            "ways or shots, or leave types out with types=."
        )

    def _has_enough(self, types: tuple[str, ...]) -> bool:
        """Whether the candidates of ``types`` hold K + Q mentions of each (a necessary condition)."""
        totals = self._totals(self._candidates(types))
        return all(totals[type_] >= self.shots + self.query_shots for type_ in types)

    def _usable_counts(self) -> dict[str, int]:
        """Mentions per type in the examples exclude mode can ever use: at most N types, all in ``types``."""
        allowed = set(self.types)
        return self._totals(i for i, c in enumerate(self._counts) if len(c) <= self.ways and c.keys() <= allowed)

    def _totals(self, indices: Iterable[int]) -> dict[str, int]:
        """Mentions of each of ``types`` in the examples at ``indices``."""
        totals = dict.fromkeys(self.types, 0)
        for index in indices:
            for type_, m in self._counts[index].items():
                if type_ in totals:
                    totals[type_] += m
        return totals

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
                f"{count_table(available, 'mentions')}.\nAsk for fewer shots or pass types= to leave them out."
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
