"""A frozen encoder that remembers its outputs: run the transformer once per sentence.

A learner on a *frozen* encoder (ProtoNet or NNShot without meta-training, a
linear head on fixed features) embeds the same sentence again in every
episode that draws it. :class:`CachedEncoder` wraps an
:class:`~metalearn_nlp.encoders.Encoder` and keeps each tokenized sentence's
last hidden states, so every later episode that draws the sentence reads them
back instead of running the transformer. The word vectors are the same as the
wrapped encoder's (up to float rounding from the batch's padding), so any
learner that reads the encoder through ``encode`` / ``embed_words`` /
``hidden_states`` works unchanged, and experiments that evaluate many
learners, shots or perturbations on the same sentences cost one forward pass
per distinct sentence.

The transformer must be frozen: it runs under ``torch.no_grad`` and a cached
output would silently ignore weight updates. The one thing that may learn is
an optional linear map on top of the cached states (``project=True``,
initialised to the identity): meta-training it with the package's
``meta_train`` costs a matrix product per step instead of a transformer's
forward and backward pass, which makes data-size sweeps of a (small)
meta-learned component affordable on a CPU.

Taught in: chapter 8 (Trends and challenges, measured).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .data.collate import Batch
from .encoders import Encoder, eval_mode

__all__ = ["CachedEncoder"]


class CachedEncoder(Encoder):
    """An :class:`Encoder` whose ``hidden_states`` are cached per tokenized sentence.

    Arguments:
        encoder: the encoder to wrap; its model must be frozen (no parameter
            with ``requires_grad``): freeze it with ``load_encoder(freeze="all")``
            or ``encoder.freeze("all")``.
        project (bool, default False): add a trainable ``H x H`` linear map
            (no bias, identity at the start) applied to the cached states.

    Attributes:
        hits, misses: sentences read from the cache / computed so far.
        projection: the linear map, or None.

    Raises:
        ValueError: the encoder has trainable parameters.

    Example:
        >>> cached = CachedEncoder(load_encoder(freeze="all"))  # doctest: +SKIP
        >>> report = evaluate(ProtoNet(cached), episodes)  # doctest: +SKIP
        >>> cached.misses  # distinct sentences embedded  # doctest: +SKIP

    Taught in: chapter 8 (Trends and challenges, measured).
    """

    def __init__(self, encoder: Encoder, *, project: bool = False) -> None:
        trainable = [n for n, p in encoder.model.named_parameters() if p.requires_grad]
        if trainable:
            raise ValueError(
                f"CachedEncoder needs a frozen encoder, but {len(trainable)} parameters are trainable "
                f"(e.g. {trainable[0]!r}): load it with load_encoder(freeze='all') or call encoder.freeze('all')"
            )
        super().__init__(encoder.model, encoder.tokenizer, name=encoder.name, pooling=encoder.pooling,
                         max_length=encoder.max_length)
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.projection: nn.Linear | None = None
        if project:
            self.projection = nn.Linear(self.hidden_size, self.hidden_size, bias=False)
            with torch.no_grad():
                self.projection.weight.copy_(torch.eye(self.hidden_size))
            self.projection.to(self.device)

    def clear(self) -> None:
        """Forget every cached sentence (and reset the counters)."""
        self._cache.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """``(B, T, H)`` last hidden states (cached), then the projection if there is one."""
        states = self._cached_states(batch)
        return states if self.projection is None else self.projection(states)

    @torch.no_grad()
    def _cached_states(self, batch: Batch) -> torch.Tensor:
        """``(B, T, H)`` last hidden states; cached rows are read, the others computed in one pass."""
        ids = batch.input_ids.cpu()
        lengths = batch.attention_mask.sum(1).cpu().tolist()
        keys = [tuple(ids[row, :length].tolist()) for row, length in enumerate(lengths)]
        missing = sorted({k for k in keys if k not in self._cache}, key=keys.index)
        if missing:
            width = max(len(k) for k in missing)
            pad = self.tokenizer.pad_token_id or 0
            input_ids = torch.full((len(missing), width), pad, dtype=torch.long)
            mask = torch.zeros((len(missing), width), dtype=torch.long)
            for row, key in enumerate(missing):
                input_ids[row, : len(key)] = torch.tensor(key)
                mask[row, : len(key)] = 1
            with eval_mode(self.model):  # cached states are the deterministic ones: no dropout noise kept for good
                hidden = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=mask.to(self.device)).last_hidden_state
            for row, key in enumerate(missing):
                self._cache[key] = hidden[row, : len(key)].detach()
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        first = self._cache[keys[0]]
        out = first.new_zeros((len(keys), ids.shape[1], first.shape[-1]))
        for row, key in enumerate(keys):
            out[row, : len(key)] = self._cache[key]
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, cached={len(self._cache)}, project={self.projection is not None}"

    def clone(self) -> Any:
        """Refused: a clone is meant to be trained, and a cache would hide its updates."""
        raise TypeError("CachedEncoder cannot be cloned for training; clone the wrapped encoder before caching it")
