"""Progressive distillation: the step grid, the two-step target, the rounds of `lab6 distill --to-steps`, the
exported folder drawn on its own grid, a first stage kept beside its pair, and the picker opening on it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lab6.loading import few_step_model, load_pipeline, save_first_stage
from lab6.progressive import ProgressiveTrainer, distill, distill_stages, progressive_loss, step_grid, two_step_target
from lab6.samplers import make_sampler
from lab6.sampling import Sampling, generate, own_sampler
from lab6.widgets import PICKER_STEPS, LabelPicker


@pytest.mark.parametrize("steps", [1, 2, 4, 8, 20])
def test_the_grid_is_the_one_diffusers_ddim_steps_on(tiny_run, steps):
    ddim = make_sampler("ddim", load_pipeline(tiny_run).scheduler.config)
    ddim.set_timesteps(steps)
    grid = step_grid(steps)
    assert ddim.timesteps.tolist() == grid[:-1]
    assert [int(t) - 1000 // steps for t in ddim.timesteps] == grid[1:]  # where DDIMScheduler.step goes
    assert step_grid(2 * steps)[::2] == grid  # the teacher's grid holds the student's


def test_the_steps_must_divide_the_training_timesteps_and_halve_the_first_teacher(tiny_run, tiny_root, tmp_path):
    with pytest.raises(ValueError, match="must divide the 1000 training timesteps.*got 3"):
        ProgressiveTrainer(tiny_run, tiny_root, tmp_path / "run", sampling_steps=3, steps=1)
    with pytest.raises(ValueError, match=r"halved one or more times \(8, 4, 2, 1\), got 16"):
        distill_stages(True, 16)
    assert distill_stages(True, 4) == [("guidance", None), ("steps-8", 8), ("steps-4", 4)]
    assert distill_stages(False, 2) == [("steps-8", 8), ("steps-4", 4), ("steps-2", 2)]
    with pytest.raises(ValueError, match="nothing to distil"):
        distill_stages(False, None)


def test_one_ddim_step_with_the_target_lands_where_the_teachers_two_do(tiny_run):
    """The claim of the method, checked with diffusers' own DDIM: the target's one step of the student's 2-step grid
    reaches the teacher's two steps of the 4-step grid, from every step of the student's grid."""
    pipe = load_pipeline(tiny_run)
    teacher, config = pipe.unet, pipe.scheduler.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    condition = torch.zeros(2, 24)
    condition[:, [1, 10]] = 1
    student_ddim, teacher_ddim = make_sampler("ddim", config), make_sampler("ddim", config)
    student_ddim.set_timesteps(2)
    teacher_ddim.set_timesteps(4)
    alphas = student_ddim.alphas_cumprod
    grid = step_grid(4)
    for i in range(2):
        t, t_mid, t_next = (torch.full((2,), grid[2 * i + k]) for k in range(3))
        with torch.no_grad():
            z = x
            for s in (t, t_mid):
                z = teacher_ddim.step(teacher(z, s, condition), int(s[0]), z).prev_sample
            target = two_step_target(teacher, x, t, t_mid, t_next, condition, alphas)
        one_step = student_ddim.step(target, int(t[0]), x).prev_sample
        torch.testing.assert_close(one_step, z, atol=2e-5, rtol=1e-4)


def test_the_loss_is_zero_for_a_student_that_knows_the_only_image(tiny_run):
    """A one-image data set: the teacher that always predicts that image walks straight to it, and the student
    that always predicts it is exactly right; one that predicts a shifted image is not (the check can fail)."""
    alphas = load_pipeline(tiny_run).scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1

    def knows(clean):
        def model(z, t, condition):
            a = alphas[t].float().view(-1, 1, 1, 1)
            eps = (z - a.sqrt() * clean) / (1 - a).sqrt()
            return a.sqrt() * eps - (1 - a).sqrt() * clean
        return model

    images, condition = image.repeat(6, 1, 1, 1), torch.zeros(6, 24)
    for steps in (1, 4):
        def loss(student):
            return progressive_loss(student, knows(image), images, condition, alphas, steps,
                                    generator=torch.Generator().manual_seed(2)).item()
        assert loss(knows(image)) < 1e-8
        assert loss(knows(image + 0.1)) > 1e-4


@pytest.fixture(scope="module")
def chain(tiny_refined_model, tiny_root, tmp_path_factory):
    """`lab6 distill --to-steps 4` on the tiny pair: guidance, then 16 -> 8, then 8 -> 4, two steps each."""
    out = tmp_path_factory.mktemp("progressive") / "run"
    model = distill(tiny_refined_model, tiny_root, out, sampling_steps=4, guidance_scale=3.0, steps=2,
                    eval_splits=(), progress=False)
    return tiny_refined_model, out, model


def test_the_chain_writes_one_run_per_stage_and_the_last_ones_model(chain):
    teacher_dir, out, model = chain
    assert model == out / "model"
    assert sorted(p.name for p in out.iterdir()) == ["guidance", "model", "steps-4", "steps-8"]
    pipe = load_pipeline(model)
    record = pipe.metadata
    assert record["distilled"] == {"kind": "progressive", "from": str(out / "steps-8" / "model"), "steps": 4,
                                   "teacher_steps": 8, "teacher_guidance": 1.0, "calls_per_step": 1}
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.guidance_scale == 1.0
    teacher = load_pipeline(teacher_dir)
    assert all(torch.equal(a, b) for a, b in zip(pipe.refiner.state_dict().values(),
                                                teacher.refiner.state_dict().values()))
    steps8 = json.loads((out / "steps-8" / "model" / "lab6.json").read_text())
    assert steps8["distilled"]["from"] == str(out / "guidance" / "model")


def test_a_distilled_model_draws_on_its_own_grid_unless_told(chain):
    _, _, model = chain
    pipe = load_pipeline(model)
    assert own_sampler(pipe) == own_sampler(model) == ("ddim", 4)
    assert Sampling().resolved(pipe).sampler == "ddim" and Sampling().resolved(pipe).steps == 4
    assert Sampling(steps=6).resolved(pipe).steps == 6 and Sampling("dpmsolver").resolved(pipe).steps == 20
    seen = []
    result = generate(pipe, [["red cube"]], Sampling(seed=1), progress=False,
                      callback=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5)  # 4 first-stage steps and the refiner's one (round(4 x 0.2))
    assert result.sampling.name == "DDIM-4" and result.images.shape == (1, 3, 64, 64)


def test_a_distilled_pipeline_called_directly_takes_its_own_steps(chain):
    teacher_dir, _, model = chain
    for folder, steps in ((model, 4), (teacher_dir, 20)):
        pipe, seen = load_pipeline(folder), []
        assert pipe.default_steps == steps
        pipe([["red cube"]], output_type="pt", callback_on_step_end=lambda p, i, t, tensors: seen.append(i) or {})
        assert len(seen) == steps + pipe.refiner_steps(steps)


def test_resume_keeps_the_finished_runs_and_redoes_the_missing_one(chain, tiny_root):
    teacher_dir, out, _ = chain
    finished = {name: (out / name / "model" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
                for name in ("guidance", "steps-8")}
    shutil.rmtree(out / "steps-4")
    distill(teacher_dir, tiny_root, out, sampling_steps=4, guidance_scale=3.0, steps=2, eval_splits=(),
            progress=False, resume=True)
    assert {name: (out / name / "model" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
            for name in finished} == finished
    assert load_pipeline(out / "model").metadata["distilled"]["steps"] == 4


def test_a_first_stage_kept_beside_its_pair_draws_as_the_whole_folder(chain, tmp_path):
    _, _, model = chain
    whole = load_pipeline(model)
    pair_dir = tmp_path / "pair"
    shutil.copytree(model, pair_dir)
    assert few_step_model(pair_dir) is None
    save_first_stage(whole, pair_dir / "few-step", whole.metadata, stages_of=pair_dir)
    assert few_step_model(pair_dir) == few_step_model(str(pair_dir)) == pair_dir / "few-step"
    assert not (pair_dir / "few-step" / "refiner").exists()  # no second copy of the refiner
    alone = load_pipeline(pair_dir / "few-step")
    assert type(alone) is type(whole) and alone.metadata["first_stage_of"] == ".."
    assert own_sampler(alone) == ("ddim", 4)
    a, b = (generate(p, [["red cube"], ["blue sphere"]], Sampling(seed=3), progress=False).images
            for p in (whole, alone))
    assert torch.equal(a, b)


def test_the_picker_opens_on_a_distilled_models_own_sampler_and_steps(chain):
    _, _, model = chain
    picker = LabelPicker(str(model), evaluator=False)
    assert (picker.sampler_input.value, picker.steps_input.value) == ("ddim", 4)
    assert picker.guidance_input.value == 1.0  # its record's, before its weights load: guidance is in the weights
    picker.sampler_input.value = "dpmsolver"
    assert picker.steps_input.value == PICKER_STEPS["dpmsolver"]
    picker.sampler_input.value = "ddim"
    assert picker.steps_input.value == 4
    picker.set_condition(["red cube"])
    assert picker.generate().sampling.name == "DDIM-4"


def test_a_round_moves_the_student_toward_the_teachers_two_steps(tiny_run, tiny_root, tmp_path):
    trainer = ProgressiveTrainer(tiny_run, tiny_root, tmp_path / "run", sampling_steps=2, steps=10, warmup_steps=0,
                                 lr=1e-3, progress=False)
    images, labels = trainer.dataset.batch(torch.arange(8))

    def loss() -> float:
        with torch.no_grad():
            return trainer.loss(images, labels, torch.Generator().manual_seed(5)).item()

    before = loss()
    for _ in range(10):
        trainer.optimiser_step(images, labels, torch.Generator().manual_seed(5))
    assert loss() < 0.7 * before, (before, loss())


def test_the_report_says_which_sampler_drew_and_what_the_first_stage_was_distilled_from(chain, tiny_root, tmp_path):
    from lab6.report import write_report

    _, out, model = chain
    results = write_report(tmp_path / "report", data_root=tiny_root, model=model, evaluator=False, progress=False)
    assert (results["settings"]["sampler"], results["settings"]["steps"]) == ("ddim", 4)
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "sampler ddim (4 steps)" in summary
    assert f"distilled (progressive distillation to 4 DDIM steps, one network call per step) from `{out}" in summary
