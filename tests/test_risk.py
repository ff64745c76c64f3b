"""Chapter 4.1's formulas against autograd, in float64 on fresh random data."""

import pytest
import torch

from metalearn_nlp import risk


def _problem(n=64, d=5, seed=None):
    g = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < 0.4).to(torch.float64)
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    return X, y, theta


def test_bce_forms_agree():
    z = torch.randn(200, dtype=torch.float64) * 4
    y = (torch.rand(200) < 0.5).double()
    torch.testing.assert_close(risk.bce(torch.sigmoid(z), y), risk.bce_with_logits(z, y))


def test_bce_with_logits_is_finite_where_probability_form_overflows():
    z = torch.tensor([-800.0, 800.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert torch.isinf(risk.bce(torch.sigmoid(z), y)).all()
    torch.testing.assert_close(risk.bce_with_logits(z, y), torch.tensor([800.0, 800.0], dtype=torch.float64))


def test_gradient_wrt_probability_matches_autograd():
    y_hat = torch.rand(50, dtype=torch.float64).clamp(0.01, 0.99).requires_grad_()
    y = (torch.rand(50) < 0.5).double()
    risk.bce(y_hat, y).sum().backward()
    torch.testing.assert_close(y_hat.grad, risk.bce_grad_wrt_probability(y_hat.detach(), y))


def test_gradient_wrt_logit_matches_autograd():
    z = (torch.randn(50, dtype=torch.float64) * 3).requires_grad_()
    y = (torch.rand(50) < 0.5).double()
    risk.bce_with_logits(z, y).sum().backward()
    torch.testing.assert_close(z.grad, risk.bce_grad_wrt_logit(z.detach(), y))


def test_closed_form_risk_gradient_matches_autograd():
    X, y, theta = _problem()
    theta.requires_grad_()
    risk.logistic_risk(theta, X, y).backward()
    torch.testing.assert_close(theta.grad, risk.logistic_risk_grad(theta.detach(), X, y))


def test_closed_form_gradient_matches_finite_differences():
    X, y, theta = _problem(n=20, d=3, seed=1)
    eps = 1e-6
    fd = torch.stack([
        (risk.logistic_risk(theta + eps * e, X, y) - risk.logistic_risk(theta - eps * e, X, y)) / (2 * eps)
        for e in torch.eye(3, dtype=torch.float64)
    ])
    torch.testing.assert_close(fd, risk.logistic_risk_grad(theta, X, y), rtol=1e-6, atol=1e-8)


def test_regularised_step_equals_sgd_on_l2_penalised_loss():
    X, y, theta = _problem()
    lam, lr = 0.1, 0.3
    theta_ad = theta.clone().requires_grad_()
    (risk.logistic_risk(theta_ad, X, y) + lam / 2 * theta_ad.pow(2).sum()).backward()
    expected = theta - lr * theta_ad.grad
    got = risk.regularised_step(theta, risk.logistic_risk_grad(theta, X, y), lr, lam)
    torch.testing.assert_close(got, expected)


def test_regularised_step_equals_torch_sgd_weight_decay():
    X, y, theta = _problem()
    p = torch.nn.Parameter(theta.clone())
    opt = torch.optim.SGD([p], lr=0.2, weight_decay=0.05)
    risk.logistic_risk(p, X, y).backward()
    opt.step()
    torch.testing.assert_close(p.detach(), risk.regularised_step(theta, risk.logistic_risk_grad(theta, X, y), 0.2, 0.05))


@pytest.mark.parametrize("kwargs", [{"lr": 0.0, "weight_decay": 0.0}, {"lr": 0.1, "weight_decay": -1.0}])
def test_regularised_step_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="must be"):
        risk.regularised_step(torch.zeros(2), torch.zeros(2), **kwargs)


def test_fit_logistic_lowers_the_risk_and_decay_shrinks_theta():
    X, y, _ = _problem(n=200, d=4, seed=3)
    free = risk.fit_logistic(X, y, lr=0.5, steps=100)
    decayed = risk.fit_logistic(X, y, lr=0.5, weight_decay=0.5, steps=100)
    assert free.train_loss[-1] < free.train_loss[0]
    assert len(free.train_loss) == 101 and free.val_loss == []
    assert decayed.theta.norm() < free.theta.norm()


def test_fit_logistic_checks_shapes():
    with pytest.raises(ValueError, match="X must be N x D"):
        risk.fit_logistic(torch.zeros(4, 2), torch.zeros(3))


def test_token_features_shape_and_values():
    f = risk.token_features(["@bob", "visits", "New", "York", "http://t.co", "!"])
    assert f.shape == (6, len(risk.TOKEN_FEATURES))
    col = {name: i for i, name in enumerate(risk.TOKEN_FEATURES)}
    assert f[0, col["@handle"]] == 1 and f[0, col["first word"]] == 1
    assert f[2, col["Title"]] == 1 and f[2, col["next Title"]] == 1 and f[3, col["prev Title"]] == 1
    assert f[4, col["URL"]] == 1 and f[5, col["punctuation"]] == 1
    assert f[1, col["Title"]] == 0 and f[1, col["lower"]] == 1
