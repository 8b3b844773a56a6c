"""Starting a run from a saved model (``--init-from``): check that it fits the recipe, take its weights (grown
into a patch recipe's when it is the same UNet at a smaller size), and read its training record.

Why checks and not a plain ``load_state_dict``: a model trained with another schedule, prediction target or
width loads silently wrong or fails deep inside torch; the check names each field that differs and, for the
fields a recipe sets through a prior (the refiner's detail gains), the ``--set`` that keeps the model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import TrainConfig
from .loading import load_pipeline
from .refiner import grow_to_patches
from .run_files import METADATA_FILE, PARENT_FILE, resolve_model_dir


def pretrained_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights of ``cfg.init_from``, after checking that its model and noise schedule are this recipe's, or
    grown into this recipe's patches when it is the same UNet at 1/patch_size the size (refiner.grow_to_patches).
    Weights of a full-resolution head the saved model lacks are absent: the recipe's new head keeps its own."""
    pretrained = load_pipeline(cfg.init_from)
    unet = pretrained.unet
    # A patch_size-1 model grows into a patch-p recipe at p times its size (refiner.grow_to_patches); that
    # recipe's schedule is shifted on purpose (snr_shift), so the betas are not compared then.
    growing = (unet.config.patch_size == 1 < cfg.patch_size
               and unet.config.sample_size * cfg.patch_size == cfg.image_size)
    may_differ = ("sample_size", "patch_size", "trained_betas") if growing else ()
    # A model without a full-resolution head may be given one: the head starts at zero (refiner.FullResolutionHead).
    if not unet.config.get("full_res_channels"):
        may_differ += ("full_res_channels",)
    if not unet.config.get("detail_skip"):  # ... or a head's detail gains (Trainer fills them)
        may_differ += ("detail_skip", "detail_chroma")
    mismatched = {k: (unet.config[k], v) for k, v in cfg.model_config().items()
                  if k in unet.config and _plain(unet.config[k]) != _plain(v) and k not in may_differ}
    saved, expected = pretrained.scheduler.config, cfg.noise_scheduler().config
    for key in ("beta_schedule", "num_train_timesteps", "prediction_type", "trained_betas"):
        if _plain(saved.get(key)) != _plain(expected[key]) and key not in may_differ:
            mismatched[key] = (saved.get(key), expected[key])
    recipe = pretrained.metadata.get("recipe") or {}
    # The model's fields that a recipe sets through a prior: name the --set that keeps the model's gains (a
    # recipe without the colour prior had none: null; one without detail_prior is not known: R).
    priors = (("detail_skip", "detail_prior", "R"), ("detail_chroma", "detail_chroma_prior", None))
    for field, prior, unrecorded in priors:
        if field in mismatched:
            value = recipe.get(prior, unrecorded)
            hint = f"{field} (--set {prior}={'null' if value is None else value} keeps the model's detail gains)"
            mismatched[hint] = mismatched.pop(field)
    if mismatched:
        details = ", ".join(f"{k}: model has {a!r}, recipe has {b!r}"[:200]
                            for k, (a, b) in sorted(mismatched.items()))
        raise ValueError(f"init_from {pretrained.path} does not match the recipe ({details}); "
                         "choose the preset it was trained with or override those fields")
    return grow_to_patches(unet.state_dict(), cfg.patch_size) if growing else unet.state_dict()


def run_parent(out: Path, init_from: str | None, resuming: bool, write: bool) -> dict | None:
    """The ``lab6.json`` of the model a run started from ({} when it has none; None for a run from scratch).

    Read once, when the weights load, and kept in the run folder (``write``): the starting model's folder may be
    replaced while the run trains (e.g. fine-tuning the shipped model, then shipping the result), and a resumed
    run must not read the replacement."""
    parent_file = out / PARENT_FILE
    if resuming and parent_file.is_file():
        return json.loads(parent_file.read_text())
    if not init_from:
        return None
    path = resolve_model_dir(init_from) / METADATA_FILE
    parent = json.loads(path.read_text()) if path.is_file() else {}
    if write:
        parent_file.write_text(json.dumps(parent, indent=2))
    return parent


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
