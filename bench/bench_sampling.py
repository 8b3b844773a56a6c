"""Sampling speed and accuracy per sampler: 32 images at 64x64, side by side in one run.

For each sampler setting: seconds to draw the 32 images of a conditions file (classifier-free guidance
on, the model's guidance scale), and each evaluator's accuracy on them (by default every shipped proxy, of
two architectures: one classifier family can be blind to a defect another sees). Target: under 20 s on 2
cores with at most 1 point of accuracy lost against DDPM-1000.

    python bench/bench_sampling.py [--model M] [--split test] [--also new_test heldout] [--skip-ddpm]
    python bench/bench_sampling.py --samplers dpmsolver-20 --guidance 1 2 3 4 --also new_test heldout
    python bench/bench_sampling.py --samplers dpmsolver-20 --noise gaussian grey-mean --also new_test heldout
    python bench/bench_sampling.py --samplers dpmsolver-20 dpmsolver-10 --skip-ddpm \
        --memory-format contiguous channels_last
    python bench/bench_sampling.py --samplers dpmsolver-20 --evaluator-guidance 0 1 4 \
        --guide-with lab6/assets/evaluator/proxy_resnet18.safetensors --also new_test heldout --seeds 2

``--guidance`` repeats every sampler at each guidance scale w (default: the model's own), so the same
table answers "which w buys the most accuracy"; ``--noise`` does the same for the starting noise,
``--memory-format`` for the networks' weight layout (what ``load_pipeline`` gives them, or the other), and
``--refine true false`` for a model's 64-px refiner (``--refiner RUN --refiner-strength S`` pairs the model
with one first, to try a refiner before shipping the pair).
``--evaluator-guidance`` steers with ``--guide-with``'s gradient at each scale: that evaluator's column
then measures nothing (it graded its own steering), so the table marks it and the other evaluator's
column is the one to read.

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

from lab6.data import conditions_file, resolve_data_root
from lab6.diffusion import INITIAL_NOISE, SAMPLERS
from lab6.evaluator import Evaluator, load_evaluators
from lab6.labels import load_conditions
from lab6.pipeline import load_pipeline, with_refiner
from lab6.sampling import generate
from lab6.settings import yes_or_no

SETTINGS = ["ddpm-1000", "ddim-50", "dpmsolver-10", "dpmsolver-20", "dpmsolver-25"]
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def sampler_setting(text: str) -> tuple[str, int]:
    """``"dpmsolver-20"`` -> ``("dpmsolver", 20)``."""
    sampler, _, steps = text.rpartition("-")
    if sampler not in SAMPLERS or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"bad sampler setting {text!r}: write SAMPLER-STEPS with SAMPLER one of "
                                         f"{', '.join(SAMPLERS)} (e.g. dpmsolver-20)")
    return sampler, int(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model or run folder (default: the shipped model)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="test", help="test, new_test or a conditions file")
    parser.add_argument("--evaluator", action="append",
                        help="evaluator file; repeat for several (default: both shipped)")
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
    parser.add_argument("--evaluator-guidance", nargs="+", type=float, default=[0.0], metavar="SCALE",
                        help="evaluator-guidance scales to try (default 0: none); needs --guide-with")
    parser.add_argument("--guide-with", default=None, metavar="EVALUATOR", help="the evaluator that steers")
    parser.add_argument("--refine", nargs="+", type=yes_or_no, default=[True], metavar="true|false",
                        help="with and/or without the model's refiner (default: with it, when it has one)")
    parser.add_argument("--refiner", default=None, metavar="RUN", help="a 64-px refiner to pair the model with")
    parser.add_argument("--refiner-strength", type=float, default=None, metavar="S",
                        help="the last S of the refiner's schedule it redraws (with --refiner)")
    args = parser.parse_args()
    if any(args.evaluator_guidance) and not args.guide_with:
        parser.error("--evaluator-guidance needs --guide-with EVALUATOR (the evaluator that steers)")
    guide = Evaluator.load(args.guide_with) if args.guide_with else None
    root = resolve_data_root(args.data_root, need_images=False)
    splits = {split: load_conditions(conditions_file(root, split)) for split in [args.split, *args.also]}
    loaded = load_pipeline(args.model)
    if args.refiner:
        if args.refiner_strength is None:
            parser.error("--refiner needs --refiner-strength S")
        loaded = with_refiner(loaded, load_pipeline(args.refiner), args.refiner_strength)
    evaluators = load_evaluators(args.evaluator, root)
    names = [e.name for e in evaluators]
    settings = [(sampler, steps, loaded.guidance if w is None else w, noise or loaded.initial_noise, steer,
                 refine and loaded.refiner is not None, layout or memory_format(loaded))
                for sampler, steps in args.samplers if not (args.skip_ddpm and sampler == "ddpm")
                for w in args.guidance for noise in args.noise for steer in args.evaluator_guidance
                for refine in dict.fromkeys(args.refine) for layout in args.memory_format]
    rows = []  # (setting, seconds, {(evaluator, split): accuracy}, {evaluator: pooled accuracy})
    for setting in settings:
        sampler, steps, guidance, noise, steer, refine, layout = setting
        for module in (loaded.unet, loaded.refiner):
            if module is not None:
                module.to(memory_format=MEMORY_FORMATS[layout])
        steering = {"guiding_evaluator": guide, "evaluator_guidance": steer} if steer else {}
        # Untimed, two steps (and the refiner's one): oneDNN sets up its kernels for each new shape and layout
        # on first use, which would otherwise be timed in whichever row comes first.
        generate(loaded, splits[args.split], sampler=sampler, steps=2, guidance=guidance, noise=noise, progress=False,
                 refine=refine, **steering)
        seconds, hits, labels = [], {}, {split: 0 for split in splits}
        for seed in range(args.seeds):
            for split, conditions in splits.items():
                start = time.perf_counter()
                images = generate(loaded, conditions, sampler=sampler, steps=steps, guidance=guidance, seed=seed,
                                  noise=noise, progress=False, refine=refine, **steering).images
                if split == args.split:
                    seconds.append(time.perf_counter() - start)
                labels[split] += sum(len(c) for c in conditions)
                for evaluator in evaluators:
                    key = (evaluator.name, split)
                    hits[key] = hits.get(key, 0) + sum(evaluator.score(images, conditions).hits)
        accuracy = {key: value / labels[key[1]] for key, value in hits.items()}
        pooled = {n: sum(hits[n, s] for s in splits) / sum(labels.values()) for n in names}
        one = one_image_seconds(loaded, splits[args.split][0], sampler=sampler, steps=steps, guidance=guidance,
                                noise=noise, refine=refine, **steering)
        rows.append((setting, sum(seconds) / len(seconds), one, accuracy, pooled))
        print(f"  {sampler}-{steps} w={guidance:g} {noise} steer={steer:g} refined={refine} {layout}: "
              f"{rows[-1][1]:.1f} s, one image {one:.2f} s, accuracy " +
              ", ".join(f"{s} ({n}) {v:.4f}" for (n, s), v in accuracy.items()), flush=True)
    print_table(rows, args, splits, names, loaded, evaluators, guide)


def memory_format(pipe) -> str:
    """How the first stage's first convolution holds its weights: "channels_last" or "contiguous"."""
    weight = pipe.unet.unet.conv_in.weight
    return "channels_last" if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous() \
        else "contiguous"


def one_image_seconds(loaded, condition, repeats: int = 5, **options) -> float:
    """Median seconds to draw one image for ``condition`` (the picker's Generate), after one untimed warm-up."""
    generate(loaded, [condition], progress=False, **options)
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        generate(loaded, [condition], seed=seed, progress=False, **options)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows, args, splits, names, loaded, evaluators, guide) -> None:
    base = rows[0]
    name = "{}-{} w={:g} {} steer={:g} refined={} {}".format(*base[0])
    print(f"\n{len(splits[args.split])} images timed ({args.split}), model {loaded.path}, evaluators "
          + ", ".join(f"{e.name} ({e.source})" for e in evaluators) + f", {args.seeds} seed(s)"
          + (f"; steered by {guide.name} ({guide.source}): * marks its own accuracy under its steering, which "
             "measures nothing" if guide else "") + "\n")
    columns = [(n, s) for n in names for s in splits]
    pooled_columns = "".join(f" pooled {n} ({sum(len(c) for c in splits.values())} images x {args.seeds} seeds) | "
                             f"vs first row |" for n in names) if args.also else ""
    print("| sampler | steps | w | starting noise | evaluator guidance | refined at 64 px | weights | seconds | "
          f"speed-up vs {name} | one image, s | "
          + " | ".join(f"{s} ({n})" for n, s in columns) + f" | {args.split} ({names[0]}) vs first row |"
          + pooled_columns)
    print("| --- " * (11 + len(columns) + (2 * len(names) if args.also else 0)) + "|")
    for (sampler, steps, guidance, noise, steer, refine, layout), secs, one, accuracy, pooled in rows:
        def mark(evaluator_name: str) -> str:  # its own accuracy under its own steering
            return "*" if steer and guide is not None and evaluator_name == guide.name else ""
        line = (f"| {sampler} | {steps} | {guidance:g} | {noise} | {steer:g} | {'yes' if refine else 'no'} | "
                f"{layout} | {secs:.1f} | {base[1] / secs:.2f}x | {one:.2f} | "
                + " | ".join(f"{accuracy[c]:.4f}{mark(c[0])}" for c in columns)
                + f" | {100 * (accuracy[names[0], args.split] - base[3][names[0], args.split]):+.1f} pt |")
        if args.also:
            line += "".join(f" {pooled[n]:.4f}{mark(n)} | {100 * (pooled[n] - base[4][n]):+.1f} pt |" for n in names)
        print(line)
    if args.also:
        # Binomial over the pooled labels: a yardstick for which differences one run can resolve.
        total = args.seeds * sum(len(condition) for conditions in splits.values() for condition in conditions)
        error = max((p * (1 - p) / total) ** 0.5 for row in rows for p in row[4].values())
        print(f"\nOne standard error of a pooled accuracy: at most {100 * error:.1f} pt ({total} labels); of the "
              f"difference of two rows drawn from different noise (DDPM against an ODE solver): "
              f"{100 * error * 2 ** 0.5:.1f} pt.")


if __name__ == "__main__":
    main()
