"""Audio that libsndfile cannot read (AAC in MP4/M4A, WMA, Matroska/WebM, AC-3, WavPack, APE,
AMR, TTA, ...), decoded with FFmpeg's decoders through PyAV, behind the part of the
``soundfile.SoundFile`` interface that featurelib and the extract job use.

librosa reads these files through audioread, which runs the ``ffmpeg`` program and takes its
16-bit output; PyAV runs the same decoders in-process (its wheels carry FFmpeg, so nothing is
installed by hand) and keeps their floating-point output. The samples are therefore FFmpeg's,
as librosa's are, to within 16-bit rounding (3e-5), and the frame count is FFmpeg's: the encoder
delay that the container declares (an MP4 edit list) is dropped, as the ``ffmpeg`` program
drops it.

These formats do not state their decoded length exactly in a header (an AAC stream ends on a
whole 1,024-sample frame, an MP4 declares a duration that its decoder does not produce), so
:class:`AVFile` counts the frames with one decoding pass when it opens a file. The count of a
local file is kept for the process (by path, size and modification time), so the extract job's
plan and its workers, or a plot that opens a file several times, each count it once per process.
Reads are sequential; a seek decodes from the start (exact, not fast).
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from ._filecache import FileFacts

__all__ = ["AVFile", "FFmpegError", "av_container_hint", "container_words", "mp4_cut_reason", "AV_EXTENSIONS", "open_instead", "av_available"]

# Extensions (lower case, no dot) of audio that libsndfile does not decode and FFmpeg does: a
# folder search takes them as audio. Video containers (MP4, MOV, MKV, WebM, 3GP) are in: their
# audio stream is read (a video without one fails, saying so).
AV_EXTENSIONS = frozenset({
    "m4a", "m4b", "mp4", "m4v", "mov", "aac", "adts", "3gp", "3g2", "wma", "asf", "webm", "weba",
    "mka", "mkv", "ac3", "eac3", "ape", "wv", "amr", "awb", "tta", "dsf", "dff", "dts",
})


def av_container_hint(head: bytes) -> str | None:
    """The container FFmpeg would read in a file starting with ``head`` (its first bytes), for
    the formats this module takes over from libsndfile; None otherwise."""
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "MP4"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "ASF"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "MATROSKA"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS: MPEG layer bits 00
        return "ADTS"
    if head.startswith((b"#!AMR", b"#!AMR-WB")):
        return "AMR"
    if head.startswith(b"\x0b\x77"):
        return "AC3"
    if head.startswith(b"wvpk"):
        return "WAVPACK"
    if head.startswith(b"MAC "):
        return "APE"
    if head.startswith(b"TTA1"):
        return "TTA"
    if head.startswith(b"DSD "):
        return "DSF"
    if head.startswith(b"FRM8"):
        return "DSDIFF"
    if head.startswith(b".RMF"):
        return "REALMEDIA"
    return None


# what a file of each container is, in a reason
_CONTAINER_WORDS = {
    "MP4": "an MP4/M4A container", "ASF": "a WMA/ASF file", "MATROSKA": "a Matroska/WebM container",
    "ADTS": "a raw AAC stream (ADTS)", "AMR": "an AMR voice recording", "AC3": "an AC-3 stream",
    "WAVPACK": "a WavPack file", "APE": "a Monkey's Audio (APE) file", "TTA": "a TTA file",
    "DSF": "a DSD (DSF) file", "DSDIFF": "a DSD (DSDIFF) file", "REALMEDIA": "a RealMedia file",
}


def container_words(head: bytes) -> str | None:
    """What a file starting with ``head`` is, in words (``"an MP4/M4A container"``), for the
    containers of :func:`av_container_hint`; None for others."""
    what = av_container_hint(head)
    return None if what is None else _CONTAINER_WORDS.get(what, f"a {what} file")


def mp4_cut_reason(source) -> str | None:
    """Why an MP4/M4A file is incomplete, from its top-level boxes: one that runs past the end
    of the file (a download or copy cut short), or no ``moov`` box (the index a recorder writes
    when it stops: a recording that was never finished). None for a whole file, or one that
    cannot be read again."""
    import struct

    try:
        handle = open(source, "rb") if isinstance(source, (str, bytes, os.PathLike)) else source
    except OSError:
        return None
    try:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        offset, seen = 0, set()
        while offset + 8 <= size:
            handle.seek(offset)
            head = handle.read(16)
            length, kind = struct.unpack(">I4s", head[:8])
            if length == 1 and len(head) >= 16:
                length = struct.unpack(">Q", head[8:16])[0]
            elif length == 0:
                length = size - offset
            if length < 8:
                return None  # not a box structure this walk understands
            name = kind.decode("latin-1")
            if not all(32 <= b < 127 for b in kind):
                return None  # not a box: the walk lost its way (or this is no MP4)
            if offset + length > size:
                return (f"truncated: the MP4's '{name}' box announces {length} bytes but the file "
                        f"holds {size - offset} of them (cut short)")
            seen.add(name)
            offset += length
        if "moov" not in seen:
            return ("not a finished recording: the MP4 has no 'moov' box, the index its recorder "
                    "writes when it stops (the recording was interrupted)")
    except (OSError, ValueError, struct.error):
        return None
    finally:
        if handle is not source:
            handle.close()
    return None


class FFmpegError(sf.LibsndfileError):
    """FFmpeg could not open or decode a stream; ``str()`` is its reason.

    A ``soundfile.LibsndfileError``, raised where libsndfile's would be, so that every reader
    that turns libsndfile's errors into a reason (not audio, decoding failed part-way) does so
    for FFmpeg's too; ``decoder`` names which one spoke."""

    decoder = "FFmpeg"

    def __init__(self, text: str, *, cut: bool = False):
        RuntimeError.__init__(self, text)
        self.code, self.prefix, self._text = 0, "", text
        self.cut = cut  # the text is the whole reason (cut short or damaged part-way)

    @property
    def error_string(self):
        return self._text

    def __str__(self):
        return self._text


# FFmpeg's names of its demuxers, as this module reports them in ``format`` (libsndfile's style:
# upper case, one word)
_FORMAT_NAMES = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4", "aac": "ADTS", "asf": "ASF", "matroska,webm": "MATROSKA",
    "ac3": "AC3", "eac3": "EAC3", "wv": "WAVPACK", "ape": "APE", "amr": "AMR", "tta": "TTA",
    "dsf": "DSF", "iff": "DSDIFF", "rm": "REALMEDIA", "mp3": "MPEG", "dts": "DTS",
    "truehd": "TRUEHD", "ogg": "OGG", "spdif": "SPDIF", "wav": "WAVE", "caf": "CAF",
}
# the formats only FFmpeg reads here: a long file in one of them is never split into parts that
# seek (this module seeks by decoding from the start), whatever its codec's name
FFMPEG_ONLY_FORMATS = frozenset(_FORMAT_NAMES.values()) - {"OGG", "CAF", "MPEG"}
# codecs that keep every bit of their input: the bit depth of their samples is meaningful
_LOSSLESS = frozenset({"alac", "wavpack", "ape", "tta", "flac", "mlp", "truehd"})
_SAMPLE_BITS = {"u8": 8, "s16": 16, "flt": 32, "dbl": 64}
_SCALE = {"s16": 1 / 32768.0, "s32": 1 / 2147483648.0, "s64": 1 / 9223372036854775808.0}


def _lossless_bits(ctx, sample_format: str) -> int | None:
    """A lossless stream's bit depth: ALAC's from its magic cookie (``ALACSpecificConfig``'s
    ``bitDepth``: 16, 20, 24 or 32), another lossless codec's from the decoder's sample type
    where that is exact (8 or 16-bit integers, floats); None for a lossy codec, and for a
    24-bit WavPack or APE stream, which decodes to 32-bit integers."""
    if ctx.name not in _LOSSLESS:
        return None
    if ctx.name == "alac":
        cookie = bytes(ctx.extradata or b"")
        if cookie[4:8] == b"alac":  # as MP4 and CAF carry it: size, "alac", version and flags first
            cookie = cookie[12:]
        if len(cookie) >= 24 and cookie[5] in (16, 20, 24, 32):
            return int(cookie[5])
    return _SAMPLE_BITS.get(sample_format)


_COUNTED = FileFacts()  # a local file -> its counted facts (frames, samplerate, channels, ...)


def _av():
    import av

    try:  # FFmpeg's own log lines (warnings about a damaged packet) stay off the terminal
        av.logging.set_level(None)
    except AttributeError:
        pass
    return av


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    text = " ".join(str(text).split()).rstrip(".")
    return text or type(exc).__name__


def _rewind(source) -> None:
    if not isinstance(source, (str, bytes, os.PathLike)):
        source.seek(0)


def _open_container(source):
    av = _av()
    _rewind(source)
    target = os.fsdecode(source) if isinstance(source, (bytes, os.PathLike)) else source
    try:
        container = av.open(target, "r")
    except av.error.FFmpegError as exc:
        raise FFmpegError(_reason(exc)) from None
    audio = [s for s in container.streams if s.type == "audio"]
    if not audio:
        container.close()
        raise FFmpegError("the container holds no audio stream")
    stream = next((s for s in audio if _is_default(s)), audio[0])  # what players and ffmpeg take
    stream.thread_type = "SLICE"  # no decoder threads of its own: a worker process is one core
    return container, stream


def _is_default(stream) -> bool:
    try:
        return bool(stream.disposition & stream.disposition.__class__.default)
    except (AttributeError, TypeError):
        return False


# PyAV (18) counts a planar frame's planes by walking FFmpeg's extended_data up to a NULL entry,
# which past 8 channels reads beyond the array: to_ndarray() of a 9-channel WavPack or a
# 10-channel Opus frame crashed the process (SIGSEGV). Such frames are converted to packed float
# by FFmpeg first (one plane), with a converter per frame layout.
_MAX_PLANES_READ = 8
_PACKERS: dict = {}


def _packed_float(frame) -> np.ndarray:
    """A planar frame of more than 8 channels as packed float32 ``(samples, channels)``."""
    key = (frame.format.name, frame.layout.name, frame.sample_rate)
    packer = _PACKERS.get(key)
    if packer is None:
        packer = _PACKERS[key] = _av().AudioResampler(format="flt", layout=frame.layout,
                                                      rate=frame.sample_rate)
    channels = len(frame.layout.channels)
    parts = [f.to_ndarray().reshape(-1, channels) for f in packer.resample(frame)]
    if not parts:
        return np.zeros((0, channels), dtype=np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _as_float(frame) -> np.ndarray:
    """One decoded frame as ``(samples, channels)`` float32 (PCM scaled to [-1, 1) as
    libsndfile scales it)."""
    if frame.format.is_planar and len(frame.layout.channels) > _MAX_PLANES_READ:
        return _packed_float(frame)
    data = frame.to_ndarray()
    name = frame.format.name
    if frame.format.is_planar:
        data = data.T
    else:
        data = data.reshape(-1, len(frame.layout.channels))
    base = name.rstrip("p")
    if base in ("flt", "dbl"):
        return np.asarray(data, dtype=np.float32)
    if base == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    return data.astype(np.float32) * np.float32(_SCALE[base])


def _frames(container, stream):
    """Decoded frames of ``stream``, FFmpeg's errors as :class:`FFmpegError`."""
    av = _av()
    try:
        for packet in container.demux(stream):
            yield from packet.decode()
    except av.error.FFmpegError as exc:
        raise FFmpegError(_reason(exc)) from None


# containers whose header states the stream's length (FFmpeg's duration is read, not estimated
# from the bit rate as for raw ADTS, AC-3 or AMR streams)
# (ASF and DSF: FFmpeg takes their duration from the bytes present; their stated file size
# tells a cut instead, _size_cut_reason)
_STATED_LENGTH = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "wv", "ape", "tta"})
# whole files of these containers decode within this of their stated length (measured on
# FFmpeg-written files: an AAC encoder's padding up to +820 frames, Opus -384, E-AC-3 -306),
# plus 0.5 % of it: a cut in the last few hundredths of a file can pass for padding
_LENGTH_SLACK = 2048


def _stated_frames(container, stream, rate: int) -> int | None:
    """The frame count the container's header states, where it states one."""
    if container.format.name not in _STATED_LENGTH or not rate:
        return None
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * rate))
    if container.duration:
        return int(round(container.duration / 1e6 * rate))
    return None


_ASF_FILE_PROPERTIES = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")


def _size_cut_reason(source, container_name: str) -> str | None:
    """A DSF or ASF (WMA) file shorter than the size its header states: FFmpeg takes their
    length from the bytes that are there, so only the header tells a cut file from a whole one."""
    import struct

    if container_name not in ("dsf", "asf"):
        return None
    try:
        handle = open(source, "rb") if isinstance(source, (str, bytes, os.PathLike)) else source
    except OSError:
        return None
    try:
        handle.seek(0)
        head = handle.read(1 << 14)
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
    except (OSError, ValueError):
        return None
    finally:
        if handle is not source:
            handle.close()
    stated = None
    if container_name == "dsf" and head[:4] == b"DSD " and len(head) >= 20:
        stated = struct.unpack_from("<Q", head, 12)[0]  # the DSD chunk's total file size
    elif container_name == "asf":
        at = head.find(_ASF_FILE_PROPERTIES)
        if at >= 0 and len(head) >= at + 48:
            stated = struct.unpack_from("<Q", head, at + 40)[0]  # 0: a live stream, no size
    if stated and size < stated:
        return (f"truncated: the header states a file of {stated} bytes but it holds {size} "
                "(cut short)")
    return None


def _whole_file(source, container_name: str) -> bool:
    """Whether ``source`` is a local MP4/M4A file whose top-level boxes all lie within it, or a
    Matroska/WebM file whose Segment does (so a stream that stops decoding early is damaged, not
    cut short: :func:`mp4_cut_reason`, :func:`matroska_segment_whole`)."""
    kind = _FORMAT_NAMES.get(container_name)
    if kind == "MATROSKA":
        return matroska_segment_whole(source) is True
    return (kind == "MP4" and isinstance(source, (str, os.PathLike))
            and mp4_cut_reason(source) is None)


def _ebml_vint(data: bytes, at: int, *, keep_marker: bool):
    """``(value, next offset)`` of the EBML variable-length integer at ``at`` (an element ID with
    its length marker kept, or a size without it; an all-ones size is None: unknown)."""
    first = data[at]
    width = 8 - first.bit_length() + 1  # leading zeros + 1
    if first == 0 or at + width > len(data):
        raise ValueError("not an EBML integer")
    value = int.from_bytes(data[at:at + width], "big")
    if keep_marker:
        return value, at + width
    value &= (1 << (7 * width)) - 1
    return (None if value == (1 << (7 * width)) - 1 else value), at + width


def _matroska_segment(source) -> tuple[int, int] | None:
    """``(stated, held)``: the bytes the local Matroska/WebM file ``source``'s header gives its
    Segment (the element that holds everything else) and those the file holds of it; None where
    it cannot tell (a live recording's unknown size, no Matroska, unreadable)."""
    if not isinstance(source, (str, bytes, os.PathLike)):
        return None
    try:
        with open(source, "rb") as handle:
            head = handle.read(4096)
            size = os.fstat(handle.fileno()).st_size
        element, at = _ebml_vint(head, 0, keep_marker=True)
        if element != 0x1A45DFA3:  # the EBML header
            return None
        length, at = _ebml_vint(head, at, keep_marker=False)
        if length is None:
            return None
        element, at = _ebml_vint(head, at + length, keep_marker=True)
        if element != 0x18538067:  # the Segment
            return None
        length, at = _ebml_vint(head, at, keep_marker=False)
    except (OSError, ValueError, IndexError):
        return None
    return None if length is None else (length, size - at)


def matroska_segment_whole(source) -> bool | None:
    """Whether the local Matroska/WebM file ``source`` holds the whole Segment its header sizes:
    True, False (the file ends before it), or None where it cannot tell.

    The Segment's size is what a muxer writes when it finishes the file; its ``Duration`` is a
    figure beside it (an old muxer wrote one 2 % past the last packet of a whole file), so a
    whole Segment outranks it. A file short of its Segment may still hold every packet (only
    its index, the Cues, cut off): where a Duration is stated, the frames that decode tell.
    """
    segment = _matroska_segment(source)
    return None if segment is None else segment[1] >= segment[0]


def _readable(text: str) -> str:
    """FFmpeg's text for a packet it rejected, where it gives only an error number."""
    if text.startswith("Error number") or text in ("Operation not permitted", "Invalid argument"):
        return f"a damaged packet ({text})"
    return text


def _count(source):
    """``(frames, samplerate, channels, codec name, container name, bits, cut reason)`` by one
    decoding pass; a stream whose rate or channel count changes part-way is refused, and so is
    one whose decoding fails part-way (named as such: cut short, or damaged)."""
    container, stream = _open_container(source)
    try:
        frames, rate, channels, sample_format = 0, None, None, ""
        try:
            for frame in _frames(container, stream):
                n_ch = len(frame.layout.channels)
                if rate is None:
                    rate, channels = int(frame.sample_rate), n_ch
                    sample_format = frame.format.name.rstrip("p")
                elif (int(frame.sample_rate), n_ch) != (rate, channels):
                    raise FFmpegError(
                        f"the stream changes from {rate} Hz, {channels} channel(s) to "
                        f"{int(frame.sample_rate)} Hz, {n_ch} channel(s) part-way")
                frames += frame.samples
        except FFmpegError as exc:
            if not frames:
                raise
            stated = _stated_frames(container, stream, rate)
            if stated is not None and frames < stated:
                if _whole_file(source, container.format.name):  # all its bytes are there
                    raise FFmpegError(f"damaged: decoding stopped after {frames} of the {stated} "
                                      "frames the header announces, in a file whose boxes are all "
                                      f"there (FFmpeg: {_readable(str(exc))})", cut=True) from None
                raise FFmpegError(f"truncated: the header announces {stated} frames but decoding "
                                  f"stopped after {frames} ({_readable(str(exc))})", cut=True) from None
            sized = _size_cut_reason(source, container.format.name)
            if sized is not None:
                raise FFmpegError(sized, cut=True) from None
            raise FFmpegError(f"decoding failed part-way (FFmpeg: {_readable(str(exc))}, after "
                              f"{frames} frames): a damaged or cut stream", cut=True) from None
        ctx = stream.codec_context
        if rate is None:
            rate = int(ctx.sample_rate or 0)
            channels = int(getattr(ctx, "channels", 0) or len(ctx.layout.channels))
        stated = _stated_frames(container, stream, rate)
        cut = None
        if _FORMAT_NAMES.get(container.format.name) == "MATROSKA":
            segment = _matroska_segment(source)
            if segment is not None and segment[1] >= segment[0]:
                stated = None  # every byte of the Segment is there: its Duration is only a figure
            elif segment is not None and stated is None:  # no Duration: the Segment's size tells
                cut = (f"truncated: the Matroska header announces a Segment of {segment[0]} bytes "
                       f"but the file holds {segment[1]} of them (the file was cut short)")
        if stated is not None and frames < stated - _LENGTH_SLACK - stated // 200:
            cut = (f"truncated: the {_FORMAT_NAMES.get(container.format.name, 'file')} header "
                   f"announces {stated} frames but only {frames} decode (the file was cut short)")
        if cut is None:
            cut = _size_cut_reason(source, container.format.name)
        bits = _lossless_bits(ctx, sample_format)
        return {"frames": frames, "samplerate": rate, "channels": channels,
                "codec": ctx.name, "container": container.format.name, "bits": bits,
                "cut": cut}
    finally:
        container.close()


class AVFile:
    """A decoded audio stream with ``soundfile.SoundFile``'s reading interface.

    ``source`` is a path or a seekable binary file object. ``frames`` is counted by decoding
    (see the module's notes). ``format`` names the container (``MP4``, ``ASF``, ``MATROSKA``,
    ``ADTS``, ...), ``subtype`` the codec (``AAC``, ``WMAV2``, ``OPUS``, ``ALAC``, ...).
    """

    decoder = "FFmpeg"
    exact_seek = True  # a seek lands on the very sample (by decoding from the start)
    length_exact = True
    cut_reason = None
    extra_info = ""
    sections = 1
    endian = "FILE"
    mode = "r"

    def __init__(self, source, *, frames: int | None = None):
        self.name = source if isinstance(source, (str, bytes, os.PathLike)) else getattr(source, "name", None)
        self._source = source
        self._container = None
        self._iter = None
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._position = 0
        self.closed = False
        key = _COUNTED.key(source)
        facts = _COUNTED.get(key)
        if facts is None and frames is not None:
            facts = self._first_frame_facts(int(frames))  # the caller counted: one pass
        elif facts is None:
            facts = _count(source)
            _COUNTED.put(key, facts)
        self.samplerate = facts["samplerate"]
        self.channels = facts["channels"]
        self.frames = facts["frames"]
        container = facts["container"]
        self.format = _FORMAT_NAMES.get(container, container.split(",")[0].upper())
        self.subtype = facts["codec"].upper()
        self.bit_depth = facts["bits"]
        self.format_info = f"{self.format} (FFmpeg {container})"
        self.subtype_info = f"{self.subtype} (FFmpeg)"
        self.cut_reason = facts.get("cut")
        if self.cut_reason is not None and self.format == "MP4":  # its boxes say what is cut
            self.cut_reason = mp4_cut_reason(source) or self.cut_reason

    def _first_frame_facts(self, frames: int) -> dict:
        """The stream's facts from its first decoded frame (kept for the first read), the frame
        count as given."""
        self._start()
        first = next(self._iter, None)
        stream = self._stream
        rate = int(first.sample_rate) if first is not None else int(stream.codec_context.sample_rate or 0)
        if first is not None:
            block = _as_float(first)
            self._pending, self._pending_len = [block], block.shape[0]
            channels, sample_format = block.shape[1], first.format.name.rstrip("p")
        else:
            channels, sample_format = len(stream.codec_context.layout.channels), ""
        codec = stream.codec_context.name
        return {"frames": frames, "samplerate": rate, "channels": channels, "codec": codec,
                "container": self._container.format.name, "cut": None,
                "bits": _lossless_bits(stream.codec_context, sample_format)}

    # ---------------------------------------------------------------- soundfile's interface

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def _start(self) -> None:
        self._close_container()
        self._container, self._stream = _open_container(self._source)
        self._iter = _frames(self._container, self._stream)
        self._pending, self._pending_len, self._position = [], 0, 0

    def _take(self, n: int) -> np.ndarray:
        """Up to ``n`` frames ``(n, channels)`` float32 from the current position."""
        if self._iter is None:
            self._start()
        while self._pending_len < n:
            frame = next(self._iter, None)
            if frame is None:
                break
            block = _as_float(frame)
            if block.shape[1] != self.channels or int(frame.sample_rate) != self.samplerate:
                raise FFmpegError(f"the stream changes to {int(frame.sample_rate)} Hz, "
                                  f"{block.shape[1]} channel(s) part-way")
            self._pending.append(block)
            self._pending_len += block.shape[0]
        if not self._pending:
            return np.zeros((0, self.channels), dtype=np.float32)
        data = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        out, rest = data[:n], data[n:]
        self._pending = [rest] if rest.shape[0] else []
        self._pending_len = rest.shape[0]
        self._position += out.shape[0]
        return out

    def read(self, frames: int = -1, dtype: str = "float64", always_2d: bool = False,
             fill_value=None, out=None):
        """Up to ``frames`` frames (``-1``: to the end) from the current position, as soundfile
        returns them: ``(n, channels)``, or ``(n,)`` for one channel without ``always_2d``."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        to_end = frames is None or frames < 0
        want = self.frames - self._position if to_end else int(frames)
        block = self._take(max(0, want))
        if to_end:  # to the end of the stream, whatever the count said
            rest = [block]
            while True:
                more = self._take(1 << 20)
                if not more.shape[0]:
                    break
                rest.append(more)
            block = np.concatenate(rest) if len(rest) > 1 else block
        block = block.astype(np.dtype(dtype), copy=False)
        if fill_value is not None and block.shape[0] < want:
            pad = np.full((want - block.shape[0], self.channels), fill_value, dtype=block.dtype)
            block = np.concatenate([block, pad])
        if out is not None:
            out[:block.shape[0]] = block if out.ndim == 2 else block[:, 0]
            return out[:block.shape[0]]
        if not always_2d and self.channels == 1:
            return block[:, 0]
        return block

    def seek(self, frames: int, whence: int = 0) -> int:
        target = {0: frames, 1: self._position + frames, 2: self.frames + frames}[whence]
        if target < 0 or target > self.frames:
            raise ValueError(f"seek to frame {target} is outside 0..{self.frames}")
        if self._iter is None or target < self._position:
            self._start()
        while self._position < target:
            if self._take(min(target - self._position, 1 << 16)).shape[0] == 0:
                break
        return self._position

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container, self._iter = None, None

    def close(self) -> None:
        self._close_container()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def av_available() -> bool:
    """Whether PyAV is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


def _head(source, n: int = 16) -> bytes:
    try:
        if isinstance(source, (str, bytes, os.PathLike)):
            with open(source, "rb") as handle:
                return handle.read(n)
        source.seek(0)
        return bytes(source.read(n))
    except Exception:  # noqa: BLE001 - no head, no hint
        return b""


def _extension(name) -> str:
    if not isinstance(name, (str, bytes, os.PathLike)):
        return ""
    return os.path.splitext(os.fsdecode(name))[1].lower().lstrip(".")


def open_instead(source, name, error: BaseException, *, frames: int | None = None):
    """:class:`AVFile` of a file libsndfile would not open (``error``) when its name or first
    bytes say it is audio FFmpeg reads; None when they do not, or PyAV is not installed (the
    caller keeps libsndfile's error). FFmpeg's own failure raises :class:`FFmpegError`.
    ``frames``, where a reader already knows the count (the extract job's plan), spares the
    counting pass."""
    if not av_available():
        return None
    # a container libsndfile knows holding a codec it does not ("Supported file format but
    # unsupported encoding": ALAC or AC-3 in a CAF or WAV that FFmpeg wrote) is FFmpeg's too
    # (nor one whose 'fmt ' chunk names a codec libsndfile does not know: "Malformed 'fmt '
    # chunk" for AC-3 or AAC in a WAV)
    unsupported_codec = "unsupported encoding" in str(error).lower()
    if _extension(name) not in AV_EXTENSIONS and av_container_hint(_head(source)) is None \
            and not unsupported_codec:
        from .wav import foreign_codec, w64_float_extensible

        if foreign_codec(source) is None and not w64_float_extensible(_head(source, 1 << 12)) \
                and not aiff_long_text(source):
            return None
    return AVFile(source, frames=frames)


# AIFF text chunks that libsndfile copies into a fixed 8 KiB buffer: one of 8,191 bytes or more
# fails the open with "Unspecified internal error" (an archive's long annotation); FFmpeg reads
# the file
_AIFF_TEXT_CHUNKS = (b"NAME", b"AUTH", b"(c) ", b"ANNO", b"COMT")
_AIFF_TEXT_LIMIT = 8190


def aiff_long_text(source) -> bool:
    """Whether ``source`` (a local path or a seekable binary file object) is an AIFF/AIFF-C file
    with a text chunk too long for libsndfile."""
    try:
        handle = open(source, "rb") if isinstance(source, (str, bytes, os.PathLike)) else source  # noqa: SIM115
    except OSError:
        return False
    position = None if handle is not source else handle.tell()
    try:
        handle.seek(0)
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
            return False
        at = 12
        for _ in range(1000):
            handle.seek(at)
            header = handle.read(8)
            if len(header) < 8:
                return False
            size = int.from_bytes(header[4:], "big")
            if header[:4] in _AIFF_TEXT_CHUNKS and size > _AIFF_TEXT_LIMIT:
                return True
            at += 8 + size + (size & 1)
        return False
    except (OSError, ValueError):
        return False
    finally:
        if position is None:
            handle.close()
        else:
            handle.seek(position)


def misread_by_libsndfile(handle, source) -> bool:
    """Whether ``handle``, libsndfile's open file of ``source``, would read wrong samples that
    FFmpeg reads right: a Wave64 file of extensible float samples, which libsndfile takes for
    32-bit integers (:func:`featurelib.wav.w64_float_extensible`)."""
    if str(handle.format) != "W64" or str(handle.subtype) in ("FLOAT", "DOUBLE"):
        return False
    from .wav import w64_float_extensible

    position = None if isinstance(source, (str, bytes, os.PathLike)) else source.tell()
    try:
        return w64_float_extensible(_head(source, 1 << 12))
    finally:
        if position is not None:  # libsndfile reads the file object on from where it left it
            source.seek(position)
