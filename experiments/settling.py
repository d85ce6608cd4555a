"""Settling alone: islands of trained weights as the settling parameters change (issue 14, item 2).

Results, table and discussion: docs/experiments/settling.md

    python experiments/settling.py --preset quick|full [--seeds 0,1,2] [--jobs N] [--out DIR]
        [--weights PATTERN]

Settling parameters change the islands as much as learning does, so they are studied here with
the weights frozen. The script trains (or, with ``--weights runs/x_seed{seed}.pt``, reuses) the
default model under co-distillation, one run per seed, and settles its held-out probe scenes
again with one settling parameter changed at a time from the trained config's own values
(``bioglom.load_model(path, overrides)``): self-attention in the lateral term, the final inverse
temperature ``beta``, the final weight of the lateral contribution, the number of steps, the
window radius, the combination an earlier probe found (a strong lateral weight with a low beta),
and the attraction-repulsion lateral term (``attention.lateral = "attract_repel"``) at several
thresholds. Every setting is scored as docs/design.md §10 asks: object and part FG-ARI of
connected islands (cosine > ``THRESHOLD``) with their mismatched-image controls, at every level,
mean ± sd over the seeds. A second table follows the islands along one long settling
(``LONG_STEPS`` steps): island count, object delta, and the relative change of the state per
step (a fixed point has change 0).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

import bioglom
from bioglom.experiment import (
    QUICK,
    Job,
    arm_config,
    experiment_parser,
    markdown_table,
    run_experiment,
    seeds_of,
    train_jobs,
)
from bioglom.islands import extract_islands
from bioglom.probe import TRUTH_MASKS
from bioglom.runs import open_run
from bioglom.scores import column_labels, score_islands

# ---- configuration ------------------------------------------------------------------------
THRESHOLD = 0.8  # cosine above which 4-neighbours join an island
SEEDS = {"quick": "0,1,2", "full": "0,1,2"}
TRAINED = {"train.rule": "codistill", "data.source": "scenes"}  # the islands experiment's arm
PRESETS = {
    # seconds on 2 CPU cores, used by the tests
    "quick": {
        "config": {**QUICK, "data.n_probe": 8, "data.n_linear": 0, "train.updates": 6,
                   "run.record_every": 3, "run.snapshot_every": 6, "run.checkpoint_every": 0},
        "sweeps": {
            "attention.include_self": [True, False],
            "attention.beta_end": [0.3, 3.0],
            "consensus.weights_end.lateral": [0.0, 3.0],
            "settle.steps": [2, 6],
            "attention.radius": [1, 2],
        },
        "long_steps": 6,
    },
    # the numbers of docs/experiments/settling.md: the default model, 600 updates (the islands
    # experiment's codistill arm; pass --weights 'runs/islands/full/codistill_seed{seed}.pt')
    "full": {
        "config": {"train.updates": 600, "run.record_every": 50, "run.snapshot_every": 300},
        "sweeps": {
            "attention.include_self": [True, False],
            "attention.beta_end": [0.1, 0.3, 1.0, 3.0, 10.0],
            "consensus.weights_end.lateral": [0.0, 0.5, 1.0, 3.0, 10.0],
            "settle.steps": [2, 6, 12, 24],
            "attention.radius": [1, 2, 4],
        },
        "long_steps": 24,
    },
}  # fmt: skip
#: settings of several fields at once: the earlier probe's strong lateral weight at a low beta
COMBINATIONS = {
    "lateral 10, beta 0.05": {
        "consensus.weights_end.lateral": 10.0,
        "attention.beta_start": 0.05,
        "attention.beta_end": 0.05,
    },
    "lateral 10, beta 0.05, no self": {
        "consensus.weights_end.lateral": 10.0,
        "attention.beta_start": 0.05,
        "attention.beta_end": 0.05,
        "attention.include_self": False,
    },
    # the attraction-repulsion lateral term (functional.attract_repel_attention): attend only
    # to neighbours of cosine >= above, subtract gamma times the mean of those below `below`
    **{
        f"attract_repel {above}/{below}, gamma {gamma}" + (f", lateral {lat}" if lat else ""): {
            "attention.lateral": "attract_repel",
            "attention.attract_above": above,
            "attention.repel_below": below,
            "attention.repel_weight": gamma,
            **({"consensus.weights_end.lateral": lat} if lat else {}),
        }
        for above, below, gamma, lat in [
            (0.5, 0.0, 0.5, None), (0.8, 0.3, 0.5, None), (0.3, -0.2, 1.0, None),
            (0.5, 0.0, 0.5, 3.0), (0.8, 0.3, 1.0, 3.0),
        ]
    },
}  # fmt: skip


def probe_of(run_path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The probe images of a run and their column labels per truth name."""
    with open_run(run_path) as run:
        probe, grid = run.probe, tuple(json.loads(run.attrs["grid"]))
    return probe["images"], {n: column_labels(probe[k], grid) for n, k in TRUTH_MASKS.items()}


def score_setting(weights: Path, overrides: dict, images: np.ndarray, truth: dict) -> dict:
    """Settle the probe images with the trained weights under ``overrides``; score per level."""
    model = bioglom.load_model(weights, overrides)
    with torch.no_grad():
        state = model.settle(images).state.numpy()
    s = score_islands(extract_islands(state, model.grid, "connected", THRESHOLD), truth)
    return {k: s[k] for k in ("fgari_obj", "dfgari_obj", "fgari_part", "dfgari_part", "count")}


def trajectory(weights: Path, steps: int, images: np.ndarray, truth: dict) -> dict:
    """Island count, object delta and relative state change per step of one long settling."""
    model = bioglom.load_model(weights, {"settle.steps": steps})
    with torch.no_grad():
        traj = model.settle(images, return_trajectory=True).trajectory.numpy()
    out = {"count": [], "dfgari_obj": [], "change": []}
    for t in range(1, steps + 1):
        s = score_islands(extract_islands(traj[t], model.grid, "connected", THRESHOLD), truth)
        out["count"].append(s["count"])
        out["dfgari_obj"].append(s["dfgari_obj"])
        diff = np.linalg.norm(traj[t] - traj[t - 1], axis=-1).mean(axis=(1, 2))
        out["change"].append(diff / np.linalg.norm(traj[t - 1], axis=-1).mean(axis=(1, 2)))
    return {k: np.array(v) for k, v in out.items()}


def mean_sd(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, 0), (
            np.nanstd(a, 0, ddof=1) if len(a) > 1 else np.full_like(a[0], np.nan)
        )


def cell(m: np.ndarray, s: np.ndarray, k: int, signed: bool = False) -> str:
    text = f"{m[k]:+.3f}" if signed else f"{m[k]:.3f}" if m[k] < 100 else f"{m[k]:.0f}"
    return text if not np.isfinite(s[k]) else f"{text} ± {s[k]:.3f}"


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/settling", seeds=SEEDS)
    ap.add_argument(
        "--weights",
        default=None,
        help="reuse trained runs: a path with {seed}, e.g. "
        "runs/islands/full/codistill_seed{seed}.pt",
    )
    args = ap.parse_args()
    args.seeds = seeds_of(args, SEEDS)
    preset = PRESETS[args.preset]
    out = Path(args.out) / args.preset
    if args.weights:
        weights = {seed: Path(args.weights.format(seed=seed)) for seed in args.seeds}
    else:
        jobs = [
            Job(
                arm_config(TRAINED, preset["config"], {"run.seed": seed}, sets=args.overrides),
                out / f"trained_seed{seed}.h5",
            )  # fmt: skip
            for seed in args.seeds
        ]
        train_jobs(jobs, args)
        weights = {seed: out / f"trained_seed{seed}.pt" for seed in args.seeds}
    probes = {seed: probe_of(w.with_suffix(".h5")) for seed, w in weights.items()}

    settings = {"as trained": {}}
    for field, values in preset["sweeps"].items():
        settings.update({f"{field} = {v}": {field: v} for v in values})
    settings.update(COMBINATIONS)
    results = {}
    for name, overrides in settings.items():
        per_seed = [score_setting(weights[s], overrides, *probes[s]) for s in args.seeds]
        results[name] = {k: mean_sd([r[k] for r in per_seed]) for k in per_seed[0]}
    K = len(results["as trained"]["count"][0])

    print(f"\nsettling, preset {args.preset}: trained weights {[str(w) for w in weights.values()]}")
    print(f"connected islands (cosine > {THRESHOLD}) of the probe scenes, mean ± sd over seeds")
    print(f"{list(args.seeds)}; delta: the score minus the same score against another image's")
    print("masks (0 for islands that ignore the image); one setting changed at a time\n")
    headers = ["setting", "level", "object delta", "part delta", "object FG-ARI", "islands/image"]
    rows = []
    for name, r in results.items():
        for k in range(K):
            rows.append([
                name if k == 0 else "", k,
                cell(*r["dfgari_obj"], k, True), cell(*r["dfgari_part"], k, True),
                cell(*r["fgari_obj"], k), cell(*r["count"], k),
            ])  # fmt: skip
    print(markdown_table(headers, rows))

    steps = preset["long_steps"]
    trajs = [trajectory(weights[s], steps, *probes[s]) for s in args.seeds]
    traj = {k: mean_sd([t[k] for t in trajs]) for k in trajs[0]}
    shown = sorted({1, 2, 4, 8, 16, steps} & set(range(1, steps + 1)))
    print(f"\nalong one settling of {steps} steps (as trained otherwise): per level")
    headers = ["step", *(f"islands L{k}" for k in range(K)), *(f"object delta L{k}" for k in
               range(K)), *(f"change L{k}" for k in range(K))]  # fmt: skip
    rows = []
    for t in shown:
        i = t - 1
        rows.append([
            t,
            *(f"{traj['count'][0][i][k]:.1f}" for k in range(K)),
            *(f"{traj['dfgari_obj'][0][i][k]:+.3f}" for k in range(K)),
            *(f"{traj['change'][0][i][k]:.3f}" for k in range(K)),
        ])  # fmt: skip
    print(markdown_table(headers, rows))
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "settings": {n: {k: [m.tolist(), s.tolist()] for k, (m, s) in r.items()}
                     for n, r in results.items()},
        "trajectory": {k: [m.tolist(), s.tolist()] for k, (m, s) in traj.items()},
        "seeds": list(args.seeds),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_experiment(main))
