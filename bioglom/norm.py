"""Keeping embeddings at a controlled scale (docs/design.md §3 and §9).

Without it, agreement-seeking learning shrinks every embedding toward one point (§7). Five
options, logged with every run as ``model.state_norm``:

* ``none``: identity;
* ``layer``: each embedding vector standardised over its ``d`` components;
* ``batch``: each unit of a level standardised over columns and images (the fast
  approximation of a homeostatic set point, which stopped collapse in the first probe,
  docs/design.md §9);
* ``homeostatic``: each unit standardised by its own running mean and variance, tracked over
  time (per column, or shared by all columns), the biologically plausible form;
* ``image``: each unit of a level standardised over the columns of its own image, a proxy of
  lateral inhibition pooled over the whole image: no component common to every column of an
  image survives it (homeostasis over time cannot remove one: an image-specific vector shared
  by all columns passes every per-unit running statistic). Like ``batch`` it passes
  information between columns (one mean and variance per image).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .distributed import ColumnShard

__all__ = ["StateNorm", "standardise"]


def standardise(
    e: Tensor, eps: float = 1e-5, with_scale: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Each vector to zero mean and unit variance over its ``d`` components (layer norm, no
    affine). Returns ``(e', r)`` with ``e' = (e - mean) r``, ``r = 1 / sqrt(var + eps)``;
    ``r`` is None unless ``with_scale`` (the fused kernel is then used alone)."""
    if not with_scale:
        return F.layer_norm(e, (e.shape[-1],), eps=eps), None
    c = e - e.mean(dim=-1, keepdim=True)
    r = torch.rsqrt((c * c).mean(dim=-1, keepdim=True) + eps)
    return c * r, r


class StateNorm(nn.Module):
    """Normalise a state ``[K, N, B, d]`` (or one level ``[1, N, B, d]`` with ``level=k``).

    Every kind is an affine map per unit, ``e' = (e - m) r``; a Gaussian state's precision is
    carried along, ``tau' = tau / r^2`` (the same distribution, rescaled).

    ``homeostatic``: in training mode, before normalising, the running statistics of each
    (level, column or all columns, unit) move toward the current ones,

    ``m <- m + rho (mean_b e - m)``,  ``v <- v + rho (mean_b (e - m)^2 - v)``,

    with ``rho`` the momentum and the mean over images (and columns when shared); measuring the
    variance around the running mean keeps it meaningful at batch size 1. Then
    ``r = 1 / sqrt(v + eps)``. The statistics carry no gradient; in eval mode they stay fixed.

    With a ``shard`` (:mod:`bioglom.distributed`) a mean over columns (``batch``, ``image``,
    homeostatic statistics shared by all columns) is over the columns of every rank: the
    ranks all-reduce their sums, and no gradient passes between them.
    """

    def __init__(
        self,
        kind: str,
        levels: int,
        columns: int,
        dim: int,
        momentum: float = 0.05,
        eps: float = 1e-5,
        shard: ColumnShard | None = None,
    ):
        super().__init__()
        if kind not in ("none", "layer", "batch", "homeostatic", "image"):
            raise ValueError(f"unknown state normalisation {kind!r}")
        self.kind, self.momentum, self.eps, self.dim = kind, momentum, eps, dim
        self.columns, self.shard = columns, shard
        if kind == "homeostatic":
            self.register_buffer("running_mean", torch.zeros(levels, columns, 1, dim))
            self.register_buffer("running_var", torch.ones(levels, columns, 1, dim))

    def forward(
        self, e: Tensor, level: int | None = None, precision: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``e'``, or ``(e', tau')`` when a precision is given."""
        if self.kind == "none":
            return e if precision is None else (e, precision)
        if self.kind == "layer":
            out, r = standardise(e, self.eps, with_scale=precision is not None)
        elif self.kind in ("batch", "image"):
            dims = (1, 2) if self.kind == "batch" else (1,)  # columns and images, or columns
            c = e - self._mean(e, dims)
            r = torch.rsqrt(self._mean(c * c, dims) + self.eps)
            out = c * r
        else:
            sl = slice(None) if level is None else slice(level, level + 1)
            rm, rv = self.running_mean[sl], self.running_var[sl]
            if self.training:
                with torch.no_grad():
                    pooled = rm.shape[1] != e.shape[1] or (self.shard and self.columns == 1)
                    dims = (1, 2) if pooled else (2,)
                    x = e.detach()
                    rm += self.momentum * (self._mean(x, dims) - rm)
                    rv += self.momentum * (self._mean((x - rm) ** 2, dims) - rv)
            r = torch.rsqrt(rv + self.eps)
            out = (e - rm) * r
        return out if precision is None else (out, precision / (r * r))

    def _mean(self, x: Tensor, dims: tuple[int, ...]) -> Tensor:
        """``x.mean(dims, keepdim=True)``; over the columns of every rank when sharded."""
        m = x.mean(dim=dims, keepdim=True)
        if self.shard is None or 1 not in dims:
            return m
        with torch.no_grad():  # the ranks' means weighted by their columns
            total = self.shard.all_reduce(m.detach() * x.shape[1])
        return total / self.shard.total

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
