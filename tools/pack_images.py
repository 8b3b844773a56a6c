"""Carry a data root's decoded training images to another machine (a rented GPU) without the PNGs.

    python tools/pack_images.py pack --data-root ../shared/iclevr-reference --sizes 32 64 --out packed/
    python tools/pack_images.py unpack packed/ --data-root data/iclevr   # on the other machine

``pack`` writes the conditions files (train.json, test.json, ...) and, per size, the decoded uint8 images
delta-coded along each row and compressed with LZMA: 64x64 and 32x32 together take about a third of the
course's 143 MB of PNGs. ``unpack`` recreates a data root from those conditions files and puts the images
where ``lab6.data.cached_images`` looks, so ``lab6 train --data-root`` there starts at once, bit-identical
to training here.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
from pathlib import Path

import numpy as np

from lab6.data import cached_images, decoded_cache_path, read_train_index

CONDITION_FILES = ("objects.json", "train.json", "test.json", "new_test.json")


def encode(images: np.ndarray) -> bytes:
    """Rows as differences of neighbouring pixels (uint8 arithmetic wraps), then LZMA: smooth renders compress well."""
    return lzma.compress(np.diff(images, axis=-1, prepend=np.uint8(0)).tobytes(), preset=6)


def decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    deltas = np.frombuffer(lzma.decompress(blob), dtype=np.uint8).reshape(shape)
    return np.cumsum(deltas, axis=-1, dtype=np.uint8)


def copy_condition_files(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in CONDITION_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def pack(data_root: Path, sizes: list[int], out: Path) -> None:
    copy_condition_files(data_root, out)
    files, _ = read_train_index(data_root)
    for size in sizes:
        images = cached_images(data_root, files, size)
        (out / f"images-{size}px.u8.xz").write_bytes(encode(images))
        (out / f"images-{size}px.json").write_text(json.dumps({"shape": list(images.shape)}))
        packed = (out / f"images-{size}px.u8.xz").stat().st_size
        print(f"{size}x{size}: {images.nbytes / 1e6:.1f} MB -> {packed / 1e6:.1f} MB")


def unpack(packed: Path, data_root: Path) -> None:
    copy_condition_files(packed, data_root)
    files, _ = read_train_index(data_root)
    blobs = sorted(packed.glob("images-*px.u8.xz"))
    if not blobs:
        raise FileNotFoundError(f"no images-<size>px.u8.xz in {packed}: make it with `pack`")
    for blob in blobs:
        shape = tuple(json.loads(blob.with_name(blob.name.replace(".u8.xz", ".json")).read_text())["shape"])
        if shape[0] != len(files):
            raise ValueError(f"{blob} holds {shape[0]} images but {data_root / 'train.json'} lists {len(files)}")
        images = decode(blob.read_bytes(), shape)
        target = decoded_cache_path(data_root, files, shape[-1])
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, images)
        print(f"{blob.name} -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="data root -> packed folder")
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--out", type=Path, required=True)
    u = commands.add_parser("unpack", help="packed folder -> data root + decoded-image cache")
    u.add_argument("packed", type=Path)
    u.add_argument("--data-root", type=Path, required=True, help="folder to create (conditions files only)")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.data_root, args.sizes, args.out)
    else:
        unpack(args.packed, args.data_root)


if __name__ == "__main__":
    main()
