"""The maintenance scripts under tools/ that are not exercised elsewhere (ship_model, convert_model, pack_images),
and the table that bench_fidelity prints onto the model card."""

import importlib.util
import re
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from huggingface_hub import ModelCard

from lab6.loading import load_pipeline as load_model

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str, folder: str = "tools"):
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
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


def test_the_fidelity_table_has_a_cell_under_every_heading():
    bench = load_tool("bench_fidelity", folder="bench")
    row = {"label": "a model", "sharpness": 1.25, "grid": 31.7, "colour_grain": 4.6, "cast": 0.93, "cast_p90": 1.45,
           "cast_over_8": 0.0, "seconds": 19.9, "fd resnet18": 102.7, "acc resnet18": 0.896, "fd regnet": 68.5,
           "acc regnet": 0.918}
    header, rule, line = bench.markdown_table([row], ["resnet18", "regnet"])
    cells = dict(zip(header.strip("|").split("|"), line.strip("|").split("|")))
    assert header.count("|") == rule.count("|") == line.count("|")
    assert {k.strip(): v.strip() for k, v in cells.items()} == {
        "images": "a model", "Frechet (resnet18)": "102.7", "Frechet (regnet)": "68.5", "sharpness / real": "1.25",
        "2x2 grid / real": "31.7", "colour grain / real": "4.6", "cast mean": "0.93", "cast p90": "1.45",
        "cast > 8": "0.0%", "accuracy (resnet18)": "0.896", "accuracy (regnet)": "0.918", "s / 32 images": "19.9"}


def test_the_round_trip_table_puts_each_gap_beside_its_accuracies():
    bench = load_tool("bench_fidelity", folder="bench")
    row = {"label": "a model", "acc resnet18": 0.885, "acc32 resnet18": 0.961, "acc regnet": 0.968,
           "acc32 regnet": 0.960}
    blurred = {"label": "a 32-px model", "acc resnet18": 0.97, "acc regnet": 0.97}  # no round trip: left out
    header, rule, line = bench.round_trip_table([row, blurred], ["resnet18", "regnet"])
    assert header.count("|") == rule.count("|") == line.count("|") == 8
    assert [c.strip() for c in line.strip("|").split("|")] == [
        "a model", "0.885", "0.961", "+7.6 pt", "0.968", "0.960", "-0.8 pt"]


def test_the_shape_table_gives_each_evaluator_a_share_per_shape():
    bench = load_tool("bench_fidelity", folder="bench")
    row = {"label": "real images", "shapes resnet18": {"cube": 0.581, "sphere": 0.994, "cylinder": 0.916},
           "shapes regnet": {"cube": 0.969, "sphere": 0.989}}  # no cylinder among these images: no share
    header, rule, line = bench.shape_table([row], ["resnet18", "regnet"])
    assert header.count("|") == rule.count("|") == line.count("|") == 8
    cells = dict(zip((c.strip() for c in header.strip("|").split("|")),
                     (c.strip() for c in line.strip("|").split("|"))))
    assert cells == {"images": "real images", "cube (resnet18)": "0.581", "sphere (resnet18)": "0.994",
                     "cylinder (resnet18)": "0.916", "cube (regnet)": "0.969", "sphere (regnet)": "0.989",
                     "cylinder (regnet)": ""}


def test_bench_seeds_pairs_each_row_with_the_first_per_seed():
    bench = load_tool("bench_seeds", folder="bench")
    shapes = {"r": {"cube": 1.0, "sphere": 0.9, "cylinder": 0.8}}

    def seed(base_hits, other_hits):
        return {"base": {"hits": {"r": base_hits}, "shapes": shapes, "sharpness": 50.0, "cast": 1.0},
                "other": {"hits": {"r": other_hits}, "shapes": shapes, "sharpness": 25.0, "cast": 0.5}}

    # the base row's luck swings 10 labels between seeds; the other row is always 1 or 3 labels better
    record = {"labels": 100, "evaluators": ["r"], "real_sharpness": 50.0, "rows": ["base", "other"],
              "seeds": {"0": seed(80, 81), "1": seed(90, 93)}}
    lines = bench.table(record)
    assert lines[0].startswith("2 seeds x 100 labels")
    other = [c.strip() for c in lines[-1].strip("|").split("|")]
    # pooled 0.87 (sd 0.085 over seeds) yet +2.0 points paired, SE = sd(1, 3) / sqrt(2) = 1.0
    assert other == ["other", "0.8700 (0.085)", "+2.0 pt (1.0)", "1.000", "0.900", "0.800", "0.50", "0.50"]
    assert [c.strip() for c in lines[-2].strip("|").split("|")][2] == ""  # no difference for the baseline itself
    assert bench.merge([{**record, "seeds": {"0": record["seeds"]["0"]}},
                        {**record, "seeds": {"1": record["seeds"]["1"]}}]) == record
    with pytest.raises(SystemExit, match="the same rows"):
        bench.merge([record, {**record, "rows": ["base"]}])


def test_bench_seeds_reads_rows_and_seeds_and_names_what_is_allowed():
    bench = load_tool("bench_seeds", folder="bench")
    assert bench.row_setting("weaker=strength=0.1,refiner_steps=3") == ("weaker",
                                                                        {"strength": 0.1, "refiner_steps": 3})
    assert bench.row_setting("first stage=refine=false,guidance=2") == ("first stage",
                                                                        {"refine": False, "guidance": 2.0})
    assert bench.row_setting("shipped=") == ("shipped", {})
    assert bench.row_setting("w5=guidance=5,guidance_interval=0.28:5.42") == (
        "w5", {"guidance": 5.0, "guidance_interval": (0.28, 5.42)})
    assert bench.row_setting("everywhere=guidance_interval=none") == ("everywhere", {"guidance_interval": None})
    with pytest.raises(Exception,
                       match=r"bad guidance_interval '5:1': write LOW:HIGH or none \(guidance_interval must"):
        bench.row_setting("x=guidance_interval=5:1")
    with pytest.raises(Exception,
                       match="bad option 'strenght=0.1' in row 'x': write key=value with key one of sampler"):
        bench.row_setting("x=strenght=0.1")
    assert bench.seed_list("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(Exception, match="bad seeds 'a-b'"):
        bench.seed_list("a-b")


def test_bench_schedulers_reads_a_diffusers_class_its_steps_and_options_and_names_a_bad_row():
    bench = load_tool("bench_schedulers", folder="bench")
    assert bench.scheduler_row("UniPCMultistepScheduler-10") == ("UniPCMultistepScheduler", 10, {})
    assert bench.scheduler_row("DDIMScheduler-50:clip_sample=false,eta=0.5") == (
        "DDIMScheduler", 50, {"clip_sample": False, "eta": 0.5})
    assert bench.scheduler_row("HeunDiscreteScheduler-25:timestep_spacing=leading")[2] == {
        "timestep_spacing": "leading"}
    for bad in ("UniPC-10", "UniPCMultistepScheduler", "DiffusionPipeline-10"):
        with pytest.raises(Exception, match=f"bad row '{bad}': write Class-STEPS"):
            bench.scheduler_row(bad)


def test_bench_seeds_rows_share_the_first_stage_and_refine_from_the_same_noise(tiny_refined_model):
    from lab6.sampling import generate

    bench = load_tool("bench_seeds", folder="bench")
    pipe = load_model(tiny_refined_model)
    conditions = [["red cube"], ["gray sphere", "cyan cube"]]
    rows = [("shipped", {"steps": 5}), ("same strength", {"steps": 5, "strength": 0.2, "refiner_steps": 1}),
            ("weaker", {"steps": 5, "strength": 0.1}), ("first stage", {"steps": 5, "refine": False}),
            ("interval", {"steps": 5, "refine": False, "guidance_interval": (0.5, 2.0)})]
    drawn = bench.draw_rows(bench.plan_rows(pipe, rows), conditions, seed=3)
    assert torch.equal(drawn["first stage"],
                       generate(pipe, conditions, steps=5, seed=3, refine=False, progress=False).images)
    assert torch.equal(drawn["shipped"], drawn["same strength"])  # the setting alone tells rows apart
    assert not torch.equal(drawn["weaker"], drawn["shipped"]) and drawn["weaker"].shape == (2, 3, 64, 64)
    assert torch.equal(drawn["interval"], generate(pipe.with_guidance_interval((0.5, 2.0)), conditions, steps=5,
                                                   seed=3, refine=False, progress=False).images)
    assert not torch.equal(drawn["interval"], drawn["first stage"])
