"""lab6's way to draw: ``Sampling`` (every setting of a draw, in one object) and ``generate`` (a pipeline call with
those settings), and the studies behind the figures, without plotting: a split's images and scores, the denoising
run, samplers side by side, guidance and step sweeps, and the failed images.

Each returns plain data (tensors, lists, dataclasses) that the notebooks can look at and that ``lab6.figures``
draws.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .data_root import load_split
from .diffusion import DEFAULT_NOISE, INITIAL_NOISE
from .evaluator import to_output_size
from .labels import DENOISING_FIGURE_CONDITION, LABELS
from .pipeline import Lab6Pipeline, distilled_steps
from .run_files import METADATA_FILE, ModelNotFoundError, resolve_model_dir
from .samplers import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_NAMES, check_sampler
from .scoring import score_all


@dataclass(frozen=True)
class Sampling:
    """How a batch of images is drawn: what the CLI, the notebooks, the report, the picker and training's
    evaluation pass to :func:`generate`, and what every result carries, so a figure or table can always say how.
    ``None`` is the model's own value (``resolved`` fills it in)."""

    sampler: str | None = None  # one of lab6.samplers.SAMPLERS (None: the model's own, see own_sampler)
    steps: int | None = None  # the sampler's steps (None: the model's own, else samplers.DEFAULT_STEPS)
    guidance_scale: float | None = None  # classifier-free guidance w (None: the model's)
    noise: str | None = None  # the starting noise, and DDPM's at every step (None: the model's)
    seed: int = 0  # the generator's seed: the same settings and seed draw the same images
    refine: bool = True  # a two-stage model's refiner redraws the image at 64 px

    def __post_init__(self):
        if self.sampler is not None:
            check_sampler(self.sampler)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.noise is not None and self.noise not in INITIAL_NOISE:
            raise ValueError(f"noise must be one of {', '.join(INITIAL_NOISE)}, got {self.noise!r}")

    def replace(self, **changes) -> "Sampling":
        return dataclasses.replace(self, **changes)

    def resolved(self, pipe: Lab6Pipeline) -> "Sampling":
        """Every unset value filled in: the model's own sampler and steps (:func:`own_sampler`; another sampler's
        default steps), its guidance scale and starting noise; ``refine`` only where the model has a refiner."""
        own, own_steps = own_sampler(pipe)
        sampler = self.sampler or own
        steps = self.steps or (own_steps if sampler == own and own_steps else DEFAULT_STEPS[sampler])
        return self.replace(sampler=sampler, steps=steps,
                            guidance_scale=pipe.guidance_scale if self.guidance_scale is None
                            else float(self.guidance_scale),
                            noise=self.noise or pipe.initial_noise, refine=self.refine and hasattr(pipe, "refiner"))

    @property
    def name(self) -> str:
        """The sampler and its steps, as tables name them: ``DPM-Solver++-20`` (unresolved: the default's)."""
        sampler = self.sampler or DEFAULT_SAMPLER
        return f"{SAMPLER_NAMES[sampler]}-{self.steps or DEFAULT_STEPS[sampler]}"

    def describe(self) -> str:
        """One line for a figure's title: ``DPM-Solver++-20, w = 3``, plus what is not the default."""
        parts = [self.name] + ([] if self.guidance_scale is None else [f"w = {self.guidance_scale:g}"])
        if self.noise not in (None, DEFAULT_NOISE):
            parts.append(f"{self.noise} noise")
        if self.refine:
            parts.append("refined at 64 px")
        return ", ".join(parts)


def model_record(model) -> dict:
    """A model's training record (``lab6.json``) with its guidance scale: a pipeline's own, or a model folder's or
    run's, read without loading its weights (one that cannot be read gives {}: loading it fails later, by name)."""
    if isinstance(model, Lab6Pipeline):
        return {**model.metadata, "guidance": model.guidance_scale}
    try:
        return json.loads((resolve_model_dir(model) / METADATA_FILE).read_text())
    except (ModelNotFoundError, OSError, ValueError):
        return {}


def own_sampler(model) -> tuple[str, int | None]:
    """The sampler and steps a model (a pipeline, folder or run) draws with unless told: a progressively distilled
    model's DDIM on the grid it was distilled for (``lab6.progressive``), else lab6's default sampler (steps None:
    the caller's default for it)."""
    steps = distilled_steps(model_record(model))
    return ("ddim", steps) if steps else (DEFAULT_SAMPLER, None)


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


def generate(pipe: Lab6Pipeline, conditions, sampling: Sampling | None = None, *, record_every: int = 0,
             progress: bool = True, callback: Callable[[int, int], None] | None = None) -> SampleResult:
    """Draw one image per condition as ``sampling`` says (default: the model's own settings), and
    (``record_every=k``) keep x_t and the predicted x_0 every k steps, at the refiner's first step and at the
    last, for the denoising figure. ``callback(done, total)`` after every step (of both stages). A refined result
    keeps the first stage's images too (``first_stage``), for free."""
    sampling = (sampling or Sampling()).resolved(pipe)
    first_steps = sampling.steps
    total = first_steps + (pipe.refiner_steps(first_steps) if sampling.refine else 0)
    pipe = sampler_variant(pipe, sampling.sampler, sampling.noise)
    pipe.set_progress_bar_config(disable=not progress, desc=f"sampling ({sampling.name})")
    result = SampleResult(images=torch.empty(0), sampling=sampling,
                          conditions=None if isinstance(conditions, torch.Tensor) else [list(c) for c in conditions])

    def on_step(_, i: int, t, tensors: dict) -> dict:
        if record_every and (i % record_every == 0 or i in (first_steps, total - 1)):
            result.timesteps.append(int(t))
            result.intermediates.append(tensors["noisy_sample"].float().cpu())
            result.predicted_x0.append(tensors["pred_original_sample"].float().cpu())
            result.stages.append("first" if i < first_steps else "refiner")
        if total > first_steps and i == first_steps - 1:
            result.first_stage = to_output_size(tensors["latents"].clamp(-1, 1).float()).cpu()
        if callback is not None:
            callback(i + 1, total)
        return {}

    extra = {"refine": sampling.refine} if hasattr(pipe, "refiner") else {}
    images = pipe(conditions, num_inference_steps=sampling.steps, guidance_scale=sampling.guidance_scale,
                  generator=torch.Generator().manual_seed(sampling.seed), initial_noise=sampling.noise,
                  output_type="pt", callback_on_step_end=on_step,
                  callback_on_step_end_tensor_inputs=["latents", "noisy_sample", "pred_original_sample"],
                  **extra).images
    result.images = images * 2 - 1
    return result


def sampler_variant(pipe: Lab6Pipeline, sampler: str, noise: str) -> Lab6Pipeline:
    """``pipe.with_sampler(sampler, noise)``, built once per pipeline and kept on it: a picker or a sweep that
    draws again and again reuses it (the variant shares the weights, so it sees them change)."""
    variants = pipe.__dict__.setdefault("_sampler_variants", {})
    if (sampler, noise) not in variants:
        variants[(sampler, noise)] = pipe.with_sampler(sampler, noise=noise)
    return variants[(sampler, noise)]


def run_denoising(pipe, condition: Sequence[str] = DENOISING_FIGURE_CONDITION, sampling: Sampling | None = None, *,
                  frames: int = 10, progress: bool = True) -> SampleResult:
    """Sample one image for ``condition`` and keep x_t and the predicted x_0 at about ``frames`` steps of the
    first stage, and at the refiner's first and last."""
    sampling = (sampling or Sampling()).resolved(pipe)
    steps = sampling.steps
    return generate(pipe, [list(condition)], sampling, record_every=max(1, math.ceil(steps / frames)),
                    progress=progress)


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


def compare_samplers(pipe, condition: Sequence[str] = DENOISING_FIGURE_CONDITION,
                     specs: Sequence[tuple[str, int]] = (("ddpm", 1000), ("ddim", 50), ("dpmsolver", 20)),
                     sampling: Sampling | None = None, *, frames: int = 5, progress: bool = True) -> list[SamplerRun]:
    """The same condition and starting noise through each (sampler, steps), timed; the other settings are
    ``sampling``'s."""
    runs = []
    for sampler, steps in specs:
        start = time.perf_counter()
        result = run_denoising(pipe, condition, (sampling or Sampling()).replace(sampler=sampler, steps=steps),
                               frames=frames, progress=progress)
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


def run_split(pipe, data_root: str | Path, split: str, evaluators=(), sampling: Sampling | None = None, *,
              progress: bool = True) -> SplitRun:
    """Generate a split's images and score them with each of ``evaluators`` (a list, one evaluator, or None)."""
    conditions = load_split(data_root, split)
    start = time.perf_counter()
    result = generate(pipe, conditions, sampling, progress=progress)
    seconds, images = time.perf_counter() - start, result.images
    if evaluators is None or hasattr(evaluators, "score"):
        evaluators = [] if evaluators is None else [evaluators]
    scores = score_all(evaluators, images, conditions)
    first_scores = {} if result.first_stage is None else score_all(evaluators, result.first_stage, conditions)
    return SplitRun(split, conditions, images, seconds, result.sampling, scores, result.first_stage, first_scores)


def run_splits(pipe, data_root: str | Path, splits, evaluators, sampling: Sampling, grids: Path,
               prefix: str = "") -> list[SplitRun]:
    """``run_split`` for each of ``splits`` that the data root has (the others are skipped), each split's images
    saved as one grid, ``grids/<prefix><split>.png``: training's evaluation."""
    from .images import save_grid

    runs = []
    for split in splits:
        try:
            run = run_split(pipe, data_root, split, evaluators, sampling, progress=False)
        except FileNotFoundError:  # a data root without this split
            continue
        save_grid(run.images, Path(grids) / f"{prefix}{split}.png")
        runs.append(run)
    return runs


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
    parameter: str  # "guidance_scale" or "steps"
    values: list
    conditions: list[list[str]]
    images: list  # one (N, 3, 64, 64) tensor per value
    seconds: list[float]
    accuracies: list[float] | None  # None without an evaluator
    sampling: Sampling  # the settings at the first value (``parameter`` then takes each of ``values``)


def sweep(pipe, conditions, evaluator, parameter: str, values, sampling: Sampling | None = None, *,
          progress: bool = True) -> Sweep:
    """The same conditions and noise at each value of one ``Sampling`` field (``"guidance_scale"`` or
    ``"steps"``), the others ``sampling``'s; scored when an evaluator is given."""
    images, seconds, accuracies, first = [], [], [], None
    for value in tqdm(list(values), desc=f"accuracy vs {parameter}", disable=not progress, unit="setting"):
        start = time.perf_counter()
        result = generate(pipe, conditions, (sampling or Sampling()).replace(**{parameter: value}), progress=False)
        seconds.append(time.perf_counter() - start)
        images.append(result.images)
        first = first or result.sampling
        if evaluator is not None:
            accuracies.append(evaluator.score(result.images, conditions).accuracy)
    return Sweep(parameter, list(values), [list(c) for c in conditions], images, seconds,
                 accuracies if evaluator is not None else None, first)
