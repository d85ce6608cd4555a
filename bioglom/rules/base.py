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
    ``|W_after - W_before|``, without a copy of the weights.

    For the optimisers of :func:`make_optimizer` the change is read off the optimiser's own
    quantities, one parameter (and one slice of its first axis) at a time:

    * SGD (no momentum): ``W_before - W_after = lr (g + lambda W_before)``, before the step;
    * Adam: ``W_before - W_after = lr / (1 - beta1^t) m / (sqrt(v / (1 - beta2^t)) + eps)``
      with the moments ``m, v`` and step count ``t`` after the step (PyTorch's Adam update).

    Any other optimiser is measured by copying the weights before the step. (A copy of every
    weight, allocated at each update, cost more than the update itself for unshared columns
    and held the weights twice at the peak.)
    """

    def __init__(self, groups: dict[str, list[Tensor]]):
        self.groups = groups

    def step(self, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
        """Run ``optimizer.step()``; return ``{group: 0-d norm of its change}``."""
        kind = _closed_form(optimizer)
        # the optimiser leaves a parameter without a gradient alone (its change is 0)
        stepped = {id(p) for ps in self.groups.values() for p in ps if p.grad is not None}
        with torch.no_grad():
            before: dict[str, list[Tensor]] = {}
            sq: dict[str, list[Tensor]] = {n: [] for n in self.groups}
            for name, ps in self.groups.items():
                if kind == "sgd":
                    sq[name] = [self._sgd_sq(optimizer, p) for p in ps]
                elif kind is None:
                    before[name] = [p.clone() for p in ps]
            optimizer.step()
            for name, ps in self.groups.items():
                if kind == "adam":
                    sq[name] = [
                        self._adam_sq(optimizer, p)
                        if id(p) in stepped
                        else torch.zeros((), device=p.device)
                        for p in ps
                    ]
                elif kind is None:
                    sq[name] = [(b - p).pow(2).sum() for p, b in zip(ps, before[name], strict=True)]
            return {
                n: torch.sqrt(torch.stack(v).sum()) if v else torch.zeros(()) for n, v in sq.items()
            }

    @staticmethod
    def _group(optimizer: torch.optim.Optimizer, p: Tensor) -> dict:
        return next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))

    def _sgd_sq(self, optimizer: torch.optim.Optimizer, p: Tensor) -> Tensor:
        g = self._group(optimizer, p)
        if p.grad is None:
            return torch.zeros((), device=p.device)
        total = torch.zeros((), device=p.device)
        for w, d in zip(_rows(p), _rows(p.grad), strict=True):
            total = total + torch.linalg.vector_norm(d + g["weight_decay"] * w) ** 2
        return total * g["lr"] ** 2

    def _adam_sq(self, optimizer: torch.optim.Optimizer, p: Tensor) -> Tensor:
        g, st = self._group(optimizer, p), optimizer.state.get(p, {})
        if "exp_avg" not in st:  # no gradient yet: Adam left it alone
            return torch.zeros((), device=p.device)
        b1, b2 = g["betas"]
        t = st["step"].to(torch.float64)
        size = g["lr"] / (1 - b1**t)
        root_bc2 = torch.sqrt(1 - b2**t)
        total = torch.zeros((), device=p.device)
        for m, v in zip(_rows(st["exp_avg"]), _rows(st["exp_avg_sq"]), strict=True):
            den = v.sqrt().div_(root_bc2.to(v.dtype)).add_(g["eps"])
            total = total + torch.linalg.vector_norm(torch.div(m, den, out=den)) ** 2
        return total * (size**2).to(total.dtype)


def _rows(x: Tensor) -> tuple[Tensor, ...]:
    """A tensor cut along its first axis, so that temporaries stay a fraction of its size."""
    return x.unbind(0) if x.dim() > 1 else (x,)


def _closed_form(optimizer: torch.optim.Optimizer) -> str | None:
    """ "adam" or "sgd" where :class:`ChangeMeter` knows the update in closed form, else None."""
    groups = optimizer.param_groups
    if type(optimizer) is torch.optim.Adam and all(
        not g["amsgrad"] and not g["maximize"] and not g.get("decoupled_weight_decay", False)
        for g in groups
    ):
        return "adam"
    if type(optimizer) is torch.optim.SGD and all(
        g["momentum"] == 0 and not g["maximize"] for g in groups
    ):
        return "sgd"
    return None


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
    #: whether :meth:`update` takes the batch's column labels, ``truth={"obj", "part"}``
    needs_truth: ClassVar[bool] = False
    #: whether :meth:`update` also takes a video ``[T, B, C, H, W]``, one frame per settling
    #: step (``data.source = "moving"``)
    trains_on_video: ClassVar[bool] = False

    @classmethod
    def check_config(cls, config: Config) -> None:
        """Raise ConfigError where ``config`` asks this rule for something it cannot do;
        :meth:`bioglom.config.Config.validate` calls it for the configured rule."""

    def __init__(self, model: Glom, config: Config):
        self.check_config(config)
        self.model = model
        self.config = config
        self.optimizer = make_optimizer(model.parameters(), config.train)
        #: the settled state ``[K, N, B, d]`` of the last batch (detached): what a day saw
        self.last_state: Tensor | None = None

    def update(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One weight update on a batch ``[B, C, H, W]`` (or a video ``[T, B, C, H, W]`` where
        :attr:`trains_on_video`); returns 0-d tensors (no host sync)."""
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
