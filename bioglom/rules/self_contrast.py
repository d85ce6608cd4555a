"""Positives the column chooses itself: an unsupervised local contrast (issue 14, item 4a; §7).

§7: each location is "free to choose which embeddings at other locations it should resemble".
Co-distillation (:class:`~bioglom.rules.local.Codistill`) plus, at every level from
``self_contrast.from_level`` up, the contrast of :func:`bioglom.functional.chosen_contrast`:
after settling step ``t``

``loss_t = codistill_t + w sum_{l >= from_level} sum_x [c(bu_l(x)) + c(td_l(x))]``

where ``c`` pulls column ``x``'s prediction toward the consensus ``e*_l(t+1)`` of the
``positives`` neighbours that its eq. 3.1 attention (on the state ``e_l(t)`` at ``beta_l(t)``)
weights most, and pushes it from the ``negatives`` it weights least and from the same column
in the other images of the batch; ``td`` only below the top level.

``self_contrast.rank_by = "common_fate"`` (issue 14, item 4b; §11, the Gestalt grouping by
common fate) ranks the neighbours instead by how alike their embeddings change over the step:
``cos(e*_l(t+1, x) - e_l(t, x), e*_l(t+1, y) - e_l(t, y))``. On video (``data.source =
"moving"``, one frame per step) the columns of an object that moves as a whole change together;
a column whose embedding does not change has only zero cosines, ties that the ranking breaks
by position in its window.

The choice is the column's own (its attention or the changes it sees), the targets are
detached consensus vectors, and the gradient of column ``x``'s loss reaches only the nets that
made column ``x``'s predictions: no gradient crosses time steps, levels or columns
(tests/test_locality.py).
"""

from __future__ import annotations

from torch import Tensor

from ..config import Config, ConfigError
from ..functional import chosen_contrast
from .local import CodistillPlus

__all__ = ["SelfContrast"]


class SelfContrast(CodistillPlus):
    """Co-distillation plus the chosen-neighbour contrast (module docstring)."""

    name = "self_contrast"
    term_name = "loss_contrast"

    @classmethod
    def check_config(cls, config: Config) -> None:
        s, K = config.self_contrast, config.model.levels
        if s.from_level >= K:
            raise ConfigError(
                "self_contrast.from_level", s.from_level, f"a level below model.levels = {K}"
            )
        if config.attention.neighbourhood == "gaussian" and config.attention.resample:
            raise ConfigError(
                "attention.resample",
                True,
                "refused with train.rule = 'self_contrast': the contrast ranks the neighbours "
                "of a fixed neighbourhood; use attention.resample = false or window attention",
            )

    def term_levels(self) -> list[int]:
        return list(range(self.config.self_contrast.from_level, self.model.K))

    def term_weight(self) -> float:
        return self.config.self_contrast.weight

    def level_term(self, preds: Tensor, target: Tensor, state: Tensor, level: int) -> Tensor:
        s = self.config.self_contrast
        idx, valid = self.model.neighbours(level)
        return chosen_contrast(
            preds,  # one ranking for both nets' predictions
            target,
            state,
            idx,
            valid,
            self._beta[level],
            positives=s.positives,
            negatives=s.negatives,
            temperature=s.temperature,
            image_negatives=s.image_negatives,
            rank=_unit(target - state) if s.rank_by == "common_fate" else None,
        )


def _unit(v: Tensor) -> Tensor:
    """``v / |v|`` along the last axis (0 where ``v`` is 0)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
