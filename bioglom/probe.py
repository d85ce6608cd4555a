"""Measurements on the fixed probe batch, recorded at the run's interval (DESIGN section 6).

Per level ``k`` (see :func:`probe_metric_names`):

* ``probe_islands_L{k}``: mean number of islands per image (4-neighbour components with
  cosine above ``run.island_threshold``);
* ``probe_cos_L{k}``: mean cosine between the embeddings of two different columns of the same
  image (1 when a level has collapsed to one vector);

and for the whole model ``probe_recon_mse`` (reconstruction of the clean probe images from
level 0 after settling) and ``probe_fill_mse`` (error on the removed pixels only, when the
probe images are corrupted as in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .islands import connected_islands, island_counts
from .model import Glom
from .rules.base import corrupt

__all__ = ["Probe", "probe_metric_names", "mean_within_image_cosine"]


def probe_metric_names(levels: int) -> tuple[str, ...]:
    per_level = [f"probe_islands_L{k}" for k in range(levels)]
    per_level += [f"probe_cos_L{k}" for k in range(levels)]
    return ("probe_recon_mse", "probe_fill_mse", *per_level)


def mean_within_image_cosine(state: Tensor) -> Tensor:
    """``[K]``: mean over images and column pairs ``x != y`` of ``cos(e_k(x), e_k(y))``.

    With unit vectors ``u``, ``sum_{x != y} u_x . u_y = |sum_x u_x|^2 - N``.
    """
    K, N, B, d = state.shape
    u = state / state.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    s = u.sum(dim=1)  # [K, B, d]
    pair_sum = (s * s).sum(-1) - N  # [K, B]
    if N < 2:
        return torch.full((K,), float("nan"))
    return (pair_sum / (N * (N - 1))).mean(dim=1)


@dataclass
class Probe:
    """A fixed batch of held-out images, with a fixed corruption, evaluated without learning."""

    images: Tensor  # [B, C, H, W] on the model's device
    holes: int
    hole_size: float
    island_threshold: float
    seed: int = 0

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        self.corrupted, self.hole_mask = corrupt(self.images, self.holes, self.hole_size, g)

    @torch.no_grad()
    def evaluate(self, model: Glom) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Settle the probe images; return (metrics, snapshot arrays).

        Snapshot arrays: ``state`` float16 ``[K, N, B, d]``, ``islands`` int32
        ``[K, B, H_g, W_g]``, ``reconstruction`` float16 ``[B, C, H, W]``.
        """
        was_training = model.training
        model.eval()
        gen = torch.Generator().manual_seed(self.seed)
        try:
            state = model.settle(self.images, check=False, generator=gen).state
            recon = model.decode(state)
            filled = model.decode(model.settle(self.corrupted, check=False, generator=gen).state)
        finally:
            model.train(was_training)
        metrics = {"probe_recon_mse": float(((recon - self.images) ** 2).mean())}
        m = self.hole_mask.expand_as(self.images)
        if bool(m.any()):
            metrics["probe_fill_mse"] = float(((filled - self.images)[m] ** 2).mean())
        labels = connected_islands(state, model.grid, self.island_threshold)
        counts = island_counts(labels).mean(axis=1)
        cos = mean_within_image_cosine(state.float()).cpu().numpy()
        for k in range(model.K):
            metrics[f"probe_islands_L{k}"] = float(counts[k])
            metrics[f"probe_cos_L{k}"] = float(cos[k])
        snap = {
            "state": state.cpu().numpy().astype(np.float16),
            "islands": labels,
            "reconstruction": recon.cpu().numpy().astype(np.float16),
        }
        return metrics, snap
