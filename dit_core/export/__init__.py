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
* **Loop count** (playback repeats; not the chained clips called "loops"
  elsewhere, nor the seamless loop): ``loop_count=0`` plays forever,
  ``loop_count=N`` plays N times in total (GIF stores N-1 repeats, APNG/WebP
  store N). MP4/WebM have no loop count.
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
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import checks
from ..errors import InvalidInputError
from .errors import ExportError, FFmpegNotFoundError
from .formats import FORMATS, ExportFormat, ExportResult, _known_extensions, format_for_path
from .frames import (DARK_BACKGROUND, LIGHT_BACKGROUND, _frame_durations_ms, _resolve_alpha, pad_even,
                     contrasting_background, frames_uint8, key_out)
from .metadata import read_metadata
from .naming import _place, _remove, _temp_sibling, unique_path
from .ffmpeg import _ffmpeg_exe
from .writers import (_Job, _quality_options, _sprite_sheet, _write_ffmpeg, _write_pillow, _write_png,
                      _write_png_sequence)

MIN_FPS = 0.01  # slowest frame rate every format stores (one frame every 100 s)

__all__ = [
    "DARK_BACKGROUND",
    "LIGHT_BACKGROUND",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "FFmpegNotFoundError",
    "FORMATS",
    "check_frame_size",
    "contrasting_background",
    "export_frames",
    "frames_uint8",
    "pad_even",
    "format_for_path",
    "key_out",
    "read_metadata",
    "unique_path",
]


# --------------------------------------------------------------------------------------
# export_frames
# --------------------------------------------------------------------------------------




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
        raise InvalidInputError(
            f"With a prefix, path_or_dir is the output folder, but '{p}' is a file name. "
            "Pass the folder and the prefix, or the file path without a prefix."
        )
    if prefix is None and fmt.writer == "png_sequence" and p.is_dir():
        if not any(p.iterdir()):
            return p  # an empty folder is filled
        free = unique_path(p, "CharMotion", fmt.extension, companions=companions)
        notes.append(f"'{p.name}' already holds files, which are kept; wrote the frames to a new folder in it, "
                     f"'{free.name}'.")
        return free
    if prefix is not None or p.is_dir():
        return unique_path(p, prefix or "CharMotion", fmt.extension, companions=companions)
    if fmt.extension and p.suffix.lower() not in fmt.extensions:
        raise InvalidInputError(
            f"'{p.name}' does not fit format '{fmt.name}' (extension {' or '.join(fmt.extensions)}); "
            "change the extension or the format."
        )
    if not fmt.extension and p.suffix.lower() in _known_extensions():  # "frames.v2" is a folder name
        raise InvalidInputError(
            f"A PNG sequence is written to a folder; '{p.name}' looks like a file name: "
            "pass a folder path, or choose the format that fits the extension."
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    taken = [q for q in (p, *(p.with_suffix(c) for c in companions)) if q.exists()]
    if taken and (not overwrite or fmt.writer == "png_sequence"):  # never replace a folder
        free = unique_path(p.parent, p.stem, p.suffix, companions=companions)
        notes.append(f"'{taken[0].name}' exists and is kept; wrote '{free.name}' instead.")
        return free
    return p


def export_frames(
    frames: Any,
    path_or_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    fps: float = 8.0,
    loop_count: int = 0,
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
    loop: int | None = None,
) -> ExportResult:
    """Write ``frames`` as ``fmt`` (default: from the path, see :func:`format_for_path`).

    ``path_or_dir``: the file to write (a folder for ``png_sequence``), or,
    when it is an existing folder or ``prefix`` is given, the folder in which a
    new ``<prefix>_00001_.<ext>`` name is made (prefix default ``CharMotion``).
    ``fps`` > 0; ``loop_count``: 0 = forever, N = N plays (``loop=`` is its
    deprecated former name); ``pingpong`` plays the frames forward then back.
    ``quality`` 0..100 (higher is better; None = the format's default: CRF 19
    for MP4, CRF 30 for WebM, 90 for WebP, 256 colours for GIF); ``lossless``
    for WebP/WebM/MP4. ``alpha``,
    ``key_color``/``key_tolerance``/``key_softness``/``despill`` and
    ``background``/``opaque`` control transparency (see the module notes and
    :func:`key_out`). ``metadata`` is embedded where the format allows.
    ``columns`` and ``padding`` (pixels between cells) shape a sprite sheet.
    Existing files are never replaced unless ``overwrite=True``.
    """
    if loop is not None:
        warnings.warn("export_frames(loop=...) is deprecated; use loop_count=...", DeprecationWarning, stacklevel=2)
        if loop_count not in (0, loop):
            raise InvalidInputError(f"loop={loop} and loop_count={loop_count} disagree: pass only loop_count.")
        loop_count = loop
    if fmt is None:  # with a prefix, path_or_dir is a folder: a folder means a PNG sequence
        fmt_name = "png_sequence" if prefix is not None else format_for_path(path_or_dir)
    else:
        fmt_name = str(fmt).lower()
    if fmt_name not in FORMATS:
        raise InvalidInputError(f"Unknown export format '{fmt}'. Choose one of: {', '.join(FORMATS)}.")
    spec = FORMATS[fmt_name]
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise InvalidInputError(f"fps must be a number; got {fps!r}. Use e.g. 8 or 24.") from None
    if not math.isfinite(fps) or fps <= 0:
        raise InvalidInputError(f"fps must be a positive number; got {fps}. Use e.g. 8 or 24.")
    if fps < MIN_FPS:  # a GIF frame lasts at most 655 s
        raise InvalidInputError(f"fps {fps:g} is too slow to store: use at least {MIN_FPS:g} (a frame every "
                                f"{1 / MIN_FPS:g} s), e.g. 8 or 24.")
    loop_count = checks.whole("loop_count", loop_count, 0, fix="0 plays forever, N plays N times")
    if quality is not None:
        q = checks.number("quality", quality, 0, 100, fix="higher is better; None uses the format's default")
        quality = int(q) if q.is_integer() else q
    if columns is not None:
        columns = checks.whole("columns", columns, 1, fix="None picks a near-square grid")
    padding = checks.whole("padding", padding, 0, fix="it counts the pixels between sprite sheet cells")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInputError(
            f"metadata must be a dict of JSON-serialisable values; got {type(metadata).__name__}. "
            "Pass e.g. {'prompt': ...} or None."
        )
    if spec.writer == "ffmpeg":
        _ffmpeg_exe()  # fail before any work when ffmpeg is missing

    notes: list[str] = []
    data = frames_uint8(frames)
    check_frame_size(spec.name, data.shape[2], data.shape[1])
    rgb, a = _resolve_alpha(data, spec, alpha, key_color, key_tolerance, key_softness, despill, background, notes,
                            opaque)
    padded = (0, 0)
    if spec.even_size:
        rgb, a, padded = pad_even(rgb, a)
        if any(padded):
            notes.append(f"{spec.name} needs even sizes: padded {padded[0]} px right, {padded[1]} px bottom "
                         "(edge pixels repeated).")
    if pingpong and spec.writer != "sprite_sheet" and rgb.shape[0] > 2:
        order = np.concatenate([np.arange(rgb.shape[0]), np.arange(rgb.shape[0] - 2, 0, -1)])
        rgb = rgb[order]
        a = None if a is None else a[order]
    if loop_count and not spec.stores_loop_count:
        notes.append(f"{spec.name} has no loop count; loop_count={loop_count} is up to the player.")
    t, h, w = rgb.shape[:3]
    durations = _frame_durations_ms(t, fps, spec.frame_tick_ms, spec.min_frame_ms)
    capped = spec.min_frame_ms > 1 and 1000.0 / fps < spec.min_frame_ms
    if capped:
        notes.append(f"{spec.name} plays at most {1000 // spec.min_frame_ms} fps reliably: "
                     f"frame delays set to {spec.min_frame_ms} ms.")
    if metadata and spec.metadata == "none":
        notes.append(f"{spec.name} cannot store metadata; it was not embedded.")
    settings = _quality_options(spec, quality, lossless)
    if lossless and spec.name == "mp4":
        notes.append("lossless MP4 needs H.264's High 4:4:4 Predictive profile, which Safari, QuickTime and most "
                     "hardware decoders (phones, TVs) do not play (Chromium-based browsers and ffmpeg-based players "
                     "and editors do): for a clip that plays everywhere use quality 100.")
    if quality is not None and spec.quality is None:
        notes.append(f"{spec.name} is lossless; quality={quality} has no effect.")
    if lossless and spec.name == "gif":
        notes.append("GIF has no lossless mode: it keeps at most 256 colours (exactly, when the clip has no more).")

    final = _target(path_or_dir, spec, prefix, overwrite, notes)
    job = _Job(fmt=spec, rgb=rgb, alpha=a, fps=fps, loop_count=loop_count, pingpong=pingpong, durations=durations,
               metadata=dict(metadata) if metadata else None, settings=settings, notes=notes,
               columns=columns, padding=padding,
               tag_name=prefix.replace("\\", "/").rsplit("/", 1)[-1] if prefix else final.stem,
               image_name=final.name, has_alpha=a is not None)

    if spec.writer == "sprite_sheet":
        files = _commit_sprite_sheet(job, final, overwrite)
        frame_count = t
        duration_s = sum(durations) / 1000.0 * (1 if not pingpong or t <= 2 else (2 * t - 2) / t)
    else:
        files = [_commit(lambda tmp: _WRITERS[spec.writer](job, tmp), final, overwrite, spec, notes)]
        frame_count = t - job.frames_merged
        duration_s = t / fps if spec.writer == "ffmpeg" else sum(durations) / 1000.0
    if files[0].is_dir():
        files = [files[0]] + sorted(files[0].iterdir())
        total = sum(f.stat().st_size for f in files[1:])
    else:
        total = sum(f.stat().st_size for f in files)
    return ExportResult(
        path=files[0], files=files, format=spec.name, width=w, height=h, fps=1000.0 / spec.min_frame_ms if capped else fps,
        frame_count=frame_count, duration_s=duration_s, loop_count=loop_count, has_alpha=job.has_alpha,
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
