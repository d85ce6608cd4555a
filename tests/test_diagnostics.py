"""Collapse diagnostics and the linear probe against their definitions on hand-made sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import fresh_seed

from bioglom.diagnostics import collapse_diagnostics, effective_rank, linear_probe_accuracy


def test_a_collapsed_set_has_rank_one_and_no_spread():
    """Every embedding the same direction (any lengths): std 0, effective rank 1, cosines 1."""
    g = torch.Generator().manual_seed(fresh_seed())
    v = torch.randn(8, generator=g)
    scale = torch.rand(2, 6, 5, 1, generator=g) + 0.5
    state = scale * v  # [K=2, N=6, B=5, d=8]
    diag = collapse_diagnostics(state)
    np.testing.assert_allclose(diag["std"], 0.0, atol=1e-6)
    np.testing.assert_allclose(diag["rank"], 1.0, atol=1e-3)
    np.testing.assert_allclose(diag["cos_within"], 1.0, atol=1e-6)
    np.testing.assert_allclose(diag["cos_across"], 1.0, atol=1e-6)
    np.testing.assert_allclose(diag["norm"], (scale * v.norm()).mean(dim=(1, 2, 3)), rtol=1e-5)


def test_an_isotropic_set_has_rank_near_d():
    """4096 isotropic Gaussian vectors in d = 16: effective rank above 15, per-dimension std of
    the unit vectors 1/sqrt(d) within 3%, mean cosines near 0."""
    g = torch.Generator().manual_seed(fresh_seed())
    state = torch.randn(1, 64, 64, 16, generator=g)
    diag = collapse_diagnostics(state)
    assert diag["rank"][0] > 15.0
    assert diag["std"][0] == pytest.approx(1 / math.sqrt(16), rel=0.03)
    assert abs(diag["cos_within"][0]) < 0.02 and abs(diag["cos_across"][0]) < 0.02


def test_effective_rank_of_known_spectra():
    """RankMe = exp(entropy of s / sum s): k equal singular values give k exactly."""
    q, _ = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))
    for k in (1, 3, 7):
        x = q[:, :k] @ torch.eye(k, 20, dtype=torch.float64) * 2.0  # k equal singular values
        assert effective_rank(x) == pytest.approx(k, rel=1e-6)


def test_cosine_across_images_by_brute_force():
    """cos_across is the mean over columns of the mean cosine between two different images."""
    g = torch.Generator().manual_seed(fresh_seed())
    s = torch.randn(1, 3, 4, 5, generator=g)
    got = collapse_diagnostics(s)["cos_across"][0]
    u = s / s.norm(dim=-1, keepdim=True)
    vals = [float(u[0, n, a] @ u[0, n, b]) for n in range(3) for a in range(4) for b in range(4)
            if a != b]  # fmt: skip
    assert got == pytest.approx(np.mean(vals), abs=1e-6)


def test_linear_probe_reads_separable_classes_and_not_noise():
    """Linearly separable classes are read perfectly; labels independent of the features are
    read at about chance (below 0.5 with 4 classes)."""
    rng = np.random.default_rng(fresh_seed())
    centres = rng.normal(size=(4, 10)) * 5
    y = rng.integers(0, 4, 400)
    x = centres[y] + rng.normal(size=(400, 10))
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) == 1.0
    noise_y = rng.integers(0, 4, 400)
    assert linear_probe_accuracy(x[:300], noise_y[:300], x[300:], noise_y[300:]) < 0.5


def test_within_image_cosine_and_std_by_brute_force():
    """On random states whose levels differ, cos_within is the mean over images of the mean
    cosine between two different columns, and std is the mean over dimensions of the std of the
    unit vectors over every (column, image) sample -- both recomputed with loops."""
    g = torch.Generator().manual_seed(fresh_seed())
    s = torch.randn(2, 4, 3, 5, generator=g)
    s[1] = s[1] * 0.1 + torch.randn(5, generator=g)  # level 1 much less spread than level 0
    diag = collapse_diagnostics(s)
    u = s / s.norm(dim=-1, keepdim=True)
    for k in range(2):
        vals = [float(u[k, x, b] @ u[k, y, b]) for b in range(3) for x in range(4)
                for y in range(4) if x != y]  # fmt: skip
        assert diag["cos_within"][k] == pytest.approx(np.mean(vals), abs=1e-6)
        samples = u[k].reshape(12, 5).numpy()
        assert diag["std"][k] == pytest.approx(samples.std(axis=0).mean(), abs=1e-6)
    assert diag["std"][1] < diag["std"][0] and diag["cos_within"][1] > diag["cos_within"][0]


def test_mean_within_image_cosine_matches_pairwise_definition():
    """The closed form |sum u|^2 - N equals the explicit mean over pairs x != y."""
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 5, 3, 4, generator=g)
    got = collapse_diagnostics(s)["cos_within"]
    u = s / s.norm(dim=-1, keepdim=True)
    for k in range(2):
        vals = [
            float(u[k, x, b] @ u[k, y, b])
            for b in range(3)
            for x in range(5)
            for y in range(5)
            if x != y
        ]
        assert abs(float(got[k]) - np.mean(vals)) < 1e-5
    collapsed = torch.ones(1, 7, 2, 3)
    assert abs(float(collapse_diagnostics(collapsed)["cos_within"][0]) - 1.0) < 1e-6
