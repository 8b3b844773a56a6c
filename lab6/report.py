"""The report: for each conditions split, images + an 8x4 grid + accuracy, per stage; the denoising figure; a
summary.

``write_report(out)`` writes::

    out/summary.md                          what to submit (first line), the accuracy table
    out/images/first_stage/<split>/<i>.png  64x64, in the conditions file's order: what the course's evaluator
                                            reads best (it was trained on 32 -> 64 px images)
    out/images/refined/<split>/<i>.png      the same draw refined at 64 px (models with a refiner)
    out/<split>_grid_<stage>.png            8 per row, per stage
    out/denoising.png (.pdf)                x_t and predicted x_0 for ["red sphere", "cyan cylinder", "cyan cube"]
    out/accuracy.json                       accuracy, labels found per shape and per-image hits per split, with
                                            the exact settings

Drawn for the built-in synthetic conditions (no data root given), the grids are named ``synthetic_<split>_...``
and titled so, and the summary opens by saying they are not the course's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .evaluator import found_by_shape
from .labels import DENOISING_FIGURE_CONDITION, encode_many
from .sampling import Sampling
from .scoring import per_image_hits

#: The folder names of a report's stages: the first stage's images (upsampled to 64 px), then the refiner's.
STAGES = ("first_stage", "refined")


def write_report(out: str | Path, *, data_root: str | Path | None = None, model: str | Path | None = None,
                 evaluator: str | Path | None = None, sampling: Sampling | None = None, device: str = "cpu",
                 progress: bool = True, log=print) -> dict:
    """Writes a report folder (the module's docstring): it appears whole, replacing an older report, or not at all.

    Args:
        out: the report folder; an existing folder must be a lab6 report (it holds accuracy.json).
        data_root: where the conditions files are; ``None`` for ``$LAB6_DATA`` or the built-in synthetic ones.
        model: a model folder or training run; ``None`` for the shipped model.
        evaluator: one or more evaluator files; ``None`` for ``evaluator.default_evaluator_paths``.
        sampling: how to draw (``sampling.Sampling``); ``None`` for the model's own settings.
        device: where to sample.
        progress: show progress bars.
        log: where progress lines go.

    Returns:
        What ``accuracy.json`` holds: the settings and, per split, the accuracy per evaluator and stage, the
        labels found per shape and the hits per image.
    """
    from .data_root import SPLITS, is_synthetic, resolve_data_root
    from .figures import denoising_process
    from .images import check_output_folder
    from .loading import load_pipeline
    from .run_files import atomic_path
    from .sampling import run_denoising
    from .scoring import load_evaluators

    final = Path(out)
    if final.exists() and (not final.is_dir()
                           or (any(final.iterdir()) and not (final / "accuracy.json").is_file())):
        raise FileExistsError(f"refusing to write the report over {final}: it is a file or a folder that is not a "
                              "lab6 report (no accuracy.json). Choose a new --out")
    check_output_folder(final)
    root = resolve_data_root(data_root, need_images=False, progress=progress)
    pipe = load_pipeline(model, device=device)
    sampling = (sampling or Sampling()).resolved(pipe)
    if isinstance(evaluator, (str, Path)):
        evaluator = [evaluator]
    scorers = load_evaluators(evaluator, root, device=device, required=False, log=log)
    settings = {"model": str(pipe.path), "data_root": str(root), "sampler": sampling.sampler, "steps": sampling.steps,
                "guidance_scale": sampling.guidance_scale, "seed": sampling.seed, "noise": sampling.noise,
                "refined": sampling.refine, "synthetic": is_synthetic(root),
                "distilled": pipe.metadata.get("distilled"),
                "evaluators": {e.name: e.source for e in scorers}}
    results: dict = {"settings": settings, "splits": {}}
    with atomic_path(final) as out:  # the report appears whole (replacing an older one) or not at all
        out.mkdir()
        _write_splits(out, results, pipe, root, scorers, SPLITS, sampling, progress, log)
        figure = run_denoising(pipe, DENOISING_FIGURE_CONDITION, sampling, progress=False)
        denoising_process(figure, out, name="denoising")
        (out / "accuracy.json").write_text(json.dumps(results, indent=2))
        (out / "summary.md").write_text(summary_markdown(results))
    log(f"report written to {final}")
    if settings["synthetic"]:
        log(f"these are the built-in synthetic conditions ({', '.join(results['splits'])}), not the course's: "
            "lab6 report --data-root COURSE_DATA (or make demo DATA=COURSE_DATA) draws test.json and new_test.json")
    return results


def _write_splits(out: Path, results: dict, pipe, root: Path, scorers, splits, sampling: Sampling, progress: bool,
                  log) -> None:
    """Each split's images, grid and accuracy into ``out`` and ``results``."""
    from .images import save_grid, save_images
    from .sampling import run_split

    s = results["settings"]
    for split in splits:
        run = run_split(pipe, root, split, scorers, sampling, progress=progress)
        stages = dict(zip(STAGES, (run.images,) if run.first_stage is None else (run.first_stage, run.images)))
        for stage, images in stages.items():
            save_images(images, out / "images" / stage / split, conditions=run.conditions, grid_name=None)
            title = (f"lab6's built-in SYNTHETIC conditions, not the course's {split}.json ({stage.replace('_', ' ')})"
                     if s["synthetic"] else None)
            save_grid(images, out / grid_name(split, stage, s["synthetic"]), nrow=8, title=title)
        entry: dict = {"images": len(run.conditions), "sampling_seconds": round(run.seconds, 2)}
        multi_hot = torch.tensor(encode_many(run.conditions))
        if run.first_stage_scores:  # what the course's evaluator, trained on 32 -> 64 px images, was made for
            entry["accuracy_first_stage"] = {name: score.accuracy for name, score in run.first_stage_scores.items()}
            entry["found_by_shape_first_stage"] = {name: found_by_shape(score.probabilities, multi_hot)
                                                   for name, score in run.first_stage_scores.items()}
        if run.scores:
            entry["accuracy"] = {name: score.accuracy for name, score in run.scores.items()}
            # an evaluator blind to how one shape looks shows here (the ResNet18s and sharp cubes)
            entry["found_by_shape"] = {name: found_by_shape(score.probabilities, multi_hot)
                                       for name, score in run.scores.items()}
            entry["per_image"] = per_image_hits(run.scores, run.conditions)
        results["splits"][split] = entry
        log(f"{split}: {len(run.conditions)} images in {run.seconds:.1f} s"
            + "".join(f", {name} accuracy {value:.4f}" for name, value in entry.get("accuracy", {}).items())
            + "".join(f", first stage alone {name} {value:.4f}"
                      for name, value in entry.get("accuracy_first_stage", {}).items()))


def grid_name(split: str, stage: str, synthetic: bool = False) -> str:
    """A report's grid file for one split and stage: ``test_grid_first_stage.png``, ``synthetic_test_...``."""
    return f"{'synthetic_' if synthetic else ''}{split}_grid_{stage}.png"


def distilled_note(distilled: dict | None) -> str:
    """What the summary says of a distilled first stage: how it was distilled, and from which model."""
    if not distilled:
        return ""
    how = (f"progressive distillation to {distilled['steps']} DDIM steps" if distilled["kind"] == "progressive"
           else f"guidance distillation of w = {distilled['guidance_scale']:g}")
    return f" Its first stage was distilled ({how}, one network call per step) from `{distilled['from']}`."


def summary_markdown(results: dict) -> str:
    """``summary.md``: what to submit (its first line), the settings and the accuracy table of ``results``."""
    s = results["settings"]
    names = list(s["evaluators"])
    refined = bool(s.get("refined")) and bool(names)
    splits = list(results["splits"])
    grids = ", ".join(f"`{grid_name(split, 'first_stage', s.get('synthetic', False))}`" for split in splits)
    if s.get("synthetic"):
        first = ("**Not for submission: these images were drawn for lab6's built-in synthetic conditions, not the "
                 "course's test.json / new_test.json.** `lab6 report --data-root COURSE_DATA` (or "
                 "`make demo DATA=COURSE_DATA`) draws the course's.")
    else:
        first = (f"**Submit `images/first_stage/<split>/` (grids {grids}) to the course's evaluator**: it was "
                 "trained on 32 -> 64 px images, which the first stage's are"
                 + ("; `images/refined/` holds the sharper 64-px images." if s.get("refined") else "."))
    lines = [
        first,
        "",
        "# lab6 report",
        "",
        f"Model `{s['model']}`, sampler {s['sampler']} ({s['steps']} steps), guidance w = {s['guidance_scale']:g}, "
        f"seed {s['seed']}" + (", refined at 64 px by the model's refiner." if s.get("refined") else ".")
        + distilled_note(s.get("distilled")),
        ("Evaluators: " + ", ".join(f"{name} (`{source}`)" for name, source in s["evaluators"].items()) + "."
         if names else "No evaluator was available: no accuracy."),
        f"Data root: `{s['data_root']}`.",
        "",
        "| split | images | " + "".join(f"accuracy ({name}) | " for name in names)
        + "".join(f"first stage alone ({name}) | " for name in names if refined) + "sampling time (s) |",
        "| --- | --- | " + "--- | " * len(names) * (2 if refined else 1) + "--- |",
    ]
    for split, entry in results["splits"].items():
        accuracy, first = entry.get("accuracy", {}), entry.get("accuracy_first_stage", {})
        lines.append(f"| {split} | {entry['images']} | " + "".join(f"{accuracy[n]:.4f} | " for n in names)
                     + "".join(f"{first[n]:.4f} | " for n in names if refined) + f"{entry['sampling_seconds']} |")
    stages = STAGES if s.get("refined") else STAGES[:1]
    lines += ["", "Grids: " + ", ".join(f"`{grid_name(split, stage, s.get('synthetic', False))}`"
                                       for split in splits for stage in stages)
              + "; denoising process: `denoising.png`."]
    if refined:
        lines += ["", "The accuracy columns score the refined images; \"first stage alone\" scores the first stage's "
                  "(32 px, upsampled). The ResNet18 proxy, trained as the course's evaluator was on 32 -> 64 px "
                  "images, reads sharp 64-px cubes as cylinders (`found_by_shape` in accuracy.json; "
                  "docs/evaluators.md#cube-blind-spot), so its refined column is lower for that reason alone."]
    lines.append("")
    return "\n".join(lines)
