"""Saves under faults: a process killed (SIGKILL) inside every kind of save leaves the previous version or the new one
whole, never a mix; the next run cleans what the killed one left and succeeds; SIGTERM and Ctrl-C stop training with a
checkpoint; and a training run resumed through all of it ends bit-identical to one never interrupted.

The faults come from ``tests/faults.py``: a child process that dies at a chosen call of a chosen writer, optionally
after cutting the file it wrote to half its length, as a kill in the middle of the write leaves it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from faults import lab6, lab6_with_fault, leftovers, tree
from safetensors.torch import load_file

from lab6.cli import main
from lab6.loading import load_pipeline
from lab6.run_files import atomic_path, latest_checkpoint

KILLED = -9


def weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"))


def checkpoint_steps(run) -> list[int]:
    return sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("step-*"))


@pytest.mark.slow
def test_training_killed_inside_every_save_and_stopped_by_signals_resumes_bit_identical(tiny_root, tiny_run,
                                                                                          tmp_path):
    """One run of the 12 steps of ``tiny_run`` (checkpoints every 3), stopped seven times: killed while the data cache,
    a checkpoint's optimizer state, a checkpoint's EMA model, a checkpoint's rename and the final model are half
    written, and stopped by SIGTERM and by Ctrl-C. Each stop keeps only complete checkpoints, and the weights it
    ends with are those of the run that was never stopped."""
    cache = {"LAB6_CACHE": str(tmp_path / "cache")}  # an empty cache: the decoded images are saved in this run
    run = tmp_path / "run"
    train = ["train", "--data-root", tiny_root, "--preset", "tiny", "--steps", 12, "--checkpoint-steps", 3,
             "--set", "eval_splits=[]", "--quiet", "--out", run]

    def stop(at, resume=True, **fault):
        result = lab6_with_fault(*train, *(["--resume"] if resume else []), at=at, env=cache, **fault)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    killed = stop("np.save", resume=False, torn=True)  # the data cache, half written
    assert killed.returncode == KILLED, killed.stderr
    assert not list((tmp_path / "cache" / "decoded").glob("*.npy")), "a half-written cache file took the final name"
    assert leftovers(tmp_path / "cache") and latest_checkpoint(run) is None

    termed = stop("step", nth=5, signal_name="SIGTERM")  # SIGTERM as step 5 begins: step 5 ends, then a checkpoint
    assert termed.returncode == 0 and "stopped by SIGTERM at step 5" in termed.stdout, termed.stdout + termed.stderr
    assert checkpoint_steps(run) == [3, 5] and not (run / "model").exists()
    assert not leftovers(tmp_path / "cache"), "the rerun did not clean the killed cache write"

    killed = stop("torch.save", path="*/.tmp-step-00000006/optimizer.bin", torn=True)  # inside accelerate's save
    assert killed.returncode == KILLED, killed.stderr
    assert checkpoint_steps(run) == [3, 5]

    # Ctrl-C as step 8 begins: as SIGTERM, step 8 ends, then a checkpoint (one inside the step would hold weights
    # an update ahead of its step), then the exit of an interrupted command
    interrupted = stop("step", nth=3, signal_name="SIGINT")
    assert interrupted.returncode == 130, interrupted.stdout + interrupted.stderr
    assert "interrupted at step 8" in interrupted.stdout and "lab6 train: interrupted" in interrupted.stderr
    assert checkpoint_steps(run) == [5, 6, 8]

    killed = stop("save_file", path="*/.tmp-step-00000009/*/unet/*.safetensors", torn=True)  # the checkpoint's EMA
    assert killed.returncode == KILLED, killed.stderr
    assert checkpoint_steps(run) == [5, 6, 8]

    # The last save at step 12 renames the complete step-12 aside and the new one in: killed between the two.
    killed = stop("os.replace", path="*/checkpoints/step-00000012", nth=2)
    assert killed.returncode == KILLED, killed.stderr
    assert checkpoint_steps(run) == [8, 9]

    killed = stop("save_file", path="*/.model.tmp-*/unet/*.safetensors", torn=True)  # the exported model
    assert killed.returncode == KILLED, killed.stderr
    assert not (run / "model").exists() and leftovers(run)
    for step in checkpoint_steps(run):  # every checkpoint a kill left is complete
        load_pipeline(run / "checkpoints" / f"step-{step:08d}" / "ema")

    finished = lab6(*train, "--resume", env=cache)
    assert finished.returncode == 0, finished.stderr
    assert not leftovers(run) and not leftovers(tmp_path / "cache")
    assert load_pipeline(run).metadata["train_step"] == 12
    rows = [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").open())]
    assert rows == [5, 10], rows  # one row per log_every, none repeated by the steps drawn again
    a, b = weights(tiny_run / "model"), weights(run / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the stopped run differs"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["unet", "refiner"])  # the first and the last weights the pair's save writes
def test_a_pair_killed_mid_save_leaves_no_folder_and_the_rerun_writes_it(tiny_run, tiny_refiner, tmp_path, capsys,
                                                                          stage):
    pair = ["pair", "--model", tiny_run, "--refiner", tiny_refiner, "--out", tmp_path / "pair"]
    killed = lab6_with_fault(*pair, at="save_file", path=f"*/{stage}/*.safetensors", torn=True)
    assert killed.returncode == KILLED, killed.stderr
    assert not (tmp_path / "pair").exists() and leftovers(tmp_path)
    assert main([str(a) for a in pair]) == 0  # the rerun: no "exists" refusal, the leftover gone
    assert not leftovers(tmp_path)
    assert load_pipeline(tmp_path / "pair").refiner is not None


@pytest.mark.slow
def test_a_sample_killed_mid_chunk_resumes_to_the_bytes_another_process_draws_with_the_seed(tiny_run, tiny_root,
                                                                                           tmp_path, capsys):
    """``lab6 sample --seed 3`` in two processes, the second killed while the fourth PNG (the second of the second
    chunk of two) is half written: the images it left are whole and byte-identical to the first process's;
    ``--resume`` then draws the rest, and the folder is byte for byte the first process's, leftovers gone."""
    sample = ["sample", "--model", tiny_run, "--conditions", tiny_root / "test.json", "--steps", 2, "--seed", 3,
              "--chunk-size", 2, "--quiet"]
    whole = lab6(*sample, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    expected = tree(tmp_path / "whole")
    assert len([f for f in expected if f.endswith(".png")]) == 7  # 6 images and the grid

    killed = lab6_with_fault(*sample, "--out", tmp_path / "killed", at="png", path="*/.3.png.tmp-*", torn=True)
    assert killed.returncode == KILLED, killed.stderr
    left = tree(tmp_path / "killed")
    assert {"0.png", "1.png", "2.png"} <= left.keys() and "3.png" not in left and leftovers(tmp_path / "killed")
    assert all(left[name] == expected[name] for name in left if name.endswith(".png")), "a different or torn image"

    assert main([str(a) for a in sample] + ["--out", str(tmp_path / "killed"), "--resume"]) == 0
    assert tree(tmp_path / "killed") == expected and not leftovers(tmp_path / "killed")


@pytest.mark.slow
@pytest.mark.parametrize("image", ["*/.test.tmp-*/3.png", "*/.new_test.tmp-*/1.png"])  # in its first and last split
def test_a_report_killed_mid_save_keeps_the_previous_report_whole(tiny_run, tiny_root, evaluator_file, tmp_path,
                                                                   capsys, image):
    report = ["report", "--data-root", tiny_root, "--model", tiny_run, "--evaluator", evaluator_file, "--steps", 2,
              "--out", tmp_path / "report"]
    assert main([str(a) for a in report]) == 0
    before = tree(tmp_path / "report")
    killed = lab6_with_fault(*report, "--seed", 1, at="png", path=image, torn=True)
    assert killed.returncode == KILLED, killed.stderr
    assert tree(tmp_path / "report") == before and leftovers(tmp_path)
    assert main([str(a) for a in report] + ["--seed", "1"]) == 0
    assert not leftovers(tmp_path) and tree(tmp_path / "report") != before


KILL_INSIDE_ATOMIC_PATH = """
import os, signal, sys
from pathlib import Path
from lab6.run_files import atomic_path
path, point = Path(sys.argv[1]), sys.argv[2]
if point == "after-swap":
    import shutil
    shutil.rmtree = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
with atomic_path(path) as tmp:
    tmp.mkdir()
    (tmp / "a").write_text("new a")
    if point == "between-files":
        os.kill(os.getpid(), signal.SIGKILL)
    (tmp / "b").write_text("new b")
"""


@pytest.mark.parametrize("point", ["between-files", "after-swap"])
def test_a_folder_killed_at_any_point_of_atomic_path_is_old_or_new_and_the_next_write_cleans_up(tmp_path, point):
    folder = tmp_path / "out"
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("old a")
        (tmp / "b").write_text("old b")
    child = subprocess.run([sys.executable, "-c", KILL_INSIDE_ATOMIC_PATH, str(folder), point])
    assert child.returncode == KILLED
    expected = {"between-files": {"a": b"old a", "b": b"old b"}, "after-swap": {"a": b"new a", "b": b"new b"}}
    assert tree(folder) == expected[point] and len(leftovers(tmp_path)) == 1
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("third")
    assert tree(folder) == {"a": b"third"} and leftovers(tmp_path) == []


def test_without_an_exchange_a_kill_between_the_two_renames_is_undone_by_the_next_write(tmp_path):
    """Where renameat2 is missing, a folder is swapped by two renames; a kill between them (the old folder moved
    aside, the new one not yet in) is repaired: the next write puts the previous version back before it starts."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a").write_text("old")
    aside = tmp_path / ".out.old-999999999"  # a process id that cannot be running
    os.replace(folder, aside)
    (tmp_path / ".out.tmp-999999999").mkdir()
    with pytest.raises(RuntimeError):
        with atomic_path(folder):
            raise RuntimeError("a failed write keeps the previous version")
    assert (folder / "a").read_text() == "old" and leftovers(tmp_path) == []
