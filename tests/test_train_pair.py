"""Both stages and both cores in one command (lab6.train_pair, lab6 train --processes): the budget split, the
refusals, the pair it writes, resume, the processes it launches."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from lab6.commands import launch_command
from lab6.loading import load_pipeline
from lab6.presets import preset
from lab6.refiner import RefinedPipeline
from lab6.train_pair import FIRST_STAGE, REFINER, stage_recipes, train_pair


def test_the_refiner_minutes_come_off_the_budget_and_the_refiner_grows_from_the_first_stage(tmp_path):
    first, refiner = stage_recipes(preset("cpu", minutes=75, seed=3), 15, tmp_path)
    assert first.minutes == 60 and refiner.minutes == 15
    assert refiner.init_from == str(tmp_path / FIRST_STAGE / "model") and refiner.seed == 3
    assert refiner.image_size == 64 and refiner.max_timestep == preset("refiner64").max_timestep
    # evaluation inside a stage would run outside the training clock, past the budget
    assert first.eval_every is None and first.eval_splits == ()


def test_a_steps_budget_stays_the_first_stages_own(tmp_path):
    first, refiner = stage_recipes(preset("cpu", steps=500), 10, tmp_path)
    assert first.steps == 500 and first.minutes is None and refiner.minutes == 10


@pytest.mark.parametrize("recipe, minutes, words", [
    (preset("cpu", minutes=20), 20, "leaves nothing of --minutes 20"),
    (preset("cpu64", minutes=60), 10, "grows from a 32-px model"),
    (preset("tiny", minutes=60), 10, "grows from a 32-px model"),
    (preset("cpu", minutes=60), 0, "must be > 0"),
])
def test_a_split_that_cannot_work_is_refused_with_its_reason(tmp_path, recipe, minutes, words):
    with pytest.raises(ValueError, match=words):
        stage_recipes(recipe, minutes, tmp_path)


def _small(**changes):
    """The cpu architecture (a refiner grows from it) at a test's size: a few images per step, 2 sampling steps."""
    return dict(batch_size=4, eval_steps=2, log_with="none", checkpoint_minutes=60.0, **changes)


@pytest.mark.slow
def test_one_call_trains_both_stages_and_writes_the_scored_pair(tiny_root, tmp_path):
    out = tmp_path / "pair"
    model = train_pair(preset("cpu", steps=3, **_small()), tiny_root, out, refiner_minutes=5,
                       refiner=preset("refiner64", steps=2, **_small()), progress=False)
    pipe = load_pipeline(model)
    assert isinstance(pipe, RefinedPipeline) and pipe.metadata["train_step"] == 3
    assert pipe.metadata["refiner"]["train_step"] == 2
    assert pipe.metadata["refiner"]["parent"]["train_step"] == 3  # grown from the first stage's weights
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert {row["split"] for row in rows} == {"test", "new_test"}
    assert all(0 <= float(row["accuracy"]) <= 1 for row in rows)
    assert (out / "samples" / "pair-test.png").is_file()

    finished = (out / REFINER / "model").stat().st_mtime_ns
    train_pair(preset("cpu", steps=3, **_small()), tiny_root, out, refiner_minutes=5,
               refiner=preset("refiner64", steps=2, **_small()), resume=True, progress=False)
    assert (out / REFINER / "model").stat().st_mtime_ns == finished  # a finished stage is kept, not retrained


@pytest.mark.slow
def test_lab6_train_with_refiner_minutes_refuses_a_64px_recipe(tiny_root, tmp_path):
    result = subprocess.run([sys.executable, "-m", "lab6.cli", "train", "--data-root", str(tiny_root), "--preset",
                             "cpu64", "--minutes", "30", "--refiner-minutes", "5", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2 and "grows from a 32-px model" in result.stderr
    assert not (tmp_path / "r" / FIRST_STAGE).exists()


@pytest.mark.slow
def test_lab6_train_processes_runs_itself_as_that_many_processes(tiny_root, tmp_path):
    out = tmp_path / "two"
    result = subprocess.run([sys.executable, "-m", "lab6.cli", "train", "--data-root", str(tiny_root), "--preset",
                             "tiny", "--processes=2", "--steps", "6", "--out", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_pipeline(out / "model").metadata["processes"] == 2


@pytest.mark.slow
def test_a_pair_launched_as_two_processes_trains_each_stage_as_one_group(tiny_root, tmp_path):
    """Both stages of two launched processes train together (one gloo group splitting each batch), not twice
    alone: the pair's own bookkeeping must not fix accelerate's state before its trainers do."""
    script = tmp_path / "pair.py"
    script.write_text(
        "import sys\n"
        "from lab6.presets import preset\n"
        "from lab6.train_pair import train_pair\n"
        f"small = {_small()!r}\n"
        "train_pair(preset('cpu', steps=3, **small), sys.argv[1], sys.argv[2], refiner_minutes=5,\n"
        "           refiner=preset('refiner64', steps=2, **small), progress=False)\n")
    out = tmp_path / "pair"
    result = subprocess.run(launch_command(2, str(script), str(tiny_root), str(out)), capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_pipeline(out / FIRST_STAGE / "model").metadata["processes"] == 2
    assert load_pipeline(out / REFINER / "model").metadata["processes"] == 2
    assert result.stdout.count("stage 1 of 2") == 1  # printed by the main process only


def test_more_processes_than_cores_is_refused_before_anything_starts(tmp_path):
    cores = os.cpu_count()
    result = subprocess.run([sys.executable, "-m", "lab6.cli", "train", "--preset", "tiny", "--processes",
                             str(cores + 1), "--steps", "6", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"use --processes {cores} or fewer" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("form", [["--processes", "2"], ["--processes=2"]])
def test_processes_launch_the_same_command_without_the_option(monkeypatch, form):
    from lab6 import commands

    launched = {}
    monkeypatch.setattr(os, "execve", lambda path, command, env: launched.update(command=command, env=env))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    commands.launch_processes(2, ["train", "--preset", "cpu", *form, "--minutes", "75", "--out", "runs/pair"])
    command = launched["command"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("lab6.cli"):] == ["lab6.cli", "train", "--preset", "cpu", "--minutes", "75",
                                                   "--out", "runs/pair"]
    assert launched["env"]["OMP_NUM_THREADS"] == "1"  # one thread per process: each its own core


def test_the_minutes_the_first_stage_spends_off_its_clock_come_off_the_refiners(monkeypatch, tmp_path):
    """Start-up, data loading and export run off the training clock; the command's wall time is the budget."""
    import lab6.train_pair as chain

    clock, trained = [1000.0], []

    def fake_train(recipe, data_root, run, **kwargs):
        trained.append(recipe)
        clock[0] += recipe.minutes * 60 + (30 if len(trained) == 1 else 0)  # the first stage: 30 s off its clock
        return None if len(trained) == 2 else run / "model"  # stop after the refiner: nothing to pair

    monkeypatch.setattr(chain, "train", fake_train)
    monkeypatch.setattr(chain.time, "monotonic", lambda: clock[0])
    assert chain.train_pair(preset("cpu", minutes=75), tmp_path, tmp_path / "pair", refiner_minutes=15,
                            progress=False) is None
    first, refiner = trained
    assert first.minutes == 60 and refiner.minutes == pytest.approx(14.5)
