"""bioglom.agreement: agreement by definition (numpy); ensemble effect on hand-worked islands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import build, fresh_seed

from bioglom.agreement import column_agreement, ensemble_effect, neighbour_target, optic_agreement
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


def test_ensemble_effect_include_leaves_columns_out():
    """Groups restricted by ``include`` (hand-worked, d = 1, one image of 2x2 columns: object 1
    on top, background 0 below). With targets under which the background's mean is worse than
    its single predictions, R counts the background group only when it is included; with no
    column included there is no group (NaN)."""
    p = torch.tensor([1.0, 3.0, 0.0, 2.0]).view(4, 1, 1)  # N = 4 columns, B = 1, d = 1
    t = torch.tensor([2.0, 2.0, 1.0, 1.0]).view(4, 1, 1)
    labels = np.array([[[1, 1], [0, 0]]])  # [B, 2, 2] grid: object 1 on top, background below
    assert ensemble_effect(p, t, labels, include=labels > 0) == 0.0
    # all columns: object mean 2 -> 0 + 0; background mean 1 -> 0 + 0; singles 1+1+1+1 = 4
    assert ensemble_effect(p, t, labels) == 0.0
    t2 = torch.tensor([2.0, 2.0, 0.0, 3.0]).view(4, 1, 1)
    # background: mean 1, errors 1 + 4 = 5; singles 0 + 1 = 1; object: 0 vs 2 -> R = 5 / 3
    assert math.isclose(ensemble_effect(p, t2, labels), 5 / 3)
    assert ensemble_effect(p, t2, labels, include=labels > 0) == 0.0
    assert math.isnan(ensemble_effect(p, t2, labels, include=labels > 5))


def test_neighbour_target_leaves_the_column_out():
    """T_others by brute force: for each column a softmax of beta e(x).e(y) over its valid
    neighbours other than itself, and the weighted mean of their embeddings (numpy); a column
    whose only neighbour is itself gets zeros."""
    seed = fresh_seed() % 2**31
    g = np.random.default_rng(seed)
    N, B, d, M = 6, 3, 4, 4
    e = g.standard_normal((N, B, d)).astype(np.float32)
    index = np.stack([g.permutation(N)[:M] for _ in range(N)])
    index[:, 0] = np.arange(N)  # every column lists itself
    valid = g.random((N, M)) < 0.8
    valid[:, 0] = True
    valid[0, 1:] = False  # column 0 has only itself
    beta = 0.7
    out = neighbour_target(
        torch.from_numpy(e), torch.from_numpy(index), torch.from_numpy(valid), beta
    )
    expected = np.zeros_like(e)
    for x in range(N):
        ys = [index[x, m] for m in range(M) if valid[x, m] and index[x, m] != x]
        for b in range(B):
            if not ys:
                continue
            logits = np.array([beta * e[x, b] @ e[y, b] for y in ys])
            w = np.exp(logits - logits.max())
            w /= w.sum()
            expected[x, b] = sum(wi * e[y, b] for wi, y in zip(w, ys, strict=True))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}")


def test_optic_agreement_is_one_only_where_the_columns_see_alike():
    """Shared front ends on a uniform retina see the very same patch at every column once the
    image is shifted by whole patches: A = 1. The same shared weights on a foveated retina read
    that content at other scales: A < 1. Independent random columns: A far below 1. (A = 1 on
    random images also checks the shift: any other one would give column n another patch.)"""
    torch.manual_seed(fresh_seed() % 2**31)
    x = torch.rand(5, 3, 8, 8)
    shared = build(model__sharing="shared")
    assert math.isclose(optic_agreement(shared, x), 1.0, abs_tol=1e-5)
    fov = build(model__sharing="shared", frontend__retina="foveated", frontend__fovea_growth=2.0)
    fov.load_state_dict(shared.state_dict())
    assert optic_agreement(fov, x) < 0.999
    assert optic_agreement(build(), x) < 0.5
