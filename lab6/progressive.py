"""Progressive distillation: a student that takes in one DDIM step what its teacher takes in two.

Salimans & Ho 2022 ("Progressive distillation for fast sampling of diffusion models"): from a noisy training
image z_t on the student's step grid, the teacher takes two deterministic DDIM steps, t -> t' -> t''; the student
learns the one prediction whose single DDIM step t -> t'' lands where the teacher's two did. Halving again and
again (16 -> 8 -> 4 -> 2 -> 1 steps), each round's student the next round's teacher, brings a model to a few
steps for a few short fine-tunes. A teacher drawn at ``guidance_scale`` w > 1 is distilled at the same time into
an unguided student (one network call per step, Meng et al. 2023); a guidance-distilled teacher (``lab6.distill``)
costs one call per teacher step instead of two.

The student's sampler is diffusers' ``DDIMScheduler`` with trailing spacing on ``steps`` steps, which a step
count that divides T reproduces exactly (:func:`step_grid`); the exported folder names that scheduler and
records its steps, so ``Sampling`` draws it on its own grid. Measured: docs/samplers.md#few-step-distillation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from .diffusion import initial_noise
from .distill import DistillTrainer
from .loading import save_pipeline
from .pipeline import guided_output
from .run_files import atomic_path, is_model_folder
from .samplers import make_sampler
from .sampling import model_record


def step_grid(steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """The timesteps a DDIM sampler of ``steps`` trailing steps visits, then -1 for the clean image:
    ``step_grid(4) == [999, 749, 499, 249, -1]`` (diffusers' ``timestep_spacing="trailing"``). The grid of 2n
    steps holds the grid of n at its even places, which is what lets a student halve its teacher's steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ratio = num_train_timesteps / steps
    return [int(round(num_train_timesteps - k * ratio)) - 1 for k in range(steps)] + [-1]


def check_student_steps(steps: int, num_train_timesteps: int = 1000) -> int:
    """``steps`` if diffusers' DDIM reproduces its grid (it steps to t - T // steps, exact when steps divides T)."""
    if steps < 1 or num_train_timesteps % steps:
        divisors = [n for n in (1, 2, 4, 5, 8, 10, 20, 25, 40, 50) if num_train_timesteps % n == 0]
        raise ValueError(f"a distilled student's steps must divide the {num_train_timesteps} training timesteps "
                         f"(DDIM's step is t - T // steps); got {steps}, choose e.g. one of {divisors}")
    return steps


def progressive_loss(student, teacher, images: torch.Tensor, condition: torch.Tensor, alphas_cumprod: torch.Tensor,
                     student_steps: int, teacher_guidance: float = 1.0, *, generator: torch.Generator | None = None,
                     noise_kind: str = "gaussian") -> torch.Tensor:
    """The student's one step against the teacher's two, at a random step of the student's grid.

    Both networks predict v. The loss is the v error, which is the x_0 error weighted by SNR + 1 (Salimans & Ho's
    "SNR+1" weighting: no step is ignored, the noisiest ones included, where x_0 is decided).

    Args:
        student, teacher: called as ``model(noisy, timesteps, condition)``.
        images: clean images in [-1, 1], ``(B, C, H, W)``; condition: multi-hot labels, ``(B, 24)``.
        alphas_cumprod: the training schedule's alpha_bar, ``(T,)``.
        student_steps: the student's DDIM steps; the teacher takes twice as many.
        teacher_guidance: the teacher's w (``pipeline.guided_output``); the student is drawn at w = 1.
        generator: the random generator of the steps and noise (drawn on the CPU).
        noise_kind: the noise that makes z_t (``diffusion.initial_noise``): the sampler's starting noise, so that
            the noisiest step sees what sampling starts from.

    Returns:
        The mean loss, a scalar tensor.
    """
    b, device = images.shape[0], images.device
    grid = torch.tensor(step_grid(2 * student_steps, len(alphas_cumprod)), device=device)
    step = torch.randint(0, student_steps, (b,), generator=generator).to(device)
    noise = initial_noise(images.shape, generator, noise_kind).to(device)
    t = grid[2 * step]
    a_t = alphas_cumprod.to(device)[t].float().view(b, 1, 1, 1)
    z_t = a_t.sqrt() * images + (1 - a_t).sqrt() * noise
    with torch.no_grad():
        target = two_step_target(teacher, z_t, grid[2 * step], grid[2 * step + 1], grid[2 * step + 2], condition,
                                 alphas_cumprod, teacher_guidance)
    return F.mse_loss(student(z_t, t, condition).float(), target.float())


def two_step_target(teacher, z_t: torch.Tensor, t: torch.Tensor, t_mid: torch.Tensor, t_next: torch.Tensor,
                    condition: torch.Tensor, alphas_cumprod: torch.Tensor, guidance: float = 1.0) -> torch.Tensor:
    """The v whose one DDIM step (eta = 0) from ``z_t`` at ``t`` reaches where the teacher's two DDIM steps,
    t -> t_mid -> t_next, do. Timesteps are per image; -1 is the clean image (alpha_bar = 1)."""
    alpha = torch.cat([alphas_cumprod.to(z_t.device).float(), z_t.new_ones(1)])

    def coefficients(timesteps):
        a = alpha[timesteps].view(-1, 1, 1, 1)
        return a.sqrt(), (1 - a).sqrt()

    (a_t, s_t), (a_mid, s_mid), (a_next, s_next) = coefficients(t), coefficients(t_mid), coefficients(t_next)
    v = guided_output(teacher, z_t, t, condition, guidance)  # v -> x_0 and epsilon, then DDIM's step
    x0, eps = a_t * z_t - s_t * v, s_t * z_t + a_t * v
    z_mid = a_mid * x0 + s_mid * eps
    v = guided_output(teacher, z_mid, t_mid, condition, guidance)
    x0, eps = a_mid * z_mid - s_mid * v, s_mid * z_mid + a_mid * v
    z_next = a_next * x0 + s_next * eps
    # The x_0 whose one DDIM step from z_t reaches z_next, then the v that says it
    ratio = s_next / s_t
    x0_target = (z_next - ratio * z_t) / (a_next - ratio * a_t)
    eps_target = (z_t - a_t * x0_target) / s_t
    return a_t * eps_target - s_t * x0_target


class ProgressiveTrainer(DistillTrainer):
    """``DistillTrainer`` whose loss is :func:`progressive_loss`: a student of ``sampling_steps`` DDIM steps from a
    teacher drawn at twice as many. The exported folder is the teacher's (its refiner and starting noise) with the
    student as first stage, DDIM as its sampler, its steps recorded, at ``guidance_scale=1``.

    Args:
        model: the teacher's model folder (or run): a guidance-distilled one, a previous round's, or any.
        data_root, out, resume, evaluator, progress: as ``Trainer``'s.
        sampling_steps: the student's DDIM steps (dividing T; the teacher takes twice as many).
        changes: the recipe's fields to change (a budget: ``minutes=20`` or ``steps=500`` training steps).
    """

    def __init__(self, model: str | Path, data_root: str | Path, out: str | Path, *, sampling_steps: int,
                 resume: bool = False, evaluator: str | Path | None = None, progress: bool = True, **changes):
        self.student_steps = check_student_steps(sampling_steps)
        changes = {"eval_sampler": "ddim", "eval_steps": sampling_steps, **changes}  # evaluated as it will draw
        super().__init__(model, data_root, out, resume=resume, evaluator=evaluator, progress=progress, **changes)
        if self.noise_scheduler.config.prediction_type != "v_prediction":
            raise ValueError(f"progressive distillation takes a v-prediction teacher; {model} predicts "
                             f"{self.noise_scheduler.config.prediction_type!r}")
        self.alphas_cumprod = self.noise_scheduler.alphas_cumprod.to(self.accelerator.device)

    def loss(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return progressive_loss(self.model, self.teacher.unet, images, labels, self.alphas_cumprod,
                                self.student_steps, self.distilled_scale, generator=generator,
                                noise_kind=self.teacher.initial_noise)

    def metadata(self) -> dict:
        record = super().metadata()
        record.update(sampler="ddim", steps=self.student_steps,
                      distilled={"kind": "progressive", "from": str(self.teacher.path), "steps": self.student_steps,
                                 "teacher_steps": 2 * self.student_steps, "teacher_guidance": self.distilled_scale,
                                 "calls_per_step": 1})
        return record

    def export(self, path: Path) -> Path:
        acc = self.accelerator
        if acc.is_main_process:
            ddim = make_sampler("ddim", self.teacher.scheduler.config, noise=self.teacher.initial_noise)
            with self.ema_weights() as student:
                save_pipeline(self.teacher.replaced(unet=student, scheduler=ddim, guidance_scale=1.0), path,
                              self.metadata())
        acc.wait_for_everyone()
        return path


def distill_stages(guided: bool, sampling_steps: int | None,
                   first_teacher_steps: int = 16) -> list[tuple[str, int | None]]:
    """The runs of a few-step distillation, in order, as (folder name, student steps): guidance distillation
    (steps None) when the teacher guides, then halvings from ``first_teacher_steps`` down to ``sampling_steps``:
    ``distill_stages(True, 4) == [("guidance", None), ("steps-8", 8), ("steps-4", 4)]``."""
    stages = [("guidance", None)] if guided else []
    if sampling_steps is not None:
        halvings = [first_teacher_steps >> k for k in range(1, first_teacher_steps.bit_length())]
        if sampling_steps not in halvings:
            raise ValueError(f"the student's steps must be the first teacher's {first_teacher_steps} halved one or "
                             f"more times ({', '.join(map(str, halvings))}), got {sampling_steps}")
        stages += [(f"steps-{n}", check_student_steps(n)) for n in halvings if n >= sampling_steps]
    if not stages:
        raise ValueError("nothing to distil: the model draws at guidance_scale 1 already; ask for fewer steps "
                         "(sampling_steps, e.g. 4)")
    return stages


def distill(model: str | Path, data_root: str | Path, out: str | Path, *, sampling_steps: int | None = None,
            guidance_scale: float | None = None, resume: bool = False, evaluator: str | Path | None = None,
            progress: bool = True, minutes: float | None = None, **changes) -> Path | None:
    """One command from a guided model to one that draws in ``sampling_steps`` unguided DDIM steps (None: the
    guidance distillation alone, at the model's sampler): the runs of :func:`distill_stages`, each in its own
    folder of ``out`` and each the next one's teacher. ``minutes`` is shared equally among them; ``changes`` (a
    budget of ``steps``, any recipe field) apply to each. ``out/model`` is the last run's model. With ``resume``,
    finished runs are kept and a stopped one continues exactly. Returns ``out/model`` (None when a run was
    stopped by SIGTERM or Ctrl-C)."""
    scale = float(model_record(model).get("guidance", 1.0) if guidance_scale is None else guidance_scale)
    stages = distill_stages(scale != 1, sampling_steps)
    if minutes is not None:
        changes["minutes"] = minutes / len(stages)
    out, teacher = Path(out), model
    for name, steps in stages:
        run = out / name
        if not (resume and is_model_folder(run / "model")):
            common = dict(resume=resume, evaluator=evaluator, progress=progress, **changes)
            trainer = (DistillTrainer(teacher, data_root, run, guidance_scale=scale, **common) if steps is None
                       else ProgressiveTrainer(teacher, data_root, run, sampling_steps=steps, **common))
            if trainer.train() is None:
                return None
        teacher = run / "model"
    with atomic_path(out / "model") as tmp:
        shutil.copytree(teacher, tmp)
    return out / "model"
