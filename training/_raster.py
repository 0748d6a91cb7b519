"""Vectorised 2-D rasteriser for the procedural sprites.

A sprite is a back-to-front list of :class:`Prim` shapes. Each shape is a
signed distance function (SDF) in its own local frame (y up), attached to a
*bone*: a per-frame affine matrix ``[T, 3, 3]`` mapping local coordinates to
pixel coordinates. Rendering a clip evaluates every shape for all frames at
once on the pixel grid inside the shape's bounding box, so the cost is a few
dozen numpy operations per shape, whatever the number of frames.

Edges are anti-aliased analytically: the coverage of a pixel is
``clip(0.5 - d, 0, 1)`` where ``d`` is the signed distance in pixels, which
is what a box-filtered supersampling converges to for straight edges, at the
cost of one sample. ``hard=True`` thresholds instead (pixel-art rendering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# ---------------------------------------------------------------------------
# Per-frame affine matrices [T, 3, 3]


def _stack(a00, a01, a02, a10, a11, a12, n: int) -> np.ndarray:
    m = np.zeros((n, 3, 3), dtype=np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a00, a01, a02
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = a10, a11, a12
    m[:, 2, 2] = 1.0
    return m


def translate(tx, ty, n: int) -> np.ndarray:
    return _stack(1.0, 0.0, tx, 0.0, 1.0, ty, n)


def rotate(theta, n: int) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return _stack(c, -s, 0.0, s, c, 0.0, n)


def scale(sx, sy, n: int) -> np.ndarray:
    return _stack(sx, 0.0, 0.0, 0.0, sy, 0.0, n)


def shear_x(k, n: int) -> np.ndarray:
    """x' = x + k * y (the top of a shape leans by k per unit of height)."""
    return _stack(1.0, k, 0.0, 0.0, 1.0, 0.0, n)


def chain(*mats: np.ndarray) -> np.ndarray:
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    return out


# ---------------------------------------------------------------------------
# Signed distance functions in local units (negative inside)


def sd_ellipse(u, v, rx, ry):
    # Fast approximation (first-order, exact on the boundary) that is good
    # enough for anti-aliasing a one-pixel edge.
    a, b = u / rx, v / ry
    k0 = np.sqrt(a * a + b * b)
    a, b = a / rx, b / ry
    k1 = np.sqrt(a * a + b * b) + 1e-9
    return k0 * (k0 - 1.0) / k1


def sd_box(u, v, hx, hy, r=0.0):
    qx = np.abs(u) - (hx - r)
    qy = np.abs(v) - (hy - r)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - r


def sd_capsule(u, v, length, r0, r1=None):
    """Capsule hanging from the origin down to (0, -length), radius r0 -> r1."""
    h = np.clip(-v / length, 0.0, 1.0)
    dy = v + h * length
    radius = r0 if r1 is None else r0 + (r1 - r0) * h
    return np.sqrt(u * u + dy * dy) - radius


def sd_trapezoid(u, v, r_bottom, r_top, he, r=0.0):
    """Isosceles trapezoid centred on the origin, half-height ``he``.

    ``r_top = 0`` gives a triangle (ears, hats). ``r`` rounds the corners.
    """
    r_bottom, r_top, he = r_bottom - r, max(r_top - r, 0.0), he - r
    x = np.abs(u)
    half = np.where(v < 0.0, r_bottom, r_top)
    cax = x - np.minimum(x, half)
    cay = np.abs(v) - he
    k2x, k2y = r_top - r_bottom, 2.0 * he
    t = np.clip(((r_top - x) * k2x + (he - v) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
    cbx = x - r_top + k2x * t
    cby = v - he + k2y * t
    sign = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
    return sign * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby)) - r


def sd_dome(u, v, rx, ry):
    """Upper half of an ellipse standing on the local x axis (slimes, caps)."""
    return np.maximum(sd_ellipse(u, v, rx, ry), -v)


def sd_half_ellipse(u, v, rx, ry):
    """Lower half of an ellipse hanging from the local x axis (mouths)."""
    return np.maximum(sd_ellipse(u, v, rx, ry), v)


def sd_ghost(u, v, rx, ry, waves):
    """Dome on a skirt whose hem is a wave (ghosts). Base at v = 0."""
    body = np.minimum(sd_ellipse(u, v - ry, rx, rx * 1.0), sd_box(u, v - ry * 0.5, rx, ry * 0.5))
    hem = 0.12 * ry * (1.0 + np.cos(u / rx * np.pi * waves))
    return np.maximum(body, hem - v)


SDF: dict[str, Callable] = {
    "ellipse": sd_ellipse,
    "box": sd_box,
    "capsule": sd_capsule,
    "trapezoid": sd_trapezoid,
    "dome": sd_dome,
    "half_ellipse": sd_half_ellipse,
    "ghost": sd_ghost,
}


def local_bounds(shape: str, params: tuple) -> tuple[float, float, float, float]:
    """Axis-aligned bounds (xmin, xmax, ymin, ymax) of a shape in its frame."""
    p = params
    if shape in ("ellipse",):
        return -p[0], p[0], -p[1], p[1]
    if shape == "box":
        return -p[0], p[0], -p[1], p[1]
    if shape == "capsule":
        r = max(p[1], p[2] if len(p) > 2 and p[2] is not None else p[1])
        return -r, r, -p[0] - r, r
    if shape == "trapezoid":
        w = max(p[0], p[1])
        return -w, w, -p[2], p[2]
    if shape == "dome":
        return -p[0], p[0], 0.0, p[1]
    if shape == "half_ellipse":
        return -p[0], p[0], -p[1], 0.0
    if shape == "ghost":
        return -p[0], p[0], 0.0, p[1] + p[0]
    raise ValueError(f"unknown shape {shape!r}")


# ---------------------------------------------------------------------------
# Shapes and rendering


@dataclass(frozen=True)
class Prim:
    """One filled shape of a sprite.

    ``at``/``angle`` place the shape in its bone's frame; ``clip`` is an
    optional second shape (name, params, at) in the same frame that the first
    is intersected with (a tongue inside a mouth).
    """

    bone: str
    shape: str
    params: tuple
    color: tuple[float, float, float]
    at: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    shade: bool = True
    outline: bool = True
    clip: tuple | None = None

    def matrix(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s, self.at[0]], [s, c, self.at[1]], [0.0, 0.0, 1.0]])


OWNER_MIN_COVER = 1e-3  # coverage below this is no coverage (float noise of the anti-aliasing)
LIGHT = np.array([-0.55, 0.83])  # from the upper left, in y-up local units


def shade_factor(mode: str, qx, qy):
    """Brightness multiplier from the position inside a shape (q in [-1, 1])."""
    lum = qx * LIGHT[0] + qy * LIGHT[1]
    if mode == "cel":
        return np.where(lum < -0.3, 0.76, np.where(lum > 0.78, 1.14, 1.0)).astype(np.float32)
    if mode == "soft":
        return (0.93 + 0.2 * np.clip(lum, -1.0, 1.0)).astype(np.float32)
    return None


def rasterise(
    prims: list[Prim],
    bones: dict[str, np.ndarray],
    height: int,
    width: int,
    *,
    shading: str = "flat",
    outline_px: float = 1.0,
    outline_color: tuple[float, float, float] | None = None,
    outline_colors: dict[int, tuple] | None = None,
    hard: bool = False,
    owners: bool = False,
):
    """Draw ``prims`` back to front; returns premultiplied rgb [T,H,W,3] and alpha [T,H,W].

    ``owners=True`` also returns int16 [T,H,W]: the index of the top-most
    shape that covers each pixel at all (-1 where none does), so an
    anti-aliased rim belongs to the shape it blends in.

    ``bones[name]`` maps the bone's local frame (y up) to pixels (y down) for
    every frame. Outlines are ``outline_px`` wide, drawn inside each shape's
    edge in ``outline_colors[i]`` (falls back to ``outline_color``); shapes
    with ``outline=False`` or ``outline_px == 0`` have none.
    """
    n = next(iter(bones.values())).shape[0]
    rgb = np.zeros((3, n, height, width), dtype=np.float32)
    alpha = np.zeros((n, height, width), dtype=np.float32)
    owner = np.full((n, height, width), -1, dtype=np.int16) if owners else None
    for index, prim in enumerate(prims):
        m = bones[prim.bone] @ prim.matrix()
        xmin, xmax, ymin, ymax = local_bounds(prim.shape, prim.params)
        corners = np.array([[xmin, ymin, 1.0], [xmax, ymin, 1.0], [xmin, ymax, 1.0], [xmax, ymax, 1.0]])
        px = np.einsum("tij,cj->tci", m[:, :2], corners)  # [T, 4, 2]
        x0 = max(int(np.floor(px[..., 0].min())) - 1, 0)
        x1 = min(int(np.ceil(px[..., 0].max())) + 2, width)
        y0 = max(int(np.floor(px[..., 1].min())) - 1, 0)
        y1 = min(int(np.ceil(px[..., 1].max())) + 2, height)
        if x0 >= x1 or y0 >= y1:
            continue
        # Inverse affine: pixel centre -> local coordinates.
        a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
        d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
        det = a * e - b * d
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        i00, i01, i10, i11 = e / det, -b / det, -d / det, a / det
        i02, i12 = -(i00 * c + i01 * f), -(i10 * c + i11 * f)
        xs = np.arange(x0, x1, dtype=np.float32) + 0.5
        ys = np.arange(y0, y1, dtype=np.float32) + 0.5
        col = lambda arr: arr.astype(np.float32)[:, None, None]  # noqa: E731
        u = (col(i00) * xs[None, None, :] + col(i02)) + col(i01) * ys[None, :, None]
        v = (col(i10) * xs[None, None, :] + col(i12)) + col(i11) * ys[None, :, None]
        dist = SDF[prim.shape](u, v, *prim.params)
        if prim.clip is not None:
            cshape, cparams, cat = prim.clip
            dist = np.maximum(dist, SDF[cshape](u - cat[0], v - cat[1], *cparams))
        # Local units -> pixels (geometric mean of the two axis scales).
        px_per_unit = col(np.sqrt(np.abs(det)))
        dist = dist * px_per_unit
        if hard:
            cover = (dist < 0.0).astype(np.float32)
        else:
            cover = np.clip(0.5 - dist, 0.0, 1.0)
        fill_w = cover
        line_w = None
        if prim.outline and outline_px > 0:
            inner = (dist < -outline_px) if hard else np.clip(0.5 - (dist + outline_px), 0.0, 1.0)
            fill_w = cover * inner
            line_w = cover - fill_w
        if prim.shade and shading != "flat":
            cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
            hx, hy = max((xmax - xmin) / 2, 1e-6), max((ymax - ymin) / 2, 1e-6)
            factor = shade_factor(shading, (u - cx) / hx, (v - cy) / hy)
            fill_w = fill_w * factor
        keep = 1.0 - cover
        if owner is not None:
            o_view = owner[:, y0:y1, x0:x1]
            o_view[cover > OWNER_MIN_COVER] = index
        a_view = alpha[:, y0:y1, x0:x1]
        a_view *= keep
        a_view += cover
        line_rgb = None
        if line_w is not None:
            line_rgb = (outline_colors or {}).get(index, outline_color) or (0.1, 0.1, 0.1)
        for ch in range(3):
            view = rgb[ch, :, y0:y1, x0:x1]
            view *= keep
            view += fill_w * np.float32(prim.color[ch])
            if line_w is not None:
                view += line_w * np.float32(line_rgb[ch])
    rgb = np.ascontiguousarray(np.moveaxis(rgb, 0, -1))
    return (rgb, alpha, owner) if owners else (rgb, alpha)
