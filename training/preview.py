"""Contact sheets of the procedural sprite data, to eyeball it.

    python -m training preview [--seed 0] [--split train] [--out preview]

Writes ``<out>_frames.png`` (one row per action: the frames of one example,
amplitude and prompt in the margin) and ``<out>_grid.gif`` (one row per
action, several examples per row, animated). Existing files are never
overwritten: a numbered name is used instead. ``--write-samples DIR`` writes
the demo character PNGs (``assets/samples``) instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import actions, dataset


def free_path(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(1, 10000):
        candidate = path.with_name(f"{path.stem}_{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path = free_path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **kwargs)
    tmp.replace(path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training preview", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=("train", "heldout"))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--per-row", type=int, default=8, help="examples per action in the GIF")
    ap.add_argument("--zoom", type=int, default=2)
    ap.add_argument("--amplitude", type=float, default=None)
    ap.add_argument("--out", default="preview")
    ap.add_argument("--write-samples", metavar="DIR", default=None)
    args = ap.parse_args(argv)
    if args.write_samples:
        for path in dataset.write_sample_assets(args.write_samples, size=args.size):
            print("wrote", path)
        return 0

    z, s, t = args.zoom, args.size, args.frames
    names = actions.ACTION_NAMES
    margin = 260
    sheet = Image.new("RGB", (margin + t * s * z, len(names) * s * z), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    clips = []
    for row, name in enumerate(names):
        row_clips = []
        for k in range(args.per_row):
            ex = dataset.make_example(args.seed * 1000 + row * 100 + k, args.split, t, s, action=name,
                                      amplitude=args.amplitude)
            row_clips.append(ex["frames"])
            if k == 0:
                strip = np.concatenate(list(ex["frames"]), axis=1)
                img = Image.fromarray(strip).resize((strip.shape[1] * z, strip.shape[0] * z), Image.NEAREST)
                sheet.paste(img, (margin, row * s * z))
                ch = ex["character"]
                text = (f"{name}  a={ex['amplitude']:.2f}\n{ex['prompt'][:38]}\n"
                        f"{ch['kind']} {ch['style']} {ch['shading']} {ch['palette']}")
                draw.text((6, row * s * z + 6), text, fill=(230, 230, 230))
        clips.append(row_clips)
    out = Path(args.out)
    print("wrote", save(sheet, out.with_name(out.name + "_frames.png")))
    frames = []
    for f in range(t):
        rows = [np.concatenate([c[f] for c in row_clips], axis=1) for row_clips in clips]
        grid = np.concatenate(rows, axis=0)
        frames.append(Image.fromarray(grid).resize((grid.shape[1] * z, grid.shape[0] * z), Image.NEAREST))
    print("wrote", save(frames[0], out.with_name(out.name + "_grid.gif"), save_all=True,
                        append_images=frames[1:], duration=90, loop=0))
    return 0
