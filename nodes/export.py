"""Export node: IMAGE frames -> MP4 / WebM / GIF / WebP / APNG / PNG sequence / sprite sheet in ComfyUI's output folder."""

from __future__ import annotations

import logging

import torch

from ..dit_core import checks, images
from ..dit_core.errors import InvalidInputError
from ..dit_core.export import FORMATS, export_frames
from ..dit_core.images import parse_color, shows_key_where_clear, unmix_key
from . import host
from .handles import CLIP_INFO_TYPE, ClipInfo, given_mask

log = logging.getLogger("CharMotion")
CATEGORY = "CharMotion/output"
TRANSPARENCY = ("auto", "on", "off")
#: What a written name gains after the prefix: the counter and the longest extension.
PREFIX_ROOM = len("_00001_") + max(len(e) for f in FORMATS.values() for e in f.extensions)


def transparency_plan(fmt: str, transparency: str, key_color: str, clip_info: ClipInfo | None, mask, frames,
                      notes: list[str]):
    """-> (alpha or None, key colour or None, opaque) for :func:`export_frames`; what the user should know is
    added to ``notes``.

    ``auto`` keys out the reference's key colour when the reference was
    transparent (or uses a connected mask, or the images' own alpha channel when they have one, e.g. from
    core Join Image with Alpha); ``on`` always makes a transparent
    clip (key colour: the widget, else the reference's, else the frames'
    dominant edge colour); ``off`` never. Opaque output (``off``, or a format
    without alpha) of a transparent reference shows the character over the
    background colour, never over the key colour.
    """
    mask = given_mask(mask)
    explicit = None if str(key_color).strip().lower() in ("", "auto") else images.parse_color(key_color)
    info_key = None if clip_info is None else clip_info.key_color
    had_alpha = clip_info is not None and clip_info.had_alpha
    opaque = transparency == "off" or not FORMATS[fmt].alpha
    own_alpha = frames.shape[-1] == 4 and transparency != "off" and mask is None and explicit is None
    if own_alpha and bool((frames[..., 3] < 1).any()):  # RGBA images carry their opacity themselves
        return frames[..., 3].detach().float().cpu().clamp(0, 1), None, opaque
    wanted = had_alpha or mask is not None or (transparency == "on" and not opaque)
    if not wanted:
        return False, None, opaque
    if mask is not None:
        m = mask.detach().float().cpu()
        if m.dim() == 2:
            m = m[None]
        if m.shape[-2:] != frames.shape[1:3]:
            raise InvalidInputError(
                f"the mask is {m.shape[-1]}x{m.shape[-2]} but the frames are {frames.shape[2]}x{frames.shape[1]}: "
                f"connect a mask of the frames' size (resize it as the images were resized), or none"
            )
        if m.shape[0] not in (1, frames.shape[0]):
            raise InvalidInputError(
                f"the mask has {m.shape[0]} frames but there are {frames.shape[0]} images: connect a mask with one "
                f"frame per image, or a single mask for all of them"
            )
        return (1.0 - m).clamp(0, 1), explicit, opaque
    known = None if clip_info is None else clip_info.alpha
    if explicit is None and known is not None and tuple(known.shape) == tuple(frames.shape[:3]):
        if info_key is None or shows_key_where_clear(frames, known, info_key):
            return known, None, opaque  # the clip's own opacity (the built-in model's): nothing to key out
        notes.append(
            "the images no longer match their clip info's opacity (changed after decoding?), so the key colour is "
            "keyed out instead; connect the images straight from VAE Decode, or a MASK, to keep the clip's own "
            "opacity")
    key = explicit or info_key
    if key is None:
        first = images.to_uint8(frames[0])
        key = images.dominant_edge_color(first[..., :3])
        if key is None:
            if opaque:
                return False, None, opaque
            raise InvalidInputError(
                "transparency is on but there is no key colour: the clip has no flat background colour at its edges. "
                "Set key_color (e.g. #ff00ff) or transparency off"
            )
    return None, key, opaque


class CharMotionExport:
    """Writes the clip to ComfyUI's output folder and shows it in the node."""

    CATEGORY = CATEGORY
    FUNCTION = "export"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    DESCRIPTION = (
        "MP4 (H.264), WebM (VP9), GIF, animated WebP, APNG, a PNG sequence or a sprite sheet (grid PNG + JSON atlas "
        "with frame rects and fps). Transparent output keys out the reference's background colour (GIF/WebP/APNG/"
        "PNG/sprite sheet/WebM). Files are never overwritten; the workflow is embedded where the format allows."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames, e.g. from CharMotion VAE Decode."}),
                "filename_prefix": ("STRING", {"default": "CharMotion/clip", "tooltip":
                                    "Name in the output folder; may contain sub-folders."}),
                "format": (list(FORMATS), {"default": "webp"}),
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 240.0, "step": 1.0, "tooltip":
                        "0 = the clip's own fps (from clip_info, else 8)."}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip":
                               "0 = loop forever; N = play N times (GIF/WebP/APNG/sprite sheet)."}),
                "pingpong": ("BOOLEAN", {"default": False, "tooltip": "Play forward, then backward."}),
                "quality": ("INT", {"default": -1, "min": -1, "max": 100, "tooltip":
                            "0-100, higher is better; -1 = the format's default (MP4 CRF 19, WebM CRF 30, WebP 90, "
                            "GIF 256 colours)."}),
                "lossless": ("BOOLEAN", {"default": False, "tooltip": "Lossless WebP / WebM / MP4 (lossless MP4 does not "
                                         "play in Safari, QuickTime or on phones; quality 100 does)."}),
                "transparency": (list(TRANSPARENCY), {"default": "auto", "tooltip":
                                 "auto: transparent when the reference was; on: key out the key colour; off: opaque."}),
                "key_color": ("STRING", {"default": "auto", "tooltip":
                              "Colour to make transparent: auto (the reference's background) or #rrggbb / name."}),
                "tolerance": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                              "How far from the key colour a pixel may be and still become transparent."}),
                "despill": ("BOOLEAN", {"default": True, "tooltip": "Remove the key colour's tint from the edges."}),
            },
            "optional": {
                "clip_info": (CLIP_INFO_TYPE, {"tooltip": "From CharMotion VAE Decode: fps and key colour."}),
                "mask": ("MASK", {"tooltip": "Transparency (1 = transparent), instead of keying."}),
                "background_color": ("STRING", {"default": "auto", "tooltip":
                                     "Behind a transparent character in opaque output (MP4, or transparency off): "
                                     "auto (a grey that contrasts with the character) or #rrggbb / name."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def export(self, images, filename_prefix, format, fps, loop_count, pingpong, quality, lossless, transparency,
               key_color, tolerance, despill, clip_info=None, mask=None, background_color="auto", prompt=None,
               extra_pnginfo=None):
        if format not in FORMATS:
            raise InvalidInputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise InvalidInputError("images must be a ComfyUI IMAGE batch [frames, H, W, C]")
        checks.image_batch("images", images)
        fps = checks.number("fps", fps, 0, 240, fix="0 uses the clip's own rate")
        tolerance = checks.number("tolerance", tolerance, 0, 1)
        rate = fps or (clip_info.fps if clip_info is not None else 8.0)
        plan_notes: list[str] = []
        alpha, key, opaque = transparency_plan(format, transparency, key_color, clip_info, mask, images, plan_notes)
        if alpha is not None and alpha is not False and key is None and clip_info is not None \
                and clip_info.key_color is not None:
            images = unmix_key(images, alpha, clip_info.key_color)  # the colours as they were before compositing
        if str(background_color).strip().lower() not in ("", "auto"):
            try:  # a clear error before any work
                parse_color(background_color)
            except InvalidInputError as exc:
                raise InvalidInputError(f"background_color: {exc}") from None
        metadata = {}
        if host.metadata_enabled():
            if prompt is not None:
                metadata["prompt"] = prompt
            for name, value in (extra_pnginfo or {}).items():
                metadata[name] = value
            if clip_info is not None and clip_info.metadata:
                metadata["charmotion"] = clip_info.metadata
        height, width = int(images.shape[1]), int(images.shape[2])
        checks.file_name("filename_prefix", filename_prefix, extra=PREFIX_ROOM)
        folder, name, subfolder = host.save_location(filename_prefix, width, height)
        checks.inside_folder(folder, host.output_directory(), f"filename_prefix {filename_prefix!r}")
        checks.writable_folder(folder, f"the clip into {folder}")
        result = export_frames(
            images, folder, fmt=format, prefix=name, fps=rate, loop_count=int(loop_count), pingpong=bool(pingpong),
            quality=None if int(quality) < 0 else int(quality), lossless=bool(lossless), alpha=alpha,
            key_color=key, key_tolerance=float(tolerance), despill=bool(despill), opaque=opaque,
            background=background_color or "auto", metadata=metadata or None,
        )
        notes = plan_notes + list(result.notes)
        for note in notes:
            log.info("CharMotion export: %s", note)
        return {"ui": {**ui_entries(result, folder, subfolder), "text": notes}}


def ui_entries(result, folder, subfolder: str) -> dict:
    """The ``ui`` dict ComfyUI shows under the node (as core SaveAnimatedWEBP / SaveVideo return it)."""
    spec = FORMATS[result.format]
    if result.format == "png_sequence":
        seq = result.path.name
        sub = f"{subfolder}/{seq}" if subfolder else seq
        frames = [p for p in result.files[1:] if p.suffix == ".png"]
        return {"images": [{"filename": frames[0].name, "subfolder": sub, "type": "output"}], "animated": [False]}
    entry = {"filename": result.path.name, "subfolder": subfolder, "type": "output"}
    return {"images": [entry], "animated": [bool(spec.animated)]}
