"""Exceptions with messages that say what was wrong and what to do about it."""


class GenbenchError(Exception):
    """Base class: the message is shown to the user as-is (no traceback in the CLI)."""


class UnknownNameError(GenbenchError, KeyError):
    """A registry lookup failed; the message suggests the closest valid names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class InvalidInputError(GenbenchError, ValueError):
    """User-supplied data, config or samples are malformed."""


class AssetNotFoundError(GenbenchError, FileNotFoundError):
    """No source could provide an asset; the message lists every place tried and how to provide it."""
