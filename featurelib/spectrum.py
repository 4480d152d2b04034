"""Decibels, mel spectrograms, MFCCs and deltas (librosa's names, defaults and numbers).

The mel basis is ``librosa.filters.mel``'s (transcribed, and tested bit for bit against it, so that
building it does not import librosa) and the DCT is ``scipy.fft.dct``'s; both are built
once per parameter set with NumPy, cached, and applied as matrix products in the caller's array
namespace, so the same code runs on NumPy, CuPy and ``array_api_strict``.
"""

from __future__ import annotations

import contextvars
import functools
import math
from contextlib import nullcontext

import numpy as np

from ._backend import as_float_array, like, namespace, namespace_dtype, spectrogram_array, warn_user
from .exceptions import ParameterError
from .framing import check_stft_arguments, fft_precision, get_fft_precision, map_stft

__all__ = [
    "power_to_db", "amplitude_to_db", "db_to_power", "mel_filters", "melspectrogram", "mfcc",
    "delta", "power_spectrogram", "spectrum_power", "project_mel", "mel_projector", "mel_float32_check",
]

_LOG10_SCALE = 10.0 / math.log(10.0)  # 10*log10(x) == _LOG10_SCALE * ln(x), and ln is faster


def _ref_value(ref, magnitude, xp):
    """``ref`` as librosa takes it: a callable applied to ``magnitude``, an array of references
    (broadcast against it, e.g. one per frequency bin), or a number (a float)."""
    if callable(ref):
        return ref(magnitude)
    if isinstance(ref, (list, tuple)) or getattr(ref, "ndim", 0):
        return xp.abs(xp.asarray(ref, dtype=magnitude.dtype))
    return abs(float(ref))


def _as_array(S):
    """Lists and scalars as NumPy arrays (librosa's dB conversions take them); arrays as they are."""
    return S if hasattr(S, "dtype") else np.asarray(S, dtype=np.float64)


def power_to_db(S, *, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0):
    """Convert a power spectrogram to decibels: ``10 * log10(S / ref)``, as ``librosa.power_to_db``.

    Parameters
    ----------
    S : array
        Non-negative power (complex input is reduced to its magnitude, as librosa does).
    ref : float, array or callable
        Reference power; an array broadcasts against ``S`` (one per bin, say); a callable (e.g.
        ``numpy.max``) is applied to ``S``.
    amin : float > 0
        Floor on ``S`` and ``ref`` before the logarithm.
    top_db : float >= 0 or None
        Clamp the output to ``max(output) - top_db``. As in librosa, the maximum is taken over the
        whole array, so a batch is clamped by its loudest member: pass ``top_db=None`` and clamp
        per item when batching unrelated signals. Under the default ``"auto"`` FFT precision
        (:func:`set_fft_precision`), a mel spectrogram keeps librosa parity down to 80 dB under
        its loudest band; for decibels deeper than that (``top_db`` None or above 80, without a
        per-item clamp at 80 dB or less), compute the mel under ``fft_precision("double")``
        (:func:`mfcc` does so itself).

    Returns
    -------
    array, same shape and namespace as ``S``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> featurelib.power_to_db(np.array([1.0, 0.1, 1e-12]), top_db=None)
    array([   0.,  -10., -100.])
    """
    if amin <= 0:
        raise ParameterError("amin must be strictly positive")
    if top_db is not None and top_db < 0:
        raise ParameterError("top_db must be non-negative")
    S = _as_array(S)
    xp = namespace(S)
    if xp.isdtype(S.dtype, "complex floating"):
        S = xp.abs(S)
    S = as_float_array(S, xp, name="S")
    ref_value = _ref_value(ref, S, xp)
    log_spec = xp.log(xp.maximum(S, amin))  # maximum: half the cost of clip for the same floor
    log_spec *= _LOG10_SCALE  # in place on the fresh array
    if not isinstance(ref_value, float):  # from a callable, or an array of references
        log_spec = log_spec - _LOG10_SCALE * xp.log(xp.clip(xp.asarray(ref_value, dtype=S.dtype), min=amin))
    elif ref_value != 1.0:
        log_spec = log_spec - 10.0 * math.log10(max(amin, ref_value))
    if top_db is not None and log_spec.size:  # (an empty array has no maximum: nothing to clamp)
        peak = xp.max(log_spec)
        if not bool(xp.isfinite(peak)):
            # a NaN or infinite value somewhere: the floor comes from the finite values, so that
            # one bad signal of a batch does not make every other one NaN (or infinite)
            finite = xp.isfinite(log_spec)
            peak = xp.max(xp.where(finite, log_spec, xp.asarray(-math.inf, dtype=log_spec.dtype)))
        log_spec = xp.maximum(log_spec, peak - top_db)
    return log_spec


def amplitude_to_db(S, *, ref=1.0, amin: float = 1e-5, top_db: float | None = 80.0):
    """Convert an amplitude spectrogram to decibels: ``20 * log10(|S| / ref)``.

    Same contract as ``librosa.amplitude_to_db``.

    Parameters
    ----------
    S : array
        Amplitudes (complex input is reduced to its magnitude).
    ref : float, array or callable
        Reference amplitude; an array broadcasts against ``|S|``; a callable is applied to ``|S|``.
    amin : float > 0
        Floor on ``|S|``.
    top_db : float >= 0 or None
        Clamp to ``max - top_db`` (over the whole array).

    Returns
    -------
    array

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> featurelib.amplitude_to_db(np.array([1.0, 0.1]), top_db=None)
    array([  0., -20.])
    """
    S = _as_array(S)
    xp = namespace(S)
    magnitude = xp.abs(S) if xp.isdtype(S.dtype, "complex floating") else as_float_array(S, xp, name="S")
    magnitude = xp.abs(magnitude)
    ref_value = _ref_value(ref, magnitude, xp)
    if not isinstance(ref_value, float):  # from a callable, or an array of references
        ref_power = xp.asarray(ref_value, dtype=magnitude.dtype) ** 2
        return power_to_db(magnitude * magnitude, ref=lambda _: ref_power, amin=amin**2, top_db=top_db)
    return power_to_db(magnitude * magnitude, ref=ref_value**2, amin=amin**2, top_db=top_db)


def db_to_power(S_db, *, ref: float = 1.0):
    """Inverse of :func:`power_to_db` (without the ``top_db`` clamp): ``ref * 10 ** (S_db / 10)``.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> featurelib.db_to_power(np.array([0.0, -10.0]))
    array([1. , 0.1])
    """
    xp = namespace(S_db)
    return ref * xp.exp(S_db / _LOG10_SCALE)


def _hz_to_mel(frequencies, htk: bool):
    """``librosa.hz_to_mel``, the same float64 operations in the same order."""
    frequencies = np.asanyarray(frequencies)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    f_min, f_sp = 0.0, 200.0 / 3
    mels = (frequencies - f_min) / f_sp
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0
    if frequencies.ndim:
        log_t = frequencies >= min_log_hz
        mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    elif frequencies >= min_log_hz:
        mels = min_log_mel + np.log(frequencies / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels, htk: bool):
    """``librosa.mel_to_hz``, the same float64 operations in the same order."""
    mels = np.asanyarray(mels)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_min, f_sp = 0.0, 200.0 / 3
    freqs = f_min + f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0
    if mels.ndim:
        log_t = mels >= min_log_mel
        freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    elif mels >= min_log_mel:
        freqs = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return freqs


def _librosa_mel_basis(sr, n_fft, n_mels, fmin, fmax, htk, norm) -> np.ndarray:
    """``librosa.filters.mel(..., dtype=float64)`` for ``norm`` in ``("slaney", None)``.

    A line-by-line transcription of librosa 0.11's filterbank (same float64 operations in the
    same order, so the same bits: tests/test_featurelib_parity.py compares them exactly over a
    grid of parameters), because importing ``librosa.filters`` pulls in scipy.signal and numba:
    0.85 s, paid by every job before its first task. Other norms go to librosa itself.
    """
    if fmax is None:
        fmax = float(sr) / 2
    n_mels = int(n_mels)
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=np.float64)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels])
        weights *= enorm[:, np.newaxis]
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warn_user("Empty filters detected in mel frequency basis. Some channels will produce "
                  "empty responses. Try increasing your sampling rate (and fmax) or reducing "
                  "n_mels.")
    return weights


@functools.lru_cache(maxsize=64)
def _cached_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    if isinstance(norm, str) and norm != "slaney":
        raise ParameterError(f"Unsupported mel norm={norm!r}: use 'slaney', None or a number")
    if norm == "slaney" or norm is None:
        basis = _librosa_mel_basis(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    else:  # numeric norms: librosa.util.normalize's conventions, from librosa itself
        import librosa.filters

        basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                    htk=htk, norm=norm, dtype=np.float64)
    basis.setflags(write=False)
    return basis


# A banded product pays a call per group of bands; this is that overhead in multiply-adds per
# frame (measured with chunks of about a thousand frames on NumPy/OpenBLAS).
_CALL_COST_MACS = 600


@functools.lru_cache(maxsize=64)
def _cached_mel_blocks(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    return _banded_blocks(_cached_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm))


def _banded_blocks(basis: np.ndarray):
    """Split a filterbank ``(k, K)`` into groups of consecutive bands and the bins each group reads.

    Every mel band is zero outside a short run of FFT bins, so a group of neighbouring bands
    touches a contiguous slice ``lo:hi`` of the spectrum. Multiplying slice by block does the
    product with a fraction of the dense multiply-adds (about 14 times fewer for 128 bands at
    n_fft 2048). Returns ``((lo, hi, block (hi - lo, bands)), ...)`` in band order, or ``None``
    when one dense product is about as cheap (small ``n_fft``).
    """
    k, K = basis.shape
    dense = k * K + _CALL_COST_MACS
    best, best_cost = None, float("inf")
    for size in (4, 8, 16, 32):
        if size >= k:
            break
        groups = []
        for m0 in range(0, k, size):
            m1 = min(k, m0 + size)
            used = np.flatnonzero(np.any(basis[m0:m1] != 0.0, axis=0))
            lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
            groups.append((m0, m1, lo, hi))
        cost = sum((m1 - m0) * (hi - lo) for m0, m1, lo, hi in groups) + _CALL_COST_MACS * len(groups)
        if cost < best_cost:
            best, best_cost = groups, cost
    if best is None or best_cost > 0.5 * dense:
        return None
    blocks = []
    for m0, m1, lo, hi in best:
        block = np.ascontiguousarray(basis[m0:m1, lo:hi].T)
        block.setflags(write=False)
        blocks.append((lo, hi, block))
    return tuple(blocks)


def project_mel(P, *, sr: float = 22050, n_fft: int | None = None, n_mels: int = 128,
                fmin: float = 0.0, fmax: float | None = None, htk: bool = False, norm="slaney",
                basis=None):
    """Mel bands of a time-major power spectrogram: ``P @ mel_filters(...).T``.

    The product a batch job applies to ``|STFT| ** 2`` laid out frames first. For large
    ``n_fft`` it runs band-group by band-group over the bins each group reads (the filterbank
    is almost all zeros), which gives the same numbers as the dense product with far fewer
    multiply-adds.

    Parameters
    ----------
    P : array, shape ``(..., n_frames, 1 + n_fft // 2)``
        Power (or magnitude) spectrogram, time-major.
    sr, n_fft, n_mels, fmin, fmax, htk, norm
        Mel filterbank parameters (``librosa.filters.mel``); ``n_fft`` defaults to the one that
        ``P``'s bin count implies.
    basis : np.ndarray, shape ``(n_mels, 1 + n_fft // 2)``, optional
        A precomputed filterbank (from :func:`mel_filters`); the mel arguments are then ignored.
        Batch workers get the basis shipped with their task and need not import librosa.

    Returns
    -------
    array, shape ``(..., n_frames, n_mels)``, in ``P``'s namespace and precision

    Examples
    --------
    >>> import numpy as np, featurelib.spectrum as fs
    >>> P = np.ones((10, 1025), dtype=np.float32)
    >>> dense = P @ fs.mel_filters(sr=44100, n_fft=2048, n_mels=128).T.astype(np.float32)
    >>> bool(np.allclose(fs.project_mel(P, sr=44100, n_fft=2048, n_mels=128), dense, rtol=1e-5))
    True
    """
    xp = namespace(P)
    if basis is not None:
        basis = np.asarray(basis, dtype=np.float64)
        if basis.ndim != 2 or basis.shape[1] != P.shape[-1]:
            raise ParameterError(f"basis has shape {basis.shape}; P has {P.shape[-1]} frequency bins")
        return mel_projector(basis, P)(P)
    n_fft = 2 * (P.shape[-1] - 1) if n_fft is None else n_fft
    if P.shape[-1] != 1 + int(n_fft) // 2:
        raise ParameterError(f"P has {P.shape[-1]} frequency bins; n_fft={n_fft} gives {1 + int(n_fft) // 2}")
    return _mel_projector(P, xp, sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                          norm=norm)(P)


def mel_projector(basis, ref):
    """``P -> P @ basis.T`` for a given filterbank, prepared once for many chunks.

    The band groups are found and the blocks moved to ``ref``'s namespace, device and dtype
    here, not per call: what a job applies to every chunk of a batch (see :func:`project_mel`).

    Parameters
    ----------
    basis : np.ndarray, shape ``(n_mels, n_bins)``
        A filterbank, e.g. from :func:`mel_filters`.
    ref : array
        An array of the namespace and dtype the spectra will have.

    Returns
    -------
    callable
        ``(..., t, n_bins) -> (..., t, n_mels)``.

    Examples
    --------
    >>> import numpy as np, featurelib.spectrum as fs
    >>> P = np.ones((10, 1025), dtype=np.float32)
    >>> project = fs.mel_projector(fs.mel_filters(sr=44100, n_fft=2048), P)
    >>> project(P).shape
    (10, 128)
    """
    basis = np.asarray(basis, dtype=np.float64)
    return _projector(basis, _blocks_of(basis), ref, namespace(ref))


_BLOCKS_OF_ARRAY: dict = {}


def _blocks_of(basis: np.ndarray):
    """:func:`_banded_blocks` of an explicit filterbank, remembered by its contents."""
    key = (basis.shape, hash(basis.tobytes()))
    if key not in _BLOCKS_OF_ARRAY:
        if len(_BLOCKS_OF_ARRAY) >= 64:
            _BLOCKS_OF_ARRAY.clear()
        _BLOCKS_OF_ARRAY[key] = _banded_blocks(basis)
    return _BLOCKS_OF_ARRAY[key]


def _mel_projector(ref, xp, *, sr, n_fft, n_mels, fmin, fmax, htk, norm):
    """A function ``P -> P @ basis.T`` with the basis moved once to ``ref``'s namespace and dtype."""
    basis = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    blocks = _cached_mel_blocks(float(sr), int(n_fft), int(n_mels), float(fmin),
                                None if fmax is None else float(fmax), bool(htk), norm)
    return _projector(basis, blocks, ref, xp)


def _projector(basis: np.ndarray, blocks, ref, xp):
    if blocks is None:
        dense = like(basis.T, ref, xp)
        return lambda P: xp.matmul(P, dense)
    moved = [(lo, hi, like(block, ref, xp)) for lo, hi, block in blocks]
    return lambda P: xp.concat([xp.matmul(P[..., lo:hi], block) for lo, hi, block in moved], axis=-1)


def mel_filters(*, sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                fmax: float | None = None, htk: bool = False, norm="slaney") -> np.ndarray:
    """The mel filterbank ``(n_mels, 1 + n_fft // 2)`` of ``librosa.filters.mel``, cached (NumPy).

    The array is the cache's own and read-only (librosa's is a fresh, writeable one): ``.copy()``
    it to change it.

    Examples
    --------
    >>> import featurelib
    >>> featurelib.mel_filters(sr=8000, n_fft=256, n_mels=40).shape
    (40, 129)
    """
    if n_mels <= 0:
        raise ParameterError(f"n_mels={n_mels} must be positive")
    if n_fft <= 0:
        raise ParameterError(f"n_fft={n_fft} must be positive")
    try:
        positive = float(sr) > 0 and math.isfinite(float(sr))
    except (TypeError, ValueError):
        positive = False
    if not positive:
        raise ParameterError(f"sr={sr!r} must be a positive sampling rate")
    try:
        return _cached_mel(float(sr), int(n_fft), int(n_mels), float(fmin),
                           None if fmax is None else float(fmax), bool(htk), norm)
    except TypeError as exc:  # unhashable norm
        raise ParameterError(f"invalid mel filter arguments: {exc}") from exc


def spectrum_power(X, power: float = 2.0, xp=None):
    """``|X| ** power`` of a complex spectrogram, in its namespace (``|X|`` squared in place for
    power 2)."""
    xp = namespace(X) if xp is None else xp
    mag = xp.abs(X)
    if power == 2.0:
        # |X| then its square in place: NumPy's complex abs is one vectorised pass, 2x faster
        # than re ** 2 + im ** 2 (two strided temporaries and a sum), within 4 ulp of it
        mag *= mag
        return mag
    return mag if power == 1.0 else mag**power


# Under the "auto" FFT precision (featurelib.set_fft_precision), a frame is transformed again in
# float64 when float32 rounding could move one of its mel bands beyond librosa parity. A float32
# FFT's error in a bin is a fixed fraction of the frame's energy, so a band's relative error grows
# as 1 / sqrt(r), r = band power / (frame energy x the band's weight sum): about 5e-5 at r = 3e-7
# and 1.6e-4 at r = 3e-8 (measured on FSDD, chirps and tones). Two tiers follow from the two
# parity bounds:
# - mel power is held to 1e-4 relative where it is above 1e-6 of the peak: bands that loud are
#   redone under r = 3e-7 (at most ~5e-5, 2x margin);
# - below that, only the decibels count (log-mel 2e-3 dB, i.e. 4.6e-4 relative; MFCC from them):
#   bands are redone under r = 3e-8 (at most ~1.6e-4, 7e-4 dB, 3x margin), down to 80 dB (1e-8)
#   under the loudest band, where power_to_db's top_db clips them.
# The loudest band is that of the row within the chunk, never above the signal's peak, so both
# floors are conservative. On FSDD this redoes about 1 % of the frames (one tier at 3e-7 down to
# 80 dB redid 8 %).
# Both levels hold at n_fft 256 and above. A shorter transform spreads the same rounding over
# fewer bins: at one r the errors grow about as 1 / sqrt(n_fft) (at r = 3e-8, 2.4e-3 dB at n_fft
# 32 against 1.0e-3 at 256, on chirps, tones and speech at 8-48 kHz; the worst of many frames
# falls slower than that), so under 256 the levels are raised by (256 / n_fft) ** 2 (n_fft 64:
# 16x, where 8x left a band of a chirp 6e-5 off against the 1e-4 allowed).
_MEL_FLOAT32_LEVEL = 3e-7
_MEL_PARITY_FLOOR = 1e-6
_MEL_DB_LEVEL = 3e-8
_MEL_CLIPPED = 1e-8
_MEL_LEVELS_N_FFT = 256
# the decibels under a mel's loudest band that the check keeps within parity (80 dB: what
# power_to_db's default top_db keeps); deeper ones need the mel in float64
MEL_FLOAT32_DB_RANGE = -10.0 * math.log10(_MEL_CLIPPED)


# power_to_db's default amin: no band under it shows in decibels, whatever top_db
_POWER_TO_DB_AMIN = 1e-10
# whether melspectrogram's "auto" check keeps the decibels of bands deeper than 80 dB under the
# loudest (down to power_to_db's amin): its caller may take them with top_db=None; mfcc, which
# clamps them at its own top_db, does not need it
_MEL_DEEP_DECIBELS = contextvars.ContextVar("featurelib_mel_deep_decibels", default=True)
# how much the decibels' rounding errors grow on their way to what the caller returns: mfcc's
# DCT and lifter (:func:`mfcc_db_gain`); the check's decibel tier tightens by its square
_MEL_DB_GAIN = contextvars.ContextVar("featurelib_mel_db_gain", default=1.0)


def mfcc_db_gain(n_mfcc: int, n_mels: int, *, dct_type: int = 2, norm="ortho", lifter: float = 0) -> float:
    """How much an MFCC of ``n_mels`` dB bands can grow independent rounding errors in them:
    the largest Euclidean norm of a row of the DCT, times the lifter's weight on that row.

    1 for the orthonormal DCT without a lifter (the decibels' own error bound then holds for the
    coefficients); ``sqrt(2 n_mels)`` or so for ``norm=None``; up to ``1 + lifter / 2`` more with a
    lifter. :func:`mel_float32_check` (``gain=``) tightens its decibel tier by its square.
    """
    table = dct_matrix(n_mfcc, n_mels, dct_type=dct_type, norm=norm)
    if table.size == 0:
        return 1.0
    norms = np.sqrt(np.sum(table.astype(np.float64) ** 2, axis=1))
    if lifter > 0:
        norms = norms * np.abs(1 + (lifter / 2) * np.sin(np.pi * np.arange(1, 1 + table.shape[0]) / lifter))
    return max(1.0, float(norms.max()))


def mel_float32_check(basis, ref, *, deep: bool = False, gain: float = 1.0):
    """``check(P, M) -> (rows, t)`` bool: the frames whose mel bands float32 rounding could move.

    ``P`` is a chunk's power spectrum ``(rows, t, n_bins)`` from a float32 FFT and ``M`` its mel
    bands ``(rows, t, n_mels)``; see ``map_stft(refine=...)`` and :func:`set_fft_precision`.
    Their decibels are kept to 80 dB under the loudest band (power_to_db's default ``top_db``);
    with ``deep``, also below that, down to power_to_db's default ``amin`` (1e-10), for a
    ``top_db=None`` taken later. ``gain`` (>= 1) is how much the caller's use of the decibels
    grows their errors (an MFCC's, :func:`mfcc_db_gain`): their tier tightens by its square.
    """
    xp = namespace(ref)
    basis = np.asarray(basis, dtype=np.float64)
    weights = basis.sum(axis=-1)
    n_fft = 2 * (basis.shape[-1] - 1)
    scale = max(1.0, _MEL_LEVELS_N_FFT / max(n_fft, 1)) ** 2
    strict_level = _MEL_FLOAT32_LEVEL * scale
    db_level = _MEL_DB_LEVEL * scale * max(1.0, float(gain)) ** 2
    # an empty band (no FFT bin reaches it) is always 0: never flagged (0 x inf would be NaN)
    inverse_limit = like(np.divide(1.0, strict_level * weights, out=np.full_like(weights, -1.0),
                                   where=weights > 0), ref, xp)
    ones = like(np.ones((basis.shape[-1], 1)), ref, xp)
    band_ones = like(np.ones((basis.shape[0], 1)), ref, xp)
    # a band is flagged only under energy * db_limit (the looser tier) and above loudest * 1e-8:
    # frames whose energy puts every band's limit under that floor need no band-by-band look
    reach = max(db_level, strict_level) * float(weights.max())
    db_ratio = db_level / strict_level

    def flags(M, energy, loudest, floor):
        R = M * inverse_limit  # each band over its float32 limit, in units of the frame's energy
        strict = (R < energy) & (M >= loudest * _MEL_PARITY_FLOOR)
        decibels = (R < energy * db_ratio) & (M >= floor)
        # any over the bands as a matrix-vector product: NumPy's any along a short last axis
        # costs 5x more
        return xp.matmul(xp.astype(strict | decibels, M.dtype), band_ones)[..., 0] > 0

    def check(P, M):
        energy = xp.matmul(P, ones)  # a BLAS matrix-vector product: 5x a sum over the last axis
        loudest = xp.max(M, axis=(-2, -1), keepdims=True)
        floor = loudest * _MEL_CLIPPED  # the deepest band whose decibels are kept
        if deep:
            floor = xp.minimum(floor, xp.asarray(_POWER_TO_DB_AMIN, dtype=floor.dtype))
        candidate = energy[..., 0] * reach >= floor[..., 0]  # (rows, t)
        count = int(xp.sum(xp.astype(candidate, xp.int32)))
        if count == 0:
            return candidate
        if 2 * count > candidate.shape[0] * candidate.shape[1]:  # most frames: every band at once
            return flags(M, energy, loudest, floor)
        # the few loud frames (on recorded audio, a fifth): gathered, checked band by band
        loud = xp.broadcast_to(loudest[..., 0], candidate.shape)[candidate]
        deepest = xp.broadcast_to(floor[..., 0], candidate.shape)[candidate]
        picked = flags(M[candidate], energy[candidate], loud[:, None], deepest[:, None])
        out = xp.zeros_like(candidate)
        out[candidate] = picked
        return out

    return check


def _time_major_power(y, *, n_fft, hop_length, win_length, window, center, pad_mode, power,
                      project=None, mel_basis=None):
    """``|STFT(y)| ** power`` in time-major layout ``(..., n_frames, 1 + n_fft // 2)``.

    ``project`` (a function ``(..., t, 1 + n_fft // 2) -> (..., t, k)``, e.g. the mel projection) is
    applied chunk by chunk, giving ``(..., n_frames, k)`` without materialising the full
    spectrogram. With ``mel_basis`` (the projection's filterbank), frames whose mel bands float32
    rounding could move are transformed again in float64 under the "auto" precision.
    """
    xp = namespace(y)
    y = as_float_array(y, xp)
    last = {}

    def reduce(X):
        P = spectrum_power(X, power, xp)
        last["P"] = P
        return P if project is None else project(P)

    refine = None
    if mel_basis is not None:
        if power == 2.0:
            check = mel_float32_check(mel_basis, y, deep=_MEL_DEEP_DECIBELS.get(), gain=_MEL_DB_GAIN.get())
            refine = lambda X, M: check(last["P"], M)  # noqa: E731
        else:  # the float32 bound above is for power spectra
            refine = "double"
    return map_stft(y, reduce, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                    window=window, center=center, pad_mode=pad_mode, refine=refine)


def power_spectrogram(y, *, n_fft: int = 2048, hop_length: int = 512, win_length=None,
                      window="hann", center: bool = True, pad_mode: str = "constant",
                      power: float = 2.0):
    """``|stft(y)| ** power`` with shape ``(..., 1 + n_fft // 2, n_frames)``.

    The spectrogram that every ``S=`` argument in featurelib expects (``power=1`` for the
    magnitude that librosa's spectral features use, ``power=2`` for mel). A job computes this once
    per batch and derives every feature from it.

    Examples
    --------
    >>> import numpy as np, featurelib.spectrum as fs
    >>> fs.power_spectrogram(np.zeros(8000, dtype=np.float32), n_fft=256, hop_length=80).shape
    (129, 101)
    """
    if power <= 0:
        raise ParameterError(f"power={power} must be positive")
    xp = namespace(y)
    return xp.matrix_transpose(_time_major_power(y, n_fft=n_fft, hop_length=hop_length,
                                                 win_length=win_length, window=window,
                                                 center=center, pad_mode=pad_mode, power=power))


def melspectrogram(y=None, *, sr: float = 22050, S=None, n_fft: int = 2048, hop_length: int = 512,
                   win_length: int | None = None, window="hann", center: bool = True,
                   pad_mode: str = "constant", power: float = 2.0, n_mels: int = 128,
                   fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
                   norm="slaney", dtype=np.float32):
    """Mel-scaled spectrogram, as ``librosa.feature.melspectrogram``.

    Parameters
    ----------
    y : array, shape ``(..., n)``, optional
        Audio signal(s).
    sr : float > 0
        Sampling rate of ``y``.
    S : array, shape ``(..., 1 + n_fft // 2, t)``, optional
        A precomputed spectrogram ``|STFT| ** power``; ``n_fft`` is then inferred from it.
    n_fft, hop_length, win_length, window, center, pad_mode
        STFT parameters (see :func:`featurelib.stft`), used when ``y`` is given.
    power : float > 0
        Exponent of the magnitude (2 for power, 1 for energy).
    n_mels, fmin, fmax, htk, norm
        Mel filterbank parameters (``librosa.filters.mel``).
    dtype : float dtype
        The filterbank's type, as librosa's (``librosa.filters.mel(dtype=...)``): float64 gives a
        float64 result, as librosa's product of a float32 spectrogram and a float64 basis does.

    Returns
    -------
    array, shape ``(..., n_mels, t)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> featurelib.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=80, n_mels=40).shape
    (40, 101)
    """
    if S is None:
        if y is None:
            raise ParameterError("melspectrogram needs y or S")
        xp = namespace(y)
        y = as_float_array(y, xp)
        check_stft_arguments(n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                             center=center, pad_mode=pad_mode)  # (before the filterbank's warnings)
        project = _mel_projector(y, xp, sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                 htk=htk, norm=norm)
        basis = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                            norm=norm)
        M = _time_major_power(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                              window=window, center=center, pad_mode=pad_mode, power=power,
                              project=project, mel_basis=basis)
        return _basis_type(xp.matrix_transpose(M), dtype, xp)
    S = spectrogram_array(S)
    xp = namespace(S)
    S = as_float_array(S, xp, name="S")
    if n_fft // 2 + 1 != S.shape[-2]:  # as librosa: n_fft is kept when it fits S (odd n_fft)
        n_fft = 2 * (S.shape[-2] - 1)
    project = _mel_projector(S, xp, sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                             htk=htk, norm=norm)
    return _basis_type(xp.matrix_transpose(project(xp.matrix_transpose(S))), dtype, xp)


def _basis_type(M, dtype, xp):
    """``M`` in the type librosa's product with a basis of ``dtype`` has (float64 widens)."""
    if dtype is None:
        return M
    try:
        kind, size = np.dtype(dtype).kind, np.dtype(dtype).itemsize
    except TypeError:  # a dtype object of the namespace itself (array_api_strict's)
        if not xp.isdtype(dtype, "real floating"):
            raise ParameterError(f"dtype={dtype!r}: the mel filterbank's type is a float type") from None
        wide = xp.result_type(M.dtype, dtype)
        return M if wide == M.dtype else xp.astype(M, wide)
    if kind != "f":
        raise ParameterError(f"dtype={dtype!r}: the mel filterbank's type is a float type")
    if size <= 4:  # float32 or narrower: the product stays in the spectrogram's type
        return M
    wide = xp.result_type(M.dtype, namespace_dtype(dtype, xp))
    return M if wide == M.dtype else xp.astype(M, wide)


@functools.lru_cache(maxsize=64)
def _cached_dct(n_mfcc: int, n_mels: int, dct_type: int, norm):
    import scipy.fft

    matrix = scipy.fft.dct(np.eye(n_mels), type=dct_type, norm=norm, axis=0)[:n_mfcc]
    matrix.setflags(write=False)
    return matrix


def dct_matrix(n_mfcc: int, n_mels: int, *, dct_type: int = 2, norm="ortho") -> np.ndarray:
    """The ``(n_mfcc, n_mels)`` matrix of ``scipy.fft.dct(..., axis=-2)[:n_mfcc]`` (NumPy, cached)."""
    if dct_type not in (1, 2, 3, 4):
        raise ParameterError(f"dct_type={dct_type} must be 1, 2, 3 or 4")
    if norm not in (None, "ortho", "forward", "backward"):
        raise ParameterError(f"norm={norm!r} is not a DCT normalisation")
    if dct_type == 1 and n_mels < 2:
        raise ParameterError("dct_type=1 needs n_mels >= 2")
    if isinstance(n_mfcc, bool) or int(n_mfcc) != n_mfcc or n_mfcc < 0:  # (-1 sliced n_mels - 1 rows)
        raise ParameterError(f"n_mfcc={n_mfcc!r} must be a non-negative integer")
    return _cached_dct(int(n_mfcc), int(n_mels), int(dct_type), norm)


def mfcc(y=None, *, sr: float = 22050, S=None, n_mfcc: int = 20, dct_type: int = 2,
         norm="ortho", lifter: float = 0, mel_norm="slaney", top_db: float | None = 80.0,
         **kwargs):
    """Mel-frequency cepstral coefficients, as ``librosa.feature.mfcc``.

    Parameters
    ----------
    y : array, shape ``(..., n)``, optional
        Audio signal(s).
    sr : float > 0
        Sampling rate.
    S : array, shape ``(..., n_mels, t)``, optional
        A log-power (dB) mel spectrogram; when given, ``y`` and the mel arguments are ignored.
    n_mfcc : int >= 0
        Number of coefficients.
    dct_type : {1, 2, 3, 4}
        DCT type (``scipy.fft.dct``).
    norm : None or "ortho"
        DCT normalisation.
    lifter : float >= 0
        Cepstral liftering (``0`` disables it).
    mel_norm : "slaney", float or None
        Normalisation of the mel filters (librosa's ``norm`` of ``filters.mel``).
    top_db : float >= 0 or None
        The dB floor below the maximum, applied by :func:`power_to_db` over the whole input as
        librosa does (featurelib names it so that batch jobs can clamp per item instead).
    **kwargs
        Passed on to :func:`melspectrogram` (``n_fft``, ``hop_length``, ``n_mels``, ...).

    Returns
    -------
    array, shape ``(..., n_mfcc, t)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> featurelib.mfcc(y=y, sr=8000, n_fft=256, hop_length=80, n_mels=40).shape
    (20, 101)
    """
    if lifter < 0:
        raise ParameterError(f"MFCC lifter={lifter} must be a non-negative number")
    if S is None:
        if y is None:
            raise ParameterError("mfcc needs y or S")
        # the "auto" precision's float32 check keeps bands to 80 dB under the loudest: a deeper
        # floor (or none) needs every frame in float64 for the decibels to keep parity
        deeper = top_db is None or top_db > MEL_FLOAT32_DB_RANGE
        # the DCT and lifter grow the decibels' rounding errors: the check keeps them smaller
        n_mels = kwargs.get("n_mels", 128)  # (a bad one is melspectrogram's to refuse, by name)
        number = isinstance(n_mels, (int, float, np.integer, np.floating)) and not isinstance(n_mels, bool)
        gain = (mfcc_db_gain(n_mfcc, int(n_mels), dct_type=dct_type, norm=norm, lifter=lifter)
                if number and n_mels >= 1 else 1.0)
        shallow = _MEL_DEEP_DECIBELS.set(False)  # its decibels are clamped at 80 dB or less
        gained = _MEL_DB_GAIN.set(gain)
        try:
            with fft_precision("double") if deeper and get_fft_precision() == "auto" else nullcontext():
                M = melspectrogram(y=y, sr=sr, norm=mel_norm, **kwargs)
        finally:
            _MEL_DB_GAIN.reset(gained)
            _MEL_DEEP_DECIBELS.reset(shallow)
        S = power_to_db(M, top_db=top_db)
    S = spectrogram_array(S, what="mel bands", least=1)
    xp = namespace(S)
    S = as_float_array(S, xp, name="S")
    table = dct_matrix(n_mfcc, S.shape[-2], dct_type=dct_type, norm=norm)
    LI = None
    if lifter > 0:
        LI = 1 + (lifter / 2) * np.sin(np.pi * np.arange(1, 1 + table.shape[0], dtype=np.float64) / lifter)
    out_dtype = S.dtype
    if S.dtype == xp.float32 and _dct_in_float64(S, table, LI, xp):
        S = xp.astype(S, xp.float64)
    D = like(table, S, xp)
    M = xp.matmul(D, S)
    if LI is not None:
        M = M * like(LI[:, None], M, xp)
    return M if M.dtype == out_dtype else xp.astype(M, out_dtype)


# A float32 DCT of dB values whose terms sum to more than this (|S| times a row's absolute
# weights, times the lifter's gain) is taken in float64: the products' rounding grows with that
# sum (a 128-band DCT of a -250 dB floor missed librosa by 5e-3, the parity bound), and FSDD's
# speech (about 250) stays well under it
MFCC_FLOAT32_TERM_SUM = 1000.0


def _dct_in_float64(S, table: np.ndarray, LI, xp) -> bool:
    """Whether the MFCC's DCT of float32 ``S`` runs in float64: always under the FFT precision
    "double", never under "single", and under "auto" when its terms are large enough for
    float32's rounding to approach the parity bound (:data:`MFCC_FLOAT32_TERM_SUM`)."""
    precision = get_fft_precision()
    if precision != "auto" or S.size == 0 or table.size == 0:  # (n_mfcc=0: librosa's (0, t))
        return precision == "double"
    gain = float(np.max(np.abs(LI))) if LI is not None else 1.0
    row_sum = float(np.max(np.sum(np.abs(table), axis=1)))
    return float(xp.max(xp.abs(S))) * row_sum * gain > MFCC_FLOAT32_TERM_SUM


@functools.lru_cache(maxsize=32)
def _savgol_tables(width: int, order: int):
    """Interior dot weights and the 'interp' edge operators of scipy's Savitzky-Golay filter."""
    import scipy.signal

    weights = scipy.signal.savgol_coeffs(width, order, deriv=order, use="dot")
    response = scipy.signal.savgol_filter(np.eye(width), width, order, deriv=order, axis=0,
                                          mode="interp")
    half = width // 2
    return weights, response[:half], response[half + 1:]


def _pad_for_delta(x, half, mode, xp, cval: float = 0.0):
    n = x.shape[-1]
    if mode == "constant":
        z = xp.full((*x.shape[:-1], half), cval, dtype=x.dtype)
        return xp.concat([z, x, z], axis=-1)
    if mode == "nearest":
        return xp.concat([xp.concat([x[..., :1]] * half, axis=-1), x,
                          xp.concat([x[..., n - 1:]] * half, axis=-1)], axis=-1)
    if mode == "wrap":
        idx = np.arange(-half, n + half) % n
    else:  # mirror: d c b | a b c d | c b a
        period = 2 * (n - 1) if n > 1 else 1
        idx = np.abs(np.arange(-half, n + half)) % period
        idx = np.where(idx >= n, period - idx, idx)
    return xp.take(x, xp.asarray(idx), axis=-1)


def delta(data, *, width: int = 9, order: int = 1, axis: int = -1, mode: str = "interp",
          cval: float = 0.0):
    """Local derivative estimate (Savitzky-Golay), as ``librosa.feature.delta``.

    Parameters
    ----------
    data : array
        Feature matrix, e.g. MFCCs ``(..., n_mfcc, t)``.
    width : odd int >= 3
        Frames in the local window.
    order : int > 0
        Derivative order.
    axis : int
        Axis along which to differentiate (time, by default the last).
    mode : {"interp", "nearest", "mirror", "constant", "wrap"}
        Edge handling, as ``scipy.signal.savgol_filter``.
    cval : float
        The value beyond the edges for ``mode="constant"`` (the one keyword that librosa's
        ``**kwargs`` pass on to ``savgol_filter`` and that it does not set itself).

    Returns
    -------
    array, same shape as ``data``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> d = featurelib.delta(np.arange(20.0).reshape(2, 10))
    >>> bool(np.allclose(d, 1.0))
    True
    """
    xp = namespace(data)
    data = as_float_array(data, xp, name="data")
    if data.ndim == 0:
        data = xp.reshape(data, (1,))
    if not isinstance(width, (int, np.integer)) or width < 3 or width % 2 != 1:
        raise ParameterError("width must be an odd integer >= 3")
    if not isinstance(order, (int, np.integer)) or order <= 0:
        raise ParameterError("order must be a positive integer")
    if order >= width:  # (scipy's savgol: "polyorder must be less than window_length")
        raise ParameterError(f"order={order} must be less than width={width}")
    if mode not in ("interp", "nearest", "mirror", "constant", "wrap"):
        raise ParameterError(f"mode={mode!r} is not supported")
    x = xp.moveaxis(data, axis, -1)
    n = x.shape[-1]
    if mode == "interp" and width > n:
        raise ParameterError(f"when mode='interp', width={width} cannot exceed data.shape[axis]={n}")
    weights, left, right = _savgol_tables(int(width), int(order))
    half = width // 2
    if mode == "interp":
        padded, lo, hi = x, half, n - half
    else:
        padded, lo, hi = _pad_for_delta(x, half, mode, xp, float(cval)), 0, n
    count = hi - lo
    out = None
    for j, w in enumerate(weights):
        if w == 0.0:
            continue
        start = lo - half + j if mode == "interp" else j
        term = float(w) * padded[..., start:start + count]
        out = term if out is None else out + term
    if out is None:
        out = xp.zeros((*x.shape[:-1], count), dtype=x.dtype)
    if mode == "interp":
        head = xp.matmul(x[..., :width], like(left.T, x, xp))
        tail = xp.matmul(x[..., n - width:], like(right.T, x, xp))
        out = xp.concat([head, out, tail], axis=-1)
    return xp.moveaxis(out, -1, axis)
