"""Speed and file size of every export format.

Draws a clip like the pipeline's output (a shaded sprite bobbing on a flat
key-green background, with a little noise as a VAE leaves it), keys the green
out where the format keeps alpha, and prints per format: seconds to write
(median of the runs), file size, written frame size and the notes. Also
prints the chroma key's throughput.

Examples::

    python benchmarks/bench_export.py                          # 49 frames of 256x256
    python benchmarks/bench_export.py --frames 97 --height 480 --width 848 --runs 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from _pack import load_pack  # benchmarks/ is on sys.path when run as a script


def make_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = np.empty((frames, height, width, 3), np.float32)
    for t in range(frames):
        cy = height * (0.55 + 0.1 * np.sin(2 * np.pi * t / max(frames, 1)))
        cx = width * 0.5
        r = min(height, width) * 0.28
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
        inside = np.clip((1.0 - d) * r / 1.5, 0.0, 1.0)[..., None]  # anti-aliased disc edge
        shade = np.clip(1.1 - 0.6 * ((yy - cy + r) / (2 * r)), 0.3, 1.0)[..., None]
        body = np.concatenate([0.85 * shade, 0.35 * shade, 0.25 * shade], axis=-1)
        key = np.array([0.0, 1.0, 0.0], np.float32)
        clip[t] = inside * body + (1.0 - inside) * key
    clip += rng.normal(0.0, 0.01, clip.shape).astype(np.float32)
    return np.clip(clip, 0.0, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", nargs="*", default=None)
    args = ap.parse_args()

    load_pack()
    from charmotion.dit_core import export as ex

    clip = make_clip(args.frames, args.height, args.width)
    print(f"clip: {args.frames} frames of {args.width}x{args.height}, key colour #00ff00, fps {args.fps}")

    u8 = (clip * 255).round().astype(np.uint8)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        ex.key_out(u8, (0, 255, 0), 0.1)
        times.append(time.perf_counter() - t0)
    mpix = args.frames * args.height * args.width / 1e6
    print(f"key_out: {statistics.median(times):.3f} s ({mpix / statistics.median(times):.1f} Mpixel/s)")

    print(f"{'format':<13} {'seconds':>8} {'KiB':>9} {'size':>9}  notes")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.formats or list(ex.FORMATS):
            times = []
            for run in range(args.runs):
                t0 = time.perf_counter()
                res = ex.export_frames(clip, tmp, fmt=name, prefix=f"bench_{name}", fps=args.fps,
                                       key_color="#00ff00", metadata={"workflow": {"bench": True}})
                times.append(time.perf_counter() - t0)
            size = f"{res.width}x{res.height}"
            print(f"{name:<13} {statistics.median(times):>8.3f} {res.bytes / 1024:>9.1f} {size:>9}  "
                  f"{'; '.join(res.notes)}")


if __name__ == "__main__":
    main()
