"""Training: the end-to-end baseline learns, corruption is what it says, a run is written."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from conftest import fresh_seed, small_config

import bioglom
from bioglom.rules import RULES, EndToEnd, corrupt, make_rule
from bioglom.rules.base import HOLE_FILL
from bioglom.runs import open_run
from bioglom.train import load_data, train


def test_corrupt_removes_square_holes_of_the_given_size():
    """Each image loses `holes` squares of side round(hole_size * H), filled with HOLE_FILL;
    the other pixels are untouched."""
    g = torch.Generator().manual_seed(fresh_seed())
    x = torch.rand(6, 3, 20, 20, generator=g)
    y, mask = corrupt(x, holes=1, hole_size=0.25, generator=g)
    assert mask.shape == (6, 1, 20, 20)
    assert torch.equal(mask.sum(dim=(1, 2, 3)), torch.full((6,), 25))  # one 5x5 hole
    for b in range(6):
        rows, cols = torch.nonzero(mask[b, 0], as_tuple=True)
        assert rows.max() - rows.min() == 4 and cols.max() - cols.min() == 4
    m = mask.expand_as(x)
    assert torch.all(y[m] == HOLE_FILL)
    assert torch.equal(y[~m], x[~m])
    y0, m0 = corrupt(x, holes=0, hole_size=0.25, generator=g)
    assert torch.equal(y0, x) and not m0.any()


def test_the_registry_decides_which_rules_the_config_accepts(monkeypatch):
    """train.rule accepts exactly the registered names: a rule added to RULES is accepted and
    its own check_config runs on validation; an unregistered name is refused with the
    registered ones listed; the temporal rule's own check refuses gaussian consensus."""
    import bioglom
    from bioglom.rules.base import LearningRule

    class Probe(LearningRule):
        name = "probe_rule"
        seen: ClassVar[list] = []

        @classmethod
        def check_config(cls, config):
            cls.seen.append(config.train.rule)
            if config.train.lr > 1:
                raise bioglom.ConfigError("train.lr", config.train.lr, "probe_rule: at most 1")

    with pytest.raises(bioglom.ConfigError, match="'codistill', 'temporal'"):
        small_config(train__rule="probe_rule")
    monkeypatch.setitem(RULES, "probe_rule", Probe)
    assert small_config(train__rule="probe_rule").train.rule == "probe_rule"
    assert Probe.seen == ["probe_rule"]
    with pytest.raises(bioglom.ConfigError, match="probe_rule: at most 1"):
        small_config(train__rule="probe_rule", train__lr=2.0)
    with pytest.raises(bioglom.ConfigError, match="consensus.mode"):
        small_config(train__rule="temporal", consensus__mode="gaussian")


def test_end_to_end_lowers_its_loss_on_a_fixed_batch():
    """Repeated end-to-end updates on one fixed batch lower the reconstruction loss well below
    where it started (the rule optimises what it claims to)."""
    cfg = small_config(train__rule="end_to_end", train__lr=3e-3, end_to_end__holes=0)
    model = bioglom.build_model(cfg)
    rule = make_rule(model, cfg)
    x = torch.from_numpy(bioglom.data.part_whole_scenes(8, 8, fresh_seed() % 1000).images)
    g = torch.Generator().manual_seed(0)
    first = rule.update(x, g)["loss_recon"].item()
    for _ in range(60):
        last = rule.update(x, g)["loss_recon"].item()
    assert last < 0.5 * first


def test_end_to_end_loss_is_reconstruction_plus_agreement():
    """The baseline's loss equals |decode(e(T)) - x|^2 + lambda/T sum_t (|bu(t) - e(t+1)|^2 +
    |td(t) - e(t+1)|^2), recomputed here from the same corruption and the same settling."""
    cfg = small_config(
        train__rule="end_to_end", end_to_end__agreement_weight=0.3, model__state_norm="layer"
    )
    model = bioglom.build_model(cfg)
    model.train()
    rule = make_rule(model, cfg)
    rule.optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # leave the weights alone
    seed = fresh_seed()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    got = rule.update(x, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    x_in, _ = corrupt(x, cfg.end_to_end.holes, cfg.end_to_end.hole_size, g)
    with torch.no_grad():
        e, _ = model.initial_state(x_in)
        agree = 0.0
        for t in range(3):
            out = model.step(e, None, x_in, t, 3)
            agree += ((out.bottom_up - out.state) ** 2).mean() + (
                (out.top_down - out.state[:-1]) ** 2
            ).mean()
            e = out.state
        recon = ((model.decode(e) - x) ** 2).mean()
    assert float(got["loss_recon"]) == pytest.approx(float(recon), rel=1e-5)
    assert float(got["loss"]) == pytest.approx(float(recon + 0.3 * agree / 3), rel=1e-5)


def spy_on_steps(model):
    """Record the state entering every settling step, keeping the gradient that reaches it."""
    seen = []
    step = model.step

    def spy(e, *args, **kwargs):
        if e.requires_grad:
            e.retain_grad()
        seen.append(e)
        return step(e, *args, **kwargs)

    model.step = spy
    return seen


def test_end_to_end_backpropagates_through_time():
    """The baseline's update sends the reconstruction error back through every settling step:
    with the agreement terms off, the loss depends on e(t) only through the steps after t, and
    the gradient reaching e(t) is non-zero for every t, e(0) included. The co-distillation rule
    steps on detached states: no gradient can reach any of them."""
    cfg = small_config(train__rule="end_to_end", end_to_end__agreement_weight=0.0)
    model = bioglom.build_model(cfg)
    seen = spy_on_steps(model)
    rule = make_rule(model, cfg)
    assert isinstance(rule, EndToEnd)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(fresh_seed()))
    rule.update(x, torch.Generator().manual_seed(fresh_seed()))
    assert len(seen) == cfg.settle.steps == 3
    for t, e in enumerate(seen):
        assert e.grad is not None and e.grad.abs().sum() > 0, f"no gradient reaches e({t})"
    local_cfg = small_config(train__rule="codistill")
    local = bioglom.build_model(local_cfg)
    seen = spy_on_steps(local)
    make_rule(local, local_cfg).update(x, torch.Generator().manual_seed(fresh_seed()))
    assert len(seen) == 3
    assert all(not e.requires_grad and e.grad_fn is None for e in seen)


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


def test_labelled_file_holds_out_a_linear_probe_set(tmp_path):
    """With labels, the n_linear images before the probe form the linear-probe set, and runs
    record a linear-probe accuracy between 0 and 1."""
    g = np.random.default_rng(fresh_seed())
    imgs = g.random((40, 1, 8, 8)).astype(np.float32)
    labels = g.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", images=imgs, labels=labels)
    cfg = small_config(
        data__source="file", data__path=str(tmp_path / "d.npz"), data__n_probe=4,
        data__n_linear=12, train__updates=1,
    )  # fmt: skip
    splits = load_data(cfg)
    np.testing.assert_array_equal(splits.linear.images, imgs[24:36])
    np.testing.assert_array_equal(splits.linear.labels, labels[24:36])
    np.testing.assert_array_equal(splits.probe.images, imgs[36:])
    assert len(splits.train) == 24
    result = train(cfg, tmp_path / "r.h5", progress=False)
    assert 0.0 <= result.summary["probe_linear_acc"] <= 1.0


def test_load_data_from_a_user_file(tmp_path):
    """data.source = file: the last n_probe images are the probe, the rest train; an image size
    the patch does not divide is a ConfigError on frontend.patch_size."""
    g = np.random.default_rng(fresh_seed())
    imgs = g.random((10, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=imgs)
    cfg = small_config(data__source="file", data__path=str(tmp_path / "d.npz"), data__n_probe=3)
    splits = load_data(cfg)
    np.testing.assert_array_equal(splits.train.images, imgs[:7])
    np.testing.assert_array_equal(splits.probe.images, imgs[7:])
    assert splits.linear is None  # no labels: no linear-probe set is held out
    model = bioglom.build_model(cfg)
    assert model.channels == 1 and model.grid == (4, 4)
    np.savez(tmp_path / "odd.npz", images=g.random((10, 1, 9, 9)).astype(np.float32))
    bad = small_config(data__source="file", data__path=str(tmp_path / "odd.npz"))
    with pytest.raises(bioglom.ConfigError, match="frontend.patch_size"):
        load_data(bad)


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
