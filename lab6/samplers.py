"""Samplers: the diffusers schedulers that reverse the training schedule, by name (``make_sampler``).

Every sampler is built from the training scheduler's config, so they are interchangeable in one pipeline, the
diffusers way (``pipe.with_sampler("ddim")``, or ``pipe.scheduler = X.from_config(pipe.scheduler.config)``).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput

from .diffusion import DEFAULT_NOISE, INITIAL_NOISE, initial_noise, predicted_x0, prediction_of

SAMPLERS = ("ddpm", "ddim", "dpmsolver")
#: The sampler every command, notebook and training evaluation uses unless told.
DEFAULT_SAMPLER = "dpmsolver"
#: Steps each sampler uses when none are asked for.
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmsolver": 20}
#: How figures and tables name each sampler.
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpmsolver": "DPM-Solver++"}


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return name


def make_sampler(name: str, noise_scheduler_config, *, noise: str = DEFAULT_NOISE, any_timesteps: bool = False
                 ) -> SchedulerMixin:
    """A sampler (diffusers scheduler) that shares the training schedule.

    DDIM does not clip its x0 estimate, although the training config says ``clip_sample``: diffusers'
    DDIMScheduler clips x0 but keeps the epsilon of the unclipped x0, and under strong guidance the two disagree
    and the image falls apart (docs/samplers.md#ddim-clipping). DPM-Solver++ does not clip; the pipeline clamps
    its output at the end.

    Args:
        name: ``"ddpm"``, ``"ddim"`` or ``"dpmsolver"`` (:data:`SAMPLERS`).
        noise_scheduler_config: the training scheduler's config (``diffusion.make_noise_scheduler``).
        noise: the pipeline's kind of starting noise (``diffusion.INITIAL_NOISE``). DDPM, the one sampler here
            that draws fresh noise at every step, draws that kind too (:class:`GreyMeanDDPMScheduler`).
        any_timesteps: the sampler must step between any timesteps it is given (a refiner's Karras-spaced tail).
            DDPM and DPM-Solver++ do; diffusers' DDIMScheduler steps only to t - T/n on its own uniform grid, so
            DDIM is then built as first-order DPM-Solver++, which is the DDIM update (eta = 0; Lu et al. 2022).
    """
    # A config read back from scheduler_config.json carries every value explicitly, while the in-memory one
    # lists some under "_use_default_values", which from_config would replace by the *new* class's
    # defaults. Dropping the private keys makes both paths build the very same sampler.
    noise_scheduler_config = {k: v for k, v in dict(noise_scheduler_config).items() if not k.startswith("_")}
    if noise not in INITIAL_NOISE:
        raise ValueError(f"noise must be one of {', '.join(INITIAL_NOISE)}, got {noise!r}")
    check_sampler(name)
    if name == "ddpm":
        return (GreyMeanDDPMScheduler if noise == "grey-mean" else DDPMScheduler).from_config(noise_scheduler_config)
    # "trailing" spacing starts at the last training step (t = 999); "leading" starts DPM-Solver++ 20 at
    # t = 940, on pure noise that the model reads as holding signal (Lin et al. 2024, "sample steps are flawed").
    noise_scheduler_config["timestep_spacing"] = "trailing"
    if name == "ddim" and any_timesteps:
        return DPMSolverMultistepScheduler.from_config(noise_scheduler_config, algorithm_type="dpmsolver++",
                                                       solver_order=1)
    if name == "ddim":
        return DDIMScheduler.from_config(noise_scheduler_config, set_alpha_to_one=True, clip_sample=False)
    return DPMSolverMultistepScheduler.from_config(noise_scheduler_config, algorithm_type="dpmsolver++",
                                                   solver_order=2)


class GreyMeanDDPMScheduler(DDPMScheduler):
    """DDPM whose fresh noise at every step is grey-mean, as the starting noise is (``diffusion.initial_noise``).

    A model reads the channel means of DDPM's fresh step noise as colour, as it reads the starting noise's, so
    Gaussian step noise tints the floors even from a grey-mean start (docs/colour-casts.md#ddpm-step-noise).
    The step is DDPM's (Ho et al. 2020, eq. 7, the "fixed_small" variance, x_0 clipped as the config says),
    written out because diffusers' ``DDPMScheduler.step`` draws its noise inside. A model folder saved with it
    names it ``["lab6.samplers", "GreyMeanDDPMScheduler"]``; diffusers loads it back because this module holds
    ``SchedulerMixin`` (its test for a scheduler class).
    """

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: torch.Generator | None = None, return_dict: bool = True):
        if self.config.variance_type != "fixed_small" or self.config.thresholding:
            raise ValueError(f"{type(self).__name__} steps with the fixed_small variance and no thresholding; this "
                             f"config has variance_type={self.config.variance_type!r}, "
                             f"thresholding={self.config.thresholding}")
        t, prev_t = int(timestep), int(self.previous_timestep(timestep))
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta = 1 - a_t / a_prev  # the variance added between prev_t and t
        prediction = prediction_of(self.config, type(self).__name__)
        x0 = predicted_x0(sample, model_output, a_t, prediction)
        if self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        # The posterior q(x_prev | x_t, x_0) with the model's x_0: its mean, then its variance's noise.
        x_prev = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * sample
        if t > 0:
            variance = (beta * (1 - a_prev) / (1 - a_t)).clamp(min=1e-20)
            noise = initial_noise(sample.shape, generator, "grey-mean").to(sample.device, sample.dtype)
            x_prev = x_prev + variance.sqrt() * noise
        if not return_dict:
            return x_prev, x0
        return DDPMSchedulerOutput(prev_sample=x_prev, pred_original_sample=x0)
