"""bioglom.train: the loop's records, snapshots, NaN stop, precision and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_config

import bioglom
from bioglom.runs import open_run
from bioglom.train import log_spaced_updates, train


def test_train_writes_a_readable_run(tmp_path):
    """train() writes an .h5 run whose metrics, snapshots, probe and config open_run returns,
    and the weights beside it load into a fresh model."""
    cfg = small_config(train__updates=4, run__record_every=2, run__snapshot_every=4)
    out = tmp_path / "r.h5"
    result = train(cfg, out, progress=False)
    assert result.status == "finished"
    with open_run(out) as run:
        assert run.status == "finished"
        assert run.config == cfg
        assert list(run.steps) == [0, 2, 4]
        m = run.metrics
        assert np.isnan(m["loss"][0]) and np.isfinite(m["loss"][1:]).all()
        assert np.isfinite(m["probe_recon_mse"]).all()
        assert list(run.snapshot_steps) == [0, 4]
        snap = run.snapshot(4)
        assert snap["state"].shape == (3, 16, 4, 8)
        assert snap["islands"].shape == (3, 4, 4, 4)
        assert run.probe["images"].shape == (4, 3, 8, 8)
        assert run.probe["object_masks"].shape == (4, 8, 8)
        assert run.attrs["rule"] == "codistill"
        assert run.summary["updates"] == 4
        np.testing.assert_allclose(
            snap["state"].astype(np.float32),
            result.model.settle(run.probe["images"]).state.detach().numpy(),
            atol=2e-2,
        )
    state = torch.load(result.weights)
    fresh = bioglom.build_model(cfg)
    fresh.load_state_dict(state["model"])
    for p, q in zip(fresh.parameters(), result.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("where", ["loss", "state", "weight"])
def test_a_planted_nan_stops_the_run_within_one_update(tmp_path, monkeypatch, where):
    """A NaN planted at update 3 -- in a loss, in the settled state, or in one weight -- ends
    the run at update 3 with status diverged, the step and the bad tensor's name in its attrs,
    and every record before it kept (records every 2 updates: 0, 2, then 3)."""
    import bioglom.train as train_module

    real = train_module.make_rule

    def planted(model, config):
        rule = real(model, config)
        update = rule.update
        calls = {"n": 0}

        def poisoned(images, generator=None):
            calls["n"] += 1
            out = update(images, generator)
            if calls["n"] == 3:
                if where == "loss":
                    out["loss"] = torch.tensor(float("nan"))
                elif where == "state":
                    rule.last_state[0, 0, 0, 0] = float("inf")
                else:
                    with torch.no_grad():
                        dict(model.named_parameters())[name].view(-1)[0] = float("nan")
            return out

        name = next(n for n, _ in model.named_parameters())
        rule.update = poisoned
        planted.name = name
        return rule

    monkeypatch.setattr(train_module, "make_rule", planted)
    cfg = small_config(train__updates=10, run__record_every=2)
    result = train(cfg, tmp_path / "nan.h5", progress=False)
    expected = {"loss": "loss", "state": "state", "weight": planted.name}[where]
    assert result.status == "diverged"
    assert result.reason == f"non-finite {expected} at update 3"
    with open_run(tmp_path / "nan.h5") as run:
        assert run.status == "diverged"
        assert run.attrs["diverged_at"] == 3 and run.attrs["diverged_tensor"] == expected
        assert list(run.steps) == [0, 2, 3]
        if where == "loss":
            assert np.isnan(run.metrics["loss"][-1])
        # the probe was not evaluated on the broken model: NaN in the file, while the
        # summary keeps the value of the last record that measured it
        assert np.isnan(run.metrics["probe_recon_mse"][-1])
        assert run.summary["probe_recon_mse"] == run.metrics["probe_recon_mse"][-2]


def test_snapshots_follow_their_own_interval(tmp_path):
    """Snapshots land every snapshot_every updates even when that is not a multiple of
    record_every (and at the end)."""
    cfg = small_config(train__updates=8, run__record_every=2, run__snapshot_every=3)
    train(cfg, tmp_path / "s.h5", progress=False)
    with open_run(tmp_path / "s.h5") as run:
        assert list(run.snapshot_steps) == [0, 3, 6, 8]
        assert set(run.snapshot_steps) <= set(run.steps)


def test_log_spaced_records(tmp_path):
    """run.record_per_decade = 4 adds records at round(10^(j/4)) = 1, 2 (1.78), 3 (3.16),
    6 (5.62), 10 (worked by hand), beside record_every's (none here) and the end's."""
    assert log_spaced_updates(0, 100) == frozenset()
    assert sorted(log_spaced_updates(4, 12)) == [1, 2, 3, 6, 10]
    assert sorted(log_spaced_updates(1, 1000)) == [1, 10, 100, 1000]
    cfg = small_config(
        train__updates=12, run__record_every=100, run__snapshot_every=100, run__record_per_decade=4
    )
    train(cfg, tmp_path / "log.h5", progress=False)
    with open_run(tmp_path / "log.h5") as run:
        assert list(run.steps) == [0, 1, 2, 3, 6, 10, 12]


def test_training_is_reproducible(tmp_path):
    """The same config trains to the same weights and metrics twice (CPU)."""
    cfg = small_config(train__updates=3)
    a = train(cfg, tmp_path / "a.h5", progress=False)
    b = train(cfg, tmp_path / "b.h5", progress=False)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    with open_run(a.path) as ra, open_run(b.path) as rb:
        for k in ra.metrics:
            if k != "elapsed_s":
                np.testing.assert_array_equal(ra.metrics[k], rb.metrics[k])


@pytest.mark.parametrize("precision", ["bf16", "tf32", "fp32"])
def test_run_precision_applies_to_the_updates_only(tmp_path, monkeypatch, precision):
    """``run.precision``: inside every update (day and night) the column layers compute in
    bfloat16 (``bf16``) or with TF32 allowed (``tf32``; forbidden with ``fp32``); the probe
    settles in fp32 under the global flags, the weights stay fp32, and the global flags are
    restored after the run."""
    import bioglom.columns as columns
    from bioglom.probe import Probe

    seen: list[tuple[str, torch.dtype, bool]] = []  # (where, output dtype, TF32 allowed)
    where = ["update"]
    real_linear, real_eval = columns.column_linear, Probe.evaluate

    def spy(x, w, b=None):
        y = real_linear(x, w, b)
        seen.append((where[0], y.dtype, torch.backends.cuda.matmul.allow_tf32))
        return y

    def probing(self, model, *a, **kw):
        where[0] = "probe"
        try:
            return real_eval(self, model, *a, **kw)
        finally:
            where[0] = "update"

    monkeypatch.setattr(columns, "column_linear", spy)
    monkeypatch.setattr(Probe, "evaluate", probing)
    cfg = small_config(
        train__updates=4, run__precision=precision, schedule__phases="day 2, night 2"
    )
    flag = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        result = train(cfg, tmp_path / "p.h5", progress=False)
        assert torch.backends.cuda.matmul.allow_tf32 is False  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = flag
    assert result.status == "finished"
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    with open_run(result.path) as run:  # records at 0, 2 (end of the day) and 4
        assert np.isfinite(run.metrics["loss"][1])
        assert np.isfinite(run.metrics["night_loss"][2])
    updates = [(dt, tf32) for w, dt, tf32 in seen if w == "update"]
    probes = [(dt, tf32) for w, dt, tf32 in seen if w == "probe"]
    assert updates and probes
    assert set(probes) == {(torch.float32, False)}
    expected = {
        "bf16": (torch.bfloat16, False),
        "tf32": (torch.float32, True),
        "fp32": (torch.float32, False),
    }[precision]
    assert set(updates) == {expected}


def test_trainer_follows_the_schedule_and_logs_the_phase(tmp_path):
    """A day/night schedule records the phase of each record; night records carry night
    metrics and day records the rule's; interleaved records carry both."""
    cfg = small_config(schedule__phases="day 2, night 2, interleaved 2", run__record_every=1)
    train(cfg, tmp_path / "s.h5", progress=False)
    with open_run(tmp_path / "s.h5") as run:
        assert list(run.steps) == [0, 1, 2, 3, 4, 5, 6]
        assert list(run.phase) == ["day", "day", "day", "night", "night", "interleaved",
                                   "interleaved"]  # fmt: skip
        m = run.metrics
        assert all(m["night_loss"][[1, 2]] != m["night_loss"][[1, 2]])  # NaN by day
        assert all(m["loss"][[3, 4]] != m["loss"][[3, 4]])  # NaN at night
        assert all(m["night_loss"][[5, 6]] == m["night_loss"][[5, 6]])
        assert all(m["loss"][[5, 6]] == m["loss"][[5, 6]])
        assert run.attrs["schedule"] == "day 2, night 2, interleaved 2"


def test_records_never_span_two_phases(tmp_path):
    """The last update of every phase is recorded, whatever run.record_every says."""
    cfg = small_config(schedule__phases="day 3, night 2, day 4", run__record_every=100)
    train(cfg, tmp_path / "b.h5", progress=False)
    with open_run(tmp_path / "b.h5") as run:
        assert list(run.steps) == [0, 3, 5, 9]
        assert list(run.phase) == ["day", "day", "night", "day"]
