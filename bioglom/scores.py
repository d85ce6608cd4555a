"""Islands scored against ground truth: ARI, FG-ARI, matched IoU, nesting (docs/design.md §6).

GLOM claims that islands of agreeing columns *are* the parse tree (§1, §2, §6): at a part level
the islands should be the parts, at an object level the objects, and each island should lie
inside one island of the level above. Where the data has pixel masks (the embedded scenes, a
user's file with ``part_masks`` / ``object_masks``), the masks are first turned into one label
per column by majority over the column's patch (:func:`column_labels`); the scores below then
compare two labelings of the same columns, one image at a time.

With ``n_ij`` the contingency table of true segment ``i`` against island ``j`` over ``n``
columns, ``a_i = sum_j n_ij``, ``b_j = sum_i n_ij`` and ``C(x) = x (x - 1) / 2`` (pairs):

* ARI (Hubert & Arabie 1985)::

      index = sum_ij C(n_ij),  expected = sum_i C(a_i) sum_j C(b_j) / C(n),
      ARI = (index - expected) / ((sum_i C(a_i) + sum_j C(b_j)) / 2 - expected)

  1 for the same partition (labels permuted or not), about 0 for a chance one. The
  denominator is 0 only when both labelings are one cluster, or both all singletons: the
  partitions are then identical and ARI is 1.
* FG-ARI: ARI over the columns whose true label is not background (label 0), as in the
  object-discovery literature (e.g. Greff et al. 2019, Locatello et al. 2020); NaN for an image
  with fewer than two foreground columns.
* mIoU: the mean over true segments (background excluded unless asked) of the intersection over
  union with the island matched to it; islands and segments are matched one-to-one to maximise
  the summed IoU (Hungarian algorithm); a segment left without an island scores 0.
* nesting: for each island at level ``l``, the largest share of its columns that lies inside a
  single island at level ``l + 1``; averaged over islands. 1 when every island nests. A level
  above that collapsed to one island makes it 1 trivially: read it with the island counts.
* ARI across images: the ARI between the islands of image ``b`` and of image ``b + 1`` (the
  same level, cyclically over the batch), averaged. 1 when every image gets the same partition:
  the islands then encode location, not the image. It is also 1 when every image is all
  singletons or one island, so read it with the island counts. Read every score above with
  it: on the embedded scenes a fixed partition of the grid into 2x2 blocks scores an object
  FG-ARI of about 0.8, since objects tend to lie in different quarters of the image.
* weighted nesting (docs/design.md §10): the share of the columns of the level-``l`` islands of
  two or more columns that lie in the level-``l + 1`` island holding most of their island,

      wnesting = sum_{i: a_i >= 2} max_j n_ij / sum_{i: a_i >= 2} a_i

  with ``n_ij`` the table of level-``l`` island ``i`` against level-``l + 1`` island ``j``. A
  single column nests trivially, so single-column islands are left out; weighting by size
  keeps many small islands from outvoting a few large ones. An island of ``a`` columns has a
  share of at least ``1 / a``, so two unrelated partitions into islands of two columns still
  score about 0.5: read it against its mismatched control.

The mismatched-image control (docs/design.md §10) of any per-image score ``s`` (FG-ARI, ARI,
mIoU, weighted nesting) scores each image's truth against the islands of another image,

    delta = mean_b s(truth_b, islands_b) - mean_b s(truth_b, islands_pi(b)),
    pi(b) = (b + 1) mod B

(a fixed derangement, :func:`derangement`, so that results are reproducible; means over the
images where the score is defined, which for these four scores depends on ``truth_b`` alone,
so both means run over the same images). It is exactly 0 for any partition that ignores the
image (fixed blocks, one island, all singletons, k-means on position): such a partition is the
same in every image, so both means add up the same numbers (the same partition under other
label names in different images gives 0 up to rounding). A learned partition only follows the
image where its delta is clearly above 0; its raw score alone says nothing about that. For
nesting the level-``l + 1`` islands come from image ``pi(b)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "Controlled",
    "adjusted_rand_index",
    "change_cosines",
    "changed_patches",
    "column_labels",
    "column_purity",
    "derangement",
    "fg_ari",
    "matched_iou",
    "mismatched_control",
    "nesting",
    "object_cosines",
    "object_misses",
    "pair_cosines",
    "score_islands",
    "track_islands",
    "weighted_nesting",
]


def _pairs(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2.0


def _contingency(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``n_ij`` of two flat labelings (any integer ids)."""
    _, t = np.unique(true, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    t, p = t.reshape(-1), p.reshape(-1)
    table = np.zeros((t.max() + 1, p.max() + 1), dtype=np.float64)
    np.add.at(table, (t, p), 1.0)
    return table


def adjusted_rand_index(true: np.ndarray, pred: np.ndarray) -> float:
    """ARI of two labelings of the same items (flattened); see the module docstring.

    NaN for fewer than two items (no pairs to count).
    """
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"labelings differ in size: {true.size} and {pred.size}")
    n = true.size
    if n < 2:
        return float("nan")
    table = _contingency(true, pred)
    index = _pairs(table).sum()
    sum_a = _pairs(table.sum(1)).sum()
    sum_b = _pairs(table.sum(0)).sum()
    expected = sum_a * sum_b / _pairs(np.float64(n))
    top = (sum_a + sum_b) / 2.0
    if top == expected:  # both one cluster, or both all singletons: the same partition
        return 1.0
    return float((index - expected) / (top - expected))


def fg_ari(true: np.ndarray, pred: np.ndarray, background: int = 0) -> float:
    """ARI over the items whose true label is not ``background``; NaN if fewer than two."""
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"labelings differ in size: {true.size} and {pred.size}")
    fg = true != background
    if fg.sum() < 2:
        return float("nan")
    return adjusted_rand_index(true[fg], pred[fg])


def matched_iou(true: np.ndarray, pred: np.ndarray, background: int | None = 0) -> float:
    """Mean IoU of the true segments with Hungarian-matched islands; NaN if no segment.

    ``background``: the true label left out of the mean (it still counts in the unions);
    None keeps every segment.
    """
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"labelings differ in size: {true.size} and {pred.size}")
    t_ids = np.unique(true)
    table = _contingency(true, pred)  # rows in the order of t_ids
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    iou = table / union
    keep = np.ones(len(t_ids), dtype=bool) if background is None else t_ids != background
    iou = iou[keep]
    if iou.shape[0] == 0:
        return float("nan")
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / iou.shape[0])


def nesting(lower: np.ndarray, upper: np.ndarray) -> float:
    """Mean over the islands of ``lower`` of the largest share inside one island of ``upper``.

    ``lower`` and ``upper`` label the same columns (one image, levels ``l`` and ``l + 1``).
    """
    lower, upper = np.asarray(lower).reshape(-1), np.asarray(upper).reshape(-1)
    if lower.shape != upper.shape:
        raise ValueError(f"labelings differ in size: {lower.size} and {upper.size}")
    table = _contingency(lower, upper)
    return float((table.max(1) / table.sum(1)).mean())


def weighted_nesting(lower: np.ndarray, upper: np.ndarray, min_size: int = 2) -> float:
    """Share of the columns of ``lower``'s islands of ``min_size`` or more columns that lie in
    the island of ``upper`` holding most of their island (module docstring); NaN when no
    island is that large.

    ``sum_{i: a_i >= min_size} max_j n_ij / sum_{i: a_i >= min_size} a_i``, with ``n_ij`` the
    contingency table of ``lower`` (rows, island sizes ``a_i``) against ``upper``.
    """
    lower, upper = np.asarray(lower).reshape(-1), np.asarray(upper).reshape(-1)
    if lower.shape != upper.shape:
        raise ValueError(f"labelings differ in size: {lower.size} and {upper.size}")
    table = _contingency(lower, upper)
    size = table.sum(1)
    keep = size >= min_size
    if not keep.any():
        return float("nan")
    return float(table.max(1)[keep].sum() / size[keep].sum())


def derangement(n: int) -> np.ndarray:
    """The fixed derangement of the mismatched-image control: ``pi(b) = (b + 1) mod n``.

    Every image is paired with the next one (the last with the first), never with itself;
    deterministic, so a control is reproducible. ``n`` must be at least 2.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 images, got {n}")
    return (np.arange(n) + 1) % n


class Controlled(NamedTuple):
    """A score beside its mismatched-image control (module docstring).

    ``score = mean_b s(truth_b, islands_b)``, ``mismatched = mean_b s(truth_b,
    islands_pi(b))``, ``delta = score - mismatched``; means over the images where ``s`` is
    defined (not NaN). ``mismatched`` and ``delta`` are NaN for a single image.
    """

    score: float
    mismatched: float
    delta: float


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].sum() / ok.sum()) if ok.any() else float("nan")


def mismatched_control(
    score: Callable[[np.ndarray, np.ndarray], float],
    truth: np.ndarray,
    islands: np.ndarray,
) -> Controlled:
    """A per-image score and its mismatched-image control.

    ``delta = mean_b score(truth_b, islands_b) - mean_b score(truth_b, islands_pi(b))`` with
    ``pi(b) = (b + 1) mod B`` (:func:`derangement`). Exactly 0 for islands that are the same
    in every image, whatever the truth.

    Parameters
    ----------
    score : ``score(truth_b, islands_b) -> float`` of one image, e.g. :func:`fg_ari`,
        :func:`adjusted_rand_index`, :func:`matched_iou`, :func:`weighted_nesting` (then
        ``truth`` is the lower level's islands and ``islands`` the upper level's)
    truth, islands : ``[B, ...]``, one labeling per image
    """
    t, p = np.asarray(truth), np.asarray(islands)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"truth has {t.shape[0]} images, the islands {p.shape[0]}")
    B = t.shape[0]
    raw = _nanmean([score(t[b], p[b]) for b in range(B)])
    if B < 2:
        return Controlled(raw, float("nan"), float("nan"))
    pi = derangement(B)
    mismatched = _nanmean([score(t[b], p[pi[b]]) for b in range(B)])
    return Controlled(raw, mismatched, raw - mismatched)


def column_labels(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """One label per column: the most frequent mask id over the column's patch.

    Parameters
    ----------
    masks : int ``[B, H, W]`` pixel masks (0 = background)
    grid : ``(H_g, W_g)``; ``H`` and ``W`` must be multiples of it

    Returns
    -------
    int64 ``[B, H_g, W_g]``; ties go to the smaller id.
    """
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be [B, H, W], got shape {m.shape}")
    B, H, W = m.shape
    hg, wg = grid
    if H % hg or W % wg:
        raise ValueError(f"mask size {H}x{W} is not a multiple of the grid {hg}x{wg}")
    if m.min() < 0:
        raise ValueError(f"mask ids must be >= 0, got {m.min()}")
    ph, pw = H // hg, W // wg
    patches = m.reshape(B, hg, ph, wg, pw).transpose(0, 1, 3, 2, 4).reshape(B * hg * wg, -1)
    n_ids = int(m.max()) + 1
    counts = np.zeros((patches.shape[0], n_ids), dtype=np.int64)
    np.add.at(counts, (np.arange(patches.shape[0])[:, None], patches), 1)
    return counts.argmax(1).reshape(B, hg, wg).astype(np.int64)


def column_purity(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The share of each column's patch that belongs to the column's own label.

    With ``g(x)`` the label of :func:`column_labels` (the patch's most frequent mask id),
    ``purity(x) = |{p in patch(x): mask(p) = g(x)}| / |patch(x)|``: 1 inside an object or the
    background, less on an outline, where a patch mixes two of them. ``masks`` and ``grid`` as
    for :func:`column_labels`; returns float64 ``[B, H_g, W_g]`` in ``(0, 1]``.
    """
    labels = column_labels(masks, grid)  # checks the shapes
    m = np.asarray(masks)
    B, H, W = m.shape
    hg, wg = grid
    own = np.repeat(np.repeat(labels, H // hg, axis=1), W // wg, axis=2) == m
    return own.reshape(B, hg, H // hg, wg, W // wg).mean(axis=(2, 4))


def score_islands(
    labels: np.ndarray, truth: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every score per level, averaged over images (NaN-aware).

    Parameters
    ----------
    labels : ``[K, B, H_g, W_g]`` islands
    truth : name -> ``[B, H_g, W_g]`` column labels, e.g. ``{"obj": ..., "part": ...}``

    Returns
    -------
    ``count``, ``size`` (mean columns per island), ``ari_across`` (NaN for one image) ``[K]``;
    ``nesting``, ``wnesting`` (:func:`weighted_nesting`) and its mismatched-image control
    ``dwnesting`` ``[K - 1]``; and for each truth name ``t``: ``fgari_t``, ``ari_t``,
    ``miou_t`` and their mismatched-image controls ``dfgari_t``, ``dari_t``, ``dmiou_t``
    ``[K]`` (:func:`mismatched_control`; NaN for one image).
    """
    lab = np.asarray(labels)
    K, B = lab.shape[:2]
    flat = lab.reshape(K, B, -1)
    count = flat.max(-1) + 1
    out = {
        "count": count.mean(1),
        "size": (flat.shape[-1] / count).mean(1),
        "nesting": np.array(
            [np.mean([nesting(flat[k, b], flat[k + 1, b]) for b in range(B)]) for k in range(K - 1)]
        ),
        "ari_across": np.array(
            [
                np.mean([adjusted_rand_index(flat[k, b], flat[k, (b + 1) % B]) for b in range(B)])
                if B > 1
                else np.nan
                for k in range(K)
            ]
        ),
    }
    wnest = [mismatched_control(weighted_nesting, flat[k], flat[k + 1]) for k in range(K - 1)]
    out["wnesting"] = np.array([c.score for c in wnest])
    out["dwnesting"] = np.array([c.delta for c in wnest])
    for name, t in (truth or {}).items():
        t = np.asarray(t).reshape(B, -1)
        for score, fn in (("fgari", fg_ari), ("ari", adjusted_rand_index), ("miou", matched_iou)):
            per = [mismatched_control(fn, t, flat[k]) for k in range(K)]
            out[f"{score}_{name}"] = np.array([c.score for c in per])
            out[f"d{score}_{name}"] = np.array([c.delta for c in per])
    return out


def object_cosines(state: np.ndarray, objects: np.ndarray) -> dict[str, np.ndarray]:
    """How alike the embeddings of one object's columns are, against two objects' (issue 14).

    For level ``k`` and image ``b``, with ``u = e / |e|`` over the foreground columns
    (``objects > 0``):

    * ``within``: the mean over objects of the mean cosine ``u(x) . u(y)`` over pairs ``x != y``
      of the same object (objects of one column left out);
    * ``between``: the mean cosine over pairs of columns of different objects (images with one
      object left out).

    Each averaged over images (NaN where no image has such pairs). Islands can tell two objects
    apart by their vectors only where ``between`` is clearly below ``within``; objects that
    share one vector (``between`` = ``within``) are apart only where the background cuts them.

    Parameters
    ----------
    state : ``[K, N, B, d]`` settled embeddings
    objects : int ``[B, H_g, W_g]`` (or ``[B, N]``) object id of each column, 0 = background

    Returns
    -------
    ``{"within": [K], "between": [K]}``
    """
    e = np.asarray(state, dtype=np.float64)
    K, N, B, _ = e.shape
    lab = np.asarray(objects).reshape(B, N)
    u = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    within = np.full((K, B), np.nan)
    between = np.full((K, B), np.nan)
    for b in range(B):
        ids = [g for g in np.unique(lab[b]) if g > 0]
        for k in range(K):
            cos = u[k, :, b] @ u[k, :, b].T  # [N, N]
            per_object, cross = [], []
            for i, g in enumerate(ids):
                m = lab[b] == g
                n = int(m.sum())
                if n > 1:
                    block = cos[np.ix_(m, m)]
                    per_object.append((block.sum() - np.trace(block)) / (n * (n - 1)))
                for h in ids[i + 1 :]:
                    cross.append(cos[np.ix_(m, lab[b] == h)].ravel())
            if per_object:
                within[k, b] = np.mean(per_object)
            if cross:
                between[k, b] = np.concatenate(cross).mean()
    return {"within": _nanmean_rows(within), "between": _nanmean_rows(between)}


#: the kinds of column pairs :func:`pair_cosines` (and :func:`change_cosines`) tell apart
PAIR_KINDS = ("same_object", "two_objects", "object_background", "background")


def pair_cosines(
    vectors: np.ndarray,
    objects: np.ndarray,
    grid: tuple[int, int],
    radius: int = 1,
) -> dict[str, np.ndarray]:
    """How alike neighbouring columns' vectors are, by the kind of pair (§11, issue 14).

    With ``u(v) = v / |v|`` (0 where ``v`` is 0), the mean of ``u(v_t(x)) . u(v_t(y))`` over the
    pairs ``x != y`` of the grid at most ``radius`` apart in each direction (each pair once;
    ``radius = 1``: the 8 neighbours), over the times ``t`` and the images, for each kind of
    pair by the columns' objects at time ``t``: ``same_object`` (one object), ``two_objects``
    (two objects), ``object_background`` (one of each) and ``background``.

    Parameters
    ----------
    vectors : ``[T, K, N, B, d]`` one vector per time, level, column and image (the changes of
        :func:`change_cosines`, or any other per-column signal)
    objects : int ``[T, B, H_g, W_g]`` (or ``[T, B, N]``) object id of each column at each
        time, 0 = background
    grid : ``(H_g, W_g)`` with ``H_g W_g = N``
    radius : the largest offset of a pair along each axis (a window, as eq. 3.1's)

    Returns
    -------
    ``{kind: [K]}`` for each kind of :data:`PAIR_KINDS` (NaN where no such pair occurs)
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 5:
        raise ValueError(f"vectors must be [T, K, N, B, d], got shape {v.shape}")
    T, K, N, B = v.shape[:4]
    H, W = grid
    if H * W != N:
        raise ValueError(f"grid {grid} does not hold the vectors' N = {N} columns")
    lab = np.asarray(objects).reshape(-1, B, N)
    if lab.shape[0] != T:
        raise ValueError(f"objects: expected one labelling per time, T = {T}, got {lab.shape[0]}")
    if radius < 1:
        raise ValueError(f"radius: expected >= 1, got {radius}")
    ids = np.arange(N).reshape(H, W)
    a, b = [], []
    for dy in range(0, radius + 1):  # offsets (dy, dx) with dy > 0, or dy = 0 and dx > 0: once
        for dx in range(-radius, radius + 1):
            if (dy, dx) <= (0, 0) or abs(dy) >= H or abs(dx) >= W:
                continue
            x0, x1 = max(0, -dx), W - max(0, dx)
            a.append(ids[: H - dy, x0:x1].ravel())
            b.append(ids[dy:, x0 + dx : x1 + dx].ravel())
    a, b = np.concatenate(a), np.concatenate(b)
    sums = {kind: np.zeros(K) for kind in PAIR_KINDS}
    counts = {kind: 0 for kind in PAIR_KINDS}
    for t in range(T):
        u = v[t] / np.maximum(np.linalg.norm(v[t], axis=-1, keepdims=True), 1e-12)
        cos = (u[:, a] * u[:, b]).sum(-1)  # [K, P, B]
        la, lb = lab[t][:, a].T, lab[t][:, b].T  # [P, B]
        kinds = {
            "same_object": (la > 0) & (la == lb),
            "two_objects": (la > 0) & (lb > 0) & (la != lb),
            "object_background": (la > 0) != (lb > 0),
            "background": (la == 0) & (lb == 0),
        }
        for kind, mask in kinds.items():
            sums[kind] += (cos * mask[None]).sum((1, 2))
            counts[kind] += int(mask.sum())
    return {
        kind: sums[kind] / counts[kind] if counts[kind] else np.full(K, np.nan)
        for kind in PAIR_KINDS
    }


def change_cosines(
    trajectory: np.ndarray,
    objects: np.ndarray,
    grid: tuple[int, int],
    skip: int = 1,
    radius: int = 1,
) -> dict[str, np.ndarray]:
    """Common fate in the embeddings: how alike neighbouring columns' changes are (§11).

    :func:`pair_cosines` of the changes ``D_t(x) = e_{t+1}(x) - e_t(x)`` of column ``x`` at
    each level over the steps ``t >= skip``, each with the columns' objects in the frame step
    ``t`` saw. A grouping by common fate can follow the objects at a level only where
    ``same_object`` is clearly above ``two_objects`` and ``object_background``.

    Parameters
    ----------
    trajectory : ``[T+1, K, N, B, d]`` states of one settle (``Glom.settle(...,
        return_trajectory=True)``)
    objects : int ``[T, B, H_g, W_g]`` (or ``[T, B, N]``) object id of each column in the frame
        step ``t`` saw, 0 = background
    grid : ``(H_g, W_g)`` with ``H_g W_g = N``
    skip : the first step counted (step 0 changes from the initial state)
    radius : the largest offset of a pair along each axis (a window, as eq. 3.1's)

    Returns
    -------
    ``{kind: [K]}`` for each kind of :data:`PAIR_KINDS` (NaN where no such pair occurs)
    """
    traj = np.asarray(trajectory, dtype=np.float64)
    T = traj.shape[0] - 1
    B, N = traj.shape[3], traj.shape[2]
    lab = np.asarray(objects).reshape(-1, B, N)
    if lab.shape[0] != T:
        raise ValueError(f"objects: expected one frame per step, T = {T}, got {lab.shape[0]}")
    if not 0 <= skip < T:
        raise ValueError(f"skip: expected 0 <= skip < T = {T}, got {skip}")
    return pair_cosines(np.diff(traj, axis=0)[skip:], lab[skip:], grid, radius)


def changed_patches(frames: np.ndarray, grid: tuple[int, int], tol: float = 1e-6) -> np.ndarray:
    """Which columns see a change of their patch from one frame to the next (§11).

    Column ``x`` changes between frames ``t`` and ``t + 1`` when any pixel value of its patch
    (any channel) differs by more than ``tol``. On flat-coloured objects only the columns on an
    object's (or a part's) outline change when it moves: the interior sees the same colour.

    Parameters
    ----------
    frames : ``[T, B, C, H, W]`` a video
    grid : ``(H_g, W_g)``; ``H`` and ``W`` must be multiples of it

    Returns
    -------
    bool ``[T-1, B, H_g, W_g]``
    """
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 5:
        raise ValueError(f"frames must be [T, B, C, H, W], got shape {f.shape}")
    T, B, C, H, W = f.shape
    hg, wg = grid
    if H % hg or W % wg:
        raise ValueError(f"frame size {H}x{W} is not a multiple of the grid {hg}x{wg}")
    d = np.abs(np.diff(f, axis=0)).reshape(T - 1, B, C, hg, H // hg, wg, W // wg)
    return d.max(axis=(2, 4, 6)) > tol


def object_misses(
    islands: np.ndarray, objects: np.ndarray, purity: np.ndarray | None = None
) -> dict[str, float]:
    """Where one level's islands miss the objects (issue 14): merges and stray columns.

    For each object ``o`` of each image, its *main island* is the island holding most of its
    columns (ties: the smaller id). Returns, over all objects of all images:

    * ``objects``: their number; ``merged``: how many share their main island with the columns
      of another object;
    * ``main_share``: the mean share of an object's columns in its main island;
    * ``stray``: the object columns outside their main island, and of those ``on_edge`` (a
      4-neighbour of a background column), ``single`` (in an island of one column) and
      ``in_background`` (in the main island of the image's background columns);
    * with ``purity`` (:func:`column_purity`): ``mixed``, the object columns whose patch is not
      wholly their object's (``purity < 1``: an outline's mixed patches), and ``mixed_stray``,
      those of them outside their main island; so that the misses of mixed and of pure columns
      can be told apart.

    Parameters
    ----------
    islands : int ``[B, H_g, W_g]`` island labels of one level
    objects : int ``[B, H_g, W_g]`` object id of each column, 0 = background
    purity : optional ``[B, H_g, W_g]`` share of each column's patch in its own label
    """
    isl, obj = np.asarray(islands), np.asarray(objects)
    if isl.shape != obj.shape or isl.ndim != 3:
        raise ValueError(
            f"expected islands and objects [B, H, W] alike, got {isl.shape} and {obj.shape}"
        )
    mixed = None
    if purity is not None:
        pur = np.asarray(purity)
        if pur.shape != obj.shape:
            raise ValueError(f"expected purity {obj.shape} like the objects, got {pur.shape}")
        mixed = pur < 1.0
    fg = obj > 0
    pad = np.pad(fg, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    inner = pad[:, :-2, 1:-1] & pad[:, 2:, 1:-1] & pad[:, 1:-1, :-2] & pad[:, 1:-1, 2:]
    out = dict(objects=0, merged=0, stray=0, on_edge=0, single=0, in_background=0)
    if mixed is not None:
        out.update(mixed=0, mixed_stray=0)
    shares = []
    for b in range(len(isl)):
        ids, counts = np.unique(isl[b], return_counts=True)
        size = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        bg_main = None
        if (~fg[b]).any():
            bi, bc = np.unique(isl[b][~fg[b]], return_counts=True)
            bg_main = bi[bc.argmax()]
        for o in np.unique(obj[b][fg[b]]):
            m = obj[b] == o
            oi, oc = np.unique(isl[b][m], return_counts=True)
            main = oi[oc.argmax()]
            out["objects"] += 1
            shares.append(oc.max() / m.sum())
            others = np.unique(obj[b][(isl[b] == main) & fg[b]])
            out["merged"] += int(len(others) > 1)
            stray = m & (isl[b] != main)
            out["stray"] += int(stray.sum())
            out["on_edge"] += int((stray & ~inner[b]).sum())
            out["single"] += sum(size[int(i)] == 1 for i in isl[b][stray])
            if bg_main is not None:
                out["in_background"] += int((stray & (isl[b] == bg_main)).sum())
            if mixed is not None:
                out["mixed"] += int((m & mixed[b]).sum())
                out["mixed_stray"] += int((stray & mixed[b]).sum())
    return {**{k: float(v) for k, v in out.items()}, "main_share": float(np.mean(shares))}


def track_islands(labels: np.ndarray, vectors: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """How one level's islands follow the objects of a video from frame to frame (§11).

    For object ``o`` of video ``b`` present in frames ``t`` and ``t + 1``, with ``O_t`` its
    columns: its *matched island* ``M_t`` is the island of frame ``t`` with the highest IoU with
    ``O_t`` (ties: the smaller id). Islands carry no name from frame to frame, but an island is
    a vector: the *continuation* ``C`` of ``M_t`` is the island of frame ``t + 1`` whose mean
    vector has the highest cosine with ``M_t``'s mean vector in frame ``t``. Returns, over all
    such (video, object, frame pair):

    * ``track_iou``: mean ``IoU(C, O_{t+1})``: the island that carries the object's vector on
      still covers the object;
    * ``segment_iou``: mean ``IoU(M_{t+1}, O_{t+1})``: the best any island does in that frame
      (an upper bound of ``track_iou``);
    * ``switches``: the share with ``C != M_{t+1}``: the object's vector moved to an island
      that is not the object's best match (an identity switch);
    * ``pairs``: how many were counted.

    Parameters
    ----------
    labels : int ``[T, B, H_g, W_g]`` one level's islands in every frame
    vectors : ``[T, N, B, d]`` the embeddings those islands were made from, ``N = H_g W_g``
    objects : int ``[T, B, H_g, W_g]`` object ids per column, fixed across frames (0:
        background, not an object)
    """
    lab, obj = np.asarray(labels), np.asarray(objects)
    v = np.asarray(vectors, dtype=np.float64)
    T, B = lab.shape[:2]
    if obj.shape != lab.shape or v.shape[:3] != (T, lab[0, 0].size, B):
        raise ValueError(
            f"expected labels and objects [T, B, H_g, W_g] and vectors [T, N, B, d]; got "
            f"{lab.shape}, {obj.shape}, {v.shape}"
        )
    track, segment, switch = [], [], []
    for b in range(B):
        means, ids = [], []
        for t in range(T):
            ids_t, inv = np.unique(lab[t, b].reshape(-1), return_inverse=True)
            m = np.zeros((len(ids_t), v.shape[-1]))
            np.add.at(m, inv, v[t, :, b])
            m /= np.bincount(inv)[:, None]
            means.append(m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12))
            ids.append((ids_t, inv))
        for t in range(T - 1):
            for o in np.unique(obj[t, b]):
                if o == 0 or not (obj[t + 1, b] == o).any():
                    continue
                now = _best_iou(ids[t][1], obj[t, b] == o)
                nxt = _best_iou(ids[t + 1][1], obj[t + 1, b] == o)
                cont = int(np.argmax(means[t + 1] @ means[t][now[0]]))
                inside = (ids[t + 1][1] == cont).reshape(obj[t + 1, b].shape)
                track.append(_iou(inside, obj[t + 1, b] == o))
                segment.append(nxt[1])
                switch.append(float(cont != nxt[0]))
    mean = lambda x: float(np.mean(x)) if x else float("nan")  # noqa: E731
    return {
        "track_iou": mean(track),
        "segment_iou": mean(segment),
        "switches": mean(switch),
        "pairs": float(len(track)),
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _best_iou(inverse: np.ndarray, target: np.ndarray) -> tuple[int, float]:
    """(index, IoU) of the island (index into the frame's sorted ids) with the highest IoU
    with the bool mask ``target``; ties go to the smaller index."""
    t = target.reshape(-1)
    inter = np.bincount(inverse, weights=t.astype(float))
    size = np.bincount(inverse).astype(float)
    iou = inter / (size + t.sum() - inter)
    best = int(np.argmax(iou))
    return best, float(iou[best])


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    return np.array([_nanmean(r) for r in x])
