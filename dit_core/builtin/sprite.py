"""A reference image as the built-in model uses it: the pixels that move, and the frame the model sees.

:func:`prepare_sprite` turns any character image into a :class:`Sprite`:

* **Alpha.** A transparent image keeps its alpha. An opaque image on a flat
  background (its dominant edge colour) has that colour keyed out, so the
  background stays put while the character moves; an opaque image without
  one (a photo) moves as a whole.
* **Key colour.** Frames of a transparent image are composited over a flat
  colour the sprite does not use (``background="auto"``) or a chosen one; the
  export keys it out again for transparent formats. An opaque image's frames
  stay on its own background colour.
* **Size.** The output has the image's size unless another is asked for
  (:func:`resize_rgba`: nearest neighbour for pixel art, else bicubic).
* **Warp mode.** ``auto`` samples with ``nearest`` when the image looks like
  pixel art (hard alpha edges and at most :data:`PIXEL_ART_COLORS` colours),
  so the clip keeps its exact pixels and palette; else ``bilinear``.
* **Working frame.** The model was trained on characters standing in a
  square frame, :data:`CHARACTER_HEIGHT` of its height tall with their feet at
  :data:`FEET_AT`. When the character's placement on its canvas is far from
  that (a tightly cropped 32x32 sprite, a small figure on a large canvas), the
  model sees a square frame around the character that matches it.
* **Canvas.** Where that frame reaches past the image (a tightly cropped
  sprite has no room above it to jump into, nor around it to grow), the
  canvas grows by transparent margins to hold the frame (``canvas="grow"``,
  the default when no output size is asked for), so the motion is not cut at
  the image's edge; ``canvas="keep"`` keeps the image's canvas. The margins
  are in :attr:`Sprite.margins`; the character keeps its pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import images
from ..errors import InvalidInputError
from .warp import MODES

PIXEL_ART_COLORS = 64
INVISIBLE_ALPHA = 5  # an image whose every pixel is at most this opaque (2 %) shows nothing to move
KEY_TOLERANCE = 40  # channel difference from a flat background that still counts as background
CHARACTER_HEIGHT = (0.45, 0.75)  # training range of the character's height, in frame heights
FEET_AT = (0.82, 0.94)  # training range of the feet's height from the top, in frame heights
CENTRE_AT = (0.38, 0.62)  # training range of the character's horizontal centre, in frame widths
TARGET_HEIGHT = 0.6  # the character's height in the frame made for a placement out of those ranges
TARGET_FEET = 0.88
CANVASES = ("grow", "keep")
SHEET_FIGURES = 3  # this many separate figures of similar size make an image look like a sprite sheet
GROW_BEYOND = 1 / 16  # the frame must reach past the image by more than this share of it (a field cell) to grow


@dataclass
class Sprite:
    rgba: torch.Tensor  # [4, H, W] float32 premultiplied 0..1 at the output size
    frame: tuple[float, float, float]  # the model's square working frame (x0, y0, size) in canvas pixels
    key_color: tuple[int, int, int]  # the flat colour frames are composited on
    had_alpha: bool  # the image was transparent (so transparent formats key the key colour out)
    mode: str  # warp sampling: nearest or bilinear
    notes: list[str] = field(default_factory=list)
    margins: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, bottom, left, right) pixels the canvas grew by

    @property
    def height(self) -> int:
        return int(self.rgba.shape[1])

    @property
    def width(self) -> int:
        return int(self.rgba.shape[2])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image before its canvas grew."""
        top, bottom, left, right = self.margins
        return self.height - top - bottom, self.width - left - right

    def composited(self) -> np.ndarray:
        """The reference over its key colour, uint8 ``[H, W, 3]`` (what frame 0 shows)."""
        return frames_over_key(self.rgba[:, None], self.key_color)[0]


def unpremultiply(rgba: torch.Tensor) -> torch.Tensor:
    """Premultiplied RGBA ``[4, ...]`` -> straight RGBA (colour 0 where nothing shows, as premultiplied it is)."""
    return torch.cat([(rgba[:3] / rgba[3:4].clamp_min(1e-6)).clamp(0.0, 1.0), rgba[3:4]])


def frames_over_key(rgba: torch.Tensor, key_color) -> np.ndarray:
    """Premultiplied ``[4, T, H, W]`` 0..1 over a flat colour -> uint8 ``[T, H, W, 3]``."""
    key = torch.tensor(key_color, dtype=rgba.dtype, device=rgba.device).view(3, 1, 1, 1) / 255.0
    rgb = rgba[:3] + (1.0 - rgba[3:4]) * key
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def looks_like_pixel_art(rgb: np.ndarray, alpha: np.ndarray) -> bool:
    """Hard alpha edges and a small palette."""
    if not np.isin(alpha, (0, 255)).all():
        return False
    opaque = rgb[alpha == 255]
    return len(opaque) > 0 and len(np.unique(opaque, axis=0)) <= PIXEL_ART_COLORS


def key_out(rgb: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """Alpha (uint8) of an opaque image on a flat background: 0 where a pixel is the background's colour."""
    far = np.abs(rgb.astype(np.int16) - np.asarray(key, np.int16)).max(axis=-1) > KEY_TOLERANCE
    return np.where(far, 255, 0).astype(np.uint8)


def working_frame(alpha: np.ndarray) -> tuple[float, float, float]:
    """The square frame ``(x0, y0, size)`` (canvas pixels) in which the character stands as in training."""
    height, width = alpha.shape
    rows, cols = np.nonzero(alpha > 0)
    if len(rows) == 0:
        return (0.0, 0.0, float(height)) if height == width else _centred_square(height, width)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    char_h, char_w = bottom - top, right - left
    if height == width:
        placed = (CHARACTER_HEIGHT[0] <= char_h / height <= CHARACTER_HEIGHT[1]
                  and FEET_AT[0] <= bottom / height <= FEET_AT[1]
                  and CENTRE_AT[0] <= (left + right) / 2 / width <= CENTRE_AT[1])
        if placed:
            return (0.0, 0.0, float(height))
    size = max(char_h / TARGET_HEIGHT, char_w / TARGET_HEIGHT)
    return ((left + right) / 2 - size / 2, bottom - TARGET_FEET * size, float(size))


def room_to_move(frame: tuple[float, float, float], height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` margins that grow a ``height x width`` canvas to hold the working ``frame``
    (none when it reaches past the canvas by no more than :data:`GROW_BEYOND` of its size); a grown side is made
    even (one more row at the bottom or column at the right), as video formats want."""
    x0, y0, size = frame
    over = (-y0, y0 + size - height, -x0, x0 + size - width)
    if max(over) <= GROW_BEYOND * size:
        return (0, 0, 0, 0)
    top, bottom, left, right = (max(0, math.ceil(v - 1e-6)) for v in over)
    if top + bottom:
        bottom += (height + top + bottom) % 2
    if left + right:
        right += (width + left + right) % 2
    return top, bottom, left, right


def _centred_square(height: int, width: int) -> tuple[float, float, float]:
    size = float(max(height, width))
    return ((width - size) / 2, (height - size) / 2, size)


def resize_rgba(rgb: np.ndarray, alpha: np.ndarray, height: int, width: int, *, fit: str, nearest: bool):
    """RGB + alpha (uint8) at ``height x width``: ``stretch`` ignores the aspect ratio, ``pad`` fits the whole
    image inside (transparent around it), ``crop`` fills and centre-crops. Nearest neighbour for pixel art, else
    bicubic (Pillow resizes RGBA premultiplied)."""
    from PIL import Image

    if fit not in images.FITS:
        raise InvalidInputError(f"unknown fit {fit!r}; choose one of {', '.join(images.FITS)}")
    h0, w0 = alpha.shape
    if fit == "stretch":
        scaled_h, scaled_w = height, width
    else:
        scale = (min if fit == "pad" else max)(height / h0, width / w0)
        scaled_h, scaled_w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    rgba = Image.fromarray(np.concatenate([rgb, alpha[..., None]], axis=-1), "RGBA")
    scaled = np.asarray(rgba.resize((scaled_w, scaled_h), Image.NEAREST if nearest else Image.BICUBIC))
    out = np.zeros((height, width, 4), np.uint8)
    top, left = (height - scaled_h) // 2, (width - scaled_w) // 2
    src = scaled[max(0, -top):, max(0, -left):][:height, :width]
    out[max(0, top):max(0, top) + src.shape[0], max(0, left):max(0, left) + src.shape[1]] = src
    return np.ascontiguousarray(out[..., :3]), np.ascontiguousarray(out[..., 3])


def prepare_sprite(image: Any, *, alpha: Any = None, size: tuple[int, int] | None = None, fit: str = "pad",
                   background: Any = "auto", mode: str = "auto", canvas: str = "grow",
                   margins: tuple[int, int, int, int] | None = None) -> Sprite:
    """One character image -> a :class:`Sprite` (see the module notes).

    ``image`` ``[H, W, C]`` (C = 1..4), float 0..1 or uint8; ``alpha`` optional
    opacity ``[H, W]`` (1 = opaque); ``size`` ``(height, width)`` of the image
    (None: its own) and ``fit`` (``pad``, ``crop`` or ``stretch``) for another
    aspect ratio; ``background`` ``auto``, a colour name, ``#rrggbb`` or
    ``r,g,b``; ``mode`` ``auto``, ``nearest`` or ``bilinear``; ``canvas``
    ``grow`` (room for the motion around a tightly cropped character, unless
    ``size`` is given) or ``keep``; ``margins`` ``(top, bottom, left, right)``
    grows the canvas by exactly these (a pose image that must match a grown
    reference).
    """
    if mode not in ("auto",) + MODES:
        raise InvalidInputError(f"unknown warp mode {mode!r}; choose auto, {' or '.join(MODES)}")
    if canvas not in CANVASES:
        raise InvalidInputError(f"unknown canvas {canvas!r}; choose grow (room for the motion) or keep (the image's "
                                "own canvas)")
    rgb, a = images.split_alpha(image, alpha)
    if a is not None and int(a.max()) <= INVISIBLE_ALPHA:
        raise InvalidInputError("the image has no visible pixels (it is fully transparent), so there is no character "
                                "to move: give an image in which the character is drawn (a MASK given with it: 1 means transparent)")
    notes: list[str] = []
    had_alpha = a is not None
    auto = background is None or (isinstance(background, str) and background.strip().lower() == "auto")
    if a is None:
        edge = images.dominant_edge_color(rgb)
        a = key_out(rgb, edge) if edge is not None else np.full(rgb.shape[:2], 255, np.uint8)
        if edge is not None and not a.any():
            a[:] = 255  # a flat image: nothing to key out
    if not auto:
        key = images.parse_color(background)
    elif not had_alpha:  # an opaque image: the clip stays on its own background (padding and margins too)
        key = images.backdrop_color(rgb)
    else:
        key, distance = images.auto_key_color(rgb, a)
        if distance < images.SAFE_KEY_DISTANCE:
            notes.append(f"the sprite uses colours close to every candidate key colour; {key} is the farthest "
                         f"(distance {distance:.0f}): choose a background colour that the sprite does not use")
    figures = images.separate_figures(a)
    if figures >= SHEET_FIGURES:
        notes.append(f"the image holds {figures} separate figures of similar size (a sprite sheet?): they move as one "
                     "character on the image's canvas; give one figure, cropped from the sheet, for its own motion")
    pixel_art = looks_like_pixel_art(rgb, a) if mode == "auto" else mode == "nearest"
    if size is not None:
        height, width = int(size[0]), int(size[1])
        if height < 1 or width < 1:
            raise InvalidInputError(f"output size {width}x{height} is empty: give a width and height of at least 1")
        if (height, width) != rgb.shape[:2]:
            rgb, a = resize_rgba(rgb, a, height, width, fit=fit, nearest=pixel_art)
    frame = working_frame(a)
    if margins is None:
        # an opaque photo moves as a whole; a sheet's canvas would grow to a square as wide as the whole sheet
        grows = canvas == "grow" and size is None and not a.all() and figures < SHEET_FIGURES
        margins = room_to_move(frame, *a.shape) if grows else (0, 0, 0, 0)
        if any(margins):
            h, w = a.shape
            notes.append(f"the canvas grew from {w}x{h} to {w + margins[2] + margins[3]}x{h + margins[0] + margins[1]}"
                         " (transparent margins) so the character has room to move")
    margins = tuple(int(m) for m in margins)
    if any(margins):
        top, bottom, left, right = margins
        rgb = np.pad(rgb, ((top, bottom), (left, right), (0, 0)))
        a = np.pad(a, ((top, bottom), (left, right)))
        frame = (frame[0] + left, frame[1] + top, frame[2])
    straight = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)
    opacity = torch.from_numpy(a.astype(np.float32) / 255.0)[None]
    return Sprite(rgba=torch.cat([straight * opacity, opacity]).contiguous(), frame=frame,
                  key_color=tuple(int(v) for v in key), had_alpha=had_alpha,
                  mode="nearest" if pixel_art else "bilinear", notes=notes, margins=margins)
