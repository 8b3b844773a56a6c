"""The refiner's network: a ``ConditionalUNet`` over 2x2 patches plus a head at full resolution, whose detail gains
come from the noise schedule and the data's detail priors; and how a 32-px model grows into a 64-px one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ModelMixin is looked up in this module when diffusers loads a RefinerUNet that a model_index.json names here.
from diffusers import DDPMScheduler, ModelMixin  # noqa: F401
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.embeddings import Timesteps
from torch import nn

from ..model import ConditionalUNet


class RefinerUNet(ConditionalUNet):
    """A ``ConditionalUNet`` (over ``patch_size`` patches) plus a :class:`FullResolutionHead` after the unfold, as
    U-ViT has after its patches (Bao et al. 2023): unfolded, a patch model draws a faint pattern at the patch
    period that both evaluators read as noise (docs/64px.md#full-resolution-head).

    Args:
        full_res_channels: the head's hidden channels.
        detail_skip: the head adds a fixed, per-timestep gain times the noisy image's detail inside each patch
            (:func:`detail_gain`): a body grown from a 32-px model predicts one value per patch, so without it
            the noise inside the patches stays until the head has learned to remove it.
        detail_chroma: the detail's colour part (the detail minus its grey) gets a gain of its own: a renderer's
            grain is brightness, so colour noise is noise to remove where brightness noise may still be grain.
        num_train_timesteps: the training timesteps, one gain each.
        **unet_config: ``ConditionalUNet``'s arguments.
    """

    def __init__(self, full_res_channels: int = 32, detail_skip: bool = False, detail_chroma: bool = False,
                 num_train_timesteps: int = 1000, **unet_config):
        super().__init__(**unet_config)
        patch = self.config.patch_size
        if full_res_channels < 1:
            raise ValueError(f"full_res_channels must be >= 1 (a refiner's head), got {full_res_channels}")
        if detail_skip and patch < 2:
            raise ValueError(f"detail_skip needs a model over patches (patch_size > 1), got patch_size={patch}")
        if detail_chroma and not detail_skip:
            raise ValueError("detail_chroma splits detail_skip's gain in two: it needs detail_skip=True")
        self.register_to_config(full_res_channels=full_res_channels, detail_skip=detail_skip,
                                detail_chroma=detail_chroma, num_train_timesteps=num_train_timesteps)
        self.full_res_head = FullResolutionHead(self.config.in_channels, self.config.out_channels, full_res_channels,
                                                patch if detail_skip else 0, num_train_timesteps, detail_chroma)

    @staticmethod
    def _get_init_keys(input_class):
        # diffusers reads a model's config keys off its __init__'s signature: a refiner's are its own and the UNet's.
        return ConfigMixin._get_init_keys(ConditionalUNet) | ConfigMixin._get_init_keys(RefinerUNet)

    @classmethod
    def for_recipe(cls, cfg) -> "RefinerUNet":
        """A fresh refiner of a ``TrainConfig`` whose head starts as the least-squares denoiser of its data's
        detail (``detail_prior``, ``detail_chroma_prior``; a starting model that has gains overwrites them)."""
        model = cls(**cfg.model_config())
        with torch.device("cpu"):  # the gains are numbers, even when the model is built on the meta device
            schedule = cfg.noise_scheduler()
        if cfg.detail_prior:
            model.full_res_head.detail_gain.copy_(detail_gain(schedule, cfg.detail_prior))
        if cfg.detail_chroma_prior is not None:
            model.full_res_head.detail_chroma_gain.copy_(detail_gain(schedule, cfg.detail_chroma_prior))
        return model

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = super().forward(sample, timestep, condition)
        return out + self.full_res_head(sample, out, timestep)
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



def detail_gain(noise_scheduler: DDPMScheduler, prior: float) -> torch.Tensor:
    """Per timestep, the best linear estimate of the model target's in-patch detail from the noisy image's.

    With x_t = a x_0 + s eps and x_0's detail of energy ``prior`` per dimension against the noise's 1 (both
    inside the patches: ``model.patch_detail``), least squares gives, per detail dimension,
    eps: s / (a^2 prior + s^2) and v = a eps - s x_0: a s (1 - prior) / (a^2 prior + s^2). At low noise
    this grows as 1/s: almost all of a lightly noised image's pixel-level detail is noise, and a denoiser must
    remove it in full. ``model.FullResolutionHead`` adds ``gain[t] * detail(x_t)`` to its prediction.

    Args:
        noise_scheduler: the training schedule; its ``prediction_type`` says whether the target is eps or v.
        prior: the clean images' detail energy per dimension (:func:`detail_priors`).

    Returns:
        A float tensor of one gain per training timestep.
    """
    alpha_bar = noise_scheduler.alphas_cumprod.double()
    a2, s2 = alpha_bar, 1 - alpha_bar
    if noise_scheduler.config.prediction_type == "epsilon":
        gain = s2.sqrt() / (a2 * prior + s2)
    else:
        gain = (a2 * s2).sqrt() * (1 - prior) / (a2 * prior + s2)
    return gain.float()


def detail_priors(images: torch.Tensor, patch: int = 2) -> tuple[float, float]:
    """The ``detail_prior`` and ``detail_chroma_prior`` of a set of clean images: the energy per pixel of their
    finest checkerboard (each ``patch`` x ``patch`` square's component along +-1 alternating pixels, the finest
    diagonal Haar detail at patch 2), along the grey axis and across the two colour axes orthogonal to it.
    Unit white noise has (1, 1), the scale :func:`detail_gain` takes.

    The checkerboard, not all the detail inside a patch, because the head's linear denoiser should keep only what
    the rest of the model cannot predict from the patch's neighbours: edges run on across patches, while the
    checkerboard is mostly a renderer's grain (docs/64px.md#detail-priors).

    Args:
        images: ``(N, 3, H, W)`` in [-1, 1], or uint8 as a data set holds them (scaled a chunk at a time, so a
            whole data set is never held in floats).
        patch: the side of the square patches, 2 or more, dividing H and W.

    Returns:
        ``(grey, colour)``: the two priors.
    """
    if patch < 2:
        raise ValueError(f"patch must be 2 or more (a one-pixel patch holds no detail), got {patch}")
    if images.shape[-1] % patch or images.shape[-2] % patch:
        raise ValueError(f"images of {tuple(images.shape[-2:])} pixels do not divide into {patch}x{patch} patches")
    rows, cols = torch.arange(patch), torch.arange(patch)
    sign = (-1.0) ** (rows[:, None] + cols[None, :]).double() / patch  # unit norm over the patch
    grey_sum = colour_sum = 0.0
    for chunk in images.split(1024):  # float64 a chunk at a time: a whole data set would double its memory
        x = chunk.double() / 127.5 - 1 if chunk.dtype == torch.uint8 else chunk.double()
        x = x.unflatten(-2, (-1, patch)).unflatten(-1, (-1, patch))  # (B, C, H/p, p, W/p, p)
        checker = torch.einsum("bchiwj,ij->bchw", x, sign)
        grey = checker.sum(dim=1) / math.sqrt(checker.shape[1])  # the component along the unit grey vector
        grey_sum += float(grey.square().sum())
        colour_sum += float((checker.square().sum(dim=1) - grey.square()).sum())
    checkers = images.shape[0] * (images.shape[-2] // patch) * (images.shape[-1] // patch)
    return grey_sum / checkers, colour_sum / checkers / (images.shape[1] - 1)
