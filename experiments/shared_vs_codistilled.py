"""Shared weights vs co-distilled columns vs isolated columns (paper §12.1).

Results, table and discussion: docs/experiments/shared_vs_codistilled.md

    python experiments/shared_vs_codistilled.py --preset quick|full [--out DIR]

Three arms on the same scenes, settling steps and seed, all learning locally by co-distillation
(each column's bottom-up and top-down nets regress toward the consensus of their level):

* shared   -- one weight per level for all columns; gradients summed over locations;
* unshared -- every column its own nets; knowledge moves between columns only through the
              lateral (attention) term inside the teacher;
* isolated -- unshared, lateral contribution off: nothing moves between columns (control).

Writes one HDF5 run per arm to DIR and prints a table of the last record: probe
reconstruction error, column agreement (1 = all columns compute one function), the ensemble
ratio (bottom-up predictions of columns whose inputs form an island, scored against the
consensus of the other contributions; < 1: the island's mean prediction beats single columns),
islands per image and the mean within-image cosine per level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bioglom.experiment import (
    QUICK,
    arm_config,
    experiment_parser,
    final_metrics,
    fmt,
    markdown_table,
    run_arm,
    run_experiment,
)

# ---- configuration ------------------------------------------------------------------------
COMMON = {
    "train.rule": "codistill",
    "model.state_norm": "homeostatic",  # each unit's running set point ...
    "model.homeostatic_stats": "columns",  # ... per column in every arm: only sharing differs
    "run.seed": 0,
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
}
ARMS = {
    "shared": {"model.sharing": "shared"},
    "unshared": {"model.sharing": "unshared"},
    "isolated": {"model.sharing": "isolated"},
}


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/shared_vs_codistilled")
    args = ap.parse_args()

    out = Path(args.out) / args.preset
    results = {}
    for arm, overrides in ARMS.items():
        config = arm_config(COMMON, PRESETS[args.preset], overrides, sets=args.overrides)
        path = out / f"{arm}.h5"
        run_arm(config, path, resume=args.resume, progress=not args.quiet)
        results[arm] = final_metrics(path)

    K = config.model.levels
    levels = range(K)
    per_level = lambda m, name, ks: ", ".join(fmt(m[f"{name}_L{k}"], 2) for k in ks)  # noqa: E731
    mean_of = lambda m, name, ks: sum(m[f"{name}_L{k}"] for k in ks) / len(ks)  # noqa: E731
    rows = [
        [
            arm,
            m["probe_recon_mse"],
            mean_of(m, "probe_agree_bu", range(1, K)),
            mean_of(m, "probe_agree_td", range(K - 1)),
            per_level(m, "probe_ensemble", range(1, K)),
            per_level(m, "probe_islands", levels),
            per_level(m, "probe_cos", levels),
        ]
        for arm, m in results.items()
    ]
    headers = [
        "arm",
        "probe recon MSE",
        "agreement BU",
        "agreement TD",
        f"ensemble ratio L1-{K - 1}",
        f"islands/image L0-{K - 1}",
        f"within-image cosine L0-{K - 1}",
    ]
    print(f"\nshared_vs_codistilled, preset {args.preset}: runs in {out}")
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
