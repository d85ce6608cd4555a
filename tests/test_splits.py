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


def test_moving_source_trains_on_videos_and_probes_the_still_scenes():
    """data.source = moving: the training set is data.n_train videos of settle.steps frames,
    exactly moving_scenes from data.seed + 2 with the [data] options; the probe and the
    linear-probe sets are exactly those of data.source = scenes (still frames)."""
    from bioglom.data import moving_scenes

    seed = fresh_seed() % 1000
    opts = dict(data__seed=seed, data__max_speed=2.0, data__part_jitter=0.1, data__palette=3,
                data__n_train=8, data__n_linear=6)  # fmt: skip
    moving = load_data(small_config(data__source="moving", **opts))
    still = load_data(small_config(data__source="scenes", **opts))
    want = moving_scenes(8, 3, 8, seed + 2, max_speed=2.0, part_jitter=0.1, palette=3)
    assert moving.train.frames.shape == (3, 8, 3, 8, 8)  # [settle.steps, n_train, C, H, W]
    np.testing.assert_array_equal(moving.train.frames, want.frames)
    np.testing.assert_array_equal(moving.train.object_masks, want.object_masks)
    for split in ("probe", "linear"):
        a, b = getattr(moving, split), getattr(still, split)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.object_masks, b.object_masks)


@pytest.mark.parametrize("rule", ["supervised", "end_to_end", "supervised_end_to_end"])
def test_moving_source_refuses_the_rules_that_cannot_learn_from_frames(rule):
    with pytest.raises(bioglom.ConfigError) as info:
        small_config(data__source="moving", train__rule=rule)
    assert info.value.field == "data.source" and rule in str(info.value)


@pytest.mark.parametrize("rule", ["codistill", "temporal", "self_contrast", "prototypes"])
def test_every_local_rule_trains_on_moving_scenes_one_frame_per_step(rule, tmp_path, monkeypatch):
    """Through the trainer each day update hands the rule a batch of videos [T, B, C, H, W]
    (T = settle.steps) drawn from the training videos, and the run finishes."""
    from bioglom.rules import RULES

    seen = []
    cls = RULES[rule]
    original = cls.update

    def spy(self, images, *args, **kwargs):
        seen.append(tuple(images.shape))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(cls, "update", spy)
    cfg = small_config(data__source="moving", train__rule=rule, train__updates=2)
    result = train(cfg, tmp_path / "m.h5", progress=False)
    assert result.status == "finished"
    assert seen == [(3, 4, 3, 8, 8)] * 2
