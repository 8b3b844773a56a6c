"""Ship a trained model and a proxy evaluator inside the package, with a model card of measured accuracy.

    python tools/ship_model.py --model runs/ref-cpu --data-root ../shared/iclevr-reference [--guidance 4] \
        [--evaluator runs/proxy/proxy_regnet_y_800mf.safetensors ...] [--refiner runs/refiner --refiner-strength 0.2]

Copies the run's EMA model to ``lab6/assets/model`` and any ``--evaluator`` given (as fp16 safetensors, to
stay under 25 MB) to ``lab6/assets/evaluator``, then samples every split with every sampler setting, scores
the images with every shipped evaluator (two seeds), and writes ``lab6/assets/model/README.md``, a Hugging
Face model card with YAML metadata; ``--fidelity`` adds ``bench/bench_fidelity.py --json``'s table to it.
``--guidance`` ships another guidance scale than the one the run was evaluated with; choose it on the
held-out conditions (``bench/bench_sampling.py --guidance 2 3 4 --also heldout``), not on test.json.
``--refiner`` ships the model followed by a 64-px refiner (``lab6.refiner.with_refiner``); the card then
also scores the first stage alone and states both stages' training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lab6.data_root import load_split
from lab6.diffusion import INITIAL_NOISE
from lab6.evaluator import Evaluator
from lab6.evaluator_files import shipped_evaluator_path, shipped_evaluator_paths
from lab6.loading import load_pipeline, save_pipeline
from lab6.pipeline import Lab6Pipeline
from lab6.refiner import with_refiner
from lab6.run_files import SHIPPED_MODEL, training_minutes, training_stages
from lab6.sampling import Sampling, generate
from lab6.scoring import load_evaluators

SETTINGS = [("dpmsolver", 20), ("dpmsolver", 10), ("ddim", 50)]
FIRST_STAGE = ("dpmsolver", 20)  # scored without the refiner too, when the model has one
SPLITS = ("test", "new_test", "heldout")
SEEDS = (0, 1)  # two draws of every split: 32 conditions per split are too few to tell 0.94 from 0.95 with one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run or model folder to ship")
    parser.add_argument("--evaluator", type=Path, action="append", default=[],
                        help="a proxy evaluator (with its .json) to ship too; repeat for several")
    parser.add_argument("--data-root", type=Path, help="where test.json / new_test.json are")
    parser.add_argument("--command", default="", help="the command that trained the model, for the card")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale w to ship with (default: the one the run was evaluated with)")
    parser.add_argument("--noise", choices=INITIAL_NOISE, default=None,
                        help="starting noise to ship with (default: the run's)")
    parser.add_argument("--refiner", type=Path, default=None, help="a 64-px refiner run to ship after the model")
    parser.add_argument("--refiner-strength", type=float, default=None, metavar="S",
                        help="the last S of the refiner's schedule it redraws (with --refiner)")
    parser.add_argument("--refiner-step-ratio", type=float, default=None, metavar="R",
                        help="the refiner's steps per first-stage step (default: its strength)")
    parser.add_argument("--refiner-command", default="", help="the command that trained the refiner, for the card")
    parser.add_argument("--fidelity", type=Path, default=None,
                        help="bench/bench_fidelity.py --json output, for the card's fidelity table")
    parser.add_argument("--card-only", action="store_true",
                        help="rewrite the shipped model's card from its accuracy.json (with --command, --fidelity) "
                             "without shipping or sampling again")
    args = parser.parse_args()
    if args.card_only:
        rewrite_card(args)
        return
    if args.model is None or args.data_root is None:
        parser.error("--model and --data-root are needed to ship (or --card-only to rewrite the card)")

    if (args.refiner is None) != (args.refiner_strength is None):
        parser.error("--refiner and --refiner-strength go together")
    source = load_pipeline(args.model)  # a pipeline folder, a flat folder of the older layout, or a run
    shipped = Lab6Pipeline(source.unet, source.scheduler,
                           source.guidance_scale if args.guidance is None else args.guidance,
                           args.noise or source.initial_noise)
    meta = without_machine_paths(source.metadata)
    meta.update(guidance=shipped.guidance_scale, noise=shipped.initial_noise)
    if args.refiner:
        refiner = load_pipeline(args.refiner)
        shipped = with_refiner(shipped, refiner, args.refiner_strength, step_ratio=args.refiner_step_ratio)
        meta["refiner"] = without_machine_paths(refiner.metadata)
    for name in ("unet", "refiner"):  # each config names the folder it was loaded from: on this machine, not in git
        if getattr(shipped, name, None) is not None:
            getattr(shipped, name).register_to_config(_name_or_path=f"lab6/assets/model/{name}")
    save_pipeline(shipped, SHIPPED_MODEL, meta)
    for path in args.evaluator:
        ship_evaluator(path)

    loaded = load_pipeline(SHIPPED_MODEL)
    table, seconds = measure_accuracy(loaded, load_evaluators(shipped_evaluator_paths()), args.data_root)
    record = {"accuracy": table, "seeds": list(SEEDS), "seconds_32_images": seconds,
              "threads": torch.get_num_threads(), "guidance": loaded.guidance_scale, "noise": loaded.initial_noise}
    (SHIPPED_MODEL / "accuracy.json").write_text(json.dumps(record, indent=2))
    rewrite_card(args)
    print(f"shipped {source.path} -> {SHIPPED_MODEL}")


def rewrite_card(args) -> None:
    """The card from the shipped model, its accuracy.json and the shipped evaluators' training reports;
    ``--fidelity`` adds (and records in accuracy.json) the fidelity table."""
    loaded = load_pipeline(SHIPPED_MODEL)
    record = json.loads((SHIPPED_MODEL / "accuracy.json").read_text())
    if args.fidelity:
        record["fidelity"] = json.loads(args.fidelity.read_text())
        (SHIPPED_MODEL / "accuracy.json").write_text(json.dumps(record, indent=2))
    names = next(iter(record["accuracy"].values()))  # the evaluators the table was scored with
    reports = {name: json.loads(shipped_evaluator_path(name).with_suffix(".json").read_text()) for name in names}
    model_card(loaded, record["accuracy"], record["seconds_32_images"], reports, args,
               record.get("fidelity"), record.get("threads")).save(SHIPPED_MODEL / "README.md")


def measure_accuracy(loaded, evaluators, data_root: Path) -> tuple[dict, dict]:
    """Every split with every sampler setting and seed, scored by every evaluator (a model with a refiner:
    also its first stage alone, ``FIRST_STAGE``).

    Returns ``table[setting][evaluator][split or "pooled"]`` (hits over labels, the seeds pooled; "pooled":
    all splits together, the headline number) and the seconds each setting took for 32 test images.
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    settings = [(sampler, steps, True) for sampler, steps in SETTINGS]
    refined = hasattr(loaded, "refiner")
    if refined:
        settings.append((*FIRST_STAGE, False))
    for sampler, steps, refine in settings:
        key = f"{sampler}-{steps}" + ("" if refine or not refined else ", first stage only")
        hits = {e.name: {split: 0 for split in SPLITS} for e in evaluators}
        labels = dict.fromkeys(SPLITS, 0)
        for split in SPLITS:
            conditions = load_split(data_root, split)
            for seed in SEEDS:
                start = time.perf_counter()
                images = generate(loaded, conditions, Sampling(sampler, steps, seed=seed, refine=refine),
                                  progress=False).images
                if split == "test" and seed == SEEDS[0]:
                    seconds[key] = (time.perf_counter() - start) * 32 / len(conditions)
                labels[split] += sum(len(c) for c in conditions)
                for evaluator in evaluators:
                    hits[evaluator.name][split] += sum(evaluator.score(images, conditions).hits)
        table[key] = {name: {**{split: h[split] / labels[split] for split in SPLITS},
                             "pooled": sum(h.values()) / sum(labels.values())} for name, h in hits.items()}
        print(f"{key}: " + "; ".join(f"{n} " + ", ".join(f"{s} {a:.4f}" for s, a in row.items())
                                     for n, row in table[key].items()), flush=True)
    return table, seconds


def ship_evaluator(path: Path) -> Path:
    """Copy a proxy evaluator (fp16 safetensors) and its training report into the package, by architecture."""
    evaluator = Evaluator.load(path)
    target = shipped_evaluator_path(evaluator.arch)
    evaluator.save(target)
    report = without_machine_paths(json.loads(path.with_suffix(".json").read_text()))
    target.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return target


def without_machine_paths(meta: dict) -> dict:
    """The record with every stage's data root, starting model (``recipe.init_from``) and distillation teacher
    (``distilled.from``) cut to their last folder names: a shipped file names no one's disk."""
    meta = dict(meta)
    for key in ("data_root", "from"):
        if isinstance(meta.get(key), str):
            meta[key] = Path(meta[key]).name
    if (meta.get("recipe") or {}).get("init_from"):
        meta["recipe"] = {**meta["recipe"], "init_from": Path(meta["recipe"]["init_from"]).name}
    for key in ("parent", "refiner", "distilled"):
        if meta.get(key):
            meta[key] = without_machine_paths(meta[key])
    return meta


def stage_lines(meta: dict, name: str = "Stage", skip: int = 0) -> list[str]:
    """One card line per training stage (after the first ``skip``), then the totals."""
    chain, lines = training_stages(meta), []
    for i, stage in enumerate(chain[skip:], skip + 1):
        source = "stage" if i - 1 > skip else "the first stage, its stage"
        how = f" (fine-tuned from {source} {i - 1})" if i > 1 else ""
        recipe = stage.get("recipe", {})
        lines.append(f"- {name} {i}{how}: {stage.get('train_step')} steps of {recipe.get('batch_size')} images "
                     f"({stage.get('epochs')} epochs), {stage.get('train_minutes')} minutes of training on "
                     f"{stage.get('processes', 1)} process(es), peak lr {recipe.get('lr')}"
                     + (f", timesteps below {recipe['max_timestep']} only" if recipe.get("max_timestep") else "")
                     + ".")
    if len(chain) - skip > 1:
        lines.append(f"- In all: {sum(m.get('epochs', 0) for m in chain[skip:]):.1f} epochs in "
                     f"{sum(float(m.get('train_minutes', 0)) for m in chain[skip:]):.1f} minutes of training.")
    return lines


def shared_stages(meta: dict, refiner_meta: dict) -> int:
    """How many of the refiner's first training stages are the first stage's own: all of them for a refiner
    grown from the first stage's model, fewer for one grown from a model the first stage was then trained on from."""
    key = lambda m: (m.get("train_step"), m.get("train_minutes"), m.get("epochs"))  # noqa: E731
    first, refiner = [key(m) for m in training_stages(meta)], [key(m) for m in training_stages(refiner_meta)]
    shared = 0
    while shared < min(len(first), len(refiner)) and first[shared] == refiner[shared]:
        shared += 1
    return shared


def refiner_lines(meta: dict, strength: float, command: str) -> list[str]:
    """The card's lines on the refiner's training, and the minutes of both stages together."""
    refiner = meta.get("refiner")
    if not refiner:
        return []
    skip = shared_stages(meta, refiner)
    own = sum(float(m.get("train_minutes", 0)) for m in training_stages(refiner)[skip:])
    return ["", f"The 64-px refiner (redraws the last {strength:g} of its schedule):", "",
            f"- Command: `{command or 'lab6 train --preset cpu64 --set max_timestep=300 ...'}`",
            *stage_lines(refiner, "Refiner stage", skip),
            f"- Both stages: {training_minutes(meta):.1f} + {own:.1f} = {training_minutes(meta) + own:.1f} minutes "
            "of training" + grown_from(skip, len(training_stages(meta))) + "."]


def grown_from(shared: int, first_stages: int) -> str:
    """Which of the first stage's models the refiner was grown from (its first ``shared`` stages are theirs)."""
    if not shared:
        return ""
    if shared == first_stages:
        return " (the refiner was grown from the first stage's model)"
    return f" (the refiner was grown from the model of the first stage's stage {shared}, which it then trained on)"


CARD_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


def model_card(loaded, table, seconds, proxy_reports, args, fidelity: dict | None = None,
               threads: int | None = None) -> ModelCard:
    """The Hugging Face model card: YAML metadata (library, license, tags, data, accuracy per split as a
    model-index) above the prose and tables a reader wants. ``threads``: those the timings were measured
    with (recorded in accuracy.json: a card rewritten later by a process with other threads must not relabel them)."""
    meta = loaded.metadata
    recipe = meta.get("recipe", {})
    # the recipe's guidance scale (named "guidance" in records written before it took diffusers' name)
    trained_w = recipe.get("guidance_scale", recipe.get("guidance", loaded.guidance_scale))
    params = sum(p.numel() for p in loaded.unet.parameters()) / 1e6
    headline = table.get("dpmsolver-20", next(iter(table.values())))
    data = ModelCardData(
        library_name="diffusers", license="mit", model_name="lab6 reference model",
        tags=["diffusers", "ddpm", "classifier-free-guidance", "i-clevr", "multi-label-conditional", "lab6"],
        datasets=["i-CLEVR (course copy)"], metrics=["top-k accuracy"],
        eval_results=[EvalResult(task_type="conditional-image-generation", dataset_type="i-clevr",
                                 dataset_name=f"i-CLEVR {split}", dataset_split=split, metric_type="accuracy",
                                 metric_value=round(row[split], 4), metric_name=f"top-k accuracy ({name} proxy)")
                      for name, row in headline.items() for split in (*SPLITS, "pooled")])
    body = [
        "# lab6 reference model",
        "",
        f"A conditional DDPM for i-CLEVR: {params:.1f}M-parameter `ConditionalUNet` ({recipe.get('conditioning')} "
        f"conditioning), trained at {recipe.get('image_size')}x{recipe.get('image_size')}"
        + (" and upsampled to 64x64." if recipe.get("image_size", 64) != 64 else ".")
        + (f" A 64-px refiner ({sum(p.numel() for p in loaded.refiner.parameters()) / 1e6:.1f}M parameters, trained "
           "on low noise levels only) then redraws the last "
           f"{loaded.config.refiner_strength:g} of its noise schedule at 64x64 in {loaded.refiner_steps(20)} steps "
           "(at 20 first-stage steps)"
           + (" spaced as Karras et al. down to t = 0" if loaded.config.refiner_spacing == "karras" else "")
           + ": edges, shadows and texture (`refine=False` or `--no-refine` skips it)." if hasattr(loaded, "refiner")
           else ""),
        "",
        "```python",
        "from lab6.loading import load_pipeline",
        "pipe = load_pipeline(\"lab6/assets/model\")",
        "images = pipe([[\"red cube\", \"blue sphere\"]], num_inference_steps=20).images",
        "```",
        "",
        "## Training",
        "",
        f"- Data: the course's i-CLEVR training set (18,009 images, `{Path(meta.get('data_root', '')).name}`).",
        f"- Command: `{args.command or 'lab6 train --preset cpu'}`",
        *stage_lines(meta),
        f"- Recipe: {recipe.get('beta_schedule')} schedule, {recipe.get('prediction')} prediction, min-SNR "
        f"gamma {recipe.get('min_snr_gamma')}, batch {recipe.get('batch_size')}, lr {recipe.get('lr')}, EMA "
        f"{recipe.get('ema_decay')}, label dropout {recipe.get('cond_dropout')}.",
        f"- Sampled with classifier-free guidance w = {loaded.guidance_scale:g}"
        + (f" (training evaluated at w = {trained_w:g}; w chosen on the held-out conditions)"
           if trained_w != loaded.guidance_scale else "")
        + f", starting noise `{loaded.initial_noise}`.",
        *refiner_lines(meta, loaded.config.get("refiner_strength"), args.refiner_command),
        "",
        "## Accuracy",
        "",
        "Top-k accuracy scored by the shipped proxy evaluators, trained on real images ("
        + "; ".join(f"{name}: {r['heldout_accuracy']:.4f} on {r['heldout_images']} held-out real images"
                    for name, r in proxy_reports.items())
        + "). `heldout` is 128 random valid conditions (`lab6.labels.heldout_conditions()`). Seeds "
        + ", ".join(map(str, SEEDS)) + " pooled; `pooled`: every split and seed together.",
        "",
        "| sampler | evaluator | " + " | ".join(SPLITS) + " | pooled | seconds for 32 images"
        + (f" ({threads} CPU thread(s))" if threads else "") + " |",
        "| --- | --- | " + " | ".join("---" for _ in SPLITS) + " | --- | --- |",
    ]
    for key, by_evaluator in table.items():
        for name, row in by_evaluator.items():
            body.append(f"| {key} | {name} | " + " | ".join(f"{row[s]:.4f}" for s in (*SPLITS, "pooled"))
                        + f" | {seconds[key]:.1f} |")
    body += ["", "DDIM and DPM-Solver++ solve the same probability-flow ODE from the same starting noise, so they "
             "draw nearly the same images and their scores often coincide; DDPM-1000 (stochastic) is in "
             "`bench/bench_sampling.py`.", *fidelity_lines(fidelity),
             "", "Reproduce: the command above, then `python tools/ship_model.py` (see its docstring)."]
    return ModelCard.from_template(data, template_str=CARD_TEMPLATE, body="\n".join(body))


def fidelity_lines(fidelity: dict | None) -> list[str]:
    """The card's fidelity section: ``bench/bench_fidelity.py --json``'s table, as that benchmark prints it."""
    if not fidelity:
        return []
    lines = ["", "## Fidelity", "", f"`bench/bench_fidelity.py`: {fidelity['n']} images per set against held-out "
             "real images (Frechet distance in each evaluator's penultimate features; sharpness as Laplacian variance "
             "over real images'; background colour cast in 0-255).", "", *fidelity["table"]]
    if fidelity.get("round_trip_table"):  # absent from an older bench_fidelity's JSON
        lines += ["", "The native 64-px images scored again after the 32 -> 64 px round trip that the course's "
                  "evaluator's training images went through: an evaluator trained on such images only (the ResNet18 "
                  "proxy) misreads sharp detail, and the gap is how much.", "", *fidelity["round_trip_table"]]
    return lines


if __name__ == "__main__":
    main()
