"""Training a proxy evaluator on a data root's real images, and scoring a data root with an evaluator.

The official evaluator was trained on 32x32 images upsampled to 64x64. A proxy sees a mix: each training
image goes through that 32 -> 64 round trip with probability ``1 - native_fraction`` and is shown at its
native 64x64 otherwise, so that it scores both a 32-px model's upsampled images and a native 64-px model's
images as it scores real ones. A fixed fraction of the images (by seed) is held out, and the held-out top-k
accuracy is printed for both input pipelines at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .evaluator import (
    EVAL_SIZE,
    OFFICIAL_ARCH,
    Evaluator,
    Score,
    build_classifier,
    save_evaluator,
    to_output_size,
    topk_accuracy,
)
from .run_files import write_text_atomic


def upsample_like_official(images: torch.Tensor, train_size: int) -> torch.Tensor:
    """Down to ``train_size`` and back up to 64x64, as the official evaluator's training images were."""
    if images.shape[-1] != train_size:
        images = F.interpolate(images, size=(train_size, train_size), mode="bilinear", antialias=True,
                               align_corners=False)
    return to_output_size(images)


def split_holdout(n: int, holdout: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, training) image indices of a dataset of ``n`` images; the same seed gives the same split."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = max(1, int(n * holdout))
    return order[:n_held], order[n_held:]


def score_data_root(evaluator: Evaluator, data_root: str | Path, *, image_size: int = 32, limit: int | None = None,
                    seed: int = 0, progress: bool = True) -> tuple[Score, list[list[str]]]:
    """Scores a data root's own images against its ``train.json`` labels: how well an evaluator transfers.

    Args:
        evaluator: the evaluator to score with.
        data_root: a folder in the course layout.
        image_size: the images go through :func:`upsample_like_official` at this size (32: the official
            evaluator's pipeline).
        limit: score a random subset of this many images (drawn by ``seed``); ``None`` for all.
        seed: the seed of the subset.
        progress: show the decoding progress.

    Returns:
        ``(score, conditions)``: the score and the conditions it was scored on.
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


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to ``max_shift`` pixels each way, the border repeated: a scene moved a little
    holds the same objects, and a classifier that cannot memorise where they sit must learn what they are."""
    if max_shift == 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(offsets)])


def mixed_inputs(images: torch.Tensor, train_size: int, native_fraction: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Native 64x64 images, each sent through the 32 -> 64 round trip with probability ``1 - native_fraction``."""
    rounded = upsample_like_official(images, train_size)
    native = torch.rand(len(images), generator=generator) < native_fraction
    return torch.where(native[:, None, None, None], images, rounded)


def train_proxy(data_root: str | Path, out: str | Path, *, arch: str = OFFICIAL_ARCH, epochs: int = 8,
                batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4, max_shift: int = 0,
                train_size: int = 32, native_fraction: float = 0.5, holdout: float = 0.1, seed: int = 0,
                device: str | None = None, progress: bool = True, log=print) -> dict:
    """Trains a proxy evaluator on a data root's real images and saves it.

    The defaults are the shipped ResNet18 proxy's recipe.

    Args:
        data_root: a folder in the course layout.
        out: ``.pth`` (the official format, ResNet18 only) or ``.safetensors`` (any architecture, recorded in
            the file).
        arch: a torchvision classification architecture.
        epochs: passes over the training images.
        batch_size: images per step.
        lr: the one-cycle schedule's peak learning rate.
        weight_decay: AdamW's; with ``max_shift``, regularises architectures that fit their training images but
            not held-out ones.
        max_shift: random translation, in pixels (0-16).
        train_size: the size of the 32 -> 64 round trip (:func:`upsample_like_official`).
        native_fraction: the probability that a training image is shown at its native 64x64 instead.
        holdout: the fraction of the images held out (by ``seed``) for the accuracy at the end.
        seed: the seed of the split, the order and the augmentations.
        device: where to train; ``None`` for a GPU where there is one.
        progress: show a progress bar.
        log: where the closing line goes.

    Returns:
        The report, also written beside ``out`` as ``.json``: the held-out top-k accuracy, 32 -> 64 and native,
        and the recipe.
    """
    from tqdm.auto import tqdm

    from .data import ICLEVRDataset

    out = Path(out)
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    if not 0 <= native_fraction <= 1:
        raise ValueError(f"native_fraction must be in [0, 1], got {native_fraction}")
    if not 0 <= max_shift <= 16:
        raise ValueError(f"max_shift must be 0-16 pixels, got {max_shift}")
    if out.suffix == ".pth" and arch != OFFICIAL_ARCH:
        raise ValueError(f"--out {out}: the official .pth format holds a ResNet18; save a {arch} as "
                         f"{out.with_suffix('.safetensors')}")
    model = build_classifier(arch)  # an unknown architecture fails here, before the data is decoded
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = ICLEVRDataset(data_root, image_size=EVAL_SIZE, augment=True, progress=progress)
    held, train = split_holdout(len(dataset), holdout, seed)
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(train) // batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
    bar = tqdm(total=total, desc=f"training the {arch} evaluator", disable=not progress, unit="step")
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = train[torch.randperm(len(train), generator=g)]
        for b in range(steps_per_epoch):
            images, labels = dataset.batch(perm[b * batch_size:(b + 1) * batch_size], generator=g)
            images = random_shift(mixed_inputs(images, train_size, native_fraction, g), max_shift, g).to(device)
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
    evaluator = Evaluator(model.eval(), source=str(out), arch=arch)
    accuracy_rounded = topk_accuracy(evaluator.probabilities(upsample_like_official(images, train_size)), labels)
    accuracy_native = topk_accuracy(evaluator.probabilities(images), labels)
    save_evaluator(model, out, arch=arch)
    report = {"arch": arch, "heldout_accuracy": accuracy_rounded, "heldout_accuracy_native": accuracy_native,
              "heldout_images": len(held), "train_images": len(train), "epochs": epochs, "train_size": train_size,
              "native_fraction": native_fraction, "weight_decay": weight_decay,
              "max_shift": max_shift, "seconds": round(time.time() - start, 1),
              "data_root": Path(data_root).name, "seed": seed}
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=2))
    log(f"{arch} evaluator: held-out top-k accuracy {accuracy_rounded:.4f} (32 -> 64 px) and "
        f"{accuracy_native:.4f} (native 64 px) on {len(held)} real images -> {out}")
    return report
