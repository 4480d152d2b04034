"""MPEG audio streams (MP3, MP2): how many samples a file really holds, from its frame headers.

libsndfile decodes MP3 with mpg123 but takes the length from the stream's header: exact when
the first frame carries a Xing/Info or VBRI tag (every LAME file does), an estimate from the
file size and the first frame's bit rate when it does not. The estimate of a constant bit rate
file is a few hundred samples off (the decoder then delivers fewer samples than announced), and
that of a variable bit rate file can be off by a factor of three, and libsndfile stops decoding
there: the rest of the recording is silently lost (librosa.load loses it too).

:func:`scan` walks the frame headers (no decoding: four bytes per frame) and counts the frames,
which gives the exact number of samples mpg123 decodes from a stream without a tag: frames times
samples per frame.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

from ._filecache import per_file_state
from ._views import SplicedFile

__all__ = ["MpegStream", "scan", "scan_bytes", "xing_frame", "TaggedStream"]

# kbps by (MPEG-1?, layer) and bit-rate index 1..14 (0 is "free format", 15 is invalid)
_BITRATES = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5) and rate index 0..2
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclass(frozen=True)
class MpegStream:
    """What the frame headers of an MPEG audio stream say.

    Attributes
    ----------
    tagged : bool
        The first frame is a Xing/Info or VBRI tag, so the decoder knows the exact length.
    frames : int
        Complete audio frames found (the tag frame excluded).
    samples_per_frame : int
        384 (Layer I), 1152 (Layer II, MPEG-1 Layer III) or 576 (MPEG-2/2.5 Layer III).
    sample_rate : int
    layer : int
        1, 2 or 3.
    first_frame : int
        Byte offset of the first frame (after ID3v2 tags and any leading junk).
    header : bytes
        The first frame's four header bytes.
    tag_counts : bool
        The tag gives the number of frames (decoders then know the exact length).
    """

    tagged: bool
    frames: int
    samples_per_frame: int
    sample_rate: int
    layer: int = 3
    first_frame: int = 0
    header: bytes = b""
    tag_counts: bool = False

    @property
    def samples(self) -> int:
        """Samples per channel that a decoder without gapless information delivers."""
        return self.frames * self.samples_per_frame


def _frame_size(version: int, layer: int, bitrate_index: int, rate_index: int, padding: int = 0) -> int:
    """Bytes of one frame (``bitrate_index`` 1..14), padding slot included."""
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
    rate = _RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (144 if layer == 2 or mpeg1 else 72) * bitrate // rate + padding


def _side_info_bytes(version: int, mono: bool) -> int:
    """Bytes between a Layer III frame's header and its data (where a Xing tag starts)."""
    return (17 if mono else 32) if version == 3 else (9 if mono else 17)


def _header(data, pos: int):
    """``(key, frame_bytes, samples_per_frame, side_info_bytes)`` of a frame header, or None.

    ``key`` (version, layer, sample rate) must stay the same along one stream.
    """
    b0, b1, b2, b3 = data[pos], data[pos + 1], data[pos + 2], data[pos + 3]
    if b0 != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    rate_index, bitrate_index = (b2 >> 2) & 3, b2 >> 4
    if version == 1 or layer_bits == 0 or rate_index == 3 or bitrate_index in (0, 15):
        return None  # reserved values, or free format (no length in the header)
    layer = 4 - layer_bits
    size = _frame_size(version, layer, bitrate_index, rate_index, (b2 >> 1) & 1)
    spf = 384 if layer == 1 else 1152 if layer == 2 or version == 3 else 576
    key = (version, layer, _RATES[version][rate_index])
    return key, size, spf, _side_info_bytes(version, (b3 >> 6) == 3)


def _skip_id3v2(data, pos: int) -> int:
    while pos + 10 <= len(data) and data[pos:pos + 3] == b"ID3":
        size = 0
        for b in data[pos + 6:pos + 10]:
            size = (size << 7) | (b & 0x7F)
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    return pos


def _sync(data, pos: int, key=None):
    """The first position at or after ``pos`` where two consecutive valid frames begin."""
    end = len(data) - 4
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos > end:
            return None
        head = _header(data, pos)
        if head is not None and (key is None or head[0] == key):
            nxt = pos + head[1]
            if nxt + 4 > len(data):  # the last frame of the file
                return pos if key is not None else None
            follow = _header(data, nxt)
            if follow is not None and follow[0] == head[0]:
                return pos
        pos += 1


def _tag_frames(data, pos: int, side: int):
    """``(tagged, frames)`` from a Xing/Info or VBRI tag in the frame at ``pos`` (frames None
    when the tag does not say)."""
    tag = pos + 4 + side
    if data[tag:tag + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(data[tag + 4:tag + 8], "big")
        return True, int.from_bytes(data[tag + 8:tag + 12], "big") if flags & 1 else None
    if data[pos + 36:pos + 40] == b"VBRI":
        return True, int.from_bytes(data[pos + 50:pos + 54], "big")
    return False, None


def scan_bytes(data, *, walk_tagged: bool = False) -> MpegStream | None:
    """:func:`scan` of a stream in memory (bytes, memoryview or mmap)."""
    pos = _sync(data, _skip_id3v2(data, 0))
    if pos is None:
        return None
    first = pos
    key, size, spf, side = _header(data, pos)
    layer = key[1]
    tagged, tag_frames = _tag_frames(data, pos, side) if layer == 3 else (False, None)
    if tagged and tag_frames is not None and not walk_tagged:
        return MpegStream(tagged=True, frames=tag_frames, samples_per_frame=spf, sample_rate=key[2],
                          layer=layer, first_frame=first, header=bytes(data[pos:pos + 4]), tag_counts=True)
    frames, n = 0, len(data)
    while pos is not None:
        head = _header(data, pos) if pos + 4 <= n else None
        if head is None or head[0] != key:
            pos = _sync(data, pos + 1, key)  # damaged bytes or tags: find the stream again
            continue
        if pos + head[1] > n:  # a frame cut short at the end of the file
            break
        frames += 1
        pos += head[1]
    if tagged:
        frames -= 1  # the tag frame holds no audio
    return MpegStream(tagged=tagged, frames=max(frames, 0), samples_per_frame=spf, sample_rate=key[2],
                      layer=layer, first_frame=first, header=bytes(data[first:first + 4]),
                      tag_counts=tag_frames is not None)


@per_file_state()
def scan(path, *, walk_tagged: bool = False) -> MpegStream | None:
    """Walk the frame headers of a local MPEG audio file (MP3, MP2, MP1).

    Parameters
    ----------
    path : str or os.PathLike
    walk_tagged : bool
        Count the frames of a tagged stream too, instead of taking the tag's count.

    Returns
    -------
    MpegStream or None
        None when no MPEG audio stream is found (two consecutive valid frame headers) or the
        stream is in free format (no frame lengths in its headers).

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from featurelib import mpeg
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.mp3")
    >>> sf.write(path, np.zeros(44100, np.float32), 44100, format="MP3")
    >>> stream = mpeg.scan(path)
    >>> stream.tagged, stream.sample_rate, stream.samples_per_frame
    (True, 44100, 1152)
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return scan_bytes(data, walk_tagged=walk_tagged)


def xing_frame(stream: MpegStream) -> bytes:
    """A Layer III frame that holds only a Xing tag saying ``stream.frames`` frames.

    The frame matches the stream's first frame (version, sample rate, channel mode) at the
    smallest bit rate that holds the tag; decoders skip it as they skip an encoder's tag.
    """
    if stream.layer != 3:
        raise ValueError("a Xing tag belongs to a Layer III stream")
    b1, b2, b3 = stream.header[1] | 0x01, stream.header[2], stream.header[3]  # no CRC
    version, rate_index = (b1 >> 3) & 3, (b2 >> 2) & 3
    side = _side_info_bytes(version, (b3 >> 6) == 3)
    need = 4 + side + 12
    index = next(i for i in range(1, 15) if _frame_size(version, 3, i, rate_index) >= need)
    frame = bytearray(_frame_size(version, 3, index, rate_index))
    frame[0:4] = bytes((0xFF, b1, (index << 4) | (rate_index << 2), b3))
    frame[4 + side:4 + side + 12] = b"Xing" + (1).to_bytes(4, "big") + stream.frames.to_bytes(4, "big")
    return bytes(frame)


class TaggedStream(SplicedFile):
    """A read-only view of an MPEG file with a Xing frame put before its first frame.

    What libsndfile reads instead of a Layer III file that has no length tag: mpg123 then takes
    the exact length from the tag (frames times samples per frame) and decodes every frame,
    where from the bare file it would stop at its estimate.
    """

    def __init__(self, path, stream: MpegStream):
        tag, first = xing_frame(stream), stream.first_frame
        super().__init__(path, [(first, 0), (len(tag), tag), (os.path.getsize(path) - first, first)])


def exact_length(handle, source, open_file):
    """``handle`` (libsndfile's, of an MP3) or a replacement whose frame count is what decodes.

    A stream with a Xing/Info or VBRI tag is left alone: libsndfile's count is exact. Without a
    tag, the frame headers are walked (:func:`scan`):

    - where libsndfile's estimate is at least the stream's length, the decoder stops at the
      stream's end, short of the estimate: the handle is kept and told the exact count;
    - where it is shorter, libsndfile would stop decoding at the estimate and lose the rest:
      a Layer III stream is opened again through :class:`TaggedStream`, which lets mpg123
      decode every frame (less its standard 529-sample decoder delay, as for any tagged file).

    Only local files are walked (a URL, which callers pass as a file object, would have to be
    read whole). ``open_file(src)`` opens a ``soundfile.SoundFile`` of the
    ``ExactLengthSoundFile`` class.
    """
    if not isinstance(source, (str, bytes, os.PathLike)) or not os.path.isfile(source):
        return handle
    path = source
    try:
        stream = scan(path)
    except (OSError, ValueError):
        return handle
    if stream is None or stream.frames == 0:
        return handle
    if stream.tagged:  # the decoder's count is the tag's (an estimate only if the tag has none)
        handle.length_exact = stream.tag_counts
        return handle
    if stream.samples <= handle.frames:
        handle.exact_frames, handle.length_exact = stream.samples, True
        return handle
    if stream.layer != 3:
        return handle
    view = TaggedStream(path, stream)
    try:
        whole = open_file(view)
    except Exception:  # noqa: BLE001 - the bare file still decodes as far as libsndfile goes
        view.close()
        return handle
    whole.owned, whole.length_exact = view, True
    if whole.frames <= handle.frames:
        whole.close()
        return handle
    handle.close()
    return whole
