"""Reference-image preprocessing: alpha, greyscale, key colours, sizes and resizing.

A reference image reaches the model as RGB at the clip's size, in [-1, 1].
Getting there from what game artists have (a small RGBA sprite, a greyscale
line drawing, a 512x768 render) takes a few decisions, made here so that the
ComfyUI nodes and the command line share them:

* **Alpha.** The model has no alpha channel (upstream simply drops it). A
  transparent image is composited over a flat *key colour* before anything
  else, and the key colour is remembered so the exported clip can be made
  transparent again by keying it out. ``background="auto"`` picks the first
  candidate of :data:`KEY_COLORS` far enough from every visible colour of the
  sprite (so keying cannot eat the character); a named colour,
  ``"#rrggbb"`` or an ``(r, g, b)`` tuple forces one.
* **Opaque images** keep their pixels; their key colour is the *dominant
  edge colour* (the most common colour of the one-pixel border, when it covers
  at least half of it): a sprite drawn on a flat background can still be
  keyed out later. ``background`` other than ``"auto"`` is only used to pad.
* **Greyscale** (1 channel, or grey + alpha) is repeated to RGB.
* **Size.** ``fit="crop"`` is Open-Sora's own *resize to fill*: scale by
  ``max(th/h, tw/w)`` (the new size rounded), bicubic, then a centre crop with
  rounded offsets. ``fit="pad"`` scales to fit inside instead and pads the rest
  with the key colour (nothing of the sprite is lost). ``fit="stretch"``
  resizes to the exact size, ignoring the aspect ratio.
* **Pixel art.** ``pixel_art=True`` first enlarges by the largest whole factor
  with nearest-neighbour sampling (crisp, evenly sized pixels), so the
  remaining bicubic step is below 2x (and none at all when the size divides).
* **Buckets.** Open-Sora 1.2 was trained on fixed sizes per resolution
  (:data:`OPENSORA_BUCKETS`); :func:`bucket_size` picks the one whose aspect
  ratio is nearest to the image's. Other models use :func:`budget_size`
  (a pixel budget at the image's aspect ratio, rounded to a multiple).
* **Sprite sheets.** :func:`separate_figures` counts the figures of similar
  size an image holds, so a sheet of poses given as one reference gets a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .errors import InvalidInputError

FITS = ("crop", "pad", "stretch")

#: Candidate key colours for transparent images, in order of preference.
KEY_COLORS: dict[str, tuple[int, int, int]] = {
    "magenta": (255, 0, 255),
    "green": (0, 255, 0),
    "cyan": (0, 255, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "blue": (0, 0, 255),
}
#: Smallest RGB distance between an automatic key colour and any visible colour
#: that counts as safe; below it the farthest candidate is still used (and noted).
SAFE_KEY_DISTANCE = 90.0

#: Open-Sora 1.2 sizes ``(height, width)`` per resolution and H/W aspect key.
OPENSORA_BUCKETS: dict[str, dict[float, tuple[int, int]]] = {
    "144p": {0.38: (117, 312), 0.43: (125, 291), 0.48: (133, 277), 0.50: (135, 270), 0.53: (139, 262),
             0.54: (141, 260), 0.56: (144, 256), 0.62: (151, 241), 0.67: (156, 234), 0.75: (166, 221),
             1.00: (192, 192), 1.33: (221, 165), 1.50: (235, 156), 1.78: (256, 144), 1.89: (263, 139),
             2.00: (271, 135), 2.08: (277, 132)},
    "240p": {0.38: (196, 522), 0.43: (210, 490), 0.48: (222, 462), 0.50: (226, 452), 0.53: (232, 438),
             0.54: (236, 436), 0.56: (240, 426), 0.62: (252, 404), 0.67: (262, 393), 0.75: (276, 368),
             1.00: (320, 320), 1.33: (370, 278), 1.50: (392, 262), 1.78: (426, 240), 1.89: (440, 232),
             2.00: (452, 226), 2.08: (462, 222)},
    "360p": {0.38: (294, 784), 0.43: (314, 732), 0.48: (332, 692), 0.50: (340, 680), 0.53: (350, 662),
             0.54: (352, 652), 0.56: (360, 640), 0.62: (380, 608), 0.67: (392, 588), 0.75: (416, 554),
             1.00: (480, 480), 1.33: (554, 416), 1.50: (588, 392), 1.78: (640, 360), 1.89: (660, 350),
             2.00: (678, 340), 2.08: (692, 332)},
    "480p": {0.38: (392, 1046), 0.43: (420, 980), 0.48: (444, 925), 0.50: (452, 904), 0.53: (466, 880),
             0.54: (470, 870), 0.56: (480, 854), 0.62: (506, 810), 0.67: (522, 784), 0.75: (554, 738),
             1.00: (640, 640), 1.33: (740, 555), 1.50: (784, 522), 1.78: (854, 480), 1.89: (880, 466),
             2.00: (906, 454), 2.08: (924, 444)},
    "720p": {0.38: (588, 1568), 0.43: (628, 1466), 0.48: (666, 1388), 0.50: (678, 1356), 0.53: (698, 1318),
             0.54: (706, 1306), 0.56: (720, 1280), 0.62: (758, 1212), 0.67: (784, 1176), 0.75: (832, 1110),
             1.00: (960, 960), 1.33: (1108, 832), 1.50: (1176, 784), 1.78: (1280, 720), 1.89: (1320, 698),
             2.00: (1358, 680), 2.08: (1386, 666)},
}
RESOLUTIONS = tuple(OPENSORA_BUCKETS)


def bucket_size(resolution: str, aspect_hw: float) -> tuple[int, int]:
    """Open-Sora's ``(height, width)`` at ``resolution`` for the bucket nearest ``aspect_hw`` = H/W.

    Nearness is measured on the log scale (1:2 and 2:1 are equally far from 1:1).
    """
    if resolution not in OPENSORA_BUCKETS:
        raise InvalidInputError(f"unknown resolution {resolution!r}; choose one of {', '.join(RESOLUTIONS)}")
    if not aspect_hw > 0:
        raise InvalidInputError(f"aspect ratio must be positive (got {aspect_hw})")
    table = OPENSORA_BUCKETS[resolution]
    key = min(table, key=lambda k: abs(math.log(k) - math.log(aspect_hw)))
    return table[key]


def budget_size(pixels: int, aspect_hw: float, multiple: int) -> tuple[int, int]:
    """``(height, width)`` with about ``pixels`` pixels at ``aspect_hw`` = H/W, both multiples of ``multiple``."""
    if pixels < multiple * multiple or not aspect_hw > 0:
        raise InvalidInputError(f"cannot fit a {aspect_hw:.2f} aspect ratio into {pixels} pixels")
    h = math.sqrt(pixels * aspect_hw)
    w = pixels / h
    return (max(multiple, int(round(h / multiple)) * multiple), max(multiple, int(round(w / multiple)) * multiple))


# ---------------------------------------------------------------------------
# Pixels in and colours


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device; bfloat16/float16 become float32, which numpy has) or array-like -> numpy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def as_uint8(a: np.ndarray, what: str = "image") -> np.ndarray:
    """Values of any shape as uint8: floats are 0..1 (as in ComfyUI; NaN is 0), bools 0/255, integers 0..255.

    uint8 input is returned as it is (no copy).
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0)
        return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 255:
        return a.astype(np.uint8)
    values = f" with values {a.min()}..{a.max()}" if a.size and np.issubdtype(a.dtype, np.number) else ""
    raise InvalidInputError(
        f"{what} must be uint8 / integers in 0..255, or floats in 0..1; got dtype {a.dtype}{values}: "
        "convert it first, e.g. divide 16-bit images by 65535.0"
    )


def to_uint8(image: Any, what: str = "image") -> np.ndarray:
    """An image ``[H, W, C]`` (C = 1..4) or ``[H, W]`` as uint8 (floats are 0..1, as in ComfyUI)."""
    a = to_numpy(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4) or 0 in a.shape:
        raise InvalidInputError(
            f"{what} must be [H, W, C] with 1 to 4 channels (a ComfyUI IMAGE is [B, H, W, 3]); got {list(a.shape)}"
        )
    return np.ascontiguousarray(as_uint8(a, what))


def split_alpha(image: Any, alpha: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """-> RGB uint8 ``[H, W, 3]`` and alpha uint8 ``[H, W]`` (None when fully opaque).

    ``alpha`` (opacity, 1 = opaque, ``[H, W]``) replaces an alpha channel of
    the image; it is resized (bilinear) when its size differs from the image's.
    """
    a8 = to_uint8(image)
    rgb = a8[..., :3] if a8.shape[-1] >= 3 else np.repeat(a8[..., :1], 3, axis=-1)
    own = a8[..., 3] if a8.shape[-1] == 4 else (a8[..., 1] if a8.shape[-1] == 2 else None)
    if alpha is not None:
        own = to_uint8(alpha, "alpha")[..., 0]
        if own.shape != rgb.shape[:2]:
            from PIL import Image

            own = np.asarray(Image.fromarray(own, "L").resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR))
    if own is not None and own.min() == 255:
        own = None
    return np.ascontiguousarray(rgb), own


def parse_color(color: Any) -> tuple[int, int, int]:
    """``"#00ff00"``, ``"lime"``, a :data:`KEY_COLORS` name, ``"0,255,0"`` or ``(0, 255, 0)`` -> (r, g, b)."""
    if isinstance(color, str):
        text = color.strip().lower()
        if text in KEY_COLORS:
            return KEY_COLORS[text]
        if "," in text:
            try:
                color = tuple(int(float(v)) for v in text.split(","))
            except ValueError:
                raise InvalidInputError(f"cannot read colour {color!r}: write '#rrggbb', a name or 'r,g,b'") from None
        else:
            from PIL import ImageColor

            try:
                return tuple(int(v) for v in ImageColor.getrgb(text)[:3])
            except ValueError:
                raise InvalidInputError(f"unknown colour {color!r}: write '#rrggbb', a name or 'r,g,b'") from None
    values = [int(round(float(v))) for v in color]
    if len(values) not in (3, 4) or min(values[:3]) < 0 or max(values[:3]) > 255:
        raise InvalidInputError(f"a colour needs three values in 0..255; got {color!r}")
    return tuple(values[:3])


def dominant_edge_color(rgb: np.ndarray, min_share: float = 0.5) -> tuple[int, int, int] | None:
    """The most common colour of the image's one-pixel border (None if it covers less than ``min_share``).

    Colours are grouped with a tolerance of 8 levels per channel (JPEG noise,
    gradients of a few levels); the result is the mean of the winning group.
    """
    h, w = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]]).astype(np.int32) if h > 1 and w > 1 \
        else rgb.reshape(-1, 3).astype(np.int32)
    bins = border // 16
    codes = (bins[:, 0] << 8) | (bins[:, 1] << 4) | bins[:, 2]
    values, counts = np.unique(codes, return_counts=True)
    best = values[counts.argmax()]
    # the winning bin plus its neighbours within 8 levels of the bin's mean
    centre = border[codes == best].mean(axis=0)
    near = np.abs(border - centre).max(axis=1) <= 8
    if near.mean() < min_share:
        return None
    return tuple(int(v) for v in np.rint(border[near].mean(axis=0)))


def backdrop_color(rgb: np.ndarray) -> tuple[int, int, int]:
    """The colour behind an opaque image: its flat border colour, else the mean of its top and bottom rows (what
    padding around it is filled with)."""
    edge = dominant_edge_color(rgb)
    if edge is not None:
        return edge
    return tuple(int(v) for v in np.rint(np.concatenate([rgb[0], rgb[-1]]).reshape(-1, 3).mean(axis=0)))


def auto_key_color(rgb: np.ndarray, alpha: np.ndarray) -> tuple[tuple[int, int, int], float]:
    """A key colour for a transparent sprite -> (colour, its distance to the nearest visible colour).

    The first :data:`KEY_COLORS` candidate (in order) that is at least
    :data:`SAFE_KEY_DISTANCE` from every visible colour, else the farthest one.
    """
    visible = rgb[alpha >= 128].reshape(-1, 3).astype(np.float32)
    if visible.size == 0:
        return KEY_COLORS["magenta"], float("inf")
    colours = np.unique(visible, axis=0)
    distances = [
        (key, float(np.sqrt(((colours - np.asarray(key, np.float32)) ** 2).sum(axis=1)).min()))
        for key in KEY_COLORS.values()
    ]
    for key, distance in distances:  # the first safe one, in order of preference
        if distance >= SAFE_KEY_DISTANCE:
            return key, distance
    return max(distances, key=lambda kd: kd[1])


def composite(rgb: np.ndarray, alpha: np.ndarray | None, color: Sequence[int]) -> np.ndarray:
    """``rgb`` over a flat ``color`` with opacity ``alpha`` (uint8 in, uint8 out)."""
    if alpha is None:
        return rgb
    a = alpha[..., None].astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * a + np.asarray(color, np.float32) * (1.0 - a)
    return np.rint(out).astype(np.uint8)


def shows_key_where_clear(frames: torch.Tensor, alpha: torch.Tensor, key, tolerance: float = 0.05) -> bool:
    """Whether the frames show the key colour wherever ``alpha`` says nothing is drawn (they are the frames the
    opacity belongs to, not reordered or other frames of the same size)."""
    clear = alpha.to(frames.device) < 0.5 / 255
    if not bool(clear.any()):
        return True
    k = torch.tensor(key, dtype=torch.float32, device=frames.device) / 255.0
    return float((frames[..., :3].float()[clear] - k).abs().max()) <= tolerance


def unmix_key(frames: torch.Tensor, alpha: torch.Tensor, key) -> torch.Tensor:
    """Frames composited over the ``key`` colour with opacity ``alpha`` ``[T, H, W]`` -> their own (straight)
    colours: ``(rgb - (1 - a) * key) / a`` where a pixel shows at all, so soft edges keep no tint of the key."""
    rgb = frames[..., :3].float()
    a = alpha.to(rgb.device, rgb.dtype)[..., None]
    k = torch.tensor(key, dtype=rgb.dtype, device=rgb.device) / 255.0
    straight = torch.where(a > 0, (rgb - (1.0 - a) * k) / a.clamp_min(1e-6), rgb).clamp(0.0, 1.0)
    return straight


# ---------------------------------------------------------------------------
# Resizing


def _pil_resize(rgb: np.ndarray, width: int, height: int, resample) -> np.ndarray:
    from PIL import Image

    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    return np.asarray(Image.fromarray(rgb, "RGB").resize((int(width), int(height)), resample))


def _pixel_art_prescale(rgb: np.ndarray, scale: float) -> np.ndarray:
    """Enlarge by the largest whole factor not above ``scale`` with nearest neighbour."""
    k = int(math.floor(scale + 1e-9))
    if k < 2:
        return rgb
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def resize_to_fill(rgb: np.ndarray, height: int, width: int, *, pixel_art: bool = False) -> np.ndarray:
    """Open-Sora's resize-to-fill: cover ``height x width`` (bicubic, rounded size), centre crop (rounded offsets)."""
    from PIL import Image

    if pixel_art:
        rgb = _pixel_art_prescale(rgb, max(height / rgb.shape[0], width / rgb.shape[1]))
    h, w = rgb.shape[:2]
    rh, rw = height / h, width / w
    if rh > rw:
        sh, sw = height, round(w * rh)
        top, left = 0, int(round((sw - width) / 2.0))
    else:
        sh, sw = round(h * rw), width
        top, left = int(round((sh - height) / 2.0)), 0
    scaled = _pil_resize(rgb, sw, sh, Image.BICUBIC)
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def resize_to_fit(rgb: np.ndarray, height: int, width: int, fill: Sequence[int], *, pixel_art: bool = False) -> np.ndarray:
    """Scale to fit inside ``height x width`` (bicubic, aspect kept) and centre it on ``fill``."""
    from PIL import Image

    if pixel_art:
        rgb = _pixel_art_prescale(rgb, min(height / rgb.shape[0], width / rgb.shape[1]))
    h, w = rgb.shape[:2]
    scale = min(height / h, width / w)
    sh, sw = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    scaled = _pil_resize(rgb, sw, sh, Image.BICUBIC)
    out = np.empty((height, width, 3), np.uint8)
    out[:] = np.asarray(fill, np.uint8)
    top, left = (height - sh) // 2, (width - sw) // 2
    out[top : top + sh, left : left + sw] = scaled
    return out


def resize_stretch(rgb: np.ndarray, height: int, width: int, *, pixel_art: bool = False) -> np.ndarray:
    from PIL import Image

    if pixel_art:
        rgb = _pixel_art_prescale(rgb, min(height / rgb.shape[0], width / rgb.shape[1]))
    return _pil_resize(rgb, width, height, Image.BICUBIC)


# ---------------------------------------------------------------------------
# One call


@dataclass
class PreparedReference:
    pixels: torch.Tensor  # [3, H, W] float32 in [-1, 1]
    rgb: np.ndarray  # [H, W, 3] uint8, what the model sees
    key_color: tuple[int, int, int] | None  # background colour to key out for transparent export
    had_alpha: bool  # the source image was transparent somewhere
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def video(self) -> torch.Tensor:
        """``[1, 3, 1, H, W]``: the image as a one-frame clip, as the VAE encodes it."""
        return self.pixels[None, :, None]


def prepare_reference(
    image: Any,
    *,
    height: int,
    width: int,
    alpha: Any = None,
    fit: str = "crop",
    pixel_art: bool = False,
    background: Any = "auto",
) -> PreparedReference:
    """One reference image -> RGB at ``height x width`` in [-1, 1], plus its key colour.

    ``image``: ``[H, W, C]`` (C = 1..4), float 0..1 or uint8. ``alpha``:
    optional opacity ``[H, W]`` (1 = opaque; a ComfyUI ``MASK`` is ``1 - alpha``).
    See the module notes for ``fit``, ``pixel_art`` and ``background``.
    """
    if fit not in FITS:
        raise InvalidInputError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise InvalidInputError(f"reference size {width}x{height} is empty")
    rgb, a = split_alpha(image, alpha)
    notes: list[str] = []
    auto = background is None or (isinstance(background, str) and background.strip().lower() == "auto")
    if a is not None:
        if auto:
            key, distance = auto_key_color(rgb, a)
            if distance < SAFE_KEY_DISTANCE:
                notes.append(
                    f"the sprite uses colours close to every candidate key colour; {key} is the farthest "
                    f"(distance {distance:.0f}): choose a background colour that the sprite does not use"
                )
        else:
            key = parse_color(background)
        rgb = composite(rgb, a, key)
        fill = key
    else:
        key = dominant_edge_color(rgb)
        fill = backdrop_color(rgb) if auto else parse_color(background)
    if fit == "crop":
        out = resize_to_fill(rgb, height, width, pixel_art=pixel_art)
    elif fit == "pad":
        out = resize_to_fit(rgb, height, width, fill, pixel_art=pixel_art)
    else:
        out = resize_stretch(rgb, height, width, pixel_art=pixel_art)
    pixels = torch.from_numpy(out.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()
    return PreparedReference(pixels=pixels, rgb=out, key_color=key, had_alpha=a is not None, notes=notes)


# ---------------------------------------------------------------------------
# Sprite sheets


def _runs(present: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], present.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def separate_figures(alpha: np.ndarray) -> int:
    """How many figures, each at least half the size of the largest, an alpha mask holds apart from one another
    by fully transparent rows or columns (1 for one character, small loose parts aside; several for a sheet of
    poses laid out in rows and columns, however thin the gaps)."""
    mask = np.asarray(alpha) > 0
    sizes = []
    for top, bottom in _runs(mask.any(axis=1)):
        band = mask[top:bottom]
        sizes += [int(band[:, left:right].sum()) for left, right in _runs(band.any(axis=0))]
    return sum(1 for n in sizes if n >= 0.5 * max(sizes)) if sizes else 0


# ---------------------------------------------------------------------------
# Image files

#: Largest image file read as a reference (pixels): far beyond any model size, well below what exhausts memory.
MAX_FILE_PIXELS = 8192 * 8192


def read_image(path: str | Any) -> np.ndarray:
    """An image file -> uint8 ``[H, W, 3]`` or ``[H, W, 4]`` (with alpha).

    16-bit and 32-bit greyscale and float images are scaled to 8 bits (not
    clipped); palette, greyscale and CMYK images become RGB(A); an EXIF
    orientation is applied (the image as viewers show it, as ComfyUI's Load
    Image reads it).
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_FILE_PIXELS:
                    raise Image.DecompressionBombError(f"{width}x{height}")
                img.load()
                return _image_array(ImageOps.exif_transpose(img))
    except FileNotFoundError:
        raise InvalidInputError(f"image not found: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        side = int(math.sqrt(MAX_FILE_PIXELS))
        raise InvalidInputError(
            f"{path} is too large to use as a reference (over {MAX_FILE_PIXELS // 1_000_000} million pixels): "
            f"scale it down to at most {side}x{side} (the model works at a few hundred pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path} as an image ({exc}); use a PNG or JPG file") from None


def _image_array(img) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        raw = np.asarray(img)
        values = raw.astype(np.float64)
        if mode.startswith("I;16"):
            top = 65535.0
        elif mode == "F" and values.size and values.min() >= 0 and values.max() <= 1.0:
            top = 1.0
        elif values.size and values.min() >= 0 and values.max() <= 65535:
            top = 65535.0 if values.max() > 255 else 255.0
        else:
            low = float(values.min()) if values.size else 0.0
            values, top = values - low, max(float(values.max()) - low, 1.0) if values.size else 1.0
        grey = np.rint(np.clip(values / top, 0.0, 1.0) * 255.0).astype(np.uint8)
        channels = [grey] * 3
        if "transparency" in img.info and isinstance(img.info["transparency"], (int, float)):
            channels.append(np.where(raw == img.info["transparency"], 0, 255).astype(np.uint8))
        return np.ascontiguousarray(np.stack(channels, axis=-1))
    if mode != "RGBA":
        alpha = "A" in mode or mode == "RGBa" or "transparency" in img.info  # RGB too: a PNG's tRNS colour
        img = img.convert("RGBA" if alpha else "RGB")
    return np.asarray(img)


def parse_frame_positions(text: str | int | Sequence[int]) -> list[int]:
    """``"0"``, ``"0, -1"``, ``"0; 8; -1"`` -> [0, -1] ... (pixel frames; negative counts from the end)."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(v) for v in text]
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise InvalidInputError("no frame position given: write e.g. 0 (first frame), -1 (last) or 0, -1")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise InvalidInputError(
            f"frame positions {text!r} must be whole numbers separated by commas, e.g. 0, -1"
        ) from None
