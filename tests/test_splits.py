"""bioglom.splits: which images train, probe and fit the linear probe, index by index."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fresh_seed, small_config

import bioglom
from bioglom.splits import load_data
from bioglom.train import train


def test_labelled_file_holds_out_a_linear_probe_set(tmp_path):
    """With labels, the n_linear images before the probe form the linear-probe set, and runs
    record a linear-probe accuracy between 0 and 1."""
    g = np.random.default_rng(fresh_seed())
    imgs = g.random((40, 1, 8, 8)).astype(np.float32)
    labels = g.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", images=imgs, labels=labels)
    cfg = small_config(
        data__source="file", data__path=str(tmp_path / "d.npz"), data__n_probe=4,
        data__n_linear=12, train__updates=1,
    )  # fmt: skip
    splits = load_data(cfg)
    np.testing.assert_array_equal(splits.linear.images, imgs[24:36])
    np.testing.assert_array_equal(splits.linear.labels, labels[24:36])
    np.testing.assert_array_equal(splits.probe.images, imgs[36:])
    assert len(splits.train) == 24
    result = train(cfg, tmp_path / "r.h5", progress=False)
    assert 0.0 <= result.summary["probe_linear_acc"] <= 1.0


def test_load_data_from_a_user_file(tmp_path):
    """data.source = file: the last n_probe images are the probe, the rest train; an image size
    the patch does not divide is a ConfigError on frontend.patch_size."""
    g = np.random.default_rng(fresh_seed())
    imgs = g.random((10, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=imgs)
    cfg = small_config(data__source="file", data__path=str(tmp_path / "d.npz"), data__n_probe=3)
    splits = load_data(cfg)
    np.testing.assert_array_equal(splits.train.images, imgs[:7])
    np.testing.assert_array_equal(splits.probe.images, imgs[7:])
    assert splits.linear is None  # no labels: no linear-probe set is held out
    model = bioglom.build_model(cfg)
    assert model.channels == 1 and model.grid == (4, 4)
    np.savez(tmp_path / "odd.npz", images=g.random((10, 1, 9, 9)).astype(np.float32))
    bad = small_config(data__source="file", data__path=str(tmp_path / "odd.npz"))
    with pytest.raises(bioglom.ConfigError, match="frontend.patch_size"):
        load_data(bad)
