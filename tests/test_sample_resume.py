"""Long sampling jobs: `lab6 sample` killed with SIGKILL mid-way and resumed writes the uninterrupted job's files,
byte for byte, for a sampler that draws noise at every step (DDPM) and a deterministic one (DPM-Solver++)."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from lab6.cli import main
from lab6.images import save_images
from lab6.labels import LABELS
from lab6.loading import load_pipeline
from lab6.sample_job import JOB_FILE, run_sample_job
from lab6.sampling import Sampling, generate


@contextmanager
def one_thread():
    """The killed job's subprocess runs on one thread; the in-process jobs match it (float sums by thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_conditions(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(LABELS, size=int(rng.integers(1, 4)), replace=False)) for _ in range(n)]


def done_chunks(out) -> int:
    try:
        return len(json.loads((out / JOB_FILE).read_text())["done"])
    except (OSError, ValueError):
        return 0


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
@pytest.mark.parametrize("sampler, steps", [("ddpm", 10), ("dpmsolver", 4)])
def test_a_killed_sampling_job_resumes_to_the_uninterrupted_jobs_files(tiny_run, tmp_path, capsys, sampler, steps):
    conditions = tmp_path / "conditions.json"
    conditions.write_text(json.dumps(random_conditions(32)))
    args = ["sample", "--model", str(tiny_run), "--conditions", str(conditions), "--sampler", sampler, "--steps",
            str(steps), "--chunk-size", "2", "--quiet"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "lab6.cli", *args, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and done_chunks(killed) < 2:
        time.sleep(0.002)
    assert process.poll() is None, "the job finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= done_chunks(killed) < 16 and not (killed / "grid.png").exists()
    for png in killed.glob("*.png"):  # every PNG there is whole (a killed write leaves a hidden temporary file)
        Image.open(png).load()

    if sampler == "ddpm":  # another chunk size would pair the conditions with other noise: refused by name
        assert main([*args[:-2], "8", "--quiet", "--out", str(killed), "--resume"]) == 2
        assert "chunk_size was 2, now 8" in capsys.readouterr().err
    kept = (killed / "0.png").stat().st_ino
    with one_thread():
        assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert (killed / "0.png").stat().st_ino == kept  # finished chunks are not drawn again
    with one_thread():
        assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = files(killed), files(tmp_path / "straight")
    assert list(resumed) == list(straight) and len(straight) == 32 + 2  # PNGs, grid.png, conditions.json
    assert [name for name in straight if resumed[name] != straight[name]] == []


def test_a_job_of_one_chunk_draws_what_generate_draws(tiny_run, tiny_root, tmp_path):
    conditions = json.loads((tiny_root / "test.json").read_text())
    pipe = load_pipeline(tiny_run)
    sampling = Sampling("ddpm", 3, seed=5)
    run_sample_job(pipe, conditions, tmp_path / "job", sampling, progress=False)
    save_images(generate(pipe, conditions, sampling, progress=False).images, tmp_path / "call", conditions=conditions)
    assert files(tmp_path / "job") == files(tmp_path / "call")
    # In chunks of 2, each chunk draws from its own generator: other images than the single call's
    run_sample_job(pipe, conditions, tmp_path / "chunks", sampling, chunk_size=2, progress=False)
    assert files(tmp_path / "chunks")["2.png"] != files(tmp_path / "call")["2.png"]
