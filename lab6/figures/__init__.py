"""The figures of the notebooks and of the report, one module per notebook, all reachable from ``lab6 figures``.

Every figure function draws one matplotlib ``Figure`` (object-oriented, no pyplot state), saves it as
``<out>/<name>.png`` and ``<out>/<name>.pdf`` under a stable name (see :data:`FIGURE_GROUPS`) and returns
it, so a notebook shows it inline and the command line writes the very same files. The work behind a
figure (sampling, sweeps, scoring) lives in ``lab6.sampling`` and the data's statistics in ``lab6.data_statistics``;
a figure takes their result, so a notebook can also look at the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..labels import DENOISING_FIGURE_CONDITION
from ..settings import NotebookSettings, notebook_evaluators, notebook_model, notebook_settings
from .accuracy import (
    accuracy_grid,
    failure_gallery,
    guidance_accuracy,
    guidance_images,
    hits_per_image,
    real_vs_generated,
    steps_accuracy,
)
from .data import (
    conditions_html,
    conditions_table,
    cooccurrence,
    image_statistics,
    label_frequency,
    objects_per_image,
    real_vs_rendered,
    sample_grid,
)
from .denoising import denoising_frame, denoising_process, denoising_strip, sampler_comparison
from .training import accuracy_vs_minutes, loss_curve, presets_html, watch_loss_curve

__all__ = ["FIGURE_GROUPS", "NEEDS_EVALUATOR", "accuracy_grid", "accuracy_vs_minutes", "conditions_html",
           "conditions_table", "cooccurrence", "denoising_frame", "denoising_process", "denoising_strip",
           "failure_gallery", "figure_files", "guidance_accuracy", "guidance_images", "hits_per_image",
           "image_statistics", "label_frequency", "loss_curve", "objects_per_image", "presets_html",
           "real_vs_generated", "real_vs_rendered", "sample_grid", "sampler_comparison", "steps_accuracy",
           "watch_loss_curve", "write_figures"]

#: The stable file names (without .png/.pdf) of each group of ``lab6 figures --which``.
FIGURE_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("data_samples", "data_real_vs_rendered", "data_label_frequency", "data_objects_per_image",
             "data_cooccurrence", "data_image_statistics", "data_conditions_test", "data_conditions_new_test"),
    "training": ("training_loss",),
    "denoising": ("denoising_process",),
    "samplers": ("samplers_comparison", "samplers_accuracy_vs_steps"),
    "guidance": ("guidance_images", "guidance_accuracy"),
    "accuracy": ("accuracy_grid_test", "accuracy_grid_new_test", "accuracy_hits", "accuracy_failures"),
}
#: Figures that need an evaluator (skipped, with a message, when none can be loaded).
NEEDS_EVALUATOR = ("samplers_accuracy_vs_steps", "guidance_accuracy", "accuracy_hits", "accuracy_failures")


def figure_files(out: str | Path, groups: Iterable[str] = ("all",)) -> list[Path]:
    """The PNG and PDF paths that the given groups write under ``out``."""
    names = [n for g in _expand_groups(groups) for n in FIGURE_GROUPS[g]]
    return [Path(out) / f"{n}.{ext}" for n in names for ext in ("png", "pdf")]


def _expand_groups(groups: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    for g in groups:
        if g == "all":
            chosen += [k for k in FIGURE_GROUPS if k not in chosen]
        elif g in FIGURE_GROUPS:
            chosen += [g] if g not in chosen else []
        else:
            raise ValueError(f"unknown figure group {g!r}: choose from {', '.join(FIGURE_GROUPS)} or all")
    return chosen


def write_figures(out: str | Path, which: Iterable[str] = ("all",), *, settings: NotebookSettings | None = None,
                  run: str | Path | None = None, progress: bool = True, log=print) -> list[Path]:
    """Write the figures of the chosen groups under ``out``, the same files the notebooks write."""
    from ..data_root import SPLITS, load_split
    from ..data_statistics import load_training_data
    from ..sampling import compare_samplers, run_denoising, run_split, sweep

    settings = settings or notebook_settings()
    groups = _expand_groups(which)
    out = Path(out)
    written: list[str] = []
    pipe, evaluators = None, []
    if any(g != "data" and g != "training" for g in groups):
        pipe = notebook_model(settings, log=log, train_fallback=False)
    if any(g in ("samplers", "guidance", "accuracy") for g in groups):
        evaluators = notebook_evaluators(settings, log=log)
    evaluator = evaluators[0] if evaluators else None  # the sweeps' and failure figures' evaluator
    sampling, seed = settings.sampling, settings.sampling.seed
    splits = [s for s in SPLITS if (settings.data_root / f"{s}.json").is_file()]

    if "data" in groups:
        data = load_training_data(settings.data_root, progress=progress)
        sample_grid(data, out, seed=seed)
        real_vs_rendered(data, out, seed=seed)
        label_frequency(data.labels, out)
        objects_per_image(data.labels, out)
        cooccurrence(data.labels, out)
        image_statistics(data.images, out)
        written += list(FIGURE_GROUPS["data"][:6])
        for split in splits:
            conditions_table(load_split(settings.data_root, split), out, split)
            written.append(f"data_conditions_{split}")
    if "training" in groups:
        run_dir = _run_folder(run, settings)
        if run_dir is None:
            log("training figure skipped: give --run (a training run folder with metrics.csv)")
        else:
            loss_curve(run_dir, out)
            written.append("training_loss")
    if "denoising" in groups:
        result = run_denoising(pipe, DENOISING_FIGURE_CONDITION, sampling, frames=settings.denoising_frames,
                               progress=progress)
        denoising_process(result, out)
        written.append("denoising_process")
    conditions = load_split(settings.data_root, "test") if "test" in splits else [list(DENOISING_FIGURE_CONDITION)]
    if "samplers" in groups:
        runs = compare_samplers(pipe, DENOISING_FIGURE_CONDITION, settings.sampler_specs, sampling,
                                progress=progress)
        sampler_comparison(runs, out)
        written.append("samplers_comparison")
        if evaluator is not None:
            steps_accuracy(sweep(pipe, conditions, evaluator, "steps", settings.step_counts, sampling,
                                 progress=progress), out)
            written.append("samplers_accuracy_vs_steps")
    if "guidance" in groups:
        by_guidance = sweep(pipe, conditions, evaluator, "guidance_scale", settings.guidance_scales, sampling,
                            progress=progress)
        guidance_images(by_guidance, out)
        written.append("guidance_images")
        if evaluator is not None:
            guidance_accuracy(by_guidance, out)
            written.append("guidance_accuracy")
    if "accuracy" in groups:
        runs = [run_split(pipe, settings.data_root, s, evaluators, sampling, progress=progress) for s in splits]
        for r in runs:
            accuracy_grid(r, out)
            written.append(f"accuracy_grid_{r.split}")
            if r.scores:
                log(f"{r.split}: " + ", ".join(f"{n} accuracy {v.accuracy:.4f}" for n, v in r.scores.items()))
        if evaluator is not None:
            hits_per_image(runs, out)
            failure_gallery(runs, out, settings.max_failures)
            written += ["accuracy_hits", "accuracy_failures"]
    skipped = [n for g in groups for n in FIGURE_GROUPS[g] if n not in written]
    if skipped:
        log(f"not written: {', '.join(skipped)}")
    return [out / f"{n}.{ext}" for n in written for ext in ("png", "pdf")]


def _run_folder(run: str | Path | None, settings: NotebookSettings) -> Path | None:
    """The training run to plot: ``run``, else the model's run folder when it has metrics.csv."""
    candidates = [Path(run)] if run else []
    if settings.model is not None:
        candidates += [settings.model, settings.model.parent]
    for path in candidates:
        if (path / "metrics.csv").is_file():
            return path
    return None
