"""Lateral attention: the contribution that moves information between columns (§3.4, §6).

At every level ``l`` each column ``x`` takes the attention-weighted average of its neighbours'
embeddings, with the embedding itself as query, key and value (no projections):

* ``lat_l(x) = sum_y w_xy e_l(y)``, ``w_xy = softmax_y(beta_l(t) e_l(x) . e_l(y))`` (eq. 3.1),

the softmax over the neighbours ``y`` of ``x``: a square window of radius ``r_l`` on the column
grid, or ``samples_l`` columns drawn from a Gaussian of std ``sigma_l`` centred at ``x`` (§6),
once or afresh at every step. In ``gaussian`` consensus mode it is the attention-weighted
geometric mean of the neighbours' Gaussians (:func:`~bioglom.functional.lateral_attention`).
With ``attention.lateral = "attract_repel"`` the softmax runs over the like-minded neighbours
only and the mean of the unlike ones is subtracted
(:func:`~bioglom.functional.attract_repel_attention`).

:class:`LateralAttention` is the thin module over the pure functions of
:mod:`bioglom.functional`: it owns each level's neighbourhood, how eq. 3.1 is evaluated there
(its plan) and the cached logit mask, all computed from the config and never saved with the
weights, and it redraws resampled Gaussian neighbourhoods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .config import ConfigError, per_level
from .functional import (
    attract_repel_attention,
    dense_mask_bias,
    gaussian_neighbours,
    lateral_attention,
    window_attention,
    window_neighbours,
    window_plan,
    window_tile_bias,
)

if TYPE_CHECKING:
    from .config import AttentionConfig
    from .distributed import ColumnShard

__all__ = ["LateralAttention", "NEIGHBOURHOOD_SEED_OFFSET"]

#: fixed Gaussian neighbourhoods are drawn from a generator seeded with ``run.seed`` plus this
NEIGHBOURHOOD_SEED_OFFSET = 7919

#: plan -> the ``method`` of :func:`~bioglom.functional.lateral_attention`
_METHOD = {"dense": "dense", "gather_or_dense": "auto"}


class LateralAttention(nn.Module):
    """Eq. 3.1 at every level of a ``[K, N, B, d]`` state, on fixed or resampled neighbourhoods.

    Parameters
    ----------
    attention : the config's ``[attention]`` section
    grid : ``(H_g, W_g)``, ``N = H_g W_g`` columns
    levels : K
    dim : d (the window plan's cost model depends on it)
    seed : ``run.seed``; fixed Gaussian neighbourhoods come from a generator seeded with
        ``seed + NEIGHBOURHOOD_SEED_OFFSET``
    isolated : the control in which nothing moves between columns: the contribution is zeros
        (precision ones), the neighbourhoods are still built and checked
    shard : this rank's band of rows (:mod:`bioglom.distributed`), or None. Neighbourhoods
        are still those of the whole grid; a window is evaluated on the band grown by a halo
        of ``r_l`` rows from the neighbouring ranks, a Gaussian neighbourhood on the
        all-gathered level, each for this rank's columns only

    Raises
    ------
    ConfigError
        ``attention.samples`` above ``N - 1``, or ``attention.include_self`` false where some
        column has no neighbour.

    Attributes
    ----------
    radius, samples, sigma : per-level values of the config's fields
    resample : whether Gaussian neighbourhoods are drawn afresh at every call
    plan : per level, ``("dense", 0)`` or ``("tiles", T)`` for windows
        (:func:`~bioglom.functional.window_plan`); ``("gather_or_dense", 0)`` for Gaussian
        neighbourhoods (``lateral_attention``'s ``"auto"``)

    Buffers ``neighbour_index_{l}``, ``neighbour_valid_{l}`` (``[N, M]``) and ``mask_bias_{l}``
    (the plan's cached mask, None for Gaussian neighbourhoods) are not persistent: they are
    rebuilt from the config, never loaded from saved weights. A sharded window level plans on
    its halo-grown band (``halo_grid``), whose neighbourhoods are ``halo_index_{l}``,
    ``halo_valid_{l}``.
    """

    def __init__(
        self,
        attention: AttentionConfig,
        grid: tuple[int, int],
        levels: int,
        dim: int,
        seed: int,
        isolated: bool = False,
        shard: ColumnShard | None = None,
    ):
        super().__init__()
        att = attention
        self.grid, self.isolated, self.include_self = grid, isolated, att.include_self
        self.shard = shard if shard is not None and shard.world > 1 else None
        self.window = att.neighbourhood == "window"
        #: per level: (halo rows above this rank's band, the halo-grown band's grid) or None
        self.halo_grid: list[tuple[int, tuple[int, int]] | None] = []
        self.attract_repel = att.lateral == "attract_repel"
        self.thresholds = (att.attract_above, att.repel_below, att.repel_weight)
        n = grid[0] * grid[1]
        self.radius = per_level(att.radius, levels)
        self.samples = per_level(att.samples, levels)
        self.sigma = per_level(att.sigma, levels)
        self.resample = att.neighbourhood == "gaussian" and att.resample
        gen = torch.Generator().manual_seed(seed + NEIGHBOURHOOD_SEED_OFFSET)
        self.plan: list[tuple[str, int]] = []
        for k in range(levels):
            if att.neighbourhood == "window":
                idx, valid = window_neighbours(grid, self.radius[k], att.include_self)
            else:
                if self.samples[k] > n - 1:
                    raise ConfigError(
                        "attention.samples",
                        att.samples,
                        f"expected at most N - 1 = {n - 1} neighbours per level",
                    )
                idx, valid = gaussian_neighbours(
                    grid, self.samples[k], self.sigma[k], att.include_self, gen
                )
            if not bool(valid.any(dim=1).all()):
                raise ConfigError(
                    "attention.include_self",
                    att.include_self,
                    f"with {n} column(s) and no self-attention some column at level {k} "
                    "has no neighbour to attend to",
                )
            self.register_buffer(f"neighbour_index_{k}", idx, persistent=False)
            self.register_buffer(f"neighbour_valid_{k}", valid, persistent=False)
            plan, bias, halo = ("gather_or_dense", 0), None, None
            if self.window:
                g, gi, gv = grid, idx, valid
                if self.shard is not None:  # plan on the band grown by the halo
                    above, below = self.shard.extended_rows(self.radius[k])
                    g = (above + self.shard.local_grid[0] + below, grid[1])
                    gi, gv = window_neighbours(g, self.radius[k], att.include_self)
                    halo = (above, g)
                    self.register_buffer(f"halo_index_{k}", gi, persistent=False)
                    self.register_buffer(f"halo_valid_{k}", gv, persistent=False)
                plan = window_plan(g, self.radius[k], dim)
                if plan[0] == "dense":
                    bias = dense_mask_bias(gi, gv)
                else:
                    bias = window_tile_bias(g, self.radius[k], plan[1], att.include_self)
            self.plan.append(plan)
            self.halo_grid.append(halo)
            self.register_buffer(f"mask_bias_{k}", bias, persistent=False)

    def neighbours(self, level: int) -> tuple[Tensor, Tensor]:
        """The fixed ``(index [N, M], valid [N, M])`` neighbourhood of a level."""
        return getattr(self, f"neighbour_index_{level}"), getattr(self, f"neighbour_valid_{level}")

    def resampled(
        self, level: int, generator: torch.Generator | None, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """A fresh Gaussian neighbourhood of a level, drawn from ``generator`` (torch's global
        generator when None)."""
        idx, valid = gaussian_neighbours(
            self.grid, self.samples[level], self.sigma[level], self.include_self, generator
        )
        return idx.to(device), valid.to(device)

    def attend(
        self,
        level: int,
        e: Tensor,
        beta: Tensor,
        precision: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Eq. 3.1 at one level: ``e [N, B, d]`` -> (mean, precision or None), by its plan
        (or the attraction-repulsion term with ``attention.lateral = "attract_repel"``).
        Sharded, ``e`` holds this rank's columns and so does the result."""
        if self.shard is None:
            idx, valid = self._neighbourhood(level, generator, e.device)
            return self._evaluate(level, e, beta, precision, self.grid, idx, valid)
        shard = self.shard
        if self.window:  # this rank's band grown by the halo; keep its own rows
            r = self.radius[level]
            above, grid = self.halo_grid[level]
            ee = shard.halo(e, r)
            pe = None if precision is None else shard.halo(precision, r)
            idx = getattr(self, f"halo_index_{level}")
            valid = getattr(self, f"halo_valid_{level}")
            mu, tau = self._evaluate(level, ee, beta, pe, grid, idx, valid)
            own = slice(above * grid[1], above * grid[1] + shard.n)
            return mu[own], (None if tau is None else tau[own])
        # Gaussian: neighbours anywhere on the grid; the whole level, this rank's queries
        ef = shard.gather_columns(e)
        pf = None if precision is None else shard.gather_columns(precision)
        idx, valid = self._neighbourhood(level, generator, e.device)
        c0, c1 = shard.columns
        queries = torch.arange(c0, c1, device=e.device)
        idx, valid = idx[c0:c1], valid[c0:c1]
        if self.attract_repel:
            return self._attract_repel(ef, idx, valid, beta, pf, queries)
        return lateral_attention(ef, idx, valid, beta, pf, queries=queries)

    def _neighbourhood(
        self, level: int, generator: torch.Generator | None, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """The level's neighbourhood on the whole grid: fixed, or drawn afresh."""
        if self.resample:
            return self.resampled(level, generator, device)
        return self.neighbours(level)

    def _attract_repel(self, e, idx, valid, beta, precision, queries=None, method="gather"):
        above, below, gamma = self.thresholds
        return attract_repel_attention(
            e,
            idx,
            valid,
            beta,
            precision,
            attract_above=above,
            repel_below=below,
            repel_weight=gamma,
            queries=queries,
            method=method,
        )

    def _evaluate(
        self,
        level: int,
        e: Tensor,
        beta: Tensor,
        precision: Tensor | None,
        grid: tuple[int, int],
        idx: Tensor,
        valid: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        """Eq. 3.1 on ``e`` laid out on ``grid`` (every column its own query), by the plan."""
        method, tile = self.plan[level]
        if self.attract_repel:  # dense where eq. 3.1 would be; else the gathered neighbours
            form = "dense" if method == "dense" else "gather"
            return self._attract_repel(e, idx, valid, beta, precision, method=form)
        bias = getattr(self, f"mask_bias_{level}")
        if method == "tiles":
            r = self.radius[level]
            return window_attention(e, grid, r, beta, precision, tile=tile, bias=bias)
        return lateral_attention(
            e, idx, valid, beta, precision, method=_METHOD[method], mask_bias=bias
        )

    def forward(
        self,
        e: Tensor,
        precision: Tensor | None,
        beta: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The lateral contribution of every level.

        Parameters
        ----------
        e : ``[K, N, B, d]`` state
        precision : ``[K, N, B, d]`` (``gaussian`` consensus mode) or None
        beta : ``[K]`` inverse temperatures at this step
        generator : source of resampled Gaussian neighbourhoods (torch's global one if None)

        Returns
        -------
        (mean ``[K, N, B, d]``, precision ``[K, N, B, d]`` or None); zeros (precision ones) for
        isolated columns, whose consensus gives the contribution no weight
        """
        if self.isolated:
            zeros = torch.zeros_like(e)
            return zeros, (None if precision is None else torch.ones_like(precision))
        outs, taus = [], []
        for k in range(len(self.plan)):
            prec = None if precision is None else precision[k]
            mu, tau = self.attend(k, e[k], beta[k], prec, generator)
            outs.append(mu)
            taus.append(tau)
        if precision is None:
            return torch.stack(outs), None
        return torch.stack(outs), torch.stack(taus)

    def extra_repr(self) -> str:
        plans = ", ".join(f"{m}{t or ''}" for m, t in self.plan)
        extra = f", attract_repel={self.thresholds}" if self.attract_repel else ""
        return f"grid={self.grid}, plan=[{plans}], resample={self.resample}{extra}"
