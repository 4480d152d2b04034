"""featurelib: batched, librosa-exact audio DSP on NumPy or CuPy arrays.

Every feature takes a signal batch ``y`` of shape ``(..., n_samples)`` (or a precomputed
spectrogram ``S``) and returns an array in the same namespace and on the same device.
Names, keyword arguments, defaults and numbers follow librosa.

Submodules are imported on first use, so ``import featurelib`` is cheap.
"""

from __future__ import annotations

import importlib

from .exceptions import AudioDecodeError, AudioFileNotFoundError, FeatureLibError, ParameterError

__version__ = "0.1.0"

_SUBMODULE_OF = {
    # I/O
    "AudioInfo": "io", "info": "io", "load": "io", "AUDIO_EXTENSIONS": "io",
    # framing and spectra
    "frame": "framing", "stft": "framing", "istft": "framing", "get_window": "framing",
    "set_fft_precision": "framing", "get_fft_precision": "framing", "fft_precision": "framing",
    "power_to_db": "spectrum", "amplitude_to_db": "spectrum", "db_to_power": "spectrum",
    "mel_filters": "spectrum", "project_mel": "spectrum", "melspectrogram": "spectrum", "mfcc": "spectrum", "delta": "spectrum",
    # time domain
    "amplitude_envelope": "temporal", "rms": "temporal", "short_time_energy": "temporal",
    "zero_crossing_rate": "temporal",
    # frequency domain
    "spectral_centroid": "frequency", "spectral_bandwidth": "frequency",
    "spectral_rolloff": "frequency", "spectral_flatness": "frequency",
    "mean_frequency": "frequency", "median_frequency": "frequency",
    "band_energy_ratio": "frequency", "snr": "frequency",
}

__all__ = ["AudioDecodeError", "AudioFileNotFoundError", "FeatureLibError", "ParameterError", *sorted(_SUBMODULE_OF)]


_SUBMODULES = ("io", "framing", "spectrum", "temporal", "frequency", "exceptions")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _SUBMODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'featurelib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
