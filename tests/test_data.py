import pytest
import torch

from lab6.data import ICLEVRDataset
from lab6.data_root import resolve_data_root
from tests.conftest import make_data_root


def test_shapes_ranges_and_labels(tiny_root):
    data = ICLEVRDataset(tiny_root, image_size=32, progress=False)
    image, label = data[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -1.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5
    assert label.shape == (24,) and 1 <= label.sum() <= 3
    assert len(data) == 48


def test_resize_is_straight_not_cropped(tiny_root):
    full = ICLEVRDataset(tiny_root, image_size=64, progress=False)
    small = ICLEVRDataset(tiny_root, image_size=16, progress=False)
    pooled = torch.nn.functional.avg_pool2d(full[3][0][None], 4)[0]
    assert (pooled - small[3][0]).abs().mean() < 0.1  # same framing: nothing cut away


def test_flip_augmentation(tiny_root):
    data = ICLEVRDataset(tiny_root, image_size=32, augment=True, progress=False)
    plain = ICLEVRDataset(tiny_root, image_size=32, augment=False, progress=False)
    idx = torch.arange(16)
    flipped, labels = data.batch(idx, generator=torch.Generator().manual_seed(0))
    reference, _ = plain.batch(idx)
    flips = [bool(torch.equal(f, r.flip(-1))) and not torch.equal(f, r) for f, r in zip(flipped, reference)]
    assert 0 < sum(flips) < 16
    assert torch.equal(labels, plain.labels[idx])


def test_missing_images_reported_together(tmp_path):
    root = make_data_root(tmp_path / "root", n=10)
    for name in ("scene_0002.png", "scene_0005.png"):
        (root / "iclevr" / name).unlink()
    with pytest.raises(FileNotFoundError, match=r"2 of 10 images.*scene_0002.png, scene_0005.png"):
        ICLEVRDataset(root, image_size=16, progress=False)


def test_unreadable_images_reported_together(tmp_path):
    root = make_data_root(tmp_path / "root", n=10)
    (root / "iclevr" / "scene_0007.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match=r"1 images .* could not be read: scene_0007.png"):
        ICLEVRDataset(root, image_size=16, progress=False)


def test_decoded_images_are_cached(tiny_root, monkeypatch):
    ICLEVRDataset(tiny_root, image_size=24, progress=False)
    import lab6.data

    monkeypatch.setattr(lab6.data, "decode_images", lambda *a, **k: pytest.fail("decoded twice"))
    assert len(ICLEVRDataset(tiny_root, image_size=24, progress=False)) == 48


def test_data_root_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither train.json nor test.json"):
        resolve_data_root(tmp_path)


def test_real_data_decodes(reference_root):
    data = ICLEVRDataset(reference_root, image_size=32, progress=False)
    assert len(data) == 18009
    assert data.images.shape == (18009, 3, 32, 32)


def test_the_missing_course_data_skip_says_how_to_run_it_and_names_no_path():
    from conftest import NO_REFERENCE

    assert "/" not in NO_REFERENCE and "LAB6_REFERENCE_DATA" in NO_REFERENCE
