"""Keep every frame of a clip in GIF, APNG and animated WebP files.

The encoders drop a frame that equals the one before it and lengthen the
earlier frame instead (Pillow for GIF and APNG, libwebp for WebP): the clip
plays the same, but the file holds fewer frames than the clip, and a game
engine that reads frames from it gets the wrong count. Each function here
makes a repeated frame differ from its predecessor in a way that does not
change what is shown:

* **GIF**: one pixel of the repeated frame uses a second palette entry with
  the same colour (the palette gets one more entry).
* **APNG**: the repeated frame gets the other disposal (none / clear to
  background) than the frame before; Pillow then writes it whole, and the
  picture is the same either way.
* **WebP**: one pixel's alpha drops from 255 to 254 (frames with alpha; in
  a frame with nothing visible, one pixel's alpha rises from 0 to 1), or
  one pixel's blue channel moves by just more than libwebp's similarity
  threshold for the quality (1 level when lossless, 4 at quality 90).

A GIF frame with nothing visible (after the first) is drawn in one of two
more transparent indices, alternately (each GIF frame names its own). When
the palette has no room left for the copies, repeats stay merged, and the
writer says so.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np


def repeated(frames: np.ndarray) -> list[int]:
    """Indices ``i`` of frames equal to frame ``i - 1``."""
    return [i for i in range(1, len(frames)) if np.array_equal(frames[i], frames[i - 1])]


def gif_frames(palettize: Callable, rgb: np.ndarray, alpha: np.ndarray | None, colors: int,
               notes: list[str]) -> tuple[np.ndarray, np.ndarray, list[int | None], list[int]]:
    """``palettize(rgb, alpha, colors)`` -> (indices, palette, each frame's transparent index, frames merged into
    the one before), no frame equal to the one before while the palette has room."""
    budget = min(int(colors), 256)
    while True:
        indices, palette, transparent = palettize(rgb, alpha, budget)
        marked = _mark_gif_frames(indices, palette, transparent)
        if marked is not None or budget <= 2:
            break
        budget = max(2, budget - _gif_entries_needed(indices, transparent))  # room for the copies
    clears: list[int] = []
    if marked is None:
        blank = repeated(indices)
    else:
        indices, palette, clears = marked
        blank = []
    if blank:
        notes.append(f"GIF frame(s) {', '.join(map(str, blank))} repeat the frame before; the palette has no room "
                     "to tell them apart, so players show them as one longer frame.")
    return indices, palette, [int(f.flat[0]) if int(f.flat[0]) in clears else transparent for f in indices], blank


def _visible_pixel(frame: np.ndarray, transparent: int | None) -> int | None:
    flat = frame.reshape(-1)
    if transparent is None:
        return 0
    hits = np.flatnonzero(flat != transparent)
    return int(hits[0]) if hits.size else None


def _empty_later(indices: np.ndarray, transparent: int | None) -> bool:
    """Whether a frame after the first has nothing visible."""
    return transparent is not None and any(_visible_pixel(f, transparent) is None for f in indices[1:])


def _gif_entries_needed(indices: np.ndarray, transparent: int | None) -> int:
    values = set()
    for i in repeated(indices):
        p = _visible_pixel(indices[i], transparent)
        if p is not None:
            values.add(int(indices[i].reshape(-1)[p]))
    return len(values) + (2 if _empty_later(indices, transparent) else 0)


def _mark_gif_frames(indices: np.ndarray, palette: np.ndarray, transparent: int | None):
    """-> (indices, palette, the extra transparent indices) or None when the palette has no room for them.

    A repeated frame with something visible gets a twin palette entry at one pixel. A frame after the first
    with nothing visible is drawn in one of two more transparent indices (each GIF frame names its own),
    alternately: Pillow merges it into the frame before when they are equal, and writes a second file header
    (which browsers stop at) when it equals the cleared background."""
    empty_later = _empty_later(indices, transparent)
    if not empty_later and not repeated(indices):
        return indices, palette, []
    indices = indices.copy()
    entries = [tuple(c) for c in palette]
    clears: list[int] = []
    if empty_later:
        if len(entries) + 2 > 256:
            return None
        clears = [len(entries), len(entries) + 1]
        entries += [entries[transparent]] * 2
    twin: dict[int, int] = {}
    for i in range(1, len(indices)):
        p = _visible_pixel(indices[i], transparent)
        if p is None:
            indices[i][...] = clears[1] if int(indices[i - 1].flat[0]) == clears[0] else clears[0]
            continue
        if not np.array_equal(indices[i], indices[i - 1]):
            continue
        flat = indices[i].reshape(-1)
        value = int(flat[p])
        if value not in twin:
            if len(entries) >= 256:
                return None
            twin[value] = len(entries)
            twin[len(entries)] = value
            entries.append(entries[value])
        flat[p] = twin[value]
    return indices, np.asarray(entries, np.uint8).reshape(-1, 3), clears


def apng_disposals(frames: np.ndarray, base: int = 0) -> list[int] | None:
    """Per-frame APNG disposal (0 none, 1 background) that keeps repeated frames; None when nothing repeats."""
    again = set(repeated(frames))
    if not again:
        return None
    disposals = [base]
    for i in range(1, len(frames)):
        disposals.append((1 - disposals[-1]) if i in again else base)
    return disposals


def webp_threshold(quality: float, lossless: bool) -> int:
    """libwebp's per-channel difference below which two frames count as equal (and merge)."""
    if lossless:
        return 0
    val = math.sqrt(max(0.0, min(100.0, float(quality))) / 100.0)
    return int(31 * (1 - val) + 1 * val + 0.5)


def webp_frames(frames: np.ndarray, quality: float, lossless: bool) -> np.ndarray:
    """Frames (RGB or RGBA uint8) with every repeated frame nudged just enough that libwebp keeps it."""
    again = repeated(frames)
    if not again:
        return frames
    frames = frames.copy()
    step = webp_threshold(quality, lossless) + 1
    for i in range(1, len(frames)):
        if not np.array_equal(frames[i], frames[i - 1]):
            continue
        frame = frames[i].reshape(-1, frames.shape[-1])
        if frames.shape[-1] == 4:
            visible = np.flatnonzero(frame[:, 3] > 0)
            if visible.size == 0:  # nothing shown: a 1/255 opaque pixel, as good as clear
                frame[0, 3] = 1
                continue
            p = int(visible[np.argmax(frame[visible, 3])])
            frame[p, 3] -= 1
        else:
            value = int(frame[0, 2])
            frame[0, 2] = value - step if value >= step else value + step
    return frames
