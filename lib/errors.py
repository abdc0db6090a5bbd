"""The errors a user can cause and fix: the command line prints them as one line and exits 2.

Everything a user can get wrong (a bad file, a bad checkpoint, a bad option, no data, an
architecture mismatch) raises a subclass of :class:`UserError` whose message names the file
or option and what to do. ``python -m lib`` prints ``error: <message>`` and exits 2 for them;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "DataError", "CheckpointError", "ImageError"]


class UserError(Exception):
    """An expected failure caused by the input; its message tells the user what to do."""


class ConfigError(UserError, ValueError):
    """An invalid option or value; the message names the option and the allowed values."""


class DataError(UserError):
    """No usable images, an empty split, a data source that differs from the checkpoint's."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, of another format or of another architecture."""


class ImageError(UserError):
    """An image that cannot be decoded, is too large, or is not an image at all."""
