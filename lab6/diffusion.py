"""Diffusion: the noise schedule, the starting noise and the training loss.

The forward process is a diffusers ``DDPMScheduler`` built from one config (:func:`make_noise_scheduler`), saved
beside every model; the samplers that reverse it share that config (``lab6.samplers``), and the loop that runs
them is ``lab6.pipeline.Lab6Pipeline.__call__``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"epsilon": "epsilon", "v": "v_prediction"}
#: How the starting noise is drawn (see :func:`initial_noise`).
INITIAL_NOISE = ("gaussian", "grey-mean")
#: The starting noise of every model lab6 builds: grey-mean noise keeps the floors grey
#: (docs/colour-casts.md#grey-mean-noise).
DEFAULT_NOISE = "grey-mean"
#: The classifier-free guidance scale w a recipe evaluates and ships its model with, unless it says otherwise.
DEFAULT_GUIDANCE = 2.0


def make_noise_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "cosine",
                         prediction: str = "epsilon", snr_shift: float = 1.0) -> DDPMScheduler:
    """The forward (noising) process of training; its config is saved beside the model.

    Args:
        num_train_timesteps: the number of training timesteps T.
        beta_schedule: ``"cosine"`` or ``"linear"`` (:data:`BETA_SCHEDULES`).
        prediction: what the model predicts, ``"epsilon"`` or ``"v"`` (:data:`PREDICTION_TYPES`).
        snr_shift: multiplies the signal-to-noise ratio of every timestep (the schedule's ``alpha_bar`` then
            comes as explicit ``trained_betas``). A 64-px image averaged over 2x2 blocks has a quarter of the
            noise variance, so at ``snr_shift = 0.25`` a 64-px model's coarse structure is as noisy at each t as a
            32-px model's is at 1 ("simple diffusion", Hoogeboom et al. 2023).
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


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, kind: str = DEFAULT_NOISE) -> torch.Tensor:
    """The starting noise x_T of sampling: standard Gaussian, or ``"grey-mean"`` (one of :data:`INITIAL_NOISE`).

    A model reads the per-channel mean of its starting noise as the scene's overall colour, so plain Gaussian
    noise tints the floors (docs/colour-casts.md#grey-mean-noise). ``"grey-mean"`` replaces the three channel
    means of each image's noise by their average: brightness still varies, the noise carries no colour, and
    colour comes from the model alone.
    """
    if kind not in INITIAL_NOISE:
        raise ValueError(f"initial noise must be one of {', '.join(INITIAL_NOISE)}, got {kind!r}")
    noise = torch.randn(shape, generator=generator)
    if kind == "grey-mean":
        means = noise.mean(dim=(2, 3), keepdim=True)
        noise = noise - means + means.mean(dim=1, keepdim=True)
    return noise


def prediction_of(scheduler_config, user: str) -> str:
    """lab6's name (:data:`PREDICTION_TYPES`) for a scheduler config's ``prediction_type``; the others
    ("sample", "flow_prediction") are refused by name, as ``user`` cannot read such a model's output."""
    names = {diffusers_name: name for name, diffusers_name in PREDICTION_TYPES.items()}
    if scheduler_config.prediction_type not in names:
        raise ValueError(f"{user} takes prediction_type {' or '.join(names)}, "
                         f"got {scheduler_config.prediction_type!r}")
    return names[scheduler_config.prediction_type]


def predicted_x0(sample: torch.Tensor, model_output: torch.Tensor, alpha_cumprod: torch.Tensor,
                 prediction: str) -> torch.Tensor:
    """The clean image implied by the model's output at noise level ``alpha_cumprod``."""
    a, s = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    if prediction == "epsilon":
        return (sample - s * model_output) / a
    return a * sample - s * model_output


def training_loss(model, images: torch.Tensor, condition: torch.Tensor, noise_scheduler: DDPMScheduler, *,
                  generator: torch.Generator | None = None, cond_dropout: float = 0.1,
                  min_snr_gamma: float | None = 5.0, offset_noise: float = 0.0, max_timestep: int = 0) -> torch.Tensor:
    """One denoising loss on a batch: random timesteps, noise, label dropout for guidance, min-SNR weighting.

    Args:
        model: called as ``model(noisy, timesteps, condition)``; predicts what the scheduler's
            ``prediction_type`` says.
        images: clean images in [-1, 1], ``(B, C, H, W)``; condition: multi-hot labels, ``(B, 24)``.
        noise_scheduler: the forward process (:func:`make_noise_scheduler`).
        generator: the random generator of the timesteps, noise and label dropout (drawn on the CPU).
        cond_dropout: the probability of replacing an image's labels by the null condition.
        min_snr_gamma: the min-SNR weighting's gamma (Hang et al. 2023); ``None`` or 0 for none.
        offset_noise: adds a per-image, per-channel constant of that standard deviation to the noise
            (Guttenberg 2023): a training-side candidate against colour casts
            (docs/colour-casts.md#a-training-side-fix).
        max_timestep: when > 0, timesteps are drawn below it only: a refiner that redraws the last, low noise
            levels of another model's sample spends all its training there (SDXL's refiner learns t < 200 of
            1,000).

    Returns:
        The mean loss, a scalar tensor.
    """
    b = images.shape[0]
    device = images.device
    T = noise_scheduler.config.num_train_timesteps
    noise = torch.randn(images.shape, generator=generator).to(device)
    timesteps = torch.randint(0, max_timestep or T, (b,), generator=generator).to(device)
    if cond_dropout > 0:
        keep = (torch.rand(b, generator=generator) >= cond_dropout).to(device)
        condition = condition * keep[:, None].to(condition.dtype)
    if offset_noise > 0:  # drawn last, so runs without it keep their random stream (and exact resume)
        noise = noise + offset_noise * torch.randn(b, images.shape[1], 1, 1, generator=generator).to(device)
    noisy = noise_scheduler.add_noise(images, noise, timesteps)
    prediction = noise_scheduler.config.prediction_type
    target = noise if prediction == "epsilon" else noise_scheduler.get_velocity(images, noise, timesteps)
    output = model(noisy, timesteps, condition)
    loss = F.mse_loss(output.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma:
        loss = loss * min_snr_weight(noise_scheduler, timesteps, min_snr_gamma)
    return loss.mean()


def min_snr_weight(noise_scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR weighting (Hang et al., 2023) per timestep, for the scheduler's prediction type: stops the easy,
    low-noise steps from dominating the loss."""
    snr = compute_snr(noise_scheduler, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    return clipped / snr if noise_scheduler.config.prediction_type == "epsilon" else clipped / (snr + 1)
