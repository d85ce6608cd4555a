"""Benchmark section 6: what the mechanisms added for islands cost (issue 18, item 4).

Each arm is the reference configuration (unshared columns; see :mod:`bioglom.bench`) with one
mechanism switched on, and its learning step is timed beside plain co-distillation's in the
same repeats (:func:`bioglom.bench.interleaved_ms`): an update of ``settle.steps`` settling
steps with its local update, divided by the steps. A mechanism's *share* of its arm's step is
``1 - t_codistill / t_arm``: the part of the step it adds.

* ``self_contrast`` (§7): positives and negatives chosen by the column's own attention among
  its neighbours (same-image negatives), with and without the same column in the other images
  of the batch as further negatives (``self_contrast.image_negatives``,
  :func:`bioglom.functional.chosen_contrast`);
* ``prototypes``: the per-image balanced (Sinkhorn) assignment to fixed prototypes
  (:func:`bioglom.functional.prototype_loss`);
* ``supervised``: the group contrast against the masks, with cross-image negatives
  (:func:`bioglom.functional.group_contrast`; random 4x4 blocks of columns as the groups);
* ``attract_repel``: the attraction-repulsion lateral term (``attention.lateral``,
  :func:`bioglom.functional.attract_repel_attention`) under co-distillation.

:func:`op_counts` counts the tensor operations one update issues (``TorchDispatchMode``); the
tests check that the count does not depend on the number of columns, i.e. that no mechanism
loops over columns in Python.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from . import build_model
from .config import Config
from .rules import make_rule

__all__ = ["ARMS", "mechanism_arms", "block_truth", "update_fn", "op_counts"]

#: arm -> config overrides on top of the reference (unshared columns)
ARMS: dict[str, dict] = {
    "codistill": {},
    "self_contrast, same-image negatives": {
        "train.rule": "self_contrast",
        "self_contrast.image_negatives": False,
    },
    "self_contrast, + cross-image negatives": {
        "train.rule": "self_contrast",
        "self_contrast.image_negatives": True,
    },
    "prototypes (Sinkhorn)": {"train.rule": "prototypes"},
    "supervised group contrast": {"train.rule": "supervised"},
    "attract_repel lateral": {"attention.lateral": "attract_repel"},
}


def mechanism_arms(base: Callable[..., Config]) -> dict[str, Config]:
    """Each arm's config: ``base(**overrides)`` (e.g. :func:`bioglom.bench.config_for` bound
    to a number of columns)."""
    return {name: base(**{"model.sharing": "unshared", **o}) for name, o in ARMS.items()}


def block_truth(grid: tuple[int, int], batch: int, device, block: int = 4) -> dict[str, Tensor]:
    """Column labels for the supervised rule: ``block x block`` squares of columns as objects
    and as parts, ``[B, N]``."""
    rows = torch.arange(grid[0], device=device) // block
    cols = torch.arange(grid[1], device=device) // block
    labels = (rows[:, None] * (grid[1] // block + 1) + cols[None, :]).reshape(-1)
    labels = labels.expand(batch, -1).contiguous()
    return {"obj": labels, "part": labels}


def update_fn(config: Config, batch: int, device) -> Callable[[], object]:
    """One learning update of a fresh model of ``config`` on fixed random images, as a function
    to time (the model in training mode, as in training)."""
    model = build_model(config, device=device)
    side = config.data.image_size
    images = torch.rand(batch, 3, side, side, device=device)
    rule = make_rule(model, config)
    generator = torch.Generator(device=device).manual_seed(0)
    kwargs = {}
    if config.train.rule == "supervised":
        kwargs["truth"] = block_truth(model.grid, batch, device)

    def run():
        model.train()
        return rule.update(images, generator, **kwargs)

    return run


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def op_counts(config: Config, batch: int = 2) -> int:
    """The number of tensor operations (ATen calls, forward and backward) of one learning
    update of ``config`` after a first one (which creates the optimiser's state)."""
    fn = update_fn(config, batch, torch.device("cpu"))
    fn()
    with _Count() as count:
        fn()
    return count.ops
