"""Long sampling jobs (``lab6 sample``): the conditions drawn chunk by chunk, each chunk through every step, its
PNGs written as it finishes, and ``--resume`` after a kill drawing exactly what the uninterrupted job would have.

Why chunks: a batch of 1,000 conditions moves once per denoising step, minutes apart, and a kill loses it all.
Why it resumes bit for bit: chunk k draws its starting noise, and DDPM's noise at every step, from a generator
seeded by (seed, k) alone (:func:`chunk_seed`), never from what earlier chunks drew; so a chunk drawn after a
restart is the chunk the uninterrupted job drew. The chunk size is part of the job's settings (it decides which
conditions share a generator), recorded in ``OUT/sample_job.json`` while the job runs, and a resume with other
settings is refused by name. The first chunk's seed is the seed itself, so a job of at most one chunk draws what
``sampling.generate`` (and ``pipe(..., generator=torch.Generator().manual_seed(seed))``) draws; a longer job's
later chunks differ from such a single call's images, and equal every other chunked job's of the same settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm

from .images import CONDITIONS_FILE, check_output_folder, load_images, save_grid, save_png, to_uint8
from .labels import conditions_tensor
from .run_files import write_text_atomic
from .sampling import Sampling, generate

JOB_FILE = "sample_job.json"  # the running job's settings and finished chunks; removed when the job is complete
DEFAULT_CHUNK_SIZE = 32


def chunk_seed(seed: int, chunk: int) -> int:
    """The generator seed of chunk ``chunk``: ``seed`` for the first, then ``seed + chunk * 2**32`` (no chunk of
    one seed meets another seed's first chunk)."""
    return seed + (chunk << 32)


def job_settings(pipe, conditions: list[list[str]], sampling: Sampling, chunk_size: int) -> dict:
    """What decides a job's images, as its record keeps it: a resume must match every value."""
    digest = hashlib.sha256(json.dumps(conditions).encode()).hexdigest()
    model = str(Path(pipe.path).resolve()) if pipe.path is not None else None
    return {"model": model, "device": str(pipe.device), "conditions": len(conditions), "conditions_sha256": digest,
            **dataclasses.asdict(sampling), "chunk_size": chunk_size}


def resumed_chunks(out: Path, settings: dict, chunks: list[range]) -> set[int]:
    """The finished chunks of the job recorded in ``out`` (those whose PNGs are all there); refuses a job of
    other settings by name."""
    record = json.loads((out / JOB_FILE).read_text())
    recorded = record["settings"]
    differ = [key for key in settings if recorded.get(key) != settings[key]]
    if differ:
        said = "; ".join(f"{key} was {recorded.get(key)!r}, now {settings[key]!r}" for key in differ)
        raise ValueError(f"--resume: the job in {out} was drawn with other settings ({said}): give the same "
                         f"model, conditions and options (--chunk-size {recorded['chunk_size']}), or a new --out")
    return {k for k in record["done"] if all((out / f"{i}.png").is_file() for i in chunks[k])}


def run_sample_job(pipe, conditions: list[list[str]], out: str | Path, sampling: Sampling | None = None, *,
                   chunk_size: int | None = None, resume: bool = False, progress: bool = True) -> Path:
    """Draw one image per condition into ``out`` (``<i>.png``), ``chunk_size`` conditions at a time, then write
    ``grid.png`` and ``conditions.json``; every file appears whole (``run_files.atomic_path``).

    Args:
        pipe: the model (``loading.load_pipeline``).
        conditions: label lists.
        out: the folder of images.
        sampling: how to draw (default: the model's own settings).
        chunk_size: conditions drawn together (default: the resumed job's, else :data:`DEFAULT_CHUNK_SIZE`).
        resume: continue the job recorded in ``out``, drawing only its unfinished chunks.
        progress: a progress bar counting images, with the time left.

    Returns:
        ``out``.
    """
    out = check_output_folder(out)
    conditions_tensor(conditions)  # every condition checked before the first chunk, not when its chunk comes
    sampling = (sampling or Sampling()).resolved(pipe)
    record_path = out / JOB_FILE
    if resume and chunk_size is None and record_path.is_file():
        chunk_size = json.loads(record_path.read_text())["settings"]["chunk_size"]
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (conditions drawn together), got {chunk_size}")
    settings = job_settings(pipe, conditions, sampling, chunk_size)
    chunks = [range(start, min(start + chunk_size, len(conditions))) for start in range(0, len(conditions),
                                                                                          chunk_size)]
    done: set[int] = set()
    if resume and record_path.is_file():
        done = resumed_chunks(out, settings, chunks)
    elif resume:
        print(f"--resume: no unfinished sampling job in {out} ({JOB_FILE}), drawing every chunk")
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / "grid.png", out / CONDITIONS_FILE, *out.glob(".*.png.tmp*"), *out.glob(".*.json.tmp*")]:
        stale.unlink(missing_ok=True)  # the folder is a job in progress until the end writes them again

    def record() -> None:
        write_text_atomic(record_path, json.dumps({"settings": settings, "done": sorted(done)}, indent=1))

    record()
    bar = tqdm(total=len(conditions), initial=sum(len(chunks[k]) for k in done), unit="image", dynamic_ncols=True,
               desc=f"sampling ({sampling.name})", disable=not progress)
    with bar:
        for k, indices in enumerate(chunks):
            if k in done:
                continue

            def on_step(step: int, total: int, k=k) -> None:
                bar.set_postfix_str(f"chunk {k + 1}/{len(chunks)}, step {step}/{total}")

            result = generate(pipe, [conditions[i] for i in indices], sampling.replace(seed=chunk_seed(
                sampling.seed, k)), progress=False, callback=on_step)
            for i, pixels in zip(indices, to_uint8(result.images).numpy()):
                save_png(pixels, out / f"{i}.png")
            done.add(k)
            record()
            bar.update(len(indices))
    # The grid from the PNGs on disk: a resumed job's grid is the uninterrupted job's, byte for byte.
    save_grid(load_images(out, len(conditions)), out / "grid.png")
    write_text_atomic(out / CONDITIONS_FILE, json.dumps(conditions))
    record_path.unlink()
    return out
