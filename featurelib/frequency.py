"""Frequency-domain features per frame, and a signal-to-noise ratio.

``spectral_centroid``, ``spectral_bandwidth``, ``spectral_rolloff`` and ``spectral_flatness``
follow librosa (magnitude spectrogram, same normalisation and edge cases). ``mean_frequency``,
``median_frequency`` and ``band_energy_ratio`` are defined on the power spectrogram (see each
docstring). Every feature accepts a precomputed ``S`` so that a job computes the STFT once.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import is_cupy_array, is_numpy_array

from ._backend import as_dtype, as_float_array, like, namespace, spectrogram_array
from .exceptions import ParameterError
from .framing import fft_frequencies, get_fft_precision, map_stft
from .spectrum import power_spectrogram, spectrum_power

__all__ = [
    "spectral_centroid", "spectral_bandwidth", "spectral_rolloff", "spectral_flatness",
    "mean_frequency", "median_frequency", "band_energy_ratio", "snr",
]


def _spectrogram(y, S, *, n_fft, hop_length, power, win_length, window, center, pad_mode,
                 check_given=True):
    """``(S, n_fft, xp)``: the given ``S`` (checked), or ``|stft(y)| ** power``."""
    if S is not None:
        S = spectrogram_array(S)
        xp = namespace(S)
        if xp.isdtype(S.dtype, "complex floating"):
            raise ParameterError("Spectral features are only defined with real-valued input")
        S = as_float_array(S, xp, name="S")
        if check_given and bool(xp.any(S < 0)):
            raise ParameterError("Spectral features are only defined with non-negative energies")
        if n_fft // 2 + 1 != S.shape[-2]:
            n_fft = 2 * (S.shape[-2] - 1)
        return S, n_fft, xp
    if y is None:
        raise ParameterError("Either y or S must be given")
    S = power_spectrogram(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                          window=window, center=center, pad_mode=pad_mode, power=power)
    return S, n_fft, namespace(S)


def _in_float64(y, S):
    """``(y as float64, y's dtype)`` when the spectrogram is to be computed here, else ``(y, None)``.

    Bandwidth, flatness and the band energy ratio weigh the quietest bins heavily
    (``|f - centroid| ** p``, the log in the geometric mean, a near-empty band as the divisor),
    where a float32 FFT's rounding floor (about 1e-7 of the peak) would decide the value for very
    tonal or band-limited frames; librosa's FFT runs in float64, so these features compute their
    own spectrogram in float64 and cast the result back.
    """
    if S is not None or y is None:
        return y, None
    xp = namespace(y)
    y = as_float_array(y, xp)
    return xp.astype(y, xp.float64), y.dtype


# Under the "auto" FFT precision, the centroid, roll-off and mean frequency of frames longer
# than this are computed from a float64 spectrogram: a float32 FFT's rounding floor (about 1e-7
# of the peak in every bin) summed over thousands of bins pulls the centroid of a low tone up, by
# 0.9-1.5e-3 relative at 4,096-8,192 points for a 20-30 Hz tone (4e-3 at 16,384 for 10 Hz),
# beyond the 1e-3 parity; at 2,048 points and below audible tones stay under 8e-4 (a 10 Hz
# tone at 48 kHz: 1.02e-3).
FLOAT32_WEIGHTED_MEAN_MAX_N_FFT = 2048


def weighted_means_in_float64(n_fft: int, precision: str) -> bool:
    """Whether the centroid and mean frequency of ``n_fft``-point frames are taken from a
    float64 spectrogram under FFT ``precision`` (see ``FLOAT32_WEIGHTED_MEAN_MAX_N_FFT``)."""
    return n_fft > FLOAT32_WEIGHTED_MEAN_MAX_N_FFT and precision == "auto"


def _long_frames_in_float64(y, S, n_fft):
    """:func:`_in_float64` where :func:`weighted_means_in_float64` says so; ``(y, None)``
    otherwise."""
    if weighted_means_in_float64(n_fft, get_fft_precision()):
        return _in_float64(y, S)
    return y, None


def _freq_column(freq, S, sr, n_fft, xp):
    """Bin frequencies shaped ``(n_bins, 1)`` (or the caller's ``freq`` as given) in S's namespace."""
    if freq is None:
        return like(fft_frequencies(sr=sr, n_fft=n_fft)[:, None], S, xp)
    if isinstance(freq, np.ndarray):
        freq = like(freq if freq.ndim != 1 else freq[:, None], S, xp)
    elif freq.ndim == 1:
        freq = freq[:, None]
    return freq


def _column_totals(S, xp, total=None):
    """Per-frame sums of ``S`` ``(..., 1, t)`` (or ``total``, computed by the caller), 1 where
    a frame is all but silent (librosa)."""
    if total is None:
        total = xp.sum(S, axis=-2, keepdims=True)
    tiny = float(np.finfo(np.float32 if S.dtype == xp.float32 else np.float64).tiny)
    return xp.where(total < tiny, xp.ones_like(total), total)


def _normalize_columns(S, xp):
    """``S`` divided by its per-frame sum, leaving all-but-silent frames as they are (librosa)."""
    return S / _column_totals(S, xp)


def spectral_centroid(y=None, *, sr: float = 22050, S=None, n_fft: int = 2048,
                      hop_length: int = 512, freq=None, win_length=None, window="hann",
                      center: bool = True, pad_mode: str = "constant"):
    """Spectral centroid: the magnitude-weighted mean frequency, as ``librosa``.

    Parameters
    ----------
    y : array, shape ``(..., n)``, optional
        Audio signal(s).
    sr : float > 0
        Sampling rate.
    S : array, shape ``(..., 1 + n_fft // 2, t)``, optional
        Magnitude spectrogram (non-negative).
    n_fft, hop_length, win_length, window, center, pad_mode
        STFT parameters when ``y`` is given.
    freq : array, optional
        Bin centre frequencies (default: the rfft bins).

    Returns
    -------
    array, shape ``(..., 1, t)``
        Hz; 0 for silent frames.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000).astype(np.float32)
    >>> c = featurelib.spectral_centroid(y=y, sr=8000, n_fft=256, hop_length=80)
    >>> bool(abs(float(np.median(c)) - 1000) < 60)
    True
    """
    given = S is not None
    y, out_dtype = _long_frames_in_float64(y, S, n_fft)
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=1.0,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    f = _freq_column(freq, S, sr, n_fft, xp)
    if f.ndim != 2 or f.shape[-1] != 1:  # frequencies that vary per frame: librosa's formula
        total = xp.sum(S, axis=-2, keepdims=True)
        centroid = xp.sum(f * _normalize_columns(S, xp), axis=-2, keepdims=True)
    else:
        # sum(f * S) / sum(S): both sums in one product per frame ([f, 1] as two columns),
        # then one division: one pass over S, not five
        both = xp.matrix_transpose(xp.matmul(xp.matrix_transpose(S),
                                             xp.concat([f, xp.ones_like(f)], axis=-1)))
        total = both[..., 1:, :]
        centroid = both[..., :1, :] / _column_totals(S, xp, total=total)  # (..., 1, t)
    if not given and S.dtype == xp.float32 and get_fft_precision() == "auto":
        # a float32 FFT's rounding floor pulls a very low centroid up: those rows again in float64
        centroid = low_centroid_rows_in_float64(centroid, total, y, xp, sr=sr, n_fft=n_fft, hop_length=hop_length,
                                        win_length=win_length, window=window, center=center,
                                        pad_mode=pad_mode, freq=freq)
    return as_dtype(centroid, out_dtype, xp)


def low_centroid_rows_in_float64(centroid, total, y, xp, **kwargs):
    """``centroid`` ``(..., 1, t)`` with the signals (rows of ``y``) that hold a frame under
    :data:`LOW_CENTROID_FRACTION` of Nyquist taken again from a float64 spectrogram: only those
    rows on NumPy and CuPy (the others keep their float32 values), the whole input elsewhere.
    ``kwargs`` are :func:`spectral_centroid`'s (``sr`` and the framing ``y`` was framed with);
    ``total`` is each frame's magnitude sum (the centroid itself serves: a frame with energy
    has one above 0)."""
    from ._backend import to_numpy

    low = low_centroid_frames(centroid, total, kwargs["sr"])
    if not bool(xp.any(low)):
        return centroid
    y = as_float_array(y, xp)
    lead, t = centroid.shape[:-2], centroid.shape[-1]
    rows = int(np.prod(lead, dtype=np.int64))
    flat_y = xp.reshape(y, (rows, y.shape[-1]))
    flagged = np.nonzero(to_numpy(xp.any(xp.reshape(low, (rows, t)), axis=-1)))[0]
    from array_api_compat import is_cupy_array, is_numpy_array

    if not (is_numpy_array(flat_y) or is_cupy_array(flat_y)):
        flagged = np.arange(rows)  # a namespace without integer-array assignment: every row
    if flagged.size == rows:
        again = spectral_centroid(y=xp.astype(flat_y, xp.float64), **kwargs)
        return xp.reshape(xp.astype(again, xp.float32), centroid.shape)
    index = flagged if is_numpy_array(flat_y) else xp.asarray(flagged)
    again = spectral_centroid(y=xp.astype(flat_y[index, ...], xp.float64), **kwargs)
    out = xp.reshape(xp.asarray(centroid, copy=True), (rows, 1, t))
    out[index, ...] = xp.astype(again, xp.float32)
    return xp.reshape(out, centroid.shape)


# Under the "auto" FFT precision, a signal with a frame whose float32 centroid lies under this
# fraction of the Nyquist frequency has its centroid taken from a float64 spectrogram. The
# rounding floor of a float32 FFT (about 1e-7 of the frame's peak in every bin) weighs the bins
# above a low tone or DC by their frequencies: the centroid's relative error grows as
# 1 / (centroid / Nyquist), 1.0-1.4e-3 for a 3-20 Hz tone at n_fft 2,048 and 44.1-192 kHz, and
# 4.6e-5 at this fraction (measured 8-192 kHz, n_fft 512-2,048; parity is 1e-3). No FSDD frame
# lies under it; a silent frame (centroid 0 by definition) is not counted.
LOW_CENTROID_FRACTION = 0.01


def low_centroid_frames(centroid, total, sr: float):
    """The frames ``(..., 1, t)`` whose float32 centroid is to be taken again in float64 (see
    :data:`LOW_CENTROID_FRACTION`); ``total`` is each frame's magnitude sum."""
    return (centroid < LOW_CENTROID_FRACTION * sr / 2) & (total > 0)


def spectral_bandwidth(y=None, *, sr: float = 22050, S=None, n_fft: int = 2048,
                       hop_length: int = 512, win_length=None, window="hann", center: bool = True,
                       pad_mode: str = "constant", freq=None, centroid=None, norm: bool = True,
                       p: float = 2):
    """p-th order spectral bandwidth around the centroid, as ``librosa``.

    Parameters
    ----------
    y, sr, S, n_fft, hop_length, win_length, window, center, pad_mode, freq
        As :func:`spectral_centroid`.
    centroid : array, shape ``(..., 1, t)``, optional
        A precomputed centroid.
    norm : bool
        Normalise each frame's magnitudes to sum to one.
    p : float > 0
        Order: ``(sum S * |f - centroid| ** p) ** (1 / p)``.

    Returns
    -------
    array, shape ``(..., 1, t)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> featurelib.spectral_bandwidth(y=y, sr=8000, n_fft=256, hop_length=80).shape
    (1, 101)
    """
    if p <= 0:
        raise ParameterError(f"p={p} must be positive")
    y, out_dtype = _in_float64(y, S)
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=1.0,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    f = _freq_column(freq, S, sr, n_fft, xp)
    if centroid is None:
        centroid = xp.sum(f * _normalize_columns(S, xp), axis=-2, keepdims=True)
    deviation = xp.abs(f - centroid)
    if norm:
        S = _normalize_columns(S, xp)
    weighted = S * (deviation * deviation if p == 2 else deviation**p)
    total = xp.sum(weighted, axis=-2, keepdims=True)
    bandwidth = xp.sqrt(total) if p == 2 else total ** (1.0 / p)
    return bandwidth if out_dtype is None else xp.astype(bandwidth, out_dtype)


def _first_bin_reaching(S, fraction, f, xp, cumulative=None):
    """Frequency of the first bin where the cumulative sum (``cumulative``, computed here when
    not given) reaches ``fraction`` of the total."""
    if cumulative is None:
        cumulative = xp.cumulative_sum(S, axis=-2)
    total = cumulative[..., -1:, :]
    threshold = fraction * total
    inf = xp.asarray(float("inf"), dtype=S.dtype)
    candidates = xp.where(cumulative < threshold, inf, f * xp.ones_like(cumulative))
    found = xp.min(candidates, axis=-2, keepdims=True)
    # a frame holding NaN or inf (every comparison false) would read 0 Hz, a silent frame's
    # value: NaN says it
    return xp.where(xp.isfinite(total), found, xp.asarray(float("nan"), dtype=found.dtype))


def spectral_rolloff(y=None, *, sr: float = 22050, S=None, n_fft: int = 2048,
                     hop_length: int = 512, win_length=None, window="hann", center: bool = True,
                     pad_mode: str = "constant", freq=None, roll_percent: float = 0.85):
    """Roll-off frequency: the lowest bin below which ``roll_percent`` of the magnitude lies.

    As ``librosa.feature.spectral_rolloff`` (on the magnitude spectrogram).

    Parameters
    ----------
    y, sr, S, n_fft, hop_length, win_length, window, center, pad_mode, freq
        As :func:`spectral_centroid`.
    roll_percent : float in (0, 1)
        Fraction of the per-frame magnitude sum.

    Returns
    -------
    array, shape ``(..., 1, t)``
        Hz (the centre frequency of the roll-off bin); 0 for silent frames.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> featurelib.spectral_rolloff(y=y, sr=8000, n_fft=256, hop_length=80).shape
    (1, 101)
    """
    if not 0.0 < roll_percent < 1.0:
        raise ParameterError("roll_percent must lie in the range (0, 1)")
    given = S is not None
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=1.0,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    f = _freq_column(freq, S, sr, n_fft, xp)
    # float32 frames, whose FFT librosa rounds to complex64: under "auto" (float32 FFT here) and
    # on CuPy (whose FFT, abs and sums round otherwise), the frames near a bin's edge are taken
    # again as librosa takes them (see ROLLOFF_MARGIN)
    from_float32_y = not given and S.dtype == xp.float32
    on_cupy = is_cupy_array(S)
    if not on_cupy and not (from_float32_y and get_fft_precision() == "auto"):
        return _first_bin_reaching(S, roll_percent, f, xp)
    rolloff, near = rolloff_and_near_edge(S, roll_percent, f, xp)
    if not from_float32_y:  # CuPy, from a given or float64 spectrogram: summed in NumPy's order
        return rolloff_frames_summed_in_order(rolloff, near, S, f, xp, roll_percent=roll_percent)
    return rolloff_frames_in_float64(rolloff, near, y, f, xp, roll_percent=roll_percent, n_fft=n_fft,
                                     hop_length=hop_length, win_length=win_length, window=window,
                                     center=center, pad_mode=pad_mode)


# Under the "auto" FFT precision, a frame whose cumulative magnitude passes within this fraction
# of its total from the roll-off threshold, at some bin, has its roll-off taken again from
# librosa's float64 FFT: a float32 FFT's rounding (observed: 1e-7 to 3e-6 of the total at the
# frames where it flipped) can choose the neighbouring bin there, a step of 1e-3 relative or more.
# On CuPy every float32 rounding on the way differs from librosa's at such a frame: its FFT and
# complex abs round a bin's magnitude by an ulp otherwise, and its parallel scan adds the bins in
# another order than NumPy's bin after bin (its float32 sums differ by up to about 1e-6 of the
# total). Observed on an H200: 6 of 638,976 frames of 44.1 kHz noisy tones, each 3e-8 to 8e-8 of
# its total from the threshold, took the neighbouring bin, under every FFT precision. So on CuPy
# the frames near a bin's edge are always taken again on the host as librosa takes them: from the
# signal's frames (magnitude_frames_in_float64) or, given a spectrogram, its columns summed in
# NumPy's order.
ROLLOFF_MARGIN = 1e-5


def _first_bin_reaching_in_order(A, fraction, f):
    """:func:`_first_bin_reaching` of the magnitudes ``A`` ``(m, bins)`` (frames by rows), as
    NumPy and librosa sum them: bin after bin, on the host. Returns ``(m,)`` (NumPy)."""
    from ._backend import to_numpy

    A = to_numpy(A)
    return _first_bin_reaching(A.T, fraction, to_numpy(f), np)[0]


def _put_frames(rolloff, rows, cols, values, xp):
    """``rolloff`` ``(..., 1, t)`` (a copy) with the frames ``(rows[i], cols[i])`` of its rows
    flattened to ``(n_rows, t)`` set to ``values`` (NumPy, ``(m,)``)."""
    lead, t = rolloff.shape[:-2], rolloff.shape[-1]
    n_rows = int(np.prod(lead, dtype=np.int64))
    out = xp.reshape(xp.asarray(rolloff, copy=True), (n_rows, t))
    if is_cupy_array(out):
        rows, cols = xp.asarray(rows), xp.asarray(cols)
    out[(rows, cols)] = xp.asarray(values, dtype=out.dtype)
    return xp.reshape(out, rolloff.shape)


def _near_frames(near, xp):
    """The ``(rows, cols)`` (NumPy) of the frames ``near`` ``(..., 1, t)`` flags, its leading
    axes flattened to rows."""
    from ._backend import to_numpy

    t = near.shape[-1]
    return np.nonzero(to_numpy(xp.reshape(near, (-1, t))))


def rolloff_frames_summed_in_order(rolloff, near, S, f, xp, *, roll_percent):
    """``rolloff`` ``(..., 1, t)`` with the frames ``near`` flags taken again from the same
    magnitudes ``S`` ``(..., bins, t)``, summed bin after bin on the host as NumPy and librosa
    sum them (see :data:`ROLLOFF_MARGIN`). For CuPy arrays; ``f``: ``(bins, 1)``."""
    if not bool(xp.any(near)):
        return rolloff
    rows, cols = _near_frames(near, xp)
    flat = xp.reshape(S, (-1, S.shape[-2], S.shape[-1]))
    picked = flat[xp.asarray(rows), :, xp.asarray(cols)]  # (m, bins)
    return _put_frames(rolloff, rows, cols, _first_bin_reaching_in_order(picked, roll_percent, f), xp)


def rolloff_and_near_edge(S, fraction: float, f, xp):
    """``(rolloff, near)``, both ``(..., 1, t)``, of a magnitude spectrogram ``S``
    ``(..., bins, t)`` with bin frequencies ``f``: the roll-off, and the frames whose roll-off bin
    float32 rounding could move (see :data:`ROLLOFF_MARGIN`), from one cumulative sum."""
    cumulative = xp.cumulative_sum(S, axis=-2)
    total = cumulative[..., -1:, :]
    gap = xp.min(xp.abs(cumulative - fraction * total), axis=-2, keepdims=True)
    near = (gap < ROLLOFF_MARGIN * total) & (total > 0)
    return _first_bin_reaching(S, fraction, f, xp, cumulative), near


def rolloff_frames_in_float64(rolloff, near, y, f, xp, *, roll_percent, **framing):
    """``rolloff`` ``(..., 1, t)`` with the frames ``near`` flags (``(..., 1, t)``) taken again
    from a float64 FFT of ``y`` (``framing``: n_fft, hop_length, ... as ``y`` was framed with),
    as librosa takes them: on NumPy and CuPy only those frames, on the host
    (:func:`featurelib.framing.magnitude_frames_in_float64`, bins summed in NumPy's order);
    elsewhere the whole input under the "double" precision. ``f``: the bins' frequencies
    ``(bins, 1)``."""
    from .framing import fft_precision, magnitude_frames_in_float64

    if not bool(xp.any(near)):
        return rolloff
    y = as_float_array(y, xp)
    lead, t = rolloff.shape[:-2], rolloff.shape[-1]
    n_rows = int(np.prod(lead, dtype=np.int64))
    flat_y = xp.reshape(y, (n_rows, y.shape[-1]))
    if not (is_numpy_array(flat_y) or is_cupy_array(flat_y)):  # no integer-array assignment
        with fft_precision("double"):
            S = xp.reshape(power_spectrogram(flat_y, power=1.0, **framing), (*lead, -1, t))
        return _first_bin_reaching(S, roll_percent, f, xp)
    rows, cols = _near_frames(near, xp)
    A = magnitude_frames_in_float64(flat_y, rows, cols, **framing)  # (m, bins)
    return _put_frames(rolloff, rows, cols, _first_bin_reaching_in_order(A, roll_percent, f), xp)


def spectral_flatness(y=None, *, S=None, n_fft: int = 2048, hop_length: int = 512,
                      win_length=None, window="hann", center: bool = True,
                      pad_mode: str = "constant", amin: float = 1e-10, power: float = 2.0):
    """Spectral flatness (Wiener entropy): geometric over arithmetic mean of the power, as librosa.

    Parameters
    ----------
    y : array, shape ``(..., n)``, optional
        Audio signal(s).
    S : array, shape ``(..., 1 + n_fft // 2, t)``, optional
        Magnitude spectrogram.
    n_fft, hop_length, win_length, window, center, pad_mode
        STFT parameters.
    amin : float > 0
        Floor on ``S ** power``.
    power : float > 0
        Exponent applied to the magnitude.

    Returns
    -------
    array, shape ``(..., 1, t)``
        In ``[0, 1]``: near 1 for white noise, near 0 for a pure tone.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> bool(float(np.median(featurelib.spectral_flatness(y=y, n_fft=256, hop_length=80))) > 0.4)
    True
    """
    if amin <= 0:
        raise ParameterError("amin must be strictly positive")

    def flatness_of(S, xp, axis):  # S: magnitudes, bins along ``axis``
        S_power = S * S if power == 2.0 else S**power
        S_thresh = xp.clip(S_power, min=amin)
        gmean = xp.exp(xp.mean(xp.log(S_thresh), axis=axis, keepdims=True))
        return gmean / xp.mean(S_thresh, axis=axis, keepdims=True)

    if S is None and y is not None:
        # from the signal: a chunk of frames at a time (the whole float64 spectrogram and its
        # three temporaries as large held 2.5x librosa's memory on long signals)
        y, out_dtype = _in_float64(y, S)
        xp = namespace(y)
        flatness = xp.matrix_transpose(map_stft(
            y, lambda X: flatness_of(spectrum_power(X, 1.0, xp), xp, -1), n_fft=n_fft,
            hop_length=hop_length, win_length=win_length, window=window, center=center,
            pad_mode=pad_mode))
        return xp.astype(flatness, out_dtype)
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=1.0,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    return flatness_of(S, xp, -2)


def mean_frequency(y=None, *, sr: float = 22050, S=None, n_fft: int = 2048,
                   hop_length: int = 512, win_length=None, window="hann", center: bool = True,
                   pad_mode: str = "constant", power: float = 2.0):
    """Power-weighted mean frequency of each frame.

    ``sum(f * P) / sum(P)`` with ``P = |STFT| ** power``: the spectral centroid of the power
    spectrum (librosa's centroid weights the magnitude instead).

    Parameters
    ----------
    y, sr, n_fft, hop_length, win_length, window, center, pad_mode
        As :func:`spectral_centroid`.
    S : array, shape ``(..., 1 + n_fft // 2, t)``, optional
        A precomputed ``|STFT| ** power``.
    power : float > 0
        Exponent of the magnitude when ``y`` is given.

    Returns
    -------
    array, shape ``(..., 1, t)``
        Hz; 0 for silent frames.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000).astype(np.float32)
    >>> bool(abs(float(np.median(featurelib.mean_frequency(y=y, sr=8000, n_fft=256, hop_length=80))) - 1000) < 20)
    True
    """
    y, out_dtype = _long_frames_in_float64(y, S, n_fft)
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=power,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    mean = spectral_centroid(S=S, sr=sr, n_fft=n_fft)  # the same weighted mean, of S ** power
    return mean if out_dtype is None else xp.astype(mean, out_dtype)


def median_frequency(y=None, *, sr: float = 22050, S=None, n_fft: int = 2048,
                     hop_length: int = 512, win_length=None, window="hann", center: bool = True,
                     pad_mode: str = "constant", power: float = 2.0):
    """Median frequency of each frame: the lowest bin below which half of the power lies.

    The bin centre frequency where the cumulative power first reaches 50 % of the frame's total
    (the roll-off at 0.5 of the power spectrum).

    Parameters
    ----------
    y, sr, n_fft, hop_length, win_length, window, center, pad_mode
        As :func:`spectral_centroid`.
    S : array, shape ``(..., 1 + n_fft // 2, t)``, optional
        A precomputed ``|STFT| ** power``.
    power : float > 0
        Exponent of the magnitude when ``y`` is given.

    Returns
    -------
    array, shape ``(..., 1, t)``
        Hz; 0 for silent frames.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000).astype(np.float32)
    >>> float(np.median(featurelib.median_frequency(y=y, sr=8000, n_fft=256, hop_length=80)))
    1000.0
    """
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=power,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    return _first_bin_reaching(S, 0.5, _freq_column(None, S, sr, n_fft, xp), xp)


def band_energy_ratio(y=None, *, sr: float = 22050, S=None, split_frequency: float = 2000.0,
                      n_fft: int = 2048, hop_length: int = 512, win_length=None, window="hann",
                      center: bool = True, pad_mode: str = "constant", power: float = 2.0,
                      amin: float = 1e-10):
    """Band energy ratio: power below ``split_frequency`` over power at or above it.

    Parameters
    ----------
    y, sr, n_fft, hop_length, win_length, window, center, pad_mode
        As :func:`spectral_centroid`.
    S : array, shape ``(..., 1 + n_fft // 2, t)``, optional
        A precomputed ``|STFT| ** power``.
    split_frequency : float in (0, sr / 2)
        Bins with centre frequency ``< split_frequency`` form the low band.
    power : float > 0
        Exponent of the magnitude when ``y`` is given.
    amin : float > 0
        Floor on the high-band power, so silent frames give 0 rather than a division by zero.

    Returns
    -------
    array, shape ``(..., 1, t)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.sin(2 * np.pi * 500 * np.arange(8000) / 8000).astype(np.float32)
    >>> bool(float(np.median(featurelib.band_energy_ratio(y=y, sr=8000, n_fft=256, hop_length=80))) > 100)
    True
    """
    if not 0 < split_frequency < sr / 2:
        raise ParameterError(f"split_frequency={split_frequency} must lie in (0, sr/2={sr / 2})")
    if amin <= 0:
        raise ParameterError("amin must be strictly positive")
    y, out_dtype = _in_float64(y, S)
    S, n_fft, xp = _spectrogram(y, S, n_fft=n_fft, hop_length=hop_length, power=power,
                                win_length=win_length, window=window, center=center,
                                pad_mode=pad_mode)
    split_bin = int(np.searchsorted(fft_frequencies(sr=sr, n_fft=n_fft), split_frequency, side="left"))
    low = xp.sum(S[..., :split_bin, :], axis=-2, keepdims=True)
    high = xp.sum(S[..., split_bin:, :], axis=-2, keepdims=True)
    ratio = low / xp.clip(high, min=amin)
    return ratio if out_dtype is None else xp.astype(ratio, out_dtype)


def snr(y, *, noise=None, frame_length: int = 2048, hop_length: int = 512,
        noise_fraction: float = 0.1, amin: float = 1e-20):
    """Signal-to-noise ratio in dB, per signal.

    With a noise reference: ``10 * log10(mean(y ** 2) / mean(noise ** 2))``, where ``noise`` is a
    recording of the noise alone (any length; it broadcasts against ``y``'s leading axes).

    Without one, the noise power is estimated from the quietest frames: the frame powers
    (mean square of ``frame_length`` samples every ``hop_length``, centred with zero padding) are
    sorted, the mean of the lowest ``noise_fraction`` of them (at least one frame) is the noise
    power ``N``, the mean of all frames is the total power ``T``, and the result is
    ``10 * log10(max(T - N, amin) / max(N, amin))``. This suits recordings whose quietest tenth is
    background only (speech with pauses, events in ambience); a signal that never pauses gives
    an estimate near 0 dB or below.

    Parameters
    ----------
    y : array, shape ``(..., n)``
        Audio signal(s).
    noise : array, shape ``(..., m)``, optional
        Noise reference.
    frame_length, hop_length : int > 0
        Framing for the estimate.
    noise_fraction : float in (0, 1]
        Share of the quietest frames taken as noise.
    amin : float > 0
        Floor on the powers before the logarithm.

    Returns
    -------
    array, shape ``y.shape[:-1]``
        dB.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> rng = np.random.default_rng(0)
    >>> noise = 0.01 * rng.standard_normal(16000).astype(np.float32)
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    >>> round(float(featurelib.snr(tone + noise, noise=noise)))
    37
    """
    if not 0 < noise_fraction <= 1:
        raise ParameterError("noise_fraction must lie in (0, 1]")
    xp = namespace(y)
    y = as_float_array(y, xp)
    log_scale = 10.0 / math.log(10.0)  # a Python float: no NumPy scalar in another namespace
    if noise is not None:
        noise = as_float_array(noise, xp, name="noise")
        signal_power = xp.mean(y * y, axis=-1)
        noise_power = xp.mean(noise * noise, axis=-1)
        return log_scale * (xp.log(xp.clip(signal_power, min=amin)) - xp.log(xp.clip(noise_power, min=amin)))
    from .temporal import rms

    frame_power = rms(y=y, frame_length=frame_length, hop_length=hop_length, dtype=None)[..., 0, :] ** 2
    count = frame_power.shape[-1]
    k = max(1, int(np.ceil(noise_fraction * count)))
    quietest = xp.sort(frame_power, axis=-1)[..., :k]
    noise_power = xp.mean(quietest, axis=-1)
    total_power = xp.mean(frame_power, axis=-1)
    signal_power = xp.clip(total_power - noise_power, min=amin)
    return log_scale * (xp.log(signal_power) - xp.log(xp.clip(noise_power, min=amin)))

