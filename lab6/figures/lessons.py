"""Small figures for the notebooks' step-by-step cells (rows of images, line plots), saved like every figure.

They take plain tensors and lists, so a notebook cell can show what its own hand-written code computed.
They are not part of ``lab6 figures``: the cells that draw them are the notebook's, not the package's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..evaluator import to_output_size
from .common import image_axis, new_figure, save_figure, uint8_pixels


def image_rows(rows: Mapping[str, object], out: str | Path, name: str, titles: Sequence[str] | None = None,
               title: str | None = None):
    """One row of images per entry of ``rows`` (label -> (B, 3, H, W) tensor in [-1, 1]), shown at 64x64."""
    columns = max(len(images) for images in rows.values())
    fig = new_figure(1.2 * columns + 0.8, 1.3 * len(rows) + (0.4 if title else 0.1))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        pixels = uint8_pixels(to_output_size(images.detach().float().cpu().clamp(-1, 1)))
        for c, ax in enumerate(axes[r]):
            if c < len(pixels):
                image_axis(ax, pixels[c], titles[c] if titles is not None and r == 0 else None, fontsize=8)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out, name)


def line_plots(panels: Sequence[tuple[str, Mapping[str, Sequence[float]], bool]], out: str | Path, name: str,
               xlabel: str = "t"):
    """Panels side by side, each ``(ylabel, {label: values}, log_scale)``: one line per label over 0, 1, 2, ..."""
    fig = new_figure(4.2 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, series, log_scale) in zip(axes, panels):
        for label, values in series.items():
            ax.plot(range(len(values)), [float(v) for v in values], label=label)
        if log_scale:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    return save_figure(fig, out, name)
