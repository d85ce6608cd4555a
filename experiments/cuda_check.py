"""CUDA check: does the CUDA path give the CPU's results, and how fast is a settling step?

    python experiments/cuda_check.py [--out cuda_check.json]

1. Correctness: one model, copied to the GPU, settles the same images to the same states as on
   the CPU (TF32 off), and one update of each rule (end-to-end, co-distillation) computes the
   same gradients.
2. Speed, at the reference configuration (16x16 columns, 5 levels, d = 64, 2-layer MLPs with
   128 hidden units, window attention, batch 32) and at 64x64 columns: milliseconds per
   settling step (forward, no gradient), per co-distillation update step, and per end-to-end
   update step (16x16 only: back-propagation through 8 steps at 64x64 needs ~100 GB), shared
   and unshared;
   the column MLPs' achieved FLOP rate as a fraction of this card's own large-matmul rate,
   measured in the same run.

Needs CUDA; exits 1 where there is none. Timings use CUDA events, medians after warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

import bioglom
from bioglom import experiment
from bioglom.rules import make_rule

# ---- configuration -------------------------------------------------------------------------
REFERENCE = {**experiment.REFERENCE, "run.device": "cpu"}  # bench's; models moved by hand
BATCH = 32
SIZES = {"16x16": 32, "64x64": 128}  # columns -> image side at patch 2
REPEATS, WARMUP = 20, 5


def cuda_time(fn, repeats: int = REPEATS, warmup: int = WARMUP) -> float:
    """Median milliseconds of fn() measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def matmul_rate(n: int = 8192, dtype=torch.float32) -> float:
    """This card's large-matmul rate in TFLOP/s."""
    x = torch.randn(n, n, device="cuda", dtype=dtype)
    y = torch.randn(n, n, device="cuda", dtype=dtype)
    ms = cuda_time(lambda: x @ y, repeats=10, warmup=3)
    return 2 * n**3 / (ms * 1e-3) / 1e12


@torch.no_grad()
def _settle_state(model: bioglom.Glom, x: torch.Tensor) -> torch.Tensor:
    return model.settle(x).state.cpu()


def correctness() -> dict[str, float]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = {}
    for sharing in ("unshared", "shared"):
        for mode in ("mean", "gaussian"):
            cfg = bioglom.load_config(
                overrides={**REFERENCE, "model.sharing": sharing, "consensus.mode": mode}
            )
            cpu = bioglom.build_model(cfg)
            x = torch.rand(4, 3, 32, 32)
            s_cpu = _settle_state(cpu, x)
            gpu = bioglom.build_model(cfg, device="cuda")
            gpu.load_state_dict(cpu.state_dict())
            s_gpu = _settle_state(gpu, x)
            out[f"settle_maxabs_{sharing}_{mode}"] = float((s_cpu - s_gpu).abs().max())
        # one update of each rule: same gradients
        for rule_name in ("end_to_end", "codistill"):
            cfg = bioglom.load_config(
                overrides={**REFERENCE, "model.sharing": sharing, "train.rule": rule_name}
            )
            grads = []
            for device in ("cpu", "cuda"):
                m = bioglom.build_model(cfg, device=device)
                rule = make_rule(m, cfg)
                rule.optimizer = torch.optim.SGD(m.parameters(), lr=0.0)  # keep weights
                x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
                rule.update(x.to(device), torch.Generator().manual_seed(2))
                grads.append(torch.cat([p.grad.flatten().cpu() for p in m.parameters()]))
            rel = float((grads[0] - grads[1]).norm() / grads[0].norm())
            out[f"{rule_name}_grad_relerr_{sharing}"] = rel
    return out


def mlp_flops(m: bioglom.Glom, batch: int) -> float:
    """FLOPs of the bottom-up and top-down MLPs of one step (multiply-adds x 2)."""
    total = 0
    for net in (m.bottom_up, m.top_down):
        for layer in net.layers:
            total += layer.levels * m.N * batch * layer.d_in * layer.d_out * 2
    return float(total)


def time_one(cols: str, side: int, sharing: str, tf32: bool) -> dict:
    """Timings of one configuration on the GPU."""
    cfg = bioglom.load_config(
        overrides={**REFERENCE, "data.image_size": side, "model.sharing": sharing}
    )
    m = bioglom.build_model(cfg, device="cuda")
    x = torch.rand(BATCH, 3, side, side, device="cuda")
    with torch.no_grad():
        e, _ = m.initial_state(x)
        step_ms = cuda_time(lambda: m.step(e, None, x, 1, 8))
        mlp_ms = cuda_time(lambda: (m.bottom_up(e[:-1]), m.top_down(e[1:], extra=m.location)))
    g = torch.Generator().manual_seed(0)
    times = {}
    for rule_name in ("codistill", "end_to_end"):
        times[rule_name] = float("nan")
        if rule_name == "end_to_end" and cols != "16x16":
            continue  # back-propagation through 8 steps at 64x64 needs ~100 GB
        rule_cfg = bioglom.load_config(
            overrides={**REFERENCE, "data.image_size": side, "model.sharing": sharing,
                       "train.rule": rule_name}
        )  # fmt: skip
        rule = make_rule(m, rule_cfg)
        times[rule_name] = cuda_time(lambda r=rule: r.update(x, g), repeats=5, warmup=2) / 8
        del rule
    return {
        "columns": cols,
        "sharing": sharing,
        "tf32": tf32,
        "step_ms": step_ms,
        "codistill_ms_per_step": times["codistill"],
        "end_to_end_ms_per_step": times["end_to_end"],
        "mlp_ms": mlp_ms,
        "mlp_tflops": mlp_flops(m, BATCH) / (mlp_ms * 1e-3) / 1e12,
    }


def speed(tf32: bool) -> list[dict]:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    rows = []
    for cols, side in SIZES.items():
        for sharing in ("shared", "unshared"):
            rows.append(time_one(cols, side, sharing, tf32))
            torch.cuda.empty_cache()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="cuda_check.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("cuda_check: CUDA is not available here", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name()
    print(f"device: {name}, torch {torch.__version__}")
    result: dict = {"device": name, "torch": torch.__version__, "batch": BATCH}
    result["correctness"] = correctness()
    for k, v in result["correctness"].items():
        print(f"  {k:32s} {v:.3e}")
    torch.backends.cuda.matmul.allow_tf32 = False
    result["matmul_tflops_fp32"] = matmul_rate(dtype=torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = True
    result["matmul_tflops_tf32"] = matmul_rate(dtype=torch.float32)
    print(
        f"large matmul: fp32 {result['matmul_tflops_fp32']:.1f} TFLOP/s, "
        f"tf32 {result['matmul_tflops_tf32']:.1f} TFLOP/s"
    )
    rows = speed(False) + speed(True)
    result["speed"] = rows
    print(f"{'columns':>8} {'sharing':>9} {'tf32':>5} {'step ms':>8} {'codist ms/st':>12} "
          f"{'e2e ms/st':>9} {'MLP TFLOP/s':>11} {'of matmul':>9}")  # fmt: skip
    for r in rows:
        peak = result["matmul_tflops_tf32" if r["tf32"] else "matmul_tflops_fp32"]
        r["mlp_fraction_of_matmul"] = r["mlp_tflops"] / peak
        print(
            f"{r['columns']:>8} {r['sharing']:>9} {str(r['tf32']):>5} {r['step_ms']:8.2f} "
            f"{r['codistill_ms_per_step']:12.2f} {r['end_to_end_ms_per_step']:9.2f} "
            f"{r['mlp_tflops']:11.2f} {r['mlp_fraction_of_matmul']:9.1%}"
        )
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
