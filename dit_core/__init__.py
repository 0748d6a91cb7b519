"""Pure-PyTorch core of CharMotion: models, VAE, sampling, conditioning, export.

Nothing in this package imports ComfyUI; the node adapters in ``nodes/`` and
the command line (``python -m dit_core``) both call into it.
"""

__version__ = "0.1.0"
