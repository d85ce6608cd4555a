"""Data for bioglom: procedural part-whole scenes (still and moving) and a loader for own data.

Everything here is generated or read locally; nothing downloads.

Conventions
-----------
images
    float32 ``[n, C, H, W]`` with values in [0, 1].
part_masks, object_masks
    int64 ``[n, H, W]``; 0 = background, parts 1..P_i and objects 1..O_i in image i (visible
    pixels only: an object drawn later occludes one drawn earlier).
part_to_object
    int64 ``[n, P_max + 1]``; ``object_masks[i] == part_to_object[i][part_masks[i]]``.
object_classes, part_shapes
    int64 ``[n, O_max + 1]`` / ``[n, P_max + 1]``; index into :data:`OBJECT_CLASSES` /
    :data:`PART_SHAPES`, -1 for id 0 and unused ids.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BACKGROUNDS",
    "OBJECT_CLASSES",
    "PALETTE",
    "PART_SHAPES",
    "ImageSet",
    "VideoSet",
    "load_images",
    "moving_scenes",
    "part_whole_scenes",
]

# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


def _take(array: np.ndarray | None, index, axis: int = 0) -> np.ndarray | None:
    """Index ``array`` along ``axis`` with numpy indexing; None stays None."""
    if array is None:
        return None
    if isinstance(index, (int, np.integer)):
        index = [index]  # keep the axis
    return array[(slice(None),) * axis + (index,)]


@dataclass
class ImageSet:
    """A set of images with optional part/object ground truth.

    Attributes
    ----------
    images : np.ndarray
        float32 ``[n, C, H, W]``, values in [0, 1].
    part_masks : np.ndarray or None
        int64 ``[n, H, W]``; 0 = background, visible parts numbered 1..P_i per image.
    object_masks : np.ndarray or None
        int64 ``[n, H, W]``; 0 = background, visible objects numbered 1..O_i per image.
    part_to_object : np.ndarray or None
        int64 ``[n, P_max + 1]``; object id of part p in image i (0 for p = 0 and unused ids).
    object_classes : np.ndarray or None
        int64 ``[n, O_max + 1]``; index into :data:`OBJECT_CLASSES` (-1 for o = 0 and unused).
    part_shapes : np.ndarray or None
        int64 ``[n, P_max + 1]``; index into :data:`PART_SHAPES` (-1 for p = 0 and unused).
    labels : np.ndarray or None
        int64 ``[n]``: one class per image, for linear probes (digit class; for scenes the class
        of the object with the most visible pixels).
    """

    images: np.ndarray
    part_masks: np.ndarray | None = None
    object_masks: np.ndarray | None = None
    part_to_object: np.ndarray | None = None
    object_classes: np.ndarray | None = None
    part_shapes: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, index) -> ImageSet:
        """Images selected by numpy ``index`` (int, slice, integer or boolean array)."""
        return ImageSet(*(_take(getattr(self, f.name), index) for f in dataclasses.fields(self)))


@dataclass
class VideoSet:
    """A set of n videos of T frames with optional ground truth; ids are fixed over time.

    Attributes
    ----------
    frames : np.ndarray
        float32 ``[T, n, C, H, W]``, values in [0, 1].
    part_masks, object_masks : np.ndarray or None
        int64 ``[T, n, H, W]``; 0 = background. A part or object keeps its id in every frame;
        one that is hidden or outside the image in a frame has no pixels there.
    part_to_object, object_classes, part_shapes : np.ndarray or None
        int64 ``[n, ...]`` as in :class:`ImageSet`, the same for all frames.
    """

    frames: np.ndarray
    part_masks: np.ndarray | None = None
    object_masks: np.ndarray | None = None
    part_to_object: np.ndarray | None = None
    object_classes: np.ndarray | None = None
    part_shapes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[1])

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels C."""
        return int(self.frames.shape[2])

    @property
    def size(self) -> tuple[int, int]:
        """Frame size ``(H, W)``."""
        return int(self.frames.shape[3]), int(self.frames.shape[4])

    def subset(self, index) -> VideoSet:
        """Videos selected by numpy ``index`` (along the video axis n, all frames kept)."""
        return VideoSet(
            frames=_take(self.frames, index, axis=1),
            part_masks=_take(self.part_masks, index, axis=1),
            object_masks=_take(self.object_masks, index, axis=1),
            part_to_object=_take(self.part_to_object, index),
            object_classes=_take(self.object_classes, index),
            part_shapes=_take(self.part_shapes, index),
        )

    def frame(self, t: int) -> ImageSet:
        """Frame ``t`` of every video as an :class:`ImageSet` of n images."""
        return ImageSet(
            images=self.frames[t],
            part_masks=None if self.part_masks is None else self.part_masks[t],
            object_masks=None if self.object_masks is None else self.object_masks[t],
            part_to_object=self.part_to_object,
            object_classes=self.object_classes,
            part_shapes=self.part_shapes,
        )


# --------------------------------------------------------------------------------------------
# Vocabulary: part shapes and object classes
# --------------------------------------------------------------------------------------------

# Inside tests in a part's local frame (x right, y down; the shape fits in [-1, 1]^2).
_INSIDE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disk": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 1.0,
    "triangle": lambda u, v: (np.abs(v) <= 1.0) & (2.0 * np.abs(u) <= v + 1.0),  # apex up
    "bar": lambda u, v: (np.abs(u) <= 1.0) & (np.abs(v) <= 0.25),  # 4:1, long axis along u
    "ring": lambda u, v: np.abs(u * u + v * v - 0.65) <= 0.35,  # radii 0.55 .. 1
    "semicircle": lambda u, v: (u * u + v * v <= 1.0) & (v <= 0.0),  # dome up
}
PART_SHAPES: tuple[str, ...] = tuple(_INSIDE)
"""Names of the shared part-shape vocabulary; ``part_shapes`` values index this tuple."""


@dataclass(frozen=True)
class _Part:
    """One part of an object class, in the object's frame (object radius about 1)."""

    shape: str
    offset: tuple[float, float]  # (x, y), y down
    scale: tuple[float, float]  # stretch of the local frame along (u, v)
    rotation: float  # radians
    colour: tuple[float, float, float]  # base RGB


_UP = math.pi / 2  # a bar rotated to stand upright
_CLASSES: dict[str, tuple[_Part, ...]] = {
    "house": (
        _Part("square", (0.0, 0.35), (0.6, 0.6), 0.0, (0.85, 0.35, 0.25)),
        _Part("triangle", (0.0, -0.55), (0.8, 0.3), 0.0, (0.55, 0.3, 0.9)),
        _Part("square", (0.25, 0.7), (0.15, 0.25), 0.0, (0.95, 0.85, 0.3)),
    ),
    "tree": (
        _Part("bar", (0.0, 0.65), (0.35, 0.6), _UP, (0.7, 0.45, 0.2)),
        _Part("triangle", (0.0, 0.0), (0.7, 0.4), 0.0, (0.2, 0.75, 0.25)),
        _Part("triangle", (0.0, -0.55), (0.5, 0.4), 0.0, (0.5, 0.95, 0.4)),
    ),
    "snowman": (
        _Part("disk", (0.0, 0.5), (0.48, 0.48), 0.0, (0.9, 0.9, 0.95)),
        _Part("disk", (0.0, -0.1), (0.34, 0.34), 0.0, (0.5, 0.75, 0.95)),
        _Part("disk", (0.0, -0.6), (0.24, 0.24), 0.0, (0.95, 0.6, 0.2)),
    ),
    "dumbbell": (
        _Part("bar", (0.0, 0.0), (0.7, 0.6), 0.0, (0.75, 0.75, 0.75)),
        _Part("disk", (-0.7, 0.0), (0.3, 0.3), 0.0, (0.25, 0.4, 0.95)),
        _Part("disk", (0.7, 0.0), (0.3, 0.3), 0.0, (0.9, 0.25, 0.55)),
    ),
    "mushroom": (
        _Part("bar", (0.0, 0.4), (0.5, 0.8), _UP, (0.95, 0.9, 0.7)),
        _Part("semicircle", (0.0, 0.05), (0.9, 0.9), 0.0, (0.9, 0.2, 0.2)),
    ),
    "car": (
        _Part("square", (0.0, 0.1), (0.9, 0.3), 0.0, (0.2, 0.5, 0.9)),
        _Part("semicircle", (0.0, -0.2), (0.5, 0.5), 0.0, (0.6, 0.9, 0.95)),
        _Part("ring", (-0.5, 0.45), (0.25, 0.25), 0.0, (0.95, 0.95, 0.4)),
        _Part("ring", (0.5, 0.45), (0.25, 0.25), 0.0, (0.95, 0.55, 0.3)),
    ),
    "ice_cream": (
        _Part("triangle", (0.0, 0.35), (0.45, 0.6), math.pi, (0.85, 0.65, 0.35)),
        _Part("disk", (0.0, -0.45), (0.4, 0.4), 0.0, (0.95, 0.6, 0.8)),
    ),
    "lollipop": (
        _Part("bar", (0.0, 0.45), (0.55, 0.4), _UP, (0.9, 0.9, 0.85)),
        _Part("ring", (0.0, -0.4), (0.5, 0.5), 0.0, (0.9, 0.3, 0.8)),
    ),
}
OBJECT_CLASSES: tuple[str, ...] = tuple(_CLASSES)
"""Names of the object classes; ``object_classes`` values index this tuple."""


def _class_tables() -> dict[str, np.ndarray]:
    """Per-class part arrays padded to J = max parts per class (shape id -1 = no part)."""
    n_cls, n_parts = len(_CLASSES), max(len(p) for p in _CLASSES.values())
    tab = {
        "shape": np.full((n_cls, n_parts), -1, np.int64),
        "offset": np.zeros((n_cls, n_parts, 2)),
        "scale": np.ones((n_cls, n_parts, 2)),
        "rotation": np.zeros((n_cls, n_parts)),
        "colour": np.zeros((n_cls, n_parts, 3)),
    }
    for c, parts in enumerate(_CLASSES.values()):
        for j, part in enumerate(parts):
            tab["shape"][c, j] = PART_SHAPES.index(part.shape)
            tab["offset"][c, j] = part.offset
            tab["scale"][c, j] = part.scale
            tab["rotation"][c, j] = part.rotation
            tab["colour"][c, j] = part.colour
    return tab


_TAB = _class_tables()
_J = _TAB["shape"].shape[1]  # part slots per object


def _class_radii(resolution: int = 401) -> np.ndarray:
    """Radius of the bounding circle (about the object origin) of each class, in object units."""
    x = np.linspace(-2.0, 2.0, resolution)
    gx, gy = np.meshgrid(x, x)
    dist = np.hypot(gx, gy)
    radii = np.zeros(len(_CLASSES))
    for c, parts in enumerate(_CLASSES.values()):
        for part in parts:
            cos, sin = math.cos(part.rotation), math.sin(part.rotation)
            dx, dy = gx - part.offset[0], gy - part.offset[1]
            u = (cos * dx + sin * dy) / part.scale[0]
            v = (-sin * dx + cos * dy) / part.scale[1]
            inside = _INSIDE[part.shape](u, v)
            radii[c] = max(radii[c], dist[inside].max())
    return radii


_RADIUS = _class_radii()

# Scene statistics (fractions of the image size, radians, colour units).
_OBJECT_RADIUS = (0.15, 0.22)  # bounding-circle radius of an object / image size
_INSIDE_MARGIN = 0.8  # object centre at least this many radii from the border
_MAX_ROTATION = math.pi / 4  # object rotation uniform in +-45 degrees
_COLOUR_JITTER = 0.1  # per-object uniform shift of the base colours, per channel (default)
_TOUCH_DISTANCE = (0.4, 0.8)  # touching: centre distance / sum of the two bounding radii
_POSE_CANDIDATES = 16  # candidate poses per object for overlap rejection
_MAX_RESAMPLE = 100  # rounds of resampling scenes in which an object is hidden
_CHUNK = 4096  # images rendered at once (bounds temporary memory)

PALETTE: np.ndarray = np.array(
    [
        (0.9, 0.2, 0.2),  # red
        (0.2, 0.8, 0.3),  # green
        (0.25, 0.4, 0.95),  # blue
        (0.95, 0.85, 0.3),  # yellow
        (0.85, 0.3, 0.85),  # magenta
        (0.3, 0.85, 0.9),  # cyan
        (0.95, 0.55, 0.2),  # orange
        (0.9, 0.9, 0.9),  # white
    ]
)
"""The shared colours of ``palette = k`` scenes: every part takes one of the first k rows."""
PALETTE.setflags(write=False)

BACKGROUNDS: tuple[str, ...] = ("black", "noise", "texture")
"""Backgrounds of the scene generators: black (0); noise (every pixel and channel uniform in
[0, 1], drawn anew per image); texture (per image, sinusoidal stripes between two random
colours, period 3-8 pixels, random orientation and phase)."""
_STRIPE_PERIOD = (3.0, 8.0)  # texture background: stripe period in pixels


# --------------------------------------------------------------------------------------------
# Sampling and rendering
# --------------------------------------------------------------------------------------------


@dataclass
class _Scenes:
    """Sampled content of n scenes with up to O objects (class -1 = no object)."""

    classes: np.ndarray  # [n, O] int64
    centres: np.ndarray  # [n, O, 2] (x, y) in pixels
    scales: np.ndarray  # [n, O] pixels per object unit
    angles: np.ndarray  # [n, O] radians
    colours: np.ndarray  # [n, O, J, 3]

    def put(self, index: np.ndarray, other: _Scenes) -> None:
        """Overwrite scenes ``index`` with ``other`` (same O)."""
        for f in dataclasses.fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name)

    def take(self, index: np.ndarray) -> _Scenes:
        """Scenes ``index`` as a new :class:`_Scenes`."""
        return _Scenes(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class _Style:
    """The scene options beyond the object count (defaults: the original scenes)."""

    touching: bool = False
    palette: int = 0
    colour_jitter: float = _COLOUR_JITTER
    background: str = "black"


def _sample_touching(
    rng: np.random.Generator, n: int, size: int, max_objects: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``[n, O, 2]`` and bounding radii ``[n, O]`` of objects that touch.

    Object 0 is placed as in the apart placement; each later object next to an earlier one
    chosen at random: its centre at ``_TOUCH_DISTANCE`` times the sum of the two bounding radii
    in a random direction (then moved inside the image margin), so that the two overlap and the
    later one occludes the earlier.
    """
    r = rng.uniform(*_OBJECT_RADIUS, size=(n, max_objects)) * size
    margin = _INSIDE_MARGIN * r
    centres = np.zeros((n, max_objects, 2))
    centres[:, 0] = rng.uniform(margin[:, 0, None], size - margin[:, 0, None], size=(n, 2))
    rows = np.arange(n)
    for o in range(1, max_objects):
        anchor = rng.integers(0, o, size=n)
        angle = rng.uniform(0.0, 2 * math.pi, size=n)
        dist = rng.uniform(*_TOUCH_DISTANCE, size=n) * (r[:, o] + r[rows, anchor])
        c = centres[rows, anchor] + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
        centres[:, o] = np.clip(c, margin[:, o, None], size - margin[:, o, None])
    return centres, r


def _sample_scenes(
    rng: np.random.Generator,
    n: int,
    size: int,
    min_objects: int,
    max_objects: int,
    style: _Style = _Style(),
) -> _Scenes:
    """Draw classes, poses and colours.

    Apart (the default): each object takes, of ``_POSE_CANDIDATES`` random poses, the first
    whose bounding circle overlaps no earlier object's, else the one with the least total
    overlap. ``style.touching``: :func:`_sample_touching` instead. With the default style the
    random draws are exactly those of the original generator (the palette's come last).
    """
    counts = rng.integers(min_objects, max_objects + 1, size=n)
    present = np.arange(max_objects)[None, :] < counts[:, None]
    classes = np.where(present, rng.integers(0, len(_CLASSES), size=(n, max_objects)), -1)

    centres = np.zeros((n, max_objects, 2))
    radii = np.zeros((n, max_objects))
    rows = np.arange(n)
    for o in range(0 if style.touching else max_objects):
        r = rng.uniform(*_OBJECT_RADIUS, size=(n, _POSE_CANDIDATES)) * size
        margin = _INSIDE_MARGIN * r[..., None]
        c = rng.uniform(margin, size - margin, size=(n, _POSE_CANDIDATES, 2))
        overlap = np.zeros((n, _POSE_CANDIDATES))
        for p in range(o):
            dist = np.linalg.norm(c - centres[:, p, None, :], axis=-1)
            clash = np.maximum(0.0, r + radii[:, p, None] - dist)
            overlap += np.where(present[:, p, None], clash, 0.0)
        best = np.argmin(overlap, axis=1)  # first zero-overlap candidate if there is one
        centres[:, o] = c[rows, best]
        radii[:, o] = r[rows, best]

    if style.touching:
        centres, radii = _sample_touching(rng, n, size, max_objects)
    cls = np.maximum(classes, 0)
    j = style.colour_jitter
    jitter = rng.uniform(-j, j, size=(n, max_objects, 1, 3))
    angles = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, size=(n, max_objects))
    base = _TAB["colour"][cls]
    if style.palette:
        base = PALETTE[rng.integers(0, style.palette, size=(n, max_objects, _J))]
    return _Scenes(
        classes=classes,
        centres=centres,
        scales=radii / _RADIUS[cls],
        angles=angles,
        colours=np.clip(base + jitter, 0.0, 1.0),
    )


def _render_labels(
    classes: np.ndarray,
    centres: np.ndarray,
    scales: np.ndarray,
    angles: np.ndarray,
    size: int,
    jitter: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterise B scenes into part-slot labels.

    Parameters
    ----------
    classes : ``[B, O]`` int, -1 = no object.
    centres : ``[B, O, 2]`` object centres (x, y) in pixels.
    scales : ``[B, O]`` pixels per object unit.
    angles : ``[B, O]`` object rotations in radians.
    size : image height = width.
    jitter : ``[B, O, J, 2]`` or None: offsets (object units) added to each part's offset in
        its object's frame.

    Returns
    -------
    np.ndarray
        int32 ``[B, size, size]``: the part slot ``o * J + j`` seen at each pixel centre
        (objects and parts drawn in slot order, later over earlier), -1 = background.
    """
    n_img, n_obj = classes.shape
    grid = np.arange(size, dtype=np.float32) + 0.5
    gx, gy = grid[None, None, :], grid[None, :, None]
    labels = np.full((n_img, size, size), -1, np.int32)
    cls = np.maximum(classes, 0)
    for o in range(n_obj):
        for j in range(_J):
            shape = np.where(classes[:, o] >= 0, _TAB["shape"][cls[:, o], j], -1)
            # pixel -> part frame: local = D R(-phi) (R(-theta) (p - c) / s - offset)
            phi = _TAB["rotation"][cls[:, o], j]
            sx, sy = _TAB["scale"][cls[:, o], j].T
            ox, oy = _TAB["offset"][cls[:, o], j].T
            if jitter is not None:
                ox, oy = ox + jitter[:, o, j, 0], oy + jitter[:, o, j, 1]
            alpha, s = angles[:, o] + phi, scales[:, o]
            cx, cy = centres[:, o].T
            cos_a, sin_a, cos_p, sin_p = np.cos(alpha), np.sin(alpha), np.cos(phi), np.sin(phi)
            coef = np.stack(  # u = a x + b y + e,  v = c x + d y + f
                [
                    cos_a / (s * sx),
                    sin_a / (s * sx),
                    -(cos_a * cx + sin_a * cy) / (s * sx) - (cos_p * ox + sin_p * oy) / sx,
                    -sin_a / (s * sy),
                    cos_a / (s * sy),
                    (sin_a * cx - cos_a * cy) / (s * sy) - (-sin_p * ox + cos_p * oy) / sy,
                ],
                axis=1,
            ).astype(np.float32)[:, :, None, None]
            for k, inside in enumerate(_INSIDE.values()):
                rows = np.flatnonzero(shape == k)
                for start in range(0, rows.size, _CHUNK):
                    r = rows[start : start + _CHUNK]
                    a, b, e, c, d, f = (coef[r, i] for i in range(6))
                    hit = inside(a * gx + b * gy + e, c * gx + d * gy + f)
                    labels[r] = np.where(hit, o * _J + j, labels[r])
    return labels


def _slots_seen(labels: np.ndarray, n_slots: int) -> np.ndarray:
    """bool ``[n, n_slots]``: slot s has a pixel in image i (labels ``[..., n, H, W]``)."""
    n = labels.shape[-3]
    seen = np.zeros((n, n_slots + 1), bool)
    index = np.broadcast_to(np.arange(n)[:, None, None], labels.shape)
    seen[index.ravel(), labels.ravel() + 1] = True
    return seen[:, 1:]


def _all_objects_seen(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """bool ``[n]``: every object of scene i has at least one visible pixel."""
    n, n_obj = classes.shape
    objects_seen = _slots_seen(labels, n_obj * _J).reshape(n, n_obj, _J).any(axis=2)
    return np.all(objects_seen == (classes >= 0), axis=1)


def _sample_visible_scenes(
    rng: np.random.Generator,
    n: int,
    size: int,
    min_objects: int,
    max_objects: int,
    style: _Style = _Style(),
) -> tuple[_Scenes, np.ndarray]:
    """Sample n scenes in which every object is visible; returns them and their labels.

    Scenes with a hidden object (fully occluded, or too small to cover a pixel centre) are
    drawn again, so every scene shows between ``min_objects`` and ``max_objects`` objects.
    """
    scenes = _sample_scenes(rng, n, size, min_objects, max_objects, style)
    labels = np.empty((n, size, size), np.int32)
    todo = np.arange(n)
    for _ in range(_MAX_RESAMPLE):
        part = scenes.take(todo)
        lab = _render_labels(part.classes, part.centres, part.scales, part.angles, size)
        labels[todo] = lab
        todo = todo[~_all_objects_seen(lab, part.classes)]
        if todo.size == 0:
            return scenes, labels
        scenes.put(todo, _sample_scenes(rng, todo.size, size, min_objects, max_objects, style))
    raise RuntimeError(
        f"could not place {min_objects}-{max_objects} visible objects in {size}x{size} images "
        f"after {_MAX_RESAMPLE} tries; use a larger size or fewer objects"
    )


def _assign_ids(
    labels: np.ndarray, visible: np.ndarray, classes: np.ndarray
) -> dict[str, np.ndarray]:
    """Number visible parts and objects 1.. consecutively (in drawing order) per scene.

    Parameters
    ----------
    labels : int ``[..., n, H, W]`` part slots, -1 = background.
    visible : bool ``[n, O * J]``; slots that get an id (those with pixels).
    classes : int ``[n, O]``.

    Returns
    -------
    dict
        ``part_masks``, ``object_masks`` (shaped like labels) and ``part_to_object``,
        ``object_classes``, ``part_shapes`` (``[n, ...]``), all int64.
    """
    n, n_obj = classes.shape
    part_id = np.cumsum(visible, axis=1) * visible  # [n, S]
    object_seen = visible.reshape(n, n_obj, _J).any(axis=2)
    object_id = np.cumsum(object_seen, axis=1) * object_seen  # [n, O]
    object_of_slot = np.repeat(object_id, _J, axis=1) * visible  # [n, S]

    index = np.arange(n)[:, None, None]
    zero = np.zeros((n, 1), np.int64)
    part_masks = np.concatenate([zero, part_id], axis=1)[index, labels + 1]
    object_masks = np.concatenate([zero, object_of_slot], axis=1)[index, labels + 1]

    n_parts, n_objects = int(part_id.max(initial=0)), int(object_id.max(initial=0))
    rows, slots = np.nonzero(visible)
    part_to_object = np.zeros((n, n_parts + 1), np.int64)
    part_to_object[rows, part_id[rows, slots]] = object_of_slot[rows, slots]
    part_shapes = np.full((n, n_parts + 1), -1, np.int64)
    part_shapes[rows, part_id[rows, slots]] = _TAB["shape"][classes[rows, slots // _J], slots % _J]
    object_classes = np.full((n, n_objects + 1), -1, np.int64)
    orows, objs = np.nonzero(object_seen)
    object_classes[orows, object_id[orows, objs]] = classes[orows, objs]
    return {
        "part_masks": part_masks.astype(np.int64),
        "object_masks": object_masks.astype(np.int64),
        "part_to_object": part_to_object,
        "object_classes": object_classes,
        "part_shapes": part_shapes,
    }


def _background(rng: np.random.Generator, kind: str, n: int, size: int) -> np.ndarray | None:
    """float32 ``[n, 3, size, size]`` backgrounds of :data:`BACKGROUNDS` kind (None: black)."""
    if kind == "black":
        return None
    if kind == "noise":
        return rng.uniform(0.0, 1.0, size=(n, 3, size, size)).astype(np.float32)
    colours = rng.uniform(0.0, 1.0, size=(n, 2, 3, 1, 1))
    period = rng.uniform(*_STRIPE_PERIOD, size=(n, 1, 1, 1))
    angle = rng.uniform(0.0, math.pi, size=(n, 1, 1, 1))
    phase = rng.uniform(0.0, 2 * math.pi, size=(n, 1, 1, 1))
    grid = np.arange(size) + 0.5
    x, y = grid[None, None, None, :], grid[None, None, :, None]
    along = x * np.cos(angle) + y * np.sin(angle)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * along / period + phase)  # [n, 1, H, W]
    return (colours[:, 0] + (colours[:, 1] - colours[:, 0]) * wave).astype(np.float32)


def _paint(
    labels: np.ndarray,
    colours: np.ndarray,
    noise: float,
    rng: np.random.Generator,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Colour part slots: labels ``[..., n, H, W]`` and colours ``[n, O, J, 3]`` give images.

    Returns float32 ``[..., n, 3, H, W]``. Background pixels are black, or ``background``
    ``[n, 3, H, W]`` (the same in every frame); ``noise > 0`` adds Gaussian noise of that std,
    clipped to [0, 1].
    """
    n = colours.shape[0]
    table = np.zeros((n, colours.shape[1] * _J + 1, 3), np.float32)
    table[:, 1:] = colours.reshape(n, -1, 3)
    pixels = np.moveaxis(table[np.arange(n)[:, None, None], labels + 1], -1, -3)
    pixels = np.ascontiguousarray(pixels)
    if background is not None:
        empty = np.expand_dims(labels < 0, -3)  # [..., n, 1, H, W]
        pixels = np.where(empty, background, pixels).astype(np.float32)
    if noise > 0:
        pixels += rng.normal(0.0, noise, size=pixels.shape).astype(np.float32)
        np.clip(pixels, 0.0, 1.0, out=pixels)
    return pixels


def _check_scene_args(
    n: int,
    size: int,
    min_objects: int,
    max_objects: int,
    noise: float = 0.0,
    style: _Style = _Style(),
) -> None:
    """Raise ValueError naming the first invalid argument."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got size={size}")
    if min_objects < 1:
        raise ValueError(f"min_objects must be >= 1, got min_objects={min_objects}")
    if max_objects < min_objects:
        raise ValueError(
            f"max_objects must be >= min_objects={min_objects}, got max_objects={max_objects}"
        )
    if not noise >= 0:  # also catches NaN
        raise ValueError(f"noise must be >= 0, got noise={noise}")
    if not 0 <= style.palette <= len(PALETTE):
        raise ValueError(
            f"palette must be 0 (class colours) to {len(PALETTE)}, got palette={style.palette}"
        )
    if not 0 <= style.colour_jitter <= 1:  # also catches NaN
        raise ValueError(
            f"colour_jitter must be in [0, 1], got colour_jitter={style.colour_jitter}"
        )
    if style.background not in BACKGROUNDS:
        raise ValueError(
            f"background must be one of {', '.join(BACKGROUNDS)}, got "
            f"background={style.background!r}"
        )


def part_whole_scenes(
    n: int,
    size: int = 32,
    seed: int = 0,
    *,
    min_objects: int = 2,
    max_objects: int = 3,
    noise: float = 0.0,
    touching: bool = False,
    palette: int = 0,
    colour_jitter: float = _COLOUR_JITTER,
    background: str = "black",
) -> ImageSet:
    """Procedural RGB scenes of objects built from parts of a shared shape vocabulary.

    Each image shows between ``min_objects`` and ``max_objects`` objects (all visible) of the
    classes in :data:`OBJECT_CLASSES`, each made of 2-4 parts whose shapes come from
    :data:`PART_SHAPES`, on a black background. An object has a random position (mostly inside
    the image, little overlap with others), size (bounding radius 15-22 % of ``size``) and
    rotation (within +-45 degrees). Each part is one flat colour: a per-class-per-part base
    colour shifted per object. Later objects occlude earlier ones; parts left without any
    pixel are dropped and ids renumbered, so ids 1..P_i all appear in the masks.

    The options after ``noise`` make scenes on which pixel heuristics fail (issue 14); their
    defaults give the original scenes, bit for bit. ``touching`` places every object after the
    first against an earlier one (centre distance 0.4-0.8 times the sum of their bounding
    radii), so that objects touch and the later one occludes the earlier (the front object owns
    the pixels in the masks): connected foreground is no longer an object. ``palette = k``
    gives every part a colour drawn from the first k rows of :data:`PALETTE`, shared by all
    objects and parts, so that colour names neither a part nor an object. ``background``
    replaces the black background (:data:`BACKGROUNDS`; mask 0 all the same), so that
    brightness no longer marks the foreground.

    Parameters
    ----------
    n : number of images.
    size : image height = width in pixels (>= 8).
    seed : seed of ``np.random.default_rng``; the same arguments give identical arrays.
    min_objects, max_objects : range of the number of objects per image.
    noise : std of Gaussian pixel noise (clipped to [0, 1]); masks are unaffected.
    touching : place objects against each other (see above) instead of apart.
    palette : 0: each class's own part colours; 1-8: colours from a shared palette.
    colour_jitter : per-object uniform shift of every part colour, per channel, in
        [-colour_jitter, colour_jitter] (then clipped to [0, 1]).
    background : "black", "noise" (uniform per pixel and channel) or "texture" (stripes
        between two random colours, period 3-8 pixels, random orientation and phase).

    Returns
    -------
    ImageSet
        images float32 ``[n, 3, size, size]`` with all ground-truth fields filled.
    """
    style = _Style(touching, palette, colour_jitter, background)
    _check_scene_args(n, size, min_objects, max_objects, noise, style)
    rng = np.random.default_rng(seed)
    scenes, labels = _sample_visible_scenes(rng, n, size, min_objects, max_objects, style)
    ids = _assign_ids(labels, _slots_seen(labels, max_objects * _J), scenes.classes)
    back = _background(rng, background, n, size)
    return ImageSet(
        images=_paint(labels, scenes.colours, noise, rng, back),
        labels=_largest_object_class(ids["object_masks"], ids["object_classes"]),
        **ids,
    )


def _largest_object_class(object_masks: np.ndarray, object_classes: np.ndarray) -> np.ndarray:
    """``[n]``: the class of each image's object with the most visible pixels."""
    n, n_ids = object_classes.shape
    flat = object_masks.reshape(n, -1) + n_ids * np.arange(n)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * n_ids).reshape(n, n_ids)
    counts[:, 0] = -1  # background is not an object
    return object_classes[np.arange(n), counts.argmax(axis=1)].astype(np.int64)


def moving_scenes(
    n: int,
    frames: int,
    size: int = 32,
    seed: int = 0,
    *,
    max_speed: float = 1.0,
    max_spin: float = 0.0,
    part_jitter: float = 0.0,
    min_objects: int = 2,
    max_objects: int = 3,
    noise: float = 0.0,
    touching: bool = False,
    palette: int = 0,
    colour_jitter: float = _COLOUR_JITTER,
    background: str = "black",
) -> VideoSet:
    """Videos of part-whole scenes whose objects move at constant velocity.

    The scenes are those of :func:`part_whole_scenes` (all objects visible in the middle
    frame), with each object translating at a constant random velocity (uniform direction,
    speed uniform in [0, ``max_speed``] pixels per frame) and rotating at a constant rate
    uniform in [-``max_spin``, ``max_spin``] radians per frame; in every frame each part is
    displaced from its place in the object by an offset drawn uniformly in
    [-``part_jitter``, ``part_jitter``] object units per axis (parts jitter slightly relative to
    their object, which moves as a whole: common fate, §11). Objects may leave the image.
    Part and object ids are assigned once per video (parts with no pixel in any frame are
    dropped) and kept in every frame.

    Parameters
    ----------
    n : number of videos.
    frames : number of frames T (>= 1).
    size, seed, min_objects, max_objects, noise : as in :func:`part_whole_scenes`.
    touching, palette, colour_jitter, background : as in :func:`part_whole_scenes` (the
        background is the same in every frame of a video).
    max_speed : largest speed in pixels per frame (>= 0); 0 gives static videos.
    max_spin : largest rotation rate in radians per frame (>= 0).
    part_jitter : largest displacement of a part from its place, object units (>= 0; an
        object's radius is about 1).

    Returns
    -------
    VideoSet
        frames float32 ``[T, n, 3, size, size]``, masks int64 ``[T, n, size, size]``.
    """
    style = _Style(touching, palette, colour_jitter, background)
    _check_scene_args(n, size, min_objects, max_objects, noise, style)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got frames={frames}")
    if not max_speed >= 0:
        raise ValueError(f"max_speed must be >= 0, got max_speed={max_speed}")
    if not max_spin >= 0:
        raise ValueError(f"max_spin must be >= 0, got max_spin={max_spin}")
    if not part_jitter >= 0:
        raise ValueError(f"part_jitter must be >= 0, got part_jitter={part_jitter}")
    rng = np.random.default_rng(seed)
    scenes, _ = _sample_visible_scenes(rng, n, size, min_objects, max_objects, style)
    speed = rng.uniform(0.0, max_speed, size=(n, max_objects))
    direction = rng.uniform(0.0, 2 * math.pi, size=(n, max_objects))
    velocity = np.stack([np.cos(direction), np.sin(direction)], axis=-1) * speed[..., None]
    spin = rng.uniform(-max_spin, max_spin, size=(n, max_objects))

    dt = (np.arange(frames) - (frames - 1) / 2)[:, None, None]  # [T, 1, 1], 0 = middle frame
    centres = scenes.centres[None] + velocity[None] * dt[..., None]  # [T, n, O, 2]
    angles = scenes.angles[None] + spin[None] * dt  # [T, n, O]
    flat = (frames * n, max_objects)
    jitter = None
    if part_jitter > 0:
        jitter = rng.uniform(-part_jitter, part_jitter, size=(frames * n, max_objects, _J, 2))
    labels = _render_labels(
        np.broadcast_to(scenes.classes, (frames, *scenes.classes.shape)).reshape(flat),
        centres.reshape(*flat, 2),
        np.broadcast_to(scenes.scales, (frames, *scenes.scales.shape)).reshape(flat),
        angles.reshape(flat),
        size,
        jitter,
    ).reshape(frames, n, size, size)
    ids = _assign_ids(labels, _slots_seen(labels, max_objects * _J), scenes.classes)
    back = _background(rng, background, n, size)
    return VideoSet(frames=_paint(labels, scenes.colours, noise, rng, back), **ids)


# --------------------------------------------------------------------------------------------
# Loading a user's own data
# --------------------------------------------------------------------------------------------

_MASK_KEYS = ("part_masks", "object_masks")
_TABLE_KEYS = ("part_to_object", "object_classes", "part_shapes", "labels")
_SUFFIXES = (".npz", ".h5", ".hdf5")


def npz_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not an ``.npz`` archive (a few words, no path), or None if it begins like
    one (a zip archive, which ``np.savez`` writes).

    ``np.load`` reads any file that is not a zip archive or a ``.npy`` array as a pickle, so
    without this check a text file or a damaged download named ``.npz`` is reported as
    "contains pickled data".
    """
    with open(path, "rb") as f:
        head = f.read(6)
    if not head:
        return "not an .npz archive (the file is empty)"
    if head.startswith(np.lib.format.MAGIC_PREFIX):
        return (
            "a .npy file (one unnamed array), not an .npz archive of named arrays; "
            "save with np.savez(path, images=images)"
        )
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "not an .npz archive (not a zip file, which np.savez writes)"
    return None


_NPZ_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError)  # np.load on a damaged zip archive


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The known arrays stored in an .npz or HDF5 file (top-level keys / datasets)."""
    keys = ("images", *_MASK_KEYS, *_TABLE_KEYS)
    if path.suffix.lower() == ".npz":
        problem = npz_problem(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        try:
            with np.load(path, allow_pickle=False) as f:
                found = list(f.files)
                arrays = {k: f[k] for k in keys if k in f.files}
        except _NPZ_DAMAGE as err:
            raise ValueError(f"{path}: a damaged or truncated .npz archive ({err})") from None
    else:
        import h5py

        with h5py.File(path, "r") as f:
            found = list(f.keys())
            arrays = {k: f[k][()] for k in keys if isinstance(f.get(k), h5py.Dataset)}
    if "images" not in arrays:
        raise ValueError(
            f"{path}: no array 'images' (found {found or 'nothing'}); "
            "expected 'images' [n, C, H, W] with values in [0, 1]"
        )
    return arrays


def _check_numeric(path: Path, key: str, array: np.ndarray) -> None:
    """Raise unless ``array`` has a real numeric (or bool) dtype and only finite values."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: '{key}' has non-numeric dtype {array.dtype}; expected numbers")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{path}: '{key}' has {bad} non-finite values (NaN or inf)")


def _check_images(path: Path, images: np.ndarray) -> np.ndarray:
    """Validate images ``[n, C, H, W]`` in [0, 1]; return them as float32."""
    if images.ndim != 4:
        hint = "; for [n, H, W] add a channel axis: images[:, None]" if images.ndim == 3 else ""
        raise ValueError(
            f"{path}: 'images' has shape {images.shape} (ndim {images.ndim}); "
            f"expected [n, C, H, W] (ndim 4){hint}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{path}: 'images' has shape {images.shape}; expected n >= 1 images")
    _check_numeric(path, "images", images)
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        hint = " (divide by 255)" if lo >= 0 and hi <= 255 else ""
        raise ValueError(
            f"{path}: 'images' ({images.dtype}) has values in [{lo:g}, {hi:g}]; "
            f"expected [0, 1]{hint}"
        )
    return images.astype(np.float32)


def _check_ids(path: Path, key: str, array: np.ndarray, shape: tuple, lowest: int) -> np.ndarray:
    """Validate an id array (mask or table): shape, integer values >= lowest; return int64.

    ``shape`` entries that are None are not checked (only the ndim is).
    """
    expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if array.ndim != len(shape) or any(
        s not in (None, a) for s, a in zip(shape, array.shape, strict=True)
    ):
        raise ValueError(f"{path}: '{key}' has shape {array.shape}; expected {expected}")
    _check_numeric(path, key, array)
    if array.size and array.dtype.kind == "f" and np.any(array != np.round(array)):
        example = array[array != np.round(array)].flat[0]
        raise ValueError(f"{path}: '{key}' has non-integer values (e.g. {example:g}); expected ids")
    if array.size and array.min() < lowest:
        raise ValueError(
            f"{path}: '{key}' has values down to {array.min():g}; expected ids >= {lowest}"
        )
    return array.astype(np.int64)


def load_images(path: str | os.PathLike) -> ImageSet:
    """Load a user's images (and optional masks) from an ``.npz`` or ``.h5``/``.hdf5`` file.

    The file holds ``images`` ``[n, C, H, W]`` with values in [0, 1] (any real dtype; uint8
    0..255 is rejected, not rescaled) and optionally ``part_masks``, ``object_masks``
    ``[n, H, W]`` (non-negative integers, 0 = background), ``part_to_object``
    ``[n, P_max + 1]`` (needs ``part_masks``; if ``object_masks`` is missing it is derived),
    ``object_classes`` and ``part_shapes`` (``[n, *]``, ids >= -1).

    Parameters
    ----------
    path : file path; the suffix picks the format.

    Returns
    -------
    ImageSet
        images float32, masks and tables int64.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the suffix is unsupported or an array is missing or invalid; the one-line message
        names the file, the array, what was found and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(
            f"{path}: unsupported suffix '{path.suffix}'; expected one of {', '.join(_SUFFIXES)}"
        )
    arrays = _read_arrays(path)
    images = _check_images(path, arrays["images"])
    n, _, height, width = images.shape
    out: dict[str, np.ndarray] = {"images": images}
    for key in _MASK_KEYS:
        if key in arrays:
            out[key] = _check_ids(path, key, arrays[key], (n, height, width), lowest=0)
    if "part_to_object" in arrays:
        if "part_masks" not in out:
            raise ValueError(f"{path}: 'part_to_object' given without 'part_masks'")
        n_parts = int(out["part_masks"].max()) + 1
        table = _check_ids(path, "part_to_object", arrays["part_to_object"], (n, None), 0)
        if table.shape[1] < n_parts:
            raise ValueError(
                f"{path}: 'part_to_object' has shape {table.shape}; expected at least "
                f"{n_parts} columns (part ids in 'part_masks' go up to {n_parts - 1})"
            )
        derived = np.take_along_axis(table, out["part_masks"].reshape(n, -1), axis=1)
        derived = derived.reshape(out["part_masks"].shape)
        if "object_masks" not in out:
            out["object_masks"] = derived
        elif not np.array_equal(derived, out["object_masks"]):
            raise ValueError(
                f"{path}: 'object_masks' differs from part_to_object[part_masks] at "
                f"{int(np.count_nonzero(derived != out['object_masks']))} pixels"
            )
        out["part_to_object"] = table
    for key in ("object_classes", "part_shapes"):
        if key in arrays:
            out[key] = _check_ids(path, key, arrays[key], (n, None), lowest=-1)
    if "labels" in arrays:
        out["labels"] = _check_ids(path, "labels", arrays["labels"], (n,), lowest=0)
    return ImageSet(**out)
