"""Write generated frames to video files, animated images and sprite sheets.

One call, :func:`export_frames`, turns a clip (a ComfyUI ``IMAGE`` batch, a
numpy array or a list of frames) into one of the formats in :data:`FORMATS`:

================  ==========  =====  ======================  ============================
format            extension   alpha  metadata                writer
================  ==========  =====  ======================  ============================
``mp4``           .mp4        no     container tags          ffmpeg, libx264 yuv420p
``webm``          .webm       yes    container tags          ffmpeg, libvpx-vp9
``gif``           .gif        1-bit  comment (JSON object)   Pillow, one global palette
``webp``          .webp       yes    EXIF (ComfyUI layout)   Pillow (libwebp)
``apng``          .apng/.png  yes    PNG text chunks         Pillow
``png_sequence``  folder      yes    PNG text in each frame  Pillow, ``frame_00000.png``
``sprite_sheet``  .png+.json  yes    PNG text chunks         Pillow grid + JSON atlas
================  ==========  =====  ======================  ============================

The formats are data (:class:`ExportFormat` rows built from ``_FORMAT_TABLE``),
not code branches: a row names its writer kind, codec, pixel format, whether it
keeps alpha, whether it needs even sizes, how it stores metadata, whether it
stores a loop count, and its default quality options.

Libraries
---------
* **Pillow** writes GIF, animated WebP, APNG, PNG frames and sprite sheets
  (``Image.save(save_all=True, append_images=..., duration=[ms...], loop=...)``).
* **imageio-ffmpeg** provides the ffmpeg binary (``imageio_ffmpeg.get_ffmpeg_exe()``;
  the wheel bundles one, ``IMAGEIO_FFMPEG_EXE`` points it at another). MP4 and
  WebM are encoded by running that binary directly with raw RGB(A) frames on
  stdin, so that its exit status and error output are checked and reported,
  and metadata of any size travels in an ``ffmetadata`` file rather than on the
  command line. The bundled binary has libx264 and libvpx-vp9.
* **imageio** (``imageio.v3.imread``) reads any of these files back; the tests
  use it and Pillow to check what was written.

Rules
-----
* **Frames**: uint8 ``[T,H,W,C]`` (C = 1, 2, 3 or 4), float ``0..1`` in the
  same layout (numpy or torch, e.g. a ComfyUI ``IMAGE``), a single ``[H,W,C]``
  frame, or a list of any of these.
* **Alpha** (opacity, 1 = opaque; note ComfyUI's ``MASK`` is ``1 - alpha``):
  taken from a 4th channel, from ``alpha=`` (``[T,H,W]`` or ``[H,W]``, which
  replaces a 4th channel), and/or keyed out of the colour ``key_color`` with
  :func:`key_out` (multiplied with the other). ``alpha=False`` ignores a 4th channel.
  Opaque output (formats without alpha such as MP4, or ``opaque=True``) gets
  the transparent pixels composited over ``background`` (default ``"auto"``:
  a light or dark grey that contrasts with the character, never the key
  colour). GIF keeps pixels with alpha >= 0.5 opaque.
* **Even sizes**: H.264/VP9 in 4:2:0 need even width and height; odd frames
  are padded by one pixel on the right and/or bottom, repeating the edge pixels
  (alpha too), and :attr:`ExportResult.padded` says so. The other formats keep
  the exact size.
* **Loop**: ``loop=0`` plays forever, ``loop=N`` plays N times in total (GIF
  stores N-1 repeats, APNG/WebP store N). MP4/WebM have no loop count.
* **Ping-pong**: frames + reversed(frames[1:-1]) (``0 1 2 3 2 1``), baked into
  every animated format. A sprite sheet keeps each frame once and tags the
  animation ``"direction": "pingpong"`` (the engine plays it back and forth).
* **Timing**: ``fps`` is kept exactly on average: per-frame delays are whole
  milliseconds (GIF: 10 ms ticks, at least 20 ms because browsers slow shorter
  GIF delays down to 100 ms) spread so that their sum matches ``frames / fps``.
  Every frame is kept, also one equal to the frame before (the encoders would
  merge those into one longer frame; see :mod:`distinct_frames`), so a file
  holds exactly the clip's frame count.
* **Metadata**: a dict of JSON-serialisable values (ComfyUI uses ``prompt``
  and ``workflow``); strings are stored verbatim, anything else as JSON text.
  See :func:`read_metadata` for the way back.
* **Paths**: ``path_or_dir`` is the target file (folder for a PNG sequence);
  an existing folder, or any folder when ``prefix`` is given, is an output
  folder in which a new ComfyUI-style name ``<prefix>_00001_.<ext>`` is made
  (:func:`unique_path`). :func:`format_for_path` picks the format from the
  extension: ``.png`` is a sprite sheet (grid PNG + JSON atlas), ``.apng`` an
  animated PNG, a folder or a name without extension a PNG sequence.
* **Never overwrite, never half-write**: every file is written under a hidden
  temporary name in its target folder and renamed into place when complete
  (removed on any error). With ``overwrite=False`` (default) a target that
  already exists is never replaced: the next free name ``<stem>_00001_.<ext>``
  is used instead and the result notes it. ``overwrite=True`` replaces it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import __version__, distinct_frames
from .errors import PUBLIC_MODULE, CharMotionError, InvalidInputError

__all__ = [
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "FFmpegNotFoundError",
    "FORMATS",
    "export_frames",
    "format_for_path",
    "key_out",
    "read_metadata",
    "unique_path",
]


class ExportError(CharMotionError, RuntimeError):
    """Writing an output file failed (the message says why and what to do)."""

    __module__ = PUBLIC_MODULE


class FFmpegNotFoundError(ExportError):
    """MP4/WebM export needs an ffmpeg binary and none was found."""

    __module__ = PUBLIC_MODULE


# --------------------------------------------------------------------------------------
# Formats as data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFormat:
    """One output format, described by data (see ``_FORMAT_TABLE``).

    ``writer`` is the writer kind: ``"ffmpeg"``, ``"pillow"``,
    ``"png_sequence"`` or ``"sprite_sheet"``. ``extensions[0]`` is used for new
    names (empty for a folder). ``metadata`` says how metadata is stored:
    ``"ffmetadata"``, ``"png_text"``, ``"exif"``, ``"gif_comment"`` or
    ``"none"``. ``quality`` maps the public ``quality`` (0..100, higher is
    better) onto the encoder's own setting: ``{"option", "worst", "best"}``.
    ``options`` are the encoder defaults, ``lossless_options`` replace the
    quality option when ``lossless=True``.
    """

    name: str
    description: str
    extensions: tuple[str, ...]
    writer: str
    alpha: bool
    even_size: bool
    metadata: str
    loop: bool
    animated: bool = True
    codec: str | None = None
    pix_fmt: str | None = None
    alpha_pix_fmt: str | None = None
    muxer: str | None = None
    pillow_format: str | None = None
    frame_tick_ms: int = 1
    min_frame_ms: int = 1
    max_side: int | None = None  # the format's largest width and height
    quality: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    lossless_options: Mapping[str, Any] | None = None
    output_args: tuple[str, ...] = ()

    @property
    def extension(self) -> str:
        return self.extensions[0]


_FORMAT_TABLE: tuple[dict[str, Any], ...] = (
    {
        "name": "mp4",
        "description": "H.264 MP4 (plays everywhere; no alpha)",
        "extensions": (".mp4",),
        "writer": "ffmpeg",
        "codec": "libx264",
        "pix_fmt": "yuv420p",
        "muxer": "mp4",
        "alpha": False,
        "even_size": True,
        "metadata": "ffmetadata",
        "loop": False,
        "quality": {"option": "crf", "worst": 51, "best": 0},
        "options": {"crf": 19, "preset": "medium"},
        # -qp 0 is lossless H.264 in its yuv420p colours (chroma stays subsampled).
        "lossless_options": {"qp": 0, "preset": "medium"},
        # faststart: index at the front so browsers play before the download ends;
        # use_metadata_tags: keep arbitrary keys (prompt, workflow) in the container.
        "output_args": ("-movflags", "+faststart+use_metadata_tags"),
    },
    {
        "name": "webm",
        "description": "VP9 WebM (browsers; alpha kept as yuva420p)",
        "extensions": (".webm",),
        "writer": "ffmpeg",
        "codec": "libvpx-vp9",
        "pix_fmt": "yuv420p",
        "alpha_pix_fmt": "yuva420p",
        "muxer": "webm",
        "alpha": True,
        "even_size": True,
        "metadata": "ffmetadata",
        "loop": False,
        "quality": {"option": "crf", "worst": 63, "best": 0},
        "options": {"crf": 30, "b:v": 0, "deadline": "good", "cpu-used": 4, "row-mt": 1},
        "lossless_options": {"lossless": 1, "deadline": "good", "cpu-used": 4, "row-mt": 1},
    },
    {
        "name": "gif",
        "description": "GIF (256 colours, 1-bit transparency)",
        "extensions": (".gif",),
        "writer": "pillow",
        "pillow_format": "GIF",
        "alpha": True,
        "even_size": False,
        "metadata": "gif_comment",
        "loop": True,
        "frame_tick_ms": 10,
        "min_frame_ms": 20,
        "max_side": 65535,
        # quality picks the palette size: 0 -> 2 colours, 100 -> 256.
        "quality": {"option": "colors", "worst": 2, "best": 256},
        "options": {"colors": 256},
    },
    {
        "name": "webp",
        "description": "animated WebP (lossy or lossless, alpha)",
        "extensions": (".webp",),
        "writer": "pillow",
        "pillow_format": "WEBP",
        "max_side": 16383,
        "alpha": True,
        "even_size": False,
        "metadata": "exif",
        "loop": True,
        "quality": {"option": "quality", "worst": 0, "best": 100},
        "options": {"quality": 90, "method": 4, "lossless": False},
        "lossless_options": {"quality": 100, "method": 4, "lossless": True},
    },
    {
        "name": "apng",
        "description": "animated PNG (lossless, alpha)",
        "extensions": (".apng", ".png"),
        "writer": "pillow",
        "pillow_format": "PNG",
        "alpha": True,
        "even_size": False,
        "metadata": "png_text",
        "loop": True,
        "options": {"compress_level": 6, "disposal": 0, "blend": 0},
    },
    {
        "name": "png_sequence",
        "description": "folder of PNG frames frame_00000.png ...",
        "extensions": ("",),
        "writer": "png_sequence",
        "alpha": True,
        "even_size": False,
        "metadata": "png_text",
        "loop": False,
        "options": {"compress_level": 6},
    },
    {
        "name": "sprite_sheet",
        "description": "grid PNG + JSON atlas (TexturePacker JSON Hash / Aseprite layout)",
        "extensions": (".png",),
        "writer": "sprite_sheet",
        "alpha": True,
        "even_size": False,
        "metadata": "png_text",
        "loop": True,
        "animated": False,
        "options": {"compress_level": 6},
    },
)


def _build_formats(table: Iterable[Mapping[str, Any]]) -> dict[str, ExportFormat]:
    formats: dict[str, ExportFormat] = {}
    for row in table:
        row = dict(row)
        for key in ("quality", "options", "lossless_options"):
            if row.get(key) is not None:
                row[key] = MappingProxyType(dict(row[key]))
        row["extensions"] = tuple(row["extensions"])
        row["output_args"] = tuple(row.get("output_args", ()))
        formats[row["name"]] = ExportFormat(**row)
    return formats


FORMATS: dict[str, ExportFormat] = _build_formats(_FORMAT_TABLE)

# Extensions that more than one format accepts resolve to this one.
_EXTENSION_DEFAULTS = {".png": "sprite_sheet"}


def _known_extensions() -> set[str]:
    return {e for f in FORMATS.values() for e in f.extensions if e}


def format_for_path(path: str | os.PathLike) -> str:
    """Return the format name :func:`export_frames` uses for ``path``.

    An existing folder, a path ending in a separator or a name without an
    extension is a PNG sequence; ``.png`` is a sprite sheet (ask for
    ``fmt="apng"`` to get an animated ``.png``); otherwise the extension
    decides (``.mp4 .webm .gif .webp .apng``).
    """
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir() or text.endswith(("/", os.sep)) or not p.suffix:
        return "png_sequence"
    ext = p.suffix.lower()
    if ext in _EXTENSION_DEFAULTS:
        return _EXTENSION_DEFAULTS[ext]
    for fmt in FORMATS.values():
        if ext in fmt.extensions:
            return fmt.name
    known = sorted(_known_extensions())
    raise ValueError(
        f"Cannot export to '{p.name}': unknown extension '{ext}'. "
        f"Use one of {', '.join(known)}, or a folder for a PNG sequence."
    )


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What :func:`export_frames` wrote."""

    path: Path  # the main file (the folder for a PNG sequence, the PNG of a sprite sheet)
    files: list[Path]  # every file written
    format: str
    width: int  # frame size as written (after even-size padding)
    height: int
    fps: float
    frame_count: int  # frames played (ping-pong included; sprite sheet: cells in the grid)
    duration_s: float  # one play-through
    loop: int
    has_alpha: bool
    bytes: int  # total size on disk
    padded: tuple[int, int] = (0, 0)  # pixels added on the right, bottom
    settings: dict[str, Any] = field(default_factory=dict)  # encoder settings used
    notes: list[str] = field(default_factory=list)  # anything changed from the request


# --------------------------------------------------------------------------------------
# Frames, colours, alpha
# --------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and str(x.dtype) not in ("torch.float32", "torch.float64"):
            x = x.float()  # bfloat16/float16 have no numpy twin
        x = x.numpy()
    return np.asarray(x)


def _as_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0)
        return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 255:
        return a.astype(np.uint8)
    raise TypeError(
        f"{what} must be uint8 / integers in 0..255, or floats in 0..1; got dtype {a.dtype}"
        f"{'' if not a.size or not np.issubdtype(a.dtype, np.number) else f' with values {a.min()}..{a.max()}'}. "
        "Convert it, e.g. (x / 65535.0) for 16-bit images."
    )


def frames_uint8(frames: Any) -> np.ndarray:
    """Frames in any accepted form -> contiguous uint8 ``[T,H,W,C]``, C in {3, 4}."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("No frames to export (empty list).")
        parts = [frames_uint8(f) for f in frames]
        shapes = {p.shape[1:3] for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"All frames must have the same size; got {sorted(shapes)} (H, W).")
        if len({p.shape[3] for p in parts}) != 1:  # mix of RGB and RGBA frames
            parts = [p if p.shape[3] == 4 else _add_opaque_alpha(p) for p in parts]
        return np.ascontiguousarray(np.concatenate(parts, axis=0))
    a = _to_numpy(frames)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"Frames must be [T, H, W, C] (or [H, W, C]) with C = 1, 2, 3 or 4 channels, "
            f"like a ComfyUI IMAGE batch; got shape {tuple(a.shape)}."
        )
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"No pixels to export: frames have shape {tuple(a.shape)}.")
    a = _as_uint8(a, "frames")
    if a.shape[-1] in (1, 2):  # grey (+ alpha)
        grey = np.repeat(a[..., :1], 3, axis=-1)
        a = np.concatenate([grey, a[..., 1:]], axis=-1)
    return np.ascontiguousarray(a)


def _add_opaque_alpha(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.uint8)], axis=-1)


def _alpha_uint8(alpha: Any, t: int, h: int, w: int) -> np.ndarray:
    a = _to_numpy(alpha)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (h, w) or a.shape[0] not in (1, t):
        raise ValueError(
            f"alpha must be [T, H, W] or [H, W] opacity (1 = opaque) matching the frames "
            f"({t}, {h}, {w}); got shape {tuple(a.shape)}. A ComfyUI MASK is 1 - alpha."
        )
    a = _as_uint8(a, "alpha")
    return np.ascontiguousarray(np.broadcast_to(a, (t, h, w)))


def _parse_color(color: Any) -> np.ndarray:
    """``"#00ff00"``, ``"lime"``, ``(0, 255, 0)`` or ``(0.0, 1.0, 0.0)`` -> uint8 RGB."""
    if isinstance(color, str):
        from PIL import ImageColor

        try:
            return np.array(ImageColor.getrgb(color)[:3], dtype=np.uint8)
        except ValueError as e:
            raise ValueError(f"Unknown colour {color!r}: use '#rrggbb', a name or (r, g, b).") from e
    c = _to_numpy(color).astype(np.float64).reshape(-1)
    if c.size not in (3, 4):
        raise ValueError(f"A colour needs 3 values (r, g, b); got {color!r}.")
    c = c[:3]
    is_unit = np.issubdtype(_to_numpy(color).dtype, np.floating) and c.max() <= 1.0
    if is_unit:
        c = c * 255.0
    if c.min() < 0 or c.max() > 255:
        raise ValueError(f"Colour {color!r} is out of range: use 0..255 integers or 0..1 floats.")
    return np.rint(c).astype(np.uint8)


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
    if not 0.0 <= float(tolerance) <= 1.0:
        raise ValueError(f"key tolerance must be within 0..1; got {tolerance}.")
    soft = float(tolerance if softness is None else softness)
    soft = max(soft, 1.0 / 255.0)
    out = np.empty(rgb.shape[:3] + (4,), np.uint8)
    step = max(1, _KEY_CHUNK_PIXELS // (rgb.shape[1] * rgb.shape[2]))  # bounded float32 temporaries
    for s in range(0, rgb.shape[0], step):
        out[s : s + step] = _key_chunk(rgb[s : s + step], key, float(tolerance), soft, despill)
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


def _pad_even(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
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


# --------------------------------------------------------------------------------------
# Paths, atomic writes
# --------------------------------------------------------------------------------------


def _norm_ext(ext: str) -> str:
    ext = ext.strip()
    return "" if not ext else (ext if ext.startswith(".") else "." + ext)


def unique_path(
    directory: str | os.PathLike,
    prefix: str,
    ext: str,
    *,
    companions: Sequence[str] = (),
) -> Path:
    """Next free ComfyUI-style name ``<directory>/<prefix>_00001_.<ext>``.

    Like ComfyUI's ``get_save_image_path``, the counter is one more than the
    highest counter already used by any entry named ``<prefix>_<digits>_...``
    in the folder (whatever its extension), so a number is never reused even
    after files are deleted; it then skips any name (or companion name with
    an extension from ``companions``, e.g. the ``.json`` of a sprite sheet)
    that exists. ``prefix`` may contain sub-folders (``"video/walk"``), which
    are created; it may not leave ``directory``. ``ext=""`` names a folder.
    """
    base = Path(directory)
    rel = Path(str(prefix).replace("\\", "/"))
    if not prefix or rel.is_absolute() or ".." in rel.parts or rel.name in ("", "."):
        raise ValueError(
            f"Invalid file name prefix {prefix!r}: use a plain name, optionally with "
            "sub-folders inside the output folder (e.g. 'charmotion/walk')."
        )
    folder = base / rel.parent
    name = rel.name
    folder.mkdir(parents=True, exist_ok=True)
    ext = _norm_ext(ext)
    companions = [_norm_ext(c) for c in companions]
    pattern = re.compile(re.escape(os.path.normcase(name)) + r"_(\d+)_")
    counter = 0
    for entry in os.listdir(folder):
        m = pattern.match(os.path.normcase(entry))
        if m:
            counter = max(counter, int(m.group(1)))
    while True:
        counter += 1
        stem = f"{name}_{counter:05d}_"
        candidate = folder / f"{stem}{ext}"
        if not candidate.exists() and not any((folder / f"{stem}{c}").exists() for c in companions):
            return candidate


def _temp_sibling(final: Path) -> Path:
    """A hidden name beside ``final``, short enough for the file system even when ``final``'s name is long."""
    return final.parent / f".{final.name[:200]}.{uuid.uuid4().hex[:10]}.part"


def _cli_path(path: Path) -> str:
    """A path for a child process's command line: absolute, so that it can never read as an option (``-y/...``)."""
    return os.path.abspath(path)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


def _place(tmp: Path, final: Path, overwrite: bool) -> bool:
    """Move a finished temporary file/folder to ``final``; False if ``final`` is taken."""
    if tmp.is_dir():
        if final.exists():
            return False
        try:
            os.rename(tmp, final)  # fails if a non-empty folder appeared meanwhile
        except OSError:
            if final.exists():
                return False
            raise
        return True
    if overwrite:
        os.replace(tmp, final)
        return True
    try:  # a hard link never replaces an existing name: no overwrite even in a race
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError:  # file system without hard links (FAT, some shares)
        if final.exists():
            return False
        os.rename(tmp, final)
        return True
    os.unlink(tmp)
    return True


# --------------------------------------------------------------------------------------
# Metadata encoding
# --------------------------------------------------------------------------------------


def _meta_text(value: Any) -> str:
    """Strings verbatim, anything else as JSON text (what ComfyUI stores)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except TypeError as e:
        raise TypeError(f"Metadata values must be JSON-serialisable; {e}") from e


def _meta_ascii(value: Any) -> str:
    """Like :func:`_meta_text` but pure ASCII (EXIF): non-ASCII text as a JSON string."""
    text = _meta_text(value)
    if text.isascii():
        return text
    try:
        return json.dumps(json.loads(text))  # same JSON, escaped
    except ValueError:
        return json.dumps(text)


def _meta_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _png_info(metadata: Mapping[str, Any] | None):
    if not metadata:
        return None
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(str(key), _meta_text(value))  # tEXt, or iTXt when not Latin-1
    return info


# ComfyUI's SaveAnimatedWEBP layout: "prompt:<json>" in Model (0x0110), the other
# keys as "<key>:<json>" in Make (0x010F) and the tags just below it.
_EXIF_PROMPT_TAG = 0x0110
_EXIF_OTHER_TAGS = (0x010F, 0x010E, 0x010D, 0x010C, 0x010B)


def _webp_exif(metadata: Mapping[str, Any] | None, notes: list[str]) -> bytes | None:
    if not metadata:
        return None
    from PIL import Image

    exif = Image.Exif()
    others = iter(_EXIF_OTHER_TAGS)
    dropped = []
    for key, value in metadata.items():
        tag = _EXIF_PROMPT_TAG if key == "prompt" else next(others, None)
        if tag is None:
            dropped.append(key)
            continue
        exif[tag] = f"{key}:{_meta_ascii(value)}"
    if dropped:
        notes.append(f"WebP EXIF holds at most {1 + len(_EXIF_OTHER_TAGS)} metadata keys; dropped {dropped}.")
    return exif.tobytes()


def _ffmetadata_escape(text: str) -> str:
    for ch in ("\\", "=", ";", "#", "\n"):
        text = text.replace(ch, "\\" + ch)
    return text


def _ffmetadata_file(metadata: Mapping[str, Any], folder: Path) -> Path:
    lines = [";FFMETADATA1"]
    for key, value in metadata.items():
        lines.append(f"{_ffmetadata_escape(str(key))}={_ffmetadata_escape(_meta_text(value))}")
    fd, name = tempfile.mkstemp(prefix=".ffmeta-", suffix=".txt", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
    return Path(name)


def _parse_ffmetadata(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    buf: list[str] = []
    i = 0
    entries: list[str] = []
    while i < len(text):  # split on unescaped newlines, keeping escapes for the next pass
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == "\n":
            entries.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    entries.append("".join(buf))
    for entry in entries:
        if not entry or entry.startswith((";", "#", "[")):
            continue
        key, cur, i, in_key = "", [], 0, True
        while i < len(entry):
            ch = entry[i]
            if ch == "\\" and i + 1 < len(entry):
                cur.append(entry[i + 1])
                i += 2
                continue
            if ch == "=" and in_key:
                key, cur, in_key = "".join(cur), [], False
            else:
                cur.append(ch)
            i += 1
        if not in_key:
            out[key] = "".join(cur)
    return out


# Keys ffmpeg's muxers add on their own; not part of the caller's metadata.
_CONTAINER_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder", "creation_time"}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read back the metadata :func:`export_frames` embedded in ``path``.

    Works for every format in :data:`FORMATS` (a sprite sheet's PNG or JSON, a
    PNG sequence folder or frame). Values that are JSON text are decoded.
    WebM (Matroska) upper-cases tag names; they come back lower-cased.
    """
    from PIL import Image

    p = Path(path)
    if p.is_dir():
        frames = sorted(p.glob("*.png"))
        if not frames:
            raise ValueError(f"No PNG frames in folder {p}.")
        p = frames[0]
    ext = p.suffix.lower()
    if ext == ".json":
        p = p.with_suffix(".png")
        ext = ".png"
    if ext in (".png", ".apng"):
        with Image.open(p) as im:
            return {k: _meta_value(v) for k, v in getattr(im, "text", {}).items()}
    if ext == ".webp":
        with Image.open(p) as im:
            out = {}
            for _, value in sorted(im.getexif().items(), key=lambda kv: -kv[0]):
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                if isinstance(value, str) and ":" in value:
                    key, _, text = value.partition(":")
                    out[key] = _meta_value(text.rstrip("\x00"))
            return out
    if ext == ".gif":
        with Image.open(p) as im:
            comment = im.info.get("comment")
        if not comment:
            return {}
        value = _meta_value(comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment)
        return value if isinstance(value, dict) else {"comment": value}
    if ext in (".mp4", ".webm"):
        proc = subprocess.run(
            [_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", _cli_path(p), "-f", "ffmetadata", "-"],
            capture_output=True,
        )
        if proc.returncode != 0:
            raise ExportError(f"ffmpeg could not read {p}: {proc.stderr.decode('utf-8', 'replace').strip()}")
        tags = _parse_ffmetadata(proc.stdout.decode("utf-8", "replace"))
        if ext == ".webm":
            tags = {k.lower(): v for k, v in tags.items()}
        return {k: _meta_value(v) for k, v in tags.items() if k.lower() not in _CONTAINER_KEYS}
    raise ValueError(f"Cannot read metadata from '{p.name}': unknown format.")


# --------------------------------------------------------------------------------------
# Writers. Each writes complete file(s) at the temporary paths it is given.
# --------------------------------------------------------------------------------------


def _ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError) as e:
        raise FFmpegNotFoundError(
            f"MP4/WebM export needs ffmpeg, which was not found ({e}). "
            "Fix: `pip install imageio-ffmpeg` (its wheel bundles ffmpeg), or install ffmpeg "
            "and set the environment variable IMAGEIO_FFMPEG_EXE to the ffmpeg executable. "
            "GIF, WebP, APNG, PNG sequences and sprite sheets work without it."
        ) from e


def _quality_options(fmt: ExportFormat, quality: int | None, lossless: bool) -> dict[str, Any]:
    if lossless and fmt.lossless_options is not None:
        return dict(fmt.lossless_options)
    opts = dict(fmt.options)
    if quality is not None and fmt.quality is not None:
        q = fmt.quality
        opts[q["option"]] = int(round(q["worst"] + (q["best"] - q["worst"]) * quality / 100.0))
    return opts


def _write_ffmpeg(job: "_Job", tmp: Path) -> None:
    fmt = job.fmt
    exe = _ffmpeg_exe()
    t, h, w = job.rgb.shape[:3]
    frames = job.rgb if job.alpha is None else np.concatenate([job.rgb, job.alpha[..., None]], axis=-1)
    pix_in = "rgb24" if job.alpha is None else "rgba"
    pix_out = fmt.pix_fmt if job.alpha is None else (fmt.alpha_pix_fmt or fmt.pix_fmt)
    rate = Fraction(job.fps).limit_denominator(100000)
    cmd = [exe, "-hide_banner", "-nostats", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", pix_in, "-s", f"{w}x{h}", "-r", str(rate), "-i", "-"]
    meta_file = _ffmetadata_file(job.metadata, tmp.parent) if job.metadata else None
    if meta_file is not None:
        cmd += ["-f", "ffmetadata", "-i", _cli_path(meta_file), "-map_metadata", "1"]
    cmd += ["-map", "0:v", "-an", "-c:v", fmt.codec, "-pix_fmt", pix_out]
    for key, value in job.settings.items():
        cmd += [f"-{key}", str(value)]
    cmd += list(fmt.output_args) + ["-f", fmt.muxer, _cli_path(tmp)]
    job.settings["pix_fmt"] = pix_out
    err_file = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg can never block on it
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file)
        try:
            try:
                for frame in frames:
                    proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            except (BrokenPipeError, OSError):
                pass  # ffmpeg stopped early; its exit status and message say why
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            rc = proc.wait()
        except BaseException:  # interrupted: don't leave ffmpeg running
            proc.kill()
            proc.wait()
            raise
        err_file.seek(0)
        err = err_file.read().decode("utf-8", "replace").strip()
    finally:
        err_file.close()
        if meta_file is not None:
            _remove(meta_file)
    if rc != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        hint = ""
        low = err.lower()
        if "unknown encoder" in low or ("encoder" in low and "not found" in low):
            hint = (f" The ffmpeg at {exe} lacks the {fmt.codec} encoder: use the one bundled with "
                    "imageio-ffmpeg (unset IMAGEIO_FFMPEG_EXE) or an ffmpeg build that has it.")
        tail = err[-1500:] if err else "(no error output)"
        raise ExportError(f"ffmpeg failed (exit status {rc}) writing {fmt.name}: {tail}.{hint}")


def _palettize(rgb: np.ndarray, alpha: np.ndarray | None, colors: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    """One palette for the whole clip (no flicker). -> indices [T,H,W], palette [N,3], transparent index.

    Frames with few colours (pixel art) keep them exactly; otherwise Pillow's
    median cut picks the palette from the visible pixels and every colour maps
    to its nearest entry (no dithering: no shimmer between frames).
    """
    from PIL import Image

    colors = int(min(max(colors, 2), 256))
    visible = np.ones(rgb.shape[:3], bool) if alpha is None else alpha >= 128
    if alpha is not None:
        colors = min(colors, 255)  # one index is the transparent one
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    present = np.zeros(1 << 24, bool)  # one flag per 24-bit colour: linear time, 16 MB
    present[packed[visible]] = True
    used = np.flatnonzero(present)
    if used.size == 0:
        used = np.zeros(1, np.int64)
    lut = np.zeros(1 << 24, np.uint8)
    if used.size <= colors:  # every colour fits: exact
        palette = np.stack([(used >> 16) & 255, (used >> 8) & 255, used & 255], -1).astype(np.uint8)
        lut[used] = np.arange(used.size)
    else:
        sample = rgb[visible]
        if len(sample) > 1 << 20:
            sample = sample[:: int(math.ceil(len(sample) / (1 << 20)))]
        q = Image.fromarray(sample[:, None, :].copy(), "RGB").quantize(
            colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        entries = np.unique(np.asarray(q))
        palette = np.asarray(q.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)[entries]
        cols = np.stack([(used >> 16) & 255, (used >> 8) & 255, used & 255], -1).astype(np.float32)
        pal = palette.astype(np.float32)
        pal_sq = (pal**2).sum(-1)
        for s in range(0, len(used), 16384):  # nearest palette entry of every colour used
            d = pal_sq[None, :] - 2.0 * cols[s : s + 16384] @ pal.T
            lut[used[s : s + 16384]] = d.argmin(axis=1)
    indices = lut[packed]
    transparent = None
    if alpha is not None and not visible.all():
        transparent = len(palette)
        palette = np.concatenate([palette, np.zeros((1, 3), np.uint8)], axis=0)
        indices[~visible] = transparent
    return indices, palette, transparent


def _write_pillow(job: "_Job", tmp: Path) -> None:
    from PIL import Image

    fmt = job.fmt
    n = job.rgb.shape[0]
    durations = job.durations
    kwargs: dict[str, Any] = {"save_all": True, "duration": durations}
    if job.loop == 0:
        kwargs["loop"] = 0
    elif fmt.name == "gif":
        if job.loop > 1:  # GIF stores repeats after the first play; 1 = no loop block
            kwargs["loop"] = job.loop - 1
    else:
        kwargs["loop"] = job.loop
    if fmt.name == "gif":
        indices, palette, transparent = distinct_frames.gif_frames(
            _palettize, job.rgb, job.alpha, int(job.settings.get("colors", 256)), job.notes)
        flat = palette.reshape(-1).tolist()
        images = []
        for i in range(n):
            im = Image.fromarray(indices[i], "P")
            im.putpalette(flat)
            images.append(im)
        kwargs["optimize"] = False
        if transparent is not None:
            kwargs.update(transparency=transparent, disposal=2)
        else:
            job.has_alpha = False  # nothing below the GIF's 50 % threshold
        if job.metadata:
            kwargs["comment"] = json.dumps(dict(job.metadata))
        job.settings["palette_colors"] = int(len(palette))
    else:
        mode = "RGB" if job.alpha is None else "RGBA"
        data = job.rgb if job.alpha is None else np.concatenate([job.rgb, job.alpha[..., None]], axis=-1)
        if fmt.name == "webp":
            data = distinct_frames.webp_frames(data, job.settings.get("quality", 100), job.settings.get("lossless", False))
        images = [Image.fromarray(np.ascontiguousarray(data[i]), mode) for i in range(n)]
        kwargs.update(job.settings)
        if fmt.name == "apng":
            disposals = distinct_frames.apng_disposals(data, int(job.settings.get("disposal", 0)))
            if disposals is not None:
                kwargs["disposal"] = disposals
        if fmt.metadata == "exif":
            exif = _webp_exif(job.metadata, job.notes)
            if exif:
                kwargs["exif"] = exif
        elif fmt.metadata == "png_text":
            info = _png_info(job.metadata)
            if info is not None:
                kwargs["pnginfo"] = info
    images[0].save(tmp, format=fmt.pillow_format, append_images=images[1:], **kwargs)


def _write_png(path: Path, image_array: np.ndarray, metadata: Mapping[str, Any] | None, compress_level: int) -> None:
    from PIL import Image

    mode = "RGBA" if image_array.shape[-1] == 4 else "RGB"
    Image.fromarray(np.ascontiguousarray(image_array), mode).save(
        path, format="PNG", pnginfo=_png_info(metadata), compress_level=compress_level)


def _write_png_sequence(job: "_Job", tmp: Path) -> None:
    tmp.mkdir()
    data = job.rgb if job.alpha is None else np.concatenate([job.rgb, job.alpha[..., None]], axis=-1)
    level = int(job.settings.get("compress_level", 6))
    for i in range(data.shape[0]):
        _write_png(tmp / f"frame_{i:05d}.png", data[i], job.metadata, level)


def _sprite_sheet(job: "_Job") -> tuple[np.ndarray, dict[str, Any]]:
    t, h, w = job.rgb.shape[:3]
    cols = job.columns or int(math.ceil(math.sqrt(t)))
    cols = max(1, min(cols, t))
    rows = int(math.ceil(t / cols))
    pad = job.padding
    sw, sh = cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad
    ch = 3 if job.alpha is None else 4
    sheet = np.zeros((sh, sw, ch), np.uint8)
    data = job.rgb if job.alpha is None else np.concatenate([job.rgb, job.alpha[..., None]], axis=-1)
    frames: dict[str, Any] = {}
    names = []
    for i in range(t):
        r, c = divmod(i, cols)
        x, y = c * (w + pad), r * (h + pad)
        sheet[y : y + h, x : x + w] = data[i]
        name = f"frame_{i:05d}"
        names.append(name)
        frames[name] = {
            "frame": {"x": x, "y": y, "w": w, "h": h},
            "rotated": False,
            "trimmed": False,
            "spriteSourceSize": {"x": 0, "y": 0, "w": w, "h": h},
            "sourceSize": {"w": w, "h": h},
            "duration": job.durations[i],
        }
    direction = "pingpong" if job.pingpong else "forward"
    tag: dict[str, Any] = {"name": job.tag_name, "from": 0, "to": t - 1, "direction": direction}
    if job.loop > 0:
        tag["repeat"] = str(job.loop)  # Aseprite: plays this many times
    order = names + (names[-2:0:-1] if job.pingpong else [])
    atlas = {
        "frames": frames,
        # PixiJS reads named animations from here (the ping-pong order spelled out).
        "animations": {job.tag_name: order},
        "meta": {
            "app": "CharMotion",
            "version": __version__,
            "image": job.image_name,
            "format": "RGBA8888" if ch == 4 else "RGB888",
            "size": {"w": sw, "h": sh},
            "scale": "1",
            "frameTags": [tag],
            "layers": [],
            "slices": [],
            "fps": job.fps,
            "columns": cols,
            "rows": rows,
            "padding": pad,
            "loop": job.loop,
            "frame_count": t,
        },
    }
    if max(sw, sh) > 8192:
        job.notes.append(f"sprite sheet is {sw}x{sh}: many GPUs and engines cap textures at 8192 "
                         "(some at 4096); use fewer frames or a smaller size.")
    elif max(sw, sh) > 4096:
        job.notes.append(f"sprite sheet is {sw}x{sh}: some engines and mobile GPUs cap textures at 4096.")
    job.settings.update(columns=cols, rows=rows, padding=pad)
    return sheet, atlas


# --------------------------------------------------------------------------------------
# export_frames
# --------------------------------------------------------------------------------------


@dataclass
class _Job:
    fmt: ExportFormat
    rgb: np.ndarray
    alpha: np.ndarray | None
    fps: float
    loop: int
    pingpong: bool
    durations: list[int]
    metadata: Mapping[str, Any] | None
    settings: dict[str, Any]
    notes: list[str]
    columns: int | None = None
    padding: int = 0
    tag_name: str = "animation"
    image_name: str = ""
    has_alpha: bool = False


_WRITERS: dict[str, Callable[[_Job, Path], None]] = {
    "ffmpeg": _write_ffmpeg,
    "pillow": _write_pillow,
    "png_sequence": _write_png_sequence,
}


def _target(path_or_dir: str | os.PathLike, fmt: ExportFormat, prefix: str | None,
            overwrite: bool, notes: list[str]) -> Path:
    """The path to write: a new name in an output folder, or the given path (or the next free one)."""
    companions = (".json",) if fmt.writer == "sprite_sheet" else ()
    p = Path(path_or_dir)
    if prefix is not None and (p.is_file() or p.suffix.lower() in _known_extensions()):
        raise ValueError(
            f"With a prefix, path_or_dir is the output folder, but '{p}' is a file name. "
            "Pass the folder and the prefix, or the file path without a prefix."
        )
    if prefix is not None or p.is_dir():
        return unique_path(p, prefix or "CharMotion", fmt.extension, companions=companions)
    if fmt.extension and p.suffix.lower() not in fmt.extensions:
        raise ValueError(
            f"'{p.name}' does not fit format '{fmt.name}' (extension {' or '.join(fmt.extensions)}); "
            "change the extension or the format."
        )
    if not fmt.extension and p.suffix:
        raise ValueError(f"A PNG sequence is written to a folder; '{p.name}' looks like a file name.")
    p.parent.mkdir(parents=True, exist_ok=True)
    taken = p.exists() or any(p.with_suffix(c).exists() for c in companions)
    if taken and (not overwrite or fmt.writer == "png_sequence"):  # never replace a folder
        free = unique_path(p.parent, p.stem, p.suffix, companions=companions)
        notes.append(f"'{p.name}' exists and is kept; wrote '{free.name}' instead.")
        return free
    return p


def export_frames(
    frames: Any,
    path_or_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    fps: float = 8.0,
    loop: int = 0,
    pingpong: bool = False,
    quality: int | None = None,
    lossless: bool = False,
    alpha: Any = None,
    key_color: Any = None,
    key_tolerance: float = 0.1,
    key_softness: float | None = None,
    despill: bool = True,
    background: Any = None,
    opaque: bool = False,
    metadata: Mapping[str, Any] | None = None,
    columns: int | None = None,
    padding: int = 0,
    overwrite: bool = False,
    prefix: str | None = None,
) -> ExportResult:
    """Write ``frames`` as ``fmt`` (default: from the path, see :func:`format_for_path`).

    ``path_or_dir``: the file to write (a folder for ``png_sequence``), or,
    when it is an existing folder or ``prefix`` is given, the folder in which a
    new ``<prefix>_00001_.<ext>`` name is made (prefix default ``CharMotion``).
    ``fps`` > 0; ``loop``: 0 = forever, N = N plays; ``pingpong`` plays the
    frames forward then back. ``quality`` 0..100 (higher is better; None =
    the format's default: CRF 19 for MP4, CRF 30 for WebM, 90 for WebP, 256
    colours for GIF); ``lossless`` for WebP/WebM/MP4. ``alpha``,
    ``key_color``/``key_tolerance``/``key_softness``/``despill`` and
    ``background``/``opaque`` control transparency (see the module notes and
    :func:`key_out`). ``metadata`` is embedded where the format allows.
    ``columns`` and ``padding`` (pixels between cells) shape a sprite sheet.
    Existing files are never replaced unless ``overwrite=True``.
    """
    if fmt is None:  # with a prefix, path_or_dir is a folder: a folder means a PNG sequence
        fmt_name = "png_sequence" if prefix is not None else format_for_path(path_or_dir)
    else:
        fmt_name = str(fmt).lower()
    if fmt_name not in FORMATS:
        raise ValueError(f"Unknown export format '{fmt}'. Choose one of: {', '.join(FORMATS)}.")
    spec = FORMATS[fmt_name]
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a number; got {fps!r}.") from None
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number; got {fps}.")
    if int(loop) != loop or loop < 0:
        raise ValueError(f"loop must be 0 (forever) or a positive number of plays; got {loop}.")
    loop = int(loop)
    if quality is not None and not 0 <= quality <= 100:
        raise ValueError(f"quality must be within 0..100 (higher is better); got {quality}.")
    if columns is not None and int(columns) < 1:
        raise ValueError(f"columns must be at least 1; got {columns}.")
    if int(padding) < 0:
        raise ValueError(f"padding must be 0 or more pixels; got {padding}.")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a dict of JSON-serialisable values.")
    if spec.writer == "ffmpeg":
        _ffmpeg_exe()  # fail before any work when ffmpeg is missing

    notes: list[str] = []
    data = frames_uint8(frames)
    check_frame_size(spec.name, data.shape[2], data.shape[1])
    rgb, a = _resolve_alpha(data, spec, alpha, key_color, key_tolerance, key_softness, despill, background, notes,
                            opaque)
    padded = (0, 0)
    if spec.even_size:
        rgb, a, padded = _pad_even(rgb, a)
        if any(padded):
            notes.append(f"{spec.name} needs even sizes: padded {padded[0]} px right, {padded[1]} px bottom "
                         "(edge pixels repeated).")
    if pingpong and spec.writer != "sprite_sheet" and rgb.shape[0] > 2:
        order = np.concatenate([np.arange(rgb.shape[0]), np.arange(rgb.shape[0] - 2, 0, -1)])
        rgb = rgb[order]
        a = None if a is None else a[order]
    if loop and not spec.loop:
        notes.append(f"{spec.name} has no loop count; loop={loop} is up to the player.")
    t, h, w = rgb.shape[:3]
    durations = _frame_durations_ms(t, fps, spec.frame_tick_ms, spec.min_frame_ms)
    if spec.min_frame_ms > 1 and 1000.0 / fps < spec.min_frame_ms:
        notes.append(f"{spec.name} plays at most {1000 // spec.min_frame_ms} fps reliably: "
                     f"frame delays set to {spec.min_frame_ms} ms.")
    if metadata and spec.metadata == "none":
        notes.append(f"{spec.name} cannot store metadata; it was not embedded.")
    settings = _quality_options(spec, quality, lossless)
    if quality is not None and spec.quality is None:
        notes.append(f"{spec.name} is lossless; quality={quality} has no effect.")

    final = _target(path_or_dir, spec, prefix, overwrite, notes)
    job = _Job(fmt=spec, rgb=rgb, alpha=a, fps=fps, loop=loop, pingpong=pingpong, durations=durations,
               metadata=dict(metadata) if metadata else None, settings=settings, notes=notes,
               columns=None if columns is None else int(columns), padding=int(padding),
               tag_name=prefix.replace("\\", "/").rsplit("/", 1)[-1] if prefix else final.stem,
               image_name=final.name, has_alpha=a is not None)

    if spec.writer == "sprite_sheet":
        files = _commit_sprite_sheet(job, final, overwrite)
        frame_count = t
        duration_s = sum(durations) / 1000.0 * (1 if not pingpong or t <= 2 else (2 * t - 2) / t)
    else:
        files = [_commit(lambda tmp: _WRITERS[spec.writer](job, tmp), final, overwrite, spec, notes)]
        frame_count = t
        duration_s = t / fps if spec.writer == "ffmpeg" else sum(durations) / 1000.0
    if files[0].is_dir():
        files = [files[0]] + sorted(files[0].iterdir())
        total = sum(f.stat().st_size for f in files[1:])
    else:
        total = sum(f.stat().st_size for f in files)
    return ExportResult(
        path=files[0], files=files, format=spec.name, width=w, height=h, fps=fps,
        frame_count=frame_count, duration_s=duration_s, loop=loop, has_alpha=job.has_alpha,
        bytes=total, padded=padded, settings=job.settings, notes=notes,
    )


def check_frame_size(fmt: str, width: int, height: int) -> None:
    """Refuse frames larger than the format can store (GIF: 65535 pixels a side, WebP: 16383)."""
    limit = FORMATS[fmt].max_side
    if limit is not None and max(width, height) > limit:
        raise InvalidInputError(
            f"{fmt} frames can be at most {limit} pixels wide and high, but these are {width}x{height}: "
            "use a smaller size or another format (e.g. PNG frames)"
        )


def _commit(write: Callable[[Path], None], final: Path, overwrite: bool, spec: ExportFormat,
            notes: list[str]) -> Path:
    """Write through a temporary sibling, then move it to ``final`` (or the next free name)."""
    tmp = _temp_sibling(final)
    try:
        write(tmp)
        wanted = final
        while not _place(tmp, final, overwrite):  # the name was taken while writing
            final = unique_path(final.parent, _counter_stem(final), spec.extension)
        if final != wanted:
            notes.append(f"'{wanted.name}' appeared while writing and is kept; wrote '{final.name}' instead.")
    except BaseException:
        _remove(tmp)
        raise
    return final


def _counter_stem(path: Path) -> str:
    """``walk_00003_.mp4`` -> ``walk`` (so the next free name continues its counter)."""
    stem = path.name[: len(path.name) - len(path.suffix)] if path.suffix else path.name
    m = re.fullmatch(r"(.+)_\d+_", stem)
    return m.group(1) if m else stem


def _commit_sprite_sheet(job: _Job, final: Path, overwrite: bool) -> list[Path]:
    """Sheet PNG and JSON atlas, both through temporary names; neither replaces a file."""
    level = int(job.settings.get("compress_level", 6))
    sheet, atlas = _sprite_sheet(job)
    tmp_png = _temp_sibling(final)
    tmp_json = _temp_sibling(final.with_suffix(".json"))
    try:
        _write_png(tmp_png, sheet, job.metadata, level)
        while True:
            json_final = final.with_suffix(".json")
            atlas["meta"]["image"] = final.name
            tmp_json.write_text(json.dumps(atlas, indent=2), encoding="utf-8")
            if _place(tmp_json, json_final, overwrite):
                if _place(tmp_png, final, overwrite):
                    return [final, json_final]
                _remove(json_final)  # ours: the PNG name was taken meanwhile, try the next name
            final = unique_path(final.parent, _counter_stem(final), ".png", companions=(".json",))
            job.notes.append(f"name taken while writing; wrote '{final.name}' instead.")
    except BaseException:
        _remove(tmp_png)
        _remove(tmp_json)
        raise
