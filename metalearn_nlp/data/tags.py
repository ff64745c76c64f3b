"""Tag schemes (IO, BIO, BIOES), entity spans, evaluation and subword alignment.

A tag sequence is a list of strings, one per word. Three schemes are supported:

``"bio"``
    ``O``, ``B-TYPE`` (first word of an entity), ``I-TYPE`` (any later word).
    Spans follow seqeval's default (lenient) rules: an ``I-TYPE`` that does
    not continue an entity of the same type starts a new one.
``"bioes"``
    ``B-`` / ``I-`` / ``E-`` (last word) / ``S-`` (single-word entity).
``"io"``
    ``O`` or the bare type name (``person``), the convention of Few-NERD's
    files. On input an ``I-`` prefix is accepted and dropped (``I-person`` is
    read as ``person``). IO has no way to mark where an entity starts, so
    **adjacent entities of the same type merge into one**: BIO
    ``B-person I-person B-person`` (two people) becomes IO
    ``person person person`` (one span of three words). Converting back to BIO
    cannot split them again. This is why episodes record their scheme and why
    ``entity_scores`` takes the scheme explicitly: score IO predictions
    against IO gold tags, never against the BIO tags the data came from.

Taught in: chapter 5.1 Preparing the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = [
    "SCHEMES",
    "EntityScores",
    "Span",
    "align_labels",
    "convert_tags",
    "count_entities",
    "entity_scores",
    "entity_types",
    "parse_tag",
    "repair_bio",
    "repaired_prefix",
    "spans",
    "spans_to_tags",
]

SCHEMES: tuple[str, ...] = ("io", "bio", "bioes")

_EXPECTED = {
    "io": "an IO tag ('O', a bare type such as 'person', or 'I-TYPE')",
    "bio": "a BIO tag ('O', 'B-TYPE' or 'I-TYPE')",
    "bioes": "a BIOES tag ('O', 'B-TYPE', 'I-TYPE', 'E-TYPE' or 'S-TYPE')",
}
_PREFIXES = {"io": "I", "bio": "BI", "bioes": "BIES"}
# Prefixes that may continue an open entity of the same type.
_CONTINUES = {"io": "I", "bio": "I", "bioes": "IE"}


class Span(NamedTuple):
    """An entity mention: its type and the word range ``[start, end)``.

    Example:
        >>> spans(["B-person", "I-person", "O"])
        [Span(type='person', start=0, end=2)]
    """

    type: str
    start: int
    end: int


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")


def parse_tag(tag: str, scheme: str = "bio") -> tuple[str, str]:
    """Split a tag into its prefix and entity type, checking it fits the scheme.

    Arguments:
        tag: one tag, e.g. ``"B-geo-loc"``; the type is everything after the
            first ``-``, so types may contain hyphens.
        scheme: ``"io"``, ``"bio"`` or ``"bioes"``.

    Returns:
        ``("O", "")`` for ``"O"``, otherwise ``(prefix, type)``; IO tags get
        the prefix ``"I"`` whether or not they were written with one.

    Raises:
        ValueError: the tag is not valid in ``scheme``; the message says what
            was expected.

    Example:
        >>> parse_tag("B-geo-loc")
        ('B', 'geo-loc')
        >>> parse_tag("person-actor", "io")
        ('I', 'person-actor')

    Taught in: chapter 5.1 Preparing the data.
    """
    _check_scheme(scheme)
    if tag == "O":
        return "O", ""
    head, dash, rest = tag.partition("-")
    has_prefix = len(head) == 1 and head in "BIES" and dash == "-"
    type_ = rest if has_prefix else tag
    if type_ == "" or type_ != type_.strip():
        raise ValueError(f"expected {_EXPECTED[scheme]}, got {tag!r}")
    if scheme == "io":
        if has_prefix and head != "I":
            raise ValueError(
                f"expected {_EXPECTED['io']}, got {tag!r}: IO has no {head}- prefix "
                "(is this BIO or BIOES data?)"
            )
        return "I", type_
    if has_prefix and head in _PREFIXES[scheme]:
        return head, type_
    raise ValueError(f"expected {_EXPECTED[scheme]}, got {tag!r}")


def spans(tags: Sequence[str], scheme: str = "bio") -> list[Span]:
    """Extract entity spans from a tag sequence.

    A span starts at ``B-``/``S-`` (or at an ``I-``/``E-`` that does not
    continue an open entity of the same type, as seqeval does) and ends before
    the first tag that does not continue it, or after ``E-``/``S-``. In IO a
    span is a maximal run of the same type.

    Arguments:
        tags: the tags of one sentence.
        scheme: the scheme the tags are written in.

    Returns:
        The spans in order, ``end`` exclusive.

    Raises:
        ValueError: a tag is not valid in ``scheme`` (the message gives its position).

    Example:
        >>> spans(["B-person", "I-person", "B-person", "O", "I-org"])
        [Span(type='person', start=0, end=2), Span(type='person', start=2, end=3), Span(type='org', start=4, end=5)]
        >>> spans(["person", "person", "person"], "io")  # adjacent entities merge in IO
        [Span(type='person', start=0, end=3)]

    Taught in: chapter 5.1 Preparing the data.
    """
    _check_scheme(scheme)
    continues = _CONTINUES[scheme]
    result: list[Span] = []
    open_type: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        try:
            prefix, type_ = parse_tag(tag, scheme)
        except ValueError as error:
            raise ValueError(f"tag {i}: {error}") from None
        if open_type is not None and not (prefix in continues and type_ == open_type):
            result.append(Span(open_type, start, i))
            open_type = None
        if prefix != "O" and open_type is None:
            open_type, start = type_, i
        if prefix in "ES":
            result.append(Span(type_, start, i + 1))
            open_type = None
    if open_type is not None:
        result.append(Span(open_type, start, len(tags)))
    return result


def spans_to_tags(entity_spans: Iterable[Span], length: int, scheme: str = "bio") -> list[str]:
    """Write spans as a tag sequence of ``length`` words in ``scheme``.

    Arguments:
        entity_spans: non-overlapping spans inside ``[0, length)``, in any order.
        length: number of words.
        scheme: the scheme to write.

    Returns:
        The tags. In IO, adjacent spans of the same type become one run.

    Raises:
        ValueError: a span is empty, out of range or overlaps another.

    Example:
        >>> spans_to_tags([Span("person", 0, 2)], 3, "bioes")
        ['B-person', 'E-person', 'O']

    Taught in: chapter 5.1 Preparing the data.
    """
    _check_scheme(scheme)
    tags = ["O"] * length
    for span in sorted(entity_spans, key=lambda s: s.start):
        if not 0 <= span.start < span.end <= length:
            raise ValueError(f"{span} is empty or outside a sentence of {length} words")
        if any(tag != "O" for tag in tags[span.start : span.end]):
            raise ValueError(f"{span} overlaps another span")
        width = span.end - span.start
        if scheme == "io":
            words = [span.type] * width
        elif scheme == "bio":
            words = [f"B-{span.type}"] + [f"I-{span.type}"] * (width - 1)
        elif width == 1:
            words = [f"S-{span.type}"]
        else:
            words = [f"B-{span.type}"] + [f"I-{span.type}"] * (width - 2) + [f"E-{span.type}"]
        tags[span.start : span.end] = words
    return tags


def convert_tags(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """Convert a tag sequence between the IO, BIO and BIOES schemes.

    The conversion goes through ``spans``, so it also normalises: a BIO
    ``I-`` that starts an entity comes out as ``B-``.

    * BIO/BIOES -> IO **merges adjacent entities of the same type** (IO cannot
      mark a boundary between them).
    * IO -> BIO/BIOES cannot split them again: each run becomes one entity.
    * BIO <-> BIOES is lossless.

    Arguments:
        tags: the tags of one sentence, written in ``src``.
        src: the scheme of ``tags``.
        dst: the scheme to produce.

    Returns:
        The converted tags, one per word.

    Example:
        >>> convert_tags(["B-person", "B-person", "O"], "bio", "io")
        ['person', 'person', 'O']
        >>> convert_tags(["person", "person", "O"], "io", "bio")
        ['B-person', 'I-person', 'O']

    Taught in: chapter 5.1 Preparing the data.
    """
    _check_scheme(dst)
    return spans_to_tags(spans(tags, src), len(tags), dst)


def repaired_prefix(prefix: str, type_: str, previous: tuple[str, str]) -> str:
    """The prefix a parsed BIO tag should have after the previous one: the one rule of BIO repair.

    An ``I-`` continues an entity when the previous tag is ``B-`` or ``I-`` of
    the same type; any other ``I-`` starts an entity and becomes ``B-``.
    ``repair_bio`` applies this rule to a sequence; ``read_conll`` applies it
    line by line, so that it can name the line of each repair.

    Arguments:
        prefix, type_: the tag, as ``parse_tag(tag, "bio")`` splits it.
        previous: ``(prefix, type)`` of the previous (already repaired) tag;
            ``("O", "")`` at the start of a sentence.

    Returns:
        ``"B"`` for an ``I`` that does not continue an entity, else ``prefix``.

    Example:
        >>> repaired_prefix("I", "org", ("I", "person")), repaired_prefix("I", "org", ("B", "org"))
        ('B', 'I')

    Taught in: chapter 5.1 Preparing the data.
    """
    if prefix == "I" and not (previous[0] != "O" and previous[1] == type_):
        return "B"
    return prefix


def repair_bio(tags: Sequence[str]) -> tuple[list[str], int]:
    """Rewrite every BIO ``I-TYPE`` that does not continue an entity as ``B-TYPE``.

    An ``I-`` continues an entity when the previous tag is ``B-`` or ``I-`` of
    the same type. Anything else (after ``O``, at the start of the sentence,
    after another type) is repaired. This is the reading seqeval applies
    silently; here the repairs are counted.

    Arguments:
        tags: BIO tags of one sentence.

    Returns:
        ``(repaired_tags, number_of_repairs)``.

    Example:
        >>> repair_bio(["O", "I-person", "I-org"])
        (['O', 'B-person', 'B-org'], 2)

    Taught in: chapter 5.1 Preparing the data.
    """
    repaired: list[str] = []
    count = 0
    previous = ("O", "")
    for tag in tags:
        prefix, type_ = parse_tag(tag, "bio")
        fixed = repaired_prefix(prefix, type_, previous)
        if fixed != prefix:
            tag, prefix = f"{fixed}-{type_}", fixed
            count += 1
        repaired.append(tag)
        previous = (prefix, type_)
    return repaired, count


def entity_types(tags: Iterable[str], scheme: str = "bio") -> list[str]:
    """The entity types used in a sequence of tags, sorted.

    Arguments:
        tags: tags (of one sentence or of a whole corpus, chained).
        scheme: the scheme of the tags.

    Returns:
        Sorted unique type names.

    Example:
        >>> entity_types(["B-person", "O", "I-org"])
        ['org', 'person']

    Taught in: chapter 5.1 Preparing the data.
    """
    return sorted({parse_tag(tag, scheme)[1] for tag in tags} - {""})


class EntityScores(NamedTuple):
    """Micro-averaged entity-level scores (exact span and type match), from entity counts.

    Attributes:
        precision, recall, f1: 0 when undefined.
        gold: gold entities (the support of seqeval's report).
        predicted: predicted entities.
        correct: exact matches.
    """

    precision: float
    recall: float
    f1: float
    gold: int
    predicted: int
    correct: int

    @classmethod
    def from_counts(cls, gold: int, predicted: int, correct: int) -> EntityScores:
        """Scores from the three counts."""
        precision = correct / predicted if predicted else 0.0
        recall = correct / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1, gold, predicted, correct)


def count_entities(
    gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]], scheme: str
) -> dict[str, tuple[int, int, int]]:
    """Per-type ``(gold, predicted, correct)`` entity counts over aligned sentences.

    The one entity matcher of the package: ``entity_scores`` and
    :func:`metalearn_nlp.evaluation.evaluate` both count with it. Entities
    are the ``spans`` of each sentence read in ``scheme`` (for BIO,
    seqeval's default mode: an ``I-`` that does not continue an entity
    starts one); an entity is correct when its type and span match exactly.

    Arguments:
        gold: gold tag sequences, one per sentence.
        predicted: predicted tag sequences, aligned with ``gold``.
        scheme: the scheme of both.

    Returns:
        ``{type: (gold, predicted, correct)}`` sorted by type, for every type
        found on either side.

    Raises:
        ValueError: an unknown scheme, different numbers of sentences or of
            tags in a sentence, or a tag that is not valid in ``scheme``.

    Example:
        >>> count_entities([["B-per", "I-per", "O"]], [["B-per", "O", "O"]], "bio")
        {'per': (1, 1, 0)}

    Taught in: chapter 5.1 Preparing the data; chapter 5.3 (evaluation).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: expected one of {SCHEMES}")
    gold, predicted = list(gold), list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones")
    counts: dict[str, list[int]] = {}
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")
        gold_spans, pred_spans = set(spans(g, scheme)), set(spans(p, scheme))
        for column, group in enumerate((gold_spans, pred_spans, gold_spans & pred_spans)):
            for span in group:
                counts.setdefault(span.type, [0, 0, 0])[column] += 1
    return {type_: (c[0], c[1], c[2]) for type_, c in sorted(counts.items())}


def entity_scores(
    gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]], *, scheme: str
) -> EntityScores:
    """Entity-level precision, recall and F1 over sentences, in one scheme.

    Both sides are read in the same ``scheme``: pass the scheme the episode
    was sampled with (``episode.scheme``). For BIO the result equals
    seqeval's default mode; in IO adjacent same-type entities are one entity
    on both sides. The counts are ``count_entities``'s, pooled over types
    (micro-averaging).

    Arguments:
        gold: gold tag sequences, one per sentence.
        predicted: predicted tag sequences, aligned with ``gold``.
        scheme: the scheme of both (keyword-only, so it is always stated).

    Returns:
        ``EntityScores``; precision / recall are 0 when undefined.

    Raises:
        ValueError: sentence counts or lengths differ.

    Example:
        >>> entity_scores([["B-person", "O"]], [["B-person", "O"]], scheme="bio").f1
        1.0

    Taught in: chapter 5.1 Preparing the data.
    """
    counts = count_entities(gold, predicted, scheme).values()
    return EntityScores.from_counts(*(sum(c[i] for c in counts) for i in range(3)))


def align_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    ignore_index: int = -100,
    label_all_subwords: bool = False,
) -> list[int]:
    """Spread word labels over subwords, from a fast tokenizer's ``word_ids()``.

    The first subword of each word carries the word's label; the other
    subwords, special tokens and padding (``word_id is None``) get
    ``ignore_index`` so the loss skips them.

    Arguments:
        word_ids: ``encoding.word_ids(i)``: for each subword position the index
            of its word, or ``None``.
        word_labels: one label id per word.
        ignore_index: the id the loss ignores (PyTorch's default is -100).
        label_all_subwords: copy the word's label id to every subword instead.
            The id is copied as is: with BIO a ``B-`` label is repeated on the
            later subwords.

    Returns:
        One label id per subword position.

    Example:
        >>> align_labels([None, 0, 0, 1, None], [3, 0])
        [-100, 3, -100, 0, -100]

    Taught in: chapter 5.1 Preparing the data.
    """
    labels: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None:
            labels.append(ignore_index)
        elif word != previous or label_all_subwords:
            labels.append(word_labels[word])
        else:
            labels.append(ignore_index)
        previous = word
    return labels
