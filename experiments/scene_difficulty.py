"""Do the pixel baselines fail on the harder scenes? Every baseline on each scene option.

Results: docs/experiments/scene_difficulty.md

    python experiments/scene_difficulty.py [--images N] [--seeds 0,1,2]

Issue 14 asks for data on which partitions that learn nothing (``bioglom.baselines``) score
clearly worse than on the default part-whole scenes, where connected components of non-black
columns reach object FG-ARI 0.9 (docs/design.md §9). This generates ``IMAGES`` held-out probe
images (``bioglom.splits.load_data``'s probe split, as a run would record them) for the
default scenes, each harder option of the scene generator alone, all of them together
(``experiments/configs/hard_scenes.toml``) and Tetrominoes
(``experiments/configs/tetrominoes.toml``), for every generator seed in ``SEEDS``; partitions
them with every baseline in ``BASELINES`` on the column grid a model would use (the config's
``frontend.patch_size``: 2 on 32x32 scenes, 16x16 columns; 5 on 35x35 Tetrominoes, 7x7
columns); and scores them as learned islands are scored (``bioglom.scores.score_islands``):
object and part FG-ARI against the majority label of each column, each with its
mismatched-image control delta, at the baseline's default parameter and at the best over its
grid (each score maximised on its own; a grid value larger than the column grid, 8 blocks per
side on 7x7 columns, is left out). Beside them, the part FG-ARI of every column its own
island: near 1 where a part is about one column (a Tetrominoes cell at 7x7 columns), where a
part score says nothing. Prints two Markdown tables (mean ± sample sd over the
seeds): the strongest baseline per setting, and every baseline in every setting.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from bioglom.baselines import BASELINES
from bioglom.config import load_config
from bioglom.experiment import markdown_table, seed_list
from bioglom.probe import TRUTH_MASKS
from bioglom.scores import column_labels, score_islands
from bioglom.splits import load_data

# ---- configuration ------------------------------------------------------------------------
IMAGES = 64  # held-out probe images per setting and seed
SEEDS = (0, 1, 2)  # data.seed of the generator; docs/design.md §10: 3 at least
CONFIGS = Path(__file__).resolve().parent / "configs"
SETTINGS = {  # name -> (config file or None for the defaults, overrides)
    "default scenes": (None, {}),
    "touching": (None, {"data.touching": True}),
    "palette 3": (None, {"data.palette": 3}),
    "noise background": (None, {"data.background": "noise"}),
    "texture background": (None, {"data.background": "texture"}),
    "4-6 objects": (None, {"data.min_objects": 4, "data.max_objects": 6}),
    "all (hard_scenes.toml)": (CONFIGS / "hard_scenes.toml", {}),
    "Tetrominoes (tetrominoes.toml)": (CONFIGS / "tetrominoes.toml", {}),
}
SCORES = ("fgari_obj", "dfgari_obj", "fgari_part", "dfgari_part")


def probe_images(path: Path | None, overrides: dict, seed: int, images: int):
    """The held-out probe images of the setting's config with ``data.seed = seed``, and the
    patch side of its columns."""
    cfg = load_config(path, overrides)
    cfg = load_config(
        path,
        {
            **overrides,
            "data.seed": seed,
            "data.n_probe": images,
            "data.n_train": cfg.train.batch_size,  # the fewest the config accepts
            "data.n_linear": 0,
        },
    )
    return load_data(cfg).probe, cfg.frontend.patch_size


def score_setting(path: Path | None, overrides: dict, seed: int, images: int) -> dict:
    """name -> scores of every baseline on one seed's probe images: each of ``SCORES`` at the
    default parameter and ``best_<score>`` over the baseline's grid; plus the images' counts
    of objects and parts and the part FG-ARI of single-column islands (key ``"counts"``)."""
    probe, patch = probe_images(path, overrides, seed, images)
    h, w = probe.size
    grid = (h // patch, w // patch)
    truth = {name: column_labels(getattr(probe, key), grid) for name, key in TRUTH_MASKS.items()}
    singletons = np.broadcast_to(np.arange(grid[0] * grid[1]).reshape(grid), (len(probe), *grid))
    out = {
        "counts": {
            "objects": probe.object_masks.reshape(len(probe), -1).max(1).mean(),
            "parts": probe.part_masks.reshape(len(probe), -1).max(1).mean(),
            "grid": grid,
            "singleton_part": float(score_islands(singletons[None], truth)["fgari_part"][0]),
        }
    }
    for name, baseline in BASELINES.items():
        at_default = score_islands(baseline(probe.images, patch, seed)[None], truth)
        on_grid = [
            score_islands(baseline(probe.images, patch, seed, v)[None], truth)
            for v in baseline.values(probe.images, patch)
        ]
        s = {key: float(at_default[key][0]) for key in SCORES}
        for key in SCORES:
            s[f"best_{key}"] = float(np.nanmax([g[key][0] for g in on_grid]))
        out[name] = s
    return out


def pm(values: list[float], signed: bool = False) -> str:
    """``mean ± sd`` (sample sd; none for one value), '-' where undefined."""
    a = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(a)
        s = np.nanstd(a, ddof=1) if len(a) > 1 else np.nan
    if not np.isfinite(m):
        return "-"
    text = f"{m:+.3f}" if signed else f"{m:.3f}"
    return text if not np.isfinite(s) else f"{text} ± {s:.3f}"


def strongest(per_seed: list[dict], key: str) -> tuple[str, list[float]]:
    """The baseline with the highest mean ``best_<key>`` over the seeds, and its values."""
    means = {name: np.mean([r[name][f"best_{key}"] for r in per_seed]) for name in BASELINES}
    name = max(means, key=means.get)
    return name, [r[name][f"best_{key}"] for r in per_seed]


def summary_table(results: dict[str, list[dict]]) -> str:
    rows = []
    for setting, per_seed in results.items():
        counts = per_seed[0]["counts"]
        obj_name, obj = strongest(per_seed, "fgari_obj")
        part_name, part = strongest(per_seed, "fgari_part")
        dobj_name, dobj = strongest(per_seed, "dfgari_obj")
        rows.append(
            [
                setting,
                "x".join(map(str, counts["grid"])),
                pm([r["counts"]["objects"] for r in per_seed]),
                pm([r["counts"]["parts"] for r in per_seed]),
                f"{pm(obj)} ({obj_name})",
                f"{pm(dobj, True)} ({dobj_name})",
                f"{pm(part)} ({part_name})",
                pm([r["counts"]["singleton_part"] for r in per_seed]),
            ]
        )
    headers = [
        "setting",
        "columns",
        "objects/image",
        "parts/image",
        "best object FG-ARI of any baseline",
        "best object delta of any baseline",
        "best part FG-ARI of any baseline",
        "part FG-ARI of single columns",
    ]
    return markdown_table(headers, rows)


def full_table(results: dict[str, list[dict]]) -> str:
    rows = []
    for setting, per_seed in results.items():
        for name, baseline in BASELINES.items():
            cell = {key: [r[name][key] for r in per_seed] for key in per_seed[0][name]}
            rows.append(
                [
                    setting,
                    f"{name} ({baseline.parameter} = {baseline.default})",
                    pm(cell["dfgari_obj"], True),
                    pm(cell["dfgari_part"], True),
                    pm(cell["fgari_obj"]),
                    pm(cell["fgari_part"]),
                    pm(cell["best_fgari_obj"]),
                    pm(cell["best_dfgari_obj"], True),
                    pm(cell["best_fgari_part"]),
                    pm(cell["best_dfgari_part"], True),
                ]
            )
    headers = [
        "setting",
        "baseline (default)",
        "object FG-ARI delta",
        "part FG-ARI delta",
        "object FG-ARI",
        "part FG-ARI",
        "best object FG-ARI over the grid",
        "best object delta over the grid",
        "best part FG-ARI over the grid",
        "best part delta over the grid",
    ]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=IMAGES, help="probe images per setting")
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=list(SEEDS),
        metavar="S,S,...",
        help=f"data.seed of the generator, comma-separated (default {','.join(map(str, SEEDS))})",
    )
    args = parser.parse_args(argv)
    results = {
        setting: [score_setting(path, over, s, args.images) for s in args.seeds]
        for setting, (path, over) in SETTINGS.items()
    }
    print(f"{args.images} probe images per setting, data.seed in {args.seeds}; mean ± sd\n")
    print(summary_table(results), end="\n\n")
    print(full_table(results))
    return results


if __name__ == "__main__":
    main()
