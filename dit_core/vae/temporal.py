"""Causal 3-D "temporal" VAE of Open-Sora 1.2 (4× time compression, no spatial change).

Every convolution is causal in time: frames are zero-padded at the front only,
so output frame ``t`` never sees input frames after ``t``. Time is compressed
by stride-2 convolutions in the encoder and restored in the decoder by a
convolution that doubles the channels followed by a depth-to-time reshuffle
(channel ``2c + j`` of frame ``k`` becomes channel ``c`` of frame ``2k + j``).
Clips are padded at the front to a multiple of the time factor before
encoding, and the same number of frames is dropped after decoding.

Parameter names follow the published ``temporal_vae.*`` keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import Conv3d, GroupNorm, check_groups

EPS = 1e-5  # nn.GroupNorm default, as upstream (the 2-D VAE uses 1e-6)


@dataclass(frozen=True)
class TemporalVAEConfig:
    """Arguments of upstream's ``VAE_Temporal`` (defaults: ``VAE_Temporal_SD``)."""

    in_out_channels: int = 4
    latent_embed_dim: int = 4
    embed_dim: int = 4
    filters: int = 128
    num_res_blocks: int = 4
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    num_groups: int = 32

    def __post_init__(self):
        object.__setattr__(self, "channel_multipliers", tuple(int(m) for m in self.channel_multipliers))
        object.__setattr__(self, "temporal_downsample", tuple(bool(d) for d in self.temporal_downsample))
        if len(self.temporal_downsample) != len(self.channel_multipliers) - 1:
            raise ValueError(
                "temporal VAE: temporal_downsample needs one entry per level transition "
                f"({len(self.channel_multipliers) - 1}), got {len(self.temporal_downsample)}"
            )
        if self.num_res_blocks < 1 or self.filters < 1:
            raise ValueError("temporal VAE: filters and num_res_blocks must be positive")
        for m in self.channel_multipliers:
            check_groups(self.filters * m, self.num_groups, "temporal VAE (num_groups)")

    @property
    def time_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


def front_padding(num_frames: int, factor: int) -> int:
    """Zero frames put in front of a clip so its length is a multiple of ``factor``."""
    return (factor - num_frames % factor) % factor


class CausalConv3d(nn.Module):
    """3-D conv with zero padding: ``kt - stride_t`` frames in front, ``k//2`` pixels around."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, *, time_stride: int = 1, bias: bool = True):
        super().__init__()
        self.time_pad = kernel - time_stride
        self.space_pad = kernel // 2
        self.conv = Conv3d(cin, cout, kernel, stride=(time_stride, 1, 1), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.space_pad
        if self.time_pad or s:
            x = F.pad(x, (s, s, s, s, self.time_pad, 0))
        return self.conv(x)


class ResBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin, eps=EPS)
        self.conv1 = CausalConv3d(cin, cout, 3, bias=False)
        self.norm2 = GroupNorm(groups, cout, eps=EPS)
        self.conv2 = CausalConv3d(cout, cout, 3, bias=False)
        self.conv3 = CausalConv3d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.conv3(x) if self.conv3 is not None else x)


def _res_stack(cin: int, cout: int, n: int, groups: int) -> nn.ModuleList:
    return nn.ModuleList(ResBlock3d(cin if i == 0 else cout, cout, groups) for i in range(n))


class TemporalEncoder(nn.Module):
    def __init__(self, cfg: TemporalVAEConfig):
        super().__init__()
        groups, n = cfg.num_groups, cfg.num_res_blocks
        widths = [cfg.filters * m for m in cfg.channel_multipliers]
        self.conv_in = CausalConv3d(cfg.in_out_channels, cfg.filters, 3, bias=False)
        self.block_res_blocks = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        prev = cfg.filters
        for i, width in enumerate(widths):
            self.block_res_blocks.append(_res_stack(prev, width, n, groups))
            prev = width
            if i < len(widths) - 1:
                self.conv_blocks.append(
                    CausalConv3d(width, width, 3, time_stride=2) if cfg.temporal_downsample[i] else nn.Identity()
                )
        self.res_blocks = _res_stack(prev, prev, n, groups)
        self.norm1 = GroupNorm(groups, prev, eps=EPS)
        self.conv2 = CausalConv3d(prev, 2 * cfg.latent_embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for i, stack in enumerate(self.block_res_blocks):
            for block in stack:
                x = block(x)
            if i < len(self.conv_blocks):
                x = self.conv_blocks[i](x)
        for block in self.res_blocks:
            x = block(x)
        return self.conv2(F.silu(self.norm1(x)))


class TemporalDecoder(nn.Module):
    def __init__(self, cfg: TemporalVAEConfig):
        super().__init__()
        groups, n = cfg.num_groups, cfg.num_res_blocks
        widths = [cfg.filters * m for m in cfg.channel_multipliers]
        self.time_strides = [2 if d else 1 for d in cfg.temporal_downsample]
        self.conv1 = CausalConv3d(cfg.latent_embed_dim, widths[-1], 3)
        self.res_blocks = _res_stack(widths[-1], widths[-1], n, groups)
        blocks: list[nn.ModuleList] = [None] * len(widths)
        convs: list[nn.Module] = [None] * (len(widths) - 1)
        prev = widths[-1]
        for i in reversed(range(len(widths))):
            blocks[i] = _res_stack(prev, widths[i], n, groups)
            prev = widths[i]
            if i > 0:
                ts = self.time_strides[i - 1]
                convs[i - 1] = CausalConv3d(prev, prev * ts, 3) if ts > 1 else nn.Identity()
        self.block_res_blocks = nn.ModuleList(blocks)
        self.conv_blocks = nn.ModuleList(convs)
        self.norm1 = GroupNorm(groups, prev, eps=EPS)
        self.conv_out = CausalConv3d(prev, cfg.in_out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv1(z)
        for block in self.res_blocks:
            x = block(x)
        for i in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[i]:
                x = block(x)
            if i > 0:
                x = self.conv_blocks[i - 1](x)
                ts = self.time_strides[i - 1]
                if ts > 1:
                    x = rearrange(x, "b (c ts) t h w -> b c (t ts) h w", ts=ts)
        return self.conv_out(F.silu(self.norm1(x)))


class TemporalVAE(nn.Module):
    def __init__(self, cfg: TemporalVAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = TemporalEncoder(cfg)
        self.quant_conv = CausalConv3d(2 * cfg.latent_embed_dim, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = CausalConv3d(cfg.embed_dim, cfg.latent_embed_dim, 1)
        self.decoder = TemporalDecoder(cfg)

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of one independently encoded clip."""
        return -(-num_frames // self.config.time_factor)

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B,C,F,h,w]`` → mean ‖ log-variance ``[B,2·embed,ceil(F/factor),h,w]``."""
        pad = front_padding(x.shape[2], self.config.time_factor)
        if pad:
            x = F.pad(x, (0, 0, 0, 0, pad, 0))
        return self.quant_conv(self.encoder(x))

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``z [B,embed,L,h,w]`` → ``[B,C,num_frames,h,w]`` (the causal front padding dropped)."""
        x = self.decoder(self.post_quant_conv(z))
        return x[:, :, front_padding(num_frames, self.config.time_factor):]
