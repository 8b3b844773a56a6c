"""From a trained model to images: load a model folder, generate for conditions, write PNGs and grids.

A model folder is what ``save_model`` writes (and what ``lab6 train`` exports, and what the package
ships in ``lab6/assets/model``): ``config.json`` + ``diffusion_pytorch_model.safetensors`` (the
ConditionalUNet), ``scheduler_config.json`` (the training noise schedule) and ``lab6.json`` (the recipe
and the guidance scale it was evaluated with).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from .diffusion import SampleResult, sample
from .labels import encode_many
from .model import ConditionalUNet

OUTPUT_SIZE = 64
SHIPPED_MODEL = Path(__file__).parent / "assets" / "model"
METADATA_FILE = "lab6.json"


class ModelNotFoundError(FileNotFoundError):
    pass


@dataclass
class LoadedModel:
    model: ConditionalUNet
    noise_scheduler_config: dict
    metadata: dict
    path: Path

    @property
    def guidance(self) -> float:
        return float(self.metadata.get("guidance", 2.0))

    @property
    def noise(self) -> str:
        """The starting noise the model is shipped with (``diffusion.initial_noise``)."""
        return self.metadata.get("noise", "gaussian")


def save_model(model: ConditionalUNet, noise_scheduler: DDPMScheduler, path: str | Path, metadata: dict) -> Path:
    """Write a model folder atomically: into a temporary sibling, then renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    noise_scheduler.save_pretrained(tmp)
    (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def training_stages(metadata: dict) -> list[dict]:
    """A model's training stages, oldest first: its ``lab6.json`` record and, through ``parent``, every
    model it was fine-tuned from."""
    chain = []
    while metadata:
        chain.append(metadata)
        metadata = metadata.get("parent") or {}
    return chain[::-1]


def training_minutes(metadata: dict) -> float:
    """Minutes of training over all of a model's stages (:func:`training_stages`)."""
    return sum(float(stage.get("train_minutes", 0)) for stage in training_stages(metadata))


def resolve_model_dir(path: str | Path | None) -> Path:
    """A model folder, or a training run (its exported ``model/``, else its newest checkpoint's EMA weights)."""
    if path is None:
        if not (SHIPPED_MODEL / "config.json").is_file():
            raise ModelNotFoundError(f"no --model given and no shipped model in {SHIPPED_MODEL}")
        return SHIPPED_MODEL
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / "model" / "config.json").is_file():
        return path / "model"
    from .train import latest_checkpoint

    checkpoint = latest_checkpoint(path)
    if checkpoint is not None and (checkpoint / "ema" / "config.json").is_file():
        return checkpoint / "ema"
    raise ModelNotFoundError(f"{path} is neither a model folder (config.json) nor a training run with a checkpoint")


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    directory = resolve_model_dir(path)
    model = ConditionalUNet.from_pretrained(directory).to(device).eval()
    scheduler_config = DDPMScheduler.load_config(directory)
    metadata_path = directory / METADATA_FILE
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    return LoadedModel(model, scheduler_config, metadata, directory)


def to_output_size(images: torch.Tensor, size: int = OUTPUT_SIZE) -> torch.Tensor:
    """Upsample generated images (e.g. 32x32) to the lab's 64x64, the way the evaluator was trained."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def generate(loaded: LoadedModel, conditions: list[list[str]], *, sampler: str = "dpmsolver",
             steps: int | None = None, guidance: float | None = None, seed: int = 0, record_every: int = 0,
             progress: bool = True, callback=None, noise: str | None = None) -> SampleResult:
    """Images for a list of conditions, at 64x64 in [-1, 1] (intermediates stay at the model's size).
    ``guidance`` and ``noise`` default to the model's own (its ``lab6.json``)."""
    result = sample(loaded.model, torch.from_numpy(encode_many(conditions)), loaded.noise_scheduler_config,
                    sampler=sampler, steps=steps, guidance=loaded.guidance if guidance is None else guidance,
                    seed=seed, record_every=record_every, progress=progress, callback=callback,
                    noise=noise or loaded.noise)
    result.images = to_output_size(result.images)
    result.conditions = [list(c) for c in conditions]
    return result


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 (B, H, W, 3)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def save_images(images: torch.Tensor, out_dir: str | Path, *, grid_name: str | None = "grid.png", nrow: int = 8) -> Path:
    """``<out>/<i>.png`` for each image (in order) and an ``nrow``-wide grid."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(to_uint8(images).numpy()):
        Image.fromarray(array).save(out_dir / f"{i}.png")
    if grid_name:
        save_grid(images, out_dir / grid_name, nrow=nrow)
    return out_dir


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=2)
    Image.fromarray((grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()).save(path)
    return Path(path)


def load_images(folder: str | Path, count: int) -> torch.Tensor:
    """``<folder>/0.png .. <count-1>.png`` -> (count, 3, H, W) in [-1, 1]."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    missing = [f"{i}.png" for i in range(count) if not (folder / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {count} images missing in {folder}: {', '.join(missing[:5])}")
    arrays = [np.asarray(Image.open(folder / f"{i}.png").convert("RGB"), dtype=np.uint8) for i in range(count)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
