"""Both stages in one command: a 32-px model, then a 64-px refiner grown from it, paired, in one budget.

The shipped model is such a pair (docs/64px.md#the-shipped-pair): a first stage that decides what is drawn, and a
refiner that redraws the last noise levels at 64 px. ``lab6 train --refiner-minutes R`` trains both: the recipe
for its budget less R minutes into ``out/first-stage``, then the ``refiner64`` recipe grown from it
(``init_from``) for R minutes into ``out/refiner``, then ``out/model``, the pair, scored once on test.json and
new_test.json (``out/eval.csv``, the grids in ``out/samples/``). The budget is the command's wall time: evaluation
inside the stages is off (it runs off the training clock), and the minutes the first stage spends off its clock
(start-up, loading the data, checkpoints, export) come off the refiner's. ``resume`` keeps a finished stage and
continues a stopped one exactly, as any run does (its refiner then takes its full minutes).
"""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import broadcast_object_list

from .config import TrainConfig
from .loading import load_pipeline, save_pipeline
from .presets import preset
from .refiner import with_refiner
from .run_files import CsvLog, atomic_path, is_model_folder
from .sampling import Sampling, run_splits
from .scoring import load_evaluators
from .train import process_state, train

#: The stages' folders in ``out``.
FIRST_STAGE, REFINER = "first-stage", "refiner"
#: The pair's redraw, as the shipped pair's: the last 20% of the refiner's schedule (4 steps at 20).
STRENGTH = 0.2
#: What the pair is scored on at the end: the course's two splits, as the report scores them.
SCORED_SPLITS = ("test", "new_test")


def stage_recipes(cfg: TrainConfig, refiner_minutes: float, out: Path,
                  refiner: TrainConfig | None = None) -> tuple[TrainConfig, TrainConfig]:
    """The two stages' recipes: ``cfg`` with ``refiner_minutes`` taken off its minutes (a steps or epochs budget
    stays the first stage's own), and ``refiner`` (default ``refiner64``) grown from the first stage for
    ``refiner_minutes``, with the seed, checkpoints and trackers of ``cfg``."""
    if cfg.image_size != 32 or cfg.patch_size != 1:
        raise ValueError(f"a refiner grows from a 32-px model of patch_size 1 (as --preset cpu); this recipe draws "
                         f"{cfg.image_size} px at patch_size {cfg.patch_size}: train it without --refiner-minutes")
    if refiner_minutes <= 0:
        raise ValueError(f"refiner minutes must be > 0, got {refiner_minutes:g}")
    first = cfg.replace(eval_every=None, eval_splits=())
    if cfg.minutes is not None:
        if refiner_minutes >= cfg.minutes:
            raise ValueError(f"--refiner-minutes {refiner_minutes:g} leaves nothing of --minutes {cfg.minutes:g} "
                             f"for the first stage: give the refiner a share, e.g. {cfg.minutes / 5:g}")
        first = first.replace(minutes=cfg.minutes - refiner_minutes)
    refiner = (refiner or preset("refiner64")).replace(
        minutes=refiner_minutes, init_from=str(out / FIRST_STAGE / "model"), seed=cfg.seed,
        checkpoint_minutes=cfg.checkpoint_minutes, log_with=cfg.log_with)
    return first, refiner


def train_pair(cfg: TrainConfig, data_root: str | Path, out: str | Path, *, refiner_minutes: float,
               refiner: TrainConfig | None = None, resume: bool = False, evaluator: str | Path | None = None,
               progress: bool = True) -> Path | None:
    """Train the first stage, then its refiner (:func:`stage_recipes`), pair them as ``out/model`` and score the
    pair; returns ``out/model`` (None when a stage was stopped by SIGTERM or Ctrl-C: ``resume`` continues it)."""
    out, state = Path(out), process_state()
    first, second = stage_recipes(cfg, refiner_minutes, out, refiner)
    started = time.monotonic()
    if not _train_stage(1, first, data_root, out / FIRST_STAGE, resume, evaluator, progress):
        return None
    if first.minutes and not resume:  # start-up, data and export ran off the training clock: the refiner's minutes
        overrun = broadcast_object_list([(time.monotonic() - started) / 60 - first.minutes])[0]  # one for all
        second = second.replace(minutes=max(second.minutes / 2, second.minutes - overrun))
    if not _train_stage(2, second, data_root, out / REFINER, resume, evaluator, progress):
        return None
    if state.is_main_process:
        pipe = with_refiner(load_pipeline(out / FIRST_STAGE / "model"), load_pipeline(out / REFINER / "model"),
                            STRENGTH)
        with atomic_path(out / "model") as tmp:
            save_pipeline(pipe, tmp, pipe.metadata)
        score_pair(pipe, data_root, out, evaluator)
    state.wait_for_everyone()
    return out / "model"


def _train_stage(number: int, recipe: TrainConfig, data_root, run: Path, resume: bool, evaluator, progress) -> bool:
    """One stage's run, or nothing where ``resume`` finds it finished; False when it was stopped."""
    if resume and is_model_folder(run / "model"):
        return True
    budgets = (("minutes", recipe.minutes), ("steps", recipe.steps), ("epochs", recipe.epochs))
    budget = " or ".join(f"{round(value, 2):g} {unit}" for unit, value in budgets if value)
    process_state().print(f"stage {number} of 2, the {run.name.replace('-', ' ')}: {budget}, into {run}")
    return train(recipe, data_root, run, resume=resume, evaluator=evaluator, progress=progress) is not None


def score_pair(pipe, data_root: str | Path, out: Path, evaluator: str | Path | None = None) -> dict[str, float]:
    """The pair's accuracy on test.json and new_test.json at its own sampler, to ``out/eval.csv`` and the screen."""
    evaluators = load_evaluators([evaluator] if evaluator else None, data_root, required=False, log=print)
    sampling = Sampling(seed=pipe.metadata["recipe"]["seed"])  # the model's own sampler, steps and guidance
    runs = run_splits(pipe, data_root, SCORED_SPLITS, evaluators, sampling, out / "samples", "pair-")
    log = CsvLog(out / "eval.csv", ["step", "split", "evaluator", "accuracy", "sampler", "steps"], None)
    step = pipe.metadata["train_step"]
    results = {}
    for run in runs:
        for name, score in run.scores.items():
            results[f"{run.split} ({name})"] = score.accuracy
            log.append(step=step, split=run.split, evaluator=name, accuracy=round(score.accuracy, 4),
                       sampler=run.sampling.sampler, steps=run.sampling.steps)
    if results:
        print("the pair's accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()))
    return results
