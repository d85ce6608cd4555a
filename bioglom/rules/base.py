"""What every learning rule shares: the interface, the optimiser, image corruption."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..config import Config, TrainConfig
from ..model import Glom

__all__ = ["LearningRule", "ChangeMeter", "make_optimizer", "corrupt", "HOLE_FILL"]

#: value written into the missing regions of a corrupted image (mid-grey, so that a hole is
#: not mistaken for the black background)
HOLE_FILL = 0.5


def make_optimizer(
    params, train: TrainConfig, lr: float | None = None, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """``train.optimizer`` (Adam or SGD) over ``params`` with ``train.lr`` and
    ``train.weight_decay``, or the ``lr`` and ``weight_decay`` given.

    Both work element-wise, so unshared columns keep learning independently. They take
    PyTorch's fused implementation where every parameter is a float tensor on the CPU or a CUDA
    device: the same update in one pass over each tensor (measured on a 2-core CPU, 38.6 M
    unshared parameters: Adam 31 ms fused against 147 ms with ``foreach``;
    ``docs/performance-notes.md``).
    """
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    opts = {
        "lr": train.lr if lr is None else lr,
        "weight_decay": train.weight_decay if weight_decay is None else weight_decay,
        "fused": fused or None,
    }
    if train.optimizer == "adam":
        return torch.optim.Adam(params, **opts)
    return torch.optim.SGD(params, **opts)


class ChangeMeter:
    """The L2 norm of the change an optimiser step makes to named groups of parameters,
    ``|W_after - W_before|``, measured in buffers kept between steps (allocating a fresh copy
    of every weight at each update cost more than the update itself for unshared columns)."""

    def __init__(self, groups: dict[str, list[Tensor]]):
        self.groups = groups
        self._before: dict[str, list[Tensor]] = {}

    def step(self, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
        """Run ``optimizer.step()``; return ``{group: 0-d norm of its change}``."""
        with torch.no_grad():
            for name, ps in self.groups.items():
                if name not in self._before:
                    self._before[name] = [torch.empty_like(p) for p in ps]
                for p, b in zip(ps, self._before[name], strict=True):
                    b.copy_(p)
            optimizer.step()
            out = {}
            for name, ps in self.groups.items():
                if not ps:
                    out[name] = torch.zeros(())
                    continue
                sq = [
                    torch.linalg.vector_norm(b.sub_(p)) ** 2
                    for p, b in zip(ps, self._before[name], strict=True)
                ]
                out[name] = torch.sqrt(torch.stack(sq).sum())
        return out


def corrupt(
    images: Tensor, holes: int, hole_size: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Remove ``holes`` square regions of side ``round(hole_size * H)`` from each image.

    Returns
    -------
    (corrupted images ``[B, C, H, W]`` with the holes set to ``HOLE_FILL``,
     bool mask ``[B, 1, H, W]``, True where a pixel was removed)
    """
    B, _, H, W = images.shape
    side = max(1, round(hole_size * min(H, W))) if hole_size > 0 else 0
    dev = generator.device if generator is not None else torch.device("cpu")
    mask = torch.zeros(B, 1, H, W, dtype=torch.bool, device=dev)
    if holes > 0 and side > 0:
        top = torch.randint(0, H - side + 1, (B, holes), generator=generator, device=dev)
        left = torch.randint(0, W - side + 1, (B, holes), generator=generator, device=dev)
        rows = torch.arange(H, device=dev).view(1, 1, H, 1)
        cols = torch.arange(W, device=dev).view(1, 1, 1, W)
        t, lft = top.view(B, holes, 1, 1), left.view(B, holes, 1, 1)
        inside = (rows >= t) & (rows < t + side) & (cols >= lft) & (cols < lft + side)
        mask = inside.any(dim=1, keepdim=True)
    mask = mask.to(images.device)
    return torch.where(mask, torch.full_like(images, HOLE_FILL), images), mask


class LearningRule:
    """Interface of a learning rule.

    Subclasses set :attr:`name` and :attr:`metric_names` and implement :meth:`update`.
    """

    #: the ``train.rule`` value that selects this rule
    name: ClassVar[str] = ""
    #: names of the scalars :meth:`update` returns, recorded as run metrics
    metric_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: Glom, config: Config):
        self.model = model
        self.config = config
        self.optimizer = make_optimizer(model.parameters(), config.train)
        #: the settled state ``[K, N, B, d]`` of the last batch (detached): what a day saw
        self.last_state: Tensor | None = None

    def update(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One weight update on a batch ``[B, C, H, W]``; returns 0-d tensors (no host sync)."""
        raise NotImplementedError

    def _apply(self, loss: Tensor) -> Tensor:
        """Back-propagate ``loss``, clip by ``train.grad_clip`` (0: off), step; returns the
        gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.train.grad_clip
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        self.optimizer.step()
        return norm.detach()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
