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
from pathlib import Path
from typing import Any

import torch

__all__ = ["FORMAT", "checkpoint_path", "save_checkpoint", "load_checkpoint"]

FORMAT = "bioglom-checkpoint/1"


def checkpoint_path(run_path: str | os.PathLike[str]) -> Path:
    """``<run>.ckpt`` beside the run file."""
    return Path(run_path).with_suffix(".ckpt")


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
