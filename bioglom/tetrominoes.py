"""Tetrominoes: images of three Tetris pieces, after the Multi-Object Datasets' Tetrominoes.

The published dataset (Kabra et al. 2019, ``multi_object_datasets``, used by IODINE, Slot
Attention and AKOrN) holds 35x35 RGB images of three tetrominoes on black, each one of six
colours (red, green, blue, yellow, magenta, cyan), with object masks. Its README says "sampled
from 17 unique shapes/orientations" without naming them; this generator draws from all
**19 fixed tetrominoes** (each of the 7 free pieces I, O, T, S, Z, J, L in every distinct
rotation: 2, 1, 4, 2, 2, 4, 4), listed below as pictures. It is generated here, so nothing is
downloaded; numbers on it stand beside published ones only as far as the specification matches.

Choices this module makes (the README does not fix them):

* a piece's cells are ``block x block`` squares of one flat colour, ``block = 5`` by default,
  so that the widest piece (I, 4 cells) is 20 pixels; a piece's top-left corner is at any
  integer pixel (uniform over the positions that keep it inside the image), so block edges
  need not fall on the 5-pixel grid of ``frontend.patch_size = 5`` columns;
* the three pieces never overlap (a piece that would overlap an earlier one is drawn again);
  they may touch, and two pieces may share a colour;
* object ids 1..3 are numbered in raster order of each piece's first pixel, and each piece's
  four cells are its parts, ids ``4 (o - 1) + 1 .. 4 o`` in raster order of the cells;
* ``object_classes`` index :data:`TETROMINO_SHAPES` (not :data:`bioglom.data.OBJECT_CLASSES`),
  ``part_shapes`` are all ``"square"`` of :data:`bioglom.data.PART_SHAPES`, and ``labels`` is
  the letter (index into :data:`TETROMINO_LETTERS`) of object 1, the piece first in raster
  order.
"""

from __future__ import annotations

import numpy as np

from .data import PART_SHAPES, ImageSet

__all__ = [
    "TETROMINO_COLOURS",
    "TETROMINO_LETTERS",
    "TETROMINO_SHAPES",
    "TETROMINO_SIZE",
    "tetrominoes",
]

#: the 19 fixed tetrominoes, one picture each ('#' = a cell), named letter_rotation
_PICTURES: dict[str, str] = {
    "I0": "####",
    "I1": "#/#/#/#",
    "O": "##/##",
    "T0": "###/.#.",
    "T1": ".#/##/.#",
    "T2": ".#./###",
    "T3": "#./##/#.",
    "S0": ".##/##.",
    "S1": "#./##/.#",
    "Z0": "##./.##",
    "Z1": ".#/##/#.",
    "J0": "#../###",
    "J1": "##/#./#.",
    "J2": "###/..#",
    "J3": ".#/.#/##",
    "L0": "..#/###",
    "L1": "#./#./##",
    "L2": "###/#..",
    "L3": "##/.#/.#",
}
TETROMINO_SHAPES: tuple[str, ...] = tuple(_PICTURES)
"""Names of the 19 shape-orientations; ``object_classes`` of :func:`tetrominoes` index this."""
TETROMINO_LETTERS: tuple[str, ...] = ("I", "O", "T", "S", "Z", "J", "L")
"""The 7 free tetrominoes; ``labels`` of :func:`tetrominoes` index this."""
TETROMINO_COLOURS: np.ndarray = np.array(
    [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1)], np.float32
)
"""The six piece colours: red, green, blue, yellow, magenta, cyan."""
TETROMINO_COLOURS.setflags(write=False)

TETROMINO_SIZE = 35  # image side of the specification
_PIECES = 3
_MAX_TRIES = 1000  # rounds of redrawing pieces that overlap earlier ones


def _cell_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cells [19, 4, 4]``: each cell's number 0..3 in raster order, -1 = empty; the shapes'
    heights and widths in cells ``[19]`` each."""
    cells = np.full((len(_PICTURES), 4, 4), -1, np.int64)
    height = np.zeros(len(_PICTURES), np.int64)
    width = np.zeros(len(_PICTURES), np.int64)
    for s, picture in enumerate(_PICTURES.values()):
        rows = picture.split("/")
        height[s], width[s] = len(rows), len(rows[0])
        k = 0
        for r, line in enumerate(rows):
            for c, char in enumerate(line):
                if char == "#":
                    cells[s, r, c] = k
                    k += 1
    return cells, height, width


_CELLS, _HEIGHT, _WIDTH = _cell_tables()
_LETTER = np.array([TETROMINO_LETTERS.index(name[0]) for name in _PICTURES], np.int64)


def _cell_map(shape: np.ndarray, top: np.ndarray, left: np.ndarray, block: int) -> np.ndarray:
    """int ``[m, 35, 35]``: the cell number 0..3 of each piece at each pixel, -1 = outside."""
    grid = np.arange(TETROMINO_SIZE)
    dy = grid[None, :, None] - top[:, None, None]
    dx = grid[None, None, :] - left[:, None, None]
    cy, cx = dy // block, dx // block
    inside = (dy >= 0) & (dx >= 0) & (cy < 4) & (cx < 4)
    cell = _CELLS[shape[:, None, None], np.clip(cy, 0, 3), np.clip(cx, 0, 3)]
    return np.where(inside, cell, -1)


def tetrominoes(n: int, seed: int = 0, *, block: int = 5) -> ImageSet:
    """35x35 RGB images of three non-overlapping tetrominoes on black (module docstring).

    Parameters
    ----------
    n : number of images.
    seed : seed of ``np.random.default_rng``; the same arguments give identical arrays.
    block : side of a cell in pixels (1-8; a piece of 4 cells in a row must fit in 35).

    Returns
    -------
    ImageSet
        images float32 ``[n, 3, 35, 35]`` in {0, 1}; ``object_masks`` (pieces 1..3) and
        ``part_masks`` (cells 1..12) int64 ``[n, 35, 35]``, 0 = background;
        ``part_to_object [n, 13]``, ``object_classes [n, 4]`` (shape-orientation, -1 for 0),
        ``part_shapes [n, 13]`` and ``labels [n]`` (letter of object 1).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if not 1 <= block <= TETROMINO_SIZE // 4:
        raise ValueError(f"block must be in [1, {TETROMINO_SIZE // 4}], got block={block}")
    rng = np.random.default_rng(seed)
    shapes = np.zeros((n, _PIECES), np.int64)
    colours = np.zeros((n, _PIECES), np.int64)
    tops = np.zeros((n, _PIECES), np.int64)
    lefts = np.zeros((n, _PIECES), np.int64)
    cells = np.full((_PIECES, n, TETROMINO_SIZE, TETROMINO_SIZE), -1, np.int64)
    occupied = np.zeros((n, TETROMINO_SIZE, TETROMINO_SIZE), bool)
    for p in range(_PIECES):
        todo = np.arange(n)
        for _ in range(_MAX_TRIES):
            m = todo.size
            shape = rng.integers(0, len(_PICTURES), size=m)
            colour = rng.integers(0, len(TETROMINO_COLOURS), size=m)
            top = rng.integers(0, TETROMINO_SIZE - _HEIGHT[shape] * block + 1)
            left = rng.integers(0, TETROMINO_SIZE - _WIDTH[shape] * block + 1)
            cell = _cell_map(shape, top, left, block)
            ok = ~np.any((cell >= 0) & occupied[todo], axis=(1, 2))
            done = todo[ok]
            shapes[done, p], colours[done, p] = shape[ok], colour[ok]
            tops[done, p], lefts[done, p] = top[ok], left[ok]
            cells[p, done] = cell[ok]
            occupied[done] |= cell[ok] >= 0
            todo = todo[~ok]
            if todo.size == 0:
                break
        else:
            raise RuntimeError(f"could not place {_PIECES} tetrominoes in {_MAX_TRIES} tries")

    # number the pieces in raster order of their first pixel
    first = np.argmax((cells >= 0).reshape(_PIECES, n, -1), axis=2).T  # [n, pieces]
    order = np.argsort(first, axis=1)  # order[i, o - 1] = the piece that is object o
    rows = np.arange(n)[:, None]
    shapes, colours, cells = shapes[rows, order], colours[rows, order], cells[order.T, rows.T]
    # cells is now [pieces, n, H, W] in object order (fancy indexing keeps the first axes)

    object_masks = np.zeros((n, TETROMINO_SIZE, TETROMINO_SIZE), np.int64)
    part_masks = np.zeros((n, TETROMINO_SIZE, TETROMINO_SIZE), np.int64)
    images = np.zeros((n, 3, TETROMINO_SIZE, TETROMINO_SIZE), np.float32)
    for o in range(_PIECES):
        here = cells[o] >= 0
        object_masks[here] = o + 1
        part_masks[here] = 4 * o + 1 + cells[o][here]
        rgb = TETROMINO_COLOURS[colours[:, o]][:, :, None, None]  # [n, 3, 1, 1]
        images = np.where(here[:, None], rgb, images)
    n_parts = 4 * _PIECES + 1
    part_to_object = np.concatenate([[0], np.repeat(np.arange(1, _PIECES + 1), 4)])
    object_classes = np.concatenate([np.full((n, 1), -1), shapes], axis=1)
    part_shapes = np.full((n, n_parts), PART_SHAPES.index("square"), np.int64)
    part_shapes[:, 0] = -1
    return ImageSet(
        images=images.astype(np.float32),
        part_masks=part_masks,
        object_masks=object_masks,
        part_to_object=np.tile(part_to_object, (n, 1)).astype(np.int64),
        object_classes=object_classes.astype(np.int64),
        part_shapes=part_shapes,
        labels=_LETTER[shapes[:, 0]],
    )
