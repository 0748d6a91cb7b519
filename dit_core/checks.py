"""Checks of the numbers, tensors, names and paths a user gives, shared by the command line and the nodes.

Every check raises :class:`InvalidInputError` with one sentence that names
the input, says what it got and what to use instead, so that a bad value is
refused before any work starts (a NaN guidance scale would otherwise sample
a flat-coloured clip, a seed beyond 64 bits would fail deep inside PyTorch).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

MAX_SEED = 2**64 - 1
#: Ceilings far above any useful setting that keep a typo from running for days.
MAX_STEPS = 1000
MAX_LOOPS = 100
#: Longest file name (in bytes) most file systems take; ``os.pathconf`` refines it where it can.
NAME_MAX = 255


# ---------------------------------------------------------------------------
# Numbers


def _show(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def describe_range(low: float | None, high: float | None, *, low_open: bool = False) -> str:
    """``from 0 to 30``, ``of 0 or more``, ``above 0 and at most 1`` ..."""
    lo, hi = (None if v is None else _show(v) for v in (low, high))
    if low is not None and high is not None:
        return f"above {lo} and at most {hi}" if low_open else f"from {lo} to {hi}"
    if low is not None:
        return f"above {lo}" if low_open else f"of {lo} or more"
    if high is not None:
        return f"of at most {hi}"
    return ""


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, fix: str = "") -> float:
    """``value`` as a finite float within ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    span = describe_range(low, high, low_open=low_open)
    wanted = f"{name} must be a finite number{' ' + span if span else ''}"
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{wanted} (got {value!r}){'; ' + fix if fix else ''}") from None
    below = low is not None and (v <= low if low_open else v < low)
    if not math.isfinite(v) or below or (high is not None and v > high):
        raise InvalidInputError(f"{wanted} (got {value!r}){'; ' + fix if fix else ''}")
    return v


def whole(name: str, value: Any, low: int | None = None, high: int | None = None, *, fix: str = "") -> int:
    """``value`` as an int within ``[low, high]`` (floats only when they are whole)."""
    span = describe_range(low, high)
    wanted = f"{name} must be a whole number{' ' + span if span else ''}"
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{wanted} (got {value!r}){'; ' + fix if fix else ''}") from None
    if (low is not None and v < low) or (high is not None and v > high):
        raise InvalidInputError(f"{wanted} (got {value!r}){'; ' + fix if fix else ''}")
    return v


def seed(value: Any) -> int:
    return whole("seed", value, 0, MAX_SEED)


def motion_strength(value: Any, motion_range: tuple[float, float], model_name: str, setting: str) -> float:
    """A motion score within the model's range; ``setting`` names where the user sets it."""
    lo, hi = motion_range
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if not lo <= v <= hi:  # also refuses NaN
        shown = f"{v:g}" if not math.isnan(v) or isinstance(value, float) else repr(value)
        raise InvalidInputError(
            f"motion strength {shown} is outside what {model_name} knows ({lo:g}-{hi:g}): "
            f"set {setting} within {lo:g}-{hi:g}"
        )
    return v


# ---------------------------------------------------------------------------
# Tensors (IMAGE, LATENT, MASK)


def finite_values(name: str, tensor: Any, fix: str) -> None:
    """Refuse a tensor holding NaN or infinite values (one cheap pass)."""
    import torch

    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise InvalidInputError(
                f"{bad} of the {tensor.numel()} values in {name} {'are' if bad != 1 else 'is'} NaN or infinite: {fix}"
            )


def image_batch(name: str, image: Any) -> None:
    """A ComfyUI IMAGE ``[B, H, W, C]`` with pixels, finite values."""
    import torch

    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
        raise InvalidInputError(f"{name} must be a ComfyUI IMAGE [batch, height, width, channels]; connect an image")
    shape = list(image.shape if image.dim() == 4 else image[None].shape)
    if 0 in shape[:3]:
        raise InvalidInputError(
            f"{name} is empty ({shape[0]} image(s) of {shape[2]}x{shape[1]} pixels): connect an image with pixels"
        )
    finite_values(name, image, "connect an image with valid pixels (check the node that made it)")


# ---------------------------------------------------------------------------
# Names and paths


def name_max(folder: str | os.PathLike | None = None) -> int:
    try:
        return int(os.pathconf(os.fspath(folder) if folder else ".", "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def file_name(what: str, text: str, *, extra: int = 0, folder: str | os.PathLike | None = None) -> None:
    """Refuse names the file system cannot store: a NUL character, a part longer than a file name may be.

    ``extra`` is what the writer adds to the last part (a counter, an extension).
    """
    text = str(text)
    if "\x00" in text:
        raise InvalidInputError(f"{what} {text!r} contains a NUL character (\\x00): remove it")
    limit = name_max(_existing_ancestor(Path(folder)) if folder else None)
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    for i, part in enumerate(parts):
        size = len(part.encode("utf-8", "surrogateescape")) + (extra if i == len(parts) - 1 else 0)
        if size > limit:
            room = limit - (extra if i == len(parts) - 1 else 0)
            raise InvalidInputError(
                f"{what} has a name of {len(part)} characters ({part[:20]}...): a file name can have at most "
                f"{limit} bytes here, so shorten it to {max(room, 1)} or fewer"
            )


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def writable_folder(folder: str | os.PathLike, what: str) -> None:
    """Refuse before any work when files cannot be created in ``folder`` (or the folders it needs)."""
    target = Path(os.path.abspath(folder))
    base = _existing_ancestor(target)
    if not base.is_dir():
        raise InvalidInputError(f"cannot write {what}: {base} is a file, not a folder; choose another location")
    try:
        fd, probe = tempfile.mkstemp(prefix=".charmotion-check-", dir=base)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = str(base) if base == target else f"{base} (to create {target})"
        raise InvalidInputError(
            f"cannot write {what}: the folder {where} is not writable ({reason}); choose a folder you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)


def inside_folder(path: str | os.PathLike, root: str | os.PathLike, what: str) -> None:
    """Refuse a ``path`` that, with links resolved, leaves ``root``."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise InvalidInputError(
            f"{what} leads outside {root} (to {real}, through a link): choose a name inside that folder"
        )


def model_name(name: str, folders: str) -> str:
    """A model file name relative to the model folders (no absolute paths, no ``..``)."""
    text = str(name)
    if "\x00" in text:
        raise InvalidInputError(f"model name {text!r} contains a NUL character: pick a file from the list")
    parts = text.replace("\\", "/").split("/")
    if os.path.isabs(text) or text.startswith(("/", "\\")) or ".." in parts or (len(text) > 1 and text[1] == ":"):
        raise InvalidInputError(
            f"model name {text!r} points outside the model folders: pick a file from the list (files in {folders})"
        )
    return text
