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
32x32 map of 12 channels, so a native 64-px model costs what a 32-px one does, yet predicts every pixel.
Unfolded, such a model draws a faint pattern at the 2x2 period (the four pixels of a block are four channels
whose errors differ), which both evaluators read as noise (docs/64px.md#full-resolution-head).
``full_res_channels=c`` adds a small head at full resolution after the unfold, as U-ViT does after its patches
(Bao et al. 2023): two 3x3 convolutions over the noisy image and the unfolded prediction, shifted by the
timestep, whose output is added to the prediction. Its last convolution starts at zero, so a model given a head
starts as the model it was. ``detail_skip`` adds to the head a fixed, per-timestep gain on the noisy image's
detail inside each patch (``detail_gain``, filled by training from the noise schedule: ``diffusion.detail_gain``):
a body grown from a 32-px model predicts one value per patch, so without it the noise inside the patches stays
in the image until the head has learned to remove it. ``detail_chroma`` gives the detail's colour part (the
detail minus its grey) a gain of its own: a renderer's grain is brightness, so noise in the colours is noise to
remove at levels where noise in the brightness may still be grain.
``ConditionalUNet`` is a ``ModelMixin``/``ConfigMixin``: ``save_pretrained``/``from_pretrained``
round-trip it exactly (config.json + safetensors), with nothing patched after loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import Timesteps
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
        full_res_channels: the hidden channels of a :class:`FullResolutionHead`; 0 for none.
        detail_skip: the head's fixed gain on the noisy image's detail inside each patch.
        detail_chroma: a gain of its own for the detail's colour part.
        num_train_timesteps: the training timesteps, for the head's per-timestep gains.
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
        full_res_channels: int = 0,
        detail_skip: bool = False,
        detail_chroma: bool = False,
        num_train_timesteps: int = 1000,
    ):
        super().__init__()
        if patch_size < 1 or sample_size % patch_size:
            raise ValueError(f"patch_size must be >= 1 and divide sample_size {sample_size}, got {patch_size}")
        if full_res_channels < 0:
            raise ValueError(f"full_res_channels must be >= 0 (0: no full-resolution head), "
                             f"got {full_res_channels}")
        if detail_skip and not (full_res_channels and patch_size > 1):
            raise ValueError("detail_skip needs a full-resolution head over patches (full_res_channels > 0 and "
                             f"patch_size > 1), got full_res_channels={full_res_channels}, patch_size={patch_size}")
        if detail_chroma and not detail_skip:
            raise ValueError("detail_chroma splits detail_skip's gain in two: it needs detail_skip=True")
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

        self.full_res_head = (FullResolutionHead(in_channels, out_channels, full_res_channels,
                                                 patch_size if detail_skip else 0, num_train_timesteps, detail_chroma)
                              if full_res_channels else None)

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
        out = F.pixel_shuffle(out, p) if p > 1 else out
        if self.full_res_head is not None:
            out = out + self.full_res_head(sample, out, timestep)
        return out


class FullResolutionHead(nn.Module):
    """A correction to the prediction, computed at full resolution from the noisy image and the prediction.

    Two 3x3 convolutions, so each output pixel sees its neighbours across the borders of the patches; the
    hidden channels are shifted by an embedding of the timestep (as in a diffusers ResNet block), because how
    much of the noisy image's pixel-level detail is noise depends on the noise level. The last convolution
    starts at zero: the head adds nothing until it has learned something.

    ``detail_patch > 1`` also adds ``detail_gain[t]`` times the noisy image's detail inside each
    ``detail_patch`` square (the image minus its patch means): the best linear estimate of the target's detail
    from the noisy image's, so that the head starts as a denoiser of that detail and learns only what a linear
    filter misses (edges, shadows). The gains are a buffer, saved with the weights, so any sampler uses them.
    ``chroma_gain`` splits the detail into its grey part (the mean over colours), scaled by ``detail_gain``, and
    the rest, its colour, scaled by ``detail_chroma_gain``: the best linear estimate when the two parts have
    different energies (on a colour axis the noise is as strong as on the grey one, the grain is not).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int, detail_patch: int = 0,
                 num_train_timesteps: int = 1000, chroma_gain: bool = False):
        super().__init__()
        self.detail_patch = detail_patch
        if detail_patch:
            self.register_buffer("detail_gain", torch.zeros(num_train_timesteps))
            if chroma_gain:
                self.register_buffer("detail_chroma_gain", torch.zeros(num_train_timesteps))
        self.time_embedding = nn.Sequential(Timesteps(channels, flip_sin_to_cos=True, downscale_freq_shift=0),
                                            nn.Linear(channels, channels))
        self.conv_in = nn.Conv2d(in_channels + out_channels, channels, 3, padding=1)
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, sample: torch.Tensor, prediction: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(len(sample))
        shift = self.time_embedding(timestep).to(sample.dtype)[:, :, None, None]
        hidden = F.silu(self.conv_in(torch.cat([sample, prediction], dim=1)) + shift)
        if not self.detail_patch:
            return self.conv_out(hidden)
        def gain(buffer: torch.Tensor) -> torch.Tensor:
            return buffer[timestep.long()].to(sample.dtype)[:, None, None, None]

        detail = patch_detail(sample, self.detail_patch)
        if not hasattr(self, "detail_chroma_gain"):
            return self.conv_out(hidden) + gain(self.detail_gain) * detail
        grey = detail.mean(dim=1, keepdim=True)
        return self.conv_out(hidden) + gain(self.detail_gain) * grey + gain(self.detail_chroma_gain) * (detail - grey)


def patch_detail(images: torch.Tensor, patch: int) -> torch.Tensor:
    """The part of ``images`` inside each ``patch`` x ``patch`` square: the images minus their patch means."""
    means = F.avg_pool2d(images, patch)
    return images - F.interpolate(means, scale_factor=patch, mode="nearest")


def grow_to_patches(state: dict[str, torch.Tensor], patch_size: int) -> dict[str, torch.Tensor]:
    """The weights of a ``patch_size=1`` model, turned into those of the same UNet on ``patch_size`` patches.

    This is how a 32-px model becomes the starting point of a native 64-px one (``init_from`` with a
    ``patch_size=2`` recipe): ``conv_in`` reads each 2x2 block's four pixels of a colour as four channels, and
    giving each a quarter of the 32-px kernel makes it read their mean, i.e. the image the 32-px model was
    trained on; ``conv_out`` writes the 32-px prediction to all four pixels of the block. The grown model
    therefore starts as the 32-px model on block means (with its noise schedule shifted by 1/p^2, those
    means are as noisy at each t as the 32-px pixels were), and fine-tuning only has to learn the detail
    inside each block. ``pixel_unshuffle`` puts pixel (i, j) of a block for colour c in channel c*p^2 + i*p + j,
    hence ``repeat_interleave``.
    """
    grown, k = dict(state), patch_size**2
    grown["unet.conv_in.weight"] = state["unet.conv_in.weight"].repeat_interleave(k, dim=1) / k
    grown["unet.conv_out.weight"] = state["unet.conv_out.weight"].repeat_interleave(k, dim=0)
    grown["unet.conv_out.bias"] = state["unet.conv_out.bias"].repeat_interleave(k, dim=0)
    return grown
