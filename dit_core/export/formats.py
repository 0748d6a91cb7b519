"""Export formats as data: one table of extension -> writer, alpha, loop count and options; the result record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from ..errors import InvalidInputError




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
    stores_loop_count: bool
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
        "stores_loop_count": False,
        # quality 100 is CRF 1: CRF 0 is lossless, which only H.264's High 4:4:4 Predictive profile holds
        "quality": {"option": "crf", "worst": 51, "best": 1},
        "options": {"crf": 19, "preset": "medium"},
        # -qp 0 is lossless H.264 in its yuv420p colours (chroma stays subsampled): High 4:4:4 Predictive profile.
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
        "stores_loop_count": False,
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
        "stores_loop_count": True,
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
        "stores_loop_count": True,
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
        "stores_loop_count": True,
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
        "stores_loop_count": False,
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
        "stores_loop_count": True,
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
    raise InvalidInputError(
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
    frame_count: int  # frames in the file (ping-pong included; sprite sheet: cells; GIF: empty repeats merged)
    duration_s: float  # one play-through
    loop_count: int  # plays: 0 = forever
    has_alpha: bool
    bytes: int  # total size on disk
    padded: tuple[int, int] = (0, 0)  # pixels added on the right, bottom
    settings: dict[str, Any] = field(default_factory=dict)  # encoder settings used
    notes: list[str] = field(default_factory=list)  # anything changed from the request


