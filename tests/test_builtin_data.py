"""The built-in synthetic data as the default data root, end to end."""

import json

import torch

from lab6.data import ICLEVRDataset
from lab6.data_root import is_synthetic, load_split, resolve_data_root, synthetic_conditions_root
from lab6.presets import preset
from lab6.synthetic import condition_sets, render_dataset
from lab6.train import train


def test_condition_sets_root_holds_the_synthetic_ones():
    root = synthetic_conditions_root()
    for split, conditions in condition_sets(0).items():
        assert json.loads((root / f"{split}.json").read_text()) == conditions


def test_reports_need_no_rendering(capsys):
    root = resolve_data_root(None, need_images=False)
    assert root == synthetic_conditions_root() and len(load_split(root, "test")) == 32
    assert not (root / "iclevr").exists()
    assert "drawing the built-in synthetic conditions" in capsys.readouterr().out


def test_synthetic_roots_say_so_and_course_like_ones_do_not(tiny_root, tmp_path):
    """What makes `lab6 report` name its files synthetic_*: the conditions-only root and a rendered one."""
    assert is_synthetic(synthetic_conditions_root())
    assert is_synthetic(render_dataset(tmp_path / "rendered", 8, seed=2, progress=False))
    assert not is_synthetic(tiny_root) and not is_synthetic(tmp_path / "missing")


def test_a_small_render_feeds_the_dataset_and_training(tmp_path):
    root = render_dataset(tmp_path / "synthetic", 24, seed=1, progress=False)
    assert json.loads((root / "test.json").read_text()) == condition_sets(1)["test"]
    data = ICLEVRDataset(root, image_size=16, progress=False)
    images, labels = data.batch(torch.arange(8))
    assert images.shape == (8, 3, 16, 16) and labels.sum(1).min() >= 1
    model_dir = train(preset("tiny", steps=20), root, tmp_path / "run", progress=False)
    assert (model_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_default_root_is_rendered_once_then_reused(tmp_path, monkeypatch):
    from lab6 import synthetic

    monkeypatch.setenv("LAB6_CACHE", str(tmp_path))
    first = synthetic.default_data_root(n=12, progress=False)
    monkeypatch.setattr(synthetic, "render_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-rendered")))
    assert synthetic.default_data_root(n=12, progress=False) == first
