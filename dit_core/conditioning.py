"""Where reference latents go in the clip, and the per-frame mask that keeps them.

A *placement* writes ``length`` latent frames of a reference (starting at
``source``) over the noise at latent frame ``target`` of the clip, and sets the
frame mask there to ``edit`` (0 = keep exactly, 1 = ignore, in between = a
partial edit that is re-noised part way through sampling). Negative
``source``/``target`` count from the end. This is Open-Sora 1.2's
``mask_strategy`` (its ``"loop,ref,source,target,length,edit"`` groups).

With a temporally compressing VAE an image encodes like the first frame of a
chunk, so Open-Sora snaps placements to chunk starts (``align = 5`` latent
frames = 17 pixel frames); ``TemporalLayout`` holds that geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InvalidInputError


@dataclass(frozen=True)
class TemporalLayout:
    """How pixel frames map to latent frames: chunks of ``frames_per_chunk`` encoded independently,
    each compressed ``temporal_factor`` times after its first frame (Open-Sora VAE: 17 frames -> 5)."""

    frames_per_chunk: int = 17
    temporal_factor: int = 4

    @property
    def latents_per_chunk(self) -> int:
        return 1 + (self.frames_per_chunk - 1) // self.temporal_factor

    def latent_frames(self, num_frames: int) -> int:
        whole, rest = divmod(int(num_frames), self.frames_per_chunk)
        return whole * self.latents_per_chunk + math.ceil(rest / self.temporal_factor)

    def latent_index(self, frame: int, num_frames: int) -> int:
        """The latent frame that holds pixel frame ``frame`` (negative counts from the end)."""
        given = frame
        if frame < 0:
            frame += num_frames
        if not 0 <= frame < num_frames:
            raise InvalidInputError(
                f"frame {given} is outside a clip of {num_frames} frames: use 0 to {num_frames - 1}, "
                f"or -1 to -{num_frames} to count from the end"
            )
        chunk, within = divmod(frame, self.frames_per_chunk)
        chunk_length = min(self.frames_per_chunk, num_frames - chunk * self.frames_per_chunk)
        front_pad = -chunk_length % self.temporal_factor  # causal padding in front of each chunk
        return chunk * self.latents_per_chunk + (within + front_pad) // self.temporal_factor

    def chunk_frames(self, latent_frames: int) -> int:
        """Pixel frames covered by ``latent_frames`` whole chunks of latents."""
        if latent_frames % self.latents_per_chunk:
            raise InvalidInputError(
                f"{latent_frames} latent frames is not a whole number of {self.latents_per_chunk}-frame chunks"
            )
        return latent_frames // self.latents_per_chunk * self.frames_per_chunk


FRAME_BY_FRAME = TemporalLayout(frames_per_chunk=1, temporal_factor=1)
OPENSORA_VAE_LAYOUT = TemporalLayout(frames_per_chunk=17, temporal_factor=4)


@dataclass(frozen=True)
class Placement:
    reference: int = 0  # index into the reference list
    source: int = 0  # first latent frame taken from the reference
    target: int = 0  # first latent frame of the clip written
    length: int = 1  # latent frames
    edit: float = 0.0  # mask value: 0 keeps the frame exactly, 1 ignores the reference
    loop: int = 0  # loop iteration this placement belongs to

    def to_group(self) -> str:
        return f"{self.loop},{self.reference},{self.source},{self.target},{self.length},{self.edit:g}"


def snap_to_chunk(value: int, align: int, limit: int) -> int:
    """Open-Sora's ``find_nearest_point``: round to a multiple of ``align``, never past the last chunk start."""
    k = value // align
    if value % align > align / 2 and k < limit // align - 1:
        k += 1
    return k * align


def apply_placements(
    z: torch.Tensor,
    references: list[torch.Tensor],
    placements: list[Placement],
    *,
    loop: int = 0,
    align: int | None = None,
) -> torch.Tensor | None:
    """Write reference latents into ``z`` ``[n, C, T, h, w]`` (in place); return the frame mask ``[n, T]``.

    ``references`` are ``[C, Tr, h, w]`` latents shared by every sample, or
    ``[n, C, Tr, h, w]`` with one per sample. Returns None when no placement
    applies to ``loop``.
    """
    frames = z.shape[2]
    mask = torch.ones(frames, dtype=torch.float32, device=z.device)
    applied = False
    for p in placements:
        if p.loop != loop:
            continue
        if p.reference >= len(references):
            raise InvalidInputError(
                f"placement refers to reference {p.reference}, but only {len(references)} reference(s) were given"
            )
        ref = references[p.reference]
        if ref.dim() == 4:
            ref = ref[None]
        if ref.shape[0] not in (1, z.shape[0]) or ref.shape[1] != z.shape[1] or ref.shape[3:] != z.shape[3:]:
            raise InvalidInputError(
                f"reference {p.reference} latents {list(ref.shape)} do not fit the clip latents {list(z.shape)}: "
                "encode the reference at the clip's width and height"
            )
        ref_frames = ref.shape[2]
        source = p.source + ref_frames if p.source < 0 else p.source
        target = p.target + frames if p.target < 0 else p.target
        if align:
            source = snap_to_chunk(source, align, ref_frames)
            target = snap_to_chunk(target, align, frames)
        if not (0 <= source < ref_frames and 0 <= target < frames):
            raise InvalidInputError(
                f"placement {p.to_group()!r} falls outside the reference ({ref_frames} latent frames) "
                f"or the clip ({frames} latent frames)"
            )
        length = min(p.length, frames - target, ref_frames - source)
        z[:, :, target : target + length] = ref[:, :, source : source + length].to(z.dtype)
        mask[target : target + length] = p.edit
        applied = True
    if not applied:
        return None
    return mask[None].expand(z.shape[0], -1).clone()
