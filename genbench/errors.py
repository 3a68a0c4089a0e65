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


class DiskFullError(GenbenchError):
    """A write failed because the disk (or the user's quota) is full; the message names what and what to do."""


_DISK_FULL_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for an exception caused by a full disk: OSError ENOSPC/EDQUOT, SQLite's "database or disk is full",
    or a library error (torch.save, zipfile) whose message or cause says so."""
    import errno

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        if any(t in str(exc).lower() for t in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full_message(exc: BaseException, where: str = "") -> str:
    """One line for the user: what could not be written, and what to do."""
    what = f" while writing {where}" if where else ""
    detail = getattr(exc, "filename", None) or ""
    return (f"the disk is full{what}{f' ({detail})' if detail else ''}: free some space (or give --out on another "
            f"disk) and run the same command again; finished work is kept ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})")
