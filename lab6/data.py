"""The i-CLEVR training set, decoded once into memory (where the data root is: ``lab6.data_root``).

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
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .labels import ConditionError, check_objects, encode
from .run_files import atomic_path, cache_dir

log = logging.getLogger(__name__)

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
    with atomic_path(path) as tmp, tmp.open("wb") as f:  # whole or not at all, as every save
        np.save(f, images)
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
