"""The i-CLEVR data: where it lives, and the training set decoded once into memory.

Two CPU cores cannot afford PNG decoding inside the training loop, so the first use of a data root at a
given image size decodes and resizes every image once into a uint8 array, caches it as ``.npy`` under
the cache folder, and later runs load that file in a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from .labels import LABELS, ConditionError, check_objects, encode, load_conditions
from .run_files import cache_dir, write_text_atomic

log = logging.getLogger(__name__)

SPLITS = ("test", "new_test")
#: 128 random valid conditions (``lab6.labels.heldout_conditions()``), the same for every data root.
HELDOUT_FILE = Path(__file__).parent / "assets" / "conditions" / "heldout128.json"


def resolve_data_root(data_root: str | Path | None = None, *, need_images: bool = True, progress: bool = True) -> Path:
    """The data root to use: the argument, else ``$LAB6_DATA``, else the built-in synthetic set (rendered once).

    Args:
        data_root: a folder in the course layout (objects.json, train.json, test.json, new_test.json, iclevr/).
        need_images: ``False`` where only the conditions files are read (sampling, reports): without a data root
            the synthetic set's conditions files alone are written (once, to the cache) and nothing is rendered.
        progress: show the synthetic set's render progress.

    Returns:
        The data root's path.
    """
    chosen = data_root or os.environ.get("LAB6_DATA")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data root {root} does not exist: point --data-root / LAB6_DATA at the folder "
                                    "that holds the course's files (objects.json, train.json, test.json, "
                                    "new_test.json, iclevr/)")
        if not (root / "train.json").is_file() and not (root / "test.json").is_file():
            raise FileNotFoundError(
                f"data root {root} holds neither train.json nor test.json: point --data-root / LAB6_DATA at a folder "
                "in the course layout (objects.json, train.json, test.json, new_test.json, iclevr/)"
            )
        return root
    if not need_images:
        root = synthetic_conditions_root()
        print(f"lab6: no data root given: drawing the built-in synthetic conditions ({root}), not the course's "
              "test.json / new_test.json; --data-root COURSE_DATA (make demo DATA=COURSE_DATA) draws those")
        return root
    from .synthetic import default_data_root

    return default_data_root(progress=progress)


def synthetic_conditions_root(seed: int = 0) -> Path:
    """A folder holding only the synthetic set's test.json / new_test.json (``synthetic.condition_sets``)."""
    from .synthetic import VERSION, condition_sets

    root = cache_dir() / f"synthetic-v{VERSION}-conditions-s{seed}"
    if not (is_synthetic(root) and all((root / f"{split}.json").is_file() for split in SPLITS)):
        root.mkdir(parents=True, exist_ok=True)
        files = {f"{split}.json": conditions for split, conditions in condition_sets(seed).items()}
        files[".complete"] = {"generator": "lab6.synthetic", "version": VERSION, "seed": seed, "images": False}
        for name, content in files.items():  # the marker last: a folder without it is written again
            write_text_atomic(root / name, json.dumps(content))
    return root


def is_synthetic(root: str | Path) -> bool:
    """Whether ``root`` holds lab6's built-in synthetic data (rendered, or its conditions files alone) rather
    than the course's: its ``.complete`` marker says ``lab6.synthetic`` made it."""
    try:
        return json.loads((Path(root) / ".complete").read_text()).get("generator") == "lab6.synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def conditions_file(root: str | Path, split: str) -> Path:
    """``<root>/<split>.json`` for a split name, ``heldout`` for the shipped held-out set, or a .json path."""
    if split == "heldout":
        return HELDOUT_FILE
    if Path(split).suffix == ".json" and Path(split).is_file():
        return Path(split)
    path = Path(root) / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no conditions file {path} (splits are {', '.join(SPLITS)}, heldout, or a path to a .json file)")
    return path


def evaluator_checkpoint(root: str | Path | None) -> Path | None:
    """The data root's official ``checkpoint.pth``, when it has one."""
    if root is None:
        return None
    path = Path(root) / "checkpoint.pth"
    return path if path.is_file() else None


def read_train_index(root: str | Path) -> tuple[list[str], np.ndarray]:
    """``train.json`` -> (filenames, (N, 24) multi-hot labels), in the file's order; ``objects.json``, when
    present, must give the labels lab6's indices."""
    if (Path(root) / "objects.json").is_file():
        check_objects(Path(root) / "objects.json")
    path = Path(root) / "train.json"
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no train.json in data root {root}") from None
    if not isinstance(index, dict) or not index:
        raise ConditionError(f"{path} must be a non-empty JSON object: image filename -> list of label names")
    files = list(index)
    try:
        labels = np.stack([encode(index[f]) for f in files])
    except ConditionError as err:
        raise ConditionError(f"{path}: {err}") from None
    return files, labels


def _load_resized(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            # Straight resize (never crop or pad); PIL's bicubic filter antialiases when shrinking.
            im = im.resize((size, size), Image.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def decode_images(root: str | Path, files: list[str], size: int, *, progress: bool = True) -> np.ndarray:
    """Decode and resize every listed image -> (N, 3, size, size) uint8. Reports all bad files at once."""
    from tqdm.auto import tqdm

    folder = Path(root) / "iclevr"
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(files)} images listed in train.json are missing from {folder}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    unreadable: list[str] = []

    def load(i: int) -> None:
        try:
            out[i] = _load_resized(folder / files[i], size)
        except (OSError, ValueError):
            unreadable.append(files[i])

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(tqdm(pool.map(load, range(len(files))), total=len(files), desc=f"decoding images at {size}x{size}",
                  disable=not progress, unit="img"))
    if unreadable:
        unreadable.sort()
        raise OSError(
            f"{len(unreadable)} images in {folder} could not be read: "
            f"{', '.join(unreadable[:5])}{' ...' if len(unreadable) > 5 else ''}"
        )
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def decoded_cache_path(root: str | Path, files: list[str], size: int) -> Path:
    """Where :func:`cached_images` keeps a data root's decoded images: keyed by the root, its file list, the size."""
    root = Path(root).resolve()
    key = hashlib.sha256(json.dumps([str(root), files, size, "bicubic-v1"]).encode()).hexdigest()[:16]
    return cache_dir() / "decoded" / f"{root.name}-{size}px-{key}.npy"


def cached_images(root: str | Path, files: list[str], size: int, *, progress: bool = True) -> np.ndarray:
    """:func:`decode_images`, cached as .npy (:func:`decoded_cache_path`)."""
    root = Path(root).resolve()
    path = decoded_cache_path(root, files, size)
    if path.is_file():
        try:
            images = np.load(path, mmap_mode=None)
            if images.shape == (len(files), 3, size, size):
                return images
        except (OSError, ValueError):
            pass  # a damaged cache file is simply rebuilt
    images = decode_images(root, files, size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, images)
    os.replace(tmp, path)
    return images


class ICLEVRDataset(torch.utils.data.Dataset):
    """The training images of a data root, in memory, as (image in [-1, 1], 24-d multi-hot).

    Args:
        root: the data root (:func:`resolve_data_root`).
        image_size: the side the images are resized to, straight (never cropped or padded).
        augment: flip horizontally at random (a mirrored scene has the same labels).
        progress: show the decoding progress of the first use.
    """

    def __init__(self, root: str | Path, image_size: int = 64, augment: bool = False, *, progress: bool = True):
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
        self.root = Path(root)
        self.image_size = image_size
        self.augment = augment
        self.files, labels = read_train_index(self.root)
        self.images = torch.from_numpy(cached_images(self.root, self.files, image_size, progress=progress))
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.batch(torch.tensor([i]))
        return image[0], label[0]

    def batch(self, indices: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once (what the training loop uses): vectorised scaling and flips."""
        images = self.images[indices].float().div_(127.5).sub_(1.0)
        if self.augment:
            flip = torch.rand(len(indices), generator=generator) < 0.5
            images[flip] = images[flip].flip(-1)
        return images, self.labels[indices]


def load_split(root: str | Path, split: str) -> list[list[str]]:
    """The conditions of a split of a data root (``test``, ``new_test``) or of a conditions file."""
    return load_conditions(conditions_file(root, split))


@dataclass
class TrainingData:
    """A data root's training set as arrays, for figures and statistics (:func:`load_training_data`)."""

    root: Path
    files: list[str]
    labels: np.ndarray  # (N, 24) multi-hot float32
    images: np.ndarray  # (N, 3, H, W) uint8

    def conditions(self, indices: Iterable[int]) -> list[list[str]]:
        """The label names of the images at ``indices``."""
        return [[LABELS[j] for j in np.flatnonzero(self.labels[i] > 0.5)] for i in indices]


def load_training_data(root: str | Path, size: int = 64, progress: bool = True) -> TrainingData:
    """``train.json`` and its images at ``size`` (decoded once, cached like the training set)."""
    files, labels = read_train_index(root)
    return TrainingData(Path(root), files, labels, cached_images(root, files, size, progress=progress))


def cooccurrence_matrix(labels: np.ndarray) -> np.ndarray:
    """(24, 24) counts of images that hold both labels (the diagonal: images holding the label)."""
    return (labels.T @ labels).astype(np.int64)


def channel_statistics(images: np.ndarray, chunk: int = 1024) -> dict:
    """Per-channel mean and std (pixel values scaled to [0, 1]) and the mean image (H, W, 3 in [0, 1])."""
    total = np.zeros(images.shape[1:], dtype=np.float64)
    squares = np.zeros(images.shape[1], dtype=np.float64)
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64) / 255.0
        total += block.sum(0)
        squares += (block ** 2).sum(axis=(0, 2, 3))
    n_pixels = len(images) * images.shape[2] * images.shape[3]
    mean_image = total / len(images)
    mean = mean_image.sum(axis=(1, 2)) / (images.shape[2] * images.shape[3])
    std = np.sqrt(np.maximum(squares / n_pixels - mean ** 2, 0))
    return {"mean": mean.tolist(), "std": std.tolist(), "mean_image": mean_image.transpose(1, 2, 0)}
