"""Diffusion: the noise schedule, the training loss, and sampling with classifier-free guidance.

The forward process and all samplers are diffusers scheduler objects built from one config, so they are
interchangeable: ``make_sampler("ddpm" | "ddim" | "dpmsolver", ...)``. Sampling runs the conditional
and the null condition in one batch and mixes them as ``uncond + w * (cond - uncond)``: ``w = 1`` is the
plain conditional model, ``w = 0`` the unconditional one, ``w > 1`` trades variety for fidelity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"epsilon": "epsilon", "v": "v_prediction"}
SAMPLERS = ("ddpm", "ddim", "dpmsolver")
#: Steps each sampler uses when none are asked for.
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmsolver": 20}
#: How the starting noise is drawn (see :func:`initial_noise`).
INITIAL_NOISE = ("gaussian", "grey-mean")


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, kind: str = "gaussian") -> torch.Tensor:
    """The starting noise x_T of sampling: standard Gaussian, or ``"grey-mean"``.

    A model reads the per-channel mean of its starting noise as the scene's overall colour: with the shipped
    32-px model the background's colour offset follows that mean with correlation 0.72, and the floors come
    out tinted (docs/experiments.md). ``"grey-mean"`` makes the three channel means of each image's noise
    equal (each is replaced by their average, so brightness still varies): the noise no longer carries a
    colour, and colour comes from the model alone. It changes 2 of the 3 x H x W numbers of each noise image.
    """
    if kind not in INITIAL_NOISE:
        raise ValueError(f"initial noise must be one of {', '.join(INITIAL_NOISE)}, got {kind!r}")
    noise = torch.randn(shape, generator=generator)
    if kind == "grey-mean":
        means = noise.mean(dim=(2, 3), keepdim=True)
        noise = noise - means + means.mean(dim=1, keepdim=True)
    return noise


def make_noise_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "cosine",
                         prediction: str = "epsilon", snr_shift: float = 1.0) -> DDPMScheduler:
    """The forward (noising) process used in training; its config is saved beside the model.

    ``snr_shift`` multiplies the signal-to-noise ratio of every timestep (the schedule's ``alpha_bar`` then
    comes as explicit ``trained_betas``). A 64-px image averaged over 2x2 blocks has a quarter of the noise
    variance, so at ``snr_shift = 0.25`` a 64-px model's coarse structure is as noisy at each t as a 32-px
    model's is at 1 ("simple diffusion", Hoogeboom et al. 2023).
    """
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {beta_schedule!r}")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"prediction must be one of {sorted(PREDICTION_TYPES)}, got {prediction!r}")
    if not snr_shift > 0:
        raise ValueError(f"snr_shift must be > 0, got {snr_shift}")
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=BETA_SCHEDULES[beta_schedule],
                              prediction_type=PREDICTION_TYPES[prediction], clip_sample=True)
    if snr_shift == 1:
        return scheduler
    alpha_bar = scheduler.alphas_cumprod.double()
    shifted = snr_shift * alpha_bar / (1 + (snr_shift - 1) * alpha_bar)  # SNR' = shift * SNR
    betas = 1 - shifted / torch.cat([shifted.new_ones(1), shifted[:-1]])
    return DDPMScheduler.from_config(scheduler.config, trained_betas=betas.tolist())


def make_sampler(name: str, noise_scheduler_config) -> DDPMScheduler | DDIMScheduler | DPMSolverMultistepScheduler:
    """A sampler (diffusers scheduler) that shares the training schedule."""
    # A config read back from scheduler_config.json carries every value explicitly, while the in-memory one
    # lists some under "_use_default_values", which from_config would replace by the *new* class's
    # defaults. Dropping the private keys makes both paths build the very same sampler.
    noise_scheduler_config = {k: v for k, v in dict(noise_scheduler_config).items() if not k.startswith("_")}
    if name == "ddpm":
        return DDPMScheduler.from_config(noise_scheduler_config)
    if name == "ddim":
        # "trailing" spacing starts at the last training step, which matters at few steps.
        return DDIMScheduler.from_config(noise_scheduler_config, timestep_spacing="trailing", set_alpha_to_one=True)
    if name == "dpmsolver":
        return DPMSolverMultistepScheduler.from_config(noise_scheduler_config, algorithm_type="dpmsolver++",
                                                       solver_order=2)
    raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def training_loss(model, images: torch.Tensor, condition: torch.Tensor, noise_scheduler: DDPMScheduler, *,
                  generator: torch.Generator | None = None, cond_dropout: float = 0.1,
                  min_snr_gamma: float | None = 5.0) -> torch.Tensor:
    """One denoising loss on a batch: random timesteps, noise, label dropout for guidance, min-SNR weighting."""
    b = images.shape[0]
    device = images.device
    T = noise_scheduler.config.num_train_timesteps
    noise = torch.randn(images.shape, generator=generator).to(device)
    timesteps = torch.randint(0, T, (b,), generator=generator).to(device)
    if cond_dropout > 0:
        keep = (torch.rand(b, generator=generator) >= cond_dropout).to(device)
        condition = condition * keep[:, None].to(condition.dtype)
    noisy = noise_scheduler.add_noise(images, noise, timesteps)
    prediction = noise_scheduler.config.prediction_type
    target = noise if prediction == "epsilon" else noise_scheduler.get_velocity(images, noise, timesteps)
    output = model(noisy, timesteps, condition)
    loss = F.mse_loss(output.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma:
        # Min-SNR weighting (Hang et al., 2023): stops the easy, low-noise steps from dominating.
        alphas = noise_scheduler.alphas_cumprod.to(device)[timesteps]
        snr = alphas / (1 - alphas)
        clipped = torch.clamp(snr, max=min_snr_gamma)
        loss = loss * (clipped / snr if prediction == "epsilon" else clipped / (snr + 1))
    return loss.mean()


def predicted_x0(sample: torch.Tensor, model_output: torch.Tensor, alpha_cumprod: torch.Tensor,
                 prediction: str) -> torch.Tensor:
    """The clean image implied by the model's output at noise level ``alpha_cumprod``."""
    a, s = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    if prediction == "epsilon":
        return (sample - s * model_output) / a
    return a * sample - s * model_output


@dataclass
class SampleResult:
    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    timesteps: list[int] = field(default_factory=list)  # timesteps of the recorded intermediates
    intermediates: list[torch.Tensor] = field(default_factory=list)  # x_t after each recorded step
    predicted_x0: list[torch.Tensor] = field(default_factory=list)  # the model's x_0 estimate at that step
    sampler: str = "dpmsolver"
    steps: int = 0
    guidance: float = 1.0
    noise: str = "gaussian"
    conditions: list[list[str]] | None = None  # set by pipeline.generate, which knows the label names


@torch.no_grad()
def sample(model, condition: torch.Tensor, noise_scheduler_config, *, sampler: str = "dpmsolver",
           steps: int | None = None, guidance: float = 2.0, seed: int = 0, record_every: int = 0,
           batch_size: int = 64, progress: bool = False, noise: str = "gaussian",
           callback: Callable[[int, int], None] | None = None) -> SampleResult:
    """Draw one image per row of ``condition`` (B, 24); the same seed gives the same images.

    ``record_every=k`` keeps x_t and the predicted x_0 every k steps (and at the last step) for the
    progressive-denoising figure. ``callback(done, total)`` is called after every step (progress widgets).
    ``noise`` is how the starting noise is drawn (:func:`initial_noise`).
    """
    from tqdm.auto import tqdm

    steps = steps or DEFAULT_STEPS[sampler]
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    scheduler = make_sampler(sampler, noise_scheduler_config)
    scheduler.set_timesteps(steps, device=device)
    prediction = scheduler.config.prediction_type.replace("v_prediction", "v")
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    size = model.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    condition = condition.to(device, dtype)
    # The starting noise of the whole batch comes from one generator first, so a chunked run matches.
    x = initial_noise((len(condition), model.config.in_channels, size, size), generator, noise).to(device, dtype)
    result = SampleResult(images=x, sampler=sampler, steps=steps, guidance=guidance, noise=noise)
    bar = tqdm(total=steps, desc=f"sampling ({sampler}, {steps} steps)", disable=not progress, unit="step")
    for i, t in enumerate(scheduler.timesteps):
        outputs = []
        for xs, cs in zip(x.split(batch_size), condition.split(batch_size)):
            model_in = scheduler.scale_model_input(xs, t)
            if guidance == 1:
                out = model(model_in, t.expand(len(xs)), cs)
            else:
                both = model(torch.cat([model_in, model_in]), t.expand(2 * len(xs)), torch.cat([cs, torch.zeros_like(cs)]))
                cond_out, uncond_out = both.chunk(2)
                out = uncond_out + guidance * (cond_out - uncond_out)
            outputs.append(out)
        out = torch.cat(outputs)
        if record_every and (i % record_every == 0 or i == steps - 1):
            result.timesteps.append(int(t))
            result.intermediates.append(x.float().cpu())
            result.predicted_x0.append(predicted_x0(x, out, alphas_cumprod[t], prediction).clamp(-1, 1).float().cpu())
        x = scheduler.step(out, t, x, generator=generator).prev_sample
        bar.update()
        if callback is not None:
            callback(i + 1, steps)
    bar.close()
    result.images = x.clamp(-1, 1).float().cpu()
    return result
