"""The export's own errors."""

from __future__ import annotations

from ..errors import PUBLIC_MODULE, CharMotionError


class ExportError(CharMotionError, RuntimeError):
    """Writing an output file failed (the message says why and what to do)."""

    __module__ = PUBLIC_MODULE


class FFmpegNotFoundError(ExportError):
    """MP4/WebM export needs an ffmpeg binary and none was found."""

    __module__ = PUBLIC_MODULE


