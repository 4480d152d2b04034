"""Exceptions raised by featurelib."""

from __future__ import annotations

import errno

__all__ = ["FeatureLibError", "ParameterError", "AudioDecodeError", "AudioFileNotFoundError"]


class FeatureLibError(Exception):
    """Base class for every error featurelib raises on purpose."""


class ParameterError(FeatureLibError, ValueError):
    """A function was called with invalid arguments (librosa's ``ParameterError`` twin)."""


class AudioDecodeError(FeatureLibError):
    """A file could not be turned into finite audio samples.

    Parameters
    ----------
    path : str
        The file that failed.
    reason : str
        A short human explanation ("file is empty", "not an audio file: ...", ...).
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # keep the two fields across process boundaries (Dask workers)
        return (type(self), (self.path, self.reason))


class AudioFileNotFoundError(AudioDecodeError, FileNotFoundError):
    """The file to decode does not exist: an :class:`AudioDecodeError` that is also a
    ``FileNotFoundError``, the error ``librosa.load`` raises for a missing file, so that code
    written for either catches it."""

    def __init__(self, path, reason: str = "no such file"):
        super().__init__(path, reason)
        self.errno = errno.ENOENT

    def __str__(self) -> str:  # OSError's would show "[Errno 2] ..."
        return f"{self.path}: {self.reason}"
