"""Exceptions raised by featurelib."""

from __future__ import annotations

__all__ = ["FeatureLibError", "ParameterError", "AudioDecodeError"]


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
