"""The built-in model's codecs: frames <-> latents, frame by frame (no temporal compression).

* ``SpaceToDepthCodec``: lossless; each ``factor x factor`` RGB block becomes
  ``3 * factor**2`` channels of one latent pixel.
* ``PatchPCACodec``: each block is projected on the first ``components``
  principal components of sprite blocks (a basis fitted on the training data
  and stored in the model file). It keeps far fewer channels than the
  lossless transform (24 instead of 48 for 4x4 blocks), so a DiT token
  (2x2 latent pixels) carries fewer numbers than the model's width - the
  condition for it to predict noise precisely - at a modest reconstruction
  error (held-out sprites: median 36 dB PSNR, mean 39 dB, worst about 27 dB on
  busy pixel art).

Both have the Open-Sora video VAE's interface (``encode``, ``decode``,
``latent_channels``, ``spatial_factor``, ``latent_frames``, ``latent_size``).
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
    def block_channels(self) -> int:
        return 3 * self.factor**2

    @property
    def latent_channels(self) -> int:
        return self.block_channels

    @property
    def spatial_factor(self) -> int:
        return self.factor

    def latent_frames(self, num_frames: int) -> int:
        return int(num_frames)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.factor, width // self.factor

    def to(self, device=None, dtype=None) -> "SpaceToDepthCodec":
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        return self

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, 3, F, H, W]`` -> ``[n, 3*f*f, F, H//f, W//f]`` (sizes that do not divide are cropped)."""
        f = self.factor
        h, w = x.shape[-2] // f * f, x.shape[-1] // f * f
        return rearrange(x[..., :h, :w], "n c t (h fh) (w fw) -> n (c fh fw) t h w", fh=f, fw=f)

    def unblocks(self, z: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return rearrange(z, "n (c fh fw) t h w -> n c t (h fh) (w fw)", fh=f, fw=f)

    def project(self, blocks: torch.Tensor) -> torch.Tensor:
        """Blocks ``[n, 3*f*f, F, h, w]`` -> latents (here: scaled)."""
        return blocks * self.scale

    def unproject(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.scale

    def encode(self, x: torch.Tensor, *, sample: bool = False, generator=None) -> torch.Tensor:
        """``[n, 3, F, H, W]`` in [-1, 1] -> latents ``[n, C, F, H//f, W//f]``."""
        return self.project(self.blocks(x))

    def decode(self, z: torch.Tensor, num_frames: int | None = None, *, callback=None) -> torch.Tensor:
        x = self.unblocks(self.unproject(z))
        if num_frames is not None:
            x = x[:, :, :num_frames]
        if callback is not None:
            callback(1, 1)
        return x


class PatchPCACodec(SpaceToDepthCodec):
    """Blocks projected on a fitted orthonormal basis and scaled:
    ``z_k = (basis_k . (block - mean)) / std_k`` (like the shift/scale of Open-Sora's VAE)."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, std: torch.Tensor | None = None, factor: int = 4,
                 dtype: torch.dtype = torch.float32, device="cpu"):
        super().__init__(factor, 1.0, dtype, device)
        if basis.shape[1] != self.block_channels or mean.shape != (self.block_channels,):
            raise ValueError(f"a {factor}x{factor} PCA codec needs a mean of {self.block_channels} values and a "
                             f"[components, {self.block_channels}] basis; got {list(mean.shape)} and {list(basis.shape)}")
        self.mean = mean.float()
        self.basis = basis.float()
        self.std = torch.ones(basis.shape[0]) if std is None else std.float()

    @classmethod
    def fit(cls, frames: torch.Tensor, components: int, factor: int = 4, whiten: bool = False) -> "PatchPCACodec":
        """Fit the basis to ``[n, 3, F, H, W]`` frames in [-1, 1].

        ``whiten`` gives every channel unit variance; otherwise one scale is
        shared (unit variance on average), so the coarse components keep their
        weight in the loss and fine detail is settled late in sampling, as in
        pixel space.
        """
        blocks = SpaceToDepthCodec(factor).blocks(frames.float())
        data = blocks.movedim(1, -1).reshape(-1, blocks.shape[1]).double()
        mean = data.mean(0)
        _, _, vh = torch.linalg.svd(data - mean, full_matrices=False)
        basis = vh[:components]
        std = ((data - mean) @ basis.T).std(0)
        if not whiten:
            std = std.pow(2).mean().sqrt().expand_as(std).clone()
        return cls(mean.float(), basis.float(), std.float(), factor=factor)

    @property
    def latent_channels(self) -> int:
        return int(self.basis.shape[0])

    def to(self, device=None, dtype=None) -> "PatchPCACodec":
        super().to(device, dtype)
        self.mean, self.basis, self.std = (t.to(self.device) for t in (self.mean, self.basis, self.std))
        return self

    def project(self, blocks: torch.Tensor) -> torch.Tensor:
        centred = blocks.float() - self.mean.to(blocks.device)[:, None, None, None]
        z = torch.einsum("kc,nc...->nk...", self.basis.to(blocks.device), centred)
        return (z / self.std.to(blocks.device)[:, None, None, None]).to(blocks.dtype)

    def unproject(self, z: torch.Tensor) -> torch.Tensor:
        scaled = z.float() * self.std.to(z.device)[:, None, None, None]
        blocks = torch.einsum("kc,nk...->nc...", self.basis.to(z.device), scaled)
        return (blocks + self.mean.to(z.device)[:, None, None, None]).to(z.dtype)

    def state_dict(self) -> dict:
        return {"mean": self.mean.cpu(), "basis": self.basis.cpu(), "std": self.std.cpu()}
