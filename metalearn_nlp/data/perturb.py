"""Input perturbations for tagged sentences: entity swaps, case changes, typos.

Each function takes a :class:`~metalearn_nlp.data.episode.TaggedSentence` and
returns a new one whose tags stay aligned with its tokens, so a perturbed
sentence can go anywhere a clean one can (an episode, a training batch):

* :func:`replace_mentions` swaps each entity mention for another mention of the
  same type drawn from a pool (:func:`mention_pool` builds one from a corpus);
  the tags are rebuilt for the new mention lengths. Used as a robustness test
  (does the learner rely on memorised names?) and as data augmentation
  ("mention replacement").
* :func:`change_case` lower-, upper- or title-cases every token, or picks one
  of those per token at random. Tags are unchanged.
* :func:`add_typos` makes one character edit (swap, deletion, insertion or a
  keyboard-neighbour substitution) in a fraction of the words. Tags are
  unchanged.
* :func:`perturb_episode` applies any of these to an episode's query (and/or
  support) sentences.

Every random choice comes from the ``random.Random`` passed in, so a seeded
generator gives the same output on every run and platform.

Taught in: chapter 8.2 Interpretability and robustness; chapter 9 (data
augmentation).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

from .episode import Episode, TaggedSentence
from .tags import SCHEMES, Span, spans, spans_to_tags

__all__ = [
    "CASE_MODES",
    "TYPO_EDITS",
    "add_typos",
    "change_case",
    "mention_pool",
    "perturb_episode",
    "replace_mentions",
]

#: The modes :func:`change_case` accepts.
CASE_MODES: tuple[str, ...] = ("lower", "upper", "title", "random")
#: The character edits :func:`add_typos` draws from.
TYPO_EDITS: tuple[str, ...] = ("swap", "delete", "insert", "substitute")

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# Letters next to each letter on a QWERTY keyboard (same row and the rows above/below).
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_KEYBOARD_ROWS):
    for _c, _ch in enumerate(_row):
        _near = []
        for _dr in (-1, 0, 1):
            if 0 <= _r + _dr < len(_KEYBOARD_ROWS):
                _other = _KEYBOARD_ROWS[_r + _dr]
                _near += [_other[j] for j in range(_c - 1, _c + 2) if 0 <= j < len(_other)]
        _NEIGHBOURS[_ch] = "".join(sorted(set(_near) - {_ch}))


def _check_sentence(sentence: object, name: str = "sentence") -> None:
    if not isinstance(sentence, TaggedSentence):
        raise TypeError(f"{name} must be a TaggedSentence, got {type(sentence).__name__}")


def _check_rng(rng: object) -> None:
    if not isinstance(rng, random.Random):
        raise TypeError(
            f"rng must be a random.Random (e.g. random.Random(0)), got {type(rng).__name__}"
        )


def _check_probability(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")


def mention_pool(
    sentences: Iterable[TaggedSentence], scheme: str = "bio"
) -> dict[str, list[tuple[str, ...]]]:
    """Every mention's tokens, by type (sorted, deduplicated, deterministic order).

    Arguments:
        sentences: tagged sentences whose tags are written in ``scheme``.
        scheme: ``"io"``, ``"bio"`` or ``"bioes"``.

    Returns:
        ``{type: [mention tokens, ...]}`` with types and mentions sorted, so the
        pool does not depend on the order of ``sentences``.

    Raises:
        ValueError: unknown scheme, or a tag not valid in ``scheme`` (the
            message gives the sentence and tag position).
        TypeError: an item is not a ``TaggedSentence``.

    Example:
        >>> s = TaggedSentence(["Ada", "Lovelace", "met", "Babbage"],
        ...                    ["B-person", "I-person", "O", "B-person"])
        >>> mention_pool([s])
        {'person': [('Ada', 'Lovelace'), ('Babbage',)]}

    Taught in: chapter 8.2 Interpretability and robustness.
    """
    _check_scheme(scheme)
    pool: dict[str, set[tuple[str, ...]]] = {}
    for i, sentence in enumerate(sentences):
        _check_sentence(sentence, f"sentences[{i}]")
        try:
            found = spans(sentence.tags, scheme)
        except ValueError as error:
            raise ValueError(f"sentences[{i}]: {error}") from None
        for span in found:
            pool.setdefault(span.type, set()).add(sentence.tokens[span.start : span.end])
    return {type_: sorted(pool[type_]) for type_ in sorted(pool)}


def replace_mentions(
    sentence: TaggedSentence,
    pool: Mapping[str, Sequence[tuple[str, ...]]],
    rng: random.Random,
    *,
    probability: float = 1.0,
    scheme: str = "bio",
) -> TaggedSentence:
    """Each mention replaced (with this probability) by a random other mention of the same type.

    Mentions are replaced left to right; for each, one ``rng.random()`` draw
    decides whether to replace it and one ``rng.choice`` picks the new
    mention among the pool's mentions of that type *other than* the current
    one. A mention whose type has no other mention in the pool is kept. The
    tags are rebuilt in ``scheme`` for the new lengths (in IO, adjacent
    mentions of one type stay merged, as they were).

    Arguments:
        sentence: the sentence, tags in ``scheme``.
        pool: mentions by type, e.g. from :func:`mention_pool`.
        rng: the random generator (seed it for reproducible output).
        probability: chance that each mention is replaced, in ``[0, 1]``.
        scheme: the sentence's tag scheme.

    Returns:
        A new ``TaggedSentence``; the sequence of mention types is unchanged.

    Raises:
        TypeError: ``sentence`` or ``rng`` has the wrong type.
        ValueError: ``probability`` outside ``[0, 1]``, unknown scheme, a tag
            not valid in ``scheme``, or an empty mention in ``pool``.

    Example:
        >>> s = TaggedSentence(["Ada", "spoke"], ["B-person", "O"])
        >>> pool = {"person": [("Ada",), ("Grace", "Hopper")]}
        >>> replace_mentions(s, pool, random.Random(0)).tokens
        ('Grace', 'Hopper', 'spoke')

    Taught in: chapter 8.2 Interpretability and robustness.
    """
    _check_sentence(sentence)
    _check_rng(rng)
    _check_probability(probability, "probability")
    _check_scheme(scheme)
    tokens: list[str] = []
    new_spans: list[Span] = []
    cursor = 0
    for span in spans(sentence.tags, scheme):
        tokens.extend(sentence.tokens[cursor : span.start])
        mention = tuple(sentence.tokens[span.start : span.end])
        if rng.random() < probability:
            others = [tuple(m) for m in pool.get(span.type, ()) if tuple(m) != mention]
            if any(len(m) == 0 for m in others):
                raise ValueError(f"pool[{span.type!r}] holds an empty mention; every mention needs a token")
            if others:
                mention = rng.choice(others)
        new_spans.append(Span(span.type, len(tokens), len(tokens) + len(mention)))
        tokens.extend(mention)
        cursor = span.end
    tokens.extend(sentence.tokens[cursor:])
    return TaggedSentence(tokens, spans_to_tags(new_spans, len(tokens), scheme))


def _case(token: str, mode: str) -> str:
    if mode == "lower":
        return token.lower()
    if mode == "upper":
        return token.upper()
    return token[:1].upper() + token[1:].lower()  # "title": only the first character is upper-cased


def change_case(sentence: TaggedSentence, rng: random.Random, *, mode: str = "lower") -> TaggedSentence:
    """Change the case of every token; tags unchanged.

    Arguments:
        sentence: the sentence.
        rng: the random generator; only ``mode="random"`` draws from it.
        mode: ``"lower"``, ``"upper"``, ``"title"`` (first character upper,
            the rest lower) or ``"random"`` (each token gets one of the three,
            drawn independently).

    Returns:
        A new ``TaggedSentence`` with the same tags.

    Raises:
        TypeError: ``sentence`` or ``rng`` has the wrong type.
        ValueError: unknown ``mode``.

    Example:
        >>> s = TaggedSentence(["Ada", "spoke"], ["B-person", "O"])
        >>> change_case(s, random.Random(0), mode="upper").tokens
        ('ADA', 'SPOKE')

    Taught in: chapter 8.2 Interpretability and robustness.
    """
    _check_sentence(sentence)
    _check_rng(rng)
    if mode not in CASE_MODES:
        raise ValueError(f"unknown case mode {mode!r}: expected one of {', '.join(CASE_MODES)}")
    modes = ("lower", "upper", "title")
    tokens = [_case(t, rng.choice(modes) if mode == "random" else mode) for t in sentence.tokens]
    return TaggedSentence(tokens, sentence.tags)


def _typo(word: str, rng: random.Random) -> str:
    """One character edit of ``word`` at a letter; the result differs from ``word``."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    edits = ["insert", "substitute"]
    swaps = [i for i in range(len(word) - 1) if word[i] != word[i + 1] and (i in letters or i + 1 in letters)]
    if swaps:
        edits.append("swap")
    if len(word) >= 2:
        edits.append("delete")
    edit = rng.choice(sorted(edits, key=TYPO_EDITS.index))
    if edit == "swap":
        i = rng.choice(swaps)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    i = rng.choice(letters)
    if edit == "delete":
        return word[:i] + word[i + 1 :]
    near = _NEIGHBOURS.get(word[i].lower(), "")
    if not near:  # a non-ASCII letter: use any other ASCII letter
        near = "".join(ch for ch in "abcdefghijklmnopqrstuvwxyz" if ch != word[i].lower())
    new = rng.choice(near)
    new = new.upper() if word[i].isupper() else new
    if edit == "insert":
        return word[:i] + new + word[i:]
    return word[:i] + new + word[i + 1 :]


def add_typos(sentence: TaggedSentence, rng: random.Random, *, rate: float) -> TaggedSentence:
    """Character-level edits within words; tags unchanged.

    Each token that contains a letter gets, with probability ``rate``, one
    edit at a letter: swap it with its neighbour, delete it, insert a
    keyboard-neighbour letter before it, or substitute a keyboard-neighbour
    letter for it (case kept). An edit never empties a token and always
    changes it. Tokens without letters (punctuation, numbers, emoji) are left
    alone.

    Arguments:
        sentence: the sentence.
        rng: the random generator.
        rate: chance that each eligible token gets a typo, in ``[0, 1]``.

    Returns:
        A new ``TaggedSentence`` with the same number of tokens and the same tags.

    Raises:
        TypeError: ``sentence`` or ``rng`` has the wrong type.
        ValueError: ``rate`` outside ``[0, 1]``.

    Example:
        >>> s = TaggedSentence(["Ada", "spoke"], ["B-person", "O"])
        >>> noisy = add_typos(s, random.Random(0), rate=1.0)
        >>> [a != b for a, b in zip(noisy.tokens, s.tokens)]
        [True, True]

    Taught in: chapter 8.2 Interpretability and robustness.
    """
    _check_sentence(sentence)
    _check_rng(rng)
    _check_probability(rate, "rate")
    tokens = []
    for token in sentence.tokens:
        if any(ch.isalpha() for ch in token) and rng.random() < rate:
            token = _typo(token, rng)
        tokens.append(token)
    return TaggedSentence(tokens, sentence.tags)


def perturb_episode(
    episode: Episode,
    transform: Callable[[TaggedSentence], TaggedSentence],
    *,
    query: bool = True,
    support: bool = False,
) -> Episode:
    """Apply ``transform`` to an episode's query and/or support sentences.

    Arguments:
        episode: an NER episode (``TaggedSentence`` examples).
        transform: sentence -> sentence, e.g.
            ``lambda s: add_typos(s, rng, rate=0.2)``; for
            :func:`replace_mentions` pass ``scheme=episode.scheme``.
        query: perturb the query sentences (test-time noise).
        support: perturb the support sentences.

    Returns:
        A new ``Episode`` with the same types, scheme and ids.

    Raises:
        TypeError: the episode holds labelled texts, not tagged sentences, or
            ``transform`` returned something else.
        ValueError: neither ``query`` nor ``support`` is set.

    Example:
        >>> s = TaggedSentence(["Ada", "spoke"], ["person", "O"])
        >>> ep = Episode(support=(s,), query=(s,), types=("person",), scheme="io")
        >>> perturb_episode(ep, lambda x: change_case(x, random.Random(0), mode="upper")).query[0].tokens
        ('ADA', 'SPOKE')

    Taught in: chapter 8.2 Interpretability and robustness.
    """
    if not (query or support):
        raise ValueError("perturb_episode: set query=True and/or support=True, or there is nothing to perturb")

    def apply(examples: Sequence[object], part: str) -> tuple[TaggedSentence, ...]:
        out = []
        for i, example in enumerate(examples):
            _check_sentence(example, f"episode.{part}[{i}]")
            new = transform(example)  # type: ignore[arg-type]
            _check_sentence(new, f"transform(episode.{part}[{i}])")
            out.append(new)
        return tuple(out)

    changes = {}
    if query:
        changes["query"] = apply(episode.query, "query")
    if support:
        changes["support"] = apply(episode.support, "support")
    return dataclasses.replace(episode, **changes)
