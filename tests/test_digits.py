"""Digit data: scikit-learn's bundled digits, and MNIST from IDX files written here."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from conftest import fresh_seed

from bioglom.digits import mnist, read_idx, sklearn_digits


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    """The IDX format: 0, 0, type 0x08 (uint8), ndim, big-endian dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_sklearn_digits_are_8x8_in_unit_range_with_labels():
    """1797 images [1, 8, 8] in [0, 1] with labels 0-9; n and seed select and shuffle."""
    pytest.importorskip("sklearn")
    d = sklearn_digits()
    assert d.images.shape == (1797, 1, 8, 8) and d.images.dtype == np.float32
    assert d.images.min() == 0.0 and d.images.max() == 1.0
    assert set(d.labels.tolist()) == set(range(10))
    a, b = sklearn_digits(n=50, seed=1), sklearn_digits(n=50, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, sklearn_digits(n=50, seed=2).images)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    """IDX files written here read back exactly, scaled to [0, 1], labels aligned."""
    rng = np.random.default_rng(fresh_seed())
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 30, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    np.testing.assert_array_equal(read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}"), labels)
    m = mnist(tmp_path, seed=3)
    assert m.images.shape == (30, 1, 28, 28)
    order = np.random.default_rng(3).permutation(30)
    np.testing.assert_allclose(m.images[:, 0], images[order] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(m.labels, labels[order])


def test_bad_idx_files_say_what_is_wrong(tmp_path):
    """A file with a bad magic number or too few values is a ValueError naming the file."""
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"abc")
    with pytest.raises(ValueError, match="expected 5 values"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="train-images"):
        mnist(tmp_path)
