"""Open-Sora 1.2's video VAE: the per-frame 2-D VAE chained with the causal temporal VAE.

Encode ``[B,3,F,H,W]`` in [-1, 1] → ``[B,4,L(F),H/8,W/8]``:
frames go through the 2-D VAE in micro-batches (latent × 0.18215, the SD1.x
factor upstream hard-codes), then clips of ``micro_frame_size`` (17) frames go
through the temporal VAE independently (each padded at the front to a multiple
of 4), then ``(z - shift) / scale`` per channel. Decode reverses this: chunks of
``ceil(17/4) = 5`` latent frames → temporal decoder → 17 frames (fewer for the
last chunk) → ``/ 0.18215`` → 2-D decoder per frame. The output is not clamped.

Both directions work one 17-frame chunk at a time and write into a
preallocated result, so working memory depends on the chunk (and, with spatial
tiling, on the tile), not on the clip length; ``iter_decode`` yields the
chunks instead, for callers that stream frames out. Chunks are independent
upstream too, so chunking changes no numbers.

Encoding returns the posterior means by default (deterministic); upstream
samples both posteriors, available with ``sample=True``.

Results come back in the input's dtype and on its device (``out_device``
overrides the device); the model itself computes in the dtype it was loaded
in. In float16, a stage whose result is not finite is computed again in
float32 (weights cast layer by layer, no second copy) and stays in float32
after that.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from einops import rearrange
from torch import nn

from ..conditioning import TemporalLayout
from .layers import diagonal_gaussian
from .spatial import SpatialVAE, SpatialVAEConfig
from .temporal import TemporalVAE, TemporalVAEConfig
from .tiling import SpatialTiling, tiled_apply

log = logging.getLogger(__name__)

SPATIAL_SCALING = 0.18215  # upstream's hard-coded 2-D latent factor (not the SDXL config's 0.13025)
DEFAULT_SHIFT = (-0.10, 0.34, 0.27, 0.98)
DEFAULT_SCALE = (3.85, 2.32, 2.33, 3.06)
DEFAULT_MICRO_FRAME_SIZE = 17
DEFAULT_MICRO_BATCH_SIZE = 4

#: Decode working memory, in copies of the widest activation a stage holds (measured, see
#: :meth:`OpenSoraVAE.decode_working_bytes`): a float32 2-D decoder keeps about three such tensors alive
#: (input, normalised and activated, convolved: 3.0 measured, counted 3.5), a float16/bfloat16 one about two in
#: its own dtype plus the float32 input and output of its group normalisation (10 bytes per element measured,
#: counted 12). The temporal decoder's padded causal convolutions keep more (5.2 copies in float32, counted 6).
SPATIAL_DECODE_COPIES = 3.5
TEMPORAL_DECODE_COPIES = 6
LOW_PRECISION_NORM_BYTES = 8
#: Convolution library workspace and first-use buffers of a decode, besides the activations.
DECODE_WORKSPACE_BYTES = 128 * 2**20
#: Tile edges (pixels) that memory checks suggest when a decode does not fit (the largest that would).
SUGGESTED_TILES = (512, 384, 256)


@dataclass(frozen=True)
class VideoVAEConfig:
    spatial: SpatialVAEConfig = field(default_factory=SpatialVAEConfig)
    temporal: TemporalVAEConfig = field(default_factory=TemporalVAEConfig)
    micro_frame_size: int = DEFAULT_MICRO_FRAME_SIZE
    shift: tuple[float, ...] = DEFAULT_SHIFT
    scale: tuple[float, ...] = DEFAULT_SCALE

    def __post_init__(self):
        object.__setattr__(self, "shift", tuple(float(v) for v in self.shift))
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        if self.spatial.latent_channels != self.temporal.in_out_channels:
            raise ValueError(
                f"the 2-D VAE has {self.spatial.latent_channels} latent channels but the temporal VAE "
                f"takes {self.temporal.in_out_channels}"
            )
        if not (len(self.shift) == len(self.scale) == self.temporal.embed_dim):
            raise ValueError(f"shift/scale need {self.temporal.embed_dim} values (one per latent channel)")
        if self.micro_frame_size < 1:
            raise ValueError("micro_frame_size must be >= 1")


def _spatial_decode_width(cfg: SpatialVAEConfig) -> float:
    """Channels of the 2-D decoder's largest activation per output pixel (256 for the published layout: the
    upsampler into full resolution and the first block after it)."""
    chans = tuple(reversed(cfg.block_out_channels))
    last = len(chans) - 1
    widest = float(chans[0]) / 4**last  # conv_in and the mid block, at the latent resolution
    for i, c in enumerate(chans):
        area = 4.0 ** (i - last)  # of this level, relative to the output
        widest = max(widest, chans[max(i - 1, 0)] * area, c * area, c * area * 4 if i < last else 0.0)
    return widest


def _temporal_decode_elements(cfg: TemporalVAEConfig, latent_frames: int) -> int:
    """Channels x frames of the temporal decoder's largest activation per latent pixel, for one chunk of
    ``latent_frames`` (5120 for 5 with the published layout: 256 channels at 20 frames)."""
    widths = [cfg.filters * m for m in cfg.channel_multipliers]
    t = int(latent_frames)
    widest = max(cfg.latent_embed_dim, widths[-1]) * t
    for i in reversed(range(len(widths))):
        widest = max(widest, widths[i] * t)
        if i > 0 and cfg.temporal_downsample[i - 1]:
            widest = max(widest, widths[i] * 2 * t)  # the channel-doubling conv before the depth-to-time shuffle
            t *= 2
    return widest


def _float_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.float32


class OpenSoraVAE(nn.Module):
    """Video VAE of Open-Sora 1.2 (``hpcai-tech/OpenSora-VAE-v1.2``)."""

    def __init__(
        self,
        config: VideoVAEConfig | None = None,
        *,
        micro_batch_size: int = DEFAULT_MICRO_BATCH_SIZE,
        tiling: SpatialTiling | int | None = None,
    ):
        super().__init__()
        config = config or VideoVAEConfig()
        if micro_batch_size < 1:
            raise ValueError("micro_batch_size must be >= 1")
        self.config = config
        self.spatial_vae = SpatialVAE(config.spatial)
        self.temporal_vae = TemporalVAE(config.temporal)
        self.register_buffer("scale", torch.tensor(config.scale, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("shift", torch.tensor(config.shift, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.micro_batch_size = int(micro_batch_size)
        self.micro_frame_size = config.micro_frame_size
        self.tiling = SpatialTiling.coerce(tiling)
        self.latent_channels = config.temporal.embed_dim
        self.spatial_factor = config.spatial.downsample_factor
        self.fp32_fallbacks = 0  # float16 overflows seen (each switches its stage to float32)
        self._fp32_stages: set[str] = set()

    # -- sizes -----------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.temporal_vae.decoder.conv_out.conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.temporal_vae.decoder.conv_out.conv.weight.device

    @property
    def micro_latent_size(self) -> int:
        """Latent frames of one full ``micro_frame_size`` chunk (5 for 17)."""
        return self.temporal_vae.latent_frames(self.micro_frame_size)

    @property
    def layout(self) -> TemporalLayout:
        """Chunks of ``micro_frame_size`` frames, each encoded on its own (17 frames -> 5 latent frames)."""
        frames = int(self.micro_frame_size)
        latents = int(self.latent_frames(frames))
        return TemporalLayout(frames_per_chunk=frames, temporal_factor=(frames - 1) // (latents - 1) if latents > 1 else 1)

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` pixel frames: 1→1, 11→3, 17→5, 22→7, 51→15."""
        return self._chunks(num_frames)[-1][3]

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.spatial_factor, width // self.spatial_factor

    def _chunks(self, num_frames: int) -> list[tuple[int, int, int, int]]:
        """``(first frame, end frame, first latent, end latent)`` of each independently coded chunk."""
        try:
            count = operator.index(num_frames)
        except TypeError:
            count = 0
        if isinstance(num_frames, bool) or count < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        num_frames = count
        chunks, latent = [], 0
        for f0 in range(0, num_frames, self.micro_frame_size):
            f1 = min(f0 + self.micro_frame_size, num_frames)
            n = self.temporal_vae.latent_frames(f1 - f0)
            chunks.append((f0, f1, latent, latent + n))
            latent += n
        return chunks

    # -- memory ----------------------------------------------------------------
    tile_setting = "tile_size on the CharMotion VAE Loader"  #: where a user turns spatial tiling on (error messages)
    suggested_tiles = SUGGESTED_TILES

    def decode_working_bytes(self, height: int, width: int, *, frames: int, batch: int = 1,
                             tile: SpatialTiling | int | None | bool = True, dtype: torch.dtype | None = None) -> int:
        """Peak working memory (bytes) of decoding ``batch`` clips of ``frames`` frames at ``height`` x ``width``
        pixels, besides the weights and the finished video (which grows with the frame count; this does not).

        The decode runs one chunk of ``micro_frame_size`` frames at a time in two stages that are never alive
        together: the temporal decoder on the whole chunk at the latent resolution, then the 2-D decoder on
        ``micro_batch_size`` frames at a time, whose full-resolution feature maps (256 channels for the
        published layout) make it the larger one. Spatial tiling bounds the 2-D stage by the tile's area, not
        the temporal stage. ``tile``: True for this VAE's own tiling, else a tiling to estimate with; ``dtype``:
        the dtype it computes in (its own by default). The constants were measured (peak resident memory of a
        CPU decode, random weights, published layout) and rounded up; see ``benchmarks/bench_vae.py``.
        """
        tiling = self.tiling if tile is True else SpatialTiling.coerce(tile or None)
        itemsize = (dtype or self.dtype).itemsize
        low = itemsize < 4
        spatial_element = LOW_PRECISION_NORM_BYTES + 2 * itemsize if low else SPATIAL_DECODE_COPIES * itemsize
        temporal_element = LOW_PRECISION_NORM_BYTES + 3 * itemsize if low else TEMPORAL_DECODE_COPIES * itemsize
        f = self.spatial_factor
        lat_h, lat_w = max(1, int(height) // f), max(1, int(width) // f)
        pixels = lat_h * lat_w * f * f
        batch, chunk = max(1, int(batch)), min(int(frames), self.micro_frame_size)
        in_flight = min(self.micro_batch_size, batch * chunk)
        temporal = (batch * lat_h * lat_w * temporal_element
                    * _temporal_decode_elements(self.config.temporal, self.temporal_vae.latent_frames(chunk)))
        tile_pixels, blend = pixels, 0
        if tiling is not None:
            side, _overlap = tiling.in_latents(f)
            if side < lat_h or side < lat_w:
                tile_pixels = min(side, lat_h) * min(side, lat_w) * f * f
                # float32 sum and weights of the whole frames, their quotient and the tile's weighted copy
                blend = pixels * (in_flight * 3 * 4 * 3 + 4)
        spatial = in_flight * tile_pixels * _spatial_decode_width(self.config.spatial) * spatial_element + blend
        # the chunk's frames: the 2-D decoder's pieces, joined, then converted for the output
        frames_out = batch * chunk * pixels * 3 * (2 * itemsize + 4)
        return int(DECODE_WORKSPACE_BYTES + max(spatial, temporal) + frames_out)

    # -- float16 guard ---------------------------------------------------------
    def _guarded(self, stage: str, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run ``fn``; in float16, redo it in float32 if the result is not finite.

        A stage that overflowed once runs in float32 from then on (same model,
        same kind of content), so the float16 attempt is not wasted every time.
        """
        if x.dtype != torch.float16:
            return fn(x)
        if stage not in self._fp32_stages:
            out = fn(x)
            if torch.isfinite(out).all():
                return out
            if not self._fp32_stages:
                log.warning("float16 overflow in the video VAE (%s); computing that stage in float32 from now on", stage)
            self._fp32_stages.add(stage)
            self.fp32_fallbacks += 1
        out = fn(x.float())
        half = out.to(torch.float16)
        return half if torch.isfinite(half).all() else out

    # -- spatial stage ---------------------------------------------------------
    def _spatial(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, encode: bool) -> torch.Tensor:
        """Run the 2-D VAE's ``fn`` on frames (encode) or latents (decode), in spatial tiles when tiling is on."""
        if self.tiling is None:
            return fn(x)
        tile, overlap = self.tiling.in_latents(self.spatial_factor)
        f = self.spatial_factor
        grid = self.latent_size(*x.shape[-2:]) if encode else tuple(x.shape[-2:])
        return tiled_apply(fn, x, grid=grid, tile=tile, overlap=overlap,
                           in_scale=f if encode else 1, out_scale=1 if encode else f)

    def _spatial_moments(self, frames: torch.Tensor) -> torch.Tensor:
        return self._spatial(self.spatial_vae.module.moments, frames, encode=True)

    def _spatial_decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._spatial(self.spatial_vae.module.decode, latents, encode=False)

    def _encode_frames(self, clip: torch.Tensor, sample: bool, generator: torch.Generator | None) -> torch.Tensor:
        b = clip.shape[0]
        frames = rearrange(clip, "b c t h w -> (b t) c h w")
        pieces = []
        for i in range(0, frames.shape[0], self.micro_batch_size):
            moments = self._guarded("2-D encoder", self._spatial_moments, frames[i:i + self.micro_batch_size])
            pieces.append(diagonal_gaussian(moments, sample=sample, generator=generator) * SPATIAL_SCALING)
        return rearrange(torch.cat(pieces), "(b t) c h w -> b c t h w", b=b)

    def _decode_frames(self, latents: torch.Tensor) -> torch.Tensor:
        b = latents.shape[0]
        frames = rearrange(latents, "b c t h w -> (b t) c h w")
        pieces = [
            self._guarded("2-D decoder", self._spatial_decode, frames[i:i + self.micro_batch_size] / SPATIAL_SCALING)
            for i in range(0, frames.shape[0], self.micro_batch_size)
        ]
        return rearrange(torch.cat(pieces), "(b t) c h w -> b c t h w", b=b)

    # -- public API ------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self,
        x: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        out_device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``x [B,3,F,H,W]`` in [-1, 1] → normalised latents ``[B,4,L(F),H/8,W/8]``.

        Posterior means by default; ``sample=True`` draws from both posteriors
        (as upstream does) with ``generator`` (CPU noise, so seeds agree across devices).
        """
        self._check_video(x)
        b, _, f, h, w = x.shape
        lh, lw = self.latent_size(h, w)
        chunks = self._chunks(f)
        out = torch.empty(
            (b, self.latent_channels, chunks[-1][3], lh, lw),
            dtype=_float_dtype(x), device=out_device if out_device is not None else x.device,
        )
        for f0, f1, l0, l1 in chunks:
            clip = x[:, :, f0:f1].to(device=self.device, dtype=self.dtype)
            latents = self._encode_frames(clip, sample, generator)
            moments = self._guarded("temporal encoder", self.temporal_vae.moments, latents)
            z = diagonal_gaussian(moments, sample=sample, generator=generator)
            out[:, :, l0:l1] = (z.float() - self.shift) / self.scale
        return out

    @torch.no_grad()
    def iter_decode(
        self, z: torch.Tensor, num_frames: int, *, out_device: torch.device | str | None = None
    ) -> Iterator[torch.Tensor]:
        """Yield the decoded clip chunk by chunk (``[B,3,≤17,8h,8w]`` each, in order)."""
        chunks = self._check_latents(z, num_frames)
        device = out_device if out_device is not None else z.device
        dtype = _float_dtype(z)
        for f0, f1, l0, l1 in chunks:
            zc = z[:, :, l0:l1].to(device=self.device, dtype=torch.float32) * self.scale + self.shift
            latents = self._guarded("temporal decoder", lambda t: self.temporal_vae.decode(t, f1 - f0), zc.to(self.dtype))
            yield self._decode_frames(latents).to(device=device, dtype=dtype)

    def decode(
        self,
        z: torch.Tensor,
        num_frames: int,
        *,
        callback: Callable[[int, int], None] | None = None,
        out_device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Normalised latents ``[B,4,L,h,w]`` → pixels ``[B,3,num_frames,8h,8w]`` (not clamped).

        ``callback(done, total)`` runs after each chunk; raising from it cancels the decode.
        """
        chunks = self._check_latents(z, num_frames)
        b, _, _, h, w = z.shape
        f = self.spatial_factor
        out = torch.empty(
            (b, self.config.spatial.out_channels, num_frames, h * f, w * f),
            dtype=_float_dtype(z), device=out_device if out_device is not None else z.device,
        )
        for i, ((f0, f1, _, _), frames) in enumerate(zip(chunks, self.iter_decode(z, num_frames, out_device=out.device))):
            out[:, :, f0:f1] = frames
            del frames
            if callback is not None:
                callback(i + 1, len(chunks))
        return out

    # -- validation ------------------------------------------------------------
    def _check_video(self, x: torch.Tensor) -> None:
        channels = self.config.spatial.in_channels
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            hint = " (for images, add a frame axis: x.unsqueeze(2))" if isinstance(x, torch.Tensor) and x.ndim == 4 else ""
            raise ValueError(f"the video VAE encodes [B, {channels}, F, H, W] tensors, got {shape}{hint}")
        if x.shape[1] != channels:
            raise ValueError(f"the video VAE expects {channels} colour channels in dim 1, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError("the video VAE encodes float pixels in [-1, 1]; convert integer images first")
        if x.shape[2] < 1 or min(x.shape[-2:]) < self.spatial_factor:
            raise ValueError(
                f"frames of {x.shape[-2]}×{x.shape[-1]} pixels are too small for the video VAE "
                f"(at least {self.spatial_factor}×{self.spatial_factor} and one frame)"
            )

    def _check_latents(self, z: torch.Tensor, num_frames: int) -> list[tuple[int, int, int, int]]:
        if not isinstance(z, torch.Tensor) or z.ndim != 5 or z.shape[1] != self.latent_channels:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"the video VAE decodes [B, {self.latent_channels}, L, h, w] latents, got {shape}")
        chunks = self._chunks(num_frames)
        if z.shape[2] != chunks[-1][3]:
            raise ValueError(
                f"{num_frames} frames correspond to {chunks[-1][3]} latent frames, but the latents have "
                f"{z.shape[2]}; pass the frame count the latents were made for"
            )
        return chunks
