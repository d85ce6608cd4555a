"""Islands on video: do they track objects, change at edges, and predict the next frame? (§11)

Results, table and discussion: docs/experiments/video.md

    python experiments/video.py --preset quick|full [--seeds 0,1,2] [--jobs N] [--out DIR]
        [--resume]

§11: GLOM settles on video one frame per step, and its islands should follow the objects;
footnote 7: between frames an object's embedding changes little inside it and much at its
edges. Two arms of the default model (unshared co-distilled columns, homeostatic
normalisation), on the same scene style (objects that touch and occlude each other):

* ``static``: trained on still scenes (every settling step sees the same image);
* ``video``: trained on moving scenes, one frame per settling step (``data.source = "moving"``):
  objects translate up to ``max_speed`` pixels and rotate up to ``max_spin`` radians a frame.

Both are scored on the same held-out videos of ``FRAMES`` frames, settled one frame per step
with the trained schedule's ramp (``settle.ramp_steps`` = the trained steps, then held), from
frame ``settle.steps - 1`` on (after the ramp), per level (:func:`measure`):

1. tracking (``bioglom.scores.track_islands``): the island matched to each object in frame t,
   followed to frame t+1 by its mean vector: track IoU with the object in t+1 and its
   mismatched-video control (track IoU minus the same against the objects of the next video,
   0 for islands that ignore the video), the best
   island's IoU in t+1 (segment IoU, the bound), identity switches; beside the same for
   similar-colour components tracked by their mean colour (a partition that learns nothing);
2. footnote 7: the motion's own effect on each column's change over one frame,
   ``R_t - R_{t-1}`` with ``R_t = e_t(video) - e_t(first frame held still)`` (same noise:
   settling's own change cancels), its mean size at object edges (object columns whose patch
   changed from frame t-1 to t), inside objects (unchanged) and on the background, and the raw
   change ``|e_t - e_{t-1}|`` in the same regions;
3. prediction: the top-down prediction of level 0 made from the state that saw frames up to
   t-1 against the front end's reading of frame t (MSE of standardised vectors), against
   "nothing moves" (frame t-1's reading), and on the held video (no motion to predict).

Mean ± sd over the seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import bioglom
from bioglom.baselines import colour_components, patch_vectors
from bioglom.data import moving_scenes
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
from bioglom.scores import changed_patches, column_labels, track_islands
from bioglom.splits import scene_options

# ---- configuration ------------------------------------------------------------------------
STYLE = {"data.touching": True}  # objects touch and occlude each other, in both arms
MOTION = {"data.max_speed": 1.0, "data.max_spin": 0.1, "data.part_jitter": 0.05}
COMMON = {
    "train.rule": "codistill",
    "model.state_norm": "homeostatic",
    "model.homeostatic_stats": "columns",
    **STYLE,
    **MOTION,  # used by data.source = "moving" only, and by the held-out videos
}
ARMS = {"static": {"data.source": "scenes"}, "video": {"data.source": "moving"}}
PRESETS = {
    "quick": QUICK,  # bioglom.experiment.QUICK: 8x8 columns, 3 levels, 4 steps, 40 updates
    # the numbers of docs/experiments/video.md: the default model (16x16 columns, 4 levels,
    # d = 32, 6 settling steps), 600 updates of 16 scenes or 6-frame videos
    "full": {"train.updates": 600, "run.record_every": 100, "run.snapshot_every": 600},
}
SEEDS = {"quick": "0", "full": "0,1,2"}
VIDEOS = 32  # held-out videos
FRAMES = 12  # frames per held-out video, one per settling step
VIDEO_SEED = 3  # data.seed + this (training videos use data.seed + 2, the probe data.seed)


def settle_video(model, frames: torch.Tensor, gen_seed: int) -> dict[str, np.ndarray]:
    """Settle ``frames [T, B, C, H, W]`` one frame per step: the state after every step
    ``[T, K, N, B, d]`` (step t saw frame t), level 0's top-down prediction made at every step
    from the state before it ``[T, N, B, d]`` and the front end's reading of that step's frame."""
    gen = torch.Generator().manual_seed(gen_seed)
    T = frames.shape[0]
    states, td0, bu0 = [], [], []
    with torch.no_grad():
        e, tau = model.initial_state(frames[0], gen)
        for t in range(T):
            out = model.step(e, tau, frames[t], t, T, gen)
            e, tau = out.state, out.precision
            states.append(e.numpy())
            td0.append(out.top_down[0].numpy())
            bu0.append(out.bottom_up[0].numpy())
    return {"state": np.stack(states), "td0": np.stack(td0), "bu0": np.stack(bu0)}


def measure(path: Path) -> dict[str, np.ndarray]:
    """Tracking, footnote 7's change by region, and level 0's next-frame prediction of one
    trained model on the held-out videos (module docstring); per level where it applies."""
    trained = bioglom.load_model(path)
    steps = trained.config.settle.steps
    model = bioglom.load_model(path, {"settle.ramp_steps": steps})  # the trained ramp, held
    cfg, grid = model.config, model.grid
    video = moving_scenes(
        VIDEOS,
        FRAMES,
        cfg.data.image_size,
        cfg.data.seed + VIDEO_SEED,
        max_speed=cfg.data.max_speed,
        max_spin=cfg.data.max_spin,
        part_jitter=cfg.data.part_jitter,
        **scene_options(cfg),
    )
    frames = torch.as_tensor(video.frames)
    objects = np.stack([column_labels(m, grid) for m in video.object_masks])  # [T, B, hg, wg]
    moving = settle_video(model, frames, cfg.run.seed)
    held = settle_video(model, frames[:1].expand_as(frames).contiguous(), cfg.run.seed)
    start = max(steps - 1, 1)  # the first state after the trained ramp (one change before)
    K = model.K
    s = moving["state"][start:]  # [T', K, N, B, d]
    obj = objects[start:]
    islands = np.stack(
        [
            extract_islands(
                torch.from_numpy(x), grid, cfg.run.island_method, cfg.run.island_threshold
            )
            for x in s
        ]
    )  # [T', K, B, hg, wg]
    # the mismatched-video control (docs/design.md §10): video b's islands against the objects
    # of video b + 1; islands that ignore the video score the same, so the delta is 0
    other = np.roll(obj, -1, axis=1)
    track = {}
    for k in range(K):
        track[k] = track_islands(islands[:, k], s[:, k], obj)
        control = track_islands(islands[:, k], s[:, k], other)
        track[k]["track_iou_delta"] = track[k]["track_iou"] - control["track_iou"]
    colours = np.stack([colour_components(f, cfg.frontend.patch_size) for f in video.frames])
    pixels = np.stack([mean_colours(f, cfg.frontend.patch_size) for f in video.frames])
    base = track_islands(colours[start:], pixels[start:], obj)
    control = track_islands(colours[start:], pixels[start:], other)
    base["track_iou_delta"] = base["track_iou"] - control["track_iou"]

    # footnote 7: sizes of the motion response and of the raw change, by region
    changed = changed_patches(video.frames, grid)[start - 1 :]  # frame t-1 -> t, t >= start
    fg = obj > 0
    regions = {"edge": fg & changed, "inside": fg & ~changed, "background": ~fg & ~changed}
    # the motion's effect on the change over one frame: R_t - R_{t-1}, R = e(video) - e(held)
    response = np.diff(moving["state"] - held["state"], axis=0)[start - 1 :]
    r = np.linalg.norm(response, axis=-1)  # [T', K, N, B]
    raw = np.linalg.norm(np.diff(moving["state"], axis=0)[start - 1 :], axis=-1)
    by_region = {}
    for name, mask in regions.items():
        m = mask.reshape(mask.shape[0], mask.shape[1], -1).transpose(0, 2, 1)[:, None]
        by_region[name] = {
            "response": _masked_mean(r, m),
            "raw": _masked_mean(raw, m),
        }

    # level 0's prediction of the next frame (the state that made it saw frames < t)
    mse = lambda a, b: float(((a - b) ** 2).mean())  # noqa: E731
    prediction = {
        "td_next": mse(moving["td0"][start:], moving["bu0"][start:]),
        "nothing_moves": mse(moving["bu0"][start - 1 : -1], moving["bu0"][start:]),
        "td_held": mse(held["td0"][start:], held["bu0"][start:]),
    }
    return {"track": track, "colour": base, "regions": by_region, "prediction": prediction}


def mean_colours(images: np.ndarray, patch: int) -> np.ndarray:
    """Every column's mean patch colour as ``[N, B, C]`` (the vectors the colour components are
    made from, in the layout of a level's state)."""
    c = patch_vectors(images, patch).mean(axis=(-2, -1))  # [B, hg, wg, C]
    return c.reshape(c.shape[0], -1, c.shape[-1]).transpose(1, 0, 2)


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``x [T, K, N, B]`` over the entries where ``mask [T, 1, N, B]`` holds, per
    level ``[K]`` (NaN where none does)."""
    m = np.broadcast_to(mask, x.shape)
    count = m.sum(axis=(0, 2, 3))
    return np.where(count > 0, (x * m).sum(axis=(0, 2, 3)) / np.maximum(count, 1), np.nan)


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/video", seeds=SEEDS)
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)
    out = Path(args.out) / args.preset
    arms = {arm: (COMMON, PRESETS[args.preset], settings) for arm, settings in ARMS.items()}
    jobs = seeded_jobs(out, arms, seeds, args.overrides)
    train_jobs(jobs, args, require_finished=True)
    cfg = jobs[0].config
    results = {arm: [measure(out / f"{arm}_seed{seed}.pt") for seed in seeds] for arm in ARMS}
    K = cfg.model.levels
    where = f"{VIDEOS} held-out videos of {FRAMES} frames, seeds {seeds}, mean ± sd"

    print(f"\n1. tracking, from frame settle.steps - 1 on; {where}")
    rows = []
    for arm, runs in results.items():
        for k in range(K):
            row = [arm if k == 0 else "", k]
            row += [
                mean_sd([r["track"][k][m] for r in runs], ".0f" if m == "pairs" else ".3f")
                for m in TRACK
            ]
            rows.append(row)
    colour = results[next(iter(results))][0]["colour"]  # the data alone: alike for every arm
    rows.append(["colour components", "-", *(f"{colour[m]:.3g}" for m in TRACK)])
    print(markdown_table(["arm", "level", *TRACK], rows))

    print(f"\n2. footnote 7: mean change of a column's embedding per frame, by region; {where}")
    headers = ["arm", "level"]
    headers += [f"{q} {name}" for q in ("motion response", "raw change") for name in REGIONS]
    headers += ["response edge / inside"]
    rows = []
    for arm, runs in results.items():
        for k in range(K):
            row = [arm if k == 0 else "", k]
            for q in ("response", "raw"):
                row += [
                    mean_sd([r["regions"][name][q][k] for r in runs], ".3g") for name in REGIONS
                ]
            ratio = [r["regions"]["edge"]["response"][k] / r["regions"]["inside"]["response"][k]
                     for r in runs]  # fmt: skip
            row.append(mean_sd(ratio, ".2f"))
            rows.append(row)
    print(markdown_table(headers, rows))

    print(f"\n3. level 0's top-down prediction of the next frame's reading (MSE); {where}")
    rows = [
        [arm, *(mean_sd([r["prediction"][m] for r in runs], ".4f") for m in PREDICTION)]
        for arm, runs in results.items()
    ]
    print(markdown_table(["arm", *PREDICTION], rows))
    return 0


TRACK = ("track_iou", "track_iou_delta", "segment_iou", "switches", "pairs")
REGIONS = ("edge", "inside", "background")
PREDICTION = ("td_next", "nothing_moves", "td_held")


if __name__ == "__main__":
    sys.exit(run_experiment(main))
