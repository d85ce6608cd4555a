"""Benchmark: how fast a settling step is, shared against unshared columns, against the machine.

    bioglom bench --preset quick|full [--device cpu|cuda] [--tf32] [--bf16] [--out bench.json]
    python experiments/bench.py --preset quick|full [--device cpu|cuda] [--out bench.json]

Everything is timed in one process, so that the ratios it prints compare numbers measured on
the same (shared, noisy) machine at the same time: medians over repeated runs after warm-up.

1. The reference configuration (16x16 columns, 5 levels, d = 64, 2-layer MLPs with 128 hidden
   units, window attention of radius 1..5, batch 32): one settling step, and one settling step
   with its co-distillation update, in each column mode; the column MLPs alone, as a share of
   the machine's own large-matmul FLOP rate measured in the same run; lateral attention alone,
   as a share of the step.
2. A sweep: columns N from 64 to 4096, batch 1 to 64, levels, attention radius.
3. Memory (each in a fresh subprocess, peak resident memory on the CPU, peak allocated on
   CUDA): one update at 4, 16 and 64 settling steps for co-distillation and for the end-to-end
   baseline; and peak memory at N = 4096 against weights + optimiser state + state tensors.
4. A peer, when the PyPI package ``glom-pytorch`` is installed (``pip install -e
   ".[peers]"``): its forward settling at the matching configuration (16x16 columns, 5 levels,
   d = 64, hidden 256, full attention, 8 steps, batch 1 and 32), next to bioglom's shared and
   unshared steps at that configuration.
5. Columns sharded over processes (``--nproc P``, default 2; CPU, gloo;
   :mod:`bioglom.bench_distributed`): weak and strong scaling of the learning step, and the
   bytes each rank sends per settling step against its state, for window attention (halos)
   and Gaussian neighbourhoods (all-gathers).
6. The mechanisms added for islands (:mod:`bioglom.bench_mechanisms`): same-image and
   cross-image negatives, the prototype assignment, the supervised group contrast and the
   attraction-repulsion lateral term, each as its share of a learning step at the reference.

Writes every number to a JSON file and prints the tables with the targets of issue 7.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from . import build_model, load_config
from .allocator import keep_freed_memory
from .bench_distributed import report_rows, scaling
from .bench_mechanisms import mechanism_arms, update_fn
from .config import Config
from .experiment import REFERENCE, markdown_table
from .model import Glom
from .rules import make_rule

__all__ = ["main", "PRESETS", "REFERENCE"]

# ---- configuration -------------------------------------------------------------------------
PRESETS = {
    # seconds; run by the tests (no timing is asserted)
    "quick": {
        "columns": 64,  # 8x8: the reference shape, smaller
        "batch": 2,
        "repeats": 2,
        "warmup": 1,
        "matmul_n": 512,
        "sweep_columns": [16, 64],
        "sweep_batch": [1],
        "sweep_levels": [3],
        "sweep_radius": [2],
        "memory_steps": [2, 4],
        "memory_columns": 64,
        "peer_batches": [1],
        "dist_grid": (10, 8),  # 2 bands of 5 rows: the reference's widest halo
    },
    # the numbers of docs/performance.md
    "full": {
        "columns": 256,  # 16x16
        "batch": 32,
        "repeats": 5,
        "warmup": 1,
        "matmul_n": 2048,
        "sweep_columns": [64, 256, 1024, 4096],
        "sweep_batch": [1, 8, 32, 64],
        "sweep_levels": [3, 5, 7],
        "sweep_radius": [1, 2, 4],
        "memory_steps": [4, 16, 64],
        "memory_columns": 4096,
        "peer_batches": [1, 32],
        "dist_grid": (16, 16),
    },
}
MODES = ("shared", "unshared")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall-clock milliseconds of ``fn()`` after ``warmup`` calls."""
    return interleaved_ms([fn], device, repeats, warmup)[0]


def interleaved_ms(fns: list, device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Median milliseconds of each of ``fns``, timed in turn within every repeat, so that a
    slow spell of a shared machine falls on all of them rather than on one."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            sync(device)
            ts.append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(ts) for ts in times]


def matmul_gflops(n: int, device: torch.device, repeats: int) -> float:
    """The machine's large-matmul fp32 rate (GFLOP/s), best of ``repeats``."""
    x = torch.randn(n, n, device=device)
    y = torch.randn(n, n, device=device)
    best = min(median_ms(lambda: x @ y, device, 1, 1) for _ in range(max(3, repeats)))
    return 2 * n**3 / (best * 1e-3) / 1e9


def config_for(columns: int = 256, **overrides) -> Config:
    side = int(round(columns**0.5)) * 2
    return load_config(overrides={**REFERENCE, "data.image_size": side, **overrides})


def mlp_flops(model: Glom, batch: int) -> float:
    """FLOPs (2 x multiply-adds) of one step's bottom-up and top-down column MLPs."""
    total = 0
    for net in (model.bottom_up, model.top_down):
        for layer in net.layers:
            total += layer.levels * model.N * batch * layer.d_in * layer.d_out * 2
    return float(total)


def time_config(cfg: Config, batch: int, device, p: dict, learn: bool = True) -> dict:
    """:func:`time_configs` of one configuration."""
    return time_configs([cfg], batch, device, p, learn)[0]


def time_configs(
    cfgs: list[Config], batch: int, device, p: dict, learn: bool = True, extra: tuple = ()
) -> list:
    """Milliseconds of one settling step, its column MLPs, their linear layers alone, its
    lateral attention, one read of all its weights (``sum``: the memory traffic a step cannot
    avoid, which bounds unshared columns at batch 1), and one settling step with the
    co-distillation update (an update of ``settle.steps`` steps, divided by them), for each
    configuration; all of them timed in turn within each repeat (:func:`interleaved_ms`), so
    that their ratios are fair.
    Functions in ``extra`` are timed in the same turns; their medians are appended to the
    list as ``{"ms": ...}``."""
    fns, outs = [], []
    for cfg in cfgs:
        model = build_model(cfg, device=device)
        side = cfg.data.image_size
        x = torch.rand(batch, 3, side, side, device=device)
        steps = cfg.settle.steps
        with torch.no_grad():
            e, tau = model.initial_state(x)
        beta = model.beta(1, steps)
        layers = [
            (layer, torch.randn(layer.levels, model.N, batch, layer.d_in, device=device))
            for net in (model.bottom_up, model.top_down)
            for layer in net.layers
        ]

        def settling(f, m=model):  # forward timings in eval mode, whatever ran before
            def run():
                m.eval()
                with torch.no_grad():
                    return f()

            return run

        mine = [
            settling(lambda m=model, e=e, tau=tau, x=x, s=steps: m.step(e, tau, x, 1, s)),
            settling(
                lambda m=model, e=e: (
                    m.bottom_up(e[:-1], extra=m.bu_location),
                    m.top_down(e[1:], extra=m.location),
                )
            ),
            settling(lambda ls=layers: [layer(h) for layer, h in ls]),
            settling(lambda m=model, e=e, tau=tau, b=beta: m.lateral(e, tau, b)),
            # one read of every weight: the memory traffic a step cannot avoid (batch 1's bound)
            settling(lambda m=model: [w.sum() for w in m.parameters()]),
        ]
        if learn:
            rule = make_rule(model, cfg)
            g = torch.Generator(device=device).manual_seed(0)

            def learning(m=model, r=rule, x=x, g=g):
                m.train()  # as in training: homeostatic statistics move
                return r.update(x, g)

            mine.append(learning)
        fns.extend(mine)
        flops = mlp_flops(model, batch)
        outs.append(
            {
                "columns": model.N,
                "batch": batch,
                "levels": model.K,
                "radius": cfg.attention.radius,
                "sharing": cfg.model.sharing,
                "lateral_plan": [f"{m}{t or ''}" for m, t in model.lateral_plan],
                "weights_mb": sum(q.numel() * q.element_size() for q in model.parameters()) / 1e6,
                "_flops": flops,
                "_steps": steps,
                "_n": len(mine),
            }
        )
    ms = interleaved_ms(fns + list(extra), device, p["repeats"], p["warmup"])
    i = 0
    for out in outs:
        mine, i = ms[i : i + out["_n"]], i + out["_n"]
        flops, steps = out.pop("_flops"), out.pop("_steps")
        out.pop("_n")
        out.update(
            step_ms=mine[0],
            mlp_ms=mine[1],
            mlp_gflops=flops / (mine[1] * 1e-3) / 1e9,
            layers_ms=mine[2],
            layers_gflops=flops / (mine[2] * 1e-3) / 1e9,
            lateral_ms=mine[3],
            weights_read_ms=mine[4],
        )
        if learn:
            out["learn_step_ms"] = mine[5] / steps
    return outs + [{"ms": t} for t in ms[i:]]


def _proc_status(key: str) -> int:
    """A ``kB`` field of /proc/self/status in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_probe(args: argparse.Namespace) -> int:
    """Child process: one update; prints as JSON the peak memory it held above the process's
    baseline (torch loaded and warmed up, no model yet), with the sizes of what must be held:
    weights and buffers, optimiser state, and the state tensor ``[K, N, B, d]``.

    CPU: the peak resident set (``VmHWM``, reset just before the measured update through
    ``/proc/self/clear_refs``); CUDA: ``torch.cuda.max_memory_allocated``."""
    device = torch.device(args.device)
    warm = torch.randn(256, 256, device=device)
    (warm @ warm).sum().item()  # load the kernels and thread pools before the baseline
    baseline = _proc_status("VmRSS") if device.type == "cpu" else 0
    cfg = config_for(args.columns, **{"settle.steps": args.steps, "train.rule": args.rule})
    model = build_model(cfg, device=device)
    side = cfg.data.image_size
    x = torch.rand(args.batch, 3, side, side, device=device)
    rule = make_rule(model, cfg)
    model.train()
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    with amp:
        rule.update(x)  # warm-up: allocates the optimiser state
    sync(device)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    opt = sum(
        v.numel() * v.element_size()
        for s in rule.optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )
    grads = sum(q.numel() * q.element_size() for q in model.parameters() if q.requires_grad)
    state = model.K * model.N * args.batch * model.d * 4
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        with amp:
            rule.update(x)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        with amp:
            rule.update(x)
        peak = _proc_status("VmHWM") - baseline
    with amp, torch.no_grad():  # after the measurement: what the column MLPs compute in
        mm_dtype = str(model.bottom_up(rule.last_state[:-1], extra=model.bu_location).dtype)
    print(json.dumps({"peak": peak, "weights": weights, "grads": grads, "optimizer": opt,
                      "state": state, "matmul_dtype": mm_dtype}))  # fmt: skip
    return 0


def measure_memory(
    rule: str,
    steps: int,
    columns: int,
    batch: int,
    device: str,
    keep_freed: bool = True,
    bf16: bool = False,
) -> dict:
    """Peak memory of one update in a fresh process (above its baseline); ``keep_freed=False``
    leaves glibc's allocator at its defaults there (:mod:`bioglom.allocator`)."""
    base = [sys.executable, "-m", "bioglom.bench", "--memory-probe", "--device", device]
    args = ["--rule", rule, "--steps", str(steps), "--columns", str(columns)]
    args += ["--batch", str(batch)] + (["--bf16"] if bf16 else [])
    env = {**os.environ, "BIOGLOM_KEEP_FREED_MEMORY": "1" if keep_freed else "0"}
    out = subprocess.run(
        base + args, capture_output=True, text=True, check=True, timeout=1200, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def peer_step(batch: int, device):
    """glom-pytorch's forward settling of 8 steps at the matching configuration, as a function
    to time; None when the package is not installed."""
    try:
        from glom_pytorch import Glom as PeerGlom
    except ImportError:
        return None
    peer = PeerGlom(dim=64, levels=5, image_size=32, patch_size=2).to(device)
    x = torch.rand(batch, 3, 32, 32, device=device)

    def run():
        with torch.no_grad():
            return peer(x, iters=8)

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bioglom bench", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default="runs/bench.json", help="JSON file for every number")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA")
    ap.add_argument(
        "--bf16", action="store_true", help="autocast to bfloat16 (the matmul rate too)"
    )
    ap.add_argument(
        "--nproc",
        type=int,
        default=2,
        metavar="P",
        help="ranks of the distributed section (CPU, gloo; 1 leaves it out)",
    )
    ap.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rule", default="codistill", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--columns", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    kept = keep_freed_memory()  # as in training (bioglom.allocator)
    if args.memory_probe:
        return memory_probe(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench: --device cuda, but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    p = dict(PRESETS[args.preset])
    if device.type == "cuda":
        p["matmul_n"] = max(p["matmul_n"], 8192)  # large enough to fill a data-centre GPU
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    result: dict = {
        "preset": args.preset,
        "device": str(device),
        "device_name": name or platform.machine(),
        "threads": torch.get_num_threads(),
        "tf32": args.tf32,
        "bf16": args.bf16,
        "keep_freed_memory": kept,
        "torch": torch.__version__,
    }
    t_start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        timings(result, p, device, args)
    result["wall_s"] = time.perf_counter() - t_start

    report(result, p)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nall numbers: {out}")
    return 0


def timings(result: dict, p: dict, device: torch.device, args: argparse.Namespace) -> None:
    """Sections 1-4 of the module docstring, into ``result``."""
    B = p["batch"]
    gf = matmul_gflops(p["matmul_n"], device, p["repeats"])
    result["matmul_gflops"] = gf

    # 1. the reference configuration
    n0 = p["columns"]
    cfgs = [config_for(n0, **{"model.sharing": m}) for m in MODES]
    ref = dict(zip(MODES, time_configs(cfgs, B, device, p), strict=True))
    result["reference"] = ref
    # 2. the sweep (unshared; the reference values elsewhere)
    sweep = []
    for n in p["sweep_columns"]:
        cfg = config_for(n, **{"model.sharing": "unshared"})
        sweep.append(time_config(cfg, B, device, p, learn=n <= 1024))
    for b in p["sweep_batch"]:
        sweep.append(time_config(config_for(n0, **{"model.sharing": "unshared"}), b, device, p))
    for k in p["sweep_levels"]:
        cfg = config_for(n0, **{"model.sharing": "unshared", "model.levels": k})
        sweep.append(time_config(cfg, B, device, p, learn=False))
    for r in p["sweep_radius"]:
        cfg = config_for(n0, **{"model.sharing": "unshared", "attention.radius": r})
        sweep.append(time_config(cfg, B, device, p, learn=False))
    result["sweep"] = sweep
    # 3. memory
    mem = {}
    for rule in ("codistill", "end_to_end"):
        for s in p["memory_steps"]:
            mem[f"{rule}_{s}"] = measure_memory(rule, s, n0, B, args.device, bf16=args.bf16)
    big = p["memory_columns"]
    mem["codistill_big"] = measure_memory("codistill", 8, big, B, args.device, bf16=args.bf16)
    if device.type == "cpu":  # the allocator setting trades resident memory for speed
        mem["codistill_big_glibc_default"] = measure_memory(
            "codistill", 8, big, B, args.device, keep_freed=False, bf16=args.bf16
        )
    result["memory"] = mem
    # 4. the peer
    peer = {}
    for b in p["peer_batches"]:
        fn = peer_step(b, device)
        if fn is None:
            break
        # full attention: a window wider than the 16x16 grid
        cfgs = [config_for(256, **{"model.sharing": m, "model.hidden": 256,
                                   "attention.radius": 15}) for m in MODES]  # fmt: skip
        *ours, theirs = time_configs(cfgs, b, device, p, learn=False, extra=(fn,))
        peer[b] = {"peer_ms": theirs["ms"] / 8}
        for m, t in zip(MODES, ours, strict=True):
            peer[b][m] = t["step_ms"]
    result["peer"] = peer
    # 6. the mechanisms for islands, beside co-distillation in the same repeats
    arms = mechanism_arms(lambda **o: config_for(n0, **o))
    ms = interleaved_ms(
        [update_fn(c, B, device) for c in arms.values()], device, p["repeats"], p["warmup"]
    )
    steps = arms["codistill"].settle.steps
    result["mechanisms"] = {name: t / steps for name, t in zip(arms, ms, strict=True)}
    # 5. sharded over processes
    if args.nproc > 1:
        cfgs = {
            "window": config_for(p["columns"], **{"model.sharing": "unshared"}),
            "gaussian": config_for(
                p["columns"],
                **{"model.sharing": "unshared", "attention.neighbourhood": "gaussian"},
            ),
        }
        result["distributed"] = scaling(cfgs, p, args.nproc)


def report(r: dict, p: dict) -> None:
    ref, gf = r["reference"], r["matmul_gflops"]
    dtype = "bf16" if r.get("bf16") else "fp32"
    print(f"\nbench, preset {r['preset']}: {r['device_name']} ({r['device']}, "
          f"{r['threads']} threads), torch {r['torch']}; matmul {gf:.1f} GFLOP/s "
          f"({p['matmul_n']}^2 {dtype}); medians of {p['repeats']} after {p['warmup']} "
          "warm-up")  # fmt: skip
    rows = []
    for m in MODES:
        t = ref[m]
        rows.append([m, t["step_ms"], t["learn_step_ms"], t["mlp_ms"], t["mlp_gflops"] / gf,
                     t["layers_gflops"] / gf, t["lateral_ms"] / t["step_ms"]])  # fmt: skip
    side = int(round(p["columns"] ** 0.5))
    print(f"\nreference: {side}x{side} columns, 5 levels, d = 64, hidden 128, window attention, "
          f"batch {p['batch']}\n")  # fmt: skip
    print(markdown_table(["columns", "step ms", "step + co-distillation ms", "column MLPs ms",
                          "MLPs / matmul rate", "layers / matmul rate", "lateral / step"],
                         rows))  # fmt: skip
    u, s = ref["unshared"], ref["shared"]
    targets = [
        ["unshared / shared, step with learning", u["learn_step_ms"] / s["learn_step_ms"],
         "<= 1.25"],
        ["column MLPs / matmul rate (unshared)", u["mlp_gflops"] / gf, ">= 0.6"],
        ["their linear layers alone / matmul rate", u["layers_gflops"] / gf, "(beside it)"],
        ["lateral attention / step (unshared)", u["lateral_ms"] / u["step_ms"], "<= 0.25"],
    ]  # fmt: skip
    by_n = [t for t in r["sweep"] if t["batch"] == p["batch"] and t["levels"] == 5
            and t["radius"] == {"first": 1, "step": 1}]  # fmt: skip
    # the sweep times the reference shape more than once: take the median of those
    per_col = {
        n: statistics.median(t["step_ms"] / n for t in by_n if t["columns"] == n)
        for n in {t["columns"] for t in by_n}
    }
    lo = 256 if 256 in per_col else min(per_col)
    if max(per_col) > lo:
        targets.append([f"time per column-step, N = {max(per_col)} / N = {lo}",
                        per_col[max(per_col)] / per_col[lo], "<= 1.3"])  # fmt: skip
    mem = r["memory"]
    steps = p["memory_steps"]
    for rule in ("codistill", "end_to_end"):
        a, b = mem[f"{rule}_{steps[0]}"]["peak"], mem[f"{rule}_{steps[-1]}"]["peak"]
        targets.append([f"{rule}: peak memory at {steps[-1]} / {steps[0]} steps", b / a,
                        "flat (1.0)" if rule == "codistill" else "(baseline)"])  # fmt: skip
    big = mem["codistill_big"]
    need = big["weights"] + big["optimizer"] + big["state"]
    targets.append([f"peak memory at N = {p['memory_columns']} / (weights + optimiser + state)",
                    big["peak"] / need, "<= 1.3"])  # fmt: skip
    targets.append(["the same, with the summed gradients (one per weight) in the denominator",
                    big["peak"] / (need + big["grads"]), "(beside it)"])  # fmt: skip
    if "codistill_big_glibc_default" in mem:
        d = mem["codistill_big_glibc_default"]
        targets.append(["peak memory at N = {} / (weights + optimiser + state), glibc's default "
                        "allocator".format(p["memory_columns"]), d["peak"] / need,
                        "(beside it)"])  # fmt: skip
    for t in r["sweep"]:  # unshared columns at batch 1 read every weight for one image
        if t["batch"] == 1 and t["columns"] == p["columns"] and t["levels"] == 5:
            targets.append([f"unshared step at batch 1 / one read of its weights "
                            f"({t['weights_mb']:.0f} MB, {t['weights_read_ms']:.2f} ms)",
                            t["step_ms"] / t["weights_read_ms"], "(the bound: >= 1)"])  # fmt: skip
            break
    for b, t in r["peer"].items():
        for m, limit in (("shared", 0.4), ("unshared", 0.5)):
            targets.append([f"{m} / glom-pytorch step, batch {b} (full attention, hidden 256)",
                            t[m] / t["peer_ms"], f"<= {limit}"])  # fmt: skip
    print("\ntargets (ratios measured in this run)\n")
    print(markdown_table(["measure", "ratio", "target"], targets))
    rows = [[t["columns"], t["batch"], t["levels"], json.dumps(t["radius"]), t["step_ms"],
             t.get("learn_step_ms", float("nan")), t["mlp_gflops"] / gf,
             t["lateral_ms"] / t["step_ms"], t["step_ms"] / t["weights_read_ms"],
             " ".join(t["lateral_plan"])]
            for t in r["sweep"]]  # fmt: skip
    print("\nsweep (unshared)\n")
    print(markdown_table(["columns", "batch", "levels", "radius", "step ms", "learn step ms",
                          "MLPs / matmul", "lateral / step", "step / weights' read",
                          "lateral plan per level"],
                         rows))  # fmt: skip
    mrows = [[k, v["peak"] / 2**20, (v["weights"] + v["optimizer"] + v["state"]) / 2**20]
             for k, v in mem.items()]  # fmt: skip
    print("\nmemory of one update (MiB above the process's baseline; CPU: peak resident set)\n")
    print(markdown_table(["rule_steps", "peak", "weights + optimiser + state"], mrows))
    if "mechanisms" in r:
        base = r["mechanisms"]["codistill"]
        rows = [[name, t, t / base, 1 - base / t] for name, t in r["mechanisms"].items()]
        print(f"\nthe mechanisms for islands (unshared, {side}x{side} columns, batch "
              f"{p['batch']}; learning step ms; share: 1 - codistill / arm)\n")  # fmt: skip
        print(markdown_table(["arm", "learn step ms", "/ codistill", "share of the step"], rows))
    if "distributed" in r:
        w = next(iter(r["distributed"].values()))["world"]
        print(f"\ncolumns sharded over {w} processes (CPU, gloo, 1 thread per rank; learning "
              f"step ms, batch {p['batch']}; weak: {w} ranks of N/{w} columns over one "
              f"process of N/{w}; strong: one process of N over {w} ranks)\n")  # fmt: skip
        print(markdown_table(["attention", "grid", f"1 rank, N/{w} ms", f"{w} ranks, N ms",
                              "weak (1.0 ideal)", "strong vs 1 thread",
                              f"strong vs {w} threads", "KiB sent / rank / step",
                              "sent / rank's state"], report_rows(r["distributed"])))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
