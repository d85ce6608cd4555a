"""Columns sharded over processes with ``torch.distributed`` (docs/distributed.md).

Local learning makes model parallelism easy: no unshared weight ever needs a gradient from
another column (§12.1), so a rank that holds a band of grid rows holds everything of those
columns -- their state, their unshared weights, their optimiser state and their homeostatic
statistics -- and exchanges only what couples columns:

* **lateral attention** (eq. 3.1, §3.4) reads neighbours across the band's border. For square
  windows of radius ``r_l`` each rank receives a *halo* of ``r_l`` rows from the rank above
  and the rank below (point-to-point), evaluates eq. 3.1 on its band grown by the halo and
  keeps its own rows: every one of its columns sees its whole window, so the result is the
  unsharded one. Gaussian neighbourhoods (§6) can reach any column, so each rank all-gathers
  the level's state and evaluates its own columns only (``queries`` of
  :func:`~bioglom.functional.lateral_attention`); the neighbourhoods themselves are drawn on
  the whole grid from the same generator on every rank, so they are the unsharded ones.
* **statistics pooled over columns** (``model.state_norm = batch`` or ``image``, homeostatic
  statistics shared by all columns) all-reduce their sums, so that they couple the columns of
  all ranks exactly as they couple the columns of one;
* **shared weights** (``model.sharing = "shared"``) all-reduce their summed gradients before
  every optimiser step, so every rank applies the same update to its copy.

A rank's band is rows ``[r0, r1)`` of the grid (:func:`band_rows`), columns ``r0 W .. r1 W - 1``
in the unsharded order, and pixel rows ``[r0 p, r1 p)`` of every image.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .config import Config, ConfigError, per_level
from .schedule import parse_schedule, phase_of_update

__all__ = [
    "ColumnShard",
    "band_rows",
    "check_shardable",
    "column_slices",
    "gather_state",
    "halo_width",
    "init_from_env",
    "SENT",
]

#: Bytes this process has sent to other ranks, by kind: ``halo`` (the point-to-point rows of
#: window attention), ``gather`` (its part of an all-gather, counted once per receiving rank:
#: Gaussian neighbourhoods, and the probe's gathered weights) and ``all_reduce`` (``2 (P - 1) /
#: P`` times the tensor, what each rank sends in a ring all-reduce: shared gradients, pooled
#: statistics). The one-number collectives (:meth:`ColumnShard.any`) are left out. The
#: benchmark reads and clears it (``SENT.clear()``).
SENT: Counter[str] = Counter()


def band_rows(rows: int, world: int) -> list[tuple[int, int]]:
    """Split ``rows`` grid rows into ``world`` contiguous bands as even as possible:
    band ``i`` is ``[i rows // world, (i + 1) rows // world)``."""
    if world < 1 or world > rows:
        raise ValueError(f"world: expected 1 <= world <= {rows} grid rows, got {world}")
    return [(i * rows // world, (i + 1) * rows // world) for i in range(world)]


def halo_width(config: Config) -> int:
    """Rows a rank needs from each neighbouring band: the largest window radius over the
    levels for window neighbourhoods, 0 for Gaussian ones (which all-gather instead)."""
    att = config.attention
    if att.neighbourhood != "window" or config.model.sharing == "isolated":
        return 0
    return max(per_level(att.radius, config.model.levels))


def check_shardable(config: Config, grid: tuple[int, int], world: int) -> None:
    """Raise :class:`ConfigError` where ``config`` cannot run on ``world`` ranks.

    What sharding does not (yet) cover: a CNN front end (its convolutions read pixels across
    the band's border), the foveated retina (a column's field reaches beyond its band), rules
    other than the local ones (``codistill``, ``temporal``: the others back-propagate across
    steps or compare images as wholes) and night phases. Each band needs at least the halo's
    rows.
    """
    if world == 1:
        return
    if config.frontend.kind != "patch":
        raise ConfigError("frontend.kind", config.frontend.kind, "sharded runs need 'patch'")
    if config.frontend.retina != "uniform":
        raise ConfigError("frontend.retina", config.frontend.retina, "sharded runs need 'uniform'")
    if config.train.rule not in ("codistill", "temporal"):
        raise ConfigError(
            "train.rule", config.train.rule, "sharded runs support 'codistill' and 'temporal'"
        )
    if config.temporal.spiking:
        raise ConfigError(
            "temporal.spiking", True, "sharded runs need false (spikes are drawn per rank)"
        )
    phases = config.schedule.phases
    if phases.strip() and any(k != "day" for k in phase_of_update(parse_schedule(phases))):
        raise ConfigError("schedule.phases", phases, "sharded runs have day phases only")
    rows = grid[0]
    if world > rows:
        raise ConfigError("nproc", world, f"at most the grid's {rows} rows")
    bands = band_rows(rows, world)
    thinnest = min(b - a for a, b in bands)
    halo = halo_width(config)
    if thinnest < halo:
        raise ConfigError(
            "nproc",
            world,
            f"a band of {thinnest} row(s) is thinner than the attention's halo of {halo} "
            f"rows (attention.radius); use at most {rows // halo} processes",
        )


@dataclass(frozen=True)
class ColumnShard:
    """This rank's part of the column grid, and the collectives it needs.

    Attributes
    ----------
    rank, world : this process's rank and the number of ranks
    grid : ``(H_g, W_g)`` of the whole model
    rows : ``(r0, r1)``, this rank's grid rows
    group : the process group (None: the default one)
    """

    rank: int
    world: int
    grid: tuple[int, int]
    rows: tuple[int, int]
    group: Any = None

    @classmethod
    def of(cls, grid: tuple[int, int], rank: int | None = None, world: int | None = None):
        """The shard of ``rank`` among ``world`` (default: the initialised process group's)."""
        if rank is None or world is None:
            rank, world = dist.get_rank(), dist.get_world_size()
        return cls(rank, world, tuple(grid), band_rows(grid[0], world)[rank])

    # -- geometry --------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """``N``, the columns of the whole grid."""
        return self.grid[0] * self.grid[1]

    @property
    def columns(self) -> tuple[int, int]:
        """``(c0, c1)``: this rank's columns in the unsharded order."""
        return self.rows[0] * self.grid[1], self.rows[1] * self.grid[1]

    @property
    def n(self) -> int:
        """The number of columns this rank holds."""
        return (self.rows[1] - self.rows[0]) * self.grid[1]

    @property
    def local_grid(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.grid[1]

    def pixel_rows(self, patch: int) -> slice:
        """The image rows this rank's columns read."""
        return slice(self.rows[0] * patch, self.rows[1] * patch)

    def extended_rows(self, width: int) -> tuple[int, int]:
        """``(above, below)``: halo rows this rank receives (fewer at the grid's edges)."""
        return min(width, self.rows[0]), min(width, self.grid[0] - self.rows[1])

    # -- collectives -----------------------------------------------------------------------
    def all_reduce(self, x: Tensor) -> Tensor:
        """Sum ``x`` over the ranks, in place; returns it."""
        SENT["all_reduce"] += x.numel() * x.element_size() * 2 * (self.world - 1) // self.world
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)
        return x

    def halo(self, e: Tensor, width: int) -> Tensor:
        """This rank's columns ``e [n, ...]`` grown by ``width`` grid rows from each
        neighbouring band: ``[(above + rows + below) W_g, ...]`` in grid order, exchanged
        point-to-point (each band must hold at least ``width`` rows)."""
        above, below = self.extended_rows(width)
        if self.world == 1 or width == 0:
            return e
        wg = self.grid[1]
        ops, recv_up, recv_down = [], None, None
        if above:
            recv_up = torch.empty((above * wg, *e.shape[1:]), dtype=e.dtype, device=e.device)
            ops.append(dist.P2POp(dist.isend, e[: above * wg].contiguous(), self.rank - 1))
            ops.append(dist.P2POp(dist.irecv, recv_up, self.rank - 1))
        if below:
            recv_down = torch.empty((below * wg, *e.shape[1:]), dtype=e.dtype, device=e.device)
            ops.append(dist.P2POp(dist.isend, e[-below * wg :].contiguous(), self.rank + 1))
            ops.append(dist.P2POp(dist.irecv, recv_down, self.rank + 1))
        SENT["halo"] += sum(op.tensor.numel() * op.tensor.element_size() for op in ops[::2])
        for req in dist.batch_isend_irecv(ops):
            req.wait()
        parts = [p for p in (recv_up, e, recv_down) if p is not None]
        return torch.cat(parts, 0)

    def gather_columns(self, x: Tensor, dim: int = 0, to: int | None = None) -> Tensor | None:
        """All ranks' columns of ``x`` (this rank's along ``dim``) in the unsharded order: on
        every rank, or only on rank ``to`` (the others get None)."""
        if self.world == 1:
            return x
        x = x.detach().movedim(dim, 0).contiguous()
        counts = [(b - a) * self.grid[1] for a, b in band_rows(self.grid[0], self.world)]
        most = max(counts)
        pad = torch.zeros((most, *x.shape[1:]), dtype=x.dtype, device=x.device)
        pad[: x.shape[0]] = x
        sent = pad.numel() * pad.element_size()
        SENT["gather"] += sent * (self.world - 1) if to is None else sent * (self.rank != to)
        if to is None:
            parts = [torch.empty_like(pad) for _ in counts]
            dist.all_gather(parts, pad, group=self.group)
        else:
            parts = [torch.empty_like(pad) for _ in counts] if self.rank == to else None
            dist.gather(pad, parts, dst=to, group=self.group)
            if parts is None:
                return None
        full = torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)], 0)
        return full.movedim(0, dim)

    def any(self, *flags: bool) -> list[bool]:
        """Each flag or-ed over the ranks (one small all-reduce)."""
        x = torch.tensor([float(f) for f in flags], dtype=torch.float64)
        dist.all_reduce(x, op=dist.ReduceOp.MAX, group=self.group)
        return [bool(v) for v in x]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out


def gather_state(model: Any, to: int = 0) -> dict[str, Tensor] | None:
    """The whole model's ``state_dict`` on rank ``to`` (None on the others), gathered from
    every rank's shard of a sharded :class:`~bioglom.model.Glom`: column-wise entries
    (:meth:`~bioglom.model.Glom.column_wise`) concatenated on their column axis, the rest
    (shared weights, pooled statistics: the same on every rank) taken from rank ``to``.
    Every rank must call it."""
    shard = model.shard
    state = model.state_dict()
    if shard is None:
        return state
    wise = model.column_wise()
    out = {}
    for name, value in state.items():
        if name in wise:
            value = shard.gather_columns(value, dim=1, to=to)
        out[name] = value
    return out if shard.rank == to else None


def column_slices(shard: ColumnShard, full: dict[str, Tensor], own: dict[str, Tensor]):
    """``own``'s entries taken from ``full`` (a whole model's ``state_dict``): where the
    shapes differ, the column axis (axis 1, ``[K', N, ...]``) is cut to this rank's
    columns; everything else (shared weights, per-level values) is copied whole."""
    c0, c1 = shard.columns
    out = {}
    for name, mine in own.items():
        value = full[name]
        if value.shape != mine.shape:
            if value.dim() < 2 or value.shape[1] != shard.total:
                raise ValueError(
                    f"{name}: shape {list(value.shape)} has no column axis of {shard.total} "
                    f"to cut to {list(mine.shape)}"
                )
            value = value[:, c0:c1]
        out[name] = value.clone()
    return out


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) where it is set and the
    group is not yet initialised: gloo on the CPU, NCCL where CUDA is available. Returns
    whether this process is one of several ranks."""
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_world_size() > 1
