"""The project's error types: every user-facing failure is one of these, with a message that says what to do."""

from __future__ import annotations

from pathlib import Path


class KoSimCSEError(Exception):
    """Base class; the CLI prints these as one clear line and exits with status 2."""


class DataError(KoSimCSEError):
    """Bad input data, located by file and (1-based) line whenever known."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path, self.line, self.reason = (str(path) if path is not None else None), line, message
        where = "" if path is None else f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)

    def __reduce__(self):  # keep pickling (multiprocessing) working with the extra fields
        return (DataError, (self.reason, self.path, self.line))


class ModelLoadError(KoSimCSEError):
    """A model could not be loaded (Hub unreachable, unsafe weights, missing files)."""
