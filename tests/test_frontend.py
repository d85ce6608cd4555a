"""bioglom.frontend: the column-to-patch map worked by hand; each front end's receptive field."""

from __future__ import annotations

import torch
from conftest import build, rand_images, small_config

import bioglom
from bioglom.frontend import patches, unpatch


def test_grid_map_row_major():
    """Column n owns the patch at grid row n // W_g, grid column n % W_g (8x12 image, patch 2:
    a 4x6 grid), and unpatch inverts patches."""
    x = torch.zeros(1, 3, 8, 12)
    r, c = 2, 5
    x[0, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = 1.0
    p = patches(x, 2)
    assert p.shape == (24, 1, 12)
    nonzero = torch.nonzero(p.abs().sum(-1) > 0)[:, 0].tolist()
    assert nonzero == [r * 6 + c]
    y = torch.rand(2, 3, 8, 12)
    torch.testing.assert_close(unpatch(patches(y, 2), (8, 12), 2), y)
    m = bioglom.build_model(small_config(), channels=3, image_size=(8, 12))
    assert m.grid == (4, 6)


def test_frontend_column_sees_only_its_own_patch(rng):
    """Changing the pixels of one patch changes level 0's bottom-up input at that column only
    (patch front end); the CNN front end's wider receptive field reaches the neighbours."""
    x = rand_images(2, gen=rng)
    x2 = x.clone()
    x2[:, :, 2:4, 4:6] = torch.rand(2, 3, 2, 2, generator=rng)  # grid (1, 2) -> n = 6
    m = build()
    diff = (m.frontend(x2) - m.frontend(x)).abs().sum(dim=(0, 2, 3))
    assert torch.nonzero(diff).flatten().tolist() == [6]
    mc = build(frontend__kind="cnn", frontend__cnn_layers=1, model__sharing="shared")
    diffc = (mc.frontend(x2) - mc.frontend(x)).abs().sum(dim=(0, 2, 3))
    changed = set(torch.nonzero(diffc).flatten().tolist())
    assert 6 in changed and len(changed) > 1
    assert changed <= {1, 2, 3, 5, 6, 7, 9, 10, 11}  # within one column of (1, 2)
