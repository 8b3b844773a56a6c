"""Notebook 04's figures: the grids marked with hits, hits per image, the failures beside what the evaluator
saw, and the guidance and step sweeps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..samplers import SAMPLER_NAMES
from ..sampling import SplitRun, Sweep, failures
from .common import image_axis, new_figure, save_figure, uint8_pixels


def accuracy_grid(run: SplitRun, out: str | Path, columns: int = 8):
    """``accuracy_grid_<split>``: the split's images 8 per row, each marked with its hits (found/true labels)."""
    pixels = uint8_pixels(run.images)
    rows = max(1, math.ceil(len(pixels) / columns))
    fig = new_figure(1.25 * columns, 1.35 * rows + 0.5)
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(pixels):
            ax.axis("off")
            continue
        image_axis(ax, pixels[k])
        if run.score is not None:
            hits, total = run.score.hits[k], run.score.labels_per_image[k]
            ax.set_title(f"#{k}  {hits}/{total}", fontsize=7, color="tab:green" if hits == total else "tab:red")
        else:
            ax.set_title(f"#{k}", fontsize=7)
    accuracy = f"accuracy {run.accuracy:.3f}" if run.score is not None else "no evaluator: no accuracy"
    fig.suptitle(f"{run.split}: {len(pixels)} images, {accuracy}  ({run.sampling.describe()}, {run.seconds:.1f} s)",
                 fontsize=10)
    return save_figure(fig, out, f"accuracy_grid_{run.split}")


def hits_per_image(runs: Sequence[SplitRun], out: str | Path):
    """``accuracy_hits``: per image, the share of its labels the evaluator found among its top-k."""
    runs = [r for r in runs if r.score is not None]
    fig = new_figure(10, 2.4 * max(1, len(runs)) + 0.3)
    axes = fig.subplots(max(1, len(runs)), 1, squeeze=False)[:, 0]
    for ax, run in zip(axes, runs):
        share = np.array(run.score.hits) / np.array(run.score.labels_per_image)
        ax.bar(range(len(share)), share, color=["tab:green" if s == 1 else "tab:red" for s in share])
        ax.set_ylim(0, 1.05)
        ax.set_xlim(-0.6, len(share) - 0.4)
        ax.set_ylabel("hits / labels")
        ax.set_title(f"{run.split}: accuracy {run.accuracy:.3f} ({sum(run.score.hits)}/"
                     f"{sum(run.score.labels_per_image)} labels)", fontsize=10)
    axes[-1].set_xlabel("image index")
    return save_figure(fig, out, "accuracy_hits")


def failure_gallery(runs: Sequence[SplitRun], out: str | Path, max_items: int = 8):
    """``accuracy_failures``: failed images beside what the evaluator saw (its top-k) and what was asked for."""
    items = failures(runs)[:max_items]
    images = {run.split: uint8_pixels(run.images) for run in runs}
    fig = new_figure(8.5, 1.25 * max(1, len(items)) + 0.5)
    if not items:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no failures: the evaluator found every label", ha="center", va="center")
        return save_figure(fig, out, "accuracy_failures")
    axes = fig.subplots(len(items), 2, width_ratios=[1, 5.5], squeeze=False)
    for (ax_img, ax_txt), item in zip(axes, items):
        image_axis(ax_img, images[item["split"]][item["index"]])
        ax_img.set_ylabel(f"{item['split']} #{item['index']}", fontsize=7)
        ax_txt.axis("off")
        truth = set(item["condition"])
        asked = ", ".join(f"{n} ({p:.2f})" for n, p in item["true"])
        saw = ", ".join(f"{n} ({p:.2f}){' ok' if n in truth else ''}" for n, p in item["top"])
        ax_txt.text(0, 0.72, f"asked for:  {asked}", fontsize=8, transform=ax_txt.transAxes, va="center")
        ax_txt.text(0, 0.30, f"evaluator top-{len(truth)}:  {saw}", fontsize=8, transform=ax_txt.transAxes,
                    va="center", color="tab:red")
        ax_txt.text(1, 0.5, f"{item['hits']}/{len(truth)}", fontsize=10, transform=ax_txt.transAxes, ha="right",
                    va="center")
    total = len(failures(runs))
    fig.suptitle(f"{len(items)} of {total} images with a missed label (probabilities in brackets)", fontsize=10)
    return save_figure(fig, out, "accuracy_failures")


def _sweep_plot(sweep: Sweep, out: str | Path, name: str, xlabel: str):
    fig = new_figure(6, 3.6)
    ax = fig.subplots()
    if sweep.accuracies is not None:
        ax.plot(sweep.values, sweep.accuracies, "o-", color="tab:blue")
        for x, y in zip(sweep.values, sweep.accuracies):
            ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy", color="tab:blue")
    else:
        ax.text(0.5, 0.5, "no evaluator: no accuracy", ha="center", va="center", transform=ax.transAxes)
    time_ax = ax.twinx()
    time_ax.plot(sweep.values, sweep.seconds, "s--", color="tab:gray", markersize=4)
    time_ax.set_ylabel(f"seconds for {len(sweep.conditions)} images", color="tab:gray")
    ax.set_xlabel(xlabel)
    by_guidance = sweep.parameter == "guidance_scale"
    fixed = SAMPLER_NAMES[sweep.sampling.sampler] + (f", {sweep.sampling.steps} steps" if by_guidance
                                                     else f", w = {sweep.sampling.guidance_scale:g}")
    ax.set_title(f"accuracy vs {sweep.parameter} ({fixed}, "
                 f"{len(sweep.conditions)} conditions)", fontsize=9)
    if sweep.parameter == "steps":
        ax.set_xscale("log")
        ax.set_xticks(sweep.values, [str(v) for v in sweep.values])
    return save_figure(fig, out, name)


def guidance_accuracy(sweep: Sweep, out: str | Path):
    """``guidance_accuracy``: evaluator accuracy (and sampling time) against the guidance scale w."""
    return _sweep_plot(sweep, out, "guidance_accuracy", "guidance scale w  (0 unconditional, 1 conditional)")


def steps_accuracy(sweep: Sweep, out: str | Path):
    """``samplers_accuracy_vs_steps``: evaluator accuracy (and sampling time) against the number of sampler steps."""
    return _sweep_plot(sweep, out, "samplers_accuracy_vs_steps", "sampler steps")


def guidance_images(sweep: Sweep, out: str | Path, rows: int = 4):
    """``guidance_images``: a few conditions (rows) drawn at each guidance scale (columns), same noise."""
    rows = min(rows, len(sweep.conditions))
    columns = len(sweep.values)
    fig = new_figure(1.3 * columns + 2.6, 1.35 * rows + 0.5)
    axes = fig.subplots(rows, columns, squeeze=False)
    for c, (value, batch) in enumerate(zip(sweep.values, sweep.images)):
        pixels = uint8_pixels(batch[:rows])
        for r in range(rows):
            image_axis(axes[r][c], pixels[r], f"w = {value:g}" if r == 0 else None, fontsize=8)
    for r in range(rows):
        axes[r][0].set_ylabel("\n".join(sweep.conditions[r]), fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle("classifier-free guidance: the same noise at growing w", fontsize=10)
    return save_figure(fig, out, "guidance_images")


def real_vs_generated(real, rows: dict, conditions: Sequence[Sequence[str]], out: str | Path,
                      name: str = "fidelity_real_vs_generated"):
    """``fidelity_real_vs_generated``: real images (top row) above each model's images for the same labels.

    ``real`` and every value of ``rows`` are (N, 3, 64, 64) tensors in [-1, 1] drawn for ``conditions``;
    the keys of ``rows`` label the rows (e.g. "32 px, Gaussian noise" and "refined at 64 px").
    """
    columns = len(conditions)
    fig = new_figure(1.2 * columns + 1.6, 1.25 * (len(rows) + 1) + 0.6)
    axes = fig.subplots(len(rows) + 1, columns, squeeze=False)
    for r, (label, images) in enumerate([("real", real), *rows.items()]):
        pixels = uint8_pixels(images[:columns])
        for c in range(columns):
            image_axis(axes[r][c], pixels[c], "\n".join(conditions[c]) if r == 0 else None, fontsize=5)
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle("real images above generated ones for the same labels", fontsize=10)
    return save_figure(fig, out, name)
