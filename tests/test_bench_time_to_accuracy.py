"""bench.bench_time_to_accuracy: the held-out labels it counts, a run's checkpoints scored by every evaluator and
seed, the person-scale view, and its tables."""

import argparse
import json

import torch

from bench import bench_time_to_accuracy as bench
from bench import harness, measures
from lab6.labels import heldout_conditions


def test_the_held_out_conditions_hold_about_the_asked_labels_the_shipped_set_first(tiny_root):
    sets = harness.scoring_sets(tiny_root, 300)
    labels = sum(map(len, sets["heldout"]))
    assert 300 <= labels < 303 and sets["heldout"][:128] == heldout_conditions(128)
    assert set(sets) == {"test", "new_test", "heldout"}


def test_every_checkpoint_is_scored_by_every_evaluator_for_every_seed(tiny_run, tiny_root, evaluator_file,
                                                                     second_evaluator_file):
    args = argparse.Namespace(data_root=tiny_root, run=tiny_run, evaluator=[evaluator_file, second_evaluator_file],
                              seeds=[0, 1], heldout_labels=6, steps=2, n_ref=0, threads=2, json=None)
    rows = bench.run(args)
    assert [row["step"] for row in rows] == [12]  # tiny_run keeps the checkpoint of its last step
    assert rows[0]["core_minutes"] == rows[0]["minutes"] * 2
    for scores in rows[0]["accuracy"].values():
        assert len(scores["pooled"]) == len(scores["new_test"]) == 2
        assert all(0 <= a <= 1 for a in scores["pooled"] + scores["new_test"])
    table = bench.tables(rows, args)["accuracy"]
    assert table.lines[0].count("pooled (") == 2 and table.lines[2].startswith("| 12 |")


def test_the_person_view_pools_to_32_px_and_adds_two_grey_levels_of_noise():
    flat = torch.zeros(50, 3, 64, 64)
    seen = measures.person_view(flat, seed=0)
    assert seen.shape == (50, 3, 32, 32)
    assert abs(seen.std().item() * 127.5 - 2.0) < 0.05  # 2 grey levels, in 0-255 units
    assert torch.equal(seen, measures.person_view(flat, seed=0))
    assert not torch.equal(seen, measures.person_view(flat, 1))


def test_a_trained_arm_takes_the_recipe_changes_given_with_set(tiny_root, tmp_path):
    args = argparse.Namespace(data_root=tiny_root, preset="tiny", minutes=0.02, every=0.02, out=tmp_path / "arm",
                              changes=["mixed_precision=no", "seed=3"])
    config = json.loads((bench.train_run(args) / "train_config.json").read_text())
    assert config["mixed_precision"] == "no" and config["seed"] == 3 and config["minutes"] == 0.02
    assert sorted((tmp_path / "arm" / "checkpoints").glob("step-*"))
