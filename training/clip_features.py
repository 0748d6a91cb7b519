"""What the tracker measures of a character clip on a flat key colour, computed once per clip.

:func:`silhouette` and :func:`trajectory` give per-frame masks and the
character's motion (centroid, bounding box, area, principal axis, left/right
mass, activity in the top region); :class:`Clip` holds every feature the
action signatures of :mod:`.metrics` read, each computed on first use. The
signal helpers (:func:`count_runs`, :func:`spearman`, :func:`components`)
serve both.

Units: vertical quantities are in frame-0 character heights, widths in
frame-0 widths, travel in canvas widths, head motion in pixels.
"""


from __future__ import annotations

from functools import cached_property

import numpy as np

DEFAULT_TOL = 48  # max channel difference from the key that still counts as background
CHANGE_TOL = 48  # max channel difference between frames that counts as a change

# ---------------------------------------------------------------------------
# Basic measurements


def _as_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] < 3:
        raise ValueError(f"frames must be [T,H,W,3] uint8, got shape {frames.shape}")
    return frames[..., :3]


def silhouette(frames, key_color, tol: float = DEFAULT_TOL, fill_holes: bool = True) -> np.ndarray:
    """Bool masks [T,H,W]: pixels whose colour differs from the key by more
    than ``tol``. With ``fill_holes`` key-coloured areas enclosed by the
    character (white eyes on a white key) count as character."""
    frames = _as_frames(frames).astype(np.int16)
    key = np.asarray(key_color, dtype=np.int16)[:3]
    masks = np.abs(frames - key).max(axis=-1) > tol
    return _fill_holes(masks) if fill_holes else masks


def _fill_holes(masks: np.ndarray) -> np.ndarray:
    """Background = key-coloured pixels connected to the canvas border."""
    bg = ~masks
    reach = np.zeros_like(bg)
    reach[:, 0, :], reach[:, -1, :], reach[:, :, 0], reach[:, :, -1] = (
        bg[:, 0, :], bg[:, -1, :], bg[:, :, 0], bg[:, :, -1])
    while True:
        grown = reach.copy()
        grown[:, 1:, :] |= reach[:, :-1, :]
        grown[:, :-1, :] |= reach[:, 1:, :]
        grown[:, :, 1:] |= reach[:, :, :-1]
        grown[:, :, :-1] |= reach[:, :, 1:]
        grown &= bg
        if np.array_equal(grown, reach):
            return ~reach
        reach = grown


def _bbox_stats(masks: np.ndarray) -> dict[str, np.ndarray]:
    t, h, w = masks.shape
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    area = masks.sum(axis=(1, 2)).astype(np.float64)
    safe = np.maximum(area, 1.0)
    cx = (masks.sum(axis=1) * xs).sum(axis=1) / safe
    cy = (masks.sum(axis=2) * ys).sum(axis=1) / safe
    x0 = np.where(cols.any(1), cols.argmax(1), np.nan)
    x1 = np.where(cols.any(1), w - 1 - cols[:, ::-1].argmax(1), np.nan)
    y0 = np.where(rows.any(1), rows.argmax(1), np.nan)
    y1 = np.where(rows.any(1), h - 1 - rows[:, ::-1].argmax(1), np.nan)
    # Principal axis angle from second moments (0 = the long axis is vertical).
    mxx = (masks.sum(axis=1) * xs**2).sum(axis=1) / safe - cx**2
    myy = (masks.sum(axis=2) * ys**2).sum(axis=1) / safe - cy**2
    mxy = np.einsum("thw,h,w->t", masks.astype(np.float64), ys, xs) / safe - cx * cy
    angle = 0.5 * np.arctan2(2 * mxy, myy - mxx)
    return dict(area=area, cx=cx, cy=cy, x0=x0, x1=x1, y0=y0, y1=y1, width=x1 - x0 + 1, height=y1 - y0 + 1,
                angle=angle)


def trajectory(frames, key_color, tol: float = DEFAULT_TOL) -> dict[str, np.ndarray]:
    """Per-frame measurements of the character (arrays of length T).

    ``area``, centroid ``cx``/``cy``, bounding box ``x0 x1 y0 y1`` /
    ``width`` / ``height`` (pixels), principal-axis ``angle`` (radians),
    ``left_mass``/``right_mass`` (silhouette pixels left/right of the
    frame-0 centroid), ``top_activity`` (fraction of the top 35 % of the
    frame-0 box that differs from frame 0), ``iou`` with frame 0.
    """
    return Clip(frames, key_color, tol).track


# ---------------------------------------------------------------------------
# Signal helpers


def count_runs(signal, high: float, low: float | None = None) -> int:
    """Number of separate excursions of ``signal`` above ``high`` (an
    excursion ends when the signal drops below ``low``, default high / 2)."""
    low = high / 2 if low is None else low
    runs, inside = 0, False
    for value in np.asarray(signal, dtype=np.float64):
        if not inside and value > high:
            runs, inside = runs + 1, True
        elif inside and value < low:
            inside = False
    return runs


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); nan if undefined."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size != b.size or a.size < 2:
        raise ValueError("spearman needs two sequences of the same length >= 2")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty_like(x)
    ranks[order] = np.arange(x.size, dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for i in range(1, x.size + 1):  # average the ranks of ties
        if i == x.size or sorted_x[i] != sorted_x[start]:
            ranks[order[start:i]] = (start + i - 1) / 2.0
            start = i
    return ranks


_NEIGHBOURS = {4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
               8: tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)}


def components(mask: np.ndarray, connectivity: int = 4) -> list[np.ndarray]:
    """4- or 8-connected components of a small 2-D bool mask, as arrays of (y, x)."""
    mask = np.asarray(mask, dtype=bool)
    steps = _NEIGHBOURS[connectivity]
    seen = np.zeros_like(mask)
    out = []
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        stack, pts = [(y, x)], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            pts.append((cy, cx))
            for ny, nx in ((cy + dy, cx + dx) for dy, dx in steps):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        out.append(np.asarray(pts))
    return out


# ---------------------------------------------------------------------------
# Clip features (computed once, shared by every check)


class Clip:
    """Lazily computed features of one clip."""

    def __init__(self, frames, key_color, tol: float = DEFAULT_TOL):
        self.frames = _as_frames(frames)
        self.key = tuple(int(c) for c in np.asarray(key_color).ravel()[:3])
        self.masks = silhouette(self.frames, self.key, tol)
        self.T, self.H, self.W = self.masks.shape
        if self.masks[0].sum() < 4:
            raise ValueError("frame 0 shows no character on the key colour; check key_color (and tol)")
        s = _bbox_stats(self.masks)
        empty = s["area"] == 0
        for k in ("x0", "x1", "y0", "y1", "width", "height", "cx", "cy"):  # empty frames keep the last box
            v = s[k]
            for t in range(1, self.T):
                if empty[t] or np.isnan(v[t]):
                    v[t] = v[t - 1]
        self.s = s
        self.h0, self.w0, self.a0 = float(s["height"][0]), float(s["width"][0]), float(s["area"][0])

    # --- normalised signals
    @cached_property
    def rise(self):  # feet lift, character heights (+ up)
        return (self.s["y1"][0] - self.s["y1"]) / self.h0

    @cached_property
    def top(self):  # top edge lift, character heights (+ up)
        return (self.s["y0"][0] - self.s["y0"]) / self.h0

    @cached_property
    def hr(self):
        return self.s["height"] / self.h0

    @cached_property
    def wr(self):
        return self.s["width"] / self.w0

    @cached_property
    def ar(self):
        return self.s["area"] / self.a0

    @cached_property
    def travel(self):
        """Horizontal travel in canvas widths. When the character leaves the
        canvas the centroid lags, so the edge that trails the motion is used."""
        dc = self.s["cx"] - self.s["cx"][0]
        end = dc[-1]
        edge = (self.s["x1"] - self.s["x1"][0]) if end < 0 else (self.s["x0"] - self.s["x0"][0])
        clipped = (self.s["x0"] <= 0) | (self.s["x1"] >= self.W - 1)
        return np.where(clipped & (np.abs(edge) > np.abs(dc)), edge, dc) / self.W

    @cached_property
    def lower_width_change(self):
        """Largest change (pixels) of the width of the lower 35 % of the frame-0 box."""
        x0, x1, y0, y1 = self.box0
        cols = self.masks[:, int(y0 + 0.65 * (y1 - y0 + 1)):, :].any(axis=1)
        width = np.where(cols.any(1), self.W - cols[:, ::-1].argmax(1) - cols.argmax(1), 0)
        return float(np.abs(width - width[0]).max())

    @cached_property
    def base_travel(self):
        """Horizontal travel (canvas widths) of the lower 45 % of the frame-0
        box: where the feet are, unaffected by head and arm motion."""
        x0, x1, y0, y1 = self.box0
        m = self.masks[:, int(y0 + 0.55 * (y1 - y0 + 1)):, :]
        n = m.sum(axis=(1, 2))
        cx = (m.sum(axis=1) * np.arange(self.W)).sum(axis=1) / np.maximum(n, 1)
        cx = np.where(n > 0, cx, cx[0])
        return (cx - cx[0]) / self.W

    @cached_property
    def xor(self):
        """Silhouette pixels that differ from frame 0, per frame."""
        return (self.masks ^ self.masks[0]).sum(axis=(1, 2))

    @cached_property
    def top_centre_share(self):
        """Share of the change in the top 32 % of the frame-0 box that lies in
        its central columns (small when only ears on both sides move)."""
        x0, x1, y0, y1 = self.box0
        band = self.change_map[y0:int(round(y0 + 0.32 * (y1 - y0 + 1)))]
        total = band.sum()
        if total <= 0:
            return 0.0
        cx = self.s["cx"][0]
        xs = np.arange(self.W)
        return float(band[:, np.abs(xs - cx) <= 0.15 * self.w0].sum() / total)

    @cached_property
    def top_balance(self):
        """In the top 32 % of the frame-0 box: how evenly the silhouette gains
        and loses pixels within a frame (about 1 when parts rotate, such as
        ears; about 0 when the whole top rises or sinks, as in breathing).
        Averaged over frames weighted by their change."""
        x0, x1, y0, y1 = self.box0
        band = slice(y0, int(round(y0 + 0.32 * (y1 - y0 + 1))))
        m, m0 = self.masks[:, band], self.masks[0, band]
        gained = (m & ~m0).sum(axis=(1, 2)).astype(np.float64)
        lost = (m0 & ~m).sum(axis=(1, 2)).astype(np.float64)
        big = np.maximum(gained, lost)
        if big.sum() == 0:
            return 0.0
        return float((np.minimum(gained, lost)).sum() / big.sum())

    @cached_property
    def top_pulses(self):
        """How many times the silhouette change in the top 32 % of the
        frame-0 box swells and subsides (1-2 for one breath, 6 for three
        flaps of the ears)."""
        x0, x1, y0, y1 = self.box0
        band = slice(y0, int(round(y0 + 0.32 * (y1 - y0 + 1))))
        xor = (self.masks[:, band] ^ self.masks[0, band]).sum(axis=(1, 2)).astype(np.float64)
        if xor.max() <= 0:
            return 0
        return count_runs(xor / xor.max(), 0.6, 0.45)

    @cached_property
    def one_sided(self):
        """Largest share of the change (vs frame 0) on one side of the frame-0 centroid."""
        cm = self.change_map
        cx = self.s["cx"][0]
        xs = np.arange(self.W)
        left, right = cm[:, xs < cx].sum(), cm[:, xs >= cx].sum()
        return float(max(left, right) / (left + right)) if left + right > 0 else 0.0

    @cached_property
    def iou(self):
        m0 = self.masks[0]
        inter = (self.masks & m0).sum(axis=(1, 2))
        union = (self.masks | m0).sum(axis=(1, 2))
        return inter / np.maximum(union, 1)

    @cached_property
    def change(self):
        """Bool [T,H,W]: pixels that differ noticeably from frame 0."""
        f = self.frames.astype(np.int16)
        return np.abs(f - f[0]).max(axis=-1) > CHANGE_TOL

    @cached_property
    def change_map(self):
        """Fraction of frames in which each pixel differs from frame 0."""
        return self.change.mean(axis=0)

    @cached_property
    def box0(self):
        s = self.s
        return int(s["x0"][0]), int(s["x1"][0]), int(s["y0"][0]), int(s["y1"][0])

    @cached_property
    def lower_iou(self):
        """Min IoU with frame 0 of the lower 35 % of the character (is the body still?)."""
        x0, x1, y0, y1 = self.box0
        cut = int(y0 + 0.65 * (y1 - y0 + 1))
        m = self.masks[:, cut:, :]
        inter = (m & m[0]).sum(axis=(1, 2))
        union = (m | m[0]).sum(axis=(1, 2))
        return float((inter / np.maximum(union, 1)).min())

    def region_fraction(self, y_from: float, y_to: float) -> float:
        """Share of all change (vs frame 0) between these heights of the frame-0 box (0 = top)."""
        x0, x1, y0, y1 = self.box0
        h = y1 - y0 + 1
        cm = self.change_map
        total = cm.sum()
        if total <= 0:
            return 0.0
        a, b = int(round(y0 + y_from * h)), int(round(y0 + y_to * h))
        return float(cm[max(a, 0):max(b, 0)].sum() / total)

    @cached_property
    def head_shift(self):
        """Per-frame integer (dx, dy) pixels that best re-align the top 45 %
        of the frame-0 box with frame 0 (block matching on colours)."""
        x0, x1, y0, y1 = self.box0
        h = y1 - y0 + 1
        r = int(np.clip(round(0.15 * h), 2, 10))
        ya, yb = y0, int(y0 + 0.45 * h)
        xa, xb = x0, x1 + 1
        f = self.frames.astype(np.float32)
        pad = np.pad(f, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
        ref = f[0, ya:yb, xa:xb]
        best = np.full(self.T, np.inf)
        shift = np.zeros((self.T, 2))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                win = pad[:, ya + r + dy:yb + r + dy, xa + r + dx:xb + r + dx]
                err = np.abs(win - ref).mean(axis=(1, 2, 3)) + 1e-3 * (abs(dx) + abs(dy))
                better = err < best
                best = np.where(better, err, best)
                shift[better] = (dx, dy)
        return shift

    @cached_property
    def motion(self):
        """(path, deviation): total absolute colour change between consecutive
        frames, and mean absolute change from frame 0 per frame, both in
        units of the frame-0 silhouette area (pixels * intensity)."""
        f = self.frames.astype(np.float32) / 255.0
        path = np.abs(np.diff(f, axis=0)).mean(axis=-1).sum() / self.a0
        deviation = np.abs(f - f[0]).mean(axis=-1).sum(axis=(1, 2)).mean() / self.a0
        return float(path), float(deviation)

    @cached_property
    def track(self):
        s = self.s
        cx0 = s["cx"][0]
        xs = np.arange(self.W)
        left = (self.masks & (xs < cx0)).sum(axis=(1, 2)).astype(np.float64)
        right = (self.masks & (xs >= cx0)).sum(axis=(1, 2)).astype(np.float64)
        x0, x1, y0, y1 = self.box0
        band = slice(y0, int(y0 + 0.35 * (y1 - y0 + 1)))
        top_area = max(1, (band.stop - band.start) * (x1 - x0 + 1))
        top_activity = self.change[:, band, x0:x1 + 1].sum(axis=(1, 2)) / top_area
        return {**{k: v.copy() for k, v in s.items()}, "left_mass": left, "right_mass": right,
                "top_activity": top_activity, "iou": self.iou}
