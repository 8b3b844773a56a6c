"""The geometry of the built-in synthetic scenes: CLEVR's camera, the objects' solids, and ray casting.

:func:`project` maps world points to pixels, :func:`camera_rays` gives the rays through a grid of pixels, and
:func:`solid_interval` intersects camera or shadow rays with an object. ``lab6.scene`` lays the objects out with
it; ``lab6.render`` turns a scene into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


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


#: Supersampling factor per axis (3 -> 9 rays per output pixel, box-filtered).
SUPERSAMPLE = 3

# ---------------------------------------------------------------------------------------------- solids
#: The one object size (world units): sphere radius, cylinder radius and half height, cube half side. Measured
#: on the course images: their cubes are about as wide as their spheres (no CLEVR-style r / sqrt(2)).
OBJECT_RADIUS = 0.58
CUBE_HALF = OBJECT_RADIUS
CYLINDER_HEIGHT = 2.0 * OBJECT_RADIUS
#: Radius of the rounded edges of cubes and cylinders (shading only; silhouettes stay sharp).
_BEVEL = 0.07

# ---------------------------------------------------------------------------------------------- camera
CAMERA_LOCATION = np.array([7.3589, -6.9258, 4.9583])
# Blender XYZ Euler (CLEVR: 63.559; tilted 0.3 deg to match the course images)
_CAMERA_EULER_DEG = (63.86, 0.0, 46.692)
_LENS_MM, _SENSOR_MM = 35.0, 32.0
_SOURCE_ASPECT = 240.0 / 320.0  # the course renders are 320x240, squashed to a square


def _camera_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ax, _, az = np.radians(_CAMERA_EULER_DEG)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    rot = rz @ rx
    return rot[:, 0], rot[:, 1], -rot[:, 2]  # right, up, forward


_RIGHT, _UP, _FORWARD = _camera_basis()
CAMERA_AZIMUTH = math.atan2(_FORWARD[1], _FORWARD[0])  # where the camera looks, on the floor
_TAN_X = 0.5 * _SENSOR_MM / _LENS_MM
_TAN_Y = _TAN_X * _SOURCE_ASPECT


def project(points: np.ndarray, size: int) -> np.ndarray:
    """World points (..., 3) -> continuous (row, col) image coordinates (..., 2) in a size x size image.

    Pixel (i, j) covers rows [i, i + 1) and columns [j, j + 1); points behind the camera give nan.
    """
    d = np.asarray(points, dtype=np.float64) - CAMERA_LOCATION
    z = d @ _FORWARD
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (d @ _RIGHT) / (z * _TAN_X)
        y = (d @ _UP) / (z * _TAN_Y)
    out = np.stack([(1.0 - y) * 0.5 * size, (x + 1.0) * 0.5 * size], axis=-1)
    out[z <= 0] = np.nan
    return out


@dataclass(frozen=True)
class CameraRays:
    """Camera rays through the pixel centres of an n x n grid, and their floor hits."""

    n: int
    dirs: np.ndarray  # (n, n, 3) unit ray directions
    floor_t: np.ndarray  # (n, n) ray parameter of the floor hit
    floor_pts: np.ndarray  # (n, n, 3) floor hit points
    disk: np.ndarray  # (n, n, K, 2) per-pixel soft-shadow sample offsets in the unit disk


@lru_cache(maxsize=8)
def camera_rays(n: int, samples: int) -> CameraRays:
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    u = c[None, :, None]
    v = -c[:, None, None]
    dirs = _FORWARD + u * _TAN_X * _RIGHT + v * _TAN_Y * _UP
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    floor_t = -CAMERA_LOCATION[2] / dirs[..., 2]  # the camera looks down: every ray meets the floor
    floor_pts = CAMERA_LOCATION + floor_t[..., None] * dirs
    # Stratified samples of the back light's disk, rotated per pixel (a fixed pattern: renders stay deterministic).
    k = np.arange(samples)
    pattern = np.random.default_rng(12345 + n)
    angle = (k * 2.399963)[None, None, :] + pattern.uniform(0, 2 * np.pi, (n, n, 1))
    radius = np.sqrt((k[None, None, :] + pattern.uniform(0, 1, (n, n, 1))) / samples)
    disk = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    for array in (dirs, floor_t, floor_pts, disk):
        array.setflags(write=False)
    return CameraRays(n, dirs, floor_t, floor_pts, disk)


def direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


# ---------------------------------------------------------------------------------------------- ray casting
_INF = np.inf


def solid_interval(obj: SceneObject, origin: np.ndarray, dirs: np.ndarray, normals: bool = True):
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


def bounding_corners(obj: SceneObject) -> np.ndarray:
    """The 8 corners of a box around the object (world, (8, 3))."""
    r = CUBE_HALF * math.sqrt(2.0) if obj.shape == "cube" else OBJECT_RADIUS  # a cube turns: its half diagonal
    xs, ys, zs = (obj.x - r, obj.x + r), (obj.y - r, obj.y + r), (0.0, CYLINDER_HEIGHT)  # each object 2 r tall
    return np.array([(x, y, z) for x in xs for y in ys for z in zs])


def pixel_box(points: np.ndarray, n: int, pad: int = 2) -> tuple[int, int, int, int] | None:
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

