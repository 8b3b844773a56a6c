"""Guidance distillation: the loss, the student's fine-tune, the exported two-stage folder, exact resume."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from lab6.config import TrainConfig
from lab6.distill import DistillTrainer, distillation_loss
from lab6.loading import load_pipeline
from lab6.presets import preset
from lab6.progressive import distill
from lab6.refiner import RefinedPipeline
from lab6.train import Trainer


def _batch(unet, n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    images = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    labels = (torch.rand(n, 24, generator=g) < 0.1).float()
    labels[:, 0] = 1  # at least one object each: the conditional call differs from the unconditional one
    return images, labels


def _loss(student, teacher, scheduler, w: float, seed: int = 1) -> float:
    images, labels = _batch(teacher)
    with torch.no_grad():
        return distillation_loss(student, teacher, images, labels, scheduler, w,
                                 generator=torch.Generator().manual_seed(seed)).item()


def test_the_loss_is_zero_for_the_teacher_itself_at_w_1_and_not_at_w_3(tiny_run):
    pipe = load_pipeline(tiny_run)
    teacher, student = pipe.unet, copy.deepcopy(pipe.unet)
    assert _loss(student, teacher, pipe.scheduler, 1.0) < 1e-10
    assert _loss(student, teacher, pipe.scheduler, 3.0) > 1e-6  # guidance moves the target: the check can fail


def test_a_few_steps_move_the_students_one_call_toward_the_teachers_guided_output(tiny_run, tiny_root, tmp_path):
    trainer = DistillTrainer(tiny_run, tiny_root, tmp_path / "run", guidance_scale=3.0, steps=10, warmup_steps=0,
                             progress=False)
    images, labels = trainer.dataset.batch(torch.arange(8))

    def loss() -> float:  # the same noisy images and timesteps every time
        with torch.no_grad():
            return trainer.loss(images, labels, torch.Generator().manual_seed(5)).item()

    before = loss()  # the student starts as the teacher: its error is the guidance's (w - 1) (cond - uncond)
    for _ in range(10):
        trainer.optimiser_step(images, labels, torch.Generator().manual_seed(5))
    assert loss() < 0.7 * before, (before, loss())


def test_the_distillation_loss_runs_in_full_precision_where_training_runs_in_bf16(tiny_run, tiny_root, tmp_path):
    bf16 = TrainConfig().resolved_mixed_precision() == "bf16"  # this machine's auto: the state every run here shares
    trainers = {"train": Trainer(preset("tiny", steps=1), tiny_root, tmp_path / "train", progress=False),
                "distill": DistillTrainer(tiny_run, tiny_root, tmp_path / "distill", steps=1, progress=False)}
    for name, trainer in trainers.items():
        seen = []
        trainer.model.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
        images, labels = trainer.dataset.batch(torch.arange(4))
        trainer.optimiser_step(images, labels, torch.Generator().manual_seed(0))
        assert set(seen) == {bf16 and name == "train"}, name


@pytest.fixture(scope="module")
def distilled_pair(tiny_refined_model, tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    return tiny_refined_model, distill(tiny_refined_model, tiny_root, out, guidance_scale=3.0, steps=4,
                                       eval_splits=(), progress=False)


def test_the_exported_folder_is_the_teachers_pair_drawn_unguided(distilled_pair):
    teacher_dir, model = distilled_pair
    pipe, teacher = load_pipeline(model), load_pipeline(teacher_dir)
    assert isinstance(pipe, RefinedPipeline) and pipe.guidance_scale == 1.0
    assert pipe.config.refiner_strength == teacher.config.refiner_strength
    refiner, teachers = pipe.refiner.state_dict(), teacher.refiner.state_dict()
    assert all(torch.equal(refiner[k], teachers[k]) for k in teachers)  # the refiner is the teacher's
    record = json.loads((model / "lab6.json").read_text())
    assert record["distilled"] == {"kind": "guidance", "from": str(teacher.path), "guidance_scale": 3.0,
                                   "calls_per_step": 1}
    assert record["guidance"] == 1.0 and record["parent"]["recipe"] == teacher.metadata["recipe"]
    images = pipe([["red cube"], ["blue sphere"]], num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                  output_type="pt").images
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()


def test_resume_continues_exactly(tiny_run, tiny_root, tmp_path):
    def trainer(out, resume=False):
        return DistillTrainer(tiny_run, tiny_root, out, guidance_scale=3.0, steps=4, checkpoint_steps=2,
                              resume=resume, eval_splits=(), progress=False)

    straight = trainer(tmp_path / "straight")
    straight.train()
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")  # as if killed right after step 2's checkpoint
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-00000004")
    resumed = trainer(tmp_path / "resumed", resume=True)
    assert resumed.state.step == 2
    resumed.train()
    a, b = (t.accelerator.unwrap_model(t.model).state_dict() for t in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
