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
import math
import os
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np

from .labels import CLEVR_RGB, LABEL_TO_INDEX, ConditionError, random_condition, validate_condition
from .run_files import cache_dir as default_cache_dir

log = logging.getLogger(__name__)

#: Bump when the renderer's output changes, so cached sets are re-rendered.
VERSION = 1
#: Size of the default synthetic training set: the course's set has 18,009 images.
DEFAULT_N = 18000
#: Objects per scene, as in the course's training set.
MIN_OBJECTS, MAX_OBJECTS = 1, 3
#: Supersampling factor per axis (3 -> 9 rays per output pixel, box-filtered).
SUPERSAMPLE = 3
#: Default worker processes for :func:`render_dataset` (capped by the CPUs this process may use).
DEFAULT_WORKERS = 2
#: Images per job handed to a worker process.
_CHUNK = 64
#: Conditions files written next to the training set: split -> object counts of its 32 conditions.
TEST_SPLITS = {
    "test": (1,) * 6 + (2,) * 12 + (3,) * 14,
    "new_test": (2,) * 12 + (3,) * 20,
}

#: CLEVR's colours (properties.json), 0-255: the one table, kept in ``lab6.labels``.
COLOUR_RGB = CLEVR_RGB

# ---------------------------------------------------------------------------------------------- geometry
#: The one object size (world units): sphere radius, cylinder radius and half height, cube half side. Measured
#: on the course images: their cubes are about as wide as their spheres (no CLEVR-style r / sqrt(2)).
OBJECT_RADIUS = 0.58
CUBE_HALF = OBJECT_RADIUS
CYLINDER_HEIGHT = 2.0 * OBJECT_RADIUS
#: Later objects stand this far (uniform range, world units) from an earlier object, in any direction.
NEIGHBOUR_DISTANCE = (2.5, 3.7)
#: Share of later objects placed straight behind, right of, in front of or left of their anchor (as seen by
#: the camera, give or take a few degrees), as in i-CLEVR; the others go in any direction.
CARDINAL_SHARE = 0.5
#: Centres of two objects are at least this far apart (footprints have radius <= 0.58 * sqrt(2) = 0.82).
MIN_SEPARATION = 1.8
#: Radius of the rounded edges of cubes and cylinders (shading only; silhouettes stay sharp).
_BEVEL = 0.07
#: Largest overlap of two objects' screen boxes, as a share of the smaller box (limits occlusion).
MAX_SCREEN_OVERLAP = 0.4

_CAMERA_LOCATION = np.array([7.3589, -6.9258, 4.9583])
_CAMERA_EULER_DEG = (63.86, 0.0, 46.692)  # Blender XYZ Euler (CLEVR: 63.559; tilted 0.3 deg to match the course images)
_LENS_MM, _SENSOR_MM = 35.0, 32.0
_SOURCE_ASPECT = 240.0 / 320.0  # the course renders are 320x240, squashed to a square


def _camera_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ax, _, az = np.radians(_CAMERA_EULER_DEG)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    rot = rz @ rx
    return rot[:, 0], rot[:, 1], -rot[:, 2]  # right, up, forward


_RIGHT, _UP, _FORWARD = _camera_basis()
_CAMERA_AZIMUTH = math.atan2(_FORWARD[1], _FORWARD[0])  # where the camera looks, on the floor
_TAN_X = 0.5 * _SENSOR_MM / _LENS_MM
_TAN_Y = _TAN_X * _SOURCE_ASPECT

# ---------------------------------------------------------------------------------------------- lighting
# Linear-light model of the floor (fitted by eye and least squares to the look of the course renders):
# a pool of light from a low lamp, fading into a darker far field.
_FLOOR_LAMP = np.array([6.52, -2.97, 2.08])
_FLOOR_AMBIENT, _FLOOR_LAMP_POWER, _FLOOR_FAR = 0.218, 3.60, 0.138
_FLOOR_POOL_CENTRE, _FLOOR_POOL_RADIUS, _FLOOR_POOL_SOFTNESS = (-0.94, -0.21), 5.84, 1.35
_FLOOR_TINT = np.array([0.035, 0.005, -0.042])  # the lit floor is slightly warm
_FLOOR_LAMP_JITTER = np.array([0.8, 0.8, 0.3])  # per image, uniform +-, like CLEVR's lamp jitter
#: Lamps: direction towards each, as azimuth/elevation in degrees (the camera stands at azimuth -43).
#: The back light casts the visible soft shadows; its disk has this angular radius (radians).
_BACK_AZIMUTH, _BACK_ELEVATION, _BACK_SOFTNESS = 100.0, 58.0, 0.28
_KEY_AZIMUTH, _KEY_ELEVATION = -25.0, 35.0
_FILL_AZIMUTH, _FILL_ELEVATION = -120.0, 25.0
_SHADOW_SAMPLES = 8  # per supersample, on objects
_FLOOR_SHADOW_SAMPLES = 16  # per output pixel, on the floor
#: How much of the floor's light the back light brings (the depth of its shadows).
_SHADOW_DEPTH = 0.36
#: Object lighting, in units of albedo (CLEVR colours are linear albedo in Blender).
_AMBIENT, _KEY_POWER, _BACK_POWER, _FILL_POWER, _BOUNCE_POWER = 0.09, 0.205, 0.09, 0.055, 0.03
_SPECULAR, _SHININESS = 0.025, 24.0
#: Per-image jitter: exposure (log-normal sigma) and lamp azimuth/elevation (degrees).
_EXPOSURE_JITTER, _AZIMUTH_JITTER, _ELEVATION_JITTER = 0.05, 12.0, 4.0
#: Render noise at the output resolution, in 0-255 levels: fine luminance grain, per-channel grain, and a
#: smooth luminance mottle (drawn at 1/4 resolution and interpolated), like the course renders' residual noise.
_NOISE_LUMA, _NOISE_CHROMA, _NOISE_MOTTLE = 1.3, 0.45, 1.1


class SyntheticDataError(ValueError):
    """Bad arguments to the synthetic renderer, or a folder it cannot write."""


@dataclass(frozen=True)
class SceneObject:
    """One object on the floor: its label, where it stands (x, y on the floor) and, for cubes, its yaw."""

    label: str
    x: float
    y: float
    yaw: float = 0.0

    @property
    def colour(self) -> str:
        return self.label.split()[0]

    @property
    def shape(self) -> str:
        return self.label.split()[1]


# ---------------------------------------------------------------------------------------------- validation
def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, (list, tuple)) and not (MIN_OBJECTS <= len(labels) <= MAX_OBJECTS):
        raise ConditionError(
            f"a synthetic scene holds {MIN_OBJECTS}-{MAX_OBJECTS} objects, got {len(labels)}: {list(labels)!r}"
        )
    validate_condition(labels)  # type, unknown names (with suggestions), repeated labels
    return list(labels)


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


# ---------------------------------------------------------------------------------------------- camera
def project(points: np.ndarray, size: int) -> np.ndarray:
    """World points (..., 3) -> continuous (row, col) image coordinates (..., 2) in a size x size image.

    Pixel (i, j) covers rows [i, i + 1) and columns [j, j + 1); points behind the camera give nan.
    """
    d = np.asarray(points, dtype=np.float64) - _CAMERA_LOCATION
    z = d @ _FORWARD
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (d @ _RIGHT) / (z * _TAN_X)
        y = (d @ _UP) / (z * _TAN_Y)
    out = np.stack([(1.0 - y) * 0.5 * size, (x + 1.0) * 0.5 * size], axis=-1)
    out[z <= 0] = np.nan
    return out


@dataclass(frozen=True)
class _Grid:
    """Camera rays through the pixel centres of an n x n grid, and their floor hits."""

    n: int
    dirs: np.ndarray  # (n, n, 3) unit ray directions
    floor_t: np.ndarray  # (n, n) ray parameter of the floor hit
    floor_pts: np.ndarray  # (n, n, 3) floor hit points
    disk: np.ndarray  # (n, n, K, 2) per-pixel soft-shadow sample offsets in the unit disk


def _floor_radiance(p: np.ndarray, lamp: np.ndarray = _FLOOR_LAMP) -> np.ndarray:
    """Linear RGB radiance of the unshadowed floor at floor points p (..., 3), lit by a lamp at ``lamp``."""
    to_lamp = lamp - p
    dist2 = (to_lamp**2).sum(-1)
    pool = _FLOOR_AMBIENT + _FLOOR_LAMP_POWER * to_lamp[..., 2] / dist2**1.5
    radius = np.hypot(p[..., 0] - _FLOOR_POOL_CENTRE[0], p[..., 1] - _FLOOR_POOL_CENTRE[1])
    inside = 1.0 / (1.0 + np.exp((radius - _FLOOR_POOL_RADIUS) / _FLOOR_POOL_SOFTNESS))
    lum = inside * pool + (1.0 - inside) * _FLOOR_FAR
    return lum[..., None] * (1.0 + inside[..., None] * _FLOOR_TINT)


@lru_cache(maxsize=8)
def _grid(n: int, samples: int) -> _Grid:
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    u = c[None, :, None]
    v = -c[:, None, None]
    dirs = _FORWARD + u * _TAN_X * _RIGHT + v * _TAN_Y * _UP
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    floor_t = -_CAMERA_LOCATION[2] / dirs[..., 2]  # the camera looks down: every ray meets the floor
    floor_pts = _CAMERA_LOCATION + floor_t[..., None] * dirs
    # Stratified samples of the back light's disk, rotated per pixel (a fixed pattern: renders stay deterministic).
    k = np.arange(samples)
    pattern = np.random.default_rng(12345 + n)
    angle = (k * 2.399963)[None, None, :] + pattern.uniform(0, 2 * np.pi, (n, n, 1))
    radius = np.sqrt((k[None, None, :] + pattern.uniform(0, 1, (n, n, 1))) / samples)
    disk = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    for array in (dirs, floor_t, floor_pts, disk):
        array.setflags(write=False)
    return _Grid(n, dirs, floor_t, floor_pts, disk)


def _unit(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


# ---------------------------------------------------------------------------------------------- ray casting
_INF = np.inf


def _solid_interval(obj: SceneObject, origin: np.ndarray, dirs: np.ndarray, normals: bool = True):
    """Where rays origin + t * dirs are inside the solid: (t_enter, t_exit, normal at entry or None).

    origin broadcasts against dirs (..., 3), unit directions. A miss gives t_enter > t_exit. Spheres solve
    the quadratic; cubes intersect three slabs in the cube's frame; cylinders intersect the infinite
    cylinder's interval with the slab between floor and cap.
    """
    shape = obj.shape
    ox = origin[..., 0] - obj.x
    oy = origin[..., 1] - obj.y
    oz = origin[..., 2]
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    if shape == "sphere":
        r = OBJECT_RADIUS
        oz = oz - r
        b = ox * dx + oy * dy + oz * dz
        c = ox * ox + oy * oy + oz * oz - r * r
        disc = b * b - c
        hit = disc >= 0.0
        sq = np.sqrt(np.where(hit, disc, 0.0))
        t0 = np.where(hit, -b - sq, _INF)
        t1 = np.where(hit, -b + sq, -_INF)
        if not normals:
            return t0, t1, None
        normal = np.stack([ox + t0 * dx, oy + t0 * dy, oz + t0 * dz], axis=-1) / r
        return t0, t1, normal
    with np.errstate(divide="ignore", invalid="ignore"):
        # the z slab [0, height] is common to cubes and cylinders
        height = 2.0 * CUBE_HALF if shape == "cube" else CYLINDER_HEIGHT
        safe_dz = np.where(np.abs(dz) < 1e-12, 1e-12, dz)
        za, zb = -oz / safe_dz, (height - oz) / safe_dz
        tz0, tz1 = np.minimum(za, zb), np.maximum(za, zb)
        if shape == "cube":
            cos, sin = math.cos(obj.yaw), math.sin(obj.yaw)
            lx, ly = cos * ox + sin * oy, -sin * ox + cos * oy  # into the cube's frame
            ldx, ldy = cos * dx + sin * dy, -sin * dx + cos * dy
            h = CUBE_HALF
            safe_x = np.where(np.abs(ldx) < 1e-12, 1e-12, ldx)
            safe_y = np.where(np.abs(ldy) < 1e-12, 1e-12, ldy)
            xa, xb = (-h - lx) / safe_x, (h - lx) / safe_x
            ya, yb = (-h - ly) / safe_y, (h - ly) / safe_y
            tx0, tx1 = np.minimum(xa, xb), np.maximum(xa, xb)
            ty0, ty1 = np.minimum(ya, yb), np.maximum(ya, yb)
            t0 = np.maximum(np.maximum(tx0, ty0), tz0)
            t1 = np.minimum(np.minimum(tx1, ty1), tz1)
            if not normals:
                return t0, t1, None
            # bevelled edges, like CLEVR's SmoothCube: the normal of a box rounded by _BEVEL at the hit point
            t = np.where(np.isfinite(t0), t0, 0.0)
            inner = h - _BEVEL
            px, py, pz = lx + t * ldx, ly + t * ldy, oz + t * dz - h
            nx_local = px - np.clip(px, -inner, inner)
            ny_local = py - np.clip(py, -inner, inner)
            nz = pz - np.clip(pz, -inner, inner)
            length = np.sqrt(nx_local**2 + ny_local**2 + nz**2) + 1e-12
            normal = np.stack([cos * nx_local - sin * ny_local, sin * nx_local + cos * ny_local, nz], axis=-1)
            normal /= length[..., None]
            return t0, t1, normal
        if shape == "cylinder":
            r = OBJECT_RADIUS
            a = dx * dx + dy * dy
            b = ox * dx + oy * dy
            c = ox * ox + oy * oy - r * r
            disc = b * b - a * c
            vertical = a < 1e-12
            ok = disc >= 0.0
            sq = np.sqrt(np.where(ok, disc, 0.0))
            safe_a = np.where(vertical, 1.0, a)
            tr0 = np.where(vertical, np.where(c <= 0, -_INF, _INF), np.where(ok, (-b - sq) / safe_a, _INF))
            tr1 = np.where(vertical, np.where(c <= 0, _INF, -_INF), np.where(ok, (-b + sq) / safe_a, -_INF))
            t0 = np.maximum(tr0, tz0)
            t1 = np.minimum(tr1, tz1)
            if not normals:
                return t0, t1, None
            # a rounded rim, like CLEVR's SmoothCylinder
            t = np.where(np.isfinite(t0), t0, 0.0)
            px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
            rho = np.sqrt(px * px + py * py) + 1e-12
            radial = np.maximum(rho - (r - _BEVEL), 0.0) / rho
            nz = pz - np.clip(pz, _BEVEL, height - _BEVEL)
            normal = np.stack([px * radial, py * radial, nz], axis=-1)
            normal /= np.sqrt((normal * normal).sum(-1, keepdims=True)) + 1e-12
            return t0, t1, normal
    raise ValueError(f"unknown shape {shape!r}")


def _corners(obj: SceneObject) -> np.ndarray:
    """The 8 corners of a box around the object (world, (8, 3))."""
    if obj.shape == "cube":
        r, top = CUBE_HALF * math.sqrt(2.0), 2.0 * CUBE_HALF
    else:
        r, top = OBJECT_RADIUS, (CYLINDER_HEIGHT if obj.shape == "cylinder" else 2.0 * OBJECT_RADIUS)
    xs, ys, zs = (obj.x - r, obj.x + r), (obj.y - r, obj.y + r), (0.0, top)
    return np.array([(x, y, z) for x in xs for y in ys for z in zs])


def _pixel_box(points: np.ndarray, n: int, pad: int = 2) -> tuple[int, int, int, int] | None:
    """Bounding (row0, row1, col0, col1) in an n x n image of world points, padded, clipped; None if empty."""
    rc = project(points, n)
    rc = rc[np.isfinite(rc).all(-1)]
    if len(rc) == 0:
        return None
    r0 = max(int(math.floor(rc[:, 0].min())) - pad, 0)
    r1 = min(int(math.ceil(rc[:, 0].max())) + pad, n)
    c0 = max(int(math.floor(rc[:, 1].min())) - pad, 0)
    c1 = min(int(math.ceil(rc[:, 1].max())) + pad, n)
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, r1, c0, c1


# ---------------------------------------------------------------------------------------------- layout
def _screen_extent(obj: SceneObject) -> np.ndarray:
    """(row0, row1, col0, col1) of the object's box in the unit image (1 x 1)."""
    rc = project(_corners(obj), 1)
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
                angle = _CAMERA_AZIMUTH + 0.5 * math.pi * int(rng.integers(4)) + rng.normal(0.0, math.radians(10.0))
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


# ---------------------------------------------------------------------------------------------- rendering
def _build_srgb_lut(levels: int = 4096) -> np.ndarray:
    v = np.linspace(0.0, 1.0, levels)
    return (np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055) * 255.0).astype(np.float32)


_SRGB_LUT = _build_srgb_lut()


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    idx = np.clip(linear * (len(_SRGB_LUT) - 1) + 0.5, 0, len(_SRGB_LUT) - 1).astype(np.intp)
    return _SRGB_LUT[idx]


@lru_cache(maxsize=4)
def _upsampler(size: int) -> np.ndarray:
    """(size, m) linear-interpolation matrix from an m-point grid, m = size / 4 (at least 2), variance-preserving-ish."""
    m = max(2, size // 4)
    pos = np.clip((np.arange(size) + 0.5) / size * m - 0.5, 0, m - 1)
    lo = np.minimum(np.floor(pos).astype(int), m - 2)
    frac = pos - lo
    up = np.zeros((size, m))
    up[np.arange(size), lo] = 1.0 - frac
    up[np.arange(size), lo + 1] = frac
    up /= np.sqrt((up**2).sum(1, keepdims=True)).mean()  # keep the mottle's std near _NOISE_MOTTLE
    up.setflags(write=False)
    return up


def _jittered(azimuth: float, elevation: float, rng: np.random.Generator) -> np.ndarray:
    return _unit(azimuth + rng.uniform(-1, 1) * _AZIMUTH_JITTER, elevation + rng.uniform(-1, 1) * _ELEVATION_JITTER)


def _disk_light(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lamp's direction and two tangents spanning its disk."""
    e1 = np.cross(direction, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    return direction, e1, np.cross(direction, e1)


def _shadow_box(obj: SceneObject, light: tuple[np.ndarray, np.ndarray, np.ndarray], n: int):
    """Pixel box (n x n grid) of everything the object may shade: itself and its shadow on the floor."""
    centre, e1, e2 = light
    corners = _corners(obj)
    spread = [centre] + [centre + _BACK_SOFTNESS * s * e for e in (e1, e2) for s in (-1.0, 1.0)]
    pts = [corners] + [corners - (corners[:, 2:3] / d[2]) * d for d in spread]
    return _pixel_box(np.concatenate(pts), n, pad=1)


def _blocked(obj: SceneObject, pts: np.ndarray, disk: np.ndarray, light) -> np.ndarray:
    """Fraction of the back light's disk that the object hides from points pts (..., 3); disk (..., K, 2)."""
    centre, e1, e2 = light
    dirs = centre + _BACK_SOFTNESS * (disk[..., 0:1] * e1 + disk[..., 1:2] * e2)
    dirs /= np.sqrt((dirs * dirs).sum(-1, keepdims=True))
    t0, t1, _ = _solid_interval(obj, pts[..., None, :], dirs, normals=False)
    return (t1 > np.maximum(t0, 1e-6)).mean(-1)


def _overlaps(a, b) -> bool:
    return a is not None and b is not None and a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def render_objects(
    objects: Sequence[SceneObject],
    rng: np.random.Generator,
    size: int = 64,
    *,
    supersample: int = SUPERSAMPLE,
    return_masks: bool = False,
):
    """Render placed objects: an (size, size, 3) uint8 image, plus (len(objects), size, size) float coverage masks.

    The mask of object k is the fraction of each pixel where object k is the visible surface. ``rng`` draws
    the per-image lighting jitter and the noise.

    The floor and its soft shadows are shaded once per output pixel (they are smooth); the pixels that
    objects may cover are ray-cast ``supersample`` x ``supersample`` times and box-filtered.
    """
    size = _check_positive_int(size, "size", 8)
    ss = _check_positive_int(supersample, "supersample")
    if objects:
        validate_condition([o.label for o in objects])
    lo, hi = _grid(size, _FLOOR_SHADOW_SAMPLES), _grid(size * ss, _SHADOW_SAMPLES)
    cam = _CAMERA_LOCATION
    exposure = math.exp(rng.normal(0.0, _EXPOSURE_JITTER))
    lamp = _FLOOR_LAMP + rng.uniform(-1.0, 1.0, 3) * _FLOOR_LAMP_JITTER
    light = _disk_light(_jittered(_BACK_AZIMUTH, _BACK_ELEVATION, rng))
    back = light[0]
    key = _jittered(_KEY_AZIMUTH, _KEY_ELEVATION, rng)
    fill = _unit(_FILL_AZIMUTH, _FILL_ELEVATION)
    albedos = np.array([COLOUR_RGB[o.colour] for o in objects], dtype=np.float64).reshape(-1, 3) / 255.0

    # 1. The floor at output resolution, with soft shadows.
    shadow_boxes = [_shadow_box(obj, light, size) for obj in objects]
    floor_vis = np.ones((size, size))
    for obj, box in zip(objects, shadow_boxes):
        if box is not None:
            r0, r1, c0, c1 = box
            floor_vis[r0:r1, c0:c1] *= 1.0 - _blocked(obj, lo.floor_pts[r0:r1, c0:c1], lo.disk[r0:r1, c0:c1], light)
    floor_shade = 1.0 - _SHADOW_DEPTH * (1.0 - floor_vis)
    out = _to_srgb(_floor_radiance(lo.floor_pts, lamp) * (floor_shade[..., None] * exposure))
    masks = np.zeros((len(objects), size, size), dtype=np.float32) if return_masks else None

    # 2. Around each object, supersampled ray casting against every object that may show there.
    object_boxes = [_pixel_box(_corners(obj), size, pad=1) for obj in objects]
    hi_shadow_boxes = [None if b is None else tuple(v * ss for v in b) for b in shadow_boxes]
    for box in object_boxes:
        if box is None:
            continue
        r0, r1, c0, c1 = box
        R0, R1, C0, C1 = r0 * ss, r1 * ss, c0 * ss, c1 * ss
        dirs = hi.dirs[R0:R1, C0:C1]
        depth = hi.floor_t[R0:R1, C0:C1].copy()
        ids = np.full(depth.shape, -1, dtype=np.int8)
        normals = np.zeros(dirs.shape)
        for k, obj in enumerate(objects):
            if not _overlaps(box, object_boxes[k]):
                continue
            t0, t1, nrm = _solid_interval(obj, cam, dirs)
            hit = (t1 >= t0) & (t0 > 0.0) & (t0 < depth)
            depth[hit] = t0[hit]
            ids[hit] = k
            normals[hit] = nrm[hit]
        # floor samples: the floor radiance, shadowed as at output resolution
        shade = np.repeat(np.repeat(floor_shade[r0:r1, c0:c1], ss, 0), ss, 1)
        image = _floor_radiance(hi.floor_pts[R0:R1, C0:C1], lamp) * shade[..., None]
        on_object = ids >= 0
        if on_object.any():
            # back light reaching object samples past the other objects
            vis = np.ones(depth.shape)
            hi_box = (R0, R1, C0, C1)
            for k, obj in enumerate(objects):
                if not _overlaps(hi_box, hi_shadow_boxes[k]):
                    continue
                others = on_object & (ids != k)
                if others.any():
                    pts = cam + depth[others][:, None] * dirs[others]
                    vis[others] *= 1.0 - _blocked(obj, pts, hi.disk[R0:R1, C0:C1][others], light)
            nrm = normals[on_object]
            v = vis[on_object]
            irradiance = (
                _AMBIENT
                + _BOUNCE_POWER * np.clip(-nrm[:, 2], 0.0, None)  # light bounced off the floor
                + _KEY_POWER * np.clip(nrm @ key, 0.0, None)
                + _BACK_POWER * np.clip(nrm @ back, 0.0, None) * v
                + _FILL_POWER * np.clip(nrm @ fill, 0.0, None)
            )
            half = key - dirs[on_object]
            half /= np.sqrt((half * half).sum(-1, keepdims=True))
            spec = _SPECULAR * np.clip((nrm * half).sum(-1), 0.0, None) ** _SHININESS
            image[on_object] = albedos[ids[on_object]] * irradiance[:, None] + spec[:, None]
        srgb = _to_srgb(image * exposure)
        out[r0:r1, c0:c1] = srgb.reshape(r1 - r0, ss, c1 - c0, ss, 3).mean(axis=(1, 3))
        if masks is not None:
            for k in range(len(objects)):
                masks[k, r0:r1, c0:c1] = (ids == k).reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))

    noise = rng.normal(0.0, _NOISE_LUMA, (size, size, 1)) + rng.normal(0.0, _NOISE_CHROMA, (size, size, 3))
    up = _upsampler(size)
    noise += (up @ rng.normal(0.0, _NOISE_MOTTLE, (up.shape[1], up.shape[1])) @ up.T)[..., None]
    pixels = np.clip(np.rint(out + noise), 0, 255).astype(np.uint8)
    return (pixels, masks) if return_masks else pixels


def render_scene(labels: list[str], rng: np.random.Generator, size: int = 64, *, return_masks: bool = False):
    """Render one i-CLEVR-style scene holding the given 1-3 distinct labels: (size, size, 3) uint8 RGB.

    The first label stands at the centre of the floor, the others around it (see :func:`sample_layout`).
    With ``return_masks=True``, also return (len(labels), size, size) float32 per-object coverage, in the
    order of ``labels``.
    """
    objects = sample_layout(labels, rng)
    return render_objects(objects, rng, size, return_masks=return_masks)


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
    """Render ``n`` training images and the conditions files into ``out_dir``, in the course's layout.

    Writes ``iclevr/synthetic_000000.png`` ..., then ``objects.json``, ``test.json``, ``new_test.json``,
    ``train.json`` (filename -> label names) and finally a ``.complete`` marker. Every file is written
    atomically, and train.json only once all images exist, so an interrupted render leaves no partial PNG
    and no train.json. The same ``seed`` gives byte-identical files for any number of ``workers``.
    """
    n = _check_positive_int(n, "n (the number of images)")
    size = _check_positive_int(size, "size", 8)
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
    n = _check_positive_int(n, "n (the number of images)")
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


__all__ = [
    "DEFAULT_N",
    "VERSION",
    "COLOUR_RGB",
    "SceneObject",
    "SyntheticDataError",
    "condition_sets",
    "default_data_root",
    "image_name",
    "make_conditions",
    "project",
    "render_dataset",
    "render_objects",
    "render_scene",
    "sample_layout",
]
