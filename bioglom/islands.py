"""Islands of nearly identical embeddings (§1, §6): extraction by thresholded similarity.

An island at level ``l`` is a connected set of columns whose level-``l`` embeddings agree:
two 4-neighbours on the grid are joined when the cosine of their embeddings exceeds a
threshold, and islands are the connected components of that graph (DESIGN section 6). Report
the threshold with every score.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

__all__ = ["connected_islands", "island_counts"]


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
    s = torch.as_tensor(state).detach().to("cpu", torch.float64)
    K, N, B, d = s.shape
    hg, wg = grid
    if hg * wg != N:
        raise ValueError(f"grid {grid} has {hg * wg} columns, the state has N = {N}")
    u = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-12)
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
