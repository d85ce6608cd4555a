"""bioglom.bench: the quick preset and the bf16 memory probe report every number (no timings)."""

from __future__ import annotations

import subprocess
import sys


def test_bench_quick_preset_writes_every_number(tmp_path):
    """`bioglom bench --preset quick` runs the reference timings in both column modes, the
    sweep, the memory probes and the target table, and writes them to JSON. No timing is
    asserted: these machines are shared and noisy."""
    import json

    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bioglom.cli", "bench", "--preset", "quick", "--nproc", "1",
         "--out", str(out)],
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
    assert "distributed" not in r  # --nproc 1: section 5 left out (test_bench_distributed.py)
    from bioglom.bench_mechanisms import ARMS

    assert set(r["mechanisms"]) == set(ARMS) and min(r["mechanisms"].values()) > 0
    assert {"layers_gflops", "lateral_plan"} <= set(r["reference"]["unshared"])
    # batch 1's memory bound: one read of the unshared model's weights, all of them
    from bioglom import build_model
    from bioglom.bench import config_for

    model = build_model(config_for(64, **{"model.sharing": "unshared"}))
    mb = 4 * sum(q.numel() for q in model.parameters()) / 1e6  # float32 parameters
    u = r["reference"]["unshared"]
    assert abs(u["weights_mb"] - mb) < 1e-9 and u["weights_read_ms"] > 0
    assert "unshared step at batch 1 / one read of its weights" in proc.stdout


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
