"""Overlapping spatial tiles, blended linearly, for encoding/decoding large frames.

A tile grid is laid out on the *latent* grid (so tile borders always fall on
whole latent pixels), tiles are processed one by one, and each tile's result
is weighted by a ramp that rises across the overlap with its neighbours; the
weighted sum divided by the summed weights is a linear cross-fade with no
seams. Peak memory then depends on the tile size, not on the frame size.

Tiling changes the numbers slightly: the VAE's mid-block attention and group
normalisation see one tile instead of the whole frame. Frames that fit in one
tile are processed exactly as without tiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class SpatialTiling:
    """Tile edge and overlap in output/input *pixels* (rounded down to whole latent pixels)."""

    tile: int = 512
    overlap: int = 128

    def __post_init__(self):
        if self.tile <= 0 or self.overlap < 0 or self.overlap * 2 > self.tile:
            raise ValueError(
                f"spatial tiling: need tile > 0 and 0 <= overlap <= tile/2, got tile={self.tile}, overlap={self.overlap}"
            )

    @classmethod
    def coerce(cls, value: "SpatialTiling | int | None") -> "SpatialTiling | None":
        if value is None or value is False:
            return None
        if isinstance(value, SpatialTiling):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(tile=value, overlap=value // 4)
        raise TypeError(f"tile must be None, a pixel size (int) or a SpatialTiling, not {type(value).__name__}")

    def in_latents(self, factor: int) -> tuple[int, int]:
        tile = max(self.tile // factor, 1)
        return tile, min(self.overlap // factor, tile // 2)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` shared cells."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = -(-(length - tile) // stride) + 1
    return [(i * (length - tile)) // (n - 1) for i in range(n)]


def blend_ramp(size: int, ramp: int, head: bool, tail: bool) -> torch.Tensor:
    """Per-cell weights of one tile along one axis: rising over ``ramp`` cells where a neighbour overlaps."""
    w = torch.ones(size, dtype=torch.float32)
    ramp = min(ramp, size)
    if ramp > 0:
        up = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)
        if head:
            w[:ramp] = torch.minimum(w[:ramp], up)
        if tail:
            w[size - ramp:] = torch.minimum(w[size - ramp:], up.flip(0))
    return w


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    grid: tuple[int, int],
    tile: int,
    overlap: int,
    in_scale: int,
    out_scale: int,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x [N,C,H,W]`` and blend the results.

    ``grid`` is the latent (h, w); a tile covering latent cells ``[a, b)``
    reads input pixels ``[a·in_scale, b·in_scale)`` (the last tile reads to the
    input's edge) and must produce output cells ``[a·out_scale, b·out_scale)``.
    """
    gh, gw = grid
    ys, xs = tile_starts(gh, tile, overlap), tile_starts(gw, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    ramp = overlap * out_scale
    out = weight = None
    for y0 in ys:
        th = min(tile, gh - y0)
        y_end = x.shape[-2] if y0 + th == gh else (y0 + th) * in_scale
        wy = blend_ramp(th * out_scale, ramp, head=y0 > 0, tail=y0 + th < gh)
        for x0 in xs:
            tw = min(tile, gw - x0)
            x_end = x.shape[-1] if x0 + tw == gw else (x0 + tw) * in_scale
            piece = fn(x[..., y0 * in_scale:y_end, x0 * in_scale:x_end])
            if out is None:
                out = torch.zeros(
                    (*piece.shape[:-2], gh * out_scale, gw * out_scale), dtype=torch.float32, device=piece.device
                )
                weight = torch.zeros((gh * out_scale, gw * out_scale), dtype=torch.float32, device=piece.device)
            wx = blend_ramp(tw * out_scale, ramp, head=x0 > 0, tail=x0 + tw < gw)
            w = (wy[:, None] * wx[None, :]).to(piece.device)
            ys_, xs_ = slice(y0 * out_scale, (y0 + th) * out_scale), slice(x0 * out_scale, (x0 + tw) * out_scale)
            out[..., ys_, xs_] += piece.float() * w
            weight[ys_, xs_] += w
            result_dtype = piece.dtype
            del piece
    return (out / weight).to(result_dtype)
