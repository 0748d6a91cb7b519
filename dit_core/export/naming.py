"""Safe file naming: free names that never replace a file, temporary siblings, atomic placement."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Sequence

from ..errors import InvalidInputError




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
        raise InvalidInputError(
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
        if final.exists() and not (final.is_dir() and not any(final.iterdir())):
            return False
        try:
            os.rename(tmp, final)  # replaces an empty folder; fails if files appeared in it meanwhile
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


