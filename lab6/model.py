"""The conditional UNet: a diffusers UNet plus the layer that turns a 24-d multi-hot condition into its input.

Two ways to condition, chosen by ``conditioning`` in the config:

- ``"add"``: an MLP projects the multi-hot vector into the time-embedding space and the sum drives every
  ResNet block (diffusers ``UNet2DModel`` with ``class_embed_type="identity"``). Cheap: no attention needed.
- ``"cross_attention"``: each object becomes a token (a learned embedding per label, padded with a learned
  "no object" token to ``max_objects``) that the UNet reads through cross-attention
  (``UNet2DConditionModel``). Slower, but binds attributes per object.

In both modes an all-zero condition is the "null" condition of classifier-free guidance.

``patch_size=p`` folds every p x p block of pixels into channels before the UNet and unfolds its output
(pixel-unshuffle / pixel-shuffle, as in "simple diffusion", Hoogeboom et al. 2023): a 64x64 image becomes a
32x32 map of 12 channels, so a native 64-px model costs what a 32-px one does, yet predicts every pixel. The
refiner adds a head at full resolution after the unfold (``lab6.refiner.RefinerUNet``).
``ConditionalUNet`` is a ``ModelMixin``/``ConfigMixin``: ``save_pretrained``/``from_pretrained``
round-trip it exactly (config.json + safetensors), with nothing patched after loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from .labels import MAX_OBJECTS_EVALUATOR, NUM_LABELS

CONDITIONING_MODES = ("add", "cross_attention")


class ConditionalUNet(ModelMixin, ConfigMixin):
    """UNet denoiser conditioned on a (B, 24) multi-hot label vector.

    Args:
        sample_size: the side of the images, in pixels.
        in_channels: the channels of the images (3: RGB).
        out_channels: the channels of the prediction.
        block_out_channels: the width of each level of the UNet.
        attention_levels: one flag per level: attention (or cross-attention) blocks at that level.
        layers_per_block: ResNet layers per block.
        attention_head_dim: channels per attention head.
        norm_num_groups: groups of the group norms.
        dropout: dropout in the ResNet blocks.
        conditioning: ``"add"`` or ``"cross_attention"`` (:data:`CONDITIONING_MODES`; the module's docstring).
        num_labels: the length of the multi-hot vector.
        max_objects: the tokens per condition with ``"cross_attention"``.
        cross_attention_dim: the width of a label token.
        patch_size: folds each p x p block of pixels into channels (the module's docstring).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: tuple[int, ...] = (64, 128, 128),
        attention_levels: tuple[bool, ...] = (False, True, True),
        layers_per_block: int = 2,
        attention_head_dim: int = 32,
        norm_num_groups: int = 32,
        dropout: float = 0.0,
        conditioning: str = "add",
        num_labels: int = NUM_LABELS,
        max_objects: int = MAX_OBJECTS_EVALUATOR,
        cross_attention_dim: int = 128,
        patch_size: int = 1,
    ):
        super().__init__()
        if patch_size < 1 or sample_size % patch_size:
            raise ValueError(f"patch_size must be >= 1 and divide sample_size {sample_size}, got {patch_size}")
        if conditioning not in CONDITIONING_MODES:
            raise ValueError(f"conditioning must be one of {CONDITIONING_MODES}, got {conditioning!r}")
        if len(attention_levels) != len(block_out_channels):
            raise ValueError(
                f"attention_levels ({len(attention_levels)} entries) must give one flag per level of "
                f"block_out_channels ({len(block_out_channels)} levels)"
            )
        common = dict(
            sample_size=sample_size // patch_size,
            in_channels=in_channels * patch_size**2,
            out_channels=out_channels * patch_size**2,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            dropout=dropout,
        )
        if conditioning == "add":
            time_embed_dim = block_out_channels[0] * 4
            self.label_embedding = nn.Sequential(
                nn.Linear(num_labels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
            )
            self.unet = UNet2DModel(
                down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels),
                up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels)),
                attention_head_dim=attention_head_dim,
                class_embed_type="identity",
                **common,
            )
        else:
            # Row num_labels is the learned "no object" token that pads every condition to max_objects.
            self.label_tokens = nn.Embedding(num_labels + 1, cross_attention_dim)
            self.unet = UNet2DConditionModel(
                down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels),
                up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels)),
                cross_attention_dim=cross_attention_dim,
                attention_head_dim=tuple(max(1, c // attention_head_dim) for c in block_out_channels),
                **common,
            )

    def condition_tokens(self, condition: torch.Tensor) -> torch.Tensor:
        """(B, 24) multi-hot -> (B, max_objects) label ids, padded with the "no object" id."""
        n, pad = self.config.max_objects, self.config.num_labels
        present = condition > 0.5
        if present.numel() and int(present.sum(1).max()) > n:
            raise ValueError(f"a condition has more than max_objects={n} labels")
        # Present labels first (in label order), then padding: sort by (absent, index).
        ids = torch.arange(self.config.num_labels, device=condition.device).expand_as(condition)
        order = torch.sort(torch.where(present, ids, ids + pad + 1), dim=1).values[:, :n]
        return torch.where(order >= pad, torch.full_like(order, pad), order)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predicts the model target (noise or velocity) for a noisy sample.

        Args:
            sample: the noisy images, ``(B, C, H, W)``.
            timestep: the timestep, one per image or one for all.
            condition: multi-hot labels, ``(B, 24)``; all zeros is the null condition.

        Returns:
            The prediction, shaped as ``sample``.
        """
        condition = condition.to(sample.dtype)
        p = self.config.patch_size
        folded = F.pixel_unshuffle(sample, p) if p > 1 else sample
        if self.config.conditioning == "add":
            out = self.unet(folded, timestep, class_labels=self.label_embedding(condition)).sample
        else:
            tokens = self.label_tokens(self.condition_tokens(condition)).to(sample.dtype)
            out = self.unet(folded, timestep, encoder_hidden_states=tokens).sample
        return F.pixel_shuffle(out, p) if p > 1 else out

