"""Convert a model folder of the flat layout (``config.json`` at the top) to the diffusers pipeline layout.

    python tools/convert_model.py OLD_FOLDER NEW_FOLDER

The flat layout holds ``config.json``, ``diffusion_pytorch_model.safetensors``, ``scheduler_config.json`` and
``lab6.json`` side by side. lab6 still loads such folders, but ``DiffusionPipeline`` tools expect
``model_index.json`` with ``unet/`` and ``scheduler/``: this writes that (the weights are copied unchanged;
the scheduler becomes DPM-Solver++ on the same training schedule; the guidance scale moves into
``model_index.json``). A model card (``README.md``) and ``accuracy.json`` are copied along.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from lab6.loading import load_pipeline, save_pipeline


def convert(old: Path, new: Path) -> Path:
    if (old / "model_index.json").is_file():
        raise SystemExit(f"{old} is already in the pipeline layout (it has model_index.json)")
    if not (old / "config.json").is_file():
        raise SystemExit(f"{old} is not a model folder of the older layout: it has no config.json")
    if new.exists():
        raise SystemExit(f"{new} exists: give a new folder")
    pipe = load_pipeline(old)
    save_pipeline(pipe, new, pipe.metadata)
    for name in ("README.md", "accuracy.json"):
        if (old / name).is_file():
            shutil.copy2(old / name, new / name)
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="a model folder with config.json + scheduler_config.json")
    parser.add_argument("new", type=Path, help="where to write the pipeline folder (must not exist)")
    args = parser.parse_args()
    print(f"converted {args.old} -> {convert(args.old, args.new)}")


if __name__ == "__main__":
    main()
