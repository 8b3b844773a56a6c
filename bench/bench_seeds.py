"""Is one sampling setting better than another beyond the seed-to-seed spread? Paired accuracy over many seeds.

One seed of 414 labels moves a pooled accuracy by about a point from the starting noise alone, so two settings a
point apart cannot be told apart by one draw. This bench draws every row from the same starting noise per seed
and reports each row's difference from the first row *paired per seed*: the first stage's luck cancels, and the
standard error of the mean difference (sd of the per-seed differences / sqrt(seeds)) says what is resolved.

For each seed: test.json + new_test.json + the held-out 128 conditions (414 labels). Rows that share first-stage
settings share its images (drawn once per seed); each refiner setting redraws those same images from the same
refiner noise (a generator seeded with the seed), so refiner rows differ only by their setting. Printed per row:
pooled accuracy by each evaluator with its sd over seeds, the paired difference from the first row (SE), the
share of each shape's labels the second evaluator finds, sharpness over real images' and the colour cast.

    python bench/bench_seeds.py --data-root ../shared/iclevr-reference --seeds 0-10 \\
        --row "shipped=" --row "first stage alone=refine=false" \\
        --row "strength 0.1=strength=0.1" --row "strength 0.15=strength=0.15"

A row is ``LABEL=key=value,...``: first-stage keys ``sampler``, ``steps``, ``guidance``, ``noise`` and
``guidance_interval`` (``LOW:HIGH`` or ``none``; each the model's own by default), ``refine=false`` (the first
stage alone), and refiner keys ``strength`` (redraw the last S of the refiner's schedule), ``refiner_steps``
(default: as many as the model's pair takes at that strength, ``Lab6Pipeline.stage_steps``) and
``refiner=RUN`` (another refiner; default the model's own). ``--json FILE`` writes every seed's hits;
``--merge A.json B.json ...`` prints the table of runs made apart (e.g. seeds 0-5 on one core, 6-10 on the other).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import torch

from lab6.data import ICLEVRDataset, conditions_file
from lab6.diffusion import DEFAULT_STEPS, check_guidance_interval
from lab6.evaluator import found_by_shape, load_evaluators
from lab6.fidelity import colour_cast, sharpness
from lab6.labels import SHAPES, encode_many, load_conditions
from lab6.pipeline import load_pipeline, refiner_of, with_refiner
from lab6.proxy import split_holdout
from lab6.sampling import generate
from lab6.settings import yes_or_no


def interval(text: str) -> tuple[float, float] | None:
    """``"0.28:5.42"`` -> ``(0.28, 5.42)``; ``"none"`` -> None (guidance at every step)."""
    if text == "none":
        return None
    try:
        return check_guidance_interval(text.split(":"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"bad guidance_interval {text!r}: write LOW:HIGH or none ({err})") from None


FIRST_STAGE_KEYS = {"sampler": str, "steps": int, "guidance": float, "noise": str, "guidance_interval": interval,
                    "refine": yes_or_no}
REFINER_KEYS = {"strength": float, "refiner_steps": int, "refiner": str}
SPLITS = ("test", "new_test", "heldout")


def row_setting(text: str) -> tuple[str, dict]:
    """``"strength 0.1=strength=0.1,refiner_steps=4"``
    -> ``("strength 0.1", {"strength": 0.1, "refiner_steps": 4})``."""
    label, sep, options = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"bad row {text!r}: write LABEL=key=value,... "
                                         "(LABEL= for the model as shipped)")
    readers = {**FIRST_STAGE_KEYS, **REFINER_KEYS}
    settings = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if key not in readers or not sep:
            raise argparse.ArgumentTypeError(f"bad option {item!r} in row {label!r}: write key=value with key one of "
                                             f"{', '.join(readers)}")
        settings[key] = readers[key](value)
    return label, settings


def seed_list(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise argparse.ArgumentTypeError(f"bad seeds {text!r}: write e.g. 0-10 or 0,2,5")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


class Row(NamedTuple):
    """How one row draws: its first stage (a pipeline and generate's keys) and its refiner pair, if any."""

    label: str
    drawing: object  # the model, with the row's guidance interval
    first: dict  # generate's keys for the first stage
    steps: int  # the first stage's steps
    paired: object  # the pair that refines the first stage's images (None: the first stage alone)


def plan_rows(pipe, rows) -> list[Row]:
    """Each row's pipelines, built once (a refiner run is loaded once, not once per seed)."""
    planned = []
    for label, settings in rows:
        first = {k: v for k, v in settings.items()
                 if k in FIRST_STAGE_KEYS and k not in ("refine", "guidance_interval")}
        drawing = (pipe.with_guidance_interval(settings["guidance_interval"]) if "guidance_interval" in settings
                   else pipe)
        steps = first.get("steps") or DEFAULT_STEPS[first.get("sampler", "dpmsolver")]
        paired = None
        if settings.get("refine", True) and (pipe.refiner is not None or "refiner" in settings):
            refiner = load_pipeline(settings["refiner"]) if "refiner" in settings else refiner_of(pipe)
            ratio = (settings["refiner_steps"] / steps if "refiner_steps" in settings
                     else pipe.config.refiner_step_ratio)
            paired = with_refiner(pipe, refiner, settings.get("strength", pipe.config.refiner_strength),
                                  step_ratio=ratio,
                                  spacing=pipe.config.refiner_spacing if "refiner" not in settings else "karras")
        planned.append(Row(label, drawing, first, steps, paired))
    return planned


def draw_rows(planned: list[Row], conditions, seed: int) -> dict[str, torch.Tensor]:
    """Each row's images (in [-1, 1], 64 px) for one seed; rows with the same first-stage settings share its draw."""
    first_stages, images = {}, {}
    for row in planned:
        key = json.dumps([row.first, row.drawing.config.guidance_interval], sort_keys=True)
        if key not in first_stages:
            first_stages[key] = generate(row.drawing, conditions, seed=seed, refine=False, progress=False,
                                         **row.first).images
        if row.paired is None:
            images[row.label] = first_stages[key]
            continue
        refined = row.paired.refine((first_stages[key] + 1) / 2, conditions, row.steps,
                                    torch.Generator().manual_seed(seed))
        images[row.label] = refined * 2 - 1
    return images


def run(args) -> dict:
    pipe = load_pipeline(args.model)
    evaluators = load_evaluators(args.evaluator, None)
    conditions = [c for split in SPLITS for c in load_conditions(conditions_file(args.data_root, split))]
    multi_hot = torch.tensor(encode_many(conditions))
    dataset = ICLEVRDataset(args.data_root, image_size=64, progress=False)
    real, _ = dataset.batch(split_holdout(len(dataset))[0][:1000])  # held out from both proxies
    record = {"labels": int(multi_hot.sum()), "evaluators": [e.name for e in evaluators],
              "real_sharpness": float(sharpness(real).mean()), "rows": [label for label, _ in args.row], "seeds": {}}
    planned = plan_rows(pipe, args.row)
    for seed in args.seeds:
        start = time.perf_counter()
        per_row = {}
        for label, images in draw_rows(planned, conditions, seed).items():
            scores = {e.name: e.score(images, conditions) for e in evaluators}
            per_row[label] = {"hits": {n: sum(s.hits) for n, s in scores.items()},
                              "shapes": {n: found_by_shape(s.probabilities, multi_hot) for n, s in scores.items()},
                              "sharpness": float(sharpness(images).mean()), "cast": float(colour_cast(images).mean())}
        record["seeds"][str(seed)] = per_row
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s): " + "; ".join(
            f"{label} " + "/".join(str(r["hits"][n]) for n in record["evaluators"]) for label, r in per_row.items()),
            flush=True)
        if args.json:  # after every seed: a killed run keeps what it drew
            args.json.write_text(json.dumps(record, indent=1))
    return record


def merge(records: list[dict]) -> dict:
    """One record from runs of the same rows on different seeds."""
    merged = {**records[0], "seeds": {}}
    for record in records:
        if record["rows"] != merged["rows"] or record["evaluators"] != merged["evaluators"]:
            raise SystemExit("--merge: the runs must have the same rows and evaluators")
        merged["seeds"].update(record["seeds"])
    return merged


def table(record: dict) -> list[str]:
    names, rows, seeds = record["evaluators"], record["rows"], list(record["seeds"].values())
    labels, last = record["labels"], record["evaluators"][-1]

    def accuracies(row, name):
        return [s[row]["hits"][name] / labels for s in seeds]

    lines = [f"{len(seeds)} seeds x {labels} labels; differences paired per seed against {rows[0]!r} (SE)", "",
             "| row | " + " | ".join(f"{n} pooled (sd)" for n in names) + " | "
             + " | ".join(f"{n} - first row" for n in names) + " | " + " | ".join(f"{s} ({last})" for s in SHAPES)
             + " | sharpness / real | cast |", "| --- " * (3 + 2 * len(names) + len(SHAPES)) + "|"]
    for row in rows:
        cells = []
        for n in names:
            acc = accuracies(row, n)
            cells.append(f"{statistics.mean(acc):.4f} ({statistics.stdev(acc) if len(acc) > 1 else 0:.3f})")
        for n in names:
            diffs = [100 * (a - b) for a, b in zip(accuracies(row, n), accuracies(rows[0], n))]
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
            cells.append("" if row == rows[0] else f"{statistics.mean(diffs):+.1f} pt ({se:.1f})")
        for shape in SHAPES:
            cells.append(f"{statistics.mean(s[row]['shapes'][last][shape] for s in seeds):.3f}")
        cells.append(f"{statistics.mean(s[row]['sharpness'] for s in seeds) / record['real_sharpness']:.2f}")
        cells.append(f"{statistics.mean(s[row]['cast'] for s in seeds):.2f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="the real data (course layout): test.json, new_test.json, held-out images")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--row", type=row_setting, action="append", default=[], metavar="LABEL=k=v,...",
                        help="a setting to draw; repeat (the first is the baseline of the paired differences)")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3], help="e.g. 0-10 (default 0-3)")
    parser.add_argument("--evaluator", action="append", default=None,
                        help="evaluator file; repeat for several (default: the shipped ones)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write every seed's hits (after each seed)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the table of earlier --json runs together instead of drawing")
    args = parser.parse_args()
    if args.merge:
        record = merge([json.loads(path.read_text()) for path in args.merge])
    else:
        if not args.data_root or not args.row:
            parser.error("give --data-root and at least one --row (or --merge)")
        record = run(args)
    print("\n" + "\n".join(table(record)))


if __name__ == "__main__":
    main()
