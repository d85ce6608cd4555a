"""Island extraction (bioglom.islands) on hand-made states with known components."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import fresh_seed

from bioglom.islands import (
    agglomerative_islands,
    connected_islands,
    extract_islands,
    island_counts,
    island_sizes,
    parse_tree,
)


def hand_made_state(layout: np.ndarray, d: int = 6, noise: float = 0.0, seed: int = 0):
    """A one-level, one-image state whose columns carry vector `v[label]` per the layout."""
    g = np.random.default_rng(seed)
    hg, wg = layout.shape
    vecs = np.linalg.qr(g.normal(size=(d, d)))[0][: layout.max() + 1]  # orthonormal rows
    e = vecs[layout.reshape(-1)] + noise * g.normal(size=(hg * wg, d))
    return torch.tensor(e, dtype=torch.float32).view(1, hg * wg, 1, d)


def test_components_of_a_known_layout():
    """Two regions with the same vector but not touching are two islands (4-connectivity);
    labels follow first appearance in row-major order."""
    layout = np.array(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 0, 0],
            [2, 2, 0, 0],
        ]
    )
    labels = connected_islands(hand_made_state(layout, noise=0.01), (4, 4), threshold=0.8)
    expected = np.array(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 3, 3],
            [2, 2, 3, 3],
        ]
    )
    np.testing.assert_array_equal(labels[0, 0], expected)
    assert island_counts(labels).tolist() == [[4]]


def test_diagonal_contact_does_not_join():
    """Only 4-neighbours join: equal vectors touching at a corner stay separate islands."""
    layout = np.array([[0, 1], [1, 0]])
    labels = connected_islands(hand_made_state(layout), (2, 2), threshold=0.5)
    assert island_counts(labels)[0, 0] == 4


def test_threshold_decides():
    """Neighbours with cosine exactly between two thresholds join under the lower one only."""
    e = torch.tensor([[1.0, 0.0], [0.6, 0.8]]).view(1, 2, 1, 2)  # cosine 0.6
    assert island_counts(connected_islands(e, (1, 2), 0.5))[0, 0] == 1
    assert island_counts(connected_islands(e, (1, 2), 0.7))[0, 0] == 2


def test_levels_and_images_are_labelled_separately():
    """Labels are per (level, image): [K, B, H_g, W_g]."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(3, 6, 2, 4, generator=g)
    e[1] = 1.0  # level 1: every column identical -> one island per image
    labels = connected_islands(e, (2, 3), 0.9)
    assert labels.shape == (3, 2, 2, 3)
    assert island_counts(labels)[1].tolist() == [1, 1]


def test_agglomerative_joins_separated_regions_that_agree():
    """Agglomerative clustering ignores the grid: the two non-touching regions that carry the
    same vector are one island, where connected components see two."""
    layout = np.array(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 0, 0],
            [2, 2, 0, 0],
        ]
    )
    state = hand_made_state(layout, noise=0.01, seed=fresh_seed())
    agg = agglomerative_islands(state, (4, 4), threshold=0.8)
    np.testing.assert_array_equal(agg[0, 0], layout)  # first appearance: 0, 1, 2 as laid out
    assert island_counts(connected_islands(state, (4, 4), 0.8))[0, 0] == 4


def test_agglomerative_threshold_is_a_mean_cosine_cut():
    """Three columns: a and b at cosine 0.6, c orthogonal to both. Average linkage merges a and
    b below a cut of 0.6 and not above it; c stays alone unless the cut is below 0."""
    a, b, c = [1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]
    e = torch.tensor([a, b, c]).view(1, 3, 1, 3)
    assert agglomerative_islands(e, (1, 3), 0.5)[0, 0].tolist() == [[0, 0, 1]]
    assert agglomerative_islands(e, (1, 3), 0.7)[0, 0].tolist() == [[0, 1, 2]]
    assert agglomerative_islands(e, (1, 3), -0.5)[0, 0].tolist() == [[0, 0, 0]]


def test_extract_islands_names_a_bad_method():
    with pytest.raises(ValueError, match="'kmeans'"):
        extract_islands(torch.zeros(1, 4, 1, 2), (2, 2), "kmeans")


def test_parse_tree_links_each_island_to_the_island_above():
    """A hand-made two-level labelling of a 2x4 grid: level 0 has three islands, level 1 two;
    island L0.1 straddles the boundary (3 of its 4 columns in L1.1)."""
    level0 = np.array([[0, 0, 1, 1], [0, 1, 1, 2]])
    level1 = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    labels = np.stack([level0, level1])[:, None]  # [K=2, B=1, 2, 4]
    tree = parse_tree(labels)
    json.dumps(tree)  # plain data
    nodes = {n["id"]: n for n in tree["nodes"]}
    assert sorted(nodes) == ["L0.0", "L0.1", "L0.2", "L1.0", "L1.1"]
    assert nodes["L0.0"]["parent"] == "L1.0" and nodes["L0.0"]["inside"] == 1.0
    assert nodes["L0.1"]["parent"] == "L1.1" and nodes["L0.1"]["inside"] == 0.75
    assert nodes["L0.1"]["size"] == 4 and nodes["L0.1"]["centroid"] == [0.5, 2.0]
    assert nodes["L0.2"]["parent"] == "L1.1"
    assert nodes["L1.1"]["children"] == ["L0.1", "L0.2"]
    assert nodes["L1.0"]["parent"] is None and nodes["L1.0"]["inside"] is None


def test_island_sizes_are_columns_per_island():
    labels = np.array([[0, 0, 1, 1], [0, 0, 0, 0]]).reshape(2, 1, 2, 2)
    np.testing.assert_allclose(island_sizes(labels), [[2.0], [4.0]])


def test_agglomerative_gives_non_finite_columns_islands_of_their_own():
    """A NaN column cannot be compared: it is its own island; the rest cluster as usual."""
    layout = np.array([[0, 0], [1, 1]])
    state = hand_made_state(layout)
    state[0, 1, 0, 0] = float("nan")
    labels = agglomerative_islands(state, (2, 2), threshold=0.8)
    assert labels[0, 0].tolist() == [[0, 1], [2, 2]]
