"""Islands of nearly identical embeddings (§1, §6): extraction by thresholded similarity.

An island at level ``l`` is a connected set of columns whose level-``l`` embeddings agree:
two 4-neighbours on the grid are joined when the cosine of their embeddings exceeds a
threshold, and islands are the connected components of that graph (docs/design.md §6). Report
the threshold with every score.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform
from torch import Tensor

__all__ = [
    "METHODS",
    "agglomerative_islands",
    "connected_islands",
    "extract_islands",
    "island_counts",
    "island_sizes",
    "parse_tree",
]


def connected_islands(
    state: Tensor | np.ndarray, grid: tuple[int, int], threshold: float = 0.8
) -> np.ndarray:
    """Label the islands of every level and image.

    Parameters
    ----------
    state : ``[K, N, B, d]`` embeddings, column ``n`` at grid row ``n // W_g``, column ``n % W_g``
    grid : ``(H_g, W_g)``
    threshold : 4-neighbours with cosine similarity above it join the same island

    Returns
    -------
    int32 array ``[K, B, H_g, W_g]``: island labels ``0..I-1`` per (level, image), numbered in
    order of first appearance in row-major order
    """
    u = _unit_columns(state, grid)
    K, N, B, d = u.shape
    hg, wg = grid
    u = u.reshape(K, hg, wg, B, d)
    right = (u[:, :, :-1] * u[:, :, 1:]).sum(-1) > threshold  # [K, hg, wg-1, B]
    down = (u[:, :-1] * u[:, 1:]).sum(-1) > threshold  # [K, hg-1, wg, B]
    ids = np.arange(N).reshape(hg, wg)
    labels = np.empty((K, B, hg, wg), dtype=np.int32)
    for k in range(K):
        for b in range(B):
            r = right[k, :, :, b].numpy()
            dn = down[k, :, :, b].numpy()
            src = np.concatenate([ids[:, :-1][r], ids[:-1, :][dn]])
            dst = np.concatenate([ids[:, 1:][r], ids[1:, :][dn]])
            graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(N, N))
            _, lab = connected_components(graph, directed=False)
            labels[k, b] = _first_appearance(lab).reshape(hg, wg)
    return labels


def _unit_columns(state: Tensor | np.ndarray, grid: tuple[int, int]) -> Tensor:
    """The state as float64 unit vectors ``[K, N, B, d]``, checked against the grid."""
    s = torch.as_tensor(state).detach().to("cpu", torch.float64)
    if s.ndim != 4:
        raise ValueError(f"state must be [K, N, B, d], got shape {tuple(s.shape)}")
    hg, wg = grid
    if hg * wg != s.shape[1]:
        raise ValueError(f"grid {grid} has {hg * wg} columns, the state has N = {s.shape[1]}")
    return s / s.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _first_appearance(lab: np.ndarray) -> np.ndarray:
    """Renumber labels 0.. in order of first appearance."""
    _, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int32)


def island_counts(labels: np.ndarray) -> np.ndarray:
    """Number of islands per (level, image): ``[K, B]`` from labels ``[K, B, H_g, W_g]``."""
    K, B = labels.shape[:2]
    flat = labels.reshape(K, B, -1)
    return flat.max(axis=-1) + 1


def agglomerative_islands(
    state: Tensor | np.ndarray, grid: tuple[int, int], threshold: float = 0.8
) -> np.ndarray:
    """Label islands by average-linkage agglomerative clustering of each image's columns.

    The second extraction method of docs/design.md §6, which does not need islands to be
    spatially connected (an object split by an occluder is one island). For each level and
    image the ``N`` embeddings are clustered bottom-up, always merging the two clusters of
    highest mean pairwise cosine (average linkage on the cosine distance ``1 - cos``), and
    merging stops once that mean falls below ``threshold``: every merge joined two clusters
    whose mean pairwise cosine was at least the threshold (``scipy.cluster.hierarchy``, cut at
    distance ``1 - threshold``). Columns with non-finite embeddings are islands of their own.

    Parameters and result as :func:`connected_islands`.
    """
    s = _unit_columns(state, grid)
    K, N, B, _ = s.shape
    hg, wg = grid
    labels = np.empty((K, B, hg, wg), dtype=np.int32)
    for k in range(K):
        for b in range(B):
            x = s[k, :, b].numpy()
            ok = np.isfinite(x).all(axis=1)  # non-finite columns are islands of their own
            lab = np.arange(N) + N  # distinct labels for them
            if ok.sum() == 1:
                lab[ok] = 0
            elif ok.sum() > 1:
                # cosine distance of unit vectors; clip round-off so the condensed matrix is valid
                dist = np.clip(1.0 - x[ok] @ x[ok].T, 0.0, 2.0)
                np.fill_diagonal(dist, 0.0)
                z = linkage(squareform(dist, checks=False), method="average")
                lab[ok] = fcluster(z, t=1.0 - threshold, criterion="distance")
            labels[k, b] = _first_appearance(lab).reshape(hg, wg)
    return labels


#: extraction methods by name (``run.island_method``)
METHODS = {"connected": connected_islands, "agglomerative": agglomerative_islands}


def extract_islands(
    state: Tensor | np.ndarray,
    grid: tuple[int, int],
    method: str = "connected",
    threshold: float = 0.8,
) -> np.ndarray:
    """Islands by ``method`` (``connected`` or ``agglomerative``): labels ``[K, B, H_g, W_g]``."""
    if method not in METHODS:
        raise ValueError(f"unknown island method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method](state, grid, threshold)


def island_sizes(labels: np.ndarray) -> np.ndarray:
    """Mean island size in columns per (level, image): ``[K, B]`` (``N`` / island count)."""
    K, B = labels.shape[:2]
    n = int(np.prod(labels.shape[2:]))
    return n / island_counts(labels)


def parse_tree(labels: np.ndarray, image: int = 0) -> dict:
    """The parse tree of one image (§1, §2): every island with its parent island one level up.

    An island at level ``l`` is a node; its parent is the level-``l+1`` island that holds most
    of its columns, and ``inside`` is the share of its columns in that parent (1 when the island
    nests perfectly). Top-level islands have no parent.

    Parameters
    ----------
    labels : ``[K, B, H_g, W_g]`` island labels, e.g. from :func:`extract_islands`
    image : which image ``b`` of the batch

    Returns
    -------
    A plain, JSON-serialisable dict: ``{"grid": [H_g, W_g], "levels": K, "nodes": [...]}``,
    each node ``{"id": "L<l>.<i>", "level": l, "island": i, "size": columns,
    "centroid": [row, col], "parent": id or None, "inside": share or None,
    "children": [ids]}``, ordered by level then island.
    """
    lab = np.asarray(labels)
    if lab.ndim != 4:
        raise ValueError(f"labels must be [K, B, H_g, W_g], got shape {lab.shape}")
    K, B, hg, wg = lab.shape
    if not 0 <= image < B:
        raise ValueError(f"image {image} out of range for a batch of {B}")
    rows, cols = np.divmod(np.arange(hg * wg), wg)
    nodes: list[dict] = []
    by_id: dict[str, dict] = {}
    for level in range(K):
        flat = lab[level, image].reshape(-1)
        for i in np.unique(flat):
            cells = flat == i
            node = {
                "id": f"L{level}.{int(i)}",
                "level": level,
                "island": int(i),
                "size": int(cells.sum()),
                "centroid": [float(rows[cells].mean()), float(cols[cells].mean())],
                "parent": None,
                "inside": None,
                "children": [],
            }
            if level + 1 < K:
                up = lab[level + 1, image].reshape(-1)[cells]
                ids, counts = np.unique(up, return_counts=True)
                best = int(np.argmax(counts))
                node["parent"] = f"L{level + 1}.{int(ids[best])}"
                node["inside"] = float(counts[best] / cells.sum())
            nodes.append(node)
            by_id[node["id"]] = node
    for node in nodes:
        if node["parent"] is not None:
            by_id[node["parent"]]["children"].append(node["id"])
    return {"grid": [hg, wg], "levels": K, "nodes": nodes}
