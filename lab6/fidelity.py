"""How real generated images look, in numbers: Frechet distance, sharpness, grain and background colour cast.

- **Frechet distance** between two image sets in an evaluator's penultimate features (the FID recipe with a
  classifier trained on i-CLEVR instead of Inception): 0 for identical distributions; two disjoint sets of
  real images give the floor that a perfect model would reach at that set size.
- **Sharpness**: the variance of the Laplacian of the grey image (fine detail and edges), averaged over
  images; divide by the real images' value for a ratio (1 = as sharp as real, a 32-px image upsampled is
  far below).
- **Patch-grid energy**: the power of the grey image at the frequencies of a pattern that repeats every p
  pixels (for p = 2: the Nyquist frequencies), per pixel. A model that folds p x p patches into channels can
  draw such a grid, which neither of the two measures above names; real images have almost none.
- **Colour grain**: the power of the colour part of the image (the image minus its grey) at the finest
  scales, per pixel. A renderer's grain is brightness: real i-CLEVR images have almost none in their colours,
  and sharpness (of the grey image) cannot see colour noise that a denoiser left behind.
- **Background colour cast**: i-CLEVR floors are grey. An image's background colour is the per-channel
  median over its pixels (objects cover a minority of them); its cast is the largest distance of one
  channel from the mean of the three, in 0-255 units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: A 3x3 discrete Laplacian.
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def _to_255(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> float in 0-255."""
    return (images.float().clamp(-1, 1) + 1) * 127.5


def background_colour(images: torch.Tensor) -> torch.Tensor:
    """(B, 3) per-channel median over each image's pixels, in 0-255."""
    return _to_255(images).flatten(2).median(dim=2).values


def colour_cast(images: torch.Tensor) -> torch.Tensor:
    """(B,) background colour cast in 0-255: the largest channel offset of the background from grey."""
    background = background_colour(images)
    return (background - background.mean(dim=1, keepdim=True)).abs().max(dim=1).values


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """(B,) variance of the Laplacian of each grey image (0-255 units), at the images' own size."""
    grey = _to_255(images).mean(dim=1, keepdim=True)
    return F.conv2d(grey, _LAPLACIAN).flatten(1).var(dim=1)


def patch_grid_energy(images: torch.Tensor, period: int = 2) -> torch.Tensor:
    """(B,) mean power per pixel (0-255 units squared) of the part of each grey image that repeats every
    ``period`` pixels in x and y, its mean excluded: the pattern a ``patch_size=period`` model can draw."""
    grey = _to_255(images).mean(dim=1)
    height, width = grey.shape[-2:]
    if height % period or width % period:
        raise ValueError(f"period {period} must divide the image size {height}x{width}")
    grid = torch.zeros(height, width, dtype=torch.bool)  # a period-p pattern lives at multiples of size/p only
    grid[::height // period, ::width // period] = True
    grid[0, 0] = False  # the mean
    return _power_per_pixel(grey, grid)


def colour_grain(images: torch.Tensor) -> torch.Tensor:
    """(B,) mean power per pixel (0-255 units squared, summed over channels) of each image's colour, the image
    minus its mean over channels, at frequencies of at least 1/4 cycle per pixel in x or y (the finest scales,
    where a 64-px image has grain and a 32-px one nothing)."""
    rgb = _to_255(images)
    colour = rgb - rgb.mean(dim=1, keepdim=True)
    height, width = colour.shape[-2:]
    fy, fx = torch.fft.fftfreq(height).abs(), torch.fft.fftfreq(width).abs()
    return _power_per_pixel(colour, torch.maximum(fy[:, None], fx[None, :]) >= 0.25)


def _power_per_pixel(images: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """(B,) power per pixel of (B, H, W) or (B, C, H, W) images (summed over channels) at the frequencies where
    ``band`` (H, W) is True. With the orthonormal FFT the power sums to the image's energy (Parseval)."""
    power = torch.fft.fft2(images, norm="ortho").abs().square()
    if power.ndim == 4:
        power = power.sum(dim=1)
    return power[:, band].sum(dim=1) / band.numel()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    a, b = a.double(), b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise ValueError("a Frechet distance needs at least two images per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b, which are real and
    # non-negative for two covariance matrices (numerical noise aside, hence the clamp).
    eigenvalues = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * eigenvalues.sqrt().sum())
