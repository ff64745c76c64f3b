"""The fine-tuning baseline: a linear tagger trained on the support set only.

Every meta-learner is measured against this: take the *pretrained* encoder,
put a fresh linear layer on top, and train on the few support sentences of
the episode, nothing else. With ``train_layers=0`` (the default) only the
linear layer is trained, on frozen word vectors computed once (a linear
probe: seconds per episode on a CPU). With ``train_layers=k`` the top ``k``
transformer layers are trained too, on a deep copy of the encoder
(``"all"``: the whole encoder, the classic fine-tuning baseline of e.g.
Huang et al., 2021); then each step is a forward and backward pass over the
support set.

The baseline is not meta-trained (``loss`` raises), and ``adapt`` trains
only copies and fresh layers: the learner's own weights never change.

Taught in: chapter 3.2 (the baseline); chapter 5.2 (Source code).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.episode import Episode
from ..encoders import Encoder, eval_mode
from .base import Learner, Predictor

__all__ = ["FineTune", "train_linear_head", "zero_linear"]


def zero_linear(in_features: int, out_features: int, device: Any = None) -> nn.Linear:
    """An ``nn.Linear`` initialised at zero, without drawing from the global random generator."""
    head = torch.nn.utils.skip_init(nn.Linear, in_features, out_features, device=device)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    return head


def train_linear_head(
    vectors: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    *,
    steps: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 0.01,
) -> tuple[nn.Linear, list[float]]:
    """Fit a linear softmax tagger on fixed word vectors (full batch AdamW).

    The layer starts at zero (so the first predictions are uniform and no
    random number is drawn).

    Arguments:
        vectors: ``(n, H)`` word vectors.
        labels: ``(n,)`` label ids.
        n_classes: C.
        steps, lr, weight_decay: AdamW settings.

    Returns:
        ``(head, losses)``: the ``nn.Linear(H, C)`` and the loss before each step.

    Example:
        >>> head, losses = train_linear_head(torch.randn(20, 4), torch.randint(0, 3, (20,)), 3, steps=10)
        >>> losses[-1] < losses[0]
        True
    """
    head = zero_linear(vectors.shape[1], n_classes, vectors.device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    vectors = vectors.detach()
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(head(vectors), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    head.requires_grad_(False)
    return head, losses


class FineTune(Learner):
    """A linear tagger (optionally with the encoder's top layers) trained on the support set only.

    Arguments:
        encoder: the pretrained word encoder (never changed).
        train_layers (int | ``"all"``, default 0): encoder layers to train
            with the head, counted from the top. 0: a linear probe on frozen
            word vectors.
        steps (int, default 100): optimisation steps (full support batch).
        lr (float, default 5e-5): encoder learning rate (``train_layers > 0``).
        head_lr (float, default 1e-2): linear layer learning rate.
        weight_decay (float, default 0.01): AdamW weight decay.
        max_grad_norm (float, default 1.0): gradient clipping (``train_layers > 0``).
        seed (int, default 0): seeds dropout while training the encoder copy;
            the global random state is left as it was.
        batch_size (int, default 32): sentences per forward pass when predicting.

    Example:
        >>> predictor = FineTune(load_encoder()).adapt(episode)  # doctest: +SKIP
        >>> predictor.losses[0], predictor.losses[-1]  # the support loss goes down  # doctest: +SKIP

    References:
        Huang et al. (2021), Few-Shot Named Entity Recognition: An Empirical
        Baseline Study, EMNLP (the fine-tuned linear baseline).

    Taught in: chapter 3.2; chapter 5.2.
    """

    name = "finetune"
    meta_trainable = False

    def __init__(
        self,
        encoder: Encoder,
        *,
        train_layers: int | str = 0,
        steps: int = 100,
        lr: float = 5e-5,
        head_lr: float = 1e-2,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        super().__init__(encoder, batch_size=batch_size)
        if train_layers != "all" and not (isinstance(train_layers, int) and train_layers >= 0):
            raise ValueError(f"train_layers must be a number of top layers >= 0 or 'all', got {train_layers!r}")
        if isinstance(train_layers, int) and train_layers > 0 and train_layers > len(encoder.layers):
            raise ValueError(f"train_layers={train_layers}, but the encoder has {len(encoder.layers)} layers")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.train_layers = train_layers
        self.steps = steps
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.seed = seed

    def _check_adaptation(self) -> None:
        super()._check_adaptation()
        layers = self.train_layers
        if layers != "all" and not (isinstance(layers, int) and not isinstance(layers, bool) and layers >= 0
                                    and (layers == 0 or layers <= len(self.encoder.layers))):
            raise ValueError(f"train_layers must be a number of top encoder layers or 'all', got {layers!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")

    def _hyperparameters(self) -> dict[str, Any]:
        return {"train_layers": self.train_layers, "steps": self.steps, "lr": self.lr, "head_lr": self.head_lr,
                "weight_decay": self.weight_decay, "max_grad_norm": self.max_grad_norm, "seed": self.seed}

    def _adapt(self, support: Episode) -> Predictor:
        c = len(support.label_names)
        if self.train_layers == 0:
            with torch.no_grad(), eval_mode(self.encoder):
                words, _ = self._embed_episode(support, with_query=False)
            head, losses = train_linear_head(words.vectors, words.labels, c, steps=self.steps, lr=self.head_lr,
                                             weight_decay=self.weight_decay)
            predictor = self._predictor(head, support)
        else:
            encoder, head, losses = self._finetune_copy(support)
            predictor = self._predictor(head, support, encoder=encoder)
        predictor.head = head  # type: ignore[attr-defined]
        predictor.losses = losses  # type: ignore[attr-defined]
        return predictor

    def _finetune_copy(self, support: Episode, head: nn.Linear | None = None) -> tuple[Encoder, nn.Linear, list[float]]:
        """Fine-tune a copy of the encoder (top ``train_layers``) and ``head`` (default: zeros) on the support set."""
        encoder = self.encoder.clone()
        n_layers = len(encoder.layers)
        encoder.freeze("none" if self.train_layers == "all" else n_layers - int(self.train_layers))
        if head is None:
            head = zero_linear(encoder.hidden_size, len(support.label_names), encoder.device)
        encoder_params = [p for p in encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [{"params": encoder_params, "lr": self.lr}, {"params": head.parameters(), "lr": self.head_lr}],
            weight_decay=self.weight_decay,
        )
        batch = encoder.collate(support.support, support)
        losses: list[float] = []
        devices = [encoder.device] if encoder.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(self.seed)
            encoder.train()
            for _ in range(self.steps):
                words = encoder.embed_words(batch)
                loss = F.cross_entropy(head(words.vectors.float()), words.labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*encoder_params, *head.parameters()], self.max_grad_norm)
                optimizer.step()
                losses.append(loss.item())
        encoder.eval()
        encoder.requires_grad_(False)
        head.requires_grad_(False)
        return encoder, head, losses
