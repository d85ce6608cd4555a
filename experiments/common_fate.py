"""Common fate in the embeddings: do an object's columns change together on video? (issue 14, 4b)

Results, table and discussion: docs/experiments/islands.md (fourth round)

    python experiments/common_fate.py --preset quick|full [--out DIR] [--weights DIR ...]

The ``common_fate`` arm of the islands experiment ranks each column's neighbours by how alike
their embeddings change over a settling step, ``cos(D(x), D(y))`` with
``D = e*(t+1) - e(t)``, on videos whose objects move independently (§11's common fate).
That can group a level's columns into objects only if, on video, the changes of one object's
neighbouring columns are more alike than those of two objects or of an object and the
background. This measures exactly that (``bioglom.scores.change_cosines``), per level, for
models trained with each arm: held-out videos settled one frame per step with the trained
weights, and the same scenes standing still (``max_speed = 0``, no part jitter) as the control,
where the only change is settling's own. Mean ± sd over the seeds.

The arms are the islands experiment's (``islands.ARMS``): trained here (resumable), or read from
``--weights DIR`` (a folder holding ``<arm>_seed<s>.pt``, e.g. the islands experiment's runs;
repeatable, the first folder that has a file wins).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import bioglom
from bioglom.data import moving_scenes
from bioglom.experiment import (
    arm_config,
    experiment_parser,
    markdown_table,
    run_arm,
    run_experiment,
)
from bioglom.scores import PAIR_KINDS, change_cosines, column_labels
from bioglom.splits import scene_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
import islands  # noqa: E402  (the arms and presets of the islands experiment)

# ---- configuration ------------------------------------------------------------------------
ARMS = ("common_fate", "common_fate_still", "self_contrast")  # islands.ARMS names
SEEDS = (0, 1, 2)
VIDEOS = 32  # held-out videos per setting
RADIUS = 3  # pairs at most this many columns apart along each axis (level 2's window)
VIDEO_SEED = 3  # data.seed + this (training videos use data.seed + 2, the probe data.seed)
MOTION = {  # the two settings every model is settled on
    "moving": {"max_speed": 1.0, "part_jitter": 0.05},  # the defaults of data.source = moving
    "still": {"max_speed": 0.0, "part_jitter": 0.0},  # the control: settling's own change only
}
PRESETS = {"quick": islands.PRESETS["quick"], "full": islands.PRESETS["full"]}


def weights_of(arm: str, seed: int, args, preset: dict) -> Path:
    """The trained weights of one arm and seed: from a --weights folder, or trained here."""
    for folder in args.weights:
        path = Path(folder) / f"{arm}_seed{seed}.pt"
        if path.is_file():
            return path
    cfg = arm_config(
        islands.COMMON, preset, islands.ARMS[arm], {"run.seed": seed}, sets=args.overrides
    )
    out = Path(args.out) / args.preset / f"{arm}_seed{seed}.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    status = run_arm(cfg, out, resume=args.resume, progress=not args.quiet)
    if status != "finished":
        raise RuntimeError(f"{arm} seed {seed}: the run {status}")
    return out.with_suffix(".pt")


def measure(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """change_cosines of one trained model on held-out videos, moving and still."""
    model = bioglom.load_model(path)
    cfg, grid = model.config, model.grid
    out = {}
    for name, motion in MOTION.items():
        video = moving_scenes(
            VIDEOS,
            cfg.settle.steps,
            cfg.data.image_size,
            cfg.data.seed + VIDEO_SEED,
            **scene_options(cfg),
            **motion,
        )
        gen = torch.Generator().manual_seed(cfg.run.seed)
        with torch.no_grad():
            traj = model.settle(video.frames, return_trajectory=True, generator=gen).trajectory
        labels = np.stack([column_labels(m, grid) for m in video.object_masks])
        out[name] = change_cosines(traj.numpy(), labels, grid, radius=RADIUS)
    return out


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/common_fate")
    ap.add_argument("--arms", default=",".join(ARMS), help="islands arms to measure")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of trained <arm>_seed<s>.pt to measure instead of training (repeatable)",
    )
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    for arm in arms:
        if arm not in islands.ARMS:
            ap.error(
                f"--arms: unknown arm {arm!r} (the islands experiment's: {list(islands.ARMS)})"
            )
    seeds = [int(s) for s in args.seeds.split(",") if s]
    preset = PRESETS[args.preset]
    results = {arm: [measure(weights_of(arm, s, args, preset)) for s in seeds] for arm in arms}

    def cell(values: list[float]) -> str:
        v = np.array(values, dtype=float)
        if np.isnan(v).all():
            return "-"
        sd = f" ± {np.nanstd(v, ddof=1):.2f}" if np.isfinite(v).sum() > 1 else ""
        return f"{np.nanmean(v):+.2f}{sd}"

    print(
        f"\ncommon fate, preset {args.preset}: mean cosine of the changes over a settling step "
        f"(steps 1..T-1) of columns at most {RADIUS} apart, {VIDEOS} held-out videos, "
        f"seeds {seeds}"
    )
    headers = ["arm", "level"] + [f"{m}: {k}" for m in MOTION for k in PAIR_KINDS]
    rows = []
    for arm, per_seed in results.items():
        K = len(per_seed[0]["moving"]["same_object"])
        for k in range(K):
            row = [arm if k == 0 else "", k]
            row += [cell([r[m][kind][k] for r in per_seed]) for m in MOTION for kind in PAIR_KINDS]
            rows.append(row)
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
