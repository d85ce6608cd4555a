"""bioglom.spikes: the filter's moments in closed form; the estimate sampled against the rate."""

from __future__ import annotations

import pytest
import torch
from conftest import fresh_seed

from bioglom.spikes import derivative_kernel, derivative_variance, spiking_derivative


def test_derivative_kernel_moments():
    """The filter has zero sum and unit first moment, so it reads slopes exactly."""
    s, k = derivative_kernel(7, dt=2.0)
    delta = 2.0 / 7
    assert float(k.sum()) == pytest.approx(0.0, abs=1e-12)
    assert float((k * s).sum() * delta) == pytest.approx(1.0, abs=1e-12)
    assert torch.all(k[:3] < 0) and torch.all(k[4:] > 0)  # STDP-like: early -, late +


def test_spiking_derivative_is_unbiased():
    """Over 4000 trials the mean spiking estimate of de/dt matches (e1 - e0)/dt within 5
    standard errors for every component (sigma from the exact Poisson variance), including
    components that change sign within the step; the empirical variance matches that sigma^2
    within 15%."""
    g = torch.Generator().manual_seed(fresh_seed())
    e0 = torch.randn(40, generator=g, dtype=torch.float64)
    e1 = e0 + torch.randn(40, generator=g, dtype=torch.float64)
    e1[:5] = -e0[:5]  # sign changes inside the step
    gain, bins, dt, trials = 50.0, 8, 1.0, 4000
    est = spiking_derivative(
        e0.expand(trials, 40), e1.expand(trials, 40), gain, bins, dt, generator=g
    )
    truth = (e1 - e0) / dt
    var = derivative_variance(e0, e1, gain, bins, dt)
    se = torch.sqrt(var / trials)
    assert torch.all((est.mean(0) - truth).abs() < 5 * se)
    ratio = est.var(0) / var
    assert torch.all((ratio - 1).abs() < 0.15)


def test_spiking_derivative_of_a_non_finite_rate_is_nan():
    """A NaN or infinite rate gives a NaN estimate there (so that a diverging run is caught as
    diverged) and ordinary estimates elsewhere, instead of an error from the Poisson sampler."""
    e0 = torch.tensor([0.5, float("nan"), 1.0, -0.3])
    e1 = torch.tensor([0.7, 0.2, float("inf"), 0.1])
    d = spiking_derivative(e0, e1, 50.0, 4)
    assert torch.isnan(d[1]) and torch.isnan(d[2])
    assert torch.isfinite(d[[0, 3]]).all()
