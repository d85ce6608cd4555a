"""Islands and parse trees under each learning rule, against controls and baselines (§1, §6).

Results, table and discussion: docs/experiments/islands.md

    python experiments/islands.py --preset quick|full|long [--seeds 0,1,2] [--jobs N] [--out DIR]
        [--arms A,B] [--rescore]

GLOM's claim is that islands of nearly identical embeddings are the parse tree: parts at a low
level, objects at a higher one, each island inside one island of the level above, and islands
larger at higher levels (paper §1, Figure 2). This trains the default model (unshared columns,
homeostatic state normalisation) on the embedded part-whole scenes with each learning rule --
the end-to-end baseline and co-distillation (which the temporal-derivative rule now equals) --
next to the untrained model and to co-distillation with batch-statistics normalisation
(docs/design.md §9's probe), and the arms of issue 14 (co-distillation from columns that start
as copies; the supervised upper bound, docs/design.md §4.5, with unshared, shared, and shared
per-image-normalised columns, and its end-to-end counterpart, also with layer normalisation;
the contrast toward the neighbours each column attends to most, unsupervised, and toward those
whose embeddings change most alike on moving scenes, common fate, with its still control),
each with every seed in ``SEEDS`` (or ``--seeds``;
``--arms`` picks arms, the untrained one always included); then it settles the held-out probe
scenes and scores the islands of each run's last snapshot, per level, as docs/design.md §10
asks:

* first the **mismatched-image control**: object and part FG-ARI minus the same score with
  every image's masks set against the islands of the next probe image (exactly 0 for any
  partition that ignores the image; ``bioglom.scores.mismatched_control``);
* FG-ARI against the object and the part masks (column labels by majority over each patch), and
  the best object FG-ARI and the best object delta over the threshold grid ``GRID`` (each
  maximised on its own);
* island count per image, nesting weighted by island size with single-column islands left out,
  and its mismatched control; the unweighted nesting; object mIoU; ARI across images (1: the
  same partition in every image);
* the mean cosine between columns of the same object and between columns of two objects of
  the same image (``bioglom.scores.object_cosines``): islands can tell objects apart by their
  vectors only where the second is clearly below the first;
* what the levels know: a ridge probe of each level's column-averaged embedding and of the raw
  pixels on the run's held-out labelled scenes (``Probe.linear_probe``, from the final weights);
* every number the mean ± sample standard deviation over the seeds (a difference smaller than
  the spread is not a difference).

Rows that learn nothing (``bioglom.baselines``), computed on the same probe images with the same
controls: fixed blocks and k-means on position (both ignore the image), connected components of
foreground columns, connected components of similar colour, and k-means on raw patch pixels;
each at its default parameter, with its best over a small fixed grid of that parameter. A learned
result is a result only where it beats all of them: the script names the arms and levels that do.

Islands are extracted two ways (docs/design.md §6): connected 4-neighbours with cosine above
``THRESHOLD``, and average-linkage agglomerative clustering cut at the same cosine. Writes one
HDF5 run per arm and seed (``<arm>_seed<s>.h5``), ``summary.json`` (every mean and spread),
``islands.png`` (island maps of one probe scene per arm, first seed) and ``parse_trees.png``, and
prints the tables.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import bioglom
from bioglom.baselines import BASELINES
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
from bioglom.islands import extract_islands, parse_tree
from bioglom.probe import TRUTH_MASKS, Probe
from bioglom.runs import open_run
from bioglom.scores import column_labels, object_cosines, score_islands
from bioglom.splits import load_data

# ---- configuration ------------------------------------------------------------------------
THRESHOLD = 0.8  # cosine above which columns join an island (both methods)
GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # thresholds of the "best over the grid" columns
METHODS = ("connected", "agglomerative")
# run.seed of every arm (weights, batches) per preset; docs/design.md §10: 3 at least
SEEDS = {"quick": "0,1,2", "full": "0,1,2", "long": "0,1,2"}
COMMON = {
    "data.source": "scenes",
    "run.island_threshold": THRESHOLD,
}
PRESETS = {
    # about a minute in all on 2 idle CPU cores (15 short runs), used by the tests
    "quick": {
        **QUICK,  # bioglom.experiment.QUICK (8x8 columns, 3 levels, d = 16), shorter:
        "data.n_train": 128,
        "data.n_probe": 8,
        "data.n_linear": 0,
        "settle.steps": 3,
        "train.updates": 6,
        "run.record_every": 3,
        "run.snapshot_every": 6,
        "run.checkpoint_every": 0,
    },
    # the numbers of docs/experiments/islands.md:
    # the default model (16x16 columns, 4 levels, d = 32), 600 updates
    "full": {
        "train.updates": 600,
        "run.record_every": 50,
        "run.snapshot_every": 300,
    },
    # the best arms for longer (pick them with --arms): 3000 updates, five times the full
    # preset's time per arm; on a GPU add --set run.device=cuda
    "long": {
        "train.updates": 3000,
        "run.record_every": 250,
        "run.snapshot_every": 1500,
    },
}
ARMS = {
    "untrained": {"train.updates": 0},
    "end_to_end": {"train.rule": "end_to_end"},
    "codistill": {"train.rule": "codistill"},
    # no "temporal" arm: with temporal.reference = prediction its gradient is co-distillation's
    # at every step (tests/test_local.py), so its runs equal codistill's (measured: identical
    # scores for every seed of the quick preset)
    # docs/design.md §9's probe: each unit standardised over columns and images (batch statistics)
    "codistill_batch": {"train.rule": "codistill", "model.state_norm": "batch"},
    # issue 14, item 4e: unshared columns that start as copies of column 0 (a shared warm start)
    "codistill_copies": {"train.rule": "codistill", "model.column_init": "copies"},
    # issue 14, item 3a, the upper bound: co-distillation plus a contrast toward each column's
    # own ground-truth part (level 1) and object (levels 2-3) in its image's consensus
    "supervised": {"train.rule": "supervised"},
    "supervised_shared": {"train.rule": "supervised", "model.sharing": "shared"},
    # ... with each unit standardised over its image's columns (no common mode survives)
    "supervised_shared_image": {
        "train.rule": "supervised",
        "model.sharing": "shared",
        "model.state_norm": "image",
    },
    # ... and with the location fed to the bottom-up nets too, so that a part can vote for its
    # whole's pose (§2.4): without it, two objects whose columns see alike get alike vectors
    "supervised_shared_image_location": {
        "train.rule": "supervised",
        "model.sharing": "shared",
        "model.state_norm": "image",
        "model.bottom_up_location": True,
    },
    "supervised_shared_location": {
        "train.rule": "supervised",
        "model.sharing": "shared",
        "model.bottom_up_location": True,
    },
    # ... with the other objects of an image weighing as much as the other images in the
    # margin (the plain mean over ~17 negatives let one shared code satisfy it)
    "supervised_shared_image_location_balanced": {
        "train.rule": "supervised",
        "model.sharing": "shared",
        "model.state_norm": "image",
        "model.bottom_up_location": True,
        "supervised.balance_negatives": True,
    },
    # issue 14, item 3b: the end-to-end baseline with the same contrast on its final state,
    # back-propagated through settling (as Agglomerator trains with labels)
    "supervised_end_to_end": {"train.rule": "supervised_end_to_end"},
    "supervised_end_to_end_shared": {
        "train.rule": "supervised_end_to_end",
        "model.sharing": "shared",
    },
    # ... with each vector standardised over its own components (layer norm, one map for every
    # column) in place of the homeostatic running statistics; shared weights
    "supervised_end_to_end_shared_layer": {
        "train.rule": "supervised_end_to_end",
        "model.sharing": "shared",
        "model.state_norm": "layer",
    },
    # ... and the background one kind of thing in every image (no image negative between two
    # images' background at a column); with the margin, and with the InfoNCE form
    "supervised_end_to_end_shared_layer_background": {
        "train.rule": "supervised_end_to_end",
        "model.sharing": "shared",
        "model.state_norm": "layer",
        "supervised.shared_background": True,
    },
    "supervised_end_to_end_shared_layer_background_infonce": {
        "train.rule": "supervised_end_to_end",
        "model.sharing": "shared",
        "model.state_norm": "layer",
        "supervised.shared_background": True,
        "supervised.loss": "infonce",
    },
    # issue 14, item 4a: positives the column chooses itself (its most-attended neighbours),
    # unsupervised; unshared columns started as copies, and shared columns
    "self_contrast": {"train.rule": "self_contrast", "model.column_init": "copies"},
    "self_contrast_shared": {"train.rule": "self_contrast", "model.sharing": "shared"},
    # issue 14, item 4c: collapse prevented by a balanced assignment of each image's columns
    # to fixed prototypes (Sinkhorn per image, no batch statistics)
    "prototypes": {"train.rule": "prototypes", "model.column_init": "copies"},
    # issue 14, item 4d: the card's consensus (weighted geometric mean of Gaussians) for the
    # unsupervised mechanisms
    "codistill_copies_gaussian": {
        "train.rule": "codistill",
        "model.column_init": "copies",
        "consensus.mode": "gaussian",
    },
    "self_contrast_gaussian": {
        "train.rule": "self_contrast",
        "model.column_init": "copies",
        "consensus.mode": "gaussian",
    },
    # issue 14, item 4f: the best unsupervised arm of the first round with the night's negative
    # updates: 500 day and 100 night updates, alternating
    "codistill_copies_night": {
        "train.rule": "codistill",
        "model.column_init": "copies",
        "schedule.phases": "(day 100, night 20) x 5",
    },
    # issue 14, item 4b: common fate -- trained on videos whose objects move independently
    # (one frame per settling step), each column's positives the neighbours whose embeddings
    # change most alike over the step; scored on the same still probe scenes as every arm
    "common_fate": {
        "train.rule": "self_contrast",
        "self_contrast.rank_by": "common_fate",
        "model.column_init": "copies",
        "data.source": "moving",
    },
    # ... its control: the same videos standing still (no motion, no part jitter), so that
    # the only change left is settling's own
    "common_fate_still": {
        "train.rule": "self_contrast",
        "self_contrast.rank_by": "common_fate",
        "model.column_init": "copies",
        "data.source": "moving",
        "data.max_speed": 0.0,
        "data.part_jitter": 0.0,
    },
    # ... and the same night on the best unsupervised arm measured since (self_contrast)
    "self_contrast_night": {
        "train.rule": "self_contrast",
        "model.column_init": "copies",
        "schedule.phases": "(day 100, night 20) x 5",
    },
}

#: the arm that experiments/configs/islands_local.toml reproduces (issue 14, item 7): the best
#: unsupervised local arm measured (docs/experiments/islands.md)
BEST_LOCAL = "self_contrast"


def best(per_value: list[np.ndarray]) -> np.ndarray:
    """The largest score per level over a grid of values (NaN where all are NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(per_value, axis=0)


def run_path(out: Path, arm: str, seed: int) -> Path:
    return out / f"{arm}_seed{seed}.h5"


def scores_of_run(path: Path) -> dict:
    """Scores of the last snapshot of a run, for each method at THRESHOLD, with the best
    object FG-ARI and the best object delta over GRID."""
    with open_run(path) as run:
        cfg = run.config
        snap = run.snapshot(int(run.snapshot_steps[-1]))
        probe = run.probe
        status = run.status
        grid = tuple(json.loads(run.attrs["grid"]))
    truth = {name: column_labels(probe[key], grid) for name, key in TRUTH_MASKS.items()}
    state = snap["state"].astype(np.float32)
    out = {"status": status, "levels": cfg.model.levels, "grid": grid, "truth": truth}
    cosines = object_cosines(state, truth["obj"])
    for method in METHODS:
        labels = extract_islands(state, grid, method, THRESHOLD)
        out[method] = score_islands(labels, truth)
        out[method].update({f"cos_{k}": v for k, v in cosines.items()})
        out[f"{method}_labels"] = labels
        grid_scores = [
            score_islands(extract_islands(state, grid, method, t), {"obj": truth["obj"]})
            for t in GRID
        ]
        for key in ("fgari_obj", "dfgari_obj"):
            out[method][f"best_{key}"] = best([s[key] for s in grid_scores])
    out["image"] = probe["images"][0]
    out["images"] = probe["images"]
    out["patch"] = cfg.frontend.patch_size
    out["linear"] = linear_probe_of_run(path, cfg)
    return out


def linear_probe_of_run(path: Path, cfg) -> dict:
    """What the levels know (issue 14, item 6): the ridge probe of every level's
    column-averaged embedding, and of the raw pixels, on the run's held-out labelled scenes
    (the label: the class of the largest object), computed from the run's final weights."""
    data = load_data(cfg)
    if data.linear is None:
        return {"levels": np.full(cfg.model.levels, np.nan), "pixels": np.nan}
    model = bioglom.load_model(path.with_suffix(".pt"))
    probe = Probe(
        torch.from_numpy(data.probe.images[:1]), 0, 0.0, THRESHOLD,
        linear_images=torch.from_numpy(data.linear.images), linear_labels=data.linear.labels,
    )  # fmt: skip
    acc = probe.linear_probe(model, torch.Generator().manual_seed(cfg.run.seed + 2))
    levels = np.array([acc[f"probe_linear_acc_L{k}"] for k in range(cfg.model.levels)])
    return {"levels": levels, "pixels": acc["probe_linear_acc_pixels"]}


def scores_of_baseline(name: str, reference: dict, seed: int) -> dict:
    """A baseline's partition of the probe images of ``reference`` (a run's scores), scored as
    one level, at its default parameter and best over its grid."""
    baseline = BASELINES[name]
    images, patch, truth = (reference[k] for k in ("images", "patch", "truth"))
    s = score_islands(baseline(images, patch, seed)[None], truth)
    on_grid = [
        score_islands(baseline(images, patch, seed, v)[None], truth)
        for v in baseline.values(images, patch)
    ]
    for key in ("fgari_obj", "dfgari_obj"):
        s[f"best_{key}"] = best([g[key] for g in on_grid])
    return s


def mean_sd(per_seed: list[dict]) -> dict:
    """Every score's mean and sample standard deviation over seeds (NaN-aware): key -> (m, s)."""
    out = {}
    for key in per_seed[0]:
        a = np.array([np.asarray(r[key], dtype=np.float64) for r in per_seed])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries stay NaN
            m = np.nanmean(a, axis=0)
            s = np.nanstd(a, axis=0, ddof=1) if len(a) > 1 else np.full_like(m, np.nan)
        out[key] = (m, s)
    return out


def pm(ms: tuple, k: int | None, signed: bool = False) -> str:
    """``mean ± sd`` of entry ``k`` (None: a scalar score), '-' where undefined."""
    m, s = (float(x) if k is None or np.ndim(x) == 0 else float(x[k]) for x in ms)
    if not np.isfinite(m):
        return "-"
    text = f"{m:+.3f}" if signed else f"{m:.3f}" if abs(m) < 100 else f"{m:.1f}"
    return text if not np.isfinite(s) else f"{text} ± {s:.3f}"


HEADERS = [
    "arm",
    "level",
    "object FG-ARI delta",
    "part FG-ARI delta",
    "object FG-ARI",
    "part FG-ARI",
    "best object FG-ARI over the grid",
    "best object delta over the grid",
    "islands/image",
    "weighted nesting",
    "weighted nesting delta",
    "nesting",
    "object mIoU",
    "ARI across images",
    "cosine within objects",
    "cosine between objects",
]


def row(name: str, s: dict, k: int, level: str, last: bool) -> list[str]:
    nest = (lambda key, sg=False: "-") if last else (lambda key, sg=False: pm(s[key], k, sg))
    return [
        name,
        level,
        pm(s["dfgari_obj"], k, True),
        pm(s["dfgari_part"], k, True),
        pm(s["fgari_obj"], k),
        pm(s["fgari_part"], k),
        pm(s["best_fgari_obj"], k),
        pm(s["best_dfgari_obj"], k, True),
        pm(s["count"], k),
        nest("wnesting"),
        nest("dwnesting", True),
        nest("nesting"),
        pm(s["miou_obj"], k),
        pm(s["ari_across"], k),
        pm(s["cos_within"], k) if "cos_within" in s else "-",
        pm(s["cos_between"], k) if "cos_between" in s else "-",
    ]


def table(results: dict, baselines: dict, method: str) -> str:
    rows = []
    for arm, r in results.items():
        s, K = r[method], r["levels"]
        rows += [row(arm if k == 0 else "", s, k, str(k), k == K - 1) for k in range(K)]
    for name, s in baselines.items():
        b = BASELINES[name]
        label = f"{name} ({b.parameter} {b.default}; grid {list(b.grid)})"
        rows.append(row(label, s, 0, "any", True))
    return markdown_table(HEADERS, rows)


def winners(results: dict, baselines: dict, method: str) -> list[str]:
    """The arms and levels whose object FG-ARI and object delta both exceed every baseline's by
    more than the two spreads (a difference smaller than the spread is not a difference), both
    at the fixed settings (the arm at THRESHOLD, each baseline at its default) and at the best
    of each over its own grid (GRID for the arm, the baseline's parameter grid). A baseline
    whose score is undefined (NaN) counts as not beaten. (The best over a grid is selected on
    the same probe images, so it is biased upward, for the arms and the baselines alike.)"""
    found = []
    for arm, r in results.items():
        for k in range(r["levels"]):
            ok = True
            for key in ("fgari_obj", "dfgari_obj", "best_fgari_obj", "best_dfgari_obj"):
                m, s = (float(x[k]) for x in r[method][key])
                for b in baselines.values():
                    bm, bs = (float(x[0]) for x in b[key])
                    margin = np.nan_to_num(s) + np.nan_to_num(bs)
                    ok &= bool(np.isfinite(m) and np.isfinite(bm) and m - bm > margin)
            if ok:
                found.append(f"{arm} L{k}")
    return found


def grows_with_level(sizes: np.ndarray) -> str:
    """Whether the mean island size never shrinks from one level to the next (else where it
    shrinks), and how many times larger the top level's islands are than level 0's."""
    drops = [f"L{k}>L{k + 1}" for k in range(len(sizes) - 1) if sizes[k + 1] < sizes[k]]
    monotone = "yes" if not drops else "no (" + ", ".join(drops) + ")"
    return f"{monotone}; top/bottom {sizes[-1] / sizes[0]:.2f}x"


def figures(first: dict, out: Path) -> list[Path]:
    """Island maps and parse trees of probe scene 0, one row per arm (its first seed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from bioglom.plots import plot_island_maps, plot_parse_tree
    except ImportError:
        return []
    K = next(iter(first.values()))["levels"]
    arms = list(first)
    fig, ax = plt.subplots(len(arms), K + 1, figsize=(2.3 * (K + 1), 2.4 * len(arms)))
    ax = np.atleast_2d(ax)
    for i, arm in enumerate(arms):
        r = first[arm]
        ax[i, 0].imshow(np.clip(r["image"].transpose(1, 2, 0), 0, 1))
        ax[i, 0].set_title(f"{arm}", fontsize=9)
        ax[i, 0].axis("off")
        plot_island_maps(r["image"], r["connected_labels"][:, 0], ax[i, 1:])
    fig.suptitle(
        f"islands of 2+ columns in probe scene 0 (connected 4-neighbours, cosine > {THRESHOLD})"
    )
    fig.tight_layout()
    maps = out / "islands.png"
    fig.savefig(maps, dpi=80)
    fig, ax = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.2), squeeze=False)
    for i, arm in enumerate(arms):
        tree = parse_tree(first[arm]["agglomerative_labels"], image=0)
        plot_parse_tree(tree, ax[0, i], min_size=2)
        ax[0, i].set_title(f"{arm} (agglomerative, islands of 2+ columns)", fontsize=9)
    fig.tight_layout()
    trees = out / "parse_trees.png"
    fig.savefig(trees, dpi=80)
    plt.close("all")
    return [maps, trees]


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return [jsonable(v) for v in x]
    a = np.asarray(x, dtype=np.float64)
    return [None if not np.isfinite(v) else float(v) for v in a.reshape(-1)]


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/islands", seeds=SEEDS)
    ap.add_argument(
        "--rescore", action="store_true", help="score the runs already in DIR, do not train"
    )
    ap.add_argument(
        "--arms",
        type=lambda text: tuple(text.split(",")),
        default=tuple(ARMS),
        help="comma-separated arms to train and report (default: all; 'untrained' always)",
    )
    args = ap.parse_args()
    seeds = seeds_of(args, SEEDS)
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    arms = {a: ARMS[a] for a in ARMS if a in args.arms or a == "untrained"}

    out = Path(args.out) / args.preset
    jobs = [
        Job(
            arm_config(
                COMMON, PRESETS[args.preset], overrides, {"run.seed": seed}, sets=args.overrides
            ),
            run_path(out, arm, seed),
        )
        for seed in seeds
        for arm, overrides in arms.items()
    ]
    if not args.rescore:
        train_jobs(jobs, args)
    per_seed = {arm: [scores_of_run(run_path(out, arm, seed)) for seed in seeds] for arm in arms}
    reference = per_seed["untrained"][0]  # every arm settles the same probe scenes
    baselines = {
        name: mean_sd([scores_of_baseline(name, reference, seed) for seed in seeds])
        for name in BASELINES
    }
    results = {
        arm: {
            "levels": runs[0]["levels"],
            "status": [r["status"] for r in runs],
            **{m: mean_sd([r[m] for r in runs]) for m in METHODS},
        }
        for arm, runs in per_seed.items()
    }

    n_probe = len(reference["images"])
    print(f"\nislands, preset {args.preset}: runs in {out}; scores of the last snapshot of")
    print(f"{n_probe} probe scenes, mean ± sd over seeds {list(seeds)}")
    print("status: " + ", ".join(f"{a} {'/'.join(r['status'])}" for a, r in results.items()))
    print(
        "delta: the score minus the same score with each image's masks against the next "
        "image's islands (exactly 0 for a partition that ignores the image)"
    )
    for method in METHODS:
        how = (
            f"connected 4-neighbours, cosine > {THRESHOLD}"
            if method == "connected"
            else f"average-linkage clustering cut at mean cosine {THRESHOLD}"
        )
        print(f"\n{method}: {how}; best over the thresholds {list(GRID)}\n")
        print(table(results, baselines, method))
        beat = winners(results, baselines, method)
        print(
            "\nbeats every baseline (object FG-ARI and its delta, by more than the spreads): "
            + (", ".join(beat) if beat else "none")
        )
    print("\nislands larger at higher levels? (mean size never shrinks with level; size ratio)")
    rows = [
        [arm] + [grows_with_level(r[m]["size"][0]) for m in METHODS] for arm, r in results.items()
    ]
    print(markdown_table(["arm", *METHODS], rows))
    linear = {arm: mean_sd([r["linear"] for r in runs]) for arm, runs in per_seed.items()}
    K = results["untrained"]["levels"]
    print("\nwhat the levels know: ridge probe of each level's column-averaged embedding (class")
    print("of the largest object; fit on 3/4 of the held-out labelled scenes, scored on 1/4)")
    rows = [
        [arm, *(pm(r["levels"], k) for k in range(K)), pm(r["pixels"], None)]
        for arm, r in linear.items()
    ]
    print(markdown_table(["arm", *(f"L{k}" for k in range(K)), "raw pixels"], rows))
    summary = out / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "preset": args.preset,
                "seeds": list(seeds),
                "threshold": THRESHOLD,
                "grid": list(GRID),
                "arms": jsonable({a: {m: r[m] for m in METHODS} for a, r in results.items()}),
                "baselines": jsonable(baselines),
                "linear_probe": jsonable(linear),
            },
            indent=1,
        )
    )
    print(f"scores: {summary} (each score: [means per level], [sds per level])")
    for path in figures({arm: runs[0] for arm, runs in per_seed.items()}, out):
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
