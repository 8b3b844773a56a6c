"""The training set as a whole, for the data figures and notebook 01: its images and labels as arrays, how often
labels occur together, and its colour statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .data import cached_images, read_train_index
from .labels import LABELS


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
