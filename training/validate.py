"""Validation of the action tracker (``metrics``) on ground-truth procedural clips.

Used by ``tests/test_tiny_data.py`` (small sample) and
``benchmarks/validate_tracker.py`` (large sample).
"""

from __future__ import annotations

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
