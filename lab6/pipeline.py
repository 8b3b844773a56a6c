"""``Lab6Pipeline``: a diffusers ``DiffusionPipeline`` that draws i-CLEVR scenes for label conditions.

A model folder is the diffusers layout (``model_index.json``, ``unet/``, ``scheduler/``, and for a pair
``refiner/``, ``refiner_scheduler/``) plus ``lab6.json`` (the training record) and, when shipped, ``README.md``
(the model card); ``Lab6Pipeline.from_pretrained`` / ``save_pretrained`` round-trip it. Samplers are swapped the
diffusers way (``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)``): the loop
in ``Lab6Pipeline.denoise`` works with any scheduler that implements ``set_timesteps``, ``scale_model_input`` and
``step`` and states ``init_noise_sigma`` (docs/samplers.md#any-diffusers-scheduler).
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput

from .config import DEFAULT_GUIDANCE
from .diffusion import (
    DEFAULT_NOISE,
    INITIAL_NOISE,
    REFINER_SPACINGS,
    check_guidance_interval,
    evaluator_steered_x0,
    guidance_at,
    guided_output,
    make_sampler,
    predicted_x0,
    prediction_of,
    set_tail_timesteps,
    x0_to_model_output,
)
from .diffusion import initial_noise as draw_initial_noise
from .labels import ConditionError, decode, encode_many, validate_condition
from .model import ConditionalUNet
from .run_files import METADATA_FILE, atomic_path, resolve_model_dir

OUTPUT_SIZE = 64


#: What asking a pipeline without a refiner for its refiner says.
NO_REFINER = "this pipeline has no refiner: pair one with lab6.pipeline.with_refiner or `lab6 pair`"


class ModelLoadError(RuntimeError):
    """A model folder that exists but cannot be loaded (truncated weights, a broken config)."""


def conditions_tensor(conditions) -> torch.Tensor:
    """Label lists (the test.json form) or a (B, 24) multi-hot tensor -> (B, 24) float, validated."""
    if isinstance(conditions, torch.Tensor):
        if conditions.ndim != 2 or conditions.shape[1] != 24:
            raise ConditionError(f"a condition tensor is (B, 24) multi-hot, got shape {tuple(conditions.shape)}")
        if not torch.all((conditions == 0) | (conditions == 1)):
            raise ConditionError("a condition tensor must hold only 0 and 1 (multi-hot)")
        for row in conditions:
            validate_condition(decode(row))
        multi_hot = conditions.float()
    else:
        if isinstance(conditions, (str, bytes)) or not isinstance(conditions, (list, tuple)):
            raise ConditionError(f"conditions must be a list of label lists, like [['red cube']], got {conditions!r}")
        multi_hot = torch.from_numpy(encode_many(conditions))
    if len(multi_hot) == 0:
        raise ConditionError("no conditions to draw: give at least one, like [['red cube', 'blue sphere']]")
    return multi_hot


class Lab6Pipeline(DiffusionPipeline):
    """Conditions in, 64x64 scenes out: classifier-free guided sampling with any diffusers scheduler.

    With a ``refiner`` it is a two-stage cascade, as SDXL's base and refiner: the ``unet`` draws the whole scene
    (at 32 px for the shipped model), then the refiner, a 64-px model trained on low noise levels only, noises the
    upsampled image back to the last ``refiner_strength`` of its schedule and denoises it again: the layout and
    colours are the first stage's, edges, shadows and texture the refiner's (docs/64px.md#the-shipped-pair).

    Args:
        unet, scheduler: the first stage.
        guidance_scale: the w a call uses unless told.
        initial_noise: the kind of starting noise a call uses unless told (docs/colour-casts.md#grey-mean-noise).
        refiner, refiner_scheduler, refiner_strength: the second stage and how far back it noises.
        refiner_guidance_scale: the refiner's w; 1 (unguided) by default, as guidance at low noise levels only
            pulls images away from real ones (docs/guidance.md#refiner-guidance).
        refiner_spacing: ``"karras"`` (dense near t = 0, where the texture is drawn: docs/64px.md#karras-steps)
            or ``"uniform"`` (the last steps of a uniform schedule: what a folder saved without the key used).
        refiner_step_ratio: the refiner's steps per first-stage step (at least one); None: its strength, as
            diffusers' img2img counts them.
        guidance_interval: (low, high): guide only where the noise-to-signal ratio lies in (low, high], the
            conditional model alone elsewhere (docs/guidance.md#guidance-interval); None: every step.
    """

    model_cpu_offload_seq = "unet->refiner"
    _optional_components = ["refiner", "refiner_scheduler"]
    _callback_tensor_inputs = ["latents", "noisy_sample", "pred_original_sample"]

    def __init__(self, unet: ConditionalUNet, scheduler, guidance_scale: float = DEFAULT_GUIDANCE,
                 initial_noise: str = DEFAULT_NOISE,
                 refiner: ConditionalUNet | None = None, refiner_scheduler=None, refiner_strength: float = 0.0,
                 refiner_guidance_scale: float = 1.0, refiner_spacing: str = "uniform",
                 refiner_step_ratio: float | None = None, guidance_interval: Sequence[float] | None = None):
        super().__init__()
        if initial_noise not in INITIAL_NOISE:
            raise ValueError(f"initial_noise must be one of {', '.join(INITIAL_NOISE)}, got {initial_noise!r}")
        if (refiner is None) != (refiner_scheduler is None) or (refiner is not None and not 0 < refiner_strength <= 1):
            raise ValueError("a refiner needs its scheduler and a refiner_strength in (0, 1], got "
                             f"refiner={type(refiner).__name__}, refiner_scheduler={type(refiner_scheduler).__name__}"
                             f", refiner_strength={refiner_strength}")
        if refiner_spacing not in REFINER_SPACINGS:
            raise ValueError(f"refiner_spacing must be one of {', '.join(REFINER_SPACINGS)}, got {refiner_spacing!r}")
        if refiner_step_ratio is not None and not 0 < refiner_step_ratio <= 1:
            raise ValueError(f"refiner_step_ratio must be in (0, 1] (the refiner's steps per first-stage step) or "
                             f"None (its strength), got {refiner_step_ratio}")
        if guidance_interval is not None:
            guidance_interval = check_guidance_interval(guidance_interval)
        self.register_modules(unet=unet, scheduler=scheduler, refiner=refiner, refiner_scheduler=refiner_scheduler)
        self.register_to_config(guidance_scale=guidance_scale, initial_noise=initial_noise,
                                refiner_strength=refiner_strength if refiner is not None else 0.0,
                                refiner_guidance_scale=refiner_guidance_scale, refiner_spacing=refiner_spacing,
                                refiner_step_ratio=refiner_step_ratio, guidance_interval=guidance_interval)
        self.metadata: dict = {}  # lab6.json: the training record (set by load_pipeline)
        self.path: Path | None = None  # the folder it was loaded from

    def stage_steps(self, num_inference_steps: int, refine: bool = True) -> tuple[int, int]:
        """(first stage's steps, refiner's steps): the refiner takes ``refiner_step_ratio`` (unset: its strength)
        of as many, at least one."""
        if not (refine and self.refiner is not None):
            return num_inference_steps, 0
        ratio = self.config.refiner_step_ratio or self.config.refiner_strength
        return num_inference_steps, max(1, round(num_inference_steps * ratio))

    def check_inputs(self, num_inference_steps: int, guidance_scale: float, output_type: str, evaluator,
                     evaluator_guidance_scale: float, callback_on_step_end_tensor_inputs: Sequence[str],
                     max_batch_size: int) -> None:
        """Refuse, by name, a call's settings that would fail late or draw garbage silently."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 (images per network call), got {max_batch_size}")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback tensors {sorted(unknown)} unknown; choose from {self._callback_tensor_inputs}")
        for name, value in (("guidance_scale", guidance_scale),
                            ("evaluator_guidance_scale", evaluator_guidance_scale)):
            # NaN would reach every pixel silently (a NaN image, then black PNGs); a negative scale pushes the
            # images away from their labels, which no one asks for on purpose.
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if evaluator_guidance_scale and evaluator is None:
            raise ValueError("evaluator_guidance_scale needs an evaluator (a classifier returning probabilities)")

    @torch.no_grad()
    def __call__(self, conditions, num_inference_steps: int = 20, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, initial_noise: str | None = None, output_type: str = "pil",
                 return_dict: bool = True, max_batch_size: int = 64, evaluator=None,
                 evaluator_guidance_scale: float = 0.0,
                 callback_on_step_end: Callable[["Lab6Pipeline", int, torch.Tensor, dict], dict] | None = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), refine: bool = True):
        """Draw one 64x64 image per condition.

        Args:
            conditions: label lists (``[["red cube", "blue sphere"], ...]``) or a (B, 24) multi-hot tensor.
            num_inference_steps: the first stage's steps; the refiner's follow from them (``stage_steps``).
            guidance_scale: w: 0 unconditional, 1 conditional, > 1 sharper conditions (default: the model's).
            generator: the same generator state gives the same images.
            initial_noise: this call's kind of starting noise (default: the model's, ``lab6.diffusion.INITIAL_NOISE``).
                DDPM's fresh noise at each step is its scheduler's (``with_sampler("ddpm", noise)``).
            output_type: ``"pil"`` (a list of images), ``"np"`` ((B, H, W, 3) in [0, 1]) or ``"pt"``
                ((B, 3, H, W) in [0, 1]).
            return_dict: an ``ImagePipelineOutput`` (True) or a one-element tuple.
            max_batch_size: at most this many images per network call (the guided pair makes it twice as many
                rows); it bounds memory, and the images stay the same to float rounding.
            evaluator, evaluator_guidance_scale: a classifier whose gradient steers each step's predicted x_0
                towards the labels (``lab6.diffusion.evaluator_steered_x0``); 0 leaves it out.
            callback_on_step_end: ``f(pipe, i, t, tensors)`` after every step of both stages (the refiner's steps
                are numbered on from the first stage's), with the tensors named in
                ``callback_on_step_end_tensor_inputs``: ``latents`` (x after the step), ``noisy_sample`` (the x_t
                the model saw) and ``pred_original_sample`` (its predicted x_0); returning ``{"latents": x}``
                replaces x.
            refine: False: the first stage's image alone, upsampled (a model without a refiner always draws so).

        Returns:
            ``ImagePipelineOutput`` with ``images`` in ``output_type``, always 64x64.
        """
        # 0. Check the inputs
        w = self.config.guidance_scale if guidance_scale is None else guidance_scale
        self.check_inputs(num_inference_steps, w, output_type, evaluator, evaluator_guidance_scale,
                          callback_on_step_end_tensor_inputs, max_batch_size)
        unet, device, dtype = self.unet, self.unet.device, self.unet.dtype
        call = _CallSettings(conditions_tensor(conditions).to(device, dtype), max_batch_size,
                             generator or torch.Generator(), evaluator, evaluator_guidance_scale, callback_on_step_end,
                             callback_on_step_end_tensor_inputs)
        noise_kind = initial_noise or self.config.initial_noise

        # 1. The timesteps, from the noisiest down
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 2. The starting noise x_T, drawn for the whole batch first so that a chunked run matches an unchunked one;
        #    init_noise_sigma is 1 for DDPM, DDIM and DPM-Solver++, sigma_max for Euler's and Heun's x_T
        size = unet.config.sample_size
        x = draw_initial_noise((len(call.condition), unet.config.in_channels, size, size), call.generator, noise_kind)
        x = x.to(device, dtype) * self.scheduler.init_noise_sigma

        # 3. The denoising loop of the first stage: x_T -> x_0
        x = self.denoise(unet, self.scheduler, x, self.scheduler.timesteps, w, call,
                         interval=self.config.guidance_interval)

        # 4. The refiner: the upsampled image noised back to its first timestep and denoised again at 64 px
        _, refiner_steps = self.stage_steps(num_inference_steps, refine)
        if refiner_steps:
            x = self._redraw_at_64(call, x, refiner_steps, noise_kind, first_step=num_inference_steps)

        # 5. Post-process: [-1, 1] -> [0, 1] at 64x64, in the asked type
        images = (to_output_size(x.clamp(-1, 1).float()) + 1) / 2
        if output_type == "pt":
            result = images.cpu()
        else:
            result = images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                result = self.numpy_to_pil(result)
        return ImagePipelineOutput(images=result) if return_dict else (result,)

    def denoise(self, unet, scheduler, x: torch.Tensor, timesteps, guidance: float, call: "_CallSettings",
                first_step: int = 0, interval: tuple[float, float] | None = None) -> torch.Tensor:
        """The denoising loop of one stage: at each timestep the guided model output, then one scheduler step.

        ``x`` is x_t at the first of ``timesteps`` (the scheduler's ``set_timesteps`` already called); the
        guidance is ``guidance`` inside ``interval`` (every step when None) and 1 outside (``guidance_at``);
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
            alpha_cumprod = alphas_cumprod[round(float(t))]  # Euler's and Heun's t are floats
            w = guidance_at(alpha_cumprod, guidance, interval)
            chunks = zip(model_input.split(call.max_batch_size), call.condition.split(call.max_batch_size))
            output = torch.cat([guided_output(unet, xs, t, cs, w) for xs, cs in chunks])
            x0 = None
            if call.evaluator_guidance_scale:
                x0 = evaluator_steered_x0(predicted_x0(model_input, output, alpha_cumprod, prediction),
                                          call.condition, call.evaluator, call.evaluator_guidance_scale)
                output = x0_to_model_output(model_input, x0, alpha_cumprod, prediction)
            if call.callback is not None and "pred_original_sample" in call.callback_tensors:
                x0 = predicted_x0(model_input, output, alpha_cumprod, prediction).clamp(-1, 1)
            noisy, x = x, scheduler.step(output, t, x, **step_kwargs).prev_sample
            if call.callback is not None:
                tensors = {"latents": x, "noisy_sample": noisy, "pred_original_sample": x0}
                returned = call.callback(self, i, t, {k: tensors[k] for k in call.callback_tensors})
                x = (returned or {}).get("latents", x)
        return x

    def _redraw_at_64(self, call: "_CallSettings", x: torch.Tensor, steps: int, noise_kind: str, first_step: int):
        """Stage 2: the upsampled image, noised to the refiner's first timestep with a fresh draw of the same kind
        of noise (grey-mean: its colour must not come from the noise either), denoised at 64 px."""
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
        """The refiner alone on given images, (B, 3, H, W) in [0, 1] at any size (upsampled to 64 px as the first
        stage's are), with the steps a call of ``num_inference_steps`` gives it: (B, 3, 64, 64) in [0, 1]. For
        images another model drew, or real images sent through 32 px, which measure the refiner apart from any
        first stage (``bench/bench_fidelity.py --refiner-alone``)."""
        if self.refiner is None:
            raise ValueError(NO_REFINER)
        condition = conditions_tensor(conditions).to(self.unet.device, self.unet.dtype)
        if images.ndim != 4 or images.shape[:2] != (len(condition), 3):
            raise ValueError(f"images must be ({len(condition)}, 3, H, W), one per condition, "
                             f"got {tuple(images.shape)}")
        call = _CallSettings(condition, max_batch_size, generator or torch.Generator(), None, 0.0, None, ())
        x = images.to(self.unet.device, self.unet.dtype) * 2 - 1
        x = self._redraw_at_64(call, x, self.stage_steps(num_inference_steps)[1], self.config.initial_noise, 0)
        return ((x.clamp(-1, 1).float() + 1) / 2).cpu()

    # Shorthands for lab6's own code: the shipped sampling settings and the training record.
    @property
    def guidance(self) -> float:
        return float(self.config.guidance_scale)

    @property
    def initial_noise(self) -> str:
        return self.config.initial_noise

    def with_sampler(self, sampler: str, noise: str | None = None) -> "Lab6Pipeline":
        """The same weights with another of lab6's named samplers (ddpm, ddim, dpmsolver) as its scheduler
        (and the refiner's, which steps over Karras-spaced timesteps with any of them: ``make_sampler``).
        ``noise``: the kind DDPM draws at every step (default: the model's starting noise)."""
        noise = noise or self.initial_noise
        refiner_scheduler = self.refiner_scheduler and make_sampler(
            sampler, self.refiner_scheduler.config, noise=noise, any_timesteps=self.config.refiner_spacing == "karras")
        return self._replaced(scheduler=make_sampler(sampler, self.scheduler.config, noise=noise),
                              refiner_scheduler=refiner_scheduler)

    def with_guidance_interval(self, interval: Sequence[float] | None) -> "Lab6Pipeline":
        """The same model guiding only inside ``interval`` (low, high] of noise-to-signal ratios (None: at every
        step), e.g. ``(0, 1e9)`` for every step of a model shipped with an interval."""
        return self._replaced(guidance_interval=interval)

    def _replaced(self, **changes) -> "Lab6Pipeline":
        """A pipeline on the same modules with some of its modules or settings replaced (every other argument of
        ``__init__`` is read back from this one, so a setting added there is carried over too)."""
        modules = {"unet": self.unet, "scheduler": self.scheduler, "refiner": self.refiner,
                   "refiner_scheduler": self.refiner_scheduler}
        settings = {name: self.config[name] for name in inspect.signature(Lab6Pipeline.__init__).parameters
                    if name not in modules and name in self.config}
        pipe = Lab6Pipeline(**{**modules, **settings, **changes})
        pipe.metadata, pipe.path = self.metadata, self.path
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe


def with_refiner(base: Lab6Pipeline, refiner: Lab6Pipeline, strength: float, guidance: float = 1.0,
                 spacing: str = "karras", step_ratio: float | None = None) -> Lab6Pipeline:
    """``base`` (any model) followed by ``refiner`` (a 64-px model, ideally trained with ``max_timestep``) over
    the last ``strength`` of the refiner's schedule, as one pipeline, in ``step_ratio`` x the first stage's
    steps (default: ``strength`` x as many). The refiner's ``lab6.json`` records the noise levels it was
    trained on; a strength that reaches past them is refused."""
    size = refiner.unet.config.sample_size
    if size != OUTPUT_SIZE:
        raise ValueError(f"a refiner draws {OUTPUT_SIZE}x{OUTPUT_SIZE} images; this one draws {size}x{size}")
    T = refiner.scheduler.config.num_train_timesteps
    trained_below = refiner.metadata.get("recipe", {}).get("max_timestep") or T
    if not 0 < strength <= 1 or round(strength * T) > trained_below:
        raise ValueError(f"refiner strength must be in (0, {trained_below / T:g}]"
                         f" (the refiner was trained on t < {trained_below}), got {strength}")
    pipe = Lab6Pipeline(base.unet, base.scheduler, base.guidance, base.initial_noise, refiner.unet, refiner.scheduler,
                        strength, guidance, spacing, step_ratio, base.config.guidance_interval)
    pipe.metadata = {**base.metadata, "refiner": refiner.metadata}
    pipe.set_progress_bar_config(**getattr(base, "_progress_bar_config", {}))
    return pipe


def refiner_of(pair: Lab6Pipeline) -> Lab6Pipeline:
    """A pair's refiner as a pipeline of its own, with its training record: ``with_refiner(pair, refiner_of(pair),
    0.1)`` is the same pair at another strength (checked against the noise levels the refiner was trained on)."""
    if pair.refiner is None:
        raise ValueError(NO_REFINER)
    refiner = Lab6Pipeline(pair.refiner, pair.refiner_scheduler, 1.0, pair.initial_noise)
    refiner.metadata = pair.metadata.get("refiner", {})
    return refiner


@dataclass
class _CallSettings:
    """What one call hands to the denoising loop of each of its stages."""

    condition: torch.Tensor  # (B, 24) multi-hot, on the network's device
    max_batch_size: int
    generator: torch.Generator
    evaluator: object
    evaluator_guidance_scale: float
    callback: Callable | None
    callback_tensors: Sequence[str]


def to_output_size(images: torch.Tensor, size: int = OUTPUT_SIZE) -> torch.Tensor:
    """Images in [-1, 1] at the lab's 64x64 (a 32-px model's are upsampled the way the evaluator was trained)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def build_pipeline(unet: ConditionalUNet, noise_scheduler_config, *, guidance: float = DEFAULT_GUIDANCE,
                   noise: str = DEFAULT_NOISE) -> Lab6Pipeline:
    """A pipeline around freshly trained weights: DPM-Solver++ on the training schedule."""
    return Lab6Pipeline(unet, make_sampler("dpmsolver", noise_scheduler_config), guidance, noise)


def save_pipeline(pipe: Lab6Pipeline, path: str | Path, metadata: dict) -> Path:
    """Write a model folder whole or not at all (into a temporary sibling, then renamed over ``path``)."""
    with atomic_path(path) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return Path(path)


def _flat_folder_pipeline(directory: Path, metadata: dict) -> Lab6Pipeline:
    """A model folder of the layout before the pipeline (config.json, scheduler_config.json side by side)."""
    unet = ConditionalUNet.from_pretrained(directory)
    guidance = float(metadata.get("guidance", DEFAULT_GUIDANCE))
    return build_pipeline(unet, DDPMScheduler.load_config(directory), guidance=guidance,
                          noise=metadata.get("noise", DEFAULT_NOISE))


def _quietly(load, *args):
    """Run a diffusers loader without its "Loading pipeline components" bar (a command prints its own progress)."""
    from diffusers.utils import logging as diffusers_logging

    was_enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        return load(*args)
    finally:
        if was_enabled:
            diffusers_logging.enable_progress_bar()


def load_pipeline(path: str | Path | None = None, device: str | torch.device = "cpu") -> Lab6Pipeline:
    """A model folder (or a training run: its final model, else its newest checkpoint) as a pipeline;
    without ``path``, the model shipped in ``lab6/assets/model``."""
    directory = resolve_model_dir(path)
    metadata_file = directory / METADATA_FILE
    try:
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
        if (directory / "model_index.json").is_file():
            pipe = _quietly(Lab6Pipeline.from_pretrained, directory)
        else:
            pipe = _flat_folder_pipeline(directory, metadata)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ModelLoadError(f"could not load the model in {directory} (truncated or incomplete files?): "
                             f"{str(err).splitlines()[0][:300]}") from None
    pipe.metadata, pipe.path = metadata, directory
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.eval()
    for network in (pipe.unet, pipe.refiner):
        if network is not None:
            # With their weights channels-last (NHWC), oneDNN's convolutions skip their layout reorders: 32 images
            # at 20 steps 1.22-1.32x faster on 2 cores, the same to float rounding (bench_sampling --memory-format).
            network.to(memory_format=torch.channels_last)
    return pipe.to(device)
