"""Islands and parse trees under each learning rule, scored against the scenes' masks (§1, §6).

    python experiments/islands.py --preset quick|full [--out DIR]

GLOM's claim is that islands of nearly identical embeddings are the parse tree: parts at a low
level, objects at a higher one, each island inside one island of the level above, and islands
larger at higher levels (paper §1, Figure 2). This trains the default model (unshared columns,
homeostatic state normalisation) on the embedded part-whole scenes with each learning rule --
the end-to-end baseline, co-distillation, the temporal-derivative rule -- next to the untrained
model and to co-distillation with batch-statistics normalisation (DESIGN section 9's probe),
then settles the 32 held-out probe scenes and scores the islands of the final snapshot, per
level:

* island count per image and mean island size (columns), and whether size grows with level;
* nesting: share of each island inside one island of the level above;
* FG-ARI against the object masks and against the part masks (column labels by majority over
  each patch), and Hungarian-matched mean IoU against the objects;
* ARI across images: how alike the islands of different images are (1: the same partition in
  every image, i.e. islands that encode location and ignore the image).

Two rows need no training and calibrate the scores: ``blocks_2x2`` and ``blocks_4x4`` split
the grid into fixed blocks, the same in every image.

Islands are extracted two ways (DESIGN section 6): connected 4-neighbours with cosine above
``THRESHOLD``, and average-linkage agglomerative clustering cut at the same cosine; and since a
score can hinge on the threshold, the best object FG-ARI over ``GRID`` is reported beside it
(with the grid). Writes one HDF5 run per arm, ``islands.png`` (island maps of one probe scene
per arm) and ``parse_trees.png``, and prints the tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bioglom import load_config  # noqa: E402
from bioglom.islands import extract_islands, parse_tree  # noqa: E402
from bioglom.report import experiment_parser, markdown_table, run_experiment  # noqa: E402
from bioglom.runs import open_run  # noqa: E402
from bioglom.scores import column_labels, score_islands  # noqa: E402
from bioglom.train import TRUTH_MASKS, run_arm  # noqa: E402

# ---- configuration ------------------------------------------------------------------------
THRESHOLD = 0.8  # cosine above which columns join an island (both methods)
GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # thresholds of the "best over the grid" score
METHODS = ("connected", "agglomerative")
COMMON = {
    "data.source": "scenes",
    "run.seed": 0,
    "run.island_threshold": THRESHOLD,
}
PRESETS = {
    # well under a minute per arm on 2 CPU cores, used by the tests
    "quick": {
        "data.image_size": 16,  # 8x8 columns
        "data.n_train": 256,
        "data.n_probe": 8,
        "data.n_linear": 0,
        "model.levels": 3,
        "model.dim": 16,
        "model.hidden": 32,
        "frontend.hidden": 32,
        "settle.steps": 4,
        "train.batch_size": 8,
        "train.updates": 30,
        "run.record_every": 10,
        "run.snapshot_every": 30,
    },
    # the README's numbers: the default model (16x16 columns, 4 levels, d = 32), 600 updates
    "full": {
        "train.updates": 600,
        "run.record_every": 50,
        "run.snapshot_every": 300,
    },
}
ARMS = {
    "untrained": {"train.updates": 0},
    "end_to_end": {"train.rule": "end_to_end"},
    "codistill": {"train.rule": "codistill"},
    "temporal": {"train.rule": "temporal"},
    # DESIGN section 9's probe: each unit standardised over columns and images (batch statistics)
    "codistill_batch": {"train.rule": "codistill", "model.state_norm": "batch"},
}


def scores_of_run(path: Path) -> dict:
    """Scores of the last snapshot of a run, for each method at THRESHOLD and over GRID."""
    with open_run(path) as run:
        cfg = run.config
        snap = run.snapshot(int(run.snapshot_steps[-1]))
        probe = run.probe
        status = run.status
        grid = tuple(json.loads(run.attrs["grid"]))
    truth = {name: column_labels(probe[key], grid) for name, key in TRUTH_MASKS.items()}
    state = snap["state"].astype(np.float32)
    out = {"status": status, "levels": cfg.model.levels, "grid": grid, "truth": truth}
    for method in METHODS:
        labels = extract_islands(state, grid, method, THRESHOLD)
        out[method] = score_islands(labels, truth)
        out[f"{method}_labels"] = labels
        best = np.full(cfg.model.levels, -np.inf)
        for t in GRID:
            s = score_islands(extract_islands(state, grid, method, t), {"obj": truth["obj"]})
            best = np.fmax(best, s["fgari_obj"])
        out[f"{method}_best_fgari_obj"] = best
    out["image"] = probe["images"][0]
    return out


def fixed_blocks(reference: dict, splits: tuple[int, ...]) -> dict:
    """Image-independent baselines: the grid cut into ``s x s`` blocks at every level and in
    every image, scored against the same truth as ``reference``'s run."""
    K, truth = reference["levels"], reference["truth"]
    hg, wg = reference["grid"]
    B = truth["obj"].shape[0]
    rows, cols = np.arange(hg)[:, None], np.arange(wg)[None, :]
    out = {}
    for s in splits:
        blocks = (rows * s // hg) * s + cols * s // wg
        labels = np.broadcast_to(blocks, (K, B, hg, wg))
        r = {"status": "no training", "levels": K, "grid": (hg, wg), "truth": truth}
        for method in METHODS:
            r[method] = score_islands(labels, truth)
            r[f"{method}_best_fgari_obj"] = r[method]["fgari_obj"]
            r[f"{method}_labels"] = labels
        r["image"] = reference["image"]
        out[f"blocks_{s}x{s}"] = r
    return out


def grows_with_level(sizes: np.ndarray) -> str:
    """Whether the mean island size never shrinks from one level to the next (else where it
    shrinks), and how many times larger the top level's islands are than level 0's."""
    drops = [f"L{k}>L{k + 1}" for k in range(len(sizes) - 1) if sizes[k + 1] < sizes[k]]
    monotone = "yes" if not drops else "no (" + ", ".join(drops) + ")"
    return f"{monotone}; top/bottom {sizes[-1] / sizes[0]:.2f}x"


def table(results: dict, method: str) -> str:
    headers = [
        "arm",
        "level",
        "islands/image",
        "mean size",
        "nesting",
        "object FG-ARI",
        f"best object FG-ARI over {list(GRID)}",
        "object mIoU",
        "part FG-ARI",
        "ARI across images",
    ]
    rows = []
    for arm, r in results.items():
        s = r[method]
        for k in range(r["levels"]):
            rows.append(
                [
                    arm if k == 0 else "",
                    k,
                    float(s["count"][k]),
                    float(s["size"][k]),
                    float(s["nesting"][k]) if k < r["levels"] - 1 else "-",
                    float(s["fgari_obj"][k]),
                    float(r[f"{method}_best_fgari_obj"][k]),
                    float(s["miou_obj"][k]),
                    float(s["fgari_part"][k]),
                    float(s["ari_across"][k]),
                ]
            )
    return markdown_table(headers, rows)


def figures(results: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from bioglom.plots import plot_island_maps, plot_parse_tree
    except ImportError:
        return []
    K = next(iter(results.values()))["levels"]
    arms = list(results)
    fig, ax = plt.subplots(len(arms), K + 1, figsize=(2.3 * (K + 1), 2.4 * len(arms)))
    ax = np.atleast_2d(ax)
    for i, arm in enumerate(arms):
        r = results[arm]
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
        tree = parse_tree(results[arm]["agglomerative_labels"], image=0)
        plot_parse_tree(tree, ax[0, i], min_size=2)
        ax[0, i].set_title(f"{arm} (agglomerative, islands of 2+ columns)", fontsize=9)
    fig.tight_layout()
    trees = out / "parse_trees.png"
    fig.savefig(trees, dpi=80)
    plt.close("all")
    return [maps, trees]


def main() -> int:
    ap = experiment_parser(__doc__, PRESETS, "runs/islands")
    ap.add_argument(
        "--rescore", action="store_true", help="score the runs already in DIR, do not train"
    )
    args = ap.parse_args()

    out = Path(args.out) / args.preset
    results = {}
    for arm, overrides in ARMS.items():
        config = load_config(overrides={**COMMON, **PRESETS[args.preset], **overrides})
        path = out / f"{arm}.h5"
        if not args.rescore:
            run_arm(config, path, resume=args.resume, progress=not args.quiet)
        results[arm] = scores_of_run(path)
    results.update(fixed_blocks(results["untrained"], (2, 4)))

    print(f"\nislands, preset {args.preset}: runs in {out}; scores of the last snapshot")
    print("status: " + ", ".join(f"{a} {r['status']}" for a, r in results.items()))
    for method in METHODS:
        how = (
            f"connected 4-neighbours, cosine > {THRESHOLD}"
            if method == "connected"
            else f"average-linkage clustering cut at mean cosine {THRESHOLD}"
        )
        print(f"\n{method}: {how}\n")
        print(table(results, method))
    print("\nislands larger at higher levels? (mean size never shrinks with level; size ratio)")
    trained = {arm: r for arm, r in results.items() if arm in ARMS}
    rows = [[arm] + [grows_with_level(r[m]["size"]) for m in METHODS] for arm, r in trained.items()]
    print(markdown_table(["arm", *METHODS], rows))
    for path in figures(trained, out):
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_experiment(main))
