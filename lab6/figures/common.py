"""What every figure shares: a fresh matplotlib ``Figure`` (no pyplot state), saving as PNG + PDF under a
stable name, and images drawn on an axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import to_uint8


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig, out: str | Path, name: str):
    """Write ``<out>/<name>.png`` (150 dpi) and ``<out>/<name>.pdf``; return the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=150)
    fig.savefig(out / f"{name}.pdf", metadata={"CreationDate": None})
    return fig


def uint8_pixels(images) -> np.ndarray:
    """[-1, 1] tensor (B, 3, H, W) -> uint8 numpy (B, H, W, 3)."""
    return to_uint8(images).numpy()


def image_axis(ax, pixels: np.ndarray, title: str | None = None, fontsize: float = 7) -> None:
    ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize)
