"""The export tests' sprite, and readers of what an export wrote (animated images, videos, folders)."""

from __future__ import annotations

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageSequence

KEY = (0, 255, 0)
RED = (200, 40, 40)
BLUE = (30, 60, 220)
T, H, W = 5, 13, 15  # odd on purpose


def sprite_frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """A red block with a blue stripe walking across a flat key-green background."""
    fr = np.zeros((t, h, w, 3), np.uint8)
    fr[...] = KEY
    for i in range(t):
        fr[i, 3:10, 2 + i : 8 + i] = RED
        fr[i, 5, 2 + i : 8 + i] = BLUE
    return fr


def sprite_mask(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((t, h, w), bool)
    for i in range(t):
        m[i, 3:10, 2 + i : 8 + i] = True
    return m


def pil_frames(path):
    """All frames of an animated image as RGBA arrays, plus per-frame durations and info."""
    with Image.open(path) as im:
        info = dict(im.info)
        frames, durations = [], []
        for frame in ImageSequence.Iterator(im):
            frame.load()
            durations.append(frame.info.get("duration"))
            frames.append(np.asarray(frame.convert("RGBA")))
        mode = im.mode
    return np.stack(frames), durations, info, mode


def ffmpeg_frames(path, rgba: bool = False):
    params = ["-c:v", "libvpx-vp9"] if rgba else None  # libvpx decodes VP9's alpha plane
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgba" if rgba else "rgb24",
                                 bpp=4 if rgba else 3, input_params=params)
    meta = gen.__next__()
    w, h = meta["size"]
    c = 4 if rgba else 3
    frames = np.stack([np.frombuffer(b, np.uint8).reshape(h, w, c) for b in gen])
    return frames, meta


def flat_pixels(frames: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one colour (4:2:0 video blurs colour edges)."""
    t, h, w = frames.shape[:3]
    p = np.pad(frames, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    same = np.ones((t, h, w), bool)
    for dy in range(3):
        for dx in range(3):
            same &= (p[:, dy : dy + h, dx : dx + w] == frames).all(-1)
    return same


def listing(folder):
    return sorted(p.name for p in folder.iterdir())
