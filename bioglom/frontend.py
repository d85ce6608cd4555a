"""Pixels in and out: level 0's bottom-up contribution from the image, and the decoder (§3.5).

Column ``n`` owns the ``p x p`` patch at grid row ``n // W_g``, grid column ``n % W_g``.

With a uniform retina (``frontend.retina = "uniform"``) each column reads its own patch. With a
foveated one (§12.1: "a retina whose receptive fields get progressively larger farther from
the fovea, which is hard to handle using weight sharing") column ``n`` reads a square field of
``m_n x m_n`` patches centred on its own, averaged over ``m_n x m_n``-pixel blocks back to
``p x p`` values (lower resolution, more blur, at the periphery; zeros beyond the image), with
the odd scale

``m_n = 2 round(g ecc_n / 2) + 1``, ``ecc_n = |c_n - f| / max_n' |c_n' - f|``,

``c_n`` the centre of the column's patch, ``f`` the fixation point (the image centre) and
``g`` = ``frontend.fovea_growth``: 1 at the fovea, the nearest odd integer to ``1 + g`` at the
farthest column (:func:`retina_fields`, :func:`foveated_patches`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .columns import ColumnLinear, ColumnMLP

__all__ = [
    "patches",
    "unpatch",
    "retina_fields",
    "foveated_patches",
    "PatchFrontend",
    "CnnFrontend",
    "PatchDecoder",
]


def patches(images: Tensor, p: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[N, B, C*p*p]``: the patch of every column, row-major over the grid."""
    cols = F.unfold(images, kernel_size=p, stride=p)  # [B, C*p*p, N]
    return cols.permute(2, 0, 1).contiguous()


def unpatch(x: Tensor, image_size: tuple[int, int], p: int) -> Tensor:
    """Inverse of :func:`patches`: ``[N, B, C*p*p]`` -> ``[B, C, H, W]``."""
    return F.fold(x.permute(1, 2, 0), output_size=image_size, kernel_size=p, stride=p)


def retina_fields(grid: tuple[int, int], p: int, growth: float) -> Tensor:
    """The receptive field of every column of a foveated retina fixating the image centre.

    Parameters
    ----------
    grid : ``(H_g, W_g)`` columns
    p : the patch side in pixels
    growth : ``g``; 0 gives the uniform retina (every ``m = 1``)

    Returns
    -------
    int64 ``[N, 3]``: ``(top, left, m)`` per column: the field covers pixel rows
    ``top .. top + m p - 1`` and columns ``left .. left + m p - 1`` (which may reach beyond the
    image), read as ``p x p`` averages of ``m x m``-pixel blocks.
    """
    hg, wg = grid
    r, c = torch.meshgrid(torch.arange(hg), torch.arange(wg), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    dist = torch.hypot(r + 0.5 - hg / 2, c + 0.5 - wg / 2).double()
    ecc = dist / dist.max() if float(dist.max()) > 0 else dist
    m = 2 * torch.round(growth * ecc / 2).long() + 1
    half = p * (m - 1) // 2
    return torch.stack([p * r - half, p * c - half, m], dim=1)


def foveated_patches(images: Tensor, p: int, fields: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> ``[N, B, C*p*p]``: every column's field (:func:`retina_fields`)
    averaged over ``m x m``-pixel blocks, in the layout of :func:`patches` (the two agree
    where every ``m = 1``). One pooling of the zero-padded image per distinct ``m``."""
    B, C = images.shape[:2]
    N = fields.shape[0]
    out = images.new_empty(N, B, C * p * p)
    offsets = torch.arange(p, device=images.device)
    fields = fields.to(images.device)
    for m in torch.unique(fields[:, 2]).tolist():
        cols = torch.nonzero(fields[:, 2] == m).squeeze(1)
        pad = p * (m - 1) // 2
        x = F.pad(images, (pad, pad, pad, pad)) if pad else images
        blocks = F.avg_pool2d(x, m, stride=1) if m > 1 else x  # block mean at every offset
        rows = fields[cols, 0:1] + pad + m * offsets  # [n, p], in padded coordinates
        lefts = fields[cols, 1:2] + pad + m * offsets
        v = blocks[:, :, rows[:, :, None], lefts[:, None, :]]  # [B, C, n, p, p]
        out[cols] = v.permute(2, 0, 1, 3, 4).reshape(len(cols), B, C * p * p)
    return out


class PatchFrontend(nn.Module):
    """Per-column MLP from the column's retinal input to level 0 (``[1, N, B, d_out]``): its own
    patch (``fields`` None, the uniform retina) or its foveated field (:func:`foveated_patches`
    over ``fields`` from :func:`retina_fields`, kept as a buffer and not saved)."""

    def __init__(
        self,
        channels: int,
        patch: int,
        columns: int,
        hidden: int,
        d_out: int,
        act: str,
        hidden_learning: str = "backprop",
        fields: Tensor | None = None,
    ):
        super().__init__()
        self.patch = patch
        self.net = ColumnMLP(
            1, columns, channels * patch * patch, hidden, d_out, int(hidden > 0), act,
            hidden_learning=hidden_learning,
        )  # fmt: skip
        self.register_buffer("fields", fields, persistent=False)

    def retina(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[N, B, C*p*p]``: what every column's front end reads."""
        if self.fields is None:
            return patches(images, self.patch)
        return foveated_patches(images, self.patch, self.fields)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(self.retina(images).unsqueeze(0))


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
