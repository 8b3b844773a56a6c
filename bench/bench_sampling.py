"""Sampling speed and accuracy per sampler: 32 images at 64x64, side by side in one run.

For each sampler setting: seconds to draw the 32 images of a conditions file (classifier-free guidance
on, the model's guidance scale), and each evaluator's accuracy on them (by default every shipped proxy, of
two architectures: one classifier family can be blind to a defect another sees). Target: under 20 s on 2
cores with at most 1 point of accuracy lost against DDPM-1000.

    python -m bench.bench_sampling [--model M] [--split test] [--also new_test heldout] [--skip-ddpm]
    python -m bench.bench_sampling --samplers dpmsolver-20 --guidance 1 2 3 4 --also new_test heldout
    python -m bench.bench_sampling --samplers dpmsolver-20 --noise gaussian grey-mean --also new_test heldout
    python -m bench.bench_sampling --samplers dpmsolver-20 dpmsolver-10 --skip-ddpm \\
        --memory-format contiguous channels_last

The rows are every combination of the options: ``--samplers`` (``SAMPLER-STEPS``), ``--guidance`` (each
guidance scale w; default: the model's own), so the same table answers "which w buys the most accuracy",
``--noise`` (the starting noise), ``--memory-format`` (the networks' weight layout: what ``load_pipeline`` gives
them, or the other) and ``--refine true false`` (with and without a model's 64-px refiner; ``--refiner RUN
--refiner-strength S`` pairs the model with one first, to try a refiner before shipping the pair).

The "one image" column times what the label picker does on Generate: one image (the split's first
condition), the median of 5 draws after a warm-up (measured: docs/throughput.md#one-image).

One hit on 32 images moves the accuracy by ~1.4 points, so "1 point" cannot be resolved on test.json
alone: ``--also`` samples more conditions (untimed) and the last columns pool every split's labels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench import harness
from lab6.data_root import conditions_file
from lab6.diffusion import INITIAL_NOISE
from lab6.labels import load_conditions
from lab6.loading import load_pipeline
from lab6.refiner import RefinedPipeline
from lab6.samplers import SAMPLERS
from lab6.sampling import generate

SETTINGS = ["ddpm-1000", "ddim-50", "dpmsolver-10", "dpmsolver-20", "dpmsolver-25"]
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, evaluators=True)
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped model)")
    parser.add_argument("--split", default="test", help="test, new_test or a conditions file")
    parser.add_argument("--also", nargs="*", default=[], metavar="SPLIT",
                        help="more conditions to score (not timed), e.g. new_test heldout")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 and average the accuracy")
    parser.add_argument("--skip-ddpm", action="store_true", help="leave out DDPM-1000 (minutes on a CPU)")
    parser.add_argument("--samplers", nargs="+", type=sampler_setting, default=[sampler_setting(s) for s in SETTINGS],
                        metavar="SAMPLER-STEPS", help=f"settings to compare (default: {' '.join(SETTINGS)})")
    parser.add_argument("--guidance", nargs="+", type=float, default=[None], metavar="W",
                        help="guidance scales to try with every sampler (default: the model's)")
    parser.add_argument("--noise", nargs="+", choices=INITIAL_NOISE, default=[None],
                        help="starting noises to try with every sampler (default: the model's)")
    parser.add_argument("--memory-format", nargs="+", choices=MEMORY_FORMATS, default=[None],
                        help="the networks' weight layout to try with every sampler (default: as loaded)")
    parser.add_argument("--refine", nargs="+", type=harness.yes_or_no, default=[True], metavar="true|false",
                        help="with and/or without the model's refiner (default: with it, when it has one)")
    parser.add_argument("--refiner", default=None, metavar="RUN", help="a 64-px refiner to pair the model with")
    parser.add_argument("--refiner-strength", type=float, default=None, metavar="S",
                        help="the last S of the refiner's schedule it redraws (with --refiner: needed)")
    args = parser.parse_args(argv)
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def sampler_setting(text: str) -> tuple[str, int]:
    """``"dpmsolver-20"`` -> ``("dpmsolver", 20)``."""
    sampler, _, steps = text.rpartition("-")
    if sampler not in SAMPLERS or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"bad sampler setting {text!r}: write SAMPLER-STEPS with SAMPLER one of "
                                         f"{', '.join(SAMPLERS)} (e.g. dpmsolver-20)")
    return sampler, int(steps)


def grid(args: argparse.Namespace, pipe) -> list[dict]:
    """Every combination of the options, each unset value the model's own (and no refiner where it has none)."""
    refines = dict.fromkeys(refine and isinstance(pipe, RefinedPipeline) for refine in args.refine)
    return [{"sampler": sampler, "steps": steps, "guidance": pipe.guidance_scale if w is None else w,
             "noise": noise or pipe.initial_noise, "refine": refine, "memory_format": layout or memory_format(pipe)}
            for sampler, steps in args.samplers if not (args.skip_ddpm and sampler == "ddpm")
            for w in args.guidance for noise in args.noise for refine in refines for layout in args.memory_format]


def run(args: argparse.Namespace) -> list[dict]:
    """One row per setting: seconds for the timed split, one image's, each evaluator's accuracy per split and
    pooled."""
    root = harness.data_root(args)
    splits = {split: load_conditions(conditions_file(root, split)) for split in [args.split, *args.also]}
    pairing = {"refiner": args.refiner, "strength": args.refiner_strength}
    pipe = harness.paired(load_pipeline(args.model), {k: v for k, v in pairing.items() if v is not None})
    evaluators = harness.evaluators(args)
    return [measure(pipe, settings, splits, evaluators, args) for settings in grid(args, pipe)]


def measure(pipe, settings: dict, splits: dict[str, list], evaluators: list, args: argparse.Namespace) -> dict:
    """One setting's row: its mean seconds on the timed split over the seeds, one image's, and the hits of every
    evaluator on every split (each seed's images drawn from that seed's noise)."""
    for module in (pipe.unet, getattr(pipe, "refiner", None)):
        if module is not None:
            module.to(memory_format=MEMORY_FORMATS[settings["memory_format"]])
    timed = splits[args.split]
    # Untimed, two steps (and the refiner's one): oneDNN sets up its kernels for each new shape and layout on
    # first use, which would otherwise be timed in whichever row comes first.
    generate(pipe, timed, harness.sampling({**settings, "steps": 2}), progress=False)
    seconds, hits, labels = [], {}, {split: 0 for split in splits}
    for seed in range(args.seeds):
        for split, conditions in splits.items():
            start = time.perf_counter()
            images = generate(pipe, conditions, harness.sampling(settings, seed), progress=False).images
            if split == args.split:
                seconds.append(time.perf_counter() - start)
            labels[split] += sum(len(c) for c in conditions)
            for evaluator in evaluators:
                key = (evaluator.name, split)
                hits[key] = hits.get(key, 0) + sum(evaluator.score(images, conditions).hits)
    names = [e.name for e in evaluators]
    row = {**settings, "seconds": statistics.mean(seconds), "one_image": one_image_seconds(pipe, timed[0], settings),
           "timed": len(timed), "pooled_images": sum(len(c) for c in splits.values()), "labels": sum(labels.values()),
           "accuracy": {n: {split: hits[n, split] / labels[split] for split in splits} for n in names},
           "pooled": {n: sum(hits[n, split] for split in splits) / sum(labels.values()) for n in names}}
    harness.log("{sampler}-{steps} w={guidance:g} {noise} refined={refine} {memory_format}".format(**row), row)
    return row


def memory_format(pipe) -> str:
    """How the first stage's first convolution holds its weights: "channels_last" or "contiguous"."""
    weight = pipe.unet.unet.conv_in.weight
    return "channels_last" if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous() \
        else "contiguous"


def one_image_seconds(pipe, condition: list[str], settings: dict, repeats: int = 5) -> float:
    """Median seconds to draw one image for ``condition`` (the picker's Generate), after one untimed warm-up."""
    generate(pipe, [condition], harness.sampling(settings), progress=False)
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        generate(pipe, [condition], harness.sampling(settings, seed), progress=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """The settings, their time against the first row's, and each evaluator's accuracy per split (and pooled
    over the splits, with ``--also``), with the difference from the first row."""
    base, names, splits = rows[0], list(rows[0]["accuracy"]), [args.split, *args.also]
    first = names[0]

    def points(a: float, b: float) -> str:
        return f"{100 * (a - b):+.1f} pt"

    columns = {"sampler": lambda row: row["sampler"], "steps": lambda row: str(row["steps"]),
               "w": lambda row: f"{row['guidance']:g}", "starting noise": lambda row: row["noise"],
               "refined at 64 px": lambda row: "yes" if row["refine"] else "no",
               "weights": lambda row: row["memory_format"], "seconds": lambda row: f"{row['seconds']:.1f}",
               "speed-up vs {sampler}-{steps} w={guidance:g}".format(**base):
                   lambda row: f"{base['seconds'] / row['seconds']:.2f}x",
               "one image, s": lambda row: f"{row['one_image']:.2f}",
               **{f"{s} ({n})": lambda row, n=n, s=s: f"{row['accuracy'][n][s]:.4f}" for n in names for s in splits},
               f"{args.split} ({first}) vs first row":
                   lambda row: points(row["accuracy"][first][args.split], base["accuracy"][first][args.split])}
    note = ""
    if args.also:
        for n in names:
            columns[f"pooled {n} ({base['pooled_images']} images x {args.seeds} seeds)"] = \
                lambda row, n=n: f"{row['pooled'][n]:.4f}"
            columns[f"pooled {n} vs first row"] = lambda row, n=n: points(row["pooled"][n], base["pooled"][n])
        # Binomial over the pooled labels: a yardstick for which differences one run can resolve.
        error = max((p * (1 - p) / base["labels"]) ** 0.5 for row in rows for p in row["pooled"].values())
        note = (f"One standard error of a pooled accuracy: at most {100 * error:.1f} pt ({base['labels']} labels); of "
                f"the difference of two rows drawn from different noise (DDPM against an ODE solver): "
                f"{100 * error * 2 ** 0.5:.1f} pt.")
    caption = (f"{base['timed']} images timed ({args.split}), model {args.model or 'the shipped model'}, "
               f"{args.seeds} seed(s), {torch.get_num_threads()} thread(s)")
    return {"table": harness.Table(caption, harness.markdown_table(rows, columns), note)}


if __name__ == "__main__":
    main()
