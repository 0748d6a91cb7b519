"""Video VAEs: Open-Sora VAE v1.2 (2-D SDXL-style VAE + causal temporal VAE), chunked and tiled."""

from .loading import infer_config, load_opensora_vae
from .pipeline import SPATIAL_SCALING, OpenSoraVAE, VideoVAEConfig
from .spatial import SpatialVAEConfig
from .temporal import TemporalVAEConfig
from .tiling import SpatialTiling

__all__ = [
    "OpenSoraVAE",
    "SPATIAL_SCALING",
    "SpatialTiling",
    "SpatialVAEConfig",
    "TemporalVAEConfig",
    "VideoVAEConfig",
    "infer_config",
    "load_opensora_vae",
]
