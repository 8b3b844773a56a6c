"""Both cores: one training run on one thread, on two threads, or as two processes of one thread each.

Each row is the real ``lab6 train`` loop (data, loss, backward, AdamW, EMA, the recipe's precision) for ``--steps``
optimiser steps of the same global batch from scratch, in a fresh folder, run as a subprocess: ``1 thread`` on one
core, ``2 threads`` on both, ``2 processes`` (``--processes 2``: a gloo group, each one thread and half the batch)
on both. Its images/s counts the steps after ``--skip`` (start-up, warm-up and the first compile of anything
excluded), from the run's own metrics.csv. The layouts take turns for ``--rounds`` rounds, so a machine whose speed
drifts slows every row alike; the table gives the mean and range per layout and its ratio to one thread.
Nothing else may run on the machine meanwhile: the rows on both cores are what it slows.

    python -m bench.bench_cores --preset cpu --steps 150 --rounds 2
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import harness

#: layout -> (processes, threads per process)
LAYOUTS = {"1 thread": (1, 1), "2 threads": (1, 2), "2 processes": (2, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--preset", default="cpu", help="the recipe to train (default cpu)")
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per row and round (default 150)")
    parser.add_argument("--skip", type=int, default=50, help="first steps left out of the rate (default 50)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every layout (default 2)")
    parser.add_argument("--layouts", type=lambda s: s.split(","), default=list(LAYOUTS),
                        help=f"comma-separated, of: {', '.join(LAYOUTS)}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="changes",
                        help="a recipe field changed, as lab6 train --set (e.g. mixed_precision=no)")
    args = parser.parse_args(argv)
    unknown = set(args.layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layout(s) {sorted(unknown)}: choose from {', '.join(LAYOUTS)}")
    if args.skip >= args.steps:
        parser.error(f"--skip {args.skip} must be under --steps {args.steps}")
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def command(layout: str, args, out: Path) -> list[str]:
    """The ``lab6 train`` command line of one layout: what a student types (``--processes`` launches the group)."""
    processes, _ = LAYOUTS[layout]
    return [sys.executable, "-m", "lab6.cli", "train", "--data-root", str(harness.data_root(args)), "--preset",
            args.preset, "--steps", str(args.steps), "--out", str(out), "--quiet", "--log-with", "none",
            "--processes", str(processes), "--checkpoint-minutes", "10000", "--set", "eval_every=null",
            "--set", "log_every=25", *[item for change in args.changes for item in ("--set", change)]]


def images_per_second(metrics: Path, skip: int, batch: int) -> float:
    """Images/s over the metrics rows whose window starts at or past step ``skip``: their images over the sum of
    their seconds (each row's own rate is its window's images over its window's seconds)."""
    rows = [(int(r["step"]), float(r["images_per_s"])) for r in csv.DictReader(metrics.open())]
    windows = [(step - before, rate) for (before, _), (step, rate) in zip(rows, rows[1:]) if before >= skip]
    if not windows:
        raise ValueError(f"{metrics}: no metrics row past step {skip}; train more --steps")
    return sum(steps * batch for steps, _ in windows) / sum(steps * batch / rate for steps, rate in windows)


def run(args) -> list[dict]:
    from lab6.presets import preset

    batch = preset(args.preset).batch_size
    rates: dict[str, list[float]] = {layout: [] for layout in args.layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for layout in args.layouts:
                out = Path(tmp) / f"{layout.replace(' ', '-')}-{r}"
                threads = LAYOUTS[layout][1]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                result = subprocess.run(command(layout, args, out), env=env, capture_output=True, text=True)
                if result.returncode:
                    raise RuntimeError(f"{layout}: lab6 train failed (exit {result.returncode}):\n"
                                       f"{result.stderr[-3000:]}")
                rates[layout].append(images_per_second(out / "metrics.csv", args.skip, batch))
                harness.log(f"round {r + 1} {layout}", {"images/s": rates[layout][-1]})
    base = sum(rates[args.layouts[0]]) / args.rounds
    return [{"layout": layout, "images_per_s": sum(v) / len(v), "low": min(v), "high": max(v),
             "ratio": sum(v) / len(v) / base} for layout, v in rates.items()]


def tables(rows: list[dict], args) -> dict[str, harness.Table]:
    lines = harness.markdown_table(rows, {
        "layout": lambda row: row["layout"],
        "images/s (mean, range)": lambda row: f"{row['images_per_s']:.1f} ({row['low']:.1f}-{row['high']:.1f})",
        f"against {args.layouts[0]}": lambda row: f"{row['ratio']:.2f}x"})
    return {"table": harness.Table(f"`lab6 train --preset {args.preset}`, {args.steps} steps per run, the rate "
                                   f"after step {args.skip}, {args.rounds} rounds", lines)}


if __name__ == "__main__":
    main()
