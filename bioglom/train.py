"""The training loop: batches in, one rule update each, records and snapshots out to HDF5.

The loop knows nothing about how a rule learns (:mod:`bioglom.rules`); it samples batches,
calls ``rule.update``, averages what the rule returns between records, evaluates the probe
batch (:mod:`bioglom.probe`) and streams both to the run file (:mod:`bioglom.runs`).
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .allocator import keep_freed_memory
from .checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from .config import Config, ConfigError, saved_config
from .data import ImageSet, load_images, part_whole_scenes
from .digits import mnist, sklearn_digits
from .model import Glom, build_model
from .probe import Probe, probe_metric_names
from .rules import make_rule
from .rules.sleep import NIGHT_METRICS, Sleep
from .runs import RunWriter
from .schedule import parse_schedule, phase_of_update
from .scores import column_labels

__all__ = [
    "run_arm",
    "load_data",
    "train",
    "TrainResult",
    "default_run_path",
    "probe_truth",
    "TRUTH_MASKS",
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


@dataclass
class DataSplits:
    """The images of a run: training, the probe batch, and the linear-probe set (or None)."""

    train: ImageSet
    probe: ImageSet
    linear: ImageSet | None


def _scenes(config: Config, n: int, seed: int) -> ImageSet:
    d = config.data
    return part_whole_scenes(
        n, d.image_size, seed, min_objects=d.min_objects, max_objects=d.max_objects, noise=d.noise
    )


def _source_images(config: Config) -> ImageSet:
    d = config.data
    if d.source == "scenes":
        return _scenes(config, d.n_train + d.n_probe, d.seed)
    try:
        if d.source == "digits":
            return sklearn_digits(seed=d.seed)
        if d.source == "mnist":
            return mnist(d.path or None, "train", seed=d.seed)
        return load_images(d.path)
    except (ValueError, OSError) as err:
        raise ConfigError("data.path", d.path, str(err)) from None
    except ImportError as err:
        raise ConfigError("data.source", d.source, str(err)) from None


def load_data(config: Config) -> DataSplits:
    """The training, probe and linear-probe images for the config, held apart.

    Generated scenes: ``n_train + n_probe`` scenes from ``data.seed`` (the last ``n_probe`` are
    the probe) and ``n_linear`` more from ``data.seed + 1``, so that the linear-probe set does
    not change the others. A fixed set (a file, the digits, MNIST): its last ``n_probe`` images
    are the probe, the ``n_linear`` before them the linear-probe set (when the data has
    labels), the rest train.
    """
    d = config.data
    data = _source_images(config)
    if d.source == "scenes":
        n = len(data)
        linear = _scenes(config, d.n_linear, d.seed + 1) if d.n_linear else None
        split = n - d.n_probe
        return DataSplits(data.subset(np.arange(split)), data.subset(np.arange(split, n)), linear)
    n = len(data)
    n_linear = d.n_linear if data.labels is not None else 0
    if d.source != "scenes":
        need = d.n_probe + n_linear + config.train.batch_size
        if n < need:
            raise ConfigError(
                "data.n_probe",
                d.n_probe,
                f"the data holds {n} images; need n_probe + n_linear + train.batch_size = "
                f"{need} at least",
            )
    p = config.frontend.patch_size
    h, w = data.size
    if h % p or w % p:
        raise ConfigError("frontend.patch_size", p, f"expected a divisor of the image size {h}x{w}")
    a, b = n - d.n_probe - n_linear, n - d.n_probe
    linear = data.subset(np.arange(a, b)) if n_linear else None
    return DataSplits(data.subset(np.arange(a)), data.subset(np.arange(b, n)), linear)


#: ground-truth names of the island scores, and the mask each is made from
TRUTH_MASKS = {"obj": "object_masks", "part": "part_masks"}


def probe_truth(images: ImageSet, grid: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """Column labels (majority over each patch) of the probe's masks, by truth name; None when
    the data has no masks or the image size is not a multiple of the grid."""
    h, w = images.size
    if h % grid[0] or w % grid[1]:
        return None
    truth = {
        name: column_labels(getattr(images, key), grid)
        for name, key in TRUTH_MASKS.items()
        if getattr(images, key) is not None
    }
    return truth or None


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
    }


def schedule_of(config: Config) -> list[str]:
    """The phase kind of every update: ``schedule.phases`` expanded, or ``day`` x updates."""
    if config.schedule.phases.strip():
        return phase_of_update(parse_schedule(config.schedule.phases))
    return ["day"] * config.train.updates


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
    """
    keep_freed_memory()  # unshared updates reuse their large gradient blocks (allocator.py)
    out = Path(out) if out is not None else default_run_path(config)
    ckpt_path = checkpoint_path(out)
    ckpt = _load_resume(config, out, ckpt_path) if resume else None
    data = load_data(config)
    train_set, probe_set = data.train, data.probe
    model = build_model(config, channels=train_set.channels, image_size=train_set.size)
    device = model.device
    rule = make_rule(model, config)
    kinds = schedule_of(config)
    sleep = Sleep(model, config) if any(k != "day" for k in kinds) else None
    gen = torch.Generator().manual_seed(config.run.seed + 1)
    batch_rng = np.random.default_rng(config.run.seed)

    images = torch.from_numpy(train_set.images).to(device)
    linear = data.linear
    probe = Probe(
        torch.from_numpy(probe_set.images).to(device),
        config.end_to_end.holes,
        config.end_to_end.hole_size,
        config.run.island_threshold,
        seed=config.run.seed + 2,
        linear_images=None if linear is None else torch.from_numpy(linear.images).to(device),
        linear_labels=None if linear is None else linear.labels,
        linear_level=config.run.linear_probe_level,
        island_method=config.run.island_method,
        truth=probe_truth(probe_set, model.grid),
    )
    K, N, Bp, d = model.K, model.N, len(probe_set), model.d
    probe_arrays = {"images": probe_set.images}
    for key in ("part_masks", "object_masks", "part_to_object", "labels"):
        value = getattr(probe_set, key)
        if value is not None:
            probe_arrays[key] = value
    night_names = NIGHT_METRICS if sleep is not None else ()
    metric_names = (
        *rule.metric_names,
        *night_names,
        *probe_metric_names(K, tuple(probe.truth or ())),
        "elapsed_s",
    )
    done, elapsed0, last = 0, 0.0, {}
    pending: tuple[dict, dict] = ({}, {})
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        rule.load_state_dict(ckpt["rule"])
        if sleep is not None:
            sleep.load_state_dict(ckpt["sleep"])
        gen.set_state(ckpt["generator"])
        batch_rng.bit_generator.state = ckpt["batch_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        done, elapsed0, last = ckpt["update"], ckpt["elapsed_s"], ckpt["last"]
        pending = (ckpt["sums"], ckpt["counts"])
        writer = RunWriter.reopen(out, ckpt["n_records"], ckpt["n_snapshots"], metric_names)
    else:
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
                "device": str(device),
                "data_source": config.data.source,
                "schedule": config.schedule.phases or f"day {config.train.updates}",
            },
            versions=_versions(),
            overwrite=overwrite,
        )
        # only now that the old run is replaced: its checkpoint no longer belongs to this file
        ckpt_path.unlink(missing_ok=True)
    weights_path = out.with_suffix(".pt")
    updates, record_every = len(kinds), config.run.record_every
    ckpt_every = config.run.checkpoint_every
    sums: dict[str, torch.Tensor] = {k: v.to(device) for k, v in pending[0].items()}
    counts: dict[str, int] = dict(pending[1])
    start = time.perf_counter() - elapsed0
    status = "failed"
    params = dict(model.named_parameters())

    def accumulate(metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            sums[k] = sums[k] + v if k in sums else v.detach().clone()
            counts[k] = counts.get(k, 0) + 1

    def record(step: int, snapshot: bool, phase: str, with_probe: bool = True) -> None:
        """Write one record (and a snapshot) of the means since the previous record."""
        nonlocal sums, counts, last
        values = {k: float(v) / counts[k] for k, v in sums.items()}
        if with_probe:
            pm, snap = probe.evaluate(model)
            values.update(pm)
        values["elapsed_s"] = time.perf_counter() - start
        writer.record(step, values, phase=phase)  # without the probe: NaN in the file
        if snapshot and with_probe:
            writer.snapshot(step, snap)
        if not with_probe:  # a diverged update: the summary keeps the last probe measured
            values = {**{k: v for k, v in last.items() if k.startswith("probe_")}, **values}
        last = values
        sums, counts = {}, {}

    def checkpoint(step: int) -> None:
        writer.sync()  # the records the checkpoint counts are on disk before it is
        save_checkpoint(
            ckpt_path,
            {
                "update": step,
                "n_records": writer.n_records,
                "n_snapshots": writer.n_snapshots,
                "config": config.to_toml(),
                "model": model.state_dict(),
                "rule": rule.state_dict(),
                "sleep": None if sleep is None else sleep.state_dict(),
                "generator": gen.get_state(),
                "batch_rng": batch_rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "elapsed_s": time.perf_counter() - start,
                "last": last,
                "sums": sums,  # means in progress since the last record
                "counts": counts,
            },
        )

    def batch() -> torch.Tensor:
        idx = torch.from_numpy(batch_rng.choice(len(images), config.train.batch_size, False))
        return images[idx.to(device)]

    def title(kind: str) -> str:
        return f"{config.train.rule} ({config.model.sharing}) [{kind}]"

    bar = tqdm(
        total=updates,
        initial=done,
        desc=title(kinds[done] if done < updates else "day"),
        unit="upd",
        disable=not progress,
        dynamic_ncols=True,
    )
    reason, bad = "", None
    u = done
    stop = _SigintFlag()
    try:
        stop.install()
        model.train()
        if ckpt is None:
            record(0, snapshot=True, phase=kinds[0] if kinds else "day")
        for u in range(done + 1, updates + 1):
            kind = kinds[u - 1]
            if u == done + 1 or kind != kinds[u - 2]:
                bar.set_description(title(kind), refresh=False)
            step_metrics: dict[str, torch.Tensor] = {}
            state = None
            if kind in ("day", "interleaved"):
                with precision(config, device):
                    step_metrics.update(rule.update(batch(), gen))
                state = rule.last_state
                if sleep is not None:
                    sleep.memory.add(state[-1])
            if kind in ("night", "interleaved"):
                with precision(config, device):
                    step_metrics.update(sleep.update(gen))
            accumulate(step_metrics)
            bar.update(1)
            bad = first_nonfinite({**step_metrics, "state": state, **params})
            if bad is not None:
                reason = f"non-finite {bad} at update {u}"
                record(u, snapshot=False, phase=kind, with_probe=False)
                break
            stopping = stop.flag  # read once: a Ctrl-C arriving later waits for the next update
            snap = u % config.run.snapshot_every == 0 or u == updates
            ck = ckpt_every > 0 and u % ckpt_every == 0
            boundary = u < updates and kinds[u] != kind  # the last update of a phase
            if u % record_every == 0 or snap or ck or boundary:
                record(u, snapshot=snap, phase=kind)
                bar.set_postfix(
                    loss=f"{last.get('loss', float('nan')):.4f}",
                    probe_mse=f"{last['probe_recon_mse']:.4f}",
                    refresh=False,
                )
            if u < updates and (ck or stopping):
                checkpoint(u)
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
        summary = {k: v for k, v in last.items() if np.isfinite(v)}
        summary["updates"] = float(u)
        attrs = {}
        if status == "diverged":
            attrs = {"diverged_at": u, "diverged_tensor": bad}
        writer.close(status=status, summary=summary, attrs=attrs)
        torch.save(
            {
                "model": model.state_dict(),
                "config": config.to_toml(),
                "status": status,
                "channels": model.channels,
                "image_size": list(model.image_size),
            },
            weights_path,
        )
        if status == "finished":
            ckpt_path.unlink(missing_ok=True)  # nothing left to resume
    return TrainResult(out, weights_path, status, summary, model, reason)


def run_arm(config: Config, out: str | Path, *, resume: bool = False, progress: bool = True) -> str:
    """Train one arm of an experiment into ``out``; returns the run's status (``finished`` or
    ``diverged``). Ctrl-C stops the arm with a checkpoint and then raises KeyboardInterrupt,
    so that the experiment stops too (``--resume`` continues it).

    ``resume=False`` trains afresh, replacing ``out``. ``resume=True`` keeps a finished or
    diverged run made with the same config as it is (a diverged arm would only diverge again),
    continues an unfinished one from its checkpoint, and trains afresh where there is no run,
    an unreadable one, one made with another config, or no checkpoint -- so a long experiment
    that was stopped picks up where it was.
    """
    out = Path(out)
    if resume and out.exists():
        from .runs import open_run

        try:
            with open_run(out) as run:
                status, same = run.status, not config_differences(run.config, config)
        except (OSError, ValueError, KeyError):
            status, same = "unreadable", False
        if same and status in ("finished", "diverged"):
            return status
        if same and checkpoint_path(out).exists():
            return _stop_if_interrupted(train(config, out, progress=progress, resume=True))
    return _stop_if_interrupted(train(config, out, overwrite=True, progress=progress))


def _stop_if_interrupted(result: TrainResult) -> str:
    """An arm stopped by Ctrl-C stops the whole experiment (the arms after it are not
    trained): raises KeyboardInterrupt once the arm's checkpoint is written."""
    if result.status == "interrupted":
        raise KeyboardInterrupt(result.reason)
    return result.status


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


def _load_resume(config: Config, out: Path, ckpt_path: Path) -> dict:
    """The checkpoint of the run in ``out``, checked against ``config``."""
    if not out.exists():
        raise FileNotFoundError(f"no run {str(out)!r} to resume")
    from .runs import open_run

    with open_run(out) as run:
        status, attrs = run.status, run.attrs
    if status == "diverged":  # the checkpoint would replay the same updates into the same NaN
        raise ResumeError(
            f"run {str(out)!r} diverged at update {attrs.get('diverged_at')} "
            f"({attrs.get('diverged_tensor')}): resuming would repeat it; change the config and "
            "train afresh"
        )
    if not ckpt_path.exists() and status == "finished":
        raise FileNotFoundError(f"run {str(out)!r} has finished: nothing to resume")
    ckpt = load_checkpoint(ckpt_path)
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
