"""Island scores against ground truth, checked against definitions written out here.

The reference ARI counts pairs one by one (no contingency table); the reference matched IoU
tries every assignment of islands to segments. Labelings are drawn fresh on every run.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import fresh_seed

from bioglom.scores import (
    Controlled,
    adjusted_rand_index,
    column_labels,
    derangement,
    fg_ari,
    matched_iou,
    mismatched_control,
    nesting,
    score_islands,
    track_islands,
    weighted_nesting,
)


def brute_force_ari(true, pred) -> float:
    """ARI from explicit pair counts: pairs together in both, in the truth, in the prediction."""
    both = same_true = same_pred = total = 0
    for i, j in itertools.combinations(range(len(true)), 2):
        t, p = true[i] == true[j], pred[i] == pred[j]
        both += t and p
        same_true += t
        same_pred += p
        total += 1
    expected = same_true * same_pred / total
    top = (same_true + same_pred) / 2
    return 1.0 if top == expected else (both - expected) / (top - expected)


def random_labelings(rng, trials: int = 60):
    for _ in range(trials):
        n = int(rng.integers(2, 40))
        a = rng.integers(0, int(rng.integers(1, 6)), n)
        b = rng.integers(0, int(rng.integers(1, 8)), n)
        yield a, b


def test_ari_equals_pair_counting_on_random_labelings():
    rng = np.random.default_rng(fresh_seed())
    for a, b in random_labelings(rng):
        assert adjusted_rand_index(a, b) == pytest.approx(brute_force_ari(a, b), abs=1e-12)


def test_fg_ari_equals_pair_counting_over_foreground_only():
    """FG-ARI is the ARI of the items whose true label is not 0; what the prediction does on
    background items cannot change it."""
    rng = np.random.default_rng(fresh_seed())
    for a, b in random_labelings(rng):
        fg = a != 0
        if fg.sum() < 2:
            assert np.isnan(fg_ari(a, b))
            continue
        expected = brute_force_ari(a[fg], b[fg])
        assert fg_ari(a, b) == pytest.approx(expected, abs=1e-12)
        b2 = b.copy()
        b2[~fg] = rng.integers(0, 50, (~fg).sum())
        assert fg_ari(a, b2) == pytest.approx(expected, abs=1e-12)


def test_identical_and_permuted_labelings_score_one():
    rng = np.random.default_rng(fresh_seed())
    a = rng.integers(0, 5, 60)
    perm = rng.permutation(10)
    b = perm[a] + 100  # the same partition under other names
    for fn in (adjusted_rand_index, fg_ari, matched_iou):
        assert fn(a, a) == pytest.approx(1.0)
        assert fn(a, b) == pytest.approx(1.0)


def test_single_cluster_edge_cases():
    """Both one cluster: the same partition, 1. One side one cluster, the other split: no pair
    agreement beyond chance, 0. Both all singletons: 1. Fewer than two items: NaN."""
    one = np.zeros(10, dtype=int)
    split = np.arange(10) % 3
    singletons = np.arange(10)
    assert adjusted_rand_index(one, one) == 1.0
    assert adjusted_rand_index(one, split) == 0.0
    assert adjusted_rand_index(split, one) == 0.0
    assert adjusted_rand_index(singletons, singletons + 5) == 1.0
    assert np.isnan(adjusted_rand_index(np.array([3]), np.array([1])))
    fg_one = np.ones(10, dtype=int)  # one object, no background
    assert fg_ari(fg_one, one) == 1.0
    assert fg_ari(fg_one, split) == 0.0
    assert np.isnan(fg_ari(np.zeros(10, dtype=int), split))  # all background


def brute_force_matched_iou(true, pred, background=0) -> float:
    segments = [t for t in np.unique(true) if t != background]
    islands = list(np.unique(pred))
    islands += [None] * max(0, len(segments) - len(islands))  # unmatched segments score 0

    def iou(t, p):
        if p is None:
            return 0.0
        a, b = true == t, pred == p
        return (a & b).sum() / (a | b).sum()

    best = max(
        sum(iou(t, p) for t, p in zip(segments, chosen, strict=False))
        for chosen in itertools.permutations(islands, len(segments))
    )
    return best / len(segments)


def test_matched_iou_by_hand_and_against_all_assignments():
    """By hand: segment 1 = {0, 1}, 2 = {2, 3}, background {4, 5}; islands 5 = {0, 1, 2},
    7 = {3, 4, 5}. IoU(1, 5) = 2/3, IoU(2, 5) = IoU(2, 7) = 1/4, IoU(1, 7) = 0; the best
    one-to-one match is 1-5, 2-7: (2/3 + 1/4) / 2."""
    true = np.array([1, 1, 2, 2, 0, 0])
    pred = np.array([5, 5, 5, 7, 7, 7])
    assert matched_iou(true, pred) == pytest.approx((2 / 3 + 1 / 4) / 2)
    rng = np.random.default_rng(fresh_seed())
    for _ in range(30):
        n = int(rng.integers(4, 20))
        a = rng.integers(0, 4, n)
        b = rng.integers(0, int(rng.integers(1, 5)), n)
        if (a != 0).any():
            assert matched_iou(a, b) == pytest.approx(brute_force_matched_iou(a, b))


def test_nesting_by_hand():
    """Level l islands {0,1,2} and {3}; level l+1 splits the first 2:1. Shares 2/3 and 1."""
    lower = np.array([0, 0, 0, 1])
    upper = np.array([4, 4, 9, 9])
    assert nesting(lower, upper) == pytest.approx((2 / 3 + 1) / 2)
    assert nesting(upper, upper) == 1.0


def test_column_labels_take_the_majority_of_each_patch():
    """2x2 patches: a patch with three 5s and one 2 is 5; a 2-2 tie goes to the smaller id."""
    masks = np.array(
        [
            [
                [5, 5, 2, 2],
                [5, 2, 7, 7],
                [0, 0, 1, 1],
                [0, 0, 1, 3],
            ]
        ]
    )
    np.testing.assert_array_equal(column_labels(masks, (2, 2))[0], [[5, 2], [0, 1]])
    with pytest.raises(ValueError, match="multiple"):
        column_labels(masks, (3, 3))


def test_score_islands_averages_images_and_levels():
    """Level 0 reproduces the truth in image 0 and lumps image 1 into one island; level 1 is one
    island everywhere. FG-ARI of level 0: (1 + 0) / 2; nesting is 1 under a single top island."""
    truth = np.array([[[1, 1], [2, 2]], [[1, 1], [2, 2]]])  # [B=2, 2, 2]
    level0 = np.array([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    level1 = np.zeros_like(level0)
    labels = np.stack([level0, level1])  # [K=2, B=2, 2, 2]
    s = score_islands(labels, {"obj": truth})
    np.testing.assert_allclose(s["fgari_obj"], [0.5, 0.0])
    np.testing.assert_allclose(s["count"], [1.5, 1.0])
    np.testing.assert_allclose(s["size"], [3.0, 4.0])
    np.testing.assert_allclose(s["nesting"], [1.0])


def test_ari_across_images_is_one_for_a_fixed_partition():
    """Every image with the same islands (under other names): 1; islands that follow each
    image's content differently: below 1."""
    rng = np.random.default_rng(fresh_seed())
    fixed = rng.integers(0, 4, (3, 3))
    same = np.stack([fixed, fixed + 10, fixed * 2])[None]  # [K=1, B=3, 3, 3]
    assert score_islands(same)["ari_across"][0] == pytest.approx(1.0)
    varied = np.stack([fixed, np.rot90(fixed), np.zeros_like(fixed)])[None]
    expected = np.mean(
        [brute_force_ari(a.reshape(-1), b.reshape(-1)) for a, b in
         [(varied[0, 0], varied[0, 1]), (varied[0, 1], varied[0, 2]), (varied[0, 2], varied[0, 0])]]
    )  # fmt: skip
    assert score_islands(varied)["ari_across"][0] == pytest.approx(expected)


# ---- the mismatched-image control and weighted nesting (docs/design.md §10) ------------------


def image_independent_partitions(grid, B):
    """Partitions that are the same in every image: fixed blocks 2x2, 4x4, 8x8 (the grid cut
    into that many blocks), one island, all singletons, k-means on position."""
    from bioglom.baselines import fixed_blocks, kmeans_position

    hg, wg = grid
    yield "blocks_2x2", fixed_blocks(grid, 2, B)
    yield "blocks_4x4", fixed_blocks(grid, 4, B)
    yield "blocks_8x8", fixed_blocks(grid, 8, B)
    yield "one island", np.zeros((B, hg, wg), dtype=np.int64)
    yield "singletons", np.broadcast_to(np.arange(hg * wg).reshape(hg, wg), (B, hg, wg))
    yield "kmeans_position", kmeans_position(grid, 5, B, seed=3)


def test_mismatched_control_is_exactly_zero_for_partitions_that_ignore_the_image():
    """delta = mean_b s(truth_b, islands_b) - mean_b s(truth_b, islands_pi(b)) is 0 for every
    score whenever the islands are the same in every image, on generated scenes and on random
    truth, while the raw scores are far from 0."""
    from bioglom.data import part_whole_scenes

    seed = fresh_seed()
    scenes = part_whole_scenes(6, 32, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    truths = {
        "obj": column_labels(scenes.object_masks, (16, 16)),
        "part": column_labels(scenes.part_masks, (16, 16)),
        "random": rng.integers(0, 4, (6, 16, 16)),
    }
    for name, islands in image_independent_partitions((16, 16), 6):
        for t_name, truth in truths.items():
            for fn in (fg_ari, adjusted_rand_index, matched_iou):
                c = mismatched_control(fn, truth, islands)
                assert abs(c.delta) < 1e-12, (name, t_name, fn.__name__, c, seed)
                assert c.score == c.mismatched, (name, t_name, fn.__name__, seed)
        c = mismatched_control(weighted_nesting, truths["random"], islands)
        assert abs(c.delta) < 1e-12, (name, c, seed)
        labels = np.stack([islands, islands, truths["random"]])  # [K=3, B, 16, 16]
        s = score_islands(labels, {"obj": truths["obj"], "part": truths["part"]})
        for key in ("dfgari_obj", "dfgari_part", "dari_obj", "dmiou_part"):
            assert np.all(np.abs(s[key][:2]) < 1e-12), (name, key, s[key], seed)
        if name in ("blocks_2x2", "blocks_4x4"):  # the zero is a cancellation, not two zeros
            c = mismatched_control(fg_ari, truths["obj"], islands)
            assert c.score > 0.05 and c.mismatched > 0.05, (name, c, seed)
        if name != "singletons":  # all singletons: nothing to nest, NaN
            assert abs(s["dwnesting"][0]) < 1e-12, (name, s["dwnesting"], seed)
    assert fg_ari(truths["obj"][0], truths["obj"][0]) == 1.0  # the truth itself is not 0


def test_mismatched_control_by_hand():
    """Three images of four columns. Truth 0 = [1 1 2 2], truth 1 = [1 2 1 2], truth 2 all
    background; islands 0 = [0 0 1 1], 1 = [0 1 0 1], 2 one island. pi(b) = b + 1 mod 3.
    FG-ARI matched: 1, 1, NaN (no foreground) -> 1. Mismatched: FG-ARI(t0, i1) = -1/2 (every
    pair split in one labeling is joined in the other: index 0, expected 2 * 2 / 6, top 2),
    FG-ARI(t1, i2) = 0 (one island), t2 NaN -> -1/4. delta = 1 + 1/4."""
    truth = np.array([[1, 1, 2, 2], [1, 2, 1, 2], [0, 0, 0, 0]])
    islands = np.array([[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(derangement(3), [1, 2, 0])
    c = mismatched_control(fg_ari, truth, islands)
    assert c.score == pytest.approx(1.0)
    assert c.mismatched == pytest.approx(-0.25)
    assert c.delta == pytest.approx(1.25)
    assert isinstance(c, Controlled) and c.delta == c.score - c.mismatched
    one = mismatched_control(fg_ari, truth[:1], islands[:1])  # one image: no control
    assert one.score == 1.0 and np.isnan(one.mismatched) and np.isnan(one.delta)
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def test_weighted_nesting_by_hand():
    """Lower islands {0,1,2}, {3} (one column: left out), {4,5}; upper 5 5 7 | 7 | 7 8.
    Island 0 has 2 of 3 columns in upper 5, island 2 has 1 of 2 in one upper island:
    (2 + 1) / (3 + 2) = 0.6. The unweighted mean counts the single column: (2/3 + 1 + 1/2) / 3.
    A labeling nested exactly in another scores 1; all singletons leave nothing: NaN."""
    lower = np.array([0, 0, 0, 1, 2, 2])
    upper = np.array([5, 5, 7, 7, 7, 8])
    assert weighted_nesting(lower, upper) == pytest.approx(0.6)
    assert nesting(lower, upper) == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    fine = np.array([0, 0, 1, 1, 2, 2])
    assert weighted_nesting(fine, np.array([3, 3, 3, 3, 4, 4])) == 1.0
    assert np.isnan(weighted_nesting(np.arange(6), upper))


def test_weighted_nesting_of_unrelated_partitions_is_low_and_its_control_near_zero():
    """Lower islands all pairs, upper labels drawn uniformly from M: a pair lies in one upper
    island with probability 1/M (share 1), else its share is 1/2, so the expectation is
    1/2 + 1/(2M). Random labelings with ~160 islands on 256 columns (labels drawn from 256)
    nest ~0.77 unweighted (the singletons count 1) but ~0.42 weighted, and the mismatched
    control is about 0."""
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    B, N, M = 24, 256, 150
    pairs = np.broadcast_to(np.repeat(np.arange(N // 2), 2), (B, N))
    upper = rng.integers(0, M, (B, N))
    c = mismatched_control(weighted_nesting, pairs, upper)
    assert c.score == pytest.approx(0.5 + 0.5 / M, abs=0.01), (c, seed)
    assert abs(c.delta) < 0.02, (c, seed)
    lower, upper = rng.integers(0, N, (2, B, N))
    unweighted = np.mean([nesting(lower[b], upper[b]) for b in range(B)])
    c = mismatched_control(weighted_nesting, lower, upper)
    assert unweighted > 0.7 and c.score < 0.5, (unweighted, c, seed)
    assert abs(c.delta) < 0.03, (c, seed)


def test_object_cosines_by_hand():
    """Image 0: object 1 on columns 0, 1 with vectors (1, 0), (2, 0); object 2 on columns 2, 3
    with (0, 1), (3, 0); background (columns 4, 5) ignored. Within: object 1 cosine 1, object 2
    cosine 0, mean 0.5; between: the four cross pairs 0, 1, 0, 1, mean 0.5. Image 1: one object
    (columns 0-2: (1, 0), (0, 1), (0, 1)), within (0 + 0 + 1) / 3, no pair of objects. The
    means over images: within (0.5 + 1/3) / 2, between 0.5 (image 1 has none)."""
    from bioglom.scores import object_cosines

    e = np.zeros((1, 6, 2, 2))
    e[0, :4, 0] = [[1, 0], [2, 0], [0, 1], [3, 0]]
    e[0, 4:, 0] = [[5, 5], [5, 5]]
    e[0, :3, 1] = [[1, 0], [0, 1], [0, 1]]
    e[0, 3:, 1] = [[1, 1], [1, 1], [1, 1]]
    objects = np.array([[1, 1, 2, 2, 0, 0], [1, 1, 1, 0, 0, 0]])
    got = object_cosines(e, objects.reshape(2, 2, 3))
    assert got["within"][0] == pytest.approx((0.5 + 1 / 3) / 2)
    assert got["between"][0] == pytest.approx(0.5)


# ------------------------------------------------------------------- change_cosines (§11)


def test_change_cosines_hand_case():
    """A 1x3 grid, one level, one image, steps 0-1 with skip = 1 (step 0 is not counted, so its
    wild change does not matter). Columns 0 and 1 are object 1, column 2 background; over step 1
    they change by (1, 0), (2, 0) and (0, 1): the object's pair (0, 1) has cosine 1, the edge
    pair (1, 2) cosine 0, and the pair (0, 2), 2 apart, enters only at radius 2 (cosine 0)."""
    from bioglom.scores import change_cosines

    e1 = np.array([[0.3, 0.1], [0.2, -0.5], [1.0, 1.0]])
    e0 = e1 + np.array([[50.0, -9.0], [-3.0, 7.0], [2.0, 2.0]])
    e2 = e1 + np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    traj = np.stack([e0, e1, e2])[:, None, :, None, :]  # [T+1 = 3, K = 1, N = 3, B = 1, d = 2]
    objects = np.array([[[1, 1, 0]], [[1, 1, 0]]])  # [T = 2, B = 1, N = 3]
    out = change_cosines(traj, objects, (1, 3))
    assert out["same_object"][0] == pytest.approx(1.0)
    assert out["object_background"][0] == pytest.approx(0.0)
    assert np.isnan(out["two_objects"][0]) and np.isnan(out["background"][0])
    wide = change_cosines(traj, objects, (1, 3), radius=2)
    assert wide["object_background"][0] == pytest.approx(0.0)  # (1, 2) and (0, 2): both 0
    with pytest.raises(ValueError, match="one frame per step"):
        change_cosines(traj, objects[:1], (1, 3))


def test_pair_cosines_hand_case_and_zero_vectors():
    """Three columns in a row, one object (0, 1) and background (2): vectors (1, 0), (1, 1)
    and (0, 0). The object's pair has cosine 1/sqrt(2); a zero vector has cosine 0 with
    everything (it cannot be normalised); the pair (0, 2), 2 apart, is out of radius 1."""
    from bioglom.scores import pair_cosines

    v = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])[None, None, :, None, :]  # [1, 1, 3, 1, 2]
    out = pair_cosines(v, np.array([[[1, 1, 0]]]), (1, 3))
    assert out["same_object"][0] == pytest.approx(1 / np.sqrt(2))
    assert out["object_background"][0] == 0.0
    assert np.isnan(out["background"][0])
    with pytest.raises(ValueError, match="one labelling per time"):
        pair_cosines(v, np.zeros((2, 1, 3), dtype=int), (1, 3))
    with pytest.raises(ValueError, match=r"\[T, K, N, B, d\]"):
        pair_cosines(v[0], np.array([[[1, 1, 0]]]), (1, 3))


def test_changed_patches_hand_case():
    """A 4x4 two-channel video of 3 frames on a 2x2 grid of 2x2 patches: frame 1 changes one
    pixel of channel 1 in the bottom-left patch, frame 2 changes nothing above the tolerance."""
    from bioglom.scores import changed_patches

    f = np.zeros((3, 1, 2, 4, 4))
    f[1:, 0, 1, 3, 0] = 0.5  # from frame 1 on
    f[2, 0, 0, 0, 3] = 1e-9  # below tol
    got = changed_patches(f, (2, 2))
    assert got.shape == (2, 1, 2, 2)
    assert got[0, 0].tolist() == [[False, False], [True, False]]
    assert not got[1].any()
    with pytest.raises(ValueError, match="not a multiple"):
        changed_patches(f, (3, 3))


@pytest.mark.parametrize("radius", [1, 2])
def test_change_cosines_equal_their_definition_looped(radius):
    """Random trajectories and labels on a 3x4 grid: the vectorised means equal a loop over
    every pair of columns at most `radius` apart along each axis, counted once."""
    from bioglom.scores import PAIR_KINDS, change_cosines

    T, K, H, W, B, d = 3, 2, 3, 4, 2, 5
    np_rng = np.random.default_rng(fresh_seed())
    traj = np_rng.normal(size=(T + 1, K, H * W, B, d))
    objects = np_rng.integers(0, 3, size=(T, B, H * W))
    got = change_cosines(traj, objects, (H, W), skip=1, radius=radius)
    sums = {kind: np.zeros(K) for kind in PAIR_KINDS}
    counts = dict.fromkeys(PAIR_KINDS, 0)
    for t in range(1, T):
        for x in range(H * W):
            for y in range(x + 1, H * W):
                if max(abs(x // W - y // W), abs(x % W - y % W)) > radius:
                    continue
                for b in range(B):
                    la, lb = objects[t, b, x], objects[t, b, y]
                    kind = ("background" if la == lb == 0 else "object_background"
                            if (la > 0) != (lb > 0) else "same_object" if la == lb
                            else "two_objects")  # fmt: skip
                    for k in range(K):
                        dx = traj[t + 1, k, x, b] - traj[t, k, x, b]
                        dy = traj[t + 1, k, y, b] - traj[t, k, y, b]
                        sums[kind][k] += dx @ dy / np.linalg.norm(dx) / np.linalg.norm(dy)
                    counts[kind] += 1
    for kind in PAIR_KINDS:
        np.testing.assert_allclose(got[kind], sums[kind] / counts[kind], rtol=1e-10)


def test_object_misses_hand_case():
    """One 3x4 image: object 1 fills columns (0,0),(0,1),(1,0),(1,1); object 2 fills (0,3),(1,3);
    the rest is background. Islands: object 1's first three columns are island 5, its fourth,
    (1,1), a single-column island 9; object 2 and the background all island 7. So object 1's
    main island holds 3/4 of it, object 2's all of it but it is merged with nothing (the
    background is no object); one stray column, on the edge (its neighbour (2,1) is
    background), single, not in the background's island. Merging object 2 into island 5 makes
    both objects merged."""
    from bioglom.scores import object_misses

    obj = np.array([[[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0]]])
    isl = np.array([[[5, 5, 7, 7], [5, 9, 7, 7], [7, 7, 7, 7]]])
    got = object_misses(isl, obj)
    assert got == {"objects": 2.0, "merged": 0.0, "stray": 1.0, "on_edge": 1.0, "single": 1.0,
                   "in_background": 0.0, "main_share": pytest.approx((3 / 4 + 1) / 2)}  # fmt: skip
    isl2 = np.array([[[5, 5, 7, 5], [5, 9, 7, 5], [7, 7, 7, 7]]])
    assert object_misses(isl2, obj)["merged"] == 2.0
    with pytest.raises(ValueError, match="alike"):
        object_misses(isl[0], obj)
    # with purity: (1,1), the stray column, and (0,3) have mixed patches -> 2 mixed, 1 stray;
    # a background column's purity does not count
    purity = np.ones((1, 3, 4))
    purity[0, 1, 1] = purity[0, 0, 3] = purity[0, 2, 2] = 0.75
    got = object_misses(isl, obj, purity)
    assert got["mixed"] == 2.0 and got["mixed_stray"] == 1.0 and got["stray"] == 1.0
    with pytest.raises(ValueError, match="purity"):
        object_misses(isl, obj, purity[0])


def test_column_purity_hand_case():
    """A 4x4 mask on a 2x2 grid of 2x2 patches: the top-left patch holds three pixels of object
    1 and one of the background (label 1, purity 3/4); the top-right two of object 2 and two of
    the background (a tie, label 0, purity 1/2); the bottom row is pure background (1)."""
    from bioglom.scores import column_labels, column_purity

    m = np.zeros((1, 4, 4), dtype=int)
    m[0, 0, :2] = 1
    m[0, 1, 0] = 1
    m[0, 0, 2:] = 2
    assert column_labels(m, (2, 2))[0].tolist() == [[1, 0], [0, 0]]
    assert column_purity(m, (2, 2))[0].tolist() == [[0.75, 0.5], [1.0, 1.0]]


def test_track_islands_hand_worked():
    """A 1x4 grid, two frames. Object 1 covers columns {0, 1}, then moves to {1, 2}.
    Frame 0 islands: A = {0, 1} (vector u), B = {2, 3} (v); frame 1: {0} (v), D = {1, 2} (u),
    {3} (v). The object's matched island A carries u; u continues as D, which is exactly the
    object in frame 1: track IoU 1, segment IoU 1, no switch. Swap the vectors of frame 1
    (D carries v, {0} carries u): u now continues as {0}, IoU({0}, {1, 2}) = 0, and {0} is not
    the best match D: one switch in one pair."""
    u, v = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    labels = np.array([[[[0, 0, 1, 1]]], [[[5, 6, 6, 7]]]])  # [T=2, B=1, 1, 4]
    objects = np.array([[[[1, 1, 0, 0]]], [[[0, 1, 1, 0]]]])
    vectors = np.zeros((2, 4, 1, 2))
    vectors[0, :, 0] = [u, u, v, v]
    vectors[1, :, 0] = [v, u, u, v]
    got = track_islands(labels, vectors, objects)
    assert got == {"track_iou": 1.0, "segment_iou": 1.0, "switches": 0.0, "pairs": 1.0}
    vectors[1, :, 0] = [u, v, v, v + 0.1 * u]
    got = track_islands(labels, vectors, objects)
    assert got == {"track_iou": 0.0, "segment_iou": 1.0, "switches": 1.0, "pairs": 1.0}
    # an object that leaves the image is not counted; no object at all gives NaN
    gone = objects.copy()
    gone[1] = 0
    assert np.isnan(track_islands(labels, vectors, gone)["track_iou"])


def test_track_islands_mismatched_control_is_zero_for_islands_that_ignore_the_video():
    """experiments/video.py's control: video b's islands scored against video b+1's objects.
    Islands (and vectors) that are the same in every video score exactly what they score
    against the true objects, so the delta is 0 -- whatever the objects (random, seed
    printed)."""
    seed = fresh_seed()
    g = np.random.default_rng(seed)
    T, B, hg, wg, d = 3, 4, 4, 5, 3
    one = g.integers(0, 4, size=(T, 1, hg, wg))
    labels = np.repeat(one, B, axis=1)
    vectors = np.repeat(g.standard_normal((T, hg * wg, 1, d)), B, axis=2)
    objects = g.integers(0, 3, size=(T, B, hg, wg))
    true = track_islands(labels, vectors, objects)["track_iou"]
    other = track_islands(labels, vectors, np.roll(objects, -1, axis=1))["track_iou"]
    assert np.isclose(true, other, rtol=0, atol=1e-12), f"seed {seed}"
