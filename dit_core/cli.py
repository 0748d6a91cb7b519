"""Command line: ``python -m dit_core animate --image PATH --prompt TEXT --out PATH``.

The output format follows the extension: ``.mp4``, ``.webm``, ``.gif``,
``.webp``, ``.apng``, ``.png`` (a sprite sheet with its JSON atlas); a path
ending in ``/`` writes numbered PNG frames. Existing files are never
overwritten (the next free name is used and reported). With the built-in
model nothing is downloaded; ``--model`` may also name another built-in model
file, or
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import CharMotionError, GenerationCancelled, InvalidInputError
from .families import BUILTIN, OPENSORA, ModelFamily
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


EXAMPLES = """examples:
  python -m dit_core animate --image assets/samples/slime.png --prompt "the slime bounces" --out out/slime.gif
  python -m dit_core animate --image assets/samples/knight.png --prompt "the knight walks to the right" --seamless --out out/walk.png
  python -m dit_core animate --image assets/samples/cat.png --prompt "the cat waves" --size 256 --background-color white --out out/cat.mp4
  python -m dit_core animate --image assets/samples/knight.png --prompt "the knight jumps" --motion-strength 8 --seed 3 --out out/jump/
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's help as written (its default said once, in words) and the examples kept as laid out."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dit_core", description=__doc__, formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("animate", help="animate a character image", formatter_class=_HelpFormatter,
                       description="Animate a character image: a reference image and a prompt -> a short clip.",
                       epilog=EXAMPLES)
    given = a.add_argument_group("input")
    given.add_argument("--image", required=True, help="reference image (PNG with or without alpha, JPG, ...)")
    given.add_argument("--prompt", required=True, help='what the character does, e.g. "the slime bounces"')
    given.add_argument("--model", default="builtin",
                       help="builtin (default: the model shipped with the pack), a built-in model .safetensors "
                            "file, or opensora")
    given.add_argument("--dit", help="Open-Sora 1.2 STDiT3 file (with --model opensora)")
    given.add_argument("--vae", help="Open-Sora VAE v1.2 file (with --model opensora)")
    given.add_argument("--t5", help="T5 v1.1 XXL folder in Hugging Face layout (with --model opensora; needs transformers)")

    motion = a.add_argument_group("motion")
    motion.add_argument("--motion-strength", type=float, default=None,
                        help="how much the character moves: built-in model 0-10, Open-Sora 0-100 (default: no "
                             "score, the model moves as much as its training clips did for the prompt)")
    motion.add_argument("--frames", type=int, default=None,
                        help="frames per clip (default: the model's: 16 built-in, 51 Open-Sora)")
    motion.add_argument("--seamless", "--loop", dest="seamless", action="store_true",
                        help="a seamless loop: the last frame flows back into the first (default: off; --loop is "
                             "the earlier name)")
    motion.add_argument("--loops", type=int, default=1,
                        help="chain this many clips, each continuing the one before (default: 1)")
    motion.add_argument("--seed", type=int, default=0, help="same seed, same clip (default: 0)")

    output = a.add_argument_group("output")
    output.add_argument("--out", required=True,
                        help="output file (.mp4 .webm .gif .webp .apng, .png = sprite sheet + JSON atlas) or "
                             "folder/ for numbered PNG frames; an existing file is never overwritten")
    output.add_argument("--size", type=_size, default=None,
                        help="N or WIDTHxHEIGHT (default: the built-in model keeps the image's size, with room to "
                             "move around a tightly cropped character, see --canvas; Open-Sora 426x240)")
    output.add_argument("--fit", choices=("crop", "pad", "stretch"), default="pad",
                        help="how the image fills a --size of another shape (default: pad)")
    output.add_argument("--canvas", choices=("grow", "keep"), default="grow",
                        help="built-in model without --size: grow (default) adds transparent room around a tightly "
                             "cropped character so a jump or a growth is not cut at the image's edge; keep: the "
                             "image's own size")
    output.add_argument("--fps", type=float, default=None, help="frame rate (default: the model's: 8 built-in)")
    output.add_argument("--quality", type=int, default=None,
                        help="0-100, higher is better (default: the format's: MP4 CRF 19, WebM CRF 30, WebP 90 (the "
                             "built-in model: lossless), GIF 256 colours)")
    output.add_argument("--lossless", choices=("auto", "yes", "no"), default="auto",
                        help="lossless WebP / WebM / MP4 (default: auto = lossless WebP for the built-in model, whose "
                             "clips are the sprite's own pixels, unless a --quality is given)")
    output.add_argument("--transparent", choices=("auto", "yes", "no"), default="auto",
                        help="transparent output where the format has alpha (default: auto = if the image had alpha)")
    output.add_argument("--background-color", default="auto",
                        help="colour behind a transparent sprite in opaque output (MP4, or --transparent no): "
                             "auto (default: a light or dark grey that contrasts with the sprite), white, #202020...")
    output.add_argument("--quiet", action="store_true", help="print only where the file went (default: off)")

    advanced = a.add_argument_group("advanced")
    advanced.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's: 20 built-in)")
    advanced.add_argument("--cfg", type=float, default=None,
                          help="guidance scale: how strongly the prompt is followed (default: the model's)")
    advanced.add_argument("--denoise", type=float, default=None,
                          help="1 (default) starts from pure noise; lower keeps the character closer to the "
                               "reference with less motion")
    advanced.add_argument("--pixel-art", action="store_true",
                          help="nearest-neighbour resizing (and, with the built-in model, moving) for crisp pixels "
                               "(default: the built-in model detects pixel art by itself)")
    advanced.add_argument("--background", default="auto",
                          help="key colour the model sees behind transparent pixels: auto (default: a colour the "
                               "sprite does not use), magenta, #00ff00...")
    advanced.add_argument("--palette", type=int, default=0,
                          help="palette lock: redraw the frames in at most N of the reference's colours (default: 0 = "
                               "off; the built-in model moves the reference's own pixels, so it keeps them anyway)")
    advanced.add_argument("--aesthetic", type=float, default=None, help="aesthetic score 4-7 (Open-Sora; default: none)")
    advanced.add_argument("--camera", default=None, help="camera motion (Open-Sora): pan left, zoom in, ... (default: none)")
    advanced.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    advanced.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="(default: fp32)")
    advanced.add_argument("--attention", default="auto", choices=("auto", "sdpa", "xformers", "math"),
                          help="attention kernel (default: auto = xformers on CUDA when installed, else sdpa)")
    advanced.add_argument("--t5-device", default=None, metavar="DEVICE",
                          help="Open-Sora: where T5 v1.1 XXL encodes the prompt, in float32 as upstream does (about "
                               "19 GB); cpu keeps the GPU for the DiT and VAE, at some seconds a prompt (default: "
                               "--device)")
    advanced.add_argument("--vae-tile", type=int, default=0, metavar="PIXELS",
                          help="Open-Sora: decode frames in spatial tiles of this many pixels (e.g. 512) to need "
                               "less GPU memory (default: 0 = whole frames)")
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
    """A progress bar on a terminal (none with ``--quiet`` or when stderr is a file or pipe)."""

    def __init__(self, quiet: bool):
        self.bar = None
        self.quiet = quiet or not sys.stderr.isatty()

    def __call__(self, step, total, _latents):
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="sampling", unit="step", file=sys.stderr, leave=False)
        self.bar.update(step - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def say(args, line: str) -> None:
    """One line of what the command is doing (on stdout; nothing with ``--quiet``)."""
    if not args.quiet:
        print(line, flush=True)


def tell(notes) -> None:
    """Notes the user should read (on stderr, also with ``--quiet``)."""
    for note in notes:
        if note:
            print(f"note: {note}", file=sys.stderr)


@dataclass
class Prepared:
    """A reference made ready for one model family: what ``generate()`` takes, and what the export needs."""

    references: list
    codec: object
    height: int
    width: int
    key_color: tuple[int, int, int] | None
    had_alpha: bool
    reference_rgb: object  # uint8 [H, W, 3]: the reference as frame 0 shows it (for the palette lock)
    context: object = None
    notes: list = field(default_factory=list)


@dataclass
class Runtime:
    """A loaded model for the command: its family, how to prepare its reference and encode its prompts."""

    name: str
    family: ModelFamily
    model: Any
    codec: Any  # for the memory check before the reference is prepared
    encode: Callable[[str, int], list]  # (prompt, loops) -> one caption per loop
    prepare: Callable[[Any, argparse.Namespace], Prepared]
    prompt_note: Callable[[str], str | None] | None = None

    @property
    def profile(self):
        return self.family.profile

    def clip_size(self, args, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height): ``--size``, else the image's own size or the family's default."""
        if args.size:
            return args.size
        return image_size if self.family.keeps_image_size else (self.family.size[1], self.family.size[0])


def _prepare(runtime: Runtime, image, args) -> Prepared:
    prepared = runtime.prepare(image, args)
    tell(prepared.notes)
    return prepared


def animate(args) -> int:
    import numpy as np

    from .builtin.codec import BoundFieldCodec
    from .builtin.sprite import unpremultiply
    from .cli_checks import check_for_model, check_options
    from .export import export_frames, frames_uint8
    from .palette import check_colors, lock_palette
    from .pipeline import MIN_WARP_SIDE, LoopControl, generate
    from .prompts import prepare_prompt, require_words, split_loop_prompt, unused_loops_note

    path, fmt = output_target(args.out)
    check_options(args, path, fmt)
    if args.palette:
        check_colors(args.palette)
    image = load_image(args.image)
    runtime = _load_models(args)
    profile = runtime.profile
    image_size = (image.shape[1], image.shape[0])
    if runtime.family.keeps_image_size and not args.size:  # it animates the canvas grown around a tight sprite
        if min(image_size) >= MIN_WARP_SIDE:
            check_for_model(args, runtime, fmt, image_size=image_size)  # too large even before it grows
        prepared = _prepare(runtime, image, args)
        try:
            frames = check_for_model(args, runtime, fmt, image_size=(prepared.width, prepared.height))
        except InvalidInputError as exc:
            if (prepared.width, prepared.height) == image_size:
                raise
            raise type(exc)(f"{exc}; or keep the image's own {image_size[0]}x{image_size[1]} canvas: "
                            "--canvas keep") from None
    else:
        frames = check_for_model(args, runtime, fmt, image_size=image_size)
        prepared = _prepare(runtime, image, args)
    aesthetic, camera, notes = runtime.family.usable_scores(args.aesthetic, args.camera)
    tell(notes)
    segments = split_loop_prompt(args.prompt)
    for segment in segments:  # refused as CharMotion Text Encode refuses it
        require_words(segment.text)
    text = prepare_prompt(args.prompt, aesthetic=aesthetic, motion=args.motion_strength, camera=camera, clean=False)
    tell(runtime.prompt_note(segment.text) for segment in segments if runtime.prompt_note)
    tell([unused_loops_note([s.start_loop for s in segments], args.loops)])
    conditions = runtime.encode(text, args.loops)
    steps = args.steps or profile.steps
    cfg = profile.cfg_scale if args.cfg is None else args.cfg
    loops = f", {args.loops} clips chained" if args.loops > 1 else ""
    say(args, f"{runtime.name}: {prepared.width}x{prepared.height}, {frames} frames{loops}, {steps} steps, "
              f"cfg {cfg:g}, seed {args.seed}{', seamless loop' if args.seamless else ''}")
    progress = _Progress(args.quiet)
    start = time.perf_counter()
    try:
        result = generate(runtime.model, conditions, codec=prepared.codec, references=prepared.references,
                          context=prepared.context, num_frames=frames, height=prepared.height, width=prepared.width,
                          seed=args.seed, steps=args.steps, cfg_scale=args.cfg, denoise=args.denoise,
                          loop=LoopControl(loops=args.loops, seamless=args.seamless), progress=progress,
                          profile=profile)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    say(args, f"sampled in {seconds:.1f} s ({seconds / (steps * args.loops):.2f} s per step)")
    tell(result.notes)
    video = ((result.video[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).numpy()  # [T, H, W, 3] in 0..1
    transparent = prepared.had_alpha if args.transparent == "auto" else args.transparent == "yes"
    key = prepared.key_color if prepared.had_alpha or transparent else None
    if key is not None and isinstance(prepared.codec, BoundFieldCodec):  # the reference's own opacity, moved:
        video, key = prepared.codec.rgba_frames(result.latents, len(video)).numpy(), None  # nothing to key out
    if args.palette:
        video = frames_uint8(video)
        reference = prepared.reference_rgb
        if video.shape[-1] == 4:  # straight colours: the palette of the sprite's visible pixels, not of the key
            straight = unpremultiply(prepared.codec.sprite.rgba).permute(1, 2, 0)
            reference = np.rint(straight[straight[..., 3] > 0][:, :3].numpy() * 255).astype(np.uint8)[None]
        video[..., :3] = lock_palette(np.ascontiguousarray(video[..., :3]), reference, args.palette,
                                      keep=() if key is None else [key])  # the key background stays the key
    lossless = args.lossless == "yes" or (args.lossless == "auto" and fmt == "webp" and runtime.family.key == BUILTIN
                                         and args.quality is None)
    exported = export_frames(
        video, path, fmt=fmt, fps=args.fps or result.fps, key_color=key, quality=args.quality, lossless=lossless,
        opaque=not transparent, background=args.background_color,
        metadata={"prompt": args.prompt, "seed": args.seed, "model": runtime.name},
    )
    tell(exported.notes)
    print(f"wrote {exported.path} ({exported.frame_count} frames, {exported.width}x{exported.height}, "
          f"{exported.fps:g} fps)")
    return 0


def _load_models(args) -> Runtime:
    """The model named by ``--model`` (or ``--dit`` with ``--model opensora``), loaded for the command."""
    from .families import family_of_file, load_denoiser

    if args.model == "opensora":
        missing = [flag for flag, value in (("--dit", args.dit), ("--vae", args.vae), ("--t5", args.t5)) if not value]
        if missing:
            raise InvalidInputError(f"--model opensora needs {', '.join(missing)} (the published Open-Sora 1.2 files)")
    source = args.dit if args.model == "opensora" else None if args.model == "builtin" else args.model
    family = family_of_file(source)
    if args.model == "opensora" and family == BUILTIN:
        raise InvalidInputError(f"--dit {source} is a CharMotion built-in model file: use --model {source}")
    if args.model != "opensora" and family == OPENSORA:
        raise InvalidInputError(f"--model {source} is an Open-Sora 1.2 STDiT3 file: use --model opensora "
                                f"--dit {source} with --vae and --t5")
    loaded = load_denoiser(source, dtype=args.dtype, device=args.device, attention=args.attention, family=family)
    return _builtin_runtime(loaded) if family == BUILTIN else _opensora_runtime(loaded, args)


def _builtin_runtime(loaded) -> Runtime:
    from .builtin.sprite import prepare_sprite
    from .pipeline import Reference
    from .prompts import prompt_for_loop

    bundle = loaded.builtin
    codec = bundle.codec

    def encode(text, loops):
        return [bundle.encode_text(prompt_for_loop(text, k)) for k in range(loops)]

    def prepare(image, args) -> Prepared:
        size = None if args.size is None else (args.size[1], args.size[0])
        sprite = prepare_sprite(image, size=size, fit=args.fit, background=args.background,
                                mode="nearest" if args.pixel_art else "auto", canvas=args.canvas)
        return Prepared(references=[Reference(codec.identity(sprite))], codec=codec.bind(sprite),
                        context=codec.appearance(sprite), height=sprite.height, width=sprite.width,
                        key_color=sprite.key_color, had_alpha=sprite.had_alpha, reference_rgb=sprite.composited(),
                        notes=sprite.notes)

    return Runtime(name=loaded.name, family=loaded.family, model=loaded.model, codec=codec, encode=encode,
                   prepare=prepare, prompt_note=bundle.prompt_note)


def _opensora_runtime(loaded, args) -> Runtime:
    import torch

    from .images import prepare_reference
    from .pipeline import Reference
    from .prompts import preprocess_text, prompt_for_loop
    from .models import resolve_dtype
    from .text_t5 import T5TextEncoder
    from .vae import load_opensora_vae

    vae = load_opensora_vae(args.vae, dtype=resolve_dtype(args.dtype), device=args.device, tile=args.vae_tile or None)
    vae.tile_setting = "--vae-tile"  # where the memory check's advice sends a user of the command
    caption_channels = loaded.model.config.caption_channels
    t5 = T5TextEncoder.from_pretrained(args.t5, device=args.t5_device or args.device, channels=caption_channels)

    def encode(text, loops):
        return [t5([preprocess_text(prompt_for_loop(text, k))]) for k in range(loops)]

    def prepare(image, args) -> Prepared:
        width, height = runtime.clip_size(args, (image.shape[1], image.shape[0]))
        ref = prepare_reference(image, height=height, width=width, fit=args.fit, pixel_art=args.pixel_art,
                                background=args.background)
        latents = vae.encode(ref.video().to(device=args.device, dtype=getattr(vae, "dtype", torch.float32)))
        return Prepared(references=[Reference(latents[0])], codec=vae, height=height, width=width,
                        key_color=ref.key_color, had_alpha=ref.had_alpha, reference_rgb=ref.rgb, notes=ref.notes)

    t5.check_width(caption_channels)  # a config.json that did not say: another T5 size would fail only once sampling
    runtime = Runtime(name=loaded.family.name, family=loaded.family, model=loaded.model, codec=vae, encode=encode,
                      prepare=prepare)
    return runtime


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
