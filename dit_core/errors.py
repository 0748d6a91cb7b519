"""Errors a user can cause or trigger; each message says what to do.

The classes carry the short module name ``CharMotion``: ComfyUI reports a
failed node as ``<module>.<class>: <message>``, so the user reads
``CharMotion.InvalidInputError: ...`` rather than the pack's file path.
"""

PUBLIC_MODULE = "CharMotion"


class CharMotionError(Exception):
    """Base class of the pack's user-facing errors."""

    __module__ = PUBLIC_MODULE


class InvalidInputError(CharMotionError, ValueError):
    """An input (image, frame count, size, prompt, option) the model cannot take."""

    __module__ = PUBLIC_MODULE


class GenerationCancelled(CharMotionError):
    """The user cancelled a running generation."""

    __module__ = PUBLIC_MODULE


class NonFiniteError(CharMotionError, ArithmeticError):
    """The model produced NaN or infinite values (damaged weights, an extreme setting)."""

    __module__ = PUBLIC_MODULE
