"""bench_autoencoder's pieces on tiny tensors: a candidate spec parses, one training step returns an
autoencoder whose reconstructions have the input's shape, and the table has a cell for every column."""

import argparse

import bench_autoencoder as bench  # bench/ is on pytest's path (pyproject.toml)
import pytest
import torch


def test_a_candidate_spec_parses_over_the_defaults():
    label, spec = bench.parse_candidate("f2c4-gan=down=1,latent=4,gan=0.1")
    assert label == "f2c4-gan"
    assert spec == {**bench.SPEC_DEFAULTS, "down": 1, "latent": 4, "gan": 0.1}
    assert isinstance(spec["down"], int) and isinstance(spec["gan"], float)
    for bad in ("nolabel", "x=down", "x=colour=3", "x=down=two", "x=width=48"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_candidate(bad)


@pytest.mark.parametrize("down, side", [(1, 32), (2, 16)])
def test_one_adversarial_step_gives_reconstructions_of_the_input_shape(down, side):
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    _, spec = bench.parse_candidate(f"x=down={down},latent=3,gan=0.5,batch=4")
    trained = bench.train_autoencoder(images, spec, 0.0, max_steps=1)
    assert trained["steps"] == trained["gan_steps"] == 1 and trained["images_seen"] == 4
    real = images.float() / 127.5 - 1
    recon, ms, shape = bench.reconstruct(trained["vae"], real, batch=4)
    assert recon.shape == real.shape and recon.abs().max() <= 1 and ms > 0
    assert shape == (3, side, side)
    l1, psnr = bench.l1_psnr(real, real)
    assert l1 == 0 and psnr > 90


def test_the_table_leaves_blank_cells_where_a_column_does_not_apply():
    rows = [{"label": "floor", "c2st": 0.5, "c2st_se": 0.01},
            {"label": "ae", "c2st": 0.9, "c2st_se": 0.02, "l1": 3.0, "psnr": 30.0, "latent": (4, 32, 32), "ms": 5.0,
             "params": 1000, "disc_params": 10, "cpu_seconds": 60.0, "images_seen": 160}]
    header, rule, floor, ae = bench.markdown_table(rows)
    assert header.count("|") == rule.count("|") == floor.count("|") == ae.count("|")
    assert "0.500 ± 0.010" in floor and "4x32x32" in ae and "1,000 / 10" in ae
