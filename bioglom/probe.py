"""Measurements on the fixed probe batch, recorded at the run's interval (docs/design.md §6).

Per level ``k`` (see :func:`probe_metric_names`):

* islands (:mod:`bioglom.islands`, by ``run.island_method`` at ``run.island_threshold``):
  ``probe_islands_L{k}`` (mean number per image), ``probe_island_size_L{k}`` (mean columns per
  island), ``probe_nesting_L{k}`` (``k < K-1``: share of each island inside one island of level
  ``k+1``), ``probe_island_ari_across_L{k}`` (ARI between the islands of different images; 1
  when the islands ignore the image, and also when every image is all singletons or one
  island);
* scores against ground truth (:mod:`bioglom.scores`), when the probe images have masks:
  ``probe_fgari_{t}_L{k}``, ``probe_ari_{t}_L{k}``, ``probe_miou_{t}_L{k}`` for ``t`` in
  ``obj`` (object masks) and ``part`` (part masks), every level scored against both; beside
  each its mismatched-image control ``probe_dfgari_{t}_L{k}``, ``probe_dari_{t}_L{k}``,
  ``probe_dmiou_{t}_L{k}``: the score minus the same score against the islands of another probe
  image (image ``b``'s masks against image ``(b + 1) mod B``'s islands), exactly 0 for islands
  that ignore the image (:func:`bioglom.scores.mismatched_control`; docs/design.md §10);
* ``probe_wnesting_L{k}`` (``k < K-1``): nesting weighted by island size, single-column islands
  left out (:func:`bioglom.scores.weighted_nesting`), and its mismatched-image control
  ``probe_dwnesting_L{k}`` (level ``k+1``'s islands taken from another image);
* collapse (:mod:`bioglom.diagnostics`): ``probe_cos_L{k}`` (mean cosine between two columns
  of one image), ``probe_cos_across_L{k}`` (between two images at one column),
  ``probe_std_L{k}`` (per-dimension std of the normalised embeddings), ``probe_rank_L{k}``
  (effective rank, RankMe), ``probe_norm_L{k}`` (mean embedding norm);
* ``probe_ensemble_L{k}`` (``k >= 1``): the ensemble ratio of the bottom-up predictions for
  level ``k`` of columns whose level ``k-1`` embeddings form an island, scored against the
  consensus of the other contributions (:func:`bioglom.agreement.ensemble_effect`; < 1: the
  island's mean prediction beats single columns);
* ``probe_ensemble_others_L{k}`` (``k >= 1``): the same ratio over the columns of each
  ground-truth object (background left out; islands of level ``k-1`` when the probe has no
  masks), against a target the column did not shape: the lateral term of the settled level
  ``k`` with the column itself left out (:func:`bioglom.agreement.neighbour_target`), as the
  state's normalisation maps it;
* ``probe_agree_bu_L{k}`` (``k >= 1``), ``probe_agree_td_L{k}`` (``k < K-1``): how alike the
  columns' nets are on the same inputs (:func:`bioglom.agreement.column_agreement`; 1 for
  shared weights);

and for the whole model ``probe_recon_mse`` (reconstruction of the clean probe images from
level 0 after settling), ``probe_fill_mse`` (error on the removed pixels only, when the probe
images are corrupted with ``end_to_end.holes`` and ``hole_size``) and ``probe_linear_acc``
(a ridge-regression probe of one level's column-averaged embedding, fitted on 3/4 of a
held-out labelled set and scored on the rest, when the data has labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .agreement import column_agreement, ensemble_effect, neighbour_target
from .data import ImageSet
from .diagnostics import collapse_diagnostics, linear_probe_accuracy
from .islands import extract_islands
from .model import Glom
from .rules.base import corrupt
from .scores import column_labels, score_islands

__all__ = ["Probe", "probe_metric_names", "probe_truth", "TRUTH_MASKS", "DIAGNOSTICS", "SCORES"]

#: ground-truth names of the island scores, and the mask each is made from
TRUTH_MASKS = {"obj": "object_masks", "part": "part_masks"}


def probe_truth(images: ImageSet, grid: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """Column labels (majority over each patch) of the probe's masks, by truth name; None when
    the data has no masks or the image size is not a multiple of the grid."""
    h, w = images.size
    if h % grid[0] or w % grid[1]:
        return None
    truth = {
        name: column_labels(getattr(images, key), grid)
        for name, key in TRUTH_MASKS.items()
        if getattr(images, key) is not None
    }
    return truth or None


#: collapse diagnostics recorded per level: metric stem -> key of collapse_diagnostics
DIAGNOSTICS = {
    "probe_cos": "cos_within",
    "probe_cos_across": "cos_across",
    "probe_std": "std",
    "probe_rank": "rank",
    "probe_norm": "norm",
}


#: how many shared inputs the column-agreement measure feeds every column
AGREEMENT_INPUTS = 64


#: island scores recorded per level and ground truth: metric stem -> key of score_islands
SCORES = ("fgari", "ari", "miou")


def probe_metric_names(levels: int, truth: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every metric :meth:`Probe.evaluate` may return, for ``levels`` levels and ground-truth
    names ``truth`` (e.g. ``("obj", "part")``)."""
    per_level = [f"probe_islands_L{k}" for k in range(levels)]
    per_level += [f"probe_island_size_L{k}" for k in range(levels)]
    per_level += [f"probe_nesting_L{k}" for k in range(levels - 1)]
    per_level += [f"probe_island_ari_across_L{k}" for k in range(levels)]
    per_level += [f"probe_{s}_{t}_L{k}" for t in truth for s in SCORES for k in range(levels)]
    per_level += [f"probe_d{s}_{t}_L{k}" for t in truth for s in SCORES for k in range(levels)]
    per_level += [f"probe_{s}_L{k}" for s in ("wnesting", "dwnesting") for k in range(levels - 1)]
    per_level += [f"{stem}_L{k}" for stem in DIAGNOSTICS for k in range(levels)]
    per_level += [f"probe_ensemble_L{k}" for k in range(1, levels)]
    per_level += [f"probe_ensemble_others_L{k}" for k in range(1, levels)]
    per_level += [f"probe_agree_bu_L{k}" for k in range(1, levels)]
    per_level += [f"probe_agree_td_L{k}" for k in range(levels - 1)]
    per_level += [f"probe_linear_acc_L{k}" for k in range(levels)]
    linear = ("probe_linear_acc", "probe_linear_acc_pixels")
    return ("probe_recon_mse", "probe_fill_mse", *linear, *per_level)


@dataclass
class Probe:
    """A fixed batch of held-out images, with a fixed corruption, evaluated without learning."""

    images: Tensor  # [B, C, H, W] on the model's device
    holes: int
    hole_size: float
    island_threshold: float
    seed: int = 0
    island_method: str = "connected"
    truth: dict[str, np.ndarray] | None = None  # name -> [B, H_g, W_g] column labels
    linear_images: Tensor | None = None  # [M, C, H, W] labelled held-out images
    linear_labels: np.ndarray | None = None  # [M]
    linear_level: int = -1
    linear_batch: int = 64

    def __post_init__(self) -> None:
        self._pixel_acc: float | None = None  # the raw pixels' linear-probe accuracy (fixed)
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
            res = model.settle(self.images, check=False, generator=gen)
            state = res.state
            steps = res.steps
            recon = model.decode(state)
            last = model.step(state, res.precision, self.images, steps - 1, steps, gen)
            filled = model.decode(model.settle(self.corrupted, check=False, generator=gen).state)
            agree_bu, agree_td = self._agreement(model, state)
            targets = self._targets_without_bottom_up(model, last, state)
            others = self._targets_from_others(model, state, steps)
            linear = self.linear_probe(model, gen)
        finally:
            model.train(was_training)
        metrics = {"probe_recon_mse": float(((recon - self.images) ** 2).mean())}
        m = self.hole_mask.expand_as(self.images)
        if bool(m.any()):
            metrics["probe_fill_mse"] = float(((filled - self.images)[m] ** 2).mean())
        metrics.update(linear)
        labels = extract_islands(state, model.grid, self.island_method, self.island_threshold)
        scores = score_islands(labels, self.truth)
        diag = collapse_diagnostics(state)
        for k in range(model.K):
            metrics[f"probe_islands_L{k}"] = float(scores["count"][k])
            metrics[f"probe_island_size_L{k}"] = float(scores["size"][k])
            metrics[f"probe_island_ari_across_L{k}"] = float(scores["ari_across"][k])
            if k < model.K - 1:
                metrics[f"probe_nesting_L{k}"] = float(scores["nesting"][k])
                metrics[f"probe_wnesting_L{k}"] = float(scores["wnesting"][k])
                metrics[f"probe_dwnesting_L{k}"] = float(scores["dwnesting"][k])
            for t in self.truth or {}:
                for stem in SCORES:
                    metrics[f"probe_{stem}_{t}_L{k}"] = float(scores[f"{stem}_{t}"][k])
                    metrics[f"probe_d{stem}_{t}_L{k}"] = float(scores[f"d{stem}_{t}"][k])
            for stem, key in DIAGNOSTICS.items():
                metrics[f"{stem}_L{k}"] = float(diag[key][k])
        for k in range(1, model.K):
            metrics[f"probe_ensemble_L{k}"] = ensemble_effect(
                last.bottom_up[k], targets[k], labels[k - 1]
            )
        objects = (self.truth or {}).get("obj")
        for k in range(1, model.K):
            groups, include = (labels[k - 1], None) if objects is None else (objects, objects > 0)
            metrics[f"probe_ensemble_others_L{k}"] = ensemble_effect(
                last.bottom_up[k], others[k], groups, include
            )
        for k in range(1, model.K):
            metrics[f"probe_agree_bu_L{k}"] = float(agree_bu[k - 1])
        for k in range(model.K - 1):
            metrics[f"probe_agree_td_L{k}"] = float(agree_td[k])
        snap = {
            "state": state.cpu().numpy().astype(np.float16),
            "islands": labels,
            "reconstruction": recon.cpu().numpy().astype(np.float16),
        }
        return metrics, snap

    @torch.no_grad()
    def linear_probe(self, model: Glom, gen: torch.Generator) -> dict[str, float]:
        """Accuracy of a ridge probe (fitted on the first 3/4 of the labelled set, scored on
        the rest) on the column-averaged embedding of every level (``probe_linear_acc_L{k}``;
        ``probe_linear_acc`` is that of ``run.linear_probe_level``), and on the raw pixels of
        the same images (``probe_linear_acc_pixels``): what the levels know about the image,
        beside what the image itself offers a linear read-out."""
        if self.linear_images is None or self.linear_labels is None:
            return {}
        y = np.asarray(self.linear_labels)
        fit = (3 * len(y)) // 4
        if fit < 2 or fit == len(y):
            return {}
        feats: list[list[Tensor]] = [[] for _ in range(model.K)]
        for chunk in self.linear_images.split(self.linear_batch):
            state = model.settle(chunk, check=False, generator=gen).state
            for k in range(model.K):
                feats[k].append(state[k].mean(dim=0).float().cpu())  # [b, d]
        out = {}
        for k in range(model.K):
            x = torch.cat(feats[k]).numpy()
            acc = linear_probe_accuracy(x[:fit], y[:fit], x[fit:], y[fit:])
            out[f"probe_linear_acc_L{k}"] = acc
        out["probe_linear_acc"] = out[f"probe_linear_acc_L{self.linear_level % model.K}"]
        if self._pixel_acc is None:
            x = self.linear_images.flatten(1).float().cpu().numpy()
            self._pixel_acc = linear_probe_accuracy(x[:fit], y[:fit], x[fit:], y[fit:])
        out["probe_linear_acc_pixels"] = self._pixel_acc
        return out

    @staticmethod
    @torch.no_grad()
    def _targets_without_bottom_up(model: Glom, out, state: Tensor) -> Tensor:
        """The consensus of top-down, previous and lateral alone (weights renormalised), as the
        state's normalisation would map it: a target the bottom-up predictions did not shape."""
        a = out.weights.clone()
        a[0] = 0.0  # CONTRIBUTIONS[0] is bottom_up
        a = a / a.sum(0, keepdim=True).clamp_min(1e-12)
        td = torch.cat([out.top_down, torch.zeros_like(state[:1])], 0)
        mix = a[1].view(-1, 1, 1, 1) * td + a[2].view(-1, 1, 1, 1) * state
        mix = mix + a[3].view(-1, 1, 1, 1) * out.lateral
        return model.norm(mix)

    @staticmethod
    @torch.no_grad()
    def _targets_from_others(model: Glom, state: Tensor, steps: int) -> Tensor:
        """``[K, N, B, d]``: at every level the lateral term of eq. 3.1 on the settled state
        with each column left out of its own softmax, at the last step's inverse temperature,
        normalised as the state is: the consensus of the other columns alone."""
        beta = model.beta(steps - 1, steps)
        means = []
        for k in range(model.K):
            index, valid = model.neighbours(k)
            means.append(neighbour_target(state[k], index, valid, beta[k]))
        return model.norm(torch.stack(means))

    def _agreement(self, model: Glom, state: Tensor) -> tuple[Tensor, Tensor]:
        """Column agreement of the bottom-up and top-down nets on inputs drawn (always the same
        ones) from the probe's settled embeddings of their source levels."""
        K, N, B, d = state.shape
        g = torch.Generator().manual_seed(self.seed)
        pick = torch.randint(0, N * B, (AGREEMENT_INPUTS,), generator=g).to(state.device)
        pooled = state.reshape(K, N * B, d)[:, pick]  # [K, M, d]
        loc = None  # the location codes of random columns, for the nets that take them
        source = model.location if model.location is not None else model.bu_location
        if source is not None:
            cols = torch.randint(0, N, (AGREEMENT_INPUTS,), generator=g).to(state.device)
            loc = source[:, cols, 0]  # [K-1, M, e]
        bu_loc = None if model.bu_location is None else loc
        td_loc = None if model.location is None else loc
        transform = lambda y: model.split_prediction(y)[0]  # noqa: E731
        bu = column_agreement(model.bottom_up, pooled[:-1], N, extra=bu_loc, transform=transform)
        td = column_agreement(model.top_down, pooled[1:], N, extra=td_loc, transform=transform)
        return bu.cpu(), td.cpu()
