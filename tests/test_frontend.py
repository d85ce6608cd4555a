"""bioglom.frontend: the column-to-patch map worked by hand; each front end's receptive field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build, fresh_seed, rand_images, small_config

import bioglom
from bioglom.frontend import foveated_patches, patches, retina_fields, unpatch


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


def test_foveated_column_reads_exactly_the_pixels_it_claims():
    """An image with one lit pixel (random place, grid, patch and growth; seed printed): column
    n's foveated input is non-zero iff the pixel lies in the field (top, left, m p) that
    retina_fields claims for it, and then it is 1 / m^2 in one entry: channel c, block row
    (y - top) // m, block column (x - left) // m -- worked out here from the claim alone."""
    seed = fresh_seed()
    g = np.random.default_rng(seed)
    for _ in range(20):
        p = int(g.integers(1, 4))
        hg, wg = int(g.integers(2, 9)), int(g.integers(2, 9))
        growth = float(g.uniform(0.0, 8.0))
        C, H, W = 2, hg * p, wg * p
        y, x, ch = int(g.integers(H)), int(g.integers(W)), int(g.integers(C))
        img = torch.zeros(1, C, H, W)
        img[0, ch, y, x] = 1.0
        fields = retina_fields((hg, wg), p, growth)
        got = foveated_patches(img, p, fields)[:, 0].reshape(hg * wg, C, p, p)
        for n, (top, left, m) in enumerate(fields.tolist()):
            want = torch.zeros(C, p, p)
            if top <= y < top + m * p and left <= x < left + m * p:
                want[ch, (y - top) // m, (x - left) // m] = 1.0 / m**2
            torch.testing.assert_close(got[n], want, msg=f"seed {seed}, column {n}")


def test_retina_fields_scale_with_eccentricity():
    """Fields are centred on the column's own patch; m = 1 at the fovea (the columns nearest
    the centre) and the odd integer nearest 1 + g at the farthest columns (the corners): 5 for
    g = 4, 3 for g = 2, 7 for g = 6 (by hand); g = 0 gives the uniform retina exactly."""
    for growth, corner in ((4.0, 5), (2.0, 3), (6.0, 7)):
        f = retina_fields((8, 8), 2, growth)
        m = f[:, 2].view(8, 8)
        assert m[3:5, 3:5].eq(1).all() and m[0, 0] == m[7, 7] == m[0, 7] == corner
        centre_y = f[:, 0] + f[:, 2] * 2 / 2  # top + m p / 2
        rows = torch.arange(64) // 8
        torch.testing.assert_close(centre_y.double(), (2 * rows + 1).double())
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(foveated_patches(x, 2, retina_fields((8, 8), 2, 0.0)), patches(x, 2))


def test_foveated_model_reads_its_fields_and_refuses_the_cnn():
    """frontend.retina = "foveated": the model's level-0 input comes from the foveated fields
    (a uniform model with the same weights differs exactly where m > 1); the CNN front end is
    refused with the field named."""
    fov = build(frontend__retina="foveated", frontend__fovea_growth=2.0)
    uni = build()
    uni.load_state_dict(fov.state_dict())
    x = torch.rand(2, 3, 8, 8)
    m = fov.frontend.fields[:, 2]
    assert bool((m > 1).any()) and bool((m == 1).any())
    a, b = fov.frontend(x)[0], uni.frontend(x)[0]  # [N, B, d]
    differs = (a - b).abs().amax(dim=(1, 2)) > 0
    assert torch.equal(differs, m > 1)
    fov.settle(x)  # the whole model runs on it
    with pytest.raises(bioglom.ConfigError, match="frontend.retina"):
        small_config(frontend__retina="foveated", frontend__kind="cnn", model__sharing="shared")
