"""The 64-px stage: a refiner that redraws the end of another model's sampling path at full resolution.

``model``: its network (``RefinerUNet``: a patch UNet plus a full-resolution head) and the detail priors its head
starts from; ``pipeline``: ``RefinedPipeline`` (the base pipeline plus the redraw), the Karras-spaced steps it
takes, and ``with_refiner`` / ``refiner_of`` to pair and unpair models.
"""

from .model import RefinerUNet, detail_gain, detail_priors, grow_to_patches, patch_detail
from .pipeline import REFINER_SPACINGS, RefinedPipeline, karras_timesteps, refiner_of, set_tail_timesteps, with_refiner

__all__ = ["REFINER_SPACINGS", "RefinedPipeline", "RefinerUNet", "detail_gain", "detail_priors", "grow_to_patches",
           "karras_timesteps", "patch_detail", "refiner_of", "set_tail_timesteps", "with_refiner"]
