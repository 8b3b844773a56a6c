"""bench_render's pieces: worker counts parse, a tiny render is timed per worker count, and the table says how
long the full set would take."""

import argparse

import pytest

from bench import bench_render as bench


def test_a_tiny_render_is_timed_and_tabled_per_worker_count():
    args = bench.argparse.Namespace(n=2, workers=[1], seed=0, size=32, progress=False)
    rows = bench.run(args)
    assert [(row["workers"], row["images"]) for row in rows] == [(1, 2)]
    assert rows[0]["seconds"] > 0 and rows[0]["cpu_seconds"] >= 0
    header, rule, line = bench.tables([{**rows[0], "seconds": 4.0}], args)["table"].lines
    assert header == f"| workers | images | seconds | cpu s | images/s | time for {bench.DEFAULT_N:,} |"
    assert line.startswith("| 1 | 2 | 4.00 |") and line.endswith(f"| 0.5 | {bench.DEFAULT_N * 2:.0f} s |")


def test_bad_worker_counts_and_sizes_are_refused():
    with pytest.raises(SystemExit):
        bench.main(["--n", "0"])
    with pytest.raises(argparse.ArgumentTypeError, match="bad list 'two'"):
        bench.harness.int_list("two")
