"""The built-in model's codec: a lossless space-to-depth transform.

Each ``factor x factor`` block of RGB pixels becomes ``3 * factor**2``
channels of one latent pixel, frame by frame (no temporal compression), so a
64x64 frame is a 48x16x16 latent and decoding returns exactly what was
encoded. It has the same interface as the Open-Sora video VAE.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..conditioning import FRAME_BY_FRAME


class SpaceToDepthCodec:
    layout = FRAME_BY_FRAME

    def __init__(self, factor: int = 4, scale: float = 1.0, dtype: torch.dtype = torch.float32, device="cpu"):
        self.factor = int(factor)
        self.scale = float(scale)
        self.dtype = dtype
        self.device = torch.device(device)

    @property
    def latent_channels(self) -> int:
        return 3 * self.factor**2

    @property
    def spatial_factor(self) -> int:
        return self.factor

    def latent_frames(self, num_frames: int) -> int:
        return int(num_frames)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.factor, width // self.factor

    def to(self, device=None, dtype=None) -> "SpaceToDepthCodec":
        return SpaceToDepthCodec(self.factor, self.scale, dtype or self.dtype, device or self.device)

    def encode(self, x: torch.Tensor, *, sample: bool = False, generator=None) -> torch.Tensor:
        """``[n, 3, F, H, W]`` in [-1, 1] -> ``[n, 3*f*f, F, H//f, W//f]`` (sizes that do not divide are cropped)."""
        f = self.factor
        h, w = x.shape[-2] // f * f, x.shape[-1] // f * f
        x = x[..., :h, :w]
        z = rearrange(x, "n c t (h fh) (w fw) -> n (c fh fw) t h w", fh=f, fw=f)
        return z * self.scale

    def decode(self, z: torch.Tensor, num_frames: int | None = None, *, callback=None) -> torch.Tensor:
        f = self.factor
        x = rearrange(z / self.scale, "n (c fh fw) t h w -> n c t (h fh) (w fw)", fh=f, fw=f)
        if num_frames is not None:
            x = x[:, :, :num_frames]
        if callback is not None:
            callback(1, 1)
        return x
