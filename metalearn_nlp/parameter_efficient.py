"""Parameter-efficient meta-learning: LoRA adapters on the encoder, and what is left trainable.

Meta-training every weight of a 22.7M-parameter encoder on a few hundred
episodes is an invitation to overfit. The parameter-efficient remedy trains
far fewer numbers: freeze the pretrained weights and learn a small
correction. LoRA (Hu et al., 2022) replaces a weight matrix ``W`` (``d_out x
d_in``) by ``W + (alpha / r) B A`` with ``A`` (``r x d_in``) and ``B``
(``d_out x r``) trainable, ``r`` small and ``B`` initialised to zero, so the
adapted encoder starts exactly where the pretrained one is. With ``r = 8`` on
the query and value projections of a 384-wide layer that is
``2 * 2 * 8 * 384 = 12,288`` numbers per layer instead of about 1.8M.

The adapters come from Hugging Face's ``peft`` (an optional extra of this
package: ``pip install "metalearn-nlp[peft]"``). :func:`add_lora` injects
them into ``Encoder.model`` *in place* (``peft.inject_adapter_in_model``),
so the model keeps its class and every learner that holds the encoder uses
the adapted model without knowing it; every other weight is frozen.
:func:`trainable_report` says what is left to train.

The other parameter-efficient remedy, freezing the bottom layers, is
:func:`metalearn_nlp.encoders.freeze_encoder`.

Taught in: chapter 9 (FAQ: overfitting remedies, measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["PeftMissingError", "TrainableReport", "add_lora", "trainable_report"]

_EXTRA_HINT = 'install the optional extra: pip install "metalearn-nlp[peft]" (or pip install peft)'


class PeftMissingError(ImportError):
    """``peft`` is not installed; the message names the extra that brings it."""


def _peft() -> Any:
    try:
        import peft
    except ImportError as error:  # tests/test_parameter_efficient.py hides peft to exercise this
        raise PeftMissingError(f"LoRA adapters need the `peft` library, which is not installed: {_EXTRA_HINT}") \
            from error
    return peft


@dataclass(frozen=True)
class TrainableReport:
    """How many parameters a module trains.

    Attributes:
        trainable: trainable numbers (``requires_grad``).
        total: all numbers.
        names: the names of the trainable parameter tensors.
    """

    trainable: int
    total: int
    names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def fraction(self) -> float:
        """``trainable / total`` (0 for an empty module)."""
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (f"{self.trainable:,} of {self.total:,} parameters trainable ({100 * self.fraction:.2f}%), "
                f"in {len(self.names)} tensors")


def trainable_report(module: nn.Module) -> TrainableReport:
    """Count the trainable and total parameters of ``module`` (shared tensors once).

    Arguments:
        module: any ``nn.Module`` (a learner, an encoder, a Hugging Face model).

    Example:
        >>> report = trainable_report(torch.nn.Linear(3, 2))
        >>> (report.trainable, report.total, report.names)
        (8, 8, ('weight', 'bias'))

    Taught in: chapter 9.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"trainable_report needs an nn.Module, got {type(module).__name__}")
    trainable = total = 0
    names = []
    for name, parameter in module.named_parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
            names.append(name)
    return TrainableReport(trainable, total, tuple(names))


def add_lora(
    encoder: Any,
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: Sequence[str] = ("query", "value"),
    layers: Sequence[int] | None = None,
) -> TrainableReport:
    """Inject LoRA adapters into an encoder's transformer, in place, and freeze every other weight.

    Arguments:
        encoder: an :class:`~metalearn_nlp.encoders.Encoder` (its ``.model`` is
            adapted) or a Hugging Face model.
        r (int, default 8): the rank of each adapter.
        alpha (float, default 16): LoRA's scale numerator: the update is ``(alpha / r) B A``.
        dropout (float, default 0.0): dropout on the adapter's input.
        target_modules (default ``("query", "value")``): names of the linear
            layers to adapt (BERT's attention projections are ``query``,
            ``key``, ``value``; its feed-forward ``intermediate.dense`` and
            ``output.dense``).
        layers (default None: all): indices of the transformer layers to adapt,
            e.g. ``[4, 5]`` for the top two of six.

    Returns:
        :class:`TrainableReport` of the adapted model: only the ``lora_`` tensors are trainable.

    Raises:
        PeftMissingError: ``peft`` is not installed (install the ``peft`` extra).
        ValueError: ``r`` is not a positive integer, ``dropout`` is outside
            [0, 1), or no module of the model matched ``target_modules`` / ``layers``.
        TypeError: ``encoder`` is neither an ``Encoder`` nor an ``nn.Module``.

    Example:
        >>> encoder = load_encoder()  # doctest: +SKIP
        >>> add_lora(encoder, r=8, layers=[4, 5]).trainable  # 2 layers x (query, value) x (A + B)  # doctest: +SKIP
        24576

    References:
        Hu et al. (2022), LoRA: Low-Rank Adaptation of Large Language Models, ICLR.

    Taught in: chapter 9.
    """
    model = getattr(encoder, "model", encoder)
    if not isinstance(model, nn.Module):
        raise TypeError(f"add_lora needs an Encoder or an nn.Module, got {type(encoder).__name__}")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be a positive integer (the adapter rank), got {r!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not targets:
        raise ValueError("target_modules is empty: name at least one linear layer, e.g. ('query', 'value')")
    peft = _peft()
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                             layers_to_transform=list(layers) if layers is not None else None)
    try:
        peft.inject_adapter_in_model(config, model)
    except ValueError as error:
        raise ValueError(f"add_lora: no module matched target_modules={targets} and layers={layers} in "
                         f"{type(model).__name__} ({error}); BERT-style names are query, key, value, dense") from None
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    report = trainable_report(model)
    if not report.trainable:
        raise ValueError(f"add_lora: no adapter was added to {type(model).__name__} (target_modules={targets}, "
                         f"layers={layers})")
    return report
