"""The writers: ffmpeg (MP4/WebM), Pillow (GIF/WebP/APNG), PNG frames and sprite sheets."""

from __future__ import annotations

import math
import subprocess
import tempfile
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import __version__, distinct_frames
from .formats import ExportFormat
from .naming import _cli_path, _remove
from .metadata import _ffmetadata_file, _meta_text, _png_info, _webp_exif
from .errors import ExportError
from .ffmpeg import _ffmpeg_exe


@dataclass
class _Job:
    fmt: ExportFormat
    rgb: np.ndarray
    alpha: np.ndarray | None
    fps: float
    loop_count: int
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
    frames_merged: int = 0  # repeated GIF frames merged into the one before (a palette with no room left)


# --------------------------------------------------------------------------------------
# Writers. Each writes complete file(s) at the temporary paths it is given.
# --------------------------------------------------------------------------------------




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
    if job.loop_count == 0:
        kwargs["loop"] = 0
    elif fmt.name == "gif":
        if job.loop_count > 1:  # GIF stores repeats after the first play; 1 = no loop block
            kwargs["loop"] = job.loop_count - 1
    else:
        kwargs["loop"] = job.loop_count
    if fmt.name == "gif":
        indices, palette, clear, merged = distinct_frames.gif_frames(
            _palettize, job.rgb, job.alpha, int(job.settings.get("colors", 256)), job.notes)
        job.frames_merged = len(merged)
        if clear[0] is not None and all((frame == c).all() for frame, c in zip(indices, clear)):
            job.notes.append("nothing is at least 50 % opaque in any frame, so the GIF is empty (a GIF pixel is "
                             "shown or not): use WebP or APNG, which keep partial opacity, or opaque output.")
        flat = palette.reshape(-1).tolist()
        images = []
        for i in range(n):
            im = Image.fromarray(indices[i], "P")
            im.putpalette(flat)
            if clear[i] is not None:
                im.info["transparency"] = clear[i]  # each frame names its own transparent index
            images.append(im)
        kwargs["optimize"] = False
        if clear[0] is not None:
            kwargs["disposal"] = 2
        else:
            job.has_alpha = False  # nothing below the GIF's 50 % threshold
        if job.metadata:
            kwargs["comment"] = _meta_text(dict(job.metadata))
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
    if job.loop_count > 0:
        tag["repeat"] = str(job.loop_count)  # Aseprite: plays this many times
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
            "loop": job.loop_count,  # the atlas key stays "loop", as earlier sheets have it
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


