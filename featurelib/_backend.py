"""Array-namespace plumbing shared by every featurelib function.

Every public function starts with ``xp = namespace(y)`` and then uses only ``xp`` (the array API
standard, through ``array_api_compat``), so the same code runs on NumPy, CuPy and
``array_api_strict``. Constant tables (windows, mel bases, DCT matrices) are built once with NumPy,
cached, and moved to the caller's namespace and device with :func:`like`.
"""

from __future__ import annotations

import array
import numbers

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_cupy_array,
    is_numpy_array,
    is_numpy_namespace,
)

from .exceptions import ParameterError

__all__ = [
    "namespace", "warn_user", "plain_array", "spectrogram_array", "as_float_array", "like", "to_numpy", "fft_namespace", "sliding_frames",
    "chunk_samples", "FrameRedo", "signal_ends",
]


# inputs that NumPy turns into arrays (featurelib computes them in NumPy): Python sequences and
# numbers, and buffers (array.array, memoryview)
_AS_NUMPY = (numbers.Number, list, tuple, array.array, memoryview)


def namespace(*arrays):
    """The array namespace of the given arrays (NumPy for lists, scalars and buffers)."""
    arrays = [a for a in arrays if a is not None]
    arrs = [a for a in arrays if not isinstance(a, _AS_NUMPY)]
    if not arrs:
        return array_namespace(np.asarray(0.0))
    try:
        return array_namespace(*arrs)
    except TypeError as exc:
        raise ParameterError(f"{exc}: pass NumPy or CuPy arrays (or lists of numbers)") from None


def warn_user(message: str) -> None:
    """A ``UserWarning`` that points at the first line outside featurelib (the user's call)."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # level 2: warn_user's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def plain_array(x, name: str = "y"):
    """``x`` itself when it is an array of a namespace; a NumPy array of a list, tuple, number,
    buffer or ``numpy.matrix`` (Python floats as float32; integers stay integers, for
    :func:`as_float_array` to refuse as audio). Ragged or non-numeric values are refused."""
    if isinstance(x, np.matrix):  # a matrix keeps two axes through every reduction
        return np.asarray(x)
    if not isinstance(x, _AS_NUMPY):
        return x
    try:
        values = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise ParameterError(f"{name} is not a rectangular array of numbers ({str(exc).split(';')[0]})") from None
    if values.dtype.kind not in "biufc":
        raise ParameterError(f"{name} must hold numbers, not {values.dtype} values")
    if values.dtype.kind == "f" and isinstance(x, (list, tuple, numbers.Number)):
        return values.astype(np.float32)  # Python floats: featurelib's float32
    return values


def spectrogram_array(S, name: str = "S", what: str = "frequency bins", least: int = 2):
    """``S`` (:func:`plain_array`) checked to be a spectrogram ``(..., bins, frames)``: at least
    two axes, and at least ``least`` rows of ``what`` (one frequency bin is the spectrum of
    ``n_fft = 0``)."""
    S = plain_array(S, name)
    if S.ndim < 2:
        raise ParameterError(f"{name} must be a spectrogram of shape (..., {what}, frames), got shape {tuple(S.shape)}")
    if S.shape[-2] < least:
        rows = f"{S.shape[-2]} row{'' if S.shape[-2] == 1 else 's'}"
        raise ParameterError(f"{name} has {rows} of {what} (shape {tuple(S.shape)}): "
                             f"a spectrogram is (..., {what}, frames)")
    return S


def as_float_array(y, xp=None, *, name: str = "y"):
    """``y`` as a real floating array of its namespace; lists and numbers become float32.

    float64 input stays float64 (as in librosa); other floating types become float32. An
    audio signal (``name="y"``) of integers is refused, as librosa refuses it: PCM samples need
    their scale (``y / 32768`` for 16-bit) before any feature means anything; a 0-d one too.
    So is a list of integers (it would otherwise pass as float32, 90 dB too loud).
    """
    y = plain_array(y, name)
    if xp is None:
        xp = namespace(y)
    if xp.isdtype(y.dtype, "complex floating"):
        raise ParameterError(f"{name} must be real-valued, got dtype {y.dtype}")
    if name == "y" and not xp.isdtype(y.dtype, "real floating"):
        raise ParameterError(f"audio data must be floating-point, not {y.dtype} (scale integer "
                             "PCM first, e.g. y / 32768 for 16-bit, or read it with featurelib.load)")
    if name == "y" and y.ndim == 0:
        raise ParameterError("y must have at least one dimension: (..., n_samples)")
    if not xp.isdtype(y.dtype, "real floating") or (y.dtype != xp.float64 and y.dtype != xp.float32):
        # integers of a non-audio input, and half precision: float16's 11-bit mantissa in the
        # window and FFT put log-mel 2.6 dB off librosa (which computes it in float32); Python
        # floats are float32 already (plain_array)
        y = xp.astype(y, xp.float32)
    return y


def namespace_dtype(dtype, xp):
    """``dtype`` (a NumPy dtype, a type such as ``np.float64``, a name, or ``xp``'s own) as a
    dtype of namespace ``xp``."""
    try:
        name = np.dtype(dtype).name
    except TypeError:  # a dtype object of another namespace (array_api_strict's)
        return dtype
    found = getattr(xp, name, None)
    if found is None:
        raise ParameterError(f"dtype {name} is not a dtype of {getattr(xp, '__name__', xp)}")
    return found


def as_dtype(values, dtype, xp):
    """``values`` as ``dtype`` (:func:`namespace_dtype`; None keeps them as they are): a
    function's ``dtype=`` applied to its result."""
    if dtype is None:
        return values
    wanted = namespace_dtype(dtype, xp)
    return values if values.dtype == wanted else xp.astype(values, wanted)


def place(result, out, xp):
    """``result`` written into the caller's pre-allocated ``out`` (librosa's ``out=``): an array
    as long as the result or longer on the last axis, whose prefix is filled and returned."""
    if out is None:
        return result
    if tuple(out.shape[:-1]) != tuple(result.shape[:-1]) or out.shape[-1] < result.shape[-1]:
        raise ParameterError(f"out has shape {tuple(out.shape)}; the result needs "
                             f"{tuple(result.shape)} (or longer on the last axis)")
    if namespace(out) is not xp:
        raise ParameterError("out must be an array of the input's namespace")
    if xp.isdtype(result.dtype, "complex floating") and not xp.isdtype(out.dtype, "complex floating"):
        raise ParameterError(f"output with dtype={out.dtype} is not of complex type")
    view = out[..., :result.shape[-1]]
    try:
        view[...] = xp.astype(result, out.dtype)
    except (TypeError, ValueError) as exc:  # a read-only view, a narrowing cast a namespace refuses
        raise ParameterError(f"out cannot hold the result: {exc}") from None
    return view


def like(table: np.ndarray, ref, xp=None, dtype=None):
    """Move a NumPy constant ``table`` to the namespace and device of ``ref``."""
    if xp is None:
        xp = namespace(ref)
    if dtype is None:
        dtype = ref.dtype
    if is_numpy_array(ref):
        return np.asarray(table, dtype=dtype)
    return xp.asarray(np.asarray(table), dtype=dtype, device=device(ref))


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of any supported array (CuPy arrays are copied from the device)."""
    if is_numpy_array(x):
        return x
    if is_cupy_array(x):
        return x.get()
    try:
        return np.from_dlpack(x)
    except Exception:  # pragma: no cover - exotic namespaces
        return np.asarray(x)


def fft_namespace(xp):
    """The ``fft`` extension of ``xp`` (NumPy, CuPy and array_api_strict all provide one).

    For NumPy this is ``scipy.fft``: the same functions and signatures, but it transforms float32
    in single precision about five times faster than ``numpy.fft`` on batches of short frames.
    """
    if is_numpy_namespace(xp):
        import scipy.fft

        return scipy.fft
    fft = getattr(xp, "fft", None)
    if fft is None:  # pragma: no cover
        raise ParameterError(f"array namespace {xp.__name__} has no fft extension")
    return fft


def sliding_frames(x, frame_length: int, hop_length: int):
    """Overlapping frames of the last axis, time-major: ``(..., n_frames, frame_length)``.

    NumPy and CuPy get a zero-copy strided view; other namespaces gather with ``take``.
    """
    n = x.shape[-1]
    count = 1 + (n - frame_length) // hop_length
    if is_numpy_array(x):
        view = np.lib.stride_tricks.sliding_window_view(x, frame_length, axis=-1)
        return view[..., ::hop_length, :][..., :count, :]
    if is_cupy_array(x):
        import cupy

        strides = (*x.strides[:-1], x.strides[-1] * hop_length, x.strides[-1])
        shape = (*x.shape[:-1], count, frame_length)
        return cupy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    xp = array_namespace(x)
    starts = np.arange(count, dtype=np.int64)[:, None] * hop_length
    index = (starts + np.arange(frame_length, dtype=np.int64)[None, :]).reshape(-1)
    flat = xp.take(x, xp.asarray(index, device=device(x)), axis=-1)
    return xp.reshape(flat, (*x.shape[:-1], count, frame_length))


def signal_ends(y) -> np.ndarray:
    """Per row of ``y`` ``(B, n)``, a sample index past which the row holds only zeros (NumPy).

    At most 7 samples past the row's last non-zero sample; 0 for a silent row. NumPy compares
    once and looks for the last non-zero byte of the mask eight samples at a time (about 0.3 ns
    a sample); other namespaces (CuPy among them) find the exact index with a flipped
    ``argmax``.
    """
    xp = array_namespace(y)
    B, n = y.shape
    if n == 0 or B == 0:
        return np.zeros(B, dtype=np.int64)
    if is_numpy_array(y):
        nonzero = np.not_equal(y, 0, order="C")  # C order for the 8-byte view (y may be a transpose)
        n8 = n - n % 8
        ends = np.zeros(B, dtype=np.int64)
        if n8:
            words = nonzero[:, :n8].view(np.uint64)[:, ::-1] != 0  # eight samples a word
            first = np.argmax(words, axis=-1)[:, None]  # from the end
            sounding = np.take_along_axis(words, first, axis=-1)[:, 0]
            ends = np.where(sounding, n8 - 8 * first[:, 0], 0)
        if n8 < n:
            ends = np.where(np.any(nonzero[:, n8:], axis=-1), n, ends)
        return ends.astype(np.int64)
    nonzero = xp.astype(xp.flip(y, axis=-1) != 0, xp.int8)  # the array API's argmax takes numbers
    first = to_numpy(xp.argmax(nonzero, axis=-1)).astype(np.int64)
    return np.where(to_numpy(xp.any(nonzero != 0, axis=-1)), n - first, 0)


def chunk_samples(x) -> int:
    """How many frame samples a blocked computation on ``x`` should handle at once.

    On the CPU, chunks of about a megabyte in float64 keep the window, FFT and reductions in
    cache (about twice as fast as whole-batch passes); a GPU wants the largest chunks memory
    allows; other namespaces (``array_api_strict``) just need bounded temporaries.
    """
    if is_numpy_array(x):
        return 1 << 18
    if is_cupy_array(x):
        return 1 << 25
    return 1 << 22


class FrameRedo:
    """Frames flagged chunk by chunk for a second transform, recomputed a batch at a time.

    ``recompute`` maps frames ``(1, m, n)`` to ``(1, m, k)``. :meth:`add` takes a chunk's frames
    ``(rows, t, n)``, its fresh result ``(rows, t, k)``, the boolean ``redo`` ``(rows, t)`` and the
    chunk's place ``(row, frame)`` in the output; ``columns`` (indices of the result's last axis)
    limits what the recomputation replaces. NumPy and CuPy gather just the flagged frames
    and recompute them together once ``budget`` samples are waiting (one transform call for many
    chunks instead of one per chunk); :meth:`flush` writes them into the output. Other
    namespaces (no integer-array assignment in the array API) recompute the whole chunk at once.
    """

    def __init__(self, recompute, budget: int, columns=None):
        self.recompute, self.budget = recompute, budget
        # the result's last-axis entries the recomputation replaces (a sorted NumPy index array);
        # None: all of them
        self.columns = None if columns is None else np.asarray(columns, dtype=np.intp)
        self.parts, self.waiting = [], 0

    def add(self, frames, redo, result, at=(0, 0)):
        """The chunk's result (recomputed here where frames cannot be gathered)."""
        if not (is_numpy_array(frames) or is_cupy_array(frames)):
            again = self.recompute(frames)
            if self.columns is None:
                return again
            xp = array_namespace(result)
            mask = np.zeros(result.shape[-1], dtype=bool)
            mask[self.columns] = True
            return xp.where(like(mask, result, xp, dtype=xp.bool), again, result)
        rows, cols = redo.nonzero()
        picked = frames[rows, cols]
        self.parts.append((rows + at[0], cols + at[1], picked))
        self.waiting += picked.shape[0] * picked.shape[-1]
        return result

    @property
    def full(self) -> bool:
        return self.waiting >= self.budget

    def flush(self, out):
        """Recompute the waiting frames and write them into ``out`` ``(B, T, k)``."""
        if not self.parts:
            return out
        xp = array_namespace(out)
        if len(self.parts) == 1:
            rows, cols, frames = self.parts[0]
        else:
            rows, cols, frames = (xp.concat([p[i] for p in self.parts]) for i in range(3))
        again = self.recompute(frames[None])[0]
        if self.columns is None:
            out[rows, cols] = again
        else:
            columns = like(self.columns, rows, dtype=rows.dtype)
            out[rows[:, None], cols[:, None], columns[None, :]] = again[:, columns]
        self.parts, self.waiting = [], 0
        return out
