"""The 3-D scene of the built-in synthetic data: the objects, and where they stand.

A scene is a list of :class:`SceneObject` on the floor (``z = 0``), laid out the way i-CLEVR grows its scenes
(:func:`sample_layout`). The camera, the solids and ray casting are ``lab6.geometry``'s; ``lab6.render`` turns a
scene into pixels; ``lab6.synthetic`` renders a whole data root.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .geometry import CAMERA_AZIMUTH, SceneObject, bounding_corners, project
from .labels import CLEVR_RGB, ConditionError, validate_condition

#: Objects per scene, as in the course's training set.
MIN_OBJECTS, MAX_OBJECTS = 1, 3

#: CLEVR's colours (properties.json), 0-255: the one table, kept in ``lab6.labels``.
COLOUR_RGB = CLEVR_RGB

# ---------------------------------------------------------------------------------------------- layout rules
#: Later objects stand this far (uniform range, world units) from an earlier object, in any direction.
NEIGHBOUR_DISTANCE = (2.5, 3.7)
#: Share of later objects placed straight behind, right of, in front of or left of their anchor (as seen by
#: the camera, give or take a few degrees), as in i-CLEVR; the others go in any direction.
CARDINAL_SHARE = 0.5
#: Centres of two objects are at least this far apart (footprints have radius <= 0.58 * sqrt(2) = 0.82).
MIN_SEPARATION = 1.8
#: Largest overlap of two objects' screen boxes, as a share of the smaller box (limits occlusion).
MAX_SCREEN_OVERLAP = 0.4


class SyntheticDataError(ValueError):
    """Bad arguments to the synthetic renderer, or a folder it cannot write."""


# ---------------------------------------------------------------------------------------------- validation
def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, (list, tuple)) and not (MIN_OBJECTS <= len(labels) <= MAX_OBJECTS):
        raise ConditionError(
            f"a synthetic scene holds {MIN_OBJECTS}-{MAX_OBJECTS} objects, got {len(labels)}: {list(labels)!r}"
        )
    validate_condition(labels)  # type, unknown names (with suggestions), repeated labels
    return list(labels)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


# ---------------------------------------------------------------------------------------------- layout
def _screen_extent(obj: SceneObject) -> np.ndarray:
    """(row0, row1, col0, col1) of the object's box in the unit image (1 x 1)."""
    rc = project(bounding_corners(obj), 1)
    return np.array([rc[:, 0].min(), rc[:, 0].max(), rc[:, 1].min(), rc[:, 1].max()])


def _hidden_share(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two screen extents, as a share of the smaller one."""
    rows = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    cols = max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    smaller = min((a[1] - a[0]) * (a[3] - a[2]), (b[1] - b[0]) * (b[3] - b[2]))
    return rows * cols / smaller


def sample_layout(labels: Sequence[str], rng: np.random.Generator) -> list[SceneObject]:
    """Place the objects of a condition: the first at the centre, each later one near an earlier one.

    As in i-CLEVR, every new object stands 2.5-3.7 units from a randomly chosen earlier object, often straight
    behind, right of, in front of or left of it. It stays at least ``MIN_SEPARATION`` from all others, inside
    the frame, and its screen box overlaps no other object's by more than ``MAX_SCREEN_OVERLAP``, so that
    every object stays recognisable.
    """
    labels = _check_labels(labels)
    placed: list[SceneObject] = []
    extents: list[np.ndarray] = []
    for label in labels:
        yaw = float(rng.uniform(0.0, 0.5 * math.pi)) if label.endswith("cube") else 0.0
        if not placed:
            placed.append(SceneObject(label, 0.0, 0.0, yaw))
            extents.append(_screen_extent(placed[-1]))
            continue
        for _ in range(1000):
            anchor = placed[int(rng.integers(len(placed)))]
            dist = rng.uniform(*NEIGHBOUR_DISTANCE)
            if rng.uniform() < CARDINAL_SHARE:
                angle = CAMERA_AZIMUTH + 0.5 * math.pi * int(rng.integers(4)) + rng.normal(0.0, math.radians(10.0))
            else:
                angle = rng.uniform(0.0, 2.0 * math.pi)
            x, y = anchor.x + dist * math.cos(angle), anchor.y + dist * math.sin(angle)
            if min(math.hypot(x - o.x, y - o.y) for o in placed) < MIN_SEPARATION:
                continue
            candidate = SceneObject(label, x, y, yaw)
            extent = _screen_extent(candidate)
            if extent[0] < -0.01 or extent[1] > 1.01 or extent[2] < 0.0 or extent[3] > 1.0:
                continue
            if any(_hidden_share(extent, other) > MAX_SCREEN_OVERLAP for other in extents):
                continue
            placed.append(candidate)
            extents.append(extent)
            break
        else:  # pragma: no cover - the ring around the centre always has room
            raise RuntimeError(f"could not place {label!r} among {placed}")
    return placed

