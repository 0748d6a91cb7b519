"""Palette lock node: decoded frames redrawn in the reference sprite's own colours."""

from __future__ import annotations

import numpy as np
import torch

from ..dit_core import checks
from ..dit_core.errors import InvalidInputError
from ..dit_core.export import frames_uint8
from ..dit_core.images import unmix_key
from ..dit_core.palette import MAX_COLORS, lock_palette
from . import host
from .handles import CLIP_INFO_TYPE, given_mask


def _uint8(images: torch.Tensor, what: str) -> np.ndarray:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] < 3:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InvalidInputError(f"{what} must be an IMAGE batch [N, H, W, 3]; got {shape}")
    checks.image_batch(what, images)
    return frames_uint8(images[..., :3].detach().float().cpu().numpy())


def palette_source(reference: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """The reference's opaque pixels (all images of the batch), as one uint8 ``[1, N, 3]`` row."""
    pixels = _uint8(reference, "reference").reshape(reference.shape[0], -1, 3)
    mask = given_mask(mask)
    if mask is not None:
        masks = mask if mask.dim() == 3 else mask[None]  # a MASK is [N, H, W] or [H, W]; 1 = transparent
        opaque = (masks.detach().float().cpu().reshape(masks.shape[0], -1) < 0.5).numpy()
        if opaque.shape[1] != pixels.shape[1] or opaque.shape[0] not in (1, pixels.shape[0]):
            raise InvalidInputError(f"mask is {list(mask.shape)} but reference is {list(reference.shape)}: connect "
                                    "the MASK that came with the reference image")
        opaque = np.broadcast_to(opaque, pixels.shape[:2])
        pixels = pixels[opaque]
    pixels = pixels.reshape(-1, 3)
    if len(pixels) == 0:
        raise InvalidInputError("the mask hides the whole reference: no colours left to lock the palette to")
    return pixels[None]


class CharMotionPaletteLock:
    """Maps every pixel of the frames to the nearest colour of the reference sprite's palette."""

    CATEGORY = "CharMotion/image"
    FUNCTION = "lock"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    DESCRIPTION = (
        "Redraws the frames with the reference's own colours (nearest colour, no dithering): removes colour noise "
        "and keeps a pixel-art palette exact. Connect the reference image (and its mask, for transparent sprites) "
        "and clip_info from CharMotion VAE Decode so the key background stays the key colour."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE",),
                "reference": ("IMAGE", {"tooltip": "The character image the clip was made from (any size)."}),
                "colors": ("INT", {"default": MAX_COLORS, "min": 2, "max": MAX_COLORS, "tooltip":
                                   "Most colours to keep (all of the reference's when it has fewer)."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "The reference's mask: transparent pixels do not count as colours."}),
                "clip_info": (CLIP_INFO_TYPE, {"tooltip": "From CharMotion VAE Decode: adds the key background colour."}),
            },
        }

    def lock(self, frames, reference, colors, mask=None, clip_info=None):
        key = getattr(clip_info, "key_color", None)
        alpha = getattr(clip_info, "alpha", None)
        if key is not None and alpha is not None and tuple(alpha.shape) == tuple(frames.shape[:3]):
            # the clip's own opacity is known: lock the sprite's own colours, then lay them over the key again
            straight = unmix_key(frames, alpha, key).cpu()
            locked = lock_palette(_uint8(straight, "frames"), palette_source(reference, mask), int(colors))
            a = alpha.cpu().float()[..., None]
            out = torch.from_numpy(locked.astype(np.float32) / 255.0) * a + torch.tensor(key) / 255.0 * (1.0 - a)
            return host.with_notes((out.to(host.intermediate_device()),), [])
        locked = lock_palette(_uint8(frames, "frames"), palette_source(reference, mask), int(colors),
                              keep=() if key is None else [key])  # the key background stays the key
        out = torch.from_numpy(locked.astype(np.float32) / 255.0)
        notes = []
        if key is None and given_mask(mask) is not None:
            notes.append("the key background is not known, so it is redrawn in the sprite's colours and the export "
                         "cannot make it transparent: connect clip_info from CharMotion VAE Decode")
        return host.with_notes((out.to(host.intermediate_device()),), notes)
