"""Ground-truth motion of a drawn clip: where every pixel of frame t comes from in frame 0.

The sprites are bones (per-frame affine matrices) carrying shapes, so the
motion of every pixel is known exactly. For a pixel of frame ``t`` covered by
a shape on bone ``b`` its source in frame 0 is ``B_b(0) B_b(t)^-1 p``: the
point of the bone's frame that is drawn there, where frame 0 drew it. Rules:

* the top-most part wins (the part drawn over a pixel is the one that moved
  there);
* where that source is hidden in frame 0 by another part (skin under an open
  eye that a blink uncovers, the body behind an arm that moved away), or off
  the canvas, it becomes the nearest frame-0 pixel of the same part;
* background pixels carry the motion of the parts near them on (each part's
  own affine map, blended by Gaussian nearness, never reaching further than
  the character moves in that frame), so the field is smooth where it meets
  the character; the occupancy channel, not the field, says that nothing is
  drawn there.

:func:`backward_field` gives the dense field in pixels; :func:`clip_latents`
pools it onto the model's grid (weighted toward the moving parts, see
:func:`motion_weights`) and adds the occupancy: the latents the built-in
model learns (see ``dit_core.builtin.codec``). Through the warp decoder
these latents reproduce the drawn clips closely: 99 % of the benchmark's
clips are recognised by the tracker (``tests/test_training_fields.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EXTEND_SIGMA = 0.08  # reach of a part's motion into the background around it, in canvas heights
BACKGROUND_WEIGHT = 0.1  # weight of a background pixel when pooling displacements onto the grid


def _pixel_centres(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return np.stack([xs, ys], axis=-1)  # [H, W, 2] (x, y)


def _nearest_of(targets: np.ndarray, queries: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each query point ``[Q, 2]`` the nearest of ``targets`` ``[N, 2]``."""
    out = np.empty_like(queries)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        d = ((q[:, None, :] - targets[None, :, :]) ** 2).sum(-1)
        out[start : start + chunk] = targets[d.argmin(axis=1)]
    return out


def _clean_pixels(part: np.ndarray, b: int) -> np.ndarray:
    """Centres (x, y) of the pixels of part ``b`` whose four neighbours are of it too (its colour unblended with
    another part's); all of its pixels when none is."""
    own = part == b
    inner = own.copy()
    inner[1:] &= own[:-1]
    inner[:-1] &= own[1:]
    inner[:, 1:] &= own[:, :-1]
    inner[:, :-1] &= own[:, 1:]
    return np.argwhere(inner if inner.any() else own)[:, ::-1] + 0.5


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[C, H, W]`` (replicated edges)."""
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = (g / g.sum())
    c = maps.shape[0]
    t = maps[None]
    t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    t = F.conv2d(F.pad(t, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return t[0]


def backward_field(parts: np.ndarray, bones: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Source points ``[T, H, W, 2]`` (x, y in pixels, centres at +0.5) in frame 0 of every pixel of every frame,
    and bool ``[T, H, W]``: the pixels newly uncovered (their true source was hidden in frame 0, so they show the
    nearest pixel of their part instead).

    ``parts`` int [T, H, W]: bone index (into ``sorted(bones)``) of the
    top-most shape, -1 = background (from ``sprites.render_parts``).
    """
    frames, height, width = parts.shape
    names = sorted(bones)
    mats = np.stack([bones[n] for n in names])  # [B, T, 3, 3]
    back = mats[:, :1] @ np.linalg.inv(mats)  # [B, T, 3, 3]: frame t -> frame 0
    centres = _pixel_centres(height, width)
    hom = np.concatenate([centres, np.ones((height, width, 1))], axis=-1)  # [H, W, 3]
    sigma = EXTEND_SIGMA * height
    part0 = parts[0]
    owned0 = {b: _clean_pixels(part0, b) for b in range(len(names))}
    out = np.empty((frames, height, width, 2))
    uncovered = np.zeros((frames, height, width), dtype=bool)
    for t in range(frames):
        part = parts[t]
        src = centres.copy()
        fg = part >= 0
        for b in np.unique(part[fg]):
            sel = part == b
            src[sel] = (hom[sel] @ back[b, t].T)[:, :2]
        if fg.any() and not fg.all():
            # background: the parts' own motions carried on, each weighted by how near the part is
            present = [int(b) for b in np.unique(part[fg])]
            near = _gaussian_blur(torch.from_numpy(np.stack([part == b for b in present]).astype(np.float64)),
                                  sigma).numpy()  # [P, H, W]
            near = near + 1e-12 * (near.sum(0, keepdims=True) == 0)  # far from every part: an even blend
            moved = np.stack([(hom @ back[b, t].T)[..., :2] for b in present])  # [P, H, W, 2]
            blend = (near[..., None] * moved).sum(0) / near.sum(0)[..., None] - centres
            # no further than the character moves (an edge-on turn would fling the far background off the canvas)
            reach = np.linalg.norm(src[fg] - centres[fg], axis=-1).max()
            length = np.linalg.norm(blend, axis=-1, keepdims=True)
            blend = blend * np.minimum(1.0, reach / np.maximum(length, 1e-9))
            src[~fg] = centres[~fg] + blend[~fg]
        # a part's source must show that part in frame 0: else the nearest pixel that does
        ix = np.clip(np.floor(src[..., 0]).astype(int), 0, width - 1)
        iy = np.clip(np.floor(src[..., 1]).astype(int), 0, height - 1)
        inside = (src[..., 0] >= 0) & (src[..., 0] < width) & (src[..., 1] >= 0) & (src[..., 1] < height)
        seen = np.where(inside, part0[iy, ix], -1)
        wrong = (seen != part) & fg & (t > 0)
        uncovered[t] = wrong
        for b in np.unique(part[wrong]):
            targets = owned0[int(b)]
            if len(targets):  # (a part nowhere in frame 0 keeps its true source)
                sel = wrong & (part == b)
                src[sel] = _nearest_of(targets, src[sel])
        out[t] = src
    out[0] = centres
    return out, uncovered


def dense_displacement(source_points: np.ndarray) -> np.ndarray:
    """Source points ``[T, H, W, 2]`` -> displacements in frame heights ``[T, 2, H, W]`` (float32)."""
    frames, height, width, _ = source_points.shape
    disp = source_points - _pixel_centres(height, width)[None]
    return np.ascontiguousarray((disp / height).transpose(0, 3, 1, 2)).astype(np.float32)


def coarse_field(displacement: np.ndarray, grid: tuple[int, int], weights: np.ndarray | None = None) -> np.ndarray:
    """Dense displacements ``[T, 2, H, W]`` pooled onto a ``grid`` (rows, cols) -> ``[T, 2, rows, cols]``.

    ``weights`` ``[T, H, W]`` weigh the pixels of a cell (e.g. more for the
    character than for the background); None = a plain area average.
    """
    d = torch.from_numpy(displacement).double()
    if weights is None:
        pooled = F.adaptive_avg_pool2d(d, grid)
    else:
        w = torch.from_numpy(np.asarray(weights, dtype=np.float64))[:, None]
        pooled = F.adaptive_avg_pool2d(d * w, grid) / F.adaptive_avg_pool2d(w, grid).clamp_min(1e-12)
    return pooled.float().numpy()


def motion_weights(parts: np.ndarray, displacement: np.ndarray, height: int) -> np.ndarray:
    """Pooling weights ``[T, H, W]``: the character's pixels count, the more the further they move (a thin limb
    that moves keeps its motion in a cell it shares with a still body); the background counts a little."""
    moved = np.sqrt((displacement**2).sum(axis=1)) * height  # pixels
    return np.where(parts >= 0, 1.0 + moved, BACKGROUND_WEIGHT)


def clip_latents(codec, parts: np.ndarray, bones: dict[str, np.ndarray], alpha: np.ndarray) -> torch.Tensor:
    """The built-in model's latents ``[3, T, g, g]`` of a drawn clip (square canvas = the working frame).

    ``alpha`` float [T, H, W] (coverage of every frame); ``codec`` a
    ``MotionFieldCodec`` (its grid and scales)."""
    frames, height, width = parts.shape
    dense = dense_displacement(backward_field(parts, bones)[0])
    coarse = torch.from_numpy(coarse_field(dense, codec.grid, motion_weights(parts, dense, height)))
    occupancy = codec.occupancy(torch.from_numpy(np.ascontiguousarray(alpha))[:, None], (0.0, 0.0, float(height)))
    return codec.to_latents(coarse.permute(1, 0, 2, 3)[None], occupancy.permute(1, 0, 2, 3)[None])[0]
