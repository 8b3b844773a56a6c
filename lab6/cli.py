"""The ``lab6`` command: train, distill, sample, pair, evaluate, evaluator-train, report, figures, data render|priors.

Verb names, options and output files are a contract that scripts and the notebooks rely on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import commands
from .cli_runner import run_verb
from .evaluator import EvaluatorLoadError
from .labels import ConditionError
from .loading import ModelLoadError
from .presets import PRESETS
from .trackers import LOG_WITH

#: What ``lab6 --help`` says first (plain text: argparse prints it as it is).
DESCRIPTION = ("train a conditional DDPM on i-CLEVR scenes, draw images for label conditions, and score them "
               "for a report")
#: Failures whose message already says what is wrong and what to do: printed as they are.
EXPECTED_ERRORS = (ConditionError, EvaluatorLoadError, ModelLoadError, OSError, ValueError)


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder in the course layout (objects.json, train.json, test.json, new_test.json, iclevr/); "
                        "default: $LAB6_DATA, else the built-in synthetic set")


def _patch_size(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be 2 or more (a one-pixel patch holds no detail), got {text}")
    return value


def _device(text: str) -> str:
    """``--device``: a torch device this machine has, checked before any model is loaded (torch's own error
    comes from deep inside the first ``.to()``, and says nothing of what to type instead)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: torch sees no CUDA GPU here (none, no driver, or a CPU-only "
                                             "torch build); use --device cpu")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA GPU(s), "
                                             f"cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: torch sees no Apple GPU (MPS) here; use --device cpu")
    return text


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=_device, default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps")


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _sampling_options(p: argparse.ArgumentParser) -> None:
    """The options of a ``sampling.Sampling`` (``commands.sampling_of`` reads them back into one)."""
    from .diffusion import INITIAL_NOISE
    from .samplers import SAMPLERS

    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="ddpm (1,000 stochastic steps, each adding fresh noise of --noise's kind), ddim or dpmsolver "
                        "(DPM-Solver++); default: the model's own (dpmsolver, or a few-step distilled model's ddim)")
    p.add_argument("--steps", type=_positive_int, help="sampler steps (default: the model's own, else 1000/50/20)")
    p.add_argument("--guidance-scale", "--guidance", dest="guidance_scale", type=float, default=None,
                   help="classifier-free guidance scale w (0 unconditional, 1 conditional; default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="the same seed draws the same images (default 0)")
    p.add_argument("--noise", choices=INITIAL_NOISE, help="starting noise, and DDPM's at every step: grey-mean (its "
                   "channel means made equal, so no colour cast) or gaussian (plain); default: the model's")
    _device_option(p)


def _model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help="model or run folder (default: the shipped model)")


def _evaluators_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evaluator", type=Path, action="append",
                   help="checkpoint.pth or .safetensors; repeat for several (default: the data root's checkpoint.pth, "
                        "else the shipped ResNet18 proxy, and the shipped proxies of other architectures)")


def _refine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="skip the shipped model's 64-px refiner: its 32-px first stage alone, upsampled (blurred, "
                        "as the 32 -> 64 px images the course's evaluator was trained on)")


def _train_verb(verbs) -> None:
    p = verbs.add_parser("train", help="train a conditional DDPM (accelerate; CPU, GPU or several processes)")
    _add_data_root(p)
    p.add_argument("--preset", default=None, metavar="NAME",
                   help=f"recipe: {', '.join(PRESETS)} (default: gpu on a CUDA GPU, else cpu; see lab6.presets)")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, metrics.csv, samples/, model/)")
    p.add_argument("--minutes", type=_positive_float, help="wall-clock budget in minutes of training")
    p.add_argument("--steps", type=_positive_int, help="budget in optimiser steps")
    p.add_argument("--epochs", type=_positive_float, help="budget in epochs")
    p.add_argument("--refiner-minutes", type=_positive_float, metavar="R", help="then a 64-px refiner grown from "
                   "the model for R of the --minutes; out/model is the pair (lab6.train_pair)")
    p.add_argument("--processes", type=_positive_int, default=1, help="N processes of one thread (both cores: 2, "
                   "1.7x one thread; two threads 1.5x) or one GPU each")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--init-from", type=Path, help="fine-tune from this model's or run's weights (a 32-px one grows "
                   "into a patch-2 64-px recipe such as cpu64: lab6.refiner.grow_to_patches)")
    p.add_argument("--batch-size", type=_positive_int, help="images per optimiser step (default: the preset's)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, help="seed of the weights, noise and batches (default: the preset's, 0)")
    p.add_argument("--conditioning", choices=("add", "cross_attention"),
                   help="labels added to the time embedding, or one cross-attention token per object")
    p.add_argument("--eval-every", type=_positive_int, help="steps between sample grids and accuracy")
    p.add_argument("--checkpoint-minutes", type=_positive_float, help="minutes between checkpoints (default 10): "
                   "at most this much is lost when a run is killed")
    p.add_argument("--checkpoint-steps", type=_positive_int, help="also a checkpoint every this many steps")
    p.add_argument("--evaluator", type=Path, help="the evaluator of training (default: data root's or shipped)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="any TrainConfig field, e.g. prediction=v")
    p.add_argument("--log-with", choices=LOG_WITH, help="training curves besides metrics.csv: tensorboard (in "
                   "<out>/logs/), wandb, trackio, all installed, or none (default: tensorboard where installed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_train)


def _distill_verb(verbs) -> None:
    p = verbs.add_parser("distill", help="a model whose first stage draws its guided images in one call per step, "
                                         "and in a few steps with --to-steps")
    _add_data_root(p)
    p.add_argument("--model", type=Path, required=True, help="the guided model (or run) to distil: the teacher")
    p.add_argument("--out", type=Path, required=True, help="folder of the runs (guidance/, steps-8/, ...) and model/")
    p.add_argument("--minutes", type=_positive_float, required=True, help="wall-clock minutes, shared by the runs")
    p.add_argument("--to-steps", type=int, choices=(8, 4, 2, 1), help="then halve DDIM 16 down to this many steps "
                   "(progressive distillation; default: the guidance's alone)")
    p.add_argument("--guidance-scale", type=_positive_float, help="the teacher's w to distil (default: its own)")
    p.add_argument("--resume", action="store_true", help="keep the finished runs in --out and continue the stopped "
                   "one from its newest checkpoint")
    p.set_defaults(func=commands.cmd_distill)


def _sample_verb(verbs) -> None:
    p = verbs.add_parser("sample", help="draw one 64x64 image per condition of a conditions file")
    _model_option(p)
    p.add_argument("--conditions", type=Path, required=True, help="test.json-style file")
    p.add_argument("--out", type=Path, required=True, help="writes <out>/<i>.png, grid.png, conditions.json")
    _sampling_options(p)
    _refine_option(p)
    p.add_argument("--chunk-size", type=_positive_int, default=None, help="conditions drawn together through every "
                   "step, each chunk's PNGs written as it finishes (default 32)")
    p.add_argument("--resume", action="store_true",
                   help="continue the job in --out: draw only the chunks not yet written, the same images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_sample)


def _pair_verb(verbs) -> None:
    p = verbs.add_parser("pair", help="a two-stage model folder: a model, then a 64-px refiner over its last noise "
                                      "levels (e.g. a run of --preset refiner64)")
    p.add_argument("--model", type=Path, required=True, help="the first stage: any model or run folder")
    p.add_argument("--refiner", type=Path, required=True, help="a native 64-px model or run, ideally trained with "
                                                               "max_timestep (the refiner64 preset)")
    p.add_argument("--strength", type=float, default=0.2,
                   help="the last share of the refiner's schedule it redraws (default 0.2; at most max_timestep/1000)")
    p.add_argument("--spacing", choices=("karras", "uniform"), default="karras",
                   help="the refiner's steps: karras (down to t = 0, keeps the grain a refiner draws; default) or "
                        "uniform (the last steps of an even schedule, for a refiner trained without the detail prior)")
    p.add_argument("--step-ratio", type=float, default=None, metavar="R",
                   help="the refiner's steps per first-stage step (default: --strength; 0.2 gives 4 steps at "
                        "--steps 20 whatever the strength)")
    p.add_argument("--out", type=Path, required=True, help="the new model folder")
    p.set_defaults(func=commands.cmd_pair)


def _evaluate_verb(verbs) -> None:
    p = verbs.add_parser("evaluate",
                         help="score <images>/<i>.png against a conditions file, or a data root's own images",
                         description="Either --images DIR --conditions FILE (generated images), or --dataset ROOT "
                                     "(the root's training images against their train.json labels: how well an "
                                     "evaluator transfers, e.g. one trained on renders scored on real images).")
    p.add_argument("--images", type=Path, help="folder of <i>.png, as lab6 sample writes it")
    p.add_argument("--conditions", type=Path, help="the test.json-style file the images were drawn for")
    p.add_argument("--dataset", type=Path, help="a data root in the course layout to score instead of --images")
    p.add_argument("--limit", type=_positive_int, help="with --dataset: score this many random images")
    p.add_argument("--seed", type=int, default=0, help="with --dataset --limit: which random images")
    _evaluators_option(p)
    p.add_argument("--data-root", type=Path, default=None, help="where to look for checkpoint.pth")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON result (default: <images>/accuracy.json; with --dataset, only when given)")
    _device_option(p)
    p.set_defaults(func=commands.cmd_evaluate)


def _evaluator_train_verb(verbs) -> None:
    p = verbs.add_parser("evaluator-train", help="train a proxy evaluator (ResNet18 in the official format, or any "
                                                 "torchvision architecture)")
    _add_data_root(p)
    p.add_argument("--out", type=Path, required=True,
                   help="checkpoint path: .pth (official format, ResNet18 only) or .safetensors (any architecture)")
    p.add_argument("--arch", default="resnet18",
                   help="torchvision classification architecture (default resnet18, the official one; "
                        "e.g. regnet_y_800mf)")
    p.add_argument("--native-fraction", type=float, default=0.5,
                   help="share of training images shown at native 64 px; the rest go 32 -> 64 px as the official "
                        "evaluator's did (default 0.5)")
    p.add_argument("--epochs", type=_positive_int, default=8, help="passes over the training images (default 8)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per optimiser step (default 64)")
    p.add_argument("--weight-decay", type=float, default=1e-4,
                   help="AdamW weight decay (default 1e-4, the ResNet18 proxy's; raise it for a network that "
                        "overfits)")
    p.add_argument("--max-shift", type=int, default=0,
                   help="random translation of each training image, up to this many pixels each way (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the held-out split and the batches")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_evaluator_train)


def _report_verb(verbs) -> None:
    p = verbs.add_parser("report", help="grids, per-image PNGs, denoising figure and accuracy for test and new_test")
    _add_data_root(p)
    _model_option(p)
    _evaluators_option(p)
    p.add_argument("--out", type=Path, required=True,
                   help="report folder: per stage (first_stage, refined) grids and per-image PNGs; the denoising "
                        "figure, accuracy.json and summary.md (its first line says which images to submit)")
    _sampling_options(p)
    _refine_option(p)
    p.set_defaults(func=commands.cmd_report)


def _figures_verb(verbs) -> None:
    p = verbs.add_parser("figures", help="the notebooks' figures as PNG + PDF: data, training, denoising, samplers, "
                                         "guidance, accuracy")
    _add_data_root(p)
    _model_option(p)
    p.add_argument("--evaluator", type=Path, default=None, help="default: data root's checkpoint.pth, else shipped")
    p.add_argument("--run", type=Path, help="run for the loss curve (default: --model when it is a run folder)")
    p.add_argument("--out", type=Path, default=Path("reports/figures"), help="folder (default reports/figures)")
    p.add_argument("--which", nargs="+", default=["all"],
                   choices=["data", "training", "denoising", "samplers", "guidance", "accuracy", "all"],
                   help="figure groups (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sweeps and few sampler steps (as LAB6_QUICK=1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _sampling_options(p)
    p.set_defaults(func=commands.cmd_figures)


def _data_verb(verbs) -> None:
    p = verbs.add_parser("data", help="data utilities")
    data_verbs = p.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    r = data_verbs.add_parser("render", help="render a synthetic i-CLEVR data root")
    r.add_argument("--out", type=Path, required=True, help="the new data root (course layout)")
    r.add_argument("--n", type=int, default=18000, help="training images to render (default 18000, as train.json)")
    r.add_argument("--seed", type=int, default=0, help="the same seed renders byte-identical files (default 0)")
    r.add_argument("--workers", type=int, default=None,
                   help="processes (default: 2, or 1 on one core); any number renders the same files")
    r.set_defaults(func=commands.cmd_data_render)
    r = data_verbs.add_parser("priors", help="a refiner's detail priors (grain energy, grey and colour) measured on a "
                                             "data root's images: the --set values for --preset refiner64")
    _add_data_root(r)
    r.add_argument("--patch", type=_patch_size, default=2, help="the refiner's patch size (refiner64: 2)")
    r.set_defaults(func=commands.cmd_data_priors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab6", description=DESCRIPTION)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add_verb in (_train_verb, _sample_verb, _pair_verb, _evaluate_verb, _evaluator_train_verb, _report_verb,
                     _figures_verb, _data_verb, _distill_verb):
        add_verb(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A failure ends in one line, ``lab6 VERB: error: ...``, and exit status 2 (130 when
    interrupted); ``--debug`` or ``LAB6_DEBUG=1`` shows the traceback instead (``lab6.cli_runner``)."""
    return run_verb(build_parser(), argv, EXPECTED_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
