"""ComfyUI node classes of the pack, one module per stage of the graph.

Classic (V1) nodes with synchronous functions, so the pack loads on ComfyUI
versions from before the V3 node API; newer host features are used through
``host`` only where available.
"""

from . import host
from .controls import CharMotionLoopControl, CharMotionMotionControl
from .decode import CharMotionDecodeVideo, CharMotionVAEDecode
from .export import CharMotionExport
from .loaders import CharMotionModelLoader, CharMotionVAELoader
from .palette import CharMotionPaletteLock
from .reference import CharMotionReferenceEncode, CharMotionSampleSprite
from .sampler import CharMotionSampler
from .text import CharMotionTextEncode

host.register_model_folders()

NODE_CLASS_MAPPINGS = {
    "CharMotionModelLoader": CharMotionModelLoader,
    "CharMotionVAELoader": CharMotionVAELoader,
    "CharMotionTextEncode": CharMotionTextEncode,
    "CharMotionMotionControl": CharMotionMotionControl,
    "CharMotionLoopControl": CharMotionLoopControl,
    "CharMotionSampleSprite": CharMotionSampleSprite,
    "CharMotionReferenceEncode": CharMotionReferenceEncode,
    "CharMotionSampler": CharMotionSampler,
    "CharMotionVAEDecode": CharMotionVAEDecode,
    "CharMotionDecodeVideo": CharMotionDecodeVideo,
    "CharMotionPaletteLock": CharMotionPaletteLock,
    "CharMotionExport": CharMotionExport,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CharMotionModelLoader": "CharMotion Model Loader",
    "CharMotionVAELoader": "CharMotion VAE Loader",
    "CharMotionTextEncode": "CharMotion Text Encode",
    "CharMotionMotionControl": "CharMotion Motion Control",
    "CharMotionLoopControl": "CharMotion Loop Control",
    "CharMotionSampleSprite": "CharMotion Sample Sprite",
    "CharMotionReferenceEncode": "CharMotion Reference Encode",
    "CharMotionSampler": "CharMotion Sampler (DiT)",
    "CharMotionVAEDecode": "CharMotion VAE Decode",
    "CharMotionDecodeVideo": "CharMotion Decode to VIDEO",
    "CharMotionPaletteLock": "CharMotion Palette Lock",
    "CharMotionExport": "CharMotion Export",
}

WEB_DIRECTORY = "./web"  # notes.js shows the notes a node returns under it
