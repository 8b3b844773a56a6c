"""What a training run records as it goes: ``metrics.csv`` and ``eval.csv``, and the same curves in the tools
students already use, TensorBoard, Weights & Biases and trackio, through accelerate's own tracker API
(``Accelerator(log_with=..., project_dir=...)``, ``init_trackers``, ``log``, ``end_training``).

A run's curves live in its folder: TensorBoard's under ``RUN/logs/lab6/`` (accelerate names the folder
``project_dir/logs/<project name>``), so ``tensorboard --logdir runs/`` shows every run side by side, named by
its folder. A resumed run writes into the same folder, W&B and trackio runs are resumed by name, and only steps
after the resumed one are logged: the curves go on without a jump or a step drawn twice (TensorBoard also
hides what a killed run logged past its last checkpoint, through the writer's ``purge_step``).
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import numpy as np
import torch

from .run_files import CsvLog

METRICS_FIELDS = ["step", "epoch", "loss", "lr", "images_per_s", "elapsed_min"]
EVAL_FIELDS = ["step", "elapsed_min", "split", "accuracy", "sampler", "steps", "guidance", "evaluator"]

#: The trackers ``--log-with`` names, each with the package it needs.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
#: What ``TrainConfig.log_with`` takes: a tracker, ``all`` (every one installed), ``none``, or ``auto``
#: (TensorBoard where it is installed, else none).
LOG_WITH = (*TRACKERS, "all", "none", "auto")
PROJECT = "lab6"  # the project every run logs to; the run is named by its folder
LOG_DIR = "logs"  # accelerate's logging_dir under the run folder


def installed(tracker: str) -> bool:
    return importlib.util.find_spec(TRACKERS[tracker]) is not None


def check_log_with(value: str) -> str:
    """Refuse an unknown tracker name by name (the recipe checks it before a run starts)."""
    if value not in LOG_WITH:
        raise ValueError(f"log_with must be one of {', '.join(LOG_WITH)}, got {value!r}")
    return value


def resolve_log_with(value: str) -> list[str]:
    """The trackers ``value`` means on this machine. A tracker named outright must be installed: a run that
    silently logs nowhere is found out only after hours."""
    check_log_with(value)
    if value == "none":
        return []
    if value == "auto":
        return ["tensorboard"] if installed("tensorboard") else []
    if value == "all":
        return [name for name in TRACKERS if installed(name)]
    if not installed(value):
        raise ModuleNotFoundError(f"log_with={value!r}: the {TRACKERS[value]} package is not installed; "
                                  f"`pip install {TRACKERS[value]}`, or log with none (--log-with none)")
    return [value]


def flat_config(config: dict) -> dict:
    """A recipe as hyperparameters: trackers take numbers, words, booleans and None, so a tuple becomes text."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in config.items()}


def run_id(out: Path) -> str:
    """The run's id for W&B, kept in ``RUN/logs/run_id`` so that a resumed run continues the same W&B run."""
    path = out / LOG_DIR / "run_id"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex[:16])
    return path.read_text().strip()


class RunLog:
    """The records of one training run: its CSVs (main process) and its trackers, started on the accelerator that
    :meth:`accelerate_kwargs` configured.

    Args:
        accelerator: built with :meth:`accelerate_kwargs`.
        out: the run folder.
        config: the recipe (``TrainConfig``'s fields), stored with the trackers once, when the run starts.
        resume_step: the step a resumed run continues from (None: a new run). The CSVs drop their rows past it
            (the resumed run draws those steps again) and the trackers are given only later steps.
    """

    def __init__(self, accelerator, out: Path, config: dict, resume_step: int | None):
        self.accelerator, self.resume_step = accelerator, resume_step or 0
        if accelerator.is_main_process:
            self.metrics = CsvLog(out / "metrics.csv", METRICS_FIELDS, resume_step)
            self.evals = CsvLog(out / "eval.csv", EVAL_FIELDS, resume_step)
        self.trackers = [str(t) for t in accelerator.log_with]
        if not self.trackers:
            return
        name = Path(out).resolve().name
        init_kwargs = {"tensorboard": {}, "wandb": {"name": name, "resume": "allow"},
                       "trackio": {"name": name, "resume": "allow"}}
        if "wandb" in self.trackers and accelerator.is_main_process:
            init_kwargs["wandb"]["id"] = run_id(Path(out))
        if resume_step is not None:  # hides from TensorBoard what a killed run logged past its checkpoint
            init_kwargs["tensorboard"]["purge_step"] = resume_step + 1
        accelerator.init_trackers(PROJECT, config=None if resume_step is not None else flat_config(config),
                                  init_kwargs=init_kwargs)

    @staticmethod
    def accelerate_kwargs(log_with: str, out: Path) -> dict:
        """``Accelerator``'s tracker arguments for ``log_with`` (``TrainConfig.log_with``) and the run folder."""
        from accelerate.utils import ProjectConfiguration

        trackers = resolve_log_with(log_with)
        folders = ProjectConfiguration(project_dir=str(out), logging_dir=str(Path(out) / LOG_DIR))
        return {"log_with": trackers, "project_config": folders} if trackers else {}

    def metrics_row(self, **row) -> None:
        """One row of metrics.csv (main process), and its loss, learning rate and images/s to the trackers."""
        if self.accelerator.is_main_process:
            self.metrics.append(**row)
        self.log({f"train/{k}": float(row[k]) for k in ("loss", "lr", "images_per_s")}, row["step"])

    def evaluation(self, runs, step: int, **columns) -> dict[str, float]:
        """An evaluation's accuracies (``sampling.SplitRun`` s) to eval.csv with ``columns`` and to the trackers,
        with a grid of each split's images; returns ``{"split (evaluator)": accuracy}``."""
        results = {}
        for run in runs:
            for name, score in run.scores.items():
                results[f"{run.split} ({name})"] = score.accuracy
                self.evals.append(step=step, split=run.split, accuracy=round(score.accuracy, 4), evaluator=name,
                                  **columns)
                self.log({f"accuracy/{run.split}/{name}": score.accuracy}, step)
            self.log_image(f"samples/{run.split}", grid_pixels(run.images), step)
        return results

    def log(self, values: dict, step: int) -> None:
        """``values`` (name -> number) at optimiser step ``step``; steps a resumed run already logged are skipped."""
        if self.trackers and step > self.resume_step:
            self.accelerator.log(values, step=step)

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        """One picture (uint8, H x W x 3), e.g. an evaluation's grid, to the trackers that show pictures."""
        if not self.trackers or step <= self.resume_step or not self.accelerator.is_main_process:
            return
        for tracker in self.trackers:
            if tracker == "tensorboard":
                writer = self.accelerator.get_tracker("tensorboard")
                writer.log_images({name: image[None]}, step=step, dataformats="NHWC")
                writer.tracker.flush()
            elif tracker == "wandb":
                self.accelerator.get_tracker("wandb").log_images({name: [image]}, step=step)
            elif tracker == "trackio":
                import trackio

                self.accelerator.get_tracker("trackio").log({name: trackio.Image(image)}, step=step)

    def end(self) -> None:
        """Flush and close every tracker: at the end of the run, and when it stops early. Each tracker's own
        ``finish`` (``accelerator.end_training`` also ends the process group, which a notebook's next run in the
        same kernel still needs)."""
        if self.trackers:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers.clear()
            self.trackers = []


def grid_pixels(images: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> one uint8 (H', W', 3) grid, as ``images.save_grid`` draws it."""
    from torchvision.utils import make_grid

    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=2)
    return grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
