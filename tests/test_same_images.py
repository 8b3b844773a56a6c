"""Same seed, same images: the shipped model's images and a short training run's weights, bit for bit.

The digests in ``same_images.json`` were written by this file (``python tests/test_same_images.py --write``) before
the package was reorganised; a change that moves code must leave them unchanged. Float results depend on the CPU's
kernels, so the digests hold for the torch build and CPU capability they were written on; elsewhere the test says so
and skips.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).with_name("same_images.json")
CONDITIONS = [["red cube"], ["blue sphere", "cyan cylinder"], ["gray cube", "yellow sphere", "green cylinder"],
              ["purple cylinder", "brown cube"], ["green sphere"], ["yellow cube", "red sphere", "blue cylinder"],
              ["cyan cube", "gray sphere"], ["brown cylinder", "purple sphere", "gray cylinder"]]
SAMPLINGS = [("dpmsolver", 20, True), ("ddim", 10, True), ("dpmsolver", 20, False), ("ddim", 10, False),
             ("ddpm", 10, True)]


def machine() -> str:
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"


def digest(tensors) -> str:
    h = hashlib.sha256()
    for tensor in tensors:
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def image_digests() -> dict[str, str]:
    from lab6.loading import load_pipeline

    pipe = load_pipeline()
    found = {}
    for sampler, steps, refine in SAMPLINGS:
        images = pipe.with_sampler(sampler)(CONDITIONS, num_inference_steps=steps, output_type="pt",
                                            generator=torch.Generator().manual_seed(0), refine=refine).images
        found[f"{sampler}-{steps}{'-refined' if refine else ''}"] = digest([images])
    return found


#: (name, recipe overrides): the tiny preset, and a tiny 64-px refiner (patches, full-resolution head, priors).
RUNS = [("tiny", {}),
        ("tiny-refiner", dict(image_size=32, patch_size=2, snr_shift=0.25, full_res_channels=8, detail_prior=1e-3,
                              detail_chroma_prior=1e-4, max_timestep=300, eval_splits=()))]


def weight_digests(workdir: Path) -> dict[str, str]:
    from safetensors.torch import load_file

    from lab6.presets import preset
    from lab6.train import train

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_data_root

    root = make_data_root(workdir / "root")
    found = {}
    for name, overrides in RUNS:
        # full precision: what bf16 rounds to differs between CPUs with and without bf16 instructions
        model = train(preset("tiny", steps=6, mixed_precision="no", **overrides), root, workdir / name,
                      progress=False)
        state = load_file(model / "unet" / "diffusion_pytorch_model.safetensors")
        found[f"{name}-6-steps"] = digest([state[k] for k in sorted(state)])
    return found


def _golden() -> dict:
    golden = json.loads(GOLDEN.read_text())
    if golden["machine"] != machine():
        pytest.skip(f"the digests were written with {golden['machine']}; this machine has {machine()}, whose float "
                    f"kernels may round otherwise")
    return golden


def test_the_shipped_model_draws_the_same_images(monkeypatch):
    golden = _golden()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert image_digests() == golden["images"]
    finally:
        torch.set_num_threads(threads)


def test_a_short_training_run_gives_the_same_weights(tmp_path):
    golden = _golden()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert weight_digests(tmp_path) == golden["weights"]
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        record = {"machine": machine(), "images": image_digests(), "weights": weight_digests(Path(tmp))}
    GOLDEN.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
