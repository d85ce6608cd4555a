"""bioglom.rules.sleep: dreams, negative loss, replay memory, nights (§12.2, docs/design.md §5)."""

from __future__ import annotations

import pytest
import torch
from conftest import fresh_seed, rand_images, small_config

import bioglom
from bioglom.config import ConfigError
from bioglom.rules.sleep import ReplayMemory, Sleep, dream, negative_loss

# ---------------------------------------------------------------------------------------------
# the replay memory, dreams and the negative loss


def test_replay_memory_never_exceeds_its_bound_and_keeps_the_latest():
    """A ring buffer of capacity 5 fed 23 states holds exactly the last 5."""
    mem = ReplayMemory(5)
    seen = []
    for i in range(7):
        b = 1 + i % 4
        top = torch.arange(len(seen), len(seen) + b, dtype=torch.float32).view(1, b, 1)
        top = top.expand(3, b, 2)  # [N=3, B, d=2]
        mem.add(top)
        seen += list(range(len(seen), len(seen) + b))
        assert len(mem) == min(len(seen), 5) and mem.items.shape[0] == 5
    stored = sorted(int(v) for v in mem.items[:, 0, 0])
    assert stored == seen[-5:]
    draw = mem.sample(50, torch.Generator().manual_seed(0))
    assert draw.shape == (3, 50, 2) and set(draw[0, :, 0].tolist()) <= set(map(float, seen[-5:]))


def test_negative_loss_is_zero_with_zero_gradient_beyond_the_margin():
    """Pairs whose cosine is below the margin contribute exactly 0 to the loss and its gradient;
    above it, the loss is cos - margin and pushes the prediction away."""
    g = torch.Generator().manual_seed(fresh_seed())
    d = 6
    others = torch.randn(1, 4, 3, d, generator=g)
    far = -others + 0.1 * torch.randn(1, 4, 3, d, generator=g)  # cosine near -1
    far.requires_grad_()
    loss, active = negative_loss(far, others, margin=0.2)
    loss.backward()
    assert loss.item() == 0.0 and active.item() == 0.0
    assert torch.all(far.grad == 0)
    near = (others + 0.05 * torch.randn(1, 4, 3, d, generator=g)).requires_grad_()
    loss, active = negative_loss(near, others, margin=0.2)
    cos = torch.nn.functional.cosine_similarity(near, others, dim=-1)
    expected = (cos - 0.2).mean(dim=2).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    step = near.detach() - 0.1 * near.grad
    assert torch.all(torch.nn.functional.cosine_similarity(step, others, dim=-1) < cos)


def test_negatives_are_other_dreams_or_near_but_not_adjacent_frames():
    """other_dreams: the next dream in the batch at the same step and column; near_frames (kept
    for dreams that move, refused by the config today): the same dream gap steps later, or
    earlier near the end -- never the adjacent frame."""
    from bioglom.rules.sleep import negatives

    seq = torch.arange(5 * 3 * 2 * 4 * 1, dtype=torch.float32).view(5, 3, 2, 4, 1)  # T+1=5
    torch.testing.assert_close(negatives(seq, 1, "other_dreams"), seq[1, 1:].roll(1, dims=2))
    torch.testing.assert_close(negatives(seq, 0, "near_frames", 2), seq[2, 1:])
    torch.testing.assert_close(negatives(seq, 3, "near_frames", 2), seq[1, 1:])
    for t in range(5):
        s = next(
            s for s in range(5) if torch.equal(negatives(seq, t, "near_frames", 2), seq[s, 1:])
        )
        assert abs(s - t) == 2


def test_near_frames_is_refused_because_dream_frames_are_near_copies():
    """Why the config refuses night.negatives = near_frames (docs/design.md §4.3): after 10
    day updates, dreams under the default night config (perturb 0.1, drift 0.05) have, at every
    gap that fits a 6-step dream, frames whose mean cosine to the frame gap steps away is above
    0.8 and 0.2 above the cosine to other dreams at the same column and step; at gap 2 at least
    95% of the pairs lie inside the default margin 0.2, so near_frames would push predictions
    away from near-copies of their own targets. The refusal names the field and says why."""
    from bioglom.data import part_whole_scenes
    from bioglom.rules import make_rule

    with pytest.raises(ConfigError, match="near-copies") as info:
        small_config(night__negatives="near_frames")
    assert info.value.field == "night.negatives"
    cfg = small_config(settle__steps=6, data__n_train=64)
    model = bioglom.build_model(cfg)
    model.train()
    rule = make_rule(model, cfg)
    seed = 1234
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(part_whole_scenes(64, 8, seed).images)
    for u in range(10):
        rule.update(x[16 * (u % 4) : 16 * (u % 4) + 16], g)
    model.eval()
    seq = dream(model, rule.last_state[-1], 6, cfg.night.perturb, cfg.night.drift, g)
    cos = torch.nn.functional.cosine_similarity
    other = torch.stack([cos(seq[t, 1:], seq[t, 1:].roll(1, dims=2), dim=-1) for t in range(7)])
    for gap in range(2, 7):
        near = torch.stack([cos(seq[t, 1:], seq[t + gap, 1:], dim=-1) for t in range(7 - gap)])
        msg = f"seed {seed}, gap {gap}: near {near.mean():.3f}, other dreams {other.mean():.3f}"
        assert near.mean() > 0.8 and near.mean() > other.mean() + 0.2, msg
        if gap == 2:
            assert (near > cfg.night.margin).float().mean() > 0.95, msg


def test_dreams_use_no_lateral_attention_and_stay_within_their_column(monkeypatch):
    """Night never calls lateral attention; a dream in one column depends only on that column's
    replayed top level (changing another column's changes nothing here)."""
    cfg = small_config(train__rule="codistill")
    model = bioglom.build_model(cfg)

    def forbidden(*a, **k):
        raise AssertionError("lateral attention called at night")

    monkeypatch.setattr(model.lateral_attention, "forward", forbidden)
    monkeypatch.setattr("bioglom.lateral.lateral_attention", forbidden)
    g = torch.Generator().manual_seed(fresh_seed())
    top = torch.randn(16, 3, 8, generator=g)
    a = dream(model, top, steps=3)
    top2 = top.clone()
    top2[5] = torch.randn(3, 8, generator=g)
    b = dream(model, top2, steps=3)
    assert a.shape == (4, 3, 16, 3, 8)
    changed = {n for n in range(16) if not torch.equal(a[:, :, n], b[:, :, n])}
    assert changed == {5}
    sleep = Sleep(model, cfg)
    sleep.memory.add(top)
    out = sleep.update(g)  # the whole night update, with lateral forbidden
    assert set(out) == {"night_loss", "night_active", "night_positive", "update_norm_night"}


def test_a_night_update_moves_only_the_bottom_up_nets(rng):
    """Negative learning in sleep trains the bottom-up nets and nothing else."""
    cfg = small_config(night__margin=-1.0)  # every pair inside the margin
    model = bioglom.build_model(cfg)
    sleep = Sleep(model, cfg)
    sleep.memory.add(model.settle(rand_images(4, gen=rng)).state[-1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = sleep.update(rng)
    assert float(out["update_norm_night"]) > 0
    for k, v in model.state_dict().items():
        moved = not torch.equal(v, before[k])
        assert moved == k.startswith("bottom_up."), k


# ---------------------------------------------------------------------------------------------
# through the trainer


def test_nights_never_attend_and_a_first_night_dreams_from_scratch(tmp_path, monkeypatch):
    """Through the whole trainer: no night update calls lateral attention -- also a night before
    any day, which dreams from random top-level embeddings -- and a night-only run changes
    only the bottom-up nets (no perception, no homeostatic drift)."""
    import bioglom.lateral as lateral_module
    import bioglom.train as train_module
    from bioglom.rules import sleep as sleep_module

    state = {"night": False, "calls": 0, "day_calls": 0}
    real_lateral = lateral_module.LateralAttention.forward

    def watched(self, *a, **k):
        state["calls" if state["night"] else "day_calls"] += 1
        return real_lateral(self, *a, **k)

    real_update = sleep_module.Sleep.update

    def night_update(self, *a, **k):
        state["night"] = True
        try:
            return real_update(self, *a, **k)
        finally:
            state["night"] = False

    monkeypatch.setattr(lateral_module.LateralAttention, "forward", watched)
    monkeypatch.setattr(sleep_module.Sleep, "update", night_update)
    cfg = small_config(schedule__phases="night 3", model__state_norm="homeostatic")
    result = train_module.train(cfg, tmp_path / "n.h5", progress=False)
    assert result.status == "finished" and state["calls"] == 0
    before = bioglom.build_model(cfg).state_dict()
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, before[k]) != k.startswith("bottom_up."), k
    cfg = small_config(schedule__phases="night 2, day 2, interleaved 2")
    assert train_module.train(cfg, tmp_path / "m.h5", progress=False).status == "finished"
    assert state["calls"] == 0 and state["day_calls"] > 0  # the watch sees the days' attention
