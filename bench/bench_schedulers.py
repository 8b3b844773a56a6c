"""Any diffusers scheduler in a lab6 pipeline: how far from the converged image, how fast, side by side.

Every deterministic sampler solves the same probability-flow ODE from the same starting noise, so at enough
steps each lands on the same image. For each ``Scheduler-steps`` row this swaps the scheduler in the diffusers
way (``pipe.scheduler = Class.from_config(pipe.scheduler.config)``) and prints, on the first stage alone
(the refiner is the same for every row): the network calls per image, the seconds for the split's images, the
mean and largest pixel difference (images in [0, 1]) to the reference (the first row: the model's own
scheduler, DPM-Solver++ for lab6's models, at ``--reference-steps``), and each evaluator's accuracy. The
difference is deterministic and resolves what one seed's accuracy on 32 conditions cannot (1 label = 1.4 points
there).

    python -m bench.bench_schedulers --data-root ../shared/iclevr-reference
    python -m bench.bench_schedulers --rows DPMSolverMultistepScheduler-10 UniPCMultistepScheduler-10 \\
        HeunDiscreteScheduler-25 HeunDiscreteScheduler-25:timestep_spacing=leading

A row (``--row`` or ``--rows``) is ``[LABEL=]Class-STEPS[:key=value,...]``: the options go to ``from_config``
(e.g. ``clip_sample=false`` for DDIM; JSON values, else words); without a label the row is named by its text.
"""

from __future__ import annotations

import argparse
import json
import time

import diffusers
import torch

from bench import harness
from lab6.data_root import conditions_file
from lab6.labels import load_conditions
from lab6.loading import load_pipeline
from lab6.refiner import RefinedPipeline

ROWS = ["DPMSolverMultistepScheduler-20", "DPMSolverMultistepScheduler-10", "UniPCMultistepScheduler-20",
        "UniPCMultistepScheduler-10", "DEISMultistepScheduler-20", "DDIMScheduler-50:clip_sample=false",
        "EulerDiscreteScheduler-50", "HeunDiscreteScheduler-25", "HeunDiscreteScheduler-25:timestep_spacing=leading"]


def scheduler_steps(text: str) -> tuple[str, int]:
    """``"DDIMScheduler-50"`` -> ``("DDIMScheduler", 50)``, for any scheduler class diffusers has."""
    name, _, steps = text.rpartition("-")
    if not (name.endswith("Scheduler") and isinstance(getattr(diffusers, name, None), type)) or not steps.isdigit():
        raise ValueError("write Class-STEPS with Class a diffusers scheduler, e.g. UniPCMultistepScheduler-10")
    return name, int(steps)


def json_or_word(text: str) -> object:
    """A ``from_config`` option's value: JSON (``false``, ``0.5``), else the word itself (``leading``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


ROW_KEYS = {"scheduler": scheduler_steps}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, evaluators=True)
    harness.add_rows(parser, ROW_KEYS, "--rows", head="scheduler", other=json_or_word,
                     help=f"schedulers to compare (default: {' '.join(ROWS)})")
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped model)")
    parser.add_argument("--split", default="test", help="test, new_test, heldout or a conditions file")
    parser.add_argument("--reference-steps", type=int, default=100,
                        help="steps of the reference (the model's scheduler)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def run(args: argparse.Namespace) -> list[dict]:
    """The reference row (the model's own scheduler at ``--reference-steps``), then one row per scheduler."""
    root = harness.data_root(args)
    conditions = load_conditions(conditions_file(root, args.split))
    pipe = load_pipeline(args.model)
    pipe = pipe.first_stage() if isinstance(pipe, RefinedPipeline) else pipe  # the refiner is the same for every row
    pipe.set_progress_bar_config(disable=True)
    evaluators = harness.evaluators(args)
    shipped = pipe.scheduler
    seen = [0]  # images through the network: a guided step sends each image twice (with its condition, without)
    pipe.unet.register_forward_hook(lambda module, inputs, output: seen.__setitem__(0, seen[0] + len(output)))

    def draw(label: str, steps: int, options: dict, reference: torch.Tensor | None = None) -> tuple[dict, ...]:
        seen[0], start = 0, time.perf_counter()
        images = pipe(conditions, num_inference_steps=steps, output_type="pt",
                      generator=torch.Generator().manual_seed(args.seed)).images
        seconds = time.perf_counter() - start
        difference = (images - (images if reference is None else reference)).abs()
        row = {"label": label, "scheduler": type(pipe.scheduler).__name__, "options": options, "steps": steps,
               "calls_per_image": seen[0] / len(conditions), "seconds": seconds,
               "mean_difference": float(difference.mean()), "largest_difference": float(difference.max()),
               "accuracy": {e.name: e.score(images * 2 - 1, conditions).accuracy for e in evaluators}}
        harness.log(label, row)
        return row, images

    pipe(conditions, num_inference_steps=2, output_type="pt")  # untimed: oneDNN sets up its kernels
    first, reference = draw("reference: the model's scheduler", args.reference_steps, {})
    rows = [first]
    for label, settings in args.row or [harness.parse_row(row, ROW_KEYS, head="scheduler", other=json_or_word)
                                        for row in ROWS]:
        (name, steps), options = settings["scheduler"], {k: v for k, v in settings.items() if k != "scheduler"}
        pipe.scheduler = getattr(diffusers, name).from_config(shipped.config, **options)
        rows.append(draw(label, steps, options, reference)[0])
    pipe.scheduler = shipped
    return rows


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """Per scheduler: its options, steps, network calls, seconds, difference to the reference and accuracy."""
    names = list(rows[0]["accuracy"])
    columns = {"row": lambda row: row["label"], "scheduler": lambda row: row["scheduler"],
               "options": lambda row: ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-",
               "steps": lambda row: str(row["steps"]),
               "network calls per image": lambda row: f"{row['calls_per_image']:g}",
               "seconds (first stage)": lambda row: f"{row['seconds']:.1f}",
               "mean / largest difference to the reference": lambda row: (f"{row['mean_difference']:.4f} / "
                                                                          f"{row['largest_difference']:.3f}"),
               **{f"{args.split} ({name})": lambda row, name=name: f"{row['accuracy'][name]:.4f}" for name in names}}
    caption = (f"model {args.model or 'the shipped model'}, split {args.split}, seed {args.seed}; the reference: "
               f"the first row, the model's scheduler and config")
    return {"table": harness.Table(caption, harness.markdown_table(rows, columns))}


if __name__ == "__main__":
    main()
