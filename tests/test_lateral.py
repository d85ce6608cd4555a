"""bioglom.lateral: the lateral term against eq. 3.1 by explicit loops and by plain gathering."""

from __future__ import annotations

import pytest
import torch
from conftest import build, fresh_seed, rand_images

import bioglom
from bioglom.functional import attract_repel_attention, lateral_attention


def test_lateral_is_eq_3_1_at_the_scheduled_beta(rng):
    """out.lateral equals eq. 3.1 with beta_l(t) of the schedule, computed by explicit loops
    over each column's window (radius 1 + l) on the model's own grid."""
    m = build(attention__radius={"first": 1, "step": 1}, attention__beta_start=0.05)
    x = rand_images(1, gen=rng)
    e = torch.randn(3, 16, 1, 8, generator=rng)
    t, T = 2, 5
    out = m.step(e, None, x, t, T)
    for k in range(m.K):
        beta = 0.05 + (0.3 - 0.05) * t / (T - 1)
        for xcol in range(16):
            rx, cx = divmod(xcol, 4)
            ys = [y for y in range(16) if max(abs(y // 4 - rx), abs(y % 4 - cx)) <= 1 + k]
            logits = torch.stack([beta * e[k, xcol, 0] @ e[k, y, 0] for y in ys])
            w = torch.softmax(logits, 0)
            expected = sum(wi * e[k, y, 0] for wi, y in zip(w, ys, strict=True))
            torch.testing.assert_close(out.lateral[k, xcol, 0], expected)


def test_each_lateral_plan_gives_the_gathered_sum(rng):
    """On 16x16 columns with radii 1..5 the model evaluates some levels tile by tile and others
    densely (functional.window_plan); every level, in both consensus modes, equals the
    plain gathered evaluation of eq. 3.1 on the level's own neighbourhood."""
    for mode in ("mean", "gaussian"):
        m = build(
            data__image_size=32,
            model__levels=5,
            attention__radius={"first": 1, "step": 1},
            consensus__mode=mode,
        )
        assert {p[0] for p in m.lateral_plan} == {"tiles", "dense"}
        e = torch.randn(5, 256, 2, 8, generator=rng)
        tau = torch.rand(5, 256, 2, 8, generator=rng) + 0.1 if mode == "gaussian" else None
        beta = torch.rand(5, generator=rng)
        mu, lt = m.lateral(e, tau, beta)
        for k in range(5):
            idx, valid = m.neighbours(k)
            em, et = lateral_attention(
                e[k], idx, valid, beta[k], None if tau is None else tau[k], method="gather"
            )
            torch.testing.assert_close(mu[k], em)
            if tau is not None:
                torch.testing.assert_close(lt[k], et)


def test_resampled_neighbourhoods_change_between_steps():
    """Resampled Gaussian neighbourhoods differ from step to step; fixed ones do not."""
    g = torch.Generator().manual_seed(fresh_seed())
    m = build(attention__neighbourhood="gaussian", attention__samples=5)
    e = torch.randn(3, 16, 2, 8)
    a, _ = m.lateral(e, None, m.beta(0, 3), g)
    b, _ = m.lateral(e, None, m.beta(0, 3), g)
    assert not torch.allclose(a, b)
    f = build(attention__neighbourhood="gaussian", attention__samples=5, attention__resample=False)
    a, _ = f.lateral(e, None, f.beta(0, 3), g)
    b, _ = f.lateral(e, None, f.beta(0, 3), g)
    torch.testing.assert_close(a, b)


def test_a_column_with_nobody_to_attend_to_is_a_config_error():
    """One column and self-attention off would make every attention row empty (NaN): refused."""
    with pytest.raises(bioglom.ConfigError, match="no neighbour"):
        build(frontend__patch_size=8, attention__include_self=False)


def test_attract_repel_option_routes_every_level_through_its_function(rng):
    """attention.lateral = "attract_repel" makes the model's lateral term, at every level, the
    attraction-repulsion term on that level's own neighbourhood with the config's thresholds;
    and it changes the term (the option does what it claims)."""
    kw = dict(
        attention__attract_above=0.2, attention__repel_below=-0.1, attention__repel_weight=0.8
    )
    m = build(attention__lateral="attract_repel", **kw)
    plain = build(**kw)
    e = torch.randn(3, 16, 2, 8, generator=rng)
    beta = torch.rand(3, generator=rng)
    mu, _ = m.lateral(e, None, beta)
    for k in range(3):
        idx, valid = m.neighbours(k)
        want, _ = attract_repel_attention(
            e[k], idx, valid, beta[k], attract_above=0.2, repel_below=-0.1, repel_weight=0.8
        )
        torch.testing.assert_close(mu[k], want)
    assert not torch.allclose(mu, plain.lateral(e, None, beta)[0])


def test_crossed_attract_repel_thresholds_are_a_config_error():
    with pytest.raises(bioglom.ConfigError, match="attention.repel_below"):
        build(
            attention__lateral="attract_repel",
            attention__attract_above=0.1,
            attention__repel_below=0.4,
        )
