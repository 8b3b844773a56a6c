"""Any diffusers scheduler in a lab6 pipeline: how far from the converged image, how fast, side by side.

Every deterministic sampler solves the same probability-flow ODE from the same starting noise, so at enough
steps each lands on the same image. For each ``Scheduler-steps`` row this swaps the scheduler in the diffusers
way (``pipe.scheduler = Class.from_config(pipe.scheduler.config)``) and prints, on the first stage alone
(the refiner is the same for every row): the network calls per image, the seconds for the split's images, the
mean and largest pixel difference (images in [0, 1]) to the reference (the model's own scheduler, DPM-Solver++
for lab6's models, at ``--reference-steps``), and each evaluator's accuracy. The difference is deterministic
and resolves what one seed's accuracy on 32 conditions cannot (1 label = 1.4 points there).

    python bench/bench_schedulers.py --data-root ../shared/iclevr-reference
    python bench/bench_schedulers.py --rows DPMSolverMultistepScheduler-10 UniPCMultistepScheduler-10 \
        HeunDiscreteScheduler-25 HeunDiscreteScheduler-25:timestep_spacing=leading

``Class-steps:key=value,...`` passes options to ``from_config`` (e.g. ``clip_sample=false`` for DDIM).
"""

from __future__ import annotations

import argparse
import json
import time

import diffusers
import torch

from lab6.data import conditions_file, resolve_data_root
from lab6.evaluator import load_evaluators
from lab6.labels import load_conditions
from lab6.pipeline import load_pipeline

ROWS = ["DPMSolverMultistepScheduler-20", "DPMSolverMultistepScheduler-10", "UniPCMultistepScheduler-20",
        "UniPCMultistepScheduler-10", "DEISMultistepScheduler-20", "DDIMScheduler-50:clip_sample=false",
        "EulerDiscreteScheduler-50", "HeunDiscreteScheduler-25", "HeunDiscreteScheduler-25:timestep_spacing=leading"]


def scheduler_row(text: str) -> tuple[str, int, dict]:
    """``"DDIMScheduler-50:clip_sample=false"`` -> ``("DDIMScheduler", 50, {"clip_sample": False})``."""
    head, _, options = text.partition(":")
    name, _, steps = head.rpartition("-")
    if not (name.endswith("Scheduler") and isinstance(getattr(diffusers, name, None), type)) or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"bad row {text!r}: write Class-STEPS[:key=value,...] with Class a diffusers "
                                         "scheduler, e.g. UniPCMultistepScheduler-10")
    settings = {}
    for pair in filter(None, options.split(",")):
        key, _, value = pair.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value  # a bare word: a string option such as timestep_spacing=leading
    return name, int(steps), settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped model)")
    parser.add_argument("--data-root", default=None, help="for its conditions and evaluators (default: built-in)")
    parser.add_argument("--split", default="test", help="test, new_test, heldout or a conditions file")
    parser.add_argument("--rows", nargs="+", type=scheduler_row, default=[scheduler_row(r) for r in ROWS],
                        metavar="CLASS-STEPS", help=f"schedulers to compare (default: {' '.join(ROWS)})")
    parser.add_argument("--reference-steps", type=int, default=100,
                        help="steps of the reference (the model's scheduler)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = resolve_data_root(args.data_root, need_images=False)
    conditions = load_conditions(conditions_file(root, args.split))
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    evaluators = load_evaluators(None, root)
    shipped = pipe.scheduler
    rows_seen = [0]  # images through the network: a guided step sends each image twice (with its condition, without)
    pipe.unet.register_forward_hook(
        lambda module, inputs, output: rows_seen.__setitem__(0, rows_seen[0] + len(output)))

    def draw(steps: int) -> tuple[torch.Tensor, float, float]:
        rows_seen[0], start = 0, time.perf_counter()
        images = pipe(conditions, num_inference_steps=steps, refine=False, output_type="pt",
                      generator=torch.Generator().manual_seed(args.seed)).images
        return images, time.perf_counter() - start, rows_seen[0] / len(conditions)

    draw(2)  # untimed: oneDNN sets up its kernels on first use
    reference, _, _ = draw(args.reference_steps)
    reference_name = f"{type(shipped).__name__} {args.reference_steps}"  # the model's own scheduler
    print(f"| scheduler | options | steps | network calls per image | "
          f"seconds ({len(conditions)} images, first stage) | mean / largest difference to {reference_name} | "
          + " | ".join(f"{args.split} ({e.name})" for e in evaluators) + " |")
    print("| --- " * (6 + len(evaluators)) + "|")
    for name, steps, options in args.rows:
        pipe.scheduler = getattr(diffusers, name).from_config(shipped.config, **options)
        images, seconds, per_image = draw(steps)
        difference = (images - reference).abs()
        accuracy = " | ".join(f"{e.score(images * 2 - 1, conditions).accuracy:.4f}" for e in evaluators)
        print(f"| {name} | {', '.join(f'{k}={v}' for k, v in options.items()) or '-'} | {steps} | {per_image:g} | "
              f"{seconds:.1f} | {difference.mean():.4f} / {difference.max():.3f} | {accuracy} |", flush=True)
    print(f"\nmodel {pipe.path}, seed {args.seed}; the reference: {reference_name} (the model's scheduler and config)")


if __name__ == "__main__":
    main()
