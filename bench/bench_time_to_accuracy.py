"""Time to accuracy: a recipe trained for a budget of core-minutes, scored at checkpoints along the way.

The yardstick of every training-speed claim. Trains ``--preset`` for ``--minutes`` of wall time (with a checkpoint
every ``--every`` minutes; or reads ``--run``, a run folder trained so), then scores each checkpoint's EMA weights:
they draw test.json + new_test.json + held-out conditions holding about ``--heldout-labels`` labels, once per
sampling seed, and both proxy evaluators score them. Printed per checkpoint: core-minutes (wall minutes x threads x
processes), accuracy pooled over every label per evaluator (the mean over the seeds, with their range), and
new_test alone (the unseen combinations). For the last checkpoint it also prints the person-scale two-sample test:
both sets seen as a person sees them (average-pooled to 32 px, Gaussian noise of 2 grey levels, rounded to 8 bits),
beside its controls (other real images; real images with 1 grey level of noise; blurred by sigma 1 px; saturation
cut by 20%). ``--figure`` draws accuracy against core-minutes, beside the runs given with ``--beside``.

    OMP_NUM_THREADS=1 taskset -c 0 python -m bench.bench_time_to_accuracy --data-root D --preset cpu \\
        --minutes 75 --every 15 --out runs/tta-cpu --figure reports/tta.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from bench import harness
from bench.measures import person_scale_controls, person_scale_test
from lab6.config import TrainConfig
from lab6.loading import load_pipeline
from lab6.presets import preset
from lab6.run_files import CHECKPOINTS
from lab6.sampling import Sampling, generate
from lab6.scoring import score_all


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, evaluators=True)
    parser.add_argument("--preset", default="cpu", help="the recipe to train (default cpu)")
    parser.add_argument("--minutes", type=float, default=75.0, help="wall minutes of training (default 75)")
    parser.add_argument("--every", type=float, default=15.0, help="minutes between scored checkpoints (default 15)")
    parser.add_argument("--out", type=Path, help="the run folder to train into (default runs/tta-PRESET)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="changes",
                        help="a recipe field changed, as lab6 train --set (e.g. mixed_precision=no)")
    parser.add_argument("--run", type=Path, help="score this run's checkpoints instead of training")
    parser.add_argument("--seeds", type=harness.int_list, default=[0, 1], help="sampling seeds (default 0,1)")
    parser.add_argument("--heldout-labels", type=int, default=1000, help="held-out labels (default 1000)")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps (default 20)")
    parser.add_argument("--n-ref", type=int, default=1000, help="images per set in the two-sample test (0: none)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="threads per training process, for core-minutes (default: this process's)")
    parser.add_argument("--figure", type=Path, help="write accuracy against core-minutes to this PNG")
    parser.add_argument("--beside", type=Path, nargs="*", default=[], help="--json outputs of earlier runs to draw")
    args = parser.parse_args(argv)
    rows = run(args)
    if args.figure:
        figure(rows, args)
    harness.report(rows, args, tables(rows, args))


def train_run(args: argparse.Namespace) -> Path:
    """The recipe trained for ``--minutes``, a checkpoint every ``--every`` minutes kept, nothing evaluated inside
    the budget (the clock counts training alone)."""
    from lab6.train import train

    out = args.out or Path("runs") / f"tta-{args.preset}"
    changes = dict(map(TrainConfig.parse_override, args.changes))
    cfg = preset(args.preset, minutes=args.minutes, checkpoint_minutes=args.every, eval_every=None, eval_splits=(),
                 keep_checkpoints=math.ceil(args.minutes / args.every) + 1, log_with="none", **changes)
    train(cfg, harness.data_root(args), out, resume=True)
    return out


def score_checkpoint(folder: Path, sets: dict, evaluators, seeds: list[int], steps: int) -> tuple[dict, torch.Tensor]:
    """Hits per evaluator, split and seed of one model folder's images, and the images of the first seed."""
    pipe = load_pipeline(folder)
    hits, first = {}, []
    for seed in seeds:
        for split, conditions in sets.items():
            images = generate(pipe, conditions, Sampling(steps=steps, seed=seed), progress=False).images
            if seed == seeds[0]:
                first.append(images)
            for name, score in score_all(evaluators, images, conditions).items():
                hits.setdefault(name, {}).setdefault(split, []).append(sum(score.hits))
    return hits, torch.cat(first)


def run(args: argparse.Namespace) -> list[dict]:
    root = harness.data_root(args)
    folder = args.run or train_run(args)
    evaluators = harness.evaluators(args)
    sets = harness.scoring_sets(root, args.heldout_labels)
    labels = {split: sum(map(len, conditions)) for split, conditions in sets.items()}
    rows, last_images = [], None
    for checkpoint in sorted((folder / CHECKPOINTS).glob("step-*")):
        record = json.loads((checkpoint / "ema" / "lab6.json").read_text())
        hits, last_images = score_checkpoint(checkpoint / "ema", sets, evaluators, args.seeds, args.steps)
        row = {"step": record["train_step"], "minutes": record["train_minutes"],
               "core_minutes": record["train_minutes"] * args.threads * record.get("processes", 1), "accuracy": {}}
        for name, by_split in hits.items():
            pooled = [sum(by_split[s][i] for s in sets) / sum(labels.values()) for i in range(len(args.seeds))]
            unseen = [h / labels["new_test"] for h in by_split["new_test"]]
            row["accuracy"][name] = {"pooled": pooled, "new_test": unseen}
        harness.log(f"step {row['step']}", {"core-minutes": float(row["core_minutes"]),
                                            **{f"pooled ({n})": sum(a["pooled"]) / len(a["pooled"])
                                               for n, a in row["accuracy"].items()}})
        rows.append(row)
        if args.json:  # after each checkpoint: a killed run keeps what it scored
            harness.write_json(rows, args)
    if rows and args.n_ref:
        rows[-1]["realism"] = person_scale_tests(root, last_images, args.n_ref)
    return rows


def person_scale_tests(root: Path, images: torch.Tensor, n: int) -> dict[str, float]:
    """The person-scale two-sample test for the model's images and the controls, each against the same held-out
    real images: {row: accuracy}."""
    reference = harness.reference_set(root, n)
    sets = {**person_scale_controls(reference.others), "the model's images": images[:n]}
    return {name: person_scale_test(reference.images, other).accuracy for name, other in sets.items()}


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    names = list(rows[0]["accuracy"]) if rows else []

    def spread(values: list[float]) -> str:
        return f"{sum(values) / len(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    columns = {"step": lambda row: str(row["step"]), "core-minutes": lambda row: f"{row['core_minutes']:.1f}",
               **{f"pooled ({n})": lambda row, n=n: spread(row["accuracy"][n]["pooled"]) for n in names},
               **{f"new_test ({n})": lambda row, n=n: spread(row["accuracy"][n]["new_test"]) for n in names}}
    caption = (f"DPM-Solver++ {args.steps}, the model's guidance scale; seeds {args.seeds} (mean, range); pooled: "
               f"test + new_test + about {args.heldout_labels} held-out labels")
    result = {"accuracy": harness.Table(caption, harness.markdown_table(rows, columns))}
    realism = rows[-1].get("realism") if rows else None
    if realism:
        lines = ["| images | two-sample test at person scale |", "| --- | --- |",
                 *(f"| {name} | {accuracy:.3f} |" for name, accuracy in realism.items())]
        result["realism"] = harness.Table(f"the last checkpoint against {args.n_ref} held-out real images; 0.5: "
                                          "told apart no better than chance", lines)
    return result


def figure(rows: list[dict], args: argparse.Namespace) -> None:
    """Accuracy (pooled, the first evaluator, mean over seeds) against core-minutes, with the runs of ``--beside``."""
    from lab6.figures.common import new_figure, save_figure

    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for label, points in [("this run", rows), *((p.stem, json.loads(p.read_text())["rows"]) for p in args.beside)]:
        name = next(iter(points[0]["accuracy"]))
        ax.plot([r["core_minutes"] for r in points],
                [sum(r["accuracy"][name]["pooled"]) / len(r["accuracy"][name]["pooled"]) for r in points],
                "o-", label=f"{label} ({name})")
    ax.set_xlabel("core-minutes of training")
    ax.set_ylabel("accuracy, pooled")
    ax.legend()
    save_figure(fig, args.figure.parent, args.figure.stem)


if __name__ == "__main__":
    main()
