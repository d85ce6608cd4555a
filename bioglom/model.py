"""The GLOM model: columns of bottom-up and top-down nets, settling by consensus (§1, §3, §9.1).

At settling step ``t`` every level ``l`` of every column is updated at once, from the state of
step ``t`` only (docs/design.md §3):

* ``bu_l = BU_l(e_{l-1})`` (``BU_l(e_{l-1}, location)`` with ``model.bottom_up_location``); for
  ``l = 0`` the front end on the current frame;
* ``td_l = TD_l(e_{l+1}, location)``; none at the top level;
* ``prev_l = e_l``;
* ``lat_l(x) = sum_y w_xy e_l(y)``, ``w_xy = softmax_y(beta_l(t) e_l(x) . e_l(y))`` (eq. 3.1);
* ``e_l(t+1) = norm(consensus(bu, td, prev, lat; a(t)))``.

With ``consensus.normalise_predictions`` the bottom-up and top-down predictions are first
standardised per vector, so that all four contributions are on the state's scale and the
weights ``a`` mean what they say. The contribution weights ``a(t)`` and ``beta(t)`` move
linearly from their start to their end values over the steps, or over the first
``settle.ramp_steps`` steps and then hold (§3.4, §9.1). A static image is a sequence of
identical frames; a video ``[T, B, C, H, W]`` feeds frame ``t`` at step ``t`` (§11).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .columns import ColumnLinear, ColumnMLP
from .config import CONTRIBUTIONS, Config, ConfigError, per_level, saved_config
from .distributed import ColumnShard, check_shardable, column_slices
from .frontend import CnnFrontend, PatchDecoder, PatchFrontend, retina_fields
from .functional import (
    consensus_gaussian,
    consensus_mean,
    interpolate,
    location_encoding,
    normalise_weights,
)
from .lateral import LateralAttention
from .norm import StateNorm, standardise
from .tetrominoes import TETROMINO_SIZE

__all__ = ["Glom", "StepOutput", "SettleResult", "build_model", "image_geometry", "load_model"]

#: log-precisions predicted by the nets are squashed smoothly into (-L, L): L tanh(raw / L)
LOG_PRECISION_LIMIT = 8.0


@dataclass
class StepOutput:
    """Everything one settling step computed. Tensors ``[K, N, B, d]`` unless stated.

    Attributes
    ----------
    bottom_up : predictions of the bottom-up nets as they enter the consensus (standardised
        when ``consensus.normalise_predictions``); level 0 is the front end's
    top_down : ``[K-1, N, B, d]`` the top-down nets' predictions for levels ``0..K-2``, likewise
    lateral : attention-weighted neighbour average
    state : the consensus after normalisation, ``e(t+1)``: the teacher for local learning
    weights : ``[4, K]`` normalised contribution weights used (order of ``CONTRIBUTIONS``)
    bottom_up_raw, top_down_raw : the nets' mean outputs before standardisation (the same
        tensors as ``bottom_up``/``top_down`` when predictions are not normalised)
    precision, bottom_up_precision, top_down_precision, lateral_precision : gaussian mode only
    """

    bottom_up: Tensor
    top_down: Tensor
    lateral: Tensor
    state: Tensor
    weights: Tensor
    bottom_up_raw: Tensor | None = None
    top_down_raw: Tensor | None = None
    precision: Tensor | None = None
    bottom_up_precision: Tensor | None = None
    top_down_precision: Tensor | None = None
    lateral_precision: Tensor | None = None


@dataclass
class SettleResult:
    """Result of :meth:`Glom.settle`.

    Attributes
    ----------
    state : ``[K, N, B, d]`` the embeddings after the last step
    precision : ``[K, N, B, d]`` in gaussian mode, else None
    trajectory : ``[T+1, K, N, B, d]`` every state from the initial one, when asked
    steps : T
    """

    state: Tensor
    precision: Tensor | None
    trajectory: Tensor | None
    steps: int


class Glom(nn.Module):
    """GLOM with per-column (``sharing = "unshared"``) or shared nets.

    Build with :func:`build_model`. The only difference between the sharing modes is the
    column dimension ``C`` of every weight (``N`` or ``1``); ``isolated`` is ``unshared`` with
    the lateral contribution's weight set to 0.

    With a ``shard`` (:class:`~bioglom.distributed.ColumnShard`) the model holds one band of
    the grid's rows: ``N`` is then the number of columns it holds, :attr:`grid` stays the
    whole grid, its front end and decoder read and write the band's pixel rows
    (:meth:`own_pixels`), and lateral attention and pooled statistics exchange what they
    need with the other ranks (:mod:`bioglom.distributed`).
    """

    def __init__(
        self,
        config: Config,
        channels: int,
        image_size: tuple[int, int],
        shard: ColumnShard | None = None,
    ):
        super().__init__()
        m, fe, td, att = config.model, config.frontend, config.topdown, config.attention
        self.config = config
        p = fe.patch_size
        h, w = image_size
        if h % p or w % p:
            raise ConfigError(
                "frontend.patch_size", p, f"expected a divisor of the image size {h}x{w}"
            )
        self.channels, self.image_size, self.patch = channels, (h, w), p
        self._grid = (h // p, w // p)
        self.K, self.d = m.levels, m.dim
        #: the columns of the whole grid
        self.columns_total = self._grid[0] * self._grid[1]
        self.shard = shard if shard is not None and shard.world > 1 else None
        if self.shard is not None and tuple(self.shard.grid) != self._grid:
            raise ValueError(f"shard: made for grid {self.shard.grid}, the model's is {self._grid}")
        #: the columns this model holds (all of them unless sharded)
        self.N = self.columns_total if self.shard is None else self.shard.n
        self.columns = 1 if m.sharing == "shared" else self.N
        self.isolated = m.sharing == "isolated"
        self.gaussian = config.consensus.mode == "gaussian"
        out = 2 * self.d if self.gaussian else self.d
        K, C, d = self.K, self.columns, self.d

        hl = m.hidden_learning
        if fe.kind == "patch":
            fields = None
            if fe.retina == "foveated":
                fields = retina_fields(self._grid, p, fe.fovea_growth)
            self.frontend: nn.Module = PatchFrontend(
                channels, p, C, fe.hidden, out, m.activation, hl, fields=fields
            )
        else:
            self.frontend = CnnFrontend(channels, p, C, fe.cnn_channels, fe.cnn_layers, out, hl)
        loc_dim = 4 * td.location_freqs if td.location else 0
        bu_loc_dim = 4 * td.location_freqs if m.bottom_up_location else 0
        self.bottom_up = ColumnMLP(
            K - 1, C, d, m.hidden, out, m.hidden_layers, m.activation,
            extra_in=bu_loc_dim, hidden_learning=hl,
        )  # fmt: skip
        self.top_down = ColumnMLP(
            K - 1, C, d, m.hidden, out, m.hidden_layers, m.activation,
            extra_in=loc_dim, siren=td.siren, w0=td.siren_w0, hidden_learning=hl,
        )  # fmt: skip
        own_size = (h, w) if self.shard is None else (self.shard.local_grid[0] * p, w)
        self.decoder = PatchDecoder(channels, p, own_size, C, d, fe.hidden, m.activation, hl)
        per_column = m.homeostatic_stats == "columns" or (
            m.homeostatic_stats == "auto" and m.sharing != "shared"
        )
        self._per_column_stats = per_column
        self.norm = StateNorm(
            m.state_norm, K, self.N if per_column else 1, d, m.homeostatic_momentum,
            shard=self.shard,
        )  # fmt: skip
        self.normalise_predictions = config.consensus.normalise_predictions
        self.ramp_steps = config.settle.ramp_steps
        loc = location_encoding(self._grid, td.location_freqs)
        if self.shard is not None:
            loc = loc[slice(*self.shard.columns)]
        loc = loc[None, :, None, :].repeat(K - 1, 1, 1, 1)
        self.register_buffer("location", loc if loc_dim else None, persistent=False)
        self.register_buffer("bu_location", loc if bu_loc_dim else None, persistent=False)

        # eq. 3.1 on each level's neighbourhood (its buffers are not saved either)
        self.lateral_attention = LateralAttention(
            att, self._grid, K, d, seed=config.run.seed, isolated=self.isolated, shard=self.shard
        )
        # the settling schedule is the config's, never the saved weights' (not in state_dict)
        beta = {n: per_level(getattr(att, n), K) for n in ("beta_start", "beta_end")}
        for name, value in beta.items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32), persistent=False)
        cw = config.consensus
        for name in ("weights_start", "weights_end"):
            table = getattr(cw, name)
            value = torch.tensor([[table[c]] * K for c in CONTRIBUTIONS])
            self.register_buffer(name, value, persistent=False)
        present = torch.ones(len(CONTRIBUTIONS), K, dtype=torch.bool)
        present[CONTRIBUTIONS.index("top_down"), K - 1] = False  # no top-down at the top
        if self.isolated:  # the control: nothing moves between columns
            present[CONTRIBUTIONS.index("lateral"), :] = False
        self.register_buffer("present", present, persistent=False)

    # ------------------------------------------------------------------------------------
    def derived_buffers(self) -> dict[str, Tensor]:
        """The buffers computed from the config (settling schedule, neighbourhoods, location
        code), in this module and its submodules (``lateral_attention.neighbour_index_0``):
        never saved in :meth:`state_dict`, so that loaded weights cannot change them."""
        return {
            f"{prefix}.{n}" if prefix else n: b
            for prefix, module in self.named_modules()
            for n, b in module.named_buffers(recurse=False)
            if n in module._non_persistent_buffers_set
        }

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights (and homeostatic statistics) as :meth:`torch.nn.Module.load_state_dict`.

        The config decides the settling parameters, never the file. Weights saved before they
        left the state dict still carry them (``beta_start``, ``weights_end``, ...): where such
        a value equals this model's it is dropped; where it differs, loading is refused with a
        ``ValueError`` naming it, since the file was trained under another schedule than this
        config's (build the model from the file's own config with :func:`load_model`,
        overriding what should change). Such files name the neighbourhoods without the
        ``lateral_attention.`` prefix (``neighbour_index_0``).
        """
        state = dict(state_dict)
        derived = self.derived_buffers()
        derived.update({n.removeprefix("lateral_attention."): b for n, b in derived.items()})
        for name in [n for n in state if n in derived]:
            saved, own = state.pop(name), derived[name]
            same = saved.shape == own.shape and torch.equal(saved.to(own.device, own.dtype), own)
            if not same:
                raise ValueError(
                    f"{name}: the saved weights were made with {_short(saved)}, this model's "
                    f"config gives {_short(own)}; settling parameters come from the config "
                    "(load with bioglom.load_model(path, overrides=...))"
                )
        return super().load_state_dict(state, strict=strict, assign=assign)

    @property
    def grid(self) -> tuple[int, int]:
        """``(H_g, W_g)``; column ``n`` is at grid row ``n // W_g``, grid column ``n % W_g``
        (of the whole grid, also when the model holds one band of it)."""
        return self._grid

    def column_wise(self) -> set[str]:
        """The :meth:`state_dict` entries with one slice per column on axis 1 (``[K', N, ...]``):
        unshared weights and per-column homeostatic statistics; what a sharded model holds
        its own part of (:mod:`bioglom.distributed`)."""
        names = set()
        if self.config.model.sharing != "shared":
            for prefix, module in self.named_modules():
                if isinstance(module, ColumnLinear):
                    for n in ("weight", "bias", "feedback"):
                        if getattr(module, n) is not None:
                            names.add(f"{prefix}.{n}")
        if self._per_column_stats and self.norm.kind == "homeostatic":
            names |= {"norm.running_mean", "norm.running_var"}
        return names

    def own_pixels(self, images: Tensor) -> Tensor:
        """The pixel rows this model's columns read, ``[..., C, H, W] -> [..., C, h, W]``:
        all of them unless sharded (:mod:`bioglom.distributed`)."""
        if self.shard is None:
            return images
        return images[..., self.shard.pixel_rows(self.patch), :]

    def column_sum(self, x: Tensor) -> Tensor:
        """``x`` summed over all ranks' columns: ``x`` itself unless sharded (then an
        all-reduce of the per-rank sums; no gradient passes)."""
        if self.shard is None:
            return x
        return self.shard.all_reduce(x.detach().clone())

    @property
    def device(self) -> torch.device:
        return self.weights_start.device

    def neighbours(self, level: int) -> tuple[Tensor, Tensor]:
        """The fixed ``(index [N, M], valid [N, M])`` neighbourhood of a level."""
        return self.lateral_attention.neighbours(level)

    @property
    def lateral_plan(self) -> list[tuple[str, int]]:
        """How eq. 3.1 is evaluated at each level (:attr:`LateralAttention.plan`)."""
        return self.lateral_attention.plan

    def _ramp(self, t: int, steps: int) -> tuple[int, int]:
        """Where step ``t`` of ``steps`` sits on the start-to-end ramp."""
        if self.ramp_steps > 0:
            return min(t, self.ramp_steps - 1), self.ramp_steps
        return t, steps

    def contribution_weights(self, t: int, steps: int) -> Tensor:
        """``[4, K]`` weights ``a(t)`` (order of ``CONTRIBUTIONS``), absent ones 0, sum 1."""
        a = interpolate(self.weights_start, self.weights_end, *self._ramp(t, steps))
        return normalise_weights(a, self.present)

    def beta(self, t: int, steps: int) -> Tensor:
        """``[K]`` inverse temperatures at step ``t``."""
        return interpolate(self.beta_start, self.beta_end, *self._ramp(t, steps))

    # ------------------------------------------------------------------------------------
    def split_prediction(self, y: Tensor) -> tuple[Tensor, Tensor | None]:
        """A net's output -> (mean, precision) as they enter the consensus: the precision only
        in gaussian mode; with ``normalise_predictions`` the mean standardised per vector and
        the precision rescaled to match (``tau / r^2``)."""
        if self.gaussian:
            mu, log_tau = y.chunk(2, dim=-1)
            tau = torch.exp(LOG_PRECISION_LIMIT * torch.tanh(log_tau / LOG_PRECISION_LIMIT))
        else:
            mu, tau = y, None
        if self.normalise_predictions:
            mu, r = standardise(mu, with_scale=tau is not None)
            if tau is not None:
                tau = tau / (r * r)
        return mu, tau

    def initial_state(
        self, frame: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """``e(0)`` and its precision: by ``model.init``, a bottom-up pass, zeros or noise."""
        B = frame.shape[0]
        shape = (self.K, self.N, B, self.d)
        init = self.config.model.init
        if init == "zeros":
            e = torch.zeros(shape, device=frame.device)
        elif init == "noise":
            gen_device = generator.device if generator is not None else frame.device
            full = (self.K, self.columns_total, B, self.d)  # the same draw on every rank
            e = torch.randn(full, device=gen_device, generator=generator).to(frame.device)
            if self.shard is not None:
                e = e[:, slice(*self.shard.columns)]
        else:
            mus, taus = [], []
            mu, tau = self.split_prediction(self.frontend(self.own_pixels(frame)))
            for k in range(self.K):
                if k > 0:
                    loc = None if self.bu_location is None else self.bu_location[k - 1 : k]
                    mu, tau = self.split_prediction(self.bottom_up(mus[-1], extra=loc, level=k - 1))
                if tau is None:
                    mus.append(self.norm(mu, level=k))
                else:
                    mu, tau = self.norm(mu, level=k, precision=tau)
                    mus.append(mu)
                taus.append(tau)
            e = torch.cat(mus, 0)
            if self.gaussian:
                return e, torch.cat(taus, 0)
            return e, None
        e = self.norm(e)
        return e, (torch.ones_like(e) if self.gaussian else None)

    def lateral(
        self,
        e: Tensor,
        precision: Tensor | None,
        beta: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The lateral contribution of every level (eq. 3.1 on each level's neighbourhood);
        zeros for isolated columns, whose consensus gives it no weight. See
        :class:`~bioglom.lateral.LateralAttention`."""
        return self.lateral_attention(e, precision, beta, generator)

    def consensus(
        self, means: list[Tensor], precisions: list[Tensor | None], a: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """``e(t+1) = norm(consensus(bu, td, prev, lat; a))`` and its precision (gaussian mode).

        ``means`` and ``precisions`` in the order of ``CONTRIBUTIONS``; the top-down ones cover
        levels ``0..K-2``: the top level's enters as 0 with precision 1, and ``a`` gives it no
        weight there.
        """
        bu, td, prev, lat = means
        pad = torch.zeros_like(prev[:1])
        means = [bu, torch.cat([td, pad], 0), prev, lat]
        if not self.gaussian:
            return self.norm(consensus_mean(means, a)), None
        bu_tau, td_tau, prev_tau, lat_tau = precisions
        precisions = [bu_tau, torch.cat([td_tau, pad + 1.0], 0), prev_tau, lat_tau]
        mu, tau = consensus_gaussian(means, precisions, a)
        return self.norm(mu, precision=tau)

    def step(
        self,
        e: Tensor,
        precision: Tensor | None,
        frame: Tensor,
        t: int,
        steps: int,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One synchronous settling step ``e(t) -> e(t+1)`` of all levels and columns.

        Gradients flow through whatever the caller passes: a local learning rule passes a
        detached ``e`` so that nothing reaches earlier steps.
        """
        # BU_l(e_{l-1}) (and the location, with model.bottom_up_location)
        bu_out = torch.cat(
            [
                self.frontend(self.own_pixels(frame)),
                self.bottom_up(e[:-1], extra=self.bu_location),
            ],
            0,
        )
        td_out = self.top_down(e[1:], extra=self.location)  # TD_l(e_{l+1}, location)
        bu_mu, bu_tau = self.split_prediction(bu_out)
        td_mu, td_tau = self.split_prediction(td_out)
        # lat_l(x) = sum_y w_xy e_l(y), w_xy = softmax_y(beta_l(t) e_l(x) . e_l(y))  (eq. 3.1)
        lat_mu, lat_tau = self.lateral_attention(e, precision, self.beta(t, steps), generator)
        a = self.contribution_weights(t, steps)  # a(t)
        # e(t+1) = norm(consensus(bu, td, prev = e, lat; a(t)))
        state, tau = self.consensus(
            [bu_mu, td_mu, e, lat_mu], [bu_tau, td_tau, precision, lat_tau], a
        )
        return StepOutput(
            bottom_up=bu_mu,
            top_down=td_mu,
            lateral=lat_mu,
            state=state,
            weights=a,
            bottom_up_raw=bu_out[..., : self.d],
            top_down_raw=td_out[..., : self.d],
            precision=tau,
            bottom_up_precision=bu_tau,
            top_down_precision=td_tau,
            lateral_precision=lat_tau,
        )

    # ------------------------------------------------------------------------------------
    def check_images(self, images: Tensor | np.ndarray) -> Tensor:
        """Validate images ``[B, C, H, W]`` or a video ``[T, B, C, H, W]`` (values in [0, 1])
        and return them as float32 on the model's device; raises ``ValueError`` otherwise."""
        if isinstance(images, np.ndarray):
            if not (np.issubdtype(images.dtype, np.floating) or images.dtype == np.uint8):
                raise ValueError(
                    "images: expected a float array with values in [0, 1], "
                    f"got dtype {images.dtype}"
                )
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, Tensor):
            raise ValueError(f"images: expected a torch.Tensor or numpy array, got {type(images)}")
        if images.dtype == torch.uint8:
            raise ValueError("images: expected float values in [0, 1], got uint8 (divide by 255)")
        if not images.is_floating_point():
            raise ValueError(
                f"images: expected a float tensor with values in [0, 1], got {images.dtype}"
            )
        C, (H, W) = self.channels, self.image_size
        if images.dim() not in (4, 5) or tuple(images.shape[-3:]) != (C, H, W):
            raise ValueError(
                f"images: expected shape [B, {C}, {H}, {W}] (static) or [T, B, {C}, {H}, {W}] "
                f"(video), got {list(images.shape)}"
            )
        if images.numel() == 0:
            raise ValueError(f"images: expected at least one image, got shape {list(images.shape)}")
        lo, hi = float(images.min()), float(images.max())
        if not (0.0 <= lo and hi <= 1.0):  # also false for NaN
            raise ValueError(f"images: expected values in [0, 1], got min {lo:.4g}, max {hi:.4g}")
        return images.to(device=self.device, dtype=torch.float32)

    def settle(
        self,
        images: Tensor | np.ndarray,
        steps: int | None = None,
        return_trajectory: bool = False,
        generator: torch.Generator | None = None,
        check: bool = True,
    ) -> SettleResult:
        """Run the settling process.

        Parameters
        ----------
        images : ``[B, C, H, W]`` static images (repeated as identical frames) or a video
            ``[T, B, C, H, W]`` fed one frame per step; values in [0, 1]
        steps : number of steps T; default ``settle.steps`` for images, T for a video (at
            most the number of frames)
        return_trajectory : also return every state ``[T+1, K, N, B, d]``
        generator : random source for resampled Gaussian neighbourhoods and noise init
        check : validate the images (a caller that already did may skip it)
        """
        x = self.check_images(images) if check else images
        video = x.dim() == 5
        if steps is None:
            steps = x.shape[0] if video else self.config.settle.steps
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
        if video and steps > x.shape[0]:
            raise ValueError(f"steps: a video of {x.shape[0]} frames allows at most {x.shape[0]}")
        e, tau = self.initial_state(x[0] if video else x, generator)
        traj = [e] if return_trajectory else None
        for t in range(steps):
            out = self.step(e, tau, x[t] if video else x, t, steps, generator)
            e, tau = out.state, out.precision
            if traj is not None:
                traj.append(e)
        return SettleResult(
            state=e,
            precision=tau,
            trajectory=torch.stack(traj) if traj is not None else None,
            steps=steps,
        )

    def decode(self, state: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` reconstructed from level 0 of a state ``[K, N, B, d]``
        (a sharded model: its band's rows, ``[B, C, h, W]``)."""
        return self.decoder(state[0])


def _short(x: Tensor) -> str:
    """A tensor in one short line for an error message."""
    flat = x.detach().flatten().tolist()
    text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in flat[:6])
    return f"[{text}{', ...' if len(flat) > 6 else ''}] (shape {list(x.shape)})"


def image_geometry(config: Config) -> tuple[int, tuple[int, int]]:
    """``(channels, (H, W))`` of the configured data, reading only a file's header."""
    d = config.data
    if d.source == "scenes":
        return 3, (d.image_size, d.image_size)
    if d.source == "digits":
        return 1, (8, 8)
    if d.source == "mnist":
        return 1, (28, 28)
    if d.source == "tetrominoes":
        return 3, (TETROMINO_SIZE, TETROMINO_SIZE)
    path = d.path
    try:
        if path.endswith(".npz"):
            from .data import npz_problem

            problem = npz_problem(path)
            if problem:
                raise ConfigError("data.path", path, problem)
            with np.load(path) as z:
                if "images" not in z.files:
                    raise ConfigError("data.path", path, "the file has no array 'images'")
                shape = z["images"].shape
        else:
            import h5py

            with h5py.File(path, "r") as f:
                if "images" not in f:
                    raise ConfigError("data.path", path, "the file has no dataset 'images'")
                shape = f["images"].shape
    except (EOFError, zipfile.BadZipFile, zlib.error) as err:  # np.load on a damaged zip
        raise ConfigError(
            "data.path", path, f"a damaged or truncated .npz archive ({err})"
        ) from None
    except (OSError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError("data.path", path, f"cannot be read ({err})") from None
    if len(shape) != 4:
        raise ConfigError("data.path", path, f"'images' must be [n, C, H, W], got {list(shape)}")
    return int(shape[1]), (int(shape[2]), int(shape[3]))


def build_model(
    config: Config,
    *,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    shard: ColumnShard | None = None,
) -> Glom:
    """Build a :class:`Glom` for ``config``.

    The image geometry comes from the configured data unless given. Weights are drawn from
    torch's global generator seeded with ``run.seed``, so the same config gives the same
    model; with ``model.column_init = "copies"`` every unshared column starts with column 0's
    weights. ``device`` overrides ``run.device``. The model comes in eval mode: settling it does
    not move homeostatic statistics; the trainer switches it to train mode.

    With a ``shard`` the model holds that band of columns, with exactly the initial weights
    those columns have in the unsharded model (the whole model is drawn on the CPU, then cut:
    the host holds every weight once while building; :mod:`bioglom.distributed`).
    """
    if channels is None or image_size is None:
        c, hw = image_geometry(config)
        channels = c if channels is None else channels
        image_size = hw if image_size is None else image_size
    torch.manual_seed(config.run.seed)
    model = Glom(config, channels, tuple(image_size))
    if config.model.column_init == "copies" and model.columns > 1:
        with torch.no_grad():  # every column-wise weight [K', N, ...] takes column 0's values
            for p in model.parameters():
                if p.dim() >= 2 and p.shape[1] == model.columns:
                    p.copy_(p[:, :1].expand_as(p))
    if shard is not None and shard.world > 1:
        check_shardable(config, model.grid, shard.world)
        whole = model
        model = Glom(config, channels, tuple(image_size), shard=shard)
        own = column_slices(shard, whole.state_dict(), model.state_dict())
        model.load_state_dict(own)
        del whole, own
    model.eval()  # settling does not adapt homeostatic statistics until train() is called
    return model.to(resolve_device(device if device is not None else config.run.device))


def load_model(
    path: str | os.PathLike,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    device: str | torch.device | None = None,
) -> Glom:
    """The model saved by a run (``<run>.pt``), built from the run's own config with
    ``overrides`` applied (``["attention.beta_end=2"]`` or ``{"attention.beta_end": 2}``, as
    in :func:`~bioglom.config.load_config`), then its trained weights loaded.

    Settling parameters (``attention.*``, ``consensus.weights_*``, ``settle.*``) come from the
    config, so an override of them is what the returned model settles with: an ablation of
    the settling schedule on trained weights. An override that changes the weights' shapes
    (``model.dim``, ``model.levels``, ...) raises ``ValueError``. In eval mode; ``device``
    overrides ``run.device`` (default: the CPU).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file (a run saves <run>.pt)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for a file that is not its own
        raise ValueError(f"{path}: not a bioglom weights file ({type(err).__name__})") from None
    if not isinstance(saved, dict) or not {"model", "config"} <= set(saved):
        raise ValueError(f"{path}: not a bioglom weights file (no 'model' and 'config')")
    config = saved_config(saved["config"], overrides)
    geometry = {}
    if "channels" in saved and "image_size" in saved:  # else from the configured data
        geometry = {"channels": int(saved["channels"]), "image_size": tuple(saved["image_size"])}
    model = build_model(config, device=device if device is not None else "cpu", **geometry)
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(
            f"{path}: the weights do not fit the config with overrides {_dict_of(overrides)} "
            f"({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None
    return model.eval()


def _dict_of(overrides: Iterable[str] | Mapping[str, Any]) -> dict[str, Any] | list[str]:
    """Overrides as given, for a message."""
    return dict(overrides) if isinstance(overrides, Mapping) else list(overrides)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; a missing CUDA is a ConfigError."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("run.device", device, "CUDA is not available here (use 'cpu')")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError("run.device", device, "not a torch device") from None
