"""The micro-benchmarks behind docs/performance-notes.md (entries 6-8, 10, 11, 13-15) and the peer.

    python experiments/perf_probes.py PROBE [--quick]

PROBE is one of attention, optimizer, allocator, profile, learning, memory, mlp, lateral, peer,
all:

* ``attention`` (entries 8 and 10): one level of eq. 3.1 on square windows, B = 32, d = 64,
  forward, every evaluation in turn within each repeat: dense with the mask built at each call
  (the old form), dense with a cached additive mask, the gathered form, tiles of 4, 8 and 16,
  PyTorch's fused ``scaled_dot_product_attention`` with the cached mask, and the same fused
  kernel tile by tile (:func:`sdpa_tiles`, entry 15).
* ``optimizer`` (entry 6): one step over the unshared reference weights (38.6 M parameters):
  Adam with ``foreach`` and fused, SGD fused, and the update norms taken by a copy of the
  weights against :class:`bioglom.rules.base.ChangeMeter`.
* ``allocator`` (entry 7): a weight-gradient ``bmm`` whose 42 MB output is allocated fresh at
  each call, with glibc's defaults and with :func:`bioglom.allocator.keep_freed_memory` (each in
  a fresh process), and the page faults per call.
* ``profile`` (entry 11): ``torch.profiler`` on 5 settling steps of the reference
  configuration (unshared, eval), grouped by operator and input shape.
* ``learning``: a co-distillation step of the reference, shared and unshared, with and
  without the update norms (``ChangeMeter``), all in turn within each repeat.
* ``memory`` (docs/performance.md, peak memory): every tensor one co-distillation update of
  the unshared reference creates, followed from its creation to the release of its storage
  (:class:`TensorPeak`), and what is alive at the peak, against the weights ``W``: the floor
  ``weights + Adam + summed gradient + one step's activations`` that a rule updating once per
  batch cannot go below.
* ``lateral`` (entry 15): lateral attention's share of a settling step at the reference, and
  the share of its GEMMs alone (the floor of a fused kernel).
* ``peer`` (docs/performance.md, against glom-pytorch): at the peer's configuration, each
  column mode's step and its GEMMs alone against one iteration of the peer (needs the
  ``peers`` extra; says so and skips without it).
* ``mlp`` (entry 14, the column MLPs): their GEMMs alone, with the bias folded in,
  and the whole MLPs, forward and forward + backward, against the large-matmul rate.

Timings are medians after warm-up, in milliseconds, on whatever machine runs this; compare
numbers within one table only. ``--quick`` shrinks every size (seconds; run by the tests).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from bioglom import build_model
from bioglom.allocator import keep_freed_memory
from bioglom.bench import config_for, interleaved_ms, mlp_flops, peer_step
from bioglom.experiment import markdown_table
from bioglom.functional import (
    column_linear,
    column_linear_into_grad,
    dense_mask_bias,
    lateral_attention,
    weight_grads_in_gemm,
    window_attention,
    window_neighbours,
    window_tile_bias,
)
from bioglom.rules.base import ChangeMeter, make_optimizer

# ---- configuration ------------------------------------------------------------------------
FULL = {"sides": [16, 32, 64], "radii": [1, 3, 5], "batch": 32, "dim": 64, "repeats": 5,
        "columns": 256, "kn": 1280}  # fmt: skip
QUICK = {"sides": [8], "radii": [1, 2], "batch": 2, "dim": 8, "repeats": 2,
         "columns": 16, "kn": 64}  # fmt: skip
CPU = torch.device("cpu")


def attention(p: dict) -> None:
    rows = []
    for side in p["sides"]:
        grid, n = (side, side), side * side
        e = 0.3 * torch.randn(n, p["batch"], p["dim"])
        for r in p["radii"]:
            idx, valid = window_neighbours(grid, r, True)
            fns = {}
            if n <= 1024:
                mb = dense_mask_bias(idx, valid)
                et = e.transpose(0, 1)
                fns["dense"] = lambda e=e, i=idx, v=valid: lateral_attention(
                    e, i, v, 0.5, method="dense"
                )
                fns["dense+"] = lambda e=e, i=idx, v=valid, m=mb: lateral_attention(
                    e, i, v, 0.5, method="dense", mask_bias=m
                )
                fns["sdpa"] = lambda m=mb, et=et: F.scaled_dot_product_attention(
                    et * 0.5, et, et, attn_mask=m, scale=1.0
                )
            if n <= 1024 or r <= 2:  # beyond, the gather holds [N, B, M, d] (4 GB at r = 5)
                fns["gather"] = lambda e=e, i=idx, v=valid: lateral_attention(
                    e, i, v, 0.5, method="gather"
                )
            for t in (4, 8, 16):
                if t <= side:
                    bias = window_tile_bias(grid, r, t)
                    fns[f"tiles T={t}"] = lambda e=e, g=grid, r=r, t=t, b=bias: window_attention(
                        e, g, r, 0.5, tile=t, bias=b
                    )
                    if t <= 8:
                        fns[f"sdpa tiles T={t}"] = lambda e=e, g=grid, r=r, t=t, b=bias: sdpa_tiles(
                            e, g, r, 0.5, t, b
                        )
            with torch.no_grad():
                ms = dict(zip(fns, interleaved_ms(list(fns.values()), CPU, p["repeats"], 1),
                              strict=True))  # fmt: skip
            rows.append([n, r] + [ms.get(k, float("nan")) for k in HEAD[2:]])
    print(f"\nattention: one level, B = {p['batch']}, d = {p['dim']}, forward, ms\n")
    print(markdown_table(HEAD, rows))


HEAD = ["N", "r", "dense", "dense+", "sdpa", "gather", "tiles T=4", "tiles T=8", "tiles T=16",
        "sdpa tiles T=4", "sdpa tiles T=8"]  # fmt: skip


def sdpa_tiles(e: torch.Tensor, grid: tuple[int, int], r: int, beta: float, t: int,
               bias: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Eq. 3.1 on square windows, tile by tile as in :func:`window_attention` (no precision),
    but each tile's logits, mask, softmax and values in PyTorch's fused
    ``scaled_dot_product_attention`` (performance notes, entry 15). ``e [N, B, d]``,
    ``bias [tiles, T^2, (T + 2r)^2]`` from :func:`window_tile_bias`; returns ``[N, B, d]``."""
    n, b, d = e.shape
    hg, wg = grid
    th, tw, s1 = -(-hg // t), -(-wg // t), t + 2 * r
    g = e.view(hg, wg, b, d).permute(2, 0, 1, 3)
    ep = F.pad(g, (0, 0, r, tw * t - wg + r, r, th * t - hg + r))
    q = ep[:, r : r + th * t, r : r + tw * t].reshape(b, th, t, tw, t, d)
    q = q.permute(0, 1, 3, 2, 4, 5).reshape(b, th * tw, t * t, d)
    k = ep.unfold(1, s1, t).unfold(2, s1, t).permute(0, 1, 2, 4, 5, 3)
    k = k.reshape(b, th * tw, s1 * s1, d)
    o = F.scaled_dot_product_attention(q, k, k, attn_mask=bias, scale=float(beta))
    o = o.view(b, th, tw, t, t, d).permute(0, 1, 3, 2, 4, 5).reshape(b, th * t, tw * t, d)
    return o[:, :hg, :wg].reshape(b, n, d).transpose(0, 1)


def lateral_gemms(model, b: int):
    """A function running only the GEMMs of ``model``'s lateral attention at batch ``b``:
    per level, the logits and the weighted sum at the shapes of its plan (dense: ``[B, N, d]
    x [B, d, N]``; tiles: each tile's queries against its grown tile's keys), on random data."""
    n, d = model.N, model.bottom_up.layers[0].d_in
    hg, wg = model.grid
    gemms = []
    for level, (method, t) in enumerate(model.lateral_plan):
        r = model.lateral_attention.radius[level]
        if method == "dense":
            a, c, w = torch.randn(b, n, d), torch.randn(b, d, n), torch.randn(b, n, n)
        else:
            tiles, s = -(-hg // t) * -(-wg // t), (t + 2 * r) ** 2
            a, c = torch.randn(b * tiles, t * t, d), torch.randn(b * tiles, d, s)
            w = torch.randn(b * tiles, t * t, s)
        gemms.append((a, c, w))
    return lambda: [(torch.bmm(a, c), torch.bmm(w, c.transpose(1, 2))) for a, c, w in gemms]


def mlp_gemms(model, e: torch.Tensor):
    """A function running only the GEMMs of ``model``'s bottom-up and top-down column MLPs on
    the state ``e [K, N, B, d]``: ``x W`` layer by layer, no bias, nothing between."""

    def run():
        out = []
        for net, x in ((model.bottom_up, e[:-1]), (model.top_down, e[1:])):
            h = x
            for layer in net.layers:
                h = column_linear(h, layer.weight)
            out.append(h)
        return out

    return run


def peer(p: dict) -> None:
    """Against glom-pytorch at its configuration (16x16 columns, 5 levels, d = 64, hidden
    256, full attention; batch as the preset's): one settling step of each column mode, the
    GEMMs alone of that step (the column MLPs' and lateral attention's, at the same shapes),
    and one of the peer's 8 iterations. The GEMMs' time over the peer's is the ratio that
    removing every other pass of the step would reach."""
    fn = peer_step(p["batch"], CPU)
    if fn is None:
        print("\npeer: glom-pytorch is not installed (pip install -e '.[peers]')")
        return
    b, fns = p["batch"], []
    for mode in ("shared", "unshared"):
        cfg = config_for(256, **{"model.sharing": mode, "model.hidden": 256,
                                 "attention.radius": 15})  # fmt: skip
        model = build_model(cfg)
        model.eval()
        x = torch.rand(b, 3, cfg.data.image_size, cfg.data.image_size)
        with torch.no_grad():
            e, tau = model.initial_state(x)
        lat, mlps = lateral_gemms(model, b), mlp_gemms(model, e)
        fns += [lambda m=model, e=e, tau=tau, x=x, s=cfg.settle.steps: m.step(e, tau, x, 1, s),
                lambda lat=lat, mlps=mlps: (lat(), mlps())]  # fmt: skip
    with torch.no_grad():
        ms = interleaved_ms([*fns, fn], CPU, p["repeats"], 1)
    theirs = ms[-1] / 8
    rows = [["glom-pytorch, one iteration", theirs, 1.0]]
    for i, mode in enumerate(("shared", "unshared")):
        step, gemms = ms[2 * i], ms[2 * i + 1]
        rows += [[f"bioglom {mode}, one step", step, step / theirs],
                 [f"bioglom {mode}, its GEMMs alone", gemms, gemms / theirs]]  # fmt: skip
    print(f"\npeer: glom-pytorch's configuration (256 columns, batch {b}, hidden 256, full "
          "attention), forward, ms\n")  # fmt: skip
    print(markdown_table(["", "ms", "/ glom-pytorch"], rows))


def lateral(p: dict) -> None:
    """Lateral attention's share of a settling step at the reference (unshared, eval), and
    the share of its GEMMs alone (the logits and the weighted sums of every level, at the
    shapes of its plan): what a kernel fusing the mask, softmax and key copies could at best
    bring it to."""
    cfg = config_for(p["columns"], **{"model.sharing": "unshared"})
    model = build_model(cfg)
    model.eval()
    b, side, steps = p["batch"], cfg.data.image_size, cfg.settle.steps
    x = torch.rand(b, 3, side, side)
    with torch.no_grad():
        e, tau = model.initial_state(x)
    beta = model.beta(1, steps)
    only_gemms = lateral_gemms(model, b)

    fns = [lambda: model.step(e, tau, x, 1, steps), lambda: model.lateral(e, tau, beta),
           only_gemms]  # fmt: skip
    with torch.no_grad():
        step, lat, gem = interleaved_ms(fns, CPU, p["repeats"], 1)
    plan = ", ".join(f"{m}{t or ''}" for m, t in model.lateral_plan)
    print(f"\nlateral: its share of a settling step ({model.N} columns, batch {b}, unshared, eval; "
          f"plan {plan}), ms\n")  # fmt: skip
    rows = [["settling step", step, 1.0], ["lateral attention", lat, lat / step],
            ["its GEMMs alone", gem, gem / step],
            ["its GEMMs, in a step without the other lateral passes", gem,
             gem / (step - lat + gem)]]  # fmt: skip
    print(markdown_table(["", "ms", "/ step"], rows))


def optimizer(p: dict) -> None:
    cfg = config_for(p["columns"], **{"model.sharing": "unshared"})
    params = [q for q in build_model(cfg).parameters() if q.requires_grad]
    for q in params:
        q.grad = torch.randn_like(q)
    adam_foreach = torch.optim.Adam(params, lr=1e-3, foreach=True)
    adam_fused = make_optimizer(params, cfg.train)
    sgd_cfg = config_for(p["columns"], **{"model.sharing": "unshared", "train.optimizer": "sgd"})
    sgd_fused = make_optimizer(params, sgd_cfg.train)
    meter = ChangeMeter({"all": params})

    def copy_norm():
        before = [q.detach().clone() for q in params]
        adam_fused.step()
        sq = [((q.detach() - b) ** 2).sum() for q, b in zip(params, before, strict=True)]
        return torch.sqrt(sum(sq))

    names = ["Adam foreach", "Adam fused", "SGD fused", "Adam fused + copy norms",
             "Adam fused + ChangeMeter"]  # fmt: skip
    fns = [adam_foreach.step, adam_fused.step, sgd_fused.step, copy_norm,
           lambda: meter.step(adam_fused)]  # fmt: skip
    ms = interleaved_ms(fns, CPU, p["repeats"], 1)
    n = sum(q.numel() for q in params)
    print(f"\noptimizer: one step over {n / 1e6:.1f} M unshared parameters, ms\n")
    print(markdown_table(["step", "ms"], [[a, b] for a, b in zip(names, ms, strict=True)]))


def learning(p: dict) -> None:
    from bioglom.rules import make_rule

    fns, names = [], []
    for sharing in ("shared", "unshared"):
        for meter in (True, False):
            cfg = config_for(p["columns"], **{"model.sharing": sharing})
            model = build_model(cfg)
            rule = make_rule(model, cfg)
            model.train()
            if not meter:  # the optimiser step alone, no update norms
                rule._step_and_measure = lambda r=rule: (r.optimizer.step(), {})[1]
            side = cfg.data.image_size
            x = torch.rand(p["batch"], 3, side, side)
            fns.append(lambda r=rule, x=x: r.update(x))
            names.append((sharing, meter))
    steps = config_for(p["columns"]).settle.steps
    ms = [t / steps for t in interleaved_ms(fns, CPU, p["repeats"], 1)]
    t = dict(zip(names, ms, strict=True))
    rows = [[s, t[(s, True)], t[(s, False)]] for s in ("shared", "unshared")]
    rows.append(["unshared / shared", t[("unshared", True)] / t[("shared", True)],
                 t[("unshared", False)] / t[("shared", False)]])  # fmt: skip
    print(f"\nlearning: a co-distillation step at the reference, batch {p['batch']}, ms\n")
    print(markdown_table(["columns", "with update norms", "without"], rows))


def allocator_child(kn: int, repeats: int) -> None:
    """In a fresh process: the ``bmm`` with a fresh output, timed, and its page faults."""
    x, gy = torch.randn(kn, 32, 64), torch.randn(kn, 32, 128)
    fn = lambda: torch.bmm(x.transpose(1, 2), gy)  # noqa: E731
    for _ in range(20):  # let the heap grow to hold the block when it is kept
        fn()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ms = interleaved_ms([fn], CPU, repeats, 0)[0]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / repeats
    print(f"{ms} {faults}")


def allocator(p: dict) -> None:
    rows = []
    for keep in ("0", "1"):
        env = {**os.environ, "BIOGLOM_KEEP_FREED_MEMORY": keep}
        out = subprocess.run(
            [sys.executable, __file__, "allocator-child", "--kn", str(p["kn"]),
             "--repeats", str(max(5, p["repeats"]))],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        ms, faults = map(float, out.stdout.split())
        rows.append(["kept (bioglom.allocator)" if keep == "1" else "glibc default", ms, faults])
    mb = p["kn"] * 64 * 128 * 4 / 1e6
    print(f"\nallocator: bmm [{p['kn']}, 64, 32] x [{p['kn']}, 32, 128], a fresh {mb:.0f} MB "
          "output per call\n")  # fmt: skip
    print(markdown_table(["allocator", "ms", "page faults per call"], rows))


def profile(p: dict) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    cfg = config_for(p["columns"], **{"model.sharing": "unshared"})
    model = build_model(cfg).eval()
    side = cfg.data.image_size
    x = torch.rand(p["batch"], 3, side, side)
    with torch.no_grad():
        e, tau = model.initial_state(x)
        for _ in range(2):
            model.step(e, tau, x, 1, cfg.settle.steps)
        with prof(activities=[ProfilerActivity.CPU], record_shapes=True) as pr:
            for _ in range(5):
                model.step(e, tau, x, 1, cfg.settle.steps)
    print("\nprofile: 5 settling steps of the reference (unshared, eval), by input shape\n")
    print(pr.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=24,
        max_shapes_column_width=64))  # fmt: skip


class TensorPeak(TorchDispatchMode):
    """Bytes of the tensor storages created by operations within this mode and still alive:
    :attr:`peak` and, at the peak, :attr:`at_peak` (``(bytes, op, shape)``, largest first).
    Storages in ``exclude`` (data pointers: weights, optimiser state) are not counted."""

    def __init__(self, exclude: set[int] = frozenset()) -> None:
        super().__init__()
        self.exclude, self.alive, self.live, self.peak = set(exclude), {}, 0, 0
        self.at_peak: list[tuple[int, str, tuple]] = []

    def _release(self, key: int) -> None:
        n, _, _ = self.alive.pop(key)
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, n = storage.data_ptr(), storage.nbytes()
            if n == 0 or key in self.alive or key in self.exclude:
                continue
            self.alive[key] = (n, str(func), tuple(t.shape))
            self.live += n
            weakref.finalize(storage, self._release, key)
        if self.live > self.peak:
            self.peak = self.live
            self.at_peak = sorted(self.alive.values(), key=lambda v: -v[0])
        return out


def mlp(p: dict) -> None:
    """The column MLPs of the unshared reference, one step, against the machine's matmul rate,
    built up from their GEMMs: the GEMM chain alone (``x W`` layer by layer, nothing between),
    then the bias and location term folded into the GEMM, then the MLPs as a step runs them
    (GELU between the layers); each forward, and forward + backward as a local update runs it
    (weight gradients summed inside the GEMM, no gradient into the MLPs' input). The first
    row's rate is what fusing the element-wise work could at best reach. Beside them: the same
    GEMMs with one weight per level for all columns (shared: the columns folded into the rows,
    the weights in cache), and one read of every unshared MLP weight (``sum``), the memory
    traffic that an unshared forward cannot avoid."""
    cfg = config_for(p["columns"], **{"model.sharing": "unshared"})
    model = build_model(cfg)
    model.train()
    b = p["batch"]
    e = torch.randn(model.K, model.N, b, model.bottom_up.layers[0].d_in)
    nets = [(model.bottom_up, e[:-1], model.bu_location), (model.top_down, e[1:], model.location)]
    params = [q for net, _, _ in nets for q in net.parameters()]

    def chain(bias: bool):
        out = []
        for net, x, extra in nets:
            h = x
            for j, layer in enumerate(net.layers):
                add = None
                if bias and j == 0 and net.extra is not None:
                    add = net.extra(extra)
                bb = None
                if bias:  # as ColumnLinear folds them: x W + (b + add)
                    bb = (
                        add
                        if layer.bias is None
                        else (layer.bias if add is None else layer.bias + add)
                    )
                h = column_linear_into_grad(h, layer.weight, bb)
            out.append(h)
        return out

    arms = {
        "GEMMs alone": lambda: chain(False),
        "+ bias and location in the GEMM": lambda: chain(True),
        "the MLPs (+ GELU)": lambda: [net(x, extra=extra) for net, x, extra in nets],
    }
    gys = [torch.randn_like(y) for y in arms["GEMMs alone"]()]
    weights = [layer.weight for net, _, _ in nets for layer in net.layers]
    shared = [w[:, :1].detach().clone().requires_grad_() for w in weights]  # [K', 1, d_in, d_out]

    def shared_chain():
        out, i = [], 0
        for net, x, _ in nets:
            h = x
            for _ in net.layers:
                h = column_linear_into_grad(h, shared[i])
                i += 1
            out.append(h)
        return out

    arms["GEMMs alone, shared weights"] = shared_chain
    params += shared

    def forward(f):
        def run():
            with torch.no_grad():
                return f()

        return run

    def learning(f):
        def run():
            for q in params:
                q.grad = None
            with weight_grads_in_gemm():
                torch.autograd.backward(f(), gys)

        return run

    fwd = mlp_flops(model, b)
    first = sum(net.layers[0].levels * model.N * b * net.layers[0].d_in * net.layers[0].d_out * 2
                for net, _, _ in nets)  # fmt: skip
    both = 3 * fwd - first  # dW for every layer, dx for all but the first
    fns = [forward(f) for f in arms.values()] + [learning(f) for f in arms.values()]
    n = 2048 if p is FULL else 256
    x, y = torch.randn(n, n), torch.randn(n, n)
    read = [lambda: [w.sum() for w in weights]]
    ms = interleaved_ms([*fns, *read, lambda: x @ y], CPU, p["repeats"], 1)
    rate = 2 * n**3 / ms[-1]
    k = len(arms)
    rows = [[name, ms[i], fwd / ms[i] / rate, ms[k + i], both / ms[k + i] / rate]
            for i, name in enumerate(arms)]  # fmt: skip
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    rows.append([f"one read of the unshared weights ({nbytes / 2**20:.0f} MiB, "
                 f"{nbytes / ms[-2] / 1e6:.1f} GB/s)", ms[-2], "-", "-", "-"])  # fmt: skip
    print(f"\nmlp: the column MLPs of one step ({model.N} columns, batch {b}, unshared), ms and "
          f"fraction of the {n}^2 matmul rate ({rate / 1e6:.1f} GFLOP/s)\n")  # fmt: skip
    print(markdown_table(["", "forward ms", "/ matmul rate", "fwd + bwd ms", "/ matmul rate"],
                         rows))  # fmt: skip


def memory(p: dict) -> None:
    from bioglom.rules import make_rule

    cfg = config_for(p["columns"] * 4, **{"model.sharing": "unshared"})
    model = build_model(cfg)
    rule = make_rule(model, cfg)
    model.train()
    side = cfg.data.image_size
    x = torch.rand(p["batch"], 3, side, side)
    rule.update(x)  # Adam's state exists from here on
    held = [*model.parameters(), *model.buffers()]
    held += [v for s in rule.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    weights = sum(q.numel() * q.element_size() for q in model.parameters())
    with TensorPeak({q.untyped_storage().data_ptr() for q in held}) as probe:
        rule.update(x)
    # a weight's gradient: [K' C, d_in, d_out], made by the weight-gradient GEMM
    shapes = {(q.shape[0] * q.shape[1], *q.shape[2:]) for q in model.parameters() if q.dim() == 4}
    grads = sum(n for n, op, shape in probe.at_peak if shape in shapes)
    rows = [["weight gradients", grads / weights],
            ["everything else alive (one step's activations, ...)",
             (probe.peak - grads) / weights],
            ["created tensors alive at the peak", probe.peak / weights]]  # fmt: skip
    print(f"\nmemory: tensors an update creates, alive at its peak, in units of the weights W "
          f"({model.N} columns, batch {p['batch']}; W = {weights / 2**20:.1f} MiB)\n")  # fmt: skip
    print(markdown_table(["what", "/ W"], rows))
    print("\nlargest at the peak\n")
    top = [[n / 2**20, op, str(list(shape))] for n, op, shape in probe.at_peak[:8]]
    print(markdown_table(["MiB", "made by", "shape"], top))


PROBES = {"attention": attention, "optimizer": optimizer, "allocator": allocator,
          "profile": profile, "learning": learning, "memory": memory, "mlp": mlp,
          "lateral": lateral, "peer": peer}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("probe", choices=[*PROBES, "all", "allocator-child"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    ap.add_argument("--kn", type=int, default=FULL["kn"], help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe == "allocator-child":
        keep_freed_memory()  # a no-op when BIOGLOM_KEEP_FREED_MEMORY=0
        allocator_child(args.kn, args.repeats)
        return 0
    keep_freed_memory()  # as in training
    p = QUICK if args.quick else FULL
    for name in PROBES if args.probe == "all" else [args.probe]:
        PROBES[name](p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
