"""bioglom.rules.supervised and functional.group_contrast: against loops written out here, a
closed form, and the properties every local rule keeps (no gradient across steps or columns)."""

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
from bioglom.functional import group_contrast
from bioglom.rules import make_rule


def loop_contrast(
    pred, target, groups, loss, temperature, margin, image_negatives, balance=False, bg=False
):
    """The definition, one column and one image at a time, with explicit sums (``bg``: no image
    negative where the column is background, group 0, in both images)."""
    N, B, _ = pred.shape
    out = torch.zeros(N, dtype=torch.float64)
    p, t = pred.double(), target.double()
    for x in range(N):
        for b in range(B):
            z = p[x, b] / p[x, b].norm()
            protos = {}
            for g in sorted(set(groups[b].tolist())):
                s = sum(t[y, b] for y in range(N) if int(groups[b, y]) == g)
                protos[g] = s / s.norm()
            own = float(z @ protos[int(groups[b, x])])
            negs = [float(z @ c) for g, c in protos.items() if g != int(groups[b, x])]
            others = []
            if image_negatives:
                both_bg = [bg and int(groups[b, x]) == 0 == int(groups[c, x]) for c in range(B)]
                others = [float(z @ (t[x, c] / t[x, c].norm())) for c in range(B)
                          if c != b and not both_bg[c]]  # fmt: skip
            if balance:
                value = 1 - own
                for kind in (negs, others):
                    value += sum(max(n - margin, 0.0) for n in kind) / max(len(kind), 1)
                out[x] += value / B
                continue
            negs += others
            if loss == "margin":
                hinge = sum(max(n - margin, 0.0) for n in negs) / max(len(negs), 1)
                value = (1 - own) + hinge
            else:
                logits = [own / temperature] + [n / temperature for n in negs]
                value = math.log(sum(math.exp(v) for v in logits)) - own / temperature
            out[x] += value / B
    return out


@pytest.mark.parametrize("loss", ["margin", "infonce"])
@pytest.mark.parametrize("image_negatives", [True, False])
def test_group_contrast_equals_its_definition_looped(loss, image_negatives, rng):
    """Random predictions, states and groups (some groups absent from some images, one image
    of a single group): the vectorised loss equals the loop over columns and images."""
    N, B, d = 6, 3, 5
    pred = torch.randn(N, B, d, generator=rng)
    target = torch.randn(N, B, d, generator=rng)
    groups = torch.randint(0, 4, (B, N), generator=rng)
    groups[2] = 1  # one group only: its columns have no in-image negative
    got = group_contrast(
        pred, target, groups, loss=loss, temperature=0.3, margin=0.1,
        image_negatives=image_negatives,
    )  # fmt: skip
    want = loop_contrast(pred, target, groups, loss, 0.3, 0.1, image_negatives)
    assert torch.allclose(got.double(), want, atol=1e-5), (got, want)


def test_margin_contrast_is_zero_when_each_prediction_is_its_groups_orthogonal_prototype():
    """Closed form: states and predictions are basis vectors, one per group, the groups laid
    out differently in the two images and the same column in the other image orthogonal: every
    cosine to the own prototype is 1 and to every negative 0 <= margin, so the loss is 0; with
    the predictions negated it is 2 per column (cosine -1 to the own prototype)."""
    eye = torch.eye(4)
    groups = torch.tensor([[0, 0, 1, 1], [2, 3, 3, 2]])
    target = torch.stack([eye[groups[b]] for b in range(2)], 1)  # [N=4, B=2, d=4]
    loss = group_contrast(target.clone(), target, groups, loss="margin", margin=0.2)
    assert torch.equal(loss, torch.zeros(4))
    loss = group_contrast(-target, target, groups, loss="margin", margin=0.2)
    assert torch.allclose(loss, torch.full((4,), 2.0))


def test_each_columns_contrast_depends_on_its_own_prediction_only(rng):
    """The Jacobian of the per-column losses with respect to the predictions is block-diagonal
    over columns: no gradient crosses columns (the prototypes are made of the detached
    states), and none reaches the states at all."""
    N, B, d = 5, 3, 4
    pred = torch.randn(N, B, d, generator=rng, requires_grad=True)
    target = torch.randn(N, B, d, generator=rng, requires_grad=True)
    groups = torch.randint(0, 3, (B, N), generator=rng)
    per = group_contrast(pred, target, groups)
    for x in range(N):
        gp, gt = torch.autograd.grad(per[x], (pred, target), retain_graph=True, allow_unused=True)
        assert gt is None
        others = [y for y in range(N) if y != x]
        assert gp[others].abs().sum() == 0 and gp[x].abs().sum() > 0, x


def test_group_contrast_refuses_what_it_cannot_read():
    pred = torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="loss must be"):
        group_contrast(pred, pred, torch.zeros(2, 3), loss="hinge")
    with pytest.raises(ValueError, match=r"groups must be \[B, N\] = \[2, 3\]"):
        group_contrast(pred, pred, torch.zeros(3, 2))


def truth_for(B: int, N: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "obj": torch.randint(0, 3, (B, N), generator=gen),
        "part": torch.randint(0, 5, (B, N), generator=gen),
    }


def test_with_weight_zero_the_update_is_codistillations(rng):
    """supervised.weight = 0 adds nothing: one SGD update equals co-distillation's bit for bit
    (the option changes only the contrast it names)."""
    metrics = update_of_added_term_at_weight_zero(
        {"train__rule": "codistill"},
        {"train__rule": "supervised", "supervised__weight": 0.0},
        rand_images(3, gen=rng),
        truth=truth_for(3, 16, rng),
    )
    assert metrics["loss_contrast"] > 0  # measured all the same


def test_no_gradient_reaches_an_earlier_step(rng):
    """As for every local rule: the supervised step loss sends no gradient to the state it was
    computed from or to any earlier state."""
    _, model, r = setup(train__rule="supervised")
    x = rand_images(2, gen=rng)
    e0 = torch.randn(3, 16, 2, 8, generator=rng, requires_grad=True)
    e1 = model.step(e0, None, x, 0, 3).state
    r._groups = truth_for(2, 16, rng)
    loss, _, target, _ = r.step_losses(e1, None, x, 1, 3)
    loss.backward()
    assert e0.grad is None and not target.requires_grad


def test_updates_pull_predictions_toward_their_groups(rng):
    """On one fixed batch, 40 updates of the supervised rule (contrast only at the part and
    object levels) lower the measured contrast loss by a quarter at least."""
    cfg, model, rule = setup(train__rule="supervised", supervised__weight=5.0)
    x = rand_images(4, gen=rng)
    truth = truth_for(4, 16, rng)
    g = fresh_seed()
    first = float(rule.update(x, torch.Generator().manual_seed(g), truth=truth)["loss_contrast"])
    for _ in range(39):
        last = float(rule.update(x, torch.Generator().manual_seed(g), truth=truth)["loss_contrast"])
    assert last < 0.75 * first, (first, last)


def test_the_rule_refuses_a_batch_without_labels(rng):
    _, _, rule = setup(train__rule="supervised")
    with pytest.raises(ValueError, match="need the batch's column labels"):
        rule.update(rand_images(2, gen=rng))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"supervised__part_level": 3}, "supervised.part_level"),  # K = 3
        ({"supervised__part_level": 2, "supervised__object_level": 2}, "supervised.part_level"),
        ({"supervised__part_level": -1, "supervised__object_level": -1}, "supervised.object_level"),
    ],
)
def test_the_config_refuses_levels_the_model_lacks(overrides, field):
    with pytest.raises(bioglom.ConfigError) as info:
        small_config(train__rule="supervised", **overrides)
    assert info.value.field == field


def test_a_run_learns_from_the_masks_and_data_without_masks_is_refused(tmp_path):
    """Through the trainer: a run on generated scenes records loss_contrast at every record; on
    digits (no masks) the rule is refused by name before anything is written."""
    from bioglom.runs import open_run
    from bioglom.train import train

    cfg = small_config(train__rule="supervised", train__updates=4, run__record_every=2)
    assert train(cfg, tmp_path / "s.h5", progress=False).status == "finished"
    with open_run(tmp_path / "s.h5") as run:
        assert (run.metrics["loss_contrast"][1:] > 0).all()
    digits = small_config(
        train__rule="supervised", data__source="digits", data__n_linear=0, data__n_probe=4
    )
    with pytest.raises(bioglom.ConfigError) as info:
        train(digits, tmp_path / "d.h5", progress=False)
    assert info.value.field == "train.rule" and "masks" in str(info.value)
    assert not (tmp_path / "d.h5").exists()
    model = bioglom.build_model(cfg)
    assert make_rule(model, cfg).needs_truth


# ---------------------------------------------------------------------------------------------
# supervised_end_to_end: the end-to-end baseline plus the contrast on the final state


def test_end_to_end_contrast_weight_zero_is_the_end_to_end_update(rng):
    """supervised.weight = 0: one SGD update equals the end-to-end rule's bit for bit, and the
    contrast is still measured."""
    metrics = update_of_added_term_at_weight_zero(
        {"train__rule": "end_to_end"},
        {"train__rule": "supervised_end_to_end", "supervised__weight": 0.0},
        rand_images(3, gen=rng),
        truth=truth_for(3, 16, rng),
    )
    assert metrics["loss_contrast"] > 0


def test_end_to_end_contrast_is_the_definition_on_the_final_state(rng):
    """The added term is w times the sum over supervised levels (part level 1, object level 2 of
    K = 3) of the column mean of the looped contrast of the final state against itself."""
    _, _, rule = setup(
        train__rule="supervised_end_to_end", supervised__weight=0.7, supervised__loss="infonce"
    )
    state = torch.randn(3, 16, 2, 8, generator=rng)
    truth = truth_for(2, 16, rng)
    rule._groups = truth
    got, metrics = rule.final_loss(state)
    want = sum(
        loop_contrast(state[k], state[k], truth[name], "infonce", 0.1, 0.2, True).mean()
        for k, name in ((1, "part"), (2, "obj"))
    )
    torch.testing.assert_close(got.double(), 0.7 * want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["loss_contrast"].double(), want, rtol=1e-5, atol=1e-6)


def test_end_to_end_contrast_reaches_the_frontend_through_time(rng):
    """Unlike the local rule, the contrast at level 2 sends gradient back through settling to
    the frontend (level 0's only input): with the reconstruction and agreement terms off
    (model.decode unused) the frontend's gradient is non-zero."""
    _, model, rule = setup(
        train__rule="supervised_end_to_end",
        supervised__part_level=-1,
        end_to_end__agreement_weight=0.0,
    )
    x = rand_images(2, gen=rng)
    rule._groups = truth_for(2, 16, rng)
    e, tau = model.initial_state(x)
    for t in range(3):
        out = model.step(e, tau, x, t, 3)
        e, tau = out.state, out.precision
    loss, _ = rule.final_loss(e)
    loss.backward()
    grads = [p.grad for p in model.frontend.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_end_to_end_contrast_updates_lower_the_contrast_and_need_labels(rng):
    """On one fixed batch, 30 updates lower the measured contrast by a quarter at least; a batch
    without labels is refused."""
    _, _, rule = setup(train__rule="supervised_end_to_end", supervised__weight=5.0)
    x = rand_images(4, gen=rng)
    truth = truth_for(4, 16, rng)
    g = fresh_seed()
    first = float(rule.update(x, torch.Generator().manual_seed(g), truth=truth)["loss_contrast"])
    for _ in range(29):
        last = float(rule.update(x, torch.Generator().manual_seed(g), truth=truth)["loss_contrast"])
    assert last < 0.75 * first, (first, last)
    with pytest.raises(ValueError, match="need the batch's column labels"):
        rule.update(x)


def test_balanced_margin_equals_its_definition_looped(rng):
    """supervised.balance_negatives: one hinge mean over the image's other groups plus one over
    the other images, against the loop."""
    N, B, d = 6, 4, 5
    pred, target = torch.randn(N, B, d, generator=rng), torch.randn(N, B, d, generator=rng)
    groups = torch.randint(0, 3, (B, N), generator=rng)
    got = group_contrast(pred, target, groups, loss="margin", margin=0.1, balance=True)
    want = loop_contrast(pred, target, groups, "margin", 0.1, 0.1, True, balance=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    plain = group_contrast(pred, target, groups, loss="margin", margin=0.1)
    assert not torch.allclose(got, plain)


@pytest.mark.parametrize("loss, balance", [("margin", False), ("margin", True), ("infonce", False)])
def test_shared_background_drops_only_background_pairs_across_images(loss, balance, rng):
    """supervised.shared_background: the same column in another image is no negative where it
    is background in both images, and everything else is as before (against the loop; groups
    with much background so that such pairs occur)."""
    N, B, d = 8, 4, 5
    pred, target = torch.randn(N, B, d, generator=rng), torch.randn(N, B, d, generator=rng)
    groups = torch.randint(0, 3, (B, N), generator=rng) * (torch.rand(B, N, generator=rng) < 0.5)
    groups[:, 0] = 0  # column 0 is background everywhere: it has no image negative at all
    kw = dict(loss=loss, temperature=0.3, margin=0.1, balance=balance)
    got = group_contrast(pred, target, groups, shared_background=True, **kw)
    want = loop_contrast(pred, target, groups, loss, 0.3, 0.1, True, balance=balance, bg=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    plain = group_contrast(pred, target, groups, **kw)
    assert not torch.allclose(got[0], plain[0])
