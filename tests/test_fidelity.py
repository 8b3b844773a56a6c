"""The fidelity measures name the defect they are for: blur, a patch grid, a colour cast, a shifted distribution."""

import pytest
import torch
import torch.nn.functional as F

from lab6.fidelity import colour_cast, colour_grain, frechet_distance, patch_grid_energy, sharpness


def scenes(n: int = 4, size: int = 64) -> torch.Tensor:
    """Grey floors in [-1, 1] with a bright square each: edges, no grid, no tint."""
    images = torch.full((n, 3, size, size), -0.1)
    for i in range(n):
        images[i, :, 10 + 3 * i:30 + 3 * i, 20:36] = 0.6
    return images


def test_sharpness_drops_when_detail_is_lost_to_32_px():
    sharp = scenes()
    blurred = F.interpolate(F.avg_pool2d(sharp, 2), scale_factor=2, mode="bilinear", align_corners=False)
    assert (sharpness(blurred) < 0.5 * sharpness(sharp)).all()


def test_patch_grid_energy_is_the_power_of_a_2x2_pattern_and_nothing_else():
    images = scenes()
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
    images = scenes()
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


def test_colour_cast_is_the_background_offset_from_grey():
    grey = scenes()
    assert colour_cast(grey).abs().max() < 1e-3
    tinted = grey.clone()
    tinted[:, 1] += 6 / 127.5  # green floor, +6 grey levels
    torch.testing.assert_close(colour_cast(tinted), torch.full((4,), 4.0), atol=0.05, rtol=0)  # 6 - mean(0, 6, 0)


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_moved_one():
    features = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(features, features)) < 1e-6
    assert frechet_distance(features, features + 3.0) == pytest.approx(8 * 9.0, rel=1e-6)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(features, features[:, :4])
