"""Denoiser models (STDiT3) and their loading."""

from .loading import build_stdit3, infer_stdit3_config, load_stdit3, resolve_dtype
from .stdit3 import STDIT3_XL_2, STDiT3, STDiT3Config

__all__ = [
    "STDIT3_XL_2",
    "STDiT3",
    "STDiT3Config",
    "build_stdit3",
    "infer_stdit3_config",
    "load_stdit3",
    "resolve_dtype",
]
