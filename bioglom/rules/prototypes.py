"""Collapse prevented by a balanced assignment to prototypes, per image (issue 14, item 4c).

Batch statistics stop collapse but encode location (docs/design.md §9). This rule prevents a
code common to all of an image's columns without them: co-distillation
(:class:`~bioglom.rules.local.Codistill`) plus, at every level from ``prototypes.from_level``
up, the cross-entropy of each column's bottom-up and top-down predictions against the balanced
(Sinkhorn) assignment of its image's consensus to ``prototypes.count`` fixed random unit vectors
(:func:`bioglom.functional.prototype_loss`, as SwAV/Leopart but balanced over the columns of
one image):

``loss_t = codistill_t + w sum_{l >= from_level} sum_x [CE(q_l(x), bu_l(x)) + CE(q_l(x), td_l(x))]``

The assignment ``q`` is computed from the detached consensus of the image's columns (a value,
like the lateral term's), and the prototypes are fixed, not learned (a learned dictionary
would be one weight shared by every column): the gradient of column ``x``'s loss reaches only
the nets that made its predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import Config, ConfigError
from ..functional import prototype_loss
from ..model import Glom
from .local import CodistillPlus

__all__ = ["Prototypes", "PROTOTYPE_SEED_OFFSET"]

#: the fixed prototypes are drawn from a generator seeded with ``run.seed`` plus this
PROTOTYPE_SEED_OFFSET = 4099


class Prototypes(CodistillPlus):
    """Co-distillation plus the per-image balanced prototype assignment (module docstring)."""

    name = "prototypes"
    term_name = "loss_prototypes"

    @classmethod
    def check_config(cls, config: Config) -> None:
        p, K = config.prototypes, config.model.levels
        if p.from_level >= K:
            raise ConfigError(
                "prototypes.from_level", p.from_level, f"a level below model.levels = {K}"
            )

    def __init__(self, model: Glom, config: Config):
        super().__init__(model, config)
        p = config.prototypes
        gen = torch.Generator().manual_seed(config.run.seed + PROTOTYPE_SEED_OFFSET)
        c = torch.randn(model.K, p.count, model.d, generator=gen)
        #: ``[K, P, d]`` fixed unit prototypes, one set per level
        self.prototypes = (c / c.norm(dim=-1, keepdim=True)).to(model.device)

    def term_levels(self) -> list[int]:
        return list(range(self.config.prototypes.from_level, self.model.K))

    def term_weight(self) -> float:
        return self.config.prototypes.weight

    def level_term(self, preds: Tensor, target: Tensor, state: Tensor, level: int) -> Tensor:
        p = self.config.prototypes
        return prototype_loss(
            preds,
            target,
            self.prototypes[level],
            temperature=p.temperature,
            epsilon=p.epsilon,
            iterations=p.iterations,
        )
