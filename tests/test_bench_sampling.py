"""bench_sampling's pieces: a sampler setting parses or is refused by name, the options make every combination,
and the table puts a cell under every heading with the pooled columns and their standard error where asked."""

import argparse

import pytest

from bench import bench_sampling as bench


def test_a_sampler_setting_parses_or_names_the_samplers():
    assert bench.sampler_setting("dpmsolver-20") == ("dpmsolver", 20)
    with pytest.raises(argparse.ArgumentTypeError, match="SAMPLER one of ddpm, ddim, dpmsolver"):
        bench.sampler_setting("euler-20")


def test_the_options_make_every_combination_with_the_models_own_values_filled_in(tiny_run):
    from lab6.loading import load_pipeline

    pipe = load_pipeline(tiny_run)
    args = argparse.Namespace(samplers=[("ddpm", 10), ("dpmsolver", 5)], skip_ddpm=True, guidance=[None, 4.0],
                              noise=[None], refine=[True, True, False], memory_format=[None])
    rows = bench.grid(args, pipe)
    assert [(row["sampler"], row["guidance"]) for row in rows] == [("dpmsolver", pipe.guidance_scale),
                                                                   ("dpmsolver", 4.0)]
    assert all(row["noise"] == pipe.initial_noise and row["refine"] is False for row in rows)  # no refiner to use
    assert rows[0]["memory_format"] == "channels_last"  # as load_pipeline lays the weights out


def test_the_table_pools_the_splits_where_asked():
    row = {"sampler": "dpmsolver", "steps": 20, "guidance": 3.0, "noise": "grey-mean", "refine": True,
           "memory_format": "channels_last", "seconds": 10.0, "one_image": 0.5, "timed": 32, "pooled_images": 96,
           "labels": 400, "accuracy": {"r": {"test": 0.9, "heldout": 0.8}}, "pooled": {"r": 0.85}}
    faster = {**row, "steps": 10, "seconds": 5.0, "accuracy": {"r": {"test": 0.88, "heldout": 0.8}},
              "pooled": {"r": 0.84}}
    args = argparse.Namespace(split="test", also=["heldout"], seeds=2, model=None)
    table = bench.tables([row, faster], args)["table"]
    header, rule, _, line = table.lines
    assert header.count("|") == rule.count("|") == line.count("|")
    cells = dict(zip(*([c.strip() for c in text.strip("|").split("|")] for text in (header, line))))
    assert cells["speed-up vs dpmsolver-20 w=3"] == "2.00x" and cells["test (r) vs first row"] == "-2.0 pt"
    assert cells["pooled r (96 images x 2 seeds)"] == "0.8400" and cells["pooled r vs first row"] == "-1.0 pt"
    assert table.note.startswith("One standard error of a pooled accuracy: at most 1.8 pt (400 labels)")
