"""lab6's way to draw: ``generate`` (a pipeline call with a named sampler and a seed, recorded as ``Sampling``),
and the sampling studies behind the figures, without plotting: a split's images and scores, the denoising run,
samplers side by side, guidance and step sweeps, and the failed images.

Each returns plain data (tensors, lists, dataclasses) that the notebooks can look at and that
``lab6.figures`` draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .config import DEFAULT_GUIDANCE
from .data import load_split
from .diffusion import DEFAULT_NOISE, DEFAULT_STEPS, SAMPLER_NAMES
from .evaluator import score_all
from .labels import DENOISING_FIGURE_CONDITION, LABELS
from .pipeline import Lab6Pipeline, to_output_size


@dataclass(frozen=True)
class Sampling:
    """How a batch of images was drawn: the one record every result carries (a sample, a split's run, a
    sampler comparison, a sweep, the picker's image), so a figure or table can always say how."""

    sampler: str = "dpmsolver"  # one of lab6's named schedulers: ddpm, ddim, dpmsolver
    steps: int = 20  # scheduler steps
    guidance: float = DEFAULT_GUIDANCE  # classifier-free guidance scale w
    noise: str = DEFAULT_NOISE  # the starting noise, and DDPM's at every step (diffusion.INITIAL_NOISE)
    seed: int = 0  # the generator's seed: the same settings and seed draw the same images
    evaluator_guidance: float = 0.0  # > 0: steered by an evaluator's gradient (never the headline numbers)
    refined: bool = False  # the model's refiner redrew the image at 64 px (Lab6Pipeline's second stage)
    guidance_interval: tuple[float, float] | None = None  # guided where sigma is in (low, high] (None: everywhere)

    @classmethod
    def for_pipeline(cls, pipe: "Lab6Pipeline", *, sampler: str = "dpmsolver", steps: int | None = None,
                     guidance: float | None = None, noise: str | None = None, seed: int = 0,
                     evaluator_guidance: float = 0.0, refine: bool = True) -> "Sampling":
        """The settings with every unset value filled in: the sampler's default steps, the model's guidance
        scale and starting noise, and its refiner unless ``refine=False``."""
        if sampler not in DEFAULT_STEPS:
            raise ValueError(f"unknown sampler {sampler!r}: choose one of {', '.join(DEFAULT_STEPS)}")
        interval = pipe.config.guidance_interval
        return cls(sampler, steps or DEFAULT_STEPS[sampler], pipe.guidance if guidance is None else float(guidance),
                   noise or pipe.initial_noise, seed, evaluator_guidance, refine and pipe.refiner is not None,
                   tuple(interval) if interval is not None else None)

    @property
    def name(self) -> str:
        """The sampler and its steps, as tables name them: ``DPM-Solver++-20``."""
        return f"{SAMPLER_NAMES[self.sampler]}-{self.steps}"

    def describe(self) -> str:
        """One line for a figure's title: ``DPM-Solver++-20, w = 3``, plus what is not the default."""
        parts = [self.name, f"w = {self.guidance:g}"]
        if self.guidance_interval is not None:
            parts[-1] += " for sigma in ({:g}, {:g}]".format(*self.guidance_interval)
        if self.noise != DEFAULT_NOISE:
            parts.append(f"{self.noise} noise")
        if self.evaluator_guidance:
            parts.append(f"evaluator guidance {self.evaluator_guidance:g}")
        if self.refined:
            parts.append("refined at 64 px")
        return ", ".join(parts)


@dataclass
class SampleResult:
    images: torch.Tensor  # (B, 3, 64, 64) in [-1, 1]
    sampling: Sampling
    timesteps: list[int] = field(default_factory=list)  # timesteps of the recorded intermediates
    intermediates: list[torch.Tensor] = field(default_factory=list)  # x_t after each recorded step
    predicted_x0: list[torch.Tensor] = field(default_factory=list)  # the model's x_0 estimate at that step
    stages: list[str] = field(default_factory=list)  # "first" or "refiner": which stage drew each recorded step
    first_stage: torch.Tensor | None = None  # refined images only: the first stage's, upsampled (refine=False's)
    conditions: list[list[str]] | None = None


def generate(pipe: Lab6Pipeline, conditions, *, sampler: str = "dpmsolver", steps: int | None = None,
             guidance: float | None = None, seed: int = 0, noise: str | None = None, record_every: int = 0,
             progress: bool = True, callback: Callable[[int, int], None] | None = None, guiding_evaluator=None,
             evaluator_guidance: float = 0.0, refine: bool = True) -> SampleResult:
    """lab6's way to call the pipeline: a named sampler, a seed, and (``record_every=k``) x_t and the predicted
    x_0 every k steps, at the refiner's first step and at the last, for the denoising figure.
    ``callback(done, total)`` after every step (of both stages). ``refine=False``: the first stage alone; a
    refined result keeps the first stage's images too (``first_stage``), for free.
    ``evaluator_guidance > 0`` steers with ``guiding_evaluator`` (an ``evaluator.Evaluator``). Unset values
    are the model's own (``Sampling.for_pipeline``); the result records them all."""
    sampling = Sampling.for_pipeline(pipe, sampler=sampler, steps=steps, guidance=guidance, noise=noise, seed=seed,
                                     evaluator_guidance=evaluator_guidance, refine=refine)
    first_steps, refiner_steps = pipe.stage_steps(sampling.steps, sampling.refined)
    total = first_steps + refiner_steps
    runner = pipe.with_sampler(sampler, noise=sampling.noise)
    runner.set_progress_bar_config(disable=not progress, desc=f"sampling ({sampling.name})")
    result = SampleResult(images=torch.empty(0), sampling=sampling,
                          conditions=None if isinstance(conditions, torch.Tensor) else [list(c) for c in conditions])

    def on_step(_, i: int, t, tensors: dict) -> dict:
        if record_every and (i % record_every == 0 or i in (first_steps, total - 1)):
            result.timesteps.append(int(t))
            result.intermediates.append(tensors["noisy_sample"].float().cpu())
            result.predicted_x0.append(tensors["pred_original_sample"].float().cpu())
            result.stages.append("first" if i < first_steps else "refiner")
        if refiner_steps and i == first_steps - 1:
            result.first_stage = to_output_size(tensors["latents"].clamp(-1, 1).float()).cpu()
        if callback is not None:
            callback(i + 1, total)
        return {}

    images = runner(conditions, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance,
                    generator=torch.Generator().manual_seed(seed), initial_noise=sampling.noise, output_type="pt",
                    evaluator=guiding_evaluator.model if guiding_evaluator is not None else None,
                    evaluator_guidance_scale=evaluator_guidance,
                    callback_on_step_end=on_step,
                    callback_on_step_end_tensor_inputs=["latents", "noisy_sample", "pred_original_sample"],
                    refine=sampling.refined).images
    result.images = images * 2 - 1
    return result


def run_denoising(loaded, condition: Sequence[str] = DENOISING_FIGURE_CONDITION, *, sampler: str = "dpmsolver",
                  steps: int | None = None, frames: int = 10, guidance: float | None = None, seed: int = 0,
                  noise: str | None = None, progress: bool = True, refine: bool = True) -> SampleResult:
    """Sample one image for ``condition`` and keep x_t and the predicted x_0 at about ``frames`` steps of the
    first stage, and at the refiner's first and last (``refine=False``: the first stage alone)."""
    steps = steps or DEFAULT_STEPS[sampler]
    return generate(loaded, [list(condition)], sampler=sampler, steps=steps, guidance=guidance, seed=seed,
                    noise=noise, record_every=max(1, math.ceil(steps / frames)), progress=progress, refine=refine)


@dataclass
class SamplerRun:
    seconds: float
    result: SampleResult

    @property
    def sampling(self) -> Sampling:
        return self.result.sampling

    @property
    def name(self) -> str:
        return self.sampling.name


def compare_samplers(loaded, condition: Sequence[str] = DENOISING_FIGURE_CONDITION,
                     specs: Sequence[tuple[str, int]] = (("ddpm", 1000), ("ddim", 50), ("dpmsolver", 20)), *,
                     guidance: float | None = None, seed: int = 0, frames: int = 5, progress: bool = True
                     ) -> list[SamplerRun]:
    """The same condition and starting noise through each (sampler, steps), timed."""
    runs = []
    for sampler, steps in specs:
        start = time.perf_counter()
        result = run_denoising(loaded, condition, sampler=sampler, steps=steps, frames=frames, guidance=guidance,
                               seed=seed, progress=progress)
        runs.append(SamplerRun(time.perf_counter() - start, result))
    return runs


@dataclass
class SplitRun:
    split: str
    conditions: list[list[str]]
    images: object  # (N, 3, 64, 64) tensor in [-1, 1]
    seconds: float
    sampling: Sampling
    scores: dict = field(default_factory=dict)  # evaluator name -> evaluator.Score (empty without evaluators)
    first_stage: object = None  # refined runs: the first stage's images (the 32 -> 64 px ones), and their scores
    first_stage_scores: dict = field(default_factory=dict)

    @property
    def score(self):
        """The first evaluator's score (the ResNet18's by default): what the figures mark images with."""
        return next(iter(self.scores.values()), None)

    @property
    def accuracy(self) -> float | None:
        return None if self.score is None else self.score.accuracy


def run_split(loaded, data_root: str | Path, split: str, evaluators=(), *, sampler: str = "dpmsolver",
              steps: int | None = None, guidance: float | None = None, seed: int = 0, noise: str | None = None,
              progress: bool = True, refine: bool = True, **steering) -> SplitRun:
    """Generate a split's images and score them with each of ``evaluators`` (a list, one evaluator, or None).
    ``steering``: evaluator guidance (``guiding_evaluator``, ``evaluator_guidance``) passed to ``generate``."""
    conditions = load_split(data_root, split)
    start = time.perf_counter()
    result = generate(loaded, conditions, sampler=sampler, steps=steps, guidance=guidance, seed=seed, noise=noise,
                      progress=progress, refine=refine, **steering)
    seconds, images = time.perf_counter() - start, result.images
    if evaluators is None or hasattr(evaluators, "score"):
        evaluators = [] if evaluators is None else [evaluators]
    scores = score_all(evaluators, images, conditions)
    first_scores = {} if result.first_stage is None else score_all(evaluators, result.first_stage, conditions)
    return SplitRun(split, conditions, images, seconds, result.sampling, scores, result.first_stage, first_scores)


def failures(runs: Sequence[SplitRun]) -> list[dict]:
    """Every image whose labels were not all found: split, index, true labels, the evaluator's top-k with
    probabilities."""
    found = []
    for run in runs:
        if run.score is None:
            continue
        for i, condition in enumerate(run.conditions):
            if run.score.hits[i] == run.score.labels_per_image[i]:
                continue
            probabilities = run.score.probabilities[i]
            top = probabilities.topk(len(condition)).indices.tolist()
            found.append({"split": run.split, "index": i, "condition": condition, "hits": run.score.hits[i],
                          "top": [(LABELS[j], float(probabilities[j])) for j in top],
                          "true": [(n, float(probabilities[LABELS.index(n)])) for n in condition]})
    return found


@dataclass
class Sweep:
    parameter: str  # "guidance" or "steps"
    values: list
    conditions: list[list[str]]
    images: list  # one (N, 3, 64, 64) tensor per value
    seconds: list[float]
    accuracies: list[float] | None  # None without an evaluator
    sampling: Sampling  # the settings at the first value (``parameter`` then takes each of ``values``)


def _sweep(loaded, conditions, evaluator, parameter: str, values, *, sampler: str, steps: int | None,
           guidance: float | None, seed: int, progress: bool) -> Sweep:
    images, seconds, accuracies, first = [], [], [], None
    for value in tqdm(list(values), desc=f"accuracy vs {parameter}", disable=not progress, unit="setting"):
        kwargs = {"steps": steps, "guidance": guidance, parameter: value}
        start = time.perf_counter()
        result = generate(loaded, conditions, sampler=sampler, seed=seed, progress=False, **kwargs)
        seconds.append(time.perf_counter() - start)
        images.append(result.images)
        first = first or result.sampling
        if evaluator is not None:
            accuracies.append(evaluator.score(result.images, conditions).accuracy)
    return Sweep(parameter, list(values), [list(c) for c in conditions], images, seconds,
                 accuracies if evaluator is not None else None, first)


def sweep_guidance(loaded, conditions, evaluator=None, scales: Sequence[float] = (0, 1, 2, 3, 4), *,
                   sampler: str = "dpmsolver", steps: int | None = 20, seed: int = 0, progress: bool = True) -> Sweep:
    """The same conditions and noise at each guidance scale w (scored when an evaluator is given)."""
    return _sweep(loaded, conditions, evaluator, "guidance", scales, sampler=sampler, steps=steps, guidance=None,
                  seed=seed, progress=progress)


def sweep_steps(loaded, conditions, evaluator=None, counts: Sequence[int] = (5, 10, 20, 50), *,
                sampler: str = "dpmsolver", guidance: float | None = None, seed: int = 0,
                progress: bool = True) -> Sweep:
    """The same conditions and noise with each number of sampler steps (scored when an evaluator is given)."""
    return _sweep(loaded, conditions, evaluator, "steps", counts, sampler=sampler, steps=None, guidance=guidance,
                  seed=seed, progress=progress)
