"""Frames and alpha as the writers take them: uint8 conversion, chroma key, backgrounds, even sizes, timing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import checks
from ..errors import InvalidInputError
from ..images import as_uint8, parse_color, to_numpy
from .formats import ExportFormat


# --------------------------------------------------------------------------------------
# Frames, colours, alpha
# --------------------------------------------------------------------------------------


def frames_uint8(frames: Any) -> np.ndarray:
    """Frames in any accepted form -> contiguous uint8 ``[T,H,W,C]``, C in {3, 4}."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise InvalidInputError("No frames to export (empty list): pass at least one frame.")
        parts = [frames_uint8(f) for f in frames]
        shapes = {p.shape[1:3] for p in parts}
        if len(shapes) != 1:
            raise InvalidInputError(
                f"All frames must have the same size; got {sorted(shapes)} (H, W): resize them to one size first."
            )
        if len({p.shape[3] for p in parts}) != 1:  # mix of RGB and RGBA frames
            parts = [p if p.shape[3] == 4 else _add_opaque_alpha(p) for p in parts]
        return np.ascontiguousarray(np.concatenate(parts, axis=0))
    a = to_numpy(frames)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 2, 3, 4):
        raise InvalidInputError(
            f"Frames must be [T, H, W, C] (or [H, W, C]) with C = 1, 2, 3 or 4 channels, "
            f"like a ComfyUI IMAGE batch; got shape {tuple(a.shape)}."
        )
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise InvalidInputError(
            f"No pixels to export: frames have shape {tuple(a.shape)}; pass at least one frame of at least 1x1 pixels."
        )
    a = as_uint8(a, "frames")
    if a.shape[-1] in (1, 2):  # grey (+ alpha)
        grey = np.repeat(a[..., :1], 3, axis=-1)
        a = np.concatenate([grey, a[..., 1:]], axis=-1)
    return np.ascontiguousarray(a)


def _add_opaque_alpha(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.uint8)], axis=-1)


def _alpha_uint8(alpha: Any, t: int, h: int, w: int) -> np.ndarray:
    a = to_numpy(alpha)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (h, w) or a.shape[0] not in (1, t):
        raise InvalidInputError(
            f"alpha must be [T, H, W] or [H, W] opacity (1 = opaque) matching the frames "
            f"({t}, {h}, {w}); got shape {tuple(a.shape)}. A ComfyUI MASK is 1 - alpha."
        )
    a = as_uint8(a, "alpha")
    return np.ascontiguousarray(np.broadcast_to(a, (t, h, w)))


def _parse_color(color: Any) -> np.ndarray:
    """A colour as :func:`..images.parse_color` reads it (``"#00ff00"``, ``"lime"``, ``"0,255,0"``, ``(0, 255, 0)``),
    or float ``(0.0, 1.0, 0.0)`` in 0..1 -> uint8 RGB."""
    if not isinstance(color, str):
        values = to_numpy(color)
        if np.issubdtype(values.dtype, np.floating) and values.size in (3, 4) and 0.0 <= values.min() <= values.max() <= 1.0:
            color = tuple(float(v) * 255.0 for v in values.reshape(-1)[:3])
    return np.array(parse_color(color), dtype=np.uint8)


def _box3(x: np.ndarray, op=np.add) -> np.ndarray:
    """3x3 neighbourhood reduction (sum, or any with ``np.logical_or``) over axes 1, 2 of ``x``.

    Zero padding outside the frame; separable: rows first, then columns.
    """
    pad = [(0, 0)] * x.ndim
    pad[2] = (1, 1)
    p = np.pad(x, pad)
    w = x.shape[2]
    rows = op(op(p[:, :, 0:w], p[:, :, 1 : w + 1]), p[:, :, 2 : w + 2])
    pad[2], pad[1] = (0, 0), (1, 1)
    p = np.pad(rows, pad)
    h = x.shape[1]
    return op(op(p[:, 0:h], p[:, 1 : h + 1]), p[:, 2 : h + 2])


def _neighbourhood_any(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel (8-neighbourhood) within each frame ``[T,H,W]``."""
    return _box3(mask, np.logical_or)


def _bleed(rgb: np.ndarray, alpha: np.ndarray, steps: int = 2) -> np.ndarray:
    """Give fully transparent pixels the mean colour of visible neighbours (``steps`` px).

    Engines filter textures bilinearly, which mixes the colour under
    transparent pixels into the edge; filling it with the edge colour (and
    black further out) avoids a key-coloured halo.
    """
    known = alpha > 0
    out = np.where(known[..., None], rgb, 0).astype(np.uint16)
    for _ in range(steps):
        if known.all():
            break
        acc = _box3(out)  # at most 9 * 255: fits uint16
        cnt = _box3(known.astype(np.uint16))
        fill = ~known & (cnt > 0)
        out[fill] = (acc[fill] + cnt[fill][:, None] // 2) // cnt[fill][:, None]
        known |= fill
    return out.astype(np.uint8)


#: Backgrounds of opaque output behind a transparent character (see :func:`contrasting_background`)
LIGHT_BACKGROUND = (214, 214, 210)
DARK_BACKGROUND = (40, 40, 44)
_KEY_CHUNK_PIXELS = 1 << 21  # frames keyed together: about 2 M pixels (float32 temporaries)


def key_out(
    frames_rgb: Any,
    key_color: Any,
    tolerance: float = 0.1,
    despill: bool = True,
    *,
    softness: float | None = None,
) -> np.ndarray:
    """Chroma-key ``frames_rgb`` against ``key_color``; returns RGBA uint8 ``[T,H,W,4]``.

    The distance of each pixel to the key colour is the RGB Euclidean distance
    divided by its maximum (0 = the key colour, 1 = its opposite corner of the
    colour cube). Pixels closer than ``tolerance`` become transparent, pixels
    farther than ``tolerance + softness`` (default ``softness = tolerance``)
    stay opaque, and alpha ramps linearly in between (a soft edge).

    ``despill`` cleans the edge: on pixels that are partly transparent or touch
    a transparent pixel, the component of their colour along the key's hue
    (the key colour minus its grey level) is removed, which keeps their
    brightness but takes away the key-coloured cast; fully transparent pixels
    get the colour of their visible neighbours (2 px, black beyond) so texture
    filtering in an engine shows no key-coloured halo. Opaque pixels away from
    the edge are never changed. A grey key colour has no hue, so only the
    transparent-pixel fill applies.
    """
    rgb = frames_uint8(frames_rgb)[..., :3]
    key = _parse_color(key_color).astype(np.float32)
    tolerance = checks.number("key tolerance", tolerance, 0, 1, fix="use e.g. 0.1 (0 keys out only the exact colour)")
    soft = tolerance if softness is None else checks.number("key softness", softness, 0, 1,
                                                            fix="use e.g. 0.1 (0 gives a hard edge)")
    soft = max(soft, 1.0 / 255.0)
    out = np.empty(rgb.shape[:3] + (4,), np.uint8)
    step = max(1, _KEY_CHUNK_PIXELS // (rgb.shape[1] * rgb.shape[2]))  # bounded float32 temporaries
    for s in range(0, rgb.shape[0], step):
        out[s : s + step] = _key_chunk(rgb[s : s + step], key, tolerance, soft, despill)
    return out



def _key_chunk(rgb: np.ndarray, key: np.ndarray, tolerance: float, soft: float, despill: bool) -> np.ndarray:
    f = rgb.astype(np.float32)
    dist = np.sqrt(((f - key) ** 2).sum(axis=-1)) / (255.0 * math.sqrt(3.0))
    alpha = np.clip((dist - tolerance) / soft, 0.0, 1.0)
    a8 = np.rint(alpha * 255.0).astype(np.uint8)
    if despill:
        hue = key - key.mean()
        norm = float(np.linalg.norm(hue))
        if norm > 1e-6:
            hue /= norm
            band = _neighbourhood_any(a8 < 255) & (a8 > 0)
            spill = ((f - f.mean(axis=-1, keepdims=True)) * hue).sum(axis=-1)
            spill = np.where(band, np.maximum(spill, 0.0), 0.0)
            f = np.clip(f - spill[..., None] * hue, 0.0, 255.0)
            rgb = np.rint(f).astype(np.uint8)
        rgb = _bleed(rgb, a8)
    return np.ascontiguousarray(np.concatenate([rgb, a8[..., None]], axis=-1))


def contrasting_background(rgb: np.ndarray, alpha: np.ndarray) -> tuple[int, int, int]:
    """A neutral grey that stands apart from the character: light behind a dark one, dark behind a light one."""
    weight = alpha.astype(np.float32) / 255.0
    if float(weight.sum()) < 1.0:
        return LIGHT_BACKGROUND
    luma = rgb.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
    mean = float((luma * weight).sum() / weight.sum()) / 255.0
    return DARK_BACKGROUND if mean > 0.6 else LIGHT_BACKGROUND


def _resolve_alpha(
    frames: np.ndarray,
    fmt: ExportFormat,
    alpha: Any,
    key_color: Any,
    key_tolerance: float,
    key_softness: float | None,
    despill: bool,
    background: Any,
    notes: list[str],
    opaque: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Split into RGB + optional alpha, as the format can store them; opaque output (a format without alpha, or
    ``opaque``) gets the transparent pixels composited over ``background``."""
    t, h, w = frames.shape[:3]
    rgb = frames[..., :3]
    opaque = opaque or not fmt.alpha
    a = None if alpha is False else (frames[..., 3] if frames.shape[-1] == 4 else None)
    if alpha is not None and alpha is not True and alpha is not False:
        a = _alpha_uint8(alpha, t, h, w)
    if key_color is not None:
        keyed = key_out(rgb, key_color, key_tolerance, despill, softness=key_softness)
        rgb = keyed[..., :3]
        ka = keyed[..., 3]
        a = ka if a is None else ((a.astype(np.uint16) * ka + 127) // 255).astype(np.uint8)
    if opaque and a is not None:
        auto = background is None or (isinstance(background, str) and background.strip().lower() == "auto")
        bg = np.asarray(contrasting_background(rgb[0], a[0]) if auto else _parse_color(background))
        af = a[..., None].astype(np.float32) / 255.0
        rgb = np.rint(rgb * af + bg.astype(np.float32) * (1.0 - af)).astype(np.uint8)
        why = f"{fmt.name} has no alpha channel" if not fmt.alpha else "opaque output"
        notes.append(f"{why}: frames composited over {tuple(int(v) for v in bg)}.")
        a = None
    return np.ascontiguousarray(rgb), (None if opaque or a is None else np.ascontiguousarray(a))


def pad_even(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Frames ``[T, H, W, C]`` (and opacity ``[T, H, W]``) grown to even sizes by repeating the right and bottom
    edge, as H.264 and VP9 in 4:2:0 need; -> (frames, opacity, (pixels right, pixels bottom))."""
    h, w = rgb.shape[1:3]
    pr, pb = w % 2, h % 2
    if not (pr or pb):
        return rgb, alpha, (0, 0)
    rgb = np.pad(rgb, ((0, 0), (0, pb), (0, pr), (0, 0)), mode="edge")
    if alpha is not None:
        alpha = np.pad(alpha, ((0, 0), (0, pb), (0, pr)), mode="edge")
    return rgb, alpha, (pr, pb)


def _frame_durations_ms(n: int, fps: float, tick: int, minimum: int) -> list[int]:
    """Whole-tick delays whose running sum tracks ``i * 1000 / fps``."""
    step = 1000.0 / fps
    if step < minimum:
        return [minimum] * n
    bounds = [int(round(i * step / tick)) * tick for i in range(n + 1)]
    return [max(minimum, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


