"""Pixels of a synthetic scene: CLEVR's lamps simplified, soft shadows, supersampling, sRGB, render noise.

:func:`render_scene` draws a condition's objects (laid out by ``lab6.scene``); :func:`render_objects` draws a
given layout and can return each object's coverage mask (what the tests check labels against).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from .geometry import (
    CAMERA_LOCATION,
    SUPERSAMPLE,
    SceneObject,
    bounding_corners,
    camera_rays,
    direction,
    pixel_box,
    solid_interval,
)
from .labels import validate_condition
from .scene import COLOUR_RGB, check_positive_int, sample_layout

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



def _floor_radiance(p: np.ndarray, lamp: np.ndarray = _FLOOR_LAMP) -> np.ndarray:
    """Linear RGB radiance of the unshadowed floor at floor points p (..., 3), lit by a lamp at ``lamp``."""
    to_lamp = lamp - p
    dist2 = (to_lamp**2).sum(-1)
    pool = _FLOOR_AMBIENT + _FLOOR_LAMP_POWER * to_lamp[..., 2] / dist2**1.5
    radius = np.hypot(p[..., 0] - _FLOOR_POOL_CENTRE[0], p[..., 1] - _FLOOR_POOL_CENTRE[1])
    inside = 1.0 / (1.0 + np.exp((radius - _FLOOR_POOL_RADIUS) / _FLOOR_POOL_SOFTNESS))
    lum = inside * pool + (1.0 - inside) * _FLOOR_FAR
    return lum[..., None] * (1.0 + inside[..., None] * _FLOOR_TINT)


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
    """(size, m) linear-interpolation matrix from an m-point grid, m = size / 4 (at least 2), about
    variance-preserving."""
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
    return direction(azimuth + rng.uniform(-1, 1) * _AZIMUTH_JITTER,
                     elevation + rng.uniform(-1, 1) * _ELEVATION_JITTER)


def _disk_light(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lamp's direction and two tangents spanning its disk."""
    e1 = np.cross(direction, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    return direction, e1, np.cross(direction, e1)


def _shadow_box(obj: SceneObject, light: tuple[np.ndarray, np.ndarray, np.ndarray], n: int):
    """Pixel box (n x n grid) of everything the object may shade: itself and its shadow on the floor."""
    centre, e1, e2 = light
    corners = bounding_corners(obj)
    spread = [centre] + [centre + _BACK_SOFTNESS * s * e for e in (e1, e2) for s in (-1.0, 1.0)]
    pts = [corners] + [corners - (corners[:, 2:3] / d[2]) * d for d in spread]
    return pixel_box(np.concatenate(pts), n, pad=1)


def _blocked(obj: SceneObject, pts: np.ndarray, disk: np.ndarray, light) -> np.ndarray:
    """Fraction of the back light's disk that the object hides from points pts (..., 3); disk (..., K, 2)."""
    centre, e1, e2 = light
    dirs = centre + _BACK_SOFTNESS * (disk[..., 0:1] * e1 + disk[..., 1:2] * e2)
    dirs /= np.sqrt((dirs * dirs).sum(-1, keepdims=True))
    t0, t1, _ = solid_interval(obj, pts[..., None, :], dirs, normals=False)
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
    """Renders placed objects on the floor.

    The floor and its soft shadows are shaded once per output pixel (they are smooth); the pixels that
    objects may cover are ray-cast ``supersample`` x ``supersample`` times and box-filtered.

    Args:
        objects: the placed objects (:func:`lab6.scene.sample_layout`).
        rng: draws the per-image lighting jitter and the noise.
        size: the side of the image, in pixels.
        supersample: rays per pixel side on the objects.
        return_masks: also return each object's coverage masks.

    Returns:
        An (size, size, 3) uint8 image; with ``return_masks``, also (len(objects), size, size) float masks,
        the mask of object k being the fraction of each pixel where object k is the visible surface.
    """
    size = check_positive_int(size, "size", 8)
    ss = check_positive_int(supersample, "supersample")
    if objects:
        validate_condition([o.label for o in objects])
    lo, hi = camera_rays(size, _FLOOR_SHADOW_SAMPLES), camera_rays(size * ss, _SHADOW_SAMPLES)
    cam = CAMERA_LOCATION
    exposure = math.exp(rng.normal(0.0, _EXPOSURE_JITTER))
    lamp = _FLOOR_LAMP + rng.uniform(-1.0, 1.0, 3) * _FLOOR_LAMP_JITTER
    light = _disk_light(_jittered(_BACK_AZIMUTH, _BACK_ELEVATION, rng))
    back = light[0]
    key = _jittered(_KEY_AZIMUTH, _KEY_ELEVATION, rng)
    fill = direction(_FILL_AZIMUTH, _FILL_ELEVATION)
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
    object_boxes = [pixel_box(bounding_corners(obj), size, pad=1) for obj in objects]
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
            t0, t1, nrm = solid_interval(obj, cam, dirs)
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

