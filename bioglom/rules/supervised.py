"""The supervised local rule: an upper bound on the islands the architecture can hold (issue 14).

Co-distillation (:class:`~bioglom.rules.local.Codistill`) plus, at the supervised levels, a
contrast of each column's own predictions against the ground-truth groups of its own image
(:func:`bioglom.functional.group_contrast`): at ``supervised.part_level`` the groups are the
parts, from ``supervised.object_level`` up the objects. After settling step ``t``

``loss_t = codistill_t + w sum_{l sup.} sum_x [c(bu_l(x), e*_l; g_l) + c(td_l(x), e*_l; g_l)]``

where ``c`` is the group contrast of one column's prediction against the prototypes of its
image's groups in the detached consensus ``e*_l(t+1)`` (and the same column in other images),
``td`` only below the top level. As for every local rule: settling runs on detached states, each
step's loss is back-propagated at once, and the gradient of column ``x``'s loss reaches only the
nets that made column ``x``'s predictions -- no gradient crosses time steps, levels or columns
(tests/test_locality.py). The masks are the teacher a brain would not have: this rule measures
what the model can hold, not what it can discover.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..config import Config, ConfigError
from ..functional import group_contrast
from ..model import Glom
from .end_to_end import EndToEnd
from .local import CodistillPlus

__all__ = ["Supervised", "SupervisedEndToEnd", "supervised_levels"]


def _checked_truth(
    levels: dict[int, str], truth: dict[str, Tensor] | None, device: torch.device
) -> dict[str, Tensor]:
    """The column labels the supervised levels need, on ``device``; a ValueError naming what is
    missing otherwise."""
    needed = set(levels.values())
    if truth is None or not needed <= set(truth):
        have = sorted(truth or ())
        raise ValueError(
            f"the supervised rules need the batch's column labels {sorted(needed)}, got "
            f"{have}: train on data with part and object masks"
        )
    return {k: truth[k].to(device) for k in needed}


def supervised_levels(config: Config) -> dict[int, str]:
    """Level -> ``"part"`` or ``"obj"``: which masks group each supervised level."""
    s, K = config.supervised, config.model.levels
    levels = {}
    if s.object_level >= 0:
        levels.update({k: "obj" for k in range(s.object_level, K)})
    if s.part_level >= 0:
        levels[s.part_level] = "part"
    return levels


def _contrast(config: Config, pred: Tensor, target: Tensor, groups: Tensor) -> Tensor:
    """:func:`~bioglom.functional.group_contrast` with the ``[supervised]`` section's settings."""
    s = config.supervised
    return group_contrast(
        pred,
        target,
        groups,
        loss=s.loss,
        temperature=s.temperature,
        margin=s.margin,
        image_negatives=s.image_negatives,
        balance=s.balance_negatives,
        shared_background=s.shared_background,
    )


def _check_levels(config: Config) -> None:
    """The supervised levels exist and parts lie below objects; ConfigError otherwise."""
    s, K = config.supervised, config.model.levels
    for field in ("part_level", "object_level"):
        value = getattr(s, field)
        if value >= K:
            raise ConfigError(
                f"supervised.{field}", value, f"a level below model.levels = {K}, or -1"
            )
    if 0 <= s.object_level <= s.part_level:
        raise ConfigError(
            "supervised.part_level",
            s.part_level,
            f"a level below supervised.object_level = {s.object_level} (parts below "
            "objects), or -1",
        )
    if s.part_level < 0 and s.object_level < 0:
        raise ConfigError(
            "supervised.object_level", s.object_level, "a level to supervise (both are -1)"
        )


class _TaughtByMasks:
    """What both supervised rules add to their base rule: the levels they supervise and the
    batch's column labels, which :meth:`update` takes and holds for the duration of one update."""

    #: the trainer passes the batch's column labels: ``truth = {"obj": [B, N], "part": [B, N]}``
    needs_truth: ClassVar[bool] = True
    trains_on_video: ClassVar[bool] = False  # the masks are those of one still image

    @classmethod
    def check_config(cls, config: Config) -> None:
        """The supervised levels exist and parts lie below objects; ConfigError otherwise."""
        _check_levels(config)

    def __init__(self, model: Glom, config: Config):
        super().__init__(model, config)
        self.levels = supervised_levels(config)
        self._groups: dict[str, Tensor] | None = None

    def update(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        truth: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """One update on a batch and its column labels ``truth[name]`` ``[B, N]``."""
        self._groups = _checked_truth(self.levels, truth, images.device)
        try:
            return super().update(images, generator)
        finally:
            self._groups = None


class Supervised(_TaughtByMasks, CodistillPlus):
    """Co-distillation plus the supervised group contrast (module docstring)."""

    name = "supervised"
    term_name = "loss_contrast"

    def term_levels(self) -> list[int]:
        return list(self.levels)

    def term_weight(self) -> float:
        return self.config.supervised.weight

    def level_term(self, preds: Tensor, target: Tensor, state: Tensor, level: int) -> Tensor:
        groups = self._groups[self.levels[level]]
        return sum(_contrast(self.config, pred, target, groups) for pred in preds)


class SupervisedEndToEnd(_TaughtByMasks, EndToEnd):
    """The end-to-end baseline plus the same supervised group contrast, through time (issue 14,
    item 3b; as Agglomerator trains with labels).

    ``L = L_end_to_end + w sum_{l sup.} mean_x c(e_l(x, T), e*_l(T); g_l)``

    where ``L_end_to_end`` is :class:`~bioglom.rules.end_to_end.EndToEnd`'s loss and ``c`` the
    group contrast of :func:`~bioglom.functional.group_contrast` applied to the final state
    itself (prototypes from its detached copy ``e*``), averaged over columns. The gradient runs
    back through every settling step, level and column: this is not a local rule, it is the
    strongest upper bound of what the architecture can hold, next to
    :class:`Supervised`'s local one.
    """

    name = "supervised_end_to_end"
    metric_names = (*EndToEnd.metric_names, "loss_contrast")

    def final_loss(self, state: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        s = self.config.supervised
        contrast = torch.zeros((), device=state.device)
        for level, name in self.levels.items():
            e = state[level]
            contrast = contrast + _contrast(self.config, e, e.detach(), self._groups[name]).mean()
        return s.weight * contrast, {"loss_contrast": contrast.detach()}
