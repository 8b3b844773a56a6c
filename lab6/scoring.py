"""Scoring with every evaluator: which ones (the data root's ``checkpoint.pth`` when it has one, and the shipped
proxies), loaded with distinct names, and their scores of the same images side by side.

One classifier family can be blind to a defect that another sees (a ResNet18 scored colour-cast images 11 points
higher than a classifier of another architecture that was as accurate on real images), so lab6 scores with two
evaluators of different architectures by default (docs/evaluators.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .evaluator import Evaluator, Score
from .evaluator_files import OFFICIAL_ARCH, EvaluatorLoadError, shipped_evaluator_path, shipped_evaluator_paths


def default_evaluator_paths(data_root: str | Path | None = None) -> list[Path]:
    """The evaluators lab6 scores with: the data root's ``checkpoint.pth`` when present (it replaces the shipped
    ResNet18 proxy, never a proxy of another architecture), and every shipped proxy."""
    from .data_root import evaluator_checkpoint

    shipped = shipped_evaluator_paths()
    official = evaluator_checkpoint(data_root)
    if official is None:
        return shipped
    return [official, *(p for p in shipped if p != shipped_evaluator_path(OFFICIAL_ARCH))]


def load_evaluators(paths: list[str | Path] | None = None, data_root: str | Path | None = None,
                    device: str | torch.device = "cpu", *, required: bool = True, log=print) -> list[Evaluator]:
    """Every evaluator to score with: ``paths`` when given, else :func:`default_evaluator_paths`.

    With ``required=False`` a failure is logged and scoring goes on without accuracy (an empty list), which is
    what training, the notebooks and the picker want; the command line's ``evaluate`` requires one.
    """
    try:
        chosen = [Path(p) for p in paths] if paths else default_evaluator_paths(data_root)
        if not chosen:
            raise EvaluatorLoadError(
                "no evaluator: the data root has no checkpoint.pth and no proxy evaluator is shipped in this copy. "
                "Train one with `lab6 evaluator-train --data-root D --out evaluator.pth` and pass --evaluator.")
        evaluators = [Evaluator.load(path, device) for path in chosen]
    except EvaluatorLoadError as err:
        if required:
            raise
        log(f"no accuracy: {err}")
        return []
    names = [e.name for e in evaluators]
    for i, evaluator in enumerate(evaluators):  # two files of one architecture still get distinct columns
        if names.count(evaluator.name) > 1:
            evaluator.name = f"{evaluator.name}#{i + 1}"
    return evaluators


def one_evaluator(choice, data_root: str | Path | None = None, device: str | torch.device = "cpu"
                  ) -> tuple[Evaluator | None, str | None]:
    """One evaluator and, when there is none, why: ``choice`` an ``Evaluator``, a file, None for the first default
    (the data root's ``checkpoint.pth``, else the shipped ResNet18 proxy), or False for none."""
    if choice is False:
        return None, "evaluator turned off"
    if isinstance(choice, Evaluator):
        return choice, None
    try:
        return load_evaluators([choice] if choice else None, data_root, device=device)[0], None
    except EvaluatorLoadError as err:
        return None, str(err)


def score_all(evaluators: list[Evaluator], images: torch.Tensor, conditions: list[list[str]]) -> dict[str, Score]:
    """Each evaluator's score of the same images, by evaluator name."""
    return {e.name: e.score(images, conditions) for e in evaluators}


def per_image_hits(scores: dict[str, Score], conditions: list[list[str]]) -> list[dict]:
    """One row per scored image: its condition, its number of labels and each evaluator's hits (reports' JSON)."""
    return [{"condition": c, "labels": len(c), "hits": {name: score.hits[i] for name, score in scores.items()}}
            for i, c in enumerate(conditions)]
