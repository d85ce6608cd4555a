"""bioglom.columns: SIREN units and init against formulas here; unshared and frozen layers."""

from __future__ import annotations

import torch
from conftest import build, setup


def test_unshared_columns_start_different():
    """Every unshared column draws its own initial weights."""
    m = build()
    w = m.bottom_up.layers[0].weight  # [K-1, N, d, h]
    assert not torch.allclose(w[:, 0], w[:, 1])


def test_siren_initialisation_bounds():
    """SIREN init: first layer U(-1/d_in, 1/d_in), later layers U(-sqrt(6/d_in)/w0, ...)."""
    m = build(topdown__siren=True, model__hidden_layers=2, topdown__siren_w0=30.0)
    l0, l1 = m.top_down.layers[0].weight, m.top_down.layers[1].weight
    assert l0.abs().max() <= 1 / 8 and l0.abs().max() > 0.9 / 8
    bound = (6 / 16) ** 0.5 / 30
    assert l1.abs().max() <= bound and l1.abs().max() > 0.9 * bound


def test_siren_hidden_units_are_sinusoids(rng):
    """With SIREN, a top-down hidden unit is sin(w0 (x W + b + z V)) of its input x and the
    location code z."""
    m = build(topdown__siren=True, topdown__siren_w0=7.0)
    net = m.top_down
    x = torch.randn(2, 16, 3, 8, generator=rng)
    k, n = 1, 9
    l0 = net.layers[0]
    z = m.location[k, n, 0]
    h = torch.sin(7.0 * (x[k, n] @ l0.weight[k, n] + l0.bias[k, n, 0] + z @ net.extra.weight[k, n]))
    expected = h @ net.layers[1].weight[k, n] + net.layers[1].bias[k, n, 0]
    torch.testing.assert_close(net(x, extra=m.location)[k, n], expected)


def test_frozen_model_has_only_output_layers_learning():
    """hidden_learning = frozen: hidden layers (and the CNN's convolutions) keep requires_grad
    off; output layers learn."""
    _, m, _ = setup(model__hidden_learning="frozen", frontend__kind="cnn", model__sharing="shared")
    assert not any(p.requires_grad for p in m.bottom_up.layers[0].parameters())
    assert all(p.requires_grad for p in m.bottom_up.layers[-1].parameters())
    assert not any(p.requires_grad for p in m.frontend.cnn.parameters())
