"""bioglom.rules.self_contrast and functional.chosen_contrast: against a loop written out here,
a closed case, and the properties every local rule keeps (no gradient across steps or columns)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import (
    fresh_seed,
    rand_images,
    setup,
    small_config,
    update_of_added_term_at_weight_zero,
)

import bioglom
from bioglom.functional import chosen_contrast, window_neighbours


def loop_chosen(
    pred, target, state, index, valid, beta, kp, kn, temperature, image_negatives, rank=None
):
    """The definition, one column and one image at a time: rank the valid neighbours other
    than the column by beta s(x).s(y) -- or by r(x).r(y) given ``rank`` r -- (ties broken by
    position, as a stable sort would), take the kp highest as positives and the kn lowest of
    the rest as negatives."""
    N, B, _ = pred.shape
    out = torch.zeros(N, dtype=torch.float64)
    p, t = pred.double(), target.double()
    s = (state if rank is None else rank).double()
    beta = beta if rank is None else 1.0

    def unit(v):
        return v / v.norm()

    for x in range(N):
        ys = [int(y) for y, v in zip(index[x], valid[x], strict=True) if v and int(y) != x]
        for b in range(B):
            ranked = sorted(ys, key=lambda y, b=b: -float(beta * s[x, b] @ s[y, b]))
            pos = ranked[:kp]
            rest = ranked[kp:]
            neg = rest[max(len(rest) - kn, 0) :]
            z = unit(p[x, b])
            if not pos:
                continue
            num = [float(z @ unit(t[y, b])) / temperature for y in pos]
            den = num + [float(z @ unit(t[y, b])) / temperature for y in neg]
            if image_negatives:
                den += [float(z @ unit(t[x, c])) / temperature for c in range(B) if c != b]
            lse = math.log(sum(math.exp(v) for v in den))
            out[x] += (lse - math.log(sum(math.exp(v) for v in num))) / B
    return out


@pytest.mark.parametrize("image_negatives", [True, False])
@pytest.mark.parametrize("kp, kn", [(2, 4), (1, 8), (3, 1)])
def test_chosen_contrast_equals_its_definition_looped(kp, kn, image_negatives, rng):
    """On a 4x5 grid with radius 1 (corners have 3 neighbours, so the positives and negatives
    run short there) the vectorised loss equals the loop for every column."""
    N, B, d = 20, 3, 6
    pred, target, state = (torch.randn(N, B, d, generator=rng) for _ in range(3))
    idx, valid = window_neighbours((4, 5), 1, True)
    got = chosen_contrast(
        pred,
        target,
        state,
        idx,
        valid,
        0.7,
        positives=kp,
        negatives=kn,
        temperature=0.3,
        image_negatives=image_negatives,
    )
    want = loop_chosen(pred, target, state, idx, valid, 0.7, kp, kn, 0.3, image_negatives)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_ranked_by_other_vectors_the_contrast_equals_its_definition_looped(rng):
    """Given rank vectors (common fate: the unit change of each column), the neighbours are
    ranked by their dot products instead of the state's, and the loss equals the loop."""
    N, B, d = 20, 3, 6
    pred, target, state, change = (torch.randn(N, B, d, generator=rng) for _ in range(4))
    change = change / change.norm(dim=-1, keepdim=True)
    idx, valid = window_neighbours((4, 5), 1, True)
    got = chosen_contrast(pred, target, state, idx, valid, 0.7, positives=2, negatives=3,
                          temperature=0.3, rank=change)  # fmt: skip
    want = loop_chosen(pred, target, state, idx, valid, 0.7, 2, 3, 0.3, True, rank=change)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    by_state = chosen_contrast(pred, target, state, idx, valid, 0.7, positives=2, negatives=3,
                               temperature=0.3)  # fmt: skip
    assert not torch.allclose(got, by_state)  # the ranking did change


def test_common_fate_closed_case():
    """Three columns in a row, one image, d = 2, all states equal (attention cannot choose).
    Column 1's neighbour 0 changes as it does, (0, 1) -> (0, 2), neighbour 2 the opposite way:
    with rank_by common fate 0 is its positive and 2 its negative, so with the targets, the
    prediction and the temperature of test_chosen_contrast_closed_case the loss is again
    log(1 + 1/e); with the roles of 0 and 2 swapped it is log(1 + e) - 0 = log(1 + e)."""
    state = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])[:, None]
    target = torch.tensor([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]])[:, None]
    pred = torch.tensor([[0.0, 3.0], [2.0, 0.0], [1.0, 1.0]])[:, None]
    change = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, -1.0]])[:, None]
    idx, valid = window_neighbours((1, 3), 1, True)
    kw = dict(positives=1, negatives=1, temperature=1.0)
    per = chosen_contrast(pred, target, state, idx, valid, 1.0, rank=change, **kw)
    assert float(per[1]) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-5)
    swapped = torch.tensor([[0.0, -1.0], [0.0, 1.0], [0.0, 1.0]])[:, None]
    swapped = chosen_contrast(pred, target, state, idx, valid, 1.0, rank=swapped, **kw)
    assert float(swapped[1]) == pytest.approx(math.log(1 + math.e), rel=1e-5)


def test_chosen_contrast_closed_case():
    """Three columns in a row, one image, d = 2, radius 1. Column 0's only neighbour is 1: it is
    the positive, there is no negative and no other image, so the loss is -log 1 = 0. Column 1
    has neighbours 0 (state (1, 0), logit 1) and 2 (state (-1, 0), logit -1) against its state
    (1, 0): 0 is the positive, 2 the negative; with targets e0 = (1, 0), e2 = (0, 1) and the
    prediction (1, 0) at temperature 1 the loss is log(e^1 + e^0) - 1 = log(1 + 1/e)."""
    state = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])[:, None]
    target = torch.tensor([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]])[:, None]
    pred = torch.tensor([[0.0, 3.0], [2.0, 0.0], [1.0, 1.0]])[:, None]
    idx, valid = window_neighbours((1, 3), 1, True)
    per = chosen_contrast(
        pred, target, state, idx, valid, 1.0, positives=1, negatives=1, temperature=1.0
    )
    assert float(per[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(per[1]) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-5)


def test_each_columns_chosen_contrast_depends_on_its_own_prediction_only(rng):
    """The Jacobian of the per-column losses with respect to the predictions is block-diagonal
    over columns, and no gradient reaches the targets or the states the ranking came from."""
    N, B, d = 12, 3, 4
    pred = torch.randn(N, B, d, generator=rng, requires_grad=True)
    target = torch.randn(N, B, d, generator=rng, requires_grad=True)
    state = torch.randn(N, B, d, generator=rng, requires_grad=True)
    idx, valid = window_neighbours((3, 4), 1, True)
    per = chosen_contrast(pred, target, state, idx, valid, 1.0, positives=2, negatives=2)
    for x in range(N):
        gp, gt, gs = torch.autograd.grad(
            per[x], (pred, target, state), retain_graph=True, allow_unused=True
        )
        assert gt is None and gs is None
        others = [y for y in range(N) if y != x]
        assert gp[others].abs().sum() == 0 and gp[x].abs().sum() > 0, x


def test_with_weight_zero_the_update_is_codistillations(rng):
    """self_contrast.weight = 0 adds nothing: one SGD update equals co-distillation's bit for
    bit, while the contrast is still measured."""
    metrics = update_of_added_term_at_weight_zero(
        {"train__rule": "codistill"},
        {"train__rule": "self_contrast", "self_contrast__weight": 0.0},
        rand_images(3, gen=rng),
    )
    assert metrics["loss_contrast"] > 0


@pytest.mark.parametrize("rank_by", ["attention", "common_fate"])
def test_the_step_loss_is_codistillation_plus_the_contrast_at_the_chosen_levels(rank_by, rng):
    """One step's loss equals co-distillation's plus w times the chosen contrast of the stacked
    bottom-up and top-down predictions at levels from_level..K-1 (no top-down at the top),
    summed over columns, with the attention of that step (beta_l(t)) on the state e(t) -- or,
    with rank_by = common_fate, the neighbours ranked by the cosine of their changes over the
    step, e*(t+1) - e(t)."""
    _, model, rule = setup(
        train__rule="self_contrast",
        self_contrast__weight=0.5,
        self_contrast__from_level=1,
        self_contrast__rank_by=rank_by,
    )
    x = rand_images(2, gen=rng)
    e = torch.randn(3, 16, 2, 8, generator=rng)
    loss, out, target, _ = rule.step_losses(e, None, x, 1, 3)
    base = 0.5 * ((out.bottom_up - target) ** 2).mean((2, 3)).sum()
    base = base + 0.5 * ((out.top_down - target[:-1]) ** 2).mean((2, 3)).sum()
    beta = model.beta(1, 3)
    extra = 0.0
    for k in (1, 2):
        idx, valid = model.neighbours(k)
        preds = [out.bottom_up[k]] + ([out.top_down[k]] if k < 2 else [])
        change = target[k] - e[k]
        rank = change / change.norm(dim=-1, keepdim=True) if rank_by == "common_fate" else None
        for p in preds:
            extra = (
                extra + chosen_contrast(p, target[k], e[k], idx, valid, beta[k], rank=rank).sum()
            )
    torch.testing.assert_close(loss, base + 0.5 * extra, rtol=1e-5, atol=1e-5)


def test_no_gradient_reaches_an_earlier_step(rng):
    _, model, rule = setup(train__rule="self_contrast")
    x = rand_images(2, gen=rng)
    e0 = torch.randn(3, 16, 2, 8, generator=rng, requires_grad=True)
    e1 = model.step(e0, None, x, 0, 3).state
    loss, _, target, _ = rule.step_losses(e1, None, x, 1, 3)
    loss.backward()
    assert e0.grad is None and not target.requires_grad


def test_updates_lower_the_contrast_and_a_run_records_it(rng, tmp_path):
    """40 updates on one fixed batch lower the measured contrast by a tenth at least; through
    the trainer a run records loss_contrast at every record."""
    from bioglom.runs import open_run
    from bioglom.train import train

    _, _, rule = setup(train__rule="self_contrast", self_contrast__weight=5.0)
    x = rand_images(4, gen=rng)
    g = fresh_seed()
    first = float(rule.update(x, torch.Generator().manual_seed(g))["loss_contrast"])
    for _ in range(39):
        last = float(rule.update(x, torch.Generator().manual_seed(g))["loss_contrast"])
    assert last < 0.9 * first, (first, last)
    cfg = small_config(train__rule="self_contrast", train__updates=4, run__record_every=2)
    assert train(cfg, tmp_path / "s.h5", progress=False).status == "finished"
    with open_run(tmp_path / "s.h5") as run:
        assert (run.metrics["loss_contrast"][1:] > 0).all()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"self_contrast__from_level": 3}, "self_contrast.from_level"),  # K = 3
        (
            {"attention__neighbourhood": "gaussian", "attention__samples": 4},
            "attention.resample",
        ),
    ],
)
def test_the_config_refuses_what_the_rule_cannot_rank(overrides, field):
    with pytest.raises(bioglom.ConfigError) as info:
        small_config(train__rule="self_contrast", **overrides)
    assert info.value.field == field
