"""Tag raw text with an adapted few-shot learner: words with offsets in, entities with offsets out.

A :class:`Tagger` adapts a :class:`~metalearn_nlp.learners.Learner` once to a
support set, then tags any number of texts (:meth:`Tagger.tag`) or word lists
(:meth:`Tagger.tag_words`), in length-sorted batches.

**Words.** :func:`split_words` cuts a text into words with a regular
expression; every word keeps its character offsets in the *original* string
(``text[w.start:w.end] == w.text``), so entities point back into the text the
user gave, whatever its spacing (tabs, newlines, no-break and ideographic
spaces). Whitespace is whatever ``str.isspace`` says. The rules, tried in order
at each position:

1. URLs (``http://``, ``https://``, ``www.``) up to the next space, trailing
   punctuation (``.,;:!?'")]}>``) split off;
2. e-mail addresses, ``@mentions`` and ``#hashtags`` (one word each, tweets);
3. letter-dot abbreviations of two letters or more stay whole (``U.S.``,
   ``e.g.``, ``i.e.``); other abbreviations (``Mr.``, ``etc.``) lose their dot,
   like a sentence end (``Paris.`` gives ``Paris`` and ``.``);
4. words: letters, digits, marks and ``_``, with *inner* apostrophes and
   hyphens kept (``don't``, ``O'Brien``, ``state-of-the-art`` are one word;
   ``'quoted'`` gives three) and inner ``.``, ``,``, ``:`` and ``/`` between
   digits (``3.5``, ``1,000``, ``10:30``, ``24/7``);
5. runs of dots, of ``!``/``?`` and of hyphens (``...``, ``?!``, ``--``);
6. anything else: one word per grapheme-like cluster (a character and the
   combining marks, skin tones, emoji tag characters and ZWJ-joined
   characters after it, or a flag's two regional indicators): each
   punctuation mark and symbol, each emoji, 👩‍👩‍👧 and 🇫🇷 included.

Combining marks stay with their letter (decomposed accents, Indic vowel
signs). One ``re`` pattern; its mark class is built from ``unicodedata``.

**Entities.** Tags come from ``predictor.predict`` (Viterbi for StructShot),
spans from :func:`metalearn_nlp.data.tags.spans`. An entity's ``score`` is
the **mean** over its words of the softmax probability (over
``predictor.label_names``) of the label predicted for the word: the same
average Hugging Face's ``aggregation_strategy="simple"`` reports, so the two
read alike; the minimum would flag a single doubtful word better but ranks
long entities below short ones.

**Truncation** is never silent: words beyond the encoder's ``max_length``
subwords are tagged ``O`` by the predictors, and :meth:`Tagger.tag` warns
(:class:`~metalearn_nlp.data.collate.TruncationWarning`) with the number of
texts and of words cut, once per call.

Taught in: chapter 5.4 (Training, evaluation and deployment).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .data.collate import TruncationWarning
from .data.episode import Episode, TaggedSentence
from .data.tags import SCHEMES, convert_tags, entity_types, spans

if TYPE_CHECKING:
    from .learners.base import Learner, Predictor

__all__ = ["PROGRESS_THRESHOLD", "Entity", "Tagger", "Word", "split_words"]

#: ``progress=None`` shows a progress bar when a call tags more texts than this.
PROGRESS_THRESHOLD = 256


def _mark_ranges() -> str:
    """A ``re`` character-class body for every combining mark (categories Mn, Mc, Me) of this Python's Unicode."""
    ranges, first = [], None
    for code in (*range(0x20000), *range(0xE0000, 0xE1000)):  # no mark lies elsewhere
        if unicodedata.category(chr(code))[0] == "M":
            first = code if first is None else first
        elif first is not None:
            ranges.append(f"\\U{first:08x}-\\U{code - 1:08x}")
            first = None
    return "".join(ranges)


_WS = r"\s\x1c-\x1f"  # whitespace as str.isspace() says (re's \s misses the four information separators)
_MARK = _mark_ranges()
_W = rf"[\w{_MARK}]"  # a word character: re's \w (letters, digits, _) or a combining mark
_L = r"[^\W\d_]"  # a letter
# what glues to the character before it in a grapheme cluster: marks (variation selectors included),
# ZWJ, emoji skin tones, emoji tag characters (subdivision flags)
_EXTEND = rf"[{_MARK}\u200d\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]"
_WORDS = re.compile(
    rf"""
      (?:https?://|www\.)[^{_WS}]+?(?=[.,;:!?'")\]}}>]*(?:[{_WS}]|$))   # URL, trailing punctuation split off
    | [\w.+-]+@\w+(?:[.-]\w+)*\.\w+                                 # e-mail
    | [@\#]{_W}+                                                   # @mention, #hashtag
    | (?<!{_W})(?:{_L}\.){{2,}}(?!{_W})                              # U.S., e.g.
    | {_W}+(?:(?:['\u2019-]|(?<=\d)[.,:/](?=\d)){_W}+)*             # word, inner ' - kept; 3.5 1,000
    | \.{{2,}} | [!?]{{2,}} | -{{2,}}                                 # ... ?! --
    | (?:[\U0001F1E6-\U0001F1FF]{{2}}|[^{_WS}])(?:\u200d[^{_WS}]|{_EXTEND})*   # other: one grapheme-like cluster
    """,
    re.VERBOSE,
)
_SPACE = re.compile(rf"[{_WS}]")


class Word(NamedTuple):
    """A word of a text and where it is: ``text[start:end] == word.text``."""

    text: str
    start: int
    end: int


class Entity(NamedTuple):
    """An entity found in a text.

    Attributes:
        type: the entity type (one of the tagger's ``types``).
        start, end: character offsets in the original text, ``end`` exclusive.
        text: ``original[start:end]``, the whitespace between its words included.
        score: in [0, 1], the mean over its words of the probability of each
            word's predicted label (see the module docstring).
        words: ``(first, end)`` word indices, ``end`` exclusive: into
            ``split_words(text)`` for ``Tagger.tag``, into the given word
            list for ``Tagger.tag_words``.
    """

    type: str
    start: int
    end: int
    text: str
    score: float
    words: tuple[int, int]


def split_words(text: str) -> list[Word]:
    """Cut a raw text into words with their character offsets (rules: the module docstring).

    Arguments:
        text: any string.

    Returns:
        The words in order; non-empty, non-overlapping, free of whitespace,
        and together covering every non-whitespace character of ``text``.

    Example:
        >>> [w.text for w in split_words("Paris,\\tthe U.S. and don't 🇫🇷!")]
        ['Paris', ',', 'the', 'U.S.', 'and', "don't", '🇫🇷', '!']
        >>> split_words("Ada\\u00a0Lovelace.")[1]
        Word(text='Lovelace', start=4, end=12)
    """
    return [Word(m.group(), m.start(), m.end()) for m in _WORDS.finditer(text)]


def _source_scheme(tags: Sequence[str]) -> str:
    """The scheme tags are written in: BIOES if any ``E-``/``S-``, BIO if any ``B-``, otherwise IO."""
    prefixes = {tag[:2] for tag in tags}
    if prefixes & {"E-", "S-"}:
        return "bioes"
    return "bio" if "B-" in prefixes else "io"


def _support_episode(support: Episode | Sequence[TaggedSentence], types: Sequence[str] | None,
                     scheme: str | None) -> Episode:
    if isinstance(support, Episode):
        if (types is not None and tuple(types) != support.types) or (scheme is not None and scheme != support.scheme):
            raise ValueError(f"the support Episode has types {list(support.types)} and scheme {support.scheme!r}; "
                             "leave types= and scheme= out, or pass its sentences instead")
        return support
    sentences = list(support)
    if not sentences or not all(isinstance(s, TaggedSentence) for s in sentences):
        raise TypeError("support must be an Episode or a non-empty sequence of TaggedSentence")
    source = _source_scheme([tag for s in sentences for tag in s.tags])
    bio = [TaggedSentence(s.tokens, convert_tags(s.tags, source, "bio")) for s in sentences]
    types = tuple(types) if types is not None else tuple(entity_types((t for s in bio for t in s.tags), "bio"))
    if not types:
        raise ValueError("the support sentences hold no entity: pass types= or tag some entities")
    scheme = scheme or source
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: expected one of {SCHEMES}")
    return Episode([s.for_episode(types, scheme) for s in bio], [], types, scheme)


class Tagger:
    """A learner adapted once to a support set, tagging raw texts or word lists.

    Arguments:
        learner: a :class:`~metalearn_nlp.learners.Learner` (meta-trained or not).
        support: an ``Episode`` (its query set is ignored) or tagged sentences
            in IO, BIO or BIOES (told apart by their prefixes).
        types: the entity types to find (default: those of the support
            sentences, sorted); not with an ``Episode``.
        scheme: the episode scheme (default: the support tags' own scheme;
            IO for bare type names); not with an ``Episode``.
        batch_size: texts per call to the predictor.
        progress: show a tqdm bar: ``None`` when a call has more than
            ``PROGRESS_THRESHOLD`` texts, or ``True``/``False``.

    Attributes:
        learner, episode (the support episode), predictor, types, scheme, batch_size, progress.

    Raises:
        TypeError, ValueError: the support set is unusable; the learner's
            ``EpisodeMismatchError`` when it does not fit the learner.

    Example:
        >>> tagger = Tagger(get_learner("protonet"), support)  # doctest: +SKIP
        >>> tagger.tag(["Ada Lovelace met Babbage.", ""])  # doctest: +SKIP
        [[Entity(type='person', start=0, end=12, text='Ada Lovelace', score=0.91, words=(0, 2)), ...], []]

    Taught in: chapter 5.4 (Training, evaluation and deployment).
    """

    def __init__(self, learner: Learner, support: Episode | Sequence[TaggedSentence], *,
                 types: Sequence[str] | None = None, scheme: str | None = None, batch_size: int = 32,
                 progress: bool | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.learner = learner
        self.episode = _support_episode(support, types, scheme)
        self.types, self.scheme = self.episode.types, self.episode.scheme
        self.batch_size, self.progress = batch_size, progress
        self.predictor: Predictor = learner.adapt(Episode(self.episode.support, [], self.types, self.scheme))

    @classmethod
    def from_pretrained(cls, directory: str | Path, support: Episode | Sequence[TaggedSentence],
                        *, device: Any = None, **kw: Any) -> Tagger:
        """A tagger around a learner saved with ``metalearn_nlp.saving`` (``load_learner(directory)``).

        Arguments:
            directory: the folder the learner was saved to.
            support, **kw: as for ``Tagger``.
            device: passed to ``load_learner``.

        Example:
            >>> Tagger.from_pretrained("runs/protonet", support).tag("Ada met Alan")  # doctest: +SKIP
        """
        from .saving import load_learner

        return cls(load_learner(directory, device=device), support, **kw)

    def __repr__(self) -> str:
        return f"Tagger({type(self.learner).__name__}, types={list(self.types)}, scheme={self.scheme!r})"

    def tag(self, texts: str | Sequence[str]) -> list[Entity] | list[list[Entity]]:
        """Entities in raw texts, with character offsets into each text.

        Arguments:
            texts: one string, or a sequence of strings.

        Returns:
            For one string its list of entities; for a sequence one list per
            text, in order. Empty and whitespace-only texts give ``[]``.

        Warns:
            TruncationWarning: texts were longer than the encoder's
                ``max_length`` subwords; their cut words were tagged ``O``.

        Example:
            >>> tagger.tag("Ada Lovelace met Babbage in London.")  # doctest: +SKIP
            [Entity(type='person', start=0, end=12, text='Ada Lovelace', score=0.93, words=(0, 2)), ...]
        """
        if isinstance(texts, str):
            return self._entities([texts], [split_words(texts)])[0]
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, not a str (word lists go to tag_words)")
        words = [split_words(text) for text in texts]
        return self._entities(texts, words)

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[Entity]]:
        """Entities in pre-tokenised sentences (e.g. read from a CoNLL file), one list per sentence.

        There is no original text here, so ``start``/``end``/``text`` refer to
        the sentence's words joined by single spaces (``" ".join(words)``);
        ``Entity.words`` gives the word range ``[first, end)`` in the given list.

        Arguments:
            sentences: word lists (``TaggedSentence`` objects are accepted;
                their tags are ignored). Words must be non-empty and hold no whitespace.

        Returns:
            One list of entities per sentence; an empty sentence gives ``[]``.

        Example:
            >>> tagger.tag_words([["Ada", "met", "Alan"]])  # doctest: +SKIP
            [[Entity(type='person', start=0, end=3, text='Ada', score=0.9, words=(0, 1)), ...]]
        """
        texts, words = [], []
        for i, sentence in enumerate(sentences):
            tokens = list(sentence.tokens if isinstance(sentence, TaggedSentence) else sentence)
            if isinstance(sentence, str) or any(not isinstance(t, str) or not t or _SPACE.search(t) for t in tokens):
                raise ValueError(f"sentence {i}: expected a list of non-empty words without whitespace, "
                                 f"got {sentence!r}")
            offsets, start = [], 0
            for token in tokens:
                offsets.append(Word(token, start, start + len(token)))
                start += len(token) + 1
            texts.append(" ".join(tokens))
            words.append(offsets)
        return self._entities(texts, words)

    # -- the work -----------------------------------------------------------------------------
    def _show_progress(self, n: int) -> bool:
        return n > PROGRESS_THRESHOLD if self.progress is None else bool(self.progress)

    def _entities(self, texts: list[str], words: list[list[Word]]) -> list[list[Entity]]:
        out: list[list[Entity]] = [[] for _ in texts]
        # longest first, so each batch holds texts of similar length (little padding); results go back in order
        todo = sorted((i for i, w in enumerate(words) if w), key=lambda i: -(words[i][-1].end - words[i][0].start))
        bar = None
        if self._show_progress(len(texts)):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="tagging", unit="text")
            bar.update(len(texts) - len(todo))
        cut_texts = cut_words = 0
        inner: list[warnings.WarningMessage] = []
        try:
            for b in range(0, len(todo), self.batch_size):
                chunk = todo[b : b + self.batch_size]
                tokens = [[w.text for w in words[i]] for i in chunk]
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    tags, probs = self._predict(tokens)
                for w in caught:  # the predictor's per-batch truncation warnings become one summary below
                    if issubclass(w.category, TruncationWarning):
                        inner.append(w)
                    else:
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
                lost = self._words_lost(tokens)
                cut_texts += sum(n > 0 for n in lost)
                cut_words += sum(lost)
                for i, sentence_tags, p in zip(chunk, tags, probs):
                    out[i] = self._spans(texts[i], words[i], sentence_tags, p)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if cut_texts:
            limit = self.learner.encoder.max_length
            warnings.warn(f"{cut_texts} of {len(texts)} texts were longer than max_length={limit} subwords: "
                          f"their last {cut_words} words in all were tagged O without being read; split long "
                          "texts into sentences", TruncationWarning, stacklevel=3)
        elif inner:  # the predictor cut something our count missed: pass its own words on
            warnings.warn("; ".join(str(w.message) for w in inner), TruncationWarning, stacklevel=3)
        return out

    def _predict(self, tokens: list[list[str]]) -> tuple[list[list[str]], list[list[float]]]:
        """Tags and the probability of each tag, from one forward pass when the predictor allows it."""
        import torch

        sentences = [TaggedSentence(t, ["O"] * len(t)) for t in tokens]
        predictor = self.predictor
        logits = predictor.logits(sentences)
        names = predictor.label_names
        lengths = [len(t) for t in tokens]
        scores = torch.cat([row.float().cpu() for row in logits])  # one op per batch, not per sentence
        if type(predictor).predict is _base_predict():
            ids = scores.argmax(-1)
            tags = _unflatten([names[j] for j in ids.tolist()], lengths)
        else:  # e.g. Viterbi: decode with predict, fed the logits already computed
            proxy = copy.copy(predictor)
            original = type(predictor).logits
            proxy.logits = lambda s: logits if s is sentences else original(proxy, s)  # type: ignore[method-assign]
            tags = proxy.predict(sentences)
            index = {name: j for j, name in enumerate(names)}
            ids = torch.tensor([index[t] for row in tags for t in row], dtype=torch.long)
        chosen = torch.softmax(scores, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
        return tags, _unflatten(chosen.nan_to_num(0.0).clamp(0.0, 1.0).tolist(), lengths)

    def _words_lost(self, tokens: list[list[str]]) -> list[int]:
        """Words per sentence cut at the encoder's ``max_length``, as ``collate`` cuts them (tokenising only
        sentences that might be too long: no tokenizer makes more subwords of a word than its UTF-8 bytes + 1)."""
        encoder = self.learner.encoder
        limit, tokenizer = encoder.max_length, encoder.tokenizer
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        lost = [0] * len(tokens)
        suspects = [i for i, words in enumerate(tokens)
                    if specials + sum(len(w.encode("utf-8")) + 1 for w in words) > limit]
        if not suspects:
            return lost
        encoding = tokenizer([tokens[i] for i in suspects], is_split_into_words=True, truncation=True,
                             max_length=limit)
        for row, i in enumerate(suspects):
            if len(encoding["input_ids"][row]) >= limit:
                kept = max((w for w in encoding.word_ids(row) if w is not None), default=-1) + 1
                lost[i] = len(tokens[i]) - kept
        return lost

    def _spans(self, text: str, words: list[Word], tags: list[str], probs: list[float]) -> list[Entity]:
        entities = []
        for span in spans(tags, self.scheme):
            start, end = words[span.start].start, words[span.end - 1].end
            score = math.fsum(probs[span.start : span.end]) / (span.end - span.start)
            entities.append(Entity(span.type, start, end, text[start:end], min(max(score, 0.0), 1.0),
                                   (span.start, span.end)))
        return entities


def _unflatten(flat: list[Any], lengths: list[int]) -> list[list[Any]]:
    ends = list(itertools.accumulate(lengths))
    return [flat[end - n : end] for n, end in zip(lengths, ends)]


def _base_predict() -> Any:
    from .learners.base import Predictor

    return Predictor.predict
