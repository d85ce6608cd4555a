"""bioglom.probe: logged scores recomputed from the run's own islands; evaluation's properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fresh_seed, small_config

import bioglom
from bioglom.scores import adjusted_rand_index, column_labels, fg_ari, score_islands


def test_probe_reports_agreement_one_for_shared_columns(tmp_path):
    """Through a whole run: shared columns agree exactly, unshared ones do not."""
    from bioglom.runs import open_run
    from bioglom.train import train

    for sharing in ("shared", "unshared"):
        cfg = small_config(model__sharing=sharing, train__rule="codistill", train__updates=2)
        train(cfg, tmp_path / f"{sharing}.h5", progress=False)
        with open_run(tmp_path / f"{sharing}.h5") as run:
            a = run.metrics["probe_agree_bu_L1"][-1]
            if sharing == "shared":
                assert a == pytest.approx(1.0, abs=1e-5)
            else:
                assert a < 0.9


def test_agreement_feeds_the_location_to_bottom_up_nets_that_take_it(tmp_path):
    """Through a whole run with model.bottom_up_location and the top-down location off: the
    agreement probe gives the bottom-up nets the same (input, location) in every column, as it
    does the top-down nets, so shared columns still agree exactly at every level."""
    from bioglom.runs import open_run
    from bioglom.train import train

    cfg = small_config(
        model__sharing="shared",
        model__bottom_up_location=True,
        topdown__location=False,
        train__updates=2,
    )
    assert train(cfg, tmp_path / "loc.h5", progress=False).status == "finished"
    with open_run(tmp_path / "loc.h5") as run:
        for name in ("probe_agree_bu_L1", "probe_agree_bu_L2", "probe_agree_td_L0"):
            assert run.metrics[name][-1] == pytest.approx(1.0, abs=1e-5), name


def test_probe_evaluation_leaves_the_model_unchanged():
    """Measuring the probe batch, in train or eval mode, changes no weight and no homeostatic
    statistic, and restores the mode it found."""
    import copy

    from bioglom.probe import Probe

    cfg = small_config(model__state_norm="homeostatic")
    model = bioglom.build_model(cfg)
    probe = Probe(torch.rand(4, 3, 8, 8), 1, 0.35, 0.8)
    for mode in (True, False):
        model.train(mode)
        before = copy.deepcopy(model.state_dict())
        probe.evaluate(model)
        assert model.training == mode
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("method", ["connected", "agglomerative"])
def test_run_records_the_scores_of_its_stored_islands(tmp_path, method):
    """The scores a run logs equal the scores recomputed here from the islands it stored and
    from its probe masks (majority over each 2x2 patch)."""
    from conftest import small_config

    from bioglom.runs import open_run
    from bioglom.train import train

    # 8x8 columns and 6 probe scenes, so that objects span several columns (FG-ARI defined),
    # and a low threshold, so that the untrained model's islands are not all singletons
    config = small_config(
        train__updates=1,
        data__image_size=16,
        data__n_probe=6,
        run__island_method=method,
        run__island_threshold=0.3,
        run__seed=fresh_seed(),
    )
    train(config, tmp_path / "run.h5", progress=False)
    with open_run(tmp_path / "run.h5") as run:
        step = int(run.snapshot_steps[-1])
        labels = run.snapshot(step)["islands"]
        truth = {
            "obj": column_labels(run.probe["object_masks"], (8, 8)),
            "part": column_labels(run.probe["part_masks"], (8, 8)),
        }
        metrics = {k: v[-1] for k, v in run.metrics.items()}
        assert run.attrs["island_method"] == method
    expected = score_islands(labels, truth)
    for k in range(3):
        assert metrics[f"probe_islands_L{k}"] == pytest.approx(expected["count"][k])
        got = metrics[f"probe_island_ari_across_L{k}"]
        assert got == pytest.approx(expected["ari_across"][k], nan_ok=True)
        for t in ("obj", "part"):
            for stem in ("fgari", "ari", "miou", "dfgari", "dari", "dmiou"):
                got, want = metrics[f"probe_{stem}_{t}_L{k}"], expected[f"{stem}_{t}"][k]
                assert got == pytest.approx(want, nan_ok=True)
    B = labels.shape[1]  # the control written out: image b's masks, image b+1's islands
    finite, nonzero = 0, 0
    for k in range(3):
        for stem, fn in (("dfgari", fg_ari), ("dari", adjusted_rand_index)):
            own = [fn(truth["obj"][b], labels[k, b]) for b in range(B)]
            other = [fn(truth["obj"][b], labels[k, (b + 1) % B]) for b in range(B)]
            ok = ~np.isnan(own)
            want = np.mean(np.array(own)[ok]) - np.mean(np.array(other)[ok]) if ok.any() else np.nan
            assert metrics[f"probe_{stem}_obj_L{k}"] == pytest.approx(want, nan_ok=True)
            finite += bool(np.isfinite(want))
            nonzero += bool(np.isfinite(want) and abs(want) > 1e-6)
    assert finite >= 3 and nonzero >= 1, (finite, nonzero)  # the check compared real numbers
    for k in range(2):
        assert metrics[f"probe_nesting_L{k}"] == pytest.approx(expected["nesting"][k])
        for stem in ("wnesting", "dwnesting"):
            got, want = metrics[f"probe_{stem}_L{k}"], expected[stem][k]
            assert got == pytest.approx(want, nan_ok=True)


def test_the_linear_probe_reads_every_level_and_the_raw_pixels(rng):
    """The ridge probe is fitted per level and on the raw pixels of the same images: the
    configured level's accuracy is probe_linear_acc; a class that brightens every red pixel by
    0.5 (uniform noise of variance 1/12 elsewhere: the classes' means lie 0.5 * sqrt(64) = 4
    apart along the red pixels, 14 noise standard deviations) is read from the pixels at >= 0.95
    on the held-out quarter; every name is among the run's metric names."""
    from bioglom.probe import Probe, probe_metric_names

    model = bioglom.build_model(small_config())
    labels = torch.randint(0, 2, (400,), generator=rng)
    images = torch.rand(400, 3, 8, 8, generator=rng)
    images[:, 0] += 0.5 * labels.view(-1, 1, 1)
    labels = labels.numpy()
    probe = Probe(
        images[:4], 1, 0.25, 0.8, linear_images=images, linear_labels=labels, linear_level=-1
    )
    metrics, _ = probe.evaluate(model)
    assert metrics["probe_linear_acc"] == metrics["probe_linear_acc_L2"]
    assert metrics["probe_linear_acc_pixels"] >= 0.95, metrics["probe_linear_acc_pixels"]
    names = {"probe_linear_acc_pixels", *(f"probe_linear_acc_L{k}" for k in range(3))}
    assert names <= set(metrics) and names <= set(probe_metric_names(3, ()))
