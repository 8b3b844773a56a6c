"""Notebook 03's figures: the denoising process (x_t above the predicted x_0) and samplers side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..evaluator import to_output_size
from ..labels import DENOISING_FIGURE_CONDITION
from ..sampling import SamplerRun
from .common import image_axis, new_figure, save_figure, uint8_pixels


def denoising_frame(result, index: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The recorded x_t and predicted x_0 at ``index`` (the last index + 1 is the final image), uint8 HxWx3."""
    if index >= len(result.timesteps):
        final = uint8_pixels(result.images[:1])[0]
        return final, final
    x_t = uint8_pixels(to_output_size(result.intermediates[index][:1].clamp(-1, 1), size))[0]
    x_0 = uint8_pixels(to_output_size(result.predicted_x0[index][:1], size))[0]
    return x_t, x_0


def frame_title(result, index: int) -> str:
    """``t = 199``, or ``refiner t = 199`` for a step of the second stage (its t counts on its own schedule)."""
    stage = result.stages[index] if index < len(result.stages) else "first"
    return f"{'refiner ' if stage == 'refiner' else ''}t = {result.timesteps[index]}"


def denoising_strip(result, size: int = 64, gap: int = 2) -> np.ndarray:
    """Two rows (x_t, predicted x_0) over the recorded steps plus the final image, as one uint8 array."""
    frames = [denoising_frame(result, i, size) for i in range(len(result.timesteps) + 1)]
    width = len(frames) * (size + gap) - gap
    strip = np.full((2 * size + gap, width, 3), 255, dtype=np.uint8)
    for c, (x_t, x_0) in enumerate(frames):
        strip[:size, c * (size + gap):c * (size + gap) + size] = x_t
        strip[size + gap:, c * (size + gap):c * (size + gap) + size] = x_0
    return strip


def denoising_process(result, out: str | Path, title: str | None = None, name: str = "denoising_process"):
    """``denoising_process``: x_t (top) and the predicted x_0 (bottom) at each recorded step, then the final image."""
    columns = len(result.timesteps) + 1
    fig = new_figure(1.25 * columns + 0.6, 3.1)
    axes = fig.subplots(2, columns, squeeze=False)
    for c in range(columns):
        x_t, x_0 = denoising_frame(result, c)
        final = c == columns - 1
        image_axis(axes[0][c], x_t, "final" if final else frame_title(result, c), fontsize=8)
        image_axis(axes[1][c], x_0)
    axes[0][0].set_ylabel("x_t", fontsize=9)
    axes[1][0].set_ylabel("predicted x_0", fontsize=9)
    condition = result.conditions[0] if result.conditions else list(DENOISING_FIGURE_CONDITION)
    details = f"  ({result.sampling.describe()})"
    fig.suptitle(title or ", ".join(condition) + details, fontsize=10)
    return save_figure(fig, out, name)


def sampler_comparison(runs: Sequence[SamplerRun], out: str | Path):
    """``samplers_comparison``: one row per sampler, its predicted x_0 over time and its final image, with its time."""
    columns = max(len(r.result.timesteps) for r in runs) + 1
    fig = new_figure(1.3 * columns + 1.4, 1.45 * len(runs) + 0.5)
    axes = fig.subplots(len(runs), columns, squeeze=False)
    for row, run in zip(axes, runs):
        frames = len(run.result.timesteps)
        for c, ax in enumerate(row):
            if c < frames:
                image_axis(ax, denoising_frame(run.result, c)[1], frame_title(run.result, c), fontsize=7)
            elif c == columns - 1:
                image_axis(ax, denoising_frame(run.result, frames)[0], "final", fontsize=7)
            else:
                ax.axis("off")
        row[0].set_ylabel(f"{run.name}\n{run.seconds:.1f} s", fontsize=9)
    fig.suptitle(f"{', '.join(runs[0].result.conditions[0])}: predicted x_0 along each sampler, same noise",
                 fontsize=10)
    return save_figure(fig, out, "samplers_comparison")
