"""The delta rule vs the temporal-derivative rule vs its spiking variant (paper §12.3).

Results, table and discussion: docs/experiments/temporal_vs_delta.md

    python experiments/temporal_vs_delta.py --preset quick|full [--seeds 0,1,2] [--jobs N]
        [--out DIR] [--resume]

Four arms on the same scenes, model, steps and seeds, differing only in how the nets learn:

* codistill     -- co-distillation, the delta rule: each net regresses toward the next step's
                   consensus;
* temporal      -- output weights change by presynaptic activity times the rate of change of
                   the postsynaptic activity, no target or error computed; the units start at
                   the net's own prediction and relax to the consensus (temporal.reference =
                   prediction, §12.3), so this should learn exactly as codistill does;
* spiking       -- the same, with the rate of change estimated from Poisson spike trains by a
                   derivative filter (noisy but unbiased);
* temporal_prev -- the ablation temporal.reference = previous_state: the units start at the
                   column's previous state, so the update does not vanish when the prediction
                   is right (its spiking variant tracked it step for step in the first round,
                   docs/experiments/temporal_vs_delta.md, so it is not run again).

Every arm records the same local losses (1/2 |prediction - consensus|^2 per level and net),
so the learning curves are comparable. Writes one HDF5 run per arm and seed to DIR
(``<arm>_seed<s>.h5``), a figure of the learning curves (DIR/curves.png, when matplotlib is
installed: the mean over the seeds, a band from the lowest to the highest) and prints a table
of the final local losses and of how far each arm's weights are from the delta rule's of the
same seed (mean ± sd over the seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from bioglom import build_model
from bioglom.experiment import (
    QUICK,
    arm_config,
    experiment_parser,
    markdown_table,
    mean_sd,
    run_experiment,
    seeded_jobs,
    seeds_of,
    train_jobs,
)
from bioglom.runs import open_run

# ---- configuration ------------------------------------------------------------------------
COMMON = {
    "model.sharing": "unshared",
    "model.state_norm": "homeostatic",
    # plain SGD, so that an update is the rule's signal itself (pre x rate for the temporal
    # rule, and the spiking estimate's noise stays unbiased). At the full preset the temporal
    # rule diverged at lr 0.3 (update ~110); 0.1 is the next value of the sweep 0.03-1
    "train.optimizer": "sgd",
    "train.lr": 0.1,
}
SEEDS = {"quick": "0", "full": "0,1,2"}
PRESETS = {
    # a couple of minutes on 2 CPU cores, used by the tests
    "quick": QUICK,  # bioglom.experiment.QUICK: 8x8 columns, 3 levels, d = 16, 40 updates
    # the numbers of docs/experiments/temporal_vs_delta.md:
    # the default model (16x16 columns, 4 levels, d = 32)
    "full": {
        "train.updates": 600,
        "run.record_every": 25,
        "run.snapshot_every": 300,
    },
}
ARMS = {
    "codistill": {"train.rule": "codistill"},
    "temporal": {"train.rule": "temporal"},
    "spiking": {"train.rule": "temporal", "temporal.spiking": True},
    "temporal_prev": {"train.rule": "temporal", "temporal.reference": "previous_state"},
}


def plot_curves(runs: dict[str, list[Path]], levels: int, path: Path) -> bool:
    """Learning curves (mean local loss of bottom-up and top-down nets, probe reconstruction)
    per arm: the mean over the seeds, a band from the lowest to the highest seed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from bioglom.plots import plot_band

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    for arm, paths in runs.items():
        curves = {"bu": [], "td": [], "recon": []}
        steps = []
        for run_path in paths:
            with open_run(run_path) as run:
                m = run.metrics
                steps.append(run.steps)
            curves["bu"].append(sum(m[f"loss_bu_L{k}"] for k in range(levels)) / levels)
            curves["td"].append(sum(m[f"loss_td_L{k}"] for k in range(levels - 1)) / (levels - 1))
            curves["recon"].append(m["probe_recon_mse"])
        for a, key in zip(ax, curves, strict=True):
            plot_band(a, steps, curves[key], label=arm)
    titles = ["bottom-up local loss", "top-down local loss", "probe reconstruction MSE"]
    n = len(next(iter(runs.values())))
    for a, title in zip(ax, titles, strict=True):
        a.set_title(f"{title} ({n} seeds)")
        a.set_xlabel("update")
        a.set_yscale("log")
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def final_weights(path: Path) -> dict[str, torch.Tensor]:
    """A run's final learned weights (its ``.pt``), homeostatic statistics left out."""
    state = torch.load(path.with_suffix(".pt"), map_location="cpu", weights_only=True)["model"]
    return {k: v for k, v in state.items() if v.is_floating_point() and not k.startswith("norm.")}


def distance(wa: dict[str, torch.Tensor], wb: dict[str, torch.Tensor]) -> float:
    """``|W_a - W_b| / |W_b|`` over every weight tensor."""
    num = sum(float((wa[k] - wb[k]).double().pow(2).sum()) for k in wb)
    return (num / sum(float(wb[k].double().pow(2).sum()) for k in wb)) ** 0.5


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/temporal_vs_delta", seeds=SEEDS)
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)

    out = Path(args.out) / args.preset
    arms = {arm: (COMMON, PRESETS[args.preset], overrides) for arm, overrides in ARMS.items()}
    jobs = seeded_jobs(out, arms, seeds, args.overrides)
    train_jobs(jobs, args)
    config = jobs[0].config
    runs = {arm: [out / f"{arm}_seed{seed}.h5" for seed in seeds] for arm in ARMS}
    K = config.model.levels

    def tail(m: dict, name: str, n: int = 3) -> float:
        """Mean of the last n finite records (step 0 has no losses; a diverged run ends NaN)."""
        v = m[name]
        return float(v[np.isfinite(v)][-n:].mean())

    names = [*(f"loss_bu_L{k}" for k in range(K)), *(f"loss_td_L{k}" for k in range(K - 1)),
             "loss_decoder"]  # fmt: skip
    rows = []
    for arm, paths in runs.items():
        losses, notes, to_delta, to_start = [], [], [], []
        for seed, path in zip(seeds, paths, strict=True):
            with open_run(path) as run:
                m, status, last = run.metrics, run.status, int(run.steps[-1])
            losses.append([tail(m, n) for n in names] + [tail(m, "probe_recon_mse", 1)])
            if status != "finished":
                notes.append(f"seed {seed} {status} at update {last}")
                continue
            # how far the final weights are from the delta rule's (codistill's) of the same
            # seed, and from where that seed started (the same initial weights in every arm)
            w = final_weights(path)
            delta = final_weights(runs["codistill"][seeds.index(seed)])
            seeded = arm_config(COMMON, PRESETS[args.preset], {"run.seed": seed},
                                sets=args.overrides)  # fmt: skip
            initial = {k: v for k, v in build_model(seeded).state_dict().items() if k in delta}
            if arm != "codistill":
                to_delta.append(distance(w, delta))
            to_start.append(distance(w, initial))
        cols = np.asarray(losses).T
        label = arm + (f" ({'; '.join(notes)})" if notes else "")
        rows.append([label, *(mean_sd(c, ".3f") for c in cols), mean_sd(to_delta, ".3f"),
                     mean_sd(to_start, ".3f")])  # fmt: skip
    headers = [
        "arm",
        *(f"BU L{k}" for k in range(K)),
        *(f"TD L{k}" for k in range(K - 1)),
        "decoder",
        "probe recon MSE",
        "dist to codistill",
        "dist to W_0",
    ]
    print(f"\ntemporal_vs_delta, preset {args.preset}, seeds {seeds} (mean ± sd): runs in {out}")
    print("final local losses (1/2 |prediction - consensus|^2, mean of the last 3 finite records)")
    print("and how far each finished arm's final weights W are from the delta rule's (codistill)")
    print("of the same seed, |W - W_delta| / |W_delta|, and from the initial weights,")
    print("|W - W_0| / |W_0| (homeostatic statistics left out); distances over finished seeds")
    print(markdown_table(headers, rows))
    if plot_curves(runs, K, out / "curves.png"):
        print(f"learning curves: {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
