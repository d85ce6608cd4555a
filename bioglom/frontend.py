"""Pixels in and out: level 0's bottom-up contribution from the image, and the decoder (§3.5).

Column ``n`` owns the ``p x p`` patch at grid row ``n // W_g``, grid column ``n % W_g``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .columns import ColumnLinear, ColumnMLP

__all__ = ["patches", "unpatch", "PatchFrontend", "CnnFrontend", "PatchDecoder"]


def patches(images: Tensor, p: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[N, B, C*p*p]``: the patch of every column, row-major over the grid."""
    cols = F.unfold(images, kernel_size=p, stride=p)  # [B, C*p*p, N]
    return cols.permute(2, 0, 1).contiguous()


def unpatch(x: Tensor, image_size: tuple[int, int], p: int) -> Tensor:
    """Inverse of :func:`patches`: ``[N, B, C*p*p]`` -> ``[B, C, H, W]``."""
    return F.fold(x.permute(1, 2, 0), output_size=image_size, kernel_size=p, stride=p)


class PatchFrontend(nn.Module):
    """Per-column MLP from the column's own patch to level 0 (``[1, N, B, d_out]``)."""

    def __init__(
        self,
        channels: int,
        patch: int,
        columns: int,
        hidden: int,
        d_out: int,
        act: str,
        hidden_learning: str = "backprop",
    ):
        super().__init__()
        self.patch = patch
        self.net = ColumnMLP(
            1, columns, channels * patch * patch, hidden, d_out, int(hidden > 0), act,
            hidden_learning=hidden_learning,
        )  # fmt: skip

    def forward(self, images: Tensor) -> Tensor:
        return self.net(patches(images, self.patch).unsqueeze(0))


class CnnFrontend(nn.Module):
    """A small shared CNN (3x3 convolutions, receptive field ``p + 2 * layers``) whose feature
    map is cut into patches and read out by a column-wise linear map (§3.5). The convolutions
    are its hidden layers: frozen with ``hidden_learning = "frozen"``, otherwise they learn by
    back-propagation inside the front end (feedback alignment applies to the read-out only).

    The convolutions are one weight read by every column, so unshared columns would learn
    through it (perturbing one column's read-out changes the convolutions' gradient that all
    columns share); the config therefore allows it only with ``model.sharing = "shared"``."""

    def __init__(
        self,
        channels: int,
        patch: int,
        columns: int,
        width: int,
        layers: int,
        d_out: int,
        hidden_learning: str = "backprop",
    ):
        super().__init__()
        self.patch = patch
        convs = []
        c = channels
        for _ in range(layers):
            convs += [nn.Conv2d(c, width, 3, padding=1), nn.GELU()]
            c = width
        self.cnn = nn.Sequential(*convs)
        if hidden_learning == "frozen":
            self.cnn.requires_grad_(False)
        self.readout = ColumnLinear(
            1,
            columns,
            width * patch * patch,
            d_out,
            feedback=hidden_learning == "feedback_alignment",
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.readout(patches(self.cnn(images), self.patch).unsqueeze(0))


class PatchDecoder(nn.Module):
    """Per-column neural field from level 0 back to the column's patch, ``sigmoid`` output."""

    def __init__(
        self,
        channels: int,
        patch: int,
        image_size: tuple[int, int],
        columns: int,
        d_in: int,
        hidden: int,
        act: str,
        hidden_learning: str = "backprop",
    ):
        super().__init__()
        self.patch, self.image_size = patch, image_size
        self.net = ColumnMLP(
            1, columns, d_in, hidden, channels * patch * patch, int(hidden > 0), act,
            hidden_learning=hidden_learning,
        )  # fmt: skip

    def forward(self, level0: Tensor) -> Tensor:
        """``level0 [N, B, d]`` -> images ``[B, C, H, W]`` in (0, 1)."""
        out = torch.sigmoid(self.net(level0.unsqueeze(0))[0])
        return unpatch(out, self.image_size, self.patch)
