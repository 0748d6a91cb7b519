"""Analytic measuring stick for character clips on a flat key colour.

Everything works on uint8 frames ``[T,H,W,3]`` plus the background key
colour (the silhouette is every pixel far enough from the key), so it
measures generated clips and ground-truth procedural clips alike:

* :func:`silhouette`, :func:`trajectory` (from :mod:`.clip_features`, where
  the per-clip features the signatures read live): per-frame masks and the
  motion of the character.
* :func:`recognise_action`: does the clip show the requested action? Each
  action has a signature (see :data:`CHECKS`): up-then-down of the feet for
  a jump, several hops for a bounce, travel left/right (speed separates walk
  from run), side-to-side / up-and-down motion of the head alone for
  shake head / nod, change on one side of a still body for wave, a thin
  paper-turn for spin, height oscillating against width for squash and
  stretch, change confined to the top for ears, to two eye blobs for blink
  or one mouth blob for talk, small whole-body motion for idle, a tip-over
  that ends low and wide for fall, monotonic area change for grow/shrink.
  Every signature also demands the absence of what would make it another
  action (a jump clip is no idle clip; a static clip is no action).
  :func:`explain_action` returns the measured evidence.
* :func:`classify_action`: the best-matching action name, or None.
* :func:`motion_amplitude`, :func:`frame0_psnr`, :func:`identity_drift`,
  :func:`seam_ratio`, :func:`fragmentation`, :func:`spearman`: scalar metrics
  for benchmarks.

Units: vertical quantities are in frame-0 character heights, widths in
frame-0 widths, travel in canvas widths, head motion in pixels.
"""

from __future__ import annotations

import numpy as np

from .clip_features import CHANGE_TOL, DEFAULT_TOL, Clip, _as_frames, components, count_runs, silhouette, spearman
from .clip_features import trajectory as trajectory  # measured here too (see the notes above)

# ---------------------------------------------------------------------------
# Action signatures. Each returns named conditions; the action is recognised
# when all hold.

STILL_RISE = 0.06  # feet lift below this (character heights) = feet on the ground
STILL_TRAVEL = 0.035  # travel below this (canvas widths) = staying in place
WALK_MIN, RUN_MIN = 0.06, 0.21  # travel (canvas widths) of a walk / a run over the clip


def _planted(c: Clip) -> dict:
    return {"feet_on_ground": np.abs(c.rise).max() < STILL_RISE,
            "stays_in_place": np.abs(c.base_travel).max() < STILL_TRAVEL}


def _jump(c: Clip, hops: tuple[int, int]) -> dict:
    return {
        "feet_leave_ground": c.rise.max() > 0.1,
        "hop_count": hops[0] <= count_runs(c.rise, 0.06, 0.02) <= hops[1],
        "lands_again": abs(c.rise[-1]) < 0.06 and c.rise[0] == 0,
        "stays_in_place": np.abs(c.travel).max() < 0.06,
        "keeps_size": c.ar.max() < 1.35 and c.ar.min() > 0.65,
    }


def _locomotion(c: Clip, direction: int, run: bool) -> dict:
    d = c.travel[-1] * direction
    t = np.arange(c.T)
    progress = np.corrcoef(t, c.travel * direction)[0, 1] if np.ptp(c.travel) > 0 else 0.0
    inside = (c.s["x0"] > 0) & (c.s["x1"] < c.W - 1)  # frames cut by the canvas edge lose area
    if inside.sum() >= 2:
        keeps_size = np.all((c.ar[inside] > 0.8) & (c.ar[inside] < 1.2))  # no edge-on turn, no smear
    else:  # (nearly) every frame is cut by the edge: of the size, only the height survives the cut
        keeps_size = np.all((c.hr > 0.8) & (c.hr < 1.2))
    return {
        "moves_that_way": d > (RUN_MIN if run else WALK_MIN),
        "at_that_speed": run or d < RUN_MIN,
        "steadily": progress > 0.9,
        "upright": c.hr[-1] > 0.8 and c.ar.max() < 1.4,
        "keeps_size": bool(keeps_size),
    }


def _head_move(c: Clip, axis: int) -> dict:
    shift = c.head_shift
    main, other = shift[:, axis], shift[:, 1 - axis]
    if axis == 0:  # shake: both ways, several times
        swings = count_runs(main, 0.9, 0.4) + count_runs(-main, 0.9, 0.4)
        moves = {"head_moves_sideways": main.max() >= 1 and main.min() <= -1, "repeatedly": swings >= 3}
    else:  # nod: down (dy > 0) at least twice
        moves = {"head_moves_down": main.max() >= 1, "repeatedly": count_runs(main, 0.9, 0.4) >= 2,
                 "never_up": main.min() >= -1}
    return {
        **moves,
        "mostly_that_axis": np.abs(other).max() <= max(1.0, 0.5 * np.abs(main).max()),
        "body_still": c.lower_iou > 0.8,
        "change_at_top": c.region_fraction(0.0, 0.6) > 0.5,
        "keeps_shape": (c.hr.min() > 0.7 and c.hr.max() < 1.3) if axis == 0 else c.lower_width_change <= max(2.0, 0.15 * c.w0),
        **_planted(c),
    }


def _wave(c: Clip) -> dict:
    x0, x1, y0, y1 = c.box0
    cx = c.s["cx"][0]
    cm = c.change_map
    xs = np.arange(c.W)
    left, right = cm[:, xs < cx].sum(), cm[:, xs >= cx].sum()
    total = left + right
    core = c.masks[0].copy()
    core[:, (xs < cx - 0.2 * c.w0) | (xs > cx + 0.2 * c.w0)] = False  # central column of the body
    kept = (c.masks & core).sum(axis=(1, 2)) / max(core.sum(), 1)
    side = np.where(xs < cx, 1.0, 0.0) if left > right else np.where(xs >= cx, 1.0, 0.0)
    per_frame = (np.diff(c.frames.astype(np.int16), axis=0).__abs__().max(-1) > CHANGE_TOL)
    side_motion = (per_frame * side).sum(axis=(1, 2))
    return {
        "changes": total > 0.02 * c.a0 and c.xor.max() > max(3.0, 0.02 * c.a0),
        "one_sided": c.one_sided > 0.75,
        "body_still": kept.min() > 0.9,
        "keeps_moving": (side_motion > 0).mean() > 0.6,
        **_planted(c),
    }


def _spin(c: Clip) -> dict:
    return {
        "turns_edge_on": c.wr.min() < 0.5,
        "turns_back": c.wr[-1] > 0.75,
        "keeps_height": c.hr[c.wr > 0.35].min() > 0.75,
        "stays_in_place": np.abs(c.travel).max() < 0.06,
    }


def _squash(c: Clip) -> dict:
    h, w = c.hr, c.wr
    coupled = np.corrcoef(h, w)[0, 1] if np.ptp(h) > 0 and np.ptp(w) > 0 else 0.0
    return {
        "stretches": h.max() > 1.06,
        "squashes": h.min() < 0.94,
        "repeatedly": count_runs(h - 1, 0.05, 0.02) >= 2 and count_runs(1 - h, 0.05, 0.02) >= 2,
        "width_opposes_height": coupled < -0.3,
        "around_rest": abs(h.mean() - 1) < 0.06,
        **_planted(c),
    }


def _ears_like(c: Clip) -> bool:
    """Change confined to the top, where parts rotate (pixels gained and lost
    together) or move at the sides, rather than the whole top rising/sinking."""
    if c.region_fraction(0.0, 0.32) <= 0.75:
        return False
    return c.top_pulses >= 3 or (c.top_balance >= 0.24 and c.top_centre_share <= 0.2)


def _ears(c: Clip) -> dict:
    return {
        "changes": c.change.any(axis=0).sum() >= 3,
        "only_ears_move": _ears_like(c),
        "head_still": np.abs(c.head_shift).max() <= 1,
        "silhouette_moves": c.xor.max() >= 2,
        "body_still": c.lower_iou > 0.97,
        **_planted(c),
    }


def _column_clusters(change_map: np.ndarray, floor: float = 0.05, gap: int = 1) -> list[tuple[float, float, float]]:
    """Groups of columns holding change, split where more than ``gap`` empty
    columns separate them: (mass, x centre, y centre) each."""
    ever = change_map > floor
    xs = np.nonzero(ever.any(axis=0))[0]
    if xs.size == 0:
        return []
    groups = np.split(xs, np.nonzero(np.diff(xs) > gap + 1)[0] + 1)
    ys = np.arange(ever.shape[0])
    clusters = []
    for cols in groups:
        part = ever[:, cols[0]:cols[-1] + 1]
        mass = float(part.sum())
        yc = float((part.sum(axis=1) * ys).sum() / mass)
        xc = float((part.sum(axis=0) * np.arange(cols[0], cols[-1] + 1)).sum() / mass)
        clusters.append((mass, xc, yc))
    return clusters


def _face(c: Clip, eyes: bool) -> dict:
    """Blink: the change sits in two side-by-side groups (the eyes); talk: in
    one (the mouth). Both stay inside a still silhouette."""
    area = (c.change_map > 0.05).sum()
    clusters = _column_clusters(c.change_map)
    total = sum(m for m, _, _ in clusters) or 1.0
    big = sorted((cl for cl in clusters if cl[0] >= 0.1 * total), reverse=True)
    face = {
        "changes": area >= 2,
        "small": area < 0.2 * c.a0,
        "inside_silhouette": c.xor.max() <= max(2.0, 0.01 * c.a0),
        **_planted(c),
    }
    pair = (len(big) == 2 and big[0][0] / big[1][0] < 5.0 and abs(big[0][2] - big[1][2]) < 0.15 * c.h0
            and (big[0][0] + big[1][0]) > 0.8 * total)
    if eyes:
        face["two_eyes"] = bool(pair)
    else:
        face["one_mouth"] = len(big) >= 1 and big[0][0] >= 0.7 * total and not pair
    return face


def _idle(c: Clip) -> dict:
    xor = (c.masks ^ c.masks[0]).sum(axis=(1, 2))
    return {
        "moves_a_little": xor.max() >= 2,
        "small_motion": (c.iou.min() > 0.8 and np.abs(c.s["height"] - c.h0).max() <= max(3.0, 0.08 * c.h0)
                         and np.abs(c.s["width"] - c.w0).max() <= max(3.0, 0.12 * c.w0)),
        "not_only_ears": not _ears_like(c),
        "not_one_arm": c.one_sided < 0.75,
        "head_not_nodding": count_runs(c.head_shift[:, 1], 0.9, 0.4) <= 1 and np.abs(c.head_shift[:, 0]).max() <= 1,
        **_planted(c),
    }


def _fall(c: Clip) -> dict:
    lateral = (c.s["cx"][-1] - c.s["cx"][0]) / c.h0
    return {
        "top_drops": -c.top[-1] > 0.2,
        "ends_low": c.hr[-1] < 0.85,
        "tips_sideways": abs(lateral) > 0.15,
        "stays_down": c.iou[-1] < 0.7 and -c.top[-3:].max() > 0.15,
    }


def _resize(c: Clip, grow: bool) -> dict:
    t = np.arange(c.T)
    a = c.ar if grow else 1.0 / np.maximum(c.ar, 1e-6)
    trend = spearman(t, a) if np.ptp(a) > 0 else 0.0
    return {
        "area_changes": a[-1] > 1.2,
        "steadily": trend > 0.9,
        "both_axes": (c.hr[-1] > 1.08 and c.wr[-1] > 1.04) if grow else (c.hr[-1] < 0.93 and c.wr[-1] < 0.97),
        "stays_in_place": np.abs(c.base_travel).max() < 0.05,
    }


#: action name -> signature check
CHECKS = {
    "jump": lambda c: _jump(c, (1, 1)),
    "bounce": lambda c: _jump(c, (2, 4)),
    "walk_left": lambda c: _locomotion(c, -1, False),
    "walk_right": lambda c: _locomotion(c, 1, False),
    "run_left": lambda c: _locomotion(c, -1, True),
    "run_right": lambda c: _locomotion(c, 1, True),
    "shake_head": lambda c: _head_move(c, 0),
    "nod": lambda c: _head_move(c, 1),
    "wave": _wave,
    "spin": _spin,
    "squash_stretch": _squash,
    "wiggle_ears": _ears,
    "talk": lambda c: _face(c, eyes=False),
    "blink": lambda c: _face(c, eyes=True),
    "idle": _idle,
    "fall": _fall,
    "grow": lambda c: _resize(c, True),
    "shrink": lambda c: _resize(c, False),
}


def _clip(frames, key_color, tol) -> Clip:
    return frames if isinstance(frames, Clip) else Clip(frames, key_color, tol)


def explain_action(frames, key_color, action: str, tol: float = DEFAULT_TOL) -> dict[str, bool]:
    """The named conditions of ``action``'s signature and whether each holds."""
    if action not in CHECKS:
        raise ValueError(f"unknown action {action!r}; choose one of: {', '.join(CHECKS)}")
    return {k: bool(v) for k, v in CHECKS[action](_clip(frames, key_color, tol)).items()}


def recognise_action(frames, key_color, action: str, tol: float = DEFAULT_TOL) -> bool:
    """True when the clip shows ``action`` (all conditions of its signature hold)."""
    return all(explain_action(frames, key_color, action, tol).values())


def classify_action(frames, key_color, tol: float = DEFAULT_TOL) -> str | None:
    """The action whose signature the clip matches, or None if none or
    several unrelated ones match."""
    c = _clip(frames, key_color, tol)
    hits = [name for name in CHECKS if all(CHECKS[name](c).values())]
    return hits[0] if len(hits) == 1 else None


# ---------------------------------------------------------------------------
# Scalar metrics


DEVIATION_WEIGHT = 8.0  # deviation is ~5-20x smaller than the path; this balances the two


def motion_amplitude(frames, key_color, tol: float = DEFAULT_TOL, action: str | None = None) -> float:
    """How much the clip moves (a scalar that grows with the motion size).

    Without ``action``: in units of the frame-0 character area, the path
    length of the colour change between consecutive frames plus
    :data:`DEVIATION_WEIGHT` times the mean change from frame 0. The first
    grows with the size and speed of any motion (travel, hops, limbs), the
    second with how far and how long the character departs from its first
    frame (a deeper, longer blink), so the sum keeps growing where one of
    them is quantised away (small pixel-art faces). Compare it across
    strengths for the same character and action.

    With ``action``: the size of that action's own motion in units that do
    not depend on the character (:data:`AMPLITUDES`: hop height in character
    heights, travel in canvas widths, head displacement, stretch, rotation,
    scale...), so clips of different characters compare too.
    """
    c = _clip(frames, key_color, tol)
    if action is not None:
        if action not in AMPLITUDES:
            raise ValueError(f"unknown action {action!r}; choose one of: {', '.join(AMPLITUDES)}")
        return float(AMPLITUDES[action](c))
    path, deviation = c.motion
    return path + DEVIATION_WEIGHT * deviation



def _top_profile_drop(c: Clip) -> np.ndarray:
    """Mean downward shift (character heights) of the top edge over the
    columns of the frame-0 head, per frame (sub-pixel by averaging columns)."""
    x0, x1, y0, y1 = c.box0
    cols = c.masks[:, :, x0:x1 + 1]
    has = cols.any(axis=1)
    first = np.where(has, cols.argmax(axis=1), c.H).astype(np.float64)
    keep = has[0] & (first[0] <= y0 + 0.45 * (y1 - y0 + 1))
    if not keep.any():
        return np.zeros(c.T)
    return (first[:, keep] - first[0, keep]).mean(axis=1) / c.h0


def _band_centroid_x(c: Clip, frac: float = 0.45) -> np.ndarray:
    x0, x1, y0, y1 = c.box0
    m = c.masks[:, y0:int(y0 + frac * (y1 - y0 + 1))]
    n = np.maximum(m.sum(axis=(1, 2)), 1)
    return (m.sum(axis=1) * np.arange(c.W)).sum(axis=1) / n


def _side_path(c: Clip) -> float:
    """Silhouette change between consecutive frames on the side that changes
    most, relative to the largest area it gains (how far a limb swings,
    measured in its own size)."""
    cx = c.s["cx"][0]
    xs = np.arange(c.W)
    cm = c.change_map
    side = (xs < cx) if cm[:, xs < cx].sum() > cm[:, xs >= cx].sum() else (xs >= cx)
    m = c.masks[:, :, side]
    steps = (m[1:] ^ m[:-1]).sum(axis=(1, 2))
    gained = (m & ~m[0]).sum(axis=(1, 2)).max()
    return float(steps.sum() / max(gained, 1))


def _face_change(c: Clip) -> float:
    """Pixel-frames of change vs frame 0 in character-height^2 units (mouth
    or eyes: how wide and how long they open or close)."""
    return float(c.change.sum() / c.T / (c.h0 ** 2))


#: action -> its own motion size, in character-independent units
AMPLITUDES = {
    "jump": lambda c: c.rise.max(),
    "bounce": lambda c: c.rise.max(),
    "walk_left": lambda c: -c.travel[-1],
    "walk_right": lambda c: c.travel[-1],
    "run_left": lambda c: -c.travel[-1],
    "run_right": lambda c: c.travel[-1],
    "shake_head": lambda c: float(np.ptp(_band_centroid_x(c)) / c.h0),
    "nod": lambda c: float(_top_profile_drop(c).max()),
    "wave": _side_path,
    "spin": lambda c: float(c.rise[c.wr > 0.35].max()),  # the hop (edge-on frames lose their feet)
    "squash_stretch": lambda c: float(np.ptp(c.hr) / 2),
    "wiggle_ears": lambda c: float((c.masks[1:] ^ c.masks[:-1]).sum() / c.h0 ** 2),
    "talk": _face_change,
    "blink": _face_change,
    "idle": lambda c: float(np.ptp(_top_profile_drop(c))),
    "fall": lambda c: float(abs(c.s["angle"][-1] - c.s["angle"][0]) + np.ptp(c.top[-6:])),
    "grow": lambda c: float(np.sqrt(c.ar[-1]) - 1),
    "shrink": lambda c: float(1 - np.sqrt(c.ar[-1])),
}


def frame0_psnr(frames, reference, key_color=None) -> float:
    """PSNR (dB) of frame 0 against the reference image (RGB uint8, or RGBA
    composited on ``key_color``). inf when identical."""
    f0 = _as_frames(frames)[0].astype(np.float64)
    ref = np.asarray(reference)
    if ref.ndim == 4:
        ref = ref[0]
    if ref.shape[-1] == 4:
        if key_color is None:
            raise ValueError("an RGBA reference needs key_color to be composited on")
        a = ref[..., 3:4].astype(np.float64) / 255.0
        ref = ref[..., :3] * a + np.asarray(key_color, dtype=np.float64)[:3] * (1.0 - a)
    ref = np.asarray(ref, dtype=np.float64)[..., :3]
    if ref.shape != f0.shape:
        raise ValueError(f"reference is {ref.shape[:2]} but frames are {f0.shape[:2]}; resize one to match")
    mse = np.mean((f0 - np.round(ref)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _histograms(frames, masks, bins: int) -> np.ndarray:
    q = (frames.astype(np.int32) * bins) // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    out = np.zeros((frames.shape[0], bins**3))
    for t in range(frames.shape[0]):
        counts = np.bincount(idx[t][masks[t]], minlength=bins**3).astype(np.float64)
        out[t] = counts / max(counts.sum(), 1.0)
    return out


def identity_drift(frames, key_color, tol: float = DEFAULT_TOL, bins: int = 8) -> float:
    """Mean colour-histogram distance of the character's pixels from frame 0
    (total variation of ``bins**3`` RGB histograms, 0 = same palette, 1 = no
    colour in common), averaged over frames 1..T-1. Motion moves pixels but
    keeps the palette, so this stays low unless the colours drift."""
    frames = _as_frames(frames)
    masks = silhouette(frames, key_color, tol)
    # Drop the anti-aliased rim, where colours blend with the key.
    inner = masks.copy()
    inner[:, 1:, :] &= masks[:, :-1, :]
    inner[:, :-1, :] &= masks[:, 1:, :]
    inner[:, :, 1:] &= masks[:, :, :-1]
    inner[:, :, :-1] &= masks[:, :, 1:]
    hist = _histograms(frames, inner, bins)
    if frames.shape[0] < 2:
        return 0.0
    return float((0.5 * np.abs(hist[1:] - hist[0]).sum(axis=1)).mean())


def largest_piece_share(mask: np.ndarray) -> float:
    """Share of a 2-D boolean mask's pixels in its largest 8-connected piece (1.0 for an empty mask)."""
    total = int(np.count_nonzero(mask))
    return max((len(piece) for piece in components(mask, connectivity=8)), default=0) / total if total else 1.0


def fragmentation(frames, key_color, tol: float = DEFAULT_TOL) -> float:
    """How torn the character gets: the largest share of its pixels that a frame has outside its biggest
    8-connected piece, beyond what frame 0 has (0 = never torn; 0.05 = a frame with 5 % of the character in
    loose pieces). A warp that pulls neighbouring cells apart leaves such pieces."""
    masks = silhouette(_as_frames(frames), key_color, tol)
    loose = [1.0 - largest_piece_share(m) for m in masks]
    return float(max(0.0, max(loose[1:], default=loose[0]) - loose[0]))


def seam_ratio(frames) -> float:
    """Change from the last frame back to the first, over the median change
    between consecutive frames (about 1 for a seamless loop; inf for a
    static clip that jumps at the seam)."""
    f = _as_frames(frames).astype(np.float32)
    steps = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    seam = float(np.abs(f[0] - f[-1]).mean())
    med = float(np.median(steps))
    if med == 0:
        return 0.0 if seam == 0 else float("inf")
    return seam / med
