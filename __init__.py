"""CharMotion: animate a still game character with a spatial-temporal DiT.

ComfyUI imports this folder as a package (by file path, under a mangled
name), so everything inside the pack uses relative imports.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
