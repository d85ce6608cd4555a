"""bioglom.norm: each state normalisation against its definition (moments, statistics, tau/r^2)."""

from __future__ import annotations

import pytest
import torch
from conftest import build, fresh_seed, rand_images, standardised


def test_layer_and_batch_norm_standardise_as_defined(rng):
    """layer: every embedding vector has mean 0 and variance 1 over d; batch: every unit of a
    level has mean 0 and variance 1 over columns and images."""
    x = rand_images(3, gen=rng)
    s = build(model__state_norm="layer").settle(x).state
    torch.testing.assert_close(s.mean(-1), torch.zeros(s.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        s.var(-1, unbiased=False), torch.ones(s.shape[:-1]), atol=1e-3, rtol=0
    )
    s = build(model__state_norm="batch").settle(x).state
    torch.testing.assert_close(s.mean(dim=(1, 2)), torch.zeros(3, 8), atol=1e-5, rtol=0)
    v = s.var(dim=(1, 2), unbiased=False)
    torch.testing.assert_close(v, torch.ones(3, 8), atol=1e-3, rtol=0)


@pytest.mark.parametrize("per_column", [True, False])
def test_homeostatic_statistics_track_the_input(per_column):
    """homeostatic: fed a stationary input with known mean and variance per unit, the running
    statistics converge to them (per column or shared) and stay fixed in eval mode."""
    from bioglom.norm import StateNorm

    g = torch.Generator().manual_seed(fresh_seed())
    K, N, B, d = 2, 5, 64, 3
    mean = torch.randn(K, N, 1, d, generator=g)
    if not per_column:
        mean = mean[:, :1].expand(K, N, 1, d)
    std = torch.rand(K, 1, 1, d, generator=g) + 0.5
    norm = StateNorm("homeostatic", K, N if per_column else 1, d, momentum=0.05)
    for _ in range(400):
        norm(mean + std * torch.randn(K, N, B, d, generator=g))
    rm = norm.running_mean if per_column else norm.running_mean.expand(K, N, 1, d)
    torch.testing.assert_close(rm, mean, atol=0.1, rtol=0)
    torch.testing.assert_close(
        norm.running_var.sqrt(), std.expand_as(norm.running_var), atol=0.1, rtol=0
    )
    norm.eval()
    before = norm.running_mean.clone()
    norm(torch.randn(K, N, B, d, generator=g) + 100)
    torch.testing.assert_close(norm.running_mean, before)


def test_gaussian_precision_follows_the_normalisation(rng):
    """Normalising a Gaussian state rescales its precision: e' = (e - m) r gives tau' = tau / r^2
    (layer norm: r = 1 / sqrt(var_d(mu) + eps) of each consensus mean vector)."""
    m = build(consensus__mode="gaussian", model__state_norm="layer")
    raw = build(consensus__mode="gaussian", model__state_norm="none")
    raw.load_state_dict(m.state_dict())
    x = rand_images(2, gen=rng)
    e = torch.randn(3, 16, 2, 8, generator=rng)
    tau = torch.rand(3, 16, 2, 8, generator=rng) + 0.5
    a, b = m.step(e, tau, x, 1, 3), raw.step(e, tau, x, 1, 3)
    r = 1 / torch.sqrt(b.state.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(a.state, standardised(b.state))
    torch.testing.assert_close(a.precision, b.precision / r**2)


def test_image_norm_standardises_each_unit_over_its_images_columns(rng):
    """state_norm = image: every (level, image, unit) has mean 0 and variance 1 over the
    columns, and a vector added to every column of one image (a common mode) changes nothing."""
    from bioglom.norm import StateNorm

    norm = StateNorm("image", levels=3, columns=16, dim=5)
    e = 3 + 2 * torch.randn(3, 16, 4, 5, generator=rng, dtype=torch.float64)
    out = norm(e)
    assert torch.allclose(out.mean(1), torch.zeros(3, 4, 5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.var(1, unbiased=False), torch.ones(3, 4, 5, dtype=torch.float64),
                          atol=1e-4)  # fmt: skip
    common = torch.randn(3, 1, 4, 5, generator=rng, dtype=torch.float64)
    assert torch.allclose(norm(e + common), out, atol=1e-10)
    # batch statistics, for contrast, keep an image's common mode (it differs between images)
    batch = StateNorm("batch", levels=3, columns=16, dim=5)
    assert not torch.allclose(batch(e + common), batch(e), atol=1e-3)
