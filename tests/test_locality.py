"""Locality of learning: which columns' updates depend on one column's weights (design.md §4, §5).

Two models with identical weights; in the second, every column-wise parameter of ONE column
``j`` is perturbed (its slice ``[:, j]`` of the front end, the bottom-up and top-down nets and
the decoder). Both make one update from the same images and the same random stream, with SGD,
and the tests compare the weight *changes* ``p_after - p_before`` of every other column
bit for bit:

- day, lateral contribution off: only column ``j``'s update differs;
- day, lateral contribution on: the columns whose update differs are exactly within reach of
  the lateral term -- Chebyshev grid distance at most ``max_radius * settle.steps`` from ``j``
  -- and the bound is attained (columns at distance 1 and at distance exactly the bound move);
- night: dreams use no attention between columns, so only column ``j``'s update differs.

The configs name a per-column state normalisation explicitly: ``model.state_norm = "batch"``
(or homeostatic statistics shared by all columns) standardises each unit over all columns and
would pass information between them.
"""

from __future__ import annotations

import pytest
import torch
from conftest import small_config

import bioglom
from bioglom.rules import make_rule
from bioglom.rules.sleep import Sleep

SEED = 1234
#: an 8x8 grid of columns (16x16 images, 2x2 patches), so that columns lie beyond the bound
GRID = (8, 8)
N = GRID[0] * GRID[1]
J = 2 * GRID[1] + 3  # column j at grid row 2, grid column 3: columns up to 5 away exist
CORNER = 0  # grid row 0, grid column 0: columns up to 7 away exist
BATCH = 3

NORMS = [
    {"model__state_norm": "homeostatic", "model__homeostatic_stats": "columns"},
    {"model__state_norm": "layer"},
]


def chebyshev(n: int, m: int) -> int:
    """Grid distance between columns n and m (row-major over the grid)."""
    return max(abs(n // GRID[1] - m // GRID[1]), abs(n % GRID[1] - m % GRID[1]))


def locality_config(**kw):
    base = {
        "data__image_size": 16,
        "frontend__patch_size": 2,
        "settle__steps": 2,
        "attention__radius": 1,
        "train__optimizer": "sgd",
        "run__seed": SEED,
    }
    base.update(kw)
    cfg = small_config(**base)
    assert cfg.grid == GRID
    return cfg


def twin_models(cfg, j=J):
    """Two models with identical weights, except column j's slice of every parameter in the
    second (all parameters here are column-wise: ``[K', N, ...]``)."""
    m1, m2 = bioglom.build_model(cfg), bioglom.build_model(cfg)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for (name, p), q in zip(m1.named_parameters(), m2.parameters(), strict=True):
            assert p.dim() == 4 and p.shape[1] == N, f"{name} is not column-wise {list(p.shape)}"
            assert torch.equal(p, q), name
            q[:, j] += 0.1 * torch.randn(q[:, j].shape, generator=gen)
    m1.train(), m2.train()
    return m1, m2


def weight_changes(model, update) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    update()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def columns_that_moved_differently(d1, d2, names=None) -> set[int]:
    """Columns n for which some parameter's change differs between the twins (bit for bit)."""
    moved = set()
    for name in names if names is not None else d1:
        a, b = d1[name], d2[name]
        moved |= {n for n in range(N) if not torch.equal(a[:, n], b[:, n])}
    return moved


def day_update_changes(cfg, j=J):
    m1, m2 = twin_models(cfg, j)
    images = torch.rand(BATCH, 3, 16, 16, generator=torch.Generator().manual_seed(SEED + 2))
    changes = []
    for m in (m1, m2):
        rule = make_rule(m, cfg)
        gen = torch.Generator().manual_seed(SEED + 3)  # the same random stream for both
        changes.append(weight_changes(m, lambda r=rule, g=gen: r.update(images, g)))
    return changes


@pytest.mark.parametrize("norm", NORMS, ids=["homeostatic_columns", "layer"])
@pytest.mark.parametrize(
    "lateral_off",
    [
        {"model__sharing": "isolated"},
        {"consensus__weights_start__lateral": 0.0, "consensus__weights_end__lateral": 0.0},
    ],
    ids=["isolated", "lateral_weight_0"],
)
@pytest.mark.parametrize("rule", ["codistill", "temporal"])
def test_without_the_lateral_term_only_the_perturbed_column_learns_differently(
    rule, lateral_off, norm
):
    """Lateral contribution off (isolated columns, or unshared with lateral weight 0): after
    one update on the same images, the weight changes of every column but j are bit-for-bit
    those of the unperturbed twin, and column j's differ. Nothing else carries information
    between columns: no gradient, no optimiser state, no normalisation statistic."""
    cfg = locality_config(train__rule=rule, **lateral_off, **norm)
    d1, d2 = day_update_changes(cfg)
    moved = columns_that_moved_differently(d1, d2)
    assert moved == {J}, f"seed {SEED}: columns {sorted(moved)} moved differently, expected [{J}]"


@pytest.mark.parametrize("norm", NORMS, ids=["homeostatic_columns", "layer"])
@pytest.mark.parametrize(
    "radius, bound, j",
    [(1, 2, J), ({"first": 1, "step": 1}, 6, CORNER)],  # radii 1, 2, 3 at levels 0..2
    ids=["radius1", "radius_grows"],
)
@pytest.mark.parametrize("rule", ["codistill", "temporal"])
def test_with_the_lateral_term_only_columns_within_its_reach_learn_differently(
    rule, radius, bound, j, norm
):
    """Lateral contribution on (unshared): a column's teacher after T steps depends on columns
    up to max_radius * T away and no farther, so exactly those columns' updates may differ.
    Every column that moved differently lies within Chebyshev distance max_radius * steps of j;
    every column beyond did not; column j, a column at distance 1 and a column at distance
    exactly the bound did (the bound is attained, not vacuous)."""
    cfg = locality_config(train__rule=rule, attention__radius=radius, **norm)
    assert bound == max(bioglom.config.per_level(radius, cfg.model.levels)) * cfg.settle.steps
    d1, d2 = day_update_changes(cfg, j)
    moved = columns_that_moved_differently(d1, d2)
    dist = {n: chebyshev(n, j) for n in range(N)}
    beyond = sorted(n for n in moved if dist[n] > bound)
    msg = f"seed {SEED}, column {j}, bound {bound}"
    assert not beyond, f"{msg}: columns beyond the bound moved differently: {beyond}"
    assert j in moved, msg
    assert any(dist[n] == 1 for n in moved), f"{msg}: no column at distance 1 moved"
    assert any(dist[n] == bound for n in moved), f"{msg}: no column at the bound moved"
    assert any(dist[n] > bound for n in range(N)), f"{msg}: the grid has no column beyond it"


@pytest.mark.parametrize("positive", [False, True])
@pytest.mark.parametrize("norm", NORMS, ids=["homeostatic_columns", "layer"])
def test_a_night_update_of_a_column_depends_only_on_that_columns_weights(norm, positive):
    """Night (§12.2: no attention between columns): with the same replayed top-level states and
    the same random stream, perturbing column j's weights (top-down nets that dream, bottom-up
    nets that learn) changes column j's night update and no other column's, with the lateral
    term on by day. Only the bottom-up nets move at night."""
    cfg = locality_config(train__rule="codistill", night__positive=positive, **norm)
    m1, m2 = twin_models(cfg)
    top = torch.randn(N, 8, cfg.model.dim, generator=torch.Generator().manual_seed(SEED + 4))
    changes = []
    for m in (m1, m2):
        sleep = Sleep(m, cfg)
        sleep.memory.add(top)
        gen = torch.Generator().manual_seed(SEED + 5)
        changes.append(weight_changes(m, lambda s=sleep, g=gen: s.update(g)))
    d1, d2 = changes
    still = [n for n, d in d1.items() if not n.startswith("bottom_up.")]
    assert all(not d1[n].any() and not d2[n].any() for n in still), f"seed {SEED}"
    moved = columns_that_moved_differently(d1, d2)
    assert moved == {J}, f"seed {SEED}: columns {sorted(moved)} moved differently, expected [{J}]"


def test_the_cnn_front_end_couples_columns_so_only_shared_columns_may_use_it():
    """The CNN front end's convolutions are one weight read by every column: built with a
    per-column read-out (what unshared columns would get), perturbing column j's read-out alone
    changes the gradient of the convolutions toward a fixed teacher, through which every other
    column learns. So the config refuses frontend.kind = cnn unless model.sharing = shared, and
    says why and what to use instead."""
    from bioglom.frontend import CnnFrontend

    gen = torch.Generator().manual_seed(SEED)
    images = torch.rand(BATCH, 3, 16, 16, generator=gen)
    teacher = torch.randn(1, N, BATCH, 8, generator=gen)

    def conv_grads(perturb: bool) -> list[torch.Tensor]:
        torch.manual_seed(SEED)
        fe = CnnFrontend(3, 2, N, width=4, layers=1, d_out=8)
        if perturb:
            with torch.no_grad():
                w = fe.readout.weight
                w[:, J] += torch.randn(w[:, J].shape, generator=torch.Generator().manual_seed(7))
        (0.5 * (fe(images) - teacher) ** 2).mean(dim=(2, 3)).sum().backward()
        return [p.grad for p in fe.cnn.parameters()]

    a, b = conv_grads(False), conv_grads(True)
    assert any(not torch.equal(x, y) for x, y in zip(a, b, strict=True)), f"seed {SEED}"
    for sharing in ("unshared", "isolated"):
        with pytest.raises(bioglom.ConfigError, match="model.sharing = 'shared'") as info:
            locality_config(model__sharing=sharing, frontend__kind="cnn")
        assert info.value.field == "frontend.kind"
        assert "common weight" in str(info.value)
    assert locality_config(model__sharing="shared", frontend__kind="cnn").frontend.kind == "cnn"
