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
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SHIPPED_MODEL = Path(__file__).parent / "assets" / "model"
METADATA_FILE = "lab6.json"  # a model's training record
PARENT_FILE = "parent_lab6.json"  # in a run folder: the starting model's record, kept for --resume
CHECKPOINTS = "checkpoints"


class ModelNotFoundError(FileNotFoundError):
    pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file, or a folder to fill); on success it replaces
    ``path``; on an error it is removed and ``path`` is left as it was."""
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot write {path}: {parent} exists and is not a folder") from None
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {parent} is not writable")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            if not path.is_dir():
                raise IsADirectoryError(f"cannot write the folder {path}: a file of that name exists")
            old = path.with_name(f".{path.name}.old{os.getpid()}")
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
