"""The DiT temporal denoiser node: conditioning, references and controls -> a video LATENT."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..dit_core import checks
from ..dit_core.errors import InvalidInputError
from ..dit_core.pipeline import default_condition_frames, generate, memory_needed
from ..dit_core.prompts import unused_loops_note
from . import host
from .handles import (BUILTIN, FIELDS_KEY, LATENT_KEY, LOOP_TYPE, MODEL_TYPE, REFS_TYPE, SPRITE_KEY, VAE_TYPE,
                      LoopControl, ModelHandle, ReferenceSet, field_prints)
from .text import LOOP_KEY, PROMPT_KEY, conditioning_segments, conditions_for_loops

log = logging.getLogger("CharMotion")
CATEGORY = "CharMotion/sampling"
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def clip_size(model: ModelHandle, references: ReferenceSet | None, width: int, height: int) -> tuple[int, int]:
    """``(height, width)``: the widgets when set, else the references' size, else the model's default."""
    if width and height:
        if references is not None and (references.height, references.width) != (height, width):
            raise InvalidInputError(
                f"the references were prepared at {references.width}x{references.height} but the sampler is set to "
                f"{width}x{height}: set width and height to 0 to use the references' size, or give the reference "
                "encoder the same size (resolution: custom)"
            )
        return int(height), int(width)
    if width or height:
        raise InvalidInputError(f"set both width and height, or both to 0 for automatic (got {width}x{height})")
    if references is not None:
        return references.height, references.width
    return model.default_size


def _preview(codec, sprite, latents: torch.Tensor):
    """A PIL image of the middle frame of the built-in model's current latents (moving the sprite is cheap)."""
    from PIL import Image

    from ..dit_core.builtin.sprite import frames_over_key

    mid = latents.shape[2] // 2
    with torch.no_grad():
        rgba = codec.warp(latents[:1, :, mid : mid + 1].float().cpu(), sprite)[0]
    return Image.fromarray(frames_over_key(rgba, sprite.key_color)[0], "RGB")


class CharMotionSampler:
    """Samples a clip with the spatial-temporal DiT (rectified flow, classifier-free guidance)."""

    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    DESCRIPTION = (
        "Runs the denoiser: conditioning from CharMotion Text Encode (or core CLIPTextEncode), optional "
        "references and loop control -> a video LATENT for CharMotion VAE Decode. Without a negative prompt the "
        "model's own empty caption is used (as Open-Sora does). width/height 0 = the references' size (else the "
        "model's default)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE,),
                "positive": ("CONDITIONING",),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                                 "tooltip": "Same seed, same settings, same device: the same clip."}),
                "steps": ("INT", {"default": 30, "min": 1, "max": 200, "tooltip": "Open-Sora: 30; built-in: 20."}),
                "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Guidance scale. Open-Sora: 7; built-in: 1.5."}),
                "frames": ("INT", {"default": 51, "min": 1, "max": 1024, "tooltip":
                           "Frames per loop. Open-Sora: 1 (image) or 17 and more, best 51, 102, 204 (17 x k); "
                           "built-in: 1-64 (trained on 16)."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 1, "tooltip": "0 = automatic."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 1, "tooltip": "0 = automatic."}),
                "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 1.0, "tooltip":
                        "Frame rate the model is told and the clip plays at. Open-Sora: 24; built-in: 8."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.05, "max": 1.0, "step": 0.01, "tooltip":
                            "1 = start from pure noise (the default for both models). Lower starts the free frames "
                            "from the nearest reference with noise added: the character stays closer to the "
                            "reference, with much less motion."}),
            },
            "optional": {
                "negative": ("CONDITIONING", {"tooltip": "Not in Open-Sora: leave empty for its learned empty caption."}),
                "vae": (VAE_TYPE, {"tooltip": "Needed for loops > 1 (each loop re-encodes the previous one's end)."}),
                "references": (REFS_TYPE,),
                "loop": (LOOP_TYPE,),
            },
        }

    def sample(self, model, positive, seed, steps, cfg, frames, width, height, fps, denoise=1.0,
               negative=None, vae=None, references=None, loop=None):
        loop = loop or LoopControl()
        cfg, fps, seed = checks.number("cfg", cfg, 0), checks.number("fps", fps, 0, low_open=True), checks.seed(seed)
        denoise = checks.number("denoise", denoise, 0, 1, low_open=True, fix="1 starts from pure noise")
        if vae is not None:
            vae.check_model(model)
        if references is not None:
            references.check_model(model)
        sprite = None if references is None else references.sprite
        if model.family == BUILTIN and sprite is None:
            raise InvalidInputError("the built-in model moves the pixels of a reference image: connect CharMotion "
                                    "Reference Encode (with the built-in warp decoder) to the sampler's 'references'")
        if loop.loops > 1 and vae is None and not model.profile.continue_from_latents:
            raise InvalidInputError("loops > 1 need the VAE: connect CharMotion VAE Loader to the sampler's 'vae'")
        h, w = clip_size(model, references, int(width), int(height))
        segments = conditioning_segments(positive, model, "positive")
        conditions = conditions_for_loops(segments, loop.loops)
        uncond = None
        if negative is not None:
            uncond = conditioning_segments(negative, model, "negative")[0][1]
        condition_frames = loop.condition_frames or default_condition_frames(model.profile, int(frames))

        total = int(steps) * loop.loops
        bar = host.Progress(total, "CharMotion sampling")
        preview_codec = model.text_encoder.codec if bar.wants_previews and sprite is not None else None

        def progress(step, _total, latents):
            preview = None
            if preview_codec is not None:
                try:
                    preview = _preview(preview_codec, sprite, latents)
                except Exception:  # noqa: BLE001 - a preview never stops sampling
                    preview = None
            bar.update(step, preview)

        def cancel():
            host.throw_if_interrupted()  # raises ComfyUI's interrupt; never without a host
            return False

        # room for the sampling too, so the host unloads other models (the T5 that just encoded) to make it
        model.managed.load(memory_required=memory_needed(
            model.model, model.profile, device=model.managed.load_device, num_frames=int(frames), height=h, width=w,
            cfg_scale=cfg, seamless=loop.seamless, decode=False, loops=loop.loops))
        if vae is not None and loop.loops > 1:
            vae.load()
        try:
            result = generate(
                model.model, conditions, codec=None if vae is None or sprite is not None else vae.codec,
                negative=uncond, references=() if references is None else references.references,
                context=None if references is None else references.context,
                num_frames=int(frames), height=h, width=w, fps=float(fps), seed=int(seed), steps=int(steps),
                cfg_scale=float(cfg), denoise=float(denoise), loop=replace(loop, condition_frames=condition_frames),
                profile=model.profile, decode=False,
                progress=progress, cancel=cancel,
            )
        finally:
            bar.close()
        notes = list(result.notes) + ([] if references is None else list(references.notes))
        if late := unused_loops_note([start for start, _ in segments], loop.loops):
            notes.append(late)
        prompts: dict[str, str] = {}
        for entry in positive:
            extras = entry[1] or {}
            if extras.get(PROMPT_KEY):
                prompts.setdefault(str(extras.get(LOOP_KEY, 0)), extras[PROMPT_KEY])
        info = {
            "num_frames": int(frames),
            "loops": loop.loops,
            "condition_frames": condition_frames if loop.loops > 1 else 0,
            "total_frames": result.num_frames,
            "fps": result.fps,
            "height": result.height,
            "width": result.width,
            "seed": result.seed,
            "steps": int(steps),
            "cfg": float(cfg),
            "denoise": float(denoise),
            "seamless": loop.seamless,
            "model": model.name,
            "family": model.family,
            "key_color": None if references is None or references.key_color is None else list(references.key_color),
            "had_alpha": bool(references is not None and references.had_alpha),
            "prompts": prompts,
            "notes": notes,
        }
        for note in info["notes"]:
            log.info("CharMotion sampler: %s", note)
        latent = {"samples": result.latents.float().to(host.intermediate_device()), LATENT_KEY: info}
        if sprite is not None:
            latent[SPRITE_KEY] = sprite
            latent[FIELDS_KEY] = field_prints(latent["samples"])
        return host.with_notes((latent,), info["notes"])
