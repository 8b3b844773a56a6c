"""bench_finisher's pieces on tiny tensors: a candidate spec parses, an untrained finisher returns its input,
the discriminator scores 8x8 patches, and adversarial steps train both networks."""

import argparse

import bench_finisher as bench  # bench/ is on pytest's path (pyproject.toml)
import pytest
import torch


def test_a_candidate_spec_parses_over_the_defaults():
    label, spec = bench.parse_candidate("instead=input=through32,adv=0.1,blocks=2")
    assert label == "instead"
    assert spec == {**bench.SPEC_DEFAULTS, "input": "through32", "adv": 0.1, "blocks": 2}
    assert isinstance(spec["blocks"], int) and isinstance(spec["adv"], float)
    for bad in ("nolabel", "x=adv", "x=colour=3", "x=blocks=two", "x=input=latent"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_candidate(bad)


def test_an_untrained_finisher_returns_its_input_and_the_discriminator_scores_patches():
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(bench.Finisher(channels=8, blocks=1)(images), images)
    assert bench.patch_discriminator(width=8)(images).shape == (2, 1, 8, 8)
    assert torch.equal(bench.as_float(bench.as_uint8(images)), bench.as_uint8(images).float() / 127.5 - 1)


def test_adversarial_steps_train_the_finisher_away_from_the_identity():
    real = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    inputs = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    _, spec = bench.parse_candidate("x=channels=8,blocks=1,batch=4,warmup=0")
    finisher, counts = bench.train_finisher((inputs, real), inputs, real, spec, 60.0, "x", max_steps=3)
    assert counts == {"steps": 3, "adversarial_steps": 3}
    images = bench.as_float(inputs[:2])
    with torch.no_grad():
        assert not torch.equal(finisher(images), images)  # the zero-initialised last layer has moved
    assert not any(p.requires_grad for p in finisher.parameters())  # the EMA copy, for drawing
