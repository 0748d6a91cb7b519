"""CharMotion: animate a still game character with a spatial-temporal DiT.

ComfyUI imports this folder as a package (by file path, under a mangled
name), so everything inside the pack uses relative imports. The node
registry is loaded on first access of ``NODE_CLASS_MAPPINGS`` (ComfyUI reads
it right after importing the package), so tools that merely scan the folder,
such as test runners, can import this file without loading the pack.
"""

_EXPORTS = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY")
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        from . import nodes

        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
