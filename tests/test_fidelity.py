"""The measures notebook 04 shows name the defect they are for: blur, a colour cast."""

import torch
import torch.nn.functional as F

from lab6.fidelity import colour_cast, sharpness


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


def test_colour_cast_is_the_background_offset_from_grey():
    grey = scenes()
    assert colour_cast(grey).abs().max() < 1e-3
    tinted = grey.clone()
    tinted[:, 1] += 6 / 127.5  # green floor, +6 grey levels
    torch.testing.assert_close(colour_cast(tinted), torch.full((4,), 4.0), atol=0.05, rtol=0)  # 6 - mean(0, 6, 0)
