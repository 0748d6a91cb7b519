"""The command line's checks: every option refused with one sentence before any work starts.

:func:`check_options` runs before anything is loaded (numbers, the output
location, the device); :func:`check_for_model` once the model family is
known (its frame counts and motion range), before the reference is encoded
or anything is sampled. The words are those of the nodes' checks, with the
option's name.
"""

from __future__ import annotations

from pathlib import Path

from . import checks
from .errors import InvalidInputError

#: What a written name may gain: the counter of a free name (``_00001_``) and the longest extension.
NAME_ROOM = len("_00001_") + len(".apng")


def check_options(args, path: Path, fmt: str) -> None:
    if args.frames is not None:
        checks.whole("--frames", args.frames, 1)
    if args.size is not None:
        for value in args.size:
            checks.whole("--size", value, 1, fix="give N or WIDTHxHEIGHT in pixels, e.g. 64 or 96x64")
    if args.steps is not None:
        checks.whole("--steps", args.steps, 1, checks.MAX_STEPS)
    checks.seed(args.seed)
    if not str(args.prompt).strip():
        raise InvalidInputError("the prompt is empty: describe what the character does")
    if args.cfg is not None:
        checks.number("--cfg", args.cfg, 0)
    if args.denoise is not None:
        checks.number("--denoise", args.denoise, 0, 1, low_open=True, fix="1 starts from pure noise")
    if args.aesthetic is not None:
        checks.number("--aesthetic", args.aesthetic, 4, 7, fix="6.5 is Open-Sora's default")
    checks.whole("--loops", args.loops, 1, checks.MAX_LOOPS)
    if args.fps is not None:
        checks.number("--fps", args.fps, 0, low_open=True, fix="leave --fps out for the model's rate")
    if args.quality is not None:
        checks.whole("--quality", args.quality, 0, 100)
    if args.vae_tile and args.vae_tile < 32:
        raise InvalidInputError(f"--vae-tile {args.vae_tile} is too small: give 0 (whole frames) or a tile of "
                                "32 pixels or more, e.g. 512")
    for flag, color in (("--background", args.background), ("--background-color", args.background_color)):
        if str(color).strip().lower() != "auto":
            from .images import parse_color

            try:
                parse_color(color)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{flag}: {exc}") from None
    check_output(args.out, path, fmt)
    check_device(args.device)
    if args.t5_device:
        check_device(args.t5_device, "--t5-device")
    check_model_files(args)


def check_model_files(args) -> None:
    """The model files named exist, before the first of them is loaded."""
    if args.model == "opensora":
        named = [(flag, value) for flag, value in (("--dit", args.dit), ("--vae", args.vae), ("--t5", args.t5)) if value]
    elif args.model != "builtin":
        named = [("--model", args.model)]
    else:
        named = []
    for flag, value in named:
        if "\x00" in str(value) or not Path(value).exists():
            what = "folder" if flag == "--t5" else "file"
            raise InvalidInputError(f"{flag} {value!r}: no such {what}; give the path of the downloaded model {what}")


def check_out_name(out: str) -> None:
    """A name the file system takes (checked before the path is even looked at)."""
    checks.file_name("--out", out, extra=0 if out.endswith(("/", "\\")) else NAME_ROOM)


def check_output(out: str, path: Path, fmt: str) -> None:
    """A folder that can be written, checked before any work."""
    folder = path if fmt == "png_sequence" else path.parent
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"--out {out}: {folder} is a file, not a folder; choose another path")
    if fmt != "png_sequence" and path.is_dir():
        raise InvalidInputError(f"--out {out} is a folder: end it with / for PNG frames, or give a file name")
    checks.writable_folder(folder, f"--out {out}")


def check_device(name: str, flag: str = "--device") -> None:
    """Refuse a device this PyTorch cannot compute on, in one line naming ``flag``."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InvalidInputError(f"{flag} {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(f"{flag} {name}: this PyTorch sees no CUDA GPU; use {flag} cpu")
        if device.index is not None and device.index >= count:
            raise InvalidInputError(f"{flag} {name}: there are {count} CUDA GPU(s), numbered 0 to {count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidInputError(f"{flag} {name}: Apple's MPS is not available here; use {flag} cpu")
    elif device.type != "cpu":
        raise InvalidInputError(f"{flag} {name!r} is not supported: use cpu or cuda")


def check_for_model(args, runtime, fmt: str, image_size: tuple[int, int]) -> int:
    """The model family's limits (frame counts, motion range, memory, the format's size) -> the clip's frame count.

    ``runtime`` is the command's loaded model (``cli.Runtime``); ``image_size`` (width, height) is the output
    size of a model that keeps the image's size (no ``--size``)."""
    from .export import check_frame_size
    from .pipeline import LoopControl, check_frames, check_memory

    family = runtime.family
    frames = family.num_frames if args.frames is None else int(args.frames)
    check_frames(family.profile, frames, LoopControl(loops=int(args.loops), seamless=bool(args.seamless)))
    if args.motion_strength is not None:
        checks.motion_strength(args.motion_strength, family.motion_range, runtime.name, "--motion-strength")
    width, height = runtime.clip_size(args, image_size)
    check_frame_size(fmt, width, height)
    check_memory(runtime.model, family.profile, num_frames=frames, height=height, width=width,
                 cfg_scale=args.cfg, codec=runtime.codec, seamless=args.seamless, loops=args.loops)
    return frames
