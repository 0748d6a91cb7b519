"""The codec interface: what ``generate()`` and the decode step need of a model's latent space.

Two codecs implement it: Open-Sora's video VAE (:class:`~.vae.OpenSoraVAE`,
pixels <-> latents in chunks of 17 frames) and the built-in model's warp
decoder bound to one sprite (:class:`~.builtin.codec.BoundFieldCodec`,
motion fields -> the sprite's pixels moved, one latent frame per frame).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch

from .conditioning import TemporalLayout


@runtime_checkable
class VideoCodec(Protocol):
    """Latents ``[n, latent_channels, latent_frames(F), h, w]`` <-> pixels ``[n, 3, F, H, W]`` in [-1, 1]."""

    latent_channels: int

    @property
    def dtype(self) -> torch.dtype:
        """The dtype latents are handed to :meth:`decode` in."""

    @property
    def layout(self) -> TemporalLayout:
        """How frames group into latent frames (chunks that encode and decode independently)."""

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a clip of ``num_frames`` frames."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels -> latents (raises with what to do instead where a codec cannot read frames back)."""

    def decode(self, z: torch.Tensor, num_frames: int, *,
               callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Latents -> ``num_frames`` frames; ``callback(done, total)`` after each chunk (raising cancels)."""
