"""The training loop: batches in, one rule update each, records and snapshots out to HDF5.

The loop knows nothing about how a rule learns (:mod:`bioglom.rules`); it samples batches,
calls ``rule.update``, averages what the rule returns between records, evaluates the probe
batch (:mod:`bioglom.probe`) and streams both to the run file (:mod:`bioglom.runs`).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .config import Config, ConfigError
from .data import ImageSet, load_images, part_whole_scenes
from .model import Glom, build_model
from .probe import Probe, probe_metric_names
from .rules import make_rule
from .runs import RunWriter

__all__ = ["load_data", "train", "TrainResult", "default_run_path"]


@dataclass
class TrainResult:
    """What :func:`train` leaves: the run file, the weights file, the final metrics."""

    path: Path
    weights: Path
    status: str
    summary: dict[str, float]
    model: Glom
    reason: str = ""  # why a run did not finish, e.g. "non-finite loss by update 40"


def load_data(config: Config) -> tuple[ImageSet, ImageSet]:
    """``(train, probe)`` image sets for the config; the probe images are held out.

    Generated scenes: ``n_train + n_probe`` scenes from ``data.seed``, the last ``n_probe`` are
    the probe. A file: its last ``n_probe`` images are the probe, the rest train.
    """
    d = config.data
    if d.source == "scenes":
        data = part_whole_scenes(
            d.n_train + d.n_probe,
            d.image_size,
            d.seed,
            min_objects=d.min_objects,
            max_objects=d.max_objects,
            noise=d.noise,
        )
    else:
        try:
            data = load_images(d.path)
        except (ValueError, OSError) as err:
            raise ConfigError("data.path", d.path, str(err)) from None
        n = len(data)
        if n < d.n_probe + config.train.batch_size:
            raise ConfigError(
                "data.n_probe",
                d.n_probe,
                f"the file holds {n} images; need n_probe + train.batch_size = "
                f"{d.n_probe + config.train.batch_size} at least",
            )
        p = config.frontend.patch_size
        h, w = data.size
        if h % p or w % p:
            raise ConfigError(
                "frontend.patch_size", p, f"expected a divisor of the file's image size {h}x{w}"
            )
    n = len(data)
    split = n - d.n_probe
    return data.subset(np.arange(split)), data.subset(np.arange(split, n))


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


def train(
    config: Config,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model as ``config`` says and write the run to ``out`` (an ``.h5`` file).

    Records rule metrics (means since the previous record) and probe metrics every
    ``run.record_every`` updates, at every snapshot and at the end; snapshots the probe every
    ``run.snapshot_every`` updates and at the end; saves the final weights beside the run as
    ``<out>.pt``. A run that raises is marked ``failed``, one stopped with Ctrl-C
    ``interrupted``, one whose losses or probe reconstruction turn non-finite ``diverged``
    (checked at each record; it stops there). The returned model is in eval mode.
    """
    out = Path(out) if out is not None else default_run_path(config)
    train_set, probe_set = load_data(config)
    model = build_model(config, channels=train_set.channels, image_size=train_set.size)
    device = model.device
    rule = make_rule(model, config)
    gen = torch.Generator().manual_seed(config.run.seed + 1)
    batch_rng = np.random.default_rng(config.run.seed)

    images = torch.from_numpy(train_set.images).to(device)
    probe = Probe(
        torch.from_numpy(probe_set.images).to(device),
        config.end_to_end.holes,
        config.end_to_end.hole_size,
        config.run.island_threshold,
        seed=config.run.seed + 2,
    )
    K, N, Bp, d = model.K, model.N, len(probe_set), model.d
    probe_arrays = {"images": probe_set.images}
    for key in ("part_masks", "object_masks", "part_to_object"):
        value = getattr(probe_set, key)
        if value is not None:
            probe_arrays[key] = value
    metric_names = (*rule.metric_names, *probe_metric_names(K), "elapsed_s")
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
            "island_method": "connected 4-neighbours, cosine > threshold",
            "island_threshold": config.run.island_threshold,
            "grid": json.dumps(list(model.grid)),
            "device": str(device),
        },
        versions=_versions(),
        overwrite=overwrite,
    )
    weights_path = out.with_suffix(".pt")
    updates, record_every = config.train.updates, config.run.record_every
    sums: dict[str, torch.Tensor] = {}
    count = 0
    start = time.perf_counter()
    last: dict[str, float] = {}
    status = "failed"

    def record(step: int, snapshot: bool) -> list[str]:
        """Write one record (and a snapshot); return the names of non-finite losses."""
        nonlocal sums, count, last
        values = {k: float(v) / count for k, v in sums.items()} if count else {}
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        pm, snap = probe.evaluate(model)
        values.update(pm)
        values["elapsed_s"] = time.perf_counter() - start
        writer.record(step, values, phase="train")
        if snapshot:
            writer.snapshot(step, snap)
        last = values
        sums, count = {}, 0
        if not np.isfinite(values["probe_recon_mse"]):
            bad.append("probe_recon_mse")
        return bad

    bar = tqdm(
        total=updates,
        desc=f"{config.train.rule} ({config.model.sharing})",
        unit="upd",
        disable=not progress,
        dynamic_ncols=True,
    )
    diverged = ""
    u = 0
    try:
        model.train()
        record(0, snapshot=True)
        for u in range(1, updates + 1):
            idx = torch.from_numpy(batch_rng.choice(len(images), config.train.batch_size, False))
            metrics = rule.update(images[idx.to(device)], gen)
            for k, v in metrics.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            count += 1
            bar.update(1)
            snap = u % config.run.snapshot_every == 0 or u == updates
            if u % record_every == 0 or snap:
                bad = record(u, snapshot=snap)
                bar.set_postfix(
                    loss=f"{last.get('loss', float('nan')):.4f}",
                    probe_mse=f"{last['probe_recon_mse']:.4f}",
                    refresh=False,
                )
                if bad:
                    diverged = f"non-finite {', '.join(bad)} by update {u}"
                    break
        status = "diverged" if diverged else "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        bar.close()
        model.eval()
        summary = {k: v for k, v in last.items() if np.isfinite(v)}
        summary["updates"] = float(u)
        writer.close(status=status, summary=summary)
        torch.save(
            {"model": model.state_dict(), "config": config.to_toml(), "status": status},
            weights_path,
        )
    return TrainResult(out, weights_path, status, summary, model, diverged)
