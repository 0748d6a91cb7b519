"""Metadata embedded in the written files (PNG text, WebP EXIF, ffmetadata) and read back."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import InvalidInputError
from .errors import ExportError
from .ffmpeg import _ffmpeg_exe
from .naming import _cli_path


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
        raise InvalidInputError(
            f"Metadata values must be JSON-serialisable ({e}): pass strings, numbers, lists and dicts"
        ) from e


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
            raise InvalidInputError(f"No PNG frames in folder {p}: pass a PNG sequence folder or an exported file.")
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
    raise InvalidInputError(
        f"Cannot read metadata from '{p.name}': unknown format. Pass a file written by the export "
        "(.mp4, .webm, .gif, .webp, .apng, .png or a sprite sheet's .json) or a PNG sequence folder."
    )


