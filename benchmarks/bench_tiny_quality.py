"""Quality of the built-in model on held-out sprites (characters and phrasings training never saw).

Prints per action and overall: recognised (share of clips whose motion the
analytic tracker recognises as the requested action), frame-0 PSNR against the
reference (dB, capped at 100), identity drift (palette distance, 0 = same
colours), Spearman correlation between requested motion strength and measured
amplitude, median seam ratio of seamless loops (last->first change over the
median frame-to-frame change) and seconds per clip (16 frames, 64x64). Half of
the prompts use a held-out phrasing (words like "pirouettes" or "dwindles" that
no training prompt has); the last line splits the recognition rate by that.

    python benchmarks/bench_tiny_quality.py                    # shipped model: 227 clips, ~12 min on 2 cores
    python benchmarks/bench_tiny_quality.py --model runs/x/charmotion_tiny.safetensors --characters 1
    python benchmarks/bench_tiny_quality.py --ground-truth     # the drawn clips through the codec: the ceiling

Four characters per action by default: with two, the same model scored 31 %
and 19 % recognised on two disjoint pairs of characters, too coarse to tell
two candidates apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _pack import load_pack  # benchmarks/ is on sys.path when run as a script


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundle file (default: the shipped built-in model)")
    parser.add_argument("--characters", type=int, default=4, help="held-out characters per action")
    parser.add_argument("--levels", default="0.4,0.7,1.0", help="motion strengths (0..1 of the model's range)")
    parser.add_argument("--actions", default=None, help="comma-separated subset of actions")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--cfg", type=float, default=None)
    parser.add_argument("--denoise", type=float, default=None)
    parser.add_argument("--shift", type=float, default=None,
                        help="sampling timestep shift toward high noise (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--palette", type=int, default=None,
                        help="palette lock: redraw clips in up to N reference colours (0 = off; default: the model's)")
    parser.add_argument("--ground-truth", action="store_true",
                        help="score the drawn clips (through the model's codec and palette lock) instead of "
                             "generated ones: what a model that drew the true motion would score")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="also write every clip's scores to this file")
    args = parser.parse_args()

    load_pack()
    import torch

    from charmotion.dit_core.tiny.bundle import load_tiny
    from charmotion.dit_core.tiny.evaluate import as_dicts, benchmark_jobs, evaluate, summarise

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    bundle = load_tiny(args.model)
    if args.shift is not None:
        from dataclasses import replace

        bundle.model.sampling_profile = replace(bundle.profile, timestep_shift=args.shift)
    levels = tuple(float(v) for v in args.levels.split(","))
    actions = args.actions.split(",") if args.actions else None
    try:
        benchmark_jobs(actions)
    except ValueError as err:
        parser.error(str(err))

    def progress(i, total, score):
        print(f"\r{i}/{total} {score.action:15} recognised={int(score.recognised)} {score.seconds:.1f}s", end="",
              file=sys.stderr, flush=True)

    scores = evaluate(bundle, actions=actions, characters=args.characters, levels=levels, seed=args.seed,
                      steps=args.steps, cfg_scale=args.cfg, denoise=args.denoise, palette=args.palette,
                      ground_truth=args.ground_truth, progress=progress)
    print(file=sys.stderr)
    summary = summarise(scores)
    header = f"{'action':16} {'clips':>5} {'recog.':>7} {'PSNR0':>7} {'drift':>6} {'Spearman':>8} {'seam':>6} {'s/clip':>7}"
    print(header)
    print("-" * len(header))

    def row(name, r):
        print(f"{name:16} {r['clips']:>5} {r['recognised'] * 100:>6.0f}% {r['psnr']:>7.1f} {r['drift']:>6.3f} "
              f"{r['spearman']:>8.2f} {r['seam']:>6.2f} {r['seconds']:>7.2f}")

    for name, r in summary["actions"].items():
        row(name, r)
    print("-" * len(header))
    row("overall", summary["overall"])

    def share(held_out):
        clips = sum(1 for s in scores if not s.seamless and s.phrase_heldout == held_out)
        rate = summary["overall"]["recognised_new_phrasing" if held_out else "recognised_seen_phrasing"]
        return f"{rate * 100:.0f}% of {clips} clips" if clips else "no clips"

    print(f"recognised with training phrasings: {share(False)}; with held-out phrasings: {share(True)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "clips": as_dicts(scores)}, indent=1))


if __name__ == "__main__":
    main()
