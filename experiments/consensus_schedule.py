"""The consensus-weight schedule: does the rising top-down weight help? (issue 15, item 3; §9.1)

Results, table and discussion: docs/experiments/consensus_schedule.md

    python experiments/consensus_schedule.py --preset quick|full [--seeds 0,1,2] [--jobs N]
        [--out DIR] [--resume]

§9.1: "initially the bottom-up source should be by far the most reliable, but later, the
top-down and lateral sources will improve". The consensus of each level is the weighted mean
of its four contributions, with weights ``a(t)`` interpolated linearly over the settling
steps from ``consensus.weights_start`` to ``consensus.weights_end`` (docs/design.md §3). The
arms (``SCHEDULES``):

* ``rising``: the default, bottom-up 1 -> 0.5, top-down 0.5 -> 1, lateral 0.5 -> 1;
* ``flat``: every step at the midpoint of ``rising`` (0.75, 0.75, 1, 0.75);
* ``falling``: ``rising`` reversed (bottom-up rises, top-down and lateral fall);
* ``gaussian``: the rising schedule with the card's consensus (``consensus.mode =
  "gaussian"``), in which each contribution is further weighted by its own predicted
  precision -- a schedule the nets set themselves, column by column.

Each arm trains the default model with co-distillation (the default rule) for each seed; then
every model is settled on the held-out probe scenes, and at *every* settling step this
measures the reconstruction error, the fill-in error on removed pixels, the islands per image
and the object FG-ARI delta (mismatched-image control) of every level (:func:`step_curves`):

1. *trained and settled under each schedule* (each arm's own weights, its own schedule);
2. *trained under the rising schedule, settled under each* (``rising``'s weights loaded with
   the other schedules as overrides, :func:`bioglom.load_model`); the ``gaussian`` schedule
   needs nets that predict a precision, so it is not in this part.

Mean ± sd over the seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import bioglom
from bioglom.experiment import (
    QUICK,
    experiment_parser,
    markdown_table,
    mean_sd,
    run_experiment,
    seeded_jobs,
    seeds_of,
    train_jobs,
)
from bioglom.islands import extract_islands
from bioglom.rules.base import corrupt
from bioglom.scores import column_labels, score_islands
from bioglom.splits import load_data

# ---- configuration ------------------------------------------------------------------------
RISING_START = {"bottom_up": 1.0, "top_down": 0.5, "previous": 1.0, "lateral": 0.5}
RISING_END = {"bottom_up": 0.5, "top_down": 1.0, "previous": 1.0, "lateral": 1.0}
MIDPOINT = {k: (RISING_START[k] + RISING_END[k]) / 2 for k in RISING_START}
SCHEDULES = {  # the settling part of each arm's config
    "rising": {"consensus.weights_start": RISING_START, "consensus.weights_end": RISING_END},
    "flat": {"consensus.weights_start": MIDPOINT, "consensus.weights_end": MIDPOINT},
    "falling": {"consensus.weights_start": RISING_END, "consensus.weights_end": RISING_START},
    "gaussian": {
        "consensus.weights_start": RISING_START,
        "consensus.weights_end": RISING_END,
        "consensus.mode": "gaussian",
    },
}
SEEDS = {"quick": "0,1,2", "full": "0,1,2"}  # run.seed; docs/design.md §10: 3 at least
THRESHOLD = 0.8  # cosine of the connected islands
COMMON = {"data.source": "scenes", "run.island_threshold": THRESHOLD}
PRESETS = {
    # about a minute on 2 idle CPU cores, used by the tests
    "quick": {**QUICK, "data.n_train": 128, "data.n_probe": 8, "train.updates": 6},
    # the numbers of docs/experiments/consensus_schedule.md: the default model, 600 updates
    "full": {"train.updates": 600, "run.record_every": 50, "run.snapshot_every": 300},
}


def step_curves(model: bioglom.Glom, images: torch.Tensor, objects: np.ndarray) -> dict:
    """Every measure at every settling step ``t = 1..T`` of one model on the probe images.

    ``recon``: mean squared error of the decoded level 0, ``(dec(e_0(t)) - x)^2``; ``fill``:
    the same on the pixels removed by the probe's corruption (the settle of the corrupted
    images); ``islands`` ``[T, K]``: connected islands per image; ``delta`` ``[T, K]``: their
    object FG-ARI minus the same against the next image's islands
    (:func:`bioglom.scores.mismatched_control`). The corruption is the run's own probe's
    (seeded ``run.seed + 2``), so with a settle that draws nothing at random (window attention,
    the default) the last step equals the run's last probe record (tested); resampled Gaussian
    neighbourhoods draw in another order than the probe does.
    """
    cfg = model.config
    g = _gen(cfg)
    corrupted, holes = corrupt(images, cfg.end_to_end.holes, cfg.end_to_end.hole_size, g)
    with torch.no_grad():
        clean = model.settle(images, return_trajectory=True, generator=_gen(cfg)).trajectory
        broken = model.settle(corrupted, return_trajectory=True, generator=_gen(cfg)).trajectory
        recon, fill = [], []
        mask = holes.expand_as(images)
        for t in range(1, clean.shape[0]):
            recon.append(float(((model.decode(clean[t]) - images) ** 2).mean()))
            err = (model.decode(broken[t]) - images) ** 2
            fill.append(float(err[mask].mean()) if bool(mask.any()) else float("nan"))
    islands, delta = [], []
    for t in range(1, clean.shape[0]):
        labels = extract_islands(clean[t], model.grid, "connected", THRESHOLD)
        scores = score_islands(labels, {"obj": objects})
        islands.append(scores["count"])
        delta.append(scores["dfgari_obj"])
    return {
        "recon": np.array(recon),
        "fill": np.array(fill),
        "islands": np.array(islands),
        "delta": np.array(delta),
    }


def curve_table(curves: dict[str, list[dict]]) -> str:
    """One row per schedule and step: reconstruction, fill-in, islands and object delta per
    level, mean ± sd over the seeds."""

    first = next(iter(curves.values()))[0]
    T, K = first["delta"].shape
    headers = ["schedule", "step", "recon mse", "fill mse"]
    headers += [f"islands L{k}" for k in range(K)] + [f"object delta L{k}" for k in range(K)]
    rows = []
    for arm, per_seed in curves.items():
        for t in range(T):
            row = [arm if t == 0 else "", t + 1]
            row += [mean_sd([c[m][t] for c in per_seed], ".4f") for m in ("recon", "fill")]
            row += [mean_sd([c["islands"][t, k] for c in per_seed], ".1f") for k in range(K)]
            row += [mean_sd([c["delta"][t, k] for c in per_seed], "+.3f") for k in range(K)]
            rows.append(row)
    return markdown_table(headers, rows)


def _gen(cfg) -> torch.Generator:
    """Seeded as a run's own probe (``bioglom.train``: ``run.seed + 2``)."""
    return torch.Generator().manual_seed(cfg.run.seed + 2)


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/consensus_schedule", seeds=SEEDS)
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)
    preset = PRESETS[args.preset]
    folder = Path(args.out) / args.preset
    arms = {arm: (COMMON, preset, schedule) for arm, schedule in SCHEDULES.items()}
    train_jobs(seeded_jobs(folder, arms, seeds, args.overrides), args, require_finished=True)
    weights = {arm: [folder / f"{arm}_seed{seed}.pt" for seed in seeds] for arm in SCHEDULES}

    model = bioglom.load_model(weights["rising"][0])
    probe = load_data(model.config).probe
    images = torch.from_numpy(probe.images)
    objects = column_labels(probe.object_masks, model.grid)
    own = {
        arm: [step_curves(bioglom.load_model(p), images, objects) for p in paths]
        for arm, paths in weights.items()
    }
    settled = {  # the rising arm's weights under each schedule (not gaussian: other nets)
        arm: [
            step_curves(bioglom.load_model(p, overrides=SCHEDULES[arm]), images, objects)
            for p in weights["rising"]
        ]
        for arm in SCHEDULES
        if arm != "gaussian"
    }
    where = f"{len(images)} held-out probe scenes, seeds {seeds}, mean ± sd"
    print(f"\n1. trained and settled under each schedule, at every settling step; {where}")
    print(curve_table(own))
    print(f"\n2. trained under the rising schedule, settled under each; {where}")
    print(curve_table(settled))
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
