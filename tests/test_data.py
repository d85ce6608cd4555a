"""Tests of bioglom.data: procedural part-whole scenes, moving scenes and the file loader."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bioglom.data import (
    OBJECT_CLASSES,
    PART_SHAPES,
    ImageSet,
    VideoSet,
    load_images,
    moving_scenes,
    part_whole_scenes,
)


@pytest.fixture(scope="module")
def scenes() -> ImageSet:
    return part_whole_scenes(200, size=32, seed=3)


@pytest.fixture(scope="module")
def video() -> VideoSet:
    return moving_scenes(16, frames=5, size=32, seed=4, max_speed=1.5)


# ------------------------------------------------------------------ part_whole_scenes: arrays


def test_shapes_dtypes_and_range(scenes: ImageSet) -> None:
    """Every array has the documented shape and dtype; images lie in [0, 1]."""
    n = 200
    assert len(scenes) == n and scenes.channels == 3 and scenes.size == (32, 32)
    assert scenes.images.shape == (n, 3, 32, 32) and scenes.images.dtype == np.float32
    assert 0.0 <= scenes.images.min() and scenes.images.max() <= 1.0
    for masks in (scenes.part_masks, scenes.object_masks):
        assert masks.shape == (n, 32, 32) and masks.dtype == np.int64
    n_parts = scenes.part_masks.max() + 1
    n_objects = scenes.object_masks.max() + 1
    assert scenes.part_to_object.shape == (n, n_parts)
    assert scenes.part_shapes.shape == (n, n_parts)
    assert scenes.object_classes.shape == (n, n_objects)
    for table in (scenes.part_to_object, scenes.part_shapes, scenes.object_classes):
        assert table.dtype == np.int64


def test_same_seed_gives_identical_arrays() -> None:
    """Generation is a pure function of its arguments."""
    a = part_whole_scenes(8, seed=11, noise=0.05)
    b = part_whole_scenes(8, seed=11, noise=0.05)
    for name in ("images", "part_masks", "object_masks", "part_to_object", "object_classes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_different_seeds_differ() -> None:
    """Another seed gives other scenes."""
    a, b = part_whole_scenes(8, seed=0), part_whole_scenes(8, seed=1)
    assert not np.array_equal(a.images, b.images)
    assert not np.array_equal(a.part_masks, b.part_masks)


# ------------------------------------------------------- part_whole_scenes: masks vs pixels


def test_background_pixels_are_black(scenes: ImageSet) -> None:
    """Pixels outside every part (part mask 0) are exactly 0 in every channel."""
    background = scenes.part_masks == 0
    assert background.any()
    pixels = np.moveaxis(scenes.images, 1, -1)  # [n, H, W, C]
    assert np.all(pixels[background] == 0.0)
    np.testing.assert_array_equal(background, scenes.object_masks == 0)


def test_each_part_is_one_flat_visible_colour(scenes: ImageSet) -> None:
    """All pixels of a part share one colour, which is clearly brighter than black."""
    pixels = np.moveaxis(scenes.images, 1, -1)
    for i in range(0, len(scenes), 7):
        for p in np.unique(scenes.part_masks[i])[1:]:
            colours = pixels[i][scenes.part_masks[i] == p]
            assert np.all(colours == colours[0]), (i, p)
            assert colours[0].max() > 0.3, (i, p, colours[0])


def test_object_masks_follow_from_part_masks(scenes: ImageSet) -> None:
    """object_masks[i] == part_to_object[i][part_masks[i]] for every image."""
    derived = np.take_along_axis(
        scenes.part_to_object, scenes.part_masks.reshape(len(scenes), -1), axis=1
    ).reshape(scenes.part_masks.shape)
    np.testing.assert_array_equal(derived, scenes.object_masks)
    assert np.all(scenes.part_to_object[:, 0] == 0)


def test_ids_are_consecutive_and_all_visible(scenes: ImageSet) -> None:
    """Ids 1..P_i (parts) and 1..O_i (objects) each have pixels; unused table slots are blank."""
    for i in range(len(scenes)):
        n_parts = int(np.count_nonzero(scenes.part_to_object[i]))
        n_objects = int(np.count_nonzero(scenes.object_classes[i] >= 0))
        assert set(np.unique(scenes.part_masks[i])) == set(range(n_parts + 1))
        assert set(np.unique(scenes.object_masks[i])) == set(range(n_objects + 1))
        assert np.all(scenes.part_to_object[i, n_parts + 1 :] == 0)
        assert np.all(scenes.part_shapes[i, 1 : n_parts + 1] >= 0)
        assert np.all(
            scenes.part_shapes[i, [0, *range(n_parts + 1, scenes.part_shapes.shape[1])]] == -1
        )
        assert scenes.object_classes[i, 0] == -1
        assert set(scenes.part_to_object[i, 1 : n_parts + 1]) == set(range(1, n_objects + 1))


@pytest.mark.parametrize(("low", "high"), [(2, 3), (1, 1), (3, 5)])
def test_visible_objects_between_min_and_max(low: int, high: int) -> None:
    """Every image shows between min_objects and max_objects objects, each with pixels."""
    data = part_whole_scenes(64, seed=5, min_objects=low, max_objects=high)
    counts = [len(np.unique(m)) - 1 for m in data.object_masks]
    assert min(counts) >= low and max(counts) <= high
    assert set(counts) == set(range(low, high + 1))


def test_classes_and_shapes_vary_and_share_a_vocabulary(scenes: ImageSet) -> None:
    """Over 200 scenes several classes and shapes occur, and some shape serves two classes."""
    classes = scenes.object_classes[scenes.object_classes >= 0]
    shapes = scenes.part_shapes[scenes.part_shapes >= 0]
    assert len(OBJECT_CLASSES) >= 5 and len(PART_SHAPES) >= 5
    assert len(np.unique(classes)) >= 5 and len(np.unique(shapes)) >= 5
    classes_of_shape: dict[int, set[int]] = {}
    for i in range(len(scenes)):
        for p in range(1, scenes.part_shapes.shape[1]):
            if scenes.part_shapes[i, p] >= 0:
                obj_class = scenes.object_classes[i, scenes.part_to_object[i, p]]
                classes_of_shape.setdefault(int(scenes.part_shapes[i, p]), set()).add(obj_class)
    assert max(len(c) for c in classes_of_shape.values()) >= 2


def test_noise_changes_pixels_not_masks() -> None:
    """noise > 0 perturbs pixels within [0, 1] and leaves the ground truth unchanged."""
    clean = part_whole_scenes(16, seed=2)
    noisy = part_whole_scenes(16, seed=2, noise=0.1)
    assert not np.array_equal(clean.images, noisy.images)
    assert 0.0 <= noisy.images.min() and noisy.images.max() <= 1.0
    assert noisy.images.dtype == np.float32
    np.testing.assert_array_equal(clean.part_masks, noisy.part_masks)
    np.testing.assert_array_equal(clean.object_masks, noisy.object_masks)
    np.testing.assert_array_equal(clean.part_to_object, noisy.part_to_object)


def test_subset_indexes_every_array(scenes: ImageSet) -> None:
    """subset applies the same numpy index to all arrays and keeps the axis for an int."""
    sub = scenes.subset(np.array([4, 1]))
    np.testing.assert_array_equal(sub.images, scenes.images[[4, 1]])
    np.testing.assert_array_equal(sub.part_to_object, scenes.part_to_object[[4, 1]])
    one = scenes.subset(3)
    assert len(one) == 1 and one.part_masks.shape == (1, 32, 32)
    assert ImageSet(np.zeros((2, 1, 8, 8), np.float32)).subset(slice(1)).part_masks is None


# ------------------------------------------------------------------------------ moving_scenes


def test_moving_shapes(video: VideoSet) -> None:
    """Frames [T, n, C, H, W] float32 in [0, 1], masks [T, n, H, W], tables [n, ...]."""
    assert video.frames.shape == (5, 16, 3, 32, 32) and video.frames.dtype == np.float32
    assert len(video) == 16 and video.num_frames == 5 and video.size == (32, 32)
    assert 0.0 <= video.frames.min() and video.frames.max() <= 1.0
    assert video.part_masks.shape == video.object_masks.shape == (5, 16, 32, 32)
    assert video.part_to_object.shape[0] == video.object_classes.shape[0] == 16
    assert video.subset([2, 3]).frames.shape == (5, 2, 3, 32, 32)
    assert video.frame(1).images.shape == (16, 3, 32, 32)


def test_moving_frames_change(video: VideoSet) -> None:
    """Objects move: consecutive frames differ."""
    for t in range(video.num_frames - 1):
        assert not np.array_equal(video.frames[t], video.frames[t + 1])


def test_zero_speed_gives_static_videos() -> None:
    """At max_speed = 0 (and no spin) every frame is the same."""
    static = moving_scenes(6, frames=4, seed=1, max_speed=0.0)
    for t in range(1, 4):
        np.testing.assert_array_equal(static.frames[t], static.frames[0])
        np.testing.assert_array_equal(static.part_masks[t], static.part_masks[0])


def test_moving_ids_are_fixed_over_time(video: VideoSet) -> None:
    """Each frame's object mask follows from its part mask through the one fixed table, and an
    object keeps its id: its pixels in consecutive frames lie close together."""
    for t in range(video.num_frames):
        for i in range(len(video)):
            np.testing.assert_array_equal(
                video.part_to_object[i][video.part_masks[t, i]], video.object_masks[t, i]
            )
    ys, xs = np.mgrid[:32, :32]
    for i in range(len(video)):
        for o in range(1, int(video.object_masks[:, i].max()) + 1):
            centres = [
                (ys[m].mean(), xs[m].mean())
                for m in (video.object_masks[:, i] == o)
                if m.sum() >= 4
            ]
            steps = np.linalg.norm(np.diff(np.array(centres), axis=0), axis=1)
            assert np.all(steps < 5.0), (i, o, steps)


def test_moving_middle_frame_matches_still_generator_contract(video: VideoSet) -> None:
    """In the middle frame every object of every video is visible, with 2-3 objects."""
    middle = video.object_masks[video.num_frames // 2]
    counts = [len(np.unique(m)) - 1 for m in middle]
    assert min(counts) >= 2 and max(counts) <= 3
    assert counts == [int(np.count_nonzero(c >= 0)) for c in video.object_classes]


# -------------------------------------------------------------------------------- load_images


def _random_data(rng: np.random.Generator, n: int = 5) -> dict[str, np.ndarray]:
    part_masks = rng.integers(0, 4, size=(n, 12, 10))
    part_to_object = np.array([[0, 1, 1, 2]] * n)
    return {
        "images": rng.random((n, 3, 12, 10)).astype(np.float32),
        "part_masks": part_masks,
        "object_masks": part_to_object[0][part_masks],
        "part_to_object": part_to_object,
    }


def _write(path, arrays: dict[str, np.ndarray]) -> None:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f[key] = value


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5"])
def test_load_round_trip(tmp_path, suffix: str) -> None:
    """What is written is read back, images as float32 and masks as int64."""
    arrays = _random_data(np.random.default_rng(7))
    path = tmp_path / f"data{suffix}"
    _write(path, arrays)
    data = load_images(path)
    assert data.images.dtype == np.float32 and data.part_masks.dtype == np.int64
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(data, key), value)


def test_load_images_only_and_float_masks(tmp_path) -> None:
    """Masks are optional; integer-valued float masks are accepted and become int64."""
    rng = np.random.default_rng(8)
    images = rng.random((3, 1, 8, 8))
    _write(tmp_path / "a.npz", {"images": images})
    data = load_images(str(tmp_path / "a.npz"))
    assert data.part_masks is None and data.images.dtype == np.float32
    _write(tmp_path / "b.h5", {"images": images, "object_masks": np.ones((3, 8, 8))})
    assert load_images(tmp_path / "b.h5").object_masks.dtype == np.int64


def test_load_generated_scenes(tmp_path) -> None:
    """A saved ImageSet from part_whole_scenes loads back unchanged."""
    scenes = part_whole_scenes(4, seed=9)
    arrays = {k: v for k, v in vars(scenes).items() if v is not None}
    _write(tmp_path / "s.npz", arrays)
    loaded = load_images(tmp_path / "s.npz")
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(loaded, key), value)


def _bad_files():
    rng = np.random.default_rng(0)
    good = rng.random((4, 3, 8, 8)).astype(np.float32)
    nan = good.copy()
    nan[0, 0, 0, 0] = np.nan
    mask = np.zeros((4, 8, 8), np.int64)
    yield "missing", {"pixels": good}, "no array 'images'"
    yield "ndim", {"images": good[:, 0]}, r"ndim 3.*expected \[n, C, H, W\]"
    yield "above_one", {"images": good * 2}, r"values in \[.*\]; expected \[0, 1\]"
    yield "uint8", {"images": (good * 255).astype(np.uint8)}, "divide by 255"
    yield "negative", {"images": good - 1}, r"expected \[0, 1\]"
    yield "nan", {"images": nan}, "non-finite"
    yield "strings", {"images": np.full((4, 3, 8, 8), "a")}, "non-numeric dtype"
    yield "mask_shape", {"images": good, "part_masks": mask[:, :4]}, r"part_masks.*shape"
    yield "mask_n", {"images": good, "object_masks": mask[:3]}, r"object_masks.*shape"
    yield "mask_negative", {"images": good, "part_masks": mask - 1}, "expected ids >= 0"
    yield "mask_fraction", {"images": good, "part_masks": mask + 0.5}, "non-integer"
    yield (
        "p2o_short",
        {"images": good, "part_masks": mask + 2, "part_to_object": mask[:, 0, :2]},
        ("at least 3 columns"),
    )
    yield "p2o_alone", {"images": good, "part_to_object": mask[:, 0]}, "without 'part_masks'"


@pytest.mark.parametrize(("name", "arrays", "message"), list(_bad_files()))
@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_load_rejects_bad_files(tmp_path, suffix, name, arrays, message) -> None:
    """Each malformed file raises ValueError with a message naming the problem and the file."""
    if suffix == ".h5" and arrays["images" if "images" in arrays else "pixels"].dtype.kind == "U":
        arrays = {"images": np.full((4, 3, 8, 8), b"a")}  # HDF5 stores bytes, not unicode
    path = tmp_path / f"{name}{suffix}"
    _write(path, arrays)
    with pytest.raises(ValueError, match=message) as info:
        load_images(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_rejects_bad_suffix_and_missing_file(tmp_path) -> None:
    """An unknown suffix is a ValueError; a missing file a FileNotFoundError naming it."""
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"unsupported suffix '\.npy'"):
        load_images(path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_images(tmp_path / "nope.npz")


def _not_npz_files():
    rng = np.random.default_rng(8)
    yield "text", b"images = [[0.5]]\n", r"not an \.npz archive \(not a zip file"
    yield "junk", b"\x80\x04" + rng.bytes(500), r"not an \.npz archive \(not a zip file"
    yield "empty", b"", r"not an \.npz archive \(the file is empty\)"
    yield "zip_cut", b"PK\x03\x04" + rng.bytes(60), r"a damaged or truncated \.npz archive"


@pytest.mark.parametrize(("name", "content", "message"), list(_not_npz_files()))
def test_a_file_named_npz_that_is_not_an_npz_archive_says_so(tmp_path, name, content, message):
    """A `.npz` file that is not a zip archive (text, a pickle-looking byte, empty, cut short) is
    a one-line ValueError from load_images and a ConfigError naming data.path from
    image_geometry, saying what the file is -- not numpy's "contains pickled data"."""
    from bioglom.config import ConfigError, load_config
    from bioglom.model import image_geometry

    path = tmp_path / f"{name}.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_images(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert "pickle" not in str(info.value)
    config = load_config(overrides={"data.source": "file", "data.path": str(path)})
    with pytest.raises(ConfigError, match=message) as info:
        image_geometry(config)
    assert str(info.value).startswith(f"data.path = '{path}': ") and "pickle" not in str(info.value)


def test_a_npy_file_named_npz_is_told_apart(tmp_path):
    """A single array saved with np.save under a `.npz` name is reported as a .npy file, with
    the call that writes an .npz archive."""
    path = tmp_path / "images.npz"
    with open(path, "wb") as f:
        np.save(f, np.random.default_rng(9).random((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"a \.npy file .* np\.savez\(path, images=images\)"):
        load_images(path)


# ----------------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n=0"),
        ({"n": 2, "size": 7}, "size=7"),
        ({"n": 2, "min_objects": 0}, "min_objects=0"),
        ({"n": 2, "min_objects": 3, "max_objects": 2}, "max_objects=2"),
        ({"n": 2, "noise": -0.1}, "noise=-0.1"),
        ({"n": 2, "noise": float("nan")}, "noise=nan"),
    ],
)
def test_scene_argument_validation(kwargs, message) -> None:
    """Invalid arguments raise ValueError naming the argument and its value."""
    with pytest.raises(ValueError, match=message):
        part_whole_scenes(**kwargs)
    with pytest.raises(ValueError, match=message):
        moving_scenes(frames=2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"frames": 0}, "frames=0"), ({"frames": 2, "max_speed": -1.0}, "max_speed=-1.0")],
)
def test_video_argument_validation(kwargs, message) -> None:
    """moving_scenes also checks frames and max_speed."""
    with pytest.raises(ValueError, match=message):
        moving_scenes(2, **kwargs)


# ------------------------------------------- harder scenes: the options of issue 14 (item 1)


def _digest(data) -> str:
    """sha256 of every array of an ImageSet or VideoSet (name, dtype, shape and bytes)."""
    import dataclasses
    import hashlib

    h = hashlib.sha256()
    for f in dataclasses.fields(data):
        x = getattr(data, f.name)
        if x is not None:
            h.update(f.name.encode() + str(x.dtype).encode() + str(x.shape).encode())
            h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def test_default_scenes_are_pinned() -> None:
    """The scene options leave the default generator bit for bit as it was: these digests pin
    the default generator (computed before the options of issue 14 were added)."""
    still = part_whole_scenes(64, 32, 0)
    video = moving_scenes(8, 4, 32, 3, max_spin=0.1, noise=0.05)
    assert _digest(still) == "93ae77a39851554b5442e77ccfc4bcf27e7d729d37c37151ddec04c4ba5f8428"
    assert _digest(video) == "4df213f32ee09b2833f66dc0593c22db29c13e07f2b6be43ca2cf91b20de3a39"
    more = part_whole_scenes(16, 32, 5, min_objects=1, max_objects=5, noise=0.1)
    assert _digest(more) == "b727b05a2d3db8cdd0510413b1e2bd15c3f926f540bbf9f1b3bcf48214a3773a"


def _touching_share(object_masks: np.ndarray) -> float:
    """Share of images in which two different objects are 4-neighbours somewhere."""
    m = object_masks
    right = (m[:, :, 1:] != m[:, :, :-1]) & (m[:, :, 1:] > 0) & (m[:, :, :-1] > 0)
    down = (m[:, 1:] != m[:, :-1]) & (m[:, 1:] > 0) & (m[:, :-1] > 0)
    return float((right.any((1, 2)) | down.any((1, 2))).mean())


def test_touching_objects_touch_and_occlude() -> None:
    """touching: objects are 4-neighbours in most images (almost none by default), and the
    masks still agree with the pixels (each part one flat colour, ids all visible)."""
    apart = part_whole_scenes(128, seed=2)
    touching = part_whole_scenes(128, seed=2, touching=True)
    assert _touching_share(apart.object_masks) < 0.1
    assert _touching_share(touching.object_masks) > 0.8
    test_each_part_is_one_flat_visible_colour(touching)
    test_object_masks_follow_from_part_masks(touching)
    test_ids_are_consecutive_and_all_visible(touching)


def _part_colours(data: ImageSet) -> list[tuple[int, int, np.ndarray]]:
    """(image, object id, colour) of every visible part; asserts each part is flat."""
    pixels = np.moveaxis(data.images, 1, -1)
    out = []
    for i in range(len(data)):
        for p in np.unique(data.part_masks[i])[1:]:
            colours = pixels[i][data.part_masks[i] == p]
            assert np.all(colours == colours[0]), (i, p)
            out.append((i, int(data.part_to_object[i, p]), colours[0]))
    return out


def test_palette_shares_colours_across_objects_and_parts() -> None:
    """palette = k: without jitter every part is exactly one of the first k palette colours,
    and colours repeat across the objects of an image and across the parts of an object; with
    jitter an object's parts are all shifted by one offset of at most colour_jitter."""
    from bioglom.data import PALETTE

    data = part_whole_scenes(64, seed=1, palette=2, colour_jitter=0.0)
    parts = _part_colours(data)
    palette = PALETTE[:2].astype(np.float32)
    assert all(np.any(np.all(c == palette, axis=1)) for _, _, c in parts)
    assert {tuple(c) for _, _, c in parts} == {tuple(c) for c in palette}
    same_object = same_image_other_object = 0
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            (ia, oa, ca), (ib, ob, cb) = parts[a], parts[b]
            if ia == ib and np.array_equal(ca, cb):
                same_object += oa == ob
                same_image_other_object += oa != ob
    assert same_object > 10 and same_image_other_object > 10

    jittered = part_whole_scenes(64, seed=1, palette=2, colour_jitter=0.1)
    for i, o, c in _part_colours(jittered):
        nearest = palette[np.argmin(np.abs(palette - c).max(axis=1))]
        assert np.abs(c - nearest).max() <= 0.1 + 1e-6, (i, o, c)
    by_object: dict[tuple[int, int], set] = {}
    for i, o, c in _part_colours(jittered):
        nearest = palette[np.argmin(np.abs(palette - c).max(axis=1))]
        unclipped = (c > 0) & (c < 1)
        offset = np.where(unclipped, np.round(c - nearest, 5), np.nan)
        by_object.setdefault((i, o), []).append(offset)
    for offsets in by_object.values():
        a = np.array(offsets)
        for ch in range(3):
            col = a[:, ch][~np.isnan(a[:, ch])]
            assert col.size == 0 or np.ptp(col) < 1e-4  # one shift per object and channel


def test_colour_jitter_zero_gives_the_class_colours() -> None:
    """colour_jitter = 0 with class colours: the whole data set holds no more distinct part
    colours than the classes have parts (22); the default jitter gives a fresh shade to
    every object."""
    plain = {tuple(c) for _, _, c in _part_colours(part_whole_scenes(64, colour_jitter=0.0))}
    assert len(plain) <= 22
    jittered = {tuple(c) for _, _, c in _part_colours(part_whole_scenes(64))}
    assert len(jittered) > 100


@pytest.mark.parametrize("background", ["noise", "texture"])
def test_background_changes_only_background_pixels(background: str) -> None:
    """A noise or texture background leaves every mask and every object pixel as on black
    (its draws come after the scene's) and fills mask 0 with bright, varied pixels."""
    black = part_whole_scenes(32, seed=4)
    other = part_whole_scenes(32, seed=4, background=background)
    for name in ("part_masks", "object_masks", "part_to_object", "object_classes", "labels"):
        np.testing.assert_array_equal(getattr(black, name), getattr(other, name))
    fg = np.broadcast_to((black.object_masks > 0)[:, None], black.images.shape)
    np.testing.assert_array_equal(other.images[fg], black.images[fg])
    back = np.moveaxis(other.images, 1, -1)[black.object_masks == 0]  # [pixels, 3]
    assert back.mean() > 0.25 and back.std() > 0.1
    assert (back.max(axis=1) > 0.1).mean() > 0.5  # most are "foreground" to a brightness test


def test_noise_background_is_uniform_and_texture_is_stripes_of_two_colours() -> None:
    """noise: background pixels uniform in [0, 1] (mean 1/2, sd 1/sqrt(12), channels
    uncorrelated); texture: per image the background colours lie on one segment between two
    colours (a rank-1 spread in RGB) and vary along the image (stripes)."""
    noise = part_whole_scenes(32, seed=6, background="noise")
    back = np.moveaxis(noise.images, 1, -1)[noise.object_masks == 0]
    assert abs(back.mean() - 0.5) < 0.01 and abs(back.std() - 12**-0.5) < 0.01
    assert np.abs(np.corrcoef(back.T) - np.eye(3)).max() < 0.05
    texture = part_whole_scenes(32, seed=6, background="texture")
    for i in range(len(texture)):
        pix = np.moveaxis(texture.images[i], 0, -1)[texture.object_masks[i] == 0]
        sv = np.linalg.svd(pix - pix.mean(0), compute_uv=False)
        assert sv[0] > 1.0 and sv[1] < 1e-3 * sv[0], (i, sv)


def test_moving_scenes_take_the_options_and_keep_one_background() -> None:
    """moving_scenes: touching and palette apply, and the background is the same in every
    frame wherever no object covers it."""
    video = moving_scenes(8, 3, seed=2, touching=True, palette=3, background="texture")
    assert _touching_share(video.frame(1).object_masks) > 0.5
    both = (video.object_masks[0] == 0) & (video.object_masks[2] == 0)
    a, b = np.moveaxis(video.frames[0], 1, -1), np.moveaxis(video.frames[2], 1, -1)
    np.testing.assert_array_equal(a[both], b[both])


@pytest.mark.parametrize("count", [6, 8])
def test_many_touching_objects_are_all_visible(count: int) -> None:
    """Up to 8 objects per 32x32 scene, touching or not, all with pixels."""
    for touching in (False, True):
        data = part_whole_scenes(
            32, seed=3, min_objects=count, max_objects=count, touching=touching
        )
        assert all(len(np.unique(m)) - 1 == count for m in data.object_masks)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"palette": 9}, "palette=9"),
        ({"palette": -1}, "palette=-1"),
        ({"colour_jitter": -0.1}, "colour_jitter=-0.1"),
        ({"colour_jitter": float("nan")}, "colour_jitter=nan"),
        ({"background": "grey"}, "background='grey'"),
    ],
)
def test_scene_option_validation(kwargs, message) -> None:
    """Bad scene options raise ValueError naming the option and its value."""
    with pytest.raises(ValueError, match=message):
        part_whole_scenes(2, **kwargs)
    with pytest.raises(ValueError, match=message):
        moving_scenes(2, 2, **kwargs)


def test_config_scene_options_reach_the_generator() -> None:
    """The [data] options reach load_data's scenes (the probe split equals the generator's
    output), and bad values are ConfigErrors naming the field and the value."""
    from bioglom.config import ConfigError, load_config
    from bioglom.splits import load_data

    over = {"data.touching": True, "data.palette": 2, "data.colour_jitter": 0.05,
            "data.background": "noise", "data.min_objects": 4, "data.max_objects": 5,
            "data.n_train": 16, "data.n_probe": 4, "data.n_linear": 0, "data.seed": 9}  # fmt: skip
    probe = load_data(load_config(None, over)).probe
    direct = part_whole_scenes(20, 32, 9, min_objects=4, max_objects=5, touching=True,
                               palette=2, colour_jitter=0.05, background="noise").subset(
        np.arange(16, 20))  # fmt: skip
    assert _digest(probe) == _digest(direct)
    for field, value in [("data.palette", 9), ("data.colour_jitter", 2.0),
                         ("data.background", "grey"), ("data.touching", "yes")]:  # fmt: skip
        with pytest.raises(ConfigError) as err:
            load_config(None, {field: value})
        assert err.value.field == field and str(value) in str(err.value)


# ------------------------------------------------------- part jitter (issue 14, item 4b)


def test_part_jitter_moves_parts_a_little_around_still_objects() -> None:
    """max_speed = 0 with part_jitter > 0: the objects stand still, but their parts move from
    frame to frame (the frames differ), each part's pixel centre staying within a few pixels of
    its mean (the jitter is 0.1 object units, an object's radius about 1 unit and at most ~10
    pixels here); part_jitter = 0 leaves the videos still (the default digests of
    test_default_scenes_are_pinned cover the rest)."""
    video = moving_scenes(12, 5, 32, seed=7, max_speed=0.0, part_jitter=0.1)
    assert any(not np.array_equal(video.frames[t], video.frames[0]) for t in range(1, 5))
    ys, xs = np.mgrid[:32, :32]
    moved = []
    for i in range(len(video)):
        for p in range(1, int(video.part_masks[:, i].max()) + 1):
            masks = video.part_masks[:, i] == p
            if masks.sum((1, 2)).min() < 6:  # hidden in a frame or too small to locate
                continue
            centres = np.array([(ys[m].mean(), xs[m].mean()) for m in masks])
            spread = np.linalg.norm(centres - centres.mean(0), axis=1).max()
            assert spread < 3.0, (i, p, spread)
            moved.append(spread)
    assert len(moved) > 20 and max(moved) > 0.2
    still = moving_scenes(4, 3, 32, seed=7, max_speed=0.0, part_jitter=0.0)
    np.testing.assert_array_equal(still.frames[2], still.frames[0])
    with pytest.raises(ValueError, match="part_jitter=-0.5"):
        moving_scenes(2, 2, part_jitter=-0.5)
