"""The maintenance scripts under tools/ that are not exercised elsewhere (ship_model, convert_model, pack_images).
The benchmarks' tests are tests/test_bench_*.py."""

import importlib.util
import re
from argparse import Namespace
from pathlib import Path

import pytest
from diffusers import DDPMScheduler
from huggingface_hub import ModelCard

from lab6.loading import load_pipeline as load_model

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_card_lists_every_stage_and_the_shipped_guidance(tiny_run):
    ship_model = load_tool("ship_model")
    loaded = load_model(tiny_run)
    first = dict(loaded.metadata)
    # a fine-tuned model, shipped at w = 4 although its run was evaluated at the recipe's w
    loaded.metadata = {**first, "train_step": 30, "epochs": 5.0, "train_minutes": 2.5, "parent": first}
    loaded.register_to_config(guidance_scale=4.0)
    table = {"dpmsolver-20": {"resnet18": {"test": 0.5, "new_test": 0.25, "heldout": 0.125, "pooled": 0.2},
                              "efficientnet_b0": {"test": 0.25, "new_test": 0.5, "heldout": 0.75, "pooled": 0.6}}}
    proxies = {"resnet18": {"heldout_accuracy": 0.9, "heldout_images": 10},
               "efficientnet_b0": {"heldout_accuracy": 0.8, "heldout_images": 10}}
    fidelity = {"n": 10, "table": ["| images | sharpness / real |", "| --- | --- |", "| shipped | 0.05 |"],
                "round_trip_table": ["| images | accuracy (resnet18) | through 32 px | gap |",
                                     "| --- | --- | --- | --- |", "| shipped | 0.885 | 0.950 | +6.5 pt |"]}
    model_card = ship_model.model_card(loaded, table, {"dpmsolver-20": 1.0}, proxies,
                                       Namespace(command="lab6 train x", refiner_command=""), fidelity, threads=3)
    card = str(model_card)
    # a Hugging Face card: YAML metadata that huggingface_hub reads back, accuracy per split as a model-index
    data = ModelCard(card).data
    assert data.library_name == "diffusers" and data.license == "mit" and "i-clevr" in data.tags
    results = {(r.dataset_split, r.metric_name): r.metric_value for r in data.eval_results}
    assert results[("new_test", "top-k accuracy (resnet18 proxy)")] == 0.25
    assert results[("pooled", "top-k accuracy (efficientnet_b0 proxy)")] == 0.6
    assert "## Fidelity" in card and "| shipped | 0.05 |" in card
    assert (card.index("| shipped | 0.05 |") < card.index("round trip")
            < card.index("| shipped | 0.885 | 0.950 | +6.5 pt |"))
    assert f"- Stage 1: 12 steps of 8 images ({first['epochs']} epochs)" in card
    assert "- Stage 2 (fine-tuned from stage 1): 30 steps of 8 images (5.0 epochs)" in card
    assert f"- In all: {first['epochs'] + 5.0:.1f} epochs" in card
    assert "w = 4 (training evaluated at w = 2; w chosen on the held-out conditions)" in card
    assert "| dpmsolver-20 | resnet18 | 0.5000 | 0.2500 | 0.1250 | 0.2000 | 1.0 |" in card
    assert "| dpmsolver-20 | efficientnet_b0 | 0.2500 | 0.5000 | 0.7500 | 0.6000 | 1.0 |" in card
    assert "efficientnet_b0: 0.8000 on 10 held-out real images" in card
    assert "seconds for 32 images (3 CPU thread(s))" in card  # those of the measurement, not of this process


def test_model_card_of_a_model_with_a_refiner_grown_from_it_counts_each_stage_once(tiny_run):
    from lab6.diffusion import make_noise_scheduler
    from lab6.model import ConditionalUNet
    from lab6.pipeline import build_pipeline
    from lab6.refiner import with_refiner
    from tests.test_model import TINY

    ship_model = load_tool("ship_model")
    base = load_model(tiny_run)
    first = dict(base.metadata)
    refiner = build_pipeline(
        ConditionalUNet(conditioning="cross_attention", **{**TINY, "sample_size": 64, "patch_size": 4}),
        make_noise_scheduler(1000, "cosine", "v").config)
    refiner.metadata = {"train_step": 40, "epochs": 2.0, "train_minutes": 3.0, "parent": first,
                        "recipe": {"batch_size": 8, "lr": 2e-4, "max_timestep": 300}}
    loaded = with_refiner(base, refiner, 0.1, step_ratio=0.2)
    table = {"dpmsolver-20": {"resnet18": {"test": 0.5, "new_test": 0.5, "heldout": 0.5, "pooled": 0.5}}}
    card = str(ship_model.model_card(loaded, table, {"dpmsolver-20": 1.0},
                                     {"resnet18": {"heldout_accuracy": 0.9, "heldout_images": 10}},
                                     Namespace(command="lab6 train x", refiner_command="lab6 train y")))
    assert ("redraws the last 0.1 of its noise schedule at 64x64 in 4 steps (at 20 first-stage steps) spaced as "
            "Karras et al. down to t = 0") in card
    assert "- Command: `lab6 train y`" in card
    assert ("- Refiner stage 2 (fine-tuned from the first stage, its stage 1): 40 steps of 8 images (2.0 epochs), "
            "3.0 minutes of training on 1 process(es), peak lr 0.0002, timesteps below 300 only.") in card
    assert "Refiner stage 1" not in card  # the first stage's own training, listed once above
    minutes = float(first["train_minutes"])
    assert (f"- Both stages: {minutes:.1f} + 3.0 = {minutes + 3.0:.1f} minutes of training (the refiner was grown "
            "from the first stage's model).") in card


def test_a_refiner_grown_from_an_earlier_model_of_the_first_stage_counts_the_shared_stages_once():
    """The first stage trained on after the refiner branched off: the stages before the branch are counted once."""
    ship_model = load_tool("ship_model")
    stage1 = {"train_step": 10, "train_minutes": 125.0, "epochs": 1.0}
    stage2 = {"train_step": 20, "train_minutes": 120.0, "epochs": 2.0, "parent": stage1}
    first = {"train_step": 30, "train_minutes": 120.0, "epochs": 3.0, "parent": stage2}
    refiner = {"train_step": 40, "train_minutes": 55.0, "epochs": 4.0, "parent": stage2,
               "recipe": {"max_timestep": 300}}
    assert ship_model.shared_stages(first, refiner) == 2
    assert ship_model.shared_stages(first, {**refiner, "parent": stage1}) == 1
    lines = ship_model.refiner_lines({**first, "refiner": refiner}, 0.2, "lab6 train y")
    assert "Refiner stage 2" not in "\n".join(lines)
    assert ("- Both stages: 365.0 + 55.0 = 420.0 minutes of training (the refiner was grown from the model of the "
            "first stage's stage 2, which it then trained on).") in lines


def test_shipped_record_keeps_only_folder_names_in_every_stage_and_the_refiner():
    ship_model = load_tool("ship_model")
    parent = {"data_root": "/home/someone/data/iclevr-reference", "train_step": 10}
    refiner = {"data_root": "/tmp/d/iclevr", "recipe": {"init_from": "/home/someone/runs/grown64", "lr": 2e-4}}
    record = {"data_root": "/work/shared/iclevr-reference", "guidance": 2.0, "parent": parent, "refiner": refiner}
    shipped = ship_model.without_machine_paths(record)
    assert shipped["data_root"] == "iclevr-reference"
    assert shipped["parent"] == {"data_root": "iclevr-reference", "train_step": 10}
    assert shipped["refiner"] == {"data_root": "iclevr", "recipe": {"init_from": "grown64", "lr": 2e-4}}
    assert shipped["guidance"] == 2.0
    assert record["parent"]["data_root"] == "/home/someone/data/iclevr-reference"  # the run's record is untouched


def test_the_shipped_model_folder_names_no_path_of_the_machine_it_was_shipped_from():
    """Every file of the shipped folder is in git: a path like /home/someone/runs/... in a config or the record
    would leak where it was trained and point nowhere on a user's machine."""
    from lab6.run_files import SHIPPED_MODEL

    for path in sorted(SHIPPED_MODEL.rglob("*.json")):
        text = path.read_text()
        assert not re.search(r'"(/|[A-Za-z]:\\\\)[^"]*"', text), f"{path} holds an absolute path"


def test_packed_images_unpack_to_a_data_root_that_trains_without_its_pngs(tiny_root, tmp_path):
    import numpy as np

    from lab6.data import ICLEVRDataset, cached_images, read_train_index

    pack_images = load_tool("pack_images")
    pack_images.pack(tiny_root, [16], tmp_path / "packed")
    moved = tmp_path / "elsewhere" / "iclevr"
    pack_images.unpack(tmp_path / "packed", moved)
    assert not (moved / "iclevr").exists()  # no PNGs travelled: a cache miss would fail to decode
    files, _ = read_train_index(tiny_root)
    assert np.array_equal(ICLEVRDataset(moved, 16, progress=False).images.numpy(),
                          cached_images(tiny_root, files, 16, progress=False))
    assert (moved / "test.json").read_text() == (tiny_root / "test.json").read_text()


def test_convert_model_writes_the_pipeline_layout_with_the_same_weights(tiny_run, tmp_path):
    from lab6.loading import load_pipeline, save_pipeline

    convert_model = load_tool("convert_model")
    pipe = load_model(tiny_run)
    flat = tmp_path / "flat"  # the flat layout (config.json at the top)
    pipe.unet.save_pretrained(flat)
    DDPMScheduler.from_config(pipe.scheduler.config).save_pretrained(flat)
    (flat / "lab6.json").write_text('{"guidance": 2.5}')
    new = convert_model.convert(flat, tmp_path / "new")
    assert (new / "model_index.json").is_file() and load_pipeline(new).guidance_scale == 2.5
    assert (new / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == \
        (flat / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(SystemExit, match="already in the pipeline layout"):
        convert_model.convert(new, tmp_path / "again")
    save_pipeline(pipe, tmp_path / "taken", {})
    with pytest.raises(SystemExit, match="exists: give a new folder"):
        convert_model.convert(flat, tmp_path / "taken")



def test_ship_few_step_writes_the_first_stage_alone_in_fp16_and_refuses_another_refiner(tiny_refined_model,
                                                                                      tiny_root, tmp_path):
    """The shipped folder keeps no second refiner, halves the first stage's bytes, names no path of this machine,
    and draws as the distilled pair (to fp16 rounding); a student of another pair is refused by name."""
    import json
    import shutil

    import torch

    from lab6.loading import few_step_model, save_pipeline
    from lab6.progressive import distill
    from lab6.sampling import Sampling, generate

    ship = load_tool("ship_few_step")
    into = tmp_path / "model"
    shutil.copytree(tiny_refined_model, into)
    run = distill(into, tiny_root, tmp_path / "run", sampling_steps=8, guidance_scale=1.0, steps=2, eval_splits=(),
                  progress=False)
    student = f"{tmp_path}/run/steps-2/model"
    bench = {"seeds": 2, "threads": 1, "table": ["| model | a |", "| --- | --- |", f"| {student} | 1 |"],
             "controls": ["| c |"], "rows": [{"model": student}]}
    target = ship.ship(run, into, bench)
    assert target == few_step_model(into) == into / "few-step" and not (target / "refiner").exists()
    weights = target / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 0.6 * (run / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    text = (target / "lab6.json").read_text()
    assert str(tmp_path) not in text and json.loads(text)["distilled"]["steps"] == 8
    card = (target / "README.md").read_text()
    assert "8 DDIM steps" in card and "progressive distillation: 2 steps" in card and "| steps-2 | 1 |" in card
    assert str(tmp_path) not in card
    shipped, distilled = (generate(load_model(p), [["red cube"]], Sampling(seed=0), progress=False).images
                          for p in (target, run))
    assert next(load_model(target).unet.parameters()).dtype == torch.float32
    torch.testing.assert_close(shipped, distilled, atol=0.05, rtol=0)
    other = load_model(into)  # the same pair with another refiner
    with torch.no_grad():
        next(other.refiner.parameters()).add_(1.0)
    with pytest.raises(SystemExit, match="refiner is not"):
        ship.ship(run, save_pipeline(other, tmp_path / "other", other.metadata))
