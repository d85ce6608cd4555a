"""Plotting helpers: phase spans computed exactly; every helper draws what it is given."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fresh_seed

from bioglom.islands import parse_tree
from bioglom.plots import phase_spans

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bioglom import plots  # noqa: E402


def test_phase_spans_cover_each_run_of_updates():
    """Updates 1-2 day, 3 night, 4-5 day, 6-7 interleaved: spans are [a, b] in update units."""
    kinds = ["day", "day", "night", "day", "day", "interleaved", "interleaved"]
    assert phase_spans(kinds) == [
        (0, 2, "day"),
        (2, 3, "night"),
        (3, 5, "day"),
        (5, 7, "interleaved"),
    ]
    assert phase_spans([]) == []


def test_shade_phases_draws_one_patch_per_non_day_span():
    _, ax = plt.subplots()
    plots.shade_phases(ax, ["night"] * 3 + ["day"] * 4 + ["night"] * 2 + ["interleaved"])
    assert len(ax.patches) == 3
    plt.close("all")


def test_island_maps_parse_tree_and_arrows_draw_every_level():
    rng = np.random.default_rng(fresh_seed())
    K, hg, wg, d = 3, 4, 6, 5
    labels = rng.integers(0, 4, (K, 1, hg, wg))
    image = rng.random((3, 8, 12))
    axes = plots.plot_island_maps(image, labels[:, 0])
    assert len(axes) == K and all(len(a.images) == 1 for a in axes)
    tree = parse_tree(labels)
    ax = plots.plot_parse_tree(tree)
    assert len(ax.collections) == K  # one scatter per level
    ax = plots.plot_embeddings_2d(rng.normal(size=(K, hg * wg, d)), (hg, wg), labels=labels[:, 0])
    assert len(ax.collections) == K  # one quiver per level
    with pytest.raises(ValueError, match="row 9"):
        plots.plot_embeddings_2d(rng.normal(size=(K, hg * wg, d)), (hg, wg), row=9)
    plt.close("all")


def test_curves_from_a_dict_skip_missing_names():
    metrics = {"step": np.arange(5), "a": np.arange(5.0)}
    ax = plots.plot_curves(metrics, ["a", "missing"])
    assert len(ax.lines) == 1
    plt.close("all")


def test_plot_band_draws_the_seed_mean_between_the_lowest_and_highest_seed():
    """Three seeds at updates 0, 10, 20, the third stopped after update 10 (a diverged run):
    the line is the mean of the seeds present at each record and the band spans their min
    and max, worked by hand; a record no seed has is dropped."""
    _, ax = plt.subplots()
    steps = [np.array([0, 10, 20]), np.array([0, 10, 20]), np.array([0, 10])]
    values = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0]), np.array([2.0, 9.0])]
    line = plots.plot_band(ax, steps, values, label="arm")
    np.testing.assert_array_equal(line.get_xdata(), [0, 10, 20])
    np.testing.assert_allclose(line.get_ydata(), [2.0, 5.0, 4.0])  # (1+3+2)/3, (2+4+9)/3, 8/2
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    for x, lo, hi in ((0, 1.0, 3.0), (10, 2.0, 9.0), (20, 3.0, 5.0)):
        ys = vertices[np.isclose(vertices[:, 0], x), 1]
        assert np.isclose(ys.min(), lo) and np.isclose(ys.max(), hi), (x, ys)
    _, ax = plt.subplots()
    gap = [np.array([1.0, np.nan, 3.0])]
    line = plots.plot_band(ax, np.array([0, 10, 20]), gap)  # one seed: no band
    np.testing.assert_array_equal(line.get_xdata(), [0, 20])
    assert not ax.collections
    plt.close("all")
