"""How alike the columns' nets have become, and what their differences buy (§12.1).

* :func:`column_agreement`: every column's bottom-up (or top-down) net is fed the *same*
  inputs; agreement is the share of the output variance that is not variance across columns,

  ``A_l = 1 - mean_{m,j} Var_n[y_{n m j}] / mean_j Var_{n,m}[y_{n m j}]``

  1 when all columns compute one function (always so for shared weights), about 0 when their
  functions are unrelated.

* :func:`ensemble_effect`: inside each island (a connected set of columns agreeing at level
  ``l``), compare the error of the island's *mean* bottom-up prediction with the mean error
  of the single columns' predictions, against the island's mean embedding ``T``:

  ``R_l = sum_I |I| |mean_{x in I} bu(x) - T_I|^2 / sum_I sum_{x in I} |bu(x) - T_I|^2``

  ``R < 1`` is the ensemble effect: "the average of all the simultaneous bottom-up predictions
  for the same object in different locations will be much better than the individual
  predictions". Since the second sum is the first plus the spread of the predictions inside
  the island, ``1 - R`` is the share of the single-column error that averaging removes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .columns import ColumnMLP

__all__ = ["column_agreement", "ensemble_effect"]


@torch.no_grad()
def column_agreement(
    net: ColumnMLP,
    inputs: Tensor,
    columns: int,
    extra: Tensor | None = None,
    transform=None,
) -> Tensor:
    """Agreement ``A`` of the per-level nets of ``net`` across columns.

    Parameters
    ----------
    net : a column-wise MLP with ``K'`` levels
    inputs : ``[K', M, d_in]``: the same M inputs are given to every column
    columns : N, the number of columns to compare
    extra : ``[K', M, e]`` the same extra input (location code) for every column, if the net
        takes one
    transform : applied to the outputs before comparing (e.g. the model's standardisation)

    Returns
    -------
    Tensor ``[K']``
    """
    k, m, d_in = inputs.shape
    x = inputs[:, None].expand(k, columns, m, d_in).contiguous()
    z = None if extra is None else extra[:, None].expand(k, columns, m, extra.shape[-1])
    y = net(x, extra=None if z is None else z.contiguous())
    if transform is not None:
        y = transform(y)
    across = y.var(dim=1, unbiased=False).mean(dim=(1, 2))  # over columns
    total = y.reshape(k, columns * m, -1).var(dim=1, unbiased=False).mean(dim=1)
    return 1.0 - across / total.clamp_min(1e-12)


def ensemble_effect(predictions: Tensor, state: Tensor, labels: np.ndarray) -> np.ndarray:
    """Ensemble ratio ``R`` per level over islands of at least two columns (NaN if none).

    Parameters
    ----------
    predictions : ``[K, N, B, d]`` bottom-up predictions of every level
    state : ``[K, N, B, d]`` the embeddings the islands were found in
    labels : ``[K, B, H_g, W_g]`` island labels (per level and image)
    """
    K, N, B, d = state.shape
    out = np.full(K, np.nan)
    for k in range(K):
        lab = torch.as_tensor(labels[k].reshape(B, N).astype(np.int64))  # [B, N]
        ids = (lab + torch.arange(B)[:, None] * N).reshape(-1)  # island id per (image, column)
        p = predictions[k].detach().cpu().double().transpose(0, 1).reshape(B * N, d)
        s = state[k].detach().cpu().double().transpose(0, 1).reshape(B * N, d)
        size = torch.bincount(ids, minlength=B * N).double()
        mean_p = torch.zeros(B * N, d, dtype=torch.float64).index_add_(0, ids, p)
        mean_s = torch.zeros(B * N, d, dtype=torch.float64).index_add_(0, ids, s)
        keep = size >= 2
        if not bool(keep.any()):
            continue
        mean_p = mean_p[keep] / size[keep, None]
        mean_s = mean_s[keep] / size[keep, None]
        ensemble = (size[keep] * ((mean_p - mean_s) ** 2).sum(1)).sum()
        remap = torch.full((B * N,), -1, dtype=torch.long)
        remap[torch.nonzero(keep).flatten()] = torch.arange(int(keep.sum()))
        member = remap[ids]
        inside = member >= 0
        single = ((p[inside] - mean_s[member[inside]]) ** 2).sum()
        out[k] = float(ensemble / single) if single > 0 else np.nan
    return out
