"""Runs as pandas tables: one run's records (:meth:`bioglom.runs.Run.frame`) and one row per
run of a folder (:func:`table`, also ``bioglom.runs.table`` and ``bioglom runs FOLDER``).

pandas is optional (the ``analysis`` extra: ``pip install -e ".[analysis]"``) and imported
only here, when a table is asked for::

    from bioglom.runs import table
    t = table("runs/islands")
    t.groupby(["train.rule", "model.sharing"])["probe_dfgari_obj_L3"].agg(["mean", "std", "count"])

A run's row holds its file (``run``: the stem, ``path``), ``status``, ``seed``, ``update`` (the
last record's update), ``records``, every config field flattened to ``section.key`` (lists and
tables as JSON text, so that every column can be grouped on), every metric's final value under
its own name (the last record's, NaN where that record lacks it: a diverged run ends NaN) and,
for metrics with a direction (:func:`metric_goal`), the best value over the records as
``best_<metric>``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .runs import Run

__all__ = ["pandas", "run_frame", "table", "metric_goal", "run_row"]

ANALYSIS_EXTRA = 'pip install -e ".[analysis]"  (or: pip install pandas)'

# A metric's direction, by the first pattern its name (without "_L<k>") matches: "min" when
# lower is better, "max" when higher is better; the rest (sizes, counts, cosines, norms,
# collapse statistics, timing) have none and get no best_ column.
_GOALS = (
    (r"^loss", "min"),
    (r"_mse$", "min"),
    (r"^probe_ensemble", "min"),  # the ensemble ratio: < 1 when the mean of a group beats one
    (r"^probe_linear_acc", "max"),
    (r"^probe_d?(fg)?ari_(obj|part)$", "max"),
    (r"^probe_d?miou_(obj|part)$", "max"),
    (r"^probe_d?w?nesting$", "max"),
    (r"^probe_agree_(bu|td)$", "max"),
)


def pandas() -> Any:
    """The pandas module, or ImportError naming the extra that installs it."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError(f"runs as tables need pandas: {ANALYSIS_EXTRA}") from err
    return pd


def metric_goal(name: str) -> str | None:
    """``"min"`` if a lower value of metric ``name`` is better, ``"max"`` if a higher one is,
    None where neither holds (island counts and sizes, cosines, norms, rank, timing)."""
    stem = re.sub(r"_L\d+$", "", name)
    for pattern, goal in _GOALS:
        if re.search(pattern, stem):
            return goal
    return None


def run_frame(run: Run) -> pd.DataFrame:
    """One run's records: a DataFrame indexed by ``update`` (the record's update count), one
    float column per metric and the schedule ``phase`` of each record (str)."""
    pd = pandas()
    metrics = run.metrics
    steps = metrics.pop("step")
    frame = pd.DataFrame(metrics, index=pd.Index(steps, name="update"))
    frame = frame[sorted(frame.columns)]
    frame.insert(0, "phase", run.phase[: len(frame)])
    return frame


def _flat_config(config: Any) -> dict[str, Any]:
    """``{"section.key": value}`` of a config, lists and tables as JSON text."""
    flat = {}
    for section, fields in config.to_dict().items():
        for key, value in fields.items():
            if isinstance(value, list | dict):
                value = json.dumps(value, sort_keys=True)
            flat[f"{section}.{key}"] = value
    return flat


def run_row(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The row of one run file in :func:`table` (module docstring); a file that cannot be read
    gets ``status = "unreadable"`` and the reason in ``error``."""
    from .runs import open_run

    path = Path(path)
    row: dict[str, Any] = {"run": path.stem, "path": str(path)}
    try:
        with open_run(path) as run:
            row.update(status=run.status, seed=run.seed)
            metrics = run.metrics
            config = run.config
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        row.update(status="unreadable", error=" ".join(str(err).split()))
        return row
    steps = metrics.pop("step")
    row.update(update=int(steps[-1]) if len(steps) else -1, records=len(steps))
    row.update(_flat_config(config))
    finals, bests = {}, {}
    for name in sorted(metrics):
        values = metrics[name]
        finals[name] = float(values[-1]) if len(values) else float("nan")
        goal = metric_goal(name)
        finite = values[np.isfinite(values)]
        if goal is not None:
            best = (finite.min() if goal == "min" else finite.max()) if len(finite) else np.nan
            bests[f"best_{name}"] = float(best)
    row.update(finals)
    row.update(bests)
    return row


def _run_files(paths_or_folder: str | os.PathLike[str] | Iterable) -> list[Path]:
    if isinstance(paths_or_folder, str | os.PathLike):
        items = [Path(paths_or_folder)]
    else:
        items = [Path(p) for p in paths_or_folder]
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            files += sorted(item.rglob("*.h5"))
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"no run file or folder at {str(item)!r}")
    return files


def table(paths_or_folder: str | os.PathLike[str] | Iterable) -> pd.DataFrame:
    """One row per run (module docstring) of a run file, a folder (every ``*.h5`` under it,
    sub-folders included) or a list of either, in path order. Columns: ``run``, ``path``,
    ``status``, ``seed``, ``update``, ``records``, the flattened config, the final metrics and
    ``best_<metric>``."""
    pd = pandas()
    rows = [run_row(p) for p in _run_files(paths_or_folder)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["run", "path", "status", "seed", "update", "records"])
    return frame
