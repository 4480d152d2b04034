"""Compute: decoded audio -> every configured feature, one STFT per batch, exact per file.

The unit of work is a *segment buffer*: rows of samples that already carry the centre padding of
a ``center=True`` STFT (``n_fft // 2`` samples of zeros, or of real context for a block cut from a
long file), so every feature runs with ``center=False`` and row ``r``'s first ``n_valid[r]`` frames
equal the frames featurelib gives for that file (or that block of it) on its own:

- rows of a batch are zero-padded at the end; a centred frame only sees zeros past the end of
  the file, as with ``pad_mode="constant"``, so padding changes nothing;
- ``zero_crossing_rate`` pads with the edge samples (librosa), so it gets its own buffer whose
  padding repeats each row's first / last sample;
- ``power_to_db(top_db=...)`` (``melspectrogram`` with ``db: true``, and ``mfcc``) clamps relative
  to a maximum: the job takes it per file (over its valid frames, or over the whole file for a
  long file: its unclamped dB are kept in a temporary file until the end of its one decoding
  pass, then clamped), never over the batch.

Decoding mixes channels to mono (mean) and resamples with soxr (HQ), as ``librosa.load``: the
resampled length is ``ceil(n * sr / native_sr)`` (soxr's output padded with zeros). Long files
are decoded and resampled as a stream (``soxr.ResampleStream`` is bit-identical to the one-shot
resampler), so a 2-hour recording never sits in memory whole.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from featurelib._decoder_notes import open_quietly, quiet_decoder_notes
from featurelib._sequential import read_float32
from featurelib.wav import PLACEHOLDER_SIZES, chunks, file_chunks, riff_order

__all__ = [
    "FeatureSet", "DecodeError", "decode", "ResampledStream", "segment_buffers", "compute_segments",
    "buffer_groups", "clamped_db_features", "Moments", "row_moments", "packed_moments", "array_namespace_for", "BlockReader", "file_features", "wav_declared_frames",
]

STREAM_CHUNK_FRAMES = 1 << 18  # native frames read per step when streaming a long file
MAX_BUFFER_FRAMES = 8192  # frames (rows x longest row) computed in one step: bounds memory


_BLAS_LOCK = threading.Lock()
_BLAS = {"depth": 0, "limits": None}


@contextlib.contextmanager
def one_blas_thread():
    """BLAS and OpenMP held to one thread while any batch of this process runs.

    threadpoolctl's limits are process-wide: in a threaded worker, nested ``threadpool_limits``
    of overlapping batches would undo each other (the first to finish restores the default
    under the other). Here the first batch in sets the limit and the last one out restores it.
    One thread per batch also keeps the numbers of a threaded worker equal to those of a worker
    process: OpenBLAS splits a product across its threads with other kernels at the edges of
    the split, which moves some results by an ulp.
    """
    with _BLAS_LOCK:
        if _BLAS["depth"] == 0:
            from threadpoolctl import threadpool_limits

            _release_blas_control()
            _BLAS["limits"] = threadpool_limits(1)
            _release_blas_control()
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["depth"] -= 1
            if _BLAS["depth"] == 0:
                _release_blas_control()
                _BLAS["limits"].restore_original_limits()
                _release_blas_control()
                _BLAS["limits"] = None


_HEAP = {"pid": None}


def keep_freed_memory() -> None:
    """glibc: serve a task's large temporaries from the heap and keep what a batch frees for the
    next one.

    By default glibc maps every block over 128 KB-32 MB afresh and unmaps it when freed, so each
    padded buffer, spectrum chunk and feature array of every batch is paid again in page faults
    (a 42 MB buffer: 9 ms to fill fresh, 5 ms reused). Up to 32 MB per block from the heap, and
    up to 256 MB of freed heap kept: 10-25 % off the DSP of FSDD's clips (compute_segments
    over all 3,000 clips on one thread: 0.35-0.45 -> 0.27-0.40 s); the example config over
    100,000 clips on 2 workers, three runs each way: DSP 18.9-22.3 -> 16.5-19.8 worker-s, wall
    25.0-30.5 -> 22.2-25.7 s. A worker's peak memory is the same; it is not handed back between
    batches. Once per process; glibc only.
    """
    if _HEAP["pid"] == os.getpid():
        return
    _HEAP["pid"] = os.getpid()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator's own rules
        pass


def _release_blas_control() -> None:
    """Let the next thread set OpenBLAS's limits.

    threadpoolctl (3.6 and later) lets one thread at a time, the first to set a limit outside a
    ``with`` block, change OpenBLAS's shared pthreads pool, and silently ignores every other
    thread's limits while that thread lives. Batches take turns through ``_BLAS_LOCK``, so the
    one holding it may take control, and gives it back when done.
    """
    try:
        from threadpoolctl import OpenBLASController

        OpenBLASController.clear_controlling_thread(force=True)
    except (ImportError, AttributeError, TypeError):  # an older threadpoolctl: no such rule
        pass


def length_mismatch(announced: int, decoded: int) -> str:
    """The reason of a file whose decoding gave another frame count than its header announces."""
    if decoded < announced:
        return (f"truncated: the header announces {announced} frames but only {decoded} decode "
                "(the file is cut short, or damaged part-way)")
    return (f"the header announces {announced} frames but {decoded} decode (a damaged file, or a "
            "header that is wrong)")


class DecodeError(Exception):
    """A file whose samples cannot be used (unreadable, non-finite, length differs from header)."""

    def __init__(self, error_type: str, message: str):
        self.error_type = error_type
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.error_type, str(self)))


# ---------------------------------------------------------------- features


def _mel_key(kw: dict, *, norm_key: str) -> tuple:
    return (kw["n_mels"], kw["fmin"], kw["fmax"], kw["htk"], kw[norm_key])


def _feature_mel_key(name: str, kw: dict) -> tuple | None:
    """The mel basis key of feature ``name`` (melspectrogram's ``norm``, mfcc's ``mel_norm``), or
    None for a feature without a mel."""
    if name == "melspectrogram":
        return _mel_key(kw, norm_key="norm")
    if name == "mfcc":
        return _mel_key(kw, norm_key="mel_norm")
    return None


def _in_db(name: str, kw: dict) -> bool:
    """Whether feature ``name`` takes its mel in decibels (mfcc; melspectrogram with db)."""
    return name == "mfcc" or (name == "melspectrogram" and kw["db"])


@dataclass
class FeatureSet:
    """The normalised ``feature_config`` of the store, with what the features need computed."""

    sr: int
    n_fft: int
    hop_length: int
    win_length: int
    window: str
    features: dict  # name -> kwargs (defaults filled)
    tables: dict | None = None  # window and mel bases (featurelib's), see :meth:`with_tables`
    fft_precision: str = "auto"  # featurelib.set_fft_precision for this store's numbers

    @classmethod
    def from_config(cls, fc: dict, tables: dict | None = None) -> FeatureSet:
        return cls(sr=fc["sr"], n_fft=fc["n_fft"], hop_length=fc["hop_length"],
                   win_length=fc["win_length"], window=fc["window"], features=fc["features"],
                   tables=tables, fft_precision=fc.get("fft_precision", "auto"))

    def precision(self):
        """featurelib's FFT precision set to this store's for the duration, in this thread
        (a threaded worker may run batches of other stores beside it)."""
        from featurelib.framing import fft_precision

        return fft_precision(self.fft_precision)

    def mel_keys(self) -> set[tuple]:
        return {key for name, kw in self.features.items() if (key := _feature_mel_key(name, kw))}

    def make_tables(self) -> dict:
        """The analysis window (padded to ``n_fft``) and every mel basis, from featurelib.

        Built once by the coordinator and shipped with the tasks, so that workers need not import
        librosa for a window other than Hann (featurelib's Hann and mel tables need no librosa import).
        """
        import warnings

        from featurelib.framing import get_window
        from featurelib.spectrum import mel_filters

        window = np.asarray(get_window(self.window, self.win_length, n_fft=self.n_fft), np.float64)
        with warnings.catch_warnings():  # empty bands: the coordinator says so once (empty_mel_bands)
            warnings.simplefilter("ignore", UserWarning)
            mels = {key: np.asarray(mel_filters(sr=self.sr, n_fft=self.n_fft, n_mels=key[0], fmin=key[1],
                                                fmax=key[2], htk=key[3], norm=key[4]))
                    for key in self.mel_keys()}
        return {"window": window, "mel": mels}

    def empty_mel_bands(self) -> dict[str, int]:
        """Feature name -> how many of its mel bands no FFT bin reaches (always 0: ``n_mels`` too
        many for ``n_fft`` at this rate and ``fmin``/``fmax``; librosa warns of them)."""
        out = {}
        for name, kw in self.features.items():
            key = _feature_mel_key(name, kw)
            if key is not None:
                empty = int((np.asarray(self.table("mel", key)).max(axis=1) <= 0).sum())
                if empty:
                    out[name] = empty
        return out

    def table(self, kind: str, key=None):
        if self.tables is None:
            self.tables = self.make_tables()
        return self.tables[kind] if key is None else self.tables[kind][key]

    @property
    def pad(self) -> int:
        return self.n_fft // 2

    def dims(self) -> dict[str, int]:
        from jobs.config import feature_dims

        return feature_dims(self.features)

    def unbounded_db_mels(self) -> set[tuple]:
        """Mel keys taken in dB further down than the 80 dB (``top_db`` null or over 80) that the
        "auto" FFT precision's float32 check covers (``featurelib.mel_float32_check``)."""
        from featurelib.spectrum import MEL_FLOAT32_DB_RANGE

        return {_feature_mel_key(name, kw) for name, kw in self.features.items()
                if _in_db(name, kw) and (kw["top_db"] is None or kw["top_db"] > MEL_FLOAT32_DB_RANGE)}

    def mel_db_gains(self) -> dict[tuple, float]:
        """Mel key -> how much the MFCC's DCT and lifter grow the decibels' rounding errors
        (``featurelib.spectrum.mfcc_db_gain``), for the "auto" precision's float32 check, as
        featurelib's own mfcc tightens it; empty without an MFCC (a store has one at most)."""
        from featurelib.spectrum import mfcc_db_gain

        kw = self.features.get("mfcc")
        if kw is None:
            return {}
        return {_feature_mel_key("mfcc", kw): mfcc_db_gain(kw["n_mfcc"], kw["n_mels"], dct_type=kw["dct_type"],
                                                           norm=kw["norm"], lifter=kw["lifter"])}

    def db_mels(self) -> dict[str, tuple]:
        """Features clamped with ``top_db`` per file: name -> mel key (a file's max is needed)."""
        return {name: _feature_mel_key(name, kw) for name, kw in self.features.items()
                if _in_db(name, kw) and kw["top_db"] is not None}

    @property
    def needs_edge_buffer(self) -> bool:
        return "zero_crossing_rate" in self.features

    def samples_for_frames(self, n_frames: int) -> int:
        """Length of a segment (with its centre padding) that gives ``n_frames`` frames."""
        return (n_frames - 1) * self.hop_length + self.n_fft


def array_namespace_for(device: str):
    """NumPy, or CuPy for ``device == "cuda"``, as the array API namespace featurelib writes
    against: ``array_api_compat.cupy`` (the bare ``cupy`` module of CuPy 13/14 lacks
    ``matrix_transpose``, and ``astype``/``concat`` in some versions)."""
    if device == "cuda":
        import array_api_compat.cupy as xp

        return xp
    return np


# ---------------------------------------------------------------- decoding


class _UrlFile:
    """The file object of an fsspec URL, holding on to the ``OpenFile`` that made it.

    ``fsspec.open(url).open()`` alone lets the ``OpenFile`` be collected, and with it the outer
    files of a chained URL (``zip://member::file:///archive.zip``, ``simplecache::s3://...``):
    the member's reads then fail part-way ("seek of closed file") and the file reads as not
    audio. Reads, seeks and the rest go to the file; ``close`` closes both.
    """

    def __init__(self, path: str):
        import fsspec

        self._opened = fsspec.open(path, "rb")
        self._file = self._opened.open()

    error: BaseException | None = None  # the last read that failed (libsndfile sees a short read)

    def __getattr__(self, name):
        return getattr(self._file, name)

    # A failed read is kept and reads as the end of the file: libsndfile stops there, and the
    # decoder names this error (_raise_read_error) instead of a damaged file; raising it inside
    # soundfile's read callback would only print "Exception ignored from cffi callback".
    def read(self, *args):
        try:
            return self._file.read(*args)
        except Exception as exc:  # noqa: BLE001 - kept in self.error, see above
            self.error = exc
            return b""

    def readinto(self, buffer):
        try:
            return self._file.readinto(buffer)
        except Exception as exc:  # noqa: BLE001 - kept in self.error, see above
            self.error = exc
            return 0

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._opened.close()


def _raise_read_error(source) -> None:
    """A URL whose reading failed part-way (a server without range requests, a dropped
    connection) fails with that reason, not as a damaged file: libsndfile only saw the bytes
    stop. Nothing for a path, or a read that did not fail."""
    error = getattr(source, "error", None)
    if error is not None:
        text = " ".join(str(error).split()) or type(error).__name__
        raise DecodeError("ReadFailed", f"reading it failed part-way: {type(error).__name__}: {text}")


def _source(path: str):
    """What soundfile opens: the path, or for a URL an open file object (close it when done)."""
    return _UrlFile(path) if "://" in path else path


def _to_mono(block: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 -> (frames,), the channel mean (librosa.to_mono)."""
    from featurelib.io import channel_mean

    return channel_mean(block)


# Samples beyond this are refused: a power spectrum of n_fft samples of amplitude A reaches
# (n_fft * A) ** 2, past float32's 3.4e38 for A = 1e12 only when n_fft > 2 ** 18. Float audio
# is normally within +-1 (some tools write +-32768); a float file damaged in its sample data
# (a few flipped bytes) reads values such as 8.5e37, whose features would all be inf or NaN.
MAX_SAMPLE_MAGNITUDE = 1e12


def _check_finite(y: np.ndarray, path: str):
    """Refuse NaN or infinite samples, and samples so large that the features overflow."""
    if y.size == 0:
        return
    lo, hi = float(np.min(y)), float(np.max(y))  # NaN and inf propagate: two passes, no copy
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DecodeError("NonFiniteAudio", "the audio contains NaN or infinite samples")
    peak = max(hi, -lo)
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise DecodeError("SampleRange", f"samples reach {peak:.3g}, beyond +-{MAX_SAMPLE_MAGNITUDE:.0e} "
                          "(float audio is normally within +-1): damaged sample data, whose "
                          "spectra would overflow float32")


def _fix_length(y: np.ndarray, n: int) -> np.ndarray:
    if y.shape[0] == n:
        return y
    if y.shape[0] > n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], dtype=y.dtype)])


def wav_declared_frames(path: str) -> int | None:
    """Frames a RIFF/WAVE header announces in its ``data`` chunk (None if not a plain WAV).

    libsndfile quietly shortens a WAV whose data was cut; comparing with the announced count is
    how a truncated file is told apart from a short one.
    """
    if "://" in path:
        return None
    try:
        with open(path, "rb") as handle:
            order = riff_order(handle.read(12))
            if order is None:
                return None
            block_align = None
            for cid, _body, size in file_chunks(handle, order):
                if cid == b"fmt ":
                    fmt = handle.read(min(size, 26))
                    if len(fmt) >= 16:
                        block_align = _frame_bytes(fmt, order)
                elif cid == b"data":
                    # 0 and the streaming writers' "length unknown" sizes (0xFFFFFFFF from
                    # pipes, 0x7FFFF000 from sox), as featurelib.load reads them
                    if not block_align or size == 0 or size in PLACEHOLDER_SIZES:
                        return None
                    return size // block_align
            return None
    except OSError:
        return None


def _frame_bytes(fmt: bytes, order: str) -> int:
    """Bytes per frame of a WAV ``fmt `` body, as libsndfile counts them: for PCM and float
    (also as WAVE_FORMAT_EXTENSIBLE) channels x whole bytes per sample, whatever the block align
    says (a 12-bit file with align 1 holds 2 bytes a sample); for other encodings the block align
    (then this counts blocks, fewer than frames, so no frames are announced beyond the file's)."""
    tag, channels = int.from_bytes(fmt[0:2], order), int.from_bytes(fmt[2:4], order)
    align, bits = int.from_bytes(fmt[12:14], order), int.from_bytes(fmt[14:16], order)
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], order)  # the sub-format GUID's first two bytes
    if tag in (1, 3) and channels and bits:
        return channels * ((bits + 7) // 8)
    return align


def check_undamaged(handle) -> None:
    """Raises ``DecodeError("DamagedFile")`` for a file damaged part-way that its decoder would
    decode around without a word (an Ogg page failing its checksum), as featurelib.load refuses
    it. Reads the whole file: done once per file, by the task that decodes its start."""
    from featurelib.io import _ogg_damage_reason

    reason = _ogg_damage_reason(handle)
    if reason is not None:
        raise DecodeError("DamagedFile", reason)


def _check_complete(path: str, fmt: str, frames: int) -> None:
    if fmt != "WAV":
        return
    declared = wav_declared_frames(path)
    if declared is not None and declared > frames:
        raise DecodeError("TruncatedFile", f"the header announces {declared} frames but the file "
                          f"holds {frames}: the file was cut short")


def _read_pcm16_wav(path: str, expected_frames: int | None):
    """``(samples (frames, channels) float32, sample rate)`` of a plain 16-bit PCM WAV, or None.

    One read and a RIFF chunk walk: several times faster than libsndfile on short clips and
    bit-identical (x / 32768). Anything else (other encodings, extensible headers, a data chunk
    cut short, a length other than the header's) returns None and goes to libsndfile.
    """
    import struct

    try:  # os.open/os.read: cheaper than a Python file object for a short clip
        fd = os.open(path, os.O_RDONLY)
        try:
            raw = os.read(fd, os.fstat(fd).st_size + 1)
        finally:
            os.close(fd)
    except OSError:
        return None
    if riff_order(raw) != "little":
        return None
    ids = [cid for cid, _, _ in chunks(raw)]
    if ids.count(b"data") != 1 or b"RIFF" in ids:
        return None  # a second data chunk, or two files joined: libsndfile refuses them
    fmt = None
    for cid, body, size in chunks(raw):
        if cid == b"fmt " and size >= 16 and body + 16 <= len(raw):
            fmt = struct.unpack_from("<HHIIHH", raw, body)  # tag, channels, rate, bytes/s, align, bits
        elif cid == b"data":
            if fmt is None or fmt[0] != 1 or fmt[5] != 16 or fmt[1] < 1 or fmt[4] != 2 * fmt[1]:
                return None
            channels, rate = fmt[1], fmt[2]
            frames = size // fmt[4]
            if body + size > len(raw) or frames <= 0:  # the data chunk must lie whole in the file
                return None
            if expected_frames is not None and frames != expected_frames:
                return None
            samples = np.frombuffer(raw, dtype="<i2", count=frames * channels, offset=body)
            samples = samples.astype(np.float32) * np.float32(1.0 / 32768.0)
            return samples.reshape(frames, channels), rate
    return None


def decode(path: str, *, sr: int, expected_frames: int | None = None,
           timings: dict | None = None, subtype: str | None = None) -> np.ndarray:
    """A whole file as float32 mono at ``sr`` (librosa.load's numbers).

    ``timings["resample_s"]``, when given, accumulates the seconds spent resampling.
    """
    import soundfile as sf
    import soxr

    from featurelib.io import (
        _frames_to_end,
        _not_audio_reason,
        _truncation_reason,
        part_way_reason,
    )
    from jobs.errors import reason_kind

    block, whole_pcm, source = None, False, path
    if subtype == "PCM_16" and "://" not in path:
        fast = _read_pcm16_wav(path, expected_frames)
        if fast is not None:
            (block, native_sr), fmt = fast, "WAV"
            whole_pcm = True  # its data chunk lies whole in the file; 16-bit samples are finite
    if block is None:
        source = _source(path)
        try:
            try:
                handle, quiet = open_quietly(source, path, frames=expected_frames)
            except sf.LibsndfileError as exc:  # changed since the plan read its header
                _raise_read_error(source)
                reason = _not_audio_reason(source, exc)
                raise DecodeError(reason_kind(reason, "NotAudio"), reason) from None
            with handle, quiet_decoder_notes(quiet):
                native_sr, fmt = int(handle.samplerate), handle.format
                cut = _truncation_reason(handle)  # as featurelib.load (the plan checked it too)
                if cut is not None:
                    raise DecodeError("TruncatedFile", cut)
                check_undamaged(handle)
                block = handle.read(_frames_to_end(handle), dtype="float32", always_2d=True)
        except sf.LibsndfileError as exc:  # a damaged stream (lost sync, bad block, cut short)
            _raise_read_error(source)
            raise DecodeError("DecodeFailed", part_way_reason(exc)) from None
        finally:
            if source is not path:
                source.close()
    if expected_frames is not None and block.shape[0] != expected_frames:
        _raise_read_error(source)  # a URL's read that failed part-way, named
        raise DecodeError("LengthMismatch", length_mismatch(expected_frames, block.shape[0]))
    if block.shape[0] == 0:
        raise DecodeError("EmptyAudio", "no audio samples")
    if not whole_pcm:
        _check_complete(path, fmt, block.shape[0])
    y = _to_mono(block)
    if not whole_pcm:
        _check_finite(y, path)
    if native_sr != sr:
        import time

        t0 = time.perf_counter()
        n_out = int(math.ceil(y.shape[0] * (sr / native_sr)))  # librosa's order of operations
        y = _fix_length(soxr.resample(y, native_sr, sr, quality="soxr_hq"), n_out)
        if timings is not None:
            timings["resample_s"] = timings.get("resample_s", 0.0) + time.perf_counter() - t0
    return np.ascontiguousarray(y, dtype=np.float32)


# decoded before a stream's first wanted sample when it starts inside a file, so that soxr's
# filter has settled by then (10 ms already gives the samples of a pass from the file's start,
# to float32 rounding)
RESAMPLE_PREROLL_S = 0.25


class ResampledStream:
    """A file decoded and resampled in steps: ``read(n)`` returns the next ``n`` samples at ``sr``.

    Mono mix and soxr HQ as :func:`decode`, and the same total length (``ceil`` rule), checked
    against the header's frame count at the end of the file.

    ``start`` (a sample index at ``sr``) starts the stream inside the file, for one part of a
    file split across tasks: decoding seeks to a native frame where input and output samples
    line up (a multiple of ``native_sr / gcd(native_sr, sr)``) at least
    :data:`RESAMPLE_PREROLL_S` earlier, and what is resampled before ``start`` is dropped.
    """

    def __init__(self, path: str, *, sr: int, expected_frames: int, start: int = 0, handle=None):
        import soxr

        self.path = path
        if handle is not None:  # the file's samples from elsewhere (:class:`NativeScratch`)
            self._source, self._handle, self._quiet = path, handle, False
        else:
            self._source = _source(path)
            self._handle, self._quiet = open_quietly(self._source, path, frames=expected_frames)
            if start == 0:
                try:
                    check_undamaged(self._handle)
                except DecodeError:
                    self.close()
                    raise
        self.native_sr = int(self._handle.samplerate)
        self.sr = sr
        self.expected_frames = expected_frames
        self.n_samples = int(expected_frames) if self.native_sr == sr else int(
            math.ceil(expected_frames * (sr / self.native_sr)))
        self._resampler = None if self.native_sr == sr else soxr.ResampleStream(
            self.native_sr, sr, 1, dtype="float32", quality="HQ")
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self.resample_s = 0.0  # seconds spent in soxr
        self._native_read = 0
        self._emitted = 0
        self._ended = False
        if start > 0:
            self._start_at(min(int(start), self.n_samples))

    def _start_at(self, start: int) -> None:
        if self._resampler is None:
            native, first = start, start
        else:
            g = math.gcd(self.native_sr, self.sr)  # a cycle: native_sr // g in, sr // g out
            native = max(0, start * self.native_sr // self.sr - int(RESAMPLE_PREROLL_S * self.native_sr))
            cycles = native // (self.native_sr // g)
            native, first = cycles * (self.native_sr // g), cycles * (self.sr // g)
        native = min(native, self.expected_frames)
        with quiet_decoder_notes(self._quiet):
            self._handle.seek(native)
        self._native_read = native
        self._emitted = first
        if start > first:
            self.read(start - first)  # the resampler's run-in, dropped

    def close(self):
        self._handle.close()
        if self._source is not self.path:
            self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pull(self):
        with quiet_decoder_notes(self._quiet):
            block = read_float32(self._handle, STREAM_CHUNK_FRAMES)  # no seek between reads (MP3)
        last = block.shape[0] < STREAM_CHUNK_FRAMES
        self._native_read += block.shape[0]
        y = _to_mono(block) if block.shape[0] else np.zeros(0, dtype=np.float32)
        _check_finite(y, self.path)
        if self._resampler is not None:
            import time

            t0 = time.perf_counter()
            y = self._resampler.resample_chunk(np.ascontiguousarray(y), last=last)
            self.resample_s += time.perf_counter() - t0
        if last:
            self._ended = True
            if self._native_read != self.expected_frames:
                _raise_read_error(self._source)
                raise DecodeError("LengthMismatch", length_mismatch(self.expected_frames, self._native_read))
            _check_complete(self.path, self._handle.format, self._native_read)
        if y.shape[0]:
            self._pending.append(np.asarray(y, dtype=np.float32))
            self._pending_len += y.shape[0]

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (fewer only at the planned end of the file)."""
        n = min(n, self.n_samples - self._emitted)
        while self._pending_len < n and not self._ended:
            self._pull()
        if self._pending_len < n:  # soxr rounds the length; librosa pads to the ceiling
            missing = n - self._pending_len
            self._pending.append(np.zeros(missing, dtype=np.float32))
            self._pending_len += missing
        if not self._pending:
            return np.zeros(0, dtype=np.float32)
        data = np.concatenate(self._pending) if len(self._pending) != 1 else self._pending[0]
        out, rest = data[:n], data[n:]
        self._pending = [rest] if rest.shape[0] else []
        self._pending_len = rest.shape[0]
        self._emitted += n
        if self._emitted == self.n_samples and not self._ended:
            while not self._ended:  # drain, so the length check at the end still runs
                self._pull()
        return out


class NativeScratch:
    """A long file's mono samples at its own rate, read back from the range files that tasks
    decoded it into (``jobs.extract.decode_native_range``), through the part of the SoundFile
    interface :class:`ResampledStream` uses (``read``, ``seek(0)``, ``samplerate``, ``format``,
    ``close``). Blocks come out as ``(frames, 1)`` float32: ``_to_mono`` of them is the very
    mono mix of a decode from the file, so a stream over this gives the samples of one pass.

    ``ranges`` lists ``(path, frames planned)`` in file order; a range file shorter than planned
    ends the stream there (the file was cut short: the stream's length check reports it).
    """

    def __init__(self, ranges: list[tuple[str, int]], *, samplerate: int, format: str):
        self.samplerate, self.format = int(samplerate), format
        self._ranges = list(ranges)
        self._index, self._file, self._left = -1, None, 0
        self._ended = False
        self._next_range()

    def _next_range(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._index += 1
        if self._index >= len(self._ranges):
            self._ended = True
            return
        path, planned = self._ranges[self._index]
        self._file = open(path, "rb")  # noqa: SIM115 - closed by _next_range() / close()
        self._left = min(int(planned), os.path.getsize(path) // 4)
        self._short = self._left < planned

    def seekable(self) -> bool:
        return False

    def seek(self, frame: int) -> int:
        if frame != 0 or self._index != 0 or self._file.tell() != 0:
            raise ValueError("a NativeScratch is read from its start only")
        return 0

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        parts, want = [], int(frames)
        while want > 0 and not self._ended:
            take = min(want, self._left)
            if take:
                parts.append(np.fromfile(self._file, dtype="<f4", count=take))
                self._left -= take
                want -= take
            if self._left == 0:
                if self._short:  # cut short: nothing after this range
                    self._file.close()
                    self._file, self._ended = None, True
                else:
                    self._next_range()
        y = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0, "<f4"))
        return y.astype(np.float32, copy=False)[:, None]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ScratchStream:
    """A long file's samples at the store's rate, read back from the raw float32 file one pass
    of :class:`ResampledStream` wrote (``jobs.extract.resample_part_source``): what the parts of
    a resampled file split across tasks read, from ``start`` on, with :class:`ResampledStream`'s
    ``read(n)``. Exact: the very samples of the one pass, wherever a part starts.
    """

    resample_s = 0.0  # the resampling was the source task's

    def __init__(self, path: str, *, n_samples: int, start: int = 0):
        self.path, self.n_samples = path, int(n_samples)
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._at = min(int(start), self.n_samples)
        self._file.seek(4 * self._at)

    def read(self, n: int) -> np.ndarray:
        n = max(0, min(int(n), self.n_samples - self._at))
        data = np.fromfile(self._file, dtype="<f4", count=n)
        if data.shape[0] != n:
            raise DecodeError("ScratchShort", f"{self.path} holds {self._at + data.shape[0]} "
                              f"samples, not {self.n_samples}")
        self._at += n
        return data.astype(np.float32, copy=False)

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- buffers


def buffer_groups(items, n_frames, limit: int = MAX_BUFFER_FRAMES):
    """Consecutive ``items`` (whole files, length-sorted) in groups whose padded buffer (rows x
    the longest row's ``n_frames(item)``) holds at most ``limit`` frames; an item longer than
    that is a group of its own. A generator: items may be decoded as they are asked for."""
    group, longest = [], 0
    for item in items:
        n = n_frames(item)
        if group and (len(group) + 1) * max(longest, n) > limit:
            yield group
            group, longest = [], 0
        group.append(item)
        longest = max(longest, n)
    if group:
        yield group


def segment_buffers(rows: list[np.ndarray], fs: FeatureSet):
    """Centre-padded buffers for whole files: ``(zero_buffer, edge_buffer_or_None, n_valid)``.

    Row ``i`` is ``n_fft // 2`` zeros, the file's samples, then zeros up to the common length;
    the edge buffer (zero-crossing rate only) repeats the first / last sample instead of zeros.
    ``n_valid[i] = 1 + len(rows[i]) // hop_length`` frames of row ``i`` are the file's.
    """
    pad = fs.pad
    n_valid = [1 + r.shape[0] // fs.hop_length for r in rows]
    length = fs.samples_for_frames(max(n_valid))
    zbuf = np.zeros((len(rows), length), dtype=np.float32)
    ebuf = np.empty((len(rows), length), dtype=np.float32) if fs.needs_edge_buffer else None
    for i, y in enumerate(rows):
        # a hop longer than half a frame can leave samples after the last frame's end: no
        # frame reads them (librosa's frames end there too), and the row need not hold them
        n = min(y.shape[0], length - pad)
        zbuf[i, pad:pad + n] = y[:n]
        if ebuf is not None:
            ebuf[i, :pad] = y[0]
            ebuf[i, pad:pad + n] = y[:n]
            ebuf[i, pad + n:] = y[-1]
    return zbuf, ebuf, n_valid


class BlockReader:
    """Blocks of whole frames of a long file, each with the samples its centred frames reach.

    ``block(f0, f1)`` returns ``(zero_row, edge_row)`` of length ``(f1 - f0 - 1) * hop + n_fft``:
    frame ``k`` of the row (``center=False``) is frame ``f0 + k`` of the whole file. Blocks must
    be asked for in order; only the samples a block needs are held. A reader of the frames from
    ``first_frame`` on takes a stream started at :meth:`first_sample` of it.
    """

    def __init__(self, stream: ResampledStream, fs: FeatureSet, first_frame: int = 0):
        self.stream, self.fs = stream, fs
        self.n = stream.n_samples
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = self.first_sample(fs, first_frame)  # file index of self._buf[0]
        self._first = None  # the file's first sample (zero-crossing rate's edge padding)
        self._last = None

    @staticmethod
    def first_sample(fs: FeatureSet, first_frame: int) -> int:
        """The first sample that frame ``first_frame`` (centred) reaches."""
        return max(first_frame * fs.hop_length - fs.pad, 0)

    def block(self, f0: int, f1: int):
        fs, n = self.fs, self.n
        s = f0 * fs.hop_length - fs.pad
        e = s + fs.samples_for_frames(f1 - f0)
        need = min(e, n)
        have = self._start + self._buf.shape[0]
        if need > have:
            more = self.stream.read(need - have)
            if self._first is None and have == 0 and more.shape[0]:
                self._first = float(more[0])
            self._buf = np.concatenate([self._buf, more])
        lo = max(s, 0)
        seg = self._buf[lo - self._start:need - self._start]
        left, right = lo - s, e - max(need, lo)
        zrow = np.concatenate([np.zeros(left, np.float32), seg, np.zeros(right, np.float32)])
        erow = None
        if fs.needs_edge_buffer:
            if need == n and seg.shape[0]:
                self._last = float(self._buf[n - 1 - self._start])
            erow = np.concatenate([np.full(left, self._first or 0.0, np.float32), seg,
                                   np.full(right, self._last or 0.0, np.float32)])
        keep_from = max(f1 * fs.hop_length - fs.pad, 0)  # the next block's first sample
        if keep_from > self._start:
            self._buf = self._buf[keep_from - self._start:].copy()
            self._start = keep_from
        return zrow, erow


# ---------------------------------------------------------------- DSP


def _stft_frames(buf, fs: FeatureSet, xp):
    from featurelib.framing import stft_frames

    return stft_frames(xp.asarray(buf), n_fft=fs.n_fft, hop_length=fs.hop_length,
                       win_length=fs.n_fft, window=fs.table("window"), center=False)


def _spectral_pass(z, fs: FeatureSet, outputs: list, xp) -> dict:
    """Every spectrum-derived output of ``z`` in one chunked pass over its STFT.

    ``outputs`` lists ``(key, width, fn)``; ``fn(spectrum)`` maps a chunk's spectra (a function
    ``p -> |X| ** p``, time-major) to ``(rows, t, width)``. featurelib's ``map_stft`` windows,
    transforms and reduces the frames a cache-sized chunk at a time, so the full complex
    spectrogram of the buffer never exists: that is twice as fast as whole-buffer passes.
    Returns ``key -> (B, T, width)`` views of one array.
    """
    from featurelib.framing import map_stft

    if not outputs:
        return {}
    last = {}
    z = xp.asarray(z)

    def reduce(X):
        # |X| first (NumPy's complex abs is one vectorised pass), then its square: faster than
        # re ** 2 + im ** 2 and the square root of that, and exact for the quietest rows, whose
        # squares underflow in float32
        A = xp.abs(X)
        P = A * A
        spectra = {1.0: A, 2.0: P}
        last["P"] = P

        def spectrum(p):
            if p not in spectra:
                spectra[p] = A ** p
            return spectra[p]

        parts = [fn(spectrum) for _, _, fn in outputs]
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)

    # the frames redone in float64 for a mel's sake replace only the mel columns: every other
    # output keeps the float32 values featurelib gives it alone (a median frequency between two
    # equal tones turns on rounding: it moved by a third when a mel was configured beside it)
    mel_columns, at = [], 0
    for key, width, _ in outputs:
        if key[0] == "mel":
            mel_columns += range(at, at + width)
        at += width
    S = map_stft(z, reduce, n_fft=fs.n_fft, hop_length=fs.hop_length,
                 win_length=fs.n_fft, window=fs.table("window"), center=False,
                 refine=_mel_refine(fs, outputs, last, z, xp),
                 refine_columns=None if len(mel_columns) == at else mel_columns)
    out, at = {}, 0
    for key, width, _ in outputs:
        out[key] = S[..., at:at + width]
        at += width
    return out


def _mel_refine(fs: FeatureSet, outputs: list, last: dict, ref, xp):
    """``map_stft``'s ``refine`` for a spectral pass under the "auto" FFT precision: the frames
    where float32 rounding could move one of its mel outputs (featurelib.mel_float32_check), or
    "double" for a mel of a power other than 2 or one taken in dB below 80 dB under its
    maximum, or None when no output is a mel."""
    from featurelib.spectrum import mel_float32_check

    checks, at = [], 0
    unbounded = fs.unbounded_db_mels()
    gains = fs.mel_db_gains()
    for key, width, _ in outputs:
        if key[0] == "mel":
            if key[2] != 2.0 or key[1] in unbounded:  # the float32 bound is for power, to 80 dB
                return "double"
            checks.append((at, width, mel_float32_check(fs.table("mel", key[1]), xp.asarray(ref[:0, ...]),
                                                        gain=gains.get(key[1], 1.0))))
        at += width
    if not checks:
        return None

    def refine(X, R):
        redo = None
        for at, width, check in checks:
            flagged = check(last["P"], R[..., at:at + width])
            redo = flagged if redo is None else redo | flagged
        return redo

    return refine


def _low_centroids_in_float64(C, z, fs: FeatureSet, xp):
    """Centroids ``C`` ``(B, T, 1)`` from the float32 spectral pass, with the rows that hold a
    very low one taken again from a float64 spectrogram under the "auto" precision: featurelib's
    own redo (``featurelib.frequency.low_centroid_rows_in_float64``), on the buffer's frames."""
    if fs.fft_precision != "auto":
        return C
    from featurelib.frequency import low_centroid_rows_in_float64

    C = xp.matrix_transpose(C)  # (B, 1, T), featurelib's layout
    again = low_centroid_rows_in_float64(C, C, z, xp, sr=fs.sr, n_fft=fs.n_fft, hop_length=fs.hop_length,
                                         win_length=fs.n_fft, window=fs.table("window"), center=False)
    return xp.matrix_transpose(again)


def _rolloff_in_float64(both, z, fs: FeatureSet, kw: dict, xp):
    """The roll-off ``(B, T, 1)`` from the spectral pass's ``(roll-off, near)`` columns, its
    frames near a bin's edge taken again from a float64 FFT of the buffer's frames: featurelib's
    own redo (``featurelib.frequency.rolloff_frames_in_float64``)."""
    from featurelib._backend import like
    from featurelib.framing import fft_frequencies
    from featurelib.frequency import rolloff_frames_in_float64

    value, near = xp.matrix_transpose(both[..., :1]), xp.matrix_transpose(both[..., 1:]) > 0
    f = like(fft_frequencies(sr=fs.sr, n_fft=fs.n_fft)[:, None], value, xp)
    again = rolloff_frames_in_float64(value, near, z, f, xp, roll_percent=kw["roll_percent"],
                                      n_fft=fs.n_fft, hop_length=fs.hop_length, win_length=fs.n_fft,
                                      window=fs.table("window"), center=False)
    return xp.matrix_transpose(again)


def _mel_output(fs: FeatureSet, key: tuple, power: float):
    from featurelib.spectrum import mel_projector

    basis = fs.table("mel", key)
    project = []  # prepared on the first chunk (it needs the chunks' namespace and dtype)

    def mel(spectrum):
        P = spectrum(power)
        if not project:
            project.append(mel_projector(basis, P))
        return project[0](P)

    return ("mel", key, power), basis.shape[0], mel


def _valid_max(M, n_valid, xp) -> np.ndarray:
    """Per row of ``M`` ``(B, T, k)``, the max over its first ``n_valid[b]`` frames (NumPy)."""
    from featurelib._backend import to_numpy

    frame_max = to_numpy(xp.max(M, axis=-1))  # (B, T)
    valid = np.arange(frame_max.shape[1])[None, :] < np.asarray(n_valid)[:, None]
    return np.where(valid, frame_max, -np.inf).max(axis=1).astype(np.float64)


def _db_clamped(M, maxima: np.ndarray, top_db: float, xp):
    """``power_to_db(M)`` clamped per row at (row's max dB - top_db)."""
    from featurelib import power_to_db

    return _clamp_db(power_to_db(M, top_db=None), maxima, top_db, xp)


def _clamp_db(S_db, maxima: np.ndarray, top_db: float, xp):
    """Unclamped dB ``(B, T, k)`` clamped per row at (the row's max mel power in dB - top_db)."""
    from featurelib import power_to_db

    floor_db = power_to_db(xp.asarray(np.asarray(maxima, dtype=np.float64)), top_db=None) - top_db
    floor_db = xp.astype(floor_db, S_db.dtype)[:, None, None]
    return xp.maximum(S_db, floor_db)


def _mfcc_of(S_db, kw: dict, fs: FeatureSet, xp):
    """MFCCs ``(B, T, n_mfcc)`` of a time-major dB mel ``(B, T, n_mels)``."""
    import featurelib

    return xp.matrix_transpose(featurelib.mfcc(
        S=xp.matrix_transpose(S_db), sr=fs.sr, n_mfcc=kw["n_mfcc"], dct_type=kw["dct_type"],
        norm=kw["norm"], lifter=kw["lifter"]))


# bytes of float64 STFT (complex) that one span of the float64-magnitude features transforms at
# a time: a 2-minute block at 44.1 kHz and n_fft 2048 is 170 MB of it whole, and each feature's
# temporaries are as large again
FLOAT64_SPAN_BYTES = 16 * 2**20


def _float64_magnitude_features(z, fs: FeatureSet, features: dict, xp) -> dict:
    """``features`` (name -> fn(S) with ``S`` the float64 magnitude ``(B, bins, t)``, returning
    ``(B, d, t)``) over every frame of ``z`` (``(B, n)``, frames without centring), a span of
    frames at a time: every feature here is a function of each frame alone, so the result is
    the same as over the whole spectrogram, whose size no longer sets the memory."""
    if not features:
        return {}
    from featurelib.framing import n_frames

    n_fft, hop = fs.n_fft, fs.hop_length
    B = z.shape[0]
    T = n_frames(z.shape[-1], frame_length=n_fft, hop_length=hop, center=False)
    step = max(1, FLOAT64_SPAN_BYTES // (16 * max(B, 1) * (1 + n_fft // 2)))
    spans = [(t0, min(T, t0 + step)) for t0 in range(0, T, step)]
    pieces: dict = {name: [] for name in features}
    for t0, t1 in spans or [(0, 0)]:  # no whole frame: the features of none, shaped
        span = xp.astype(z[..., t0 * hop:(t1 - 1) * hop + n_fft] if spans else z, xp.float64)
        S = xp.matrix_transpose(xp.abs(_stft_frames(span, fs, xp)))
        for name, fn in features.items():
            pieces[name].append(fn(S))
        del S
    return {name: parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)
            for name, parts in pieces.items()}


def compute_segments(zbuf, ebuf, fs: FeatureSet, *, n_valid: list[int], xp=np,
                     deferred: dict | None = None) -> dict[str, np.ndarray]:
    """Every feature for every row: name -> NumPy ``(B, T, dim)`` float32 (time-major).

    A row is a whole file: features clamped with ``top_db`` take its max over its valid frames.
    With ``deferred`` (a dict, filled here; a row is then one piece of a long file), the
    features clamped with ``top_db``
    (:meth:`FeatureSet.db_mels`) are left out: for each of their mels, ``deferred[key]`` gets
    ``(dB without the clamp (B, T, n_mels) float32, each row's max mel power (B,) float64)``,
    and :func:`clamped_db_features` finishes them once the file's max is known (one pass over
    a long file instead of two).
    """
    import featurelib
    from featurelib._backend import to_numpy

    feats = fs.features
    z = xp.asarray(zbuf)
    sr, n_fft = fs.sr, fs.n_fft

    def tm(a):  # (B, 1, T) or (B, d, T) -> (B, T, d)
        return xp.matrix_transpose(a)

    # every output derived from the float32 spectrum, computed in one chunked STFT pass
    outputs, seen = [], set()
    # long frames: the centroid and mean frequency of low tones need librosa's float64 FFT
    from featurelib.frequency import weighted_means_in_float64

    means_in_float64 = weighted_means_in_float64(n_fft, fs.fft_precision)

    def want(entry):
        if entry[0] not in seen:
            seen.add(entry[0])
            outputs.append(entry)

    for name, kw in feats.items():
        if name == "melspectrogram":
            want(_mel_output(fs, _mel_key(kw, norm_key="norm"), kw["power"]))
        elif name == "mfcc":
            want(_mel_output(fs, _mel_key(kw, norm_key="mel_norm"), 2.0))
        elif name in ("spectral_centroid", "mean_frequency") and means_in_float64:
            continue  # from the float64 spectrogram below
        elif name == "spectral_centroid":
            want((name, 1, lambda spectrum: tm(featurelib.spectral_centroid(
                S=tm(spectrum(1.0)), sr=sr, n_fft=n_fft))))
        elif name == "spectral_rolloff" and fs.fft_precision == "auto":
            # the roll-off, and whether float32 rounding could move it by a bin (taken again in
            # float64 below, as featurelib does)
            def rolloff_and_near(spectrum, kw=kw):
                from featurelib._backend import like
                from featurelib.framing import fft_frequencies
                from featurelib.frequency import rolloff_and_near_edge

                S = tm(spectrum(1.0))
                f = like(fft_frequencies(sr=sr, n_fft=n_fft)[:, None], S, xp)
                value, near = rolloff_and_near_edge(S, kw["roll_percent"], f, xp)
                return tm(xp.concat([value, xp.astype(near, value.dtype)], axis=-2))

            want((name, 2, rolloff_and_near))
        elif name == "spectral_rolloff":
            want((name, 1, lambda spectrum, kw=kw: tm(featurelib.spectral_rolloff(
                S=tm(spectrum(1.0)), sr=sr, n_fft=n_fft, roll_percent=kw["roll_percent"]))))
        elif name in ("mean_frequency", "median_frequency"):
            want((name, 1, lambda spectrum, kw=kw, name=name: tm(getattr(featurelib, name)(
                S=tm(spectrum(kw["power"])), sr=sr, n_fft=n_fft))))
    spectral = _spectral_pass(z, fs, outputs, xp)
    cache: dict = {}
    hop = fs.hop_length

    # features taken from the float64 magnitude (bandwidth, flatness, band energy ratio weigh
    # near-zero bins; the centroid and mean frequency of low tones with long frames): name ->
    # fn(S (B, bins, t) float64) -> (B, d, t), computed together a span of frames at a time
    from_mag64 = {}
    for name, kw in feats.items():
        if name in spectral:  # (the roll-off and median frequency always are)
            continue
        if name == "spectral_centroid":
            from_mag64[name] = lambda S: featurelib.spectral_centroid(S=S, sr=sr, n_fft=n_fft)
        elif name == "mean_frequency":
            from_mag64[name] = lambda S, kw=kw: featurelib.mean_frequency(
                S=S if kw["power"] == 1.0 else S ** kw["power"], sr=sr, n_fft=n_fft)
        elif name == "spectral_bandwidth":
            from_mag64[name] = lambda S, kw=kw: featurelib.spectral_bandwidth(
                S=S, sr=sr, n_fft=n_fft, p=kw["p"], norm=kw["norm"])
        elif name == "spectral_flatness":
            from_mag64[name] = lambda S, kw=kw: featurelib.spectral_flatness(
                S=S, n_fft=n_fft, amin=kw["amin"], power=kw["power"])
        elif name == "band_energy_ratio":
            from_mag64[name] = lambda S, kw=kw: featurelib.band_energy_ratio(
                S=S if kw["power"] == 1.0 else S ** kw["power"], sr=sr, n_fft=n_fft,
                split_frequency=kw["split_frequency"])
    mag64_features = _float64_magnitude_features(z, fs, from_mag64, xp)

    def mel(key):
        return spectral[("mel", key, 2.0)]

    def row_max(key):
        return _valid_max(mel(key), n_valid, xp)

    def mel_db(key, top_db):  # log-mel and MFCC of the same mel share one dB conversion
        if ("db", key, top_db) not in cache:
            from featurelib import power_to_db

            M = mel(key)
            cache[("db", key, top_db)] = (power_to_db(M, top_db=None) if top_db is None
                                         else _db_clamped(M, row_max(key), top_db, xp))
        return cache[("db", key, top_db)]

    out = {}
    later = fs.db_mels() if deferred is not None else {}
    for key in set(later.values()):
        deferred[key] = (np.ascontiguousarray(to_numpy(mel_db(key, None)), dtype=np.float32),
                         _valid_max(mel(key), n_valid, xp))
    for name, kw in feats.items():
        if name in later:
            continue
        if name == "melspectrogram":
            key = _mel_key(kw, norm_key="norm")
            # (the config allows db only with power 2, power_to_db's input)
            value = mel_db(key, kw["top_db"]) if kw["db"] else spectral[("mel", key, kw["power"])]
        elif name == "mfcc":
            key = _mel_key(kw, norm_key="mel_norm")
            value = _mfcc_of(mel_db(key, kw["top_db"]), kw, fs, xp)
        elif name in ("rms", "amplitude_envelope", "short_time_energy"):
            fn = getattr(featurelib, name)
            value = tm(fn(z, frame_length=n_fft, hop_length=hop, center=False))
        elif name == "zero_crossing_rate":
            value = tm(featurelib.zero_crossing_rate(xp.asarray(ebuf), frame_length=n_fft,
                                                     hop_length=hop, center=False,
                                                     threshold=kw["threshold"]))
        elif name == "spectral_centroid" and name in spectral:
            value = _low_centroids_in_float64(spectral[name], z, fs, xp)
        elif name == "spectral_rolloff" and spectral.get(name) is not None and spectral[name].shape[-1] == 2:
            value = _rolloff_in_float64(spectral[name], z, fs, kw, xp)
        elif name in spectral:
            value = spectral[name]
        elif name in mag64_features:
            value = tm(mag64_features[name])
        else:  # pragma: no cover - the config validates names
            raise ValueError(f"unknown feature {name}")
        out[name] = np.ascontiguousarray(to_numpy(value), dtype=np.float32)
    return out


def clamped_db_features(db: dict[tuple, np.ndarray], maxima: dict[tuple, np.ndarray],
                        fs: FeatureSet, xp=np) -> dict[str, np.ndarray]:
    """The features :func:`compute_segments` deferred, from their mels' unclamped dB
    ``(B, T, n_mels)`` and each row's max mel power: name -> NumPy ``(B, T, dim)`` float32.

    The same arithmetic as :func:`compute_segments` (the clamp is an elementwise maximum),
    so the numbers are those of one whole pass.
    """
    from featurelib._backend import to_numpy

    out = {}
    for name, key in fs.db_mels().items():
        kw = fs.features[name]
        value = _clamp_db(xp.asarray(db[key]), maxima[key], kw["top_db"], xp)
        if name == "mfcc":
            value = _mfcc_of(value, kw, fs, xp)
        out[name] = np.ascontiguousarray(to_numpy(value), dtype=np.float32)
    return out


# ---------------------------------------------------------------- summaries


def row_moments(data: np.ndarray, n_valid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``data`` ``(B, T, d)``, over its first ``n_valid[b]`` frames, in float64:
    ``(count (B,), mean (B, d), m2 (B, d))`` where ``m2`` is the sum of squared deviations."""
    count = np.asarray(n_valid, dtype=np.float64)
    T = data.shape[1]
    mask = (np.arange(T)[None, :] < count[:, None])[:, :, None]
    x = np.where(mask, data.astype(np.float64), 0.0)
    mean = x.sum(axis=1) / np.maximum(count, 1.0)[:, None]
    dev = np.where(mask, x - mean[:, None, :], 0.0)
    m2 = np.einsum("btd,btd->bd", dev, dev)
    return count, mean, m2


def packed_moments(packed: np.ndarray, n_valid) -> tuple[np.ndarray, np.ndarray]:
    """Per file, mean and std (float64) of its frames, the files' frames packed one after the
    other in ``packed`` ``(sum(n_valid), d)``: :func:`row_moments` without the padding (segment
    sums with ``np.add.reduceat``; every ``n_valid`` is at least 1)."""
    counts = np.asarray(n_valid, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n = counts.astype(np.float64)[:, None]
    x = packed.astype(np.float64)
    mean = np.add.reduceat(x, offsets, axis=0) / n
    x -= np.repeat(mean, counts, axis=0)
    np.square(x, out=x)
    return mean, np.sqrt(np.add.reduceat(x, offsets, axis=0) / n)


class Moments:
    """Count, mean and M2 per column in float64, combined exactly across blocks (Chan et al.)."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)

    def add(self, rows: np.ndarray):
        """Add the frames ``rows`` ``(n, d)``."""
        count, mean, m2 = row_moments(np.asarray(rows)[None], [rows.shape[0]])
        self.merge(int(count[0]), mean[0], m2[0])

    def merge(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray):
        """Add a part summarised as (count, mean, m2)."""
        if n_b == 0:
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta * delta * (self.n * n_b / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n, 1))


def file_features(y, fs: FeatureSet) -> dict[str, np.ndarray]:
    """The reference: each feature of one whole signal straight from featurelib's ``y=`` API.

    What the store must hold for a file (within float32 rounding): name -> ``(T, dim)``.
    """
    with fs.precision():
        return _file_features(y, fs)


def _file_features(y, fs: FeatureSet) -> dict[str, np.ndarray]:
    import featurelib

    frame = {"n_fft": fs.n_fft, "hop_length": fs.hop_length, "win_length": fs.win_length,
             "window": fs.window}
    out = {}
    for name, kw in fs.features.items():
        if name == "melspectrogram":
            mel_kw = {k: kw[k] for k in ("n_mels", "fmin", "fmax", "htk", "norm", "power")}
            value = featurelib.melspectrogram(y=y, sr=fs.sr, **frame, **mel_kw)
            if kw["db"]:
                value = featurelib.power_to_db(value, top_db=kw["top_db"])
        elif name == "mfcc":
            value = featurelib.mfcc(y=y, sr=fs.sr, **frame, **kw)
        elif name in ("rms", "amplitude_envelope", "short_time_energy", "zero_crossing_rate"):
            value = getattr(featurelib, name)(y, frame_length=fs.n_fft, hop_length=fs.hop_length, **kw)
        elif name == "spectral_flatness":
            value = featurelib.spectral_flatness(y=y, **frame, **kw)
        else:
            value = getattr(featurelib, name)(y=y, sr=fs.sr, **frame, **kw)
        out[name] = np.asarray(value, dtype=np.float32).T
    return out
