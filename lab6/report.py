"""The report: for each conditions split, images + an 8x4 grid + accuracy; the denoising figure; a summary.

``write_report(out)`` writes::

    out/images/<split>/<i>.png    64x64, in the conditions file's order
    out/<split>_grid.png          8 per row
    out/denoising.png (.pdf)      x_t and predicted x_0 for ["red sphere", "cyan cylinder", "cyan cube"]
    out/accuracy.json             accuracy and per-image hits per split, with the exact settings
    out/summary.md                the same as a short markdown table
"""

from __future__ import annotations

import json
from pathlib import Path

from .labels import DENOISING_FIGURE_CONDITION


def write_report(out: str | Path, *, data_root: str | Path | None = None, model: str | Path | None = None,
                 evaluator: str | Path | None = None, sampler: str = "dpmsolver", steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, device: str = "cpu", progress: bool = True,
                 log=print) -> dict:
    from .data import SPLITS, resolve_data_root
    from .diffusion import DEFAULT_STEPS
    from .evaluator import EvaluatorLoadError, load_evaluator
    from .figures import denoising_process, run_denoising, run_split
    from .pipeline import load_model, save_grid, save_images

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = resolve_data_root(data_root, need_images=False, progress=progress)
    loaded = load_model(model, device=device)
    guidance = loaded.guidance if guidance is None else guidance
    steps = steps or DEFAULT_STEPS[sampler]
    try:
        scorer = load_evaluator(evaluator, root, device=device)
    except EvaluatorLoadError as err:
        scorer = None
        log(f"no accuracy in this report: {err}")
    settings = {"model": str(loaded.path), "data_root": str(root), "sampler": sampler, "steps": steps,
                "guidance": guidance, "seed": seed, "evaluator": scorer.source if scorer else None}
    results: dict = {"settings": settings, "splits": {}}
    for split in SPLITS:
        run = run_split(loaded, root, split, scorer, sampler=sampler, steps=steps, guidance=guidance, seed=seed,
                        progress=progress)
        save_images(run.images, out / "images" / split, grid_name=None)
        save_grid(run.images, out / f"{split}_grid.png", nrow=8)
        entry: dict = {"images": len(run.conditions), "sampling_seconds": round(run.seconds, 2)}
        if run.score is not None:
            entry.update(accuracy=run.accuracy, per_image=run.score.per_image(run.conditions))
        results["splits"][split] = entry
        log(f"{split}: {len(run.conditions)} images in {run.seconds:.1f} s"
            + (f", accuracy {entry['accuracy']:.4f}" if "accuracy" in entry else ""))
    figure = run_denoising(loaded, DENOISING_FIGURE_CONDITION, sampler=sampler, steps=steps, guidance=guidance,
                           seed=seed, progress=False)
    denoising_process(figure, out, name="denoising")
    (out / "accuracy.json").write_text(json.dumps(results, indent=2))
    (out / "summary.md").write_text(summary_markdown(results))
    log(f"report written to {out}")
    return results


def summary_markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        "# lab6 report",
        "",
        f"Model `{s['model']}`, sampler {s['sampler']} ({s['steps']} steps), guidance w = {s['guidance']:g}, "
        f"seed {s['seed']}.",
        f"Evaluator: `{s['evaluator']}`." if s["evaluator"] else "No evaluator was available: no accuracy.",
        f"Data root: `{s['data_root']}`.",
        "",
        "| split | images | accuracy | sampling time (s) |",
        "| --- | --- | --- | --- |",
    ]
    for split, entry in results["splits"].items():
        accuracy = f"{entry['accuracy']:.4f}" if "accuracy" in entry else "n/a"
        lines.append(f"| {split} | {entry['images']} | {accuracy} | {entry['sampling_seconds']} |")
    lines += ["", "Grids: `test_grid.png`, `new_test_grid.png`; denoising process: `denoising.png`.", ""]
    return "\n".join(lines)

