"""A save that runs out of room ends in one error naming the file and the space it needs, and leaves the last good
version intact. The room runs out for real: a write to ``/dev/full`` (the kernel's ENOSPC), or a file-size limit
(``ulimit -f``: the kernel's EFBIG, for every writer, Python, C++ and Rust alike)."""

from __future__ import annotations

import resource
import shutil
from contextlib import contextmanager

import pytest
from faults import leftovers, tree

from lab6.cli import main
from lab6.run_files import DiskFullError, atomic_path


@contextmanager
def file_size_limit(limit: int):
    """Files this process writes stop growing at ``limit`` bytes (Python ignores SIGXFSZ: the write fails)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_full_disk_is_one_error_naming_the_file_and_the_space_and_the_previous_file_stays(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old" * 400_000)
    with pytest.raises(DiskFullError) as caught:
        with atomic_path(path) as tmp, open("/dev/full", "wb") as full:
            tmp.write_bytes(b"new" * 100_000)
            full.write(b"more")  # fails as the file closes: No space left on device
    message = str(caught.value)
    assert message.startswith(f"no room to save {path}: it needs more than 1.20 MB (0.30 MB fit before the write "
                              "failed), "), message
    assert "are free on its disk" in message and "the previous version is left as it was" in message
    assert path.read_bytes() == b"old" * 400_000 and leftovers(tmp_path) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError, match="not this"):
        with atomic_path(tmp_path / "x"):
            raise PermissionError("not this")


def test_a_model_save_over_the_file_size_limit_is_one_line_and_leaves_nothing(tiny_run, tiny_refiner, tmp_path,
                                                                               capsys):
    """``lab6 pair`` writes a model folder (safetensors, written in Rust): over the limit, one line names it."""
    out = tmp_path / "pair"
    with file_size_limit(200_000):
        status = main(["pair", "--model", str(tiny_run), "--refiner", str(tiny_refiner), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"lab6 pair: error: no room to save {out}: it needs more than "), err
    assert "files are capped at 0.20 MB (ulimit -f). Free some space or save elsewhere, then run again" in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_training_save_over_the_limit_leaves_the_last_checkpoint_and_model_intact(tiny_run, tiny_root, tmp_path,
                                                                                      capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = tree(run / "checkpoints") | {f"model/{k}": v for k, v in tree(run / "model").items()}
    with file_size_limit(300_000):
        status = main(["train", "--data-root", str(tiny_root), "--steps", "14", "--resume", "--out", str(run),
                       "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("lab6 train: error: "), err
    assert err[-1].startswith(f"lab6 train: error: no room to save {run / 'checkpoints'}/step-"), err[-1]
    assert "(ulimit -f)" in err[-1] and "run again with --debug" not in err[-1], err[-1]
    after = tree(run / "checkpoints") | {f"model/{k}": v for k, v in tree(run / "model").items()}
    assert {k: v for k, v in after.items() if not k.startswith(".")} == before
