"""Palette lock: redraw generated frames in the reference's own colours.

Game sprites are drawn with a small, deliberate palette. A generated clip
(especially from a small model) drifts off it: colour noise inside the
character, a tinted key background. ``lock_palette`` maps every pixel to the
nearest colour of the reference's palette (at most ``colors`` colours, chosen
by PIL's median cut when the reference has more), without dithering, so the
clip uses exactly the colours the artist drew and the key colour stays the
key colour.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InvalidInputError

MAX_COLORS = 256  # a PIL palette holds at most 256 colours


def check_colors(colors: int) -> int:
    if not 2 <= colors <= MAX_COLORS:
        raise InvalidInputError(f"palette colours must be 2 to {MAX_COLORS}, or 0 for no palette lock (got {colors})")
    return colors


def reference_palette(reference: np.ndarray, colors: int = MAX_COLORS, keep=()) -> np.ndarray:
    """The reference's colours as uint8 ``[N, 3]``: all of them when there are at most ``colors``, else
    ``colors`` chosen by PIL's median cut. The ``keep`` colours (a key background) are entries of their own,
    never merged into the others; they count toward ``colors``."""
    check_colors(colors)
    reference = _rgb_uint8(reference, "reference")
    kept = np.unique(np.asarray(keep, np.uint8).reshape(-1, 3), axis=0)
    pixels = reference.reshape(-1, 3)
    if len(kept):
        pixels = pixels[~(pixels[:, None, :] == kept[None]).all(-1).any(-1)]
    budget = max(colors - len(kept), 1)
    unique = np.unique(pixels, axis=0)
    if len(unique) <= budget:
        return np.concatenate([unique, kept])
    quantized = Image.fromarray(np.ascontiguousarray(pixels[None])).quantize(
        colors=budget, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    used = sorted(index for _count, index in quantized.getcolors(MAX_COLORS))
    chosen = np.asarray(quantized.getpalette()[: 3 * (max(used) + 1)], np.uint8).reshape(-1, 3)[used]
    return np.concatenate([chosen, kept])


def lock_palette(frames: np.ndarray, reference: np.ndarray, colors: int = MAX_COLORS, keep=()) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` redrawn with the nearest (Euclidean RGB) colours of the uint8
    ``reference [H, W, 3]``'s palette (``keep``: colours that stay entries of their own, see
    :func:`reference_palette`)."""
    frames = _rgb_uint8(frames, "frames", ndim=4)
    palette = reference_palette(reference, colors, keep)
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2; |p|^2 is the same for every c. Integers below 2^24: exact in float32.
    centres = palette.astype(np.float32)
    norms = (centres**2).sum(axis=1)
    pixels = frames.reshape(-1, 3)
    nearest = np.empty(len(pixels), np.intp)
    for start in range(0, len(pixels), _CHUNK):
        chunk = pixels[start : start + _CHUNK].astype(np.float32)
        nearest[start : start + _CHUNK] = (norms - 2.0 * (chunk @ centres.T)).argmin(axis=1)
    return palette[nearest].reshape(frames.shape)


_CHUNK = 1 << 14  # pixels per distance matrix (16 MB at 256 colours)


def _rgb_uint8(array: np.ndarray, name: str, ndim: int = 3) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != ndim or array.shape[-1] != 3:
        shape = "[T, H, W, 3]" if ndim == 4 else "[H, W, 3]"
        raise InvalidInputError(f"{name} must be uint8 RGB {shape} (got {array.dtype} {list(array.shape)})")
    return np.ascontiguousarray(array)
