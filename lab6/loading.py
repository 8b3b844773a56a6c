"""Model folders: ``load_pipeline`` and ``save_pipeline``.

A model folder is the diffusers layout (``model_index.json``, ``unet/``, ``scheduler/``, and for a pair
``refiner/``, ``refiner_scheduler/``) plus ``lab6.json`` (the training record) and, when shipped, ``README.md``
(the model card). It loads as the pipeline class its ``model_index.json`` names; folders written before the
refiner had a pipeline of its own (a ``Lab6Pipeline`` holding a refiner) load as the ``RefinedPipeline`` they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from .diffusion import DEFAULT_GUIDANCE, DEFAULT_NOISE
from .model import ConditionalUNet
from .pipeline import Lab6Pipeline, build_pipeline
from .refiner import RefinedPipeline, RefinerUNet
from .run_files import METADATA_FILE, atomic_path, is_model_folder, resolve_model_dir
from .samplers import GreyMeanDDPMScheduler

PIPELINES = {cls.__name__: cls for cls in (Lab6Pipeline, RefinedPipeline)}
#: The folder inside a model folder that holds its few-step distilled first stage (``save_first_stage``), if any.
FEW_STEP = "few-step"


class ModelLoadError(RuntimeError):
    """A model folder that exists but cannot be loaded (truncated weights, a broken config)."""


def save_pipeline(pipe: Lab6Pipeline, path: str | Path, metadata: dict) -> Path:
    """Write a model folder whole or not at all (into a temporary sibling, then renamed over ``path``)."""
    with atomic_path(path) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return Path(path)


def load_pipeline(path: str | Path | None = None, device: str | torch.device = "cpu") -> Lab6Pipeline:
    """A model folder (or a training run: its final model, else its newest checkpoint) as a pipeline;
    without ``path``, the model shipped in ``lab6/assets/model``."""
    directory = resolve_model_dir(path)
    metadata_file = directory / METADATA_FILE
    try:
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
        if (directory / "model_index.json").is_file():
            pipe = _quietly(_from_model_index, directory)
        else:
            pipe = _flat_folder_pipeline(directory, metadata)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ModelLoadError(f"could not load the model in {directory} (truncated or incomplete files?): "
                             f"{str(err).splitlines()[0][:300]}") from None
    if metadata.get("first_stage_of"):  # a first stage alone, drawn with another folder's refiner
        pipe = _with_later_stages(pipe, (directory / metadata["first_stage_of"]).resolve(), device)
    pipe.metadata, pipe.path = metadata, directory
    pipe.set_progress_bar_config(disable=True)
    for network in (pipe.unet, getattr(pipe, "refiner", None)):
        if network is not None:
            network.eval()
            # With their weights channels-last (NHWC), oneDNN's convolutions skip their layout reorders: 32 images
            # at 20 steps 1.22-1.32x faster on 2 cores, the same to float rounding (bench_sampling --memory-format).
            network.to(memory_format=torch.channels_last)
    return pipe.to(device)


def _from_model_index(directory: Path) -> Lab6Pipeline:
    """The pipeline class and the components that ``model_index.json`` names, reading the names an earlier lab6
    wrote: a ``Lab6Pipeline`` with a refiner, a ``lab6.model.ConditionalUNet`` with a full-resolution head, the
    grey-mean DDPM scheduler in ``lab6.diffusion``."""
    index = json.loads((directory / "model_index.json").read_text())
    if index.get("guidance_interval") is not None:
        raise ValueError(f"this model guides only in the interval {index['guidance_interval']}, which lab6 no longer "
                         "draws; delete guidance_interval from its model_index.json to guide at every step")
    has_refiner = (index.get("refiner") or [None])[0] is not None
    name = index["_class_name"]
    if name not in PIPELINES:
        raise ValueError(f"model_index.json names the pipeline {name!r}; lab6 loads {', '.join(PIPELINES)}")
    pipeline_class = RefinedPipeline if has_refiner else PIPELINES[name]
    components = {}
    for component in ("unet", "refiner"):  # a full-resolution head used to be a ConditionalUNet's
        if index.get(component) == ["lab6.model", "ConditionalUNet"]:
            config = json.loads((directory / component / "config.json").read_text())
            if config.get("full_res_channels"):
                components[component] = RefinerUNet.from_pretrained(directory / component)
    for component in ("scheduler", "refiner_scheduler"):
        if index.get(component) == ["lab6.diffusion", "GreyMeanDDPMScheduler"]:
            components[component] = GreyMeanDDPMScheduler.from_pretrained(directory / component)
    return pipeline_class.from_pretrained(directory, **components)


def _with_later_stages(first: Lab6Pipeline, folder: Path, device) -> Lab6Pipeline:
    """The model in ``folder`` with ``first``'s first stage, sampler and guidance scale: a folder that records
    ``"first_stage_of": ".."`` (a distilled first stage kept beside the pair it was distilled from) holds no copy
    of that pair's refiner."""
    pair = load_pipeline(folder, device)
    return pair.replaced(unet=first.unet, scheduler=first.scheduler, guidance_scale=first.guidance_scale,
                         initial_noise=first.initial_noise)


def save_first_stage(pipe: Lab6Pipeline, path: str | Path, metadata: dict, stages_of: str | Path) -> Path:
    """Write ``pipe``'s first stage alone as a folder that draws with the later stages of the model in
    ``stages_of`` (a folder, written relative to ``path``): what :func:`load_pipeline` reads back as the whole
    model, without a second copy of its refiner."""
    first = pipe.first_stage() if isinstance(pipe, RefinedPipeline) else pipe
    relative = os.path.relpath(Path(stages_of).resolve(), Path(path).resolve())
    return save_pipeline(first, path, {**metadata, "first_stage_of": relative})


def few_step_model(model: str | Path | None = None) -> Path | None:
    """The few-step distilled first stage kept inside ``model``'s folder (a model folder or run; None: the shipped
    model), which draws with that model's later stages; None when it has none."""
    try:
        folder = resolve_model_dir(model) / FEW_STEP
    except FileNotFoundError:
        return None
    return folder if is_model_folder(folder) else None


def _flat_folder_pipeline(directory: Path, metadata: dict) -> Lab6Pipeline:
    """A model folder of the layout before the pipeline (config.json, scheduler_config.json side by side)."""
    unet = ConditionalUNet.from_pretrained(directory)
    return build_pipeline(unet, DDPMScheduler.load_config(directory),
                          float(metadata.get("guidance", DEFAULT_GUIDANCE)), metadata.get("noise", DEFAULT_NOISE))


def _quietly(load, *args):
    """Run a diffusers loader without its "Loading pipeline components" bar (a command prints its own progress)."""
    from diffusers.utils import logging as diffusers_logging

    was_enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        return load(*args)
    finally:
        if was_enabled:
            diffusers_logging.enable_progress_bar()
