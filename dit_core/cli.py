"""Command line: ``python -m dit_core animate --image PATH --prompt TEXT --out PATH``.

The output format follows the extension: ``.mp4``, ``.webm``, ``.gif``,
``.webp``, ``.apng``, ``.png`` (a sprite sheet with its JSON atlas); a path
ending in ``/`` writes numbered PNG frames. Existing files are never
overwritten (the next free name is used and reported). With the built-in
model nothing is downloaded; ``--model`` may also name another bundle file, or
``opensora`` with ``--dit``/``--vae``/``--t5`` pointing at the published
Open-Sora 1.2 files.

Options are checked before anything is loaded or sampled. The exit status is
0 on success, 2 after an error (one line on stderr saying what to change),
130 when cancelled with Ctrl-C and 143 when stopped with SIGTERM; temporary
files are removed either way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import CharMotionError, GenerationCancelled, InvalidInputError
from .signals import exit_status, stop_on_signals

EXTENSIONS = (".mp4", ".webm", ".gif", ".webp", ".apng", ".png")


def _size(text: str) -> tuple[int, int]:
    """``64`` -> (64, 64); ``96x64`` -> (width 96, height 64)."""
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x")
            return int(w), int(h)
        return int(text), int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must be N or WIDTHxHEIGHT, e.g. 64 or 96x64") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dit_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("animate", help="animate a character image", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--image", required=True, help="reference image (PNG with or without alpha, JPG, ...)")
    a.add_argument("--prompt", required=True, help='what the character does, e.g. "the slime bounces"')
    a.add_argument("--out", required=True, help="output file (.mp4 .webm .gif .webp .apng .png=sprite sheet) or folder/")
    a.add_argument("--model", default="builtin", help="'builtin', a bundle .safetensors, or 'opensora'")
    a.add_argument("--dit", help="Open-Sora 1.2 STDiT3 file (with --model opensora)")
    a.add_argument("--vae", help="Open-Sora VAE v1.2 file (with --model opensora)")
    a.add_argument("--t5", help="T5 v1.1 XXL folder in Hugging Face layout (with --model opensora; needs transformers)")
    a.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    a.add_argument("--size", type=_size, default=None, help="N or WIDTHxHEIGHT (default: the model's)")
    a.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
    a.add_argument("--denoise", type=float, default=None,
                   help="1 = start from pure noise; lower keeps the character closer to the reference with less "
                        "motion (default: the model's: 1)")
    a.add_argument("--palette", type=int, default=None,
                   help="palette lock: redraw the frames in at most N of the reference's colours, 0 = off "
                        "(default: the model's; built-in 256, Open-Sora off)")
    a.add_argument("--motion-strength", type=float, default=None,
                   help="motion score (built-in model: 0-10; Open-Sora: 0-100); omit to let the model choose")
    a.add_argument("--aesthetic", type=float, default=None, help="aesthetic score 4-7 (Open-Sora)")
    a.add_argument("--camera", default=None, help="camera motion (Open-Sora): pan left, zoom in, ...")
    a.add_argument("--loop", action="store_true", help="seamless loop: the last frame flows back into the first")
    a.add_argument("--loops", type=int, default=1, help="number of chained clips (video extension)")
    a.add_argument("--fps", type=float, default=None, help="output frame rate (default: the model's)")
    a.add_argument("--fit", choices=("crop", "pad", "stretch"), default="pad", help="how the image fills the frame")
    a.add_argument("--pixel-art", action="store_true", help="upscale with nearest-neighbour first (crisp pixels)")
    a.add_argument("--background", default="auto", help="key colour behind transparent sprites (auto, magenta, #00ff00...)")
    a.add_argument("--transparent", choices=("auto", "yes", "no"), default="auto",
                   help="key the background out again where the format supports alpha (auto: if the image had alpha)")
    a.add_argument("--device", default="cpu")
    a.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    a.add_argument("--attention", default="auto", choices=("auto", "sdpa", "xformers", "math"))
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def output_target(out: str):
    """(path, fmt) for ``export_frames``; a trailing slash means a PNG sequence folder."""
    from .cli_checks import check_out_name
    from .export import format_for_path

    check_out_name(out)
    if out.endswith(("/", "\\")):
        return Path(out), "png_sequence"
    path = Path(out)
    if path.suffix.lower() not in EXTENSIONS:
        raise InvalidInputError(
            f"cannot tell the format of {out!r}: end it with one of {', '.join(EXTENSIONS)} or with / for PNG frames"
        )
    return path, format_for_path(path)


def load_image(path: str):
    from .images import read_image

    return read_image(path)


class _Progress:
    def __init__(self, quiet: bool):
        self.bar = None
        self.quiet = quiet

    def __call__(self, step, total, _latents):
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="sampling", unit="step", file=sys.stderr)
        self.bar.update(step - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def animate(args) -> int:
    import torch

    from .cli_checks import check_for_model, check_options
    from .export import export_frames, frames_uint8
    from .palette import check_colors, lock_palette
    from .images import prepare_reference
    from .pipeline import Reference, generate
    from .prompts import prepare_prompt, split_loop_prompt

    path, fmt = output_target(args.out)
    check_options(args, path, fmt)
    if args.palette:
        check_colors(args.palette)
    image = load_image(args.image)
    runtime = _load_models(args)
    profile = runtime["profile"]
    frames = check_for_model(args, runtime, fmt)
    width, height = args.size or runtime["size"]
    prepared = prepare_reference(image, height=height, width=width, fit=args.fit, pixel_art=args.pixel_art,
                                 background=args.background)
    for note in prepared.notes:
        print(f"note: {note}", file=sys.stderr)
    codec = runtime["codec"]
    latents = codec.encode(prepared.video().to(device=args.device, dtype=getattr(codec, "dtype", torch.float32)))
    text = prepare_prompt(args.prompt, aesthetic=args.aesthetic, motion=args.motion_strength, camera=args.camera,
                          clean=False)
    for segment in split_loop_prompt(args.prompt) if runtime["prompt_note"] else ():
        if note := runtime["prompt_note"](segment.text):
            print(f"note: {note}", file=sys.stderr)
    conditions = runtime["encode"](text, args.loops)
    progress = _Progress(args.quiet)
    start = time.perf_counter()
    try:
        result = generate(runtime["model"], conditions, codec=codec, references=[Reference(latents[0])],
                          num_frames=frames, height=height, width=width, seed=args.seed, steps=args.steps,
                          cfg_scale=args.cfg, denoise=args.denoise, loops=args.loops, seamless=args.loop,
                          progress=progress, profile=profile)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    video = ((result.video[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).numpy()  # [T, H, W, 3] in 0..1
    colors = profile.palette_colors if args.palette is None else args.palette
    if colors:
        video = lock_palette(frames_uint8(video), prepared.rgb, colors)
    transparent = prepared.had_alpha if args.transparent == "auto" else args.transparent == "yes"
    exported = export_frames(
        video, path, fmt=fmt, fps=args.fps or result.fps,
        key_color=prepared.key_color if transparent else None,
        metadata={"prompt": args.prompt, "seed": args.seed, "model": runtime["name"]},
    )
    for note in exported.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {exported.path} ({exported.frame_count} frames, {exported.width}x{exported.height}, "
          f"{exported.fps:g} fps) in {seconds:.1f} s")
    return 0


def _load_models(args) -> dict:
    """The model, codec, text encoding and defaults for ``--model``."""
    from .checkpoint import reading_model_file
    from .prompts import prompt_for_loop

    if args.model == "opensora":
        return _load_opensora(args)
    from .tiny.bundle import load_tiny
    from .tiny.vocabulary import no_action_note

    source = None if args.model == "builtin" else args.model
    with reading_model_file(source, "a CharMotion model bundle"):
        bundle = load_tiny(source, dtype=args.dtype, device=args.device, attention=args.attention)
    sampling = bundle.config["sampling"]

    def encode(text, loops):
        return [bundle.encode_text(prompt_for_loop(text, k)) for k in range(loops)]

    return dict(model=bundle.model, codec=bundle.codec, profile=bundle.profile, encode=encode, name=bundle.name,
                frames=int(sampling["num_frames"]), size=(int(sampling["size"]), int(sampling["size"])),
                prompt_note=no_action_note, motion_range=(0.0, float(sampling.get("motion_scale", 10.0))))


def _load_opensora(args) -> dict:
    from .models import load_stdit3
    from .pipeline import OPENSORA12
    from .prompts import MOTION_RANGE, preprocess_text, prompt_for_loop
    from .text_t5 import T5TextEncoder
    from .vae import load_opensora_vae

    missing = [flag for flag, value in (("--dit", args.dit), ("--vae", args.vae), ("--t5", args.t5)) if not value]
    if missing:
        raise InvalidInputError(f"--model opensora needs {', '.join(missing)} (the published Open-Sora 1.2 files)")
    model = load_stdit3(args.dit, dtype=args.dtype, device=args.device, attention=args.attention)
    vae = load_opensora_vae(args.vae, dtype=args.dtype, device=args.device)
    t5 = T5TextEncoder.from_pretrained(args.t5, device=args.device)

    def encode(text, loops):
        return [t5([preprocess_text(prompt_for_loop(text, k))]) for k in range(loops)]

    return dict(model=model, codec=vae, profile=OPENSORA12, encode=encode, name="Open-Sora 1.2", frames=51,
                size=(426, 240), prompt_note=None, motion_range=MOTION_RANGE)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    try:
        with stop_on_signals(), torch.no_grad():
            return animate(args)
    except (KeyboardInterrupt, GenerationCancelled) as exc:
        print("cancelled", file=sys.stderr)
        return exit_status(exc)
    except MemoryError:
        print("error: out of memory: use a smaller --size or fewer --frames", file=sys.stderr)
        return 2
    except (CharMotionError, ValueError, OSError, RuntimeError) as exc:
        message = str(exc) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
