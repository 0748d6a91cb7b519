"""The built-in model's decoder: frames are the reference's own pixels, moved by a motion field.

A motion field is a *backward* map: for every pixel of an output frame,
where in the reference its colour comes from. It lives on a coarse grid
over the model's square *working frame* (see ``sprite.py``) as three
channels per cell and frame:

* ``dx, dy``: the displacement from the output pixel to its source, in
  working-frame heights (0.1 = a tenth of the frame, in both directions), so
  one field animates the reference at any resolution;
* ``occupancy`` in [0, 1]: whether the character is there at all. A pixel
  stays only where the upsampled occupancy exceeds
  :data:`OCCUPANCY_THRESHOLD`, which removes what a smooth field would drag
  along (the place an arm left when it rose to wave).

Decoding upsamples the field (bilinear) to every output pixel and samples
the reference (premultiplied RGBA) there with ``grid_sample``: ``nearest``
keeps pixel art crisp and on its palette, ``bilinear`` suits smooth art.
The identity (zero displacement, the reference's own occupancy) gives the
reference exactly; sources off the reference are transparent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("nearest", "bilinear")
#: A cell that holds any of the character has occupancy 1; upsampled, such a cell weighs at least 1/4 on every
#: pixel inside it, so a threshold below 1/4 keeps every pixel of the reference where the occupancy says so.
OCCUPANCY_THRESHOLD = 0.2


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[H, W, 2]`` pixel-centre coordinates (x, y), pixel ``i`` centred at ``i + 0.5``."""
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def field_at_pixels(field: torch.Tensor, height: int, width: int, frame: tuple[float, float, float]) -> torch.Tensor:
    """Grid values ``[N, C, rows, cols]`` over the working frame ``(x0, y0, size)`` (canvas pixels) read at every
    pixel centre of an ``H x W`` canvas (bilinear, edge values beyond the frame) -> ``[N, C, H, W]``."""
    x0, y0, size = frame
    centres = pixel_grid(height, width, field.device, field.dtype)
    origin = torch.tensor([x0, y0], device=field.device, dtype=field.dtype)
    at = ((centres - origin) / size * 2 - 1)[None].expand(field.shape[0], -1, -1, -1)
    return F.grid_sample(field, at, mode="bilinear", padding_mode="border", align_corners=False)


def warp(source: torch.Tensor, displacement: torch.Tensor, occupancy: torch.Tensor | None = None, *,
         frame: tuple[float, float, float] | None = None, mode: str = "bilinear") -> torch.Tensor:
    """Move ``source`` ``[n, C, H, W]`` (premultiplied RGBA) -> ``[n, C, T, H, W]``.

    ``displacement`` ``[n, 2, T, rows, cols]`` in frame heights and
    ``occupancy`` ``[n, 1, T, rows, cols]`` (or None: keep everything) lie on
    the working frame ``(x0, y0, size)`` in canvas pixels (None: the canvas
    is the frame, which must then be square).
    """
    if mode not in MODES:
        raise ValueError(f"warp mode must be one of {MODES}, got {mode!r}")
    n, channels, height, width = source.shape
    frames = displacement.shape[2]
    if frame is None:
        if height != width:
            raise ValueError(f"a {width}x{height} canvas needs its working frame (x0, y0, size)")
        frame = (0.0, 0.0, float(height))
    size = float(frame[2])
    cells = displacement.to(source.dtype).permute(0, 2, 1, 3, 4).flatten(0, 1)  # [n*T, 2, rows, cols]
    if occupancy is not None:
        cells = torch.cat([cells, occupancy.to(source.dtype).permute(0, 2, 1, 3, 4).flatten(0, 1)], dim=1)
    dense = field_at_pixels(cells, height, width, frame)  # [n*T, 2 or 3, H, W]
    scale = torch.tensor([width, height], dtype=source.dtype, device=source.device)
    points = pixel_grid(height, width, source.device, source.dtype) + dense[:, :2].permute(0, 2, 3, 1) * size
    images = source[:, None].expand(n, frames, channels, height, width).reshape(n * frames, channels, height, width)
    out = F.grid_sample(images, points / scale * 2 - 1, mode=mode, padding_mode="zeros", align_corners=False)
    if occupancy is not None:
        out = out * (dense[:, 2:3] > OCCUPANCY_THRESHOLD).to(out.dtype)
    return out.reshape(n, frames, channels, height, width).permute(0, 2, 1, 3, 4)
