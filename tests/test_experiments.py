"""bioglom.experiment, experiments/*.py: presets run, arms resume, tables' arithmetic by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    RELIABLE,
    assert_same_run,
    assert_same_weights,
    fresh_seed,
    interrupt_at,
    small_config,
)

import bioglom
from bioglom.baselines import BASELINES
from bioglom.checkpoint import checkpoint_path
from bioglom.cli import main as cli_main
from bioglom.config import load_config
from bioglom.experiment import arm_config, seed_list
from bioglom.runs import open_run
from bioglom.scores import column_labels
from bioglom.splits import load_data

ROOT = Path(__file__).resolve().parents[1]


ISLAND_ARMS = (
    "untrained",
    "end_to_end",
    "codistill",
    "codistill_batch",
    "supervised_shared_image_location",
    "supervised_end_to_end",
    "self_contrast",
    "common_fate",
)


@pytest.mark.parametrize(
    "script, arms",
    [
        ("shared_vs_codistilled.py", ("shared", "unshared", "isolated")),
        ("temporal_vs_delta.py", ("codistill", "temporal", "spiking", "temporal_prev")),
        ("day_night.py", ("day_only", "long_blocks", "alternating", "interleaved")),
        # a subset of the arms, one of each rule (every arm's config: the test below)
        ("islands.py", ISLAND_ARMS),
    ],
)
def test_quick_preset_writes_one_run_per_arm_and_a_table(script, arms, tmp_path):
    """`python experiments/NAME.py --preset quick` finishes, writes a finished run per arm with
    the arm's settings (and the command line's `--set`, applied to every arm), and prints a
    table row per arm."""
    subset = ["--arms", ",".join(arms)] if script == "islands.py" else []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--preset", "quick", "--quiet",
         "--out", str(tmp_path), "--set", "data.seed=7", *subset],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for arm in arms:
        assert f"| {arm} |" in proc.stdout
        with open_run(tmp_path / "quick" / f"{arm}_seed0.h5") as run:
            assert run.status == "finished"
            cfg = run.config
            assert cfg.data.seed == 7, (script, arm)
            if script.startswith("shared"):
                assert cfg.model.sharing == arm and cfg.train.rule == "codistill"
                assert {"probe_ensemble_others_L1", "probe_agree_bu_L1"} <= set(run.metrics)
            elif script.startswith("islands"):
                video = arm.startswith("common_fate")  # trained on moving scenes
                assert cfg.data.source == ("moving" if video else "scenes"), arm
                assert "probe_fgari_obj_L0" in run.metrics
                assert {"probe_dfgari_obj_L0", "probe_dfgari_part_L0"} <= set(run.metrics)
                assert {"probe_wnesting_L0", "probe_dwnesting_L0"} <= set(run.metrics)
                assert (tmp_path / "quick" / "islands.png").exists()
                for seed in (1, 2):  # every arm over three seeds
                    with open_run(tmp_path / "quick" / f"{arm}_seed{seed}.h5") as other:
                        assert other.status == "finished" and other.config.run.seed == seed
                if arm == "untrained":
                    assert cfg.train.updates == 0
                else:
                    assert cfg.train.updates > 0
                    assert_arm_settings(cfg, arm)
            elif script.startswith("day"):
                assert cfg.data.source == "digits"
                assert ("night" in cfg.schedule.phases) == (arm in ("long_blocks", "alternating"))
                assert set(run.phase) <= {"day", "night", "interleaved"}
            else:
                assert cfg.train.rule == ("codistill" if arm == "codistill" else "temporal")
                assert cfg.temporal.spiking == arm.startswith("spiking")
                reference = "previous_state" if arm.endswith("_prev") else "prediction"
                assert cfg.temporal.reference == reference


def assert_arm_settings(cfg, arm: str) -> None:
    """The run's config has every setting of the islands arm, and the defaults elsewhere where
    an arm name promises them (rule, sharing, normalisation, initialisation)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import islands as isl

    settings = isl.ARMS[arm]
    for key, value in settings.items():
        section, field = key.split(".")
        assert getattr(getattr(cfg, section), field) == value, (arm, key)
    assert cfg.train.rule == settings.get("train.rule", "codistill"), arm
    assert cfg.model.sharing == settings.get("model.sharing", "unshared"), arm
    assert cfg.model.state_norm == settings.get("model.state_norm", "homeostatic"), arm
    assert cfg.model.column_init == settings.get("model.column_init", "independent"), arm


def test_every_islands_arm_is_a_valid_config_with_its_settings():
    """Each arm of experiments/islands.py, under every preset, validates and carries its own
    settings (the quick preset above trains only a subset); the arm names say what they are."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import islands as isl

    for preset in isl.PRESETS.values():
        for arm, settings in isl.ARMS.items():
            cfg = arm_config(isl.COMMON, preset, settings, {"run.seed": 0})
            if arm != "untrained":
                assert_arm_settings(cfg, arm)
            assert ("_shared" in arm) == (cfg.model.sharing == "shared"), arm
            assert arm.endswith("_gaussian") == (cfg.consensus.mode == "gaussian"), arm
            assert arm.endswith("_night") == ("night" in cfg.schedule.phases), arm
            assert ("_location" in arm) == cfg.model.bottom_up_location, arm
            assert arm.endswith("_balanced") == cfg.supervised.balance_negatives, arm
            assert ("_layer" in arm) == (cfg.model.state_norm == "layer"), arm
            assert arm.endswith("_infonce") == (cfg.supervised.loss == "infonce"), arm
            assert ("_background" in arm) == cfg.supervised.shared_background, arm
            fate = arm.startswith("common_fate")
            assert (
                fate
                == (cfg.self_contrast.rank_by == "common_fate")
                == (cfg.data.source == "moving")
            ), arm
            if fate:
                assert cfg.train.rule == "self_contrast"
                assert arm.endswith("_still") == (cfg.data.max_speed == 0), arm
            else:
                assert cfg.train.rule in arm or arm in ("untrained", "codistill_batch"), arm


def test_islands_table_leads_with_the_controls_and_lists_every_baseline(tmp_path):
    """`experiments/islands.py` (docs/design.md §10): its table leads with the mismatched-image
    control, it has a row for every baseline that learns nothing, it runs three seeds or more,
    and on hand-made scores it names an arm's level a result only where both object FG-ARI and
    its delta beat every baseline by more than the two spreads."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import islands as isl

    assert isl.HEADERS[2:4] == ["object FG-ARI delta", "part FG-ARI delta"]
    assert all(len(seed_list(s)) >= 3 for s in isl.SEEDS.values()) and set(isl.SEEDS) == set(
        isl.PRESETS
    )
    assert set(isl.BASELINES) == {
        "fixed_blocks", "kmeans_position", "foreground_components", "colour_components",
        "kmeans_pixels",
    }  # fmt: skip
    ms = (np.array([0.5, 0.25]), np.array([0.1, np.nan]))
    assert isl.pm(ms, 0) == "0.500 ± 0.100" and isl.pm(ms, 1, signed=True) == "+0.250"
    assert isl.pm((np.array([np.nan]), np.array([np.nan])), 0) == "-"
    one = {"fgari_obj": (np.array([0.9, 0.3]), np.array([0.01, 0.01])),
           "dfgari_obj": (np.array([0.8, 0.2]), np.array([0.01, 0.01]))}  # fmt: skip
    one.update({f"best_{k}": v for k, v in one.items()})
    base = {"fgari_obj": (np.array([0.85]), np.array([0.0])),
            "dfgari_obj": (np.array([0.5]), np.array([0.0]))}  # fmt: skip
    base.update({f"best_{k}": v for k, v in base.items()})

    def win():
        return isl.winners({"arm": {"levels": 2, "connected": one}}, {"b": base}, "connected")

    assert win() == ["arm L0"]  # L1 is below the baseline; L0 beats it by more than the spread
    base["fgari_obj"] = (np.array([0.895]), np.array([0.0]))  # within the spread: no win
    assert win() == []
    base["fgari_obj"] = (np.array([0.85]), np.array([0.0]))
    base["best_fgari_obj"] = (np.array([0.95]), np.array([0.0]))  # the baseline's best wins
    assert win() == []
    base["best_fgari_obj"] = (np.array([np.nan]), np.array([np.nan]))  # undefined: not beaten
    assert win() == []
    base["best_fgari_obj"] = (np.array([0.85]), np.array([0.0]))
    assert win() == ["arm L0"]
    base["dfgari_obj"] = (np.array([0.795]), np.array([0.0]))  # FG-ARI wins, the delta does not
    assert win() == []
    base["dfgari_obj"] = (np.array([0.5]), np.array([0.0]))
    base["best_dfgari_obj"] = (np.array([0.85]), np.array([0.0]))  # nor at the best
    assert win() == []
    base["best_dfgari_obj"] = (np.array([0.5]), np.array([0.0]))
    other = {k: (np.array([0.1]), np.array([0.0])) for k in base}  # beaten by far
    assert isl.winners({"arm": {"levels": 2, "connected": one}}, {"b": base, "c": other},
                       "connected") == ["arm L0"]  # fmt: skip
    other["fgari_obj"] = (np.array([0.95]), np.array([0.0]))  # one baseline of two unbeaten
    assert isl.winners({"arm": {"levels": 2, "connected": one}}, {"b": base, "c": other},
                       "connected") == []  # fmt: skip


def test_arm_config_applies_layers_in_order_then_the_command_line():
    """An arm's config: defaults, then each layer in turn (a later layer wins), then `--set`
    items (three-part keys too); a bad `--set` is a ConfigError naming the field."""
    import bioglom
    from bioglom.experiment import arm_config

    cfg = arm_config(
        {"model.dim": 8, "train.lr": 0.5},
        {"model.dim": 16},
        sets=["train.lr=0.25", "consensus.weights_start.lateral=0", "model.sharing=shared"],
    )
    assert cfg.model.dim == 16 and cfg.train.lr == 0.25 and cfg.model.sharing == "shared"
    assert cfg.consensus.weights_start["lateral"] == 0.0
    assert (
        cfg.consensus.weights_start["bottom_up"]
        == bioglom.Config().consensus.weights_start["bottom_up"]
    )
    with pytest.raises(bioglom.ConfigError, match="model.levls"):
        arm_config({}, sets=["model.levls=3"])


def test_day_night_fall_and_recovery_arithmetic():
    """The day/night table's arithmetic on hand-made series: the fall is measured from the
    block's best value, half-fall time from the block start, recovery in night updates to
    within 10% of that best; a metric that did not fall gets no recovery count."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import day_night as dn

    kinds = ["day"] * 6 + ["night"] * 4 + ["day"] * 2
    assert dn.first_day_block(kinds) == (1, 6)
    assert dn.first_day_block(["night", "interleaved"]) is None
    steps = [0, 2, 4, 6, 8, 10, 12]
    values = [8.0, 10.0, 4.0, 2.0, 5.0, 9.5, 9.0]  # best 10 at update 2, end 2 at update 6
    fall, half, back = dn.fall_and_recovery(steps, values, kinds, (1, 6))
    assert fall == pytest.approx(0.8) and half == 4 and back == "4"  # 9.5 at update 10
    fall, half, back = dn.fall_and_recovery(steps, [1, 1, 1, 0.95, 1, 1, 1], kinds, (1, 6))
    assert back == "-"  # fell by 5% only
    fall, half, back = dn.fall_and_recovery(steps, [8, 10, 4, 2, 5, 6, 9], kinds, (1, 6))
    assert back == "never"  # the night ended at update 10 still far from 10


def test_perf_probes_quick_prints_every_table():
    """`python experiments/perf_probes.py all --quick` (the micro-benchmarks behind the
    performance notes) runs every probe and prints its table. No timing is asserted."""
    proc = subprocess.run(
        [sys.executable, "experiments/perf_probes.py", "all", "--quick"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for heading in ("attention: one level", "optimizer: one step", "allocator: bmm",
                    "profile: 5 settling steps", "learning: a co-distillation step",
                    "memory: tensors an update creates", "mlp: the column MLPs",
                    "lateral: its share", "peer: "):  # fmt: skip
        assert heading in proc.stdout
    assert "tiles T=4" in proc.stdout and "ChangeMeter" in proc.stdout


@pytest.mark.parametrize("side, radius, tile", [(8, 1, 4), (10, 2, 4), (12, 3, 8)])
def test_sdpa_tiles_is_eq_3_1_on_windows(side, radius, tile):
    """perf_probes.sdpa_tiles, timed against the tiled form in performance notes entry 15,
    computes what the gathered eq. 3.1 computes on square windows (so the probe compares two
    evaluations of one sum), also on grids the tiles do not divide."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import perf_probes

    from bioglom.functional import lateral_attention, window_neighbours, window_tile_bias

    seed = fresh_seed()
    print(f"seed {seed}")
    grid = (side, side + 1)
    e = torch.randn(side * (side + 1), 3, 5, generator=torch.Generator().manual_seed(seed))
    idx, valid = window_neighbours(grid, radius, True)
    want = lateral_attention(e, idx, valid, 0.7, method="gather")[0]
    bias = window_tile_bias(grid, radius, tile, True)
    got = perf_probes.sdpa_tiles(e, grid, radius, 0.7, tile, bias)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_tensor_peak_counts_what_is_alive_at_the_peak():
    """perf_probes.TensorPeak, behind the memory floor of docs/performance.md: tensors of 4, 8
    and 2 KiB made in turn, the 4 KiB one released before the 2 KiB one is made, peak at
    4 + 8 = 12 KiB; a view adds nothing, an excluded storage is not counted, and everything
    released leaves 0 alive."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import perf_probes

    held = torch.zeros(4096)
    with perf_probes.TensorPeak({held.untyped_storage().data_ptr()}) as probe:
        a = torch.zeros(1024)  # 4 KiB
        b = torch.ones(2048)  # 8 KiB
        _ = b.view(2, 1024)  # a view of b's storage
        _ = held.view(-1)  # excluded
        del a
        c = torch.ones(512)  # 2 KiB
        assert probe.live == (2048 + 512) * 4
        del b, c, _
    assert probe.peak == (1024 + 2048) * 4 and probe.live == 0
    assert sorted(n for n, _, _ in probe.at_peak) == [4096, 8192]


def test_experiment_arms_keep_finished_runs_and_resume_stopped_ones(tmp_path, monkeypatch):
    """`run_arm(resume=True)`, behind every experiment's --resume: a finished run is kept as
    it is; an interrupted one continues from its checkpoint to the uninterrupted result."""
    from bioglom.experiment import run_arm

    cfg = small_config(**RELIABLE)
    done = tmp_path / "done.h5"
    assert run_arm(cfg, done, progress=False) == "finished"
    stamp = done.stat().st_mtime_ns
    assert run_arm(cfg, done, resume=True, progress=False) == "finished"
    assert done.stat().st_mtime_ns == stamp
    stopped = tmp_path / "stopped.h5"
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(KeyboardInterrupt):  # the experiment stops with this arm
            run_arm(cfg, stopped, progress=False)
    assert run_arm(cfg, stopped, resume=True, progress=False) == "finished"
    assert_same_run(done, stopped)
    assert_same_weights(done, stopped)


def test_ctrl_c_in_an_experiment_arm_stops_the_experiment(tmp_path, monkeypatch):
    """Ctrl-C in one arm leaves that arm interrupted with its checkpoint and raises
    KeyboardInterrupt out of `run_arm`, so that no later arm is trained; an experiment script
    turns it into exit status 130 (`report.run_experiment`)."""
    from bioglom.experiment import run_arm, run_experiment

    cfg = small_config(**RELIABLE)
    path, later = tmp_path / "a.h5", tmp_path / "b.h5"

    def experiment():
        for p in (path, later):
            run_arm(cfg, p, progress=False)

    interrupt_at(monkeypatch, 5)
    assert run_experiment(experiment) == 130
    assert checkpoint_path(path).exists() and not later.exists()
    with open_run(path) as run:
        assert run.status == "interrupted"


CONFIGS = ROOT / "experiments" / "configs"


def test_scene_difficulty_runs_and_tables_every_baseline(capsys, monkeypatch) -> None:
    """experiments/scene_difficulty.py (issue 14): a tiny run prints a summary row per setting
    and a row per setting and baseline; on the default scenes components of non-black columns
    score objects well, and on the harder scenes (all options) it scores far lower."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    sd = importlib.import_module("scene_difficulty")

    results = sd.main(["--images", "8", "--seeds", "0"])
    out = capsys.readouterr().out
    for setting in sd.SETTINGS:
        assert out.count(f"| {setting} |") == 1 + len(BASELINES)
    for name in BASELINES:
        assert out.count(f"| {name} (") == len(sd.SETTINGS)
    fg = {s: r[0]["foreground_components"]["fgari_obj"] for s, r in results.items()}
    assert fg["default scenes"] > 0.7 and fg["all (hard_scenes.toml)"] < 0.3
    assert results["Tetrominoes (tetrominoes.toml)"][0]["counts"]["grid"] == (7, 7)


@pytest.mark.parametrize("name", ["hard_scenes.toml", "tetrominoes.toml"])
def test_harder_data_configs_load_and_settle_a_batch(name: str, capsys) -> None:
    """The configs of the harder data (issue 14): `bioglom config FILE` accepts the config; it
    validates with its data options set; the model built from the config alone has the data's
    geometry; a batch of its probe images settles to finite states."""
    path = CONFIGS / name
    assert cli_main(["config", str(path)]) == 0
    assert "[data]" in capsys.readouterr().out
    cfg = load_config(path)
    if name == "hard_scenes.toml":
        d = cfg.data
        assert (d.touching, d.palette, d.background) == (True, 3, "texture")
        assert (d.min_objects, d.max_objects) == (4, 6)
    else:
        assert cfg.data.source == "tetrominoes" and cfg.frontend.patch_size == 5
    small = load_config(path, {"data.n_train": 16, "data.n_probe": 2, "data.n_linear": 0})
    probe = load_data(small).probe
    model = bioglom.build_model(small)  # the geometry from the config alone
    assert (model.channels, model.image_size) == (probe.channels, probe.size)
    with torch.no_grad():
        result = model.settle(probe.images, steps=2)
    side = probe.size[0] // small.frontend.patch_size
    assert result.state.shape == (small.model.levels, side * side, 2, small.model.dim)
    assert torch.isfinite(result.state).all()
    assert np.isfinite(probe.images).all()


def test_settling_study_scores_every_setting_and_as_trained_equals_the_run(tmp_path):
    """experiments/settling.py (issue 14, item 2), quick preset, one seed: a row per setting
    and level and the long-settling table; its "as trained" scores, settled anew from the saved
    weights, equal the scores the run itself recorded at its last probe (two routes)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "settling.py"), "--preset", "quick",
         "--quiet", "--out", str(tmp_path), "--seeds", "0"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    summary = json.loads((tmp_path / "quick" / "summary.json").read_text())
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import settling
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    for field, values in settling.PRESETS["quick"]["sweeps"].items():
        for v in values:
            assert f"| {field} = {v} |" in proc.stdout
            assert f"{field} = {v}" in summary["settings"]
    assert "along one settling of 6 steps" in proc.stdout
    with open_run(tmp_path / "quick" / "trained_seed0.h5") as run:
        recorded = [float(run.metrics[f"probe_fgari_obj_L{k}"][-1]) for k in range(3)]
    assert np.allclose(summary["settings"]["as trained"]["fgari_obj"][0], recorded)


def test_islands_local_config_is_the_best_local_arm():
    """experiments/configs/islands_local.toml is exactly the islands experiment's arm
    BEST_LOCAL under the full preset (seed 0), and that arm is unsupervised and local."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import islands as isl

    from bioglom.rules import RULES

    cfg = load_config(ROOT / "experiments" / "configs" / "islands_local.toml")
    want = arm_config(isl.COMMON, isl.PRESETS["full"], isl.ARMS[isl.BEST_LOCAL], {"run.seed": 0})
    assert cfg == want
    rule = RULES[cfg.train.rule]
    assert not getattr(rule, "needs_truth", False) and cfg.train.rule != "end_to_end"


def test_common_fate_measures_every_arm_moving_and_still(tmp_path, monkeypatch):
    """`experiments/common_fate.py --preset quick` trains its arms (one seed here) and prints,
    for each arm, level and number of steps per frame, the change cosines of each kind of pair,
    moving and still; the motion's response with settling cancelled; and the changed patches."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "common_fate.py"), "--preset", "quick",
         "--quiet", "--out", str(tmp_path), "--seeds", "0",
         "--arms", "common_fate,self_contrast"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "moving: same_object" in proc.stdout and "still: background" in proc.stdout
    assert "response: same_object" in proc.stdout and "|R| / |step|" in proc.stdout
    assert "columns whose patch changes from one frame to the next" in proc.stdout
    for k in (1, 3):  # FRAME_STEPS: each level has a row per number of steps per frame
        assert f"|  | 1 | {k} |" in proc.stdout
    # on videos that stand still the motion has no effect: the two settles of the response
    # (video, first frame held) see the same frames with the same noise, so R is exactly 0,
    # and no patch changes
    sys.path.insert(0, str(ROOT / "experiments"))
    import common_fate

    monkeypatch.setitem(common_fate.MOTION, "moving", common_fate.MOTION["still"])
    monkeypatch.setattr(common_fate, "VIDEOS", 4)
    got = common_fate.measure(tmp_path / "quick" / "common_fate_seed0.pt")
    assert np.all(got["response"]["ratio"] == 0.0)
    assert got["patches"]["object"] == 0.0 and got["patches"]["background"] == 0.0
    for arm in ("common_fate", "self_contrast"):
        assert f"| {arm} | 0 |" in proc.stdout
        assert (tmp_path / "quick" / f"{arm}_seed0.pt").exists()


def test_consensus_schedules_set_the_weights_they_name():
    """Each arm of `experiments/consensus_schedule.py` weighs the four contributions at the
    first and the last settling step as its schedule names them (normalised to sum 1; level 0,
    where all four are present): rising's top-down share rises, falling's falls, flat's stays;
    the gaussian arm keeps the rising schedule and changes only the consensus mode."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import consensus_schedule as cs

    from bioglom.config import CONTRIBUTIONS

    td = CONTRIBUTIONS.index("top_down")
    shares = {}
    for arm, schedule in cs.SCHEDULES.items():
        cfg = arm_config(cs.COMMON, cs.PRESETS["quick"], schedule)
        model = bioglom.build_model(cfg)
        T = cfg.settle.steps
        for t, table in ((0, schedule["consensus.weights_start"]),
                         (T - 1, schedule["consensus.weights_end"])):  # fmt: skip
            want = np.array([table[c] for c in CONTRIBUTIONS])
            got = model.contribution_weights(t, T)[:, 0].numpy()
            np.testing.assert_allclose(got, want / want.sum(), rtol=1e-6)
        shares[arm] = [float(model.contribution_weights(t, T)[td, 0]) for t in (0, T - 1)]
        assert cfg.consensus.mode == ("gaussian" if arm == "gaussian" else "mean")
    assert shares["rising"][1] > shares["rising"][0]
    assert shares["falling"][1] < shares["falling"][0]
    assert shares["flat"][1] == pytest.approx(shares["flat"][0])
    assert shares["gaussian"] == pytest.approx(shares["rising"])


def test_consensus_schedule_quick_preset_reports_every_step(tmp_path):
    """`experiments/consensus_schedule.py --preset quick` trains every schedule and prints both
    tables (trained under each; the rising weights settled under each), a row per step."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "consensus_schedule.py"), "--preset",
         "quick", "--quiet", "--out", str(tmp_path), "--seeds", "0"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "1. trained and settled under each schedule" in out
    assert "2. trained under the rising schedule, settled under each" in out
    sys.path.insert(0, str(ROOT / "experiments"))
    import consensus_schedule as cs

    steps = cs.PRESETS["quick"]["settle.steps"]
    for arm in ("rising", "flat", "falling", "gaussian"):
        assert f"| {arm} | 1 |" in out
        assert (tmp_path / "quick" / f"{arm}_seed0.pt").exists()
    assert out.count(f"|  | {steps} |") == 4 + 3  # the last step of each schedule, both tables
    # two routes: the script's curves at the last step equal what each run's own probe recorded
    # at its last update (the same images, corruption and random source, computed elsewhere)
    model = bioglom.load_model(tmp_path / "quick" / "rising_seed0.pt")
    probe = load_data(model.config).probe
    objects = column_labels(probe.object_masks, model.grid)
    curves = cs.step_curves(model, torch.from_numpy(probe.images), objects)
    with open_run(tmp_path / "quick" / "rising_seed0.h5") as run:
        m = run.metrics
        assert int(m["step"][-1]) == model.config.train.updates
        assert curves["recon"][-1] == pytest.approx(float(m["probe_recon_mse"][-1]), rel=1e-4)
        assert curves["fill"][-1] == pytest.approx(float(m["probe_fill_mse"][-1]), rel=1e-4)
        for k in range(model.K):
            assert curves["islands"][-1, k] == pytest.approx(float(m[f"probe_islands_L{k}"][-1]))


def test_mean_sd_by_hand():
    """Seeds 1, 2, 3: mean 2, sample sd 1; a NaN seed is left out; one value has no sd; none
    finite is '-'."""
    from bioglom.experiment import mean_sd

    assert mean_sd([1.0, 2.0, 3.0]) == "+2.00 ± 1.00"
    assert mean_sd([1.0, float("nan"), 3.0], ".3f") == "2.000 ± 1.414"
    assert mean_sd([0.5], ".1f") == "0.5"
    assert mean_sd([float("nan")]) == "-"


def test_fovea_quick_preset_trains_every_retina_and_arm(tmp_path):
    """`experiments/fovea.py --preset quick` trains each arm on both retinas with the settings
    its name promises (retina, sharing, location code), prints a row for each and the pixel
    baselines; shared weights on the uniform retina agree exactly on the optic array, and on
    the foveated retina they do not (their columns see the world at other scales)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "fovea.py"), "--preset", "quick",
         "--quiet", "--out", str(tmp_path), "--set", "data.seed=7",
         "--set", "run.record_every=40", "--set", "train.updates=10"],  # quicker
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    rows = {}
    for retina in ("uniform", "foveated"):
        for arm in ("shared", "unshared", "unshared_noloc", "isolated"):
            line = next(s for s in out.splitlines() if s.startswith(f"| {retina} | {arm} |"))
            rows[retina, arm] = [c.strip() for c in line.strip("|").split("|")]
            with open_run(tmp_path / "quick" / f"{retina}_{arm}_seed0.h5") as run:
                cfg = run.config
                assert run.status == "finished" and cfg.data.seed == 7
                assert cfg.frontend.retina == retina
                assert cfg.model.sharing == ("unshared" if arm.startswith("unshared") else arm)
                assert cfg.topdown.location == (arm != "unshared_noloc")
    optic = 5  # the column of the optic agreement
    assert rows["uniform", "shared"][optic] == "1.000"
    assert float(rows["foveated", "shared"][optic]) < 0.999
    for name in ("foreground_components", "colour_components"):
        assert f"| {name} |" in out


def test_video_quick_preset_trains_both_arms_and_prints_three_tables(tmp_path):
    """`experiments/video.py --preset quick` trains the static and the video arm (on still
    scenes and on moving ones, the same style), prints the tracking, footnote-7 and prediction
    tables with a row per arm and level, and the colour-component tracking baseline; the
    tracking scores are in range (an IoU in [0, 1], track IoU at most the segment IoU's
    ceiling 1, a switch rate in [0, 1])."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "video.py"), "--preset", "quick",
         "--quiet", "--out", str(tmp_path), "--set", "data.seed=7",
         "--set", "run.record_every=40", "--set", "train.updates=10"],  # quicker
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for title in ("1. tracking", "2. footnote 7", "3. level 0's top-down prediction"):
        assert title in out
    for arm, source in (("static", "scenes"), ("video", "moving")):
        with open_run(tmp_path / "quick" / f"{arm}_seed0.h5") as run:
            assert run.status == "finished" and run.config.data.source == source
            assert run.config.data.touching and run.config.data.seed == 7
        line = next(s for s in out.splitlines() if s.startswith(f"| {arm} | 0 | "))
        cells = line.strip("|").split("|")
        track_iou, delta, segment_iou, switches = (float(c) for c in cells[2:6])
        assert 0 <= track_iou <= 1 and 0 <= segment_iou <= 1 and 0 <= switches <= 1
        assert -1 <= delta <= 1  # track IoU minus its mismatched-video control
        assert f"| {arm} | " in out.split("3. level 0")[1]
    assert "| colour components | - |" in out


def test_video_settle_matches_the_models_own_settle(tmp_path):
    """video.settle_video steps the model by hand to keep each step's predictions; its last
    state equals `Glom.settle` on the same video with the same random source (two routes)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import video

    from bioglom.data import moving_scenes

    model = bioglom.build_model(small_config())
    frames = torch.as_tensor(moving_scenes(3, 5, 8, seed=1).frames)
    mine = video.settle_video(model, frames, 4)
    with torch.no_grad():
        theirs = model.settle(frames, generator=torch.Generator().manual_seed(4)).state
    np.testing.assert_allclose(mine["state"][-1], theirs.numpy(), rtol=1e-5, atol=1e-6)
    assert mine["td0"].shape == mine["bu0"].shape == (5, *theirs.shape[1:])


def test_long_codistillation_power_law_by_hand():
    """shared_vs_codistilled's trend: for value = 0.01 u^0.5 (closed form) the log-log slope is
    0.5 and the value reaches 1 at u = 10^4 and 0.5 at 2500; a falling curve never reaches it;
    records outside the fitted range (and non-positive values) are ignored."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import shared_vs_codistilled as svc

    steps = np.array([0.0, 10, 100, 1000, 5000])
    values = 0.01 * steps**0.5
    values[0] = -1.0  # the record at update 0: outside any log fit
    assert svc.loglog_slope(steps, values, 10, 5000) == pytest.approx(0.5)
    assert svc.extrapolate(steps, values, 100, 5000, 1.0) == pytest.approx(1e4)
    assert svc.extrapolate(steps, values, 100, 5000, 0.5) == pytest.approx(2500)
    assert svc.extrapolate(steps, 1 / np.maximum(steps, 1), 10, 5000, 1.0) == float("inf")
    assert np.isnan(svc.loglog_slope(steps, values, 2000, 3000))  # fewer than two records


def test_long_preset_path_prints_the_trend_and_draws_it(tmp_path):
    """The `long` preset's own outputs, on a few updates: log-spaced records (round(10^(j/8))),
    the decade table, the power-law lines and agreement.png."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "shared_vs_codistilled.py"), "--preset",
         "long", "--quiet", "--out", str(tmp_path), "--seeds", "0", "--set", "train.updates=12",
         "--set", "data.n_train=64"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "| unshared | agree |" in out and "| isolated | others |" in out
    assert "unshared - isolated agreement ~ update^p" in out
    assert "the last decade's power law extrapolated" in out
    assert (tmp_path / "long" / "agreement.png").exists()
    with open_run(tmp_path / "long" / "unshared_seed0.h5") as run:
        assert list(run.steps) == [0, 1, 2, 3, 4, 6, 7, 10, 12]  # 5.62 -> 6, 7.50 -> 7


def test_seed_list_reads_seeds_and_names_a_bad_one():
    """`--seeds 0,1,2` is [0, 1, 2] (spaces and empty items ignored); a non-integer item or an
    empty list is an error that names it; without --seeds the preset's default holds."""
    import argparse

    from bioglom.experiment import experiment_parser, seed_list, seeds_of

    assert seed_list("0,1,2") == [0, 1, 2] and seed_list(" 3, ,7 ") == [3, 7]
    with pytest.raises(argparse.ArgumentTypeError, match="'x'"):
        seed_list("0,x")
    with pytest.raises(argparse.ArgumentTypeError, match="no seed"):
        seed_list(",")
    ap = experiment_parser("doc", ["quick", "full"], "runs/x", seeds={"quick": "0", "full": "0,1"})
    assert seeds_of(ap.parse_args(["--preset", "full"]), {"quick": "0", "full": "0,1"}) == [0, 1]
    assert seeds_of(ap.parse_args(["--seeds", "5"]), {"quick": "0", "full": "0,1"}) == [5]
    with pytest.raises(SystemExit):
        ap.parse_args(["--seeds", "-1"])


ARM_SCRIPTS = ("common_fate", "consensus_schedule", "day_night", "fovea", "islands", "settling",
               "shared_vs_codistilled", "temporal_vs_delta", "video")  # fmt: skip


@pytest.mark.parametrize("name", ARM_SCRIPTS)
def test_every_experiment_takes_seeds_and_jobs(name, monkeypatch, capsys):
    """Every script that trains arms runs its full preset on at least 3 seeds by default and
    offers `--seeds` and `--jobs` (its --help lists both)."""
    from bioglom.experiment import seed_list

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    module = __import__(name)
    assert len(seed_list(module.SEEDS["full"])) >= 3, name
    assert set(module.SEEDS) == set(module.PRESETS), name
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as done:
        module.main()
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--seeds" in text and "--jobs" in text, name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the script's CPU-only behaviour")
def test_gpu_check_script_runs_every_part_and_logs_each(tmp_path):
    """experiments/gpu_check.sh (issue 18, item 5) on a machine without CUDA: every part runs
    in turn with its log in $OUT, and the summary gives each part's exit status; the GPU tests
    are all skipped (exit 0) and the parts that need CUDA fail and say so, without stopping
    the parts after them."""
    import os

    out = tmp_path / "gpu"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "experiments/gpu_check.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    assert "no CUDA" in summary
    status = dict(
        line.split(": exit ") for line in summary.splitlines() if ": exit " in line
    )  # fmt: skip
    assert list(status) == ["cuda_tests", "cuda_check", "bench_fp32", "bench_bf16"]
    assert status["cuda_tests"].startswith("0 ")
    assert "skipped" in (out / "cuda_tests.txt").read_text()
    for part in ("cuda_check", "bench_fp32", "bench_bf16"):
        assert not status[part].startswith("0 "), part
    assert "CUDA is not available" in (out / "cuda_check.txt").read_text()
