"""Partitions that learn nothing (bioglom.baselines) on hand-built images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fresh_seed
from scipy import ndimage

from bioglom.baselines import (
    BASELINES,
    colour_components,
    fixed_blocks,
    foreground_components,
    foreground_mask,
    kmeans_pixels,
    kmeans_position,
)
from bioglom.scores import adjusted_rand_index, mismatched_control

RED, GREEN, BLUE = (0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.2, 0.3, 0.95)
ORANGE = (0.9, 0.4, 0.1)  # 0.3 from red, about 1 from black


def paint(layout: np.ndarray, colours: dict[int, tuple], patch: int = 2) -> np.ndarray:
    """One image ``[1, 3, H, W]`` whose column ``(r, c)`` is filled with
    ``colours[layout[r, c]]`` (0 = black)."""
    table = np.zeros((max(colours) + 1, 3))
    for k, v in colours.items():
        table[k] = v
    pixels = table[np.kron(layout, np.ones((patch, patch), dtype=int))]  # [H, W, 3]
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return adjusted_rand_index(a, b) == 1.0 and len(np.unique(a)) == len(np.unique(b))


SEPARATE = np.array(  # two squares on black, not touching
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 2, 2, 2],
        [0, 0, 0, 2, 2, 2],
        [0, 0, 0, 0, 0, 0],
    ]
)
TOUCHING = np.array(  # two squares of different colour side by side
    [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 2, 2, 0],
        [0, 1, 1, 2, 2, 0],
        [0, 0, 0, 0, 0, 0],
    ]
)


def test_foreground_components_find_each_square_and_one_background():
    """Two squares on black: three islands, the squares and the background, numbered by first
    appearance; touching squares are one foreground component whatever their colours."""
    lab = foreground_components(paint(SEPARATE, {1: RED, 2: GREEN}), patch=2)
    assert lab.shape == (1, 6, 6) and lab.dtype == np.int32
    np.testing.assert_array_equal(lab[0], np.choose(SEPARATE, [1, 0, 2]))  # red square first
    lab = foreground_components(paint(SEPARATE, {1: RED, 2: RED}), patch=2)
    assert same_partition(lab[0], SEPARATE)  # the same colour, still two components
    lab = foreground_components(paint(TOUCHING, {1: RED, 2: BLUE}), patch=2)
    assert same_partition(lab[0], TOUCHING > 0)


def test_foreground_is_a_strict_majority_of_bright_pixels():
    """A 2x2 patch with 3 bright pixels is foreground, with 2 (a tie, background under the
    masks' majority rule) or with dim pixels (below the threshold) it is not."""
    img = np.zeros((1, 1, 2, 6), dtype=np.float32)
    img[0, 0, :, 0:2] = [[1, 1], [1, 0]]  # 3 of 4 bright
    img[0, 0, :, 2:4] = [[1, 1], [0, 0]]  # 2 of 4
    img[0, 0, :, 4:6] = 0.09  # dim everywhere
    assert foreground_mask(img, 2, threshold=0.1).tolist() == [[[True, False, False]]]


def test_colour_components_separate_touching_squares_of_different_colour():
    """Side by side, red and blue: three islands (background, red, blue); the same colour:
    two. Red and orange (0.3 apart): three islands at a tolerance of 0.25, two at 0.35."""
    lab = colour_components(paint(TOUCHING, {1: RED, 2: BLUE}), patch=2, tol=0.3)
    assert same_partition(lab[0], TOUCHING)
    lab = colour_components(paint(TOUCHING, {1: RED, 2: RED}), patch=2, tol=0.3)
    assert same_partition(lab[0], TOUCHING > 0)
    lab = colour_components(paint(TOUCHING, {1: RED, 2: ORANGE}), 2, tol=0.25)
    assert same_partition(lab[0], TOUCHING)
    lab = colour_components(paint(TOUCHING, {1: RED, 2: ORANGE}), 2, tol=0.35)
    assert same_partition(lab[0], TOUCHING > 0)


def test_kmeans_pixels_separates_colours_even_where_regions_are_not_connected():
    """Left half red, right half blue: k = 2 gives the two halves. Two red squares and a blue
    one on black: k = 3 puts the red squares in one island (k-means ignores position)."""
    seed = fresh_seed() % 2**31
    halves = np.repeat([[1, 1, 1, 2, 2, 2]], 4, axis=0)
    lab = kmeans_pixels(paint(halves, {1: RED, 2: BLUE}), patch=2, k=2, seed=seed)
    assert same_partition(lab[0], halves), seed
    three = SEPARATE.copy()
    three[0:2, 4:6] = 3
    lab = kmeans_pixels(paint(three, {1: RED, 2: BLUE, 3: RED}), patch=2, k=3, seed=seed)
    assert same_partition(lab[0], np.where(three == 3, 1, three)), seed


def test_kmeans_position_and_fixed_blocks_ignore_the_image():
    """Fixed blocks: the grid cut into near-equal blocks (2 -> quarters); k-means on position:
    k compact regions (cells of the centroids: 8-connected; a cell's diagonal sliver can touch
    the rest only at a corner). Both are the same in every image, so
    the mismatched control of any score is exactly 0."""
    np.testing.assert_array_equal(
        fixed_blocks((4, 4), 2, 1)[0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    )
    assert fixed_blocks((3, 5), (1, 5), 2).tolist() == [[[0, 1, 2, 3, 4]] * 3] * 2
    with pytest.raises(ValueError, match="block"):
        fixed_blocks((4, 4), 5, 1)
    seed = fresh_seed() % 2**31
    pos = kmeans_position((8, 8), 4, 3, seed=seed)
    assert pos.shape == (3, 8, 8) and (pos == pos[0]).all(), seed
    assert pos.max() == 3, (pos[0], seed)
    for i in range(4):  # each cluster one 8-connected region
        assert ndimage.label(pos[0] == i, np.ones((3, 3)))[1] == 1, (pos[0], seed)
    truth = np.random.default_rng(seed).integers(0, 3, (3, 8, 8))
    assert mismatched_control(adjusted_rand_index, truth, pos).delta == 0.0, seed


def test_each_baseline_default_is_in_its_grid_and_the_value_is_used():
    """A baseline's default is one of its grid's values (so "best over the grid" includes the
    default), and the value passed is the one used: fixed blocks at 2, 4 and 8 per side give
    4, 16 and 64 islands on an 8x8 grid."""
    for name, b in BASELINES.items():
        assert b.default in b.grid, name
    images = np.zeros((1, 3, 16, 16))
    counts = [int(BASELINES["fixed_blocks"](images, 2, 0, v).max()) + 1 for v in (2, 4, 8)]
    assert counts == [4, 16, 64]


def test_baselines_take_torch_or_numpy_and_follow_the_image():
    """Every baseline gives ``[B, H_g, W_g]`` labels 0..I-1, the same for a torch tensor as for
    its numpy array; the pixel baselines give another partition when the image changes."""
    a = paint(SEPARATE, {1: RED, 2: GREEN})
    b = paint(TOUCHING.repeat(2, 0)[:6], {1: RED, 2: BLUE})[..., :12]
    images = np.concatenate([a, b])  # [2, 3, 12, 12]
    for name, fn in BASELINES.items():
        lab = fn(images, 2, 0)
        assert lab.shape == (2, 6, 6), name
        for img in lab:
            assert set(np.unique(img)) == set(range(img.max() + 1)), name
        np.testing.assert_array_equal(fn(torch.from_numpy(images), 2, 0), lab, err_msg=name)
        differ = not same_partition(lab[0], lab[1])
        assert differ == (name not in ("fixed_blocks", "kmeans_position")), name


def test_a_baseline_grid_keeps_only_the_values_that_fit_the_column_grid():
    """On 7x7 columns (Tetrominoes, patch 5) fixed blocks of 8 per side do not exist: the grid
    offered for "best over the grid" drops them; on 16x16 columns every value stays."""
    small = np.zeros((2, 3, 35, 35), np.float32)
    large = np.zeros((2, 3, 32, 32), np.float32)
    assert BASELINES["fixed_blocks"].values(small, 5) == [2, 4]
    assert BASELINES["fixed_blocks"].values(large, 2) == [2, 4, 8]
    for name, b in BASELINES.items():
        for v in b.values(small, 5):  # every offered value runs
            assert b(small, 5, 0, v).shape == (2, 7, 7), (name, v)


def test_score_baselines_controls_are_zero_for_partitions_that_ignore_the_image():
    """score_baselines (the bar the CLI and the experiments print): the partitions that ignore
    the image (fixed blocks, k-means of position) score exactly the same against another
    image's objects, so their delta is 0; it scores every baseline once."""
    from bioglom.baselines import BASELINES, score_baselines
    from bioglom.data import part_whole_scenes

    scenes = part_whole_scenes(n=6, size=16, seed=fresh_seed())
    masks = {"obj": scenes.object_masks, "part": scenes.part_masks}
    scores = score_baselines(scenes.images, masks, 2)
    assert set(scores) == set(BASELINES)
    for name in ("fixed_blocks", "kmeans_position"):
        assert scores[name]["dfgari_obj"] == 0.0 and scores[name]["dfgari_part"] == 0.0, name
    assert scores["foreground_components"]["dfgari_obj"] > 0  # these scenes: objects on black
