"""Quality and speed of the built-in model on held-out sprites (characters and phrasings training never saw).

    python -m training benchmark                      # the shipped model: 227 clips, a few minutes on 2 cores
    python -m training benchmark --model runs/x/charmotion_builtin.safetensors --characters 1
    python -m training benchmark --ground-truth       # the training targets through the warp decoder: the ceiling
    python -m training benchmark --ground-truth --field '{"grid": 32, "smoothing": 0}'   # another field's ceiling
    python -m training benchmark --actions idle,talk,blink
    python -m training benchmark --cropped            # references cropped to the character, as games ship sprites

Prints per action and overall: recognised (share of clips whose motion the
analytic tracker recognises as the requested action), frame-0 PSNR against
the reference (dB, capped at 100), identity drift (colour-histogram distance
of the character from frame 0; 0 = the same colours), the Spearman
correlation between the requested motion strength and the measured
amplitude, the median seam ratio of seamless loops (last->first change over
the median frame-to-frame change), torn (the share of the character that its
worst frame has in loose pieces, a warp torn apart; mean over clips) and
seconds per clip (16 frames, 64x64).
Half of the held-out prompts use held-out sentences (``phrases.py``); the
next line splits the recognition rate by that. The last lines time one clip
(16 frames, the model's steps) at 64x64 and at 256x256.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..dit_core.builtin.codec import FieldConfig, MotionFieldCodec
from ..dit_core.builtin.model import load_builtin
from .dataset import make_example
from .evaluate import animate, as_dicts, benchmark_jobs, evaluate, reference_rgba, summarise
from .train import settings_from_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the shipped built-in model)")
    parser.add_argument("--characters", type=int, default=4, help="held-out characters per action")
    parser.add_argument("--levels", default="0.4,0.7,1.0", help="motion strengths (0..1 of the model's range)")
    parser.add_argument("--actions", default=None, help="comma-separated subset of actions")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--cfg", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ground-truth", action="store_true",
                        help="score the training targets (the drawn clips' motion fields through the warp decoder)")
    parser.add_argument("--field", default=None,
                        help="with --ground-truth: JSON settings of another motion field (grid, smoothing, ...) to "
                             "score the targets through: the ceiling a model with that field could reach")
    parser.add_argument("--cropped", action="store_true",
                        help="crop each reference to its character first, as game sprites usually come")
    parser.add_argument("--canvas", choices=("grow", "keep"), default="grow",
                        help="with --cropped: the canvas the command line gives (grow: room to move; keep: the "
                             "cropped size)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the target machine has 2 cores)")
    parser.add_argument("--json", help="also write every clip's scores to this file")
    return parser


def time_clip(bundle, size: int, repeats: int = 3) -> float:
    """Median seconds to animate a held-out sprite at ``size`` x ``size`` (16 frames, the model's defaults)."""
    example = make_example(7, "heldout", 16, size, action="jump", amplitude=0.7)
    image = reference_rgba(example)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        animate(bundle, image, example["prompt"], strength=0.7, seed=0)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def field_settings(parser: argparse.ArgumentParser, args) -> dict:
    """The motion-field settings ``--field`` gives (only with ``--ground-truth``: a model has its own field)."""
    if not args.ground_truth:
        parser.error("--field scores the training targets through another field: add --ground-truth")
    try:
        return settings_from_json(args.field, '{"grid": 32, "smoothing": 0}', section="field")
    except ValueError as err:
        parser.error(f"--field {err}")


@torch.no_grad()
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    levels = tuple(float(v) for v in args.levels.split(","))
    actions = [a.strip().replace(" ", "_") for a in args.actions.split(",")] if args.actions else None
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)  # before minutes of scoring, not after
    try:
        benchmark_jobs(actions)
    except ValueError as err:
        parser.error(str(err))
    if args.cropped and args.ground_truth:
        parser.error("--ground-truth scores the drawn canvas: leave out --cropped")
    field = {} if args.field is None else field_settings(parser, args)
    bundle = load_builtin(args.model)  # with --ground-truth only its motion-field codec is used
    if field:
        bundle.codec = MotionFieldCodec(FieldConfig(**{**bundle.codec.config.to_dict(), **field}))

    def progress(i, total, score):
        print(f"\r{i}/{total} {score.action:15} recognised={int(score.recognised)} {score.seconds:.1f}s", end="",
              file=sys.stderr, flush=True)

    scores = evaluate(bundle, actions=actions, characters=args.characters, levels=levels, seed=args.seed,
                      steps=args.steps, cfg_scale=args.cfg, ground_truth=args.ground_truth, cropped=args.cropped,
                      canvas=args.canvas, progress=progress)
    print(file=sys.stderr)
    summary = summarise(scores)
    header = f"{'action':16} {'clips':>5} {'recog.':>7} {'PSNR0':>7} {'drift':>6} {'Spearman':>8} {'seam':>6} {'torn':>6} {'s/clip':>7}"
    print(header)
    print("-" * len(header))

    def row(name, r):
        print(f"{name:16} {r['clips']:>5} {r['recognised'] * 100:>6.0f}% {r['psnr']:>7.1f} {r['drift']:>6.3f} "
              f"{r['spearman']:>8.2f} {r['seam']:>6.2f} {r['torn'] * 100:>5.1f}% {r['seconds']:>7.2f}")

    for name, r in summary["actions"].items():
        row(name, r)
    print("-" * len(header))
    row("overall", summary["overall"])

    def share(held_out):
        clips = sum(1 for s in scores if not s.seamless and s.phrase_heldout == held_out)
        rate = summary["overall"]["recognised_new_phrasing" if held_out else "recognised_seen_phrasing"]
        return f"{rate * 100:.0f}% of {clips} clips" if clips else "no clips"

    print(f"recognised with training phrasings: {share(False)}; with held-out phrasings: {share(True)}")
    if not args.ground_truth:
        for size in (64, 256):
            print(f"seconds per clip at {size}x{size} (16 frames, {args.threads} threads): {time_clip(bundle, size):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "clips": as_dicts(scores)}, indent=1))
    return 0
