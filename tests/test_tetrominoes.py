"""Tests of bioglom.tetrominoes: the generated Tetrominoes (issue 14) and its data source."""

from __future__ import annotations

import numpy as np
import pytest

from bioglom.tetrominoes import (
    TETROMINO_COLOURS,
    TETROMINO_LETTERS,
    TETROMINO_SHAPES,
    tetrominoes,
)


@pytest.fixture(scope="module")
def data():
    return tetrominoes(300, seed=2)


def _free_tetrominoes() -> dict[str, frozenset]:
    """The 7 free tetrominoes as cell sets (row, col), written out independently of the
    module's pictures."""
    line = {(0, 0), (0, 1), (0, 2), (0, 3)}
    return {
        "I": frozenset(line),
        "O": frozenset({(0, 0), (0, 1), (1, 0), (1, 1)}),
        "T": frozenset({(0, 0), (0, 1), (0, 2), (1, 1)}),
        "S": frozenset({(1, 0), (1, 1), (0, 1), (0, 2)}),
        "Z": frozenset({(0, 0), (0, 1), (1, 1), (1, 2)}),
        "J": frozenset({(0, 0), (1, 0), (1, 1), (1, 2)}),
        "L": frozenset({(1, 0), (1, 1), (1, 2), (0, 2)}),
    }


def _normalised(cells) -> frozenset:
    """Cells shifted so that the smallest row and column are 0."""
    r0 = min(r for r, _ in cells)
    c0 = min(c for _, c in cells)
    return frozenset((r - r0, c - c0) for r, c in cells)


def _fixed_tetrominoes() -> dict[frozenset, str]:
    """Every rotation (no reflection) of every free tetromino, deduplicated: cell set ->
    letter. The fixed tetrominoes number 19."""
    out: dict[frozenset, str] = {}
    for letter, cells in _free_tetrominoes().items():
        shape = cells
        for _ in range(4):
            shape = _normalised({(c, -r) for r, c in shape})  # a quarter turn
            out.setdefault(shape, letter)
    return out


def _cells_of(mask: np.ndarray, block: int) -> frozenset:
    """The cell set of a piece's pixel mask ``[H, W]`` made of ``block`` squares, asserting that
    the mask is exactly a union of whole blocks aligned to the piece's own corner."""
    rows, cols = np.nonzero(mask)
    top, left = rows.min(), cols.min()
    cells = frozenset(
        ((r - top) // block, (c - left) // block) for r, c in zip(rows, cols, strict=True)
    )
    rebuilt = np.zeros_like(mask)
    for r, c in cells:
        rebuilt[
            top + r * block : top + (r + 1) * block, left + c * block : left + (c + 1) * block
        ] = 1
    np.testing.assert_array_equal(rebuilt.astype(bool), mask)
    return cells


def test_the_19_shapes_are_exactly_the_fixed_tetrominoes(data) -> None:
    """The module's shape-orientations are 19 distinct cell sets, the rotations of the 7 free
    tetrominoes (enumerated independently here), each under its own letter; the images use
    all of them."""
    fixed = _fixed_tetrominoes()
    assert len(fixed) == 19 and len(TETROMINO_SHAPES) == 19
    counts = {}
    for letter in fixed.values():
        counts[letter] = counts.get(letter, 0) + 1
    assert counts == {"I": 2, "O": 1, "T": 4, "S": 2, "Z": 2, "J": 4, "L": 4}
    seen: dict[int, frozenset] = {}
    for i in range(len(data)):
        for o in (1, 2, 3):
            seen.setdefault(int(data.object_classes[i, o]), _cells_of(data.object_masks[i] == o, 5))
    assert sorted(seen) == list(range(19))
    assert len(set(seen.values())) == 19 and set(seen.values()) == set(fixed)
    for s, cells in seen.items():
        assert TETROMINO_SHAPES[s][0] == fixed[cells]


def test_masks_agree_with_pixels(data) -> None:
    """Every image is 35x35 RGB; background (mask 0) is black; each of the 3 pieces is one of
    the 6 colours, made of exactly 4 whole 5x5 cells which are its parts 4(o-1)+1..4o; every
    non-background pixel belongs to exactly one piece."""
    assert data.images.shape == (300, 3, 35, 35) and data.images.dtype == np.float32
    pixels = np.moveaxis(data.images, 1, -1)
    assert np.all(pixels[data.object_masks == 0] == 0)
    assert np.all(pixels[data.object_masks > 0].max(axis=1) == 1)
    np.testing.assert_array_equal(data.object_masks > 0, data.part_masks > 0)
    for i in range(0, len(data), 3):
        assert set(np.unique(data.object_masks[i])) == {0, 1, 2, 3}
        for o in (1, 2, 3):
            piece = data.object_masks[i] == o
            assert piece.sum() == 4 * 25
            colours = np.unique(pixels[i][piece], axis=0)
            assert len(colours) == 1
            assert any(np.array_equal(colours[0], c) for c in TETROMINO_COLOURS)
            parts = np.unique(data.part_masks[i][piece])
            np.testing.assert_array_equal(parts, np.arange(4 * (o - 1) + 1, 4 * o + 1))
            for p in parts:
                rows, cols = np.nonzero(data.part_masks[i] == p)
                assert rows.size == 25 and np.ptp(rows) == 4 and np.ptp(cols) == 4
                assert data.part_to_object[i, p] == o
    derived = np.take_along_axis(data.part_to_object, data.part_masks.reshape(300, -1), axis=1)
    np.testing.assert_array_equal(derived.reshape(data.part_masks.shape), data.object_masks)


def test_ids_labels_and_colours(data) -> None:
    """Objects are numbered in raster order of their first pixel; labels are the letter of
    object 1; all 6 colours occur and two pieces of one image sometimes share one."""
    for i in range(len(data)):
        flat = data.object_masks[i].ravel()
        firsts = [np.argmax(flat == o) for o in (1, 2, 3)]
        assert firsts == sorted(firsts)
        assert TETROMINO_LETTERS[data.labels[i]] == TETROMINO_SHAPES[data.object_classes[i, 1]][0]
    colours = np.array(
        [[tuple(data.images[i][:, data.object_masks[i] == o][:, 0]) for o in (1, 2, 3)]
         for i in range(len(data))]
    )  # fmt: skip
    assert len({tuple(c) for c in colours.reshape(-1, 3)}) == 6
    shared = [len({tuple(c) for c in colours[i]}) < 3 for i in range(len(data))]
    assert 0.2 < np.mean(shared) < 0.7  # 1 - (5/6)(4/6) = 0.44 for independent colours


def test_same_seed_same_images_and_block_option() -> None:
    """Generation is a pure function of its arguments; block sets the cell side."""
    a, b = tetrominoes(5, seed=3), tetrominoes(5, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.part_masks, b.part_masks)
    assert not np.array_equal(a.images, tetrominoes(5, seed=4).images)
    small = tetrominoes(20, seed=0, block=3)
    for i in range(20):
        for o in (1, 2, 3):
            _cells_of(small.object_masks[i] == o, 3)
            assert (small.object_masks[i] == o).sum() == 4 * 9
    with pytest.raises(ValueError, match="block=9"):
        tetrominoes(2, block=9)
    with pytest.raises(ValueError, match="n=0"):
        tetrominoes(0)


def test_tetrominoes_source_in_a_config() -> None:
    """data.source = 'tetrominoes' loads 35x35 images split like generated scenes (linear set
    from seed + 1), and refuses a patch size that does not divide 35, naming the field."""
    from bioglom.config import ConfigError, load_config
    from bioglom.splits import load_data

    over = {"data.source": "tetrominoes", "frontend.patch_size": 5, "data.n_train": 16,
            "data.n_probe": 4, "data.n_linear": 8, "data.seed": 5}  # fmt: skip
    splits = load_data(load_config(None, over))
    assert splits.train.images.shape == (16, 3, 35, 35) and len(splits.probe) == 4
    np.testing.assert_array_equal(splits.probe.images, tetrominoes(20, 5).images[16:])
    np.testing.assert_array_equal(splits.linear.images, tetrominoes(8, 6).images)
    with pytest.raises(ConfigError) as err:
        load_config(None, {**over, "frontend.patch_size": 2})
    assert err.value.field == "frontend.patch_size" and "35" in str(err.value)
