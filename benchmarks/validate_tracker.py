"""Validate the analytic action tracker on ground-truth procedural clips.

    python benchmarks/validate_tracker.py [--n 60] [--seed 0] [--split train]

Prints, for every true action, how often its own check accepts the clip
(should be >= 97 %), how often every other check accepts it (false accepts;
should be <= 10 %), how often each check accepts a frozen clip, and the
Spearman correlation between requested and measured motion amplitude.
Amplitudes are drawn from ``validate.AMPLITUDE_RANGE``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preview_data import load_pack  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="clips per action")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=("train", "heldout"))
    ap.add_argument("--characters", type=int, default=12, help="characters per action for the amplitude sweep")
    ap.add_argument("--failures", action="store_true", help="list the failed conditions of missed clips")
    args = ap.parse_args(argv)
    load_pack()
    from charmotion.dit_core.tiny import validate
    from charmotion.dit_core.tiny.actions import ACTION_NAMES

    t0 = time.perf_counter()
    res = validate.confusion(args.n, args.seed, args.split)
    acc = res["accept"]
    print(f"tracker validation: {args.n} clips per action, split={args.split}, "
          f"amplitude in {validate.AMPLITUDE_RANGE}, {time.perf_counter() - t0:.0f} s")
    print(f"{'true action':16s} {'accept':>7s} {'max false':>10s}  {'(worst other check)':22s} {'static':>7s}")
    worst_fa = 0.0
    for a in ACTION_NAMES:
        others = {b: v for b, v in acc[a].items() if b != a}
        b_worst = max(others, key=others.get)
        worst_fa = max(worst_fa, others[b_worst])
        print(f"{a:16s} {acc[a][a]:7.1%} {others[b_worst]:10.1%}  {b_worst:22s} {res['static'][a]:7.1%}")
    min_acc = min(acc[a][a] for a in ACTION_NAMES)
    print(f"min accept {min_acc:.1%}; max false accept {worst_fa:.1%}; "
          f"max static accept {max(res['static'].values()):.1%}")
    print("\nfalse accepts over 2 % (true -> checked: rate):")
    for a in ACTION_NAMES:
        for b, v in acc[a].items():
            if b != a and v > 0.02:
                print(f"  {a} -> {b}: {v:.1%}")
    if args.failures:
        for a, fails in res["failures"].items():
            for f in fails:
                print("  miss", a, f)
    t0 = time.perf_counter()
    corr = validate.amplitude_correlation(args.characters, args.seed, split=args.split)
    print(f"\nmotion_amplitude vs requested strength ({args.characters} characters x 6 levels, "
          f"{time.perf_counter() - t0:.0f} s)")
    print("per-char: mean Spearman over characters (each swept over the 6 levels), generic measure;")
    print("pooled: all clips together, generic measure; pooled(action): all clips, motion_amplitude(action=)")
    print(f"{'action':16s} {'per-char':>9s} {'worst':>7s} {'pooled':>7s} {'pooled(action)':>15s}")
    for a, v in corr.items():
        print(f"{a:16s} {v['per_character']:9.3f} {v['worst']:7.3f} {v['pooled']:7.3f} {v['pooled_action']:15.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
