"""The named recipes: complete ``TrainConfig`` objects, so ``lab6 train --preset cpu`` reproduces the reference model
and any field can still be overridden (:func:`preset`)."""

from __future__ import annotations

import dataclasses

from .config import TrainConfig

_CPU = TrainConfig(conditioning="cross_attention")
_CPU64 = TrainConfig(conditioning="cross_attention", image_size=64, patch_size=2, snr_shift=0.25, lr=1e-3)

PRESETS: dict[str, TrainConfig] = {
    # The reference recipe for 2 CPU cores: 32x32, ~3.9M parameters, v prediction, per-object label tokens
    # read by cross-attention (more accuracy per CPU-minute than additive: docs/conditioning.md#cross-attention).
    "cpu": _CPU,
    # Native 64x64 at the cost of the cpu recipe: 2x2 pixels folded into channels (patch_size 2), the SNR
    # shifted by 1/4 so coarse structure is as noisy at each t as at 32 px, lr 1e-3 (better in short runs:
    # docs/optimisation.md#learning-rate).
    "cpu64": _CPU64,
    # A refiner for a 32-px model (lab6 pair): cpu64 with a full-resolution head, trained on the low noise levels
    # it redraws only (t < 300). It cannot draw a scene from pure noise, so training does not evaluate it alone.
    # Its head starts as the least-squares denoiser of the detail inside each 2x2 patch, for detail of the energy
    # real i-CLEVR images have (detail_prior), so that grown from a 32-px model (--init-from) it denoises in half
    # the training time (docs/64px.md#detail-priors).
    # The colour part of the detail gets a gain of its own (detail_chroma_prior), or colour grain stays.
    "refiner64": dataclasses.replace(_CPU64, full_res_channels=32, max_timestep=300, detail_prior=0.00094,
                                     detail_chroma_prior=0.000087, eval_splits=()),
    # The same UNet with the label vector added to the time embedding (~2.8M parameters).
    "cpu-add": TrainConfig(),
    # The seeds' 64x64 configuration (diffusers' DDPM example UNet, ~114M parameters): for a GPU.
    "paper": TrainConfig(image_size=64, block_out_channels=(128, 128, 256, 256, 512, 512),
                         attention_levels=(False, False, False, False, True, False), layers_per_block=2,
                         beta_schedule="linear",
                         prediction="epsilon",
                         min_snr_gamma=0.0, lr=1e-4, warmup_steps=500, ema_decay=0.9999, batch_size=32,
                         eval_every=5000),
    # The cpu recipe at a GPU's batch: a GPU is bound by per-step overhead at small batches, so 8x the images per
    # step (and twice the lr). Measured: 2.5 minutes of one H200 reach 0.806 / 0.768 / 0.864 (test / new_test /
    # heldout, w = 3; docs/throughput.md#on-a-gpu). The default of `lab6 train` and notebook 02 on a GPU.
    "gpu": dataclasses.replace(_CPU, batch_size=256, lr=1e-3),
    # Opt-in, unmeasured: never trained to convergence, so no accuracy is claimed for it (docs/open-questions.md).
    # A student's single GPU at native 64x64 with what the CPU study learned (v prediction, cosine schedule,
    # min-SNR 5, one cross-attention token per object): ~38.9M parameters, attention at 16 and 8 px only
    # (32 px attention would cost 16x the tokens). Batch 128 because a GPU is bound by per-step overhead at
    # small batches (docs/throughput.md#on-a-gpu); lr 2e-4 is the usual one for a UNet of this size at this
    # batch (not tuned: docs/open-questions.md).
    "gpu64": TrainConfig(conditioning="cross_attention", image_size=64, block_out_channels=(64, 128, 256, 256),
                         attention_levels=(False, False, True, True), layers_per_block=2, batch_size=128, lr=2e-4,
                         warmup_steps=1000, ema_decay=0.9995, eval_every=2000, checkpoint_minutes=15.0),
    # For tests and a first look: trains in seconds, draws blobs.
    "tiny": TrainConfig(image_size=16, block_out_channels=(16, 32), attention_levels=(False, True),
                        eval_splits=("test", "new_test"), layers_per_block=1, attention_head_dim=16, norm_num_groups=8,
                        batch_size=8, lr=1e-3,
                        warmup_steps=5, ema_decay=0.9, log_every=5, eval_every=None, eval_steps=4,
                        checkpoint_minutes=60.0),
}


def default_preset() -> str:
    """The recipe ``lab6 train`` and notebook 02 take unless told: ``gpu`` where a CUDA GPU answers, else ``cpu``."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def preset(name: str, **overrides) -> TrainConfig:
    """The recipe ``name`` (one of :data:`PRESETS`) with ``overrides`` (field names and values)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
    return base.replace(**overrides)
