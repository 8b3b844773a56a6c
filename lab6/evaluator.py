"""The lab's evaluator: a ResNet18 multi-label classifier, its official top-k accuracy, and a proxy trainer.

The official evaluator is ``checkpoint.pth`` = ``{'model': state_dict}`` of a torchvision ResNet18 whose
``fc`` is ``Linear(512, 24) + Sigmoid``, fed (B, 3, 64, 64) images normalised to [-1, 1]. It was trained
on 32x32 images upsampled to 64x64. Users without that file train a proxy of the same architecture with
:func:`train_proxy` (``lab6 evaluator-train``) and score with it the same way.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .labels import NUM_LABELS, encode_many

EVAL_SIZE = 64
#: The proxy evaluator shipped with the package (fp16 safetensors, to stay small).
SHIPPED_EVALUATOR = Path(__file__).parent / "assets" / "evaluator" / "proxy_resnet18.safetensors"


class EvaluatorLoadError(RuntimeError):
    """An evaluator checkpoint that cannot (or must not) be loaded."""


def build_resnet18() -> nn.Module:
    """The evaluator's architecture: torchvision ResNet18 with ``fc = Linear(512, 24) + Sigmoid``."""
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    model.fc = nn.Sequential(nn.Linear(512, NUM_LABELS), nn.Sigmoid())
    return model


def topk_hits(probabilities: torch.Tensor, multi_hot: torch.Tensor) -> torch.Tensor:
    """Per image: how many of its k true labels are among its k highest outputs (k = its label count)."""
    probabilities, multi_hot = probabilities.detach().float().cpu(), multi_hot.detach().float().cpu()
    if probabilities.shape != multi_hot.shape:
        raise ValueError(f"outputs {tuple(probabilities.shape)} and labels {tuple(multi_hot.shape)} differ in shape")
    hits = []
    for out, truth in zip(probabilities, multi_hot):
        k = int(truth.sum().item())
        top = set(out.topk(k).indices.tolist()) if k else set()
        hits.append(len(top & set(torch.nonzero(truth).flatten().tolist())))
    return torch.tensor(hits, dtype=torch.long)


def topk_accuracy(probabilities: torch.Tensor, multi_hot: torch.Tensor) -> float:
    """The official score: hits over all true labels of the batch (a micro average)."""
    total = int(multi_hot.sum().item())
    if total == 0:
        raise ValueError("no true labels in the batch: accuracy is undefined")
    return topk_hits(probabilities, multi_hot).sum().item() / total


def _read_state_dict(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise EvaluatorLoadError(f"evaluator checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        # Read on the CPU and move: safetensors refuses device names such as "cpu:0" that accelerate hands out.
        return {k: v.float().to(device) for k, v in load_file(str(path)).items()}
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise EvaluatorLoadError(
            f"refused to load {path}: it holds pickled objects other than tensors, which could run code on load. "
            f"An evaluator checkpoint must be {{'model': state_dict}} of plain tensors. ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise EvaluatorLoadError(f"could not read {path} as a torch checkpoint: {err}") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise EvaluatorLoadError(f"{path} is not in the official format {{'model': state_dict}}")
    return state


@dataclass
class Score:
    accuracy: float
    hits: list[int]
    labels_per_image: list[int]
    probabilities: torch.Tensor

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "hits": self.hits, "labels_per_image": self.labels_per_image}

    def per_image(self, conditions: list[list[str]]) -> list[dict]:
        """One row per scored image: its condition, hits and label count (the JSON of reports)."""
        return [{"condition": c, "hits": h, "labels": n} for c, h, n in zip(conditions, self.hits, self.labels_per_image)]


class Evaluator:
    """A loaded evaluator: probabilities for images in [-1, 1] and the official score."""

    def __init__(self, model: nn.Module, source: str = "in memory"):
        self.model = model.eval()
        self.source = source
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Evaluator":
        """Load ``checkpoint.pth`` (official format) or a ``.safetensors`` export, on CPU or GPU."""
        device = torch.device(device)
        path = Path(path)
        model = build_resnet18()
        try:
            model.load_state_dict(_read_state_dict(path, device))
        except RuntimeError as err:
            raise EvaluatorLoadError(f"{path} does not hold ResNet18 + Linear(512,24) weights: {err}") from None
        return cls(model.to(device), source=str(path))

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B, 24) probabilities; other sizes are resized to 64x64."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        outs = []
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device, torch.float32)
            if chunk.shape[-2:] != (EVAL_SIZE, EVAL_SIZE):
                chunk = F.interpolate(chunk, size=(EVAL_SIZE, EVAL_SIZE), mode="bilinear", align_corners=False)
            outs.append(self.model(chunk).float().cpu())
        return torch.cat(outs)

    def score(self, images: torch.Tensor, conditions: list[list[str]]) -> Score:
        multi_hot = torch.from_numpy(encode_many(conditions))
        probabilities = self.probabilities(images)
        hits = topk_hits(probabilities, multi_hot)
        counts = multi_hot.sum(1).long()
        return Score(hits.sum().item() / counts.sum().item(), hits.tolist(), counts.tolist(), probabilities)

    def save(self, path: str | Path) -> None:
        save_evaluator(self.model, path)


def save_evaluator(model: nn.Module, path: str | Path) -> None:
    """Save in the official format (``.pth``: ``{'model': state_dict}``) or as fp16 ``.safetensors``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(tmp))
    else:
        torch.save({"model": state}, tmp)
    os.replace(tmp, path)


def default_evaluator_path(data_root: str | Path | None = None) -> Path:
    """The data root's ``checkpoint.pth`` when present, else the shipped proxy evaluator."""
    from .data import evaluator_checkpoint

    official = evaluator_checkpoint(data_root)
    if official is not None:
        return official
    if SHIPPED_EVALUATOR.is_file():
        return SHIPPED_EVALUATOR
    raise EvaluatorLoadError(
        "no evaluator: the data root has no checkpoint.pth and no proxy evaluator is shipped in this copy. "
        "Train one with `lab6 evaluator-train --data-root D --out evaluator.pth` and pass --evaluator."
    )


def load_evaluator(path: str | Path | None = None, data_root: str | Path | None = None,
                   device: str | torch.device = "cpu") -> Evaluator:
    return Evaluator.load(path or default_evaluator_path(data_root), device)


def upsample_like_official(images: torch.Tensor, train_size: int) -> torch.Tensor:
    """Down to ``train_size`` and back up to 64x64, as the official evaluator's training images were."""
    if images.shape[-1] != train_size:
        images = F.interpolate(images, size=(train_size, train_size), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(images, size=(EVAL_SIZE, EVAL_SIZE), mode="bilinear", align_corners=False)


def score_data_root(evaluator: Evaluator, data_root: str | Path, *, image_size: int = 32, limit: int | None = None,
                    seed: int = 0, progress: bool = True) -> tuple[Score, list[list[str]]]:
    """Score a data root's own images against its ``train.json`` labels: how well an evaluator transfers.

    Images go through ``upsample_like_official`` at ``image_size`` (32: the official evaluator's pipeline).
    ``limit`` scores a random subset (by ``seed``). Returns the score and the conditions it was scored on.
    """
    from .data import ICLEVRDataset
    from .labels import decode

    dataset = ICLEVRDataset(data_root, image_size=image_size, progress=progress)
    indices = torch.arange(len(dataset))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]
    images, labels = dataset.batch(indices)
    conditions = [decode(row) for row in labels]
    return evaluator.score(upsample_like_official(images, image_size), conditions), conditions


def split_holdout(n: int, holdout: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, training) image indices of a dataset of ``n`` images; the same seed gives the same split."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = max(1, int(n * holdout))
    return order[:n_held], order[n_held:]


def train_proxy(data_root: str | Path, out: str | Path, *, epochs: int = 8, batch_size: int = 64, lr: float = 2e-3,
                train_size: int = 32, holdout: float = 0.1, seed: int = 0, device: str | None = None,
                progress: bool = True, log=print) -> dict:
    """Train a proxy evaluator (same architecture as the official one) and save it in the official format.

    Holds out a fixed fraction of the images (by seed), and returns and saves its top-k accuracy on them.
    """
    import json

    from tqdm.auto import tqdm

    from .data import ICLEVRDataset

    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = ICLEVRDataset(data_root, image_size=train_size, augment=True, progress=progress)
    held, train = split_holdout(len(dataset), holdout, seed)
    n_held = len(held)
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed)
    model = build_resnet18().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(train) // batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
    bar = tqdm(total=total, desc="training the proxy evaluator", disable=not progress, unit="step")
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = train[torch.randperm(len(train), generator=g)]
        for b in range(steps_per_epoch):
            images, labels = dataset.batch(perm[b * batch_size:(b + 1) * batch_size], generator=g)
            images = upsample_like_official(images, train_size).to(device)
            loss = F.binary_cross_entropy(model(images), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    bar.close()
    dataset.augment = False
    images, labels = dataset.batch(held)
    evaluator = Evaluator(model.eval(), source=str(out))
    probabilities = evaluator.probabilities(upsample_like_official(images, train_size))
    accuracy = topk_accuracy(probabilities, labels)
    save_evaluator(model, out)
    report = {"heldout_accuracy": accuracy, "heldout_images": n_held, "train_images": len(train), "epochs": epochs,
              "train_size": train_size, "seconds": round(time.time() - start, 1), "data_root": str(data_root),
              "seed": seed}
    Path(out).with_suffix(".json").write_text(json.dumps(report, indent=2))
    log(f"proxy evaluator: top-k accuracy {accuracy:.4f} on {n_held} held-out images -> {out}")
    return report


