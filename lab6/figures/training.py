"""Notebook 02's figures: the recipes, the loss curve (live while a run trains) and accuracy per CPU-minute."""

from __future__ import annotations

import html
import json
import time
import warnings
from pathlib import Path
from typing import Sequence

from ..run_files import read_csv_rows
from .common import new_figure, save_figure


def presets_html() -> str:
    """The named presets side by side (the fields that differ between them), as an HTML table."""
    import dataclasses

    from ..presets import PRESETS

    rows = []
    names = list(PRESETS)
    for f in dataclasses.fields(next(iter(PRESETS.values()))):
        values = [getattr(PRESETS[n], f.name) for n in names]
        if any(v != values[0] for v in values):
            cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
            rows.append(f"<tr><td><code>{f.name}</code></td>{cells}</tr>")
    counts = "".join(f"<td>{parameter_count(n) / 1e6:.2f} M</td>" for n in names)
    header = "".join(f"<th>{n}</th>" for n in names)
    return (f"<table class='lab6-presets'><thead><tr><th>field</th>{header}</tr></thead>"
            f"<tbody><tr><td><b>parameters</b></td>{counts}</tr>{''.join(rows)}</tbody></table>")


def loss_curve(run_dir: str | Path, out: str | Path):
    """``training_loss``: a run's training loss and learning rate (metrics.csv) and accuracy (eval.csv)."""
    run_dir = Path(run_dir)
    rows = read_csv_rows(run_dir / "metrics.csv")
    evals = [r for r in read_csv_rows(run_dir / "eval.csv") if r.get("accuracy")]
    fig = new_figure(10 if evals else 6.5, 3.6)
    axes = fig.subplots(1, 2 if evals else 1, squeeze=False)[0]
    ax = axes[0]
    if rows:
        steps = [int(r["step"]) for r in rows]
        ax.plot(steps, [float(r["loss"]) for r in rows], "o-" if len(rows) < 30 else "-", color="tab:blue",
                label="loss", markersize=3)
        ax.set_yscale("log")
        lr_ax = ax.twinx()
        lr_ax.plot(steps, [float(r["lr"]) for r in rows], "--", color="tab:orange", label="learning rate")
        lr_ax.set_ylabel("learning rate", color="tab:orange")
        last = rows[-1]
        ax.set_title(f"{run_dir.name}: step {last['step']}, {last['elapsed_min']} min, "
                     f"{float(last['images_per_s']):.0f} img/s", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no metrics.csv rows yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(run_dir.name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over the logging window)")
    if evals:
        for split in sorted({r["split"] for r in evals}):
            points = [(int(r["step"]), float(r["accuracy"])) for r in evals if r["split"] == split]
            axes[1].plot(*zip(*points), "o-", label=split)
        axes[1].set_ylim(0, 1)
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("evaluator accuracy")
        axes[1].legend()
        axes[1].set_title("accuracy during training")
    return save_figure(fig, out, "training_loss")


def accuracy_vs_minutes(run_dirs: Sequence[str | Path], out: str | Path, name: str = "runs_accuracy_vs_minutes",
                        splits: Sequence[str] = ("test", "new_test"), evaluator: str = "resnet18"):
    """Accuracy (mean over ``splits``, by ``evaluator``) against minutes of training, one line per run (its eval.csv).

    Only evaluations that scored every one of ``splits`` count, so runs that evaluated more splits stay
    comparable (a run with none is left out, with a warning). A run fine-tuned from another model
    (``init_from``) says so in the legend and, when it kept its starting model's record (``parent_lab6.json``),
    starts where that model's training ended, so a chain of fine-tunes reads as one curve of total minutes.
    """
    from ..config import TrainConfig
    from ..run_files import PARENT_FILE, training_minutes

    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for run_dir in map(Path, run_dirs):
        by_step: dict[int, dict[str, tuple[float, float]]] = {}
        for r in read_csv_rows(run_dir / "eval.csv"):
            # A row without an evaluator column (an older run's eval.csv) was scored by the ResNet18 proxy.
            if r["split"] in splits and (r.get("evaluator") or "resnet18") == evaluator:
                by_step.setdefault(int(r["step"]), {})[r["split"]] = (float(r["elapsed_min"]), float(r["accuracy"]))
        parent_file = run_dir / PARENT_FILE
        parent = json.loads(parent_file.read_text()) if parent_file.is_file() else {}
        start = training_minutes(parent)
        points = sorted((start + next(iter(rows.values()))[0], sum(a for _, a in rows.values()) / len(rows))
                        for rows in by_step.values() if len(rows) == len(splits))
        config_file = run_dir / "train_config.json"
        init_from = TrainConfig.from_json(config_file).init_from if config_file.is_file() else None
        label = run_dir.name + (f" (fine-tuned from {Path(init_from).name}"
                                + (f" after {start:.0f} min)" if start else ")") if init_from else "")
        if points:
            ax.plot(*zip(*points), "o-", label=label)
        else:
            warnings.warn(f"{run_dir} is not drawn: none of its evaluations scored all of {', '.join(splits)}",
                          stacklevel=2)
    ax.set_ylim(0, 1)
    ax.set_xlabel("minutes of training (CPU; a fine-tune counts its starting model's)")
    ax.set_ylabel(f"{evaluator} accuracy (mean of {', '.join(splits)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("accuracy per CPU-minute", fontsize=10)
    return save_figure(fig, out, name)


def watch_loss_curve(run_dir: str | Path, out: str | Path, every_s: float = 15, minutes: float = 10) -> None:
    """Redraw :func:`loss_curve` in a notebook every ``every_s`` seconds while a run (e.g. in a terminal) trains.

    Stops when the run has exported ``model/`` or after ``minutes``; interrupt the kernel to stop earlier.
    """
    from IPython.display import clear_output, display

    from ..run_files import is_model_folder

    deadline = time.time() + 60 * minutes
    while True:
        fig = loss_curve(run_dir, out)
        clear_output(wait=True)
        display(fig)
        if is_model_folder(Path(run_dir) / "model") or time.time() > deadline:
            return
        time.sleep(every_s)


def parameter_count(preset_name: str) -> int:
    """Parameters of a preset's model, counted without allocating its weights (meta device)."""
    import torch

    from ..presets import preset

    with torch.device("meta"):
        model = preset(preset_name).build_model()
    return sum(p.numel() for p in model.parameters())
