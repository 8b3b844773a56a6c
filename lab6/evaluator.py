"""The lab's evaluators: multi-label classifiers, the official top-k accuracy, and how to load and save them.

The official evaluator is ``checkpoint.pth`` = ``{'model': state_dict}`` of a torchvision ResNet18 whose
``fc`` is ``Linear(512, 24) + Sigmoid``, fed (B, 3, 64, 64) images normalised to [-1, 1]. Users without that
file train a proxy of the same architecture (``lab6 evaluator-train``, :mod:`lab6.proxy`).

One classifier family can be blind to a defect that another sees (a ResNet18 scored colour-cast images 11
points higher than a classifier of another architecture that was as accurate on real images), so lab6
scores with two evaluators of different architectures by default: the ResNet18 (the official one when the
data root has ``checkpoint.pth``, else the shipped proxy) and the shipped proxies of other architectures. Any
torchvision classification architecture can be trained (``--arch``); those other than ResNet18 are saved as
safetensors with their architecture recorded in the file's metadata.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .labels import LABELS, NUM_LABELS, SHAPES, encode_many

EVAL_SIZE = 64
OFFICIAL_ARCH = "resnet18"
#: The proxy evaluators shipped with the package: ``proxy_<architecture>.safetensors`` (fp16, to stay small).
SHIPPED_DIR = Path(__file__).parent / "assets" / "evaluator"


def shipped_evaluator_path(arch: str) -> Path:
    """Where the package keeps (or would keep) its proxy evaluator of architecture ``arch``."""
    return SHIPPED_DIR / f"proxy_{arch}.safetensors"


def shipped_evaluator_paths() -> list[Path]:
    """The shipped proxies: the ResNet18 first, then those of other architectures (by name)."""
    others = sorted(p for p in SHIPPED_DIR.glob("proxy_*.safetensors") if p != shipped_evaluator_path(OFFICIAL_ARCH))
    return [p for p in [shipped_evaluator_path(OFFICIAL_ARCH), *others] if p.is_file()]


class EvaluatorLoadError(RuntimeError):
    """An evaluator checkpoint that cannot (or must not) be loaded."""


def classifier_architectures() -> list[str]:
    """Every torchvision classification architecture that ``build_classifier`` accepts."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


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


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            # A file without metadata is the first shipped proxy, which predates --arch: a ResNet18.
            arch = (f.metadata() or {}).get("arch", OFFICIAL_ARCH)
            return {k: f.get_tensor(k).float() for k in f.keys()}, arch
    except (SafetensorError, OSError) as err:
        raise EvaluatorLoadError(f"could not read {path} as safetensors (truncated or not an evaluator?): "
                                 f"{err}") from None


def _read_torch_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    import zipfile

    with path.open("rb") as f:
        is_pickle = f.read(1) == b"\x80"  # the protocol opcode that starts a (legacy) torch.save pickle
    if not (zipfile.is_zipfile(path) or is_pickle):
        raise EvaluatorLoadError(f"could not read {path} as a torch checkpoint: it is neither the zip archive that "
                                 "torch.save writes nor a pickle (a different or damaged file?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]
        raise EvaluatorLoadError(
            f"refused to load {path}: it holds pickled objects other than tensors, which could run code on load "
            f"({detail}). An evaluator checkpoint is {{'model': state_dict}} of plain tensors"
        ) from None
    except Exception as err:  # torch.load fails in many ways on a file that is not a checkpoint
        details = str(err).splitlines()[0] if str(err) else "no details"
        raise EvaluatorLoadError(f"could not read {path} as a torch checkpoint (truncated or not one?): "
                                 f"{type(err).__name__}: {details}") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluatorLoadError(f"{path} is not in the official format {{'model': state_dict}}")
    return state


def read_evaluator_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict on the CPU, architecture) of an evaluator file: ``.pth`` (official, ResNet18) or
    ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise EvaluatorLoadError(f"evaluator checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch_checkpoint(path), OFFICIAL_ARCH


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
            if chunk.shape[-2:] != (EVAL_SIZE, EVAL_SIZE):
                chunk = F.interpolate(chunk, size=(EVAL_SIZE, EVAL_SIZE), mode="bilinear", align_corners=False)
            yield chunk

    def score(self, images: torch.Tensor, conditions: list[list[str]]) -> Score:
        multi_hot = torch.from_numpy(encode_many(conditions))
        probabilities = self.probabilities(images)
        hits = topk_hits(probabilities, multi_hot)
        counts = multi_hot.sum(1).long()
        return Score(hits.sum().item() / counts.sum().item(), hits.tolist(), counts.tolist(), probabilities)

    def save(self, path: str | Path) -> None:
        save_evaluator(self.model, path, arch=self.arch)


def save_evaluator(model: nn.Module, path: str | Path, arch: str = OFFICIAL_ARCH) -> None:
    """Save in the official format (``.pth``: ``{'model': state_dict}``, ResNet18 only) or as fp16
    ``.safetensors`` with the architecture in the file's metadata. Written to a temporary file, then renamed."""
    from .run_files import atomic_path

    path = Path(path)
    if path.suffix not in (".pth", ".safetensors"):
        raise ValueError(f"an evaluator file ends in .pth (official format) or .safetensors, got {path.name!r}")
    if path.suffix == ".pth" and arch != OFFICIAL_ARCH:
        raise ValueError(f"the official .pth format holds a ResNet18; save a {arch} as .safetensors "
                         f"(e.g. {path.with_suffix('.safetensors')})")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()},
                      str(tmp), metadata={"arch": arch, "format": "lab6-evaluator"})
        else:
            torch.save({"model": state}, tmp)


def default_evaluator_paths(data_root: str | Path | None = None) -> list[Path]:
    """The evaluators lab6 scores with: the data root's ``checkpoint.pth`` when present (it replaces the shipped
    ResNet18 proxy, never a proxy of another architecture), and every shipped proxy."""
    from .data import evaluator_checkpoint

    shipped = shipped_evaluator_paths()
    official = evaluator_checkpoint(data_root)
    if official is None:
        return shipped
    return [official, *(p for p in shipped if p != shipped_evaluator_path(OFFICIAL_ARCH))]


def _default_name(path: Path, arch: str) -> str:
    return "official" if path.name == "checkpoint.pth" else arch


def load_evaluators(paths: list[str | Path] | None = None, data_root: str | Path | None = None,
                    device: str | torch.device = "cpu", *, required: bool = True, log=print) -> list[Evaluator]:
    """Every evaluator to score with: ``paths`` when given, else :func:`default_evaluator_paths`.

    With ``required=False`` a failure is logged and scoring goes on without accuracy (an empty list), which is
    what training, the notebooks and the picker want; the command line's ``evaluate`` requires one.
    """
    try:
        chosen = [Path(p) for p in paths] if paths else default_evaluator_paths(data_root)
        if not chosen:
            raise EvaluatorLoadError(
                "no evaluator: the data root has no checkpoint.pth and no proxy evaluator is shipped in this copy. "
                "Train one with `lab6 evaluator-train --data-root D --out evaluator.pth` and pass --evaluator.")
        evaluators = [Evaluator.load(path, device) for path in chosen]
    except EvaluatorLoadError as err:
        if required:
            raise
        log(f"no accuracy: {err}")
        return []
    names = [e.name for e in evaluators]
    for i, evaluator in enumerate(evaluators):  # two files of one architecture still get distinct columns
        if names.count(evaluator.name) > 1:
            evaluator.name = f"{evaluator.name}#{i + 1}"
    return evaluators


def score_all(evaluators: list[Evaluator], images: torch.Tensor, conditions: list[list[str]]) -> dict[str, Score]:
    """Each evaluator's score of the same images, by evaluator name."""
    return {e.name: e.score(images, conditions) for e in evaluators}


def per_image_hits(scores: dict[str, Score], conditions: list[list[str]]) -> list[dict]:
    """One row per scored image: its condition, its number of labels and each evaluator's hits (reports' JSON)."""
    return [{"condition": c, "labels": len(c), "hits": {name: score.hits[i] for name, score in scores.items()}}
            for i, c in enumerate(conditions)]
