"""bioglom.rules.prototypes, functional.sinkhorn_image and functional.prototype_loss: against
the Sinkhorn-Knopp iteration written out here, a closed case, and locality."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import (
    rand_images,
    setup,
    small_config,
    update_of_added_term_at_weight_zero,
)

import bioglom
from bioglom.functional import prototype_loss, sinkhorn_image


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def loop_sinkhorn(scores, epsilon, iterations):
    """Plain (not log-domain) Sinkhorn-Knopp for one image: Q = exp(S / eps); rescale the
    prototype sums to N / P, then the column sums to 1, `iterations` times."""
    q = torch.exp(scores / epsilon)
    N, P = q.shape
    for _ in range(iterations):
        q = q / q.sum(0, keepdim=True) * (N / P)
        q = q / q.sum(1, keepdim=True)
    return q


def test_sinkhorn_equals_the_plain_iteration_per_image(rng):
    scores = torch.randn(12, 3, 4, generator=rng)
    got = sinkhorn_image(scores, epsilon=0.5, iterations=4)
    for b in range(3):
        torch.testing.assert_close(got[:, b], loop_sinkhorn(scores[:, b], 0.5, 4))
    torch.testing.assert_close(got.sum(-1), torch.ones(12, 3))


def test_sinkhorn_balances_an_image_whose_columns_all_agree():
    """Every column prefers prototype 0 by the same margin: the plain softmax would give them
    all to it, the balanced assignment gives each prototype N / P of the mass (after many
    iterations), which no common code can match."""
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(8, 1, 4).clone()
    q = sinkhorn_image(scores, epsilon=0.1, iterations=50)
    torch.testing.assert_close(q.sum(0)[0], torch.full((4,), 2.0), rtol=1e-6, atol=1e-6)


def test_prototype_loss_closed_case():
    """Two columns, one image, two prototypes e1, e2, eps large (q near uniform: with identical
    targets balance makes it exactly 1/2 each). A prediction along e1 at temperature 1 has
    log-softmax (1, 0) - log(e + 1); the loss is -(1/2)(1 - log(e + 1)) - (1/2)(-log(e + 1))."""
    c = torch.eye(2)
    target = torch.tensor([[1.0, 1.0], [1.0, 1.0]])[:, None]
    pred = torch.tensor([[3.0, 0.0], [3.0, 0.0]])[:, None]
    per = prototype_loss(pred, target, c, temperature=1.0, epsilon=1.0, iterations=3)
    want = -0.5 * (1 - math.log(math.e + 1)) - 0.5 * (-math.log(math.e + 1))
    torch.testing.assert_close(per, torch.full((2,), want))


def test_each_columns_prototype_loss_depends_on_its_own_prediction_only(rng):
    N, B, d = 7, 3, 5
    pred = torch.randn(N, B, d, generator=rng, requires_grad=True)
    target = torch.randn(N, B, d, generator=rng, requires_grad=True)
    c = torch.randn(4, d, generator=rng)
    per = prototype_loss(pred, target, c)
    for x in range(N):
        gp, gt = torch.autograd.grad(per[x], (pred, target), retain_graph=True, allow_unused=True)
        assert gt is None
        others = [y for y in range(N) if y != x]
        assert gp[others].abs().sum() == 0 and gp[x].abs().sum() > 0, x


def test_with_weight_zero_the_update_is_codistillations(rng):
    """prototypes.weight = 0 adds nothing: one SGD update equals co-distillation's bit for bit,
    while the term is still measured."""
    torch.set_default_dtype(torch.float32)
    metrics = update_of_added_term_at_weight_zero(
        {"train__rule": "codistill"},
        {"train__rule": "prototypes", "prototypes__weight": 0.0},
        rand_images(3, gen=rng).float(),
    )
    assert metrics["loss_prototypes"] > 0


def test_the_step_loss_adds_the_prototype_term_at_its_levels(rng):
    """One step's loss is co-distillation's plus w times the prototype loss of the stacked
    predictions at levels from_level..K-1 against the rule's fixed unit prototypes."""
    torch.set_default_dtype(torch.float32)
    _, model, rule = setup(train__rule="prototypes", prototypes__weight=0.3)
    assert torch.allclose(rule.prototypes.norm(dim=-1), torch.ones(3, 8))
    x = rand_images(2, gen=rng).float()
    e = torch.randn(3, 16, 2, 8, generator=rng).float()
    loss, out, target, _ = rule.step_losses(e, None, x, 1, 3)
    base = 0.5 * ((out.bottom_up - target) ** 2).mean((2, 3)).sum()
    base = base + 0.5 * ((out.top_down - target[:-1]) ** 2).mean((2, 3)).sum()
    extra = 0.0
    for k in (1, 2):
        preds = [out.bottom_up[k]] + ([out.top_down[k]] if k < 2 else [])
        for p in preds:
            extra = extra + prototype_loss(p, target[k], rule.prototypes[k]).sum()
    torch.testing.assert_close(loss, base + 0.3 * extra, rtol=1e-5, atol=1e-5)


def test_a_run_records_the_term_and_the_config_refuses_a_missing_level(tmp_path):
    from bioglom.runs import open_run
    from bioglom.train import train

    torch.set_default_dtype(torch.float32)
    cfg = small_config(train__rule="prototypes", train__updates=4, run__record_every=2)
    assert train(cfg, tmp_path / "p.h5", progress=False).status == "finished"
    with open_run(tmp_path / "p.h5") as run:
        assert (run.metrics["loss_prototypes"][1:] > 0).all()
    with pytest.raises(bioglom.ConfigError) as info:
        small_config(train__rule="prototypes", prototypes__from_level=3)
    assert info.value.field == "prototypes.from_level"
