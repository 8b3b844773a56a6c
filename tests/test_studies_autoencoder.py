"""The autoencoder study's pieces on tiny tensors: a candidate spec parses, one training step returns an
autoencoder whose reconstructions have the input's shape, and the table has a cell for every column."""

import argparse

import pytest
import torch

from bench import harness
from studies import autoencoder as study


def candidate(text: str) -> tuple[str, dict]:
    label, settings = harness.parse_row(text, study.KEYS)
    return label, {**study.SPEC_DEFAULTS, **settings}


def test_a_candidate_spec_parses_over_the_defaults():
    label, spec = candidate("f2c4-gan=down=1,latent=4,gan=0.1")
    assert label == "f2c4-gan"
    assert spec == {**study.SPEC_DEFAULTS, "down": 1, "latent": 4, "gan": 0.1}
    assert isinstance(spec["down"], int) and isinstance(spec["gan"], float)
    for bad in ("nolabel", "x=down", "x=colour=3", "x=down=two", "x=latent=0"):
        with pytest.raises(argparse.ArgumentTypeError):
            candidate(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="bad value '48' for width .* a multiple of 32"):
        candidate("x=width=48")  # group norm of 32 groups


@pytest.mark.parametrize("down, side", [(1, 32), (2, 16)])
def test_one_adversarial_step_gives_reconstructions_of_the_input_shape(down, side):
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    _, spec = candidate(f"x=down={down},latent=3,gan=0.5,batch=4")
    trained = study.train_autoencoder(images, spec, 0.0, max_steps=1)
    assert trained["steps"] == trained["gan_steps"] == 1 and trained["images_seen"] == 4
    real = images.float() / 127.5 - 1
    recon, ms, shape = study.reconstruct(trained["vae"], real, batch=4)
    assert recon.shape == real.shape and recon.abs().max() <= 1 and ms > 0
    assert shape == (3, side, side)
    l1, psnr = study.l1_psnr(real, real)
    assert l1 == 0 and psnr > 90


def test_the_table_leaves_blank_cells_where_a_column_does_not_apply():
    rows = [{"label": "floor", "c2st": 0.5, "c2st_se": 0.01},
            {"label": "ae", "c2st": 0.9, "c2st_se": 0.02, "l1": 3.0, "psnr": 30.0, "latent": (4, 32, 32), "ms": 5.0,
             "params": 1000, "disc_params": 10, "cpu_seconds": 60.0, "images_seen": 160}]
    args = argparse.Namespace(n_ref=1000, c2st_seeds=1, minutes=20.0)
    header, rule, floor, ae = study.tables(rows, args)["table"].lines
    assert header.count("|") == rule.count("|") == floor.count("|") == ae.count("|")
    assert "0.500 ± 0.010" in floor and "4x32x32" in ae and "1,000 / 10" in ae
