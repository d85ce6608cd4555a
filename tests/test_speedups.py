"""What the speed-ups of issue 7 must leave unchanged, checked against closed forms.

The fused optimisers take the textbook update; the update-norm meter measures the change an
SGD step makes (``lr |g|``); the allocator setting stops the page faults of repeated large
allocations and does nothing when switched off.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import fresh_seed, small_config

from bioglom.rules.base import ChangeMeter, make_optimizer


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


PROBE = textwrap.dedent(
    """
    import resource
    from bioglom.allocator import keep_freed_memory
    applied = keep_freed_memory()
    import torch

    def faults(n):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB: above glibc's largest mmap threshold
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n

    faults(20)  # the heap grows to hold the block
    print(applied, faults(5))
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only",
)
@pytest.mark.parametrize("switch", ["1", "0"])
def test_keep_freed_memory_stops_page_faults_of_repeated_large_blocks(switch):
    """A 64 MiB block allocated, written and freed again and again: with the setting, the
    heap keeps it and the writes fault (almost) no page in; with
    ``BIOGLOM_KEEP_FREED_MEMORY=0`` every write faults in all 16 384 pages again."""
    env = {**os.environ, "BIOGLOM_KEEP_FREED_MEMORY": switch}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    if switch == "1":
        assert applied == "True"
        assert float(faults) < 0.05 * pages
    else:
        assert applied == "False"
        assert float(faults) > 0.9 * pages
