"""Time-domain features per frame: amplitude envelope, RMS, short-time energy, zero-crossing rate.

Frames follow librosa (``center=True`` pads ``frame_length // 2`` on both sides), so every feature
has ``1 + n // hop_length`` frames, the same count as :func:`featurelib.stft`. Per-frame scalar
features have librosa's shape ``(..., 1, n_frames)``.
"""

from __future__ import annotations

import numpy as np

from ._backend import as_dtype, as_float_array, namespace, sliding_frames, spectrogram_array
from .exceptions import ParameterError
from .framing import _check_hop, pad_signal

__all__ = ["amplitude_envelope", "rms", "short_time_energy", "zero_crossing_rate"]


# padding modes that copy samples (so they commute with |y| and y ** 2): the pointwise step may
# come first, on the unpadded signal; the others (a ramp, a statistic) pad the signal itself
_COPYING_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _framed(y, op: str, frame_length, hop_length, center, pad_mode):
    """Time-major frames ``(..., n_frames, frame_length)`` of ``|y|`` (``op="abs"``) or ``y ** 2``
    (``"square"``)."""
    if frame_length <= 0:
        raise ParameterError(f"frame_length={frame_length} must be positive")
    _check_hop(hop_length)  # an int or a NumPy integer, > 0
    xp = namespace(y)
    y = as_float_array(y, xp)
    if center and pad_mode not in _COPYING_PAD_MODES:
        y = _pointwise(pad_signal(y, frame_length // 2, frame_length // 2, mode=pad_mode), op)
    else:
        y = _pointwise(y, op)
        if center:
            y = pad_signal(y, frame_length // 2, frame_length // 2, mode=pad_mode)
    if y.shape[-1] < frame_length:
        raise ParameterError(f"Input is too short (n={y.shape[-1]:d}) for frame_length={frame_length:d}")
    return sliding_frames(y, frame_length, hop_length), xp


def _pointwise(y, op: str):
    """``|y|`` or ``y ** 2`` once per sample, before framing (padding that copies samples
    commutes with both), so that frames overlapping by ``frame_length / hop_length`` are
    reductions over a strided view rather than a materialised copy of every frame."""
    xp = namespace(y)
    y = as_float_array(y, xp)
    return xp.abs(y) if op == "abs" else y * y


def amplitude_envelope(y, *, frame_length: int = 2048, hop_length: int = 512, center: bool = True,
                       pad_mode: str = "constant"):
    """Maximum absolute amplitude in each frame.

    Parameters
    ----------
    y : array, shape ``(..., n)``
        Audio signal(s).
    frame_length : int > 0
        Samples per frame.
    hop_length : int > 0
        Samples between frame starts.
    center : bool
        Centre frames on ``t * hop_length`` by padding ``frame_length // 2`` on both sides.
    pad_mode : str
        Padding for ``center``, as ``np.pad``'s ``mode`` (``"constant"``: zeros; also ``"edge"``,
        ``"linear_ramp"``, ``"reflect"``, ``"symmetric"``, ``"wrap"``, ``"maximum"``, ``"mean"``,
        ``"median"``, ``"minimum"``).

    Returns
    -------
    array, shape ``(..., 1, n_frames)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.array([0.0, 0.5, -1.0, 0.25], dtype=np.float32)
    >>> featurelib.amplitude_envelope(y, frame_length=2, hop_length=2)
    array([[0.  , 1.  , 0.25]], dtype=float32)
    """
    frames, xp = _framed(y, "abs", frame_length, hop_length, center, pad_mode)
    return xp.max(frames, axis=-1)[..., None, :]


def short_time_energy(y, *, frame_length: int = 2048, hop_length: int = 512, center: bool = True,
                      pad_mode: str = "constant"):
    """Energy of each frame: the sum of squared samples.

    Parameters
    ----------
    y : array, shape ``(..., n)``
        Audio signal(s).
    frame_length, hop_length, center, pad_mode
        Framing, as :func:`rms`.

    Returns
    -------
    array, shape ``(..., 1, n_frames)``
        ``frame_length * rms(y) ** 2``.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> featurelib.short_time_energy(np.ones(8, dtype=np.float32), frame_length=4, hop_length=4)
    array([[2., 4., 2.]], dtype=float32)
    """
    frames, xp = _framed(y, "square", frame_length, hop_length, center, pad_mode)
    return xp.sum(frames, axis=-1)[..., None, :]


def rms(y=None, *, S=None, frame_length: int = 2048, hop_length: int = 512, center: bool = True,
        pad_mode: str = "constant", dtype=np.float32):
    """Root-mean-square value of each frame, as ``librosa.feature.rms``.

    Parameters
    ----------
    y : array, shape ``(..., n)``, optional
        Audio signal(s); frames are taken from the raw (unwindowed) samples.
    S : array, shape ``(..., 1 + frame_length // 2, t)``, optional
        A magnitude spectrogram; RMS is then computed from it via Parseval, as librosa does
        (the window's energy is included, so it differs from the time-domain value).
    frame_length, hop_length, center, pad_mode
        Framing of ``y``.
    dtype : float dtype
        Type of the result, as librosa's (float32 by default, also for float64 input).

    Returns
    -------
    array, shape ``(..., 1, t)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> featurelib.rms(y=np.ones(8, dtype=np.float32), frame_length=4, hop_length=4)
    array([[0.70710677, 1.        , 0.70710677]], dtype=float32)
    """
    if y is not None:
        frames, xp = _framed(y, "square", frame_length, hop_length, center, pad_mode)
        return as_dtype(xp.sqrt(xp.mean(frames, axis=-1))[..., None, :], dtype, xp)
    if S is None:
        raise ParameterError("rms needs y or S")
    S = spectrogram_array(S, least=1)
    xp = namespace(S)
    if S.shape[-2] != frame_length // 2 + 1:
        raise ParameterError(
            f"Since S.shape[-2] is {S.shape[-2]}, frame_length is expected to be "
            f"{S.shape[-2] * 2 - 2} or {S.shape[-2] * 2 - 1}; found {frame_length}")
    if xp.isdtype(S.dtype, "complex floating"):
        S = xp.abs(S)
    S = as_float_array(S, xp, name="S")
    power = S * S
    total = xp.sum(power, axis=-2, keepdims=True) - 0.5 * power[..., :1, :]
    if frame_length % 2 == 0:
        total = total - 0.5 * power[..., -1:, :]
    return as_dtype(xp.sqrt(2.0 * total / frame_length**2), dtype, xp)


def zero_crossing_rate(y, *, frame_length: int = 2048, hop_length: int = 512, center: bool = True,
                       threshold: float | None = 1e-10, ref_magnitude=None, pad: bool = False,
                       zero_pos: bool = True):
    """Fraction of sign changes per frame, as ``librosa.feature.zero_crossing_rate``.

    Parameters
    ----------
    y : array, shape ``(..., n)``
        Audio signal(s).
    frame_length, hop_length : int > 0
        Framing.
    center : bool
        Pad ``frame_length // 2`` samples on both sides by repeating the edge samples (librosa
        uses ``mode="edge"`` here, unlike the spectral features).
    threshold : float >= 0 or None
        Samples with ``|y| <= threshold`` count as zero (None: no threshold).
    ref_magnitude : float or callable, optional
        Scales ``threshold``: a number, or a callable applied to the magnitudes of the frames
        ``(..., frame_length, n_frames)`` that gives one number (``numpy.max``: a threshold
        relative to the loudest sample), as ``librosa.zero_crossings``.
    pad : bool
        Count the first sample of every frame as a crossing (librosa's ``zero_crossings(pad=)``;
        ``zero_crossing_rate`` passes ``False``).
    zero_pos : bool
        Zero counts as positive (``True``) or as its own sign class.

    Returns
    -------
    array, shape ``(..., 1, n_frames)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.array([1, -1, 1, -1, 1, 1, 1, 1], dtype=np.float32)
    >>> featurelib.zero_crossing_rate(y, frame_length=4, hop_length=4, center=False)
    array([[0.75, 0.  ]], dtype=float32)
    """
    if frame_length <= 1:
        raise ParameterError(f"frame_length={frame_length} must be at least 2")
    _check_hop(hop_length)  # an int or a NumPy integer, > 0
    xp = namespace(y)
    y = as_float_array(y, xp)
    if center:
        y = pad_signal(y, frame_length // 2, frame_length // 2, mode="edge")
    n = y.shape[-1]
    if n < frame_length:
        raise ParameterError(f"Input is too short (n={n:d}) for frame_length={frame_length:d}")
    # Sign changes between neighbouring samples, computed once over the signal; a frame starting
    # at s holds the changes at s+1 .. s+frame_length-1 (librosa pads the first with False), so
    # its count is a sum over a window of frame_length - 1 change flags: a reduction over a
    # strided view (float32 counts are exact far beyond any frame length).
    count = 1 + (n - frame_length) // hop_length
    threshold = 0.0 if threshold is None else threshold
    if ref_magnitude is not None:
        if callable(ref_magnitude):  # of the frames' magnitudes, as librosa frames them
            frames = xp.matrix_transpose(sliding_frames(y, frame_length, hop_length)[..., :count, :])
            ref_magnitude = ref_magnitude(xp.abs(frames))
        try:
            threshold = threshold * float(ref_magnitude)
        except TypeError:
            raise ParameterError("ref_magnitude must be a number or give one number") from None
    # |y| <= threshold counts as zero, and zero as positive unless zero_pos is False; a negative
    # threshold zeroes nothing (librosa's -t <= y <= t holds for no y), so -0.0 stays negative
    if zero_pos and threshold < 0:
        sign = xp.signbit(y)
    elif threshold < 0:  # sign(y): a zero is zero whatever the threshold
        sign = xp.astype(y > 0, xp.int8) - xp.astype(y < 0, xp.int8)
    elif zero_pos:
        sign = y < -threshold
    else:
        sign = xp.astype(y > threshold, xp.int8) - xp.astype(y < -threshold, xp.int8)
    changes = xp.astype(sign[..., 1:] != sign[..., :-1], xp.float32)
    windows = sliding_frames(changes, frame_length - 1, hop_length)[..., :count, :]
    crossings = xp.sum(windows, axis=-1) + (1.0 if pad else 0.0)
    rate = xp.astype(crossings, y.dtype) / frame_length
    return rate[..., None, :]
