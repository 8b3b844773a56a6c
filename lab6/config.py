"""Training recipes: one ``TrainConfig`` object holds every knob, each with a comment; the named presets
(``lab6.presets``) fill it in.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .diffusion import DEFAULT_GUIDANCE
from .samplers import DEFAULT_SAMPLER
from .trackers import LOG_WITH


@dataclass
class TrainConfig:
    # model (ConditionalUNet config)
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    attention_levels: tuple[bool, ...] = (False, False, True)
    layers_per_block: int = 1  # 1, not 2: more accuracy per CPU-minute (docs/conditioning.md#width-and-depth)
    attention_head_dim: int = 32
    norm_num_groups: int = 32
    dropout: float = 0.0
    conditioning: str = "add"
    patch_size: int = 1  # 2: a 64-px model folds 2x2 pixels into channels and costs what a 32-px one does
    # >0: a full-resolution head after the unfold, against the 2x2 grid a patch model leaves
    # (docs/64px.md#full-resolution-head)
    full_res_channels: int = 0
    # >0 (with the head): the head starts as the best linear denoiser of the detail inside each patch, for data
    # whose unpredictable detail (grain) has this energy per pixel against unit noise; measure yours with
    # `lab6 data priors` (docs/64px.md#detail-priors)
    detail_prior: float = 0.0
    # The same for the detail's colour part (the detail minus its grey; detail_prior is then the grey part's):
    # None: one gain for every colour. A renderer's grain is mostly brightness, so one gain for both leaves
    # colour grain in the samples (docs/64px.md#colour-gain)
    detail_chroma_prior: float | None = None
    # diffusion
    num_train_timesteps: int = 1000
    beta_schedule: str = "cosine"
    snr_shift: float = 1.0  # SNR times this at every t; 0.25 for 64 px keeps coarse structure as noisy as at 32 px
    prediction: str = "v"  # v, not epsilon: with the cosine schedule eps-prediction's x_0 blows up at low SNR
    min_snr_gamma: float = 5.0  # 0 turns the weighting off
    cond_dropout: float = 0.1  # probability of the null condition in training (classifier-free guidance)
    offset_noise: float = 0.0  # std of a per-channel constant added to the training noise (a colour-cast fix)
    max_timestep: int = 0  # >0: train on t < this only (a refiner for the last noise levels); 0: every t
    # optimisation
    batch_size: int = 32  # global: split across processes
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 500
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # a cap: the EMA warm-up decay 1 - (1 + step)^-0.75 reaches 0.999 only at 10,000 steps
    augment: bool = True  # horizontal flips
    mixed_precision: str = "auto"  # auto: bf16 where the hardware has it (a GPU, a CPU with AVX512-BF16 or AMX)
    # budget: the first one reached ends the run
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    # bookkeeping
    log_every: int = 25  # steps between metrics.csv rows
    checkpoint_minutes: float = 10.0
    checkpoint_steps: int | None = None
    keep_checkpoints: int = 3
    eval_every: int | None = 2000  # steps between sample grids + evaluator accuracy (None: only at the end)
    eval_sampler: str = DEFAULT_SAMPLER
    eval_steps: int = 20
    eval_splits: tuple[str, ...] = ("test", "new_test", "heldout")  # heldout: 128 fixed random conditions
    guidance_scale: float = DEFAULT_GUIDANCE  # the classifier-free guidance w the model is evaluated and shipped with
    # The training curves besides metrics.csv, through accelerate's trackers: tensorboard (RUN/logs/), wandb,
    # trackio, all (every one installed) or none; auto: TensorBoard where it is installed, else none
    log_with: str = "auto"
    seed: int = 0
    # A saved model to start from: the same architecture, or patch_size 1 at 1/patch_size the size (it grows:
    # model.grow_to_patches), or the same without the full-resolution head (the head starts at zero).
    init_from: str | None = None

    def __post_init__(self):
        """Every value is checked when a recipe is made (a preset, ``--set``, a run's config.json), so a bad one
        fails with its name before a run starts, not deep in the loop (a batch of 0 divides by zero) or, worse,
        silently (an EMA decay of 2 diverges, a dropout of 1.5 is no probability)."""
        for name, allowed, rule in _RANGES:
            value = getattr(self, name)
            if not allowed(value):
                raise ValueError(f"{name} must be {rule}, got {value!r}")
        if any(c < 1 for c in self.block_out_channels) or not self.block_out_channels:
            raise ValueError(f"block_out_channels must be one or more positive widths, "
                             f"got {self.block_out_channels!r}")
        if not 0 <= self.max_timestep <= self.num_train_timesteps:
            raise ValueError(f"max_timestep must be 0 (every t) or 1..{self.num_train_timesteps}, "
                             f"got {self.max_timestep}")
        if self.detail_prior and not (self.full_res_channels and self.patch_size > 1):
            raise ValueError(f"detail_prior must be in [0, 1) and needs a full-resolution head over patches "
                             f"(full_res_channels > 0, patch_size > 1, as in --preset refiner64), got "
                             f"detail_prior={self.detail_prior} with full_res_channels={self.full_res_channels}, "
                             f"patch_size={self.patch_size}")
        if self.detail_chroma_prior is not None and not (self.detail_prior and 0 <= self.detail_chroma_prior < 1):
            raise ValueError(f"detail_chroma_prior must be null (one gain for every colour) or in [0, 1) with a "
                             f"detail_prior > 0, got detail_chroma_prior={self.detail_chroma_prior} with "
                             f"detail_prior={self.detail_prior}")

    def model_config(self) -> dict:
        """The network's keyword arguments: a ``ConditionalUNet``'s, plus the head's with ``full_res_channels``."""
        config = dict(sample_size=self.image_size, block_out_channels=tuple(self.block_out_channels),
                      attention_levels=tuple(self.attention_levels), layers_per_block=self.layers_per_block,
                      attention_head_dim=self.attention_head_dim, norm_num_groups=self.norm_num_groups,
                      dropout=self.dropout, conditioning=self.conditioning, patch_size=self.patch_size)
        if self.full_res_channels:
            config.update(full_res_channels=self.full_res_channels, detail_skip=self.detail_prior > 0,
                          detail_chroma=self.detail_chroma_prior is not None,
                          num_train_timesteps=self.num_train_timesteps)
        return config

    def build_model(self):
        """A fresh network of this recipe: a ``model.ConditionalUNet``, or with ``full_res_channels`` a
        ``refiner.RefinerUNet`` whose head starts from the recipe's detail priors."""
        from .model import ConditionalUNet
        from .refiner import RefinerUNet

        return RefinerUNet.for_recipe(self) if self.full_res_channels else ConditionalUNet(**self.model_config())

    def resolved_mixed_precision(self) -> str:
        """``mixed_precision``, with ``auto`` resolved for this machine (accelerate's names)."""
        import torch

        if self.mixed_precision != "auto":
            return self.mixed_precision
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        # A CPU with bf16 instructions steps 1.55x faster under bf16 autocast (docs/throughput.md); one without
        # them would emulate bf16 in software.
        return "bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "no"

    def noise_scheduler(self):
        """The forward (noising) process of this recipe (``diffusion.make_noise_scheduler``)."""
        from .diffusion import make_noise_scheduler

        return make_noise_scheduler(self.num_train_timesteps, self.beta_schedule, self.prediction, self.snr_shift)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` (field names and values), checked as every recipe is."""
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; fields are {fields}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse_override(cls, item: str) -> tuple[str, object]:
        """``"FIELD=VALUE"`` (``lab6 train --set``) -> (field, value), read as JSON where it parses (numbers,
        true/false, null, lists) and as a plain word otherwise (``prediction=v``). Checked against the field's
        declared type here, so that a typo fails with the field's name before a run starts, not in the loop."""
        key, sep, raw = item.partition("=")
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        if not sep or key not in types:
            raise ValueError(f"--set {item}: write FIELD=VALUE with one of the fields {', '.join(types)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        declared = types[key]  # the annotation's text: "int", "float | None", "tuple[int, ...]", "bool", "str"
        optional = "None" in declared
        if value is None and not optional:
            raise ValueError(f"--set {item}: {key} cannot be null ({declared})")
        if declared == "bool" and not isinstance(value, bool):
            raise ValueError(f"--set {item}: {key} takes true or false, got {raw!r}")
        numeric = declared.startswith(("int", "float"))
        if numeric and value is not None and (isinstance(value, (str, bool, list)) or
                                              (declared.startswith("int") and isinstance(value, float))):
            kind = "a whole number" if declared.startswith("int") else "a number"
            spare = " (or null for none, as in JSON)" if optional else ""
            raise ValueError(f"--set {item}: {key} takes {kind}{spare}, got {raw!r}")
        if declared.startswith("str") and value is not None:
            value = raw  # a folder named 123 stays the word "123"
        if declared.startswith("tuple"):
            if not isinstance(value, list):
                raise ValueError(f"--set {item}: {key} takes a JSON list such as [32, 64, 128], got {raw!r}")
            value = tuple(value)
        return key, value

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        values = json.loads(Path(path).read_text())
        if "guidance" in values:  # a run folder written before the field took diffusers' name
            values["guidance_scale"] = values.pop("guidance")
        for key in ("block_out_channels", "attention_levels", "eval_splits"):
            if key in values:  # eval_splits can be absent: older runs' config.json lacks it
                values[key] = tuple(values[key])
        return cls(**values)


def _at_least(low, optional=False):
    return lambda value: (optional and value is None) or (value is not None and value >= low)


def _above(low, optional=False):
    return lambda value: (optional and value is None) or (value is not None and value > low)


def _fraction(value) -> bool:  # a probability or a decay: 1 would switch the thing off entirely
    return 0 <= value < 1


#: (field, its test, what it allows): the ranges ``TrainConfig`` checks on every recipe.
_RANGES = (
    ("image_size", _at_least(8), "an integer >= 8"), ("layers_per_block", _at_least(1), "an integer >= 1"),
    ("attention_head_dim", _at_least(1), "an integer >= 1"), ("norm_num_groups", _at_least(1), "an integer >= 1"),
    ("dropout", _fraction, "in [0, 1)"), ("patch_size", _at_least(1), "an integer >= 1"),
    ("full_res_channels", _at_least(0), "an integer >= 0 (0: no full-resolution head)"),
    ("detail_prior", _fraction, "in [0, 1) (0: no detail prior)"),
    ("num_train_timesteps", _at_least(2), "an integer >= 2"), ("snr_shift", _above(0), "> 0 (1: unshifted)"),
    ("min_snr_gamma", _at_least(0), ">= 0 (0: no min-SNR weighting)"),
    ("cond_dropout", _fraction, "in [0, 1) (0: no null condition, so no classifier-free guidance)"),
    ("offset_noise", _at_least(0), ">= 0"), ("batch_size", _at_least(1), "an integer >= 1"),
    ("lr", _above(0), "> 0"), ("weight_decay", _at_least(0), ">= 0"),
    ("warmup_steps", _at_least(0), "an integer >= 0"),
    ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1] (1: a constant learning rate)"),
    ("grad_clip", _at_least(0), ">= 0 (0: no clipping)"), ("ema_decay", _fraction, "in [0, 1)"),
    ("steps", _at_least(1, optional=True), "null or an integer >= 1"),
    ("epochs", _above(0, optional=True), "null or > 0"), ("minutes", _above(0, optional=True), "null or > 0"),
    ("log_every", _at_least(1), "an integer >= 1"), ("checkpoint_minutes", _above(0), "> 0"),
    ("checkpoint_steps", _at_least(1, optional=True), "null or an integer >= 1"),
    ("keep_checkpoints", _at_least(1), "an integer >= 1"),
    ("eval_every", _at_least(1, optional=True), "null (only at the end) or an integer >= 1"),
    ("eval_steps", _at_least(1), "an integer >= 1"),
    ("guidance_scale", _at_least(0), ">= 0 (0: unconditional, 1: conditional, > 1: guided)"),
    ("log_with", LOG_WITH.__contains__, f"one of {', '.join(LOG_WITH)}"),
)


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` as progress goes 0 -> 1.

    Progress, not steps: a ``--minutes`` budget does not know its number of steps in advance, which
    ``diffusers.optimization.get_cosine_schedule_with_warmup`` needs (and it decays to 0, not to a floor)."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)
