"""Benchmark the built-in synthetic i-CLEVR renderer: images per second with 1 and 2 worker processes.

    python bench/bench_render.py               # the full 18,000-image set, 1 and 2 workers (a few minutes)
    python bench/bench_render.py --n 200       # a quick check
    python bench/bench_render.py --workers 2   # one worker count only

Each run renders into a fresh temporary folder (deleted afterwards) and includes starting the worker processes
and writing the PNGs and JSON files. "cpu s" adds up the CPU time of this process and its workers: on a machine
that is busy with something else (a training run), it tells the renderer's own cost better than wall time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

try:
    from lab6.synthetic import DEFAULT_N, render_dataset
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lab6.synthetic import DEFAULT_N, render_dataset


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes comma-separated integers like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--workers takes integers >= 1, got {text!r}")
    return counts


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished child processes (the render workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"images per run (default {DEFAULT_N})")
    parser.add_argument("--workers", type=_worker_counts, default=[1, 2], help="worker counts to time (default 1,2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar during each run")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")

    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="lab6-bench-render-") as tmp:
            start, cpu = time.perf_counter(), _cpu_seconds()
            render_dataset(Path(tmp) / "data", args.n, args.seed, size=args.size, workers=workers,
                           progress=args.progress)
            seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        rate = args.n / seconds
        rows.append((workers, args.n, seconds, cpu, rate, DEFAULT_N / rate))
        print(f"workers={workers}: {args.n} images in {seconds:.1f} s", file=sys.stderr, flush=True)

    header = (
        f"{'workers':>7}  {'images':>7}  {'seconds':>8}  {'cpu s':>7}  {'images/s':>9}  "
        f"{'time for ' + format(DEFAULT_N, ','):>17}"
    )
    print(header)
    print("-" * len(header))
    for workers, n, seconds, cpu, rate, full in rows:
        print(f"{workers:>7}  {n:>7}  {seconds:>8.2f}  {cpu:>7.2f}  {rate:>9.1f}  {full:>15.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
