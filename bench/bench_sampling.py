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
    python -m bench.bench_sampling --samplers dpmsolver-20 dpmsolver-10 RUN/steps-4/model@ddim-4 \\
        --also new_test heldout --heldout-labels 1000 --seeds 2 --person-scale 500

The rows are every combination of the options: ``--samplers`` (``SAMPLER-STEPS``), ``--guidance`` (each
guidance scale w; default: the model's own), so the same table answers "which w buys the most accuracy",
``--noise`` (the starting noise), ``--memory-format`` (the networks' weight layout: what ``load_pipeline`` gives
them, or the other) and ``--refine true false`` (with and without a model's 64-px refiner; ``--refiner RUN
--refiner-strength S`` pairs the model with one first, to try a refiner before shipping the pair).

A setting may name its own model, ``MODEL@SAMPLER-STEPS`` (a model folder or run; the others use ``--model``), so
that a distilled model and its teacher share one table: ``lab6/assets/model@dpmsolver-20 runs/d/model@ddim-4``.

The "one image" column times what the label picker does on Generate: one image (the split's first
condition), the median of 5 draws after a warm-up (measured: docs/throughput.md#one-image). "calls" counts the
network calls per image: a guided step costs two (conditional and unconditional), and the refiner's steps count.
``--person-scale N`` adds the person-scale two-sample test (``measures.person_scale_test``) of each row's images,
drawn for the labels of N held-out real images, against those images, and a table of the test's controls.

One hit on 32 images moves the accuracy by ~1.4 points, so "1 point" cannot be resolved on test.json
alone: ``--also`` samples more conditions (untimed) and the last columns pool every split's labels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench import harness
from bench.measures import person_scale_controls, person_scale_test
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
    parser.add_argument("--heldout-labels", type=int, default=None, metavar="N",
                        help="with --also heldout: held-out conditions holding about N labels (default: the 128 "
                             "shipped held-out conditions)")
    parser.add_argument("--person-scale", type=int, default=0, metavar="N",
                        help="the person-scale two-sample test on N held-out real images (default 0: none)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 and average the accuracy")
    parser.add_argument("--skip-ddpm", action="store_true", help="leave out DDPM-1000 (minutes on a CPU)")
    parser.add_argument("--samplers", nargs="+", type=sampler_setting, default=[sampler_setting(s) for s in SETTINGS],
                        metavar="[MODEL@]SAMPLER-STEPS", help=f"settings to compare (default: {' '.join(SETTINGS)})")
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


def sampler_setting(text: str) -> tuple[str | None, str, int]:
    """``"dpmsolver-20"`` -> ``(None, "dpmsolver", 20)``;
    ``"runs/d/model@ddim-4"`` -> ``("runs/d/model", "ddim", 4)``."""
    model, _, setting = text.rpartition("@")
    sampler, _, steps = setting.rpartition("-")
    if sampler not in SAMPLERS or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"bad sampler setting {text!r}: write [MODEL@]SAMPLER-STEPS with SAMPLER one "
                                         f"of {', '.join(SAMPLERS)} (e.g. dpmsolver-20)")
    return model or None, sampler, int(steps)


def grid(args: argparse.Namespace, pipes: dict) -> list[dict]:
    """Every combination of the options, each unset value its model's own (and no refiner where it has none);
    ``pipes``: each setting's model (None: ``--model``) loaded."""
    rows = []
    for model, sampler, steps in args.samplers:
        if args.skip_ddpm and sampler == "ddpm":
            continue
        pipe = pipes[model]
        refines = dict.fromkeys(refine and isinstance(pipe, RefinedPipeline) for refine in args.refine)
        rows += [{"model": model or args.model or "shipped", "sampler": sampler, "steps": steps,
                  "guidance": pipe.guidance_scale if w is None else w, "noise": noise or pipe.initial_noise,
                  "refine": refine, "memory_format": layout or memory_format(pipe), "pipe": model}
                 for w in args.guidance for noise in args.noise for refine in refines for layout in args.memory_format]
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    """One row per setting: seconds for the timed split, one image's, network calls per image, each evaluator's
    accuracy per split and pooled (per seed), and the person-scale test where asked."""
    root = harness.data_root(args)
    splits = {split: load_conditions(conditions_file(root, split)) for split in [args.split, *args.also]
              if not (split == "heldout" and args.heldout_labels)}
    if "heldout" in args.also and args.heldout_labels:
        splits["heldout"] = harness.scoring_sets(root, args.heldout_labels)["heldout"]
    pairing = {"refiner": args.refiner, "strength": args.refiner_strength}
    pipes = {model: harness.paired(load_pipeline(model or args.model), {k: v for k, v in pairing.items()
                                                                          if v is not None})
             for model in dict.fromkeys(model for model, _, _ in args.samplers)}
    evaluators = harness.evaluators(args)
    reference = harness.reference_set(root, args.person_scale) if args.person_scale else None
    rows = [measure(pipes[settings.pop("pipe")], settings, splits, evaluators, args, reference)
            for settings in grid(args, pipes)]
    if reference is not None and rows:
        rows[0]["controls"] = {name: person_scale_test(reference.images, images).accuracy
                               for name, images in person_scale_controls(reference.others).items()}
    return rows


def measure(pipe, settings: dict, splits: dict[str, list], evaluators: list, args: argparse.Namespace,
            reference=None) -> dict:
    """One setting's row: its mean seconds on the timed split over the seeds, one image's, its network calls, the
    hits of every evaluator on every split (each seed's images drawn from that seed's noise), and the person-scale
    test of images drawn for ``reference``'s labels (a ``harness.ReferenceSet``; None: no test)."""
    for module in (pipe.unet, getattr(pipe, "refiner", None)):
        if module is not None:
            module.to(memory_format=MEMORY_FORMATS[settings["memory_format"]])
    timed = splits[args.split]
    # Untimed, two steps (and the refiner's one): oneDNN sets up its kernels for each new shape and layout on
    # first use, which would otherwise be timed in whichever row comes first.
    generate(pipe, timed, harness.sampling({**settings, "steps": 2}), progress=False)
    seconds, hits, labels, by_seed = [], {}, {split: 0 for split in splits}, {e.name: [] for e in evaluators}
    for seed in range(args.seeds):
        seed_hits = dict.fromkeys(by_seed, 0)
        for split, conditions in splits.items():
            start = time.perf_counter()
            images = generate(pipe, conditions, harness.sampling(settings, seed), progress=False).images
            if split == args.split:
                seconds.append(time.perf_counter() - start)
            labels[split] += sum(len(c) for c in conditions)
            for evaluator in evaluators:
                key, found = (evaluator.name, split), sum(evaluator.score(images, conditions).hits)
                hits[key] = hits.get(key, 0) + found
                seed_hits[evaluator.name] += found
        for name, found in seed_hits.items():
            by_seed[name].append(found / sum(map(len, (c for split in splits.values() for c in split))))
    names = [e.name for e in evaluators]
    row = {**settings, "seconds": statistics.mean(seconds), "one_image": one_image_seconds(pipe, timed[0], settings),
           "timed": len(timed), "pooled_images": sum(len(c) for c in splits.values()), "labels": sum(labels.values()),
           "accuracy": {n: {split: hits[n, split] / labels[split] for split in splits} for n in names},
           "pooled": {n: sum(hits[n, split] for split in splits) / sum(labels.values()) for n in names},
           "pooled_by_seed": by_seed, "calls": calls_per_image(pipe, settings)}
    if reference is not None:
        drawn = generate(pipe, reference.conditions, harness.sampling(settings), progress=False).images
        test = person_scale_test(reference.images, drawn)
        row["person_scale"] = {"accuracy": test.accuracy, "standard_error": test.standard_error}
    harness.log("{model}@{sampler}-{steps} w={guidance:g} {noise} refined={refine} {memory_format}".format(**row), row)
    return row


def calls_per_image(pipe, settings: dict) -> int:
    """Network calls per image: each first-stage step one (two when guided, w != 1), and the refiner's steps."""
    steps = settings["steps"]
    calls = steps * (1 if settings["guidance"] == 1 else 2)
    if settings["refine"]:
        calls += pipe.refiner_steps(steps) * (1 if pipe.config.refiner_guidance_scale == 1 else 2)
    return calls


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

    models = dict.fromkeys(row.get("model") for row in rows)
    columns = {**({"model": lambda row: str(row["model"])} if len(models) > 1 else {}),
               "sampler": lambda row: row["sampler"], "steps": lambda row: str(row["steps"]),
               "w": lambda row: f"{row['guidance']:g}", "starting noise": lambda row: row["noise"],
               "refined at 64 px": lambda row: "yes" if row["refine"] else "no",
               "weights": lambda row: row["memory_format"], "seconds": lambda row: f"{row['seconds']:.1f}",
               "speed-up vs {sampler}-{steps} w={guidance:g}".format(**base) + (" (row 1)" if len(models) > 1 else ""):
                   lambda row: f"{base['seconds'] / row['seconds']:.2f}x",
               "one image, s": lambda row: f"{row['one_image']:.2f}",
               **({"calls per image": lambda row: str(row["calls"])} if "calls" in base else {}),
               **{f"{s} ({n})": lambda row, n=n, s=s: f"{row['accuracy'][n][s]:.4f}" for n in names for s in splits},
               f"{args.split} ({first}) vs first row":
                   lambda row: points(row["accuracy"][first][args.split], base["accuracy"][first][args.split])}
    note = ""
    if args.also:
        for n in names:
            columns[f"pooled {n} ({base['pooled_images']} images x {args.seeds} seeds)"] = \
                lambda row, n=n: f"{row['pooled'][n]:.4f}"
            columns[f"pooled {n} vs first row"] = lambda row, n=n: points(row["pooled"][n], base["pooled"][n])
            if len(base.get("pooled_by_seed", {}).get(n, [])) > 1:
                columns[f"pooled {n}, each seed"] = \
                    lambda row, n=n: " / ".join(f"{a:.4f}" for a in row["pooled_by_seed"][n])
        # Binomial over the pooled labels: a yardstick for which differences one run can resolve.
        error = max((p * (1 - p) / base["labels"]) ** 0.5 for row in rows for p in row["pooled"].values())
        note = (f"One standard error of a pooled accuracy: at most {100 * error:.1f} pt ({base['labels']} labels); of "
                f"the difference of two rows drawn from different noise (DDPM against an ODE solver): "
                f"{100 * error * 2 ** 0.5:.1f} pt.")
    if "person_scale" in base:
        columns["person-scale two-sample test (0.5: not told apart)"] = \
            lambda row: "{accuracy:.3f} +- {standard_error:.3f}".format(**row["person_scale"])
    model = "" if len(models) > 1 else f"model {args.model or 'the shipped model'}, "
    caption = (f"{base['timed']} images timed ({args.split}), {model}{args.seeds} seed(s), "
               f"{torch.get_num_threads()} thread(s)")
    result = {"table": harness.Table(caption, harness.markdown_table(rows, columns), note)}
    if "controls" in base:
        lines = ["| images | person-scale two-sample test |", "| --- | --- |",
                 *(f"| {name} | {accuracy:.3f} |" for name, accuracy in base["controls"].items())]
        result["controls"] = harness.Table(f"the test's controls, against the same {args.person_scale} held-out real "
                                           "images", lines)
    return result


if __name__ == "__main__":
    main()
