"""The adversarial finisher study's pieces on tiny tensors: a candidate spec parses, an untrained finisher returns
its input, the discriminator scores 8x8 patches, adversarial steps train both networks, and the table has a cell
under every heading."""

import argparse

import pytest
import torch

from bench import harness
from studies import adversarial_finisher as study


def candidate(text: str) -> tuple[str, dict]:
    label, settings = harness.parse_row(text, study.KEYS)
    return label, {**study.SPEC_DEFAULTS, **settings}


def test_a_candidate_spec_parses_over_the_defaults():
    label, spec = candidate("instead=input=through32,adv=0.1,blocks=2")
    assert label == "instead"
    assert spec == {**study.SPEC_DEFAULTS, "input": "through32", "adv": 0.1, "blocks": 2}
    assert isinstance(spec["blocks"], int) and isinstance(spec["adv"], float)
    for bad in ("nolabel", "x=adv", "x=colour=3", "x=blocks=two", "x=input=latent"):
        with pytest.raises(argparse.ArgumentTypeError):
            candidate(bad)


def test_an_untrained_finisher_returns_its_input_and_the_discriminator_scores_patches():
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(study.Finisher(channels=8, blocks=1)(images), images)
    assert study.patch_discriminator(width=8)(images).shape == (2, 1, 8, 8)
    assert torch.equal(study.as_float(study.as_uint8(images)), study.as_uint8(images).float() / 127.5 - 1)


def test_adversarial_steps_train_the_finisher_away_from_the_identity():
    real = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    inputs = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    _, spec = candidate("x=channels=8,blocks=1,batch=4,warmup=0")
    finisher, counts = study.train_finisher((inputs, real), inputs, real, spec, 60.0, "x", max_steps=3)
    assert counts == {"steps": 3, "adversarial_steps": 3}
    images = study.as_float(inputs[:2])
    with torch.no_grad():
        assert not torch.equal(finisher(images), images)  # the zero-initialised last layer has moved
    assert not any(p.requires_grad for p in finisher.parameters())  # the EMA copy, for drawing


def test_the_table_has_a_cell_under_every_heading():
    floor = {"label": "real images", "c2st": 0.517, "c2st_se": 0.008, "log_loss": 0.799, "c2st32": 0.501,
             "c2st32_se": 0.009, "edge": 1.764, "acc r": 0.853, "cube r": 0.988}
    finished = {**floor, "label": "after the refiner", "c2st": 1.0, "c2st_se": 0.0, "steps": 1475,
                "adversarial_steps": 723}
    args = argparse.Namespace(n_ref=500, c2st_seeds=2, minutes=25.0, pairs=3000, drawn=512)
    header, rule, first, last = study.tables([floor, finished], args)["table"].lines
    assert header.count("|") == rule.count("|") == first.count("|") == last.count("|") == 9
    assert last.endswith("| 1.000 ± 0.000 | 0.799 | 0.501 ± 0.009 | 1.764 | 0.853 | 0.988 | 1,475 (723) |")
    assert first.endswith("| 0.988 |  |")
