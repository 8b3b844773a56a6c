"""Benchmark the built-in synthetic i-CLEVR renderer: images per second with 1 and 2 worker processes.

    python -m bench.bench_render               # the full 18,000-image set, 1 and 2 workers (a few minutes)
    python -m bench.bench_render --n 200       # a quick check
    python -m bench.bench_render --workers 2   # one worker count only

Each run renders into a fresh temporary folder (deleted afterwards) and includes starting the worker processes
and writing the PNGs and JSON files. "cpu s" adds up the CPU time of this process and its workers: on a machine
that is busy with something else (a training run), it tells the renderer's own cost better than wall time.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from bench import harness
from lab6.synthetic import DEFAULT_N, render_dataset


def main(argv: list[str] | None = None) -> None:
    parser = harness.parser(__doc__, data=False)
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"images per run (default {DEFAULT_N})")
    parser.add_argument("--workers", type=harness.int_list, default=[1, 2], help="worker counts to time (default 1,2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar during each run")
    args = parser.parse_args(argv)
    if args.n < 1 or min(args.workers) < 1:
        parser.error(f"--n {args.n}, --workers {args.workers}: give 1 or more of each")
    rows = run(args)
    harness.report(rows, args, tables(rows, args))


def cpu_seconds() -> float:
    """CPU time of this process plus its finished child processes (the render workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(args: argparse.Namespace) -> list[dict]:
    """One row per worker count: wall and CPU seconds for ``--n`` images."""
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="lab6-bench-render-") as tmp:
            start, cpu = time.perf_counter(), cpu_seconds()
            render_dataset(Path(tmp) / "data", args.n, args.seed, size=args.size, workers=workers,
                           progress=args.progress)
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        rows.append({"workers": workers, "images": args.n, "seconds": seconds, "cpu_seconds": cpu})
        harness.log(f"{workers} worker(s)", rows[-1])
    return rows


def tables(rows: list[dict], args: argparse.Namespace) -> dict[str, harness.Table]:
    """Per worker count: images, seconds, CPU seconds, images/s, and the time the full set would take."""
    columns = {"workers": lambda row: str(row["workers"]), "images": lambda row: f"{row['images']:,}",
               "seconds": lambda row: f"{row['seconds']:.2f}", "cpu s": lambda row: f"{row['cpu_seconds']:.2f}",
               "images/s": lambda row: f"{row['images'] / row['seconds']:.1f}",
               f"time for {DEFAULT_N:,}": lambda row: f"{DEFAULT_N * row['seconds'] / row['images']:.0f} s"}
    return {"table": harness.Table(f"{args.size}-px images, seed {args.seed}", harness.markdown_table(rows, columns))}


if __name__ == "__main__":
    main()
