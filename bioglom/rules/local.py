"""Local learning: co-distillation and the temporal-derivative rule (§7, §12; docs/design.md §4).

Nothing here back-propagates through time, across levels or across columns. Settling runs step
by step on detached states; after step ``t`` each net learns only from its own input, its own
output and the consensus ``e*(t+1)`` of its own level and column:

``for t in 0..T-1:  out = step(e(t).detach());  e*(t+1) = out.state.detach();
                    loss_t(out, e(t), e*(t+1)).backward()``

Each step's graph is freed by its ``backward``, so memory does not grow with the number of
steps; the gradients of all steps are summed and applied in one optimiser step per batch.
Knowledge moves between unshared columns only through the lateral contribution inside the
teacher (§12.1). The decoder learns to reconstruct the frame from level 0 of the final state,
and the front end is the level-0 bottom-up net, learning toward the level-0 consensus.

Losses are means over images and components, summed over columns and levels (so that a shared
weight's gradient is the sum of the per-column gradients, §12.1, and each unshared column's
gradient does not shrink with N). The recorded metrics are the same squared errors for every
rule, as means per column, so the rules can be compared:

* ``loss_bu_L{l}`` = ``1/2 |bu_l - e*_l|^2`` (``L0`` is the front end), ``loss_td_L{l}``
  likewise for ``l < K-1``, averaged over the steps; ``loss_decoder`` = ``1/2 |decode - x|^2``;
* ``update_norm_<net>``: the L2 norm of the change this update made to each net's weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..config import Config, ConfigError
from ..functional import weight_grads_in_gemm
from ..model import Glom, StepOutput
from ..spikes import spiking_derivative
from .base import ChangeMeter, LearningRule

__all__ = ["LocalRule", "Codistill", "CodistillPlus", "Temporal", "NETS"]

#: the nets of a model whose update norms are recorded
NETS = ("frontend", "bottom_up", "top_down", "decoder")


def _half_sq(pred: Tensor, target: Tensor) -> Tensor:
    """``1/2 mean_{B,d} |pred - target|^2`` per (level, column): ``[K', N]``."""
    return 0.5 * ((pred - target) ** 2).mean(dim=(2, 3))


class LocalRule(LearningRule):
    """The step-by-step skeleton; subclasses define the per-step training signal
    :meth:`step_loss`."""

    metric_names: ClassVar[tuple[str, ...]] = ()
    #: a video batch ``[T, B, C, H, W]`` feeds frame ``t`` to step ``t`` (T = settle.steps)
    trains_on_video: ClassVar[bool] = True

    def __init__(self, model: Glom, config: Config):
        super().__init__(model, config)
        K = model.K
        self.metric_names = (
            "loss",
            *(f"loss_bu_L{k}" for k in range(K)),
            *(f"loss_td_L{k}" for k in range(K - 1)),
            "loss_decoder",
            *(f"update_norm_{n}" for n in NETS),
        )
        self._meter: ChangeMeter | None = None

    # -- the per-step signal ---------------------------------------------------------------
    def step_loss(
        self, out: StepOutput, e: Tensor, target: Tensor, target_precision: Tensor | None
    ) -> Tensor:
        """The scalar whose gradient is this rule's weight change after one step."""
        raise NotImplementedError

    def step_losses(
        self,
        e: Tensor,
        precision: Tensor | None,
        frame: Tensor,
        t: int,
        steps: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, StepOutput, Tensor, Tensor | None]:
        """One settling step on a detached state and its local training signal.

        Returns ``(loss, out, e*(t+1), tau*(t+1))``; ``loss.backward()`` sends gradient to the
        nets' weights only (never to ``e``, which is detached here).
        """
        e = e.detach()
        precision = None if precision is None else precision.detach()
        out = self.model.step(e, precision, frame, t, steps, generator)
        target = out.state.detach()
        tp = None if out.precision is None else out.precision.detach()
        return self.step_loss(out, e, target, tp), out, target, tp

    # -- one update -----------------------------------------------------------------------
    def update(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One update on still images ``[B, C, H, W]`` (every step sees them) or on a video
        ``[T, B, C, H, W]`` (step ``t`` sees frame ``t``; the decoder learns the last frame,
        the one the final state has seen)."""
        model, steps = self.model, self.config.settle.steps
        video = images.dim() == 5
        if video and images.shape[0] != steps:
            raise ValueError(
                f"images: a video of {images.shape[0]} frames, expected settle.steps = {steps}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            e, tau = model.initial_state(images[0] if video else images, generator)
        K = model.K
        bu_err = torch.zeros(K, device=images.device)
        td_err = torch.zeros(K - 1, device=images.device)
        for t in range(steps):
            frame = images[t] if video else images
            with weight_grads_in_gemm():  # each step's weight gradients summed in its GEMMs
                loss, out, e, tau = self.step_losses(e, tau, frame, t, steps, generator)
                loss.backward()
            with torch.no_grad():
                bu_err += _half_sq(out.bottom_up, e).sum(1)
                td_err += _half_sq(out.top_down, e[:-1]).sum(1)
        self.last_state = e
        last = model.own_pixels(images[-1] if video else images)
        dec = 0.5 * ((model.decode(e) - last) ** 2).mean()
        # summed over columns like every other local loss: dec is a mean over all N patches
        (self.config.local.decoder_weight * model.N * dec).backward()
        norms = self._step_and_measure()
        # means per column over every rank's columns (a sharded model holds N of them)
        sums = model.column_sum(torch.cat([bu_err, td_err, (dec * model.N).detach()[None]]))
        sums = sums / model.columns_total
        bu_err, td_err, dec = sums[:K] / steps, sums[K:-1] / steps, sums[-1]
        metrics = {"loss": bu_err.sum() + td_err.sum() + dec.detach()}
        metrics.update({f"loss_bu_L{k}": bu_err[k] for k in range(K)})
        metrics.update({f"loss_td_L{k}": td_err[k] for k in range(K - 1)})
        metrics["loss_decoder"] = dec.detach()
        metrics.update({f"update_norm_{n}": v for n, v in norms.items()})
        return metrics

    def _step_and_measure(self) -> dict[str, Tensor]:
        """Apply the optimiser step; return the L2 norm of each net's weight change.

        Sharded (:mod:`bioglom.distributed`): shared weights first sum their gradients over
        the ranks, so that every rank applies the unsharded update to its copy; the change
        of unshared weights is measured over every rank's columns."""
        model = self.model
        if self._meter is None:
            self._meter = ChangeMeter(
                {n: [p for p in getattr(model, n).parameters() if p.requires_grad] for n in NETS}
            )
        shard = model.shard
        if shard is not None and model.columns == 1:
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        shard.all_reduce(p.grad)
        norms = self._meter.step(self.optimizer)
        if shard is not None and model.columns > 1:
            names = list(norms)
            sq = shard.all_reduce(torch.stack([norms[n] for n in names]) ** 2)
            norms = dict(zip(names, sq.sqrt(), strict=True))
        return norms


class Codistill(LocalRule):
    """Delta rule toward the consensus (docs/design.md §4.1, §7, §12.1).

    Students: the bottom-up and top-down nets of each level and column; teacher: the consensus
    of the next step, detached. ``mean`` mode: ``1/2 |pred - e*|^2``; ``gaussian`` mode: the
    Gaussian negative log-likelihood of the consensus mean under the prediction,
    ``1/2 (tau (mu - e*)^2 - log tau)``.
    """

    name = "codistill"

    def step_loss(self, out, e, target, target_precision):
        if out.bottom_up_precision is None:
            bu = _half_sq(out.bottom_up, target)
            td = _half_sq(out.top_down, target[:-1])
        else:
            bu = _nll(out.bottom_up, out.bottom_up_precision, target)
            td = _nll(out.top_down, out.top_down_precision, target[:-1])
        return bu.sum() + td.sum()


def _nll(mu: Tensor, tau: Tensor, target: Tensor) -> Tensor:
    """``1/2 mean_{B,d} (tau (mu - target)^2 - log tau)`` per (level, column)."""
    return 0.5 * (tau * (mu - target) ** 2 - torch.log(tau)).mean(dim=(2, 3))


class Temporal(LocalRule):
    """The temporal-derivative (STDP-like) rule (docs/design.md §4.2, §12.3).

    The output weights of each net change by presynaptic activity times the rate of change of
    the postsynaptic activity, with no target and no error computed:

    ``dW_out = eta * h^T (post(t+1) - post(t)) / dt``

    §12.3: the temporal derivative can stand in for the error "if the neural activity starts
    at the net's own prediction and then moves toward the better value". With
    ``temporal.reference = "prediction"`` (the default) that is what happens within one
    settling step, read as two phases:

    1. *driven*: each output unit of a net is driven by the net alone, so its activity is the
       net's prediction ``y_hat(t)`` in the units that enter the consensus (standardised per
       vector when ``consensus.normalise_predictions``; the standardisation is the net's last,
       divisive-normalisation stage);
    2. *relaxed*: the consensus takes over and the same units relax to ``e*(t+1)``.

    ``rate = (e*(t+1) - y_hat(t)) / dt``, and the weight change is ``pre x rate`` at the output
    units, passed to the hidden layers like any error (``model.hidden_learning``). Each net
    needs its own copy of the postsynaptic units (a compartment of its own, or a phase of its
    own for top-down nets), since the bottom-up and top-down predictions of a level differ.
    It is implemented as the gradient of the surrogate ``-sum y_hat . stopgrad(rate)``, whose
    gradient with respect to ``y_hat`` is ``(y_hat - e*) / dt``: for ``dt = 1`` the update equals
    the delta rule's (:class:`Codistill`) at every step, whatever the normalisation; the
    rule vanishes exactly when the prediction is right.

    ``temporal.reference = "previous_state"`` is the named ablation: the units start at the
    column's previous state, ``rate = (e(t+1) - e(t)) / dt``, applied to the nets' raw outputs.
    Its update does not vanish when the prediction equals the consensus (it follows the
    state's own drift), and under plain SGD it diverges (measured:
    ``experiments/temporal_vs_delta.py``).

    With ``temporal.spiking``, the rate is not read off the activities but estimated from
    Poisson spike trains of push-pull neuron pairs whose rate ramps linearly from the start of
    the step (``y_hat``, or ``e(t)`` for the ablation) to ``e*(t+1)``, by a derivative filter
    (:mod:`bioglom.spikes`): noisy but unbiased. With Adam (the default optimiser) the step is
    Adam's transform of the gradient, as for every rule.
    """

    name = "temporal"

    @classmethod
    def check_config(cls, config: Config) -> None:
        if config.consensus.mode != "mean":
            raise ConfigError(
                "consensus.mode",
                config.consensus.mode,
                "the temporal-derivative rule needs 'mean' (it has no signal for precisions)",
            )

    def __init__(self, model: Glom, config: Config):
        super().__init__(model, config)
        self.spike_gen: torch.Generator | None = None

    def rate_of_change(self, e0: Tensor, e1: Tensor, generator=None) -> Tensor:
        """``(e1 - e0) / dt`` over one step: exact from rates, or the spiking estimate."""
        tc = self.config.temporal
        if not tc.spiking:
            return (e1 - e0) / tc.dt
        return spiking_derivative(e0, e1, tc.gain, tc.bins, tc.dt, generator)

    def step_loss(self, out, e, target, target_precision):
        n_bd = e.shape[2] * e.shape[3]
        gen = self._spike_generator(e.device) if self.config.temporal.spiking else None
        if self.config.temporal.reference == "prediction":
            # each net's units: from its own prediction (as it enters the consensus) to e*
            bu_y, td_y = out.bottom_up, out.top_down
            bu_rate = self.rate_of_change(bu_y.detach(), target, gen)
            td_rate = self.rate_of_change(td_y.detach(), target[:-1], gen)
        else:
            # the ablation: every unit from the column's previous state, on the raw outputs
            bu_y, td_y = out.bottom_up_raw, out.top_down_raw
            rate = self.rate_of_change(e, target, gen)
            bu_rate, td_rate = rate, rate[:-1]
        bu = -(bu_y * bu_rate).sum(dim=(2, 3)) / n_bd
        td = -(td_y * td_rate).sum(dim=(2, 3)) / n_bd
        return bu.sum() + td.sum()

    def _spike_generator(self, device: torch.device) -> torch.Generator:
        if self.spike_gen is None or self.spike_gen.device != device:
            self.spike_gen = torch.Generator(device=device).manual_seed(self.config.run.seed + 3)
        return self.spike_gen

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.spike_gen is not None:
            state["spike_generator"] = self.spike_gen.get_state()
            state["spike_generator_device"] = self.spike_gen.device.type
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        gen = self._spike_generator(self.model.device)
        # a generator's state only fits a generator on the same kind of device; on another
        # device the spikes restart from the seed (a resume across devices is not exact anyway)
        if "spike_generator" in state and state.get("spike_generator_device") == gen.device.type:
            gen.set_state(state["spike_generator"])


class CodistillPlus(Codistill):
    """Co-distillation plus a term on each column's own predictions at some levels.

    The shape shared by the rules of issue 14 (``supervised``, ``self_contrast``,
    ``prototypes``): after settling step ``t``

    ``loss_t = codistill_t + w sum_{l in levels} sum_x term_l(bu_l(x), td_l(x))``

    with ``td`` only below the top level. A subclass names its metric (:attr:`term_name`), its
    levels (:meth:`term_levels`), its weight (:meth:`term_weight`) and the per-column term of
    one level (:meth:`level_term`), which must depend on column ``x``'s predictions alone (its
    targets are detached values): then the rule stays local. The metric is the term per column
    (summed over levels and nets), averaged over the steps of the update.
    """

    #: the recorded metric
    term_name: ClassVar[str] = "loss_term"

    def __init__(self, model: Glom, config: Config):
        super().__init__(model, config)
        self.metric_names = (*self.metric_names, self.term_name)
        self._term: Tensor | None = None
        self._beta: Tensor | None = None

    def term_levels(self) -> list[int]:
        raise NotImplementedError

    def term_weight(self) -> float:
        raise NotImplementedError

    def level_term(self, preds: Tensor, target: Tensor, state: Tensor, level: int) -> Tensor:
        """The term of every column at one level: ``preds [P, N, B, d]`` (bottom-up, then
        top-down below the top level), the detached consensus ``e*_l(t+1)`` and state
        ``e_l(t)`` ``[N, B, d]`` -> ``[N]``."""
        raise NotImplementedError

    def update(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        self._term = torch.zeros((), device=images.device)
        metrics = super().update(images, generator)
        metrics[self.term_name] = self._term / self.config.settle.steps
        return metrics

    def step_losses(
        self,
        e: Tensor,
        precision: Tensor | None,
        frame: Tensor,
        t: int,
        steps: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, StepOutput, Tensor, Tensor | None]:
        self._beta = self.model.beta(t, steps)  # this step's attention, for terms that rank by it
        return super().step_losses(e, precision, frame, t, steps, generator)

    def step_loss(self, out, e, target, target_precision):
        base = super().step_loss(out, e, target, target_precision)
        K = self.model.K
        extra = target.new_zeros(())
        for level in self.term_levels():
            preds = [out.bottom_up[level]] + ([out.top_down[level]] if level < K - 1 else [])
            per_column = self.level_term(torch.stack(preds), target[level], e[level], level)
            extra = extra + per_column.sum()  # summed over columns, like every local loss
        if self._term is not None:
            self._term = self._term + extra.detach() / self.model.N
        return base + self.term_weight() * extra
