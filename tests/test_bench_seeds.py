"""bench_seeds' pieces: its rows parse, its table pairs each row with the first per seed, runs made apart merge,
and rows that share a first stage share its draw and refine it from the same noise."""

import argparse

import pytest
import torch

from bench import bench_seeds as bench
from bench import harness

SHAPES = {"r": {"cube": 1.0, "sphere": 0.9, "cylinder": 0.8}}


def seed_rows(seed: int, base_hits: int, other_hits: int) -> list[dict]:
    return [{"row": "base", "seed": seed, "labels": 100, "hits": {"r": base_hits}, "shapes": SHAPES, "sharpness": 1.0,
             "cast": 1.0},
            {"row": "other", "seed": seed, "labels": 100, "hits": {"r": other_hits}, "shapes": SHAPES,
             "sharpness": 0.5, "cast": 0.5}]


def test_each_row_is_paired_with_the_first_per_seed():
    # the base row's luck swings 10 labels between seeds; the other row is always 1 or 3 labels better
    rows = seed_rows(0, 80, 81) + seed_rows(1, 90, 93)
    table = bench.tables(rows, argparse.Namespace())["table"]
    assert table.caption.startswith("2 seeds x 100 labels; differences paired per seed against 'base'")
    other = [c.strip() for c in table.lines[-1].strip("|").split("|")]
    # pooled 0.87 (sd 0.085 over seeds) yet +2.0 points paired, SE = sd(1, 3) / sqrt(2) = 1.0
    assert other == ["other", "0.8700 (0.085)", "+2.0 pt (1.0)", "1.000", "0.900", "0.800", "0.50", "0.50"]
    assert [c.strip() for c in table.lines[-2].strip("|").split("|")][2] == ""  # no difference for the baseline


def test_runs_of_other_seeds_merge_and_runs_of_other_rows_or_the_same_seeds_do_not():
    first, second = seed_rows(0, 80, 81), seed_rows(1, 90, 93)
    assert bench.merge([first, second]) == first + second
    with pytest.raises(SystemExit, match="the same rows"):
        bench.merge([first, second[:1]])
    with pytest.raises(SystemExit, match=r"seed\(s\) \[0\] drawn in two runs"):
        bench.merge([first, first])


def test_a_row_takes_the_first_stage_and_refiner_keys_and_names_a_wrong_one():
    assert harness.parse_row("weaker=strength=0.1,refiner_steps=3", bench.ROW_KEYS) == (
        "weaker", {"strength": 0.1, "refiner_steps": 3})
    assert harness.parse_row("first stage=refine=false,guidance=2", bench.ROW_KEYS) == (
        "first stage", {"refine": False, "guidance": 2.0})
    with pytest.raises(argparse.ArgumentTypeError, match="bad option 'strenght=0.1' in row 'x=strenght=0.1'"):
        harness.parse_row("x=strenght=0.1", bench.ROW_KEYS)
    with pytest.raises(argparse.ArgumentTypeError, match="bad option 'guidance_interval"):
        harness.parse_row("x=guidance_interval=0.28:5.42", bench.ROW_KEYS)


def test_rows_share_the_first_stage_and_refine_from_the_same_noise(tiny_refined_model):
    from lab6.loading import load_pipeline
    from lab6.sampling import Sampling, generate

    pipe = load_pipeline(tiny_refined_model)
    conditions = [["red cube"], ["gray sphere", "cyan cube"]]
    rows = [("shipped", {"steps": 5}), ("same strength", {"steps": 5, "strength": 0.2, "refiner_steps": 1}),
            ("weaker", {"steps": 5, "strength": 0.1}), ("first stage", {"steps": 5, "refine": False})]
    drawn = bench.draw_rows(pipe, bench.plan_rows(pipe, rows), conditions, seed=3)
    assert torch.equal(drawn["first stage"],
                       generate(pipe, conditions, Sampling(steps=5, seed=3, refine=False), progress=False).images)
    assert torch.equal(drawn["shipped"], drawn["same strength"])  # the setting alone tells rows apart
    assert not torch.equal(drawn["weaker"], drawn["shipped"]) and drawn["weaker"].shape == (2, 3, 64, 64)
