"""Collapse diagnostics and a linear probe (docs/design.md §6; paper §7, §12.2).

Per level of a state ``[K, N, B, d]`` (every column of every image is one sample):

* ``std``: the per-dimension standard deviation of the L2-normalised embeddings, averaged over
  the dimensions -- 0 for a collapsed set, ``1/sqrt(d)`` for directions spread evenly over the
  sphere;
* ``rank``: the effective rank RankMe (Garrido et al. 2023), ``exp(-sum_k p_k log p_k)`` with
  ``p_k = s_k / sum s`` from the singular values ``s`` of the ``[N B, d]`` embedding matrix -- 1
  for a collapsed set, close to ``d`` for an isotropic one;
* ``norm``: the mean L2 norm of the embeddings;
* ``cos_within``: the mean cosine between two different columns of one image;
* ``cos_across``: the mean cosine between two different images at one column.

The linear probe (:func:`linear_probe_accuracy`) fits a closed-form ridge regression from
features to one-hot labels on one split and scores the arg-max on another.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["collapse_diagnostics", "effective_rank", "linear_probe_accuracy"]


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def effective_rank(x: Tensor, eps: float = 1e-12) -> float:
    """RankMe of the rows of ``x [M, d]``: ``exp`` of the entropy of the normalised singular
    values."""
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def _mean_pair_cos(u: Tensor) -> Tensor:
    """Mean cosine over pairs of different rows of unit vectors ``u [..., M, d]``."""
    m = u.shape[-2]
    if m < 2:
        return torch.full(u.shape[:-2], float("nan"), dtype=u.dtype)
    s = u.sum(dim=-2)
    return ((s * s).sum(-1) - m) / (m * (m - 1))


@torch.no_grad()
def collapse_diagnostics(state: Tensor) -> dict[str, np.ndarray]:
    """``{"std", "rank", "norm", "cos_within", "cos_across"}``, each ``[K]``."""
    s = state.detach().float().cpu()
    K, N, B, d = s.shape
    u = _unit(s)
    flat = u.reshape(K, N * B, d)
    return {
        "std": flat.std(dim=1, unbiased=False).mean(dim=1).numpy(),
        "rank": np.array([effective_rank(s[k].reshape(N * B, d)) for k in range(K)]),
        "norm": s.norm(dim=-1).mean(dim=(1, 2)).numpy(),
        "cos_within": _mean_pair_cos(u.transpose(1, 2)).mean(dim=1).numpy(),  # [K, B, N, d]
        "cos_across": _mean_pair_cos(u).mean(dim=1).numpy(),  # [K, N, B, d]
    }


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    ridge: float = 1e-2,
) -> float:
    """Accuracy of a ridge-regression probe: features standardised on the training split,
    ``W = (X^T X + ridge n I)^{-1} X^T Y`` with one-hot ``Y`` and a bias column, prediction by
    arg-max."""
    x = np.asarray(train_x, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-8

    def design(f: np.ndarray) -> np.ndarray:
        z = (np.asarray(f, np.float64) - mean) / std
        return np.concatenate([z, np.ones((len(z), 1))], axis=1)

    classes = np.unique(train_y)
    y = (np.asarray(train_y)[:, None] == classes[None, :]).astype(np.float64)
    a = design(x)
    reg = ridge * len(a) * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    w = np.linalg.solve(a.T @ a + reg, a.T @ y)
    pred = classes[(design(test_x) @ w).argmax(axis=1)]
    return float((pred == np.asarray(test_y)).mean())
