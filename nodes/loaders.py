"""Loader nodes: the denoiser (built-in or an Open-Sora STDiT3 file) and the video VAE.

Files come from ComfyUI's model folders: ``diffusion_models`` (and the pack's
own ``charmotion`` folder) for denoisers, ``vae`` for the video VAE. The
built-in model is always the first choice and needs no file. T5-XXL is loaded
with core ``CLIPLoader`` (type ``pixart``).
"""

from __future__ import annotations

import torch

from ..dit_core.attention import check_backend
from ..dit_core.builtin import model as builtin_model
from ..dit_core.builtin.codec import MotionFieldCodec
from ..dit_core.checkpoint import WeightSource, detect_family, reading_model_file
from ..dit_core.errors import InvalidInputError
from ..dit_core.families import family_of_file, load_denoiser
from ..dit_core.models import resolve_dtype
from . import host
from .handles import BUILTIN, MODEL_TYPE, OPENSORA, VAE_TYPE, ModelHandle, VAEHandle

CATEGORY = "CharMotion/loaders"
BUILTIN_MODEL = "CharMotion built-in"
BUILTIN_CODEC = "CharMotion built-in warp decoder"
#: Names the built-in entries had in workflows saved by earlier versions (still loaded, as the built-in model).
LEGACY_BUILTIN_MODEL = ("CharMotion tiny (built-in)",)
LEGACY_BUILTIN_CODEC = ("CharMotion tiny codec (built-in)",)
DTYPES = ("auto", "fp32", "fp16", "bf16")
ATTENTION = ("auto", "sdpa", "xformers")
MODEL_FOLDERS = ("diffusion_models", host.PACK_FOLDER)
VAE_FOLDERS = ("vae", host.PACK_FOLDER)  # a built-in model file is its own warp decoder too


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
    """Load the denoiser: the built-in model (no file needed) or Open-Sora 1.2's STDiT3."""

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

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return _check_choice("model_name", model_name, [BUILTIN_MODEL, *LEGACY_BUILTIN_MODEL], MODEL_FOLDERS)

    def load(self, model_name, dtype="auto", attention="auto"):
        device = host.torch_device()
        offload = host.offload_device()
        backend = pick_attention(attention, device)
        builtin = model_name in (BUILTIN_MODEL, *LEGACY_BUILTIN_MODEL)
        path = None if builtin else host.model_path(MODEL_FOLDERS, model_name)
        family = family_of_file(path)
        loaded = load_denoiser(path, dtype=pick_dtype(dtype, device, small=family == BUILTIN), device=offload,
                               attention=backend, name=BUILTIN_MODEL if builtin else model_name, family=family)
        return (ModelHandle(loaded=loaded, managed=host.ManagedModule(loaded.model, device, offload), attention=backend),)


def builtin_codec(path=None) -> MotionFieldCodec:
    """The built-in model's warp decoder (its field settings, not the networks)."""
    with reading_model_file(path, "a CharMotion built-in model file"):
        return builtin_model.load_builtin_codec(path)


def _check_choice(name: str, value, builtin: list[str], folders) -> bool | str:
    """A combo's own check (it also takes the names of earlier versions' built-in entries)."""
    if value is None or value in builtin:  # None: the input is linked, not a widget
        return True
    choices = _choices(*((folders,) if isinstance(folders, str) else folders))
    if value in choices:
        return True
    return f"{name} {value!r} is not in the list: pick {builtin[0]!r} or one of the files found ({len(choices)})"


class CharMotionVAELoader:
    """Load the video VAE: the built-in model's warp decoder (no file) or Open-Sora VAE v1.2."""

    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (VAE_TYPE,)
    RETURN_NAMES = ("vae",)
    DESCRIPTION = (
        "Loads the video VAE that turns latents into frames. The built-in warp decoder (it moves the reference's "
        "own pixels) goes with the built-in model; "
        "Open-Sora 1.2 needs hpcai-tech/OpenSora-VAE-v1.2 (model.safetensors) in models/vae."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae_name": ([BUILTIN_CODEC] + _choices(*VAE_FOLDERS), {
                    "tooltip": "The built-in warp decoder, or OpenSora-VAE-v1.2 (model.safetensors) from models/vae. "
                               "With another built-in model file (models/charmotion), pick that same file here."}),
                "dtype": (list(DTYPES), {"default": "auto"}),
                "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32, "tooltip":
                              "Decode frames in spatial tiles of this many pixels to save memory (0 = off, exact)."}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, vae_name):
        return _check_choice("vae_name", vae_name, [BUILTIN_CODEC, *LEGACY_BUILTIN_CODEC], VAE_FOLDERS)

    def load(self, vae_name, dtype="auto", tile_size=0):
        if vae_name in (BUILTIN_CODEC, *LEGACY_BUILTIN_CODEC):
            codec = builtin_codec()
            return (VAEHandle(name=BUILTIN_CODEC, family=BUILTIN, codec=codec, layout=codec.layout),)
        path = host.model_path(VAE_FOLDERS, vae_name)
        family = detect_family(WeightSource.open(path).keys())
        if family == builtin_model.FAMILY:
            codec = builtin_codec(path)
            return (VAEHandle(name=vae_name, family=BUILTIN, codec=codec, layout=codec.layout),)
        try:
            from ..dit_core.vae import load_opensora_vae
        except ImportError as exc:  # pragma: no cover - only in a partial install
            raise InvalidInputError(f"this installation of CharMotion has no video VAE module ({exc}); reinstall the pack") from exc
        device, offload = host.vae_device(), host.vae_offload_device()
        codec = load_opensora_vae(path, dtype=pick_dtype(dtype, device), device=offload, tile=tile_size or None)
        handle = VAEHandle(name=vae_name, family=OPENSORA, codec=codec, layout=codec.layout,
                           managed=host.ManagedModule(codec, device, offload))
        return (handle,)
