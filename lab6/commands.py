"""What each verb of the ``lab6`` command does, once ``lab6.cli`` has read its options into ``args``.

Each verb imports what it uses itself, so it loads only that: ``sample`` no training loop, plots or renderer.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def cmd_train(args) -> None:
    if args.processes > 1:
        return launch_processes(args.processes, args.argv)
    from .config import TrainConfig
    from .data_root import resolve_data_root
    from .presets import default_preset, preset
    from .train import process_state, train
    from .train_pair import train_pair

    budget = {k: v for k, v in (("steps", args.steps), ("epochs", args.epochs), ("minutes", args.minutes)) if v}
    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("seed", args.seed),
                                   ("eval_every", args.eval_every), ("checkpoint_minutes", args.checkpoint_minutes),
                                   ("checkpoint_steps", args.checkpoint_steps), ("log_with", args.log_with),
                                   ("conditioning", args.conditioning),
                                   ("init_from", args.init_from and str(args.init_from))) if v is not None}
    overrides.update(TrainConfig.parse_override(item) for item in args.set or [])
    saved = args.out / "train_config.json"
    if args.resume and saved.is_file():
        cfg = TrainConfig.from_json(saved).replace(**budget, **overrides)
    else:
        cfg = preset(args.preset or default_preset(), **budget, **overrides)
    root = resolve_data_root(args.data_root)
    common = dict(resume=args.resume, evaluator=args.evaluator, progress=not args.quiet)
    if args.refiner_minutes:
        model_dir = train_pair(cfg, root, args.out, refiner_minutes=args.refiner_minutes, **common)
    else:
        model_dir = train(cfg, root, args.out, **common)
    if model_dir is not None:
        process_state().print(f"model written to {model_dir}")  # once, from the main process of several


def launch_processes(processes: int, argv: list[str]) -> None:
    """Run this same ``lab6 train`` as ``processes`` processes through ``accelerate launch``, in place of this one
    (so a Ctrl-C or SIGTERM reaches them as it would this process). On a CPU they join one gloo group, one thread
    each, and split each batch: on 2 cores 1.7x one thread, where one process of two threads gives 1.5x
    (``bench/bench_cores.py``); on GPUs, one GPU each."""
    cores = os.cpu_count() or 1
    if processes > cores:
        raise ValueError(f"--processes {processes} on a machine of {cores} cores: each process needs a core of its "
                         f"own; use --processes {cores} or fewer")
    rest, items = [], iter(argv)
    for item in items:  # this command without its --processes N (or --processes=N)
        if item == "--processes":
            next(items, None)
        elif not item.startswith("--processes="):
            rest.append(item)
    os.execve(sys.executable, launch_command(processes, "-m", "lab6.cli", *rest),
              {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def launch_command(processes: int, *target: str) -> list[str]:
    """The ``accelerate launch`` command line that runs ``target`` (a script and its arguments, or ``-m`` and a
    module) as ``processes`` processes on this machine. ``--multi_gpu`` launches through torchrun, where on a
    machine without GPUs the processes join a gloo group (``lab6.train.process_state``); accelerate's ``--cpu``
    launcher would need MPI for several."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *target]


def cmd_distill(args) -> None:
    from .data_root import resolve_data_root
    from .progressive import distill

    model_dir = distill(args.model, resolve_data_root(args.data_root), args.out, sampling_steps=args.to_steps,
                        guidance_scale=args.guidance_scale, resume=args.resume, minutes=args.minutes)
    if model_dir is not None:
        steps = args.to_steps
        how = f"in {steps} DDIM step{'s' * (steps > 1)}" if steps else "at guidance_scale 1"
        print(f"model written to {model_dir}: its first stage draws {how}, one network call per step")


def sampling_of(args):
    """The ``sampling.Sampling`` that a verb's sampling options (``cli._sampling_options``) describe."""
    from .sampling import Sampling

    return Sampling(args.sampler, args.steps, args.guidance_scale, args.noise, args.seed,
                    getattr(args, "refine", True))


def cmd_sample(args) -> None:
    from .images import check_output_folder
    from .labels import load_conditions
    from .loading import load_pipeline
    from .sample_job import run_sample_job

    check_output_folder(args.out)
    conditions = load_conditions(args.conditions)
    pipe = load_pipeline(args.model, device=args.device)
    run_sample_job(pipe, conditions, args.out, sampling_of(args), chunk_size=args.chunk_size, resume=args.resume,
                   progress=not args.quiet)
    print(f"{len(conditions)} images, grid.png and conditions.json written to {args.out}")


def cmd_pair(args) -> None:
    from .loading import load_pipeline, save_pipeline
    from .refiner import with_refiner

    if args.out.exists():
        raise FileExistsError(f"{args.out} exists: give a new folder for the paired model")
    pipe = with_refiner(load_pipeline(args.model), load_pipeline(args.refiner), args.strength, spacing=args.spacing,
                        step_ratio=args.step_ratio)
    save_pipeline(pipe, args.out, pipe.metadata)
    print(f"{args.out}: {args.model}, then the refiner {args.refiner} over the last {args.strength:g} of its schedule "
          f"(20 + {pipe.refiner_steps(20)} steps at --steps 20); use it as any model folder (--model {args.out})")


def cmd_evaluate(args) -> None:
    from .images import check_drawn_for, load_images
    from .labels import load_conditions
    from .proxy import score_data_root
    from .run_files import write_text_atomic
    from .scoring import load_evaluators, per_image_hits, score_all

    if args.dataset is not None and (args.images or args.conditions):
        raise ValueError("give either --dataset ROOT or --images DIR with --conditions FILE, not both")
    if args.dataset is None and not (args.images and args.conditions):
        raise ValueError("give --images DIR and --conditions FILE (or --dataset ROOT to score a data root's images)")
    if args.dataset is None and args.limit:
        raise ValueError("--limit only applies to --dataset")
    evaluators = load_evaluators(args.evaluator, args.data_root, device=args.device)
    scores = {}
    if args.dataset is not None:
        for evaluator in evaluators:
            scores[evaluator.name], conditions = score_data_root(evaluator, args.dataset, limit=args.limit,
                                                                 seed=args.seed, progress=False)
        source, out = {"dataset": str(args.dataset)}, args.out
    else:
        conditions = load_conditions(args.conditions)
        check_drawn_for(args.images, conditions, str(args.conditions))
        images = load_images(args.images, len(conditions))
        scores = score_all(evaluators, images, conditions)
        source, out = {"conditions": str(args.conditions)}, args.out or Path(args.images) / "accuracy.json"
    result = {"accuracy": {name: score.accuracy for name, score in scores.items()},
              "evaluators": {e.name: e.source for e in evaluators}, **source,
              "per_image": per_image_hits(scores, conditions)}
    where = ""
    if out is not None:
        write_text_atomic(out, json.dumps(result, indent=2))
        where = f" -> {out}"
    labels = sum(len(c) for c in conditions)
    print(", ".join(f"{name} accuracy {score.accuracy:.4f} ({sum(score.hits)}/{labels} labels)"
                    for name, score in scores.items()) + f", {len(conditions)} images{where}")


def cmd_evaluator_train(args) -> None:
    from .data_root import resolve_data_root
    from .proxy import train_proxy

    train_proxy(resolve_data_root(args.data_root), args.out, arch=args.arch, epochs=args.epochs,
                batch_size=args.batch_size, weight_decay=args.weight_decay, max_shift=args.max_shift,
                native_fraction=args.native_fraction, seed=args.seed,
                progress=not args.quiet)


def cmd_report(args) -> None:
    from .report import write_report

    write_report(args.out, data_root=args.data_root, model=args.model, evaluator=args.evaluator,
                 sampling=sampling_of(args), device=args.device)


def cmd_figures(args) -> None:
    from .figures import write_figures
    from .settings import notebook_settings

    settings = notebook_settings(quick=True if args.quick else None, data_root=args.data_root, model=args.model,
                                 evaluator=args.evaluator, figures=args.out, device=args.device)
    settings.sampling = sampling_of(args).replace(steps=args.steps or settings.sampling.steps)
    paths = write_figures(args.out, args.which, settings=settings, run=args.run, progress=not args.quiet)
    print(f"{len(paths) // 2} figures (PNG + PDF) written to {args.out}")


def cmd_data_render(args) -> None:
    from .synthetic import render_dataset

    root = render_dataset(args.out, args.n, seed=args.seed, workers=args.workers)
    print(f"synthetic data root written to {root}")


def cmd_data_priors(args) -> None:
    from .data import ICLEVRDataset
    from .data_root import resolve_data_root
    from .refiner import detail_priors

    root = resolve_data_root(args.data_root)
    dataset = ICLEVRDataset(root, image_size=64, progress=True)
    grey, colour = detail_priors(dataset.images, args.patch)  # uint8: a quarter of the memory of floats
    print(f"{root}: {len(dataset)} images at 64 px, {args.patch}x{args.patch} patches: detail_prior {grey:.3g}, "
          f"detail_chroma_prior {colour:.3g}")
    print(f"a refiner for them: lab6 train --preset refiner64 --set detail_prior={grey:.3g} "
          f"--set detail_chroma_prior={colour:.3g} --init-from MODEL ...")
