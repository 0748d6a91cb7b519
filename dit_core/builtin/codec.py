"""The built-in model's latents: motion fields over the working frame, and what the model sees of the reference.

A latent frame is ``[3, grid, grid]``: displacement x and y divided by
``displacement_scale`` and raised to ``displacement_power`` keeping the sign
(with a power of 0.5 a one-pixel move of a 64-pixel frame is 0.28 latent
units instead of 0.08 and a half-frame move 1.6 instead of 2.5, so blinks and
nods are not lost in the noise the model learns to remove), and the
occupancy mapped from [0, 1] to [-1, 1] (see ``warp.py`` for what the
channels mean). The reference's own latent is the identity: zero
displacement and its occupancy (1 in every cell that holds any of the
character). The decoder smooths the displacements over neighbouring cells
(``smoothing``, a Gaussian's sigma in cells) before it warps: what the model
generates carries some cell-to-cell noise, which would shimmer over still
parts and tear moving ones. The model also sees the reference's *appearance*: its
premultiplied RGBA over the working frame at ``frame_pixels`` pixels, folded
into ``(frame_pixels / grid)**2 * 4`` channels per cell.

:class:`MotionFieldCodec` does these conversions; bound to one
:class:`~.sprite.Sprite` (:meth:`MotionFieldCodec.bind`) it is the codec that
``generate()`` decodes with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from ..conditioning import FRAME_BY_FRAME
from ..errors import InvalidInputError
from .sprite import Sprite, unpremultiply
from .warp import warp

LATENT_CHANNELS = 3


@dataclass(frozen=True)
class FieldConfig:
    grid: int = 32  # field cells per side of the working frame
    frame_pixels: int = 64  # side of the working frame as the model sees the reference
    displacement_scale: float = 0.2  # frame heights per latent unit (the latents' spread is then about 1)
    displacement_power: float = 1.0  # latent = sign(d) * |d / scale| ** power (power < 1 enlarges small moves)
    smoothing: float = 0.0  # Gaussian sigma (cells) the decoder smooths displacements with before warping

    def __post_init__(self):
        for name in ("grid", "frame_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"field {name} must be a whole number of at least 1, got {value!r}")
        if self.frame_pixels % self.grid:
            raise InvalidInputError(f"field frame_pixels {self.frame_pixels} must be a multiple of grid {self.grid} "
                                    "(each cell covers whole pixels), e.g. grid 16 or 32 over 64 or 128")
        for name in ("displacement_scale", "displacement_power", "smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 \
                    or (value == 0 and name != "smoothing"):
                raise InvalidInputError(f"field {name} must be a positive number, got {value!r}")

    @property
    def appearance_channels(self) -> int:
        return 4 * (self.frame_pixels // self.grid) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def frame_crop(image: torch.Tensor, frame: tuple[float, float, float], pixels: int, *, reduce: str) -> torch.Tensor:
    """``image`` ``[n, C, H, W]`` over the square ``frame`` (canvas pixels; transparent beyond the canvas)
    resampled to ``pixels x pixels``: ``reduce`` ``mean`` (area average) or ``max`` when shrinking, nearest
    neighbour when enlarging."""
    n, channels, height, width = image.shape
    x0, y0, size = frame
    scale = max(1, math.ceil(size / pixels))  # samples per output pixel and side: every canvas pixel is read
    side = pixels * scale
    # sample positions: `side` points across the frame, read with nearest neighbour (zeros off the canvas)
    step = size / side
    xs = x0 + (torch.arange(side, dtype=torch.float32) + 0.5) * step
    ys = y0 + (torch.arange(side, dtype=torch.float32) + 0.5) * step
    grid = torch.stack(torch.meshgrid(xs / width * 2 - 1, ys / height * 2 - 1, indexing="xy"), dim=-1)
    samples = F.grid_sample(image.float(), grid[None].expand(n, -1, -1, -1).to(image.device), mode="nearest",
                            padding_mode="zeros", align_corners=False)
    if scale == 1:
        return samples
    return F.avg_pool2d(samples, scale) if reduce == "mean" else F.max_pool2d(samples, scale)


class MotionFieldCodec:
    """Motion-field latents <-> frames of one reference (see the module notes)."""

    layout = FRAME_BY_FRAME
    latent_channels = LATENT_CHANNELS

    def __init__(self, config: FieldConfig | None = None, dtype: torch.dtype = torch.float32, device="cpu"):
        self.config = config or FieldConfig()
        self.dtype = dtype
        self.device = torch.device(device)

    def to(self, device=None, dtype=None) -> "MotionFieldCodec":
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        return self

    def latent_frames(self, num_frames: int) -> int:
        return int(num_frames)

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid, self.config.grid

    # -- latents <-> fields -----------------------------------------------------
    def to_latents(self, displacement: torch.Tensor, occupancy: torch.Tensor) -> torch.Tensor:
        """Displacement ``[n, 2, T, g, g]`` (frame heights) and occupancy ``[n, 1, T, g, g]`` (0..1) -> latents."""
        scaled = displacement / self.config.displacement_scale
        companded = scaled.sign() * scaled.abs().pow(self.config.displacement_power)
        return torch.cat([companded, occupancy * 2.0 - 1.0], dim=1)

    def from_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.dim() != 5 or z.shape[1] != LATENT_CHANNELS:
            raise InvalidInputError(f"the built-in model's latents are [n, {LATENT_CHANNELS}, frames, rows, cols]; "
                                    f"got {list(z.shape)}: decode the LATENT its sampler made")
        z = z.float()
        scaled = z[:, :2].sign() * z[:, :2].abs().pow(1.0 / self.config.displacement_power)
        return scaled * self.config.displacement_scale, ((z[:, 2:] + 1.0) * 0.5).clamp(0.0, 1.0)

    # -- what the model sees of a reference ----------------------------------------
    def occupancy(self, alpha: torch.Tensor, frame) -> torch.Tensor:
        """Alpha ``[n, 1, H, W]`` -> occupancy ``[n, 1, g, g]``: 1 in every cell whose area holds the centre of a
        pixel of the character (pixels beyond the frame count for its edge cells)."""
        n, _, height, width = alpha.shape
        g = self.config.grid
        x0, y0, size = frame
        ys = torch.arange(height, dtype=torch.float64) + 0.5
        xs = torch.arange(width, dtype=torch.float64) + 0.5
        rows = ((ys - y0) / size * g).floor().clamp(0, g - 1).long()
        cols = ((xs - x0) / size * g).floor().clamp(0, g - 1).long()
        cell = (rows[:, None] * g + cols[None, :]).reshape(-1).to(alpha.device)
        covered = (alpha.reshape(n, -1) > 0).float()
        out = torch.zeros(n, g * g, device=alpha.device).scatter_reduce(1, cell.expand(n, -1), covered, "amax")
        return out.view(n, 1, g, g)

    def identity(self, sprite: Sprite) -> torch.Tensor:
        """The reference's own latent frame ``[3, 1, g, g]``: no motion, its occupancy."""
        occ = self.occupancy(sprite.rgba[None, 3:4], sprite.frame)
        z = self.to_latents(torch.zeros(1, 2, 1, *occ.shape[2:]), occ[:, :, None])
        return z[0].to(self.dtype)

    def appearance(self, sprite: Sprite) -> torch.Tensor:
        """``[1, C, 1, g, g]``: the reference's premultiplied RGBA over the working frame, in [-1, 1]."""
        pixels = frame_crop(sprite.rgba[None], sprite.frame, self.config.frame_pixels, reduce="mean")
        cells = rearrange(pixels, "n c (h a) (w b) -> n (c a b) h w", h=self.config.grid, w=self.config.grid)
        return (cells * 2.0 - 1.0)[:, :, None].to(self.dtype)

    def fit_pose(self, source: Sprite, target: Sprite, steps: int = 200) -> torch.Tensor:
        """The latent frame ``[3, 1, g, g]`` that moves ``source``'s pixels into ``target``'s pose (same canvas):
        the target's occupancy and the displacement that best redraws the target from the source's pixels
        (premultiplied colour difference, fitted by gradient descent from no motion)."""
        if (source.height, source.width) != (target.height, target.width):
            raise InvalidInputError(f"a pose image must have the reference's size ({source.width}x{source.height}); "
                                    f"got {target.width}x{target.height}")
        # gradients also where the caller computes without them (ComfyUI runs nodes in inference mode); the
        # images are copied out of it, as inference-mode tensors cannot take part in a backward pass
        with torch.inference_mode(False), torch.enable_grad():
            pixels, goal = source.rgba[None].clone(), target.rgba[None].clone()
            occupancy = self.occupancy(goal[:, 3:4], source.frame)[:, :, None]
            displacement = torch.zeros(1, 2, 1, *self.grid)
            # coarse to fine, so a far move is still found: a few cells over blurred images first, then finer cells
            # over sharper images, each level adding to the ones before
            for cells, radius in ((4, 4), (8, 2), (self.grid[0], 0)):
                level = torch.zeros(1, 2, cells, cells, requires_grad=True)
                optimizer = torch.optim.Adam([level], lr=0.01)
                for _ in range(steps // 3):
                    field = displacement + F.interpolate(level, size=self.grid, mode="bilinear")[:, :, None]
                    moved = warp(pixels, self.smooth(field), occupancy, frame=source.frame,
                                 mode="bilinear")  # as the decoder will draw it
                    loss = (_blur(moved[:, :, 0], radius) - _blur(goal, radius)).abs().mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                displacement = displacement + F.interpolate(level.detach(), size=self.grid, mode="bilinear")[:, :, None]
            return self.to_latents(displacement, occupancy)[0].to(self.dtype)

    # -- frames ---------------------------------------------------------------------
    def warp(self, z: torch.Tensor, sprite: Sprite, mode: str | None = None) -> torch.Tensor:
        """Latents ``[n, 3, T, g, g]`` -> premultiplied RGBA frames ``[n, 4, T, H, W]`` (float32, 0..1).

        With ``smoothing`` the displacements are smoothed over neighbouring cells first: a generated field's
        cell-to-cell noise would otherwise shimmer over still parts and tear moving ones apart."""
        displacement, occupancy = self.from_latents(z)
        displacement = self.smooth(displacement)
        source = sprite.rgba[None].to(displacement.device).expand(z.shape[0], -1, -1, -1)
        return warp(source, displacement, occupancy, frame=sprite.frame, mode=mode or sprite.mode)

    def smooth(self, displacement: torch.Tensor) -> torch.Tensor:
        """Displacements ``[n, 2, T, g, g]`` smoothed over the cells of each frame by a Gaussian of ``smoothing``
        cells (the edge cells repeated beyond the grid, so a uniform move stays exactly as it is)."""
        sigma = self.config.smoothing
        if sigma <= 0:
            return displacement
        radius = max(1, math.ceil(2.5 * sigma))
        taps = torch.arange(-radius, radius + 1, dtype=displacement.dtype, device=displacement.device)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = kernel / kernel.sum()
        n, channels, frames, rows, cols = displacement.shape
        planes = rearrange(displacement, "n c t h w -> (n c t) 1 h w")
        planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
        return rearrange(planes, "(n c t) 1 h w -> n c t h w", n=n, c=channels, t=frames)

    def decode_frames(self, z: torch.Tensor, sprite: Sprite) -> torch.Tensor:
        """Latents -> RGB ``[n, 3, T, H, W]`` in [-1, 1] over the sprite's key colour (as a video VAE decodes)."""
        rgba = self.warp(z, sprite)
        key = torch.tensor(sprite.key_color, dtype=rgba.dtype, device=rgba.device).view(1, 3, 1, 1, 1) / 255.0
        return (rgba[:, :3] + (1.0 - rgba[:, 3:4]) * key) * 2.0 - 1.0

    def bind(self, sprite: Sprite) -> "BoundFieldCodec":
        return BoundFieldCodec(self, sprite)


class BoundFieldCodec:
    """The codec of one reference: ``decode(z, num_frames)`` like a video VAE's (used by ``generate()``)."""

    layout = FRAME_BY_FRAME
    latent_channels = LATENT_CHANNELS

    def __init__(self, codec: MotionFieldCodec, sprite: Sprite):
        self.codec = codec
        self.sprite = sprite
        self.dtype = torch.float32
        self.device = codec.device

    def latent_frames(self, num_frames: int) -> int:
        return int(num_frames)

    def decode(self, z: torch.Tensor, num_frames: int | None = None, *, callback=None) -> torch.Tensor:
        video = self.codec.decode_frames(z, self.sprite)
        if num_frames is not None:
            video = video[:, :, :num_frames]
        if callback is not None:
            callback(1, 1)
        return video

    def rgba_frames(self, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The clip of :func:`generate`'s joined ``latents`` (the first of a batch) as straight-alpha RGBA
        ``[F, H, W, 4]`` float32 0..1: the reference's own colours and opacity, moved, so a transparent export
        needs no keying (one latent frame is one frame, so the joined latents are the clip's frames)."""
        rgba = self.codec.warp(latents[:1, :, :num_frames].to(self.device, torch.float32), self.sprite)[0]
        return unpremultiply(rgba).permute(1, 2, 3, 0).cpu()

    def alpha_frames(self, latents: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The opacity ``[n * F, H, W]`` of the clips of a batch of joined ``latents``, frame after frame."""
        z = latents[:, :, :num_frames].to(self.device, torch.float32)
        return torch.cat([self.codec.warp(z[i:i + 1], self.sprite)[0, 3] for i in range(len(z))]).cpu()

    def encode(self, video: torch.Tensor, **_unused) -> torch.Tensor:
        raise InvalidInputError("the built-in model's motion fields cannot be read back from frames: continue a "
                                "clip from its latents instead")


def _blur(image: torch.Tensor, radius: int) -> torch.Tensor:
    """A box blur of ``[n, c, H, W]`` over ``2 * radius + 1`` pixels (none for radius 0)."""
    if radius == 0:
        return image
    return F.avg_pool2d(image, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
