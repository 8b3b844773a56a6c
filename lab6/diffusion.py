"""Diffusion: the noise schedule, the training loss, and sampling with classifier-free guidance.

The forward process and all samplers are diffusers scheduler objects built from one config, so they are
interchangeable: ``make_sampler("ddpm" | "ddim" | "dpmsolver", ...)``. Guided sampling runs the conditional
and the null condition in one batch and mixes them as ``uncond + w * (cond - uncond)`` (:func:`guided_output`):
``w = 1`` is the plain conditional model, ``w = 0`` the unconditional one, ``w > 1`` trades variety for
fidelity. The sampling loop itself is ``lab6.pipeline.Lab6Pipeline.__call__``.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
from diffusers.training_utils import compute_snr

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"epsilon": "epsilon", "v": "v_prediction"}
SAMPLERS = ("ddpm", "ddim", "dpmsolver")
#: Steps each sampler uses when none are asked for.
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmsolver": 20}
#: How figures and tables name each sampler.
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpmsolver": "DPM-Solver++"}
#: How the starting noise is drawn (see :func:`initial_noise`).
INITIAL_NOISE = ("gaussian", "grey-mean")
#: The starting noise of every model lab6 builds: grey-mean noise keeps the floors grey
#: (docs/colour-casts.md#grey-mean-noise).
DEFAULT_NOISE = "grey-mean"
#: How a refiner spaces its steps: "karras" (:func:`karras_timesteps`) or "uniform" (the last of a
#: trailing-spaced schedule, as every first stage).
REFINER_SPACINGS = ("karras", "uniform")


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, kind: str = DEFAULT_NOISE) -> torch.Tensor:
    """The starting noise x_T of sampling: standard Gaussian, or ``"grey-mean"``.

    A model reads the per-channel mean of its starting noise as the scene's overall colour, so plain Gaussian
    noise tints the floors (docs/colour-casts.md#grey-mean-noise). ``"grey-mean"`` replaces the three channel
    means of each image's noise by their average: brightness still varies, the noise carries no colour, and
    colour comes from the model alone.

    Args:
        shape: ``(batch, channels, height, width)``.
        generator: the random generator the noise is drawn from.
        kind: one of :data:`INITIAL_NOISE`.

    Returns:
        A float tensor of ``shape``.
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
    """The forward (noising) process of training; its config is saved beside the model.

    Args:
        num_train_timesteps: the number of training timesteps T.
        beta_schedule: ``"cosine"`` or ``"linear"`` (:data:`BETA_SCHEDULES`).
        prediction: what the model predicts, ``"epsilon"`` or ``"v"`` (:data:`PREDICTION_TYPES`).
        snr_shift: multiplies the signal-to-noise ratio of every timestep (the schedule's ``alpha_bar`` then
            comes as explicit ``trained_betas``). A 64-px image averaged over 2x2 blocks has a quarter of the
            noise variance, so at ``snr_shift = 0.25`` a 64-px model's coarse structure is as noisy at each t as a
            32-px model's is at 1 ("simple diffusion", Hoogeboom et al. 2023).

    Returns:
        A diffusers ``DDPMScheduler``.
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


class GreyMeanDDPMScheduler(DDPMScheduler):
    """DDPM whose fresh noise at every step is grey-mean, as the starting noise is (:func:`initial_noise`).

    A model reads the channel means of DDPM's fresh step noise as colour, as it reads the starting noise's, so
    Gaussian step noise tints the floors even from a grey-mean start (docs/colour-casts.md#ddpm-step-noise).
    The step is DDPM's (Ho et al. 2020, eq. 7, the "fixed_small" variance, x_0 clipped as the config says),
    written out because diffusers' ``DDPMScheduler.step`` draws its noise inside. A model folder saved with it names it
    ``["lab6.diffusion", "GreyMeanDDPMScheduler"]``; diffusers loads it back because this module holds
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


def prediction_of(scheduler_config, user: str) -> str:
    """lab6's name (:data:`PREDICTION_TYPES`) for a scheduler config's ``prediction_type``; the others
    ("sample", "flow_prediction") are refused by name, as ``user`` cannot read such a model's output."""
    names = {diffusers_name: name for name, diffusers_name in PREDICTION_TYPES.items()}
    if scheduler_config.prediction_type not in names:
        raise ValueError(f"{user} takes prediction_type {' or '.join(names)}, "
                         f"got {scheduler_config.prediction_type!r}")
    return names[scheduler_config.prediction_type]


def make_sampler(name: str, noise_scheduler_config, *, noise: str = DEFAULT_NOISE, any_timesteps: bool = False
                 ) -> SchedulerMixin:
    """A sampler (diffusers scheduler) that shares the training schedule.

    DDIM does not clip its x0 estimate, although the training config says ``clip_sample``: diffusers'
    DDIMScheduler clips x0 but keeps the epsilon of the unclipped x0, and under strong guidance the two disagree
    and the image falls apart (docs/samplers.md#ddim-clipping). DPM-Solver++ does not clip; the pipeline clamps
    its output at the end.

    Args:
        name: ``"ddpm"``, ``"ddim"`` or ``"dpmsolver"`` (:data:`SAMPLERS`).
        noise_scheduler_config: the training scheduler's config (:func:`make_noise_scheduler`).
        noise: the pipeline's kind of starting noise (:data:`INITIAL_NOISE`). DDPM, the one sampler here that
            draws fresh noise at every step, draws that kind too (:class:`GreyMeanDDPMScheduler` for grey-mean).
        any_timesteps: the sampler must step between any timesteps it is given (a refiner's Karras-spaced tail,
            :func:`set_tail_timesteps`). DDPM and DPM-Solver++ do; diffusers' DDIMScheduler steps only to
            t - T/n on its own uniform grid, so DDIM is then built as first-order DPM-Solver++, which is the DDIM
            update (x_s = a_s x0 + s_s eps, eta = 0; Lu et al. 2022).

    Returns:
        A diffusers scheduler, its timesteps not yet set.
    """
    # A config read back from scheduler_config.json carries every value explicitly, while the in-memory one
    # lists some under "_use_default_values", which from_config would replace by the *new* class's
    # defaults. Dropping the private keys makes both paths build the very same sampler.
    noise_scheduler_config = {k: v for k, v in dict(noise_scheduler_config).items() if not k.startswith("_")}
    if noise not in INITIAL_NOISE:
        raise ValueError(f"noise must be one of {', '.join(INITIAL_NOISE)}, got {noise!r}")
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
    if name == "dpmsolver":
        return DPMSolverMultistepScheduler.from_config(noise_scheduler_config, algorithm_type="dpmsolver++",
                                                       solver_order=2)
    raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def training_loss(model, images: torch.Tensor, condition: torch.Tensor, noise_scheduler: DDPMScheduler, *,
                  generator: torch.Generator | None = None, cond_dropout: float = 0.1,
                  min_snr_gamma: float | None = 5.0, offset_noise: float = 0.0, max_timestep: int = 0) -> torch.Tensor:
    """One denoising loss on a batch: random timesteps, noise, label dropout for guidance, min-SNR weighting.

    Args:
        model: called as ``model(noisy, timesteps, condition)``; predicts what the scheduler's
            ``prediction_type`` says.
        images: clean images in [-1, 1], ``(B, C, H, W)``.
        condition: multi-hot labels, ``(B, 24)``.
        noise_scheduler: the forward process (:func:`make_noise_scheduler`).
        generator: the random generator of the timesteps, noise and label dropout (drawn on the CPU).
        cond_dropout: the probability of replacing an image's labels by the null condition.
        min_snr_gamma: the min-SNR weighting's gamma (Hang et al. 2023); ``None`` or 0 for none.
        offset_noise: adds a per-image, per-channel constant of that standard deviation to the noise
            (Guttenberg 2023), so the model learns that a noisy image's overall colour is mostly noise: a
            training-side candidate against colour casts (docs/colour-casts.md#a-training-side-fix).
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
        # Min-SNR weighting (Hang et al., 2023): stops the easy, low-noise steps from dominating.
        snr = compute_snr(noise_scheduler, timesteps)
        clipped = torch.clamp(snr, max=min_snr_gamma)
        loss = loss * (clipped / snr if prediction == "epsilon" else clipped / (snr + 1))
    return loss.mean()


def detail_gain(noise_scheduler: DDPMScheduler, prior: float) -> torch.Tensor:
    """Per timestep, the best linear estimate of the model target's in-patch detail from the noisy image's.

    With x_t = a x_0 + s eps and x_0's detail of energy ``prior`` per dimension against the noise's 1 (both
    inside the patches: ``model.patch_detail``), least squares gives, per detail dimension,
    eps: s / (a^2 prior + s^2) and v = a eps - s x_0: a s (1 - prior) / (a^2 prior + s^2). At low noise
    this grows as 1/s: almost all of a lightly noised image's pixel-level detail is noise, and a denoiser must
    remove it in full. ``model.FullResolutionHead`` adds ``gain[t] * detail(x_t)`` to its prediction.

    Args:
        noise_scheduler: the training schedule; its ``prediction_type`` says whether the target is eps or v.
        prior: the clean images' detail energy per dimension (:func:`detail_priors`).

    Returns:
        A float tensor of one gain per training timestep.
    """
    alpha_bar = noise_scheduler.alphas_cumprod.double()
    a2, s2 = alpha_bar, 1 - alpha_bar
    if noise_scheduler.config.prediction_type == "epsilon":
        gain = s2.sqrt() / (a2 * prior + s2)
    else:
        gain = (a2 * s2).sqrt() * (1 - prior) / (a2 * prior + s2)
    return gain.float()


def detail_priors(images: torch.Tensor, patch: int = 2) -> tuple[float, float]:
    """The ``detail_prior`` and ``detail_chroma_prior`` of a set of clean images: the energy per pixel of their
    finest checkerboard (each ``patch`` x ``patch`` square's component along +-1 alternating pixels, the finest
    diagonal Haar detail at patch 2), along the grey axis and across the two colour axes orthogonal to it.
    Unit white noise has (1, 1), the scale :func:`detail_gain` takes.

    The checkerboard, not all the detail inside a patch, because the head's linear denoiser should keep only what
    the rest of the model cannot predict from the patch's neighbours: edges run on across patches, while the
    checkerboard is mostly a renderer's grain (docs/64px.md#detail-priors).

    Args:
        images: ``(N, 3, H, W)`` in [-1, 1], or uint8 as a data set holds them (scaled a chunk at a time, so a
            whole data set is never held in floats).
        patch: the side of the square patches, 2 or more, dividing H and W.

    Returns:
        ``(grey, colour)``: the two priors.
    """
    if patch < 2:
        raise ValueError(f"patch must be 2 or more (a one-pixel patch holds no detail), got {patch}")
    if images.shape[-1] % patch or images.shape[-2] % patch:
        raise ValueError(f"images of {tuple(images.shape[-2:])} pixels do not divide into {patch}x{patch} patches")
    rows, cols = torch.arange(patch), torch.arange(patch)
    sign = (-1.0) ** (rows[:, None] + cols[None, :]).double() / patch  # unit norm over the patch
    grey_sum = colour_sum = 0.0
    for chunk in images.split(1024):  # float64 a chunk at a time: a whole data set would double its memory
        x = chunk.double() / 127.5 - 1 if chunk.dtype == torch.uint8 else chunk.double()
        x = x.unflatten(-2, (-1, patch)).unflatten(-1, (-1, patch))  # (B, C, H/p, p, W/p, p)
        checker = torch.einsum("bchiwj,ij->bchw", x, sign)
        grey = checker.sum(dim=1) / math.sqrt(checker.shape[1])  # the component along the unit grey vector
        grey_sum += float(grey.square().sum())
        colour_sum += float((checker.square().sum(dim=1) - grey.square()).sum())
    checkers = images.shape[0] * (images.shape[-2] // patch) * (images.shape[-1] // patch)
    return grey_sum / checkers, colour_sum / checkers / (images.shape[1] - 1)


def karras_timesteps(alphas_cumprod: torch.Tensor, start: int, steps: int, rho: float = 7.0) -> list[int]:
    """``steps`` timesteps from ``start`` down to 0, uniform in sigma^(1/rho) (Karras et al. 2022, rho = 7),
    where sigma = s / a is the noise-to-signal ratio of a timestep.

    A sampler's last step returns the model's estimate of x_0, a posterior mean, which keeps only the fraction
    r / (r + sigma^2) of detail of energy r that the noisy image cannot pin down (a render's grain). A uniform
    tail ends at a high sigma and draws smooth floors; this grid ends at t = 0 and keeps the grain
    (docs/64px.md#karras-steps).

    Args:
        alphas_cumprod: the schedule's ``alpha_bar`` per training timestep.
        start: the first (noisiest) timestep.
        steps: how many timesteps, 1 to ``start + 1``.
        rho: the spacing's exponent.

    Returns:
        ``steps`` distinct timesteps, descending, the last one 0.
    """
    if not 1 <= steps <= start + 1:
        raise ValueError(f"{steps} steps do not fit in the timesteps {start}..0: give 1 to {start + 1}")
    sigmas = ((1 - alphas_cumprod.double()) / alphas_cumprod.double()).sqrt()
    high, low = sigmas[start] ** (1 / rho), sigmas[0] ** (1 / rho)
    wanted = (high + torch.linspace(0, 1, steps, dtype=torch.float64) * (low - high)) ** rho
    timesteps = (sigmas[None, :] - wanted[:, None]).abs().argmin(dim=1).tolist()
    for i in range(steps - 2, -1, -1):  # levels that round to one timestep near t = 0 move up, one apart
        timesteps[i] = max(timesteps[i], timesteps[i + 1] + 1)
    return timesteps


def set_tail_timesteps(scheduler, strength: float, steps: int, spacing: str, device=None) -> torch.Tensor:
    """Sets ``scheduler`` to ``steps`` steps that start below ``strength`` x T (a refiner's trained noise levels).

    Args:
        scheduler: a diffusers scheduler (:func:`make_sampler`).
        strength: the fraction of the training timesteps the steps start below.
        steps: how many steps.
        spacing: ``"karras"`` spaces the steps down to t = 0 (:func:`karras_timesteps`) where the scheduler takes
            custom timesteps (DPM-Solver++, DDPM, DDIM as ``make_sampler(..., any_timesteps=True)`` builds it);
            otherwise, or with ``"uniform"``, they are the last steps of a uniform schedule (diffusers'
            DDIMScheduler takes only a number).
        device: where the timesteps go.

    Returns:
        The timesteps, a tensor.
    """
    if spacing == "karras" and "timesteps" in inspect.signature(scheduler.set_timesteps).parameters:
        start = round(strength * scheduler.config.num_train_timesteps) - 1
        scheduler.set_timesteps(timesteps=karras_timesteps(scheduler.alphas_cumprod, start, steps), device=device)
        return scheduler.timesteps
    n = math.ceil(steps / strength - 1e-9)  # a schedule of n >= steps / strength: its tail starts below strength x T
    scheduler.set_timesteps(n, device=device)
    if hasattr(scheduler, "set_begin_index"):  # multistep solvers count their steps from here
        scheduler.set_begin_index(n - steps)
    return scheduler.timesteps[n - steps:]


def predicted_x0(sample: torch.Tensor, model_output: torch.Tensor, alpha_cumprod: torch.Tensor,
                 prediction: str) -> torch.Tensor:
    """The clean image implied by the model's output at noise level ``alpha_cumprod``."""
    a, s = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    if prediction == "epsilon":
        return (sample - s * model_output) / a
    return a * sample - s * model_output


def guided_output(model, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + w * (cond - uncond)``, the two in one batch (w = 1: one call)."""
    if guidance == 1:
        return model(x, t.expand(len(x)), condition)
    both = model(torch.cat([x, x]), t.expand(2 * len(x)), torch.cat([condition, torch.zeros_like(condition)]))
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def check_guidance_interval(interval) -> tuple[float, float]:
    """``(low, high)``: the noise-to-signal ratios between which guidance applies, checked (0 <= low < high)."""
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"guidance_interval must be two numbers (low, high), got {interval!r}") from None
    if not (0 <= low < high < math.inf):
        raise ValueError(f"guidance_interval must have 0 <= low < high, both finite, got {interval!r}")
    return low, high


def guidance_at(alpha_cumprod: torch.Tensor, guidance: float, interval: tuple[float, float] | None) -> float:
    """The guidance scale at one noise level: ``guidance`` where the noise-to-signal ratio
    sigma = sqrt((1 - a) / a) lies in ``interval`` = (low, high], 1 (the conditional model, one call) elsewhere.

    An interval (Kynkaanniemi et al. 2024) because at the highest noise levels guidance pushes every image of a
    condition towards one layout and colour, at the lowest it only sharpens what is already decided; in between
    it makes the objects match their labels. A step is guided by the level it starts from, so an interval acts
    through the sampler's grid; the shipped model guides at every step (docs/guidance.md#guidance-interval).

    Args:
        alpha_cumprod: ``alpha_bar`` at the step's timestep.
        guidance: the guidance scale inside the interval.
        interval: ``(low, high)`` (:func:`check_guidance_interval`), or ``None`` to guide at every level.

    Returns:
        The guidance scale for this step.
    """
    if interval is None:
        return guidance
    sigma = float(((1 - alpha_cumprod) / alpha_cumprod).sqrt())
    return guidance if interval[0] < sigma <= interval[1] else 1.0


def x0_to_model_output(sample: torch.Tensor, x0: torch.Tensor, alpha_cumprod: torch.Tensor,
                       prediction: str) -> torch.Tensor:
    """The model output (epsilon or v) that :func:`predicted_x0` turns into ``x0`` at this noise level."""
    a, s = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    if prediction == "epsilon":
        return (sample - a * x0) / s
    return (a * sample - x0) / s


def evaluator_steered_x0(x0: torch.Tensor, condition: torch.Tensor, classifier, scale: float) -> torch.Tensor:
    """Evaluator guidance: moves the predicted clean image down a classifier's binary cross-entropy for the
    asked labels (the gradient is taken through the classifier only, not the UNet: one classifier forward and
    backward per step). This steers images towards what that classifier reads as the labels, so accuracy
    measured by the same classifier means nothing: score with another.

    Args:
        x0: the predicted clean images, ``(B, 3, H, W)`` in about [-1, 1].
        condition: the asked labels, multi-hot ``(B, 24)``.
        classifier: maps 64x64 images in [-1, 1] to label probabilities.
        scale: the size of the gradient step.

    Returns:
        The steered ``x0``, detached.
    """
    with torch.enable_grad():
        x0 = x0.detach().requires_grad_(True)
        images = F.interpolate(x0.clamp(-1, 1), size=(64, 64), mode="bilinear", align_corners=False)
        probabilities = classifier(images).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(probabilities.float(), condition.float(), reduction="sum")
        (gradient,) = torch.autograd.grad(loss, x0)
    return (x0 - scale * gradient).detach()
