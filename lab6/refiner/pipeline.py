"""``RefinedPipeline``: the base pipeline plus one step, the refiner's redraw at 64 px (a two-stage cascade).

As SDXL's base and refiner: the ``unet`` draws the whole scene (at 32 px for the shipped model), then the refiner,
a 64-px model trained on low noise levels only, noises the upsampled image back to the last ``refiner_strength``
of its schedule and denoises it again in a few Karras-spaced steps: the layout and colours are the first stage's,
edges, shadows and texture the refiner's (docs/64px.md#the-shipped-pair).
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch

from ..diffusion import DEFAULT_GUIDANCE, DEFAULT_NOISE
from ..diffusion import initial_noise as draw_initial_noise
from ..evaluator import EVAL_SIZE, to_output_size
from ..labels import conditions_tensor
from ..model import ConditionalUNet
from ..pipeline import CallSettings, Lab6Pipeline
from ..samplers import make_sampler

#: How a refiner spaces its steps: "karras" (:func:`karras_timesteps`) or "uniform" (the last of a
#: trailing-spaced schedule, as every first stage).
REFINER_SPACINGS = ("karras", "uniform")


class RefinedPipeline(Lab6Pipeline):
    """``Lab6Pipeline`` followed by a refiner.

    Args:
        unet, scheduler, guidance_scale, initial_noise: the first stage, as ``Lab6Pipeline``'s.
        refiner, refiner_scheduler, refiner_strength: the second stage (a 64-px model: a ``RefinerUNet`` for the
            shipped pair) and how far back it noises, in (0, 1].
        refiner_guidance_scale: the refiner's w; 1 (unguided) by default, as guidance at low noise levels only
            pulls images away from real ones (docs/guidance.md#refiner-guidance).
        refiner_spacing: ``"karras"`` (dense near t = 0, where the texture is drawn: docs/64px.md#karras-steps)
            or ``"uniform"`` (the last steps of a uniform schedule: what a folder saved without the key used).
        refiner_step_ratio: the refiner's steps per first-stage step (at most one); None: its strength, as
            diffusers' img2img counts them.
    """

    model_cpu_offload_seq = "unet->refiner"

    def __init__(self, unet: ConditionalUNet, scheduler, refiner: ConditionalUNet, refiner_scheduler,
                 guidance_scale: float = DEFAULT_GUIDANCE, initial_noise: str = DEFAULT_NOISE,
                 refiner_strength: float = 0.2, refiner_guidance_scale: float = 1.0, refiner_spacing: str = "uniform",
                 refiner_step_ratio: float | None = None):
        super().__init__(unet, scheduler, guidance_scale, initial_noise)
        if not 0 < refiner_strength <= 1:
            raise ValueError(f"refiner_strength must be in (0, 1], got {refiner_strength}")
        if refiner_spacing not in REFINER_SPACINGS:
            raise ValueError(f"refiner_spacing must be one of {', '.join(REFINER_SPACINGS)}, got {refiner_spacing!r}")
        if refiner_step_ratio is not None and not 0 < refiner_step_ratio <= 1:
            raise ValueError(f"refiner_step_ratio must be in (0, 1] (the refiner's steps per first-stage step) or "
                             f"None (its strength), got {refiner_step_ratio}")
        self.register_modules(refiner=refiner, refiner_scheduler=refiner_scheduler)
        self.register_to_config(refiner_strength=refiner_strength, refiner_guidance_scale=refiner_guidance_scale,
                                refiner_spacing=refiner_spacing, refiner_step_ratio=refiner_step_ratio)

    def refiner_steps(self, num_inference_steps: int) -> int:
        """The refiner's steps for a call of ``num_inference_steps``: ``refiner_step_ratio`` (unset: its strength)
        of as many, at least one."""
        ratio = self.config.refiner_step_ratio or self.config.refiner_strength
        return max(1, round(num_inference_steps * ratio))

    @torch.no_grad()
    def __call__(self, conditions, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, initial_noise: str | None = None, output_type: str = "pil",
                 return_dict: bool = True, max_batch_size: int = 64, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), refine: bool = True):
        """``Lab6Pipeline.__call__``, then the refiner (its steps numbered on from the first stage's for the
        callback). ``refine=False``: the first stage's image alone, upsampled."""
        num_inference_steps = self.default_steps if num_inference_steps is None else num_inference_steps
        self.check_inputs(num_inference_steps, self.guidance_scale, output_type, (), max_batch_size)
        generator = generator or torch.Generator()  # one generator for both stages: the same seed, the same images
        # 1-3. The first stage, as the base pipeline draws it
        x = super().__call__(conditions, num_inference_steps, guidance_scale, generator, initial_noise, "latent",
                             True, max_batch_size, callback_on_step_end, callback_on_step_end_tensor_inputs).images
        # 4. The refiner: the upsampled image noised back to its first timestep and denoised again at 64 px
        if refine:
            call = CallSettings(conditions_tensor(conditions).to(x.device, x.dtype), max_batch_size, generator,
                                callback_on_step_end, callback_on_step_end_tensor_inputs)
            x = self.redraw_at_64(call, x, self.refiner_steps(num_inference_steps),
                                  initial_noise or self.initial_noise, first_step=num_inference_steps)
        # 5. Post-process
        return self.postprocess(x, output_type, return_dict)

    def redraw_at_64(self, call: CallSettings, x: torch.Tensor, steps: int, noise_kind: str, first_step: int = 0):
        """The upsampled image, noised to the refiner's first timestep with a fresh draw of the same kind of noise
        (grey-mean: its colour must not come from the noise either), denoised at 64 px."""
        timesteps = set_tail_timesteps(self.refiner_scheduler, self.config.refiner_strength, steps,
                                       self.config.refiner_spacing, x.device)
        upsampled = to_output_size(x.clamp(-1, 1).float()).to(x.dtype)
        noise = draw_initial_noise(upsampled.shape, call.generator, noise_kind).to(x.device, x.dtype)
        x = self.refiner_scheduler.add_noise(upsampled, noise, timesteps[:1].repeat(len(x)))
        return self.denoise(self.refiner, self.refiner_scheduler, x, timesteps, self.config.refiner_guidance_scale,
                            call, first_step)

    @torch.no_grad()
    def refine(self, images: torch.Tensor, conditions, num_inference_steps: int = 20,
               generator: torch.Generator | None = None, max_batch_size: int = 64) -> torch.Tensor:
        """The refiner alone on given images, (B, 3, H, W) in [0, 1] at any size, with the steps a call of
        ``num_inference_steps`` gives it: (B, 3, 64, 64) in [0, 1]. For images another model drew, or real images
        sent through 32 px, which measure the refiner apart from any first stage (docs/64px.md)."""
        condition = conditions_tensor(conditions).to(self.unet.device, self.unet.dtype)
        if images.ndim != 4 or images.shape[:2] != (len(condition), 3):
            raise ValueError(f"images must be ({len(condition)}, 3, H, W), one per condition, "
                             f"got {tuple(images.shape)}")
        call = CallSettings(condition, max_batch_size, generator or torch.Generator())
        x = images.to(self.unet.device, self.unet.dtype) * 2 - 1
        x = self.redraw_at_64(call, x, self.refiner_steps(num_inference_steps), self.initial_noise)
        return ((x.clamp(-1, 1).float() + 1) / 2).cpu()

    def with_sampler(self, sampler: str, noise: str | None = None) -> "RefinedPipeline":
        """Both stages with another named sampler; the refiner's steps over Karras-spaced timesteps with any of
        them (``samplers.make_sampler(any_timesteps=True)``)."""
        noise = noise or self.initial_noise
        return self.replaced(scheduler=make_sampler(sampler, self.scheduler.config, noise=noise),
                             refiner_scheduler=make_sampler(sampler, self.refiner_scheduler.config, noise=noise,
                                                            any_timesteps=self.config.refiner_spacing == "karras"))

    def first_stage(self) -> Lab6Pipeline:
        """The first stage alone, as a pipeline of its own."""
        pipe = Lab6Pipeline(self.unet, self.scheduler, self.guidance_scale, self.initial_noise)
        pipe.metadata, pipe.path = self.metadata, self.path
        return pipe


def with_refiner(base: Lab6Pipeline, refiner: Lab6Pipeline, strength: float, guidance_scale: float = 1.0,
                 spacing: str = "karras", step_ratio: float | None = None) -> RefinedPipeline:
    """``base`` (any model) followed by ``refiner`` (a 64-px model, ideally trained with ``max_timestep``) over
    the last ``strength`` of the refiner's schedule, as one pipeline, in ``step_ratio`` x the first stage's
    steps (default: ``strength`` x as many). The refiner's ``lab6.json`` records the noise levels it was
    trained on; a strength that reaches past them is refused."""
    size = refiner.unet.config.sample_size
    if size != EVAL_SIZE:
        raise ValueError(f"a refiner draws {EVAL_SIZE}x{EVAL_SIZE} images; this one draws {size}x{size}")
    T = refiner.scheduler.config.num_train_timesteps
    trained_below = refiner.metadata.get("recipe", {}).get("max_timestep") or T
    if not 0 < strength <= 1 or round(strength * T) > trained_below:
        raise ValueError(f"refiner strength must be in (0, {trained_below / T:g}]"
                         f" (the refiner was trained on t < {trained_below}), got {strength}")
    if isinstance(base, RefinedPipeline):
        base = base.first_stage()
    pipe = RefinedPipeline(base.unet, base.scheduler, refiner.unet, refiner.scheduler, base.guidance_scale,
                           base.initial_noise, strength, guidance_scale, spacing, step_ratio)
    pipe.metadata = {**base.metadata, "refiner": refiner.metadata}
    pipe.set_progress_bar_config(**getattr(base, "_progress_bar_config", {}))
    return pipe


def refiner_of(pair: RefinedPipeline) -> Lab6Pipeline:
    """A pair's refiner as a pipeline of its own, with its training record: ``with_refiner(pair, refiner_of(pair),
    0.1)`` is the same pair at another strength (checked against the noise levels the refiner was trained on)."""
    if not isinstance(pair, RefinedPipeline):
        raise ValueError("this pipeline has no refiner: pair one with lab6.refiner.with_refiner or `lab6 pair`")
    refiner = Lab6Pipeline(pair.refiner, pair.refiner_scheduler, 1.0, pair.initial_noise)
    refiner.metadata = pair.metadata.get("refiner", {})
    return refiner


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
