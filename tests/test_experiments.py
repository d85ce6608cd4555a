"""Experiment scripts run end to end on their quick presets and report every arm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bioglom.runs import open_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, arms",
    [
        ("shared_vs_codistilled.py", ("shared", "unshared", "isolated")),
        ("temporal_vs_delta.py", ("delta", "temporal", "spiking")),
        ("day_night.py", ("day_only", "long_blocks", "alternating", "interleaved")),
    ],
)
def test_quick_preset_writes_one_run_per_arm_and_a_table(script, arms, tmp_path):
    """`python experiments/NAME.py --preset quick` finishes, writes a finished run per arm with
    the arm's settings, and prints a table row per arm."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--preset", "quick", "--quiet",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for arm in arms:
        assert f"| {arm} |" in proc.stdout
        with open_run(tmp_path / "quick" / f"{arm}.h5") as run:
            assert run.status == "finished"
            cfg = run.config
            if script.startswith("shared"):
                assert cfg.model.sharing == arm and cfg.train.rule == "codistill"
            elif script.startswith("day"):
                assert cfg.data.source == "digits"
                assert ("night" in cfg.schedule.phases) == (arm in ("long_blocks", "alternating"))
                assert set(run.phase) <= {"day", "night", "interleaved"}
            else:
                assert cfg.train.rule == ("codistill" if arm == "delta" else "temporal")
                assert cfg.temporal.spiking == (arm == "spiking")
