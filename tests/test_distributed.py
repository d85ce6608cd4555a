"""Columns sharded over 2 gloo processes compute what one process computes (issue 17).

The independent fact: sharding is a way of evaluating the same model, so one settle and one
local-learning update on P = 2 ranks must give the unsharded state, metrics, weights and
homeostatic statistics, to float32 tolerance (only the order of some sums differs). Each worker
builds both the whole model and its shard from the same seed, runs both on the same fresh
random images and checks its own columns against the whole model's; a failure on any rank
fails the test with that rank's traceback.

The update is taken with SGD, whose step ``-lr g`` is linear in the gradient, so the gradient's
float32 agreement carries over to the weights. Adam's first step is ``-lr g / (|g| + eps)``:
at an entry whose gradient is rounding noise (1e-8 in one sum order, -1e-8 in the other) it
turns that noise into a step of order ``lr``, so two correct evaluations can differ there by
``lr`` (seen in CI: 2.2e-4 in one decoder weight whose gradient was -1.9e-8 against -7.5e-9).
The gradients themselves are compared too, to float32 tolerance at the scale of each tensor.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import fresh_seed, small_config

from bioglom import build_model
from bioglom.config import ConfigError
from bioglom.distributed import ColumnShard, band_rows, check_shardable, column_slices
from bioglom.rules import make_rule

WORLD = 2

#: (name, image side, overrides): window and Gaussian neighbourhoods, shared and unshared
#: weights, every normalisation that pools over columns, both local rules
CASES = [
    ("window unshared, codistill, radius 1-2-3", 16, {"attention.radius": [1, 2, 3]}),
    (
        "window shared, batch norm, temporal",
        16,
        {"model.sharing": "shared", "model.state_norm": "batch", "train.rule": "temporal"},
    ),
    (
        "gaussian fixed, unshared, gaussian consensus",
        16,
        {
            "attention.neighbourhood": "gaussian",
            "attention.samples": 6,
            "attention.sigma": 2.0,
            "consensus.mode": "gaussian",
        },
    ),
    (
        "gaussian resampled, shared, shared homeostasis, noise init",
        16,
        {
            "model.sharing": "shared",
            "model.homeostatic_stats": "shared",
            "model.init": "noise",
            "attention.neighbourhood": "gaussian",
            "attention.samples": 5,
            "attention.resample": True,
        },
    ),
    (
        "window attract-repel, image norm, gaussian consensus",
        16,
        {
            "attention.lateral": "attract_repel",
            "model.state_norm": "image",
            "attention.radius": 2,
            "consensus.mode": "gaussian",
        },
    ),
    ("window tiles (34 x 34 columns)", 68, {"model.dim": 4, "model.hidden": 8}),
]


@contextlib.contextmanager
def _rank(rank: int, rendezvous: str, errors: str):
    """This process as rank ``rank`` of a gloo group; a failure's traceback goes to
    ``<errors>.<rank>`` for the test to show."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{rendezvous}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=120),  # a rank that fails does not hang the other
    )
    try:
        yield
        dist.barrier()  # no rank tears its connections down while the other still uses them
    except Exception:
        with open(f"{errors}.{rank}", "w") as f:
            f.write(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def _worker(rank: int, rendezvous: str, seed: int, errors: str) -> None:
    with _rank(rank, rendezvous, errors):
        for name, side, overrides in CASES:
            try:
                _check_case(side, overrides, seed)
            except Exception as err:
                raise AssertionError(f"case {name!r} on rank {rank}") from err


def _check_case(side: int, overrides: dict, seed: int) -> None:
    overrides = {"train.optimizer": "sgd", **overrides}
    config = small_config(**{k.replace(".", "__"): v for k, v in overrides.items()})
    size = (side, side)
    whole = build_model(config, channels=3, image_size=size)
    shard = ColumnShard.of(whole.grid)
    part = build_model(config, channels=3, image_size=size, shard=shard)
    c0, c1 = shard.columns
    assert part.N == c1 - c0 < whole.N
    if side == 68:  # the tiled evaluation of windows, on the whole grid and on each band
        assert whole.lateral_plan[0][0] == part.lateral_plan[0][0] == "tiles"

    def own(x: torch.Tensor) -> torch.Tensor:  # this rank's columns of a [K, N, ...] tensor
        return x[:, c0:c1]

    # the initial weights are the whole model's, cut to this rank's columns
    for (n, a), b in zip(whole.state_dict().items(), part.state_dict().values(), strict=True):
        expected = own(a) if a.shape != b.shape else a
        assert torch.equal(expected, b), n

    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    settled_a = whole.settle(images, generator=torch.Generator().manual_seed(seed + 1))
    settled_b = part.settle(images, generator=torch.Generator().manual_seed(seed + 1))
    torch.testing.assert_close(settled_b.state, own(settled_a.state), rtol=1e-4, atol=1e-5)
    if settled_a.precision is not None:
        torch.testing.assert_close(
            settled_b.precision, own(settled_a.precision), rtol=1e-4, atol=1e-5
        )

    # one local-learning update (training mode: homeostatic statistics move too)
    whole.train()
    part.train()
    rule_a, rule_b = make_rule(whole, config), make_rule(part, config)
    metrics_a = rule_a.update(images, torch.Generator().manual_seed(seed + 2))
    metrics_b = rule_b.update(images, torch.Generator().manual_seed(seed + 2))
    assert set(metrics_a) == set(metrics_b)
    for key, value in metrics_a.items():
        torch.testing.assert_close(metrics_b[key], value, rtol=1e-4, atol=1e-6, msg=key)
    grads_b = dict(part.named_parameters())
    for n, p in whole.named_parameters():
        if p.grad is None:
            assert grads_b[n].grad is None, n
            continue
        expected = own(p.grad) if p.shape != grads_b[n].shape else p.grad
        scale = float(expected.abs().max()) or 1.0
        torch.testing.assert_close(grads_b[n].grad, expected, rtol=1e-4, atol=1e-6 * scale, msg=n)
    after_b = part.state_dict()
    for n, a in whole.state_dict().items():
        b = after_b[n]
        expected = own(a) if a.shape != b.shape else a
        torch.testing.assert_close(b, expected, rtol=1e-4, atol=1e-5, msg=n)
    # the gathered state is the whole state, in the unsharded column order
    full = shard.gather_columns(rule_b.last_state, dim=1)
    torch.testing.assert_close(full, rule_a.last_state, rtol=1e-4, atol=1e-5)


def test_two_ranks_settle_and_learn_as_one(tmp_path):
    """One settle and one update on 2 gloo ranks equal the unsharded model's (6 configs)."""
    seed = fresh_seed()
    print(f"seed {seed}")
    errors = str(tmp_path / "error")
    try:
        mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), seed, errors), nprocs=WORLD)
    except Exception as err:
        found = [p for p in tmp_path.iterdir() if p.name.startswith("error.")]
        details = "\n".join(p.read_text() for p in found)
        pytest.fail(f"a rank failed ({type(err).__name__}):\n{details}")


def test_band_rows_cover_the_grid_in_order():
    """Bands are contiguous, ordered, cover every row once and differ by at most one row."""
    for rows in range(1, 12):
        for world in range(1, rows + 1):
            bands = band_rows(rows, world)
            assert bands[0][0] == 0 and bands[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(bands, bands[1:], strict=False))
            sizes = [b - a for a, b in bands]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    with pytest.raises(ValueError, match="world"):
        band_rows(3, 4)


def test_shard_geometry():
    """Rank 1 of 2 on a 5 x 3 grid: rows 2-4, columns 6-14, pixel rows 2p-5p, halo clipped at
    the grid's edge."""
    shard = ColumnShard.of((5, 3), rank=1, world=2)
    assert shard.rows == (2, 5) and shard.columns == (6, 15) and shard.n == 9
    assert shard.local_grid == (3, 3) and shard.pixel_rows(4) == slice(8, 20)
    assert shard.extended_rows(2) == (2, 0)


def test_column_slices_cuts_the_column_axis_only():
    """Per-column tensors are cut on axis 1, shared ones copied; a wrong shape is refused."""
    shard = ColumnShard.of((2, 2), rank=1, world=2)  # columns 2, 3 of 4
    full = {"w": torch.arange(24.0).view(2, 4, 3), "s": torch.arange(3.0).view(1, 1, 3)}
    own = {"w": torch.zeros(2, 2, 3), "s": torch.zeros(1, 1, 3)}
    out = column_slices(shard, full, own)
    assert torch.equal(out["w"], full["w"][:, 2:4]) and torch.equal(out["s"], full["s"])
    with pytest.raises(ValueError, match="w: shape"):
        column_slices(shard, {"w": torch.zeros(2, 5, 3), "s": full["s"]}, own)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"frontend__kind": "cnn", "model__sharing": "shared"}, "frontend.kind"),
        ({"frontend__retina": "foveated"}, "frontend.retina"),
        ({"train__rule": "end_to_end"}, "train.rule"),
        ({"train__rule": "temporal", "temporal__spiking": True}, "temporal.spiking"),
        ({"schedule__phases": "day 2, night 2"}, "schedule.phases"),
        ({"attention__radius": 3}, "nproc"),
    ],
)
def test_what_sharding_refuses_is_named(overrides, field):
    """A config that sharding does not cover fails with an error naming the field."""
    config = small_config(**overrides)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        check_shardable(config, (4, 4), 2)


def test_one_process_needs_no_process_group():
    """world = 1 is the unsharded model: no shard is kept, nothing is exchanged."""
    config = small_config()
    model = build_model(config, shard=ColumnShard.of((4, 4), rank=0, world=1))
    assert model.shard is None and model.N == 16


# ---- training: the run, its checkpoints and its stops, on 2 ranks -----------------------------
TRAIN = {  # SGD, as in the one-update test: Adam's first step amplifies rounding-sized gradients
    "train__optimizer": "sgd",
    "train__updates": 4,
    "run__record_every": 2,
    "run__snapshot_every": 4,
    "run__checkpoint_every": 2,
}


def _train_worker(rank: int, rendezvous: str, out: str, mode: str, errors: str) -> None:
    """Train the small config sharded; ``mode``: "whole" (4 updates), "interrupt" (a SIGINT
    to rank 1 alone during update 3), "resume", "nan" (rank 1's state turns NaN at update 2)."""
    import bioglom.train as trainer
    from bioglom.train import train

    with _rank(rank, rendezvous, errors):
        config = small_config(**TRAIN)
        shard = ColumnShard.of((4, 4))
        on_update = None
        if mode == "interrupt":  # Ctrl-C reaches rank 1 alone, during update 3

            def on_update(u, total):
                if u == 3 and rank == 1:
                    os.kill(os.getpid(), signal.SIGINT)

        if mode == "nan":
            original, calls = trainer._update, []

            def poisoned(*args):
                metrics, state = original(*args)
                calls.append(1)
                if rank == 1 and len(calls) == 2:
                    state = torch.full_like(state, float("nan"))
                return metrics, state

            trainer._update = poisoned
        result = train(
            config,
            out,
            progress=False,
            resume=mode == "resume",
            on_update=on_update,
            shard=shard,
        )
        expected = {"nan": "diverged", "interrupt": "interrupted"}.get(mode, "finished")
        assert result.status == expected, result.status
        assert mode != "nan" or result.summary["updates"] == 2
        assert mode != "interrupt" or result.summary["updates"] == 3  # both ranks stop there


def _spawn(tmp_path, name: str, fn, *args) -> None:
    errors = str(tmp_path / f"error-{name}")
    try:
        mp.spawn(fn, args=(str(tmp_path / f"rendezvous-{name}"), *args, errors), nprocs=WORLD)
    except Exception as err:
        found = [p for p in tmp_path.iterdir() if p.name.startswith(f"error-{name}.")]
        details = "\n".join(p.read_text() for p in found)
        pytest.fail(f"a rank failed ({type(err).__name__}):\n{details}")


def test_sharded_run_matches_and_resumes_like_one_process(tmp_path):
    """A 2-rank run writes the run and weights an unsharded run writes (to float32
    tolerance); a Ctrl-C that reaches one rank stops both at the same update with their
    checkpoints, and resumed on 2 ranks the run ends where the unsharded one does;
    resuming it on 1 process is refused naming nproc; a NaN on rank 1 stops both ranks at
    that update and names the rank."""
    from bioglom.runs import open_run
    from bioglom.train import train

    config = small_config(**TRAIN)
    one = train(config, tmp_path / "one.h5", progress=False)
    assert one.status == "finished"
    reference = torch.load(one.weights, weights_only=True)["model"]

    def check_against_one(path):
        weights = torch.load(path.with_suffix(".pt"), weights_only=True)["model"]
        assert set(weights) == set(reference)
        for name, value in reference.items():
            torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
        with open_run(one.path) as a, open_run(path) as b:
            assert b.status == "finished"
            assert list(b.metrics["step"]) == list(a.metrics["step"])
            for key in ("loss", "loss_bu_L0", "loss_decoder", "probe_recon_mse"):
                np_a, np_b = a.metrics[key], b.metrics[key]
                torch.testing.assert_close(
                    torch.as_tensor(np_b),
                    torch.as_tensor(np_a),
                    rtol=1e-3,
                    atol=1e-6,
                    equal_nan=True,
                    msg=key,
                )
        assert not path.with_suffix(".ckpt").exists()
        assert not path.with_suffix(".rank1.ckpt").exists()

    whole = tmp_path / "two.h5"
    _spawn(tmp_path, "whole", _train_worker, str(whole), "whole")
    check_against_one(whole)

    stopped = tmp_path / "stopped.h5"
    _spawn(tmp_path, "interrupt", _train_worker, str(stopped), "interrupt")
    for ckpt in (stopped.with_suffix(".ckpt"), stopped.with_suffix(".rank1.ckpt")):
        assert torch.load(ckpt, weights_only=False)["update"] == 3, ckpt  # every rank's
    with open_run(stopped) as run:
        assert run.status == "interrupted"
    with pytest.raises(ConfigError, match="nproc"):
        train(config, stopped, progress=False, resume=True)
    _spawn(tmp_path, "resume", _train_worker, str(stopped), "resume")
    check_against_one(stopped)

    poisoned = tmp_path / "nan.h5"
    _spawn(tmp_path, "nan", _train_worker, str(poisoned), "nan")
    with open_run(poisoned) as run:
        assert run.status == "diverged"
        assert run.attrs["diverged_at"] == 2 and run.attrs["diverged_tensor"] == "state (rank 1)"


@pytest.mark.parametrize("launcher", ["nproc", "torchrun"])
def test_command_line_runs_sharded(tmp_path, launcher):
    """``bioglom run CONFIG --nproc 2`` and ``torchrun --standalone --nproc-per-node 2 -m
    bioglom run CONFIG`` write one finished run and its weights, and print the summary once."""
    import subprocess
    import sys

    from bioglom.runs import open_run

    config = tmp_path / "small.toml"
    config.write_text(small_config(**TRAIN).to_toml())
    out = tmp_path / "run.h5"
    tail = ["run", str(config), "--out", str(out), "--quiet"]
    if launcher == "nproc":
        command = [sys.executable, "-m", "bioglom", *tail, "--nproc", "2"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc-per-node", "2", "-m", "bioglom", *tail]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(str(out)) == 1, done.stdout
    with open_run(out) as run:
        assert run.status == "finished" and run.metrics["step"][-1] == 4
    assert out.with_suffix(".pt").exists() and not out.with_suffix(".rank1.ckpt").exists()


def _sleep_then_exit(seconds: float, code: int) -> None:
    import sys
    import time

    time.sleep(seconds)
    sys.exit(code)


def test_a_failed_rank_stops_the_others():
    """``bioglom run --nproc`` does not wait forever on ranks blocked in an exchange with a
    rank that failed: after the grace period the others are terminated. A rank that ends as a
    run ends (exit 0, 3 or 130) stops nothing."""
    import multiprocessing
    import time

    from bioglom.cli import _watch

    ctx = multiprocessing.get_context("spawn")
    failing = ctx.Process(target=_sleep_then_exit, args=(0.0, 1))
    blocked = ctx.Process(target=_sleep_then_exit, args=(120.0, 0))
    for p in (failing, blocked):
        p.start()
    t0 = time.monotonic()
    _watch([failing, blocked], grace_s=1.0)
    assert time.monotonic() - t0 < 60
    assert failing.exitcode == 1 and blocked.exitcode is not None and blocked.exitcode < 0

    ended = [ctx.Process(target=_sleep_then_exit, args=(s, c)) for s, c in ((0.0, 130), (2.0, 0))]
    for p in ended:
        p.start()
    _watch(ended, grace_s=0.1)
    assert [p.exitcode for p in ended] == [130, 0]
