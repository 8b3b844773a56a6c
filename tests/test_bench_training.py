"""bench_training's pieces: a preset's measurement has its cost and rate, and the table compares each preset with
the matmul rate and with the paper preset."""

import argparse

import pytest

from bench import bench_training as bench


def test_a_measurement_counts_flops_and_images_per_second():
    row = bench.measure("tiny", batch=2, seconds=0.0)  # two timed steps of the smallest preset
    assert row["preset"] == "tiny" and row["params_M"] > 0 and row["gflop_per_img"] > 0
    assert row["img_per_s"] > 0 and row["gflop_s"] == pytest.approx(row["img_per_s"] * row["gflop_per_img"])
    assert bench.matmul_peak_gflops(n=64, repeats=1) > 0


def test_the_table_compares_each_preset_with_the_matmul_rate_and_the_paper_preset():
    rows = [{"preset": "cpu", "size": 32, "params_M": 3.9, "gflop_per_img": 2.67, "img_per_s": 82.15,
             "gflop_s": 219.5, "peak_gflop_s": 205.8},
            {"preset": "paper", "size": 64, "params_M": 113.9, "gflop_per_img": 93.07, "img_per_s": 2.52,
             "gflop_s": 234.8, "peak_gflop_s": 205.8}]
    table = bench.tables(rows, argparse.Namespace())["table"]
    assert table.caption.endswith("fp32 matmul peak: 205.8 GFLOP/s")
    assert table.lines[2] == "| cpu | 32 | 3.9 | 2.67 | 82.15 | 219.5 | 107% | 32.6x |"
