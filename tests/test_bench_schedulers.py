"""bench_schedulers' pieces: a row names a diffusers scheduler class, its steps and its options (with or without a
label), a bad one is named, and the table puts a cell under every heading."""

import argparse

import pytest

from bench import bench_schedulers as bench
from bench import harness


def parse(text: str):
    return harness.parse_row(text, bench.ROW_KEYS, head="scheduler", other=bench.json_or_word)


def test_a_row_reads_a_diffusers_class_its_steps_and_options_and_names_a_bad_one():
    assert parse("UniPCMultistepScheduler-10") == ("UniPCMultistepScheduler-10",
                                                   {"scheduler": ("UniPCMultistepScheduler", 10)})
    assert parse("DDIMScheduler-50:clip_sample=false,eta=0.5") == (
        "DDIMScheduler-50:clip_sample=false,eta=0.5",
        {"scheduler": ("DDIMScheduler", 50), "clip_sample": False, "eta": 0.5})
    assert parse("leading=HeunDiscreteScheduler-25:timestep_spacing=leading") == (
        "leading", {"scheduler": ("HeunDiscreteScheduler", 25), "timestep_spacing": "leading"})
    for bad in ("UniPC-10", "UniPCMultistepScheduler", "DiffusionPipeline-10"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"bad value '{bad}' for scheduler .* write Class-STEPS"):
            parse(bad)
    assert [label for label, _ in map(parse, bench.ROWS)] == bench.ROWS  # the defaults parse


def test_the_table_has_a_cell_under_every_heading():
    rows = [{"label": "reference", "scheduler": "DPMSolverMultistepScheduler", "options": {}, "steps": 100,
             "calls_per_image": 200.0, "seconds": 12.34, "mean_difference": 0.0, "largest_difference": 0.0,
             "accuracy": {"r": 0.9}},
            {"label": "x", "scheduler": "DDIMScheduler", "options": {"clip_sample": False}, "steps": 50,
             "calls_per_image": 100.0, "seconds": 6.0, "mean_difference": 0.01234, "largest_difference": 0.5,
             "accuracy": {"r": 0.875}}]
    args = argparse.Namespace(model=None, split="test", seed=0)
    header, rule, _, line = bench.tables(rows, args)["table"].lines
    assert header.count("|") == rule.count("|") == line.count("|") == 9
    assert [c.strip() for c in line.strip("|").split("|")] == [
        "x", "DDIMScheduler", "clip_sample=False", "50", "100", "6.0", "0.0123 / 0.500", "0.8750"]
