"""Guidance distillation: a first stage that draws in one network call per step what a guided model draws in two.

Classifier-free guidance costs two calls per step (conditional and unconditional). A student trained to predict
``uncond + w * (cond - uncond)`` of its teacher in one call (the first stage of Meng et al. 2023, "On
distillation of guided diffusion models", at one fixed w) draws the same images unguided, at ``guidance_scale=1``,
for half the first stage's calls. It starts from the teacher's own weights, so a short fine-tune suffices.

The loop is ``lab6.train.Trainer``'s with another loss (checkpoints, exact resume, EMA, SIGTERM and budgets as
any run); the exported model folder is the teacher's, refiner included, with the student as its first stage.
``lab6 distill`` runs it, then (asked for fewer steps) ``lab6.progressive``'s rounds: ``progressive.distill``.
Measured against its teacher: docs/samplers.md#guidance-distillation.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from .config import TrainConfig
from .diffusion import min_snr_weight
from .loading import load_pipeline, save_pipeline
from .pipeline import guided_output
from .train import Trainer

#: The fine-tune's own knobs: the student starts at its teacher's weights, so a small learning rate and a short
#: warm-up; no label dropout (the student is always conditional); the evaluation only at the end.
DISTILL_RECIPE = dict(lr=1e-4, warmup_steps=50, cond_dropout=0.0, eval_every=None, guidance_scale=1.0)


def distillation_loss(student, teacher, images: torch.Tensor, condition: torch.Tensor, noise_scheduler: DDPMScheduler,
                      guidance_scale: float, *, generator: torch.Generator | None = None,
                      min_snr_gamma: float | None = 5.0) -> torch.Tensor:
    """The student's one call against the teacher's guided output at the same noisy image, timestep and labels.

    The noisy images are real training images noised at random timesteps, drawn as ``diffusion.training_loss``
    draws them (noise, then timesteps, from ``generator``): the student learns where the sampler will ask it.

    Args:
        student, teacher: called as ``model(noisy, timesteps, condition)``, both predicting the scheduler's
            ``prediction_type`` (the target stays in the teacher's own space, v for lab6's models).
        images: clean images in [-1, 1], ``(B, C, H, W)``; condition: multi-hot labels, ``(B, 24)``.
        noise_scheduler: the forward process the teacher was trained with.
        guidance_scale: the teacher's w the student learns to draw at w = 1.
        generator: the random generator of the noise and timesteps (drawn on the CPU).
        min_snr_gamma: the teacher's min-SNR weighting (``training_loss``'s), so that no timestep dominates.

    Returns:
        The mean loss, a scalar tensor; zero when the student is the teacher at ``guidance_scale = 1``.
    """
    b, device = images.shape[0], images.device
    noise = torch.randn(images.shape, generator=generator).to(device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b,), generator=generator).to(device)
    noisy = noise_scheduler.add_noise(images, noise, timesteps)
    with torch.no_grad():  # the teacher's guided output, as the sampler computes it
        target = guided_output(teacher, noisy, timesteps, condition, guidance_scale)
    output = student(noisy, timesteps, condition)
    loss = F.mse_loss(output.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma:
        loss = loss * min_snr_weight(noise_scheduler, timesteps, min_snr_gamma)
    return loss.mean()


def distill_config(teacher, **changes) -> TrainConfig:
    """The teacher's own training recipe (its ``lab6.json``), started from its weights, with
    :data:`DISTILL_RECIPE` and ``changes`` (a budget: ``minutes``, ``steps`` or ``epochs``)."""
    recipe = teacher.metadata.get("recipe")
    if not recipe:
        raise ValueError(f"{teacher.path}/lab6.json records no training recipe, which the student copies; "
                         "distil a model that lab6 train exported")
    fields = TrainConfig.__dataclass_fields__
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items() if k in fields}
    values.update(steps=None, epochs=None, minutes=None, init_from=str(teacher.path))
    return TrainConfig(**values).replace(**{**DISTILL_RECIPE, **changes})


class DistillTrainer(Trainer):
    """``Trainer`` whose loss is :func:`distillation_loss` against a frozen teacher, and whose exported folder is
    the teacher's (its refiner and sampler) with the student as first stage, drawn at ``guidance_scale=1``.

    Args:
        model: the teacher's model folder (or run).
        data_root, out: as ``Trainer``'s.
        guidance_scale: the teacher's w to distil (default: the w it ships with).
        resume, evaluator, progress: as ``Trainer``'s.
        changes: the recipe's fields to change (a budget: ``minutes=30``).
    """

    def __init__(self, model: str | Path, data_root: str | Path, out: str | Path, *,
                 guidance_scale: float | None = None, resume: bool = False, evaluator: str | Path | None = None,
                 progress: bool = True, **changes):
        self.teacher = load_pipeline(model)
        self.distilled_scale = self.teacher.guidance_scale if guidance_scale is None else float(guidance_scale)
        if not self.distilled_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0 (the teacher's w to distil), got {guidance_scale}")
        cfg = distill_config(self.teacher, **changes)
        super().__init__(cfg, data_root, out, resume=resume, evaluator=evaluator, progress=progress)
        self.teacher.unet.requires_grad_(False).eval().to(self.accelerator.device)

    def autocast(self):
        """Full precision whatever the recipe's (on a GPU accelerate still autocasts the student's own forward):
        bf16 moves the shipped teacher's outputs by a mean square of 1.6e-5, 5% of what the student learns (a loss
        near 3e-4), where it is 0.3% of a training loss."""
        return contextlib.nullcontext()

    def loss(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return distillation_loss(self.model, self.teacher.unet, images, labels, self.noise_scheduler,
                                 self.distilled_scale, generator=generator,
                                 min_snr_gamma=self.cfg.min_snr_gamma or None)

    def metadata(self) -> dict:
        """The run's record, plus what the student was distilled from (and the teacher's refiner record, so that
        ``refiner.refiner_of`` reads the exported pair as it reads the teacher)."""
        teacher = self.teacher
        record = {**super().metadata(), "noise": teacher.initial_noise,
                  "distilled": {"kind": "guidance", "from": str(teacher.path), "guidance_scale": self.distilled_scale,
                                "calls_per_step": 1}}
        if "refiner" in teacher.metadata:
            record["refiner"] = teacher.metadata["refiner"]
        return record

    def export(self, path: Path) -> Path:
        """The teacher's folder (its sampler, starting noise and refiner) with the student's EMA weights as its
        first stage, at ``guidance_scale=1``: one network call per first-stage step."""
        acc = self.accelerator
        if acc.is_main_process:
            with self.ema_weights() as student:
                save_pipeline(self.teacher.replaced(unet=student, guidance_scale=1.0), path, self.metadata())
        acc.wait_for_everyone()
        return path
