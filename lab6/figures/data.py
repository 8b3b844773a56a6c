"""Notebook 01's figures: what the data looks like (samples, real against rendered, label statistics,
image statistics, the condition sets)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data_statistics import TrainingData, channel_statistics, cooccurrence_matrix
from ..labels import LABELS, MAX_OBJECTS_TRAINED, NUM_LABELS, label_hex
from .common import image_axis, new_figure, save_figure


def sample_grid(data: TrainingData, out: str | Path, n: int = 32, seed: int = 0, columns: int = 8):
    """``data_samples``: n random training images, each captioned with its labels."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(data.files), size=min(n, len(data.files)), replace=False))
    rows = math.ceil(len(picks) / columns)
    fig = new_figure(1.45 * columns, 1.75 * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(picks):
            ax.axis("off")
            continue
        i = picks[k]
        image_axis(ax, data.images[i].transpose(1, 2, 0), "\n".join(data.conditions([i])[0]), fontsize=6)
    fig.suptitle(f"{len(picks)} random training images of {data.root.name} ({len(data.files)} in all)")
    return save_figure(fig, out, "data_samples")


def real_vs_rendered(data: TrainingData, out: str | Path, n: int = 8, seed: int = 0):
    """``data_real_vs_rendered``: n training images above scenes that ``lab6.synthetic`` renders for the same labels.

    The built-in renderer stands in for the course data when there is none; this shows how close it comes.
    """
    from ..render import render_scene

    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(data.files), size=min(n, len(data.files)), replace=False))
    conditions = data.conditions(picks)
    size = data.images.shape[-1]
    fig = new_figure(1.45 * len(picks), 3.6)
    axes = fig.subplots(2, len(picks), squeeze=False)
    for k, (i, labels) in enumerate(zip(picks, conditions)):
        image_axis(axes[0, k], data.images[i].transpose(1, 2, 0), "\n".join(labels), fontsize=6)
        image_axis(axes[1, k], render_scene(labels, np.random.default_rng([seed, int(i)]), size=size))
    axes[0, 0].set_ylabel(data.root.name, fontsize=8)
    axes[1, 0].set_ylabel("lab6.synthetic", fontsize=8)
    fig.suptitle("Top: training images of the data root. Bottom: the built-in renderer, same labels")
    return save_figure(fig, out, "data_real_vs_rendered")


def label_frequency(labels: np.ndarray, out: str | Path):
    """``data_label_frequency``: how many training images hold each of the 24 labels."""
    counts = labels.sum(0)
    fig = new_figure(11, 3.6)
    ax = fig.subplots()
    ax.bar(range(NUM_LABELS), counts, color=[label_hex(n) for n in LABELS], edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(NUM_LABELS), LABELS, rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("training images")
    ax.set_title(f"Label frequency over {len(labels)} training images "
                 f"(min {int(counts.min())}, max {int(counts.max())})")
    return save_figure(fig, out, "data_label_frequency")


def objects_per_image(labels: np.ndarray, out: str | Path):
    """``data_objects_per_image``: histogram of the number of objects per training image."""
    per_image = labels.sum(1).astype(int)
    values = np.arange(1, max(MAX_OBJECTS_TRAINED, per_image.max()) + 1)
    counts = [(per_image == v).sum() for v in values]
    fig = new_figure(4.5, 3.2)
    ax = fig.subplots()
    bars = ax.bar(values, counts, color="#7a7a7a", edgecolor="black")
    ax.bar_label(bars, [f"{c / len(per_image):.0%}" for c in counts], fontsize=8)
    ax.set_xticks(values)
    ax.set_xlabel("objects in the image")
    ax.set_ylabel("training images")
    ax.set_title("Objects per image")
    return save_figure(fig, out, "data_objects_per_image")


def cooccurrence(labels: np.ndarray, out: str | Path):
    """``data_cooccurrence``: 24x24 heatmap of how often two labels share an image."""
    matrix = cooccurrence_matrix(labels).astype(float)
    np.fill_diagonal(matrix, np.nan)  # the diagonal is the label frequency: its own figure
    fig = new_figure(8.2, 7)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(NUM_LABELS), LABELS, rotation=90, fontsize=7)
    ax.set_yticks(range(NUM_LABELS), LABELS, fontsize=7)
    for tick, name in zip(ax.get_xticklabels(), LABELS):
        tick.set_color(label_hex(name) if not name.startswith("yellow") else "#b8a800")
    for tick, name in zip(ax.get_yticklabels(), LABELS):
        tick.set_color(label_hex(name) if not name.startswith("yellow") else "#b8a800")
    fig.colorbar(im, ax=ax, shrink=0.8, label="images holding both labels")
    ax.set_title("Label co-occurrence (diagonal left out)")
    return save_figure(fig, out, "data_cooccurrence")


def image_statistics(images: np.ndarray, out: str | Path, stats: dict | None = None):
    """``data_image_statistics``: the mean image, per-channel histograms, and per-channel mean +- std."""
    stats = stats or channel_statistics(images)
    fig = new_figure(12, 3.4)
    ax_mean, ax_hist, ax_bar = fig.subplots(1, 3, width_ratios=[1, 1.6, 1])
    ax_mean.imshow(stats["mean_image"], interpolation="nearest")
    ax_mean.set_xticks([])
    ax_mean.set_yticks([])
    ax_mean.set_title(f"mean of {len(images)} images")
    subset = images[np.linspace(0, len(images) - 1, min(len(images), 512)).astype(int)]
    for c, colour in enumerate(("tab:red", "tab:green", "tab:blue")):
        ax_hist.hist(subset[:, c].ravel(), bins=64, range=(0, 255), histtype="step", color=colour,
                     label="RGB"[c], density=True)
    ax_hist.set_yscale("log")
    ax_hist.set_xlabel("pixel value")
    ax_hist.legend()
    ax_hist.set_title("pixel histogram per channel")
    ax_bar.bar(range(3), stats["mean"], yerr=stats["std"], color=("tab:red", "tab:green", "tab:blue"), capsize=6)
    ax_bar.set_xticks(range(3), ["R", "G", "B"])
    ax_bar.set_ylim(0, 1)
    ax_bar.set_title("mean +- std (0-1 scale)")
    for c in range(3):
        ax_bar.text(c, 0.02, f"{stats['mean'][c]:.3f}\n+-{stats['std'][c]:.3f}", ha="center", fontsize=8,
                    color="white")
    return save_figure(fig, out, "data_image_statistics")


def conditions_table(conditions: Sequence[Sequence[str]], out: str | Path, split: str):
    """``data_conditions_<split>``: a split's conditions drawn as a table (index, objects, labels)."""
    width = max(1, max((len(c) for c in conditions), default=1))
    rows = [[str(i), str(len(c))] + list(c) + [""] * (width - len(c)) for i, c in enumerate(conditions)]
    fig = new_figure(1.2 + 1.6 * width, 0.6 + 0.22 * (len(rows) + 1))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=rows or [["-", "0"] + [""] * width],
                     colLabels=["#", "objects"] + [f"object {k + 1}" for k in range(width)], loc="center",
                     cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_facecolor("#dddddd")
        elif c >= 2 and cell.get_text().get_text():
            cell.get_text().set_color(label_hex(cell.get_text().get_text()) if "yellow" not in
                                      cell.get_text().get_text() else "#a89a00")
    ax.set_title(f"{split}.json: {len(conditions)} conditions", fontsize=9)
    return save_figure(fig, out, f"data_conditions_{split}")


def conditions_html(conditions: Sequence[Sequence[str]], title: str = "") -> str:
    """A split's conditions as an HTML table (for ``IPython.display.HTML``), each label in its colour."""
    def cell(label: str) -> str:
        colour = label_hex(label)
        return (f'<span style="display:inline-block;width:0.8em;height:0.8em;background:{colour};'
                f'border:1px solid #333;margin-right:4px"></span>{html.escape(label)}')

    head = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    body = "".join(f"<tr><td>{i}</td><td>{len(c)}</td><td>{'</td><td>'.join(cell(n) for n in c)}</td></tr>"
                   for i, c in enumerate(conditions))
    return (f"<table class='lab6-conditions'>{head}<thead><tr><th>#</th><th>objects</th><th colspan='3'>labels</th>"
            f"</tr></thead><tbody>{body}</tbody></table>")
