"""The 24 i-CLEVR labels, and conditions: lists of label names <-> 24-d multi-hot vectors.

A label is a (shape, colour) pair; its index is ``8 * shape + colour`` in the order below, which is the
order of the course's ``objects.json`` ("gray cube" = 0, "red cube" = 1, ... "yellow cylinder" = 23).
"""

from __future__ import annotations

import difflib
import json
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

SHAPES = ("cube", "sphere", "cylinder")
COLOURS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
#: CLEVR's colours (RGB, 0-255), as in CLEVR's properties.json.
CLEVR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
    "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51),
}


LABELS = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)
LABEL_TO_INDEX = {name: i for i, name in enumerate(LABELS)}
NUM_LABELS = len(LABELS)

#: The scenes hold 1-3 objects; the official evaluator was trained on 1-5, so 4-5 only warn.
MAX_OBJECTS_TRAINED = 3
MAX_OBJECTS_EVALUATOR = 5

#: The three objects of the lab's denoising-process figure.
DENOISING_FIGURE_CONDITION = ("red sphere", "cyan cylinder", "cyan cube")


class ConditionError(ValueError):
    """A condition (list of label names) or a conditions file that lab6 cannot use."""


def label_index(name: str) -> int:
    """Index of one label name; an unknown name raises with the closest valid names."""
    if not isinstance(name, str):
        raise ConditionError(f"a label must be a string like 'red cube', got {name!r} ({type(name).__name__})")
    try:
        return LABEL_TO_INDEX[name]
    except KeyError:
        close = difflib.get_close_matches(name.strip().lower(), LABELS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConditionError(
            f"unknown label {name!r}.{hint} Valid labels are '<colour> <shape>' with colour in "
            f"{', '.join(COLOURS)} and shape in {', '.join(SHAPES)}."
        ) from None


def validate_condition(names: Sequence[str]) -> list[int]:
    """Check one condition and return its label indices, in the given order."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConditionError(f"a condition must be a list of label names, got {names!r}")
    if len(names) == 0:
        raise ConditionError("empty condition: a scene needs at least one object, e.g. ['red cube']")
    indices = [label_index(n) for n in names]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConditionError(f"{n!r} appears twice in {list(names)!r}: each object label may appear once")
        seen.add(n)
    if len(names) > MAX_OBJECTS_EVALUATOR:
        raise ConditionError(
            f"{len(names)} objects in {list(names)!r}: at most {MAX_OBJECTS_EVALUATOR} are allowed "
            f"(the training scenes hold 1-{MAX_OBJECTS_TRAINED})"
        )
    if len(names) > MAX_OBJECTS_TRAINED:
        warnings.warn(
            f"{len(names)} objects in {list(names)!r}: the training scenes hold at most "
            f"{MAX_OBJECTS_TRAINED}, so expect weaker images",
            stacklevel=2,
        )
    return indices


def encode(names: Sequence[str]) -> np.ndarray:
    """A condition (list of names) -> float32 multi-hot vector of length 24."""
    vector = np.zeros(NUM_LABELS, dtype=np.float32)
    vector[validate_condition(names)] = 1.0
    return vector


def encode_many(conditions: Iterable[Sequence[str]]) -> np.ndarray:
    """A list of conditions -> (N, 24) float32 multi-hot matrix."""
    rows = [encode(c) for c in conditions]
    return np.stack(rows) if rows else np.zeros((0, NUM_LABELS), dtype=np.float32)


def decode(vector) -> list[str]:
    """A multi-hot vector (numpy, torch or list) -> label names, in label-index order."""
    values = np.asarray(vector.detach().cpu() if hasattr(vector, "detach") else vector, dtype=np.float32)
    if values.shape != (NUM_LABELS,):
        raise ConditionError(f"a multi-hot vector has shape ({NUM_LABELS},), got {values.shape}")
    return [LABELS[i] for i in np.flatnonzero(values > 0.5)]


def load_conditions(path: str | Path) -> list[list[str]]:
    """Read a test.json-style file: a JSON list of conditions, each a list of label names."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConditionError(f"conditions file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ConditionError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, list) or not all(
        isinstance(c, list) and all(isinstance(n, str) for n in c) for c in data
    ):
        raise ConditionError(
            f"{path} must hold a JSON list of lists of label names, "
            f"like [[\"red cube\"], [\"gray sphere\", \"cyan cube\"]]"
        )
    for i, condition in enumerate(data):
        try:
            validate_condition(condition)
        except ConditionError as err:
            raise ConditionError(f"{path}, condition {i}: {err}") from None
    return data


def check_objects(path: str | Path) -> None:
    """Check a course ``objects.json`` against the built-in label order; raise naming the first difference."""
    try:
        mapping = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ConditionError(f"{path} is not valid JSON: {err}") from None
    if mapping == LABEL_TO_INDEX:
        return
    if not isinstance(mapping, dict):
        raise ConditionError(f"{path} must map label names to indices, like {{\"gray cube\": 0, ...}}")
    for name, index in LABEL_TO_INDEX.items():
        if mapping.get(name) != index:
            raise ConditionError(
                f"{path} gives {name!r} the index {mapping.get(name)!r}, but lab6 (and the official evaluator) use "
                f"{index}: labels would be mixed up. Use the course's objects.json, whose order is "
                "8 * shape + colour (cube, sphere, cylinder x gray, red, blue, green, brown, purple, cyan, yellow)")
    extra = sorted(set(mapping) - set(LABEL_TO_INDEX))
    raise ConditionError(f"{path} lists labels lab6 does not know: {', '.join(map(repr, extra[:5]))}")


def random_condition(rng: np.random.Generator, n_objects: int | None = None) -> list[str]:
    """A valid random condition: ``n_objects`` (default: 1-3 at random) distinct labels."""
    n = int(rng.integers(1, MAX_OBJECTS_TRAINED + 1)) if n_objects is None else n_objects
    if not 1 <= n <= MAX_OBJECTS_TRAINED:
        raise ConditionError(f"a scene holds 1-{MAX_OBJECTS_TRAINED} objects, got {n}")
    return [LABELS[i] for i in rng.choice(NUM_LABELS, size=n, replace=False)]


def heldout_conditions(n: int = 128, seed: int = 2024) -> list[list[str]]:
    """The held-out condition set: ``n`` random valid conditions, 1-3 objects, fixed by ``seed``.

    Recipes are compared on it too, so that nothing is tuned to the 64 official conditions alone.
    """
    rng = np.random.default_rng(seed)
    return [random_condition(rng) for _ in range(n)]


def clevr_hex(colour: str) -> str:
    """``"red"`` -> ``"#ad2323"``."""
    return "#{:02x}{:02x}{:02x}".format(*CLEVR_RGB[colour])


def label_hex(label: str) -> str:
    """The CLEVR colour of a label such as ``"red cube"``."""
    return clevr_hex(label.split()[0])


def conditions_tensor(conditions) -> torch.Tensor:
    """Label lists (the test.json form) or a (B, 24) multi-hot tensor -> (B, 24) float, validated."""
    if isinstance(conditions, torch.Tensor):
        if conditions.ndim != 2 or conditions.shape[1] != 24:
            raise ConditionError(f"a condition tensor is (B, 24) multi-hot, got shape {tuple(conditions.shape)}")
        if not torch.all((conditions == 0) | (conditions == 1)):
            raise ConditionError("a condition tensor must hold only 0 and 1 (multi-hot)")
        for row in conditions:
            validate_condition(decode(row))
        multi_hot = conditions.float()
    else:
        if isinstance(conditions, (str, bytes)) or not isinstance(conditions, (list, tuple)):
            raise ConditionError(f"conditions must be a list of label lists, like [['red cube']], got {conditions!r}")
        multi_hot = torch.from_numpy(encode_many(conditions))
    if len(multi_hot) == 0:
        raise ConditionError("no conditions to draw: give at least one, like [['red cube', 'blue sphere']]")
    return multi_hot
