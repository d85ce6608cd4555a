"""Run configuration: typed sections, TOML in and out, validation with one-line errors.

A configuration is a :class:`Config` made of one dataclass per TOML section (``[model]``,
``[frontend]``, ``[topdown]``, ``[attention]``, ``[consensus]``, ``[settle]``, ``[data]``,
``[train]``, ``[end_to_end]``, ``[run]``). Every field carries its own check (type, range,
allowed values); cross-field rules live in :meth:`Config.validate`. Any problem raises
:class:`ConfigError`, whose message is one line naming the field, the bad value and what is
allowed, e.g. ``model.levels = 1: expected an integer >= 2``.

Per-level fields (``attention.radius``, ``attention.beta_start``, ...) take either one value for
every level or a list of ``model.levels`` values, level 0 first; :func:`per_level` expands them.

The package, each module importing only those above it:

- ``checks``: :class:`ConfigError`, ``CONTRIBUTIONS`` and the field checks (``Int``, ``Real``,
  ``Choice``, ``PerLevel``, ``Weights``, ...), and ``_f``, a field with its check and doc;
- ``sections``: the section dataclasses (``ModelConfig``, ``DataConfig``, ``TrainConfig``, ...)
  with their defaults and docs, and ``_SECTIONS``;
- ``validation``: :class:`Config`, its cross-field :meth:`Config.validate` and TOML dump, and
  :func:`per_level`;
- ``io``: reading (:func:`load_config`, :func:`config_from_toml`, :func:`config_from_dict`,
  ``--set`` overrides, :func:`saved_config` with ``LEGACY_VALUES``) and the documented dumps
  (:func:`documented_toml`, :func:`documented_markdown`, :func:`field_docs`).

Every name is re-exported here: import from ``bioglom.config``.
"""

from __future__ import annotations

from .checks import CONTRIBUTIONS as CONTRIBUTIONS
from .checks import Bool as Bool
from .checks import Choice as Choice
from .checks import ConfigError as ConfigError
from .checks import Device as Device
from .checks import Int as Int
from .checks import PerLevel as PerLevel
from .checks import Real as Real
from .checks import RuleChoice as RuleChoice
from .checks import Text as Text
from .checks import Weights as Weights
from .checks import _Check as _Check
from .checks import _f as _f
from .checks import _is_int as _is_int
from .checks import _is_real as _is_real
from .checks import _show as _show
from .checks import _unknown_hint as _unknown_hint
from .io import LEGACY_VALUES as LEGACY_VALUES
from .io import _default_value as _default_value
from .io import config_from_dict as config_from_dict
from .io import config_from_toml as config_from_toml
from .io import config_with_overrides as config_with_overrides
from .io import documented_markdown as documented_markdown
from .io import documented_toml as documented_toml
from .io import field_docs as field_docs
from .io import load_config as load_config
from .io import parse_override as parse_override
from .io import saved_config as saved_config
from .sections import _SECTIONS as _SECTIONS
from .sections import _W_END as _W_END
from .sections import _W_START as _W_START
from .sections import AttentionConfig as AttentionConfig
from .sections import ConsensusConfig as ConsensusConfig
from .sections import DataConfig as DataConfig
from .sections import EndToEndConfig as EndToEndConfig
from .sections import FrontendConfig as FrontendConfig
from .sections import LocalConfig as LocalConfig
from .sections import ModelConfig as ModelConfig
from .sections import NightConfig as NightConfig
from .sections import PrototypesConfig as PrototypesConfig
from .sections import RunConfig as RunConfig
from .sections import ScheduleConfig as ScheduleConfig
from .sections import SelfContrastConfig as SelfContrastConfig
from .sections import SettleConfig as SettleConfig
from .sections import SupervisedConfig as SupervisedConfig
from .sections import TemporalConfig as TemporalConfig
from .sections import TopDownConfig as TopDownConfig
from .sections import TrainConfig as TrainConfig
from .validation import Config as Config
from .validation import _toml_value as _toml_value
from .validation import per_level as per_level

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "config_from_toml",
    "config_from_dict",
    "per_level",
    "CONTRIBUTIONS",
]
