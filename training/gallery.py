"""The README's gallery: each sample sprite beside the built-in model's clips of a few prompts.

    python -m training gallery                      # the shipped model -> docs/gallery/<sprite>.gif
    python -m training gallery --model runs/x/charmotion_builtin.safetensors --out /tmp/gallery

One GIF per sample sprite (``assets/samples``): a row of cells, the reference
first, then one clip per prompt of :data:`CELLS`, each labelled, over a light
grey, at twice the sprite's size (nearest neighbour, so pixels stay crisp).
The files are replaced when the command runs again (the gallery follows the
model); the seed is fixed, so the same model gives the same gallery.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..dit_core.builtin.model import load_builtin
from ..dit_core.export import LIGHT_BACKGROUND, export_frames
from ..dit_core.images import read_image
from .evaluate import animate

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("knight", "slime", "cat")
#: (label, prompt with {n} for the sprite's name, seamless loop); the first cell is the reference itself
CELLS = (
    ("jump", "the {n} jumps", False),
    ("walk right", "the {n} walks to the right", False),
    ("wave", "the {n} waves", False),
    ("shake head", "the {n} shakes its head", False),
    ("spin", "the {n} spins around", False),
    ("idle loop", "the {n} idles", True),
)
FRAMES = 16
SCALE = 2
GAP = 4
LABEL = 14
INK = (60, 60, 64)


def over_background(image: np.ndarray) -> np.ndarray:
    """An RGB(A) uint8 image over the gallery's grey -> uint8 RGB."""
    if image.shape[-1] == 3:
        return image
    alpha = image[..., 3:].astype(np.float32) / 255.0
    return np.rint(image[..., :3] * alpha + np.asarray(LIGHT_BACKGROUND) * (1 - alpha)).astype(np.uint8)


def sprite_row(bundle, name: str, *, seed: int, steps: int | None) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: the labelled row of one sample sprite."""
    image = read_image(ROOT / "assets" / "samples" / f"{name}.png")
    cells = [("reference", np.repeat(over_background(image)[None], FRAMES, axis=0))]
    for label, prompt, seamless in CELLS:
        clip = animate(bundle, image, prompt.format(n=name), strength=None, seed=seed, steps=steps,
                       key_color=LIGHT_BACKGROUND, frames=FRAMES, seamless=seamless)
        cells.append((label, clip))
    h, w = image.shape[0] * SCALE, image.shape[1] * SCALE
    row = np.empty((FRAMES, h + LABEL, len(cells) * (w + GAP) + GAP, 3), np.uint8)
    row[...] = LIGHT_BACKGROUND
    labels = Image.new("RGB", (row.shape[2], LABEL), LIGHT_BACKGROUND)
    draw = ImageDraw.Draw(labels)
    for i, (label, clip) in enumerate(cells):
        x = GAP + i * (w + GAP)
        row[:, :h, x : x + w] = clip.repeat(SCALE, axis=1).repeat(SCALE, axis=2)
        width = draw.textlength(label)
        draw.text((x + (w - width) / 2, 1), label, fill=INK)
    row[:, h:] = np.asarray(labels)[None]
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the shipped built-in model)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "gallery"), help="folder of the GIFs (default: docs/gallery)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    return parser


def main(argv=None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    bundle = load_builtin(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in SAMPLES:
        with torch.no_grad():
            row = sprite_row(bundle, name, seed=args.seed, steps=args.steps)
        result = export_frames(row, out / f"{name}.gif", fps=float(bundle.config["sampling"]["fps"]), overwrite=True,
                               metadata={"model": bundle.name, "seed": args.seed})
        total += result.path.stat().st_size
        print(f"wrote {result.path} ({result.path.stat().st_size / 1024:.0f} KB)")
    print(f"gallery: {total / 1024:.0f} KB in all")
    return 0
