"""bioglom.rules(.base): optimisers, change meter in closed form; corruption; the rule registry."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from conftest import fresh_seed, small_config

from bioglom.rules import RULES, corrupt
from bioglom.rules.base import HOLE_FILL, ChangeMeter, make_optimizer


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


def fresh(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(fresh_seed()))


def test_fused_adam_first_step_is_the_textbook_step():
    """Adam's first step from zero moments: m_hat = g and v_hat = g^2, so
    ``p <- p - lr g / (|g| + eps)``; the optimiser is PyTorch's fused one on the CPU."""
    cfg = small_config(train__optimizer="adam", train__lr=0.01, train__weight_decay=0.0)
    p = torch.nn.Parameter(fresh(50, 7))
    p0 = p.detach().clone()
    g = fresh(50, 7)
    opt = make_optimizer([p], cfg.train)
    assert opt.defaults["fused"] is True
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), p0 - 0.01 * g / (g.abs() + 1e-8))


def test_fused_sgd_with_weight_decay_is_the_textbook_step():
    """``p <- p - lr (g + lambda p)``."""
    cfg = small_config(train__optimizer="sgd", train__lr=0.1, train__weight_decay=0.01)
    p = torch.nn.Parameter(fresh(30))
    p0, g = p.detach().clone(), fresh(30)
    opt = make_optimizer([p], cfg.train)
    assert opt.defaults["fused"] is True
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), p0 - 0.1 * (g + 0.01 * p0))


def test_change_meter_measures_an_sgd_step_in_closed_form():
    """An SGD step with learning rate lr changes a group of parameters by ``lr |g|`` (the
    norm over the whole group); an empty group reports 0. Buffers are reused from step to
    step and each step is measured on its own."""
    a, b, c = (torch.nn.Parameter(fresh(*s)) for s in ((4, 5), (6,), (3, 3)))
    opt = torch.optim.SGD([a, b, c], lr=0.3)
    meter = ChangeMeter({"ab": [a, b], "c": [c], "none": []})
    for _ in range(3):
        grads = [fresh(*p.shape) for p in (a, b, c)]
        for p, g in zip((a, b, c), grads, strict=True):
            p.grad = g
        out = meter.step(opt)
        ab = math.sqrt(float(grads[0].pow(2).sum() + grads[1].pow(2).sum()))
        assert float(out["ab"]) == pytest.approx(0.3 * ab, rel=1e-5)
        assert float(out["c"]) == pytest.approx(0.3 * float(grads[2].norm()), rel=1e-5)
        assert float(out["none"]) == 0.0


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "other"])
def test_change_meter_equals_the_measured_change(optimizer):
    """Over several steps with weight decay, the meter's norm equals the norm of
    ``W_after - W_before`` taken from explicit copies: Adam and SGD from their closed forms,
    any other optimiser (here RMSprop) by copying."""
    params = [torch.nn.Parameter(fresh(*s)) for s in ((3, 4, 5), (7,))]
    if optimizer == "other":
        opt = torch.optim.RMSprop(params, lr=0.01)
    else:
        cfg = small_config(train__optimizer=optimizer, train__lr=0.05, train__weight_decay=0.1)
        opt = make_optimizer(params, cfg.train)
    meter = ChangeMeter({"all": params, "first": params[:1]})
    for _ in range(4):
        for p in params:
            p.grad = fresh(*p.shape)
        before = [p.detach().clone() for p in params]
        out = meter.step(opt)
        d = [p.detach() - b for p, b in zip(params, before, strict=True)]
        exp_all = math.sqrt(sum(float(x.pow(2).sum()) for x in d))
        assert float(out["all"]) == pytest.approx(exp_all, rel=1e-4)
        assert float(out["first"]) == pytest.approx(float(d[0].norm()), rel=1e-4)


def test_change_meter_reports_zero_for_a_parameter_adam_skipped():
    """A parameter with no gradient in this update is left alone by Adam, even though it has
    moments from an earlier update: the meter reports 0 for it, as a copy would."""
    a, b = torch.nn.Parameter(fresh(5)), torch.nn.Parameter(fresh(3))
    cfg = small_config(train__optimizer="adam", train__lr=0.1)
    opt = make_optimizer([a, b], cfg.train)
    meter = ChangeMeter({"a": [a], "b": [b]})
    a.grad, b.grad = fresh(5), fresh(3)
    meter.step(opt)
    a.grad, b.grad = fresh(5), None
    b0 = b.detach().clone()
    out = meter.step(opt)
    assert torch.equal(b.detach(), b0)
    assert float(out["b"]) == 0.0
    assert float(out["a"]) > 0.0
