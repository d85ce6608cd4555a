"""Common fate in the embeddings: do an object's columns change together on video? (issue 14, 4b)

Results, table and discussion: docs/experiments/islands.md (fourth and fifth rounds)

    python experiments/common_fate.py --preset quick|full [--seeds 0,1,2] [--jobs N] [--out DIR]
        [--weights DIR ...]

The ``common_fate`` arm of the islands experiment ranks each column's neighbours by how alike
their embeddings change over a settling step, ``cos(D(x), D(y))`` with
``D = e*(t+1) - e(t)``, on videos whose objects move independently (§11's common fate).
That can group a level's columns into objects only if, on video, the changes of one object's
neighbouring columns are more alike than those of two objects or of an object and the
background. This measures exactly that (``bioglom.scores.pair_cosines``), per level, for
models trained with each arm, on held-out videos settled with the trained weights:

1. the change of the state from frame to frame, each frame held ``k`` settling steps
   (``FRAME_STEPS``; ``k = 1`` is the ``common_fate`` arm's signal, larger ``k`` lets settling's
   own change die out before the frame changes, if it does), on moving videos and on the same
   scenes standing still (``max_speed = 0``, no part jitter) as the control, where the only
   change is settling's own;
2. the motion's own effect with settling's change cancelled exactly: ``R_t = e_t(video) -
   e_t(first frame held still)``, both settled with the same noise, and its size against a
   settling step's;
3. the fraction of columns whose patch changes at all from one frame to the next (objects
   against background): on flat-coloured objects only their outlines do.

Mean ± sd over the seeds.

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
    Job,
    arm_config,
    experiment_parser,
    markdown_table,
    mean_sd,
    run_experiment,
    seeds_of,
    train_jobs,
)
from bioglom.scores import PAIR_KINDS, changed_patches, column_labels, pair_cosines
from bioglom.splits import scene_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
import islands  # noqa: E402  (the arms and presets of the islands experiment)

# ---- configuration ------------------------------------------------------------------------
ARMS = ("common_fate", "common_fate_still", "self_contrast")  # islands.ARMS names
SEEDS = {"quick": "0,1,2", "full": "0,1,2"}  # run.seed; docs/design.md §10: 3 at least
VIDEOS = 32  # held-out videos per setting
RADIUS = 3  # pairs at most this many columns apart along each axis (level 2's window)
FRAME_STEPS = (1, 3)  # settling steps per frame (the schedule stretches over all the steps)
VIDEO_SEED = 3  # data.seed + this (training videos use data.seed + 2, the probe data.seed)
MOTION = {  # the two settings every model is settled on
    "moving": {"max_speed": 1.0, "part_jitter": 0.05},  # the defaults of data.source = moving
    "still": {"max_speed": 0.0, "part_jitter": 0.0},  # the control: settling's own change only
}
PRESETS = {"quick": islands.PRESETS["quick"], "full": islands.PRESETS["full"]}


def given_weights(arm: str, seed: int, args) -> Path | None:
    """The trained weights of one arm and seed in a --weights folder, or None (then they are
    trained here, into --out)."""
    for folder in args.weights:
        path = Path(folder) / f"{arm}_seed{seed}.pt"
        if path.is_file():
            return path
    return None


def measure(path: Path) -> dict:
    """What common fate can see in one trained model, on held-out videos (module docstring).

    * ``changes[k][motion]``: :func:`bioglom.scores.pair_cosines` of the changes of the state
      at the end of each frame, each frame held ``k`` settling steps (``k = 1``: one frame per
      step, steps 1..T-1), with the mean size of those changes per level (``norm``);
    * ``response``: ``pair_cosines`` of the motion's own effect, ``R_t = e_t(video) -
      e_t(its first frame held still)``, the two settles run with the same noise, so that
      settling's own change cancels exactly; ``ratio``: ``|R_t|`` over the size of a settling
      step of the held run, per level;
    * ``patches``: the fraction of object and of background columns whose patch changes from one
      frame to the next (:func:`bioglom.scores.changed_patches`).
    """
    model = bioglom.load_model(path)
    cfg, grid = model.config, model.grid
    F = cfg.settle.steps
    videos = {
        name: moving_scenes(
            VIDEOS, F, cfg.data.image_size, cfg.data.seed + VIDEO_SEED, **scene_options(cfg), **m
        )
        for name, m in MOTION.items()
    }
    labels = {
        name: np.stack([column_labels(m, grid) for m in v.object_masks])
        for name, v in videos.items()
    }

    def settle(frames: torch.Tensor) -> np.ndarray:
        gen = torch.Generator().manual_seed(cfg.run.seed)
        with torch.no_grad():
            res = model.settle(frames, return_trajectory=True, generator=gen)
        return res.trajectory.numpy()

    out: dict = {"changes": {}}
    for k in FRAME_STEPS:
        out["changes"][k] = {}
        for name, video in videos.items():
            traj = settle(torch.as_tensor(video.frames).repeat_interleave(k, dim=0))
            ends = traj[k::k]  # the state at the end of each frame [F, K, N, B, d]
            d = np.diff(ends, axis=0)
            cos = pair_cosines(d, labels[name][1:], grid, radius=RADIUS)
            cos["norm"] = np.linalg.norm(d, axis=-1).mean(axis=(0, 2, 3))
            out["changes"][k][name] = cos
    frames = torch.as_tensor(videos["moving"].frames)
    moving = settle(frames)
    held = settle(frames[:1].expand_as(frames).contiguous())
    # R after steps 1..T-1, each with the frame that step saw (after step 0 both saw frame 0)
    r = (moving - held)[2:]
    out["response"] = pair_cosines(r, labels["moving"][1:], grid, radius=RADIUS)
    step = np.linalg.norm(np.diff(held, axis=0)[1:], axis=-1).mean(axis=(0, 2, 3))
    out["response"]["ratio"] = np.linalg.norm(r, axis=-1).mean(axis=(0, 2, 3)) / step
    changed = changed_patches(videos["moving"].frames, grid)
    obj = labels["moving"][1:] > 0  # the objects of the later frame
    out["patches"] = {
        "object": float(changed[obj].mean()),
        "background": float(changed[~obj].mean()),
    }
    return out


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/common_fate", seeds=SEEDS)
    ap.add_argument("--arms", default=",".join(ARMS), help="islands arms to measure")
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
    seeds = seeds_of(args, SEEDS)
    preset = PRESETS[args.preset]
    weights = {(arm, s): given_weights(arm, s, args) for arm in arms for s in seeds}
    jobs = [
        Job(
            arm_config(
                islands.COMMON, preset, islands.ARMS[arm], {"run.seed": s}, sets=args.overrides
            ),
            Path(args.out) / args.preset / f"{arm}_seed{s}.h5",
        )
        for (arm, s), path in weights.items()
        if path is None
    ]
    for name, status in train_jobs(jobs, args).items():
        if status != "finished":
            raise RuntimeError(f"{name}: the run {status}")
    trained = Path(args.out) / args.preset
    results = {
        arm: [measure(weights[arm, s] or trained / f"{arm}_seed{s}.pt") for s in seeds]
        for arm in arms
    }

    where = f"columns at most {RADIUS} apart, {VIDEOS} held-out videos, seeds {seeds}"
    print(
        f"\ncommon fate, preset {args.preset}: mean cosine of the changes of the state from one "
        f"frame to the next (frames 1..T-1), each frame held k settling steps; |change|: their "
        f"mean size; {where}"
    )
    headers = ["arm", "level", "k"] + [f"{m}: {kind}" for m in MOTION for kind in PAIR_KINDS]
    headers += [f"{m}: |change|" for m in MOTION]
    rows = []
    for arm, per_seed in results.items():
        K = len(per_seed[0]["response"]["same_object"])
        for level in range(K):
            for k in FRAME_STEPS:
                ch = [r["changes"][k] for r in per_seed]
                row = [arm if level == 0 and k == FRAME_STEPS[0] else "", level, k]
                row += [
                    mean_sd([c[m][kind][level] for c in ch]) for m in MOTION for kind in PAIR_KINDS
                ]
                row += [mean_sd([c[m]["norm"][level] for c in ch], ".3g") for m in MOTION]
                rows.append(row)
    print(markdown_table(headers, rows))
    print(
        "\nthe motion's own effect, settling's change cancelled: cosines of "
        "R_t = e_t(video) - e_t(first frame held still) (steps 1..T-1, same noise); "
        f"|R| / |step|: its size over a settling step's of the held run; {where}"
    )
    headers = ["arm", "level"] + [f"response: {kind}" for kind in PAIR_KINDS] + ["|R| / |step|"]
    rows = []
    for arm, per_seed in results.items():
        K = len(per_seed[0]["response"]["same_object"])
        for level in range(K):
            row = [arm if level == 0 else "", level]
            row += [mean_sd([r["response"][kind][level] for r in per_seed]) for kind in PAIR_KINDS]
            row.append(mean_sd([r["response"]["ratio"][level] for r in per_seed], ".3g"))
            rows.append(row)
    print(markdown_table(headers, rows))
    first = next(iter(results.values()))[0]["patches"]  # the data alone: alike for every arm
    print(
        f"\ncolumns whose patch changes from one frame to the next (moving videos): objects "
        f"{first['object']:.2f}, background {first['background']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
