"""Word-shape features: what an uncased encoder cannot see.

The default encoder (MiniLM, uncased) lower-cases its input, so ``Paris``
and ``paris`` get the same subwords and the same vector. Capitalisation is
one of the strongest cues for a name. This module restores it with a small,
learned **word-shape embedding**: each word gets one of a few shape classes
(:data:`SHAPES`, computed from its raw characters by :func:`word_shape`),
the class indexes an ``nn.Embedding(len(SHAPES), dim)``, and the result is
concatenated to the word's encoder vector. A metric learner (ProtoNet,
NNShot, the decomposed learner) then measures distances in the longer
vector: two words of the same shape are ``0`` apart in the shape part, two
words of different shapes ``||e_a - e_b||^2`` apart, and meta-training
learns how much that counts.

Opt-in everywhere: learners take ``shape_dim=0`` by default (no feature).

Taught in: chapter 5.5 (better few-shot NER).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SHAPES", "ShapeEmbedding", "shape_ids", "word_shape"]

#: The shape classes, in id order.
SHAPES: tuple[str, ...] = (
    "lower",        # paris
    "capitalised",  # Paris
    "upper",        # NASA
    "mixed",        # iPhone, McDonald
    "digits",       # 2026
    "alphanumeric", # B52, 3rd
    "mention",      # @user (tweets)
    "hashtag",      # #topic
    "url",          # http://..., www....
    "punctuation",  # , . !
    "other",        # emoji, symbols, non-Latin scripts without case
)
_ID = {name: i for i, name in enumerate(SHAPES)}
_URL = re.compile(r"^(https?://|www\.)", re.IGNORECASE)


def word_shape(token: str) -> str:
    """The shape class of one raw token (one of :data:`SHAPES`).

    Arguments:
        token: the word as written (case preserved).

    Returns:
        A name in ``SHAPES``.

    Raises:
        TypeError: ``token`` is not a string.

    Example:
        >>> [word_shape(t) for t in ["Paris", "paris", "NASA", "iPhone", "2026", "@bob", "#nlp", ","]]
        ['capitalised', 'lower', 'upper', 'mixed', 'digits', 'mention', 'hashtag', 'punctuation']

    Taught in: chapter 5.5.
    """
    if not isinstance(token, str):
        raise TypeError(f"word_shape expects a string token, got {type(token).__name__}")
    if len(token) > 1 and token[0] == "@":
        return "mention"
    if len(token) > 1 and token[0] == "#":
        return "hashtag"
    if _URL.match(token):
        return "url"
    letters = [c for c in token if c.isalpha()]
    cased = [c for c in letters if c.isupper() or c.islower()]
    has_digit = any(c.isdigit() for c in token)
    if not letters:
        if has_digit:
            return "digits"
        if token and all(not c.isalnum() and c.isascii() for c in token):
            return "punctuation"
        return "other"
    if has_digit:
        return "alphanumeric"
    if not cased:
        return "other"
    if all(c.islower() for c in cased):
        return "lower"
    if all(c.isupper() for c in cased):
        return "upper" if len(cased) > 1 else "capitalised"
    if cased[0].isupper() and all(c.islower() for c in cased[1:]):
        return "capitalised"
    return "mixed"


def shape_ids(tokens: Sequence[str]) -> list[int]:
    """Shape ids (indices into :data:`SHAPES`) of a sentence's tokens.

    Example:
        >>> shape_ids(["Ada", "wrote"])
        [1, 0]
    """
    return [_ID[word_shape(token)] for token in tokens]


class ShapeEmbedding(nn.Module):
    """A learned embedding of word shapes, concatenated to word vectors.

    Arguments:
        dim (int): the width of the shape vector (> 0).
        scale (float, default 1.0): standard deviation of the initial
            embedding. Squared distances between two different shapes start
            near ``2 * dim * scale**2``; meta-training then tunes them.
        seed (int, default 0): seeds the initial embedding without touching
            the global random state (the same learner config gives the same
            start).

    Raises:
        ValueError: ``dim < 1`` or ``scale <= 0``.

    Example:
        >>> shapes = ShapeEmbedding(8)
        >>> words = encoder.encode(sentences)  # doctest: +SKIP
        >>> words = shapes.augment(words, sentences)  # vectors gain 8 columns  # doctest: +SKIP

    Taught in: chapter 5.5.
    """

    def __init__(self, dim: int, *, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"ShapeEmbedding: dim must be a positive integer, got {dim!r}")
        if scale <= 0:
            raise ValueError(f"ShapeEmbedding: scale must be positive, got {scale!r}")
        generator = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.embedding = torch.nn.utils.skip_init(nn.Embedding, len(SHAPES), dim)  # no global draw
        with torch.no_grad():
            self.embedding.weight.copy_(torch.randn(len(SHAPES), dim, generator=generator) * scale)

    def extra_repr(self) -> str:
        return f"shapes={len(SHAPES)}, dim={self.dim}"

    def vectors(self, tokens: Sequence[Sequence[str]], sentence: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Shape vectors of the words at ``(sentence[i], position[i])``: ``(n, dim)``.

        Raises:
            IndexError: a position outside its sentence.
        """
        ids = [shape_ids(words) for words in tokens]
        flat = []
        for s, p in zip(sentence.tolist(), position.tolist()):
            if not 0 <= p < len(ids[s]):
                raise IndexError(f"ShapeEmbedding: word {p} of sentence {s}, which has {len(ids[s])} words")
            flat.append(ids[s][p])
        index = torch.tensor(flat, dtype=torch.long, device=self.embedding.weight.device)
        return self.embedding(index)

    def augment(self, words, sentences: Sequence) -> object:
        """``words`` (``WordVectors``) with the shape vectors concatenated to its vectors.

        Arguments:
            words: ``WordVectors`` from ``Encoder.encode(sentences)``.
            sentences: the same sentences (``TaggedSentence`` or token lists), in the same order.
        """
        tokens = [getattr(s, "tokens", s) for s in sentences]
        extra = self.vectors(tokens, words.sentence, words.position)
        vectors = torch.cat([words.vectors, extra.to(words.vectors.device, words.vectors.dtype)], dim=-1)
        return dataclasses.replace(words, vectors=vectors)
