"""bioglom.agreement: agreement by definition (numpy); ensemble effect on hand-worked islands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import fresh_seed

from bioglom.agreement import column_agreement, ensemble_effect
from bioglom.columns import ColumnMLP


def test_column_agreement_by_definition():
    """Identical columns agree exactly (A = 1); otherwise A = 1 - mean Var_columns / Var_all,
    recomputed here with numpy."""
    torch.manual_seed(fresh_seed() % 2**31)
    net = ColumnMLP(2, 5, 4, 8, 3)
    x = torch.randn(2, 7, 4)
    a = column_agreement(net, x, 5)
    with torch.no_grad():
        y = net(x[:, None].expand(2, 5, 7, 4).contiguous()).numpy()
    expected = 1 - y.var(axis=1).mean(axis=(1, 2)) / y.reshape(2, 35, 3).var(axis=1).mean(axis=1)
    # A = 1 - r with r near 1 in float32: the absolute error is that of r (~1e-7 relative),
    # so compare absolutely as well as relatively
    np.testing.assert_allclose(a.numpy(), expected, rtol=1e-5, atol=2e-6)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_(layer.weight[:, :1].expand_as(layer.weight))
            layer.bias.copy_(layer.bias[:, :1].expand_as(layer.bias))
    np.testing.assert_allclose(column_agreement(net, x, 5).numpy(), 1.0, atol=1e-6)


def test_ensemble_effect_on_hand_worked_islands():
    """Two columns with the same input (one island) predict 1 and 3 (d = 1); a third column is
    alone. Targets 2 and 2: the mean prediction is exact, singles are off by 1, so R = 0.
    Targets 0 and 4: each column tracks its own target better than the mean, R = 8/2 = 4.
    Identical predictions give R = 1; singleton islands are ignored."""
    labels = np.array([0, 0, 1]).reshape(1, 1, 3)
    pred = torch.tensor([1.0, 3.0, 5.0]).view(3, 1, 1)
    assert ensemble_effect(pred, torch.tensor([2.0, 2.0, 9.0]).view(3, 1, 1), labels) == 0.0
    assert ensemble_effect(
        pred, torch.tensor([0.0, 4.0, 9.0]).view(3, 1, 1), labels
    ) == pytest.approx(4.0)
    same = torch.tensor([3.0, 3.0, 5.0]).view(3, 1, 1)
    assert ensemble_effect(
        same, torch.tensor([0.0, 4.0, 9.0]).view(3, 1, 1), labels
    ) == pytest.approx(1.0)
    solo = np.array([0, 1, 2]).reshape(1, 1, 3)
    assert math.isnan(ensemble_effect(pred, pred, solo))
