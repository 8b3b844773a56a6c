"""A built-in, procedural stand-in for the i-CLEVR data, so that lab6 runs without the course files.

i-CLEVR images are Blender renders of 1-3 objects (one size, 8 colours x 3 shapes) on a grey floor, seen by
CLEVR's fixed camera, rendered at 320x240 and squashed to 64x64. This module ray-casts the same analytic
shapes with vectorised numpy from the same camera, in the same framing:

* camera: Blender's default camera as CLEVR uses it (location (7.36, -6.93, 4.96), 35 mm lens on a 32 mm
  sensor), 4:3 field of view squashed into a square image, as in the course images;
* objects: one size, as in the course images (sphere radius 0.58, cylinder radius 0.58 and height 1.16,
  cube side 1.16, bevelled edges), rubber-like diffuse colours from CLEVR's property file, treated as
  linear albedo like Blender does; the first object of a condition stands at the centre of the floor, each
  later one about 3 units from an earlier one, never overlapping, as in i-CLEVR, whose scenes grow one
  object at a time;
* light: CLEVR's three-lamp setup, simplified: a key light right of the camera (lights the visible faces; its
  shadows fall behind the objects), a soft back light whose soft shadows fall towards the camera, a weak
  fill light from the left, ambient light and a procedural floor (bright pool, darker far field); then sRGB
  encoding, supersampling for anti-aliased edges, and mild render noise.

Public API: :func:`render_scene`, :func:`render_dataset` and :func:`default_data_root`; :func:`sample_layout`
and :func:`render_objects` give the layout and per-object coverage masks too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np

from .labels import LABEL_TO_INDEX, random_condition
from .render import render_scene
from .run_files import cache_dir as default_cache_dir
from .scene import MAX_OBJECTS, MIN_OBJECTS, SyntheticDataError, check_positive_int

log = logging.getLogger(__name__)


#: Bump when the renderer's output changes, so cached sets are re-rendered.
VERSION = 1
#: Size of the default synthetic training set: the course's set has 18,009 images.
DEFAULT_N = 18000
#: Default worker processes for :func:`render_dataset` (capped by the CPUs this process may use).
DEFAULT_WORKERS = 2
#: Images per job handed to a worker process.
_CHUNK = 64
#: Conditions files written next to the training set: split -> object counts of its 32 conditions.
TEST_SPLITS = {
    "test": (1,) * 6 + (2,) * 12 + (3,) * 14,
    "new_test": (2,) * 12 + (3,) * 20,
}

# ---------------------------------------------------------------------------------------------- dataset
def _image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def image_name(index: int) -> str:
    return f"synthetic_{index:06d}.png"


def _image_labels(rng: np.random.Generator, index: int) -> list[str]:
    count = MIN_OBJECTS + index % (MAX_OBJECTS - MIN_OBJECTS + 1)  # 1, 2, 3, 1, 2, 3, ...: balanced counts
    return random_condition(rng, count)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """Write a PNG atomically: a temporary name in the same folder, then os.replace."""
    from PIL import Image

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            Image.fromarray(pixels, "RGB").save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=None) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _render_chunk(folder: str, seed: int, size: int, indices: Sequence[int]) -> list[tuple[int, list[str]]]:
    """Render and write the images of some indices; return their labels. Runs in worker processes."""
    done = []
    for index in indices:
        rng = _image_rng(seed, index)
        labels = _image_labels(rng, index)
        _write_png(Path(folder) / image_name(index), render_scene(labels, rng, size))
        done.append((index, labels))
    return done


def make_conditions(counts: Sequence[int], rng: np.random.Generator) -> list[list[str]]:
    """Distinct conditions with the given object counts (a test.json-style list of lists of names)."""
    seen: set[frozenset[str]] = set()
    conditions = []
    for count in counts:
        while True:
            names = random_condition(rng, count)
            if frozenset(names) not in seen:
                break
        seen.add(frozenset(names))
        conditions.append(names)
    return conditions


def condition_sets(seed: int = 0) -> dict[str, list[list[str]]]:
    """The project's own test / new_test conditions for a seed (they depend on the seed alone, not on n)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**40,)))
    return {split: make_conditions(counts, rng) for split, counts in TEST_SPLITS.items()}


def _prepare_folder(out_dir: Path) -> Path:
    """Create <out_dir>/iclevr and check that files can be written there; raise SyntheticDataError if not."""
    images = out_dir / "iclevr"
    try:
        images.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=images, prefix=".write-check-", delete=True):
            pass
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-check-", delete=True):
            pass
    except OSError as err:
        raise SyntheticDataError(
            f"cannot write the synthetic data set to {out_dir}: {err.strerror or err}. "
            "Choose a writable folder (or set LAB6_CACHE)."
        ) from None
    return images


def _resolve_workers(workers: int | None, n: int) -> int:
    if workers is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS, Windows
            cpus = os.cpu_count() or 1
        workers = min(DEFAULT_WORKERS, cpus)
        if n < 4 * _CHUNK:  # starting processes would cost more than it saves
            workers = 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise SyntheticDataError(f"workers must be None or an integer >= 1, got {workers!r}")
    return int(min(workers, n))


def render_dataset(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    size: int = 64,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Renders ``n`` training images and the conditions files into ``out_dir``, in the course's layout.

    Writes ``iclevr/synthetic_000000.png`` ..., then ``objects.json``, ``test.json``, ``new_test.json``,
    ``train.json`` (filename -> label names) and finally a ``.complete`` marker. Every file is written
    atomically, and train.json only once all images exist, so an interrupted render leaves no partial PNG
    and no train.json.

    Args:
        out_dir: the folder to write (created if missing).
        n: the number of training images.
        seed: the same seed gives byte-identical files for any number of ``workers``.
        size: the side of the images, in pixels.
        workers: render processes; ``None`` for up to ``DEFAULT_WORKERS`` (one for a small set).
        progress: show a progress bar.

    Returns:
        ``out_dir``, a data root.
    """
    n = check_positive_int(n, "n (the number of images)")
    size = check_positive_int(size, "size", 8)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SyntheticDataError(f"seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    workers = _resolve_workers(workers, n)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SyntheticDataError(f"cannot write the synthetic data set to {out}: it is a file, not a folder")
    images = _prepare_folder(out)
    # A re-render first withdraws the old index, so no reader mixes old and new files.
    for stale in (out / ".complete", out / "train.json"):
        stale.unlink(missing_ok=True)
    for tmp in images.glob("synthetic_*.png.tmp-*"):  # left by a killed render (not by a live one: too old)
        try:
            if time.time() - tmp.stat().st_mtime > 600:
                tmp.unlink()
        except OSError:
            pass

    from tqdm.auto import tqdm

    labels: dict[int, list[str]] = {}
    step = max(1, min(_CHUNK, n // (4 * workers)))  # several jobs per worker, for an even finish
    jobs = [range(i, min(i + step, n)) for i in range(0, n, step)]
    with tqdm(total=n, desc="rendering synthetic i-CLEVR", unit="img", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                labels.update(_render_chunk(str(images), seed, size, job))
                bar.update(len(job))
        else:
            # "spawn" works everywhere and is safe when the caller has threads (torch does); a pool that
            # cannot start (e.g. a script without an ``if __name__ == "__main__":`` guard) falls back to
            # rendering here, which gives the same files.
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            try:
                pending = {pool.submit(_render_chunk, str(images), seed, size, job) for job in jobs}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        result = future.result()
                        labels.update(result)
                        bar.update(len(result))
            except BrokenProcessPool as err:
                log.warning("worker processes failed (%s); rendering the rest in this process", err)
                pool.shutdown(wait=True, cancel_futures=True)
                for job in jobs:
                    todo = [i for i in job if i not in labels]
                    labels.update(_render_chunk(str(images), seed, size, todo))
                    bar.update(len(todo))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            else:
                pool.shutdown(wait=True)

    _write_json(out / "objects.json", LABEL_TO_INDEX)
    for split, conditions in condition_sets(seed).items():
        _write_json(out / f"{split}.json", conditions)
    _write_json(out / "train.json", {image_name(i): labels[i] for i in range(n)})
    _write_json(out / ".complete", _marker(n, seed, size))
    return out


def _marker(n: int, seed: int, size: int) -> dict:
    return {"generator": "lab6.synthetic", "version": VERSION, "n": n, "seed": seed, "size": size}


def default_data_root(
    cache_dir: str | os.PathLike | None = None, n: int = DEFAULT_N, seed: int = 0, progress: bool = True
) -> Path:
    """The built-in synthetic data set: rendered once into ``<cache>/synthetic-v1-n18000-s0``, then reused.

    ``cache_dir`` defaults to ``$LAB6_CACHE`` or ``~/.cache/lab6``. A set counts as done only when its
    ``.complete`` marker matches (an interrupted render is simply rendered again).
    """
    n = check_positive_int(n, "n (the number of images)")
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root = base / f"synthetic-v{VERSION}-n{n}-s{seed}"
    try:
        done = json.loads((root / ".complete").read_text()) == _marker(n, seed, 64)
    except (OSError, ValueError):
        done = False
    if done:
        message = f"using the built-in synthetic i-CLEVR set ({n} images) at {root}"
    else:
        message = (
            f"no data root given: rendering the built-in synthetic i-CLEVR set ({n} images, once; about "
            f"{max(1, round(n / 6000))} min) into {root}"
        )
    log.info(message)
    print(f"lab6: {message}", flush=True)
    if not done:
        render_dataset(root, n, seed, progress=progress)
    return root


__all__ = ["DEFAULT_N", "VERSION", "SyntheticDataError", "condition_sets", "default_data_root", "image_name",
           "make_conditions", "render_dataset", "render_scene"]
