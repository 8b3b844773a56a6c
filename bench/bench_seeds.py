"""Is one sampling setting better than another beyond the seed-to-seed spread? Paired accuracy over many seeds.

One seed of 414 labels moves a pooled accuracy by about a point from the starting noise alone, so two settings a
point apart cannot be told apart by one draw. This bench draws every row from the same starting noise per seed
and reports each row's difference from the first row *paired per seed*: the first stage's luck cancels, and the
standard error of the mean difference (sd of the per-seed differences / sqrt(seeds)) says what is resolved.

For each seed: test.json + new_test.json + the held-out 128 conditions (414 labels). Rows that share first-stage
settings share its images (drawn once per seed); each refiner setting redraws those same images from the same
refiner noise (a generator seeded with the seed), so refiner rows differ only by their setting. Printed per row:
pooled accuracy by each evaluator with its sd over seeds, the paired difference from the first row (SE), the
share of each shape's labels the last evaluator finds, sharpness over real images' and the colour cast.

    python -m bench.bench_seeds --data-root ../shared/iclevr-reference --seeds 0-10 \\
        --row "shipped=" --row "first stage alone=refine=false" \\
        --row "strength 0.1=strength=0.1" --row "strength 0.15=strength=0.15"

A row is ``LABEL=key=value,...``: first-stage keys ``sampler``, ``steps``, ``guidance`` and ``noise`` (each the
model's own by default), ``refine=false`` (the first stage alone), and the refiner's keys
(``harness.PAIRING_KEYS``): ``strength`` (redraw the last S of the refiner's schedule), ``refiner_steps``
(default: as many as the model's pair takes at that strength, ``RefinedPipeline.refiner_steps``), ``refiner=RUN``
(another refiner; default the model's own) and the rest. ``--json PATH`` writes every seed's rows (after each
seed, so a killed run keeps what it drew); ``--merge A.json B.json ...`` prints the table of runs made apart
(e.g. seeds 0-5 on one core, 6-10 on the other).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import torch

from bench import harness
from lab6.data_root import conditions_file
from lab6.evaluator import found_by_shape
from lab6.fidelity import colour_cast, sharpness
from lab6.labels import SHAPES, encode_many, load_conditions
from lab6.loading import load_pipeline
from lab6.refiner import RefinedPipeline
from lab6.samplers import DEFAULT_SAMPLER, DEFAULT_STEPS
from lab6.sampling import generate

ROW_KEYS = {**harness.SAMPLING_KEYS, **harness.PAIRING_KEYS}
SPLITS = ("test", "new_test", "heldout")


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, evaluators=True)
    harness.add_rows(parser, ROW_KEYS, help="a setting to draw; repeat (the first is the baseline of the differences)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--seeds", type=harness.int_list, default=[0, 1, 2, 3], help="e.g. 0-10 (default 0-3)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the table of earlier --json runs together instead of drawing")
    args = parser.parse_args(argv)
    if not args.row and not args.merge:
        parser.error("give at least one --row (or --merge)")
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


class Row(NamedTuple):
    """How one row draws: its first stage's settings, and the pipeline whose refiner redraws those images."""

    label: str
    settings: dict  # its settings (harness.SAMPLING_KEYS for the first stage)
    steps: int  # the first stage's steps, which the refiner's are counted against
    paired: object  # the pipeline whose refiner redraws the first stage's images (None: the first stage alone)


def plan_rows(pipe, rows: list[tuple[str, dict]]) -> list[Row]:
    """Each row's pipelines, built once (a refiner run is loaded once, not once per seed)."""
    planned = []
    for label, settings in rows:
        paired = harness.paired(pipe, settings)
        refined = settings.get("refine", True) and isinstance(paired, RefinedPipeline)
        steps = settings.get("steps") or DEFAULT_STEPS[settings.get("sampler", DEFAULT_SAMPLER)]
        planned.append(Row(label, settings, steps, paired if refined else None))
    return planned


def draw_rows(pipe, planned: list[Row], conditions: list, seed: int) -> dict[str, torch.Tensor]:
    """Each row's images (in [-1, 1], 64 px) for one seed; rows with the same first-stage settings share its draw."""
    first_stages, images = {}, {}
    for row in planned:
        first = {key: row.settings[key] for key in harness.SAMPLING_KEYS if key in row.settings and key != "refine"}
        key = json.dumps(first, sort_keys=True)
        if key not in first_stages:
            sampling = harness.sampling({**first, "refine": False}, seed)
            first_stages[key] = generate(pipe, conditions, sampling, progress=False).images
        if row.paired is None:
            images[row.label] = first_stages[key]
            continue
        refined = row.paired.refine((first_stages[key] + 1) / 2, conditions, row.steps,
                                    torch.Generator().manual_seed(seed))
        images[row.label] = refined * 2 - 1
    return images


def run(args: argparse.Namespace) -> list[dict]:
    """One row per (setting, seed): each evaluator's hits, the shapes found, sharpness over real images', cast."""
    if args.merge:
        return merge([json.loads(path.read_text())["rows"] for path in args.merge])
    pipe = load_pipeline(args.model)
    evaluators, root = harness.evaluators(args), harness.data_root(args)
    conditions = [c for split in SPLITS for c in load_conditions(conditions_file(root, split))]
    multi_hot = torch.tensor(encode_many(conditions))
    real_sharpness = float(sharpness(harness.reference_set(root, 1000).images).mean())
    planned, rows = plan_rows(pipe, args.row), []
    for seed in args.seeds:
        start = time.perf_counter()
        for label, images in draw_rows(pipe, planned, conditions, seed).items():
            scores = {e.name: e.score(images, conditions) for e in evaluators}
            rows.append({"row": label, "seed": seed, "labels": int(multi_hot.sum()),
                         "hits": {n: sum(s.hits) for n, s in scores.items()},
                         "shapes": {n: found_by_shape(s.probabilities, multi_hot) for n, s in scores.items()},
                         "sharpness": float(sharpness(images).mean()) / real_sharpness,
                         "cast": float(colour_cast(images).mean())})
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s): " + "; ".join(
            f"{row['row']} " + "/".join(map(str, row["hits"].values())) for row in rows if row["seed"] == seed),
            flush=True)
        if args.json:  # after every seed: a killed run keeps what it drew
            harness.write_json(rows, args)
    return rows


def merge(runs: list[list[dict]]) -> list[dict]:
    """The rows of runs of the same settings on different seeds, as one run's."""
    def shape(rows: list[dict]) -> tuple:
        return list(dict.fromkeys(row["row"] for row in rows)), sorted(rows[0]["hits"])

    seen = set()
    for rows in runs:
        if shape(rows) != shape(runs[0]):
            raise SystemExit("--merge: the runs must have the same rows and evaluators")
        seeds = {row["seed"] for row in rows}
        if seeds & seen:
            raise SystemExit(f"--merge: seed(s) {sorted(seeds & seen)} drawn in two runs; merge runs of other seeds")
        seen |= seeds
    return [row for rows in runs for row in rows]


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """One line per setting: pooled accuracy (sd over seeds), the difference from the first setting paired per
    seed (SE), the shapes the last evaluator finds, sharpness over real images' and the colour cast."""
    labels, names = list(dict.fromkeys(row["row"] for row in rows)), list(rows[0]["hits"])
    by = {(row["row"], row["seed"]): row for row in rows}
    seeds, n_labels, base, last = sorted({row["seed"] for row in rows}), rows[0]["labels"], labels[0], names[-1]

    def mean(label: str, value) -> float:
        return statistics.mean(value(by[label, seed]) for seed in seeds)

    def found(label: str, shape: str) -> str:
        return f"{mean(label, lambda row: row['shapes'][last][shape]):.3f}"

    def accuracies(label: str, n: str) -> list[float]:
        return [by[label, seed]["hits"][n] / n_labels for seed in seeds]

    def pooled(label: str, n: str) -> str:
        acc = accuracies(label, n)
        return f"{statistics.mean(acc):.4f} ({statistics.stdev(acc) if len(acc) > 1 else 0:.3f})"

    def paired(label: str, n: str) -> str:
        diffs = [100 * (a - b) for a, b in zip(accuracies(label, n), accuracies(base, n))]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
        return "" if label == base else f"{statistics.mean(diffs):+.1f} pt ({se:.1f})"

    columns = {"row": lambda label: label,
               **{f"{n} pooled (sd)": lambda label, n=n: pooled(label, n) for n in names},
               **{f"{n} - first row": lambda label, n=n: paired(label, n) for n in names},
               **{f"{shape} ({last})": lambda label, shape=shape: found(label, shape) for shape in SHAPES},
               "sharpness / real": lambda label: f"{mean(label, lambda r: r['sharpness']):.2f}",
               "cast": lambda label: f"{mean(label, lambda r: r['cast']):.2f}"}
    caption = f"{len(seeds)} seeds x {n_labels} labels; differences paired per seed against {base!r} (SE)"
    return {"table": harness.Table(caption, harness.markdown_table(labels, columns))}


if __name__ == "__main__":
    main()
