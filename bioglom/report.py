"""Small helpers for experiment scripts: final metrics of a run, and Markdown tables."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .config import Config, load_config, parse_override
from .runs import open_run

__all__ = [
    "final_metrics",
    "markdown_table",
    "fmt",
    "experiment_parser",
    "arm_config",
    "run_experiment",
]


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


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; numbers go through :func:`fmt`."""

    def cell(v: object) -> str:
        return fmt(float(v)) if isinstance(v, float | np.floating) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def experiment_parser(doc: str, presets: Iterable[str], out: str) -> argparse.ArgumentParser:
    """The options every experiment script shares: ``--preset``, ``--out`` (folder for the
    runs, default ``out``), ``--quiet``, ``--resume`` and ``--set`` (a config override for
    every arm, as ``bioglom run --set``; pass ``args.overrides`` to :func:`arm_config`); a
    script adds its own."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
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
    checkpoint, :func:`bioglom.train.run_arm`) ends the script with exit status 130 and says
    how to continue, instead of training the next arm."""
    try:
        return main() or 0
    except KeyboardInterrupt as stop:
        print(f"\nexperiment interrupted: {stop or 'Ctrl-C'}", file=sys.stderr)
        print("run the same command with --resume to continue", file=sys.stderr)
        return 130
