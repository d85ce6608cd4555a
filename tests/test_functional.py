"""The pure tensor functions against independently derived values (closed forms, brute force)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import cuda, fresh_seed

from bioglom.functional import (
    attention_weights,
    attract_repel_attention,
    column_linear,
    column_linear_fa,
    column_linear_into_grad,
    consensus_gaussian,
    consensus_mean,
    gaussian_neighbours,
    lateral_attention,
    location_encoding,
    neighbour_mask,
    normalise_weights,
    window_attention,
    window_neighbours,
    window_plan,
    window_tile_bias,
)


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def fresh(*shape):
    return torch.randn(
        *shape,
        generator=torch.Generator().manual_seed(fresh_seed()),
    )


# ---------------------------------------------------------------------------------------------
# column_linear


@pytest.mark.parametrize("columns", ["N", 1])
def test_column_linear_equals_per_column_loop(columns):
    """y[k, n] = x[k, n] @ W[k, c(n)] + b[k, c(n)], checked against an explicit Python loop."""
    K, N, B, i, o = 3, 5, 4, 6, 7
    C = N if columns == "N" else 1
    x, W, b = fresh(K, N, B, i), fresh(K, C, i, o), fresh(K, C, 1, o)
    y = column_linear(x, W, b)
    for k in range(K):
        for n in range(N):
            c = n if C == N else 0
            expected = x[k, n] @ W[k, c] + b[k, c, 0]
            torch.testing.assert_close(y[k, n], expected)
    torch.testing.assert_close(column_linear(x, W) + b, y)
    # a bias per column (e.g. bias + location term), for shared and unshared weights alike
    bn = fresh(K, N, 1, o)
    yn = column_linear(x, W, bn)
    for k in range(K):
        for n in range(N):
            c = n if C == N else 0
            torch.testing.assert_close(yn[k, n], x[k, n] @ W[k, c] + bn[k, n, 0])


def test_column_linear_shared_gradient_is_sum_over_columns():
    """With C = 1 the weight gradient is the sum of the per-column gradients (1x1 convolution)."""
    K, N, B, i, o = 2, 6, 3, 4, 5
    x = fresh(K, N, B, i)
    W = fresh(K, 1, i, o).requires_grad_()
    Wu = W.detach().expand(K, N, i, o).clone().requires_grad_()
    g = fresh(K, N, B, o)
    (column_linear(x, W) * g).sum().backward()
    (column_linear(x, Wu) * g).sum().backward()
    torch.testing.assert_close(W.grad[:, 0], Wu.grad.sum(1))


def test_column_linear_rejects_mismatched_weight():
    """A weight whose column dimension is neither N nor 1 is an error naming both shapes."""
    with pytest.raises(ValueError, match="does not fit weight"):
        column_linear(fresh(2, 5, 3, 4), fresh(2, 3, 4, 4))


# ---------------------------------------------------------------------------------------------
# consensus


def test_consensus_mean_closed_form():
    """Mean mode: e* = sum_i a_i c_i / sum_i a_i, per level, computed element by element."""
    K, N, B, d = 3, 4, 2, 5
    cs = [fresh(K, N, B, d) for _ in range(4)]
    a = torch.rand(4, K) + 0.1
    got = consensus_mean(cs, a)
    for k in range(K):
        num = sum(a[i, k] * cs[i][k] for i in range(4))
        torch.testing.assert_close(got[k], num / a[:, k].sum())


def test_consensus_gaussian_equals_numerical_geometric_mean_of_densities():
    """Gaussian mode: the normalised weighted geometric mean of Gaussian densities, computed
    numerically on a fine grid, has the mean and precision the closed form gives."""
    K, N, B, d = 2, 1, 1, 3
    mus = [fresh(K, N, B, d) for _ in range(4)]
    taus = [torch.rand(K, N, B, d) * 3 + 0.2 for _ in range(4)]
    a = torch.rand(4, K) + 0.05
    mu, tau = consensus_gaussian(mus, taus, a)
    grid = torch.linspace(-20, 20, 200001)
    for k in range(K):
        w = a[:, k] / a[:, k].sum()
        for j in range(d):
            logp = sum(
                w[i]
                * (
                    0.5 * torch.log(taus[i][k, 0, 0, j])
                    - 0.5 * taus[i][k, 0, 0, j] * (grid - mus[i][k, 0, 0, j]) ** 2
                )
                for i in range(4)
            )
            p = torch.exp(logp - logp.max())
            p = p / p.sum()
            m = (p * grid).sum()
            var = (p * (grid - m) ** 2).sum()
            assert float(m) == pytest.approx(float(mu[k, 0, 0, j]), abs=1e-6)
            assert float(1 / var) == pytest.approx(float(tau[k, 0, 0, j]), rel=1e-4)


def test_consensus_gaussian_with_equal_precisions_is_the_mean_consensus():
    """With equal precisions everywhere the Gaussian consensus mean is the weighted mean."""
    K, N, B, d = 3, 2, 2, 4
    mus = [fresh(K, N, B, d) for _ in range(4)]
    t = torch.rand(K, N, B, d) + 0.5
    a = torch.rand(4, K) + 0.1
    mu, tau = consensus_gaussian(mus, [t] * 4, a)
    torch.testing.assert_close(mu, consensus_mean(mus, a))
    torch.testing.assert_close(tau, t)


def test_normalise_weights_drops_absent_contributions():
    """Absent contributions get weight exactly 0 and the rest sum to 1 per level."""
    w = torch.rand(4, 3) + 0.1
    present = torch.ones(4, 3, dtype=torch.bool)
    present[1, 2] = False
    a = normalise_weights(w, present)
    assert a[1, 2] == 0
    torch.testing.assert_close(a.sum(0), torch.ones(3))
    torch.testing.assert_close(
        a[:, 2], torch.cat([w[:1, 2], torch.zeros(1), w[2:, 2]]) / (w[:, 2].sum() - w[1, 2])
    )


# ---------------------------------------------------------------------------------------------
# neighbourhoods and attention


def brute_window(grid, r, include_self):
    hg, wg = grid
    out = []
    for x in range(hg * wg):
        rx, cx = divmod(x, wg)
        ys = [
            y
            for y in range(hg * wg)
            if max(abs(y // wg - rx), abs(y % wg - cx)) <= r and (include_self or y != x)
        ]
        out.append(ys)
    return out


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("r", [1, 2])
def test_window_neighbours_match_brute_force(r, include_self):
    """Valid window neighbours are the columns within Chebyshev distance r (self optional)."""
    grid = (4, 5)
    idx, valid = window_neighbours(grid, r, include_self)
    for x, ys in enumerate(brute_window(grid, r, include_self)):
        assert sorted(idx[x][valid[x]].tolist()) == ys


def brute_attention(e, neighbours, beta):
    """eq. 3.1 with Python floats: w_xy = exp(beta e_x.e_y) / sum_z exp(beta e_x.e_z)."""
    N, B, d = e.shape
    w = {}
    for x in range(N):
        for b in range(B):
            logits = {y: beta * float(e[x, b] @ e[y, b]) for y in neighbours[x]}
            mx = max(logits.values())
            z = sum(math.exp(v - mx) for v in logits.values())
            for y, v in logits.items():
                w[x, y, b] = math.exp(v - mx) / z
    return w


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("method", ["dense", "gather"])
def test_attention_equals_eq_3_1_by_brute_force(include_self, method):
    """Weights and the lateral output equal eq. 3.1 computed with explicit loops on a 4x5 grid;
    a non-neighbour -- and the column itself when self-attention is off -- gets weight 0."""
    grid, r, beta = (4, 5), 1, 0.7
    N, B, d = 20, 3, 6
    e = fresh(N, B, d)
    idx, valid = window_neighbours(grid, r, include_self)
    neigh = brute_window(grid, r, include_self)
    bw = brute_attention(e, neigh, beta)
    w = attention_weights(e, idx, valid, beta)
    for x in range(N):
        for m in range(idx.shape[1]):
            y = int(idx[x, m])
            for b in range(B):
                expected = bw.get((x, y, b), 0.0) if valid[x, m] else 0.0
                assert float(w[x, m, b]) == pytest.approx(expected, abs=1e-12)
    out, _ = lateral_attention(e, idx, valid, beta, method=method)
    for x in range(N):
        for b in range(B):
            expected = sum(bw[x, y, b] * e[y, b] for y in neigh[x])
            torch.testing.assert_close(out[x, b], expected)
    if not include_self:
        selfw = torch.stack([w[x][idx[x] == x].sum(0) for x in range(N)])
        assert torch.all(selfw == 0)


def test_attention_excludes_self_even_when_self_is_most_similar():
    """With self-attention off, a column gives its own (identical, most similar) vector no
    weight at all, however large beta: the output is the neighbours' average alone."""
    grid = (1, 3)
    e = torch.tensor([[[10.0, 0.0]], [[0.0, 1.0]], [[0.0, 2.0]]])  # [N=3, B=1, d=2]
    idx, valid = window_neighbours(grid, 1, include_self=False)
    for method in ("dense", "gather"):
        out, _ = lateral_attention(e, idx, valid, beta=50.0, method=method)
        # column 0's only neighbour is column 1
        torch.testing.assert_close(out[0, 0], e[1, 0])


@pytest.mark.parametrize("method", ["dense", "gather"])
def test_lateral_gaussian_is_attention_weighted_geometric_mean(method):
    """Gaussian mode: tau = sum_y w_xy tau_y and mu = sum_y w_xy tau_y mu_y / tau."""
    grid = (3, 3)
    e, t = fresh(9, 2, 4), torch.rand(9, 2, 4) + 0.1
    idx, valid = window_neighbours(grid, 1, True)
    w = attention_weights(e, idx, valid, 0.3)  # [N, M, B]
    mu, tau = lateral_attention(e, idx, valid, 0.3, precision=t, method=method)
    exp_tau = torch.einsum("nmb,nmbd->nbd", w, t[idx])
    exp_mu = torch.einsum("nmb,nmbd->nbd", w, t[idx] * e[idx]) / exp_tau
    torch.testing.assert_close(tau, exp_tau)
    torch.testing.assert_close(mu, exp_mu)


def test_dense_and_gather_agree_on_sampled_neighbourhoods():
    """Both evaluations of the lateral sum give the same result on a random neighbourhood."""
    grid = (6, 6)
    idx, valid = gaussian_neighbours(grid, 7, 1.5, include_self=False)
    e = fresh(36, 4, 5)
    a, _ = lateral_attention(e, idx, valid, 0.4, method="dense")
    b, _ = lateral_attention(e, idx, valid, 0.4, method="gather")
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "grid,r,tile", [((4, 5), 1, 2), ((7, 7), 2, 4), ((5, 9), 3, 4), ((3, 3), 1, 8), ((6, 2), 2, 3)]
)
@pytest.mark.parametrize("include_self", [True, False])
def test_tiled_window_attention_equals_eq_3_1_by_brute_force(grid, r, tile, include_self):
    """The tiled evaluation gives eq. 3.1 computed with explicit loops, on grids whose sides are
    not multiples of the tile and tiles larger than the grid; in gaussian mode it gives
    tau = sum_y w_xy tau_y and mu = sum_y w_xy tau_y mu_y / tau."""
    N, B, d, beta = grid[0] * grid[1], 2, 5, 0.6
    e, t = fresh(N, B, d), torch.rand(N, B, d) + 0.1
    neigh = brute_window(grid, r, include_self)
    bw = brute_attention(e, neigh, beta)
    out, none = window_attention(e, grid, r, beta, tile=tile, include_self=include_self)
    assert none is None
    mu, tau = window_attention(e, grid, r, beta, t, tile=tile, include_self=include_self)
    for x in range(N):
        for b in range(B):
            torch.testing.assert_close(out[x, b], sum(bw[x, y, b] * e[y, b] for y in neigh[x]))
            et = sum(bw[x, y, b] * t[y, b] for y in neigh[x])
            torch.testing.assert_close(tau[x, b], et)
            torch.testing.assert_close(
                mu[x, b], sum(bw[x, y, b] * t[y, b] * e[y, b] for y in neigh[x]) / et
            )


def test_tiled_window_attention_has_the_gradient_of_the_gathered_sum():
    """Back-propagated through (the end-to-end baseline does), the tiled form gives the same
    gradient as the gathered one, and a finite one: padded queries outside the grid add
    nothing."""
    grid, r = (7, 6), 2
    e = fresh(42, 3, 4).requires_grad_(True)
    g = fresh(42, 3, 4)
    idx, valid = window_neighbours(grid, r, include_self=False)
    (ga,) = torch.autograd.grad(
        (lateral_attention(e, idx, valid, 0.5, method="gather")[0] * g).sum(), e
    )
    (gt,) = torch.autograd.grad(
        (window_attention(e, grid, r, 0.5, tile=4, include_self=False)[0] * g).sum(), e
    )
    assert torch.isfinite(gt).all()
    torch.testing.assert_close(gt, ga)


@pytest.mark.gpu
@cuda
def test_tiled_window_attention_on_cuda_matches_cpu():
    """The tiled form on the GPU gives the CPU's result (float64, gaussian mode included)."""
    grid, r = (9, 11), 2
    e, t = fresh(99, 3, 8), torch.rand(99, 3, 8) + 0.1
    mu, tau = window_attention(e, grid, r, 0.4, t, tile=4)
    mu_c, tau_c = window_attention(e.cuda(), grid, r, 0.4, t.cuda(), tile=4)
    torch.testing.assert_close(mu_c.cpu(), mu)
    torch.testing.assert_close(tau_c.cpu(), tau)


def test_window_tile_bias_by_hand():
    """A 1x3 grid, radius 1, tiles of 2: tile 0 holds columns 0, 1 (keys at -1..2), tile 1
    holds column 2 and a padded query (keys at 1..4). Worked out entry by entry."""
    bias = window_tile_bias((1, 3), 1, 2, include_self=False)
    assert bias.shape == (2, 4, 16)  # tiles, T^2 queries, (T + 2r)^2 keys
    # keys are a 4x4 block: row offsets -1..2, column offsets -1..2 from the tile's corner; only
    # key row 1 (grid row 0) is inside the grid
    ok = bias == 0
    row0 = lambda i: ok[i].view(4, 4, 4)[:, 1]  # noqa: E731  [queries, key columns] on grid row 0
    # tile 0: query (0,0) = column 0 sees column 1 (key col 2); query (0,1) = column 1 sees
    # columns 0 and 2 (key cols 1, 3); key col 0 is column -1 (outside)
    assert row0(0)[0].tolist() == [False, False, True, False]
    assert row0(0)[1].tolist() == [False, True, False, True]
    # tile 1: query (0,0) = column 2 sees column 1 (key col 0); query (0,1) is column 3, padding:
    # its whole row stays 0 (finite)
    assert row0(1)[0].tolist() == [True, False, False, False]
    assert ok[1, 1].all()
    # queries on tile row 1 are padding too
    assert ok[:, 2:].all()
    # no key outside grid row 0 is ever open for a real query
    assert not ok[0, :2].view(2, 4, 4)[:, [0, 2, 3]].any()


def test_window_plan_is_dense_only_on_small_grids():
    """Dense N x N logits only while N is small against the tiled work; tiles at 64x64."""
    assert window_plan((16, 16), 5, 64) == ("dense", 0)
    assert window_plan((16, 16), 1, 64)[0] == "tiles"
    for r in range(1, 6):
        method, tile = window_plan((64, 64), r, 64)
        assert method == "tiles" and tile in (4, 8)


def test_neighbour_mask():
    """The dense mask holds exactly the valid (x, y) pairs."""
    idx, valid = window_neighbours((3, 4), 1, include_self=False)
    mask = neighbour_mask(idx, valid)
    for x, ys in enumerate(brute_window((3, 4), 1, False)):
        assert sorted(torch.nonzero(mask[x]).flatten().tolist()) == ys


@pytest.mark.parametrize("include_self", [True, False])
def test_gaussian_neighbours_are_distinct_and_self_only_when_asked(include_self):
    """Sampling without replacement: no column repeats; self is first iff included."""
    idx, valid = gaussian_neighbours((7, 7), 10, 2.0, include_self)
    assert valid.all()
    assert idx.shape == (49, 11 if include_self else 10)
    for x in range(49):
        row = idx[x].tolist()
        assert len(set(row)) == len(row)
        assert (x in row) == include_self
        if include_self:
            assert row[0] == x


def test_gaussian_neighbours_follow_the_gaussian():
    """One neighbour drawn many times from the centre of a 9x9 grid: the frequencies match
    p(y) proportional to exp(-|x - y|^2 / (2 sigma^2)) (chi-square test, p > 1e-4)."""
    from scipy.stats import chisquare

    grid, sigma, trials = (9, 9), 1.3, 4000
    x = 40  # centre
    gen = torch.Generator().manual_seed(fresh_seed())
    counts = np.zeros(81)
    for _ in range(trials):
        idx, _ = gaussian_neighbours(grid, 1, sigma, include_self=False, generator=gen)
        counts[int(idx[x, 0])] += 1
    ys = np.arange(81)
    d2 = (ys // 9 - 4) ** 2 + (ys % 9 - 4) ** 2
    p = np.exp(-d2 / (2 * sigma**2))
    p[x] = 0
    p /= p.sum()
    keep = p * trials >= 5  # chi-square needs expected counts >= 5; pool the rest
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(p[keep], p[~keep].sum()) * trials
    assert chisquare(obs, exp).pvalue > 1e-4


def test_location_encoding_values():
    """Cell centres u = (2i + 1)/m - 1 encoded as sin/cos(2^f pi u); every column's code is
    distinct (the edges do not alias)."""
    enc = location_encoding((3, 5), 2)
    assert enc.shape == (15, 8)
    n = 1 * 5 + 4  # row 1 of 3 -> u = 0; column 4 of 5 -> u = 9/5 - 1 = 0.8
    got = enc[n].view(2, 2, 2)  # [axis (row, col), sin/cos, F]
    for axis, u in enumerate((0.0, 0.8)):
        for f in range(2):
            assert float(got[axis, 0, f]) == pytest.approx(math.sin(2**f * math.pi * u), abs=1e-6)
            assert float(got[axis, 1, f]) == pytest.approx(math.cos(2**f * math.pi * u), abs=1e-6)
    codes = location_encoding((16, 16), 4)
    assert len({tuple(torch.round(c, decimals=5).tolist()) for c in codes}) == 256


# ---------------------------------------------------------------------------------------------
# feedback alignment


def test_feedback_alignment_backward_is_what_it_says():
    """dW = x^T dy and db = sum dy as in back-propagation, but dx = dy F^T with the fixed
    feedback matrix F instead of W^T (per column; summed over columns when shared)."""
    g = torch.Generator().manual_seed(fresh_seed())
    K, N, B, i, o = 2, 3, 4, 5, 6
    for C in (N, 1):
        x = torch.randn(K, N, B, i, generator=g, requires_grad=True)
        W = torch.randn(K, C, i, o, generator=g, requires_grad=True)
        b = torch.randn(K, C, 1, o, generator=g, requires_grad=True)
        F = torch.randn(K, C, i, o, generator=g)
        dy = torch.randn(K, N, B, o, generator=g)
        (column_linear_fa(x, W, b, F) * dy).sum().backward()
        Fx = F.expand(K, N, i, o)
        torch.testing.assert_close(x.grad, dy @ Fx.transpose(-1, -2))
        gw = x.detach().transpose(-1, -2) @ dy  # [K, N, i, o]
        torch.testing.assert_close(W.grad, gw if C == N else gw.sum(1, keepdim=True))
        gb = dy.sum(2, keepdim=True)
        torch.testing.assert_close(b.grad, gb if C == N else gb.sum(1, keepdim=True))


# ---------------------------------------------------------------------------------------------
# attract_repel_attention


@pytest.mark.parametrize("method", ["gather", "dense"])
@pytest.mark.parametrize("gaussian", [False, True])
@pytest.mark.parametrize("include_self", [True, False])
def test_attract_repel_equals_its_definition_by_loops(gaussian, include_self, method):
    """Each column's term written out by loops over its window: softmax of beta e.e over the
    neighbours with cosine >= the upper threshold, minus gamma times the plain mean of those
    below the lower one (0 when none; the column's own vector when nobody attracts); the
    gathered and the dense evaluation alike."""
    grid, r, b, d = (4, 5), 1, 3, 4
    e = fresh(20, b, d)
    tau = fresh(20, b, d).abs() + 0.1 if gaussian else None
    idx, valid = window_neighbours(grid, r, include_self)
    above, below, gamma, beta = 0.3, -0.2, 0.7, 1.3
    mu, lt = attract_repel_attention(
        e,
        idx,
        valid,
        beta,
        tau,
        attract_above=above,
        repel_below=below,
        repel_weight=gamma,
        method=method,
    )
    for x in range(20):
        for i in range(b):
            ys = [int(y) for y, v in zip(idx[x], valid[x], strict=True) if v]
            c = {y: float(torch.nn.functional.cosine_similarity(e[x, i], e[y, i], 0)) for y in ys}
            att = [y for y in ys if c[y] >= above]
            rep = [y for y in ys if c[y] < below]
            if att:
                w = torch.softmax(torch.stack([beta * e[x, i] @ e[y, i] for y in att]), 0)
                if gaussian:
                    t = sum(wi * tau[y, i] for wi, y in zip(w, att, strict=True))
                    a = sum(wi * tau[y, i] * e[y, i] for wi, y in zip(w, att, strict=True)) / t
                else:
                    a = sum(wi * e[y, i] for wi, y in zip(w, att, strict=True))
            else:
                a, t = e[x, i], (tau[x, i] if gaussian else None)
            rmean = sum(e[y, i] for y in rep) / len(rep) if rep else torch.zeros(d)
            torch.testing.assert_close(mu[x, i], a - gamma * rmean)
            if gaussian:
                torch.testing.assert_close(lt[x, i], t)


@pytest.mark.parametrize("method", ["gather", "dense"])
def test_attract_repel_with_open_thresholds_is_eq_3_1(method):
    """attract_above = -1 (everyone attracts) and gamma = 0 give eq. 3.1 exactly."""
    e, tau = fresh(30, 2, 5), fresh(30, 2, 5).abs() + 0.1
    idx, valid = window_neighbours((5, 6), 2, True)
    for p in (None, tau):
        got = attract_repel_attention(
            e,
            idx,
            valid,
            0.8,
            p,
            attract_above=-1.0,
            repel_below=-1.0,
            repel_weight=0.0,
            method=method,
        )
        want = lateral_attention(e, idx, valid, 0.8, p, method="gather")
        torch.testing.assert_close(got[0], want[0])
        if p is not None:
            torch.testing.assert_close(got[1], want[1])


def test_attract_repel_tiny_case_by_hand():
    """Three columns in a row, radius 1, d = 2: e0 = (1, 0), e1 = (sqrt2, sqrt2), e2 = (-1, 0);
    cos(0, 1) = 0.707, cos(1, 2) = -0.707, and column 0 does not see column 2. With beta = 0
    the attraction is a plain mean. Column 0 attends to {0, 1}, nobody repels it:
    ((1 + sqrt2) / 2, sqrt2 / 2). Column 1 attends to {0, 1} and is repelled by 2: the same
    minus 0.5 (-1, 0). Column 2 attends to itself and is repelled by 1: (-1, 0) - 0.5 e1."""
    s2 = math.sqrt(2.0)
    e = torch.tensor([[1.0, 0.0], [s2, s2], [-1.0, 0.0]])[:, None, :]
    idx, valid = window_neighbours((1, 3), 1, True)
    mu, _ = attract_repel_attention(
        e, idx, valid, 0.0, attract_above=0.5, repel_below=0.0, repel_weight=0.5
    )
    torch.testing.assert_close(mu[0, 0], torch.tensor([(1 + s2) / 2, s2 / 2]))
    torch.testing.assert_close(mu[1, 0], torch.tensor([(1 + s2) / 2 + 0.5, s2 / 2]))
    torch.testing.assert_close(mu[2, 0], torch.tensor([-1 - s2 / 2, -s2 / 2]))


def test_attract_repel_refuses_crossed_thresholds():
    e = fresh(4, 1, 3)
    idx, valid = window_neighbours((2, 2), 1, True)
    with pytest.raises(ValueError, match="repel_below"):
        attract_repel_attention(e, idx, valid, 1.0, attract_above=0.1, repel_below=0.5)


# column_linear_into_grad


@pytest.mark.parametrize("columns", ["unshared", "shared", "shared + per-column bias"])
def test_weight_gradient_summed_in_the_gemm_equals_autograds_sum(columns):
    """Two backward passes through the layer that adds ``x^T dy`` into ``weight.grad`` in the
    GEMM leave the sum autograd leaves for plain :func:`column_linear`; the input's and the
    bias's gradients are autograd's too. ``torch.autograd.grad`` sees no weight gradient."""
    k, n, b, d_in, d_out = 2, 5, 3, 4, 6
    c = n if columns == "unshared" else 1
    w0, b0 = fresh(k, c, d_in, d_out), fresh(k, n if "per-column" in columns else c, 1, d_out)
    xs, gys = [fresh(k, n, b, d_in) for _ in range(2)], [fresh(k, n, b, d_out) for _ in range(2)]
    grads = []
    for layer in (column_linear, column_linear_into_grad):
        w, bias = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        gx = []
        for x, gy in zip(xs, gys, strict=True):
            x = x.clone().requires_grad_()
            layer(x, w, bias).backward(gy)
            gx.append(x.grad)
        grads.append((w.grad, bias.grad, *gx))
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want)
    w = w0.clone().requires_grad_()
    y = column_linear_into_grad(xs[0], w, None)
    assert torch.autograd.grad(y.sum(), w, allow_unused=True) == (None,)


def test_weight_gradient_summed_in_the_gemm_under_bfloat16_autocast():
    """Under autocast the summed gradient stays in the weight's dtype (float32) and equals
    autograd's to bfloat16 precision."""
    k, n, b, d_in, d_out = 2, 5, 3, 4, 6
    shapes = ((k, n, d_in, d_out), (k, n, b, d_in), (k, n, b, d_out))
    w0, x, gy = (fresh(*s).float() for s in shapes)
    grads = []
    for layer in (column_linear, column_linear_into_grad):
        w = w0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x, w, None)
            y.backward(gy.to(y.dtype))
        grads.append(w.grad)
    assert grads[1].dtype == torch.float32
    torch.testing.assert_close(grads[1], grads[0], rtol=2e-2, atol=2e-2)
