"""Shared weights vs co-distilled columns vs isolated columns (paper §12.1).

Results, table and discussion: docs/experiments/shared_vs_codistilled.md

    python experiments/shared_vs_codistilled.py --preset quick|full|long [--seeds 0,1,2]
        [--jobs N] [--out DIR] [--resume]

Three arms on the same scenes, settling steps and seed, all learning locally by co-distillation
(each column's bottom-up and top-down nets regress toward the consensus of their level):

* shared   -- one weight per level for all columns; gradients summed over locations;
* unshared -- every column its own nets; knowledge moves between columns only through the
              lateral (attention) term inside the teacher;
* isolated -- unshared, lateral contribution off: nothing moves between columns (control).

Writes one HDF5 run per arm and seed to DIR/PRESET and prints a table of the last record (mean
± sd over the seeds): probe reconstruction error, column agreement (1 = all columns compute one
function), two ensemble ratios of the bottom-up predictions (< 1: the mean prediction of a
group of columns beats single columns) -- over islands against the consensus of the other
contributions (which holds the column's own previous state), and over ground-truth objects
against the other columns' lateral consensus alone (``probe_ensemble_others``, a target the
column did not shape) -- islands per image and the mean within-image cosine per level.

The ``long`` preset (§12.1: the columns become alike "in the long run") trains the small model
of ``quick`` for 10^4 updates with records spaced evenly in log10, and also prints agreement
and the ensemble ratio at every decade, the log-log slope of the unshared arm's agreement
excess over the isolated control, and draws ``agreement.png`` (agreement and ensemble ratio
against updates on log axes, bands: min-max over the seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bioglom.baselines import score_baselines
from bioglom.experiment import (
    QUICK,
    experiment_parser,
    final_metrics,
    markdown_table,
    mean_sd,
    run_experiment,
    seeded_jobs,
    seeds_of,
    train_jobs,
)
from bioglom.runs import open_run
from bioglom.splits import load_data

# ---- configuration ------------------------------------------------------------------------
COMMON = {
    "train.rule": "codistill",
    "model.state_norm": "homeostatic",  # each unit's running set point ...
    "model.homeostatic_stats": "columns",  # ... per column in every arm: only sharing differs
}
PRESETS = {
    # a couple of minutes on 2 CPU cores, used by the tests
    "quick": QUICK,  # bioglom.experiment.QUICK: 8x8 columns, 3 levels, d = 16, 40 updates
    # the numbers of docs/experiments/shared_vs_codistilled.md:
    # the default model (16x16 columns, 4 levels, d = 32)
    "full": {
        "train.updates": 600,
        "run.record_every": 50,
        "run.snapshot_every": 300,
    },
    # co-distillation in the long run: the quick model (about 0.08 s an update on one core),
    # 10^4 updates of 8 scenes drawn from 4096, 8 records per decade
    "long": {
        **QUICK,
        "data.n_train": 4096,
        "train.updates": 10_000,
        "run.record_every": 1000,
        "run.record_per_decade": 8,
        "run.snapshot_every": 10_000,
        "run.checkpoint_every": 500,
    },
}
SEEDS = {"quick": "0", "full": "0,1,2", "long": "0,1,2"}
ARMS = {
    "shared": {"model.sharing": "shared"},
    "unshared": {"model.sharing": "unshared"},
    "isolated": {"model.sharing": "isolated"},
}
DECADES = (10, 100, 1000, 10_000)  # the long preset's curve table


def level_mean(metrics: dict[str, np.ndarray], stem: str, levels) -> np.ndarray:
    """The mean over ``levels`` of the metrics ``{stem}_L{k}`` (arrays or numbers)."""
    return np.mean([np.asarray(metrics[f"{stem}_L{k}"], dtype=float) for k in levels], axis=0)


def curves(path: Path) -> dict[str, np.ndarray]:
    """Agreement (bottom-up, mean over levels 1..K-1) and both ensemble ratios (mean over
    levels 1..K-1) at every record of a run, with the update of each record."""
    with open_run(path) as run:
        m, K = run.metrics, run.config.model.levels
        return {
            "step": np.asarray(m["step"], dtype=float),
            "agree": level_mean(m, "probe_agree_bu", range(1, K)),
            "ensemble": level_mean(m, "probe_ensemble", range(1, K)),
            "others": level_mean(m, "probe_ensemble_others", range(1, K)),
        }


def at(curve: dict[str, np.ndarray], name: str, update: int) -> float:
    """A curve's value at the record of ``update`` (NaN if there is none)."""
    hit = np.flatnonzero(curve["step"] == update)
    return float(curve[name][hit[-1]]) if len(hit) else float("nan")


def loglog_slope(steps: np.ndarray, values: np.ndarray, lo: float, hi: float) -> float:
    """The least-squares slope of ``log10 values`` against ``log10 steps`` over the records
    with ``lo <= step <= hi`` and a positive value (NaN with fewer than two): the exponent
    ``p`` of ``value ~ step^p``."""
    keep = (steps >= lo) & (steps <= hi) & (values > 0) & np.isfinite(values)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log10(steps[keep]), np.log10(values[keep]), 1)[0])


def extrapolate(
    steps: np.ndarray, values: np.ndarray, lo: float, hi: float, target: float
) -> float:
    """The update at which the power law ``value = c step^p`` fitted over ``[lo, hi]`` (log-log
    least squares) reaches ``target``: ``(target / c)^(1/p)``; inf when ``p <= 0``."""
    keep = (steps >= lo) & (steps <= hi) & (values > 0) & np.isfinite(values)
    if keep.sum() < 2:
        return float("nan")
    p, log_c = np.polyfit(np.log10(steps[keep]), np.log10(values[keep]), 1)
    if p <= 0:
        return float("inf")
    return float(10 ** ((np.log10(target) - log_c) / p))


def final_table(results: dict[str, list[dict[str, float]]], K: int) -> str:
    """The last record of every arm, mean ± sd over the seeds."""

    def cell(arm: str, stem: str, levels, spec: str) -> str:
        return ", ".join(
            mean_sd([m.get(f"{stem}_L{k}", np.nan) for m in results[arm]], spec) for k in levels
        )

    rows = []
    for arm, runs in results.items():
        rows.append([
            arm,
            mean_sd([m["probe_recon_mse"] for m in runs], ".3f"),
            mean_sd([level_mean(m, "probe_agree_bu", range(1, K)) for m in runs], ".3f"),
            mean_sd([level_mean(m, "probe_agree_td", range(K - 1)) for m in runs], ".3f"),
            cell(arm, "probe_ensemble", range(1, K), ".2f"),
            cell(arm, "probe_ensemble_others", range(1, K), ".2f"),
            cell(arm, "probe_islands", range(K), ".1f"),
            cell(arm, "probe_dfgari_obj", range(K), "+.3f"),
            cell(arm, "probe_fgari_obj", range(K), ".3f"),
            cell(arm, "probe_cos", range(K), ".2f"),
        ])  # fmt: skip
    headers = [
        "arm",
        "probe recon MSE",
        f"agreement BU (L1-{K - 1} mean)",
        f"agreement TD (L0-{K - 2} mean)",
        f"ensemble ratio, islands vs consensus L1-{K - 1}",
        f"ensemble ratio, objects vs others L1-{K - 1}",
        f"islands/image L0-{K - 1}",
        f"object FG-ARI delta L0-{K - 1}",
        f"object FG-ARI L0-{K - 1}",
        f"within-image cosine L0-{K - 1}",
    ]
    return markdown_table(headers, rows)


def curve_table(series: dict[str, list[dict[str, np.ndarray]]], updates: int) -> str:
    """Agreement and the two ensemble ratios at each decade, mean ± sd over the seeds."""
    points = [u for u in DECADES if u <= updates]
    rows = []
    for arm, runs in series.items():
        for name, spec in (("agree", ".4f"), ("ensemble", ".2f"), ("others", ".2f")):
            rows.append(
                [arm, name, *(mean_sd([at(c, name, u) for c in runs], spec) for u in points)]
            )
    return markdown_table(["arm", "measure", *(f"update {u}" for u in points)], rows)


def plot_curves(series: dict[str, list[dict[str, np.ndarray]]], path: Path) -> None:
    """Agreement (log-log) and the objects-vs-others ensemble ratio (log x) against updates:
    the mean over the seeds, shaded between their minimum and maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bioglom.plots import plot_band

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for arm, runs in series.items():
        for ax, name in zip(axes, ("agree", "others"), strict=True):
            keep = [c["step"] > 0 for c in runs]  # log axes: no update 0
            steps = [c["step"][k] for c, k in zip(runs, keep, strict=True)]
            plot_band(ax, steps, [c[name][k] for c, k in zip(runs, keep, strict=True)], label=arm)
    axes[0].set(xscale="log", yscale="log", xlabel="update", ylabel="agreement BU")
    axes[0].set_title("column agreement (1 = one function)", fontsize=9)
    axes[1].set(xscale="log", xlabel="update", ylabel="ensemble ratio")
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[1].set_title(
        "objects' mean vs single columns, against the others (<1: ensemble)", fontsize=9
    )
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/shared_vs_codistilled", seeds=SEEDS)
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)

    out = Path(args.out) / args.preset
    arms = {arm: (COMMON, PRESETS[args.preset], overrides) for arm, overrides in ARMS.items()}
    jobs = seeded_jobs(out, arms, seeds, args.overrides)
    train_jobs(jobs, args)
    config = jobs[0].config
    paths = {arm: [out / f"{arm}_seed{seed}.h5" for seed in seeds] for arm in ARMS}
    results = {arm: [final_metrics(p) for p in ps] for arm, ps in paths.items()}

    K = config.model.levels
    print(
        f"\nshared_vs_codistilled, preset {args.preset}, seeds {seeds} (mean ± sd): runs in {out}"
    )
    print(final_table(results, K))
    probe = load_data(config).probe  # the same probe images in every arm and seed
    pixels = score_baselines(probe.images, {"obj": probe.object_masks}, config.frontend.patch_size)
    print("\npixel baselines that learn nothing, on the same probe images (one partition):")
    rows = [[name, f"{s['dfgari_obj']:+.3f}", f"{s['fgari_obj']:.3f}", f"{s['count']:.1f}"]
            for name, s in pixels.items()]  # fmt: skip
    print(
        markdown_table(["baseline", "object FG-ARI delta", "object FG-ARI", "islands/image"], rows)
    )
    if args.preset == "long":
        series = {arm: [curves(p) for p in ps] for arm, ps in paths.items()}
        updates = config.train.updates
        print(f"\nagreement BU and ensemble ratios (mean over L1-{K - 1}) by update")
        print(curve_table(series, updates))
        excess = np.mean([c["agree"] for c in series["unshared"]], 0) - np.mean(
            [c["agree"] for c in series["isolated"]], 0
        )
        steps = series["unshared"][0]["step"]
        for lo, hi in ((10, updates), (updates / 10, updates)):
            slope = loglog_slope(steps, excess, lo, hi)
            print(
                f"unshared - isolated agreement ~ update^p over [{lo:g}, {hi:g}]: p = {slope:.2f}"
            )
        agree = np.mean([c["agree"] for c in series["unshared"]], 0)
        for target in (0.5, 1.0):
            u = extrapolate(steps, agree, updates / 10, updates, target)
            when = "never (not rising)" if not np.isfinite(u) else f"about {u:.2g} updates"
            print(
                f"unshared agreement {target:g}, the last decade's power law extrapolated: {when}"
            )
        try:
            plot_curves(series, out / "agreement.png")
            print(f"figure: {out / 'agreement.png'}")
        except ImportError:
            print('no figure: matplotlib is missing (pip install -e ".[plot]")')
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
