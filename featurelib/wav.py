"""RIFF/WAVE files over 4 GiB: their length, which their header cannot hold.

A RIFF chunk's size is a 32-bit field, so a WAV file cannot say that it holds more than 4 GiB of
samples (6 h 12 min of 16-bit stereo at 48 kHz, the length of a night's sleep recording). Tools
that write one anyway leave the size wrapped around 2^32 (the true size minus a multiple of
4 GiB) or a placeholder (0 or 0xFFFFFFFF); libsndfile, and with it librosa, then reads the first
``size mod 4 GiB`` bytes and silently drops the rest: a 1 h 33 min recording read as 1 minute.
RF64 and W64 exist for such files and libsndfile reads them whole.

:func:`past_4gib` finds such a file and opens its data chunk again, as headerless samples of the
header's rate, channels and encoding, to the end the file really has.
"""

from __future__ import annotations

import os

from ._views import SplicedFile

# Declared chunk sizes that are "length unknown" placeholders of streamed files, not promises
# that the data is there: 0xFFFFFFFF (pipes), 0x7FFFFFFF, 0x7FFFF000 (sox), 0x80000000 and
# 0x7FFFFF00 (arecord to stdout: its 2 GiB cap). Only these: a genuine 2-4 GiB recording cut
# short declares its real size, and is refused as cut.
PLACEHOLDER_SIZES = frozenset({0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000, 0x80000000, 0x7FFFFF00})

__all__ = ["FOUR_GIB", "PLACEHOLDER_SIZES", "chunks", "data_chunk", "file_chunks", "foreign_codec", "past_4gib",
           "riff_order", "w64_float_extensible"]

FOUR_GIB = 1 << 32
# libsndfile's RAW reads these encodings as WAV stores them (little-endian; 8-bit unsigned)
_BYTES_PER_SAMPLE = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3,
                     "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
_TRAILING_CHUNKS = 1 << 20  # bytes after the samples that still count as chunks (LIST, id3, ...)


def riff_order(head: bytes) -> str | None:
    """``"little"`` (RIFF) or ``"big"`` (RIFX) for the first 12 bytes of a WAVE file, else None."""
    if len(head) < 12 or head[8:12] != b"WAVE":
        return None
    return {b"RIFF": "little", b"RIFX": "big"}.get(head[:4])


def chunks(head: bytes, order: str = "little"):
    """``(chunk id, offset of its body, size its header gives)`` of each chunk whose 8-byte header
    lies in ``head`` (the first bytes of a WAVE file, or all of them), in file order. Sizes are
    the header's: a body may run past ``head`` or past the file."""
    position = 12
    while position + 8 <= len(head):
        size = int.from_bytes(head[position + 4:position + 8], order)
        yield head[position:position + 4], position + 8, size
        position += 8 + size + (size & 1)


# WAVE format tags libsndfile decodes (PCM, MS ADPCM, float, A-law, mu-law, IMA ADPCM, GSM 6.10,
# G.721, G.723 (and G.721 ADPCM's older tag), and the extensible header, whose sub-format says
# more); and what other tags hold, in the words a person searches for
LIBSNDFILE_TAGS = frozenset({0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040,
                             0x0064, 0xFFFE})
_CODECS = {
    0x0050: "MPEG audio", 0x0055: "MP3", 0x00FF: "AAC", 0x1610: "AAC", 0x706D: "AAC",
    0x0160: "WMA", 0x0161: "WMA", 0x0162: "WMA Pro", 0x0163: "WMA Lossless", 0x2000: "AC-3",
    0x2001: "DTS", 0x0092: "AC-3", 0xF1AC: "FLAC", 0x0022: "TrueSpeech", 0x0042: "G.723",
    0x0045: "G.726", 0x0070: "AMR", 0x0130: "ACELP.net", 0x0270: "ATRAC3",
    **{tag: "Ogg Vorbis" for tag in (0x674F, 0x6750, 0x6751, 0x676F, 0x6770, 0x6771)},
}


def foreign_codec(source) -> tuple[int, str | None] | None:
    """``(format tag, codec name or None)`` of a RIFF/WAVE file (a local path or a seekable
    binary file object) whose 'fmt ' chunk names a codec libsndfile does not decode (MP3, AAC,
    AC-3, Ogg Vorbis, ... in a WAV wrapper); None for any other file."""
    try:
        if isinstance(source, (str, bytes, os.PathLike)):
            with open(source, "rb") as handle:
                head = handle.read(1 << 16)
        else:
            position = source.tell()
            source.seek(0)
            head = bytes(source.read(1 << 16))
            source.seek(position)
    except Exception:  # noqa: BLE001 - only a better reason; none is fine
        return None
    order = riff_order(head)
    if order is None:
        return None
    for name, body, _ in chunks(head, order):
        if name == b"fmt ":
            if body + 2 > len(head):
                return None
            tag = int.from_bytes(head[body:body + 2], order)
            return None if tag in LIBSNDFILE_TAGS else (tag, _CODECS.get(tag))
    return None


# Sony Wave64: GUID chunk ids ('riff', 'wave' and 'fmt ' plus these tails), 8-byte sizes that
# count the 24-byte chunk header, bodies padded to 8 bytes
_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_W64_TAIL = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"


def w64_float_extensible(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) is a Wave64 file whose 'fmt ' chunk is
    WAVE_FORMAT_EXTENSIBLE with IEEE-float samples, as FFmpeg writes W64 of more than two
    channels. libsndfile reads float32 ones as 32-bit integers (a 0.3 peak came back as 0.74 of
    noise, without a word) and refuses float64 ones; FFmpeg decodes both."""
    if len(head) < 40 or not head.startswith(_W64_RIFF) or head[24:40] != b"wave" + _W64_TAIL:
        return False
    position = 40
    while position + 24 <= len(head):
        guid, size = head[position:position + 16], int.from_bytes(head[position + 16:position + 24], "little")
        if guid == b"fmt " + _W64_TAIL:
            body = head[position + 24:position + size]
            return (len(body) >= 26 and int.from_bytes(body[0:2], "little") == 0xFFFE
                    and int.from_bytes(body[24:26], "little") == 0x0003)
        if size < 24:
            return False
        position += (size + 7) & ~7
    return False


def file_chunks(handle, order: str = "little"):
    """:func:`chunks` of an open binary file, read 8 bytes at a time however long the chunks
    before ``data`` are (the caller may read a body; the walk seeks past it)."""
    position = 12
    while True:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:], order)
        yield header[:4], position + 8, size
        position += 8 + size + (size & 1)


def data_chunk(path) -> tuple[int, int] | None:
    """``(offset of its first sample byte, size its header gives)`` of a RIFF/WAVE file's
    ``data`` chunk, or None when ``path`` is not one or has no ``data`` chunk."""
    with open(path, "rb") as handle:
        if riff_order(handle.read(12)) != "little":
            return None
        return next(((body, size) for cid, body, size in file_chunks(handle) if cid == b"data"), None)


def true_data_size(file_size: int, offset: int, declared: int) -> int | None:
    """The data chunk's real size in a WAV file of ``file_size`` bytes whose ``data`` chunk starts
    at ``offset`` and says ``declared``, when that says less than the file holds by 2 GiB or more
    (wrapped past 2^32) or is a placeholder (0, or one of :data:`PLACEHOLDER_SIZES`); None when
    ``declared`` stands.

    Wrapped by whole multiples of 4 GiB with at most 1 MiB left after (trailing chunks), the
    multiples are added back; otherwise (a recording cut short after the wrap) the samples run
    to the end of the file.
    """
    if file_size < FOUR_GIB:
        return None
    placeholder = declared == 0 or declared in PLACEHOLDER_SIZES
    rest = file_size - offset - declared
    if not placeholder and rest < FOUR_GIB // 2:
        return None
    wraps, left = divmod(rest, FOUR_GIB)
    if not placeholder and left <= _TRAILING_CHUNKS:
        return declared + wraps * FOUR_GIB
    return file_size - offset


def past_4gib(handle, source, open_file):
    """``handle`` (libsndfile's, of a WAV) or, for a local file over 4 GiB whose header cannot
    give its length, a handle that reads all of its samples.

    The replacement reads the ``data`` chunk's bytes to their real end (:func:`true_data_size`)
    as headerless samples (libsndfile's RAW) and reports itself as the WAV it is. An encoding
    that RAW cannot read (ADPCM, GSM: blocks, not samples) keeps libsndfile's handle, with
    ``cut_reason`` set: featurelib refuses it rather than read part of it.
    """
    import soundfile as sf

    if not isinstance(source, (str, bytes, os.PathLike)):
        return handle
    try:
        file_size = os.path.getsize(source)
        if file_size < FOUR_GIB:
            return handle
        found = data_chunk(source)
    except OSError:
        return handle
    size = None if found is None else true_data_size(file_size, *found)
    if size is None:
        return handle
    offset = found[0]
    subtype, channels = str(handle.subtype), int(handle.channels)
    if subtype not in _BYTES_PER_SAMPLE:
        handle.cut_reason = (f"a WAV file over 4 GiB ({file_size / 2**30:.1f} GiB) whose header "
                             f"cannot give its length, in {subtype}, which featurelib can read "
                             "only as far as the header says: convert it (e.g. sox --ignore-length "
                             "IN.wav OUT.flac)")
        return handle
    size -= size % (channels * _BYTES_PER_SAMPLE[subtype])
    view = SplicedFile(source, [(size, offset)])
    try:
        whole = open_file(view, samplerate=int(handle.samplerate), channels=channels, format="RAW",
                          subtype=subtype, endian="LITTLE")
    except Exception:  # noqa: BLE001 - libsndfile's handle reads at least the header's part
        view.close()
        return handle
    whole._info.format = sf._formats["WAV"] | sf._subtypes[subtype]  # it is the WAV it was
    whole.owned, whole.length_exact = view, True
    handle.close()
    return whole
