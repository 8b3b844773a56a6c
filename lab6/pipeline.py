"""``Lab6Pipeline``: a diffusers ``DiffusionPipeline`` that draws i-CLEVR scenes for label conditions.

Read ``__call__`` top to bottom, as diffusers' ``pipeline_ddpm.py``: check the inputs, set the timesteps, draw the
starting noise, run the denoising loop with classifier-free guidance, post-process. Samplers are swapped the
diffusers way (``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``, or ``pipe.with_sampler``):
the loop works with any scheduler that implements ``set_timesteps``, ``scale_model_input`` and ``step`` and
states ``init_noise_sigma`` (docs/samplers.md#any-diffusers-scheduler). A two-stage model is the same pipeline
plus one step, in ``lab6.refiner``; folders are read and written by ``lab6.loading``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput

from .diffusion import DEFAULT_GUIDANCE, DEFAULT_NOISE, INITIAL_NOISE, predicted_x0, prediction_of
from .diffusion import initial_noise as draw_initial_noise
from .evaluator import to_output_size
from .labels import conditions_tensor
from .model import ConditionalUNet
from .samplers import DEFAULT_SAMPLER, make_sampler

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def guided_output(model, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + w * (cond - uncond)``, the two in one batch (w = 1: one call).

    ``w = 1`` is the plain conditional model, ``w = 0`` the unconditional one (the all-zero condition, which
    training shows the model 10% of the time), ``w > 1`` trades variety for fidelity to the labels."""
    t = t.expand(len(x))  # one timestep for all (sampling) or one per image (distillation)
    if guidance == 1:
        return model(x, t, condition)
    both = model(torch.cat([x, x]), t.repeat(2), torch.cat([condition, torch.zeros_like(condition)]))
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def distilled_steps(record: dict) -> int | None:
    """The DDIM steps a model's training record (``lab6.json``) says it was progressively distilled to draw in
    (``lab6.progressive``), None for any other model."""
    distilled = record.get("distilled") or {}
    return int(distilled["steps"]) if distilled.get("kind") == "progressive" else None


@dataclass
class CallSettings:
    """What one call hands to the denoising loop of each of its stages."""

    condition: torch.Tensor  # (B, 24) multi-hot, on the network's device
    max_batch_size: int
    generator: torch.Generator
    callback: Callable | None = None
    callback_tensors: Sequence[str] = ()


class Lab6Pipeline(DiffusionPipeline):
    """Conditions in, 64x64 scenes out: classifier-free guided sampling with any diffusers scheduler.

    Args:
        unet: the denoiser (``lab6.model.ConditionalUNet``).
        scheduler: the sampler (``lab6.samplers.make_sampler``).
        guidance_scale: the w a call uses unless told.
        initial_noise: the kind of starting noise a call uses unless told (docs/colour-casts.md#grey-mean-noise).
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "noisy_sample", "pred_original_sample"]

    def __init__(self, unet: ConditionalUNet, scheduler, guidance_scale: float = DEFAULT_GUIDANCE,
                 initial_noise: str = DEFAULT_NOISE):
        super().__init__()
        if initial_noise not in INITIAL_NOISE:
            raise ValueError(f"initial_noise must be one of {', '.join(INITIAL_NOISE)}, got {initial_noise!r}")
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(guidance_scale=guidance_scale, initial_noise=initial_noise)
        self.metadata: dict = {}  # lab6.json: the training record (set by lab6.loading.load_pipeline)
        self.path = None  # the folder it was loaded from

    @property
    def default_steps(self) -> int:
        """The steps a call takes unless told: a progressively distilled model's own few, else 20."""
        return distilled_steps(self.metadata) or 20

    def check_inputs(self, num_inference_steps: int, guidance_scale: float, output_type: str,
                     callback_on_step_end_tensor_inputs: Sequence[str], max_batch_size: int) -> None:
        """Refuse, by name, a call's settings that would fail late or draw garbage silently."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 (images per network call), got {max_batch_size}")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback tensors {sorted(unknown)} unknown; choose from {self._callback_tensor_inputs}")
        # NaN would reach every pixel silently (a NaN image, then black PNGs); a negative scale pushes the images
        # away from their labels, which no one asks for on purpose.
        if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")

    @torch.no_grad()
    def __call__(self, conditions, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, initial_noise: str | None = None, output_type: str = "pil",
                 return_dict: bool = True, max_batch_size: int = 64,
                 callback_on_step_end: Callable[["Lab6Pipeline", int, torch.Tensor, dict], dict] | None = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",)):
        """Draw one 64x64 image per condition.

        Args:
            conditions: label lists (``[["red cube", "blue sphere"], ...]``) or a (B, 24) multi-hot tensor.
            num_inference_steps: the sampler's steps (default: ``default_steps``, the model's own).
            guidance_scale: w: 0 unconditional, 1 conditional, > 1 sharper conditions (default: the model's).
            generator: the same generator state gives the same images.
            initial_noise: this call's kind of starting noise (default: the model's, ``diffusion.INITIAL_NOISE``).
                DDPM's fresh noise at each step is its scheduler's (``with_sampler("ddpm", noise)``).
            output_type: ``"pil"`` (a list of images), ``"np"`` ((B, H, W, 3) in [0, 1]), ``"pt"``
                ((B, 3, H, W) in [0, 1]) or ``"latent"`` (x_0 as the loop left it: at the model's size, in [-1, 1]
                before clamping, for a next stage).
            return_dict: an ``ImagePipelineOutput`` (True) or a one-element tuple.
            max_batch_size: at most this many images per network call (the guided pair makes it twice as many
                rows); it bounds memory, and the images stay the same to float rounding.
            callback_on_step_end: ``f(pipe, i, t, tensors)`` after every step, with the tensors named in
                ``callback_on_step_end_tensor_inputs``: ``latents`` (x after the step), ``noisy_sample`` (the x_t
                the model saw) and ``pred_original_sample`` (its predicted x_0); returning ``{"latents": x}``
                replaces x.

        Returns:
            ``ImagePipelineOutput`` with ``images`` in ``output_type``, 64x64 but for ``"latent"``.
        """
        # 0. Check the inputs
        w = self.config.guidance_scale if guidance_scale is None else guidance_scale
        num_inference_steps = self.default_steps if num_inference_steps is None else num_inference_steps
        self.check_inputs(num_inference_steps, w, output_type, callback_on_step_end_tensor_inputs, max_batch_size)
        unet, device, dtype = self.unet, self.unet.device, self.unet.dtype
        call = CallSettings(conditions_tensor(conditions).to(device, dtype), max_batch_size,
                            generator or torch.Generator(), callback_on_step_end, callback_on_step_end_tensor_inputs)

        # 1. The timesteps, from the noisiest down
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 2. The starting noise x_T, drawn for the whole batch first so that a chunked run matches an unchunked one;
        #    init_noise_sigma is 1 for DDPM, DDIM and DPM-Solver++, sigma_max for Euler's and Heun's x_T
        size = unet.config.sample_size
        x = draw_initial_noise((len(call.condition), unet.config.in_channels, size, size), call.generator,
                               initial_noise or self.config.initial_noise)
        x = x.to(device, dtype) * self.scheduler.init_noise_sigma

        # 3. The denoising loop: x_T -> x_0
        x = self.denoise(unet, self.scheduler, x, self.scheduler.timesteps, w, call)

        # 4. Post-process: [-1, 1] -> [0, 1] at 64x64, in the asked type
        return self.postprocess(x, output_type, return_dict)

    def denoise(self, unet, scheduler, x: torch.Tensor, timesteps, guidance: float, call: CallSettings,
                first_step: int = 0) -> torch.Tensor:
        """The denoising loop of one stage: at each timestep the guided model output, then one scheduler step.

        ``x`` is x_t at the first of ``timesteps`` (the scheduler's ``set_timesteps`` already called);
        ``first_step`` numbers the steps for the callback. Returns x after the last step.
        """
        prediction = prediction_of(scheduler.config, type(self).__name__)
        alphas_cumprod = scheduler.alphas_cumprod.to(x.device)
        # Schedulers that draw noise in their step (DDPM, the ancestral ones) take the call's generator; the
        # deterministic ones (UniPC, DEIS, Heun) have no such argument.
        takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        step_kwargs = {"generator": call.generator} if takes_generator else {}
        for i, t in enumerate(self.progress_bar(timesteps), start=first_step):
            model_input = scheduler.scale_model_input(x, t)  # Euler's and Heun's x_t (1 + sigma^2)^(1/2) back to x_t
            chunks = zip(model_input.split(call.max_batch_size), call.condition.split(call.max_batch_size))
            output = torch.cat([guided_output(unet, xs, t, cs, guidance) for xs, cs in chunks])
            x0 = None
            if call.callback is not None and "pred_original_sample" in call.callback_tensors:
                alpha_cumprod = alphas_cumprod[round(float(t))]  # Euler's and Heun's t are floats
                x0 = predicted_x0(model_input, output, alpha_cumprod, prediction).clamp(-1, 1)
            noisy, x = x, scheduler.step(output, t, x, **step_kwargs).prev_sample
            if call.callback is not None:
                tensors = {"latents": x, "noisy_sample": noisy, "pred_original_sample": x0}
                returned = call.callback(self, i, t, {k: tensors[k] for k in call.callback_tensors})
                x = (returned or {}).get("latents", x)
        return x

    def postprocess(self, x: torch.Tensor, output_type: str, return_dict: bool = True):
        """x_0 in [-1, 1] -> images in [0, 1] at 64x64, as ``output_type`` asks (``"latent"``: x itself)."""
        if output_type == "latent":
            result = x
        else:
            images = (to_output_size(x.clamp(-1, 1).float()) + 1) / 2
            result = images.cpu() if output_type == "pt" else images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                result = self.numpy_to_pil(result)
        return ImagePipelineOutput(images=result) if return_dict else (result,)

    # Shorthands for lab6's own code: the shipped sampling settings.
    @property
    def guidance_scale(self) -> float:
        return float(self.config.guidance_scale)

    @property
    def initial_noise(self) -> str:
        return self.config.initial_noise

    def with_sampler(self, sampler: str, noise: str | None = None) -> "Lab6Pipeline":
        """The same weights with another of lab6's named samplers (``lab6.samplers.SAMPLERS``) as its scheduler.
        ``noise``: the kind DDPM draws at every step (default: the model's starting noise)."""
        return self.replaced(scheduler=make_sampler(sampler, self.scheduler.config, noise=noise or self.initial_noise))

    def replaced(self, **changes) -> "Lab6Pipeline":
        """A pipeline of the same class on the same modules and settings, with ``changes`` (modules or settings)
        replaced; the training record, folder and progress-bar settings are carried over."""
        settings = {name: self.config[name] for name in inspect.signature(type(self).__init__).parameters
                    if name not in self.components and name in self.config}
        pipe = type(self)(**{**self.components, **settings, **changes})
        pipe.metadata, pipe.path = self.metadata, self.path
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe


def build_pipeline(unet: ConditionalUNet, noise_scheduler_config, guidance_scale: float = DEFAULT_GUIDANCE,
                   noise: str = DEFAULT_NOISE) -> Lab6Pipeline:
    """A pipeline around freshly trained weights: the default sampler on the training schedule."""
    return Lab6Pipeline(unet, make_sampler(DEFAULT_SAMPLER, noise_scheduler_config), guidance_scale, noise)
