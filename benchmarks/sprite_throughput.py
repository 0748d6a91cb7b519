"""Throughput of the procedural sprite data (clips per second).

    python benchmarks/sprite_throughput.py [--clips 300] [--frames 16] [--size 64] [--workers 2]

Measures on one core: rendering alone (random characters and actions), full
``make_example`` (character, key colour, prompt, render, composite), and
``iter_batches`` with worker processes when ``--workers`` > 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preview_data import load_pack  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    load_pack()
    import numpy as np
    from charmotion.dit_core.tiny import dataset as D
    from charmotion.dit_core.tiny.actions import ACTION_NAMES, ACTIONS

    rng = np.random.default_rng(0)
    jobs = []
    for i in range(args.clips):
        act = ACTIONS[ACTION_NAMES[i % len(ACTION_NAMES)]]
        ch = D.make_character(int(rng.integers(0, D.HELDOUT_ID_START)), act.requires)
        jobs.append((ch, act, float(rng.uniform())))
    t0 = time.perf_counter()
    for ch, act, amp in jobs:
        D.render_clip(ch, act, amp, num_frames=args.frames, size=args.size)
    dt = time.perf_counter() - t0
    print(f"render only      : {args.clips / dt:7.1f} clips/s  ({args.frames}x{args.size}x{args.size}, one core)")

    t0 = time.perf_counter()
    for i in range(args.clips):
        D.make_example(i, "train", args.frames, args.size)
    dt = time.perf_counter() - t0
    print(f"make_example     : {args.clips / dt:7.1f} clips/s  (one core)")

    if args.workers > 0:
        n_batches = max(2, args.clips // args.batch)
        it = D.iter_batches(0, args.batch, "train", args.frames, args.size, num_batches=n_batches + 1,
                            num_workers=args.workers)
        next(it)  # start-up of the worker pool is not counted
        t0 = time.perf_counter()
        for _ in it:
            pass
        dt = time.perf_counter() - t0
        print(f"iter_batches     : {n_batches * args.batch / dt:7.1f} clips/s  ({args.workers} worker processes, "
              f"batch {args.batch})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
