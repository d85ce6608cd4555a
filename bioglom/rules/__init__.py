"""Learning rules: pluggable parts of the trainer.

A rule owns its optimiser and makes one weight update per call of :meth:`LearningRule.update`;
the trainer only feeds batches, records what the rule returns and writes the run. Adding a
rule is adding a class to :data:`RULES`: its ``name`` becomes a value ``train.rule`` accepts, and
its ``check_config`` runs when a config that selects it is validated.
"""

from __future__ import annotations

from ..config import Config
from ..model import Glom
from .base import LearningRule, corrupt, make_optimizer
from .end_to_end import EndToEnd
from .local import Codistill, LocalRule, Temporal
from .prototypes import Prototypes
from .self_contrast import SelfContrast
from .supervised import Supervised, SupervisedEndToEnd

#: rule name (``train.rule``) -> class
RULES: dict[str, type[LearningRule]] = {
    r.name: r
    for r in (
        EndToEnd,
        Codistill,
        Temporal,
        Supervised,
        SupervisedEndToEnd,
        SelfContrast,
        Prototypes,
    )
}

__all__ = [
    "RULES",
    "LearningRule",
    "LocalRule",
    "EndToEnd",
    "Codistill",
    "Temporal",
    "Supervised",
    "SupervisedEndToEnd",
    "SelfContrast",
    "Prototypes",
    "corrupt",
    "make_optimizer",
    "make_rule",
]


def make_rule(model: Glom, config: Config) -> LearningRule:
    """The rule named by ``config.train.rule``, bound to ``model``."""
    return RULES[config.train.rule](model, config)
