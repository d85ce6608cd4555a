"""The whole config: :class:`Config` (all sections), its cross-field :meth:`Config.validate`
and its TOML dump; :func:`per_level` expands a per-level field."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .checks import ConfigError, PerLevel
from .sections import (
    _SECTIONS,
    AttentionConfig,
    ConsensusConfig,
    DataConfig,
    EndToEndConfig,
    FrontendConfig,
    LocalConfig,
    ModelConfig,
    NightConfig,
    PrototypesConfig,
    RunConfig,
    ScheduleConfig,
    SelfContrastConfig,
    SettleConfig,
    SupervisedConfig,
    TemporalConfig,
    TopDownConfig,
    TrainConfig,
)


@dataclass
class Config:
    """A whole, validated run configuration. Build with :func:`load_config`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    topdown: TopDownConfig = field(default_factory=TopDownConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    settle: SettleConfig = field(default_factory=SettleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    end_to_end: EndToEndConfig = field(default_factory=EndToEndConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    self_contrast: SelfContrastConfig = field(default_factory=SelfContrastConfig)
    prototypes: PrototypesConfig = field(default_factory=PrototypesConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    night: NightConfig = field(default_factory=NightConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # -- derived ---------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """``(H_g, W_g)`` for generated scenes: image side / patch side."""
        g = self.data.image_size // self.frontend.patch_size
        return (g, g)

    # -- conversion ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (section -> field -> value)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_toml(self) -> str:
        """TOML text that :func:`config_from_toml` reads back to an equal config."""
        lines: list[str] = []
        for name, section in self.to_dict().items():
            lines.append(f"[{name}]")
            for key, value in section.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)

    def validate(self, check_files: bool = True) -> Config:
        """Check every field and the cross-field rules; returns self or raises ConfigError.

        ``check_files=False`` leaves out the checks that ``data.path`` exists (for the config
        of a saved run or model, whose data file may have moved since)."""
        for sname, section in self._sections():
            for f in dataclasses.fields(section):
                check = f.metadata["check"]
                setattr(section, f.name, check(getattr(section, f.name), f"{sname}.{f.name}"))
        K = self.model.levels
        for f in dataclasses.fields(AttentionConfig):
            check = f.metadata["check"]
            if not isinstance(check, PerLevel):
                continue
            value = getattr(self.attention, f.name)
            if isinstance(value, list) and len(value) != K:
                raise ConfigError(
                    f"attention.{f.name}",
                    value,
                    f"expected one value or a list of model.levels = {K} values",
                )
            for v in per_level(value, K):
                if not check.item.ok(v):
                    raise ConfigError(
                        f"attention.{f.name}",
                        value,
                        f"at some level gives {v!r}: {check.item.allowed}",
                    )
        for name in ("weights_start", "weights_end"):
            w = getattr(self.consensus, name)
            lateral = 0.0 if self.model.sharing == "isolated" else w["lateral"]
            if w["bottom_up"] + w["previous"] + lateral <= 0:
                raise ConfigError(
                    f"consensus.{name}",
                    w,
                    "the top level has no top-down contribution: bottom_up, previous and "
                    "lateral must not all be 0",
                )
        m = self.model
        if self.frontend.retina == "foveated" and self.frontend.kind != "patch":
            raise ConfigError(
                "frontend.retina",
                "foveated",
                f"needs frontend.kind = 'patch', got {self.frontend.kind!r}",
            )
        if m.sharing != "shared" and self.frontend.kind == "cnn":
            raise ConfigError(
                "frontend.kind",
                "cnn",
                f"refused with model.sharing = {m.sharing!r}: the CNN's convolutions are shared "
                "by every column (and see the neighbours' pixels), so unshared columns would "
                "learn through a common weight; use model.sharing = 'shared' or "
                "frontend.kind = 'patch'",
            )
        if m.sharing == "isolated" and (
            m.state_norm in ("batch", "image")
            or (m.state_norm == "homeostatic" and m.homeostatic_stats == "shared")
        ):
            raise ConfigError(
                "model.state_norm",
                m.state_norm,
                "isolated columns need a per-column normalisation (none, layer, or homeostatic "
                "with per-column statistics): batch statistics would pass information between "
                "columns",
            )
        from ..rules import RULES  # each rule checks what it needs of the rest of the config

        RULES[self.train.rule].check_config(self)
        if self.model.state_norm == "layer" and self.model.dim < 2:
            raise ConfigError(
                "model.dim", self.model.dim, "expected >= 2 with state_norm = 'layer'"
            )
        d = self.data
        if d.min_objects > d.max_objects:
            raise ConfigError(
                "data.min_objects",
                d.min_objects,
                f"expected at most data.max_objects = {d.max_objects}",
            )
        if d.source == "file":
            if not d.path:
                raise ConfigError("data.path", d.path, "expected a file when data.source = 'file'")
            if check_files and not os.path.isfile(d.path):
                raise ConfigError("data.path", d.path, "no such file (expected a .npz or .h5 file)")
            if not d.path.endswith((".npz", ".h5", ".hdf5")):
                raise ConfigError("data.path", d.path, "expected a .npz, .h5 or .hdf5 file")
        elif d.source == "mnist" and d.path and check_files and not os.path.isdir(d.path):
            raise ConfigError(
                "data.path", d.path, "no such folder (expected the folder of MNIST IDX files)"
            )
        elif d.source in ("scenes", "moving") and d.image_size % self.frontend.patch_size:
            raise ConfigError(
                "data.image_size",
                d.image_size,
                f"expected a multiple of frontend.patch_size = {self.frontend.patch_size}",
            )
        elif d.source == "tetrominoes" and 35 % self.frontend.patch_size:
            raise ConfigError(
                "frontend.patch_size",
                self.frontend.patch_size,
                "expected a divisor of 35 with data.source = 'tetrominoes' (35x35 images): 5 "
                "(7x7 columns) or 7 (5x5 columns)",
            )
        if not -K <= self.run.linear_probe_level < K:
            raise ConfigError(
                "run.linear_probe_level",
                self.run.linear_probe_level,
                f"expected a level in [-{K}, {K - 1}] (model.levels = {K})",
            )
        if self.night.negatives == "near_frames":
            raise ConfigError(
                "night.negatives",
                "near_frames",
                "refused: a dream is a static replayed top level plus small noise (night.drift), "
                "so its frames near in time are near-copies of the target (measured cosine "
                "0.95-0.98 two steps apart, 0.2-0.6 to other dreams) and pushing from them is "
                "anti-learning; §12.2's near frames need dreams that move (replayed video or "
                "learned top-level dynamics; docs/design.md §4.3), which bioglom does not have: "
                "use 'other_dreams'",
            )
        if self.schedule.phases.strip():
            from ..schedule import parse_schedule  # raises ConfigError naming the field

            parse_schedule(self.schedule.phases)
        att = self.attention
        if att.lateral == "attract_repel" and att.repel_below > att.attract_above:
            raise ConfigError(
                "attention.repel_below",
                att.repel_below,
                f"expected at most attention.attract_above = {att.attract_above} (a neighbour "
                "cannot both attract and repel)",
            )
        if not self.attention.include_self and self.attention.neighbourhood == "window":
            radii = per_level(self.attention.radius, K)
            if min(radii) < 1:
                raise ConfigError(
                    "attention.radius",
                    self.attention.radius,
                    "expected radius >= 1 at every level when attention.include_self = false "
                    "(a column would attend to nobody)",
                )
        if d.source == "moving" and not RULES[self.train.rule].trains_on_video:
            video_rules = ", ".join(n for n, r in RULES.items() if r.trains_on_video)
            raise ConfigError(
                "data.source",
                d.source,
                f"refused with train.rule = {self.train.rule!r}: videos train the local rules "
                f"that learn step by step from each frame ({video_rules}); the supervised "
                "rules need masks of one still image and the end-to-end rules corrupt one",
            )
        if d.source in ("scenes", "tetrominoes", "moving"):
            side = 35 if d.source == "tetrominoes" else d.image_size
            n_cols = (side // self.frontend.patch_size) ** 2
            if self.attention.neighbourhood == "gaussian":
                samples = per_level(self.attention.samples, K)
                if max(samples) > n_cols - 1:
                    raise ConfigError(
                        "attention.samples",
                        self.attention.samples,
                        f"expected at most N - 1 = {n_cols - 1} neighbours per level",
                    )
            if d.n_train < self.train.batch_size:
                raise ConfigError(
                    "train.batch_size",
                    self.train.batch_size,
                    f"expected at most data.n_train = {d.n_train}",
                )
        return self

    def _sections(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in _SECTIONS]


def per_level(value: Any, levels: int) -> list:
    """Expand a per-level field: a scalar becomes ``[value] * levels``, a table
    ``{first, step}`` becomes ``[first + step * l for l in range(levels)]``, a list is copied."""
    if isinstance(value, Mapping):
        return [value["first"] + value["step"] * level for level in range(levels)]
    if isinstance(value, list | tuple):
        if len(value) != levels:
            raise ValueError(f"expected {levels} per-level values, got {len(value)}")
        return list(value)
    return [value] * levels


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf")
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
