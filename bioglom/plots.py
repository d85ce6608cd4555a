"""Pictures of a run: learning curves with phases shaded, island maps, parse trees, and the
embedding vectors of a row of columns drawn as 2-D arrows in the manner of the paper's Figure 2.

Every helper takes plain numpy arrays (what :mod:`bioglom.runs` returns) or a
:class:`~bioglom.runs.Run`, draws on a given matplotlib ``Axes`` (or makes a figure) and
returns what it drew on. matplotlib is an optional extra: ``pip install -e ".[plot]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "PHASE_COLOURS",
    "phase_spans",
    "shade_phases",
    "plot_curves",
    "plot_band",
    "island_colours",
    "plot_island_maps",
    "plot_parse_tree",
    "plot_embeddings_2d",
]

#: background colour of each schedule phase in curve plots (day is left blank)
PHASE_COLOURS = {"night": "0.85", "interleaved": "#dbe9f6"}


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'bioglom.plots needs matplotlib: pip install -e ".[plot]" (or pip install matplotlib)'
        ) from err
    return plt


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def phase_spans(kinds: Sequence[str]) -> list[tuple[int, int, str]]:
    """Runs of one phase kind as ``(first update - 1, last update, kind)``.

    ``kinds[u - 1]`` is the phase of update ``u`` (as :func:`bioglom.train.schedule_of` gives
    it); a span ``(a, b, kind)`` covers updates ``a + 1 .. b``, i.e. the x-interval ``[a, b]``.
    """
    spans: list[tuple[int, int, str]] = []
    for u, kind in enumerate(kinds, start=1):
        if spans and spans[-1][2] == kind and spans[-1][1] == u - 1:
            spans[-1] = (spans[-1][0], u, kind)
        else:
            spans.append((u - 1, u, kind))
    return spans


def shade_phases(ax: Any, kinds: Sequence[str], colours: dict[str, str] | None = None) -> Any:
    """Shade the updates of every non-day phase (``PHASE_COLOURS``) behind the curves."""
    colours = PHASE_COLOURS if colours is None else colours
    for start, end, kind in phase_spans(kinds):
        if kind in colours:
            ax.axvspan(start, end, color=colours[kind], lw=0, zorder=0)
    return ax


def plot_curves(
    run: Any,
    names: Sequence[str],
    ax: Any = None,
    *,
    log: bool = False,
    labels: Sequence[str] | None = None,
) -> Any:
    """Plot metrics of a run against updates, its night / interleaved phases shaded.

    Parameters
    ----------
    run : a :class:`~bioglom.runs.Run` (its config gives the schedule), or a dict of metric
        arrays with ``"step"`` (then nothing is shaded)
    names : metric names, e.g. ``["probe_fgari_obj_L2", "probe_fgari_obj_L3"]``; missing
        ones are skipped
    log : log-scale y axis
    labels : legend labels, one per name (default: the names)
    """
    ax = _axes(ax, (5, 3))
    metrics = run if isinstance(run, dict) else run.metrics
    steps = metrics["step"]
    labels = list(names) if labels is None else list(labels)
    for name, label in zip(names, labels, strict=True):
        if name in metrics:
            ax.plot(steps, metrics[name], label=label)
    if not isinstance(run, dict):
        from .train import schedule_of

        shade_phases(ax, schedule_of(run.config))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("update")
    if any(n in metrics for n in names):
        ax.legend(fontsize=8)
    return ax


def plot_band(
    ax: Any,
    steps: np.ndarray | Sequence[np.ndarray],
    values: Sequence[np.ndarray],
    *,
    label: str | None = None,
    color: Any = None,
    alpha: float = 0.2,
) -> Any:
    """One curve per arm over its seeds: the mean over the seeds as a line, shaded from the
    lowest to the highest seed at each record (NaNs left out).

    ``steps`` is the records' updates, one array or one per seed; ``values`` one array per
    seed. Seeds with fewer records (a run that diverged early) are padded with NaN up to the
    longest, whose updates are the x axis. Returns the line."""
    if isinstance(steps, np.ndarray) and steps.ndim == 1:
        steps_list = [steps] * len(values)
    else:
        steps_list = [np.asarray(s) for s in steps]
    x = max(steps_list, key=len)
    y = np.full((len(values), len(x)), np.nan)
    for i, v in enumerate(values):
        v = np.asarray(v, dtype=float)[: len(x)]
        y[i, : len(v)] = v
    finite = np.isfinite(y).any(0)
    x, y = x[finite], y[:, finite]
    (line,) = ax.plot(x, np.nanmean(y, 0), label=label, color=color)
    if len(values) > 1:
        ax.fill_between(x, np.nanmin(y, 0), np.nanmax(y, 0), color=line.get_color(),
                        alpha=alpha, lw=0)  # fmt: skip
    return line


def island_colours(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 3]`` distinct-looking RGB colours (tab20, then random) for island labels."""
    plt = _pyplot()
    base = np.asarray(plt.get_cmap("tab20").colors)
    if n <= len(base):
        return base[:n]
    extra = np.random.default_rng(seed).uniform(0.1, 0.95, (n - len(base), 3))
    return np.concatenate([base, extra])


def _image_hwc(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.clip(img, 0.0, 1.0)


def plot_island_maps(
    image: np.ndarray,
    labels: np.ndarray,
    axes: Sequence[Any] | None = None,
    *,
    alpha: float = 0.55,
    titles: Sequence[str] | None = None,
    min_size: int = 2,
) -> Sequence[Any]:
    """One panel per level: every island its own colour, laid over the image; columns in
    islands smaller than ``min_size`` (singletons, by default) are left uncoloured.

    Parameters
    ----------
    image : ``[C, H, W]`` (or ``[H, W, C]``, ``[H, W]``) in [0, 1]
    labels : ``[K, H_g, W_g]`` island labels of that image
    axes : ``K`` axes (default: a new row of them)
    alpha : opacity of the island colours
    """
    lab = np.asarray(labels)
    K, hg, wg = lab.shape
    if axes is None:
        _, axes = _pyplot().subplots(1, K, figsize=(2.4 * K, 2.6), squeeze=False)
        axes = axes[0]
    img = _image_hwc(image)
    h, w = img.shape[:2]
    for k, a in enumerate(axes):
        n = int(lab[k].max()) + 1
        sizes = np.bincount(lab[k].reshape(-1), minlength=n)
        shown = np.cumsum(sizes >= min_size) - 1  # colour index among the islands drawn
        colours = island_colours(max(int(shown[-1]) + 1, 1))[np.maximum(shown, 0)]
        over = colours[lab[k]]  # [hg, wg, 3]
        weight = alpha * (sizes[lab[k]] >= min_size)[..., None]  # [hg, wg, 1]
        up = lambda x: np.repeat(np.repeat(x, h // hg, axis=0), w // wg, axis=1)  # noqa: E731
        over, weight = up(over), up(weight)
        base = img[: over.shape[0], : over.shape[1]]
        a.imshow((1 - weight) * base + weight * over)
        a.set_title(titles[k] if titles else f"level {k}: {n} island{'s' * (n != 1)}", fontsize=9)
        a.axis("off")
    return axes


def plot_parse_tree(tree: dict, ax: Any = None, *, min_size: int = 1) -> Any:
    """Draw a parse tree from :func:`bioglom.islands.parse_tree`: one row per level (level 0 at
    the bottom), each island a disc whose area grows with its size, placed at its centroid's
    grid column; a line joins each island to its parent, darker the more of it lies inside.

    ``min_size``: leave out islands of fewer columns (singletons crowd untrained levels).
    """
    ax = _axes(ax, (6, 3.5))
    nodes = {n["id"]: n for n in tree["nodes"] if n["size"] >= min_size}
    n_cols = tree["grid"][1] * tree["grid"][0]
    for node in nodes.values():
        parent = nodes.get(node["parent"]) if node["parent"] else None
        if parent is not None:
            ax.plot(
                [node["centroid"][1], parent["centroid"][1]],
                [node["level"], parent["level"]],
                color=str(1.0 - 0.8 * node["inside"]),
                lw=1.0,
                zorder=1,
            )
    for level in range(tree["levels"]):
        row = [n for n in nodes.values() if n["level"] == level]
        if not row:
            continue
        colours = island_colours(max(n["island"] for n in row) + 1)
        ax.scatter(
            [n["centroid"][1] for n in row],
            [level] * len(row),
            s=[20 + 600 * n["size"] / n_cols for n in row],
            c=[colours[n["island"]] for n in row],
            edgecolors="k",
            linewidths=0.5,
            zorder=2,
        )
    ax.set_yticks(range(tree["levels"]))
    ax.set_yticklabels([f"level {k}" for k in range(tree["levels"])])
    ax.set_xlabel("grid column of the island's centroid")
    ax.set_xlim(-0.5, tree["grid"][1] - 0.5)
    ax.set_ylim(-0.6, tree["levels"] - 0.4)
    return ax


def plot_embeddings_2d(
    state: np.ndarray,
    grid: tuple[int, int],
    row: int | None = None,
    labels: np.ndarray | None = None,
    ax: Any = None,
    *,
    columns: int = 12,
) -> Any:
    """The embeddings of a row of nearby columns as 2-D arrows, one row of arrows per level, in
    the manner of the paper's Figure 2 (§1): an island shows as arrows pointing the same way.

    Each level's ``d``-dimensional embeddings (all columns of the image) are projected on
    their first two principal axes, and each arrow shows the direction of its projection at a
    fixed length (agreement is about direction); the projection is per level, so compare
    arrows within a row of the plot, not across rows.

    Parameters
    ----------
    state : ``[K, N, d]`` embeddings of one image (``state[:, :, b]`` of a snapshot)
    grid : ``(H_g, W_g)``
    row : grid row whose columns are drawn (default: the middle row)
    labels : optional ``[K, H_g, W_g]`` islands: arrows take their island's colour
    columns : how many neighbouring columns of that row, centred
    """
    s = np.asarray(state, dtype=np.float64)
    K, N, _ = s.shape
    hg, wg = grid
    if hg * wg != N:
        raise ValueError(f"grid {grid} has {hg * wg} columns, the state has N = {N}")
    row = hg // 2 if row is None else row
    if not 0 <= row < hg:
        raise ValueError(f"row {row} out of range for a grid of {hg} rows")
    n = min(columns, wg)
    first = (wg - n) // 2
    cols = np.arange(first, first + n)
    ax = _axes(ax, (0.6 * n + 1.5, 0.9 * K + 0.8))
    for k in range(K):
        x = s[k] - s[k].mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x[row * wg + cols] @ vt[:2].T  # [n, 2]
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        xy = 0.4 * xy / np.maximum(np.linalg.norm(xy, axis=1, keepdims=True), 1e-12)
        if labels is not None:
            lab = np.asarray(labels)[k, row, cols]
            colour = island_colours(int(np.asarray(labels)[k].max()) + 1)[lab]
        else:
            colour = np.zeros((n, 3))
        ax.quiver(
            np.arange(n),
            np.full(n, k),
            xy[:, 0],
            xy[:, 1],
            color=colour,
            angles="xy",
            scale_units="xy",
            scale=1.0,
            width=0.006,
        )
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(c) for c in cols], fontsize=7)
    ax.set_yticks(range(K))
    ax.set_yticklabels([f"level {k}" for k in range(K)])
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(-0.6, K - 0.4)
    ax.set_xlabel(f"grid column (row {row})")
    ax.set_aspect("equal")
    return ax
