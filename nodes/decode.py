"""VAE decode: a video LATENT -> IMAGE frames (and core VIDEO on hosts that have it)."""

from __future__ import annotations

import torch

from ..dit_core import checks
from ..dit_core.errors import InvalidInputError
from ..dit_core.export import pad_even
from ..dit_core.memory import check_decode
from ..dit_core.pipeline import decode_latents, infer_num_frames
from . import host
from .handles import (BUILTIN, CLIP_INFO_TYPE, FIELDS_KEY, LATENT_KEY, SPRITE_KEY, VAE_TYPE, ClipInfo, VAEHandle,
                      field_prints)

CATEGORY = "CharMotion/latent"
DEFAULT_FPS = {BUILTIN: 8.0}


def decode_samples(vae: VAEHandle, samples: dict) -> tuple[torch.Tensor, ClipInfo]:
    """LATENT -> (IMAGE ``[frames, H, W, 3]`` 0..1 on the intermediate device, ClipInfo)."""
    if not isinstance(samples, dict) or not isinstance(samples.get("samples"), torch.Tensor):
        raise InvalidInputError("samples must be a LATENT: connect CharMotion Sampler's output")
    latents = samples["samples"]
    checks.finite_values("the LATENT", latents, "sample it again (a sampler's output never holds them)")
    if latents.dim() != 5:
        raise InvalidInputError(
            f"CharMotion decodes video latents [batch, channels, frames, h, w]; got {list(latents.shape)}"
        )
    if latents.shape[1] != vae.latent_channels:
        raise InvalidInputError(
            f"the latents have {latents.shape[1]} channels but the VAE {vae.name!r} decodes {vae.latent_channels}: "
            "use the VAE that belongs to the model that made them"
        )
    info = dict(samples.get(LATENT_KEY) or {})
    num_frames = int(info.get("num_frames") or infer_num_frames(vae.layout, latents.shape[2]))
    loops = int(info.get("loops", 1))
    total = int(info.get("total_frames", num_frames))
    bar = host.Progress(total, "CharMotion decode")

    def callback(done, _total):
        bar.update(done)
        host.throw_if_interrupted()

    codec = vae.codec
    if vae.family == BUILTIN:
        sprite = samples.get(SPRITE_KEY)
        if sprite is None:
            raise InvalidInputError("this LATENT carries no reference sprite: the built-in warp decoder decodes what "
                                    "CharMotion Sampler made with the built-in model and CharMotion Reference Encode")
        made = samples.get(FIELDS_KEY)
        if made is not None and not set(field_prints(latents)) <= set(made):
            raise InvalidInputError(
                "this LATENT holds motion fields CharMotion Sampler did not make for its reference sprite (a core "
                "latent node changed them, or batched another clip with it, even one of the same sprite): the "
                "built-in model's latents decode only as the sampler made them; decode each clip with its own VAE "
                "Decode and join the frames (core Image Batch), or flip and scale the images after decoding")
        codec = codec.bind(sprite)
    if vae.family == BUILTIN:
        size = (codec.sprite.width, codec.sprite.height)
    else:
        size = (int(info.get("width") or latents.shape[-1] * 8), int(info.get("height") or latents.shape[-2] * 8))
    device = vae.managed.load_device if vae.managed is not None else getattr(codec, "device", "cpu")
    request = dict(device=device, num_frames=total, size=size, batch=len(latents))
    need = check_decode(codec, available=1 << 62, **request)  # room the host frees (other models) before loading
    vae.load(need.total - need.weights)
    check_decode(codec, **request)
    try:
        video = decode_latents(codec, latents, num_frames, loops=loops,
                               condition_frames=int(info.get("condition_frames", 0)), layout=vae.layout,
                               callback=callback)
    finally:
        bar.close()
    frames = ((video.clamp(-1.0, 1.0) + 1.0) * 0.5).permute(0, 2, 3, 4, 1).reshape(-1, *video.shape[3:], 3)
    alpha = None
    if vae.family == BUILTIN and info.get("had_alpha"):  # the reference's own opacity, moved with its pixels:
        alpha = codec.alpha_frames(latents, video.shape[2]).half()  # exported as it is, not keyed
    key = info.get("key_color")
    clip = ClipInfo(
        fps=float(info.get("fps") or DEFAULT_FPS.get(vae.family, 24.0)),
        key_color=None if key is None else tuple(int(v) for v in key),
        had_alpha=bool(info.get("had_alpha", False)), alpha=alpha,
        metadata={k: info[k] for k in ("model", "seed", "steps", "cfg", "denoise", "prompts", "loops", "seamless") if k in info},
    )
    return frames.contiguous().to(host.intermediate_device()), clip


class CharMotionVAEDecode:
    """Decodes a CharMotion video LATENT into IMAGE frames (chunk by chunk, as the VAE codes them)."""

    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE", "FLOAT", CLIP_INFO_TYPE)
    RETURN_NAMES = ("frames", "fps", "clip_info")
    DESCRIPTION = (
        "LATENT -> IMAGE frames (a batch, one image per frame), the clip's fps, and clip_info (fps, the "
        "reference's key colour for transparent export) for CharMotion Export."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (VAE_TYPE,), "samples": ("LATENT",)}}

    def decode(self, vae, samples):
        frames, clip = decode_samples(vae, samples)
        return (frames, clip.fps, clip)


class CharMotionDecodeVideo:
    """Decodes a CharMotion video LATENT into a core VIDEO (ComfyUI 0.3.30+), e.g. for core SaveVideo."""

    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    DESCRIPTION = "LATENT -> core VIDEO at the clip's fps (needs ComfyUI 0.3.30 or newer)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (VAE_TYPE,), "samples": ("LATENT",)}}

    def decode(self, vae, samples):
        if not host.video_available():
            host.make_video(None, 1.0)  # raises the error that says what to do
        frames, clip = decode_samples(vae, samples)
        frames, _, (right, bottom) = pad_even(frames.cpu().numpy(), None)  # core SaveVideo's H.264 needs even sizes
        notes = [f"the video needs even sizes (H.264): padded {right} px right, {bottom} px bottom (edge pixels "
                 "repeated)"] if right or bottom else []
        return host.with_notes((host.make_video(torch.from_numpy(frames), clip.fps),), notes)
