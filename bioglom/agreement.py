"""How alike the columns' nets have become, and what their differences buy (§12.1).

* :func:`column_agreement`: every column's bottom-up (or top-down) net is fed the *same*
  inputs; agreement is the share of the output variance that is not variance across columns,

  ``A_l = 1 - mean_{m,j} Var_n[y_{n m j}] / mean_j Var_{n,m}[y_{n m j}]``

  1 when all columns compute one function (always so for shared weights), about 0 when their
  functions are unrelated.

* :func:`optic_agreement`: the same share for the front ends as functions of the *optic
  array* rather than of their input vectors: every image is shifted by whole patches so that
  the patch of the grid's centre column lands on column ``n``'s, and column ``n``'s front end
  reads it through its own retina (uniform or foveated, :mod:`bioglom.frontend`). 1 for shared
  weights on a uniform retina (every column then sees the same patch); below 1 wherever the
  columns' retinas differ, unless their nets have learnt to undo the difference (§12.1).

* :func:`ensemble_effect`: "if the bottom-up models at different locations are somewhat
  different, we will get a strong ensemble effect at the object level: the average of all the
  simultaneous bottom-up predictions for the same object in different locations will be much
  better than the individual predictions" (§12.1). Columns whose *inputs* agree -- an island at
  level ``l-1`` -- each predict level ``l``; the island's mean prediction and each single
  prediction are scored against a target the predictions did not shape, the consensus of the
  other contributions (top-down, previous, lateral) at level ``l``:

  ``R_l = sum_I sum_{x in I} |mean_{y in I} bu(y) - T(x)|^2 / sum_I sum_{x in I} |bu(x) - T(x)|^2``

  over islands of at least two columns. ``R < 1``: the mean beats single columns (the ensemble
  effect); ``R = 1``: no effect (identical predictions, as with shared weights on identical
  inputs); ``R > 1``: averaging hurts (single columns track their own targets).

  That target still holds the column's own previous state and its own top-down prediction.
  :func:`neighbour_target` gives one the column did not shape: the lateral term of eq. 3.1
  with the column itself left out of the softmax,

  ``T_others(x) = sum_{y != x} w_xy e_l(y)``, ``w_xy = softmax_{y != x}(beta e_l(x) . e_l(y))``,

  the consensus of the other columns' embeddings alone (they still heard ``x`` laterally
  while settling: a second-order influence). The probe scores it over the columns of each
  ground-truth object, "the same object in different locations" (§12.1), which also makes
  isolated columns (no islands) comparable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .columns import ColumnMLP
from .functional import lateral_attention

__all__ = ["column_agreement", "optic_agreement", "ensemble_effect", "neighbour_target"]


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
    return _agreement(y)


def _agreement(y: Tensor) -> Tensor:
    """``A`` of outputs ``y [K', N, M, d]``: one minus the variance across the N columns over
    the variance across columns and inputs, both averaged over units (and inputs)."""
    k, n, m = y.shape[:3]
    across = y.var(dim=1, unbiased=False).mean(dim=(1, 2))  # over columns
    total = y.reshape(k, n * m, -1).var(dim=1, unbiased=False).mean(dim=1)
    return 1.0 - across / total.clamp_min(1e-12)


@torch.no_grad()
def optic_agreement(model, images: Tensor) -> float:
    """Agreement ``A`` of the columns' front ends (after the model's standardisation) on the
    same optic arrays: image ``b`` shifted by ``p (r_n - r_c, c_n - c_c)`` pixels (zeros shifted
    in), ``(r_c, c_c) = (H_g // 2, W_g // 2)``, read by column ``n``. Costs ``N`` front-end
    passes over ``B`` images at every column (``O(N^2 B)``).

    Parameters
    ----------
    model : a :class:`~bioglom.model.Glom` with a patch front end
    images : ``[B, C, H, W]``
    """
    B, C, H, W = images.shape
    hg, wg = model.grid
    p = model.patch
    padded = torch.nn.functional.pad(images, (W, W, H, H))
    outs = []
    for n in range(hg * wg):
        dy, dx = p * (n // wg - hg // 2), p * (n % wg - wg // 2)
        shifted = padded[:, :, H - dy : 2 * H - dy, W - dx : 2 * W - dx]
        y = model.split_prediction(model.frontend(shifted))[0]  # [1, N, B, d]
        outs.append(y[0, n])
    return float(_agreement(torch.stack(outs)[None])[0])


@torch.no_grad()
def neighbour_target(e: Tensor, index: Tensor, valid: Tensor, beta: float | Tensor) -> Tensor:
    """``T_others`` of one level: eq. 3.1 over each column's neighbours with the column itself
    left out of the softmax.

    Parameters
    ----------
    e : ``[N, B, d]`` one level's embeddings
    index, valid : ``[N, M]`` the level's neighbourhood (whether or not it includes the column)
    beta : the inverse temperature of eq. 3.1

    Returns
    -------
    ``[N, B, d]``; zeros for a column with no other neighbour
    """
    n = e.shape[0]
    others = valid & (index != torch.arange(n, device=index.device)[:, None])
    alone = ~others.any(dim=1)
    # a column without another neighbour attends to itself only, and is then zeroed
    keep = others | (alone[:, None] & (index == torch.arange(n, device=index.device)[:, None]))
    mean, _ = lateral_attention(e, index, keep, beta, method="gather")
    return mean.masked_fill(alone[:, None, None], 0.0)


def ensemble_effect(
    predictions: Tensor,
    targets: Tensor,
    labels: np.ndarray,
    include: np.ndarray | None = None,
) -> float:
    """Ensemble ratio ``R`` of one level over groups of at least two columns (NaN if none).

    Parameters
    ----------
    predictions : ``[N, B, d]`` the bottom-up predictions for level ``l``
    targets : ``[N, B, d]`` the target ``T`` at level ``l``, per column
    labels : ``[B, H_g, W_g]`` the groups: islands of the predictions' *input* level ``l-1``,
        or ground-truth objects
    include : bool ``[B, H_g, W_g]``, the columns that take part (e.g. the foreground); all
        when None
    """
    N, B, d = predictions.shape
    lab = torch.as_tensor(np.asarray(labels).reshape(B, N).astype(np.int64))
    if include is not None:
        keep = torch.as_tensor(np.asarray(include, dtype=bool).reshape(B, N))
        lab = torch.where(keep, lab - lab.min() + 1, torch.zeros_like(lab))  # 0: left out
    ids = (lab + torch.arange(B)[:, None] * (int(lab.max()) + 1)).reshape(-1)
    p = predictions.detach().cpu().double().transpose(0, 1).reshape(B * N, d)
    t = targets.detach().cpu().double().transpose(0, 1).reshape(B * N, d)
    n_ids = int(ids.max()) + 1
    size = torch.bincount(ids, minlength=n_ids).double()
    mean_p = torch.zeros(n_ids, d, dtype=torch.float64).index_add_(0, ids, p)
    mean_p = mean_p / size.clamp_min(1)[:, None]
    inside = size[ids] >= 2
    if include is not None:
        inside &= lab.reshape(-1) > 0
    if not bool(inside.any()):
        return float("nan")
    ensemble = ((mean_p[ids] - t) ** 2)[inside].sum()
    single = ((p - t) ** 2)[inside].sum()
    return float(ensemble / single) if single > 0 else float("nan")
