"""Framing, windows and the short-time Fourier transform.

Same names, keyword arguments, defaults and frame counts as librosa 0.11 (``librosa.util.frame``,
``librosa.stft``, ``librosa.istft``), batched over leading axes and written once against the array
API, so NumPy, CuPy and ``array_api_strict`` arrays run the same code. Arithmetic stays in the
input's precision (float32 in, complex64 out), where librosa promotes its frames to float64.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import numpy as np

from ._backend import (
    FrameRedo,
    as_dtype,
    as_float_array,
    chunk_samples,
    fft_namespace,
    like,
    namespace,
    place,
    signal_ends,
    sliding_frames,
    to_numpy,
    warn_user,
)
from .exceptions import ParameterError

__all__ = [
    "get_window", "frame", "stft", "istft", "pad_signal", "n_frames", "fft_frequencies", "map_stft",
    "stft_frames", "set_fft_precision", "get_fft_precision", "fft_precision",
]

# np.pad's modes (but "empty", whose padding is whatever memory held): librosa's rms pads its
# signal with any of them; its stft refuses those that pad with a statistic or wrap around
_PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric", "wrap", "maximum", "mean",
              "median", "minimum")
_STFT_PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric")


def _pad_center(w: np.ndarray, size: int) -> np.ndarray:
    """``librosa.util.pad_center``: zero-pad ``w`` on both sides to ``size`` (left gets the floor)."""
    left = (size - w.shape[0]) // 2
    return np.pad(w, (left, size - w.shape[0] - left))


@functools.lru_cache(maxsize=64)
def _cached_window(window, win_length: int, n_fft: int) -> np.ndarray:
    if window in ("hann", "hanning"):
        # the periodic Hann window, as scipy.signal.get_window("hann", N, fftbins=True), without
        # importing scipy.signal and librosa (over a second) for the default case
        w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
             if win_length > 1 else np.ones(win_length))
    else:
        import librosa.filters

        w = librosa.filters.get_window(window, win_length, fftbins=True)
    w = _pad_center(w, n_fft)
    w.setflags(write=False)
    return w


def get_window(window="hann", win_length: int = 2048, *, n_fft: int | None = None) -> np.ndarray:
    """A periodic analysis window, centred and zero-padded to ``n_fft`` (float64, NumPy).

    Parameters
    ----------
    window : str, tuple, float or np.ndarray
        Anything ``librosa.filters.get_window`` accepts (e.g. ``"hann"``, ``("kaiser", 8.0)``), or an
        array of length ``win_length``.
    win_length : int > 0
        Length of the window.
    n_fft : int >= win_length, optional
        Length to pad the window to (defaults to ``win_length``).

    Returns
    -------
    np.ndarray, shape ``(n_fft,)``
        Read-only when cached (a named window): ``.copy()`` it to change it.

    Examples
    --------
    >>> import featurelib
    >>> featurelib.get_window("hann", 400, n_fft=512).shape
    (512,)
    """
    n_fft = win_length if n_fft is None else n_fft
    if win_length <= 0 or win_length > n_fft:
        raise ParameterError(f"win_length={win_length} must satisfy 0 < win_length <= n_fft={n_fft}")
    try:
        hash(window)
    except TypeError:  # an explicit array of window samples, or a spec holding a list
        if isinstance(window, tuple):  # ("general_cosine", [0.5, 0.5]): not cached
            try:
                import librosa.filters

                return _pad_center(librosa.filters.get_window(window, win_length, fftbins=True), n_fft)
            except (ValueError, TypeError) as exc:
                raise ParameterError(f"invalid window {window!r}: {exc}") from exc
        w = np.asarray(window, dtype=np.float64)
        if w.shape != (win_length,):
            raise ParameterError(f"window array has shape {w.shape}, expected ({win_length},)") from None
        return _pad_center(w, n_fft)
    try:
        return _cached_window(window, int(win_length), int(n_fft))
    except (ValueError, TypeError) as exc:  # librosa raises these for unknown window names
        raise ParameterError(f"invalid window {window!r}: {exc}") from exc


def n_frames(n_samples: int, *, frame_length: int, hop_length: int, center: bool = True) -> int:
    """Number of frames librosa produces for a signal of ``n_samples``.

    Examples
    --------
    >>> import featurelib.framing as F
    >>> F.n_frames(8000, frame_length=256, hop_length=80)
    101
    """
    padded = n_samples + 2 * (frame_length // 2) if center else n_samples
    if padded < frame_length:
        return 0
    return 1 + (padded - frame_length) // hop_length


def fft_frequencies(*, sr: float = 22050, n_fft: int = 2048) -> np.ndarray:
    """Centre frequencies of the ``1 + n_fft // 2`` rfft bins (float64, NumPy), as librosa.

    Examples
    --------
    >>> import featurelib.framing as F
    >>> F.fft_frequencies(sr=8000, n_fft=8)
    array([   0., 1000., 2000., 3000., 4000.])
    """
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def _check_hop(hop_length):
    if not isinstance(hop_length, (int, np.integer)) or hop_length <= 0:
        raise ParameterError(f"hop_length={hop_length} must be a positive integer")


def pad_signal(y, left: int, right: int, *, mode: str = "constant"):
    """Pad the last axis of ``y`` by ``left`` and ``right`` samples (array-API ``np.pad`` subset).

    Parameters
    ----------
    y : array, shape ``(..., n)``
    left, right : int >= 0
    mode : {"constant", "edge", "linear_ramp", "reflect", "symmetric", "wrap", "maximum", "mean", "median", "minimum"}
        As ``np.pad`` (a statistic is of the whole signal); ``"constant"`` pads with zeros and
        ``"linear_ramp"`` ramps to zero.

    Returns
    -------
    array, shape ``(..., left + n + right)``

    Examples
    --------
    >>> import numpy as np, featurelib.framing as F
    >>> F.pad_signal(np.array([1.0, 2.0, 3.0]), 2, 1, mode="reflect")
    array([3., 2., 1., 2., 3., 2.])
    """
    if mode not in _PAD_MODES:
        raise ParameterError(f"pad_mode={mode!r} is not supported; use one of {_PAD_MODES}")
    if left == 0 and right == 0:
        return y
    xp = namespace(y)
    n = y.shape[-1]
    lead = y.shape[:-1]
    if mode == "constant":
        parts = [xp.zeros((*lead, left), dtype=y.dtype, device=_device(y)), y,
                 xp.zeros((*lead, right), dtype=y.dtype, device=_device(y))]
        return xp.concat(parts, axis=-1)
    if n == 0:
        raise ParameterError(f"cannot pad an empty signal with pad_mode={mode!r}")
    if n == 1 and mode != "linear_ramp":  # np.pad reflects, wraps or summarises one sample as itself
        mode = "edge"
    if mode in ("edge", "maximum", "mean", "median", "minimum"):  # one value repeated on each side
        first, last = (y[..., :1], y[..., n - 1:]) if mode == "edge" else (_statistic(y, mode, xp),) * 2
        parts = [xp.broadcast_to(first, (*lead, left)), y, xp.broadcast_to(last, (*lead, right))]
        return xp.concat([xp.asarray(p, copy=True) for p in parts], axis=-1)
    if mode == "linear_ramp":  # from the edge sample to 0 at the far end, as np.pad's linspace
        up = like(np.arange(left, dtype=np.float64) / max(left, 1), y, xp)
        down = like((right - 1 - np.arange(right, dtype=np.float64)) / max(right, 1), y, xp)
        return xp.concat([y[..., :1] * up, y, y[..., n - 1:] * down], axis=-1)
    if mode == "wrap":
        index = like(np.arange(-left, n + right) % n, y, xp, dtype=xp.int64)
        return xp.take(y, index, axis=-1)
    # reflect / symmetric, possibly wider than the signal: repeat, as np.pad does (each round
    # reflects at most a whole number of the signal's periods of what is there)
    out = y
    while left > 0 or right > 0:
        m = out.shape[-1]
        span = (m - 1) // (n - 1) * (n - 1) if mode == "reflect" else m // n * n
        take_l, take_r = min(left, span), min(right, span)
        skip = 1 if mode == "reflect" else 0
        head = xp.flip(out[..., skip:skip + take_l], axis=-1)
        tail = xp.flip(out[..., m - skip - take_r:m - skip], axis=-1)
        out = xp.concat([head, out, tail], axis=-1)
        left, right = left - take_l, right - take_r
    return out


def _statistic(y, mode: str, xp):
    """np.pad's statistic of the whole last axis of ``y`` (n >= 1), kept as ``(..., 1)``."""
    if mode == "maximum":
        return xp.max(y, axis=-1, keepdims=True)
    if mode == "minimum":
        return xp.min(y, axis=-1, keepdims=True)
    if mode == "mean":
        return xp.mean(y, axis=-1, keepdims=True)
    ordered = xp.sort(y, axis=-1)  # median: the middle sample, or the mean of the middle two
    n = y.shape[-1]
    return (ordered[..., (n - 1) // 2:(n - 1) // 2 + 1] + ordered[..., n // 2:n // 2 + 1]) / 2


def _device(x):
    from array_api_compat import device

    return device(x)


def frame(x, *, frame_length: int, hop_length: int, axis: int = -1, writeable: bool = False,
          subok: bool = False):
    """Slice a signal into overlapping frames, as ``librosa.util.frame``.

    Parameters
    ----------
    x : array, shape ``(..., n)``
    frame_length : int > 0
    hop_length : int > 0
    axis : int
        The axis to frame: ``-1`` (time last) in any namespace; another axis, and ``writeable``
        or ``subok``, on a NumPy array, where ``librosa.util.frame`` does it.
    writeable, subok : bool
        As librosa (NumPy: a writeable view, subclasses kept).

    Returns
    -------
    array, shape ``(..., frame_length, n_frames)``
        With ``n_frames = 1 + (n - frame_length) // hop_length``. On NumPy and CuPy this is a
        read-only strided view, as in librosa.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> featurelib.frame(np.arange(10.0), frame_length=4, hop_length=2).shape
    (4, 4)
    """
    if hasattr(x, "ndim") and axis == x.ndim - 1:
        axis = -1  # the last axis, named by its index
    if axis != -1 or writeable or subok:
        if not isinstance(x, np.ndarray):
            raise ParameterError("frame takes axis other than -1, writeable and subok on NumPy arrays only")
        import librosa.util

        try:
            return librosa.util.frame(x, frame_length=frame_length, hop_length=hop_length, axis=axis,
                                      writeable=writeable, subok=subok)
        except librosa.util.exceptions.ParameterError as exc:
            raise ParameterError(str(exc)) from None
    _check_hop(hop_length)
    if frame_length <= 0:
        raise ParameterError(f"frame_length={frame_length} must be positive")
    if x.shape[-1] < frame_length:
        raise ParameterError(f"Input is too short (n={x.shape[-1]:d}) for frame_length={frame_length:d}")
    xp = namespace(x)
    return xp.matrix_transpose(sliding_frames(x, frame_length, hop_length))


def _librosa_tail_slice(n: int, n_fft: int, hop_length: int, mode: str) -> int | None:
    """Where librosa.stft's tail slice starts when its reflection differs from that of the whole
    signal, else None.

    librosa 0.11 pads the head and the tail of a long signal apart: its last frames come from
    ``np.pad(y[..., s:], (0, n_fft // 2), mode)``. When ``hop_length > n_fft // 2`` that slice can
    be shorter than the padding needs ("reflect": ``n_fft // 2 + 1`` samples; "symmetric":
    ``n_fft // 2``), and NumPy then reflects it again, so the padding differs from the whole
    signal's reflection (the last frame of a tone was 1.5e-4 of the peak off, n_fft 64, hop 50).
    """
    if mode not in ("reflect", "symmetric"):
        return None
    half = n_fft // 2
    start_k = -(-half // hop_length)
    tail_k = (n + half - n_fft) // hop_length + 1
    if tail_k <= start_k or tail_k * hop_length - half + n_fft > n + half:
        return None  # one pad of the whole signal, or no frame from a tail slice
    s = tail_k * hop_length - half
    return s if n - s < half + (mode == "reflect") else None


def _check_stft_pad_mode(center: bool, pad_mode) -> None:
    """Refuse the centre padding librosa.stft refuses (a statistic, wrap) or np.pad lacks."""
    if center and pad_mode not in _STFT_PAD_MODES:
        raise ParameterError(f"pad_mode={pad_mode!r} is not supported by the STFT; use one of {_STFT_PAD_MODES}")


def _frames_for_stft(y, *, n_fft, hop_length, center, pad_mode):
    """Time-major frames ``(..., n_frames, n_fft)`` of ``y`` after librosa's centre padding."""
    _check_stft_pad_mode(center, pad_mode)
    if center:
        s = _librosa_tail_slice(y.shape[-1], n_fft, hop_length, pad_mode)
        if s is None:
            y = pad_signal(y, n_fft // 2, n_fft // 2, mode=pad_mode)
        else:  # librosa's padding of its tail slice (see _librosa_tail_slice)
            xp = namespace(y)
            tail = pad_signal(y[..., s:], 0, n_fft // 2, mode=pad_mode)[..., y.shape[-1] - s:]
            y = xp.concat([pad_signal(y, n_fft // 2, 0, mode=pad_mode), tail], axis=-1)
    elif y.shape[-1] < n_fft:
        raise ParameterError(f"n_fft={n_fft} is too large for input signal of length={y.shape[-1]}")
    return sliding_frames(y, n_fft, hop_length)


def _stft_parameters(n_fft, hop_length, win_length):
    if not isinstance(n_fft, (int, np.integer)) or n_fft <= 0:
        raise ParameterError(f"n_fft={n_fft} must be a positive integer")
    win_length = n_fft if win_length is None else win_length
    if not isinstance(win_length, (int, np.integer)) or not 0 < win_length <= n_fft:
        raise ParameterError(f"win_length={win_length} must be an integer in 1..n_fft={n_fft}")
    hop_length = int(win_length // 4) if hop_length is None else hop_length
    _check_hop(hop_length)
    return int(n_fft), int(hop_length), int(win_length)


def check_stft_arguments(*, n_fft, hop_length=None, win_length=None, center=True,
                         pad_mode="constant") -> None:
    """The :class:`ParameterError` :func:`stft` would raise for its framing arguments, raised
    before any work (a mel spectrogram builds its filterbank first, with librosa's warnings)."""
    _stft_parameters(n_fft, hop_length, win_length)
    _check_stft_pad_mode(center, pad_mode)


_FFT_PRECISIONS = ("auto", "double", "single")
_FFT_PRECISION = {"value": "auto"}
_THREAD_PRECISION = threading.local()  # fft_precision(): one thread's setting, over the process's


def get_fft_precision() -> str:
    """The FFT arithmetic in use for float32 signals in this thread: ``"auto"`` (default),
    ``"double"`` or ``"single"`` (see :func:`set_fft_precision`).

    Examples
    --------
    >>> import featurelib
    >>> featurelib.get_fft_precision()
    'auto'
    >>> with featurelib.fft_precision("double"):
    ...     featurelib.get_fft_precision()
    'double'
    """
    return getattr(_THREAD_PRECISION, "value", None) or _FFT_PRECISION["value"]


@contextlib.contextmanager
def fft_precision(precision: str):
    """Use ``precision`` (see :func:`set_fft_precision`) in this thread for the duration.

    Unlike :func:`set_fft_precision`, other threads keep their setting: a threaded server or
    Dask worker can run computations of different precisions side by side.

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> with featurelib.fft_precision("double"):
    ...     featurelib.get_fft_precision()
    'double'
    """
    if precision not in _FFT_PRECISIONS:
        raise ParameterError(f"precision={precision!r} must be one of {_FFT_PRECISIONS}")
    previous = getattr(_THREAD_PRECISION, "value", None)
    _THREAD_PRECISION.value = precision
    try:
        yield
    finally:
        _THREAD_PRECISION.value = previous


def set_fft_precision(precision: str) -> str:
    """Choose the FFT arithmetic for float32 signals; returns the previous setting.

    - ``"double"`` transforms float32 frames in float64, as librosa does (its float32 frames meet
      a float64 window): librosa's numbers on any signal, at twice the cost.
    - ``"single"`` transforms in float32. A float32 FFT's rounding floor sits about 1e-7 under
      a frame's energy, so bands 70-80 dB under the frame's loudest can move by a few
      thousandths of a dB: within tolerance on recorded audio, not on pure tones and chirps.
    - ``"auto"`` (default) transforms in float32 and checks every frame: where a quantity
      derived from the spectrum could be moved by float32 rounding beyond librosa parity (a mel
      band under 3e-7 of the frame's energy within 60 dB of the loudest band, or under 3e-8 of
      it within 80 dB, or for ``melspectrogram`` down to power_to_db's ``amin``, whose caller
      may take a deeper ``top_db``; any frame of a spectral flatness, which takes logs of every bin), that
      frame is transformed again in float64. Recorded audio keeps nearly all frames in float32;
      a pure tone ends up all in float64. Plain STFT values (``stft``, within 1e-5 of the peak magnitude either way) stay
      float32.

    Like ``librosa.set_fftlib``, this is process-wide. float64 signals always transform in
    float64.

    Parameters
    ----------
    precision : {"auto", "double", "single"}

    Examples
    --------
    >>> import featurelib
    >>> previous = featurelib.set_fft_precision("double")
    >>> featurelib.set_fft_precision(previous)
    'double'
    """
    if precision not in _FFT_PRECISIONS:
        raise ParameterError(f"precision={precision!r} must be one of {_FFT_PRECISIONS}")
    previous = _FFT_PRECISION["value"]
    _FFT_PRECISION["value"] = precision
    return previous


def map_stft(y, reduce=None, *, n_fft=2048, hop_length=None, win_length=None, window="hann",
             center=True, pad_mode="constant", refine=None, refine_columns=None):
    """Time-major STFT ``(..., n_frames, 1 + n_fft // 2)``, optionally reduced chunk by chunk.

    The frames are windowed and transformed in cache-sized chunks, and ``reduce`` (for example
    ``|X| ** 2`` followed by a mel projection) is applied to each chunk while it is still in
    cache, so the full complex spectrogram of a long batch never has to exist. A float32 ``y``
    gives complex64 chunks, transformed in the precision :func:`set_fft_precision` chose.

    Parameters
    ----------
    y : array, shape ``(..., n)``
    reduce : callable, optional
        Maps a complex chunk ``(rows, t, 1 + n_fft // 2)`` (complex64 for float32 ``y``) to
        ``(rows, t, k)``.
    n_fft, hop_length, win_length, window, center, pad_mode
        As :func:`stft`.
    refine : callable or "double", optional
        Under the ``"auto"`` precision: ``refine(X, R)`` maps a chunk ``X`` transformed in float32
        and its reduction ``R`` to a boolean ``(rows, t)`` of the frames whose reduction float32
        rounding could move beyond parity; those frames are transformed again in float64.
        ``"double"`` transforms every frame in float64. Without it, ``"auto"`` stays float32.
    refine_columns : sequence of int, optional
        The entries of the reduction's last axis that a frame transformed again replaces (the
        columns that ``refine`` judged); the others keep their float32 values. Default: all.

    Returns
    -------
    array, shape ``(..., n_frames, k)`` (``k = 1 + n_fft // 2`` without ``reduce``)
    """
    n_fft, hop_length, win_length = _stft_parameters(n_fft, hop_length, win_length)
    xp = namespace(y)
    y = as_float_array(y, xp)
    lead = y.shape[:-1]
    _check_stft_pad_mode(center, pad_mode)
    if not center and y.shape[-1] < n_fft:
        raise ParameterError(f"n_fft={n_fft} is too large for input signal of length={y.shape[-1]}")
    if y.ndim >= 2 and y.shape[-1] < n_fft <= y.shape[-2]:
        # soundfile.read gives (n_samples, channels): each sample would become a signal of its
        # own, a spectrogram per sample (librosa warns that n_fft is too large for its length)
        warn_user(f"y has shape {tuple(y.shape)}: signals of {y.shape[-1]} "
                  f"sample{'' if y.shape[-1] == 1 else 's'} each, shorter than n_fft={n_fft}. featurelib takes (..., n_samples); for (n_samples, "
                  "channels), as soundfile.read gives, pass y.T")
    y = xp.reshape(y, (math.prod(lead), y.shape[-1])) if len(lead) != 1 else y  # (also when n is 0)
    B, n = y.shape
    T = n_frames(n, frame_length=n_fft, hop_length=hop_length, center=center)
    precision = get_fft_precision()
    if precision == "auto" and isinstance(refine, str):
        precision = refine
    fft_dtype = y.dtype if precision in ("single", "auto") else xp.float64
    window_table = get_window(window, win_length, n_fft=n_fft)
    w = like(window_table, y, xp, dtype=fft_dtype)
    out_complex = xp.complex64 if y.dtype == xp.float32 else xp.complex128
    rfft = fft_namespace(xp).rfft
    check = refine if precision == "auto" and callable(refine) and y.dtype == xp.float32 else None
    w64 = like(window_table, y, xp, dtype=xp.float64) if check is not None else None

    def plain(chunk, w=w):
        # cast before any reduction: a complex64 pass then float32 squares beat float64 squares
        X = xp.astype(rfft(chunk * w, axis=-1), out_complex, copy=False)
        return X if reduce is None else reduce(X)

    budget = chunk_samples(y)
    redo = FrameRedo(lambda frames: plain(frames, w64), budget, refine_columns) if check is not None else None

    def transform(chunk, at):
        if redo is None:
            return plain(chunk)
        X = xp.astype(rfft(chunk * w, axis=-1), out_complex, copy=False)
        R = X if reduce is None else reduce(X)
        flagged = check(X, R)
        return redo.add(chunk, flagged, R, at) if bool(xp.any(flagged)) else R

    rows = max(1, budget // max(1, T * n_fft))
    if B == 0 or rows > 1 or T * n_fft <= budget:
        # whole rows per chunk: pad and frame each group of rows while it is in cache
        spans = [(b, min(b + rows, B), 0, T) for b in range(0, max(B, 1), rows)]

        def frames_of(b0, b1, t0, t1):
            frames = _frames_for_stft(y[b0:b1, ...], n_fft=n_fft, hop_length=hop_length,
                                      center=center, pad_mode=pad_mode)
            return frames if t1 - t0 == T else frames[:, t0:t1, :]
    else:
        # long rows: frame the padded signal once and transform spans of frames
        padded = _frames_for_stft(y, n_fft=n_fft, hop_length=hop_length, center=center,
                                  pad_mode=pad_mode)
        span = max(1, min(T, budget // n_fft))
        spans = [(b, b + 1, t, min(t + span, T)) for b in range(B) for t in range(0, T, span)]

        def frames_of(b0, b1, t0, t1):
            return padded[b0:b1, t0:t1, :]
    # Frames that lie wholly past a row's last non-zero sample see only zeros (batches of
    # length-sorted clips are zero-padded at the end): they are not transformed, but take the
    # result of one all-zero frame, which is what transforming them would give.
    sounding = _sounding_frames(y, T, n_fft=n_fft, hop_length=hop_length, center=center,
                                pad_mode=pad_mode)
    silent = []  # the result of one all-zero frame, made when first needed

    def silent_frame():
        if not silent:
            silent.append(plain(xp.zeros((1, 1, n_fft), dtype=y.dtype, device=_device(y))))
        return silent[0]

    out = None
    for b0, b1, t0, t1 in spans:
        t_end = min(t1, max(t0, int(sounding[b0:b1].max())) if B else t1)
        piece = transform(frames_of(b0, b1, t0, t_end), (b0, t0)) if t_end > t0 else None
        if len(spans) == 1 and t_end == t1:
            out = piece
            continue
        if out is None:  # filled in place: no concatenation copy of a large spectrogram
            like_piece = piece if piece is not None else silent_frame()
            out = xp.empty((B, T, like_piece.shape[-1]), dtype=like_piece.dtype,
                           device=_device(like_piece))
        if piece is not None:
            out[b0:b1, t0:t_end, :] = piece
        if t_end < t1:
            out[b0:b1, t_end:t1, :] = silent_frame()
        if redo is not None and redo.full:  # frames flagged in float32 go again in float64
            redo.flush(out)
    if redo is not None:
        redo.flush(out)
    return xp.reshape(out, (*lead, T, out.shape[-1]))


def magnitude_frames_in_float64(y, rows, cols, *, n_fft, hop_length=None, win_length=None,
                                window="hann", center=True, pad_mode="constant", power=1.0):
    """``|STFT| ** power`` of the frames ``(rows[i], cols[i])`` of ``y`` ``(B, n)``, as librosa
    computes them: float64 window and FFT, rounded to complex64 (float32 ``y``), then the
    magnitude in float32. Returns a NumPy array ``(len(rows), 1 + n_fft // 2)``: the frames are
    gathered where ``y`` is (NumPy or CuPy) and transformed on the host, with NumPy's FFT and
    complex ``abs``, whose roundings are librosa's (CuPy's differ by an ulp, enough to move a
    roll-off that sits 1e-7 of its total from the threshold). For features that a float32 FFT's
    rounding could move by a whole bin (featurelib.spectral_rolloff)."""
    n_fft, hop_length, win_length = _stft_parameters(n_fft, hop_length, win_length)
    xp = namespace(y)
    rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
    frames = _frames_for_stft(y, n_fft=n_fft, hop_length=hop_length, center=center,
                              pad_mode=pad_mode)  # (B, T, n_fft), a view of the padded rows
    picked = to_numpy(frames[like(rows, y, xp, dtype=xp.int64), like(cols, y, xp, dtype=xp.int64), :])
    w = np.asarray(get_window(window, win_length, n_fft=n_fft), dtype=np.float64)
    out_complex = np.complex64 if picked.dtype == np.float32 else np.complex128
    A = np.abs(fft_namespace(np).rfft(picked * w, axis=-1).astype(out_complex, copy=False))
    return A if power == 1.0 else A ** power


def _sounding_frames(y, T: int, *, n_fft: int, hop_length: int, center: bool, pad_mode: str):
    """Per row of ``y`` ``(B, n)``, how many of its ``T`` frames reach a non-zero sample.

    Every later frame holds only zeros. With centring other than by zeros, a frame past the
    signal sees its mirrored or repeated samples: every frame counts there.
    """
    if center and pad_mode != "constant":
        return np.full(y.shape[0], T, dtype=np.int64)
    ends = signal_ends(y) + (n_fft // 2 if center else 0)  # one past the last non-zero, padded
    return np.where(ends > 0, np.minimum(T, (ends - 1) // hop_length + 1), 0)


def stft_frames(y, *, n_fft=2048, hop_length=None, win_length=None, window="hann", center=True,
                pad_mode="constant"):
    """Time-major STFT ``(..., n_frames, 1 + n_fft // 2)``: the layout the batched features use.

    :func:`stft` returns the transpose of this (librosa's layout).
    """
    return map_stft(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                    center=center, pad_mode=pad_mode)


def _is_complex_dtype(dtype, xp) -> bool:
    try:
        return bool(xp.isdtype(dtype, "complex floating"))
    except (TypeError, ValueError, AttributeError):
        try:
            return np.dtype(dtype).kind == "c"
        except TypeError:
            return False


def stft(y, *, n_fft: int = 2048, hop_length: int | None = None, win_length: int | None = None,
         window="hann", center: bool = True, pad_mode: str = "constant", dtype=None, out=None):
    """Short-time Fourier transform, as ``librosa.stft``.

    Parameters
    ----------
    y : array, shape ``(..., n)``
        Real signal(s); float32 stays float32 (complex64 out), float64 gives complex128. Unlike
        librosa, which refuses a buffer that is not finite everywhere, the samples are not
        scanned (a batch job checks them once, at decoding): NaN or inf give non-finite frames.
    n_fft : int > 0
        FFT length.
    hop_length : int > 0, optional
        Samples between frames; default ``win_length // 4``.
    win_length : int <= n_fft, optional
        Window length; default ``n_fft``. The window is zero-padded to ``n_fft``, centred.
    window : str, tuple, float or array
        Window specification (see :func:`get_window`).
    center : bool
        Pad ``n_fft // 2`` samples on both sides so that frame ``t`` is centred at ``t * hop_length``.
    pad_mode : {"constant", "edge", "linear_ramp", "reflect", "symmetric"}
        Padding used when ``center=True``, as ``np.pad``; librosa 0.11's default is
        ``"constant"`` (zeros). Like librosa.stft, the modes that pad with a statistic of the
        signal or wrap it around are refused.
    dtype : complex dtype, optional
        Type of the result, as librosa's ``dtype``; default: complex64 for float32 input,
        complex128 for float64.
    out : array, optional
        A pre-allocated complex array to hold the result, as librosa's ``out``: the same shape,
        or longer on the frame axis (its first ``n_frames`` columns are filled and returned).

    Returns
    -------
    array, complex, shape ``(..., 1 + n_fft // 2, n_frames)``
        On the device of ``y``; ``n_frames = 1 + n // hop_length`` when centred (even ``n_fft``).

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> featurelib.stft(y, n_fft=256, hop_length=80).shape
    (129, 101)
    """
    xp = namespace(y)
    if dtype is not None and not _is_complex_dtype(dtype, xp):
        raise ParameterError(f"dtype={dtype!r} is not a complex type (the STFT is complex)")
    result = xp.matrix_transpose(stft_frames(y, n_fft=n_fft, hop_length=hop_length,
                                             win_length=win_length, window=window, center=center,
                                             pad_mode=pad_mode))
    return place(as_dtype(result, dtype, xp), out, xp)


def _overlap_add(frames, hop_length: int, xp):
    """Sum time-major frames ``(..., T, n)`` placed every ``hop_length`` samples."""
    *lead, T, n = frames.shape
    R = -(-n // hop_length)  # segments of hop_length samples per frame
    if R * hop_length != n:
        frames = pad_signal(frames, 0, R * hop_length - n)
    seg = xp.reshape(frames, (*lead, T, R, hop_length))
    total = None
    for r in range(R):
        part = seg[..., r, :]  # (..., T, hop)
        zeros_before = xp.zeros((*lead, r, hop_length), dtype=frames.dtype, device=_device(frames))
        zeros_after = xp.zeros((*lead, R - 1 - r, hop_length), dtype=frames.dtype, device=_device(frames))
        placed = xp.concat([zeros_before, part, zeros_after], axis=-2)
        total = placed if total is None else total + placed
    out = xp.reshape(total, (*lead, (T + R - 1) * hop_length))
    return out[..., : n + hop_length * (T - 1)]


def istft(stft_matrix, *, hop_length: int | None = None, win_length: int | None = None,
          n_fft: int | None = None, window="hann", center: bool = True, dtype=None,
          length: int | None = None, out=None):
    """Inverse STFT by weighted overlap-add, as ``librosa.istft``.

    Parameters
    ----------
    stft_matrix : array, complex, shape ``(..., 1 + n_fft // 2, n_frames)``
    hop_length, win_length, window, center
        As given to :func:`stft`.
    n_fft : int, optional
        Defaults to ``2 * (stft_matrix.shape[-2] - 1)``.
    dtype : real dtype, optional
        Type of the result, as librosa's ``dtype``; default: float32 for complex64 input,
        float64 for complex128.
    length : int, optional
        Exact output length (zero-padded or trimmed).
    out : array, optional
        A pre-allocated real array for the result, as librosa's ``out`` (the same shape, or
        longer on the last axis: its prefix is filled and returned).

    Returns
    -------
    array, real, shape ``(..., n)``

    Examples
    --------
    >>> import numpy as np, featurelib
    >>> y = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    >>> y2 = featurelib.istft(featurelib.stft(y, n_fft=512), length=4000)
    >>> bool(np.allclose(y, y2, atol=1e-5))
    True
    """
    xp = namespace(stft_matrix)
    if n_fft is None:
        n_fft = 2 * (stft_matrix.shape[-2] - 1)
    n_fft, hop_length, win_length = _stft_parameters(n_fft, hop_length, win_length)
    if length is not None and (isinstance(length, bool) or int(length) != length or length < 0):
        raise ParameterError(f"length={length!r} must be a non-negative integer or None")
    length = int(length) if length else None  # 0, as in librosa: the natural length
    T = stft_matrix.shape[-1]
    if length is not None:
        padded_length = length + 2 * (n_fft // 2) if center else length
        T = min(T, math.ceil(padded_length / hop_length))
    spec = xp.matrix_transpose(stft_matrix[..., :T])
    frames = fft_namespace(xp).irfft(spec, n=n_fft, axis=-1)
    w = like(get_window(window, win_length, n_fft=n_fft), frames, xp)
    y = _overlap_add(frames * w, hop_length, xp)

    import librosa.filters

    named = "hann" if isinstance(window, str) and window == "hanning" else window  # as stft takes it
    wss = librosa.filters.window_sumsquare(window=named, n_frames=T, win_length=win_length,
                                           n_fft=n_fft, hop_length=hop_length, dtype=np.float64)
    start = n_fft // 2 if center else 0
    y = y[..., start:]
    wss = wss[start:]
    if length is None:
        end = y.shape[-1] - (n_fft // 2 if center else 0)
        y, wss = y[..., :end], wss[:end]
    else:
        if y.shape[-1] < length:
            y = pad_signal(y, 0, length - y.shape[-1])
        y = y[..., :length]
        wss = np.pad(wss, (0, max(0, length - wss.shape[0])))[:length]
    tiny = np.finfo(np.float32 if y.dtype == xp.float32 else np.float64).tiny
    norm = np.where(wss > tiny, wss, 1.0)
    return place(as_dtype(y / like(norm, y, xp), dtype, xp), out, xp)
