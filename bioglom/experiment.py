"""What every experiment script shares: its command line, each arm's config, training an arm
(resumably), reading a run's final metrics, and Markdown tables.

An experiment script (``experiments/<name>.py``, its page ``docs/experiments/<name>.md``) is
one readable file: its presets and arms at the top, then a ``main`` that builds each arm's
config with :func:`arm_config`, trains it with :func:`run_arm` and prints tables made with
:func:`markdown_table`; :func:`run_experiment` turns Ctrl-C into a clean stop that
``--resume`` continues.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, load_config, parse_override
from .jobs import Job, run_arm, run_jobs
from .runs import open_run

__all__ = [
    "final_metrics",
    "markdown_table",
    "fmt",
    "experiment_parser",
    "arm_config",
    "run_experiment",
    "run_arm",
    "Job",
    "train_jobs",
    "seeded_jobs",
    "seed_list",
    "seeds_of",
    "job_count",
    "spread",
    "differs",
    "mean_sd",
    "QUICK",
    "REFERENCE",
]

#: The model of every experiment's ``quick`` preset (seconds per arm on 2 CPU cores; the tests
#: run these): 8x8 columns, 3 levels, d = 16, 40 updates of 8 scenes. A script's preset starts
#: from it and changes only what its experiment needs.
QUICK: dict[str, Any] = {
    "data.image_size": 16,  # 8x8 columns
    "data.n_train": 256,
    "data.n_probe": 16,
    "model.levels": 3,
    "model.dim": 16,
    "model.hidden": 32,
    "frontend.hidden": 32,
    "settle.steps": 4,
    "train.batch_size": 8,
    "train.updates": 40,
    "run.record_every": 10,
    "run.snapshot_every": 40,
}

#: The reference configuration of every speed measurement (``bioglom bench``,
#: ``experiments/cuda_check.py``, docs/performance.md): 16x16 columns, 5 levels, d = 64,
#: two-layer column MLPs with 128 hidden units, window attention of radius 1 + level, 8 steps.
REFERENCE: dict[str, Any] = {
    "model.levels": 5,
    "model.dim": 64,
    "model.hidden": 128,
    "model.hidden_layers": 1,  # two linear layers: d -> 128 -> d
    "frontend.patch_size": 2,
    "data.image_size": 32,  # 16x16 columns
    "settle.steps": 8,
    "attention.neighbourhood": "window",
    "attention.radius": {"first": 1, "step": 1},
    "train.rule": "codistill",
}


def final_metrics(path: str | os.PathLike) -> dict[str, float]:
    """The last record of every metric of a run (NaN where the last record lacks it)."""
    with open_run(path) as run:
        return {k: float(v[-1]) for k, v in run.metrics.items() if len(v)}


def fmt(value: float, digits: int = 3) -> str:
    """A number for a table: fixed digits, '-' for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def mean_sd(values: Sequence[float], spec: str = "+.2f") -> str:
    """``"mean ± sd"`` of one number per seed for a table (sample sd, NaNs left out; no sd for
    one finite value; ``"-"`` when none is finite); ``spec`` is the format of both, the sd
    without its sign."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if not len(finite):
        return "-"
    sd = f" ± {np.std(finite, ddof=1):{spec.lstrip('+')}}" if len(finite) > 1 else ""
    return f"{finite.mean():{spec}}{sd}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers go through :func:`fmt`."""

    def cell(v: object) -> str:
        return fmt(float(v)) if isinstance(v, float | np.floating) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (the ``--seeds`` option); raises
    ``argparse.ArgumentTypeError`` naming an item that is not a non-negative integer, or an
    empty list."""
    seeds = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not a non-negative integer")
        seeds.append(int(item))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seed in {text!r}")
    return seeds


def job_count(text: str) -> int:
    """The ``--jobs`` option: a positive integer (raises ``argparse.ArgumentTypeError``)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def seeds_of(args: argparse.Namespace, defaults: Mapping[str, str]) -> list[int]:
    """The seeds of a parsed command line: ``--seeds``, else the preset's default."""
    return args.seeds if args.seeds is not None else seed_list(defaults[args.preset])


def experiment_parser(
    doc: str, presets: Iterable[str], out: str, seeds: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The options every experiment script shares: ``--preset``, ``--out`` (folder for the
    runs, default ``out``), ``--quiet``, ``--resume``, ``--set`` (a config override for every
    arm, as ``bioglom run --set``; pass ``args.overrides`` to :func:`arm_config`), ``--jobs N``
    (arms and seeds as N processes, :func:`train_jobs`) and ``--ray ADDRESS`` (the same jobs as
    Ray tasks on a cluster, N at once); with ``seeds`` (preset -> default seeds, ``"0,1,2"``)
    also ``--seeds`` (read the list with :func:`seeds_of`); a script adds its own."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    if seeds is not None:
        defaults = ", ".join(f"{p}: {s}" for p, s in seeds.items())
        ap.add_argument(
            "--seeds",
            type=seed_list,
            default=None,
            metavar="S,S,...",
            help=f"every arm once per seed, comma-separated (default {defaults})",
        )
    ap.add_argument(
        "--jobs",
        type=job_count,
        default=1,
        metavar="N",
        help="train up to N arms and seeds at once, each in its own process with "
        "cores/N threads (default 1: one after another in this process); with --ray, N "
        "tasks at once with the cluster's cores/N threads each",
    )
    ap.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run the jobs as Ray tasks on the cluster at ADDRESS (host:6379, or "
        "ray://host:10001 with ray[client]); 'auto' for the Ray instance running here, else a "
        "new local one; the run files go to --out, which every node and this machine must "
        'see (a shared folder). Needs pip install -e ".[ray]"',
    )
    ap.add_argument("--preset", choices=sorted(presets), default="quick")
    ap.add_argument("--out", default=out, help="folder for the runs")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep finished runs in DIR, continue unfinished ones from their checkpoints",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config field of every arm (repeatable; applied last, after the "
        "preset and the arm's own settings)",
    )
    return ap


def arm_config(*layers: Mapping[str, Any], sets: Sequence[str] = ()) -> Config:
    """The validated config of one arm: the defaults, then each layer of ``{"section.key":
    value}`` overrides in turn (the script's common settings, the preset, the arm's own),
    then the command line's ``--set section.key=value`` items."""
    items: dict[str, Any] = {}
    for layer in layers:
        items.update(layer)
    for item in sets:
        path, value = parse_override(item)
        items[".".join(path)] = value
    return load_config(overrides=items)


def run_experiment(main: Callable[[], int | None]) -> int:
    """Run an experiment script's ``main``; Ctrl-C (which stops the current arm with a
    checkpoint, :func:`run_arm`) ends the script with exit status 130 and says
    how to continue, instead of training the next arm."""
    try:
        return main() or 0
    except KeyboardInterrupt as stop:
        print(f"\nexperiment interrupted: {stop or 'Ctrl-C'}", file=sys.stderr)
        print("run the same command with --resume to continue", file=sys.stderr)
        return 130


def seeded_jobs(
    folder: str | os.PathLike,
    arms: Mapping[str, Sequence[Mapping[str, Any]]],
    seeds: Sequence[int],
    sets: Sequence[str] = (),
) -> list[Job]:
    """One job per arm and seed, seed by seed (so that a stopped experiment has whole seeds to
    show): arm ``name`` with config layers ``arms[name]`` (see :func:`arm_config`) and
    ``run.seed = s`` writes ``folder/<name>_seed<s>.h5``; ``sets`` are the ``--set`` items."""
    return [
        Job(
            arm_config(*layers, {"run.seed": seed}, sets=sets),
            Path(folder) / f"{name}_seed{seed}.h5",
        )
        for seed in seeds
        for name, layers in arms.items()
    ]


def train_jobs(
    jobs: Sequence[Job], args: argparse.Namespace, *, require_finished: bool = False
) -> dict[str, str]:
    """Train an experiment's jobs as its command line says (``--jobs``, ``--ray``,
    ``--resume``, ``--quiet``): :func:`bioglom.jobs.run_jobs`; returns ``{job label: status}``.
    With ``require_finished`` a run that did not finish (diverged) raises RuntimeError naming
    it."""
    statuses = run_jobs(
        jobs,
        n_jobs=args.jobs,
        resume=args.resume,
        progress=not args.quiet,
        ray=getattr(args, "ray", None),
    )
    bad = {name: status for name, status in statuses.items() if status != "finished"}
    if require_finished and bad:
        raise RuntimeError(", ".join(f"{name}: the run {status}" for name, status in bad.items()))
    return statuses


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample sd) of one number per seed, NaNs left out (sd 0 for one value)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def differs(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two arms differ by more than their spread: ``|mean_a - mean_b| > sd_a + sd_b``
    over their seeds (the rule every experiment page uses before calling a difference one;
    False with fewer than two seeds on either side, where there is no spread to exceed)."""
    if sum(np.isfinite(np.asarray(a, float))) < 2 or sum(np.isfinite(np.asarray(b, float))) < 2:
        return False
    (ma, sa), (mb, sb) = spread(a), spread(b)
    return abs(ma - mb) > sa + sb
