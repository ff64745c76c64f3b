"""Empirical risk, binary cross-entropy and the regularised gradient step (chapter 4.1).

The source text's section 4 writes the training objective as an empirical risk

    L(theta) = 1/N sum_i l(M_theta(x_i), y_i)

minimised by the step ``theta <- theta - eta * grad L(theta) - eta * lambda * theta``,
and derives the gradient of binary cross-entropy for a model whose output
``M_theta(x)`` is a probability. This module holds those formulas as small pure
functions on tensors, for a logistic model ``M_theta(x) = sigmoid(x . theta)``,
so the chapter can check every one of them against autograd.

Taught in: chapter 4.1 (Empirical risk and its gradient).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def bce(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on probabilities, as the source writes it: ``-[y log y_hat + (1-y) log(1-y_hat)]``.

    Element-wise; ``y_hat`` must lie strictly inside (0, 1) or the result is infinite.
    Prefer :func:`bce_with_logits` in practice.
    """
    return -(y * torch.log(y_hat) + (1 - y) * torch.log1p(-y_hat))


def bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same loss written on the logit ``z`` (``y_hat = sigmoid(z)``): ``softplus(z) - y z``.

    Finite for every real ``z``: ``log sigmoid(z) = -softplus(-z)`` and
    ``log(1 - sigmoid(z)) = -softplus(z)``, so ``l = y softplus(-z) + (1-y) softplus(z)
    = softplus(z) - y z``.
    """
    return F.softplus(z) - y * z


def bce_grad_wrt_probability(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dl/dy_hat = -(y / y_hat - (1 - y) / (1 - y_hat))``: the bracket in the source's gradient formula."""
    return -(y / y_hat - (1 - y) / (1 - y_hat))


def bce_grad_wrt_logit(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dl/dz = sigmoid(z) - y``: the bracket times ``dy_hat/dz = y_hat (1 - y_hat)``, simplified."""
    return torch.sigmoid(z) - y


def logistic_risk(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Empirical risk ``L(theta) = mean_i bce(sigmoid(x_i . theta), y_i)`` of a logistic model.

    Arguments:
        theta (Tensor, D): parameters.
        X (Tensor, N x D): one example per row (include a column of ones for a bias).
        y (Tensor, N): labels in {0, 1}.
    """
    return bce_with_logits(X @ theta, y).mean()


def logistic_risk_grad(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed-form gradient ``dL/dtheta = X^T (sigmoid(X theta) - y) / N`` (chain rule, no autograd)."""
    return X.t() @ bce_grad_wrt_logit(X @ theta, y) / X.shape[0]


def regularised_step(theta: torch.Tensor, grad: torch.Tensor, lr: float, weight_decay: float) -> torch.Tensor:
    """The source's update ``theta - lr * grad - lr * weight_decay * theta`` (returns a new tensor).

    For plain gradient descent this is the same as adding ``weight_decay/2 * ||theta||^2``
    to the loss; for adaptive optimisers (Adam) the two differ, which is why AdamW
    decouples the decay (Loshchilov and Hutter, 2019).
    """
    if lr <= 0:
        raise ValueError(f"regularised_step: lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"regularised_step: weight_decay must be >= 0, got {weight_decay}")
    return theta - lr * grad - lr * weight_decay * theta


@dataclass
class History:
    """Loss curves recorded by :func:`fit_logistic` (one entry per step, plus the start)."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    theta: torch.Tensor | None = None


def fit_logistic(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float = 0.5,
    weight_decay: float = 0.0,
    steps: int = 200,
    X_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
) -> History:
    """Full-batch gradient descent on :func:`logistic_risk` with :func:`regularised_step`.

    Records the *unregularised* empirical risk on the training set (and on the
    validation set when given) before the first step and after every step.
    Example:
        >>> X = torch.tensor([[1., -2.], [1., -1.], [1., 1.], [1., 2.]]); y = torch.tensor([0., 0., 1., 1.])
        >>> h = fit_logistic(X, y, steps=50)
        >>> h.train_loss[-1] < h.train_loss[0]
        True
    """
    if X.dim() != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"fit_logistic: X must be N x D and y of length N; got {tuple(X.shape)} and {tuple(y.shape)}")
    if steps < 0:
        raise ValueError(f"fit_logistic: steps must be >= 0, got {steps}")
    theta = torch.zeros(X.shape[1], dtype=X.dtype)
    history = History()
    for step in range(steps + 1):
        history.train_loss.append(logistic_risk(theta, X, y).item())
        if X_val is not None and y_val is not None:
            history.val_loss.append(logistic_risk(theta, X_val, y_val).item())
        if step < steps:
            theta = regularised_step(theta, logistic_risk_grad(theta, X, y), lr, weight_decay)
    history.theta = theta
    return history


TOKEN_FEATURES = (
    "bias", "Title", "UPPER", "has upper", "lower", "@handle", "#hashtag", "digit",
    "punctuation", "URL", "first word", "prev Title", "next Title", "length/10",
)


def token_features(tokens: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Word-shape features of each token of a sentence (rows follow :data:`TOKEN_FEATURES`).

    The classic hand-made features of pre-neural NER taggers, used in chapter 4.1 to
    predict *is this token part of a named entity?* with a logistic model on real tweets.
    """
    def title(t: str) -> bool:
        return t[:1].isupper() and t[1:].islower()

    rows = []
    n = len(tokens)
    for i, t in enumerate(tokens):
        rows.append([
            1.0,
            float(title(t)),
            float(len(t) > 1 and t.isupper()),
            float(any(ch.isupper() for ch in t)),
            float(t.islower()),
            float(t.startswith("@")),
            float(t.startswith("#")),
            float(any(ch.isdigit() for ch in t)),
            float(not any(ch.isalnum() for ch in t)),
            float(t.lower().startswith(("http", "www."))),
            float(i == 0),
            float(i > 0 and title(tokens[i - 1])),
            float(i + 1 < n and title(tokens[i + 1])),
            len(t) / 10.0,
        ])
    return torch.tensor(rows, dtype=torch.float64).reshape(n, len(TOKEN_FEATURES))
