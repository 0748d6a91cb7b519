"""Loader nodes: the denoiser (built-in or an Open-Sora STDiT3 file) and the video VAE.

Files come from ComfyUI's model folders: ``diffusion_models`` (and the pack's
own ``charmotion`` folder) for denoisers, ``vae`` for the video VAE. The
built-in model is always the first choice and needs no file. T5-XXL is loaded
with core ``CLIPLoader`` (type ``pixart``).
"""

from __future__ import annotations

import torch

from ..dit_core.attention import check_backend
from ..dit_core.checkpoint import CheckpointError, WeightSource, describe_family, detect_family, reading_model_file
from ..dit_core.conditioning import TemporalLayout
from ..dit_core.errors import InvalidInputError
from ..dit_core.models import load_stdit3, resolve_dtype
from ..dit_core.pipeline import OPENSORA12 as OPENSORA12_PROFILE
from ..dit_core.tiny import bundle as tiny_bundle
from ..dit_core.tiny.codec import SpaceToDepthCodec
from . import host
from .handles import BUILTIN, MODEL_TYPE, OPENSORA12, VAE_TYPE, ModelHandle, VAEHandle

CATEGORY = "CharMotion/loaders"
BUILTIN_MODEL = "CharMotion tiny (built-in)"
BUILTIN_CODEC = "CharMotion tiny codec (built-in)"
DTYPES = ("auto", "fp32", "fp16", "bf16")
ATTENTION = ("auto", "sdpa", "xformers")
MODEL_FOLDERS = ("diffusion_models", host.PACK_FOLDER)
OPENSORA_SIZE = (240, 426)  # upstream's default: 240p, "9:16" (landscape)
OPENSORA_MOTION = (0.0, 100.0)


def _choices(*folders: str) -> list[str]:
    seen: dict[str, None] = {}
    for folder in folders:
        for name in host.list_models(folder):
            seen.setdefault(name, None)
    return list(seen)


def pick_dtype(choice: str, device: torch.device, *, small: bool = False) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it (as upstream runs), else float32; small models: float32."""
    if choice != "auto":
        return resolve_dtype(choice)
    if small or device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if host.bf16_supported(device) else torch.float32


def pick_attention(choice: str, device: torch.device) -> str:
    if choice == "auto":
        verdict = host.xformers_enabled()
        if verdict is not None:  # ComfyUI has decided (--disable-xformers, no CUDA, ...)
            return "xformers" if verdict and device.type == "cuda" else "sdpa"
    return check_backend(choice, device)


class CharMotionModelLoader:
    """Load the denoiser: the built-in tiny model (no file needed) or Open-Sora 1.2's STDiT3."""

    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    DESCRIPTION = (
        "Loads the temporal denoiser. The built-in model needs no file; Open-Sora 1.2 needs "
        "hpcai-tech/OpenSora-STDiT-v3 (model.safetensors) in models/diffusion_models."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": ([BUILTIN_MODEL] + _choices(*MODEL_FOLDERS), {
                    "tooltip": "The built-in model, or an STDiT3 file from models/diffusion_models "
                               "(e.g. OpenSora-STDiT-v3/model.safetensors) or models/charmotion."}),
                "dtype": (list(DTYPES), {"default": "auto", "tooltip":
                          "auto: bf16 on GPUs that support it (as Open-Sora runs), else fp32; fp32 on the CPU."}),
                "attention": (list(ATTENTION), {"default": "auto", "tooltip":
                              "auto: xformers when ComfyUI uses it on a CUDA GPU, else PyTorch SDPA."}),
            }
        }

    def load(self, model_name, dtype="auto", attention="auto"):
        device = host.torch_device()
        offload = host.offload_device()
        backend = pick_attention(attention, device)
        if model_name == BUILTIN_MODEL:
            return (self._tiny(BUILTIN_MODEL, None, dtype, device, offload, backend),)
        path = host.model_path(MODEL_FOLDERS, model_name)
        family = detect_family(WeightSource.open(path).keys())
        if family == "charmotion_tiny":
            return (self._tiny(model_name, path, dtype, device, offload, backend),)
        if family != "stdit3":
            raise CheckpointError(
                f"{model_name} is {describe_family(family)}, not a denoiser this node loads: choose "
                "hpcai-tech/OpenSora-STDiT-v3 (model.safetensors) or a CharMotion model bundle"
            )
        model = load_stdit3(path, dtype=pick_dtype(dtype, device), device=offload, attention=backend)
        handle = ModelHandle(
            name=model_name, family=OPENSORA12, model=model, profile=OPENSORA12_PROFILE,
            managed=host.ManagedModule(model, device, offload), attention=backend,
            default_size=OPENSORA_SIZE, motion_range=OPENSORA_MOTION,
        )
        return (handle,)

    @staticmethod
    def _tiny(name, path, dtype, device, offload, backend) -> ModelHandle:
        with reading_model_file(path, "a CharMotion model bundle"):
            bundle = tiny_bundle.load_tiny(path, dtype=pick_dtype(dtype, device, small=True), device=offload,
                                           attention=backend)
        sampling = bundle.config["sampling"]
        size = int(sampling["size"])
        return ModelHandle(
            name=name, family=BUILTIN, model=bundle.model, profile=bundle.profile,
            managed=host.ManagedModule(bundle.model, device, offload), attention=backend,
            default_size=(size, size), motion_range=(0.0, float(sampling.get("motion_scale", 10.0))),
            text_encoder=bundle, preview_codec=bundle.codec,
        )


def opensora_layout(codec) -> TemporalLayout:
    frames = int(codec.micro_frame_size)
    latents = int(codec.latent_frames(frames))
    factor = (frames - 1) // (latents - 1) if latents > 1 else 1
    return TemporalLayout(frames_per_chunk=frames, temporal_factor=factor)


def builtin_codec(path=None) -> SpaceToDepthCodec:
    """The built-in model's codec (its basis, not the networks)."""
    with reading_model_file(path, "a CharMotion model bundle"):
        return tiny_bundle.load_tiny_codec(path)


class CharMotionVAELoader:
    """Load the video VAE: the built-in model's codec (no file) or Open-Sora VAE v1.2."""

    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (VAE_TYPE,)
    RETURN_NAMES = ("vae",)
    DESCRIPTION = (
        "Loads the video VAE that turns latents into frames. The built-in codec goes with the built-in model; "
        "Open-Sora 1.2 needs hpcai-tech/OpenSora-VAE-v1.2 (model.safetensors) in models/vae."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae_name": ([BUILTIN_CODEC] + _choices("vae"), {
                    "tooltip": "The built-in codec, or OpenSora-VAE-v1.2 (model.safetensors) from models/vae."}),
                "dtype": (list(DTYPES), {"default": "auto"}),
                "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32, "tooltip":
                              "Decode frames in spatial tiles of this many pixels to save memory (0 = off, exact)."}),
            }
        }

    def load(self, vae_name, dtype="auto", tile_size=0):
        if vae_name == BUILTIN_CODEC:
            codec = builtin_codec()
            return (VAEHandle(name=vae_name, family=BUILTIN, codec=codec, layout=codec.layout),)
        path = host.model_path("vae", vae_name)
        family = detect_family(WeightSource.open(path).keys())
        if family == "charmotion_tiny":
            codec = builtin_codec(path)
            return (VAEHandle(name=vae_name, family=BUILTIN, codec=codec, layout=codec.layout),)
        try:
            from ..dit_core.vae import load_opensora_vae
        except ImportError as exc:  # pragma: no cover - only in a partial install
            raise InvalidInputError(f"this installation of CharMotion has no video VAE module ({exc}); reinstall the pack") from exc
        device, offload = host.vae_device(), host.vae_offload_device()
        codec = load_opensora_vae(path, dtype=pick_dtype(dtype, device), device=offload, tile=tile_size or None)
        handle = VAEHandle(name=vae_name, family=OPENSORA12, codec=codec, layout=opensora_layout(codec),
                           managed=host.ManagedModule(codec, device, offload))
        return (handle,)
