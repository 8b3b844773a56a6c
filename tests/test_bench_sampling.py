"""bench_sampling's pieces: a sampler setting parses or is refused by name, the options make every combination,
and the table puts a cell under every heading with the pooled columns and their standard error where asked."""

import argparse

import pytest

from bench import bench_sampling as bench


def test_a_sampler_setting_parses_or_names_the_samplers():
    assert bench.sampler_setting("dpmsolver-20") == (None, "dpmsolver", 20)
    assert bench.sampler_setting("runs/a-b@c/model@ddim-4") == ("runs/a-b@c/model", "ddim", 4)
    with pytest.raises(argparse.ArgumentTypeError, match="SAMPLER one of ddpm, ddim, dpmsolver"):
        bench.sampler_setting("euler-20")


def test_the_options_make_every_combination_with_the_models_own_values_filled_in(tiny_run):
    from lab6.loading import load_pipeline

    pipe = load_pipeline(tiny_run)
    args = argparse.Namespace(samplers=[(None, "ddpm", 10), (None, "dpmsolver", 5)], skip_ddpm=True,
                              guidance=[None, 4.0], noise=[None], refine=[True, True, False], memory_format=[None],
                              model=None)
    rows = bench.grid(args, {None: pipe})
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


def test_rows_of_two_models_count_their_calls_and_take_the_person_scale_test(tiny_run, tiny_refined_model, tmp_path,
                                                                             evaluator_file):
    """A guided two-stage model and a first stage alone in one run: each row draws with its own model, its calls
    count the guided pair and the refiner, and the person-scale test and its controls are printed."""
    from tests.conftest import make_data_root

    root = make_data_root(tmp_path / "root", n=120)  # a held-out tenth of 12 real images for the test
    args = argparse.Namespace(data_root=root, model=None, split="test", also=["heldout"], heldout_labels=10,
                              seeds=2, skip_ddpm=True, evaluator=[evaluator_file], person_scale=10,
                              samplers=[(str(tiny_refined_model), "dpmsolver", 5), (str(tiny_run), "ddim", 2)],
                              guidance=[None], noise=[None], refine=[True], memory_format=[None],
                              refiner=None, refiner_strength=None, json=None)
    rows = bench.run(args)
    guided, plain = rows
    assert guided["model"] == str(tiny_refined_model) and plain["model"] == str(tiny_run)
    refiner_steps = 1  # round(5 x 0.2)
    assert guided["calls"] == 2 * 5 + refiner_steps and plain["calls"] == 2 * 2  # tiny_run guides at w = 2
    assert guided["labels"] >= 2 * (12 + 10)  # test.json's 12 labels and about 10 held-out ones, each seed
    assert [len(by_seed) for by_seed in guided["pooled_by_seed"].values()] == [2]
    assert 0 <= guided["person_scale"]["accuracy"] <= 1 and len(guided["controls"]) == 4
    tables = bench.tables(rows, args)
    header = tables["table"].lines[0]
    assert "| model |" in header and "calls per image" in header and "person-scale" in header
    assert "each seed" in header and tables["controls"].lines[2].startswith("| other real images")
