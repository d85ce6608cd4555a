"""Spike trains and the derivative filter of the spiking temporal-derivative rule (§12.3).

"Assuming spikes are caused by an underlying rate variable, we can get a noisy but unbiased
estimate of the rate of change of this underlying rate variable by applying a derivative filter
to the postsynaptic spike train, which is exactly what STDP does." (§12.3)

Rates. An embedding component ``e`` may be negative, so each component is carried by a
push-pull pair of neurons with rates ``r+ = g max(e, 0)`` and ``r- = g max(-e, 0)`` (spikes per
unit time; ``g`` is the gain), and ``e = (r+ - r-) / g``.

Spikes. Over one settling step ``[t, t + dt]`` the underlying rate moves linearly from
``e(t)`` to ``e(t+1)``; the step is cut into ``J`` bins of width ``delta = dt / J`` and each
neuron emits ``Poisson(r(s_j) delta)`` spikes in bin ``j`` (bin centre ``s_j``).

Derivative filter. ``D = sum_j k_j c_j`` with the antisymmetric kernel
``k_j = (s_j - s_mean) / (delta sum_i (s_i - s_mean)^2)`` -- negative for early spikes,
positive for late ones, like an STDP window. Because ``sum_j k_j = 0`` and
``sum_j k_j s_j delta = 1``, ``E[D] = r'`` exactly for any rate linear in time, and the
estimate is linear in the counts, so ``(D+ - D-) / g`` is an unbiased estimate of ``de/dt``
even when ``e`` changes sign within the step. Its variance is
``sum_j k_j^2 r(s_j) delta`` per neuron (Poisson), which :func:`derivative_variance` returns.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "push_pull_rates",
    "derivative_kernel",
    "spike_counts",
    "spiking_derivative",
    "derivative_variance",
]


def push_pull_rates(e: Tensor, gain: float) -> tuple[Tensor, Tensor]:
    """``(r+, r-) = (g max(e, 0), g max(-e, 0))``: non-negative rates, ``r+ - r- = g e``."""
    return gain * e.clamp_min(0), gain * (-e).clamp_min(0)


def derivative_kernel(bins: int, dt: float = 1.0) -> tuple[Tensor, Tensor]:
    """Bin centres ``s_j`` and the least-squares slope kernel ``k_j`` over ``[0, dt]``.

    ``sum_j k_j = 0`` and ``sum_j k_j s_j delta = 1`` with ``delta = dt / bins``.
    """
    if bins < 2:
        raise ValueError(f"bins: a derivative needs at least 2 bins, got {bins}")
    delta = dt / bins
    s = (torch.arange(bins, dtype=torch.float64) + 0.5) * delta
    c = s - s.mean()
    return s, c / (delta * (c * c).sum())


def spike_counts(
    e0: Tensor, e1: Tensor, gain: float, bins: int, dt: float = 1.0, generator=None
) -> tuple[Tensor, Tensor]:
    """Poisson spike counts of the push-pull pair while ``e`` moves linearly from e0 to e1.

    Returns
    -------
    (counts+, counts-), each ``[bins, *e0.shape]``
    """
    s, _ = derivative_kernel(bins, dt)
    frac = (s / dt).to(e0.dtype).to(e0.device).view(-1, *([1] * e0.dim()))
    e = e0.unsqueeze(0) + frac * (e1 - e0).unsqueeze(0)  # rate variable at each bin centre
    rp, rm = push_pull_rates(e, gain)
    delta = dt / bins
    return (
        torch.poisson(rp * delta, generator=generator),
        torch.poisson(rm * delta, generator=generator),
    )


def spiking_derivative(
    e0: Tensor, e1: Tensor, gain: float, bins: int, dt: float = 1.0, generator=None
) -> Tensor:
    """A noisy, unbiased estimate of ``de/dt = (e1 - e0) / dt`` from spike trains alone.

    The rate variable is encoded as push-pull Poisson spike trains; the derivative filter is
    applied to each train and the pair is decoded: ``(D+ - D-) / g``.
    """
    bad = ~(torch.isfinite(e0) & torch.isfinite(e1))
    if bool(bad.any()):  # no spikes from a non-finite rate: the estimate is NaN there
        e0, e1 = e0.masked_fill(bad, 0.0), e1.masked_fill(bad, 0.0)
    cp, cm = spike_counts(e0, e1, gain, bins, dt, generator)
    _, k = derivative_kernel(bins, dt)
    k = k.to(e0.dtype).to(e0.device).view(-1, *([1] * e0.dim()))
    out = ((k * cp).sum(0) - (k * cm).sum(0)) / gain
    return out.masked_fill(bad, float("nan"))


def derivative_variance(e0: Tensor, e1: Tensor, gain: float, bins: int, dt: float = 1.0) -> Tensor:
    """Exact variance of :func:`spiking_derivative`: ``sum_j k_j^2 (r+_j + r-_j) delta / g^2``."""
    s, k = derivative_kernel(bins, dt)
    frac = (s / dt).to(e0.dtype).to(e0.device).view(-1, *([1] * e0.dim()))
    e = e0.unsqueeze(0) + frac * (e1 - e0).unsqueeze(0)
    rp, rm = push_pull_rates(e, gain)
    k2 = (k * k).to(e0.dtype).to(e0.device).view(-1, *([1] * e0.dim()))
    return (k2 * (rp + rm) * (dt / bins)).sum(0) / gain**2
