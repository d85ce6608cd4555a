"""Shared helpers: small configs and fresh random inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bioglom.config import load_config

SMALL = {
    "model.levels": 3,
    "model.dim": 8,
    "model.hidden": 16,
    "frontend.hidden": 16,
    "frontend.patch_size": 2,
    "data.image_size": 8,
    "data.n_train": 16,
    "data.n_probe": 4,
    "data.n_linear": 16,
    "train.batch_size": 4,
    "settle.steps": 3,
    "attention.radius": 1,
}


def small_config(**overrides):
    """A tiny model (K = 3, d = 8, 4x4 columns on 8x8 images) for fast tests.

    Keyword names use "__" for ".": ``small_config(model__sharing="shared")``.
    """
    items = dict(SMALL)
    items.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(overrides=items)


def fresh_seed() -> int:
    """A seed drawn from the OS: tests see new random inputs on every run."""
    return int.from_bytes(os.urandom(4), "little")


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(fresh_seed())


def rand_images(b: int, c: int = 3, size: int = 8, gen: torch.Generator | None = None):
    return torch.rand(b, c, size, size, generator=gen)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
np_rng = np.random.default_rng
