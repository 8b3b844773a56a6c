"""Training curves through accelerate's trackers: TensorBoard's event files hold what metrics.csv and eval.csv hold,
and a resumed run's curves go on from the resumed step without a step drawn twice."""

import csv
import shutil

import pytest

from lab6.config import TrainConfig
from lab6.presets import preset
from lab6.trackers import installed, resolve_log_with
from lab6.train import Trainer, train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def curves(run) -> EventAccumulator:
    events = EventAccumulator(str(run / "logs" / "lab6"))
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def rows(path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_tensorboard_holds_the_runs_metrics_accuracy_and_grids_and_a_resume_continues_them(tiny_root, tmp_path):
    run = tmp_path / "run"
    train(preset("tiny", steps=10, checkpoint_steps=5, log_with="tensorboard"), tiny_root, run, progress=False)
    events = curves(run)
    metrics = rows(run / "metrics.csv")
    for column in ("loss", "lr", "images_per_s"):
        assert scalars(events, f"train/{column}") == [
            (int(r["step"]), pytest.approx(float(r[column]), rel=1e-6)) for r in metrics]
    evaluations = rows(run / "eval.csv")
    assert evaluations, "the tiny run is scored by the shipped evaluators"
    for r in evaluations:
        assert scalars(events, f"accuracy/{r['split']}/{r['evaluator']}") == [
            (10, pytest.approx(float(r["accuracy"]), abs=1e-4))]
    assert {"samples/test", "samples/new_test"} <= set(events.Tags()["images"])

    # A kill after step 10 was logged but before its checkpoint: the run resumes from step 5 and draws 6-10 again.
    shutil.rmtree(run / "checkpoints" / "step-00000010")
    shutil.rmtree(run / "model")
    train(preset("tiny", steps=15, checkpoint_steps=5, log_with="tensorboard"), tiny_root, run, resume=True,
          progress=False)
    events = curves(run)
    steps = [step for step, _ in scalars(events, "train/loss")]
    assert steps == [5, 10, 15]  # strictly increasing: the killed run's step 10 is replaced, not repeated
    assert scalars(events, "train/loss") == [(int(r["step"]), pytest.approx(float(r["loss"]), rel=1e-6))
                                             for r in rows(run / "metrics.csv")]
    assert len(list((run / "logs" / "lab6").glob("events.out.tfevents.*"))) == 2  # one folder: the same run


def test_log_with_none_writes_no_logs_and_an_unknown_tracker_is_named(tiny_root, tmp_path):
    trainer = Trainer(preset("tiny", steps=1, log_with="none"), tiny_root, tmp_path / "quiet", progress=False)
    assert trainer.records.trackers == [] and not (tmp_path / "quiet" / "logs").exists()
    with pytest.raises(ValueError, match="log_with must be one of .*got 'tensorbord'"):
        TrainConfig(log_with="tensorbord")
    assert resolve_log_with("auto") == ["tensorboard"] and resolve_log_with("none") == []


@pytest.mark.skipif(installed("wandb"), reason="wandb is installed here")
def test_a_tracker_named_but_not_installed_says_what_to_install():
    with pytest.raises(ModuleNotFoundError, match="the wandb package is not installed; `pip install wandb`"):
        resolve_log_with("wandb")
