"""The benchmarks' harness: one row language with every key and value checked, one table printer, one --json,
one data root and one held-out reference set, on tiny inputs."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from bench import harness
from lab6.data import ICLEVRDataset
from lab6.proxy import split_holdout

KEYS = {"steps": int, "guidance": float, "sampler": harness.one_of("ddim", "dpmsolver"), "refine": harness.yes_or_no}


def test_a_row_is_a_label_and_checked_keys():
    assert harness.parse_row("fast=sampler=ddim,steps=10,refine=false", KEYS) == (
        "fast", {"sampler": "ddim", "steps": 10, "refine": False})
    assert harness.parse_row("shipped=", KEYS) == ("shipped", {})
    assert harness.parse_row("w 2.5 (x: y)=guidance=2.5", KEYS) == ("w 2.5 (x: y)", {"guidance": 2.5})
    bad = {"nolabel": "bad row 'nolabel': write LABEL=key=value",
           "=steps=3": "bad row '=steps=3'",
           "x=steps": "bad option 'steps' in row 'x=steps': write key=value with key one of steps, guidance, sampler",
           "x=stpes=3": "bad option 'stpes=3'",
           "x=steps=two": "bad value 'two' for steps in row 'x=steps=two': a whole number",
           "x=guidance=high": "bad value 'high' for guidance in row 'x=guidance=high': a number",
           "x=sampler=euler": "bad value 'euler' for sampler in row 'x=sampler=euler': one of ddim, dpmsolver",
           "x=refine=no": "expected true or false, got 'no'"}
    for text, message in bad.items():
        with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(")):
            harness.parse_row(text, KEYS)


def test_a_row_may_start_with_its_head_and_then_go_without_a_label():
    keys = {"model": str, **KEYS}
    assert harness.parse_row("cpu64=runs/cpu64:sampler=ddim,steps=50", keys, head="model") == (
        "cpu64", {"model": "runs/cpu64", "sampler": "ddim", "steps": 50})
    assert harness.parse_row("shipped=lab6/assets/model", keys, head="model") == (
        "shipped", {"model": "lab6/assets/model"})
    assert harness.parse_row("x=model=runs/a,steps=3", keys, head="model") == ("x", {"model": "runs/a", "steps": 3})
    assert harness.parse_row("shipped=", keys, head="model") == ("shipped", {})
    # without a label the row is named by its own text; ``other`` reads the keys that are not listed
    assert harness.parse_row("runs/b:steps=3,eta=0.5", keys, head="model", other=float) == (
        "runs/b:steps=3,eta=0.5", {"model": "runs/b", "steps": 3, "eta": 0.5})
    with pytest.raises(argparse.ArgumentTypeError, match=r"write \[LABEL=\]MODEL\[:key=value,...\] or LABEL="):
        harness.parse_row("=runs/b", keys, head="model")


def test_rows_come_from_repeated_flags_and_several_after_one():
    parser = argparse.ArgumentParser()
    harness.add_rows(parser, KEYS, "--candidate")
    args = parser.parse_args(["--row", "a=steps=1", "b=", "--candidate", "c=sampler=ddim"])
    assert args.row == [("a", {"steps": 1}), ("b", {}), ("c", {"sampler": "ddim"})]
    assert parser.parse_args([]).row == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--row", "a=steps=many"])


def test_lists_and_switches():
    assert harness.int_list("0-3,7") == [0, 1, 2, 3, 7]
    assert harness.int_list("2") == [2]
    with pytest.raises(argparse.ArgumentTypeError, match="bad list 'a-b'"):
        harness.int_list("a-b")
    assert harness.yes_or_no("True") is True and harness.yes_or_no(" false") is False
    with pytest.raises(ValueError, match="expected true or false, got 'yes'"):
        harness.yes_or_no("yes")


def test_the_table_has_a_cell_under_every_heading_and_the_json_everything(tmp_path, capsys):
    rows = [{"label": "a", "seconds": 1.25, "extra": {"r": 0.5}}, {"label": "b", "seconds": None}]
    columns = {"images": lambda row: row["label"],
               "s": lambda row: "" if row["seconds"] is None else f"{row['seconds']:.1f}"}
    lines = harness.markdown_table(rows, columns)
    assert lines == ["| images | s |", "| --- | --- |", "| a | 1.2 |", "| b |  |"]
    args = argparse.Namespace(json=tmp_path / "out.json", n=3, data_root=Path("/data"))
    harness.report(rows, args, {"table": harness.Table("three images", lines, "a note"),
                                "second_table": harness.Table("", lines[:2])})
    printed = capsys.readouterr().out
    assert printed.index("three images") < printed.index("| a | 1.2 |") < printed.index("a note")
    record = json.loads(args.json.read_text())
    assert record["n"] == 3 and record["data_root"] == "/data" and record["threads"] == torch.get_num_threads()
    assert record["rows"] == rows and record["table"] == lines and record["second_table"] == lines[:2]


def test_the_data_root_is_the_flag_else_lab6_data_else_the_shared_folder(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "SHARED_DATA", tmp_path / "missing")
    monkeypatch.delenv("LAB6_DATA", raising=False)
    assert harness.data_root(argparse.Namespace(data_root=str(tiny_root))) == tiny_root
    with pytest.raises(SystemExit, match=f"no data root: give --data-root D or set LAB6_DATA .* {tmp_path}/missing"):
        harness.data_root(argparse.Namespace(data_root=None))
    with pytest.raises(SystemExit, match="does not exist"):
        harness.data_root(argparse.Namespace(data_root=str(tmp_path / "nowhere")))
    monkeypatch.setenv("LAB6_DATA", str(tiny_root))
    assert harness.data_root(argparse.Namespace(data_root=None)) == tiny_root
    monkeypatch.delenv("LAB6_DATA")
    monkeypatch.setattr(harness, "SHARED_DATA", tiny_root)
    assert harness.data_root(argparse.Namespace(data_root=None)) == tiny_root


def test_the_reference_set_is_held_out_and_the_same_for_a_seed(tiny_root):
    reference = harness.reference_set(tiny_root, 2, seed=0)  # 48 images: 4 held out
    held, train = split_holdout(48)
    held_images = ICLEVRDataset(tiny_root, progress=False).batch(held)[0]
    assert reference.images.shape == reference.others.shape == (2, 3, 64, 64)
    assert len(reference.conditions) == len(reference.other_conditions) == 2
    assert torch.equal(reference.train, train)

    def rows_of(images: torch.Tensor) -> list[int]:  # which held-out image each one is
        return [int((held_images == image).flatten(1).all(1).nonzero()) for image in images]

    assert set(rows_of(reference.images)).isdisjoint(rows_of(reference.others))  # the floor's set is other images
    assert torch.equal(harness.reference_set(tiny_root, 2, seed=0).images, reference.images)
    with pytest.raises(SystemExit, match="5 reference images asked for: give 1 to 4"):
        harness.reference_set(tiny_root, 5)


def test_a_row_pairs_the_model_with_its_refiner_or_says_what_is_missing(tiny_refined_model, tiny_run):
    from lab6.loading import load_pipeline
    from lab6.refiner import RefinedPipeline

    pipe = load_pipeline(tiny_refined_model)
    assert harness.paired(pipe, {"steps": 5, "refine": False}) is pipe  # no refiner key: the model as it is
    weaker = harness.paired(pipe, {"strength": 0.1, "steps": 10, "refiner_steps": 2})
    assert isinstance(weaker, RefinedPipeline) and weaker.refiner is pipe.refiner
    assert weaker.config.refiner_strength == 0.1 and weaker.refiner_steps(10) == 2
    assert weaker.config.refiner_spacing == pipe.config.refiner_spacing  # the model's own where not given
    with pytest.raises(SystemExit, match="the model has no refiner; give refiner=RUN,strength=S"):
        harness.paired(load_pipeline(tiny_run), {"strength": 0.1})
    with pytest.raises(SystemExit, match="refiner=RUN needs strength=S"):
        harness.paired(pipe, {"refiner": str(tiny_refined_model)})
    sampling = harness.sampling({"sampler": "ddim", "guidance": 2.0, "refine": False}, seed=4)
    assert (sampling.sampler, sampling.steps, sampling.guidance_scale, sampling.seed, sampling.refine) == (
        "ddim", None, 2.0, 4, False)
