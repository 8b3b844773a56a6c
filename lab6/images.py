"""Images on disk: generated images as ``<i>.png`` files and grids, and back; PNG bytes for the widgets.

Tensors are (B, 3, H, W) in [-1, 1], the range the model and the evaluator use. Files are written whole
or not at all (``run_files.atomic_path``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .run_files import atomic_path

#: Beside the PNGs of a folder of generated images: the label lists they were drawn for, in their order.
CONDITIONS_FILE = "conditions.json"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 (B, H, W, 3)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, title: str | None = None) -> Path:
    """The images ``nrow`` per row with a 2-pixel gap, as one PNG; ``title``: a line of text above them (for
    grids that must not pass for others, such as those drawn for the built-in synthetic conditions)."""
    from torchvision.utils import make_grid

    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=2)
    picture = Image.fromarray(grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    if title:
        from PIL import ImageDraw

        banner = Image.new("RGB", (picture.width, picture.height + 16), (255, 255, 255))
        banner.paste(picture, (0, 16))
        ImageDraw.Draw(banner).text((4, 2), title, fill=(170, 0, 0))
        picture = banner
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="png")
    return path


def save_png(pixels: np.ndarray, path: str | Path) -> Path:
    """One uint8 (H, W, 3) image as a PNG, whole or not at all: a job killed mid-write leaves no half image.
    The bytes are those :func:`save_images` writes for the same pixels."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="png")
    return Path(path)


def check_output_folder(out_dir: str | Path) -> Path:
    """Fail early, before minutes of sampling, when ``out_dir`` cannot become a folder of images."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"cannot write images into {out_dir}: it is a file, not a folder")
    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADirectoryError(f"cannot write images into {out_dir}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK):
        raise PermissionError(f"cannot write images into {out_dir}: {existing} is not writable")
    return out_dir


def save_images(images: torch.Tensor, out_dir: str | Path, *, conditions: list[list[str]] | None = None,
                grid_name: str | None = "grid.png", nrow: int = 8) -> Path:
    """Writes ``<out_dir>/<i>.png`` for each image, in order, and a grid of them.

    The folder is written whole or not at all (``run_files.atomic_path``): the new files go into a temporary
    folder, the files of an existing ``out_dir`` that they do not replace are linked in beside them, and the two
    folders change places in one step, so no reader, and no process killed mid-save, sees old and new images mixed.

    Args:
        images: (B, 3, H, W) in [-1, 1].
        out_dir: the folder of images.
        conditions: the label lists the images were drawn for, written as ``conditions.json`` (``lab6 evaluate``
            warns when the images are scored against others).
        grid_name: the grid's file name; ``None`` for no grid.
        nrow: images per row of the grid.

    Returns:
        ``out_dir``.
    """
    out_dir = check_output_folder(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for i, array in enumerate(to_uint8(images).numpy()):
            Image.fromarray(array).save(tmp / f"{i}.png")
        if grid_name:
            save_grid(images, tmp / grid_name, nrow=nrow)
        if conditions is not None:
            (tmp / CONDITIONS_FILE).write_text(json.dumps(conditions))
        if out_dir.is_dir():
            _link_the_rest(out_dir, tmp)
    return out_dir


def _link_the_rest(old: Path, new: Path) -> None:
    """Hard-link (or copy) into ``new`` what ``old`` holds that ``new`` does not: files a save does not write
    (``accuracy.json``, a user's notes) survive it. Temporaries of a killed write are left behind."""
    for entry in old.iterdir():
        target = new / entry.name
        if target.exists() or target.is_symlink() or (entry.name.startswith(".") and ".tmp-" in entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link)
        else:
            _link(entry, target)


def _link(source: Path | str, target: Path | str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target, follow_symlinks=False)


def load_images(folder: str | Path, count: int) -> torch.Tensor:
    """``<folder>/0.png .. <count-1>.png`` -> (count, 3, H, W) in [-1, 1]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder {folder}: give the folder that `lab6 sample --out` wrote "
                                "(<i>.png for condition i)")
    missing = [f"{i}.png" for i in range(count) if not (folder / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {count} images missing in {folder}: {', '.join(missing[:5])}")
    arrays = []
    for i in range(count):
        try:
            with Image.open(folder / f"{i}.png") as image:
                arrays.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except OSError as err:
            raise OSError(f"{folder / f'{i}.png'} is not a readable image: {err}") from None
        if arrays[-1].shape != arrays[0].shape:  # the evaluator resizes every image alike, but not a mixed batch
            raise ValueError(f"{folder / f'{i}.png'} is {arrays[-1].shape[1]}x{arrays[-1].shape[0]} px, 0.png "
                             f"{arrays[0].shape[1]}x{arrays[0].shape[0]}: the images of one folder must share a size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def check_drawn_for(folder: str | Path, conditions: list[list[str]], source: str) -> bool:
    """Warn when the images in ``folder`` were drawn for other conditions than ``conditions`` (read from
    ``source``), as their ``conditions.json`` records: scored against the wrong labels, accuracy means nothing.
    Returns whether they match (True also when the folder records none)."""
    recorded = Path(folder) / CONDITIONS_FILE
    try:
        drawn = json.loads(recorded.read_text())
    except (OSError, ValueError):
        return True
    if [sorted(c) for c in drawn] == [sorted(c) for c in conditions]:
        return True
    differ = next((i for i, (a, b) in enumerate(zip(drawn, conditions)) if sorted(a) != sorted(b)),
                  min(len(drawn), len(conditions)))
    warnings.warn(f"the images in {folder} were drawn for other conditions than {source} ({recorded}: "
                  f"{len(drawn)} lists against {len(conditions)}; the first difference is image {differ}): "
                  "the accuracy below scores them against the wrong labels. Give the conditions file they were "
                  "drawn for", stacklevel=2)
    return False


def png_bytes(pixels: np.ndarray, scale: int = 1) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes, enlarged ``scale`` times with nearest-neighbour (crisp pixels)."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
