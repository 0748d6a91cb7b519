"""Per-frame 2-D VAE with the architecture and parameter names of diffusers' ``AutoencoderKL``.

Open-Sora 1.2 uses the SDXL VAE architecture (four down/up levels, one
single-head attention in each mid block, GroupNorm eps 1e-6), fine-tuned
together with its temporal VAE. Module names follow the diffusers key layout
(``encoder.down_blocks.0.resnets.0.conv1.weight`` …) so the published weights
load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2d, GroupNorm, Linear, check_groups

EPS = 1e-6


@dataclass(frozen=True)
class SpatialVAEConfig:
    """Fields of a diffusers ``AutoencoderKL`` config that shape the network."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    mid_block_attention: bool = True
    use_quant_conv: bool = True

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        if not self.block_out_channels or self.layers_per_block < 1:
            raise ValueError("spatial VAE: block_out_channels must be non-empty and layers_per_block >= 1")
        for c in self.block_out_channels:
            check_groups(c, self.norm_num_groups, "spatial VAE (norm_num_groups)")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin, eps=EPS)
        self.conv1 = Conv2d(cin, cout, 3, padding=1)
        self.norm2 = GroupNorm(groups, cout, eps=EPS)
        self.conv2 = Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SelfAttention2D(nn.Module):
    """Single-head self-attention over all pixels with a residual; softmax in float32."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = GroupNorm(groups, channels, eps=EPS)
        self.to_q = Linear(channels, channels)
        self.to_k = Linear(channels, channels)
        self.to_v = Linear(channels, channels)
        self.to_out = nn.ModuleList([Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, v = (proj(tokens).unsqueeze(1).float() for proj in (self.to_q, self.to_k, self.to_v))
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1).to(x.dtype)
        out = self.to_out[0](attended).transpose(1, 2).reshape(b, c, h, w)
        return out + x


class MidBlock2D(nn.Module):
    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([SelfAttention2D(channels, groups)] if attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class Downsample2D(nn.Module):
    """Zero-pad right and bottom by one pixel, then a stride-2 3×3 conv: H → floor(H/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(layers)]
        )
        self.downsamplers = nn.ModuleList([Downsample2D(cout)] if downsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resnets:
            x = block(x)
        for down in self.downsamplers:
            x = down(x)
        return x


class UpBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, groups) for i in range(layers)]
        )
        self.upsamplers = nn.ModuleList([Upsample2D(cout)] if upsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resnets:
            x = block(x)
        for up in self.upsamplers:
            x = up(x)
        return x


class Encoder2D(nn.Module):
    def __init__(self, cfg: SpatialVAEConfig):
        super().__init__()
        chans, groups = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        last = len(chans) - 1
        self.down_blocks = nn.ModuleList(
            DownBlock2D(chans[max(i - 1, 0)], c, cfg.layers_per_block, groups, downsample=i < last)
            for i, c in enumerate(chans)
        )
        self.mid_block = MidBlock2D(chans[-1], groups, cfg.mid_block_attention)
        self.conv_norm_out = GroupNorm(groups, chans[-1], eps=EPS)
        self.conv_out = Conv2d(chans[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder2D(nn.Module):
    def __init__(self, cfg: SpatialVAEConfig):
        super().__init__()
        chans, groups = tuple(reversed(cfg.block_out_channels)), cfg.norm_num_groups
        self.conv_in = Conv2d(cfg.latent_channels, chans[0], 3, padding=1)
        self.mid_block = MidBlock2D(chans[0], groups, cfg.mid_block_attention)
        last = len(chans) - 1
        self.up_blocks = nn.ModuleList(
            UpBlock2D(chans[max(i - 1, 0)], c, cfg.layers_per_block + 1, groups, upsample=i < last)
            for i, c in enumerate(chans)
        )
        self.conv_norm_out = GroupNorm(groups, chans[-1], eps=EPS)
        self.conv_out = Conv2d(chans[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL2D(nn.Module):
    """Image VAE: ``moments(x)`` gives mean ‖ log-variance per pixel of the latent; ``decode(z)`` the image."""

    def __init__(self, cfg: SpatialVAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder2D(cfg)
        self.decoder = Decoder2D(cfg)
        lc = cfg.latent_channels
        self.quant_conv = Conv2d(2 * lc, 2 * lc, 1) if cfg.use_quant_conv else None
        self.post_quant_conv = Conv2d(lc, lc, 1) if cfg.use_quant_conv else None

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        return self.quant_conv(h) if self.quant_conv is not None else h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


class SpatialVAE(nn.Module):
    """Holder whose ``module`` attribute gives the published ``spatial_vae.module.*`` key prefix."""

    def __init__(self, cfg: SpatialVAEConfig):
        super().__init__()
        self.module = AutoencoderKL2D(cfg)
