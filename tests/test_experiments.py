"""Experiment scripts run end to end on their quick presets and report every arm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bioglom.runs import open_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, arms",
    [
        ("shared_vs_codistilled.py", ("shared", "unshared", "isolated")),
        ("temporal_vs_delta.py", ("delta", "temporal", "spiking", "temporal_prev")),
        ("day_night.py", ("day_only", "long_blocks", "alternating", "interleaved")),
        ("islands.py", ("untrained", "end_to_end", "codistill", "codistill_batch")),
    ],
)
def test_quick_preset_writes_one_run_per_arm_and_a_table(script, arms, tmp_path):
    """`python experiments/NAME.py --preset quick` finishes, writes a finished run per arm with
    the arm's settings (and the command line's `--set`, applied to every arm), and prints a
    table row per arm."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--preset", "quick", "--quiet",
         "--out", str(tmp_path), "--set", "data.seed=7"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for arm in arms:
        assert f"| {arm} |" in proc.stdout
        name = f"{arm}_seed0.h5" if script == "islands.py" else f"{arm}.h5"
        with open_run(tmp_path / "quick" / name) as run:
            assert run.status == "finished"
            cfg = run.config
            assert cfg.data.seed == 7, (script, arm)
            if script.startswith("shared"):
                assert cfg.model.sharing == arm and cfg.train.rule == "codistill"
            elif script.startswith("islands"):
                assert cfg.data.source == "scenes" and "probe_fgari_obj_L0" in run.metrics
                assert {"probe_dfgari_obj_L0", "probe_dfgari_part_L0"} <= set(run.metrics)
                assert {"probe_wnesting_L0", "probe_dwnesting_L0"} <= set(run.metrics)
                assert (tmp_path / "quick" / "islands.png").exists()
                for seed in (1, 2):  # every arm over three seeds
                    with open_run(tmp_path / "quick" / f"{arm}_seed{seed}.h5") as other:
                        assert other.status == "finished" and other.config.run.seed == seed
                if arm == "untrained":
                    assert cfg.train.updates == 0
                else:
                    assert cfg.train.rule == arm.split("_batch")[0] and cfg.train.updates > 0
                    assert (cfg.model.state_norm == "batch") == arm.endswith("_batch")
            elif script.startswith("day"):
                assert cfg.data.source == "digits"
                assert ("night" in cfg.schedule.phases) == (arm in ("long_blocks", "alternating"))
                assert set(run.phase) <= {"day", "night", "interleaved"}
            else:
                assert cfg.train.rule == ("codistill" if arm == "delta" else "temporal")
                assert cfg.temporal.spiking == arm.startswith("spiking")
                reference = "previous_state" if arm.endswith("_prev") else "prediction"
                assert cfg.temporal.reference == reference


def test_islands_table_leads_with_the_controls_and_lists_every_baseline(tmp_path):
    """`experiments/islands.py` (DESIGN section 10): its table leads with the mismatched-image
    control, it has a row for every baseline that learns nothing, it runs three seeds or more,
    and on hand-made scores it names an arm's level a result only where both object FG-ARI and
    its delta beat every baseline by more than the two spreads."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import islands as isl

    assert isl.HEADERS[2:4] == ["object FG-ARI delta", "part FG-ARI delta"]
    assert len(isl.SEEDS) >= 3
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
    from bioglom.report import arm_config

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


def test_bench_quick_preset_writes_every_number(tmp_path):
    """`bioglom bench --preset quick` runs the reference timings in both column modes, the
    sweep, the memory probes and the target table, and writes them to JSON. No timing is
    asserted: these machines are shared and noisy."""
    import json

    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bioglom.cli", "bench", "--preset", "quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert set(r["reference"]) == {"shared", "unshared"}
    for t in r["reference"].values():
        assert t["step_ms"] > 0 and t["learn_step_ms"] > 0 and t["mlp_gflops"] > 0
    assert r["matmul_gflops"] > 0 and len(r["sweep"]) >= 4
    assert {"codistill_2", "codistill_4", "end_to_end_2", "end_to_end_4"} <= set(r["memory"])
    assert "targets (ratios measured in this run)" in proc.stdout
    assert r["memory"]["codistill_big"]["grads"] > 0
    assert {"layers_gflops", "lateral_plan"} <= set(r["reference"]["unshared"])


def test_bench_memory_probe_in_bfloat16():
    """The bench's memory probe runs its update under bfloat16 autocast (``--bf16``): the
    column MLPs compute in bfloat16, while it holds fp32 weights, their gradients and Adam's
    two moments."""
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "bioglom.bench", "--memory-probe", "--bf16", "--columns", "16",
         "--steps", "2", "--batch", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["peak"] > 0
    assert m["matmul_dtype"] == "torch.bfloat16"
    assert m["optimizer"] >= 2 * m["grads"] > 0


def test_perf_probes_quick_prints_every_table():
    """`python experiments/perf_probes.py all --quick` (the micro-benchmarks behind the
    performance notes) runs every probe and prints its table. No timing is asserted."""
    proc = subprocess.run(
        [sys.executable, "experiments/perf_probes.py", "all", "--quick"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for heading in ("attention: one level", "optimizer: one step", "allocator: bmm",
                    "profile: 5 settling steps", "learning: a co-distillation step"):  # fmt: skip
        assert heading in proc.stdout
    assert "tiles T=4" in proc.stdout and "ChangeMeter" in proc.stdout
