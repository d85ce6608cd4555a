"""A foveated retina: can unshared co-distilled columns use what shared weights cannot? (§12.1)

Results, table and discussion: docs/experiments/fovea.md

    python experiments/fovea.py --preset quick|full [--seeds 0,1,2] [--jobs N] [--out DIR]
        [--resume]

§12.1 (line 477 of the paper): unshared columns make it possible to use "a retina whose
receptive fields get progressively larger farther from the fovea, which is hard to handle using
weight sharing". With ``frontend.retina = "foveated"`` column ``n`` reads ``m_n x m_n`` patches
centred on its own, averaged back to ``p x p`` values, ``m_n`` odd and growing with the distance
from the image centre (``bioglom.frontend``). Shared weights must then compute one function of
differently sampled inputs; unshared columns can each learn their own.

Arms, each on a ``uniform`` and a ``foveated`` retina, all learning by co-distillation with
per-column homeostatic normalisation (as ``shared_vs_codistilled.py``):

* ``shared``: one weight per level for all columns (top-down nets read the location code);
* ``unshared``: every column its own nets (their top-down nets also read the location code);
* ``unshared_noloc``: the same without the location code -- §12.1: a column's own top-down
  net knows where it is, so it "does not need to be given its location";
* ``isolated``: unshared, no lateral contribution: nothing moves between columns (control).

Measures, from each run's last record (mean ± sd over the seeds): reconstruction of the clean
probe images and fill-in of their removed pixels (the decoder predicts the column's own patch
in both retinas, so peripheral columns of a foveated retina must restore detail they see only
blurred: compare arms within a retina); column agreement of the bottom-up nets on the same
embeddings (``probe_agree_bu``) and of the front ends on the same optic array
(``bioglom.agreement.optic_agreement``: do columns at different eccentricities compute the same
function of the world?); the object FG-ARI of the islands minus its mismatched-image control at
every level (``probe_dfgari_obj``) beside the pixel baselines' on the same probe images; the
linear probe of the top level's column-averaged embedding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import bioglom
from bioglom.agreement import optic_agreement
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
from bioglom.splits import load_data

# ---- configuration ------------------------------------------------------------------------
COMMON = {
    "train.rule": "codistill",
    "model.state_norm": "homeostatic",
    "model.homeostatic_stats": "columns",
    "frontend.fovea_growth": 4.0,  # fields of 1, 3 and 5 patches on the 8x8 grid
}
PRESETS = {
    # seconds per arm on 2 CPU cores, used by the tests
    "quick": QUICK,  # bioglom.experiment.QUICK: 8x8 columns, 3 levels, d = 16, 40 updates
    # the numbers of docs/experiments/fovea.md: the same small model, 1500 updates of 8 scenes
    # drawn from 2048 (about 1-2 minutes an arm on one core)
    "full": {
        **QUICK,
        "data.n_train": 2048,
        "train.updates": 1500,
        "run.record_every": 250,
        "run.snapshot_every": 1500,
        "run.checkpoint_every": 250,
    },
}
SEEDS = {"quick": "0", "full": "0,1,2"}
RETINAS = {"uniform": {"frontend.retina": "uniform"}, "foveated": {"frontend.retina": "foveated"}}
ARMS = {
    "shared": {"model.sharing": "shared"},
    "unshared": {"model.sharing": "unshared"},
    "unshared_noloc": {"model.sharing": "unshared", "topdown.location": False},
    "isolated": {"model.sharing": "isolated"},
}
#: the pixel baselines scored beside the arms (each at its default parameter)
PIXEL_BASELINES = ("foreground_components", "colour_components", "kmeans_pixels")


def measure(path: Path) -> dict[str, float]:
    """A run's last record, and the front ends' optic agreement on its probe images (from the
    final weights)."""
    m = final_metrics(path)
    model = bioglom.load_model(path.with_suffix(".pt"))
    images = torch.from_numpy(load_data(model.config).probe.images)
    m["optic_agreement"] = optic_agreement(model, images)
    return m


def baseline_scores(config) -> dict[str, float]:
    """Object FG-ARI delta (mismatched-image control) of each pixel baseline on the probe."""
    probe = load_data(config).probe
    scores = score_baselines(
        probe.images, {"obj": probe.object_masks}, config.frontend.patch_size, PIXEL_BASELINES
    )
    return {name: s["dfgari_obj"] for name, s in scores.items()}


def table(results: dict[tuple[str, str], list[dict[str, float]]], K: int) -> str:
    """One row per retina and arm, mean ± sd over the seeds."""
    rows = []
    for (retina, arm), runs in results.items():

        def col(key: str, spec: str, runs=runs) -> str:
            return mean_sd([r.get(key, np.nan) for r in runs], spec)

        agree = [np.mean([r[f"probe_agree_bu_L{k}"] for k in range(1, K)]) for r in runs]
        rows.append([
            retina,
            arm,
            col("probe_recon_mse", ".4f"),
            col("probe_fill_mse", ".4f"),
            mean_sd(agree, ".3f"),
            col("optic_agreement", ".3f"),
            ", ".join(col(f"probe_dfgari_obj_L{k}", "+.3f") for k in range(K)),
            col("probe_linear_acc", ".3f"),
        ])  # fmt: skip
    headers = [
        "retina",
        "arm",
        "recon MSE",
        "fill-in MSE",
        f"agreement BU (L1-{K - 1})",
        "optic agreement (front ends)",
        f"object FG-ARI delta L0-{K - 1}",
        "linear probe (top level)",
    ]
    return markdown_table(headers, rows)


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/fovea", seeds=SEEDS)
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)
    out = Path(args.out) / args.preset
    arms = {
        f"{retina}_{arm}": (COMMON, PRESETS[args.preset], eye, settings)
        for retina, eye in RETINAS.items()
        for arm, settings in ARMS.items()
    }
    jobs = seeded_jobs(out, arms, seeds, args.overrides)
    train_jobs(jobs, args, require_finished=True)
    config = jobs[0].config
    results = {
        (retina, arm): [measure(out / f"{retina}_{arm}_seed{seed}.h5") for seed in seeds]
        for retina in RETINAS
        for arm in ARMS
    }
    K = config.model.levels
    print(f"\nfovea, preset {args.preset}, seeds {seeds} (mean ± sd): runs in {out}")
    print(table(results, K))
    pixels = baseline_scores(config)
    print("\npixel baselines on the same probe images, object FG-ARI delta (one partition):")
    print(markdown_table(["baseline", "object FG-ARI delta"], [[k, v] for k, v in pixels.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
