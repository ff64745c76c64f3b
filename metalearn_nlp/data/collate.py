"""Turn tagged sentences into model inputs with any fast tokenizer.

Words are split into subwords; the first subword of a word carries the
word's label and the rest get -100 (ignored by the loss). Sentences longer
than ``max_length`` subwords are truncated, and what truncation costs is
reported, never hidden: the ``TruncationReport`` counts the sentences
cut, the words and the entities lost, and a ``TruncationWarning`` says
so. A truncated word keeps its gold label in ``word_labels`` with
``word_index == -1``, so an evaluation counts its entity as missed.

A word the tokenizer turns into no subword at all (e.g. a lone U+FE0F
variation selector after an emoji) would silently vanish; it is fed as the
tokenizer's unknown token instead and counted in ``report.unknown_words``.

Taught in: chapter 5.1 Preparing the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .episode import Episode, TaggedSentence
from .tags import align_labels, spans

if TYPE_CHECKING:
    import torch

__all__ = ["Batch", "TruncationReport", "TruncationWarning", "collate"]

IGNORE_INDEX = -100


class TruncationWarning(UserWarning):
    """Sentences were cut at ``max_length``; words and entities were lost."""


@dataclass(frozen=True)
class TruncationReport:
    """What collating a batch cut off or replaced.

    Attributes:
        sentences: sentences in the batch.
        max_length: the subword limit (special tokens included).
        truncated: batch positions of the sentences that were cut.
        words_lost: words with no subword left after truncation.
        entities_lost: gold entities with at least one word lost.
        unknown_words: words the tokenizer maps to no subword, fed as its unknown token.
    """

    sentences: int
    max_length: int
    truncated: tuple[int, ...] = ()
    words_lost: int = 0
    entities_lost: int = 0
    unknown_words: int = 0

    def __str__(self) -> str:
        text = (
            f"{len(self.truncated)} of {self.sentences} sentences truncated at max_length={self.max_length}: "
            f"{self.words_lost} words and {self.entities_lost} entities lost"
        )
        if self.unknown_words:
            text += f"; {self.unknown_words} words with no subword fed as the unknown token"
        return text


@dataclass(frozen=True)
class Batch:
    """Tensors for a batch of tagged sentences.

    Attributes:
        input_ids, attention_mask: the tokenizer's output, ``(B, T)``.
        labels: ``(B, T)`` label id on the first subword of each word, -100
            on other subwords, special tokens and padding.
        word_index: ``(B, W)`` position of each word's first subword, -1 for
            words lost to truncation and for padding (``W`` = longest sentence
            in words); gather word embeddings with it.
        word_labels: ``(B, W)`` label id of every word (truncated ones
            included), -100 for padding.
        report: the ``TruncationReport``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    word_index: torch.Tensor
    word_labels: torch.Tensor
    report: TruncationReport

    def to(self, device: Any) -> Batch:
        """The batch with its tensors on ``device``."""
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            labels=self.labels.to(device),
            word_index=self.word_index.to(device),
            word_labels=self.word_labels.to(device),
        )


def collate(
    sentences: Sequence[TaggedSentence],
    tokenizer: Any,
    label2id: Mapping[str, int] | Episode,
    *,
    max_length: int = 128,
    scheme: str | None = None,
) -> Batch:
    """Tokenize tagged sentences and align their labels to subwords.

    Arguments:
        sentences: the sentences (an episode's support or query set).
        tokenizer: a *fast* Hugging Face tokenizer (it must provide
            ``word_ids()``), cased or uncased.
        label2id: a ``{tag: id}`` mapping, or an ``Episode`` (its
            ``encode_tags`` and scheme are used).
        max_length: most subwords per sentence, special tokens included.
        scheme: the tag scheme when ``label2id`` is a mapping (default
            ``"bio"``), used to count lost entities; an episode brings its own.

    Returns:
        A ``Batch``.

    Raises:
        TypeError: the tokenizer is not a fast one.
        ValueError: a tag has no id, or ``scheme`` contradicts the episode.

    Warns:
        TruncationWarning: when a sentence was cut, with the counts.

    Example:
        >>> batch = collate(episode.support, tokenizer, episode)  # doctest: +SKIP
        >>> batch.labels.shape == batch.input_ids.shape  # doctest: +SKIP
        True

    Taught in: chapter 5.1 Preparing the data.
    """
    import torch

    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"collate needs a fast tokenizer (one with word_ids()), got {type(tokenizer).__name__}; "
            "load it with AutoTokenizer.from_pretrained(name) (fast by default)"
        )
    if not sentences:
        raise ValueError("collate needs at least one sentence")
    if isinstance(label2id, Episode):
        if scheme is not None and scheme != label2id.scheme:
            raise ValueError(f"scheme={scheme!r} contradicts the episode's scheme {label2id.scheme!r}")
        scheme, encode = label2id.scheme, label2id.encode_tags
    else:
        scheme = scheme or "bio"
        mapping = label2id

        def encode(sentence: TaggedSentence) -> list[int]:
            missing = sorted({tag for tag in sentence.tags if tag not in mapping})
            if missing:
                raise ValueError(f"tags {missing} have no id in the label mapping {dict(mapping)}")
            return [mapping[tag] for tag in sentence.tags]

    words = [list(sentence.tokens) for sentence in sentences]
    vocabulary = list(dict.fromkeys(word for sentence in words for word in sentence))
    pieces = tokenizer([[word] for word in vocabulary], is_split_into_words=True, add_special_tokens=False)
    empty = {word for word, ids in zip(vocabulary, pieces["input_ids"]) if not ids}
    unknown_words = 0
    if empty:
        if tokenizer.unk_token is None:
            raise ValueError(f"words {sorted(empty)} have no subword and the tokenizer has no unknown token")
        unknown_words = sum(word in empty for sentence in words for word in sentence)
        words = [[tokenizer.unk_token if word in empty else word for word in sentence] for sentence in words]

    # Python lists, not return_tensors="pt": the tokenizer would build its tensors on torch's *default*
    # device. Every tensor of a batch is built on the CPU, explicitly; Encoder.hidden_states moves it.
    encoding = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length, padding=True)
    width = max((len(sentence) for sentence in words), default=0)
    label_rows: list[list[int]] = []
    word_index = torch.full((len(words), width), -1, dtype=torch.long, device="cpu")
    word_labels = torch.full((len(words), width), IGNORE_INDEX, dtype=torch.long, device="cpu")
    truncated: list[int] = []
    words_lost = entities_lost = 0
    for row, sentence in enumerate(sentences):
        ids = encode(sentence)
        word_ids = encoding.word_ids(row)
        label_rows.append(align_labels(word_ids, ids, IGNORE_INDEX))
        first: dict[int, int] = {}
        for position, word in enumerate(word_ids):
            if word is not None and word not in first:
                first[word] = position
        for word, position in first.items():
            word_index[row, word] = position
        word_labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long, device="cpu")
        lost = len(ids) - len(first)
        if lost:
            truncated.append(row)
            words_lost += lost
            entities_lost += sum(
                any(w not in first for w in range(span.start, span.end)) for span in spans(sentence.tags, scheme)
            )
    report = TruncationReport(len(words), max_length, tuple(truncated), words_lost, entities_lost, unknown_words)
    if truncated:
        warnings.warn(str(report), TruncationWarning, stacklevel=2)
    return Batch(
        input_ids=torch.tensor(encoding["input_ids"], dtype=torch.long, device="cpu"),
        attention_mask=torch.tensor(encoding["attention_mask"], dtype=torch.long, device="cpu"),
        labels=torch.tensor(label_rows, dtype=torch.long, device="cpu"),
        word_index=word_index,
        word_labels=word_labels,
        report=report,
    )
