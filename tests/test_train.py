import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lab6.commands import launch_command
from lab6.config import TrainConfig
from lab6.loading import load_pipeline as load_model
from lab6.presets import preset
from lab6.train import Trainer, latest_checkpoint, lr_factor
from lab6.train_state import TrainState


def lab6(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab6.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kwargs)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"))


def test_tiny_run_writes_everything(tiny_run):
    assert (tiny_run / "model" / "model_index.json").is_file()
    assert (tiny_run / "train_config.json").is_file()
    assert latest_checkpoint(tiny_run).name == "step-00000012"
    rows = list(csv.DictReader((tiny_run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [5, 10]
    assert all(float(r["loss"]) > 0 and float(r["images_per_s"]) > 0 for r in rows)
    assert sorted(p.name for p in (tiny_run / "samples").iterdir()) == [
        "step-00000012-new_test.png", "step-00000012-test.png"]
    loaded = load_model(tiny_run)
    assert loaded.metadata["train_step"] == 12 and loaded.unet.config.sample_size == 16


def test_budget_is_required(tiny_root, tmp_path):
    from lab6.train import Trainer

    with pytest.raises(ValueError, match="give a budget"):
        Trainer(preset("tiny"), tiny_root, tmp_path / "run", progress=False)


def test_init_from_starts_at_the_saved_weights(tiny_run, tiny_root, tmp_path):
    from lab6.train import Trainer

    trainer = Trainer(preset("tiny", steps=1, init_from=str(tiny_run)), tiny_root, tmp_path / "fine", progress=False)
    start = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    saved = weights(tiny_run / "model")
    assert saved.keys() == start.keys()
    assert all(torch.equal(saved[k], start[k]) for k in saved)
    # the starting model's training record travels with the fine-tuned one
    assert trainer.metadata()["parent"]["train_step"] == 12


def test_resumed_fine_tuning_keeps_the_record_it_started_from(tiny_run, tiny_root, tmp_path):
    import json
    import shutil

    from lab6.run_files import METADATA_FILE
    from lab6.train import Trainer

    start = tmp_path / "start"
    shutil.copytree(tiny_run / "model", start)
    cfg = preset("tiny", steps=4, init_from=str(start))
    # --resume before any checkpoint exists still starts from the given weights, not random ones
    first = Trainer(cfg, tiny_root, tmp_path / "fine", resume=True, progress=False)
    first_weights = first.accelerator.unwrap_model(first.model).state_dict()
    saved = weights(start)
    assert all(torch.equal(saved[k], first_weights[k]) for k in saved)
    first.save_checkpoint()
    # the starting folder is then replaced (e.g. the result shipped over it) before the run resumes
    (start / METADATA_FILE).write_text(json.dumps({"train_step": 999}))
    resumed = Trainer(cfg, tiny_root, tmp_path / "fine", resume=True, progress=False)
    assert resumed.metadata()["parent"]["train_step"] == 12


def test_init_from_refuses_another_architecture(tiny_run, tiny_root, tmp_path):
    from lab6.train import Trainer

    with pytest.raises(ValueError, match=r"does not match the recipe \(block_out_channels"):
        Trainer(preset("tiny", steps=1, init_from=str(tiny_run), block_out_channels=(16, 16)), tiny_root,
                tmp_path / "fine", progress=False)
    with pytest.raises(ValueError, match="prediction_type: model has 'v_prediction', recipe has 'epsilon'"):
        Trainer(preset("tiny", steps=1, init_from=str(tiny_run), prediction="epsilon"), tiny_root,
                tmp_path / "fine", progress=False)


def test_a_small_model_grows_into_a_patch_2_recipe_that_starts_where_it_left_off(tiny_run, tiny_root, tmp_path):
    """init_from a patch-1 model into a patch-2 recipe at twice the size (how a 32-px model starts a native
    64-px one): on a block-constant image the grown model predicts exactly the small one's output, upsampled."""
    import torch.nn.functional as F

    from lab6.train import Trainer

    small = load_model(tiny_run).unet.eval()
    grown_cfg = preset("tiny", steps=1, init_from=str(tiny_run), image_size=32, patch_size=2, snr_shift=0.25)
    trainer = Trainer(grown_cfg, tiny_root, tmp_path / "grown", progress=False)
    grown = trainer.accelerator.unwrap_model(trainer.model).eval()
    generator = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 3, 16, 16, generator=generator), torch.tensor([10, 400, 990])
    condition = torch.zeros(3, 24)
    condition[0, 1] = condition[1, [2, 9]] = condition[2, [0, 12, 23]] = 1

    def upsample(a):
        return F.interpolate(a, scale_factor=2, mode="nearest")

    with torch.no_grad():
        torch.testing.assert_close(grown(upsample(x), t, condition), upsample(small(x, t, condition)),
                                   atol=1e-5, rtol=1e-4)
        # and it is a 32-px model that sees every pixel: detail inside a block changes its prediction
        detail = 0.1 * torch.randn(3, 3, 32, 32, generator=generator)
        assert not torch.allclose(grown(upsample(x) + detail, t, condition), grown(upsample(x), t, condition))
    with pytest.raises(ValueError, match="sample_size: model has 16, recipe has 64"):  # grows only to p times its size
        Trainer(preset("tiny", steps=1, init_from=str(tiny_run), image_size=64, patch_size=2), tiny_root,
                tmp_path / "wrong", progress=False)


def test_a_model_given_a_full_resolution_head_starts_where_it_left_off_and_the_head_learns(tiny_run, tiny_root,
                                                                                           tmp_path):
    """init_from a model without a head into a recipe with one: the head's last conv starts at zero, so the
    predictions are the old model's; one training step moves it (it gets gradients through the zero conv)."""
    from lab6.train import Trainer

    old = load_model(tiny_run).unet.eval()
    trainer = Trainer(preset("tiny", steps=1, init_from=str(tiny_run), full_res_channels=8), tiny_root,
                      tmp_path / "head", progress=False)
    headed = trainer.accelerator.unwrap_model(trainer.model).eval()
    x, t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 700])
    condition = torch.zeros(2, 24)
    condition[0, 3] = condition[1, [4, 20]] = 1
    with torch.no_grad():
        torch.testing.assert_close(headed(x, t, condition), old(x, t, condition))
    before = headed.full_res_head.conv_out.weight.detach().clone()
    trainer.train()
    assert not torch.equal(headed.full_res_head.conv_out.weight, before)


def test_a_grown_refiner_with_a_detail_prior_denoises_the_detail_inside_its_patches_from_its_first_step(
        tiny_run, tiny_root, tmp_path):
    """A 32-px body grown into patches predicts one value per patch, so the noise inside the patches would stay
    in the image; with ``detail_prior`` the head starts as that detail's linear denoiser: on a clean image
    without in-patch detail its prediction's in-patch part is the target's. The gains are saved with the
    weights, so the exported model (and any sampler) has them."""
    from lab6.refiner import detail_gain, patch_detail
    from lab6.train import Trainer

    cfg = preset("tiny", steps=1, init_from=str(tiny_run), image_size=32, patch_size=2, snr_shift=0.25,
                 full_res_channels=8, detail_prior=1e-6)
    trainer = Trainer(cfg, tiny_root, tmp_path / "refiner", progress=False)
    grown = trainer.accelerator.unwrap_model(trainer.model).eval()
    scheduler = cfg.noise_scheduler()
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(3, 3, 16, 16, generator=generator).repeat_interleave(2, 2).repeat_interleave(2, 3)
    noise, t = torch.randn(3, 3, 32, 32, generator=generator), torch.tensor([5, 100, 290])
    condition = torch.zeros(3, 24)
    condition[0, 1] = condition[1, [2, 9]] = condition[2, [0, 12, 23]] = 1
    with torch.no_grad():
        predicted = patch_detail(grown(scheduler.add_noise(clean, noise, t), t, condition), 2)
    torch.testing.assert_close(predicted, patch_detail(scheduler.get_velocity(clean, noise, t), 2),
                               atol=1e-3, rtol=1e-2)
    trainer.train()
    exported = load_model(tmp_path / "refiner").unet
    torch.testing.assert_close(exported.full_res_head.detail_gain, detail_gain(scheduler, 1e-6))
    with pytest.raises(ValueError, match=r"detail_skip \(--set detail_prior=1e-06 keeps the model's detail gains\): "
                                         r"model has True, recipe has False"):  # continuing it without the prior
        Trainer(cfg.replace(init_from=str(tmp_path / "refiner"), detail_prior=0.0), tiny_root, tmp_path / "more",
                progress=False)
    with pytest.raises(ValueError, match=r"detail_prior must be in \[0, 1\) and needs a full-resolution head over "
                                         r"patches .* got detail_prior=0.001 with full_res_channels=0, patch_size=1"):
        Trainer(preset("tiny", steps=1, detail_prior=1e-3), tiny_root, tmp_path / "no-head", progress=False)


def test_a_colour_prior_gives_the_colour_part_of_the_detail_its_own_least_squares_gain(tiny_run, tiny_root, tmp_path):
    """``detail_chroma_prior``: the head's colour gain is ``detail_gain`` for that energy, the grey one is
    ``detail_prior``'s, both saved with the weights; without a ``detail_prior`` it is refused."""
    from lab6.refiner import detail_gain
    from lab6.train import Trainer

    cfg = preset("tiny", steps=1, init_from=str(tiny_run), image_size=32, patch_size=2, snr_shift=0.25,
                 full_res_channels=8, detail_prior=1e-3, detail_chroma_prior=1e-4)
    Trainer(cfg, tiny_root, tmp_path / "refiner", progress=False).train()
    head = load_model(tmp_path / "refiner").unet.full_res_head
    scheduler = cfg.noise_scheduler()
    torch.testing.assert_close(head.detail_gain, detail_gain(scheduler, 1e-3))
    torch.testing.assert_close(head.detail_chroma_gain, detail_gain(scheduler, 1e-4))
    assert not torch.equal(head.detail_gain, head.detail_chroma_gain)
    with pytest.raises(ValueError, match=r"detail_chroma_prior must be null \(one gain for every colour\) or in "
                                         r"\[0, 1\) with a detail_prior > 0, got detail_chroma_prior=0.0001 with "
                                         r"detail_prior=0.0"):
        Trainer(cfg.replace(detail_prior=0.0), tiny_root, tmp_path / "no-prior", progress=False)
    with pytest.raises(ValueError, match=r"detail_chroma \(--set detail_chroma_prior=0.0001 keeps the model's detail "
                                         r"gains\): model has True, recipe has False"):  # continuing it colour-blind
        Trainer(cfg.replace(init_from=str(tmp_path / "refiner"), detail_chroma_prior=None), tiny_root,
                tmp_path / "more", progress=False)


def test_evaluation_covers_the_configured_splits(tiny_root, tmp_path, evaluator_file):
    from lab6.train import train

    out = tmp_path / "run"
    train(preset("tiny", steps=2, eval_splits=("heldout", "new_test")), tiny_root, out, evaluator=evaluator_file,
          progress=False)
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert [r["split"] for r in rows] == ["heldout", "new_test"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step-00000002-heldout.png", "step-00000002-new_test.png"]


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 0.0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 0.0, cfg) == pytest.approx(1.0)
    assert lr_factor(50, 0.5, cfg) == pytest.approx(0.55)
    assert lr_factor(100, 1.0, cfg) == pytest.approx(0.1)


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16"), (False, True, "bf16"),
                                                         (False, False, "no")])
def test_auto_precision_on_a_cpu_is_bf16_only_where_it_has_bf16_instructions(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert TrainConfig().resolved_mixed_precision() == expected
    assert TrainConfig(mixed_precision="no").resolved_mixed_precision() == "no"


def test_minutes_left_follow_the_pace_of_the_budget_spent():
    state = TrainState()
    state.elapsed = 600.0  # 10 minutes for a quarter of the budget: 30 to go
    assert state.minutes_left(0.25) == pytest.approx(30.0)
    assert state.minutes_left(1.0) == 0.0


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tiny_root, tmp_path):
    args = ["train", "--data-root", tiny_root, "--preset", "tiny", "--steps", 400, "--checkpoint-steps", 20,
            "--quiet"]
    straight = tmp_path / "straight"
    assert lab6(*args, "--out", straight).returncode == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "lab6.cli", *map(str, args), "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        checkpoint = latest_checkpoint(killed)
        if checkpoint is not None and int(checkpoint.name[5:]) >= 100:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model").exists()
    stopped_at = int(latest_checkpoint(killed).name[5:])
    assert 100 <= stopped_at < 400
    for checkpoint in (killed / "checkpoints").glob("step-*"):  # every complete checkpoint loads
        load_model(checkpoint / "ema")

    resumed = lab6(*args, "--out", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {killed / 'checkpoints'}" in resumed.stdout
    assert load_model(killed).metadata["train_step"] == 400
    rows = [int(r["step"]) for r in csv.DictReader((killed / "metrics.csv").open())]
    assert rows == sorted(set(rows)) and rows[-1] == 400  # no duplicated rows from the lost steps
    a, b = weights(straight / "model"), weights(killed / "model")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"


@pytest.mark.slow
def test_two_process_accelerate_launch(tiny_root, tmp_path):
    out = tmp_path / "ddp"
    command = launch_command(2, "-m", "lab6.cli", "train", "--data-root", str(tiny_root), "--preset", "tiny",
                             "--steps", "6", "--out", str(out), "--quiet")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = load_model(out).metadata
    assert metadata["processes"] == 2 and metadata["train_step"] == 6


def test_a_run_config_written_with_the_old_guidance_field_reads_back_as_guidance_scale(tmp_path):
    """``--resume`` of a run folder written before the field took diffusers' name keeps its guidance scale."""
    values = json.loads(preset("tiny").to_json())
    values["guidance"] = values.pop("guidance_scale") + 1.5
    (tmp_path / "train_config.json").write_text(json.dumps(values))
    assert TrainConfig.from_json(tmp_path / "train_config.json") == preset("tiny", guidance_scale=3.5)


def test_ctrl_c_stops_after_the_step_and_a_second_ctrl_c_at_once(tiny_root, tmp_path):
    """The first Ctrl-C (or SIGTERM) only asks the loop to stop after the step it is in, so the checkpoint it takes
    holds whole steps; a second Ctrl-C raises at once (the last checkpoint stands)."""
    trainer = Trainer(preset("tiny", steps=1, log_with="none"), tiny_root, tmp_path / "run", progress=False)
    trainer._on_stop(signal.SIGINT, None)
    assert trainer._stop_signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        trainer._on_stop(signal.SIGINT, None)
