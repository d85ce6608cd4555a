"""Benchmark section 5: columns sharded over processes (:mod:`bioglom.distributed`).

Run by ``bioglom bench`` (``--nproc P``, default 2) on the CPU with gloo. Each measurement
starts ``P`` (or 1) fresh processes with one thread each, so that ``P`` ranks use ``P``
cores; every rank times the same learning update (an update of ``settle.steps`` settling
steps with its co-distillation step, divided by the steps) after a barrier, and the slowest
rank's median is the time of the step, as the ranks wait for each other at every halo.

* **weak scaling**: ``P`` ranks holding ``N / P`` columns each (the grid ``P h x W``) against
  one process holding ``N / P`` columns (the grid ``h x W``): 1.0 is perfect, above it is the
  price of the exchanges and of waiting;
* **strong scaling**: the grid ``P h x W`` on ``P`` ranks against one process with one thread
  and against one process with ``P`` threads (what the same cores do without sharding);
* **bytes sent per settling step** by each rank (:data:`bioglom.distributed.SENT`: halos,
  all-gathers, all-reduces), against the size of the rank's state ``[K, N / P, B, d]``, for
  window attention (halos of ``r_l`` rows) and Gaussian neighbourhoods (all-gathered levels).
"""

from __future__ import annotations

import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import build_model
from .config import Config, config_from_toml
from .distributed import SENT, ColumnShard
from .rules import make_rule

__all__ = ["scaling", "report_rows"]


def _time_update(
    config: Config, grid: tuple[int, int], batch: int, repeats: int, warmup: int, rank_world
) -> dict:
    """This process's median learning step (ms) and bytes sent per settling step."""
    shard = ColumnShard.of(grid, *rank_world) if rank_world[1] > 1 else None
    patch = config.frontend.patch_size
    size = (grid[0] * patch, grid[1] * patch)
    model = build_model(config, channels=3, image_size=size, shard=shard)
    rule = make_rule(model, config)
    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    model.train()
    steps = config.settle.steps
    times = []
    for i in range(warmup + repeats):
        if i == warmup:
            SENT.clear()
        if shard is not None:
            dist.barrier()
        t0 = time.perf_counter()
        rule.update(images, generator)
        times.append((time.perf_counter() - t0) * 1e3 / steps)
    sent = sum(SENT.values()) / (repeats * steps)
    state = model.K * model.N * batch * model.d * 4
    return {
        "ms": statistics.median(times[warmup:]),
        "sent_bytes": sent,
        "sent_by_kind": {k: v / (repeats * steps) for k, v in SENT.items()},
        "state_bytes": state,
        "columns": model.N,
    }


def _worker(rank: int, world: int, rendezvous: str, job: dict, out: str) -> None:
    torch.set_num_threads(job["threads"])
    if world > 1:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{rendezvous}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=600),
        )
    try:
        config = config_from_toml(job["config"])
        result = _time_update(
            config, job["grid"], job["batch"], job["repeats"], job["warmup"], (rank, world)
        )
        torch.save(result, f"{out}.{rank}")
    finally:
        if world > 1:
            dist.destroy_process_group()


def _measure(config: Config, grid, world: int, threads: int, p: dict) -> dict:
    """One measurement in ``world`` fresh processes; the slowest rank's time, rank 0's
    bytes (the bands are equal, and an inner band sends the most)."""
    job = {
        "config": config.to_toml(),
        "grid": tuple(grid),
        "batch": p["batch"],
        "repeats": p["repeats"],
        "warmup": p["warmup"],
        "threads": threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        out, rendezvous = str(Path(tmp) / "result"), str(Path(tmp) / "rendezvous")
        env = {"OMP_NUM_THREADS": str(threads)}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            mp.start_processes(
                _worker, args=(world, rendezvous, job, out), nprocs=world, start_method="spawn"
            )
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(world)]
    busiest = max(ranks, key=lambda r: r["sent_bytes"])
    return {**busiest, "ms": max(r["ms"] for r in ranks), "ranks_ms": [r["ms"] for r in ranks]}


def scaling(configs: dict[str, Config], p: dict, world: int) -> dict:
    """Weak and strong scaling on ``world`` ranks for each named configuration (its grid:
    ``p["dist_grid"]`` rows x columns in all, ``rows / world`` per rank)."""
    rows, cols = p["dist_grid"]
    if rows % world:
        raise ValueError(f"dist_grid rows {rows} must divide into {world} bands")
    band = (rows // world, cols)
    result = {}
    for name, config in configs.items():
        one_band = _measure(config, band, 1, 1, p)
        sharded = _measure(config, (rows, cols), world, 1, p)
        whole_1 = _measure(config, (rows, cols), 1, 1, p)
        whole_p = _measure(config, (rows, cols), 1, world, p)
        result[name] = {
            "world": world,
            "grid": [rows, cols],
            "one_band_ms": one_band["ms"],
            "sharded_ms": sharded["ms"],
            "sharded_ranks_ms": sharded["ranks_ms"],
            "whole_1_thread_ms": whole_1["ms"],
            f"whole_{world}_threads_ms": whole_p["ms"],
            "weak": sharded["ms"] / one_band["ms"],
            "strong_vs_1_thread": whole_1["ms"] / sharded["ms"],
            f"strong_vs_{world}_threads": whole_p["ms"] / sharded["ms"],
            "sent_bytes_per_step": sharded["sent_bytes"],
            "sent_by_kind": sharded["sent_by_kind"],
            "state_bytes": sharded["state_bytes"],
            "sent_over_state": sharded["sent_bytes"] / sharded["state_bytes"],
        }
    return result


def report_rows(result: dict) -> list[list]:
    """Rows of the printed table: one per configuration."""
    rows = []
    for name, r in result.items():
        w = r["world"]
        rows.append(
            [
                name,
                f"{r['grid'][0]}x{r['grid'][1]}",
                r["one_band_ms"],
                r["sharded_ms"],
                r["weak"],
                r["strong_vs_1_thread"],
                r[f"strong_vs_{w}_threads"],
                r["sent_bytes_per_step"] / 2**10,
                r["sent_over_state"],
            ]
        )
    return rows
