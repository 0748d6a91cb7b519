"""STDiT3: Open-Sora 1.2's spatial-temporal diffusion transformer.

``depth`` pairs of blocks, strictly alternating: a spatial block (attention
among the patches of one frame) then a temporal block (attention along time
for one patch position, with rotary positions). Each block has adaLN-single
modulation from the timestep, q/k-normalised self-attention, cross-attention
to the caption tokens and an MLP. Frames marked as clean conditions in
``x_mask`` use the modulation of timestep 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from einops import rearrange
from torch import nn

from ..attention import KeyLengths, check_backend
from .layers import (
    CaptionEmbedder,
    CrossAttention,
    FinalLayer,
    Mlp,
    PatchEmbed3D,
    PositionEmbedding2D,
    RotaryEmbedding,
    ScalarEmbedder,
    SelfAttention,
    layer_norm,
    t2i_modulate,
)


@dataclass
class STDiT3Config:
    depth: int = 28
    hidden_size: int = 1152
    num_heads: int = 16
    patch_size: tuple = (1, 2, 2)
    in_channels: int = 4
    caption_channels: int = 4096
    model_max_length: int = 300
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    pred_sigma: bool = True
    input_sq_size: int = 512
    context_channels: int = 0  # per-clip input channels given with every frame but never generated (0 in Open-Sora)
    pooled_caption: bool = False  # the caption's mean also modulates every block, as the timestep does (not in Open-Sora)
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @classmethod
    def from_dict(cls, data: dict) -> "STDiT3Config":
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known}, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data["patch_size"] = list(self.patch_size)
        return data


# The published size (hpcai-tech/OpenSora-STDiT-v3).
STDIT3_XL_2 = dict(depth=28, hidden_size=1152, num_heads=16, patch_size=(1, 2, 2))


class STDiT3Block(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qk_norm: bool, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.attn = SelfAttention(hidden_size, num_heads, qk_norm)
        self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(self, x, text, text_lens, t_mod, t0_mod, frame_mask, frames: int, rope, backend: str):
        """``x``: ``[B, T, S, C]``; ``t_mod``/``t0_mod``: ``[B, 6C]``; ``frame_mask``: ``[B, T]`` or None."""
        batch, _, patches, channels = x.shape
        mods = (self.scale_shift_table[None] + t_mod.view(batch, 6, channels))[:, :, None, None, :]  # [B,6,1,1,C]
        if frame_mask is not None:
            mods0 = (self.scale_shift_table[None] + t0_mod.view(batch, 6, channels))[:, :, None, None, :]
            mods = torch.where(frame_mask[:, None, :, None, None], mods, mods0)  # [B,6,T,1,C]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.unbind(1)

        h = t2i_modulate(layer_norm(x), shift_msa, scale_msa)
        if self.temporal:
            h = rearrange(h, "b t s c -> (b s) t c")
            h = self.attn(h, rope, backend)
            h = rearrange(h, "(b s) t c -> b t s c", b=batch)
        else:
            h = self.attn(h.reshape(-1, patches, channels), None, backend).view_as(x)
        x = torch.addcmul(x, gate_msa, h)

        x = x + self.cross_attn(x.reshape(batch, -1, channels), text, text_lens, backend).view_as(x)

        h = self.mlp(t2i_modulate(layer_norm(x), shift_mlp, scale_mlp))
        return torch.addcmul(x, gate_mlp, h)


class STDiT3(nn.Module):
    def __init__(self, config: STDiT3Config):
        super().__init__()
        self.config = config
        c = config.hidden_size
        self.x_embedder = PatchEmbed3D(config.patch_size, config.in_channels + config.context_channels, c)
        self.t_embedder = ScalarEmbedder(c)
        self.fps_embedder = ScalarEmbedder(c)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        if config.pooled_caption:
            self.y_pooler = Mlp(config.caption_channels, c, c)
        self.y_embedder = CaptionEmbedder(config.caption_channels, c, config.model_max_length)
        self.pos_embed = PositionEmbedding2D(c)
        self.rope = RotaryEmbedding(config.head_dim)
        block = lambda temporal: STDiT3Block(c, config.num_heads, config.mlp_ratio, config.qk_norm, temporal)  # noqa: E731
        self.spatial_blocks = nn.ModuleList(block(False) for _ in range(config.depth))
        self.temporal_blocks = nn.ModuleList(block(True) for _ in range(config.depth))
        self.final_layer = FinalLayer(c, math.prod(config.patch_size), config.out_channels)
        self.attention_backend = "sdpa"

    # -- settings -------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.x_embedder.proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.x_embedder.proj.weight.device

    def set_attention_backend(self, name: str) -> "STDiT3":
        """``auto`` / ``sdpa`` / ``xformers`` / ``math``; checked against the current device."""
        self.attention_backend = check_backend(name, self.device if self.device.type != "meta" else None)
        return self

    def initialize_weights(self) -> "STDiT3":
        """Upstream's training initialisation (used when training a model from scratch)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fps_embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(self.fps_embedder.mlp[0].bias)
        nn.init.zeros_(self.fps_embedder.mlp[2].weight)
        nn.init.zeros_(self.fps_embedder.mlp[2].bias)
        if self.config.pooled_caption:  # starts as no change to the timestep's modulation
            nn.init.zeros_(self.y_pooler.fc2.weight)
        for block in self.temporal_blocks:
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.mlp.fc2.weight)
        return self

    # -- inputs ---------------------------------------------------------------
    def encode_text(self, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, KeyLengths]:
        """``y`` ``[B, 1, L, Cy]`` (+ mask ``[b, L]``, tiled to B) -> packed ``[1, sum(L_i), C]`` and its
        :class:`KeyLengths` (built once here for all the cross-attention calls of the forward)."""
        if y.dim() == 4:
            y = y.squeeze(1)
        batch, length, _ = y.shape
        if mask is None:
            rows, lens = y.reshape(batch * length, -1), [length] * batch
        else:
            if mask.dim() == 3:
                mask = mask.squeeze(1)
            if mask.shape[0] != batch:
                mask = mask.repeat(batch // mask.shape[0], 1)
            keep = mask != 0
            lens = keep.sum(dim=1).tolist()
            rows = y[keep]
        return self.y_embedder(rows)[None], KeyLengths.build(lens, y.device)

    def _pooled_caption(self, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The mean of the valid caption tokens ``[B, 1, L, Cy]`` through ``y_pooler`` -> ``[B, C]``."""
        y = y.squeeze(1)
        if mask is None:
            mean = y.mean(dim=1)
        else:
            keep = mask.reshape(-1, mask.shape[-1]).to(y.dtype)
            keep = keep.repeat(y.shape[0] // keep.shape[0], 1)[:, :, None]
            mean = (y * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
        return self.y_pooler(mean)

    def _resolution_scale(self, height, width) -> float:
        h = float(height[0]) if torch.is_tensor(height) else float(height)
        w = float(width[0]) if torch.is_tensor(width) else float(width)
        return (h * w) ** 0.5 / self.config.input_sq_size

    @staticmethod
    def _per_sample(values, batch: int, device) -> torch.Tensor:
        values = torch.as_tensor(values, device=device)
        values = values.reshape(-1)
        if values.numel() != batch:
            values = values.repeat(batch // values.numel())
        return values

    def _context(self, context, x: torch.Tensor) -> torch.Tensor:
        want = self.config.context_channels
        if context is None or context.dim() != 5 or context.shape[1] != want or context.shape[3:] != x.shape[3:] \
                or context.shape[0] not in (1, x.shape[0]):
            got = None if context is None else list(context.shape)
            raise ValueError(f"this model needs a context of [batch, {want}, 1, {x.shape[3]}, {x.shape[4]}] beside "
                             f"its latents; got {got}")
        return context.to(x.dtype).expand(x.shape[0], -1, x.shape[2], -1, -1)

    # -- forward --------------------------------------------------------------
    def forward(self, x, timestep, y, mask=None, x_mask=None, fps=None, height=None, width=None, context=None,
                **_ignored):
        """Predict ``[B, out_channels, T, H, W]`` (float32) for latents ``x`` ``[B, C_in, T, H, W]``.

        ``timestep`` ``[B]`` in [0, 1000]; ``y`` ``[B, 1, L, caption_channels]``;
        ``mask`` ``[b, L]`` valid text tokens; ``x_mask`` ``[B, T]`` True = frame
        denoised at ``timestep``, False = clean condition (timestep-0
        modulation); ``fps``, ``height``, ``width``: per sample (pixel sizes);
        ``context`` ``[B or 1, context_channels, 1, H, W]``: what every frame
        sees beside its latents (a model with ``context_channels``).
        """
        dtype = self.dtype
        batch, _, frames_in, height_in, width_in = x.shape
        x = x.to(dtype)
        if self.config.context_channels:
            x = torch.cat([x, self._context(context, x)], dim=1)
        timestep = self._per_sample(timestep, batch, x.device).to(dtype)
        y = y.to(dtype)
        pt, ph, pw = self.config.patch_size
        frames, hp, wp = -(-frames_in // pt), -(-height_in // ph), -(-width_in // pw)
        patches = hp * wp

        if height is None or width is None:
            height, width = height_in * 8, width_in * 8
        scale = self._resolution_scale(height, width)
        pos = self.pos_embed(hp, wp, scale, round(patches**0.5), x.device, dtype)

        fps = self._per_sample(24.0 if fps is None else fps, batch, x.device)
        fps_emb = self.fps_embedder(fps)
        if self.config.pooled_caption:
            fps_emb = fps_emb + self._pooled_caption(y, mask)
        t = self.t_embedder(timestep) + fps_emb
        t_mod = self.t_block(t)

        frame_mask = None if x_mask is None else x_mask.to(device=x.device, dtype=torch.bool)
        if frame_mask is not None and bool(frame_mask.all()):
            frame_mask = None  # every frame uses the real timestep: the timestep-0 branch has no effect
        t0 = t0_mod = None
        if frame_mask is not None:
            t0 = self.t_embedder(torch.zeros_like(timestep)) + fps_emb
            t0_mod = self.t_block(t0)

        text, text_lens = self.encode_text(y, mask)

        h = self.x_embedder(x).view(batch, frames, patches, -1) + pos[:, None]
        backend = self.attention_backend
        for spatial, temporal in zip(self.spatial_blocks, self.temporal_blocks):
            h = spatial(h, text, text_lens, t_mod, t0_mod, frame_mask, frames, None, backend)
            h = temporal(h, text, text_lens, t_mod, t0_mod, frame_mask, frames, self.rope, backend)

        out = self.final_layer(h.view(batch, frames * patches, -1), t, t0, frame_mask, frames)
        out = rearrange(
            out,
            "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
            t=frames, h=hp, w=wp, pt=pt, ph=ph, pw=pw,
        )
        return out[:, :, :frames_in, :height_in, :width_in].float()
