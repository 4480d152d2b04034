"""Sequential float32 reads from a ``soundfile.SoundFile`` that never seek between reads.

python-soundfile's ``read`` asks libsndfile for its position before each read and seeks to the
position after it (``SoundFile._cdata_io``). For most codecs that seek is a no-op, but in an MP3
libsndfile hands it to mpg123, which seeks to a sample position by decoding again from an
earlier frame: where that frame's bit reservoir reaches further back, about one frame of samples
comes out different (up to 0.43 full scale measured, on a 130 s 44.1 kHz file read in 2**18-frame
steps). Reading a file in blocks then gives other samples than reading it whole, as
``featurelib.load`` and ``librosa.load`` do. For MP3 these reads go straight to libsndfile's
``sf_readf_float``, which continues the decoder where it stopped: the blocks join up to exactly
the samples of one whole read.
"""

from __future__ import annotations

import numpy as np

__all__ = ["read_float32"]

_RESEEKING_FORMATS = frozenset({"MP3"})  # formats whose seek to the current position is not a no-op


def _raw_reader(handle):
    """``(snd, ffi)`` of soundfile's libsndfile binding, or None where it is not reachable."""
    try:
        import soundfile

        snd, ffi = soundfile._snd, soundfile._ffi
        handle._file  # noqa: B018 - the open SNDFILE pointer
    except AttributeError:
        return None
    return snd, ffi


def read_float32(handle, frames: int) -> np.ndarray:
    """Up to ``frames`` frames ``(n, channels)`` float32 from ``handle``'s current position.

    Fewer rows where the decoder stops (the end of the file, or a file cut short). ``handle``
    is a ``soundfile.SoundFile``, or any object with soundfile's ``read`` signature (which is
    then called as it is).

    Examples
    --------
    >>> import io, numpy as np, soundfile as sf
    >>> buffer = io.BytesIO()
    >>> sf.write(buffer, np.zeros(1000, dtype=np.float32), 8000, format="WAV")
    >>> _ = buffer.seek(0)
    >>> with sf.SoundFile(buffer) as handle:
    ...     read_float32(handle, 600).shape, read_float32(handle, 600).shape
    ((600, 1), (400, 1))
    """
    raw = _raw_reader(handle) if getattr(handle, "format", None) in _RESEEKING_FORMATS else None
    if raw is None:
        return handle.read(frames, dtype="float32", always_2d=True)
    snd, ffi = raw
    import soundfile

    out = np.empty((max(0, int(frames)), handle.channels), dtype=np.float32)
    if out.shape[0] == 0:
        return out
    got = snd.sf_readf_float(handle._file, ffi.cast("float *", out.ctypes.data), out.shape[0])
    soundfile._error_check(handle._errorcode)
    return out[:max(0, int(got))]
