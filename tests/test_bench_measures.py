"""The benchmarks' measures name the defect they are for: the classifier two-sample test tells a real difference
apart, stays at chance on one distribution and repeats itself for a seed; edge acutance sees soft edges and not
grain; patch-grid energy a 2x2 pattern, colour grain noise in the colours, Frechet distance a shifted
distribution."""

import pytest
import torch
import torch.nn.functional as F

from bench.measures import colour_grain, edge_acutance, frechet_distance, patch_grid_energy, two_sample_accuracy
from lab6.fidelity import sharpness

#: Small and quick: 32-px images, a few dozen steps per fold (a few seconds on one core).
QUICK = {"epochs": 1, "min_steps": 80, "batch_size": 32}


def floors(n: int = 4, size: int = 64) -> torch.Tensor:
    """Grey floors in [-1, 1] with a bright square each: edges, no grid, no tint."""
    images = torch.full((n, 3, size, size), -0.1)
    for i in range(n):
        images[i, :, 10 + 3 * i:30 + 3 * i, 20:36] = 0.6
    return images


def scenes(n: int, seed: int, size: int = 32, noise: float = 0.05) -> torch.Tensor:
    """Random i-CLEVR-like scenes in [-1, 1]: a grey floor of random brightness, two squares of random colour,
    size and place, and pixel noise of ``noise``; the same ``seed`` draws the same scenes."""
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 1, 1, generator=generator) * 0.4 - 0.3).expand(n, 3, size, size).clone()
    for i in range(n):
        for _ in range(2):
            side = int(torch.randint(5, 12, (), generator=generator))
            y, x = torch.randint(0, size - side, (2,), generator=generator).tolist()
            images[i, :, y:y + side, x:x + side] = torch.rand(3, 1, 1, generator=generator) * 1.6 - 0.8
    return (images + noise * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def blurred(images: torch.Tensor) -> torch.Tensor:
    """The same scenes through half size and back: soft edges, no grain."""
    half = F.interpolate(images, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(half, size=images.shape[-2:], mode="bilinear", align_corners=False)


def test_sharp_scenes_are_told_from_the_same_scenes_blurred():
    images = scenes(80, seed=1)
    result = two_sample_accuracy(images, blurred(scenes(80, seed=2)), **QUICK)
    assert result.accuracy > 0.9 and result.log_loss < 0.3  # told apart, and with confidence (chance: ln 2)
    assert len(result.folds) == 5 and result.accuracy == pytest.approx(sum(result.folds) / 5)


def test_two_samples_of_one_distribution_stay_near_chance():
    # held-out accuracy on other scenes: a classifier scored on images it trained on would score far above 0.5
    results = [two_sample_accuracy(scenes(80, seed=1), scenes(80, seed=2), seed=seed, **QUICK) for seed in range(2)]
    pooled = sum(r.accuracy for r in results) / len(results)
    assert 0.38 < pooled < 0.62, [r.folds for r in results]
    assert all(0 < r.standard_error < 0.15 for r in results)
    assert all(r.log_loss > 0.6 for r in results)  # near ln 2 = 0.693: no confident guesses


def test_a_seed_repeats_the_test_exactly_and_leaves_the_global_random_state_alone():
    real, generated = scenes(40, seed=3), blurred(scenes(40, seed=4)) + 0.05
    state = torch.get_rng_state()
    first = two_sample_accuracy(real, generated, seed=5, **QUICK)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # the global random state plays no part
    assert two_sample_accuracy(real, generated, seed=5, **QUICK) == first
    null = two_sample_accuracy(real, scenes(40, seed=6), seed=5, **QUICK)
    assert two_sample_accuracy(real, scenes(40, seed=6), seed=6, **QUICK).folds != null.folds


def test_the_sets_are_balanced_and_must_match_in_shape():
    # 60 real against 30 generated: both cut to 30, so 6 + 6 held-out images per fold, accuracies in steps of
    # 1/12 (all 90 images would make folds of 18)
    result = two_sample_accuracy(scenes(60, seed=1), blurred(scenes(30, seed=2)), **QUICK)
    assert all(abs(a * 12 - round(a * 12)) < 1e-6 for a in result.folds), result.folds
    with pytest.raises(ValueError, match="same"):
        two_sample_accuracy(scenes(10, seed=1), scenes(10, seed=2, size=16))
    with pytest.raises(ValueError, match="5 folds"):
        two_sample_accuracy(scenes(3, seed=1), scenes(3, seed=2))


def test_edge_acutance_reads_the_width_of_edges_not_their_contrast_or_grain():
    step = torch.full((1, 3, 64, 64), -0.5)
    step[..., 32:] = 0.5
    faint = step.clone()
    faint[..., 32:] = -0.3
    # a step from one pixel to the next: 2.06 whatever its contrast
    torch.testing.assert_close(edge_acutance(step), torch.tensor([2.0624]), atol=1e-3, rtol=0)
    torch.testing.assert_close(edge_acutance(faint), edge_acutance(step))
    images = scenes(20, seed=1, size=64, noise=0)
    soft = blurred(images)
    grainy = images + 0.03 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    assert edge_acutance(soft).mean() < edge_acutance(images).mean() - 0.15
    # grain that doubles the sharpness (a Laplacian's variance) moves acutance by little
    assert sharpness(grainy).mean() > 2 * sharpness(images).mean()
    assert abs(edge_acutance(grainy).mean() - edge_acutance(images).mean()) < 0.06


def test_patch_grid_energy_is_the_power_of_a_2x2_pattern_and_nothing_else():
    images = floors()
    checkerboard = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 2 - 1.0  # +-1 every other pixel
    amplitude = 4 / 127.5  # +-4 grey levels
    with_grid = images + amplitude * checkerboard
    # a +-4 checkerboard adds 16 (grey levels squared) of power per pixel; squares with an even size and
    # position put (almost) nothing on the grid's frequencies
    torch.testing.assert_close(patch_grid_energy(with_grid) - patch_grid_energy(images), torch.full((4,), 16.0),
                               atol=0.5, rtol=0)
    assert (patch_grid_energy(images) < 1).all()
    with pytest.raises(ValueError, match="period 3 must divide the image size 64x64"):
        patch_grid_energy(images, period=3)


def test_colour_grain_sees_fine_noise_in_the_colours_and_not_in_the_brightness_or_the_layout():
    images = floors()
    generator = torch.Generator().manual_seed(0)
    grey_grain = images + 0.05 * torch.randn(4, 1, 64, 64, generator=generator)  # the same on every channel
    colour_noise = images + 0.05 * torch.randn(4, 3, 64, 64, generator=generator)
    tinted = images + torch.tensor([0.2, 0.0, -0.2]).view(1, 3, 1, 1)  # colour, but at no fine scale
    assert colour_grain(grey_grain).max() < 1e-6 and colour_grain(tinted).max() < 1e-6
    # white noise of 0.05 * 127.5 levels per channel, its grey part removed (2/3 of the power left), summed
    # over 3 channels, 3/4 of it at the finest frequencies
    torch.testing.assert_close(colour_grain(colour_noise).mean(), torch.tensor((0.05 * 127.5) ** 2 * 2 * 0.75),
                               rtol=0.05, atol=0)
    assert (colour_grain(images) < 1).all()


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_moved_one():
    features = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(features, features)) < 1e-6
    assert frechet_distance(features, features + 3.0) == pytest.approx(8 * 9.0, rel=1e-6)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(features, features[:, :4])
