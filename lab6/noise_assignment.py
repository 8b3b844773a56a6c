"""Immiscible diffusion: each training image gets the batch's noise sample nearest to it.

Li et al. 2024 ("Immiscible diffusion: accelerating diffusion training with noise assignment"): with noise drawn
independently of the images, every image is noised towards every region of noise space, and the network learns
to denoise a mixture. Assigning the batch's noise samples to its images one to one so that the total distance is
least (a linear assignment, the Hungarian algorithm) keeps each image's noise near it while the noise, as a set,
stays Gaussian. Nothing changes at sampling time. The assignment draws no random numbers, so a run with it keeps
its random stream, and exact resume, like any other. Measured: docs/optimisation.md#noise-assignment.
"""

from __future__ import annotations

import numpy as np
import torch

#: How a batch's noise is paired with its images (``TrainConfig.noise_assignment``).
NOISE_ASSIGNMENTS = ("random", "immiscible")


def linear_assignment(cost: np.ndarray) -> np.ndarray:
    """The column for each row of a square ``cost`` matrix that makes the summed cost least.

    The Hungarian algorithm with potentials (Kuhn-Munkres, O(n^3), each row's search vectorised over the columns):
    ``scipy.optimize.linear_sum_assignment`` without the dependency, for a batch's 8-256 rows.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != n:
        raise ValueError(f"a square cost matrix is needed, got shape {cost.shape}")
    u, v = np.zeros(n + 1), np.zeros(n + 1)  # row and column potentials; index 0 is a virtual column
    row_of = np.zeros(n + 1, dtype=np.int64)  # row_of[j]: the row (1-based) assigned to column j, 0 for none
    way = np.zeros(n + 1, dtype=np.int64)
    for row in range(1, n + 1):
        row_of[0], j0 = row, 0
        min_slack, used = np.full(n + 1, np.inf), np.zeros(n + 1, dtype=bool)
        while row_of[j0]:  # grow the alternating tree until it reaches a free column
            used[j0] = True
            slack = cost[row_of[j0] - 1] - u[row_of[j0]] - v[1:]
            free = ~used[1:]
            better = free & (slack < min_slack[1:])
            min_slack[1:][better], way[1:][better] = slack[better], j0
            candidates = np.where(free, min_slack[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            min_slack[1:][free] -= delta
            j0 = j1
        while j0:  # flip the path back to the root
            j1 = way[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    column = np.empty(n, dtype=np.int64)
    column[row_of[1:] - 1] = np.arange(n)
    return column


def immiscible_noise(images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``noise`` reordered so that image i gets the sample that a least-total-distance assignment gives it (the
    paper's L2 distance between flattened tensors)."""
    distance = torch.cdist(images.detach().flatten(1).double().cpu(), noise.flatten(1).double().cpu())
    return noise[torch.from_numpy(linear_assignment(distance.numpy())).to(noise.device)]
