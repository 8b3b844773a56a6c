"""The figures of the notebooks and of the report: one function per figure, all reachable from ``lab6 figures``.

Every figure function draws one matplotlib ``Figure`` (object-oriented, no pyplot state), saves it as
``<out>/<name>.png`` and ``<out>/<name>.pdf`` under a stable name (see :data:`FIGURE_GROUPS`) and returns
it, so a notebook shows it inline and the command line writes the very same files. The work behind a
figure (sampling, sweeps, scoring) is a separate function whose result the figure takes, so a notebook can
also look at the numbers.

The notebooks read their settings in one place, :func:`notebook_settings` (environment variables
``LAB6_DATA``, ``LAB6_MODEL``, ``LAB6_EVALUATOR``, ``LAB6_QUICK``, ``LAB6_FIGURES``, ``LAB6_RUN``,
``LAB6_DEVICE``), so tests shrink them without editing a cell.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .labels import DENOISING_FIGURE_CONDITION, LABELS, MAX_OBJECTS_TRAINED, NUM_LABELS

#: The stable file names (without .png/.pdf) of each group of ``lab6 figures --which``.
FIGURE_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("data_samples", "data_real_vs_rendered", "data_label_frequency", "data_objects_per_image",
             "data_cooccurrence", "data_image_statistics", "data_conditions_test", "data_conditions_new_test"),
    "training": ("training_loss",),
    "denoising": ("denoising_process",),
    "samplers": ("samplers_comparison", "samplers_accuracy_vs_steps"),
    "guidance": ("guidance_images", "guidance_accuracy"),
    "accuracy": ("accuracy_grid_test", "accuracy_grid_new_test", "accuracy_hits", "accuracy_failures"),
}
#: Figures that need an evaluator (skipped, with a message, when none can be loaded).
NEEDS_EVALUATOR = ("samplers_accuracy_vs_steps", "guidance_accuracy", "accuracy_hits", "accuracy_failures")

#: CLEVR's colours (RGB, 0-255), as in CLEVR's properties.json.
CLEVR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
    "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51),
}
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpmsolver": "DPM-Solver++"}


def clevr_hex(colour: str) -> str:
    """``"red"`` -> ``"#ad2323"``."""
    return "#{:02x}{:02x}{:02x}".format(*CLEVR_RGB[colour])


def label_hex(label: str) -> str:
    """The CLEVR colour of a label such as ``"red cube"``."""
    return clevr_hex(label.split()[0])


# -- settings shared by the notebooks and ``lab6 figures`` ------------------------------------------------------

def project_root() -> Path:
    """The checkout this package lives in (editable install), else the current folder."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class NotebookSettings:
    """Everything a notebook (or ``lab6 figures``) may vary; :func:`notebook_settings` fills it in."""

    data_root: Path
    data_source: str  # where the data root came from, in words
    model: Path | None  # a model or run folder; None: no model yet (the shipped one is missing)
    model_source: str
    evaluator: Path | None  # None: the data root's checkpoint.pth, else the shipped proxy
    figures: Path
    run_dir: Path  # notebook 02's training run
    quick: bool
    device: str = "cpu"
    sampler: str = "dpmsolver"
    steps: int = 20
    guidance: float | None = None  # None: the model's own
    seed: int = 0
    preset: str = "cpu"
    train_budget: dict = field(default_factory=dict)
    resume_budget: dict = field(default_factory=dict)
    sampler_specs: tuple[tuple[str, int], ...] = (("ddpm", 1000), ("ddim", 50), ("dpmsolver", 20))
    guidance_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    step_counts: tuple[int, ...] = (5, 10, 20, 50)
    denoising_frames: int = 10
    max_failures: int = 8

    def describe(self) -> str:
        lines = [
            f"data root : {self.data_root}  ({self.data_source})",
            f"model     : {self.model or '-'}  ({self.model_source})",
            f"evaluator : {self.evaluator or 'default: the data root checkpoint.pth, else the shipped proxy'}",
            f"figures   : {self.figures}",
            f"mode      : {'QUICK (tiny settings, for tests)' if self.quick else 'full'}; device {self.device}; "
            f"sampler {self.sampler} ({self.steps} steps); seed {self.seed}",
        ]
        return "\n".join(lines)


def notebook_settings(env: dict | None = None, *, quick: bool | None = None, **overrides) -> NotebookSettings:
    """The notebooks' settings, from environment variables (``env``: defaults to ``os.environ``).

    ``LAB6_DATA`` data root (unset: the built-in synthetic set, rendered once), ``LAB6_MODEL`` model or run
    folder (unset: the shipped model, when there is one), ``LAB6_EVALUATOR`` evaluator checkpoint,
    ``LAB6_QUICK=1`` tiny settings (tiny preset, few sampler steps, small sweeps), ``LAB6_FIGURES`` output
    folder (default ``reports/figures`` of the checkout), ``LAB6_RUN`` notebook 02's run folder,
    ``LAB6_DEVICE`` (default: cuda when available). ``quick`` overrides ``LAB6_QUICK``; keyword
    ``overrides`` (None values are ignored) replace any field afterwards.
    """
    from .data import resolve_data_root
    from .run_files import SHIPPED_MODEL, is_model_folder

    env = os.environ if env is None else env
    quick = _truthy(env.get("LAB6_QUICK")) if quick is None else quick
    data_arg = overrides.pop("data_root", None) or env.get("LAB6_DATA")
    data_root = resolve_data_root(data_arg)
    data_source = (f"LAB6_DATA / --data-root: {data_arg}" if data_arg else
                   "the built-in synthetic i-CLEVR set (set LAB6_DATA to the course data root to use the real images)")
    model_arg = overrides.pop("model", None) or env.get("LAB6_MODEL")
    if model_arg:
        model, model_source = Path(model_arg).expanduser(), "LAB6_MODEL / --model"
    elif is_model_folder(SHIPPED_MODEL):
        model, model_source = SHIPPED_MODEL, "the model shipped with lab6"
    else:
        model, model_source = None, f"no LAB6_MODEL and no shipped model in {SHIPPED_MODEL}"
    evaluator_arg = overrides.pop("evaluator", None) or env.get("LAB6_EVALUATOR")
    root = project_root()
    figures = Path(overrides.pop("figures", None) or env.get("LAB6_FIGURES") or root / "reports" / "figures")
    run_dir = Path(overrides.pop("run_dir", None) or env.get("LAB6_RUN") or
                   root / "runs" / ("notebook-tiny" if quick else "notebook-cpu"))
    device = overrides.pop("device", None) or env.get("LAB6_DEVICE") or _default_device()
    if quick:
        fields = dict(steps=4, preset="tiny", train_budget={"steps": 10}, resume_budget={"steps": 15},
                      sampler_specs=(("ddpm", 10), ("ddim", 4), ("dpmsolver", 4)), guidance_scales=(0.0, 1.0, 3.0),
                      step_counts=(2, 4), denoising_frames=4, max_failures=4)
    else:
        fields = dict(steps=20, preset="cpu", train_budget={"minutes": 3.0}, resume_budget={"minutes": 4.0})
    settings = NotebookSettings(data_root=data_root, data_source=data_source, model=model, model_source=model_source,
                                evaluator=Path(evaluator_arg) if evaluator_arg else None, figures=figures,
                                run_dir=run_dir, quick=quick, device=device, **fields)
    for key, value in overrides.items():
        if value is None:
            continue
        if not hasattr(settings, key):
            raise TypeError(f"unknown setting {key!r}")
        setattr(settings, key, value)
    return settings


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def notebook_model(settings: NotebookSettings, log=print, train_fallback: bool = True):
    """Load the settings' model; with none, train a quick one into ``<run_dir>-fallback`` (once) and load it.

    With ``train_fallback=False`` a missing model raises ``pipeline.ModelNotFoundError`` instead.
    """
    from .pipeline import load_pipeline
    from .run_files import ModelNotFoundError, resolve_model_dir

    if settings.model is not None:
        return load_pipeline(settings.model, device=settings.device)
    if not train_fallback:
        raise ModelNotFoundError(f"{settings.model_source}: give --model (a model or training run folder)")
    from .config import preset
    from .train import train

    run = settings.run_dir.with_name(settings.run_dir.name + "-fallback")
    try:
        resolve_model_dir(run)
        log(f"{settings.model_source}: using the quick model trained earlier in {run}")
    except ModelNotFoundError:
        log(f"{settings.model_source}: training a quick model ({settings.preset} preset, "
            f"{settings.train_budget}) into {run}. Its images are rough; set LAB6_MODEL to a better one.")
        train(preset(settings.preset, **settings.train_budget), settings.data_root, run)
    settings.model, settings.model_source = run, f"quick fallback model in {run}"
    return load_pipeline(run, device=settings.device)


def notebook_evaluators(settings: NotebookSettings, log=print) -> list:
    """The evaluators for the settings (``LAB6_EVALUATOR``, else the defaults: ResNet18 and EfficientNet-B0),
    or an empty list (with the reason logged) when none can be loaded."""
    from .evaluator import load_evaluators

    evaluators = load_evaluators([settings.evaluator] if settings.evaluator else None, settings.data_root,
                                 device=settings.device, required=False, log=log)
    for evaluator in evaluators:
        log(f"evaluator {evaluator.name}: {evaluator.source}")
    return evaluators


def train_command(settings: NotebookSettings, processes: int = 4, preset_name: str = "paper") -> str:
    """The shell command that runs the same training loop on several GPUs through ``accelerate launch``."""
    budget = " ".join(f"--{k} {v:g}" for k, v in settings.train_budget.items()) if preset_name == settings.preset \
        else "--minutes 120"
    return (f"accelerate launch --num_processes {processes} --mixed_precision bf16 -m lab6.cli train "
            f"--data-root {settings.data_root} --preset {preset_name} --out runs/{preset_name} {budget}").strip()


# -- saving ----------------------------------------------------------------------------------------------------

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


def figure_files(out: str | Path, groups: Iterable[str] = ("all",)) -> list[Path]:
    """The PNG and PDF paths that the given groups write under ``out``."""
    names = [n for g in _expand_groups(groups) for n in FIGURE_GROUPS[g]]
    return [Path(out) / f"{n}.{ext}" for n in names for ext in ("png", "pdf")]


def _expand_groups(groups: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    for g in groups:
        if g == "all":
            chosen += [k for k in FIGURE_GROUPS if k not in chosen]
        elif g in FIGURE_GROUPS:
            chosen += [g] if g not in chosen else []
        else:
            raise ValueError(f"unknown figure group {g!r}: choose from {', '.join(FIGURE_GROUPS)} or all")
    return chosen


def _uint8(images) -> np.ndarray:
    """[-1, 1] tensor (B, 3, H, W) -> uint8 numpy (B, H, W, 3)."""
    from .images import to_uint8

    return to_uint8(images).numpy()


def _image_axis(ax, pixels: np.ndarray, title: str | None = None, fontsize: float = 7) -> None:
    ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize)


# -- notebook 01: the data -------------------------------------------------------------------------------------

@dataclass
class TrainingData:
    root: Path
    files: list[str]
    labels: np.ndarray  # (N, 24) multi-hot float32
    images: np.ndarray  # (N, 3, H, W) uint8

    def conditions(self, indices: Iterable[int]) -> list[list[str]]:
        return [[LABELS[j] for j in np.flatnonzero(self.labels[i] > 0.5)] for i in indices]


def load_training_data(root: str | Path, size: int = 64, progress: bool = True) -> TrainingData:
    """``train.json`` and its images at ``size`` (decoded once, cached like the training set)."""
    from .data import cached_images, read_train_index

    files, labels = read_train_index(root)
    return TrainingData(Path(root), files, labels, cached_images(root, files, size, progress=progress))


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
        _image_axis(ax, data.images[i].transpose(1, 2, 0), "\n".join(data.conditions([i])[0]), fontsize=6)
    fig.suptitle(f"{len(picks)} random training images of {data.root.name} ({len(data.files)} in all)")
    return save_figure(fig, out, "data_samples")


def real_vs_rendered(data: TrainingData, out: str | Path, n: int = 8, seed: int = 0):
    """``data_real_vs_rendered``: n training images above scenes that ``lab6.synthetic`` renders for the same labels.

    The built-in renderer stands in for the course data when there is none; this shows how close it comes.
    """
    from .synthetic import render_scene

    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(data.files), size=min(n, len(data.files)), replace=False))
    conditions = data.conditions(picks)
    size = data.images.shape[-1]
    fig = new_figure(1.45 * len(picks), 3.6)
    axes = fig.subplots(2, len(picks), squeeze=False)
    for k, (i, labels) in enumerate(zip(picks, conditions)):
        _image_axis(axes[0, k], data.images[i].transpose(1, 2, 0), "\n".join(labels), fontsize=6)
        _image_axis(axes[1, k], render_scene(labels, np.random.default_rng([seed, int(i)]), size=size))
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
    ax.set_title(f"Label frequency over {len(labels)} training images (min {int(counts.min())}, max {int(counts.max())})")
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


def cooccurrence_matrix(labels: np.ndarray) -> np.ndarray:
    """(24, 24) counts of images that hold both labels (the diagonal: images holding the label)."""
    return (labels.T @ labels).astype(np.int64)


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
        ax_bar.text(c, 0.02, f"{stats['mean'][c]:.3f}\n+-{stats['std'][c]:.3f}", ha="center", fontsize=8, color="white")
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


# -- notebook 02: training -------------------------------------------------------------------------------------

def read_csv_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def presets_html() -> str:
    """The named presets side by side (the fields that differ between them), as an HTML table."""
    import dataclasses

    from .config import PRESETS

    rows = []
    names = list(PRESETS)
    for f in dataclasses.fields(next(iter(PRESETS.values()))):
        values = [getattr(PRESETS[n], f.name) for n in names]
        if any(v != values[0] for v in values):
            rows.append(f"<tr><td><code>{f.name}</code></td>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
                        + "</tr>")
    counts = "".join(f"<td>{parameter_count(n) / 1e6:.2f} M</td>" for n in names)
    return (f"<table class='lab6-presets'><thead><tr><th>field</th>{''.join(f'<th>{n}</th>' for n in names)}</tr></thead>"
            f"<tbody><tr><td><b>parameters</b></td>{counts}</tr>{''.join(rows)}</tbody></table>")


def parameter_count(preset_name: str) -> int:
    """Parameters of a preset's model, counted without allocating its weights (meta device)."""
    import torch

    from .config import preset
    from .model import ConditionalUNet

    with torch.device("meta"):
        model = ConditionalUNet(**preset(preset_name).model_config())
    return sum(p.numel() for p in model.parameters())


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
    from .config import TrainConfig
    from .run_files import training_minutes
    from .train import PARENT_FILE

    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for run_dir in map(Path, run_dirs):
        by_step: dict[int, dict[str, tuple[float, float]]] = {}
        for r in read_csv_rows(run_dir / "eval.csv"):
            # Rows written before eval.csv named its evaluator were all scored by the ResNet18 proxy.
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

    from .run_files import is_model_folder

    deadline = time.time() + 60 * minutes
    while True:
        fig = loss_curve(run_dir, out)
        clear_output(wait=True)
        display(fig)
        if is_model_folder(Path(run_dir) / "model") or time.time() > deadline:
            return
        time.sleep(every_s)


# -- notebook 03: denoising and samplers -----------------------------------------------------------------------

def run_denoising(loaded, condition: Sequence[str] = DENOISING_FIGURE_CONDITION, *, sampler: str = "dpmsolver",
                  steps: int | None = None, frames: int = 10, guidance: float | None = None, seed: int = 0,
                  noise: str | None = None, progress: bool = True):
    """Sample one image for ``condition`` and keep x_t and the predicted x_0 at about ``frames`` steps."""
    from .diffusion import DEFAULT_STEPS
    from .pipeline import generate

    steps = steps or DEFAULT_STEPS[sampler]
    result = generate(loaded, [list(condition)], sampler=sampler, steps=steps, guidance=guidance, seed=seed,
                      noise=noise, record_every=max(1, math.ceil(steps / frames)), progress=progress)
    return result


def denoising_frame(result, index: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The recorded x_t and predicted x_0 at ``index`` (the last index + 1 is the final image), uint8 HxWx3."""
    from .pipeline import to_output_size

    if index >= len(result.timesteps):
        final = _uint8(result.images[:1])[0]
        return final, final
    x_t = _uint8(to_output_size(result.intermediates[index][:1].clamp(-1, 1), size))[0]
    x_0 = _uint8(to_output_size(result.predicted_x0[index][:1], size))[0]
    return x_t, x_0


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
        _image_axis(axes[0][c], x_t, "final" if final else f"t = {result.timesteps[c]}", fontsize=8)
        _image_axis(axes[1][c], x_0)
    axes[0][0].set_ylabel("x_t", fontsize=9)
    axes[1][0].set_ylabel("predicted x_0", fontsize=9)
    condition = result.conditions[0] if result.conditions else list(DENOISING_FIGURE_CONDITION)
    details = f"  ({SAMPLER_NAMES[result.sampler]}, {result.steps} steps, w = {result.guidance:g})"
    fig.suptitle(title or ", ".join(condition) + details, fontsize=10)
    return save_figure(fig, out, name)


@dataclass
class SamplerRun:
    sampler: str
    steps: int
    seconds: float
    result: object  # SampleResult

    @property
    def name(self) -> str:
        return f"{SAMPLER_NAMES[self.sampler]}-{self.steps}"


def compare_samplers(loaded, condition: Sequence[str] = DENOISING_FIGURE_CONDITION,
                     specs: Sequence[tuple[str, int]] = (("ddpm", 1000), ("ddim", 50), ("dpmsolver", 20)), *,
                     guidance: float | None = None, seed: int = 0, frames: int = 5, progress: bool = True
                     ) -> list[SamplerRun]:
    """The same condition and starting noise through each (sampler, steps), timed."""
    runs = []
    for sampler, steps in specs:
        start = time.perf_counter()
        result = run_denoising(loaded, condition, sampler=sampler, steps=steps, frames=frames, guidance=guidance,
                               seed=seed, progress=progress)
        runs.append(SamplerRun(sampler, steps, time.perf_counter() - start, result))
    return runs


def sampler_comparison(runs: Sequence[SamplerRun], out: str | Path):
    """``samplers_comparison``: one row per sampler, its predicted x_0 over time and its final image, with its time."""
    columns = max(len(r.result.timesteps) for r in runs) + 1
    fig = new_figure(1.3 * columns + 1.4, 1.45 * len(runs) + 0.5)
    axes = fig.subplots(len(runs), columns, squeeze=False)
    for row, run in zip(axes, runs):
        frames = len(run.result.timesteps)
        for c, ax in enumerate(row):
            if c < frames:
                _image_axis(ax, denoising_frame(run.result, c)[1], f"t = {run.result.timesteps[c]}", fontsize=7)
            elif c == columns - 1:
                _image_axis(ax, denoising_frame(run.result, frames)[0], "final", fontsize=7)
            else:
                ax.axis("off")
        row[0].set_ylabel(f"{run.name}\n{run.seconds:.1f} s", fontsize=9)
    fig.suptitle(f"{', '.join(runs[0].result.conditions[0])}: predicted x_0 along each sampler, same noise", fontsize=10)
    return save_figure(fig, out, "samplers_comparison")


# -- notebook 04: accuracy -------------------------------------------------------------------------------------

@dataclass
class SplitRun:
    split: str
    conditions: list[list[str]]
    images: object  # (N, 3, 64, 64) tensor in [-1, 1]
    seconds: float
    sampler: str
    steps: int
    guidance: float
    scores: dict = field(default_factory=dict)  # evaluator name -> evaluator.Score (empty without evaluators)

    @property
    def score(self):
        """The first evaluator's score (the ResNet18's by default): what the figures mark images with."""
        return next(iter(self.scores.values()), None)

    @property
    def accuracy(self) -> float | None:
        return None if self.score is None else self.score.accuracy


def run_split(loaded, data_root: str | Path, split: str, evaluators=(), *, sampler: str = "dpmsolver",
              steps: int | None = None, guidance: float | None = None, seed: int = 0, noise: str | None = None,
              progress: bool = True, **steering) -> SplitRun:
    """Generate a split's images and score them with each of ``evaluators`` (a list, one evaluator, or None).
    ``steering``: evaluator guidance (``guiding_evaluator``, ``evaluator_guidance``) passed to ``generate``."""
    from .data import load_split
    from .diffusion import DEFAULT_STEPS
    from .pipeline import generate

    conditions = load_split(data_root, split)
    steps = steps or DEFAULT_STEPS[sampler]
    guidance = loaded.guidance if guidance is None else guidance
    start = time.perf_counter()
    images = generate(loaded, conditions, sampler=sampler, steps=steps, guidance=guidance, seed=seed, noise=noise,
                      progress=progress, **steering).images
    seconds = time.perf_counter() - start
    if evaluators is None or hasattr(evaluators, "score"):
        evaluators = [] if evaluators is None else [evaluators]
    scores = {e.name: e.score(images, conditions) for e in evaluators}
    return SplitRun(split, conditions, images, seconds, sampler, steps, guidance, scores)


def accuracy_grid(run: SplitRun, out: str | Path, columns: int = 8):
    """``accuracy_grid_<split>``: the split's images 8 per row, each marked with its hits (found/true labels)."""
    pixels = _uint8(run.images)
    rows = max(1, math.ceil(len(pixels) / columns))
    fig = new_figure(1.25 * columns, 1.35 * rows + 0.5)
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(pixels):
            ax.axis("off")
            continue
        _image_axis(ax, pixels[k])
        if run.score is not None:
            hits, total = run.score.hits[k], run.score.labels_per_image[k]
            ax.set_title(f"#{k}  {hits}/{total}", fontsize=7, color="tab:green" if hits == total else "tab:red")
        else:
            ax.set_title(f"#{k}", fontsize=7)
    accuracy = f"accuracy {run.accuracy:.3f}" if run.score is not None else "no evaluator: no accuracy"
    fig.suptitle(f"{run.split}: {len(pixels)} images, {accuracy}  ({SAMPLER_NAMES[run.sampler]}-{run.steps}, "
                 f"w = {run.guidance:g}, {run.seconds:.1f} s)", fontsize=10)
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


def failures(runs: Sequence[SplitRun]) -> list[dict]:
    """Every image whose labels were not all found: split, index, true labels, the evaluator's top-k with probabilities."""
    found = []
    for run in runs:
        if run.score is None:
            continue
        for i, condition in enumerate(run.conditions):
            if run.score.hits[i] == run.score.labels_per_image[i]:
                continue
            probabilities = run.score.probabilities[i]
            top = probabilities.topk(len(condition)).indices.tolist()
            found.append({"split": run.split, "index": i, "condition": condition, "hits": run.score.hits[i],
                          "top": [(LABELS[j], float(probabilities[j])) for j in top],
                          "true": [(n, float(probabilities[LABELS.index(n)])) for n in condition]})
    return found


def failure_gallery(runs: Sequence[SplitRun], out: str | Path, max_items: int = 8):
    """``accuracy_failures``: failed images beside what the evaluator saw (its top-k) and what was asked for."""
    items = failures(runs)[:max_items]
    images = {run.split: _uint8(run.images) for run in runs}
    fig = new_figure(8.5, 1.25 * max(1, len(items)) + 0.5)
    if not items:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no failures: the evaluator found every label", ha="center", va="center")
        return save_figure(fig, out, "accuracy_failures")
    axes = fig.subplots(len(items), 2, width_ratios=[1, 5.5], squeeze=False)
    for (ax_img, ax_txt), item in zip(axes, items):
        _image_axis(ax_img, images[item["split"]][item["index"]])
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


@dataclass
class Sweep:
    parameter: str  # "guidance" or "steps"
    values: list
    conditions: list[list[str]]
    images: list  # one (N, 3, 64, 64) tensor per value
    seconds: list[float]
    accuracies: list[float] | None  # None without an evaluator
    sampler: str
    fixed: dict


def _sweep(loaded, conditions, evaluator, parameter: str, values, *, sampler: str, steps: int | None,
           guidance: float | None, seed: int, progress: bool) -> Sweep:
    from tqdm.auto import tqdm

    from .pipeline import generate

    images, seconds, accuracies = [], [], []
    for value in tqdm(list(values), desc=f"accuracy vs {parameter}", disable=not progress, unit="setting"):
        kwargs = {"steps": steps, "guidance": guidance, parameter: value}
        start = time.perf_counter()
        batch = generate(loaded, conditions, sampler=sampler, seed=seed, progress=False, **kwargs).images
        seconds.append(time.perf_counter() - start)
        images.append(batch)
        if evaluator is not None:
            accuracies.append(evaluator.score(batch, conditions).accuracy)
    fixed = {"steps": steps, "guidance": loaded.guidance if guidance is None else guidance}
    fixed.pop(parameter)
    return Sweep(parameter, list(values), [list(c) for c in conditions], images, seconds,
                 accuracies if evaluator is not None else None, sampler, fixed)


def sweep_guidance(loaded, conditions, evaluator=None, scales: Sequence[float] = (0, 1, 2, 3, 4), *,
                   sampler: str = "dpmsolver", steps: int | None = 20, seed: int = 0, progress: bool = True) -> Sweep:
    """The same conditions and noise at each guidance scale w (scored when an evaluator is given)."""
    return _sweep(loaded, conditions, evaluator, "guidance", scales, sampler=sampler, steps=steps, guidance=None,
                  seed=seed, progress=progress)


def sweep_steps(loaded, conditions, evaluator=None, counts: Sequence[int] = (5, 10, 20, 50), *,
                sampler: str = "dpmsolver", guidance: float | None = None, seed: int = 0, progress: bool = True) -> Sweep:
    """The same conditions and noise with each number of sampler steps (scored when an evaluator is given)."""
    return _sweep(loaded, conditions, evaluator, "steps", counts, sampler=sampler, steps=None, guidance=guidance,
                  seed=seed, progress=progress)


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
    fixed = ", ".join(f"{k} {v:g}" for k, v in sweep.fixed.items() if v is not None)
    ax.set_title(f"accuracy vs {sweep.parameter} ({SAMPLER_NAMES[sweep.sampler]}, {fixed}, "
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
        pixels = _uint8(batch[:rows])
        for r in range(rows):
            _image_axis(axes[r][c], pixels[r], f"w = {value:g}" if r == 0 else None, fontsize=8)
    for r in range(rows):
        axes[r][0].set_ylabel("\n".join(sweep.conditions[r]), fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle("classifier-free guidance: the same noise at growing w", fontsize=10)
    return save_figure(fig, out, "guidance_images")


# -- the command line: every figure of the notebooks -----------------------------------------------------------

def write_figures(out: str | Path, which: Iterable[str] = ("all",), *, settings: NotebookSettings | None = None,
                  run: str | Path | None = None, progress: bool = True, log=print) -> list[Path]:
    """Write the figures of the chosen groups under ``out``, the same files the notebooks write."""
    from .data import SPLITS, load_split

    settings = settings or notebook_settings()
    groups = _expand_groups(which)
    out = Path(out)
    written: list[str] = []
    loaded, evaluators = None, []
    if any(g != "data" and g != "training" for g in groups):
        loaded = notebook_model(settings, log=log, train_fallback=False)
    if any(g in ("samplers", "guidance", "accuracy") for g in groups):
        evaluators = notebook_evaluators(settings, log=log)
    evaluator = evaluators[0] if evaluators else None  # the sweeps' and failure figures' evaluator
    sampling = dict(sampler=settings.sampler, steps=settings.steps, seed=settings.seed)
    splits = [s for s in SPLITS if (settings.data_root / f"{s}.json").is_file()]

    if "data" in groups:
        data = load_training_data(settings.data_root, progress=progress)
        sample_grid(data, out, seed=settings.seed)
        real_vs_rendered(data, out, seed=settings.seed)
        label_frequency(data.labels, out)
        objects_per_image(data.labels, out)
        cooccurrence(data.labels, out)
        image_statistics(data.images, out)
        written += list(FIGURE_GROUPS["data"][:6])
        for split in splits:
            conditions_table(load_split(settings.data_root, split), out, split)
            written.append(f"data_conditions_{split}")
    if "training" in groups:
        run_dir = _run_folder(run, settings)
        if run_dir is None:
            log("training figure skipped: give --run (a training run folder with metrics.csv)")
        else:
            loss_curve(run_dir, out)
            written.append("training_loss")
    if "denoising" in groups:
        result = run_denoising(loaded, sampler=settings.sampler, steps=settings.steps, frames=settings.denoising_frames,
                               guidance=settings.guidance, seed=settings.seed, progress=progress)
        denoising_process(result, out)
        written.append("denoising_process")
    conditions = load_split(settings.data_root, "test") if "test" in splits else [list(DENOISING_FIGURE_CONDITION)]
    if "samplers" in groups:
        runs = compare_samplers(loaded, specs=settings.sampler_specs, guidance=settings.guidance, seed=settings.seed,
                                progress=progress)
        sampler_comparison(runs, out)
        written.append("samplers_comparison")
        if evaluator is not None:
            steps_accuracy(sweep_steps(loaded, conditions, evaluator, settings.step_counts, sampler=settings.sampler,
                                       guidance=settings.guidance, seed=settings.seed, progress=progress), out)
            written.append("samplers_accuracy_vs_steps")
    if "guidance" in groups:
        sweep = sweep_guidance(loaded, conditions, evaluator, settings.guidance_scales, **sampling, progress=progress)
        guidance_images(sweep, out)
        written.append("guidance_images")
        if evaluator is not None:
            guidance_accuracy(sweep, out)
            written.append("guidance_accuracy")
    if "accuracy" in groups:
        runs = [run_split(loaded, settings.data_root, s, evaluators, guidance=settings.guidance, progress=progress,
                          **sampling) for s in splits]
        for r in runs:
            accuracy_grid(r, out)
            written.append(f"accuracy_grid_{r.split}")
            if r.scores:
                log(f"{r.split}: " + ", ".join(f"{n} accuracy {v.accuracy:.4f}" for n, v in r.scores.items()))
        if evaluator is not None:
            hits_per_image(runs, out)
            failure_gallery(runs, out, settings.max_failures)
            written += ["accuracy_hits", "accuracy_failures"]
    skipped = [n for g in groups for n in FIGURE_GROUPS[g] if n not in written]
    if skipped:
        log(f"not written: {', '.join(skipped)}")
    return [out / f"{n}.{ext}" for n in written for ext in ("png", "pdf")]


def _run_folder(run: str | Path | None, settings: NotebookSettings) -> Path | None:
    """The training run to plot: ``run``, else the model's run folder when it has metrics.csv."""
    candidates = [Path(run)] if run else []
    if settings.model is not None:
        candidates += [settings.model, settings.model.parent]
    for path in candidates:
        if (path / "metrics.csv").is_file():
            return path
    return None
