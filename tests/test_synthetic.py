"""The built-in synthetic i-CLEVR renderer: determinism, course layout, labels that match the pixels, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab6 import scene, synthetic
from lab6.labels import COLOURS, LABEL_TO_INDEX, LABELS, ConditionError, load_conditions
from lab6.render import render_scene
from lab6.scene import COLOUR_RGB, MIN_SEPARATION, SyntheticDataError, sample_layout
from lab6.synthetic import default_data_root, render_dataset

# ------------------------------------------------------------------------------------------------ helpers


def _linear(srgb: np.ndarray) -> np.ndarray:
    v = np.asarray(srgb, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _chromaticity(rgb_linear: np.ndarray) -> np.ndarray:
    return rgb_linear / rgb_linear.sum(-1, keepdims=True)


#: Albedo chromaticity of each colour name (objects are lit by white light, so rendered linear RGB is proportional).
_REFERENCE = {name: _chromaticity(np.array(rgb, dtype=np.float64) / 255.0) for name, rgb in COLOUR_RGB.items()}


def _object_colour(image: np.ndarray, mask: np.ndarray) -> str:
    """The colour name whose chromaticity is nearest to the mean linear colour of the fully covered pixels."""
    inside = mask > 0.99
    assert inside.sum() >= 10, f"object covers only {inside.sum()} full pixels"
    mean = _linear(image[inside]).mean(0)
    chroma = _chromaticity(mean)
    return min(_REFERENCE, key=lambda name: np.abs(_REFERENCE[name] - chroma).sum())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A small data set, rendered once for the layout tests."""
    return render_dataset(tmp_path_factory.mktemp("synthetic") / "root", 12, seed=5, workers=1, progress=False)


# ------------------------------------------------------------------------------------------------ scenes


def test_render_scene_gives_uint8_rgb_images():
    image = render_scene(["red cube", "cyan sphere", "gray cylinder"], np.random.default_rng(0))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert render_scene(["red cube"], np.random.default_rng(0), size=32).shape == (32, 32, 3)
    # a grey floor, and something saturated where the red cube stands
    assert 80 < np.median(image) < 170
    assert (image.max(-1).astype(int) - image.min(-1) > 40).sum() > 20


def test_render_scene_is_deterministic_for_a_seed():
    a = render_scene(["blue sphere", "yellow cube"], np.random.default_rng(7))
    b = render_scene(["blue sphere", "yellow cube"], np.random.default_rng(7))
    c = render_scene(["blue sphere", "yellow cube"], np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("shape", ["cube", "sphere", "cylinder"])
def test_each_colour_is_drawn_in_its_own_colour(shape):
    rng = np.random.default_rng(1)
    for colour in COLOURS:
        label = f"{colour} {shape}"
        image, masks = render_scene([label], rng, return_masks=True)
        assert masks.shape == (1, 64, 64)
        assert _object_colour(image, masks[0]) == colour, label


def test_shape_silhouettes_differ_as_in_the_course_images():
    """Spheres are the smallest, cylinders and cubes the tallest; all squashed 4:3 like the course renders."""
    rng = np.random.default_rng(2)

    def extent(label):
        _, masks = render_scene([label], rng, return_masks=True)
        rows, cols = np.nonzero(masks[0] > 0.5)
        return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, masks[0].sum()

    sphere, cylinder, cube = extent("red sphere"), extent("red cylinder"), extent("red cube")
    assert sphere[2] < 0.8 * cylinder[2] and sphere[2] < 0.8 * cube[2]
    assert 9 <= sphere[0] <= 12 and 7 <= sphere[1] <= 9  # taller than wide: 320x240 squashed to 64x64
    assert 12 <= cylinder[0] <= 15 and 12 <= cube[0] <= 16


def test_multi_object_scenes_show_every_object_in_its_colour():
    rng = np.random.default_rng(3)
    for _ in range(6):
        labels = [LABELS[i] for i in rng.choice(len(LABELS), size=3, replace=False)]
        colours = [name.split()[0] for name in labels]
        image, masks = render_scene(labels, rng, return_masks=True)
        assert masks.shape == (3, 64, 64)
        assert masks.sum(0).max() <= 1.0 + 1e-6  # one visible surface per sample
        for k, name in enumerate(labels):
            assert masks[k].sum() >= 25, f"{name} is (nearly) hidden in {labels}"
            if colours.count(colours[k]) == 1:
                assert _object_colour(image, masks[k]) == colours[k], labels


def test_layouts_stay_in_bounds():
    rng = np.random.default_rng(4)
    for i in range(150):
        count = 1 + i % 3
        labels = [LABELS[j] for j in rng.choice(len(LABELS), size=count, replace=False)]
        objects = sample_layout(labels, rng)
        assert [o.label for o in objects] == labels
        assert (objects[0].x, objects[0].y) == (0.0, 0.0)  # the first object stands at the centre, as in i-CLEVR
        for a in range(count):
            corners = scene.project(scene.bounding_corners(objects[a]), 64)
            assert np.all(corners >= -1.0) and np.all(corners <= 65.0), objects[a]
            for b in range(a):
                assert np.hypot(objects[a].x - objects[b].x, objects[a].y - objects[b].y) >= MIN_SEPARATION


@pytest.mark.parametrize(
    "labels, match",
    [
        ([], "1-3 objects, got 0"),
        (["red cube", "red sphere", "blue cube", "gray cylinder"], "1-3 objects, got 4"),
        (["red cube", "red cube"], "appears twice"),
        (["red cubes"], "unknown label 'red cubes'"),
        (["pink cube"], "unknown label 'pink cube'"),
        ("red cube", "must be a list"),
    ],
)
def test_bad_conditions_are_refused(labels, match):
    with pytest.raises(ConditionError, match=match):
        render_scene(labels, np.random.default_rng(0))
    assert issubclass(ConditionError, ValueError)


# ------------------------------------------------------------------------------------------------ data sets


def test_dataset_layout_matches_the_course(rendered):
    root = rendered
    assert json.loads((root / "objects.json").read_text()) == LABEL_TO_INDEX
    train = json.loads((root / "train.json").read_text())
    assert isinstance(train, dict) and len(train) == 12
    assert sorted(train) == [f"synthetic_{i:06d}.png" for i in range(12)]
    counts = [len(v) for v in train.values()]
    assert counts.count(1) == counts.count(2) == counts.count(3) == 4
    for name, labels in train.items():
        assert all(label in LABEL_TO_INDEX for label in labels) and len(set(labels)) == len(labels)
        with Image.open(root / "iclevr" / name) as image:
            assert image.format == "PNG" and image.mode == "RGB" and image.size == (64, 64)
    assert sorted(p.name for p in (root / "iclevr").iterdir()) == sorted(train)  # no stray or temporary files
    for split, expected in (("test", {1: 6, 2: 12, 3: 14}), ("new_test", {2: 12, 3: 20})):
        conditions = load_conditions(root / f"{split}.json")
        assert len(conditions) == 32
        sizes = [len(c) for c in conditions]
        assert {k: sizes.count(k) for k in set(sizes)} == expected
        assert len({frozenset(c) for c in conditions}) == 32
    marker = json.loads((root / ".complete").read_text())
    assert marker == {"generator": "lab6.synthetic", "version": synthetic.VERSION, "n": 12, "seed": 5, "size": 64}


def test_train_json_labels_are_what_was_drawn(rendered):
    """Each PNG is render_scene(train.json labels) with that image's own RNG, and its objects wear those colours."""
    train = json.loads((rendered / "train.json").read_text())
    for i, (name, labels) in enumerate(train.items()):
        rng = synthetic._image_rng(5, i)
        assert synthetic._image_labels(rng, i) == labels
        image, masks = render_scene(labels, rng, return_masks=True)
        assert np.array_equal(np.asarray(Image.open(rendered / "iclevr" / name)), image), name
        if len(labels) == 1:
            assert _object_colour(image, masks[0]) == labels[0].split()[0], name


def test_same_seed_gives_identical_files_for_any_worker_count(tmp_path, rendered):
    again = render_dataset(tmp_path / "two-workers", 12, seed=5, workers=2, progress=False)
    assert _files(again) == _files(rendered)
    other = render_dataset(tmp_path / "other-seed", 3, seed=6, workers=1, progress=False)
    assert (other / "iclevr" / "synthetic_000000.png").read_bytes() != (
        rendered / "iclevr" / "synthetic_000000.png"
    ).read_bytes()


def test_interrupted_render_leaves_no_partial_png_and_no_train_json(tmp_path, monkeypatch):
    root = tmp_path / "root"
    render_dataset(root, 3, seed=1, workers=1, progress=False)  # an earlier, complete render into the same folder
    assert (root / "train.json").exists()
    real_save = Image.Image.save
    calls = []

    def failing_save(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # the 5th image dies half-way through writing its bytes
            fp.write(b"\x89PNG\r\n\x1a\n half an image")
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(root, 8, seed=2, workers=1, progress=False)
    monkeypatch.undo()
    assert not (root / "train.json").exists() and not (root / ".complete").exists()
    names = sorted(p.name for p in (root / "iclevr").iterdir())
    assert names == [f"synthetic_{i:06d}.png" for i in range(4)]  # no half-written PNG, no temporary file
    for name in names:
        with Image.open(root / "iclevr" / name) as image:
            image.load()  # every file that exists is a whole PNG
    assert not list(root.glob("*.tmp-*"))


@pytest.mark.parametrize("n", [0, -3, 2.5, "10", None, True])
def test_bad_image_counts_are_refused(tmp_path, n):
    with pytest.raises(SyntheticDataError, match=r"n \(the number of images\) must be an integer >= 1") as err:
        render_dataset(tmp_path / "root", n, progress=False)
    assert repr(n) in str(err.value) or str(n) in str(err.value)
    assert isinstance(err.value, ValueError)
    assert not (tmp_path / "root").exists()


def test_bad_workers_are_refused(tmp_path):
    with pytest.raises(SyntheticDataError, match="workers must be None or an integer >= 1, got 0"):
        render_dataset(tmp_path / "root", 2, workers=0, progress=False)


def test_unwritable_output_folder_is_refused_up_front(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SyntheticDataError, match="it is a file, not a folder") as err:
        render_dataset(blocker, 2, progress=False)
    assert str(blocker) in str(err.value)
    inside = blocker / "data"
    with pytest.raises(SyntheticDataError, match="cannot write the synthetic data set to") as err:
        render_dataset(inside, 2, progress=False)
    assert str(inside) in str(err.value)


def test_default_data_root_renders_once_then_reuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAB6_CACHE", str(tmp_path / "cache"))
    root = default_data_root(n=3, seed=0, progress=False)
    assert root == tmp_path / "cache" / f"synthetic-v{synthetic.VERSION}-n3-s0"
    assert (root / ".complete").exists() and len(json.loads((root / "train.json").read_text())) == 3
    assert "synthetic" in capsys.readouterr().out

    def no_render(*args, **kwargs):
        raise AssertionError("the cached set should have been reused")

    monkeypatch.setattr(synthetic, "render_dataset", no_render)
    assert default_data_root(n=3, seed=0, progress=False) == root
    out = capsys.readouterr().out
    assert "built-in synthetic" in out and str(root) in out and out.count("\n") == 1
    # an explicit cache folder wins over $LAB6_CACHE; a missing marker means render again
    monkeypatch.undo()
    (root / ".complete").unlink()
    assert default_data_root(tmp_path / "cache", n=3, seed=0, progress=False) == root
    assert (root / ".complete").exists()


def test_a_pool_that_cannot_start_falls_back_to_rendering_in_process(tmp_path, monkeypatch, rendered):
    """E.g. a caller's script without a __main__ guard: the spawned workers die, the render still completes."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class BrokenPool:
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, *args, **kwargs):
            future = Future()
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            return future

        def shutdown(self, *args, **kwargs):
            pass

    monkeypatch.setattr(synthetic, "ProcessPoolExecutor", BrokenPool)
    root = render_dataset(tmp_path / "root", 12, seed=5, workers=2, progress=False)
    assert _files(root) == _files(rendered)
