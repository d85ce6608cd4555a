"""The training loop: batches in, one rule update each, records and snapshots out to HDF5.

The loop knows nothing about how a rule learns (:mod:`bioglom.rules`); it samples batches,
calls ``rule.update`` (and the night's, :mod:`bioglom.rules.sleep`, as the schedule says),
averages what they return between records, evaluates the probe batch (:mod:`bioglom.probe`)
and streams both to the run file (:mod:`bioglom.runs`). Where the images come from is
:mod:`bioglom.splits`; what a checkpoint holds and when a run may resume, :mod:`bioglom.checkpoint`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .allocator import keep_freed_memory
from .checkpoint import Learner, ResumeError, checkpoint_path, load_resume, save_checkpoint
from .config import Config, ConfigError
from .data import ImageSet, VideoSet
from .distributed import ColumnShard, gather_state
from .model import Glom, build_model, resolve_device
from .probe import Probe, probe_metric_names, probe_truth
from .rules import make_rule
from .rules.sleep import NIGHT_METRICS, Sleep
from .runs import RunWriter
from .schedule import parse_schedule, phase_of_update
from .splits import DataSplits, load_data

__all__ = [
    "train",
    "TrainResult",
    "default_run_path",
    "schedule_of",
    "precision",
    "log_spaced_updates",
]


@dataclass
class TrainResult:
    """What :func:`train` leaves: the run file, the weights file, the final metrics."""

    path: Path
    weights: Path
    status: str
    summary: dict[str, float]
    model: Glom
    reason: str = ""  # why a run did not finish, e.g. "non-finite loss by update 40"


def default_run_path(config: Config, stem: str = "run") -> Path:
    """``<run.out_dir>/<stem>-<UTC time>.h5``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(config.run.out_dir) / f"{stem}-{stamp}.h5"


def _versions() -> dict[str, str]:
    return {
        "bioglom": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),  # intra-op threads (--jobs: cores/N)
    }


def schedule_of(config: Config) -> list[str]:
    """The phase kind of every update: ``schedule.phases`` expanded, or ``day`` x updates."""
    if config.schedule.phases.strip():
        return phase_of_update(parse_schedule(config.schedule.phases))
    return ["day"] * config.train.updates


def log_spaced_updates(per_decade: int, updates: int) -> frozenset[int]:
    """The updates ``round(10^(j / n))``, ``j = 0, 1, ...``, up to ``updates``: ``n`` records
    per decade for curves on log axes (``run.record_per_decade``; empty when ``n = 0``)."""
    if per_decade <= 0 or updates < 1:
        return frozenset()
    out, j = set(), 0
    while (u := round(10 ** (j / per_decade))) <= updates:
        out.add(u)
        j += 1
    return frozenset(out)


@contextlib.contextmanager
def precision(config: Config, device: torch.device):
    """The arithmetic of ``run.precision`` for the updates inside the block: ``bf16`` autocasts
    them (PyTorch's op lists: matmuls in bfloat16, reductions and the weights in fp32);
    ``tf32`` lets CUDA matmuls and convolutions use TensorFloat-32; ``fp32`` forbids it (PyTorch
    allows it for convolutions by default). The global flags are restored on exit."""
    p = config.run.precision
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = p == "tf32"
    try:
        if p == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def train(
    config: Config,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    on_update: Callable[[int, int], None] | None = None,
    shard: ColumnShard | None = None,
) -> TrainResult:
    """Train a model as ``config`` says and write the run to ``out`` (an ``.h5`` file).

    Follows the schedule (:mod:`bioglom.schedule`): a ``day`` update is the rule's update on a
    batch of real images, whose settled top-level states then enter the replay memory; a
    ``night`` update is :class:`~bioglom.rules.sleep.Sleep`'s negative update on dreams;
    ``interleaved`` does both. Records the metrics (means since the previous record) and the
    probe every ``run.record_every`` updates, at the last update of every phase, at every
    snapshot, checkpoint and at the end, each with the phase of its update (so no record spans
    two phases); snapshots the probe every ``run.snapshot_every`` updates and at the end;
    checkpoints every ``run.checkpoint_every`` updates (:mod:`bioglom.checkpoint`); saves the
    final weights beside the run as ``<out>.pt``.

    Statuses: ``finished``; ``diverged`` when a loss, the settled state or a weight turns NaN
    or Inf (checked after every update; the run stops there, its attrs ``diverged_at`` and
    ``diverged_tensor`` say where); ``interrupted`` on Ctrl-C (SIGINT), which stops at the end
    of the current update and writes a checkpoint (a second Ctrl-C stops at once); ``failed``
    when it raises. The returned model is in eval mode.

    ``resume=True`` continues the run in ``out`` from its checkpoint ``<out>.ckpt``, appending
    to the same file (records written after the checkpoint are dropped and redone); ``config``
    must equal the run's own (``run.device`` aside). On the CPU the resumed run ends with the
    same weights and metrics as one never interrupted (``elapsed_s`` aside).

    ``on_update(u, total)``, when given, is called after every update ``u`` of ``total`` (a
    parent process's progress bar, :func:`bioglom.jobs.run_jobs`).

    With a ``shard`` (one of several ranks of an initialised process group,
    :mod:`bioglom.distributed`) this rank holds and trains its band of columns; every rank
    must call ``train`` with the same arguments. Rank 0 alone writes the run file, the
    progress bar and the final weights (gathered: the same ``<out>.pt`` as an unsharded run);
    the probe is evaluated on rank 0 on the model gathered from every rank. Each rank
    checkpoints its own shard (``<out>.ckpt``, ``<out>.rank<r>.ckpt``); a NaN on any rank and
    a Ctrl-C on any rank stop all of them at the same update.
    """
    keep_freed_memory()  # unshared updates reuse their large gradient blocks (allocator.py)
    shard = shard if shard is not None and shard.world > 1 else None
    lead = shard is None or shard.rank == 0
    progress = progress and lead
    out = Path(out) if out is not None else default_run_path(config)
    ckpt = _resume(config, out, shard) if resume else None
    data = load_data(config)
    device = None
    if shard is not None and resolve_device(config.run.device).type == "cuda":  # one GPU a rank
        local = int(os.environ.get("LOCAL_RANK", shard.rank))  # torchrun's rank on this node
        device = torch.device("cuda", local % torch.cuda.device_count())
    model = build_model(
        config,
        channels=data.train.channels,
        image_size=data.train.size,
        device=device,
        shard=shard,
    )
    kinds = schedule_of(config)
    learner = Learner(
        model,
        make_rule(model, config),
        Sleep(model, config) if any(k != "day" for k in kinds) else None,
        torch.Generator().manual_seed(config.run.seed + 1),
        np.random.default_rng(config.run.seed),
    )
    images = torch.from_numpy(_training_array(data)).to(model.device)
    truth = _training_truth(config, data, model) if learner.rule.needs_truth else None
    probe = _probe(config, data, model)
    if ckpt is not None:
        learner.load_state_dict(ckpt)
    writer = None
    if lead:
        writer = _open_run_file(config, out, learner, probe, data.probe, ckpt, overwrite)
    log = _Log(writer, probe, model, ckpt)
    done, updates, every = (ckpt or {}).get("update", 0), len(kinds), config.run
    params = dict(model.named_parameters())
    log_points = log_spaced_updates(every.record_per_decade, updates)
    bar = _progress_bar(config, kinds, done, progress)
    status, reason, bad, u = "failed", "", None, done
    stop = _SigintFlag()
    try:
        stop.install()
        model.train()
        if ckpt is None:
            log.record(0, phase=kinds[0] if kinds else "day", snapshot=True)
        for u in range(done + 1, updates + 1):
            kind = kinds[u - 1]
            if u == done + 1 or kind != kinds[u - 2]:
                bar.set_description(_title(config, kind), refresh=False)
            metrics, state = _update(kind, learner, images, truth, config)
            log.add(metrics)
            bar.update(1)
            if on_update is not None:
                on_update(u, updates)
            bad = first_nonfinite({**metrics, "state": state, **params})
            stopping = stop.flag  # read once: a Ctrl-C arriving later waits for the next update
            if shard is not None:  # every rank stops at the same update
                bad, stopping = _agree(shard, bad, stopping)
            if bad is not None:
                reason = f"non-finite {bad} at update {u}"
                log.record(u, phase=kind, snapshot=False, with_probe=False)
                break
            snap = u % every.snapshot_every == 0 or u == updates
            ck = every.checkpoint_every > 0 and u % every.checkpoint_every == 0
            boundary = u < updates and kinds[u] != kind  # the last update of a phase
            if u % every.record_every == 0 or u in log_points or snap or ck or boundary:
                log.record(u, phase=kind, snapshot=snap)
                bar.set_postfix(**log.headline(), refresh=False)
            if u < updates and (ck or stopping):
                if writer is not None:
                    writer.sync()  # the records the checkpoint counts are on disk before it is
                state_now = {"update": u, "config": config.to_toml(), **learner.state_dict()}
                if shard is not None:
                    state_now.update(world=shard.world, rank=shard.rank)
                path = checkpoint_path(out, 0 if shard is None else shard.rank)
                save_checkpoint(path, {**state_now, **log.state_dict()})
            if stopping and u < updates:
                reason = f"interrupted (Ctrl-C) after update {u}; continue with --resume"
                break
        status = "diverged" if bad is not None else "interrupted" if u < updates else "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        stop.uninstall()
        bar.close()
        model.eval()
        summary = {k: v for k, v in log.last.items() if np.isfinite(v)}
        summary["updates"] = float(u)
        attrs = {"diverged_at": u, "diverged_tensor": bad} if status == "diverged" else {}
        if writer is not None:
            writer.close(status=status, summary=summary, attrs=attrs)
        # a sharded run that raised may have left its ranks at different points: gathering
        # its weights could wait forever, and its checkpoint is what resumes it
        if shard is None or status != "failed":
            weights = gather_state(model)
            if lead:
                _save_weights(out.with_suffix(".pt"), weights, model, config, status)
        if status == "finished":  # nothing left to resume
            checkpoint_path(out, 0 if shard is None else shard.rank).unlink(missing_ok=True)
    return TrainResult(out, out.with_suffix(".pt"), status, summary, model, reason)


def _resume(config: Config, out: Path, shard: ColumnShard | None) -> dict:
    """:func:`load_resume` for this rank; on a sharded run every rank learns whether all of
    them could resume, and all resume from the same update or none does."""
    if shard is None:
        return load_resume(config, out)
    try:
        ckpt, failed = load_resume(config, out, shard.rank, shard.world), None
    except Exception as err:  # noqa: BLE001 - re-raised below, after the other ranks know
        ckpt, failed = None, err
    (any_failed,) = shard.any(failed is not None)
    if failed is not None:
        raise failed
    if any_failed:
        raise ResumeError(f"another rank of {shard.world} could not resume {str(out)!r}")
    updates = shard.gather_objects(ckpt["update"])
    if len(set(updates)) > 1:
        raise ResumeError(
            f"the ranks' checkpoints of {str(out)!r} are from different updates {updates} "
            "(a crash while they were written); train afresh"
        )
    return ckpt


def _agree(shard: ColumnShard, bad: str | None, stopping: bool) -> tuple[str | None, bool]:
    """What every rank does after an update: stop at a NaN or Ctrl-C on any rank. Returns
    the first bad tensor's name (with its rank) and whether to stop."""
    any_bad, stopping = shard.any(bad is not None, stopping)
    if any_bad:
        names = shard.gather_objects(bad)
        rank = next(r for r, n in enumerate(names) if n is not None)
        bad = f"{names[rank]} (rank {rank})"
    return bad, stopping


def _update(
    kind: str,
    learner: Learner,
    images: torch.Tensor,
    truth: dict[str, torch.Tensor] | None,
    config: Config,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One update of the schedule: a ``day`` update is the rule's on a batch of real images
    drawn without replacement (with their column labels for a rule that needs them), whose
    settled top-level states then enter the night's replay memory; a ``night`` update is the
    night's negative update on dreams; ``interleaved`` is both. Returns the update's metrics
    and the settled state of a day (else None)."""
    rule, sleep, metrics, state = learner.rule, learner.sleep, {}, None
    device = images.device
    if kind in ("day", "interleaved"):  # perceive and learn; remember the top level
        video = images.dim() == 5  # [T, n, C, H, W]: a batch of videos, one frame per step
        n = images.shape[1] if video else len(images)
        idx = learner.batch_rng.choice(n, config.train.batch_size, False)
        pick = torch.from_numpy(idx).to(device)
        batch = images[:, pick] if video else images[pick]
        with precision(config, device):
            if truth is None:
                metrics.update(rule.update(batch, learner.generator))
            else:
                labels = {k: v[torch.from_numpy(idx).to(device)] for k, v in truth.items()}
                metrics.update(rule.update(batch, learner.generator, truth=labels))
        state = rule.last_state
        if sleep is not None:
            sleep.memory.add(state[-1])
    if kind in ("night", "interleaved"):  # dream and unlearn
        with precision(config, device):
            metrics.update(sleep.update(learner.generator))
    return metrics, state


def _training_array(data: DataSplits) -> np.ndarray:
    """The training images ``[n, C, H, W]``, or the videos ``[T, n, C, H, W]``."""
    return data.train.frames if isinstance(data.train, VideoSet) else data.train.images


def _training_truth(config: Config, data: DataSplits, model: Glom) -> dict[str, torch.Tensor]:
    """Column labels ``[n, N]`` (majority over each patch) of the training images' masks, for
    a rule that learns from them."""
    truth = probe_truth(data.train, model.grid)
    if truth is None or set(truth) != {"obj", "part"}:
        raise ConfigError(
            "train.rule",
            config.train.rule,
            f"part and object masks on the grid, which data.source = {config.data.source!r} "
            "does not give here (use scenes, tetrominoes, or a file with masks)",
        )
    return {k: torch.from_numpy(v.reshape(len(v), -1)).to(model.device) for k, v in truth.items()}


class _Log:
    """The metrics between two records (running sums and counts), the last record written,
    and the clock; :meth:`record` writes the means (and the probe, and a snapshot) to the run.
    Resumed from a checkpoint, it continues the sums in progress and the clock.

    A sharded model's probe runs on rank 0 on a whole model (:attr:`whole`) loaded with the
    weights gathered from every rank at each record; the other ranks have no writer."""

    def __init__(self, writer: RunWriter | None, probe: Probe, model: Glom, ckpt: dict | None):
        self.writer, self.probe, self.model = writer, probe, model
        self.whole: Glom | None = None
        if model.shard is not None and model.shard.rank == 0:
            with torch.random.fork_rng(devices=[]):  # the loop's draws stay the unsharded ones
                self.whole = Glom(model.config, model.channels, model.image_size)
            self.whole.to(model.device).eval()
        ckpt = ckpt or {"sums": {}, "counts": {}, "last": {}, "elapsed_s": 0.0}
        self.sums = {k: v.to(model.device) for k, v in ckpt["sums"].items()}
        self.counts: dict[str, int] = dict(ckpt["counts"])
        self.last: dict[str, float] = ckpt["last"]
        self.start = time.perf_counter() - ckpt["elapsed_s"]

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        """Add one update's metrics to the sums."""
        for k, v in metrics.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.detach().clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def record(self, step: int, phase: str, snapshot: bool, with_probe: bool = True) -> None:
        """Write one record (and a snapshot) of the means since the previous record."""
        values = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        model = self.model
        if with_probe and model.shard is not None:
            weights = gather_state(model)  # every rank takes part
            if self.whole is not None:
                self.whole.load_state_dict(weights)
                model = self.whole
        if with_probe and self.writer is not None:
            pm, snap = self.probe.evaluate(model)
            values.update(pm)
        values["elapsed_s"] = time.perf_counter() - self.start
        if self.writer is not None:
            self.writer.record(step, values, phase=phase)  # without the probe: NaN in the file
        if snapshot and with_probe and self.writer is not None:
            self.writer.snapshot(step, snap)
        if not with_probe:  # a diverged update: the summary keeps the last probe measured
            values = {**{k: v for k, v in self.last.items() if k.startswith("probe_")}, **values}
        self.last = values
        self.sums, self.counts = {}, {}

    def headline(self) -> dict[str, str]:
        """The last record's loss and probe reconstruction error, for the progress bar."""
        return {
            "loss": f"{self.last.get('loss', float('nan')):.4f}",
            "probe_mse": f"{self.last.get('probe_recon_mse', float('nan')):.4f}",
        }

    def state_dict(self) -> dict:
        """The checkpoint's entries for the run file and the means in progress."""
        return {
            "n_records": 0 if self.writer is None else self.writer.n_records,
            "n_snapshots": 0 if self.writer is None else self.writer.n_snapshots,
            "elapsed_s": time.perf_counter() - self.start,
            "last": self.last,
            "sums": self.sums,  # means in progress since the last record
            "counts": self.counts,
        }


def _probe(config: Config, data: DataSplits, model: Glom) -> Probe:
    """The fixed probe batch of the run (and its linear-probe set), on the model's device."""
    device, linear = model.device, data.linear
    return Probe(
        torch.from_numpy(data.probe.images).to(device),
        config.end_to_end.holes,
        config.end_to_end.hole_size,
        config.run.island_threshold,
        seed=config.run.seed + 2,
        linear_images=None if linear is None else torch.from_numpy(linear.images).to(device),
        linear_labels=None if linear is None else linear.labels,
        linear_level=config.run.linear_probe_level,
        island_method=config.run.island_method,
        truth=probe_truth(data.probe, model.grid),
    )


def _open_run_file(
    config: Config,
    out: Path,
    learner: Learner,
    probe: Probe,
    probe_set: ImageSet,
    ckpt: dict | None,
    overwrite: bool,
) -> RunWriter:
    """The run file: reopened where the checkpoint left it, or new, with the config, the probe
    images and masks, the metric and snapshot layout, and the attributes a reader filters runs
    by (a new file replaces the old run's checkpoint, which no longer belongs to it)."""
    model = learner.model
    metric_names = (
        *learner.rule.metric_names,
        *(NIGHT_METRICS if learner.sleep is not None else ()),
        *probe_metric_names(model.K, tuple(probe.truth or ())),
        "elapsed_s",
    )
    if ckpt is not None:
        return RunWriter.reopen(out, ckpt["n_records"], ckpt["n_snapshots"], metric_names)
    K, N, Bp, d = model.K, model.columns_total, len(probe_set), model.d
    probe_arrays = {"images": probe_set.images}
    for key in ("part_masks", "object_masks", "part_to_object", "labels"):
        value = getattr(probe_set, key)
        if value is not None:
            probe_arrays[key] = value
    writer = RunWriter(
        out,
        config_text=config.to_toml(),
        seed=config.run.seed,
        metrics=metric_names,
        snapshots={
            "state": ((K, N, Bp, d), "float16"),
            "islands": ((K, Bp, *model.grid), "int32"),
            "reconstruction": ((Bp, model.channels, *model.image_size), "float16"),
        },
        probe=probe_arrays,
        attrs={
            "rule": config.train.rule,
            "sharing": config.model.sharing,
            "state_norm": config.model.state_norm,
            "consensus_mode": config.consensus.mode,
            "neighbourhood": config.attention.neighbourhood,
            "island_method": config.run.island_method,
            "island_threshold": config.run.island_threshold,
            "grid": json.dumps(list(model.grid)),
            "device": str(model.device),
            "data_source": config.data.source,
            "schedule": config.schedule.phases or f"day {config.train.updates}",
        },
        versions=_versions(),
        overwrite=overwrite,
    )
    checkpoint_path(out).unlink(missing_ok=True)  # only now that the old run is replaced
    return writer


def _save_weights(
    path: Path, weights: dict[str, torch.Tensor], model: Glom, config: Config, status: str
) -> None:
    """The final weights (``model``'s state dict, gathered from every rank when sharded)
    beside the run (``<run>.pt``), read back by :func:`bioglom.load_model`."""
    torch.save(
        {
            "model": weights,
            "config": config.to_toml(),
            "status": status,
            "channels": model.channels,
            "image_size": list(model.image_size),
        },
        path,
    )


def _title(config: Config, kind: str) -> str:
    return f"{config.train.rule} ({config.model.sharing}) [{kind}]"


def _progress_bar(config: Config, kinds: list[str], done: int, progress: bool) -> tqdm:
    return tqdm(
        total=len(kinds),
        initial=done,
        desc=_title(config, kinds[done] if done < len(kinds) else "day"),
        unit="upd",
        disable=not progress,
        dynamic_ncols=True,
    )


def first_nonfinite(tensors: dict[str, torch.Tensor | None]) -> str | None:
    """The name of the first tensor holding a NaN or Inf, or None (one host sync in all)."""
    named = [(k, t) for k, t in tensors.items() if t is not None]
    if not named:
        return None
    dev = named[0][1].device
    flags = torch.stack([torch.isfinite(t.detach()).all().to(dev) for _, t in named]).cpu()
    if bool(flags.all()):
        return None
    return named[int((~flags).nonzero()[0, 0])][0]


class _SigintFlag:
    """While installed (main thread only), the first Ctrl-C sets :attr:`flag` so that the loop
    stops at the end of the current update; a second one raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.flag = False
        self._old = None

    def _handle(self, signum, frame) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
