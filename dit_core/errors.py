"""Errors a user can cause or trigger; each message says what to do."""


class CharMotionError(Exception):
    """Base class of the pack's user-facing errors."""


class InvalidInputError(CharMotionError, ValueError):
    """An input (image, frame count, size, prompt, option) the model cannot take."""


class GenerationCancelled(CharMotionError):
    """The user cancelled a running generation."""
