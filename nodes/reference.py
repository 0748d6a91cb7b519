"""Reference images: the sample sprites, and the encoder that turns images into the model's reference latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..dit_core import checks, images
from ..dit_core.builtin.sprite import prepare_sprite
from ..dit_core.errors import InvalidInputError
from ..dit_core.pipeline import Reference
from . import host
from .handles import BUILTIN, REFS_TYPE, VAE_TYPE, ReferenceSet, VAEHandle

CATEGORY = "CharMotion/conditioning"
SAMPLES_DIR = host.PACK_DIR / "assets" / "samples"
RESOLUTION_CHOICES = ("auto", "image") + images.RESOLUTIONS + ("custom",)


def sample_names() -> list[str]:
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() == ".png" and p.is_file())


class CharMotionSampleSprite:
    """One of the pack's sample characters (RGBA PNG), as IMAGE + MASK like core LoadImage gives, shown in the
    node."""

    CATEGORY = "CharMotion/image"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    DESCRIPTION = "A sample game character shipped with the pack, to try the built-in model with no files of your own."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sample": (sample_names(), {"tooltip": "Sample sprites in the pack's assets/samples."})}}

    def load(self, sample):
        from PIL import Image

        path = SAMPLES_DIR / Path(str(sample)).name
        if not path.is_file():
            raise InvalidInputError(f"sample sprite {sample!r} is not in {SAMPLES_DIR}; choose one of {sample_names()}")
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        device = host.intermediate_device()
        image = torch.from_numpy(rgba[..., :3].copy())[None].to(device)
        mask = (1.0 - torch.from_numpy(rgba[..., 3].copy()))[None].to(device)
        return {"ui": {"images": [host.preview_of(path)]}, "result": (image, mask)}  # the sprite shown in the node

    @classmethod
    def VALIDATE_INPUTS(cls, sample):
        if sample not in sample_names():
            return f"sample sprite {sample!r} not found; choose one of {', '.join(sample_names()) or '(none installed)'}"
        return True


def _masks(mask, count: int) -> list:
    """A ComfyUI MASK (``1 - alpha``; [H, W], [1, H, W] or [B, H, W]) -> per-image opacity or None."""
    if mask is None:
        return [None] * count
    m = mask.detach().float().cpu()
    if m.dim() == 2:
        m = m[None]
    if m.dim() != 3 or m.shape[0] not in (1, count):
        raise InvalidInputError(f"the mask has shape {list(mask.shape)}; give one mask, or one per reference image")
    out = []
    for i in range(count):
        mi = m[min(i, m.shape[0] - 1)]
        out.append(None if float(mi.max()) == 0.0 else (1.0 - mi).clamp(0.0, 1.0).numpy())  # all 0: opaque
    return out


def reference_size(vae: VAEHandle, resolution: str, width: int, height: int,
                   image_hw: tuple[int, int]) -> tuple[int, int] | None:
    """``(height, width)`` for the references: a bucket of the model at the image's aspect, the image's own size
    (``image``) or custom; None: the image's own size with room to move (the built-in model at ``auto``)."""
    if resolution in ("image", "custom"):
        if resolution == "image":
            height, width = image_hw
        smallest = 1 if vae.family == BUILTIN else 8  # a size the VAE codes (the warp decoder draws any)
        if width < smallest or height < smallest:
            what = f"the image ({width}x{height})" if resolution == "image" else f"custom size {width}x{height}"
            raise InvalidInputError(f"{what} is too small for {vae.name}: use at least {smallest}x{smallest} pixels")
        return int(height), int(width)
    if resolution == "auto":
        if vae.family == BUILTIN:
            return None
        resolution = "240p"
    return images.bucket_size(resolution, image_hw[0] / image_hw[1])


class CharMotionReferenceEncode:
    """Reference image(s) -> the model's latent references at chosen frames."""

    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (REFS_TYPE, "IMAGE")
    RETURN_NAMES = ("references", "prepared")
    DESCRIPTION = (
        "Prepares reference images as the model expects (transparent sprites composited on a key colour that "
        "is remembered for transparent export, greyscale to RGB, resized to the model's size buckets) and "
        "encodes them with the VAE. 'frames' says where each image goes: 0 = first frame, -1 = last, "
        "'0, -1' = one image each (or one image at both). Open-Sora places references at 17-frame chunk starts."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (VAE_TYPE,),
                "image": ("IMAGE", {"tooltip": "One image, or a batch: one per entry of 'frames'."}),
                "resolution": (list(RESOLUTION_CHOICES), {"default": "auto", "tooltip":
                               "auto: the built-in model keeps the image's own size (it moves the image's pixels), "
                               "with transparent room around a tightly cropped character so its motion is not cut "
                               "at the edge; Open-Sora 240p at the bucket nearest the image's aspect ratio; image: "
                               "exactly the image's size; custom: width x height."}),
                "width": ("INT", {"default": 426, "min": 8, "max": 4096, "step": 1, "tooltip": "Used with custom."}),
                "height": ("INT", {"default": 240, "min": 8, "max": 4096, "step": 1, "tooltip": "Used with custom."}),
                "fit": (list(images.FITS), {"default": "crop", "tooltip":
                        "crop: fill and centre-crop (Open-Sora's way); pad: fit inside, pad with the key colour; "
                        "stretch: ignore the aspect ratio."}),
                "pixel_art": ("BOOLEAN", {"default": False, "tooltip":
                              "Enlarge by whole factors with nearest neighbour first (crisp pixels)."}),
                "background": ("STRING", {"default": "auto", "tooltip":
                               "Key colour behind transparent pixels and for padding: auto (a colour the sprite "
                               "does not use; for opaque images their edge colour), a name, #rrggbb or r,g,b."}),
                "frames": ("STRING", {"default": "0", "tooltip":
                           "Frame of each image: 0 first, -1 last, e.g. '0, -1'."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                             "1 keeps the frame exactly; lower values let the model change it."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Transparency from core LoadImage (1 = transparent)."}),
                "references": (REFS_TYPE, {"tooltip": "Earlier references to add these to (same size)."}),
            },
        }

    def encode(self, vae, image, resolution, width, height, fit, pixel_art, background, frames, strength,
               mask=None, references=None):
        checks.image_batch("image", image)
        strength = checks.number("strength", strength, 0, 1, fix="1 keeps the frame exactly")
        checks.finite_values("mask", mask, "connect the MASK that came with the image")
        batch = image if image.dim() == 4 else image[None]
        positions = images.parse_frame_positions(frames)
        count = batch.shape[0]
        if count == 1 and len(positions) > 1:
            batch = batch.expand(len(positions), *batch.shape[1:])
            masks = _masks(mask, 1) * len(positions)
        elif len(positions) == count:
            masks = _masks(mask, count)
        else:
            raise InvalidInputError(
                f"{count} reference images but {len(positions)} frame position(s) ({frames!r}): give one position "
                "per image, e.g. '0, 8, -1' for three"
            )
        if references is not None and (references.family != vae.family or references.field != vae.field
                                       or references.latent_channels != vae.latent_channels):
            raise InvalidInputError("the earlier references were encoded with another VAE: use the same VAE for all")
        if vae.family == BUILTIN:
            return self._builtin(vae, batch, masks, positions, resolution, width, height, fit, pixel_art, background,
                                 strength, references)
        if references is not None:
            h, w = references.height, references.width
        else:
            h, w = reference_size(vae, resolution, int(width), int(height), tuple(batch.shape[1:3]))
        prepared = [
            images.prepare_reference(batch[i].cpu(), height=h, width=w, alpha=masks[i], fit=fit,
                                     pixel_art=bool(pixel_art), background=background)
            for i in range(batch.shape[0])
        ]
        pixels = torch.stack([p.pixels for p in prepared])[:, :, None]  # [n, 3, 1, H, W]
        latents = vae.encode(pixels)
        new = tuple(Reference(latents=latents[i], frame=pos, strength=float(strength))
                    for i, pos in enumerate(positions))
        keyed = next((p for p in prepared if p.had_alpha), prepared[0])
        notes = tuple(n for p in prepared for n in p.notes)
        if references is not None:
            result = ReferenceSet(
                references=references.references + new, height=h, width=w, family=vae.family,
                latent_channels=vae.latent_channels,
                key_color=references.key_color if references.had_alpha or keyed.key_color is None else keyed.key_color,
                had_alpha=references.had_alpha or keyed.had_alpha, notes=references.notes + notes,
            )
        else:
            result = ReferenceSet(
                references=new, height=h, width=w, family=vae.family, latent_channels=vae.latent_channels,
                key_color=keyed.key_color, had_alpha=keyed.had_alpha, notes=notes,
            )
        shown = torch.from_numpy(np.stack([p.rgb for p in prepared]).astype(np.float32) / 255.0)
        return (result, shown.to(host.intermediate_device()))

    @staticmethod
    def _builtin(vae, batch, masks, positions, resolution, width, height, fit, pixel_art, background, strength,
                 references):
        """The built-in model: the first image is the sprite every frame's pixels come from; an image at another
        frame is the pose to be in there (its motion field is fitted)."""
        codec = vae.codec
        if references is not None:  # the images join a sprite: its size, and the room its canvas grew by
            size, margins = references.sprite.image_size, references.sprite.margins
        else:
            size, margins = reference_size(vae, resolution, int(width), int(height), tuple(batch.shape[1:3])), None
        mode = "nearest" if pixel_art else "auto"

        def prepare(i, room):
            return prepare_sprite(batch[i].cpu(), alpha=masks[i], size=size, fit=fit, background=background,
                                  mode=mode, margins=room)

        first = prepare(0, margins)  # the first image decides the room the others get too
        sprites = [first] + [prepare(i, first.margins) for i in range(1, batch.shape[0])]
        source = references.sprite if references is not None else sprites[0]  # every image has its size
        latents = [codec.identity(source) if torch.equal(s.rgba, source.rgba) else codec.fit_pose(source, s)
                   for s in sprites]
        new = tuple(Reference(latents=z, frame=pos, strength=float(strength)) for z, pos in zip(latents, positions))
        notes = tuple(n for s in sprites for n in s.notes)
        result = ReferenceSet(
            references=(references.references if references is not None else ()) + new, height=source.height,
            width=source.width, family=BUILTIN, latent_channels=vae.latent_channels, key_color=source.key_color,
            had_alpha=source.had_alpha, notes=(references.notes if references is not None else ()) + notes,
            sprite=source, context=codec.appearance(source), field=vae.field,
        )
        shown = torch.from_numpy(np.stack([s.composited() for s in sprites]).astype(np.float32) / 255.0)
        return (result, shown.to(host.intermediate_device()))
