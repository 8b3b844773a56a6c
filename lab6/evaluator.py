"""The lab's evaluator: a multi-label classifier and the official top-k accuracy.

The official evaluator is ``checkpoint.pth`` = ``{'model': state_dict}`` of a torchvision ResNet18 whose ``fc`` is
``Linear(512, 24) + Sigmoid``, fed (B, 3, 64, 64) images normalised to [-1, 1]. Proxies of other torchvision
architectures (``lab6 evaluator-train --arch``) score beside it (``lab6.scoring``); their files are
``lab6.evaluator_files``'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .evaluator_files import (
    OFFICIAL_ARCH,
    EvaluatorLoadError,
    read_evaluator_file,
    save_evaluator,
)
from .labels import LABELS, NUM_LABELS, SHAPES, encode_many

#: The side of the evaluator's input images, and so of every image lab6 returns.
EVAL_SIZE = 64


def classifier_architectures() -> list[str]:
    """Every torchvision classification architecture that ``build_classifier`` accepts."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def to_output_size(images: torch.Tensor, size: int = EVAL_SIZE) -> torch.Tensor:
    """Images in [-1, 1] at the lab's 64x64, the evaluator's input (a 32-px model's are upsampled bilinearly, as
    the course's evaluator saw its 32 -> 64 px training images): the one resize in lab6."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def build_resnet18() -> nn.Module:
    """The official evaluator's architecture: torchvision ResNet18 with ``fc = Linear(512, 24) + Sigmoid``."""
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    model.fc = nn.Sequential(nn.Linear(512, NUM_LABELS), nn.Sigmoid())
    return model


class SigmoidClassifier(nn.Module):
    """A torchvision classifier with 24 outputs followed by a sigmoid: probabilities, like the official model."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(images))


def build_classifier(arch: str = OFFICIAL_ARCH) -> nn.Module:
    """An untrained evaluator of torchvision architecture ``arch`` (24 sigmoid outputs)."""
    if arch == OFFICIAL_ARCH:
        return build_resnet18()
    names = classifier_architectures()
    if arch not in names:
        raise ValueError(f"unknown architecture {arch!r}: choose a torchvision classification model, e.g. "
                         "resnet18, regnet_y_800mf, efficientnet_b0, mobilenet_v3_large, convnext_tiny "
                         f"({len(names)} in all: torchvision.models.list_models(torchvision.models))")
    import torchvision

    return SigmoidClassifier(torchvision.models.get_model(arch, weights=None, num_classes=NUM_LABELS))


def topk_found(probabilities: torch.Tensor, multi_hot: torch.Tensor) -> torch.Tensor:
    """Per image and label: 1 where a true label is among the image's k highest outputs (k = its label count),
    the k chosen by ``topk`` as the official evaluator chooses them."""
    probabilities, multi_hot = probabilities.detach().float().cpu(), multi_hot.detach().float().cpu()
    if probabilities.shape != multi_hot.shape:
        raise ValueError(f"outputs {tuple(probabilities.shape)} and labels {tuple(multi_hot.shape)} differ in shape")
    top = torch.zeros_like(multi_hot)
    for row, (out, truth) in enumerate(zip(probabilities, multi_hot)):
        k = int(truth.sum().item())
        if k:
            top[row, out.topk(k).indices] = 1.0
    return top * multi_hot


def topk_hits(probabilities: torch.Tensor, multi_hot: torch.Tensor) -> torch.Tensor:
    """Per image: how many of its k true labels are among its k highest outputs (k = its label count)."""
    return topk_found(probabilities, multi_hot).sum(dim=1).long()


def found_by_shape(probabilities: torch.Tensor, multi_hot: torch.Tensor) -> dict[str, float]:
    """Per shape: the share of its true labels found (among their image's top k).

    Why per shape: an evaluator can be blind to how one shape looks. The ResNet18 proxy, trained on 32 -> 64 px
    images as the course's evaluator was, reads sharp cubes as cylinders: it finds about 60% of the cubes in real
    64-px images and nearly all once they are sent through 32 px (docs/evaluators.md#cube-blind-spot)."""
    found, multi_hot = topk_found(probabilities, multi_hot), multi_hot.detach().float().cpu()
    shares = {}
    for shape in SHAPES:
        columns = [i for i, label in enumerate(LABELS) if label.endswith(f" {shape}")]
        total = multi_hot[:, columns].sum()
        if total:
            shares[shape] = float(found[:, columns].sum() / total)
    return shares


def topk_accuracy(probabilities: torch.Tensor, multi_hot: torch.Tensor) -> float:
    """The official score: hits over all true labels of the batch (a micro average)."""
    total = int(multi_hot.sum().item())
    if total == 0:
        raise ValueError("no true labels in the batch: accuracy is undefined")
    return topk_hits(probabilities, multi_hot).sum().item() / total


@dataclass
class Score:
    accuracy: float
    hits: list[int]
    labels_per_image: list[int]
    probabilities: torch.Tensor



class Evaluator:
    """A loaded evaluator: probabilities for images in [-1, 1], penultimate features, and the official score."""

    def __init__(self, model: nn.Module, source: str = "in memory", arch: str = OFFICIAL_ARCH,
                 name: str | None = None):
        self.model = model.eval()
        self.source = source
        self.arch = arch
        self.name = name or arch  # the column name in tables and accuracy.json
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", name: str | None = None) -> "Evaluator":
        """Load ``checkpoint.pth`` (official format) or a ``.safetensors`` export, on CPU or GPU."""
        path = Path(path)
        state, arch = read_evaluator_file(path)
        try:
            model = build_classifier(arch)
        except ValueError as err:
            raise EvaluatorLoadError(f"{path} records architecture {arch!r}, which this torchvision lacks: "
                                     f"{err}") from None
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            missing = len(set(model.state_dict()) - set(state))
            raise EvaluatorLoadError(
                f"{path} does not hold {arch} + Linear(..., 24) weights ({missing} of {len(model.state_dict())} "
                f"expected tensors missing, first difference: {str(err).splitlines()[1].strip()[:160]}). "
                "An official checkpoint.pth is a ResNet18; other architectures are .safetensors files written by "
                "`lab6 evaluator-train --arch NAME`"
            ) from None
        # Safetensors are read on the CPU and moved: they refuse device names such as accelerate's "cpu:0".
        return cls(model.to(torch.device(device)), source=str(path), arch=arch, name=name or _default_name(path, arch))

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B, 24) probabilities; other sizes are resized to 64x64."""
        return torch.cat([self.model(chunk).float().cpu() for chunk in self._chunks(images, batch_size)])

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(B, D) penultimate features (the input of the last linear layer): the space of Frechet distances."""
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)][-1]
        captured: list[torch.Tensor] = []
        hook = last.register_forward_pre_hook(lambda module, args: captured.append(args[0].float().cpu()))
        try:
            for chunk in self._chunks(images, batch_size):
                self.model(chunk)
        finally:
            hook.remove()
        return torch.cat(captured)

    def _chunks(self, images: torch.Tensor, batch_size: int):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device, torch.float32)
            yield to_output_size(chunk)

    def score(self, images: torch.Tensor, conditions: list[list[str]]) -> Score:
        multi_hot = torch.from_numpy(encode_many(conditions))
        probabilities = self.probabilities(images)
        hits = topk_hits(probabilities, multi_hot)
        counts = multi_hot.sum(1).long()
        return Score(hits.sum().item() / counts.sum().item(), hits.tolist(), counts.tolist(), probabilities)

    def save(self, path: str | Path) -> None:
        save_evaluator(self.model, path, arch=self.arch)


def _default_name(path: Path, arch: str) -> str:
    return "official" if path.name == "checkpoint.pth" else arch
