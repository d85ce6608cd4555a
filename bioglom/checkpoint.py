"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint sits beside its run as ``<run>.ckpt`` and holds the update count, how many
records and snapshots the run file had then, the weights and buffers (homeostatic statistics
included), the rule's and the night's optimiser state, the replay memory, and the state of
every random generator the loop draws from (the loop's torch generator, the numpy batch
sampler, torch's global generator, and the rule's own, e.g. the spike generator). Resuming
from it on the CPU replays the remaining updates bit for bit.

Writes are atomic: the checkpoint is written to a temporary file in the same folder, flushed
to disk, and renamed over the old one, so a crash at any moment leaves either the previous
checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import Config, ConfigError, saved_config
from .runs import open_run

__all__ = [
    "FORMAT",
    "checkpoint_path",
    "save_checkpoint",
    "load_checkpoint",
    "Learner",
    "ResumeError",
    "config_differences",
    "load_resume",
]

FORMAT = "bioglom-checkpoint/1"


def checkpoint_path(run_path: str | os.PathLike[str], rank: int = 0) -> Path:
    """``<run>.ckpt`` beside the run file; rank ``r > 0`` of a sharded run keeps its shard in
    ``<run>.rank<r>.ckpt``."""
    suffix = ".ckpt" if rank == 0 else f".rank{rank}.ckpt"
    return Path(run_path).with_suffix(suffix)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically: temp file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint {str(path)!r} to resume from (checkpoints are written every "
            "run.checkpoint_every updates)"
        )
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a bioglom checkpoint ({FORMAT})")
    return state


@dataclass
class Learner:
    """What an update changes and a checkpoint must hold to replay the rest exactly: the model
    (weights and homeostatic statistics), the rule and the night (optimiser state, replay
    memory, their own generators), the loop's torch generator and numpy batch sampler, and
    torch's global generator."""

    model: nn.Module
    rule: Any
    sleep: Any | None
    generator: torch.Generator
    batch_rng: np.random.Generator

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's entries for everything above (keys of format 1)."""
        return {
            "model": self.model.state_dict(),
            "rule": self.rule.state_dict(),
            "sleep": None if self.sleep is None else self.sleep.state_dict(),
            "generator": self.generator.get_state(),
            "batch_rng": self.batch_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (the generators last, as they were saved)."""
        self.model.load_state_dict(state["model"])
        self.rule.load_state_dict(state["rule"])
        if self.sleep is not None:
            self.sleep.load_state_dict(state["sleep"])
        self.generator.set_state(state["generator"])
        self.batch_rng.bit_generator.state = state["batch_rng"]
        torch.set_rng_state(state["torch_rng"])


class ResumeError(ValueError):
    """A run that cannot be resumed for a reason other than a missing file or config."""


def config_differences(saved: Config, given: Config) -> list[str]:
    """The fields (``section.key``) in which two configs differ, ``run.device`` aside: a run
    may continue on another device, but not with other settings."""
    a, b = saved.to_dict(), given.to_dict()
    return [
        f"{section}.{key}"
        for section, fields in b.items()
        for key, value in fields.items()
        if a.get(section, {}).get(key) != value and f"{section}.{key}" != "run.device"
    ]


def load_resume(
    config: Config, out: str | os.PathLike[str], rank: int = 0, world: int = 1
) -> dict[str, Any]:
    """The checkpoint of the run in ``out``, checked against ``config``: refused (with the
    reason) when there is no run, the run diverged or finished, or ``config`` differs from the
    run's own in any field but ``run.device`` (:class:`~bioglom.config.ConfigError` naming the
    first such field). Rank ``rank`` of ``world`` reads its own shard's checkpoint; a run
    checkpointed on another number of processes is refused (``ConfigError`` on ``nproc``)."""
    out = Path(out)
    if not out.exists():
        raise FileNotFoundError(f"no run {str(out)!r} to resume")
    with open_run(out) as run:
        status, attrs = run.status, run.attrs
    if status == "diverged":  # the checkpoint would replay the same updates into the same NaN
        raise ResumeError(
            f"run {str(out)!r} diverged at update {attrs.get('diverged_at')} "
            f"({attrs.get('diverged_tensor')}): resuming would repeat it; change the config and "
            "train afresh"
        )
    ckpt_path = checkpoint_path(out, rank)
    if not ckpt_path.exists() and status == "finished":
        raise FileNotFoundError(f"run {str(out)!r} has finished: nothing to resume")
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("world", 1) != world:
        raise ConfigError(
            "nproc",
            world,
            f"the {ckpt.get('world', 1)} process(es) run {str(out)!r} was checkpointed with, "
            "to resume it (each holds its own columns' weights and optimiser state)",
        )
    saved = saved_config(ckpt["config"])
    differ = config_differences(saved, config)
    given, saved = config.to_dict(), saved.to_dict()
    if differ:
        field = differ[0]
        section, key = field.split(".")
        raise ConfigError(
            field,
            given[section][key],
            f"the value the run was started with, {saved[section][key]!r}, to resume it "
            f"({len(differ)} field(s) differ: {', '.join(differ[:5])})",
        )
    return ckpt
