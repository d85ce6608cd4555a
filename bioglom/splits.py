"""The data layer's splits: which images a run trains on, probes with and fits the linear probe to.

A run never trains on its probe images: :func:`load_data` holds them apart (docs/design.md §8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config, ConfigError
from .data import ImageSet, VideoSet, load_images, moving_scenes, part_whole_scenes
from .digits import mnist, sklearn_digits
from .tetrominoes import tetrominoes

__all__ = ["DataSplits", "load_data", "scene_options"]


@dataclass
class DataSplits:
    """The images of a run: training (videos for ``data.source = "moving"``), the probe batch,
    and the linear-probe set (or None)."""

    train: ImageSet | VideoSet
    probe: ImageSet
    linear: ImageSet | None


#: the sources that generate images (drawn from data.seed, the linear-probe set from seed + 1)
GENERATED = ("scenes", "tetrominoes", "moving")

#: the training videos of data.source = "moving" come from this offset to data.seed (the still
#: probe and linear-probe scenes take data.seed and data.seed + 1, as for "scenes")
VIDEO_SEED_OFFSET = 2


def scene_options(config: Config) -> dict:
    """The ``[data]`` scene options as keyword arguments of
    :func:`~bioglom.data.part_whole_scenes` and :func:`~bioglom.data.moving_scenes`."""
    d = config.data
    return dict(
        min_objects=d.min_objects,
        max_objects=d.max_objects,
        noise=d.noise,
        touching=d.touching,
        palette=d.palette,
        colour_jitter=d.colour_jitter,
        background=d.background,
    )


def _videos(config: Config) -> VideoSet:
    """``data.n_train`` training videos of ``settle.steps`` frames (one per settling step)."""
    d = config.data
    return moving_scenes(
        d.n_train,
        config.settle.steps,
        d.image_size,
        d.seed + VIDEO_SEED_OFFSET,
        max_speed=d.max_speed,
        max_spin=d.max_spin,
        part_jitter=d.part_jitter,
        **scene_options(config),
    )


def _scenes(config: Config, n: int, seed: int) -> ImageSet:
    d = config.data
    if d.source == "tetrominoes":
        return tetrominoes(n, seed)
    return part_whole_scenes(
        n,
        d.image_size,
        seed,
        **scene_options(config),
    )


def _source_images(config: Config) -> ImageSet:
    d = config.data
    if d.source in GENERATED:
        return _scenes(config, d.n_train + d.n_probe, d.seed)
    try:
        if d.source == "digits":
            return sklearn_digits(seed=d.seed)
        if d.source == "mnist":
            return mnist(d.path or None, "train", seed=d.seed)
        return load_images(d.path)
    except (ValueError, OSError) as err:
        raise ConfigError("data.path", d.path, str(err)) from None
    except ImportError as err:
        raise ConfigError("data.source", d.source, str(err)) from None


def load_data(config: Config) -> DataSplits:
    """The training, probe and linear-probe images for the config, held apart.

    Generated images (scenes, Tetrominoes): ``n_train + n_probe`` from ``data.seed`` (the last
    ``n_probe`` are the probe) and ``n_linear`` more from ``data.seed + 1``, so that the
    linear-probe set does not change the others. Moving scenes: the same still probe and
    linear-probe scenes as ``"scenes"`` (scored on still frames), and ``n_train`` training
    videos of ``settle.steps`` frames from ``data.seed + 2``. A fixed set (a file, the digits,
    MNIST): its last ``n_probe`` images are the probe, the ``n_linear`` before them the
    linear-probe set (when the data has labels), the rest train.
    """
    d = config.data
    data = _source_images(config)
    if d.source in GENERATED:
        n = len(data)
        linear = _scenes(config, d.n_linear, d.seed + 1) if d.n_linear else None
        split = n - d.n_probe
        probe = data.subset(np.arange(split, n))
        if d.source == "moving":
            return DataSplits(_videos(config), probe, linear)
        return DataSplits(data.subset(np.arange(split)), probe, linear)
    n = len(data)
    n_linear = d.n_linear if data.labels is not None else 0
    if d.source != "scenes":
        need = d.n_probe + n_linear + config.train.batch_size
        if n < need:
            raise ConfigError(
                "data.n_probe",
                d.n_probe,
                f"the data holds {n} images; need n_probe + n_linear + train.batch_size = "
                f"{need} at least",
            )
    p = config.frontend.patch_size
    h, w = data.size
    if h % p or w % p:
        raise ConfigError("frontend.patch_size", p, f"expected a divisor of the image size {h}x{w}")
    a, b = n - d.n_probe - n_linear, n - d.n_probe
    linear = data.subset(np.arange(a, b)) if n_linear else None
    return DataSplits(data.subset(np.arange(a)), data.subset(np.arange(b, n)), linear)
