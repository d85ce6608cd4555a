"""Sleep: dreams generated top-down and negative learning for the bottom-up nets (§12.2).

"If the highest-level embeddings have the ability to generate sequences at the highest level,
the top-down networks could be used to generate sequences of embeddings at every level in each
column. This process does not require any attention between columns ... Then we simply do the
negative learning for the bottom-up models using the same length of real-time window as is
used when awake." (§12.2)

* :class:`ReplayMemory` -- a bounded ring buffer of the top-level states ``[N, d]`` of images
  seen by day.
* :func:`dream` -- a replayed top level, perturbed, drifts by a small random walk for ``T``
  steps (the day's number of settling steps); at every step each lower level becomes the
  (normalised) weighted mean of its top-down prediction and its previous state. No bottom-up
  and no lateral contribution: nothing passes between columns.
* :func:`negative_loss` -- each bottom-up prediction ``BU_l(e_{l-1})`` of a dream is pushed away
  from an unrelated level-``l`` embedding -- another dream's at the same column and step
  (``night.negatives = "other_dreams"``) -- only while their cosine exceeds the margin
  (footnote 24: separation, not distance): ``relu(cos(BU_l(a), e_l(b)) - m)``.
  :func:`negatives` also knows ``"near_frames"`` (the same dream ``night.gap`` steps away,
  §12.2's negatives for video with real motion), but the config refuses it (docs/design.md §4.3): a
  dream is a static replayed top level plus small noise, so its frames near in time are
  near-copies of the target (cosine 0.95-0.98 two steps apart after 40 day updates of the
  default config, against 0.2-0.6 to other dreams), and pushing from them is anti-learning.
* :class:`Sleep` -- one night update: dream a batch, apply the negative loss (and optionally
  co-distillation on the dreams, §12.2's last paragraph) to the bottom-up nets, with its own
  optimiser. Level 0's bottom-up net is the front end, which reads pixels that dreams do not
  have; it is not trained at night. A night before any day has nothing to replay: its dreams
  start from random top-level embeddings (unit Gaussian, normalised) -- no perception, no
  attention at night.

The top level's random walk stands in for the generator of top-level sequences that §12.2
assumes; in gaussian mode the dreams carry means only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import CONTRIBUTIONS, Config
from ..model import Glom
from .base import ChangeMeter, make_optimizer

__all__ = ["ReplayMemory", "dream", "negatives", "negative_loss", "Sleep", "NIGHT_METRICS"]

#: metrics a night update returns
NIGHT_METRICS = ("night_loss", "night_active", "night_positive", "update_norm_night")


class ReplayMemory:
    """The last ``capacity`` top-level states ``[N, d]`` (one per image), a ring buffer."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity: expected >= 1, got {capacity}")
        self.capacity = capacity
        self.items: Tensor | None = None  # [capacity, N, d]
        self.size = 0
        self.next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, top: Tensor) -> None:
        """Store the top-level states of a batch, ``top [N, B, d]`` (detached, copied)."""
        x = top.detach().transpose(0, 1)  # [B, N, d]
        if self.items is None:
            self.items = torch.empty(self.capacity, *x.shape[1:], dtype=x.dtype, device=x.device)
        for row in x[-self.capacity :]:
            self.items[self.next] = row
            self.next = (self.next + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[N, n, d]``: n stored states drawn uniformly, without replacement while the memory
        holds at least n (so that no dream is pushed from a copy of itself)."""
        if self.size == 0:
            raise RuntimeError("the replay memory is empty: nothing was seen by day yet")
        if self.size >= n:
            idx = torch.randperm(self.size, generator=generator)[:n]
        else:
            idx = torch.randint(0, self.size, (n,), generator=generator)
        return self.items[idx.to(self.items.device)].transpose(0, 1)

    def state_dict(self) -> dict:
        return {"items": self.items, "size": self.size, "next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.items, self.size, self.next = state["items"], state["size"], state["next"]


def _noise(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


@torch.no_grad()
def dream(
    model: Glom,
    top: Tensor,
    steps: int,
    perturb: float = 0.0,
    drift: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A sequence of states generated top-down from top-level embeddings.

    Parameters
    ----------
    top : ``[N, B, d]`` top-level states (e.g. from the replay memory)
    steps : T, the length of the dream

    Returns
    -------
    ``[T+1, K, N, B, d]``: the cascade from the (perturbed) top level, then one state per step
    """
    K = model.K
    top = top[None]  # [1, N, B, d]
    levels = [None] * K
    levels[K - 1] = model.norm(top + perturb * _noise(top.shape, top, generator), level=K - 1)
    for k in range(K - 2, -1, -1):  # the first cascade: each level from the one above
        td = model.top_down(levels[k + 1], extra=_loc(model, k), level=k)
        levels[k] = model.norm(model.split_prediction(td)[0], level=k)
    e = torch.cat(levels, 0)
    out = [e]
    i_td, i_prev = CONTRIBUTIONS.index("top_down"), CONTRIBUTIONS.index("previous")
    for t in range(steps):
        a = model.contribution_weights(t, steps)
        w_td, w_prev = a[i_td, :-1], a[i_prev, :-1]
        total = (w_td + w_prev).clamp_min(1e-12)
        td = model.split_prediction(model.top_down(e[1:], extra=model.location))[0]
        lower = (w_td / total).view(-1, 1, 1, 1) * td + (w_prev / total).view(-1, 1, 1, 1) * e[:-1]
        top_next = e[-1:] + drift * _noise(e[-1:].shape, e, generator)
        e = model.norm(torch.cat([lower, top_next], 0))
        out.append(e)
    return torch.stack(out)


def _loc(model: Glom, k: int) -> Tensor | None:
    return None if model.location is None else model.location[k : k + 1]


def negative_loss(pred: Tensor, others: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """``relu(cos(pred, others) - margin)``, mean over images, summed over levels and columns.

    Parameters
    ----------
    pred, others : ``[L, N, B, d]``

    Returns
    -------
    (loss, share of pairs closer than the margin)
    """
    cos = F.cosine_similarity(pred, others, dim=-1)  # [L, N, B]
    loss = F.relu(cos - margin).mean(dim=2).sum()
    return loss, (cos > margin).float().mean()


def negatives(seq: Tensor, t: int, kind: str, gap: int = 2) -> Tensor:
    """The embeddings ``[K-1, N, B, d]`` (levels 1..K-1) that step ``t``'s predictions are
    pushed from: another dream at the same column and step (``other_dreams``), or the same
    dream ``gap`` steps later -- earlier when that runs past the end (``near_frames``: only
    for dreams that move; the config refuses it for today's dreams, whose near frames are
    near-copies of the target)."""
    if kind == "other_dreams":
        return seq[t, 1:].roll(1, dims=2)
    if kind == "near_frames":
        last = seq.shape[0] - 1
        if gap > last:
            raise ValueError(f"gap {gap} does not fit a dream of {last} steps")
        s = t + gap if t + gap <= last else t - gap
        return seq[s, 1:]
    raise ValueError(f"unknown negatives {kind!r}")


class Sleep:
    """Night updates of a model's bottom-up nets on dreams (docs/design.md §4.3, §5)."""

    def __init__(self, model: Glom, config: Config):
        self.model, self.config = model, config
        params = [p for p in model.bottom_up.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(params, config.train, lr=config.night.lr, weight_decay=0.0)
        self._meter: ChangeMeter | None = None
        self.memory = ReplayMemory(config.night.replay_size)

    def update(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One night update: dream a batch and push bottom-up predictions apart."""
        nc, steps = self.config.night, self.config.settle.steps
        model = self.model
        was_training = model.training
        model.eval()  # dreaming does not move homeostatic set points
        try:
            if len(self.memory):
                top = self.memory.sample(nc.batch_size, generator)
            else:  # nothing seen by day yet: innate, random top-level embeddings
                ref = model.weights_start
                top = _noise((model.N, nc.batch_size, model.d), ref, generator)
            seq = dream(model, top, steps, nc.perturb, nc.drift, generator)
        finally:
            model.train(was_training)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=seq.device)
        active = torch.zeros((), device=seq.device)
        positive = torch.zeros((), device=seq.device)
        for t in range(steps + 1):
            e = seq[t]
            pred = model.split_prediction(model.bottom_up(e[:-1], extra=model.bu_location))[0]
            others = negatives(seq, t, nc.negatives, nc.gap)
            loss, frac = negative_loss(pred, others, nc.margin)
            total = loss
            if nc.positive and t < steps:  # co-distil toward the dream's next state
                pos = 0.5 * ((pred - seq[t + 1][1:]) ** 2).mean(dim=(2, 3)).sum()
                total = total + pos
                positive = positive + pos.detach()
            total.backward()
            loss_sum, active = loss_sum + loss.detach(), active + frac
        if self._meter is None:
            self._meter = ChangeMeter({"night": list(self.optimizer.param_groups[0]["params"])})
        change = self._meter.step(self.optimizer)["night"]
        n = (steps + 1) * model.N
        return {
            "night_loss": loss_sum / n,
            "night_active": active / (steps + 1),
            "night_positive": positive / (steps * model.N),
            "update_norm_night": change,
        }

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.memory.load_state_dict(state["memory"])
        if self.memory.items is not None:  # a checkpoint is read onto the CPU
            self.memory.items = self.memory.items.to(self.model.device)
