"""Partitions that learn nothing: the baselines every islands result must beat (docs/design.md §10).

Each function returns int32 labels ``[B, H_g, W_g]``, one partition of the grid of columns per
image, numbered ``0..I-1`` in order of first appearance in row-major order, like one level of
:func:`bioglom.islands.extract_islands`; score them with :mod:`bioglom.scores` exactly as
learned islands. Column ``(r, c)`` sees the ``patch x patch`` pixels ``images[b, :, r*patch :
(r+1)*patch, c*patch : (c+1)*patch]``, as the patch front end does.

Two ignore the image (their mismatched-image control is exactly 0): :func:`fixed_blocks` and
:func:`kmeans_position`. Three use the pixels: :func:`foreground_components`,
:func:`colour_components` and :func:`kmeans_pixels`. On data where these are near perfect
(flat-coloured objects on black) a learned partition has little to show; a learned result is
a result only where it beats all of them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "BASELINES",
    "Baseline",
    "colour_components",
    "fixed_blocks",
    "foreground_components",
    "foreground_mask",
    "kmeans_pixels",
    "kmeans_position",
    "patch_vectors",
    "score_baselines",
]

#: pixel brightness (largest channel) above which a pixel is not background
FOREGROUND_THRESHOLD = 0.1
#: mean-colour distance below which neighbouring columns join (colour_components); on the
#: default scenes 0.3 gave the best part FG-ARI of 0.05, 0.1, 0.2, 0.3, 0.5, 0.8 (columns on
#: a boundary average two colours; a lower tolerance leaves them as islands of their own)
COLOUR_TOLERANCE = 0.3
#: clusters of the k-means baselines: up to 3 objects and the background in a default scene
KMEANS_K = 4
#: the keyword of kmeans2's random generator (``rng`` from SciPy 1.15, ``seed`` before)
_RNG_KEY = "rng" if "rng" in inspect.signature(kmeans2).parameters else "seed"


def _numpy(images) -> np.ndarray:
    """``[B, C, H, W]`` float64 numpy from numpy or torch."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {x.shape}")
    return x


def patch_vectors(images, patch: int) -> np.ndarray:
    """Each column's raw pixels: ``[B, H_g, W_g, C, patch, patch]`` from ``[B, C, H, W]``."""
    x = _numpy(images)
    B, C, H, W = x.shape
    if patch < 1 or H % patch or W % patch:
        raise ValueError(f"patch {patch} does not divide the image size {H}x{W}")
    hg, wg = H // patch, W // patch
    return x.reshape(B, C, hg, patch, wg, patch).transpose(0, 2, 4, 1, 3, 5)


def _first_appearance(lab: np.ndarray) -> np.ndarray:
    """Renumber one image's labels ``0..I-1`` in order of first appearance (row-major)."""
    _, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse.reshape(lab.shape)].astype(np.int32)


def fixed_blocks(grid: tuple[int, int], block: int | tuple[int, int], B: int) -> np.ndarray:
    """The grid cut into ``block x block`` near-equal blocks (``block = 2``: four quarters),
    the same in every image: row ``r`` is in block row ``r * block // H_g``.

    ``block`` may be ``(rows, cols)``; ``1`` is one island, ``grid`` itself all singletons.
    """
    hg, wg = grid
    sr, sc = (block, block) if np.isscalar(block) else block
    if not (1 <= sr <= hg and 1 <= sc <= wg):
        raise ValueError(f"block {block} must be between 1 and the grid {grid}")
    rows, cols = np.arange(hg)[:, None], np.arange(wg)[None, :]
    blocks = _first_appearance((rows * sr // hg) * sc + cols * sc // wg)
    return np.ascontiguousarray(np.broadcast_to(blocks, (B, hg, wg)))


def foreground_mask(images, patch: int, threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """bool ``[B, H_g, W_g]``: columns more than half of whose pixels are bright (largest
    channel above ``threshold``). The strict majority matches :func:`bioglom.scores.column_labels`,
    whose ties go to background."""
    bright = patch_vectors(images, patch).max(axis=3) > threshold  # [B, hg, wg, p, p]
    return bright.mean(axis=(-2, -1)) > 0.5


def foreground_components(
    images, patch: int, threshold: float = FOREGROUND_THRESHOLD
) -> np.ndarray:
    """4-connected components of the foreground columns (:func:`foreground_mask`); all
    background columns together are one more island.

    On flat objects on black this is the object segmentation wherever objects do not touch.
    """
    fg = foreground_mask(images, patch, threshold)
    out = np.empty(fg.shape, dtype=np.int32)
    for b in range(fg.shape[0]):
        lab, _ = ndimage.label(fg[b])  # 4-connectivity; background 0
        out[b] = _first_appearance(lab)
    return out


def colour_components(images, patch: int, tol: float = COLOUR_TOLERANCE) -> np.ndarray:
    """4-connected components of the graph joining 4-neighbouring columns whose mean patch
    colours (``[C]``, averaged over the patch) are closer than ``tol`` (Euclidean distance).

    Separates touching regions of different colour (parts, and objects that touch); a region of
    slowly changing colour can chain into one island, as in any single-linkage segmentation.
    """
    colour = patch_vectors(images, patch).mean(axis=(-2, -1))  # [B, hg, wg, C]
    B, hg, wg, _ = colour.shape
    right = np.linalg.norm(colour[:, :, 1:] - colour[:, :, :-1], axis=-1) < tol
    down = np.linalg.norm(colour[:, 1:] - colour[:, :-1], axis=-1) < tol
    ids = np.arange(hg * wg).reshape(hg, wg)
    out = np.empty((B, hg, wg), dtype=np.int32)
    for b in range(B):
        src = np.concatenate([ids[:, :-1][right[b]], ids[:-1, :][down[b]]])
        dst = np.concatenate([ids[:, 1:][right[b]], ids[1:, :][down[b]]])
        graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(hg * wg, hg * wg))
        _, lab = connected_components(graph, directed=False)
        out[b] = _first_appearance(lab.reshape(hg, wg))
    return out


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ then Lloyd's iterations (scipy), seeded; empty clusters are allowed."""
    k = min(k, len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty": fine here
        rng = {_RNG_KEY: np.random.default_rng(seed)}
        _, lab = kmeans2(x, k, minit="++", **rng)
    return lab


def kmeans_pixels(images, patch: int, k: int = KMEANS_K, seed: int = 0) -> np.ndarray:
    """k-means of each image's raw patch vectors (``C * patch * patch`` pixels per column),
    ``k`` clusters, k-means++ seeded with ``seed`` (the same for every image).

    Islands need not be connected. The default ``k = 4`` is the background plus the most
    objects in a default scene (``data.max_objects = 3``); an image with fewer distinct patches
    gets fewer islands.
    """
    vec = patch_vectors(images, patch)
    B, hg, wg = vec.shape[:3]
    vec = vec.reshape(B, hg * wg, -1)
    out = np.empty((B, hg, wg), dtype=np.int32)
    for b in range(B):
        out[b] = _first_appearance(_kmeans(vec[b], k, seed).reshape(hg, wg))
    return out


def kmeans_position(grid: tuple[int, int], k: int = KMEANS_K, B: int = 1, seed: int = 0):
    """k-means of the columns' grid coordinates ``(row, col)`` alone, ``k`` clusters,
    k-means++ seeded with ``seed``: compact regions of about equal size, the same in every
    image (it ignores the image; its mismatched-image control is exactly 0)."""
    hg, wg = grid
    rows, cols = np.divmod(np.arange(hg * wg), wg)
    xy = np.stack([rows, cols], axis=1).astype(np.float64)
    lab = _first_appearance(_kmeans(xy, k, seed).reshape(hg, wg))
    return np.ascontiguousarray(np.broadcast_to(lab, (B, hg, wg)))


def _grid_of(images, patch: int) -> tuple[int, int]:
    H, W = _numpy(images).shape[-2:]
    return H // patch, W // patch


@dataclass(frozen=True)
class Baseline:
    """A partition that learns nothing, with its one parameter: the parameter's name, its
    default, and a small fixed grid of values (for "best over the grid" comparisons, docs/design.md
    §10). ``baseline(images, patch, seed=0, value=None)`` gives the labels
    ``[B, H_g, W_g]`` at ``value`` (default: ``default``)."""

    labels: Callable[[Any, int, int, Any], np.ndarray]  # (images, patch, seed, value)
    parameter: str
    default: Any
    grid: tuple
    #: whether a value of the grid applies to a column grid ``(H_g, W_g)`` (e.g. no more blocks
    #: per side than columns)
    fits: Callable[[tuple[int, int], Any], bool] = lambda grid, value: True

    def __call__(self, images, patch: int, seed: int = 0, value: Any = None) -> np.ndarray:
        return self.labels(images, patch, seed, self.default if value is None else value)

    def values(self, images, patch: int) -> list:
        """The values of :attr:`grid` that apply to these images' column grid."""
        grid = _grid_of(images, patch)
        return [v for v in self.grid if self.fits(grid, v)]


#: every baseline by name; the one registry the CLI summary and experiments/islands.py use
BASELINES: dict[str, Baseline] = {
    "fixed_blocks": Baseline(
        lambda x, p, s, v: fixed_blocks(_grid_of(x, p), v, len(x)),
        "blocks/side",
        2,
        (2, 4, 8),
        fits=lambda grid, v: v <= min(grid),  # 8 blocks per side need 8 columns per side
    ),
    "kmeans_position": Baseline(
        lambda x, p, s, v: kmeans_position(_grid_of(x, p), v, len(x), s), "k", KMEANS_K, (2, 4, 8)
    ),
    "foreground_components": Baseline(
        lambda x, p, s, v: foreground_components(x, p, v),
        "threshold",
        FOREGROUND_THRESHOLD,
        (0.05, 0.1, 0.3),
    ),
    "colour_components": Baseline(
        lambda x, p, s, v: colour_components(x, p, v), "tol", COLOUR_TOLERANCE, (0.1, 0.2, 0.3, 0.5)
    ),
    "kmeans_pixels": Baseline(
        lambda x, p, s, v: kmeans_pixels(x, p, v, s), "k", KMEANS_K, (2, 4, 6, 8)
    ),
}


def score_baselines(
    images, masks: dict[str, np.ndarray], patch: int, names: tuple[str, ...] | None = None
) -> dict[str, dict[str, float]]:
    """Every baseline's partition of ``images`` at its default parameter, scored as one level
    against the ground truth (``masks``: ``{"obj": [B, H, W], "part": ...}`` pixel masks,
    taken to columns by majority): ``{name: {score: value}}`` with the scores of
    :func:`bioglom.scores.score_islands` (``fgari_obj``, ``dfgari_obj`` -- its
    mismatched-image control --, ``count``, ...), the bar a learned partition must clear
    (docs/design.md §10)."""
    from .scores import column_labels, score_islands

    grid = _grid_of(images, patch)
    truth = {k: column_labels(m, grid) for k, m in masks.items() if m is not None}
    return {
        name: {
            k: float(v[0]) if len(v) else float("nan")  # scores between levels: none here
            for k, v in score_islands(BASELINES[name](images, patch)[None], truth).items()
        }
        for name in (names or tuple(BASELINES))
    }
