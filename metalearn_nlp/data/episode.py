"""Labelled examples and few-shot episodes: what samplers draw and learners read.

The sampled unit is a *labelled example* (the :class:`Example` protocol):
anything that can say how many mentions of each class it holds
(``mentions``) and give a copy of itself labelled for an episode
(``for_episode``). Two kinds exist:

* ``TaggedSentence``: a sentence with one tag per token (NER); its
  mentions are entity spans.
* ``LabelledText``: a text with one label (intent classification); it
  holds exactly one mention, of its label.

An :class:`Episode` is one few-shot task over such examples: a support set,
a query set, its types and its scheme, with episode-local label ids.

The samplers that draw episodes are in :mod:`metalearn_nlp.data.samplers`,
type-disjoint splits in :mod:`metalearn_nlp.data.splits`, and episode files
in :mod:`metalearn_nlp.data.files`.

Taught in: chapter 2 (episodes); chapter 5.1 Preparing the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, TypeVar, Union

from .tags import SCHEMES, convert_tags, spans, spans_to_tags

__all__ = ["CLASS_SCHEME", "AnyExample", "Episode", "Example", "LabelledText", "TaggedSentence"]

#: The ``scheme`` of episodes over ``LabelledText`` (one label per example).
CLASS_SCHEME = "class"

E = TypeVar("E", bound="Example")


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
