"""The settings the notebooks share with ``lab6 figures``, read in one place.

:func:`notebook_settings` reads the environment (``LAB6_DATA``, ``LAB6_MODEL``, ``LAB6_EVALUATOR``,
``LAB6_QUICK``, ``LAB6_FIGURES``, ``LAB6_RUN``, ``LAB6_DEVICE``), so tests shrink the notebooks without editing
a cell; :func:`notebook_model` and :func:`notebook_evaluators` load what the settings name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data_root import resolve_data_root
from .loading import load_pipeline
from .presets import preset
from .run_files import SHIPPED_MODEL, ModelNotFoundError, is_model_folder, resolve_model_dir
from .sampling import Sampling
from .scoring import load_evaluators
from .train import train


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
    sampling: Sampling = Sampling()  # how the notebooks draw (None fields: the model's own)
    preset: str = "cpu"
    train_budget: dict = field(default_factory=dict)
    resume_budget: dict = field(default_factory=dict)
    sampler_specs: tuple[tuple[str, int], ...] = (("ddpm", 1000), ("ddim", 50), ("dpmsolver", 20))
    guidance_scales: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    step_counts: tuple[int, ...] = (5, 10, 20, 50)
    denoising_frames: int = 10
    max_failures: int = 8

    def describe(self) -> str:
        """The settings in a few lines, as a notebook prints them first."""
        threads = f" ({torch.get_num_threads()} threads)" if self.device == "cpu" else ""
        lines = [
            f"data root : {self.data_root}  ({self.data_source})",
            f"model     : {self.model or '-'}  ({self.model_source})",
            f"evaluator : {self.evaluator or 'default: the data root checkpoint.pth, else the shipped proxy'}",
            f"figures   : {self.figures}",
            f"mode      : {'QUICK (tiny settings, for tests)' if self.quick else 'full'}; "
            f"device {self.device}{threads}; {self.sampling.describe()}; seed {self.sampling.seed}",
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
        fields = dict(sampling=Sampling(steps=4), preset="tiny", train_budget={"steps": 10},
                      resume_budget={"steps": 15}, sampler_specs=(("ddpm", 10), ("ddim", 4), ("dpmsolver", 4)),
                      guidance_scales=(0.0, 1.0, 3.0), step_counts=(2, 4), denoising_frames=4, max_failures=4)
    else:
        fields = dict(sampling=Sampling(steps=20), preset="cpu", train_budget={"minutes": 3.0},
                      resume_budget={"minutes": 4.0})
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


def network_tolerance(dtype: torch.dtype, device: str | torch.device) -> dict:
    """``rtol`` and ``atol`` for ``torch.testing.assert_close`` between two runs of one network that may sum in
    another order: another batch size (guidance's two calls against one batch of both), thread count or GPU
    kernel. Each reordered sum moves the last bits, and a deep network carries them through every layer, so
    about half the significant digits are what two correct runs share: sqrt(eps) of the arithmetic's precision
    (float32 on the CPU: 3.5e-4). Float32 on a GPU that allows TF32 (PyTorch's default for convolutions)
    multiplies with TF32's 10-bit mantissa, so eps is 2^-10 there. The notebooks' mistakes that their checks
    catch move the outputs by far more."""
    device = torch.device(device)
    eps = torch.finfo(dtype).eps
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    if device.type == "cuda" and dtype == torch.float32 and tf32:
        eps = 2.0 ** -10
    return {"rtol": eps ** 0.5, "atol": eps ** 0.5}


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def notebook_model(settings: NotebookSettings, log=print, train_fallback: bool = True):
    """Load the settings' model; with none, train a quick one into ``<run_dir>-fallback`` (once) and load it.

    With ``train_fallback=False`` a missing model raises ``pipeline.ModelNotFoundError`` instead.
    """
    if settings.model is not None:
        return load_pipeline(settings.model, device=settings.device)
    if not train_fallback:
        raise ModelNotFoundError(f"{settings.model_source}: give --model (a model or training run folder)")

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
    """The evaluators for the settings (``LAB6_EVALUATOR``, else the defaults: the ResNet18 and every other proxy),
    or an empty list (with the reason logged) when none can be loaded."""

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
