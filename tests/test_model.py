"""bioglom.model: settling against a reference step written here; structure, sharing, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build, cuda, fresh_seed, rand_images, setup, small_config, standardised

import bioglom
from bioglom.config import CONTRIBUTIONS
from bioglom.model import LOG_PRECISION_LIMIT


def test_settle_shapes_and_trajectory(rng):
    """state is [K, N, B, d]; the trajectory [T+1, K, N, B, d] starts at the initial state and
    ends at the returned state."""
    m = build()
    x = rand_images(5, gen=rng)
    r = m.settle(x, steps=4, return_trajectory=True)
    K, N, d = 3, 16, 8
    assert r.state.shape == (K, N, 5, d)
    assert r.trajectory.shape == (5, K, N, 5, d)
    assert r.steps == 4
    torch.testing.assert_close(r.trajectory[-1], r.state)
    torch.testing.assert_close(r.trajectory[0], m.initial_state(x)[0])
    assert m.settle(x).trajectory is None
    assert m.settle(x).steps == 3  # settle.steps


def test_unshared_with_equal_weights_gives_the_shared_result(rng):
    """Unshared columns whose weights are all copies of the shared weights settle to exactly the
    shared state (float64), and the two modes differ only in the column dimension."""
    torch.set_default_dtype(torch.float64)
    try:
        shared = build(model__sharing="shared").double()
        unshared = build(model__sharing="unshared").double()
        sp, up = dict(shared.named_parameters()), dict(unshared.named_parameters())
        assert sp.keys() == up.keys()
        for name, p in sp.items():
            q = up[name]
            if p.shape != q.shape:  # column layers: [K', 1, ...] vs [K', N, ...]
                assert p.shape[1] == 1 and q.shape[1] == 16 and p.shape[2:] == q.shape[2:]
            with torch.no_grad():
                q.copy_(p.expand_as(q))
        x = rand_images(3, gen=rng).double()
        a = shared.settle(x, check=False, return_trajectory=True).trajectory
        b = unshared.settle(x, check=False, return_trajectory=True).trajectory
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        torch.testing.assert_close(shared.decode(a[-1]), unshared.decode(b[-1]), rtol=0, atol=1e-12)
    finally:
        torch.set_default_dtype(torch.float32)


def reference_step(m, e, tau, x, t, T):
    """One settling step recomputed from the nets' raw outputs, written independently of
    bioglom.functional and bioglom.norm: predictions standardised per vector by hand (in
    gaussian mode the log-precision squashed and the precision rescaled by 1 / r^2), eq. 3.1 by
    an explicit loop over each column's window (radius 1 + l), the weights interpolated from
    the config with no top-down weight at the top level, then the weighted arithmetic mean
    (mean mode) or the precision-weighted mean sum_i a_i tau_i mu_i / sum_i a_i tau_i with
    precision sum_i a_i tau_i (gaussian mode), then the state normalisation ("none" or
    "layer"). Returns (state, precision, bottom_up, top_down, lateral)."""
    cfg, K, d = m.config, m.K, m.d
    gaussian = cfg.consensus.mode == "gaussian"

    def split(y):  # a net's output -> standardised mean, rescaled precision (or None)
        mu, prec = y[..., :d], None
        if gaussian:
            raw = y[..., d:]
            prec = torch.exp(LOG_PRECISION_LIMIT * torch.tanh(raw / LOG_PRECISION_LIMIT))
        mean = mu.mean(-1, keepdim=True)
        r = 1 / torch.sqrt(((mu - mean) ** 2).mean(-1, keepdim=True) + 1e-5)
        return (mu - mean) * r, (None if prec is None else prec / r**2)

    bu, bu_tau = split(torch.cat([m.frontend(x), m.bottom_up(e[:-1])]))
    td, td_tau = split(m.top_down(e[1:], extra=m.location))
    s = t / (T - 1)
    beta0, beta1 = cfg.attention.beta_start, cfg.attention.beta_end
    lat, lat_tau = torch.zeros_like(e), torch.zeros_like(e)
    hg, wg = m.grid
    for k in range(K):
        beta = beta0 + (beta1 - beta0) * s
        for c in range(hg * wg):
            rc, cc = divmod(c, wg)
            ys = [y for y in range(hg * wg) if max(abs(y // wg - rc), abs(y % wg - cc)) <= 1 + k]
            logits = torch.stack([beta * (e[k, c] * e[k, y]).sum(-1) for y in ys])  # [M, B]
            w = torch.softmax(logits, 0)
            if gaussian:
                lat_tau[k, c] = sum(w[i, :, None] * tau[k, y] for i, y in enumerate(ys))
                lat[k, c] = (
                    sum(w[i, :, None] * tau[k, y] * e[k, y] for i, y in enumerate(ys))
                    / lat_tau[k, c]
                )
            else:
                lat[k, c] = sum(w[i, :, None] * e[k, y] for i, y in enumerate(ys))
    ws, we = cfg.consensus.weights_start, cfg.consensus.weights_end
    names = ("bottom_up", "top_down", "previous", "lateral")
    state, prec = torch.zeros_like(e), torch.zeros_like(e) if gaussian else None
    for k in range(K):
        a = {n: ws[n] * (1 - s) + we[n] * s for n in names}
        if k == K - 1:
            a["top_down"] = 0.0
        contributions = {"bottom_up": bu[k], "previous": e[k], "lateral": lat[k]}
        if k < K - 1:
            contributions["top_down"] = td[k]
        total = sum(a[n] for n in contributions)
        if gaussian:
            taus = {"bottom_up": bu_tau[k], "previous": tau[k], "lateral": lat_tau[k]}
            if k < K - 1:
                taus["top_down"] = td_tau[k]
            prec[k] = sum(a[n] / total * taus[n] for n in contributions)
            state[k] = sum(a[n] / total * taus[n] * contributions[n] for n in contributions)
            state[k] = state[k] / prec[k]
        else:
            state[k] = sum(a[n] / total * contributions[n] for n in contributions)
    if cfg.model.state_norm == "layer":
        mean = state.mean(-1, keepdim=True)
        r = 1 / torch.sqrt(((state - mean) ** 2).mean(-1, keepdim=True) + 1e-5)
        state = (state - mean) * r
        prec = None if prec is None else prec / r**2
    else:
        assert cfg.model.state_norm == "none"
    return state, prec, bu, td, lat


def double_model(**kw):
    """A small model in float64 (so that the reference can be compared to ~1e-10), radius
    1 + l, and betas exact in float32 (buffers are stored in float32 before .double())."""
    m = build(
        attention__radius={"first": 1, "step": 1},
        attention__beta_start=0.25,
        attention__beta_end=0.75,
        **kw,
    )
    return m.double()


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_step_is_the_consensus_of_its_contributions(norm, rng):
    """e(t+1) equals the reference step recomputed from the nets' raw outputs (mean mode), at
    the first and the last step; the weights the step reports at t = 0 and t = T-1 are the
    configured start and end values, normalised, with no top-down weight at the top level."""
    m = double_model(model__state_norm=norm)
    x = rand_images(2, gen=rng).double()
    e = torch.randn(3, 16, 2, 8, generator=rng, dtype=torch.float64)
    T = 4
    for t in (0, T - 1):
        with torch.no_grad():
            out = m.step(e, None, x, t, T)
            state, _, bu, td, lat = reference_step(m, e, None, x, t, T)
        tight = {"rtol": 1e-9, "atol": 1e-10}
        torch.testing.assert_close(out.bottom_up, bu, **tight)
        torch.testing.assert_close(out.top_down, td, **tight)
        torch.testing.assert_close(out.lateral, lat, **tight)
        torch.testing.assert_close(out.state, state, **tight)
        cfg = m.config.consensus
        raw = cfg.weights_start if t == 0 else cfg.weights_end
        w = torch.tensor([raw[c] for c in CONTRIBUTIONS], dtype=torch.float64)
        for k in range(m.K):
            wk = w.clone()
            if k == m.K - 1:
                wk[CONTRIBUTIONS.index("top_down")] = 0
            torch.testing.assert_close(out.weights[:, k], wk / wk.sum())


def test_each_contribution_reads_only_its_source_level(rng):
    """bu_l depends only on e_{l-1} (or the frame), td_l only on e_{l+1}, lat_l only on e_l."""
    m = build()
    x = rand_images(2, gen=rng)
    e, _ = m.initial_state(x)
    base = m.step(e, None, x, 0, 3)
    for src in range(m.K):
        e2 = e.clone()
        e2[src] += torch.randn(e2[src].shape, generator=rng)
        out = m.step(e2, None, x, 0, 3)
        bu_changed = [k for k in range(m.K) if not torch.equal(out.bottom_up[k], base.bottom_up[k])]
        td_changed = [
            k for k in range(m.K - 1) if not torch.equal(out.top_down[k], base.top_down[k])
        ]
        lat_changed = [k for k in range(m.K) if not torch.equal(out.lateral[k], base.lateral[k])]
        assert bu_changed == ([src + 1] if src + 1 < m.K else [])
        assert td_changed == ([src - 1] if src >= 1 else [])
        assert lat_changed == [src]


def test_static_image_is_a_video_of_identical_frames(rng):
    """Settling images equals settling a video that repeats them at every step."""
    m = build()
    x = rand_images(2, gen=rng)
    a = m.settle(x, steps=3, return_trajectory=True).trajectory
    b = m.settle(x.expand(3, *x.shape), return_trajectory=True).trajectory
    torch.testing.assert_close(a, b)


def test_video_feeds_frame_t_at_step_t(rng):
    """Changing frame 3 of a video leaves states e(0..3) unchanged and changes e(4)."""
    m = build()
    v = torch.rand(5, 2, 3, 8, 8, generator=rng)
    v2 = v.clone()
    v2[3] = torch.rand(2, 3, 8, 8, generator=rng)
    a = m.settle(v, return_trajectory=True).trajectory
    b = m.settle(v2, return_trajectory=True).trajectory
    assert a.shape[0] == 6
    torch.testing.assert_close(a[:4], b[:4])
    assert not torch.allclose(a[4], b[4])
    with pytest.raises(ValueError, match="at most 5"):
        m.settle(v, steps=6)


def test_beta_schedule_is_linear_per_level():
    """beta_l(t) goes linearly from beta_start to beta_end over the steps, per level."""
    m = build(attention__beta_start=[0.1, 0.2, 0.3], attention__beta_end=1.0)
    torch.testing.assert_close(m.beta(0, 5), torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(m.beta(4, 5), torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(m.beta(2, 5), torch.tensor([0.55, 0.6, 0.65]))


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_gaussian_mode_consensus_and_positive_precision(norm, rng):
    """Gaussian mode: the state's precision is sum_i a_i tau_i and its mean the precision-
    weighted mean sum_i a_i tau_i mu_i / sum_i a_i tau_i of the contributions, then normalised
    (tau / r^2 under layer norm): equal to the reference step recomputed from the nets' raw
    outputs. All precisions are positive, also after settling."""
    m = double_model(consensus__mode="gaussian", model__state_norm=norm)
    x = rand_images(2, gen=rng).double()
    e = torch.randn(3, 16, 2, 8, generator=rng, dtype=torch.float64)
    tau = torch.rand(3, 16, 2, 8, generator=rng, dtype=torch.float64) * 3 + 0.2
    with torch.no_grad():
        out = m.step(e, tau, x, 1, 3)
        state, prec, bu, td, lat = reference_step(m, e, tau, x, 1, 3)
    tight = {"rtol": 1e-9, "atol": 1e-10}
    torch.testing.assert_close(out.bottom_up, bu, **tight)
    torch.testing.assert_close(out.top_down, td, **tight)
    torch.testing.assert_close(out.lateral, lat, **tight)
    torch.testing.assert_close(out.state, state, **tight)
    torch.testing.assert_close(out.precision, prec, **tight)
    x32 = x.float()
    m = build(consensus__mode="gaussian", model__state_norm="none")
    e0, tau0 = m.initial_state(x32)
    assert tau0 is not None and bool((tau0 > 0).all())
    r = m.settle(x32)
    assert r.precision.shape == r.state.shape and bool((r.precision > 0).all())


def copy_weights(dst, src):
    """Copy every parameter of ``src`` whose name and shape ``dst`` shares; returns ``dst``."""
    sp = dict(src.named_parameters())
    with torch.no_grad():
        for name, p in dst.named_parameters():
            if name in sp and sp[name].shape == p.shape:
                p.copy_(sp[name])
    return dst


def randn_state(rng, B=2):
    return torch.randn(3, 16, B, 8, generator=rng)


def gen():
    return torch.Generator().manual_seed(fresh_seed())


def effect_resampled(m, default, rng):
    """Gaussian, resampled: two steps from the same state draw other neighbours (the lateral
    term differs), the neighbourhood is not the window's, and settling depends on the
    generator."""
    e, beta, g = randn_state(rng), m.beta(0, 3), gen()
    a, _ = m.lateral(e, None, beta, g)
    b, _ = m.lateral(e, None, beta, g)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, default.lateral(e, None, beta)[0])
    x = rand_images(2, gen=rng)
    s = torch.Generator().manual_seed(fresh_seed())
    assert not torch.allclose(m.settle(x, generator=s).state, m.settle(x, generator=s).state)


def effect_fixed_gaussian(m, default, rng):
    """Gaussian, fixed: each column attends to itself and 5 distinct other columns, the same
    ones at every step and for every generator; not the window's neighbourhood."""
    for k in range(m.K):
        idx, valid = m.neighbours(k)
        assert idx.shape == (16, 6) and bool(valid.all())
        assert torch.equal(idx[:, 0], torch.arange(16))
        for n in range(16):
            others = idx[n, 1:].tolist()
            assert len(set(others)) == 5 and n not in others
    e, beta = randn_state(rng), m.beta(0, 3)
    a, _ = m.lateral(e, None, beta, gen())
    torch.testing.assert_close(a, m.lateral(e, None, beta, gen())[0], rtol=0, atol=0)
    assert not torch.allclose(a, default.lateral(e, None, beta)[0])
    x = rand_images(2, gen=rng)
    torch.testing.assert_close(
        m.settle(x, generator=gen()).state, m.settle(x, generator=gen()).state
    )


def window_mean(e, k, n, include_self):
    """The plain mean of e over the radius-1 window of column n on the 4x4 grid."""
    r, c = divmod(n, 4)
    ys = [y for y in range(16) if max(abs(y // 4 - r), abs(y % 4 - c)) <= 1]
    if not include_self:
        ys.remove(n)
    return torch.stack([e[k, y] for y in ys]).mean(0)


def effect_no_self(m, default, rng):
    """include_self = false: at beta = 0 every neighbour weighs the same and the lateral term is
    the plain mean of the window without the column itself (with it by default); with a large
    beta and the column's own embedding scaled up, self-attention takes all the weight by
    default, and without it the lateral term stays a mean of the others."""
    e = randn_state(rng)
    lat, _ = m.lateral(e, None, torch.zeros(3))
    lat_d, _ = default.lateral(e, None, torch.zeros(3))
    for k in range(3):
        for n in (0, 5, 15):
            torch.testing.assert_close(lat[k, n], window_mean(e, k, n, False))
            torch.testing.assert_close(lat_d[k, n], window_mean(e, k, n, True))
    e2 = e.clone()
    e2[:, 5] *= 30
    lat, _ = m.lateral(e2, None, torch.full((3,), 10.0))
    lat_d, _ = default.lateral(e2, None, torch.full((3,), 10.0))
    torch.testing.assert_close(lat_d[:, 5], e2[:, 5])
    others = [0, 1, 2, 4, 6, 8, 9, 10]  # the window of column 5 without it
    bound = e2[:, others].norm(dim=-1).amax(dim=1) + 1e-4  # a mean of the others is within
    assert bool((lat[:, 5].norm(dim=-1) <= bound).all())


def effect_siren(m, default, rng):
    """siren: with the default model's weights, the bottom-up predictions are unchanged and the
    top-down ones differ (sinusoidal hidden units)."""
    copy_weights(m, default)
    e, x = randn_state(rng), rand_images(2, gen=rng)
    a, b = m.step(e, None, x, 0, 3), default.step(e, None, x, 0, 3)
    torch.testing.assert_close(a.bottom_up, b.bottom_up, rtol=0, atol=0)
    assert not torch.allclose(a.top_down, b.top_down, atol=1e-3)


def same_top_down_columns(m):
    """Give every column the top-down weights of column 0."""
    with torch.no_grad():
        for p in m.top_down.parameters():
            if p.dim() >= 2 and p.shape[1] == 16:
                p.copy_(p[:, :1].expand_as(p))


def effect_no_location(m, default, rng):
    """location = false: no location input, so columns with the same top-down weights and the
    same input predict the same thing; with the location code (default) they do not."""
    assert m.location is None
    copy_weights(m, default)
    e = randn_state(rng)[:, :1].expand(3, 16, 2, 8).contiguous()
    for model in (m, default):
        same_top_down_columns(model)
    td = m.top_down(e[1:], extra=m.location)
    torch.testing.assert_close(td, td[:, :1].expand_as(td), rtol=0, atol=0)
    td_d = default.top_down(e[1:], extra=default.location)
    assert not torch.allclose(td_d[:, 0], td_d[:, 5])


def effect_bottom_up_location(m, default, rng):
    """bottom_up_location = true, shared nets: the same input in every column gives bottom-up
    predictions that differ between columns (the location code enters, the top-down one's), in
    settling and in the initial bottom-up pass; the default shared model's are all equal."""
    shared = build(model__sharing="shared")
    torch.testing.assert_close(m.bu_location, m.location)
    e = randn_state(rng)[:, :1].expand(3, 16, 2, 8).contiguous()
    bu = m.bottom_up(e[:-1], extra=m.bu_location)
    assert not torch.allclose(bu[:, 0], bu[:, 5])
    plain = shared.bottom_up(e[:-1])
    torch.testing.assert_close(plain, plain[:, :1].expand_as(plain), rtol=0, atol=0)
    x = torch.full((1, 3, 8, 8), 0.5)  # a uniform image: every column sees the same patch
    init = m.initial_state(x)[0]
    assert not torch.allclose(init[1, 0], init[1, 5])
    init = shared.initial_state(x)[0]
    torch.testing.assert_close(init[1], init[1, :1].expand_as(init[1]), rtol=0, atol=1e-6)


def effect_zeros(m, default, rng):
    """init = zeros: the initial state is exactly zero for any image (the default starts from a
    bottom-up pass)."""
    x = rand_images(2, gen=rng)
    assert torch.equal(m.initial_state(x)[0], torch.zeros(3, 16, 2, 8))
    assert default.initial_state(x)[0].abs().sum() > 0


def effect_noise(m, default, rng):
    """init = noise: the initial state is unit noise drawn from the generator, whatever the
    image: the same generator seed gives the same state for other images, another seed
    another state; mean ~ 0 and std ~ 1."""
    x, x2 = rand_images(2, gen=rng), rand_images(2, gen=rng)
    seed = fresh_seed()
    a = m.initial_state(x, torch.Generator().manual_seed(seed))[0]
    b = m.initial_state(x2, torch.Generator().manual_seed(seed))[0]
    c = m.initial_state(x, torch.Generator().manual_seed(seed + 1))[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert abs(float(a.mean())) < 0.2 and abs(float(a.std()) - 1) < 0.15


def effect_homeostatic(m, default, rng):
    """homeostatic: the state is the consensus standardised by the running statistics,
    (c - m) / sqrt(v + eps), recomputed from a model without normalisation."""
    raw = copy_weights(build(model__state_norm="none"), m)
    with torch.no_grad():
        m.norm.running_mean.copy_(torch.randn(m.norm.running_mean.shape, generator=rng))
        m.norm.running_var.copy_(torch.rand(m.norm.running_var.shape, generator=rng) + 0.5)
    e, x = randn_state(rng), rand_images(2, gen=rng)
    c = raw.step(e, None, x, 1, 3).state
    expected = (c - m.norm.running_mean) / torch.sqrt(m.norm.running_var + 1e-5)
    torch.testing.assert_close(m.step(e, None, x, 1, 3).state, expected)


def effect_cnn(m, default, rng):
    """frontend = cnn: changing one patch changes level 0's bottom-up input at other columns
    too (a patch front end changes only that column's)."""
    x = rand_images(2, gen=rng)
    x2 = x.clone()
    x2[:, :, 2:4, 4:6] = 1 - x2[:, :, 2:4, 4:6]  # grid (1, 2) -> n = 6
    for model, wide in ((m, True), (default, False)):
        diff = (model.frontend(x2) - model.frontend(x)).abs().sum(dim=(0, 2, 3))
        assert (torch.count_nonzero(diff) > 1) == wide


def effect_linear(m, default, rng):
    """No hidden layers: front end, bottom-up, top-down and decoder (before its sigmoid) are
    affine maps, f(a u + (1 - a) v) = a f(u) + (1 - a) f(v); the default's hidden layers are
    not."""
    e1, e2 = randn_state(rng), randn_state(rng)
    x1, x2 = rand_images(2, gen=rng), rand_images(2, gen=rng)
    a = 0.3

    def affine(f, u, v):
        return torch.allclose(f(a * u + (1 - a) * v), a * f(u) + (1 - a) * f(v), atol=1e-5)

    for model, linear in ((m, True), (default, False)):
        assert affine(model.frontend, x1, x2) == linear
        assert affine(model.bottom_up, e1[:-1], e2[:-1]) == linear
        assert affine(lambda u, mo=model: mo.top_down(u, extra=mo.location), e1[1:], e2[1:]) == (
            linear
        )
        assert affine(lambda u, mo=model: mo.decoder.net(u[:1]), e1, e2) == linear


def effect_gaussian_shared(m, default, rng):
    """gaussian + shared: the nets output a mean and a log-precision (2d); the state depends on
    the precisions (mean mode has none) and carries a positive one; every column computes the
    same bottom-up function (identical inputs give identical outputs; not so unshared)."""
    e = randn_state(rng)
    assert m.bottom_up(e[:-1]).shape[-1] == 16 and default.bottom_up(e[:-1]).shape[-1] == 8
    x = rand_images(2, gen=rng)
    tau = torch.rand(3, 16, 2, 8, generator=rng) + 0.1
    a, b = (
        m.step(e, tau, x, 1, 3),
        m.step(e, tau * torch.rand(tau.shape, generator=rng) * 4, x, 1, 3),
    )
    assert a.precision is not None and bool((a.precision > 0).all())
    assert not torch.allclose(a.state, b.state)
    same = e[:, :1].expand(3, 16, 2, 8)
    for model, shared in ((m, True), (default, False)):
        out = model.bottom_up(same[:-1])
        assert torch.allclose(out, out[:, :1].expand_as(out), rtol=0, atol=0) == shared


OPTIONS = [
    (
        {
            "attention__neighbourhood": "gaussian",
            "attention__samples": 5,
            "attention__resample": True,
        },
        effect_resampled,
    ),
    (
        {
            "attention__neighbourhood": "gaussian",
            "attention__samples": 5,
            "attention__resample": False,
        },
        effect_fixed_gaussian,
    ),
    ({"attention__include_self": False}, effect_no_self),
    ({"topdown__siren": True}, effect_siren),
    ({"topdown__location": False}, effect_no_location),
    ({"model__bottom_up_location": True, "model__sharing": "shared"}, effect_bottom_up_location),
    ({"model__init": "zeros"}, effect_zeros),
    ({"model__init": "noise"}, effect_noise),
    ({"model__state_norm": "homeostatic"}, effect_homeostatic),
    ({"frontend__kind": "cnn", "model__sharing": "shared"}, effect_cnn),
    ({"frontend__hidden": 0, "model__hidden_layers": 0}, effect_linear),
    ({"consensus__mode": "gaussian", "model__sharing": "shared"}, effect_gaussian_shared),
]


@pytest.mark.parametrize("kw, effect", OPTIONS, ids=[f.__name__[7:] for _, f in OPTIONS])
def test_options_settle_to_finite_states_and_do_what_they_say(kw, effect, rng):
    """Every architecture option settles to finite states of the right shape and decodes, and
    has the effect it names, checked against the default model (same weights where they
    apply): an option silently ignored fails here."""
    m = build(**kw)
    r = m.settle(rand_images(2, gen=rng), generator=rng)
    assert r.state.shape == (3, 16, 2, 8)
    assert torch.isfinite(r.state).all()
    assert m.decode(r.state).shape == (2, 3, 8, 8)
    with torch.no_grad():
        effect(m, build(), rng)


def manual_mlp(layers, x, k, n, act=torch.nn.functional.gelu, extra=None):
    """The MLP of level k, column n, with explicit per-column matrix products; ``extra`` is a
    pair (map, input vector) added to the first layer."""
    h = x
    for j, layer in enumerate(layers):
        c = n if layer.weight.shape[1] > 1 else 0
        h = h @ layer.weight[k, c] + layer.bias[k, c, 0]
        if j == 0 and extra is not None:
            h = h + extra[1] @ extra[0].weight[k, c]
        if j < len(layers) - 1:
            h = act(h)
    return h


def test_bottom_up_initial_state_is_one_bottom_up_pass(rng):
    """init = bottom_up: e_0 = norm(std(FE(x))), e_l = norm(std(BU_l(e_{l-1}))), where std
    standardises each prediction vector."""
    m = build(model__state_norm="none")
    x = rand_images(2, gen=rng)
    e, _ = m.initial_state(x)
    torch.testing.assert_close(e[0:1], standardised(m.frontend(x)))
    for k in range(1, m.K):
        for n in (0, 7, 15):
            expected = standardised(manual_mlp(m.bottom_up.layers, e[k - 1, n], k - 1, n))
            torch.testing.assert_close(e[k, n], expected)


def test_step_predictions_are_the_nets_applied_to_the_source_levels(rng):
    """bottom_up[l] = std(BU_l(e_{l-1})) and top_down[l] = std(TD_l(e_{l+1}, location)) for
    every column, recomputed with explicit per-column products."""
    m = build(topdown__location=False)
    x = rand_images(2, gen=rng)
    e = torch.randn(3, 16, 2, 8, generator=rng)
    out = m.step(e, None, x, 0, 3)
    for n in range(16):
        for k in range(1, m.K):
            bu = standardised(manual_mlp(m.bottom_up.layers, e[k - 1, n], k - 1, n))
            torch.testing.assert_close(out.bottom_up[k, n], bu)
        for k in range(m.K - 1):
            td = standardised(manual_mlp(m.top_down.layers, e[k + 1, n], k, n))
            torch.testing.assert_close(out.top_down[k, n], td)


@pytest.mark.parametrize("sharing", ["unshared", "shared"])
def test_top_down_adds_the_location_term_to_its_first_layer(sharing, rng):
    """With the location code on, top_down[l] = std(TD_l(e_{l+1})) where TD's first layer
    computes ``e W1 + b1 + loc(n) V`` for every column (the term enters through the bias of
    the GEMM), recomputed with explicit per-column products."""
    m = build(model__sharing=sharing)
    assert m.location is not None and m.top_down.extra is not None
    x = rand_images(2, gen=rng)
    e = torch.randn(3, 16, 2, 8, generator=rng)
    out = m.step(e, None, x, 0, 3)
    for n in range(16):
        for k in range(m.K - 1):
            extra = (m.top_down.extra, m.location[k, n, 0])
            td = standardised(manual_mlp(m.top_down.layers, e[k + 1, n], k, n, extra=extra))
            torch.testing.assert_close(out.top_down[k, n], td)


def test_bottom_up_only_weights_make_the_state_the_bottom_up_prediction(rng):
    """With contribution weights (1, 0, 0, 0) the next state is norm(std(BU(e))) exactly."""
    w = {"bottom_up": 1.0, "top_down": 0.0, "previous": 0.0, "lateral": 0.0}
    m = build(consensus__weights_start=w, consensus__weights_end=w, model__state_norm="none")
    x = rand_images(2, gen=rng)
    e = torch.randn(3, 16, 2, 8, generator=rng)
    out = m.step(e, None, x, 1, 3)
    fe = standardised(m.frontend(x))
    torch.testing.assert_close(out.state[0:1], fe)
    for k in (1, 2):
        torch.testing.assert_close(
            out.state[k, 5], standardised(manual_mlp(m.bottom_up.layers, e[k - 1, 5], k - 1, 5))
        )


def test_ramp_steps_hold_the_end_values():
    """settle.ramp_steps = R: weights and beta reach their end values at step R-1 and hold."""
    m = build(settle__ramp_steps=3, attention__beta_start=0.0, attention__beta_end=1.0)
    torch.testing.assert_close(m.beta(1, 10), torch.full((3,), 0.5))
    torch.testing.assert_close(m.beta(2, 10), torch.ones(3))
    torch.testing.assert_close(m.beta(9, 10), torch.ones(3))
    torch.testing.assert_close(m.contribution_weights(9, 10), m.contribution_weights(2, 3))


def test_settle_does_not_adapt_a_built_model(rng):
    """build_model returns an eval-mode model: settling leaves homeostatic statistics alone;
    in train mode they move. Shared columns share one set of statistics (auto)."""
    m = build(model__state_norm="homeostatic")
    before = m.norm.running_mean.clone()
    m.settle(rand_images(2, gen=rng))
    torch.testing.assert_close(m.norm.running_mean, before)
    m.train()
    m.settle(rand_images(2, gen=rng))
    assert not torch.equal(m.norm.running_mean, before)
    assert m.norm.running_mean.shape[1] == 16
    s = build(model__state_norm="homeostatic", model__sharing="shared")
    assert s.norm.running_mean.shape[1] == 1


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 3, 8, 8), np.uint8), "uint8"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "uint8"),
        (torch.zeros(2, 1, 8, 8), r"\[B, 3, 8, 8\]"),
        (torch.zeros(3, 8, 8), r"got \[3, 8, 8\]"),
        (torch.full((2, 3, 8, 8), 1.5), "values in \\[0, 1\\]"),
        (torch.full((2, 3, 8, 8), float("nan")), "values in \\[0, 1\\]"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int64), "float"),
        ([[0.0]], "torch.Tensor or numpy"),
    ],
)
def test_bad_images_raise_value_errors_that_say_what_was_expected(bad, match):
    """Wrong shape, dtype or range given to settle raises ValueError describing the expectation."""
    with pytest.raises(ValueError, match=match):
        build().settle(bad)


def test_numpy_images_are_accepted(rng):
    """settle takes float numpy arrays as well as tensors, with the same result."""
    m = build()
    x = rand_images(2, gen=rng)
    torch.testing.assert_close(m.settle(x.numpy()).state, m.settle(x).state)


def test_same_config_same_model():
    """build_model is deterministic in run.seed; another seed gives other weights."""
    a, b = build(), build()
    c = build(run__seed=1)
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), n
    assert not all(torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters(), strict=True))


@cuda
@pytest.mark.gpu
def test_cuda_settle_matches_cpu():
    """The same model settles to the same state on CUDA as on the CPU (float tolerance)."""
    cfg = small_config()
    m = bioglom.build_model(cfg)
    x = torch.rand(4, 3, 8, 8)
    cpu = m.settle(x).state
    gpu = m.to("cuda").settle(x).state.cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# saved weights and the config's settling parameters (issue: settle parameters inside weights)


def _save_weights(model, config, path):
    """A weights file as ``train()`` writes it."""
    torch.save(
        {
            "model": model.state_dict(),
            "config": config.to_toml(),
            "status": "finished",
            "channels": model.channels,
            "image_size": list(model.image_size),
        },
        path,
    )


def test_state_dict_holds_no_settling_parameter():
    """Nothing computed from the config (beta and contribution schedules, which contributions
    are present, neighbourhoods, the location code) is saved with the weights; the weights and
    the homeostatic statistics are."""
    m = bioglom.build_model(small_config(model__state_norm="homeostatic"))
    keys = set(m.state_dict())
    lateral = ("neighbour_index_0", "neighbour_valid_2", "mask_bias_0")
    for derived in ("beta_start", "beta_end", "weights_start", "weights_end", "present",
                    "location", *(f"lateral_attention.{n}" for n in lateral)):  # fmt: skip
        assert derived in m.derived_buffers() and derived not in keys, derived
    assert {"norm.running_mean", "norm.running_var"} <= keys
    assert any(k.startswith("bottom_up.") and k.endswith("weight") for k in keys)


def test_loading_weights_keeps_the_configs_beta_and_contribution_weights():
    """Weights made under one settling schedule, loaded into a model built with another: the
    model settles with its own config's beta and contribution weights (before, the saved
    buffers silently replaced them)."""
    a = bioglom.build_model(small_config(attention__beta_start=0.1, attention__beta_end=0.3))
    b = bioglom.build_model(
        small_config(
            attention__beta_start=2.0,
            attention__beta_end=5.0,
            consensus__weights_end={"lateral": 3.0},
        )
    )
    own_end = b.weights_end.clone()
    assert not torch.equal(own_end, a.weights_end)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.beta(2, 3), torch.tensor([5.0, 5.0, 5.0]))
    assert torch.equal(b.weights_end, own_end)
    assert float(b.weights_end[CONTRIBUTIONS.index("lateral"), 0]) == 3.0
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_old_weights_with_another_schedule_are_refused_by_name():
    """A weights file from before the change still carries beta_start etc.: loading it where
    they agree works; where they differ it raises a ValueError that names the buffer."""
    a = bioglom.build_model(small_config(attention__beta_start=0.1))
    old = dict(a.state_dict())
    old["beta_start"] = a.beta_start.clone()
    old["present"] = a.present.clone()
    bioglom.build_model(small_config(attention__beta_start=0.1)).load_state_dict(old)
    other = bioglom.build_model(small_config(attention__beta_start=0.7))
    with pytest.raises(ValueError, match="beta_start"):
        other.load_state_dict(old)


def test_load_model_overrides_change_the_settled_state(tmp_path):
    """load_model builds from the file's own config: without overrides it settles exactly as
    the saved model; with attention.beta_end overridden the loaded model has that beta and
    settles to another state (the lateral term's weights, eq. 3.1, depend on beta)."""
    cfg = small_config(attention__beta_start=0.5, attention__beta_end=0.5)
    m = bioglom.build_model(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
    path = tmp_path / "w.pt"
    _save_weights(m, cfg, path)
    x = rand_images(3, gen=torch.Generator().manual_seed(fresh_seed()))
    same = bioglom.load_model(path)
    changed = bioglom.load_model(path, overrides={"attention.beta_end": 20.0})
    assert float(changed.beta(2, 3)[0]) == 20.0
    ref = m.settle(x).state
    torch.testing.assert_close(same.settle(x).state, ref, rtol=0, atol=0)
    assert (changed.settle(x).state - ref).abs().max() > 1e-3
    changed2 = bioglom.load_model(path, overrides=["attention.beta_end=20"])
    torch.testing.assert_close(changed2.settle(x).state, changed.settle(x).state)


def test_load_model_refuses_bad_files_and_shape_changing_overrides(tmp_path):
    """A missing file, a file that is not a weights file, and an override that changes the
    weights' shapes each raise a clear error naming the file."""
    cfg = small_config()
    path = tmp_path / "w.pt"
    _save_weights(bioglom.build_model(cfg), cfg, path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        bioglom.load_model(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a bioglom weights file"):
        bioglom.load_model(junk)
    with pytest.raises(ValueError, match="do not fit"):
        bioglom.load_model(path, overrides={"model.dim": 16})
    with pytest.raises(bioglom.ConfigError, match="attention.beta_end"):
        bioglom.load_model(path, overrides={"attention.beta_end": -1.0})


def test_load_model_needs_no_data_file(tmp_path):
    """A model trained on a user's file loads after the file has moved: its geometry is saved
    with the weights."""
    data = tmp_path / "imgs.npz"
    np.savez(data, images=np.zeros((8, 1, 8, 8), dtype=np.float32))
    cfg = small_config(data__source="file", data__path=str(data))
    m = bioglom.build_model(cfg)
    path = tmp_path / "w.pt"
    _save_weights(m, cfg, path)
    data.unlink()
    loaded = bioglom.load_model(path)
    assert loaded.channels == 1 and loaded.image_size == (8, 8)
    for (name, p), q in zip(m.named_parameters(), loaded.parameters(), strict=True):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------------------------------
# isolated columns (the control of local learning)


def test_isolated_columns_get_no_lateral_weight():
    """sharing = isolated: unshared weights, lateral weight exactly 0 at every level and step."""
    _, m, _ = setup(model__sharing="isolated")
    assert m.columns == 16
    for t in range(3):
        assert torch.all(m.contribution_weights(t, 3)[3] == 0)


def test_copied_columns_start_alike_and_settle_a_uniform_image_to_one_vector_per_level(rng):
    """model.column_init = copies: every column-wise weight of an unshared model equals column
    0's, so a uniform image (every patch the same) settles to one embedding per level in every
    column, as with shared weights; drawn independently, the columns' embeddings differ."""
    image = torch.rand(1, 3, 1, 1, generator=rng).expand(2, 3, 8, 8).contiguous()
    spread = {}
    for init in ("copies", "independent"):
        cfg = small_config(model__column_init=init, topdown__location=False)
        model = bioglom.build_model(cfg)
        if init == "copies":
            for name, p in model.named_parameters():
                assert torch.equal(p, p[:, :1].expand_as(p)), name
        with torch.no_grad():
            state = model.settle(image).state  # [K, N, B, d]
        spread[init] = float((state - state[:, :1]).abs().max())
    assert spread["copies"] < 1e-5 < spread["independent"], spread
