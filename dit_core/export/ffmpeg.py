"""The ffmpeg binary that MP4/WebM export and metadata reading run (imageio-ffmpeg's, or IMAGEIO_FFMPEG_EXE)."""

from __future__ import annotations


from .errors import FFmpegNotFoundError


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
