"""Keep libmpg123's console notes off the user's terminal.

libsndfile decodes MP3 with libmpg123, which prints lines such as ``Note: Illegal Audio-MPEG-Header
0x00000000 at offset 1.`` or ``Note: Trying to resync...`` straight to file descriptor 2 while it
opens and reads a damaged or oddly tagged stream. Python cannot catch them (they never pass
through ``sys.stderr``), and a job over thousands of MP3s would scroll them by the hundred, while
featurelib reports every real problem as an :class:`~featurelib.exceptions.AudioDecodeError`.

:func:`quiet_decoder_notes` sends descriptor 2 to a temporary file while an MP3 is opened or read,
then writes back every captured line that is not a libmpg123 note, so nothing else printed in that
window (by another thread, a logger, Python itself) is lost. Overlapping uses from several
threads share one redirection, undone when the last one ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
import threading

from ._filecache import FileFacts

# libmpg123's messages: "Note: ...", "Warning: ...", "Error: ..." (mpg123 1.2x-1.3x) and the
# older "[src/libmpg123/parse.c:1234] warning: ..." form
_DECODER_NOTE = re.compile(rb"^(?:(?:Note|Warning|Error): |\[[^\]]*mpg123[^\]]*\] )")
_MPEG_SUFFIXES = (".mp3", ".mp2", ".mp1", ".mpga", ".mpeg")

_lock = threading.Lock()
_state = {"depth": 0, "saved": None, "capture": None, "pid": None}


def is_mpeg_name(path) -> bool:
    """Whether ``path`` (anything with a name) is named like an MPEG audio stream."""
    name = path if isinstance(path, (str, bytes, os.PathLike)) else getattr(path, "name", None)
    if not isinstance(name, (str, bytes, os.PathLike)):
        return False
    return os.fsdecode(name).lower().endswith(_MPEG_SUFFIXES)


@functools.cache
def _sound_file_class():
    import soundfile as sf

    class ExactLengthSoundFile(sf.SoundFile):
        """``soundfile.SoundFile`` whose ``frames`` can be set to what really decodes (MP3s
        whose header gives an estimate: featurelib.mpeg.exact_length)."""

        exact_frames = None
        exact_seek = False  # seeks land on the very sample though seekable() is False
        length_exact = False  # an MP3's frames are known (a tag, or counted), not estimated
        owned = None  # a file object opened for this handle, closed with it
        cut_reason = None  # why featurelib refuses it though libsndfile reads part of it

        @property
        def frames(self):
            return self._info.frames if self.exact_frames is None else self.exact_frames

        def close(self):
            super().close()
            if self.owned is not None:
                self.owned.close()

    return ExactLengthSoundFile


def open_quietly(source, name, *, frames: int | None = None):
    """``soundfile.SoundFile(source)`` opened with libmpg123's notes held back when ``name`` is
    an MPEG name. Returns ``(handle, quiet)``: ``quiet`` says whether reads of it need
    :func:`quiet_decoder_notes` too (an MPEG name, or a stream libsndfile found to be MP3).

    An MP3 without a length tag gets its exact length (featurelib.mpeg.exact_length): its
    ``frames`` is what decodes, and a variable bit rate one decodes to its end. A file libsndfile
    does not recognise that is AAC/M4A, WMA, WebM, ... (by its name or first bytes) is opened
    with FFmpeg's decoders instead (:mod:`featurelib._avfile`); ``frames``, its frame count where
    the caller knows it already, spares it a counting pass.
    """
    from ._offsetfile import OffsetFile, flac_after_id3
    from .mpeg import exact_length

    open_file = _sound_file_class()
    named = is_mpeg_name(name)
    start = flac_after_id3(source)
    if start is not None:  # a FLAC stream behind an ID3v2 tag: given as the stream alone
        source = OffsetFile(source, start)
    with quiet_decoder_notes(named):
        try:
            handle = open_file(source)
        except _libsndfile_error() as exc:
            from ._avfile import open_instead

            handle = open_instead(source, name, exc, frames=frames)
            if handle is None:
                raise
            return handle, False
        from ._avfile import AVFile, av_available, misread_by_libsndfile

        if misread_by_libsndfile(handle, source):
            handle.close()
            if not av_available():
                raise ValueError("a Wave64 file of extensible float samples, which libsndfile "
                                 "reads as integers: install PyAV (FFmpeg) to read it, or "
                                 "convert it to WAV or FLAC")
            if not isinstance(source, (str, bytes, os.PathLike)):
                source.seek(0)
            return AVFile(source, frames=frames), False
        if handle.format == "MP3":
            with quiet_decoder_notes(not named):
                handle = exact_length(handle, source, open_file)
        elif handle._info.frames >= UNKNOWN_FRAMES:
            handle = counted_stream(handle, source, open_file)
        elif handle.format == "WAV" and str(handle.subtype).startswith("MPEG_LAYER"):
            with quiet_decoder_notes(not named):
                handle = counted_mpeg_in_wav(handle, source, open_file)
        elif handle.format == "WAV":
            from .wav import past_4gib

            handle = past_4gib(handle, source, open_file)  # a file over 4 GiB read whole
        elif handle.format == "OGG":
            ended_early(handle, source)
    return handle, named or handle.format == "MP3"


def ended_early(handle, source) -> None:
    """Set ``handle.frames`` of a local Ogg file whose stream ends (its end-of-stream page)
    before its last page to what decodes.

    Some writers append pages to a stream after its end-of-stream page (a game's music, for
    one): libsndfile takes the length from the last page's granule position, but libvorbis and
    libopus stop at the end of the stream, as every player does, and so does ``librosa.load``.
    The file decodes whole to that end; its header's length was refused as a cut."""
    if not isinstance(source, (str, bytes, os.PathLike)) or not os.path.isfile(source):
        return
    from .io import _ogg_stream_end

    try:
        with open(source, "rb") as data:
            end = _ogg_stream_end(data)
    except OSError:
        return
    if end is None:
        return
    eos_granule, last_granule = end
    frames = int(handle.frames) - (last_granule - eos_granule)
    if 0 < frames < int(handle.frames):
        handle.exact_frames = frames
        handle.length_exact = True


def _libsndfile_error():
    import soundfile as sf

    return sf.LibsndfileError


# libsndfile's frame count for a stream whose header leaves its length out: SF_COUNT_MAX
UNKNOWN_FRAMES = 1 << 62


def counted_stream(handle, source, open_file):
    """``handle`` of a stream whose header does not give its length (a FLAC written to a pipe
    or by a recorder that never came back to fill STREAMINFO in: libsndfile reports 2**63 - 1
    frames and fails every seek in it), reopened as a stream that reads from the start without
    seeking, its ``frames`` counted by one pass of decoding.

    python-soundfile seeks after every read of a seekable file, so such a file failed its first
    read ("Internal psf_fseek() failed": libFLAC cannot seek to the end of a stream of unknown
    length). Marked unseekable it reads sequentially; a seek inside the stream still lands on
    the very sample (``exact_seek``: featurelib.io seeks it). The count of a local file is kept
    for the process (by path, size and modification time): readers that open a file many times
    (a plot's sampled spectra) count it once. A source that cannot go back to its start (a
    pipe) is left as it is.
    """
    if not isinstance(source, (str, bytes, os.PathLike)):
        seek = getattr(source, "seek", None)
        if seek is None or not getattr(source, "seekable", lambda: False)():
            return handle
    handle._info.seekable = 0  # soundfile reads without seeking
    key = _COUNTED.key(source)
    count = _COUNTED.get(key)
    if count is None:
        from .io import _read_blocks

        try:
            count = sum(block.shape[0] for block in _read_blocks(handle, -1))
        finally:
            handle.close()
        _COUNTED.put(key, count)
        if not isinstance(source, (str, bytes, os.PathLike)):
            source.seek(0)
        handle = open_file(source)
        handle._info.seekable = 0
    handle.exact_frames = count
    handle.length_exact = True
    handle.exact_seek = True
    return handle


def counted_mpeg_in_wav(handle, source, open_file):
    """``handle`` of an MP3 in a WAV wrapper, its ``frames`` counted by one pass of decoding.

    libsndfile takes the count from the WAV's 'fact' chunk, which the writer filled in with its
    own idea of the length (FFmpeg: 46,877 for 46,080 decoded frames); mpg123 decodes what the
    frames hold, as librosa.load reads it, and the file was refused as truncated. A source that
    cannot go back to its start (a pipe) is left as it is."""
    if not isinstance(source, (str, bytes, os.PathLike)):
        if not getattr(source, "seekable", lambda: False)():
            return handle
    key = _COUNTED.key(source)
    count = _COUNTED.get(key)
    if count is None:
        from .io import _read_blocks

        try:
            count = sum(block.shape[0] for block in _read_blocks(handle, -1))
        except Exception:  # noqa: BLE001 - damaged part-way: the caller's read says so
            count = None
        finally:
            handle.close()
        _COUNTED.put(key, count)
        if not isinstance(source, (str, bytes, os.PathLike)):
            source.seek(0)
        handle = open_file(source)
    if count is not None:
        handle.exact_frames = count
        handle.length_exact = True
    return handle


_COUNTED = FileFacts()  # a local file -> the frames counted_stream and counted_mpeg_in_wav counted


def _capture_fd() -> int:
    """This process's capture file (a descriptor of an unlinked temporary file), made once; a
    forked child makes its own, as a shared file offset would mix two processes' lines."""
    if _state["capture"] is None or _state["pid"] != os.getpid():
        fd, name = tempfile.mkstemp(prefix="audiofeat-decoder-notes-")
        os.unlink(name)
        _state.update(capture=fd, pid=os.getpid())
    return _state["capture"]


def _read_and_clear(fd: int) -> bytes:
    size = os.lseek(fd, 0, os.SEEK_CUR)
    if not size:
        return b""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return b"".join(chunks)


def _begin() -> None:
    with _lock:
        if _state["depth"] == 0:
            capture = _capture_fd()
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            saved = os.dup(2)
            os.dup2(capture, 2)
            _state["saved"] = saved
        _state["depth"] += 1


def _end() -> None:
    with _lock:
        _state["depth"] -= 1
        if _state["depth"] > 0:
            return
        saved, capture = _state["saved"], _state["capture"]
        _state["saved"] = None
        os.dup2(saved, 2)
        os.close(saved)
        captured = _read_and_clear(capture)
        kept = [line for line in captured.splitlines(keepends=True) if not _DECODER_NOTE.match(line)]
    if kept:
        os.write(2, b"".join(kept))


@contextlib.contextmanager
def quiet_decoder_notes(active: bool = True):
    """Hold back libmpg123's notes on descriptor 2 for the duration (when ``active``).

    Examples
    --------
    >>> from featurelib._decoder_notes import quiet_decoder_notes
    >>> with quiet_decoder_notes():
    ...     pass
    """
    if not active:
        yield
        return
    try:
        _begin()
    except OSError:  # no descriptor 2 to redirect (a closed stderr): nothing to hide
        yield
        return
    try:
        yield
    finally:
        _end()
