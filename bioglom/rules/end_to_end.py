"""End-to-end baseline: back-propagation through the whole settling process (docs/design.md §4.4).

The paper's straightforward training (§1, §7, §12.3): corrupt the image by removing regions,
settle for T steps, reconstruct the uncorrupted image from level 0 of the final state, and
back-propagate the reconstruction error through every step, plus the two agreement
regularisers of §1 -- the new embedding at each level should agree with the bottom-up and the
top-down prediction for it:

``L = |decode(e(T)) - x|^2 + lambda / T * sum_t ( |BU(e(t)) - e(t+1)|^2 + |TD(e(t)) - e(t+1)|^2 )``

(means over elements; in gaussian mode the regularisers act on the predicted means). It is
the reference that the local rules are compared against, on the same model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LearningRule, corrupt


class EndToEnd(LearningRule):
    """Fill in missing regions; gradients through time, levels and columns."""

    name = "end_to_end"
    metric_names = ("loss", "loss_recon", "loss_agree_bu", "loss_agree_td", "grad_norm")

    def update(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        model, cfg = self.model, self.config.end_to_end
        steps = self.config.settle.steps
        x_in, _ = corrupt(images, cfg.holes, cfg.hole_size, generator)
        e, tau = model.initial_state(x_in, generator)
        agree_bu = agree_td = torch.zeros((), device=images.device)
        for t in range(steps):
            out = model.step(e, tau, x_in, t, steps, generator)
            agree_bu = agree_bu + F.mse_loss(out.bottom_up, out.state)
            agree_td = agree_td + F.mse_loss(out.top_down, out.state[:-1])
            e, tau = out.state, out.precision
        self.last_state = e.detach()
        recon = F.mse_loss(model.decode(e), images)
        agree_bu, agree_td = agree_bu / steps, agree_td / steps
        extra, extra_metrics = self.final_loss(e)
        loss = recon + cfg.agreement_weight * (agree_bu + agree_td) + extra
        grad_norm = self._apply(loss)
        return {
            "loss": loss.detach(),
            "loss_recon": recon.detach(),
            "loss_agree_bu": agree_bu.detach(),
            "loss_agree_td": agree_td.detach(),
            "grad_norm": grad_norm,
            **extra_metrics,
        }

    def final_loss(self, state: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """A term on the final state ``e(T)`` added to the loss, and its metrics; none here
        (:class:`~bioglom.rules.supervised.SupervisedEndToEnd` adds its contrast)."""
        return torch.zeros((), device=state.device), {}
