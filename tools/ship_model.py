"""Ship a trained model and a proxy evaluator inside the package, with a model card of measured accuracy.

    python tools/ship_model.py --model runs/ref-cpu --data-root ../shared/iclevr-reference [--guidance 4] \
        [--evaluator runs/proxy/proxy_regnet_y_800mf.safetensors ...]

Copies the run's EMA model to ``lab6/assets/model`` and any ``--evaluator`` given (as fp16 safetensors, to
stay under 25 MB) to ``lab6/assets/evaluator``, then samples every split with every sampler setting, scores
the images with every shipped evaluator, and writes ``lab6/assets/model/README.md`` (the model card).
``--guidance`` ships another guidance scale than the one the run was evaluated with; choose it on the
held-out conditions (``bench/bench_sampling.py --guidance 2 3 4 --also heldout``), not on test.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lab6.data import load_split
from lab6.diffusion import INITIAL_NOISE
from lab6.evaluator import Evaluator, load_evaluators, shipped_evaluator_path, shipped_evaluator_paths
from lab6.pipeline import Lab6Pipeline, generate, load_pipeline, save_pipeline
from lab6.run_files import SHIPPED_MODEL, training_minutes, training_stages

SETTINGS = [("dpmsolver", 20), ("dpmsolver", 10), ("ddim", 50)]
SPLITS = ("test", "new_test", "heldout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run or model folder to ship")
    parser.add_argument("--evaluator", type=Path, action="append", default=[],
                        help="a proxy evaluator (with its .json) to ship too; repeat for several")
    parser.add_argument("--data-root", type=Path, required=True, help="where test.json / new_test.json are")
    parser.add_argument("--command", default="", help="the command that trained the model, for the card")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale w to ship with (default: the one the run was evaluated with)")
    parser.add_argument("--noise", choices=INITIAL_NOISE, default=None,
                        help="starting noise to ship with (default: the run's)")
    args = parser.parse_args()

    source = load_pipeline(args.model)  # a pipeline folder, a flat folder of the older layout, or a run
    shipped = Lab6Pipeline(source.unet, source.scheduler, source.guidance if args.guidance is None else args.guidance,
                           args.noise or source.noise)
    meta = without_machine_paths(source.metadata)
    meta.update(guidance=shipped.guidance, noise=shipped.noise)
    save_pipeline(shipped, SHIPPED_MODEL, meta)
    for path in args.evaluator:
        ship_evaluator(path)

    loaded = load_pipeline(SHIPPED_MODEL)
    evaluators = load_evaluators(shipped_evaluator_paths())
    table: dict[str, dict[str, dict[str, float]]] = {}  # sampler -> evaluator -> split -> accuracy
    seconds: dict[str, float] = {}
    for sampler, steps in SETTINGS:
        key = f"{sampler}-{steps}"
        table[key] = {e.name: {} for e in evaluators}
        for split in SPLITS:
            conditions = load_split(args.data_root, split)
            start = time.perf_counter()
            images = generate(loaded, conditions, sampler=sampler, steps=steps, progress=False).images
            if split == "test":
                seconds[key] = time.perf_counter() - start
            for evaluator in evaluators:
                table[key][evaluator.name][split] = evaluator.score(images, conditions).accuracy
            print(f"{key} {split}: " + ", ".join(f"{n} {t[split]:.4f}" for n, t in table[key].items()), flush=True)
    (SHIPPED_MODEL / "accuracy.json").write_text(json.dumps({"accuracy": table, "seconds_32_images": seconds,
                                                              "guidance": loaded.guidance}, indent=2))
    reports = {e.name: json.loads(Path(e.source).with_suffix(".json").read_text()) for e in evaluators}
    (SHIPPED_MODEL / "README.md").write_text(model_card(loaded, table, seconds, reports, args))
    print(f"shipped {source.path} -> {SHIPPED_MODEL}")


def ship_evaluator(path: Path) -> Path:
    """Copy a proxy evaluator (fp16 safetensors) and its training report into the package, by architecture."""
    evaluator = Evaluator.load(path)
    target = shipped_evaluator_path(evaluator.arch)
    evaluator.save(target)
    report = without_machine_paths(json.loads(path.with_suffix(".json").read_text()))
    target.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return target


def without_machine_paths(meta: dict) -> dict:
    """The record with every stage's data root cut to its folder name: a shipped file names no one's disk."""
    meta = dict(meta)
    if "data_root" in meta:
        meta["data_root"] = Path(meta["data_root"]).name
    if meta.get("parent"):
        meta["parent"] = without_machine_paths(meta["parent"])
    return meta


def stage_lines(meta: dict) -> list[str]:
    """One card line per training stage, then the totals."""
    chain, lines = training_stages(meta), []
    for i, stage in enumerate(chain, 1):
        how = f" (fine-tuned from stage {i - 1})" if i > 1 else ""
        recipe = stage.get("recipe", {})
        lines.append(f"- Stage {i}{how}: {stage.get('train_step')} steps of {recipe.get('batch_size')} images "
                     f"({stage.get('epochs')} epochs), {stage.get('train_minutes')} minutes of training on "
                     f"{stage.get('processes', 1)} process(es), peak lr {recipe.get('lr')}.")
    if len(chain) > 1:
        lines.append(f"- In all: {sum(m.get('epochs', 0) for m in chain):.1f} epochs in "
                     f"{training_minutes(meta):.1f} minutes of training.")
    return lines


def model_card(loaded, table, seconds, proxy_reports, args) -> str:
    meta = loaded.metadata
    recipe = meta.get("recipe", {})
    params = sum(p.numel() for p in loaded.unet.parameters()) / 1e6
    lines = [
        "# lab6 reference model",
        "",
        f"A conditional DDPM for i-CLEVR: {params:.1f}M-parameter `ConditionalUNet` ({recipe.get('conditioning')} "
        f"conditioning), trained at {recipe.get('image_size')}x{recipe.get('image_size')} and upsampled to 64x64.",
        "",
        "## Training",
        "",
        f"- Data: the course's i-CLEVR training set (18,009 images, `{Path(meta.get('data_root', '')).name}`).",
        f"- Command: `{args.command or 'lab6 train --preset cpu'}`",
        *stage_lines(meta),
        f"- Recipe: {recipe.get('beta_schedule')} schedule, {recipe.get('prediction')} prediction, min-SNR "
        f"gamma {recipe.get('min_snr_gamma')}, batch {recipe.get('batch_size')}, lr {recipe.get('lr')}, EMA "
        f"{recipe.get('ema_decay')}, label dropout {recipe.get('cond_dropout')}.",
        f"- Sampled with classifier-free guidance w = {loaded.guidance:g}"
        + (f" (training evaluated at w = {recipe['guidance']:g}; w chosen on the held-out conditions)."
           if recipe.get("guidance", loaded.guidance) != loaded.guidance else "."),
        "",
        "## Accuracy",
        "",
        "Top-k accuracy scored by the shipped proxy evaluators, two architectures trained on real images ("
        + "; ".join(f"{name}: {r['heldout_accuracy']:.4f} on {r['heldout_images']} held-out real images"
                    for name, r in proxy_reports.items())
        + "). `heldout` is 128 random valid conditions (`lab6.labels.heldout_conditions()`). Seed 0.",
        "",
        "| sampler | evaluator | " + " | ".join(SPLITS) + f" | seconds for 32 images ({torch.get_num_threads()} CPU thread(s)) |",
        "| --- | --- | " + " | ".join("---" for _ in SPLITS) + " | --- |",
    ]
    for key, by_evaluator in table.items():
        for name, row in by_evaluator.items():
            lines.append(f"| {key} | {name} | " + " | ".join(f"{row[s]:.4f}" for s in SPLITS) + f" | {seconds[key]:.1f} |")
    lines += ["", "DDIM and DPM-Solver++ solve the same probability-flow ODE from the same starting noise (seed 0), so "
              "they draw nearly the same images and their scores often coincide; DDPM-1000 (stochastic) is in "
              "`bench/bench_sampling.py`.",
              "", "Reproduce: the command above, then `python tools/ship_model.py` (see its docstring).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
