"""Where lab6 keeps things on disk, and files that appear whole or not at all.

- **Writing**: :func:`atomic_path` writes to a temporary sibling, then renames it over the target. A rename
  within one folder is atomic, so a reader (or a run killed mid-write) sees the old file or folder or the
  complete new one, never half of one. Every writer of results, models and checkpoints goes through it.
- **Layout**: a model folder (``model_index.json``, ``unet/``, ``scheduler/``, ``lab6.json``; see
  ``lab6.pipeline``) and a training run (``train_config.json``, ``metrics.csv``, ``eval.csv``,
  ``checkpoints/step-N`` each with an ``ema/`` model folder, and ``model/`` at the end). A leaf module:
  it imports nothing from lab6, so the pipeline and the training loop can both use it.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import glob
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import resource
except ImportError:  # Windows
    resource = None

SHIPPED_MODEL = Path(__file__).parent / "assets" / "model"
METADATA_FILE = "lab6.json"  # a model's training record
PARENT_FILE = "parent_lab6.json"  # in a run folder: the starting model's record, kept for --resume
CHECKPOINTS = "checkpoints"


class ModelNotFoundError(FileNotFoundError):
    pass


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class DiskFullError(OSError):
    """A save that ran out of room (a full disk, a quota, a file-size limit): names the file and the space."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # the message alone, not "[Errno 28] ..."


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _size(path: Path) -> int:
    """Bytes in a file, or in all the files under a folder (0 when missing)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


_NO_ROOM = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
            errno.EFBIG: "File too large"}


def _no_room(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) is a write that found no room. Writers in C++ and Rust (torch,
    safetensors) give the errno only in their message."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _NO_ROOM:
            return True
        if any(f"(os error {code})" in str(err) or text in str(err) for code, text in _NO_ROOM.items()):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def room_named(path: str | Path, written: Path | None = None) -> Iterator[None]:
    """Turn a write that runs out of room into one :class:`DiskFullError` that names ``path`` and the space it
    needs (bytes written to ``written``, its temporary, or the size of the version it replaces, if larger)."""
    try:
        yield
    except Exception as err:
        if not _no_room(err):
            raise
        path = Path(path)
        done, previous = _size(written or path), _size(path) if written else 0
        free = shutil.disk_usage(next(p for p in [path, *path.parents] if p.exists())).free
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else -1
        capped = limit not in (-1, getattr(resource, "RLIM_INFINITY", -1))
        raise DiskFullError(errno.ENOSPC, (
            f"no room to save {path}: it needs more than {_mb(max(done, previous))} ({_mb(done)} fit before the "
            f"write failed), {_mb(free)} are free on its disk" + (f", files are capped at {_mb(limit)} (ulimit -f)"
                                                                  if capped else "")
            + ". Free some space or save elsewhere, then run again" + ("; the previous version is left as it was"
                                                                      if previous else ""))) from err


def _leftovers(path: Path) -> list[Path]:
    """Temporaries of ``path`` that a killed write left behind (their process is gone), oldest state first."""
    found = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.*"):
        kind, _, pid = p.name[len(path.name) + 2:].partition("-")
        if kind in ("tmp", "old") and pid.isdigit() and not _alive(int(pid)):
            found.append(p)
    return sorted(found, key=lambda p: p.name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier write of this process, interrupted by an error it did not clean
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(path: Path) -> None:
    """Undo what a killed write left: the previous version back in place if it was moved aside, temporaries gone."""
    for leftover in _leftovers(path):
        if leftover.name.startswith(f".{path.name}.old-") and not path.exists() and not path.is_symlink():
            os.replace(leftover, path)  # killed between the two renames of a swap without renameat2
        else:
            _remove(leftover)


def _swap(new: Path, path: Path) -> bool:
    """Exchange two folders in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if getattr(_libc, "renameat2", None) is None:
        return False
    if _libc.renameat2(-100, os.fsencode(new), -100, os.fsencode(path), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(path))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file, or a folder to fill); on success it replaces
    ``path`` in one step, so a reader, or a process killed at any byte, sees the previous version or the new one
    whole. On an error the temporary is removed and ``path`` is left as it was; a write that runs out of room is one
    :class:`DiskFullError`. What a killed write left behind is cleaned up by the next write of ``path``.

    A file replaces a file by ``os.replace``; a folder replaces a folder by an exchange of the two (renameat2), or
    where the system has none by two renames, the previous version put back by the next write if killed between."""
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot write {path}: {parent} exists and is not a folder") from None
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {parent} is not writable")
    _recover(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        with room_named(path, tmp):
            yield tmp
        if tmp.is_dir() and path.exists():
            if not path.is_dir():
                raise IsADirectoryError(f"cannot write the folder {path}: a file of that name exists")
            if not _swap(tmp, path):  # swapped, tmp holds the previous version: removed below
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                _remove(old)
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
        else:
            if path.is_dir() and not tmp.is_dir():
                raise IsADirectoryError(f"cannot write the file {path}: a folder of that name exists")
            os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def cache_dir() -> Path:
    """Folder for derived files (decoded images, the default synthetic data): ``$LAB6_CACHE`` when set and not
    empty, else ``~/.cache/lab6``. Created on first use."""
    path = Path(os.environ.get("LAB6_CACHE") or Path.home() / ".cache" / "lab6").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_model_folder(path: Path) -> bool:
    """A pipeline folder (model_index.json), or one of the older flat layout (config.json at the top)."""
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (temporary folders of a killed save are ignored)."""
    folder = Path(run_dir) / CHECKPOINTS
    done = sorted(p for p in folder.glob("step-*") if p.is_dir() and p.name[5:].isdigit()) if folder.is_dir() else []
    return done[-1] if done else None


def resolve_model_dir(path: str | Path | None) -> Path:
    """A model folder, or a training run (its exported ``model/``, else its newest checkpoint's EMA weights);
    None: the shipped model."""
    if path is None:
        if not is_model_folder(SHIPPED_MODEL):
            raise ModelNotFoundError(f"no --model given and no shipped model in {SHIPPED_MODEL}")
        return SHIPPED_MODEL
    path = Path(path)
    if is_model_folder(path):
        return path
    if is_model_folder(path / "model"):
        return path / "model"
    checkpoint = latest_checkpoint(path)
    if checkpoint is not None and is_model_folder(checkpoint / "ema"):
        return checkpoint / "ema"
    raise ModelNotFoundError(f"{path} is neither a model folder (model_index.json) "
                             "nor a training run with a checkpoint")


def training_stages(metadata: dict) -> list[dict]:
    """A model's training stages, oldest first: its ``lab6.json`` record and, through ``parent``, every
    model it was fine-tuned from."""
    chain = []
    while metadata:
        chain.append(metadata)
        metadata = metadata.get("parent") or {}
    return chain[::-1]


def training_minutes(metadata: dict) -> float:
    """Minutes of training over all of a model's stages (:func:`training_stages`)."""
    return sum(float(stage.get("train_minutes", 0)) for stage in training_stages(metadata))


def read_csv_rows(path: str | Path) -> list[dict]:
    """The rows of a CSV file as dicts ([] when the file is missing)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


class CsvLog:
    """A run's CSV (metrics.csv, eval.csv): rows appended as they come; on resume, rows past the resumed step are
    dropped (they belong to the steps the resumed run draws again)."""

    def __init__(self, path: Path, fields: list[str], resume_step: int | None):
        self.path, self.fields = path, fields
        if resume_step is not None and path.is_file():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self._write(rows, "w")
        elif not path.is_file() or resume_step is None:
            self._write([], "w")

    def _write(self, rows: list[dict], mode: str) -> None:
        with self.path.open(mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def append(self, **row) -> None:
        self._write([row], "a")


def commit_checkpoint(tmp: Path, final: Path, keep: int) -> None:
    """Rename a checkpoint written into ``tmp`` to ``final`` (``.../step-N``) and keep the newest ``keep``.

    Every change of a "step-N" name is one atomic rename: a checkpoint folder either exists complete or not at all.
    Folders to delete are renamed away first, so a kill mid-deletion leaves no half."""
    folder = final.parent
    if final.exists():
        os.replace(final, folder / f".old-{final.name}")
    os.replace(tmp, final)
    complete = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in complete[:-keep]:
        os.replace(old, folder / f".old-{old.name}")
    for stale in [*folder.glob(".tmp-step-*"), *folder.glob(".old-step-*")]:
        shutil.rmtree(stale, ignore_errors=True)
