"""Building blocks of the STDiT3 denoiser.

Module and parameter names mirror the published Open-Sora 1.2 checkpoint, so
its state dict loads without renaming. Numerics follow upstream (see the
comments marked "upstream" where an ordering or dtype choice matters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import KeyLengths, attention

LAYERNORM_EPS = 1e-6


def t2i_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` in one fused pass."""
    return torch.addcmul(shift, x, 1 + scale)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters (STDiT3's norm1/norm2/norm_final)."""
    return F.layer_norm(x, x.shape[-1:], eps=LAYERNORM_EPS)


def sinusoid(values: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """GLIDE timestep embedding: ``cos(v*f) | sin(v*f)`` (cos first), in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    args = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class RMSNorm(nn.Module):
    """``weight * normalise(x)``, normalised in float32 and cast back before the weight."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ScalarEmbedder(nn.Module):
    """Sinusoid of a scalar (timestep or fps) -> Linear -> SiLU -> Linear."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        weight = self.mlp[0].weight
        return self.mlp(sinusoid(values, self.frequency_dim).to(weight.dtype))


class CaptionEmbedder(nn.Module):
    """Projects text-encoder features to the hidden size; holds the learned null caption.

    ``y_embedding`` (``[max_length, caption_channels]``) is the unconditional
    caption in text-encoder space, used for classifier-free guidance.
    """

    def __init__(self, caption_channels: int, hidden_size: int, max_length: int):
        super().__init__()
        self.y_proj = Mlp(caption_channels, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.randn(max_length, caption_channels) / caption_channels**0.5)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.y_proj(y)


class PatchEmbed3D(nn.Module):
    """Conv3d patchify; pads T/H/W at the end up to a multiple of the patch size."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch_size
        t, h, w = x.shape[-3:]
        pad = ((-w) % pw, (-h) % ph, (-t) % pt)
        if any(pad):
            x = F.pad(x, (0, pad[0], 0, pad[1], 0, pad[2]))
        x = self.proj(x)  # [B, C, T', H', W']
        return x.flatten(2).transpose(1, 2)  # [B, T'*H'*W', C], (T, H, W) order


class PositionEmbedding2D(nn.Module):
    """Fixed 2-D sin/cos embedding of the patch grid, rescaled by resolution.

    The first half of the channels encodes the column (width) coordinate, the
    second half the row; within each half ``sin`` comes before ``cos``. Grid
    coordinates are ``index / scale * base_size / n``.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        if hidden_size % 4:
            raise ValueError(f"hidden size {hidden_size} must be divisible by 4 for the 2-D position embedding")
        self.hidden_size = hidden_size
        self._cache: dict = {}

    def _axis(self, coords: torch.Tensor) -> torch.Tensor:
        half = self.hidden_size // 2
        inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2, device=coords.device).float() / half))
        angles = coords[:, None] * inv_freq[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, hp: int, wp: int, scale: float, base_size: int, device, dtype) -> torch.Tensor:
        key = (hp, wp, scale, base_size, torch.device(device), dtype)
        cached = self._cache.get(key)
        if cached is None:
            rows = torch.arange(hp, device=device) / scale  # upstream: divide, then multiply
            cols = torch.arange(wp, device=device) / scale
            rows = rows * (base_size / hp)
            cols = cols * (base_size / wp)
            col_grid = cols[None, :].expand(hp, wp).reshape(-1)
            row_grid = rows[:, None].expand(hp, wp).reshape(-1)
            cached = torch.cat([self._axis(col_grid), self._axis(row_grid)], dim=-1)[None].to(dtype)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = cached
        return cached


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over the token axis, adjacent channel pairs rotated together.

    ``freqs`` is a non-trainable parameter (as in the published checkpoint), so
    it follows the model dtype; angles, cos/sin are evaluated in that dtype like
    upstream does.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.freqs = nn.Parameter(self.default_freqs(head_dim, theta), requires_grad=False)

    @staticmethod
    def default_freqs(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
        return 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` of shape ``[batch, tokens, heads, head_dim]`` by token position."""
        freqs = self.freqs
        positions = torch.arange(x.shape[1], device=x.device, dtype=x.dtype).to(freqs.dtype)
        angles = torch.repeat_interleave(positions[:, None] * freqs[None], 2, dim=-1)  # [L, D]
        cos = angles.cos()[None, :, None, :]
        sin = angles.sin()[None, :, None, :]
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return (x * cos + rotated * sin).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, qk_norm: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding | None, backend: str) -> torch.Tensor:
        batch, tokens, channels = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim).unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:  # upstream: rotary after the q/k norm
            q, k = rope(q), rope(k)
        out = attention(q, k, v, backend=backend)
        return self.proj(out.reshape(batch, tokens, channels))


class CrossAttention(nn.Module):
    """Video tokens attend to their own sample's text tokens (packed, variable length)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_linear = nn.Linear(hidden_size, hidden_size)
        self.kv_linear = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_lens: KeyLengths, backend: str) -> torch.Tensor:
        batch, tokens, channels = x.shape
        q = self.q_linear(x).view(batch, tokens, self.num_heads, self.head_dim)
        k, v = self.kv_linear(text).view(1, text.shape[1], 2, self.num_heads, self.head_dim).unbind(2)
        out = attention(q, k, v, backend=backend, kv_lens=text_lens)
        return self.proj(out.reshape(batch, tokens, channels))


class FinalLayer(nn.Module):
    """LayerNorm -> modulation by the pre-``t_block`` embedding -> linear to patch pixels."""

    def __init__(self, hidden_size: int, patch_volume: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, patch_volume * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor, t0: torch.Tensor | None, frame_mask, frames: int):
        batch, tokens, channels = x.shape
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        out = t2i_modulate(layer_norm(x), shift, scale)
        if frame_mask is not None:
            # upstream quirk: the timestep-0 branch re-normalises the already modulated tensor
            shift0, scale0 = (self.scale_shift_table[None] + t0[:, None]).chunk(2, dim=1)
            out0 = t2i_modulate(layer_norm(out), shift0, scale0)
            out = torch.where(
                frame_mask[:, :, None, None], out.view(batch, frames, -1, channels), out0.view(batch, frames, -1, channels)
            ).view(batch, tokens, channels)
        return self.linear(out)
