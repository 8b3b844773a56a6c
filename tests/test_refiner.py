"""The refiner's room: its network's full-resolution head and detail gains, the detail priors they start from,
and the Karras-spaced steps it takes (the pipeline's cascade is tested in test_pipeline.py)."""

import pytest
import torch

from lab6.diffusion import make_noise_scheduler
from lab6.refiner import RefinerUNet, detail_gain, detail_priors, karras_timesteps, patch_detail
from lab6.samplers import make_sampler
from tests.test_model import TINY


def test_a_refiner_head_needs_patches_and_a_colour_gain_needs_the_grey_one():
    with pytest.raises(ValueError, match="detail_chroma splits detail_skip's gain in two: it needs detail_skip=True"):
        RefinerUNet(full_res_channels=8, detail_chroma=True, **{**TINY, "patch_size": 2})
    with pytest.raises(ValueError, match=r"detail_skip needs a model over patches \(patch_size > 1\)"):
        RefinerUNet(full_res_channels=8, detail_skip=True, **TINY)


def test_a_head_with_a_colour_gain_scales_the_grey_and_the_colour_part_of_the_detail_apart(tmp_path):
    """``detail_chroma``: the noisy image's in-patch detail is split into its mean over colours (grey, times
    ``detail_gain``) and the rest (colour, times ``detail_chroma_gain``); the gains are saved with the weights."""
    model = RefinerUNet(full_res_channels=8, detail_skip=True, detail_chroma=True, **{**TINY, "patch_size": 2})
    head = model.full_res_head  # its last convolution starts at zero: the gains are all it adds
    head.detail_gain.fill_(2.0)
    head.detail_chroma_gain.fill_(-3.0)
    generator = torch.Generator().manual_seed(0)
    grey = patch_detail(torch.randn(2, 1, 16, 16, generator=generator), 2).expand(2, 3, 16, 16)
    colour = patch_detail(torch.randn(2, 3, 16, 16, generator=generator), 2)
    colour = colour - colour.mean(dim=1, keepdim=True)
    blocks = torch.randn(2, 3, 8, 8, generator=generator).repeat_interleave(2, 2).repeat_interleave(2, 3)
    with torch.no_grad():
        out = head(blocks + grey + colour, torch.zeros(2, 3, 16, 16), torch.tensor([3, 700]))
    torch.testing.assert_close(out, 2.0 * grey - 3.0 * colour)
    model.save_pretrained(tmp_path / "m")
    loaded = RefinerUNet.from_pretrained(tmp_path / "m")
    assert loaded.config.patch_size == 2 and loaded.config.full_res_channels == 8  # both classes' config keys
    assert torch.equal(loaded.full_res_head.detail_chroma_gain, head.detail_chroma_gain)


def _upsampled(generator: torch.Generator, batch: int) -> torch.Tensor:
    """Images with no detail inside their 2x2 patches."""
    return torch.randn(batch, 3, 8, 8, generator=generator).repeat_interleave(2, 2).repeat_interleave(2, 3)


def test_detail_priors_are_the_grey_and_the_colour_energy_of_the_finest_checkerboard_against_unit_noise():
    """Unit white noise has priors (1, 1), the scale ``detail_gain`` takes; images made of patch-constant blocks,
    grey detail and colour detail of known energies give those energies back, each in its own number."""
    generator = torch.Generator().manual_seed(0)
    noise = detail_priors(torch.randn(256, 3, 16, 16, generator=generator))
    assert noise == pytest.approx((1.0, 1.0), rel=0.02)
    grey = 0.05 * patch_detail(torch.randn(512, 1, 16, 16, generator=generator), 2).expand(512, 3, 16, 16)
    colour = 0.02 * patch_detail(torch.randn(512, 3, 16, 16, generator=generator), 2)
    colour = colour - colour.mean(dim=1, keepdim=True)
    # per dimension against unit noise: the grey part is 0.05 on each channel, sqrt(3) x 0.05 on the unit grey
    # axis; the colour part is 0.02 per channel with its grey removed, 0.02 on each of the two colour axes
    assert detail_priors(_upsampled(generator, 512) + grey + colour) == pytest.approx((3 * 0.05**2, 0.02**2), rel=0.03)
    # a data set's uint8 pixels (lab6 data priors) read as the same images in [-1, 1]
    pixels = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=generator)
    assert detail_priors(pixels) == pytest.approx(detail_priors(pixels.double() / 127.5 - 1), rel=1e-12)


def test_detail_priors_leave_out_edges_that_run_on_across_patches():
    """Stripes one pixel wide (vertical or horizontal edges inside every patch) are in-patch detail that a
    patch's neighbours predict: they add nothing to the priors, while a checkerboard of the same contrast does."""
    stripes = torch.zeros(2, 3, 8, 8)
    stripes[..., 0::2] = 0.5
    assert detail_priors(stripes) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert detail_priors(stripes.transpose(-1, -2)) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert float(patch_detail(stripes, 2).square().mean()) > 0
    checkerboard = torch.zeros(2, 3, 8, 8)
    checkerboard[..., 0::2, 0::2] = checkerboard[..., 1::2, 1::2] = 0.5
    # +-0.25 about each patch's mean on every channel, all of it in the checkerboard, where white noise of variance
    # v puts only v / 4 per pixel: the prior is 4 x 0.25^2 per channel, 3x that on the unit grey axis
    assert detail_priors(checkerboard) == pytest.approx((3 * 4 * 0.25**2, 0.0), abs=1e-12)
    with pytest.raises(ValueError, match=r"do not divide into 2x2 patches"):
        detail_priors(torch.zeros(1, 3, 7, 8))
    with pytest.raises(ValueError, match=r"patch must be 2 or more \(a one-pixel patch holds no detail\), got 1"):
        detail_priors(torch.zeros(1, 3, 8, 8), patch=1)
    # measured a chunk at a time, as over one batch
    many = torch.randn(2500, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    halves = [detail_priors(part) for part in many.split(1250)]
    assert detail_priors(many) == pytest.approx(tuple(sum(v) / 2 for v in zip(*halves)), rel=1e-12)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_detail_gain_recovers_the_targets_detail_exactly_when_the_clean_image_has_none(prediction):
    """A clean image without in-patch detail (what a grown 32-px body sees): the noisy image's detail is all
    noise, and gain * detail(x_t) is the model target's detail, at every noise level."""
    scheduler = make_noise_scheduler(1000, "cosine", prediction, snr_shift=0.25)
    generator = torch.Generator().manual_seed(0)
    clean, noise = _upsampled(generator, 4), torch.randn(4, 3, 16, 16, generator=generator)
    t = torch.tensor([1, 50, 300, 900])
    noisy = scheduler.add_noise(clean, noise, t)
    target = noise if prediction == "epsilon" else scheduler.get_velocity(clean, noise, t)
    estimate = detail_gain(scheduler, 0.0)[t][:, None, None, None] * patch_detail(noisy, 2)
    torch.testing.assert_close(estimate, patch_detail(target, 2), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_detail_gain_is_the_least_squares_gain_for_detail_of_the_prior_energy(prediction):
    """With in-patch detail of energy ``prior`` per dimension (against the noise's 1), a larger or smaller
    gain than ``detail_gain``'s predicts the target's detail worse."""
    prior, scheduler = 0.3, make_noise_scheduler(1000, "cosine", prediction, snr_shift=0.25)
    generator = torch.Generator().manual_seed(0)
    clean = _upsampled(generator, 512) + prior**0.5 * patch_detail(torch.randn(512, 3, 16, 16, generator=generator), 2)
    noise, t = torch.randn(512, 3, 16, 16, generator=generator), torch.full((512,), 150)
    noisy = scheduler.add_noise(clean, noise, t)
    target = patch_detail(noise if prediction == "epsilon" else scheduler.get_velocity(clean, noise, t), 2)
    gain = float(detail_gain(scheduler, prior)[150])
    error = {f: float((f * gain * patch_detail(noisy, 2) - target).pow(2).mean()) for f in (0.8, 1.0, 1.25)}
    assert error[1.0] < error[0.8] and error[1.0] < error[1.25], error


def test_karras_timesteps_run_from_the_start_to_zero_evenly_in_sigma_to_the_one_over_rho():
    alphas_cumprod = make_noise_scheduler(1000, "cosine", "v", snr_shift=0.25).alphas_cumprod
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    grid = karras_timesteps(alphas_cumprod, 199, 6)
    assert grid[0] == 199 and grid[-1] == 0 and len(grid) == 6
    gaps = (sigmas[grid] ** (1 / 7)).diff()
    torch.testing.assert_close(gaps, gaps.mean().expand(5), rtol=0.1, atol=0)  # even, up to whole timesteps
    assert karras_timesteps(alphas_cumprod, 9, 10) == list(range(9, -1, -1))  # crowded levels stay one apart
    with pytest.raises(ValueError, match="11 steps do not fit in the timesteps 9..0: give 1 to 10"):
        karras_timesteps(alphas_cumprod, 9, 11)


def test_a_refiner_keeps_the_grain_it_cannot_predict_only_if_its_steps_end_near_t_0():
    """Grain of energy r (Gaussian, so ``detail_gain`` is its exact denoiser) through DPM-Solver++'s last 4 of
    20 uniform steps, or 4 Karras steps from the same t = 199: the uniform tail ends at t = 49, where the
    posterior mean it returns keeps almost none of it; the Karras grid keeps most of it."""
    r, scheduler = 1e-3, make_noise_scheduler(1000, "cosine", "v", snr_shift=0.25)
    gain = detail_gain(scheduler, r)
    uniform = make_sampler("dpmsolver", scheduler.config)
    uniform.set_timesteps(20)
    uniform.set_begin_index(16)
    karras = make_sampler("dpmsolver", scheduler.config)
    karras.set_timesteps(timesteps=karras_timesteps(scheduler.alphas_cumprod, 199, 4))
    kept = {}
    for name, sampler, timesteps in (("uniform", uniform, uniform.timesteps[16:]),
                                     ("karras", karras, karras.timesteps)):
        generator = torch.Generator().manual_seed(0)
        grain = r**0.5 * torch.randn(64, 3, 16, 16, generator=generator)
        x = scheduler.add_noise(grain, torch.randn(grain.shape, generator=generator), timesteps[:1])
        for t in timesteps:
            x = sampler.step(gain[t] * x, t, x).prev_sample
        kept[name] = float(x.var()) / r
    assert kept["uniform"] < 0.1 and kept["karras"] > 0.5, kept
