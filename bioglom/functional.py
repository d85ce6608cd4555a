"""Pure tensor functions of the GLOM dynamics. No state, no parameters of their own.

Layout conventions (docs/design.md §1):

* state / embeddings: ``[K, N, B, d]`` (levels, columns, images, components), column-major so
  that a per-column net over all levels is one ``torch.bmm`` with no permute;
* column-wise weights: ``[K', C, d_in, d_out]`` with ``C = N`` (unshared: each column its own
  matrix) or ``C = 1`` (shared: one matrix broadcast over the columns, a 1x1 convolution).

The modules in :mod:`bioglom.columns` and :mod:`bioglom.model` are thin wrappers over these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "column_linear",
    "column_linear_fa",
    "column_linear_into_grad",
    "weight_grads_in_gemm",
    "consensus_mean",
    "consensus_gaussian",
    "normalise_weights",
    "attention_weights",
    "lateral_attention",
    "attract_repel_attention",
    "window_attention",
    "window_plan",
    "dense_mask_bias",
    "window_tile_bias",
    "neighbour_mask",
    "window_neighbours",
    "gaussian_neighbours",
    "location_encoding",
    "interpolate",
    "group_contrast",
    "chosen_contrast",
    "sinkhorn_image",
    "prototype_loss",
]


def column_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Column-wise affine map, one ``bmm`` for all levels and columns.

    ``y[k, n, b] = x[k, n, b] @ W[k, c(n)] + bias[k, c(n)]`` with ``c(n) = n`` when
    ``C = N`` and ``c(n) = 0`` when ``C = 1``.

    Parameters
    ----------
    x : Tensor ``[K', N, B, d_in]``
    weight : Tensor ``[K', C, d_in, d_out]``, ``C`` is ``N`` or ``1``
    bias : Tensor ``[K', C, 1, d_out]``, or ``[K', N, 1, d_out]`` (a bias per column, also with
        shared weights: e.g. a bias plus a per-column input term), or None

    Returns
    -------
    Tensor ``[K', N, B, d_out]``

    Both cases are copy-free reshapes of the contiguous input: unshared is a batch of
    ``K' * N`` products ``[B, d_in] @ [d_in, d_out]``; shared folds the columns into the rows,
    ``K'`` products ``[N * B, d_in] @ [d_in, d_out]``, so its weight gradient is the sum over
    columns.
    """
    k, n, b, d_in = x.shape
    kw, c, d_in_w, d_out = weight.shape
    if kw != k or d_in_w != d_in or c not in (1, n):
        raise ValueError(
            f"column_linear: input [K'={k}, N={n}, B={b}, d_in={d_in}] does not fit weight "
            f"[K'={kw}, C={c}, d_in={d_in_w}, d_out={d_out}] "
            "(need equal K', d_in and C in {1, N})"
        )
    if bias is not None and bias.shape[1] not in (1, n):
        raise ValueError(f"column_linear: bias {list(bias.shape)} needs 1 or N={n} columns")
    if c == n:
        xs = x.reshape(k * n, b, d_in)
        ws = weight.reshape(k * n, d_in, d_out)
        if bias is None:
            y = torch.bmm(xs, ws)
        else:  # the bias is the GEMM's initial value: no extra pass
            y = torch.baddbmm(bias.expand(k, n, 1, d_out).reshape(k * n, 1, d_out), xs, ws)
        return y.view(k, n, b, d_out)
    xs = x.reshape(k, n * b, d_in)
    ws = weight.reshape(k, d_in, d_out)
    if bias is None:
        y = torch.bmm(xs, ws)
    elif bias.shape[1] == 1:
        y = torch.baddbmm(bias.reshape(k, 1, d_out), xs, ws)
    else:  # a bias per column on shared weights: one in-place pass
        return torch.bmm(xs, ws).view(k, n, b, d_out).add_(bias)
    return y.view(k, n, b, d_out)


def interpolate(start: Tensor | float, end: Tensor | float, t: int, steps: int) -> Tensor | float:
    """Linear schedule over the settling steps: ``start`` at ``t = 0``, ``end`` at ``steps - 1``."""
    if steps <= 1:
        return start
    a = t / (steps - 1)
    return start * (1 - a) + end * a


def normalise_weights(weights: Tensor, present: Tensor) -> Tensor:
    """Contribution weights ``a_i`` per level, zero where a contribution is absent, summing to 1.

    Parameters
    ----------
    weights : Tensor ``[4, K]`` (or broadcastable), non-negative
    present : bool Tensor ``[4, K]``: whether contribution i exists at level l (there is no
        top-down contribution at the top level)
    """
    a = weights * present
    return a / a.sum(0, keepdim=True)


def consensus_mean(contributions: Sequence[Tensor], weights: Tensor) -> Tensor:
    """Weighted geometric mean of point contributions = weighted arithmetic mean (§1, §7, §9.1).

    Reading each contribution as the natural parameters of a distribution, the weighted
    geometric mean of the distributions has the weighted mean of the parameters:

    ``e*_l = sum_i a_il c_il / sum_i a_il``

    Parameters
    ----------
    contributions : sequence of I Tensors ``[K, N, B, d]``
    weights : Tensor ``[I, K]`` of non-negative weights (each level's column must not sum to 0)
    """
    a = weights / weights.sum(0, keepdim=True)
    out = None
    for c, ai in zip(contributions, a, strict=True):
        if out is None:
            out = ai.view(-1, 1, 1, 1) * c
        else:  # in place on our own sum: one pass per contribution, no temporary
            out = out.addcmul_(ai.view(-1, 1, 1, 1), c)
    return out


def consensus_gaussian(
    means: Sequence[Tensor], precisions: Sequence[Tensor], weights: Tensor
) -> tuple[Tensor, Tensor]:
    """Weighted geometric mean of diagonal Gaussians (§9.1, footnote 28).

    ``prod_i N(mu_i, 1/tau_i)^(a_i)``, renormalised, is Gaussian with (weights normalised to
    sum 1 per level):

    ``tau* = sum_i a_i tau_i``,  ``mu* = sum_i a_i tau_i mu_i / tau*``

    Parameters
    ----------
    means, precisions : sequences of I Tensors ``[K, N, B, d]`` (precisions > 0)
    weights : Tensor ``[I, K]``

    Returns
    -------
    (mu*, tau*), each ``[K, N, B, d]``
    """
    a = weights / weights.sum(0, keepdim=True)
    tau = None
    num = None
    for mu_i, tau_i, ai in zip(means, precisions, a, strict=True):
        at = ai.view(-1, 1, 1, 1) * tau_i
        tau = at if tau is None else tau + at
        num = at * mu_i if num is None else num + at * mu_i
    return num / tau, tau


def attention_weights(e: Tensor, index: Tensor, valid: Tensor, beta: float | Tensor) -> Tensor:
    """Attention weights of eq. 3.1 (§3.4) on a neighbourhood.

    ``w_xy = exp(beta e_x . e_y) / sum_z exp(beta e_x . e_z)`` over the valid neighbours
    ``y, z`` of ``x``; query = key = value = the embedding, no projections.

    Parameters
    ----------
    e : Tensor ``[N, B, d]``, one level
    index : long Tensor ``[N, M]``: the M candidate neighbours of each column
    valid : bool Tensor ``[N, M]``: False entries are excluded exactly (logit ``-inf``)
    beta : inverse temperature

    Returns
    -------
    Tensor ``[N, M, B]``, zero at invalid entries, summing to 1 over ``M``
    """
    logits = beta * torch.einsum("nbd,nmbd->nmb", e, e[index])
    logits = logits.masked_fill(~valid.unsqueeze(-1), float("-inf"))
    return torch.softmax(logits, dim=1)


def neighbour_mask(index: Tensor, valid: Tensor) -> Tensor:
    """Dense bool ``[N, N]`` adjacency: ``mask[x, y]`` iff ``y`` is a valid neighbour of ``x``."""
    n = index.shape[0]
    mask = torch.zeros(n, n, dtype=torch.bool, device=index.device)
    rows = torch.arange(n, device=index.device)[:, None].expand_as(index)
    mask[rows[valid], index[valid]] = True  # invalid entries point at x itself: skip them
    return mask


def lateral_attention(
    e: Tensor,
    index: Tensor,
    valid: Tensor,
    beta: float | Tensor,
    precision: Tensor | None = None,
    method: str = "auto",
    mask_bias: Tensor | None = None,
    queries: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Attention-weighted average of neighbours at one level (§3.4, eq. 3.1).

    ``lat(x) = sum_y w_xy e_y`` with ``w`` from :func:`attention_weights`. With precisions
    (``gaussian`` mode) it is the attention-weighted geometric mean of the neighbours'
    Gaussians: ``tau = sum_y w_xy tau_y``, ``mu = sum_y w_xy tau_y e_y / tau``.

    Two evaluations of the same sum, chosen by cost (``method="auto"``):

    * ``"dense"``: all ``N x N`` logits by one ``bmm`` per image, non-neighbours masked with
      ``-inf``; cheapest while ``N`` is small against the neighbourhood;
    * ``"gather"``: the ``M`` neighbours of each column gathered, cost linear in ``M``.

    ``auto`` takes dense when ``N <= max(256, 16 M)`` (measured on a 2-core CPU: at ``N = 256``
    dense was 2-14x faster for ``M = 9..81``; at ``N = 2304`` gather was 2-10x faster).

    Parameters
    ----------
    e : Tensor ``[N, B, d]``, one level
    index, valid : ``[N, M]`` neighbourhood (invalid entries are excluded exactly)
    beta : inverse temperature
    precision : Tensor ``[N, B, d]`` or None
    method : "auto", "dense" or "gather"
    mask_bias : for ``dense``, the mask as an additive ``[N, N]`` tensor (0 for a valid
        neighbour, ``-inf`` elsewhere), precomputed by a caller that reuses it; built from
        ``index`` and ``valid`` when None
    queries : long ``[n]`` or None: evaluate the sum for these columns only, keys and values
        from all ``N`` (``index``, ``valid`` then ``[n, M]``, rows in the order of
        ``queries``); always by ``gather``. A rank that holds some of the columns uses it
        (:mod:`bioglom.distributed`).

    Returns
    -------
    (mean ``[N, B, d]``, precision ``[N, B, d]`` or None); ``[n, B, d]`` with ``queries``
    """
    b, d = e.shape[1], e.shape[2]
    n, m = index.shape
    if queries is not None:
        if method == "dense":
            raise ValueError("method: 'dense' evaluates every column; queries needs 'gather'")
        method = "gather"
    elif method == "auto":
        method = "dense" if n <= max(256, 16 * m) else "gather"
    et = e.transpose(0, 1)  # [B, N, d]
    if method == "dense":
        logits = torch.bmm(et * beta, et.transpose(1, 2))  # [B, N, N]
        if mask_bias is None:
            logits = logits.masked_fill_(~neighbour_mask(index, valid), float("-inf"))
        else:
            logits = logits.add_(mask_bias)
        w = torch.softmax(logits, dim=-1)
        if precision is None:
            return torch.bmm(w, et).transpose(0, 1), None
        tt = precision.transpose(0, 1)
        tau = torch.bmm(w, tt)
        return (torch.bmm(w, tt * et) / tau).transpose(0, 1), tau.transpose(0, 1)
    if method != "gather":
        raise ValueError(f"method: expected 'auto', 'dense' or 'gather', got {method!r}")
    flat = index.reshape(-1)
    q = et if queries is None else et.index_select(1, queries)  # [B, n, d]
    nb = et.index_select(1, flat).view(b * n, m, d)  # neighbours of each (image, column)
    logits = torch.bmm((q * beta).reshape(b * n, 1, d), nb.transpose(1, 2))  # [BN, 1, M]
    logits = logits.masked_fill_(~valid.repeat(b, 1).unsqueeze(1), float("-inf"))
    w = torch.softmax(logits, dim=-1)
    if precision is None:
        return torch.bmm(w, nb).view(b, n, d).transpose(0, 1), None
    tnb = precision.transpose(0, 1).index_select(1, flat).view(b * n, m, d)
    tau = torch.bmm(w, tnb)
    mu = torch.bmm(w, tnb * nb) / tau
    return mu.view(b, n, d).transpose(0, 1), tau.view(b, n, d).transpose(0, 1)


def attract_repel_attention(
    e: Tensor,
    index: Tensor,
    valid: Tensor,
    beta: float | Tensor,
    precision: Tensor | None = None,
    *,
    attract_above: float = 0.5,
    repel_below: float = 0.0,
    repel_weight: float = 0.5,
    queries: Tensor | None = None,
    method: str = "gather",
) -> tuple[Tensor, Tensor | None]:
    """Lateral term with attraction and repulsion (issue 14; an option beside eq. 3.1).

    With ``c_xy = cos(e_x, e_y)`` over the neighbours ``y`` of ``x``, the neighbours split into
    the like-minded ``A(x) = {y : c_xy >= attract_above}`` and the unlike
    ``R(x) = {y : c_xy < repel_below}``; those in between are ignored. Then

    ``lat(x) = sum_{y in A(x)} w_xy e_y - gamma * mean_{y in R(x)} e_y``,
    ``w_xy = softmax_{y in A(x)}(beta e_x . e_y)``,

    with ``gamma = repel_weight``; the repulsive mean is 0 where ``R(x)`` is empty, and a column
    whose ``A(x)`` is empty (possible only without self-attention) keeps its own embedding as
    the attractive part. It is eq. 3.1 restricted to the echo chamber of §3.4 ("embeddings at a
    level attend mainly to other like-minded embeddings") plus a push away from the columns
    that are not, after the "agreement aware and dissimilarity oriented" GLOM variant (ICCV
    2025). With ``attract_above = -1`` and ``repel_weight = 0`` it is eq. 3.1 exactly.

    In ``gaussian`` mode the attraction is the weighted geometric mean of
    :func:`lateral_attention` over ``A(x)`` (``tau = sum_{A} w tau_y``); the repulsion moves the
    mean only.

    Parameters
    ----------
    e : ``[N, B, d]``, one level
    index, valid : ``[N, M]`` neighbourhood
    beta : inverse temperature of the attractive softmax
    precision : ``[N, B, d]`` or None
    attract_above, repel_below : cosine thresholds, ``repel_below <= attract_above``
    repel_weight : ``gamma >= 0``
    queries : long ``[n]`` or None: only these columns' terms (``index``, ``valid`` ``[n, M]``),
        as in :func:`lateral_attention`
    method : ``"gather"`` (each column's ``M`` neighbours copied out, ``[B, n, M, d]``: for
        large grids and sampled neighbourhoods) or ``"dense"`` (all ``n x N`` dot products by
        one matmul, masked to the neighbourhood, and the sums as matmuls: cheaper while the
        neighbourhood covers much of a small grid); the same sums either way

    Returns
    -------
    (mean ``[N, B, d]``, precision ``[N, B, d]`` or None); ``[n, B, d]`` with ``queries``
    """
    if repel_below > attract_above:
        raise ValueError(
            f"repel_below ({repel_below}) must not exceed attract_above ({attract_above})"
        )
    if method not in ("gather", "dense"):
        raise ValueError(f"method: expected 'gather' or 'dense', got {method!r}")
    b, d = e.shape[1], e.shape[2]
    n, m = index.shape
    et = e.transpose(0, 1)  # [B, N, d]
    q = et if queries is None else et.index_select(1, queries)  # [B, n, d]
    lengths = et.norm(dim=-1).clamp_min(1e-12)  # [B, N]
    ql = lengths if queries is None else lengths.index_select(1, queries)
    flat = index.reshape(-1)
    if method == "dense":  # neighbour j of column x is column j of the grid
        ok = torch.zeros(n, et.shape[1], dtype=torch.bool, device=e.device)
        rows = torch.arange(n, device=e.device)[:, None].expand(n, m)
        ok[rows[valid], index[valid]] = True
        nb = None
        dots = torch.bmm(q, et.transpose(1, 2))  # [B, n, N]
        nl = lengths[:, None, :]
    else:
        ok = valid
        nb = et.index_select(1, flat).view(b, n, m, d)  # neighbours of each (image, column)
        dots = torch.einsum("bnd,bnmd->bnm", q, nb)
        nl = lengths.index_select(1, flat).view(b, n, m)

    def weighted(coef: Tensor, x: Tensor, gathered: Tensor | None = None) -> Tensor:
        """``sum_y coef[x, y] x_y``, ``[B, n, d]`` (``gathered``: ``x``'s neighbours)."""
        if method == "dense":
            return torch.bmm(coef, x)
        if gathered is None:
            gathered = x.index_select(1, flat).view(b, n, m, d)
        return torch.einsum("bnm,bnmd->bnd", coef, gathered)

    cos = dots / (ql[..., None] * nl)
    attract = ok[None] & (cos >= attract_above)
    repel = (ok[None] & (cos < repel_below)).to(e.dtype)
    logits = (beta * dots).masked_fill(~attract, float("-inf"))
    empty = ~attract.any(-1, keepdim=True)  # [B, n, 1]
    w = torch.softmax(logits.masked_fill(empty, 0.0), dim=-1) * attract  # 0 rows when empty
    pull = repel / repel.sum(-1, keepdim=True).clamp_min(1)  # the repulsive mean's weights
    if precision is None:  # one pass: sum_y (w_xy - gamma pull_xy) e_y
        out = weighted(w - repel_weight * pull, et, nb)
        return torch.where(empty, out + q, out).transpose(0, 1), None
    pt = precision.transpose(0, 1)
    pq = pt if queries is None else pt.index_select(1, queries)
    tau = weighted(w, pt)
    mu = weighted(w, pt * et) / tau.clamp_min(1e-30)
    mu = torch.where(empty, q, mu)
    tau = torch.where(empty, pq, tau)
    return (mu - repel_weight * weighted(pull, et, nb)).transpose(0, 1), tau.transpose(0, 1)


#: per-column cost of a window evaluation, in units of one logit (its two ``d = 64`` dot
#: products and its softmax), fitted to CPU timings at N = 256 .. 4096, B = 32
#: (docs/performance-notes.md, entry 8): a tiled query pays ``S = (T + 2r)^2`` logits, a copy of
#: ``d S / T^2`` key values at 0.29 logit each, and 50 for its share of the tile's overhead;
#: a dense one pays ``N`` logits.
_COPY_COST, _TILE_OVERHEAD, _TILES = 0.29, 50.0, (4, 8)


def window_plan(grid: tuple[int, int], radius: int, dim: int) -> tuple[str, int]:
    """How :class:`~bioglom.model.Glom` evaluates eq. 3.1 on square windows:
    ``("dense", 0)`` (all ``N x N`` logits, masked; cheapest while the window covers much of
    a small grid) or ``("tiles", T)`` (:func:`window_attention`), whichever the cost model above
    makes cheaper per column."""
    n = grid[0] * grid[1]

    def tiled(t: int) -> float:
        s = (t + 2 * radius) ** 2
        return s + _COPY_COST * dim * s / t**2 + _TILE_OVERHEAD

    best = min(_TILES, key=tiled)
    if n <= 1024 and n <= tiled(best):
        return "dense", 0
    return "tiles", best


def dense_mask_bias(index: Tensor, valid: Tensor) -> Tensor:
    """The ``mask_bias`` of :func:`lateral_attention`: 0 where ``y`` is a valid neighbour of
    ``x``, ``-inf`` elsewhere; ``[N, N]`` float."""
    mask = neighbour_mask(index, valid)
    return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))


def window_tile_bias(
    grid: tuple[int, int], radius: int, tile: int, include_self: bool = True
) -> Tensor:
    """Additive logit mask of :func:`window_attention`: ``[tiles, T^2, (T + 2r)^2]``.

    Tile ``(i, j)`` holds the queries at grid rows ``iT .. iT+T-1`` and columns
    ``jT .. jT+T-1``; its keys are the ``(T + 2r)^2`` positions of the same block grown by
    ``r`` on every side. The entry is 0 where the key is in the query's window (``|dr|, |dc|
    <= r``; not the query itself unless ``include_self``) and inside the grid, else ``-inf``.
    Rows of queries that lie outside the grid (padding of the last tiles) are all 0, so that
    they stay finite; their outputs are discarded.
    """
    hg, wg = grid
    t, s1 = tile, tile + 2 * radius
    th, tw = -(-hg // t), -(-wg // t)
    qr = torch.arange(t).repeat_interleave(t)  # query offsets inside the tile
    qc = torch.arange(t).repeat(t)
    kr = torch.arange(s1).repeat_interleave(s1) - radius  # key offsets from the tile's corner
    kc = torch.arange(s1).repeat(s1) - radius
    dr = kr[None, :] - qr[:, None]
    dc = kc[None, :] - qc[:, None]
    inside = (dr.abs() <= radius) & (dc.abs() <= radius)  # [T^2, S]
    if not include_self:
        inside &= ~((dr == 0) & (dc == 0))
    r0 = (torch.arange(th) * t).repeat_interleave(tw)[:, None]  # [tiles, 1]
    c0 = (torch.arange(tw) * t).repeat(th)[:, None]
    key_in = (r0 + kr >= 0) & (r0 + kr < hg) & (c0 + kc >= 0) & (c0 + kc < wg)  # [tiles, S]
    query_in = (r0 + qr < hg) & (c0 + qc < wg)  # [tiles, T^2]
    ok = inside[None] & key_in[:, None, :]
    ok |= ~query_in[:, :, None]
    zero = torch.zeros((), dtype=torch.float32)
    return torch.where(ok, zero, torch.full((), float("-inf")))


def window_attention(
    e: Tensor,
    grid: tuple[int, int],
    radius: int,
    beta: float | Tensor,
    precision: Tensor | None = None,
    tile: int = 8,
    bias: Tensor | None = None,
    include_self: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Eq. 3.1 (§3.4) on square windows, evaluated tile by tile (blocked local attention).

    The same sum as :func:`lateral_attention` with :func:`window_neighbours`,
    ``lat(x) = sum_{y in window(x)} w_xy e_y`` with ``w_xy`` the softmax over the window of
    ``beta e_x . e_y``, computed without ``N x N`` logits and without a ``[N, B, M, d]``
    gather: the grid is cut into ``T x T`` tiles; each tile's ``T^2`` queries meet the
    ``(T + 2r)^2`` keys of the tile grown by ``r``, in one ``bmm`` per image and tile, and
    :func:`window_tile_bias` removes the keys outside each query's window. Work per column:
    ``(T + 2r)^2`` logits and a key copy of ``d (T + 2r)^2 / T^2`` values -- linear in the
    number of columns, for any radius.

    Parameters
    ----------
    e : Tensor ``[N, B, d]``, one level, ``N = H_g W_g`` (column ``n`` at row ``n // W_g``)
    grid : ``(H_g, W_g)``
    radius : window radius ``r``
    beta : inverse temperature
    precision : Tensor ``[N, B, d]`` or None (``gaussian`` mode, as in :func:`lateral_attention`)
    tile : ``T``
    bias : the result of :func:`window_tile_bias` for these arguments (computed if None)
    include_self : whether a column attends to itself (only used when ``bias`` is None)

    Returns
    -------
    (mean ``[N, B, d]``, precision ``[N, B, d]`` or None)
    """
    n, b, d = e.shape
    hg, wg = grid
    t, r = tile, radius
    th, tw = -(-hg // t), -(-wg // t)
    s1 = t + 2 * r
    if bias is None:
        bias = window_tile_bias(grid, r, t, include_self).to(e.device)

    def padded(v: Tensor) -> Tensor:  # [N, B, c] -> [B, th T + 2r, tw T + 2r, c], zeros outside
        g = v.view(hg, wg, b, -1).permute(2, 0, 1, 3)
        return torch.nn.functional.pad(g, (0, 0, r, tw * t - wg + r, r, th * t - hg + r))

    def keys(vp: Tensor) -> Tensor:  # -> [B * tiles, S, c]
        c = vp.shape[-1]
        k = vp.unfold(1, s1, t).unfold(2, s1, t)  # [B, th, tw, c, s1, s1]
        return k.permute(0, 1, 2, 4, 5, 3).reshape(b * th * tw, s1 * s1, c)

    ep = padded(e)
    q = ep[:, r : r + th * t, r : r + tw * t]  # [B, th T, tw T, d]
    q = q.reshape(b, th, t, tw, t, d).permute(0, 1, 3, 2, 4, 5).reshape(b * th * tw, t * t, d)
    k = keys(ep)
    logits = torch.bmm(q * beta, k.transpose(1, 2)).view(b, th * tw, t * t, s1 * s1)
    w = torch.softmax(logits.add_(bias), dim=-1).view(b * th * tw, t * t, s1 * s1)

    def untile(o: Tensor) -> Tensor:  # [B * tiles, T^2, c] -> [N, B, c]
        c = o.shape[-1]
        o = o.view(b, th, tw, t, t, c).permute(0, 1, 3, 2, 4, 5).reshape(b, th * t, tw * t, c)
        return o[:, :hg, :wg].reshape(b, n, c).transpose(0, 1)

    if precision is None:
        return untile(torch.bmm(w, k)), None
    tp = padded(precision)
    tau = torch.bmm(w, keys(tp))
    mu = torch.bmm(w, keys(tp * ep)) / tau
    return untile(mu), untile(tau)


def window_neighbours(
    grid: tuple[int, int], radius: int, include_self: bool = True
) -> tuple[Tensor, Tensor]:
    """Square window neighbourhoods on the column grid.

    Column ``n`` sits at row ``n // W_g``, column ``n % W_g``. Neighbours are the
    ``(2r+1)^2`` offsets ``|dr|, |dc| <= r``; offsets outside the grid, and the column itself
    when ``include_self`` is False, are marked invalid (their index points at the column
    itself so that gathering stays in range).

    Returns
    -------
    (index ``[N, M]`` long, valid ``[N, M]`` bool), ``M = (2r+1)^2``
    """
    hg, wg = grid
    rows = torch.arange(hg).repeat_interleave(wg)
    cols = torch.arange(wg).repeat(hg)
    off = torch.arange(-radius, radius + 1)
    dr = off.repeat_interleave(len(off))
    dc = off.repeat(len(off))
    r = rows[:, None] + dr[None, :]
    c = cols[:, None] + dc[None, :]
    valid = (r >= 0) & (r < hg) & (c >= 0) & (c < wg)
    if not include_self:
        valid &= ~((dr == 0) & (dc == 0))[None, :]
    self_index = torch.arange(hg * wg)[:, None].expand_as(r)
    index = torch.where(valid, r * wg + c, self_index)
    return index, valid


def gaussian_neighbours(
    grid: tuple[int, int],
    samples: int,
    sigma: float,
    include_self: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Neighbours sampled without replacement from a Gaussian centred at each column (§6).

    Each column ``x`` draws ``samples`` distinct other columns ``y`` with probability
    proportional to ``exp(-|x - y|^2 / (2 sigma^2))`` (grid distance); the column itself is
    prepended when ``include_self`` is True.

    Returns
    -------
    (index ``[N, M]`` long, valid ``[N, M]`` bool, all True), ``M = samples (+ 1)``
    """
    hg, wg = grid
    n = hg * wg
    if samples > n - 1:
        raise ValueError(f"cannot sample {samples} distinct neighbours from {n - 1} columns")
    dev = generator.device if generator is not None else torch.device("cpu")
    rows = torch.arange(hg, dtype=torch.float64, device=dev).repeat_interleave(wg)
    cols = torch.arange(wg, dtype=torch.float64, device=dev).repeat(hg)
    d2 = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    logp = -d2 / (2.0 * sigma**2)
    logp.fill_diagonal_(float("-inf"))
    # subtracting the row max keeps far columns representable when sigma is small
    p = torch.exp(logp - logp.max(dim=1, keepdim=True).values)
    # columns whose probability underflows to 0 are replaced by a tiny floor so that the
    # draw without replacement stays possible; they are then chosen only after all others
    p = torch.where(torch.isfinite(logp), p.clamp_min(1e-300), torch.zeros_like(p))
    index = torch.multinomial(p, samples, replacement=False, generator=generator)
    if include_self:
        index = torch.cat([torch.arange(n, device=dev)[:, None], index], dim=1)
    return index, torch.ones_like(index, dtype=torch.bool)


def location_encoding(grid: tuple[int, int], freqs: int) -> Tensor:
    """Sinusoidal encoding of each column's location (a neural field's input, §2.3).

    Row and column cell centres are mapped into ``(-1, 1)``, ``u = (2 i + 1) / m - 1`` for
    cell ``i`` of ``m``; for ``f = 0..F-1`` the features are ``sin(2^f pi u), cos(2^f pi u)``
    for ``u`` in (row, col). The lowest frequency turns ``pi u`` through less than one period,
    so every column has its own code (``u = -1`` and ``u = 1`` would coincide).

    Returns
    -------
    Tensor ``[N, 4 F]``
    """
    hg, wg = grid

    def axis(m: int) -> Tensor:
        return (2.0 * torch.arange(m) + 1.0) / m - 1.0

    u = torch.stack(torch.meshgrid(axis(hg), axis(wg), indexing="ij"), dim=-1).reshape(-1, 2)
    scales = (2.0 ** torch.arange(freqs)) * math.pi  # [F]
    z = u[:, :, None] * scales  # [N, 2, F]
    return torch.cat([torch.sin(z), torch.cos(z)], dim=-1).reshape(hg * wg, 4 * freqs)


def _column_weight_grad(x: Tensor, gy: Tensor, columns: int) -> Tensor:
    """``dL/dW`` of :func:`column_linear`: ``x^T gy`` per (level, column), summed over columns
    when the weight is shared. Returns ``[K', C, d_in, d_out]``."""
    k, n, b, d_in = x.shape
    d_out = gy.shape[-1]
    if columns == n:
        g = torch.bmm(x.reshape(k * n, b, d_in).transpose(1, 2), gy.reshape(k * n, b, d_out))
        return g.view(k, n, d_in, d_out)
    g = torch.bmm(x.reshape(k, n * b, d_in).transpose(1, 2), gy.reshape(k, n * b, d_out))
    return g.view(k, 1, d_in, d_out)


class _FeedbackAlignment(torch.autograd.Function):
    """:func:`column_linear` whose backward pass sends the error to its input through a fixed
    random matrix ``F`` instead of ``W^T`` (Lillicrap et al. 2016): ``dx = dy F^T``. The
    weight and bias gradients are the usual local ones, ``x^T dy`` and ``sum dy``."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, feedback)
        ctx.columns = weight.shape[1]
        ctx.has_bias = bias is not None
        return column_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, gy):
        x, feedback = ctx.saved_tensors
        gy = gy.contiguous()
        gx = column_linear(gy, feedback.transpose(-1, -2).contiguous())
        gw = _column_weight_grad(x, gy, ctx.columns)
        gb = None
        if ctx.has_bias:
            dims = (2,) if ctx.columns == x.shape[1] else (1, 2)
            gb = gy.sum(dim=dims, keepdim=True)
            if ctx.columns == 1:
                gb = gb.view(gb.shape[0], 1, 1, -1)
        return gx, gw, gb, None


class _IntoGrad(torch.autograd.Function):
    """:func:`column_linear` whose backward adds the weight gradient ``x^T dy`` straight into
    ``weight.grad`` inside the GEMM (``baddbmm_``: ``grad <- grad + x^T dy``) instead of
    returning it for autograd to add: one pass over the weights per backward instead of three
    (write a fresh gradient, read it and the sum, write the sum), and no fresh gradient held.
    ``dx = dy W^T`` and the bias gradient are returned as usual."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.param = weight  # the leaf itself: its .grad is written in backward
        ctx.bias_columns = None if bias is None else bias.shape[1]
        return column_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, gy):
        # under autocast the GEMMs would run (and give the gradient) in bfloat16; the sum
        # lives in the weight's dtype, so they run in it
        with torch.autocast(gy.device.type, enabled=False):
            return _IntoGrad._backward(ctx, gy)

    @staticmethod
    def _backward(ctx, gy):
        x, weight = ctx.saved_tensors
        k, n, b, d_in = x.shape
        c, d_out = weight.shape[1], weight.shape[3]
        rows = n * b if c == 1 else b
        # in the weight's dtype (a copy only under autocast)
        gys = gy.reshape(k * c, rows, d_out).to(weight.dtype)
        gx = None
        if ctx.needs_input_grad[0]:
            wt = weight.reshape(k * c, d_in, d_out).transpose(1, 2)  # a view: no copy
            gx = torch.bmm(gys, wt).view(k, n, b, d_in)
        param = ctx.param
        xt = x.reshape(k * c, rows, d_in).transpose(1, 2).to(weight.dtype)
        if param.grad is None:
            param.grad = torch.bmm(xt, gys).view(param.shape)
        else:
            param.grad.view(k * c, d_in, d_out).baddbmm_(xt, gys)
        gb = None
        if ctx.bias_columns is not None:
            gb = gy.sum(dim=(2,) if ctx.bias_columns == n else (1, 2), keepdim=True)
        return gx, None, gb


def column_linear_into_grad(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:func:`column_linear` whose backward accumulates ``dL/dW = x^T dy`` into
    ``weight.grad`` inside the weight-gradient GEMM (``weight`` must be a leaf: a
    parameter). The same sums as autograd's accumulation, one pass instead of three; but
    only ``.backward()`` sees the weight's gradient (``torch.autograd.grad`` gets none), so
    the local rules use it inside their updates only (:func:`weight_grads_in_gemm`)."""
    return _IntoGrad.apply(x, weight, bias)


_IN_GEMM = [False]


class weight_grads_in_gemm:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Within this context :class:`~bioglom.columns.ColumnLinear` layers accumulate their
    weight gradients in the GEMM (:func:`column_linear_into_grad`). Set by the local rules
    around their per-step ``backward`` calls (not thread-safe; one update at a time)."""

    def __enter__(self):
        self._before = _IN_GEMM[0]
        _IN_GEMM[0] = True
        return self

    def __exit__(self, *exc):
        _IN_GEMM[0] = self._before
        return False


def grads_in_gemm() -> bool:
    """Whether :class:`weight_grads_in_gemm` is active."""
    return _IN_GEMM[0]


def column_linear_fa(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor) -> Tensor:
    """:func:`column_linear` with feedback alignment in the backward pass.

    Forward: ``y = x W + b``. Backward: ``dW = x^T dy``, ``db = sum dy`` (summed over columns
    when shared), but ``dx = dy F^T`` with the fixed ``feedback`` matrix ``F`` (same shape as
    ``W``) in place of ``W^T``: the error reaches the hidden layers without weight transport.
    """
    return _FeedbackAlignment.apply(x, weight, bias, feedback)


def group_contrast(
    pred: Tensor,
    target: Tensor,
    groups: Tensor,
    *,
    loss: str = "margin",
    temperature: float = 0.1,
    margin: float = 0.2,
    image_negatives: bool = True,
    balance: bool = False,
    shared_background: bool = False,
) -> Tensor:
    """Supervised contrast of one level's predictions against the groups of their own image.

    ``pred`` and ``target`` are ``[N, B, d]``: a net's predictions at one level and the
    detached consensus of that level; ``groups`` ``[B, N]`` holds each column's ground-truth
    group in its image (an object or a part; 0, the background, is a group like any other).
    With ``z = pred / |pred|`` and the prototype of group ``g`` of image ``b``

    ``c_bg = u(sum_{x in g} target(x, b))``,  ``u(v) = v / |v|``,

    column ``x`` of image ``b`` has one positive, ``c_{b, g(x,b)}``, and as negatives the
    prototypes of the other groups of image ``b`` and, with ``image_negatives``, the state of
    the same column in every other image, ``u(target(x, b'))`` (which penalises a code of
    location alone: the same column in another image lies in another group) -- except, with
    ``shared_background``, where the column is background (group 0) in both images: the
    background is one kind of thing in every image, objects and parts are instances. Then

    * ``margin``: ``l = (1 - z . c_own) + mean_negatives relu(z . n - margin)``: the prediction
      points at its own group's prototype and at most ``margin`` (cosine) toward any negative
      -- an absolute bound, so that a component common to every column of an image cannot
      carry the differences; with ``balance`` the mean is taken over each kind of negative
      apart (the image's other groups; the other images) and the two are added, so that the
      few other objects of an image weigh as much as the many other images;
    * ``infonce``: ``l = -log softmax_own(z . [c_own, negatives] / temperature)``.

    Returns ``[N]``: each column's loss, averaged over its images. The gradient reaches
    ``pred`` only (``target`` is detached), so the loss of column ``x`` trains nothing but the
    net that made ``pred(x)``: the targets are what the columns' own consensus holds.
    """
    if loss not in ("margin", "infonce"):
        raise ValueError(f"loss must be 'margin' or 'infonce', got loss={loss!r}")
    N, B, _ = pred.shape
    if groups.shape != (B, N):
        raise ValueError(f"groups must be [B, N] = [{B}, {N}], got {list(groups.shape)}")
    g = groups.to(pred.device).long().T  # [N, B]
    z = pred / pred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t = target.detach()
    one_hot = torch.nn.functional.one_hot(g, int(g.max()) + 1).to(t.dtype)  # [N, B, G]
    sums = torch.einsum("nbg,nbd->bgd", one_hot, t)
    protos = sums / sums.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [B, G, d]
    present = one_hot.sum(0) > 0  # [B, G]
    cos_g = torch.einsum("nbd,bgd->nbg", z, protos)  # [N, B, G]
    own = torch.gather(cos_g, 2, g[..., None]).squeeze(-1)  # [N, B]
    negative = present[None].expand_as(cos_g).clone()
    negative.scatter_(2, g[..., None], False)  # other groups of the same image
    cos = [cos_g]
    masks = [negative]
    if image_negatives and B > 1:
        tn = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cos.append(torch.einsum("nbd,ncd->nbc", z, tn))  # the same column, image c
        other = ~torch.eye(B, dtype=torch.bool, device=pred.device)
        other = other[None].expand(N, B, B)
        if shared_background:  # no push between two images' background at one column
            background = g == 0  # [N, B]
            other = other & ~(background[:, :, None] & background[:, None, :])
        masks.append(other)
    cos_all, neg = torch.cat(cos, -1), torch.cat(masks, -1)
    if loss == "margin":
        hinge = torch.relu(cos_all - margin) * neg
        if balance:  # one mean per kind of negative: the image's other groups, other images
            G = cos_g.shape[-1]
            per = 1 - own
            for part in (slice(0, G), slice(G, None)):
                count = neg[..., part].sum(-1).clamp_min(1)
                per = per + hinge[..., part].sum(-1) / count
        else:
            per = (1 - own) + hinge.sum(-1) / neg.sum(-1).clamp_min(1)
    else:
        logits = torch.where(neg, cos_all / temperature, torch.full_like(cos_all, -math.inf))
        logits = torch.cat([own[..., None] / temperature, logits], -1)
        per = torch.logsumexp(logits, -1) - own / temperature
    return per.mean(1)


def chosen_contrast(
    pred: Tensor,
    target: Tensor,
    state: Tensor,
    index: Tensor,
    valid: Tensor,
    beta: float | Tensor,
    *,
    positives: int = 2,
    negatives: int = 4,
    temperature: float = 0.1,
    image_negatives: bool = True,
    rank: Tensor | None = None,
) -> Tensor:
    """Contrast of one level's predictions against neighbours the column chooses itself (§7).

    §7: a column is "free to choose which embeddings at other locations it should resemble".
    Column ``x`` of image ``b`` ranks its valid neighbours ``y != x`` by the eq. 3.1 logit
    ``beta state(x) . state(y)`` (the attention it gives them) -- or, given ``rank``, by
    ``rank(x) . rank(y)`` (common fate, §11: ``rank = u(e*(t+1) - e(t))``, the direction in
    which each column's embedding changes over the step); the ``positives`` highest are
    its positives ``P``, the ``negatives`` lowest of the rest its negatives ``Q`` (fewer where
    it has fewer neighbours; positives first). With ``z = u(pred(x, b))``, ``u(v) = v / |v|``,
    and the detached consensus ``target``:

    ``l(x, b) = -log [ sum_{y in P} exp(z . u(target(y, b)) / T) / Z ]``,
    ``Z = sum_{y in P u Q} exp(z . u(target(y, b)) / T)
    + [image_negatives] sum_{b' != b} exp(z . u(target(x, b')) / T)``

    -- InfoNCE with several positives; the same column in the other images of the batch is a
    negative against codes of location alone. A column without a valid positive contributes 0.

    Parameters
    ----------
    pred : ``[N, B, d]`` or ``[P, N, B, d]``: one net's (or ``P`` nets') predictions at one
        level, the only input with a gradient; the ``P`` losses share one ranking and are summed
    target : ``[N, B, d]``, the consensus ``e*(t+1)`` of that level (detached here)
    state : ``[N, B, d]``, the state ``e(t)`` the attention was computed from (detached here)
    index, valid : ``[N, M]`` the level's neighbourhood (the column itself is never chosen)
    beta : the level's inverse temperature at this step
    rank : ``[N, B, d']`` or None: vectors whose dot products rank the neighbours instead of
        the state's logits (detached here)

    Returns
    -------
    ``[N]``: each column's loss, averaged over its images
    """
    preds = pred if pred.dim() == 4 else pred[None]
    _, N, B, d = preds.shape
    M = index.shape[1]
    s, t = state.detach(), target.detach()
    ok = valid & (index != torch.arange(N, device=index.device)[:, None])  # [N, M]
    rows = torch.arange(N, device=index.device)[:, None]
    if rank is None:
        st = s.transpose(0, 1)  # [B, N, d]
        logits = (beta * torch.bmm(st, st.transpose(1, 2)))[:, rows, index]  # [B, N, M]
    else:
        rt = rank.detach().transpose(0, 1)  # [B, N, d']
        logits = torch.bmm(rt, rt.transpose(1, 2))[:, rows, index]
    logits = logits.permute(1, 0, 2).masked_fill(~ok[:, None, :], float("-inf"))  # [N, B, M]
    kp, kn = min(positives, M), min(negatives, M)
    top = logits.topk(kp, dim=-1)  # positives: the highest, invalid ones last (-inf)
    low = logits.masked_fill(~ok[:, None, :], float("inf")).topk(kn, dim=-1, largest=False)
    count = ok.sum(-1)[:, None, None]  # [N, 1, 1] valid neighbours
    is_pos = torch.isfinite(top.values)
    # the j-th lowest is a negative if it is valid and not among the top kp
    j = torch.arange(kn, device=pred.device)[None, None, :]
    is_neg = j < count - torch.clamp(count, max=kp)
    cols = torch.cat([top.indices, low.indices], -1)  # [N, B, kp + kn] positions in the window
    chosen = torch.gather(index[:, None, :].expand(N, B, M), 2, cols)  # column ids
    u = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [N, B, d]
    images = torch.arange(B, device=pred.device)[None, :, None]
    uc = u[chosen, images]  # [N, B, kp + kn, d]
    z = preds / preds.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [P, N, B, d]
    cos = torch.einsum("pnbd,nbkd->pnbk", z, uc) / temperature
    mask = torch.cat([is_pos, is_neg.expand(N, B, kn)], -1)[None]
    neg_inf = torch.full_like(cos, float("-inf"))
    pos_logits = torch.where(mask[..., :kp], cos[..., :kp], neg_inf[..., :kp])
    all_logits = torch.where(mask, cos, neg_inf)
    if image_negatives and B > 1:
        other = torch.einsum("pnbd,ncd->pnbc", z, u) / temperature  # same column, image c
        eye = torch.eye(B, dtype=torch.bool, device=pred.device)
        all_logits = torch.cat([all_logits, other.masked_fill(eye, float("-inf"))], -1)
    has_pos = is_pos.any(-1).expand(N, B)[None]
    per = torch.logsumexp(all_logits, -1) - torch.logsumexp(pos_logits, -1)
    per = torch.where(has_pos, per, torch.zeros_like(per))
    return per.mean(-1).sum(0)


def sinkhorn_image(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Balanced soft assignment of each image's columns to prototypes (Sinkhorn-Knopp, as SwAV).

    ``scores`` ``[N, B, P]`` (column-prototype similarities). Per image ``b``, starting from
    ``Q = exp(scores / epsilon)``, alternately rescale each prototype's total mass over the
    columns to ``N / P`` and each column's mass to 1, ``iterations`` times (ending on the
    columns): every column is a distribution over prototypes and the prototypes share the
    image's columns nearly equally -- a split that no code common to all of an image's columns
    can satisfy. Computed in the log domain; returns ``[N, B, P]`` rows summing to 1.
    """
    N, _, P = scores.shape
    log_q = scores / epsilon
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + math.log(N / P)
        log_q = log_q - torch.logsumexp(log_q, dim=2, keepdim=True)
    return log_q.exp()


def prototype_loss(
    pred: Tensor,
    target: Tensor,
    prototypes: Tensor,
    *,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
) -> Tensor:
    """Cross-entropy of a column's prediction against the balanced assignment of the consensus.

    With ``u(v) = v / |v|``, fixed unit prototypes ``C`` ``[P, d]``, the detached consensus
    ``target`` and its per-image balanced assignment ``q = sinkhorn_image(u(target) C^T)``:

    ``l(x, b) = -sum_p q(x, b, p) log softmax_p(u(pred(x, b)) . C_p / temperature)``

    ``pred`` ``[N, B, d]`` or ``[P', N, B, d]`` (several nets' predictions, losses summed);
    returns ``[N]``, each column's loss averaged over its images. ``q`` is a value (no gradient)
    and the prototypes are fixed, so the gradient of column ``x``'s loss reaches ``pred(x)``
    only.
    """
    preds = pred if pred.dim() == 4 else pred[None]
    t = target.detach()
    c = prototypes.detach()
    u = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    q = sinkhorn_image(u @ c.T, epsilon, iterations)  # [N, B, P]
    z = preds / preds.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    logp = torch.log_softmax(z @ c.T / temperature, dim=-1)  # [P', N, B, P]
    return -(q[None] * logp).sum(-1).mean(-1).sum(0)
