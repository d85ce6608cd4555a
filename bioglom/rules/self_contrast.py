"""Positives the column chooses itself: an unsupervised local contrast (issue 14, item 4a; §7).

§7: each location is "free to choose which embeddings at other locations it should resemble".
Co-distillation (:class:`~bioglom.rules.local.Codistill`) plus, at every level from
``self_contrast.from_level`` up, the contrast of :func:`bioglom.functional.chosen_contrast`:
after settling step ``t``

``loss_t = codistill_t + w sum_{l >= from_level} sum_x [c(bu_l(x)) + c(td_l(x))]``

where ``c`` pulls column ``x``'s prediction toward the consensus ``e*_l(t+1)`` of the
``positives`` neighbours that its eq. 3.1 attention (on the state ``e_l(t)`` at ``beta_l(t)``)
weights most, and pushes it from the ``negatives`` it weights least and from the same column
in the other images of the batch; ``td`` only below the top level. The choice is the column's
own (its attention), the targets are detached consensus vectors, and the gradient of column
``x``'s loss reaches only the nets that made column ``x``'s predictions: no gradient crosses
time steps, levels or columns (tests/test_locality.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import Config, ConfigError
from ..functional import chosen_contrast
from ..model import Glom, StepOutput
from .local import Codistill

__all__ = ["SelfContrast"]


class SelfContrast(Codistill):
    """Co-distillation plus the chosen-neighbour contrast (module docstring)."""

    name = "self_contrast"

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

    def __init__(self, model: Glom, config: Config):
        super().__init__(model, config)
        self.metric_names = (*self.metric_names, "loss_contrast")
        self._contrast: Tensor | None = None
        self._beta: Tensor | None = None

    def update(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        self._contrast = None
        metrics = super().update(images, generator)
        metrics["loss_contrast"] = self._contrast / self.config.settle.steps
        return metrics

    def step_losses(
        self,
        e: Tensor,
        precision: Tensor | None,
        frame: Tensor,
        t: int,
        steps: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, StepOutput, Tensor, Tensor | None]:
        self._beta = self.model.beta(t, steps)  # the attention of this step, for the ranking
        return super().step_losses(e, precision, frame, t, steps, generator)

    def step_loss(self, out, e, target, target_precision):
        base = super().step_loss(out, e, target, target_precision)
        s, K = self.config.self_contrast, self.model.K
        extra = target.new_zeros(())
        for level in range(s.from_level, K):
            idx, valid = self.model.neighbours(level)
            preds = [out.bottom_up[level]] + ([out.top_down[level]] if level < K - 1 else [])
            per_column = chosen_contrast(
                torch.stack(preds),  # one ranking for both nets' predictions
                target[level],
                e[level],
                idx,
                valid,
                self._beta[level],
                positives=s.positives,
                negatives=s.negatives,
                temperature=s.temperature,
                image_negatives=s.image_negatives,
            )
            extra = extra + per_column.sum()  # summed over columns, like every local loss
        done = extra.detach() / self.model.N
        self._contrast = done if self._contrast is None else self._contrast + done
        return base + s.weight * extra
