"""How generated images look beside real ones, in the two numbers notebook 04 shows: colour cast and sharpness.

- **Background colour cast**: i-CLEVR floors are grey. An image's background colour is the per-channel
  median over its pixels (objects cover a minority of them); its cast is the largest distance of one
  channel from the mean of the three, in 0-255 units.
- **Sharpness**: the variance of the Laplacian of the grey image (fine detail and edges), averaged over
  images; divide by the real images' value for a ratio (1 = as sharp as real, a 32-px image upsampled is
  far below).

The benchmarks' finer measures (the classifier two-sample test, Frechet distance, edge acutance, patch-grid
energy, colour grain) are in ``bench/measures.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: A 3x3 discrete Laplacian.
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def to_255(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> float in 0-255, the grey levels a PNG holds."""
    return (images.float().clamp(-1, 1) + 1) * 127.5


def background_colour(images: torch.Tensor) -> torch.Tensor:
    """(B, 3) per-channel median over each image's pixels, in 0-255."""
    return to_255(images).flatten(2).median(dim=2).values


def colour_cast(images: torch.Tensor) -> torch.Tensor:
    """(B,) background colour cast in 0-255: the largest channel offset of the background from grey."""
    background = background_colour(images)
    return (background - background.mean(dim=1, keepdim=True)).abs().max(dim=1).values


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """(B,) variance of the Laplacian of each grey image (0-255 units), at the images' own size."""
    grey = to_255(images).mean(dim=1, keepdim=True)
    return F.conv2d(grey, _LAPLACIAN).flatten(1).var(dim=1)
