"""Small stand-ins used by the sampler/pipeline tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charmotion.dit_core.conditioning import FRAME_BY_FRAME, OPENSORA_VAE_LAYOUT


class PoolCodec:
    """A deterministic codec with the Open-Sora VAE's geometry (8x space, 17 frames -> 5 latents).

    Encoding averages 8x8 pixel blocks and keeps the frame each latent stands
    for; decoding repeats them. It is not a VAE, but it maps frames and
    latents exactly like one, which is what the loop/seamless logic needs.
    """

    dtype = torch.float32
    latent_channels = 4
    spatial_factor = 8

    def encode(self, x):
        frames = x.shape[2]
        pooled = F.avg_pool3d(x, (1, 8, 8))
        index = [min(frames - 1, (k // 5) * 17 + (k % 5) * 4) for k in range(OPENSORA_VAE_LAYOUT.latent_frames(frames))]
        pooled = pooled[:, :, index]
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)

    def decode(self, z, num_frames):
        index = [OPENSORA_VAE_LAYOUT.latent_index(f, num_frames) for f in range(num_frames)]
        return F.interpolate(z[:, :3, index], scale_factor=(1, 8, 8))


class RecordingModel(torch.nn.Module):
    """Predicts a constant velocity and records what the sampler passed in."""

    def __init__(self, channels=4, caption_channels=8, max_length=6, velocity=0.0):
        super().__init__()
        self.config = type("Config", (), {"in_channels": channels})()
        self.y_embedder = torch.nn.Module()
        self.y_embedder.y_embedding = torch.zeros(max_length, caption_channels)
        self.velocity = velocity
        self.calls = []

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, x, t, y, mask=None, x_mask=None, **kwargs):
        self.calls.append(dict(x=x.clone(), t=t.clone(), y=y.clone(), mask=mask, x_mask=None if x_mask is None else x_mask.clone(), **kwargs))
        return torch.full((x.shape[0], 2 * x.shape[1], *x.shape[2:]), self.velocity)


class FrameCodec:
    """A codec that keeps frames as they are (8x smaller in space), for a stand-in model."""

    dtype = torch.float32
    latent_channels = 4
    spatial_factor = 8
    layout = FRAME_BY_FRAME

    def encode(self, x):
        pooled = F.avg_pool3d(x, (1, 8, 8))
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)

    def decode(self, z, num_frames):
        return F.interpolate(z[:, :3], scale_factor=(1, 8, 8))
