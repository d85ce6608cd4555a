"""bioglom.bench_distributed: section 5 of the bench measures and counts every exchange."""

from __future__ import annotations


def test_bench_distributed_section_counts_the_exchanges():
    """Section 5 of the bench on 2 gloo ranks: weak and strong scaling are measured, and the
    bytes each rank sends per settling step are what the geometry says. Window attention of
    radius r_l sends r_l grid rows of W columns, B images and d numbers of 4 bytes per level
    to the one neighbour a rank has; Gaussian neighbourhoods all-gather each level, so a rank
    sends its whole state [K, N/2, B, d] once to the other. No timing is asserted."""
    from bioglom.bench import PRESETS, config_for
    from bioglom.bench_distributed import _measure, scaling

    p = dict(PRESETS["quick"])
    rows, cols = p["dist_grid"]
    window = config_for(64, **{"model.sharing": "unshared"})
    r = scaling({"window": window}, p, 2)["window"]
    assert r["weak"] > 0 and r["strong_vs_1_thread"] > 0 and r["strong_vs_2_threads"] > 0
    K, B, d = window.model.levels, p["batch"], window.model.dim
    radii = [window.attention.radius["first"] + i * window.attention.radius["step"]
             for i in range(K)]  # fmt: skip
    assert r["sent_by_kind"]["halo"] == sum(radii) * cols * B * d * 4
    assert r["state_bytes"] == K * (rows // 2) * cols * B * d * 4

    gaussian = config_for(
        64, **{"model.sharing": "unshared", "attention.neighbourhood": "gaussian"}
    )
    g = _measure(gaussian, (rows, cols), 2, 1, p)
    assert "halo" not in g["sent_by_kind"]
    assert g["sent_by_kind"]["gather"] == g["state_bytes"] == K * (rows // 2) * cols * B * d * 4
