"""bioglom.rules.end_to_end: loss recomputed by hand; gradient reaches every step; loss falls."""

from __future__ import annotations

import pytest
import torch
from conftest import fresh_seed, small_config

import bioglom
from bioglom.rules import EndToEnd, corrupt, make_rule


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
