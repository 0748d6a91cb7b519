"""Validation of the action tracker (``metrics``) on ground-truth procedural clips.

Used by ``tests/test_training_data.py`` (small sample) and
``python -m training validate-tracker`` (large sample).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import metrics as M
from .actions import ACTION_NAMES
from .dataset import make_example

#: Motion strengths the tracker is validated on (weaker motions are too
#: small to recognise reliably from a 64x64 silhouette).
AMPLITUDE_RANGE = (0.3, 1.0)


def confusion(n_per_action: int, seed: int = 0, split: str = "train", amplitude_range=AMPLITUDE_RANGE,
              num_frames: int = 16, size: int = 64, actions=ACTION_NAMES, with_static: bool = True) -> dict:
    """Run every action's check on ``n_per_action`` true clips of every action.

    Returns ``{"accept": {true: {checked: rate}}, "static": {checked: rate},
    "failures": {true: [(seed, amplitude, failed conditions)]}}``.
    """
    rng = np.random.default_rng(seed)
    accept = {a: {b: 0 for b in ACTION_NAMES} for a in actions}
    static = {b: 0 for b in ACTION_NAMES}
    failures = {a: [] for a in actions}
    n_static = 0
    for a in actions:
        for i in range(n_per_action):
            ex_seed = int(rng.integers(0, 2**31))
            amp = float(rng.uniform(*amplitude_range))
            ex = make_example(ex_seed, split, num_frames, size, action=a, amplitude=amp)
            clip = M.Clip(ex["frames"], ex["key_color"])
            for b in ACTION_NAMES:
                conditions = M.CHECKS[b](clip)
                ok = all(conditions.values())
                accept[a][b] += ok
                if b == a and not ok:
                    failures[a].append((ex_seed, round(amp, 3), [k for k, v in conditions.items() if not v]))
            if with_static and i % 3 == 0:  # a frozen copy of the first frame
                frozen = np.repeat(ex["frames"][:1], num_frames, axis=0)
                still = M.Clip(frozen, ex["key_color"])
                n_static += 1
                for b in ACTION_NAMES:
                    static[b] += all(M.CHECKS[b](still).values())
    return {
        "accept": {a: {b: v / n_per_action for b, v in row.items()} for a, row in accept.items()},
        "static": {b: v / max(n_static, 1) for b, v in static.items()},
        "failures": failures,
    }


def amplitude_correlation(n_characters: int, seed: int = 0, levels=(0.3, 0.44, 0.58, 0.72, 0.86, 1.0),
                          split: str = "train", actions=ACTION_NAMES, num_frames: int = 16, size: int = 64) -> dict:
    """Spearman between requested and measured motion amplitude per action.

    For each of ``n_characters`` examples the same character/key/side is
    rendered at every amplitude level. Returns per action ``{"per_character":
    mean Spearman over characters (generic motion_amplitude), "worst": the
    lowest of those, "pooled": Spearman over all clips (generic),
    "pooled_action": Spearman over all clips of motion_amplitude(...,
    action=)}``.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for a in actions:
        per_char, xs, ys, ya = [], [], [], []
        for _ in range(n_characters):
            ex_seed = int(rng.integers(0, 2**31))
            measured = []
            for amp in levels:
                ex = make_example(ex_seed, split, num_frames, size, action=a, amplitude=amp)
                clip = M.Clip(ex["frames"], ex["key_color"])
                measured.append(M.motion_amplitude(clip, None))
                ya.append(M.motion_amplitude(clip, None, action=a))
            per_char.append(M.spearman(levels, measured))
            xs.extend(levels)
            ys.extend(measured)
        out[a] = {"per_character": float(np.nanmean(per_char)), "worst": float(np.nanmin(per_char)),
                  "pooled": M.spearman(xs, ys), "pooled_action": M.spearman(xs, ya)}
    return out


COMMAND_HELP = """Validate the analytic action tracker on ground-truth procedural clips.

    python -m training validate-tracker [--n 60] [--seed 0] [--split train]

Prints, for every true action, how often its own check accepts the clip
(should be >= 97 %), how often every other check accepts it (false accepts;
should be <= 10 %), how often each check accepts a frozen clip, and the
Spearman correlation between requested and measured motion amplitude.
Amplitudes are drawn from ``validate.AMPLITUDE_RANGE``.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training validate-tracker", description=COMMAND_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="clips per action")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=("train", "heldout"))
    ap.add_argument("--characters", type=int, default=12, help="characters per action for the amplitude sweep")
    ap.add_argument("--failures", action="store_true", help="list the failed conditions of missed clips")
    args = ap.parse_args(argv)
    if args.n < 1 or args.characters < 1:
        ap.error("--n and --characters take at least 1")
    t0 = time.perf_counter()
    res = confusion(args.n, args.seed, args.split)
    acc = res["accept"]
    print(f"tracker validation: {args.n} clips per action, split={args.split}, "
          f"amplitude in {AMPLITUDE_RANGE}, {time.perf_counter() - t0:.0f} s")
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
    corr = amplitude_correlation(args.characters, args.seed, split=args.split)
    print(f"\nmotion_amplitude vs requested strength ({args.characters} characters x 6 levels, "
          f"{time.perf_counter() - t0:.0f} s)")
    print("per-char: mean Spearman over characters (each swept over the 6 levels), generic measure;")
    print("pooled: all clips together, generic measure; pooled(action): all clips, motion_amplitude(action=)")
    print(f"{'action':16s} {'per-char':>9s} {'worst':>7s} {'pooled':>7s} {'pooled(action)':>15s}")
    for a, v in corr.items():
        print(f"{a:16s} {v['per_character']:9.3f} {v['worst']:7.3f} {v['pooled']:7.3f} {v['pooled_action']:15.3f}")
    return 0

