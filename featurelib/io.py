"""Audio input: header facts (:func:`info`) and decoding (:func:`load`) with soundfile and soxr.

:func:`load` gives the numbers :func:`librosa.load` gives for the same file and arguments
(soundfile decoding, channel mean for mono, ``soxr`` at librosa's default ``soxr_hq`` quality,
length ``ceil(n * sr / native_sr)``), except that ``sr=None`` (keep the native rate) is the
default. Every way a file can fail becomes one :class:`~featurelib.exceptions.AudioDecodeError`
carrying the path and a short human reason; bad arguments raise
:class:`~featurelib.exceptions.ParameterError`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import struct
from dataclasses import dataclass

import numpy as np

from ._decoder_notes import open_quietly, quiet_decoder_notes
from ._filecache import per_file_state
from ._sequential import read_float32
from .exceptions import AudioDecodeError, AudioFileNotFoundError, ParameterError
from .wav import PLACEHOLDER_SIZES

__all__ = ["AudioInfo", "info", "load", "AUDIO_EXTENSIONS"]

# libsndfile major format -> file extensions it is known by (lower case, no dot).
_EXTENSIONS_OF_FORMAT = {
    "WAV": ("wav", "wave", "bwf"),  # bwf: Broadcast WAV, as field recorders name their takes
    "WAVEX": ("wavex",),
    "AIFF": ("aiff", "aif", "aifc"),
    "AU": ("au", "snd"),
    # header-less: libsndfile takes these names (only these) as an encoding, rate and channel
    # count (its format_from_extension): GSM 6.10 and Dialogic VOX ADPCM, 8 kHz mono (vox6: 6 kHz)
    "RAW": ("gsm", "vox", "vox6", "vox8"),
    "PAF": ("paf",),
    "SVX": ("svx", "8svx", "iff"),
    "NIST": ("nist", "sph"),
    "VOC": ("voc",),
    "IRCAM": ("ircam", "sf"),
    "W64": ("w64",),
    "MAT4": ("mat",),
    "MAT5": ("mat",),
    "PVF": ("pvf",),
    "XI": ("xi",),
    "HTK": ("htk",),
    "SDS": ("sds",),
    "AVR": ("avr",),
    "SD2": ("sd2",),
    "FLAC": ("flac",),
    "CAF": ("caf",),
    "WVE": ("wve",),
    "OGG": ("ogg", "oga", "opus"),
    "MPC2K": ("mpc",),
    "RF64": ("rf64",),
    "MP3": ("mp3", "mp2", "mpa", "mp1", "mpga"),  # libsndfile's MPEG decoder takes layers I-III
}


def _raw_by_name(name) -> bool:
    """Whether libsndfile reads ``name`` as header-less audio by its extension alone (``.gsm``)."""
    ext = os.path.splitext(os.fsdecode(name))[1].lower().lstrip(".")
    return ext in _EXTENSIONS_OF_FORMAT["RAW"]


def _audio_extensions() -> frozenset[str]:
    try:
        import soundfile as sf

        formats = sf.available_formats()
    except (ImportError, OSError):  # no libsndfile: nothing is readable, still importable
        return frozenset()
    found = frozenset(ext for fmt in formats for ext in _EXTENSIONS_OF_FORMAT.get(fmt, ()))
    from ._avfile import AV_EXTENSIONS, av_available

    return found | AV_EXTENSIONS if av_available() else found


#: Lower-case file extensions (without the dot) of the formats this libsndfile reads, and of
#: those FFmpeg reads through PyAV (AAC/M4A, WMA, WebM, AC-3, WavPack, APE, ...).
AUDIO_EXTENSIONS: frozenset[str] = _audio_extensions()

# Bits per stored sample where the subtype stores samples as plain numbers.
_BIT_DEPTH = {
    "PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32,
    "FLOAT": 32, "DOUBLE": 64, "ULAW": 8, "ALAW": 8,
    "DWVW_12": 12, "DWVW_16": 16, "DWVW_24": 24, "DPCM_8": 8, "DPCM_16": 16,
    "ALAC_16": 16, "ALAC_20": 20, "ALAC_24": 24, "ALAC_32": 32,
}

_DATA_CHUNKS = {"data", "ssnd", "data size"}
# a sample-data chunk that libsndfile found whole: "data : 8000" with no "(should be ...)"
_DATA_WHOLE = re.compile(r"^\s*(?:data|SSND|Data Size)\s*:\s*(\d+)\s*$", re.M | re.I)
_LENGTH = re.compile(r"^Length\s*:\s*(\d+)\s*$", re.M)
# libsndfile's header log: "data : 64000 (should be 31979)" for a chunk cut short.
_SHOULD_BE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 ]*?)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says.

    Attributes
    ----------
    path : str
        The file (for a file object, its ``name`` when it has one).
    format : str
        libsndfile's major format: ``"WAV"``, ``"FLAC"``, ``"OGG"``, ``"MP3"``, ...
    subtype : str
        libsndfile's subtype: ``"PCM_16"``, ``"FLOAT"``, ``"VORBIS"``, ...
    sample_rate : int
        Native sampling rate in Hz.
    channels : int
        Number of channels.
    frames : int
        Number of sample frames (samples per channel).
    duration : float
        ``frames / sample_rate`` in seconds.
    bit_depth : int or None
        Bits per stored sample for PCM, float and other sample-wise codings (16 for PCM_16,
        32 for FLOAT, 64 for DOUBLE, 8 for u-law/A-law); ``None`` for compressed codings
        (Vorbis, Opus, MP3, ADPCM, GSM) where it has no meaning.
    """

    path: str
    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    bit_depth: int | None


# ---------------------------------------------------------------- opening and errors


def _display_path(path) -> str:
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(path)
    name = getattr(path, "full_name", None) or getattr(path, "path", None) \
        or getattr(path, "name", None)
    return str(name) if isinstance(name, (str, bytes, os.PathLike)) else repr(path)


def _libsndfile_text(exc) -> str:
    """The libsndfile part of a soundfile error, without soundfile's "Error opening 'path': "."""
    text = getattr(exc, "error_string", None) or str(exc)
    text = re.sub(r"^Error opening .*?: ", "", str(text)).strip()
    if "does not exist or is not a regular file" in text:
        # what libsndfile says when its MP3 decoder finds no MPEG stream in a file that does exist
        # (the local checks ran first): not the reason a person needs
        text = "Format not recognised"
    return text.rstrip(".") or type(exc).__name__


# What a file under an audio name that libsndfile does not recognise turns out to be, told by its
# first bytes: the cases that turn up in real corpora
APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"
_CONVERT = "which libsndfile does not decode: convert it first (e.g. ffmpeg -i IN OUT.flac)"


_COMPRESSED = "a compressed file (gzip, xz, bzip2 or zstd), not audio: decompress it first"


def _signature_hint(head: bytes) -> str | None:
    """What a file starting with ``head`` is, by a signature that no audio stream, not even
    header-less ADPCM, starts with by chance: an AppleDouble companion, a Git LFS pointer, an
    archive, a compressed file."""
    if head.startswith(APPLE_DOUBLE_MAGIC):
        return "a macOS AppleDouble file (the '._' metadata companion of another file), not audio"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the audio itself (fetch it with `git lfs pull`)"
    if head.startswith((b"PK\x03\x04", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")):
        return "an archive (ZIP, 7z or RAR), not audio: unpack it first"
    if head.startswith((b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        return _COMPRESSED
    return None


def not_audio_hint(head: bytes) -> str | None:
    """What a file starting with ``head`` (its first 64 bytes or so) is, when that is clearly
    not audio libsndfile reads; None when nothing is recognised.

    Examples
    --------
    >>> from featurelib.io import not_audio_hint
    >>> not_audio_hint(b"version https://git-lfs.github.com/spec/v1\\noid sha256:...")
    'a Git LFS pointer, not the audio itself (fetch it with `git lfs pull`)'
    """
    text = head.lstrip().lower()
    signature = _signature_hint(head)
    if signature is not None:
        return signature
    if head[4:8] == b"ftyp":
        return f"an MP4/M4A container (AAC or ALAC audio), {_CONVERT}"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return f"a WMA/ASF file, {_CONVERT}"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return f"a Matroska/WebM container, {_CONVERT}"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS: MPEG layer bits 00
        return f"a raw AAC stream (ADTS), {_CONVERT}"
    if head.startswith((b"#!AMR", b"#!AMR-WB")):
        return f"an AMR voice recording (a phone's voice memo or call), {_CONVERT}"
    if head.startswith(b"MThd"):
        return "a MIDI file: note events, not recorded audio (render it to audio first)"
    if head.startswith(b"BZh"):
        return _COMPRESSED
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "an HTML or XML document, not audio (a failed download?)"
    if text.startswith((b"{", b"[")) and b'"' in text:
        return "a JSON document, not audio (a failed download?)"
    if len(head) >= 16 and not head.strip(b"\x00"):
        return "only zero bytes where the header belongs (a file never written, or damaged)"
    if head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt " and len(head) >= 36:
        _, channels, rate = struct.unpack_from("<HHI", head, 20)
        if rate == 0 or channels == 0:
            what = "a sample rate of 0 Hz" if rate == 0 else "0 channels"
            return f"a WAV header that gives {what} (a damaged header)"
    return None


def _headerless_not_audio(head: bytes) -> str | None:
    """What a file that libsndfile reads as header-less audio by its name alone (GSM 6.10 in
    ``.gsm``, VOX ADPCM in ``.vox``) really is, where its first bytes say so beyond doubt (any
    bytes decode as such audio: a text file would become noise). Only unambiguous signatures and
    prose: ADPCM bytes can start like an ADTS header or a JSON document, and a quiet tone's can
    all be printable characters."""
    signature = _signature_hint(head)
    if signature is not None:
        return signature
    if head.startswith(b"VOX "):
        return "a MagicaVoxel 3-D model (.vox), not Dialogic VOX audio"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML document, not audio (a failed download?)"
    text = None
    for cut in range(4):  # the bytes read may end inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if (text and len(text) >= 64 and all(c.isprintable() or c in "\r\n\t" for c in text)
            and sum(c.isalpha() for c in text) >= 0.5 * len(text)
            and sum(c.isspace() for c in text) >= 0.05 * len(text)):
        return "text, not audio"  # words and spaces: prose, not ADPCM that happens to be printable
    return None


def _head_of(source, n: int = 64) -> bytes:
    """The first ``n`` bytes of a local path or a readable, seekable file object (b"" if not)."""
    try:
        if isinstance(source, (str, bytes, os.PathLike)):
            with open(source, "rb") as handle:
                return handle.read(n)
        source.seek(0)
        return bytes(source.read(n))
    except Exception:  # noqa: BLE001 - only a better reason; none is fine
        return b""


def part_way_reason(exc) -> str:
    """The reason given for a stream libsndfile (or FFmpeg) stops decoding part-way (lost sync,
    a bad block, cut short): load, inspect, plot and the extract job say it alike."""
    return f"decoding failed part-way ({_decoder_of(exc)}: {_libsndfile_text(exc)})"


def _decoder_of(exc) -> str:
    return getattr(exc, "decoder", "libsndfile")


def _not_audio_reason(source, libsndfile_error) -> str:
    """The reason given for a file libsndfile (and FFmpeg, where it was tried) would not open."""
    libsndfile_text = _libsndfile_text(libsndfile_error)
    head = _head_of(source)
    if _decoder_of(libsndfile_error) == "FFmpeg":  # named or built like audio FFmpeg reads
        from ._avfile import av_container_hint, container_words, mp4_cut_reason

        what = container_words(head)
        cut = mp4_cut_reason(source) if av_container_hint(head) == "MP4" else None
        if cut is not None:
            return cut
        if getattr(libsndfile_error, "cut", False):  # decoding stopped part-way: its own words
            if what is not None and libsndfile_text.startswith("decoding failed"):
                return f"{what} whose {libsndfile_text}"
            return libsndfile_text
        codec = _wav_codec_reason(source)
        if codec is not None:
            return codec
        if what is not None or not_audio_hint(head) is None:
            return (f"not a readable audio file: {what or 'a file'} that FFmpeg cannot decode "
                    f"({libsndfile_text})")
    hint = not_audio_hint(head)
    if hint is not None:
        return f"not a readable audio file: {hint}"
    cut = _unopened_cut_reason(source, head)
    if cut is not None:
        return cut
    if head.startswith(b"ID3") and isinstance(source, (str, bytes, os.PathLike)):
        from .mpeg import scan

        try:
            found = scan(source)
        except (OSError, ValueError):
            found = True  # only a better reason; none is fine
        if found is None:
            return ("not a readable audio file: an ID3 tag with no MPEG audio frames after it "
                    "(an empty or damaged MP3)")
    codec = _wav_codec_reason(source)
    if codec is not None:
        return codec
    joined = _joined_riff_at(source, head)
    if joined is not None:
        return (f"not a readable audio file: WAV files joined end to end (another 'RIFF' header "
                f"starts at byte {joined}, where the first file ends), which libsndfile refuses; "
                "split it where each 'RIFF' header starts")
    return f"not a readable audio file (libsndfile: {libsndfile_text})"


def _wav_codec_reason(source) -> str | None:
    """Why a RIFF/WAVE file does not decode when its 'fmt ' chunk names a codec libsndfile does
    not decode and FFmpeg did not either (Ogg Vorbis, AAC, ... in a WAV wrapper), or None."""
    from .wav import foreign_codec

    found = foreign_codec(source)
    if found is None:
        return None
    tag, codec = found
    what = f"{codec} audio (WAVE format tag 0x{tag:04X})" if codec else f"audio of WAVE format tag 0x{tag:04X}"
    return (f"not a readable audio file: a WAV file holding {what}, which neither libsndfile nor "
            "FFmpeg decodes here; convert it to PCM WAV, FLAC or Ogg")


def _joined_riff_at(source, head: bytes) -> int | None:
    """Where a second RIFF/WAVE file starts right after the first one in ``source`` (files
    joined with ``cat``), or None."""
    if len(head) < 12 or not head.startswith(b"RIFF") or head[8:12] != b"WAVE":
        return None
    end = 8 + int.from_bytes(head[4:8], "little")
    try:
        if isinstance(source, (str, bytes, os.PathLike)):
            with open(source, "rb") as handle:
                handle.seek(end)
                after = handle.read(5)
        else:
            where = source.tell()
            try:
                source.seek(end)
                after = bytes(source.read(5))
            finally:
                source.seek(where)
    except Exception:  # noqa: BLE001 - only a better reason; none is fine
        return None
    for skip in (0, 1):  # a chunk of odd size is followed by a pad byte
        if after[skip:skip + 4] == b"RIFF":
            return end + skip
    return None


def unreadable_path(path) -> tuple[str, str] | None:
    """``(kind, reason)`` when a local ``path`` that is not a directory cannot be read as a file.

    The reasons a folder walk and :func:`load` give alike: a missing file
    (``FileNotFoundError``), a link that leads nowhere or back to itself (``BrokenLink``),
    something that is not a regular file: a named pipe, a socket, a device
    (``NotARegularFile``).
    """
    if not os.path.lexists(path):
        return "FileNotFoundError", "no such file"
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "BrokenLink", "symbolic link loop (the link leads back to itself)"
        if os.path.islink(path):
            return "BrokenLink", "broken symbolic link (its target does not exist)"
        return type(exc).__name__, f"cannot be opened ({exc.strerror or exc})"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "NotARegularFile", "not a regular file (a named pipe, socket or device)"
    return None


def _check_local_path(path, shown: str) -> None:
    """Clear reasons for the failures that happen before libsndfile sees a byte."""
    problem = unreadable_path(path)
    if problem is not None:
        error = AudioFileNotFoundError if problem[0] == "FileNotFoundError" else AudioDecodeError
        raise error(shown, problem[1])
    if os.path.isdir(path):
        raise AudioDecodeError(shown, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(shown, "permission denied")
    if os.path.getsize(path) == 0:
        raise AudioDecodeError(shown, "file is empty (0 bytes)")


# what one request reads when only a URL's header is wanted (info, and the job's probe)
HEADER_BLOCK_BYTES = 1 << 16


def _check_url_file(opened, fs, inner: str, shown: str) -> None:
    """Clear reasons for a URL's file that libsndfile cannot read at all: empty (an HTTP server's
    0-byte file came as 'Format not recognised'), or a stream that cannot seek (a server that
    gives no length: libsndfile's seek failed inside a cffi callback, which printed a traceback)."""
    size = getattr(opened, "size", None)
    if size is None:
        try:
            size = fs.size(inner)
        except Exception:  # noqa: BLE001 - no size to be had: the seek below tells
            size = None
    if size == 0:
        raise AudioDecodeError(shown, "file is empty (0 bytes)")
    try:
        opened.seek(0, os.SEEK_END)
        opened.seek(0)
    except (ValueError, OSError) as exc:
        raise AudioDecodeError(shown, f"cannot be read: its server sends it as a stream that cannot "
                                      f"seek ({exc}); download it first") from None


@contextlib.contextmanager
def _open_soundfile(path, *, block_size: int | None = None):
    """``soundfile.SoundFile`` for ``path`` (str, PathLike, URL or binary file object).

    Yields ``(handle, shown_path)``. Every failure to open becomes an :class:`AudioDecodeError`.
    URLs (``s3://``, ``https://``, ...) are opened with fsspec when it is installed, reading
    ``block_size`` bytes per request (None: the file system's default, megabytes).
    """
    import soundfile as sf

    if isinstance(path, sf.SoundFile):  # librosa.load takes one too: read again from its file
        name = path.name
        if not isinstance(name, (str, bytes, os.PathLike)):
            raise ParameterError("a soundfile.SoundFile of a file object: pass the file object itself "
                                 "(or a path)")
        if str(path.format) == "RAW" and not _raw_by_name(name):  # its rate and encoding were the caller's
            raise ParameterError("a soundfile.SoundFile of header-less (RAW) audio: its rate and "
                                 "encoding are not in the file; pass handle.read(dtype='float32').T "
                                 "to the features instead")
        path = os.fsdecode(name) if isinstance(name, bytes) else name
    shown = _display_path(path)
    opened = None
    source = path
    if isinstance(path, (str, os.PathLike)):
        text = os.fspath(path)
        if isinstance(text, str) and "://" in text and not text.startswith("file://"):
            try:
                import fsspec
            except ImportError:
                raise AudioDecodeError(shown, "a URL needs fsspec installed to be read") from None
            try:
                fs, inner = fsspec.core.url_to_fs(text)
                opened = source = fs.open(inner, "rb", block_size=block_size)
                _check_url_file(opened, fs, inner, shown)
            except AudioDecodeError:
                if opened is not None:
                    opened.close()
                raise
            except ImportError as exc:  # the protocol's package: "Install s3fs to access S3"
                raise AudioDecodeError(shown, f"cannot be opened: {exc}") from None
            except ValueError as exc:  # "Protocol not known: ..."
                raise AudioDecodeError(shown, f"cannot be opened: {exc}") from None
            except FileNotFoundError:
                raise AudioFileNotFoundError(shown) from None
            except OSError as exc:
                raise AudioDecodeError(shown, f"cannot be opened ({exc})") from None
        else:
            if isinstance(text, str) and text.startswith("file://"):
                source = text[len("file://"):]
            _check_local_path(source, shown)
            if isinstance(source, str):
                try:
                    source.encode("utf-8")
                except UnicodeEncodeError:  # a name that is not UTF-8: libsndfile takes the bytes
                    source = os.fsencode(source)
    try:
        try:
            handle, quiet = open_quietly(source, shown)
        except sf.LibsndfileError as exc:
            raise AudioDecodeError(shown, _not_audio_reason(source, exc)) from None
        except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioDecodeError(shown, f"not a readable audio file ({exc})") from None
        except OSError as exc:
            raise AudioDecodeError(shown, f"cannot be opened ({exc.strerror or exc})") from None
        with handle, quiet_decoder_notes(quiet):
            if str(handle.format) == "RAW":  # header-less by its name (.gsm, .vox): any bytes decode
                reason = _headerless_not_audio(_head_of(source, 512))
                if reason is not None:
                    raise AudioDecodeError(shown, f"not a readable audio file: {reason}")
            yield handle, shown
    finally:
        if opened is not None:
            opened.close()


def _truncation_reason(handle) -> str | None:
    """Why a file's header promises more data than the file holds: from libsndfile's log (WAV,
    AIFF, AU, ...), the Ogg stream's last page, and for the containers whose cuts libsndfile
    reads without a word, their own header (:func:`_header_cut_reason`)."""
    if getattr(handle, "decoder", None) == "FFmpeg":  # FFmpeg's files: their own checks only
        return handle.cut_reason
    try:
        log = handle.extra_info
    except Exception:  # noqa: BLE001 - some formats keep no log; the header may still tell
        log = None
    known = getattr(handle, "cut_reason", None) or _ogg_cut_reason(handle, log)
    if known is not None:
        return known
    reason = _log_cut_reason(log) if log is not None else None
    return reason if reason is not None else _header_cut_reason(handle)


def _log_cut_reason(log: str) -> str | None:
    """A chunk cut short, as libsndfile's header log says: "data : 64000 (should be 31979)"."""
    said = [(label.strip(), int(declared), int(actual))
            for label, declared, actual in _SHOULD_BE.findall(log or "")]
    if any(label.lower() in _DATA_CHUNKS and declared in PLACEHOLDER_SIZES for label, declared, _ in said):
        # a streaming writer's "length unknown" (the outer size then says it plus the header's
        # bytes): the samples are what the file holds
        return None
    cut = [(label, declared, actual) for label, declared, actual in said
           if actual < declared and declared not in PLACEHOLDER_SIZES]
    if not cut:
        return None
    data_cut = [c for c in cut if c[0].lower() in _DATA_CHUNKS]
    whole = _DATA_WHOLE.search(log)
    length = _LENGTH.search(log)
    if not data_cut and whole and length and int(whole.group(1)) + 8 <= int(length.group(1)):
        # only the outer container's size is wrong (a tool that mis-sized RIFF/FORM, or a file
        # cut after its sample data) and the file is long enough to hold the whole sample data
        # chunk: every sample is there, so the audio is whole (W64 and RF64, whose data chunk
        # starts further in, are judged from their own header after this)
        return None
    # name the sample-data chunk ("data", "SSND", "Data Size") rather than the outer container
    label, declared, actual = (data_cut or cut)[0]
    return (f"truncated: the header announces {declared} bytes in its '{label}' chunk "
            f"but the file holds {actual}")


# ---------------------------------------------------------------- cut short, from the header
#
# libsndfile reads a W64, RF64, CAF, NIST, VOC, MAT4/MAT5, AVR, MPC2K, WVE or SDS file that
# was cut short as the part that is there, and says so in its log only for some cuts (or
# never). These read the length the file's own header announces and compare it with the
# file's length: a few small reads at the start of the file (and of its chunks), never the
# samples. IRCAM, PAF and PVF headers give no length at all: a cut is seen only when it ends
# the file part-way through a sample frame (or PAF 24-bit block); a cut on a frame boundary
# reads as a shorter, whole file, and no reader can tell it from one.


class _FileBytes:
    """Reads at given offsets of a local file (a path) or a seekable binary file object (left
    where it was): the file a libsndfile handle reads is its ``name``."""

    def __init__(self, name):
        self._own = None
        self._file = None
        self.size = 0
        if isinstance(name, (str, bytes, os.PathLike)):
            self._own = self._file = open(name, "rb")  # noqa: SIM115 - closed by close()
            self.size = os.fstat(self._file.fileno()).st_size
        elif callable(getattr(name, "seek", None)) and callable(getattr(name, "read", None)) \
                and getattr(name, "seekable", lambda: False)():
            self._file, self._position = name, name.tell()
            name.seek(0, os.SEEK_END)
            self.size = name.tell()
        else:
            raise OSError("not a file that can be read again")

    def at(self, offset: int, n: int) -> bytes:
        self._file.seek(offset)
        return bytes(self._file.read(n))

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
        elif self._file is not None:
            self._file.seek(self._position)


def _sample_bytes(handle) -> int | None:
    """Bytes per sample frame of a sample-wise coding (PCM, float, u-law, A-law), else None."""
    from .wav import _BYTES_PER_SAMPLE

    width = _BYTES_PER_SAMPLE.get(str(handle.subtype))
    return width * int(handle.channels) if width and int(handle.channels) > 0 else None


def _bytes_cut(what: str, declared: int, held: int) -> str | None:
    if declared <= held:
        return None
    return (f"truncated: the header announces {declared} bytes in its {what} "
            f"but the file holds {max(held, 0)}")


def _frames_cut(declared: int, frame_bytes: int, data_offset: int, size: int) -> str | None:
    """The reason for a header announcing ``declared`` frames of ``frame_bytes`` bytes from
    ``data_offset`` in a file of ``size`` bytes, when they are not all there."""
    held = max(size - data_offset, 0)
    if declared * frame_bytes <= held:
        return None
    return (f"truncated: the header announces {declared} frames but the file holds "
            f"{held // frame_bytes}")


def _inside_header(size: int, header_bytes: int) -> str | None:
    """The reason for a file that ends before its header does (libsndfile opens some such
    files, as holding no frames)."""
    if size >= header_bytes:
        return None
    return f"truncated: the file ends inside its header ({size} of its {header_bytes} bytes)"


def _partial_frame(frame_bytes: int | None, data_offset: int, size: int,
                   what: str = "sample frame") -> str | None:
    """The reason for samples that run to the end of the file and stop part-way through a
    frame (the one cut a header without a length lets be seen)."""
    if not frame_bytes or size <= data_offset:
        return None
    extra = (size - data_offset) % frame_bytes
    if extra == 0:
        return None
    return (f"truncated: the file ends part-way through a {what} ({extra} of its "
            f"{frame_bytes} bytes)")


_W64_DATA = b"data\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_MAX_CHUNKS = 4096  # chunks walked before giving up on a damaged header


def _w64_cut(src: _FileBytes, handle) -> str | None:
    """W64: 24-byte chunk headers (a 16-byte GUID, a 64-bit size that counts the header),
    each chunk aligned to 8 bytes; the ``data`` chunk's size against the bytes after it."""
    head = src.at(0, 40)
    if head[:4] != b"riff" or head[24:28] != b"wave":
        return None
    position = 40
    for _ in range(_MAX_CHUNKS):
        header = src.at(position, 24)
        if len(header) < 24:
            return None
        size = int.from_bytes(header[16:], "little")
        if header[:16] == _W64_DATA:
            if size >= 1 << 62:  # a placeholder, not a length
                return None
            return _bytes_cut("'data' chunk", size - 24, src.size - position - 24)
        if size < 24:
            return None
        position += (size + 7) & ~7
    return None


def _rf64_cut(src: _FileBytes, handle) -> str | None:
    """RF64/BW64: the ``data`` chunk's size, from the ``ds64`` chunk where the 32-bit field
    holds 0xFFFFFFFF, against the bytes after it."""
    from .wav import file_chunks

    head = src.at(0, 12)
    if head[:4] not in (b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    ds64_data = None
    for count, (cid, body, size) in enumerate(file_chunks(src._file)):
        if count >= _MAX_CHUNKS:
            return None
        if cid == b"ds64" and size >= 16:
            ds64_data = int.from_bytes(src.at(body + 8, 8), "little")
        elif cid == b"data":
            if size == 0xFFFFFFFF:
                if ds64_data is None:
                    return None
                size = ds64_data
            return _bytes_cut("'data' chunk", size, src.size - body)
    return None


def _caf_packet_bytes(table: bytes, packets: int, per_packet: int) -> int | None:
    """The total of the packet sizes in a CAF packet table (variable-length integers, 7 bits a
    byte, high bit set on all but the last; ``per_packet`` numbers a packet: its size, and its
    frames where they vary); None when the table is damaged."""
    b = np.frombuffer(table, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if ends.size < packets * per_packet:
        return None
    ends = ends[:packets * per_packet]
    b = b[:ends[-1] + 1]
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.size and lengths.max() > 8:
        return None
    group_end = np.repeat(ends, lengths)
    shift = (7 * (group_end - np.arange(b.size))).astype(np.int64)
    values = np.add.reduceat((b & 0x7F).astype(np.int64) << shift, starts)
    return int(values[::per_packet].sum())


_CAF_MAX_TABLE = 64 << 20  # a packet table beyond this is not read (days of ALAC)


def _caf_cut(src: _FileBytes, handle) -> str | None:
    """CAF: the ``data`` chunk's size (its 4-byte edit count included) against the bytes after
    it; a size of -1 ("to the end of the file") must end on a whole packet. For variable-size
    packets (ALAC), the ``pakt`` chunk's valid frames against what libsndfile reads, and its
    packets' total bytes against the audio bytes of the ``data`` chunk."""
    head = src.at(0, 8)
    if head[:4] != b"caff":
        return None
    position, desc, pakt, data = 8, None, None, None
    for _ in range(_MAX_CHUNKS):
        header = src.at(position, 12)
        if len(header) < 12:
            break
        cid, size = header[:4], int.from_bytes(header[4:], "big", signed=True)
        body = position + 12
        if cid == b"desc" and size >= 32:
            desc = struct.unpack(">dIIIIII", src.at(body, 32))
        elif cid == b"pakt" and size >= 24:
            pakt = (body, size)
        elif cid == b"data":
            data = (body, size)
            if size == -1:  # the last chunk, to the end of the file
                break
        if size < 0:
            return None
        position = body + size
    if data is None or desc is None:
        return None
    body, size = data
    held = src.size - body
    if size != -1:
        cut = _bytes_cut("'data' chunk", size, held)
        if cut is not None:
            return cut
        if pakt is not None:
            cut = _bytes_cut("'pakt' chunk", pakt[1], src.size - pakt[0])
            if cut is not None:
                return cut
    audio = (held if size == -1 else size) - 4
    bytes_per_packet, frames_per_packet = desc[3], desc[4]
    if bytes_per_packet > 0:
        if size == -1:
            what = "sample frame" if frames_per_packet == 1 else "packet"
            return _partial_frame(bytes_per_packet, body + 4, src.size, what)
        return None
    if pakt is None:
        return None
    packets, valid, priming, remainder = struct.unpack(">qqii", src.at(pakt[0], 24))
    frames = int(handle.frames) if handle is not None else valid
    if 0 < valid and frames < valid:
        return f"truncated: the header announces {valid} frames but the file holds {frames}"
    if packets <= 0 or pakt[1] - 24 > _CAF_MAX_TABLE:
        return None
    total = _caf_packet_bytes(src.at(pakt[0] + 24, pakt[1] - 24), packets,
                              1 + (frames_per_packet == 0))
    if total is None or total <= audio:
        return None
    return (f"truncated: the packet table announces {total} bytes of packets but the 'data' "
            f"chunk holds {max(audio, 0)}")


def _nist_cut(src: _FileBytes, handle) -> str | None:
    """NIST SPHERE: ``sample_count`` (frames) x the frame's bytes after the header's length
    (its second line) against the file's length."""
    head = src.at(0, 16)
    if not head.startswith(b"NIST_1A\n"):
        return None
    header_bytes = int(head[8:16].strip())
    fields = {}
    for line in src.at(0, min(header_bytes, 1 << 16)).split(b"\n")[2:]:
        if line.strip() == b"end_head":
            break
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2].strip()
    frame_bytes = _sample_bytes(handle)
    if b"sample_count" not in fields or frame_bytes is None:
        return None
    return _frames_cut(int(fields[b"sample_count"]), frame_bytes, header_bytes, src.size)


_VOC_BLOCKS = {1: "sound data", 2: "sound data", 9: "sound data"}


def _voc_cut(src: _FileBytes, handle) -> str | None:
    """VOC: each block's 24-bit size against the bytes after it (the terminator block, when a
    cut took only that, loses no sample)."""
    head = src.at(0, 26)
    if not head.startswith(b"Creative Voice File\x1a") or len(head) < 22:
        return None
    position = int.from_bytes(head[20:22], "little")
    for _ in range(1 << 16):
        header = src.at(position, 4)
        if not header or header[0] == 0:
            return None
        if len(header) < 4:
            return "truncated: the file ends inside the header of a VOC block"
        size = int.from_bytes(header[1:], "little")
        what = f"{_VOC_BLOCKS.get(header[0], f'type-{header[0]}')} block"
        cut = _bytes_cut(what, size, src.size - position - 4)
        if cut is not None:
            return cut
        position += 4 + size
    return None


def _mat5_cut(src: _FileBytes, handle) -> str | None:
    """MAT5: the size of each matrix's real part (its samples) against the bytes after it.
    (libsndfile overstates the size of its last matrix by 8 bytes: that one is not used.)"""
    head = src.at(0, 128)
    order = {b"IM": "little", b"MI": "big"}.get(head[126:128])
    if order is None:
        return None
    position = 128
    for _ in range(_MAX_CHUNKS):
        tag = src.at(position, 8)
        if len(tag) < 8:
            return None
        kind, size = int.from_bytes(tag[:4], order), int.from_bytes(tag[4:], order)
        if kind >> 16:  # a small element: its data in the tag
            position += 8
            continue
        if kind == 14:  # miMATRIX: flags, dimensions, name, real part
            sub, name = position + 8, "wavedata"
            for index in range(4):
                inner = src.at(sub, 8)
                if len(inner) < 8:
                    return "truncated: the file ends inside a matrix header"
                k, s = int.from_bytes(inner[:4], order), int.from_bytes(inner[4:], order)
                if k >> 16:
                    if index == 2:
                        name = inner[4:4 + (k >> 16)].decode("latin-1")
                    sub += 8
                    continue
                if index == 2:
                    name = src.at(sub + 8, min(s, 64)).decode("latin-1")
                if index == 3:
                    cut = _bytes_cut(f"'{name}' matrix", s, src.size - sub - 8)
                    if cut is not None:
                        return cut
                sub += 8 + s + (-s % 8)
        position += 8 + size + (-size % 8)
    return None


_MAT4_WIDTH = {0: 8, 1: 4, 2: 4, 3: 2, 4: 2, 5: 1}


def _mat4_cut(src: _FileBytes, handle) -> str | None:
    """MAT4: each matrix's rows x columns x element bytes against the bytes after its name."""
    position = 0
    for _ in range(16):
        header = src.at(position, 20)
        if not header:
            return None
        if len(header) < 20:
            return "truncated: the file ends inside the header of a matrix"
        order = "<" if struct.unpack("<i", header[:4])[0] < 1000 else ">"
        kind, rows, cols, imag, namelen = struct.unpack(order + "iiiii", header)
        width = _MAT4_WIDTH.get((kind // 10) % 10)
        if width is None or min(rows, cols, namelen) < 0:
            return None
        body = position + 20 + namelen
        if body > src.size:
            return "truncated: the file ends inside the header of a matrix"
        name = src.at(position + 20, min(namelen, 64)).split(b"\0")[0].decode("latin-1")
        size = rows * cols * width * (2 if imag else 1)
        cut = _bytes_cut(f"'{name}' matrix", size, src.size - body)
        if cut is not None:
            return cut
        position = body + size
        if position >= src.size:
            return None
    return None


def _fixed_header_cut(frames_at: slice, order: str, data_offset: int):
    """The check for a header of fixed layout that gives the frames at ``frames_at``."""
    def check(src: _FileBytes, handle) -> str | None:
        frame_bytes = _sample_bytes(handle)
        head = src.at(0, frames_at.stop)
        if frame_bytes is None:
            return None
        if len(head) < frames_at.stop:
            return _inside_header(src.size, data_offset)
        declared = int.from_bytes(head[frames_at], order)
        return _inside_header(src.size, data_offset) \
            or _frames_cut(declared, frame_bytes, data_offset, src.size)
    return check


def _sds_cut(src: _FileBytes, handle) -> str | None:
    """MIDI Sample Dump: the dump header's sample count (three 7-bit bytes) in data packets of
    127 bytes, each of 120 bytes of samples (bits rounded up to 7-bit bytes)."""
    head = src.at(0, 21)
    if len(head) < 21 or head[:2] != b"\xf0\x7e" or head[3] != 1:
        return None
    bits, declared = head[6], head[10] | head[11] << 7 | head[12] << 14
    per_packet = 120 // -(-bits // 7) if 0 < bits <= 28 else 0
    if not per_packet:
        return None
    held = max(src.size - 21, 0) // 127 * per_packet
    if 21 + -(-declared // per_packet) * 127 <= src.size:
        return None
    return f"truncated: the header announces {declared} frames but the file holds {min(held, declared)}"


def _no_length_cut(data_offset):
    """The check of a header that gives no length: only a partial last frame is seen."""
    def check(src: _FileBytes, handle) -> str | None:
        offset = data_offset(src) if callable(data_offset) else data_offset
        if offset is None:
            return None
        if src.size < offset:
            return _inside_header(src.size, offset)
        if str(handle.format) == "PAF" and str(handle.subtype) == "PCM_24":
            # 10 frames of each channel packed in 32-byte blocks
            return _partial_frame(32 * int(handle.channels), offset, src.size, "24-bit block")
        return _partial_frame(_sample_bytes(handle), offset, src.size)
    return check


def _pvf_data_offset(src: _FileBytes) -> int | None:
    head = src.at(0, 64)
    first = head.find(b"\n")
    second = head.find(b"\n", first + 1) if first >= 0 else -1
    return second + 1 if head.startswith(b"PVF1") and second > 0 else None


_HEADER_CUT_CHECKS = {
    "W64": _w64_cut,
    "RF64": _rf64_cut,
    "CAF": _caf_cut,
    "NIST": _nist_cut,
    "VOC": _voc_cut,
    "MAT5": _mat5_cut,
    "MAT4": _mat4_cut,
    "AVR": _fixed_header_cut(slice(26, 30), "big", 128),
    "MPC2K": _fixed_header_cut(slice(30, 34), "little", 42),
    "WVE": _fixed_header_cut(slice(18, 22), "big", 32),
    "SDS": _sds_cut,
    "IRCAM": _no_length_cut(1024),
    "PAF": _no_length_cut(2048),
    "PVF": _no_length_cut(_pvf_data_offset),
}


def _header_cut_reason(handle) -> str | None:
    """Why a file is cut short, from the length its own header announces (the formats of
    ``_HEADER_CUT_CHECKS``: libsndfile reads them as the part that is there, unreported);
    None for a whole file, another format, or a header that cannot be read again (a pipe).

    W64, RF64/BW64, CAF, NIST, VOC, MAT4/MAT5, AVR, MPC2K, WVE and SDS give their length, so
    any cut is seen; IRCAM, PAF and PVF do not, so only a cut that ends the file part-way
    through a sample frame is (a cut on a frame boundary is a shorter file to every reader).
    """
    check = _HEADER_CUT_CHECKS.get(str(handle.format))
    return None if check is None else _run_cut_check(check, getattr(handle, "name", None), handle)


def _run_cut_check(check, source, handle) -> str | None:
    """``check(bytes of source, handle)``; None when the file cannot be read again (a pipe) or
    its header is damaged past reading (libsndfile's word stands then)."""
    try:
        src = _FileBytes(source)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        return check(src, handle)
    except (OSError, ValueError, OverflowError, IndexError, struct.error):
        return None
    finally:
        with contextlib.suppress(OSError, ValueError):
            src.close()


def _unopened_cut_reason(source, head: bytes) -> str | None:
    """Why a file libsndfile would not open at all is cut short, for the containers whose
    length checks need no decoder facts (libsndfile calls a CAF cut by more than a few bytes,
    or a VOC with 8-bit sections, "malformed" rather than cut)."""
    for magic, check in ((b"caff", _caf_cut), (b"Creative Voice File\x1a", _voc_cut),
                         (b"riff", _w64_cut), (b"RF64", _rf64_cut), (b"BW64", _rf64_cut)):
        if head.startswith(magic):
            return _run_cut_check(check, source, None)
    return None


_OGG_LAST_PAGE_OPEN = "Last page lacks an end-of-stream bit"
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header, segment table, body: 65,307 bytes


def _last_whole_ogg_page_open(tail: bytes) -> bool | None:
    """Whether the last whole Ogg page in ``tail`` (a file's last bytes) lacks the end-of-stream
    flag; None when ``tail`` holds no whole page.

    A page is whole when its header, segment table and body lie in ``tail``: a cut leaves a
    partial page after the last whole one, and bytes after a finished stream (a tag) leave its
    last page, flagged, the last whole one.
    """
    at = tail.rfind(b"OggS")
    while at >= 0:
        head = tail[at:at + 27]
        if len(head) == 27 and head[4] == 0:
            table = tail[at + 27:at + 27 + head[26]]
            if len(table) == head[26] and at + 27 + head[26] + sum(table) <= len(tail):
                return not head[5] & 0x04
        at = tail.rfind(b"OggS", 0, at)
    return None


def _ogg_ends_open(source) -> bool | None:
    """Whether an Ogg file (a local path, or a seekable binary file object, left where it was)
    was cut short: its last whole page lacks the end-of-stream flag. Reads the last 16 KiB,
    then, if no whole page lies there, the last two pages' worth (128 KiB). None when unknown.
    """
    def verdict(handle):
        size = handle.seek(0, os.SEEK_END)
        for want in (16384, 2 * _OGG_MAX_PAGE):
            handle.seek(max(0, size - want))
            found = _last_whole_ogg_page_open(handle.read(want))
            if found is not None or want >= size:
                return found
        return None

    try:
        if isinstance(source, (str, bytes)):
            with open(source, "rb") as handle:
                return verdict(handle)
        if not getattr(source, "seekable", lambda: False)():
            return None
        position = source.tell()
        try:
            return verdict(source)
        finally:
            source.seek(position)
    except (OSError, ValueError, AttributeError):
        return None


def _ogg_tail_pages(tail: bytes) -> list[tuple[int, int, int, int]]:
    """The whole Ogg pages in ``tail`` (a file's last bytes) that follow one another to its
    end, as ``(header_type, granule, serial, end)``; those before a byte that is no page's (a
    page cut by the window's start) are left out. Each page's checksum is checked, so a stray
    "OggS" inside a page body is not taken for one."""
    pages = []
    at = tail.find(b"OggS")
    while at >= 0:
        end = _whole_ogg_page_end(tail, at)
        if end is None:
            at = tail.find(b"OggS", at + 1)
            pages = []
            continue
        header_type, granule, serial = tail[at + 5], *struct.unpack_from("<qI", tail, at + 6)
        pages.append((header_type, granule, serial, end))
        if end == len(tail):
            return pages
        if tail[end:end + 4] != b"OggS":  # not a page after it: start again at the next one
            pages = []
            at = tail.find(b"OggS", end)
        else:
            at = end
    return pages


def _whole_ogg_page_end(data: bytes, at: int) -> int | None:
    """Where the Ogg page at ``at`` of ``data`` ends, when it lies whole in ``data`` and its
    checksum holds; else None."""
    if at + 27 > len(data) or data[at + 4] != 0:
        return None
    body = at + 27 + data[at + 26]
    if body > len(data):
        return None
    end = body + sum(data[at + 27:body])
    if end > len(data):
        return None
    stored = struct.unpack_from("<I", data, at + 22)[0]
    if _ogg_page_crc(data[at:at + 22] + b"\0\0\0\0" + data[at + 26:end]) != stored:
        return None
    return end


def _ogg_stream_end(handle) -> tuple[int, int] | None:
    """``(granule at the end-of-stream page, granule of the last page)`` of an Ogg file (a
    seekable binary file) whose last stream's pages go on after its end-of-stream page; None for
    any other file (the usual one ends at its last page). Reads the file's last 16 KiB, and up
    to 1 MiB while every page there is past the end."""
    size = handle.seek(0, os.SEEK_END)
    for want in (16384, 2 * _OGG_MAX_PAGE, 1 << 20):
        handle.seek(max(0, size - want))
        pages = _ogg_tail_pages(handle.read(want))
        if not pages or pages[-1][3] != min(want, size) or not pages[-1][0] & 0x04:
            return None  # no pages to its end, or the last one is no end of stream
        serial = pages[-1][2]
        ours = [page for page in pages if page[2] == serial]
        first_end = next(i for i, page in enumerate(ours) if page[0] & 0x04)
        if first_end > 0 or want >= size:  # a page before the end is in view: it is the first
            if first_end == len(ours) - 1:
                return None
            return ours[first_end][1], ours[-1][1]
    return None


def _ogg_cut_reason(handle, log: str | None = None) -> str | None:
    """Why an Ogg stream is cut short: its last page lacks the end-of-stream flag (a download
    or copy that stopped). libsndfile then takes the length from that page's position and
    quietly decodes the part that is there (Opus), or reads nothing (Vorbis)."""
    if str(handle.format) != "OGG":
        return None
    name = getattr(handle, "name", None)
    if isinstance(name, (str, bytes)) and not os.path.isfile(name):
        name = None
    open_end = _ogg_ends_open(name) if name is not None else None
    if open_end is None:  # unreadable here: libsndfile's log sometimes says it
        if log is None:
            try:
                log = handle.extra_info or ""
            except Exception:  # noqa: BLE001
                return None
        open_end = _OGG_LAST_PAGE_OPEN in (log or "")
    if not open_end:
        return None
    rate, frames = int(handle.samplerate), int(handle.frames)
    held = f" (it holds only the first {frames / rate:.3f} s)" if rate > 0 and frames > 0 else ""
    return ("truncated: the Ogg stream's last page has no end-of-stream flag, so the file was "
            f"cut short{held}")


# Ogg's page checksum is the CRC-32 of polynomial 0x04c11db7 taken most significant bit first,
# from 0 and without a final xor; zlib's crc32 is the same CRC taken least significant bit first,
# from and xor'ed with 0xffffffff. So: reverse each byte's bits, take zlib's CRC, cancel its start
# and end values (the CRC of as many zero bytes), reverse the 32 bits: C speed for whole pages.
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_ZERO_CRC: dict[int, int] = {}


def _ogg_page_crc(page: bytes) -> int:
    import zlib

    n = len(page)
    zero = _ZERO_CRC.get(n)
    if zero is None:
        zero = _ZERO_CRC[n] = zlib.crc32(bytes(n))
    return int(f"{zlib.crc32(page.translate(_BIT_REVERSED)) ^ zero:032b}"[::-1], 2)


def _ogg_damage(data: bytes) -> str | None:
    """Why the Ogg pages of a whole file ``data`` are damaged, or None: a page whose checksum
    fails, bytes that are no page where a stream goes on, or a page missing from a stream's
    sequence. Bytes after every stream has ended (a tag, padding) are not looked at."""
    at, open_streams, next_seq = 0, set(), {}
    size = len(data)
    while at < size:
        if data[at:at + 4] != b"OggS" or at + 27 > size:
            if not open_streams and at > 0:
                return None  # after the last stream's end: not audio, not read by decoders
            return f"bytes at {at:,} are not an Ogg page where the stream goes on"
        header_type, serial, seq = data[at + 5], *struct.unpack_from("<II", data, at + 14)
        segments = data[at + 26]
        body = at + 27 + segments
        if body > size:
            return None  # cut short: the open-end check says so
        end = body + sum(data[at + 27:body])
        if end > size:
            return None
        stored = struct.unpack_from("<I", data, at + 22)[0]  # taken over the page with it zeroed
        if _ogg_page_crc(data[at:at + 22] + b"\0\0\0\0" + data[at + 26:end]) != stored:
            return f"the Ogg page at byte {at:,} fails its checksum"
        if header_type & 0x02:  # beginning of a stream
            open_streams.add(serial)
        elif serial in next_seq and seq != next_seq[serial]:
            return f"{seq - next_seq[serial]} Ogg page(s) are missing before byte {at:,}"
        next_seq[serial] = seq + 1
        if header_type & 0x04:  # end of a stream
            open_streams.discard(serial)
        at = end
    return None


@per_file_state()
def _ogg_file_damage(path) -> str | None:
    """:func:`_ogg_damage` of the local file ``path`` (None where it cannot be read)."""
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError:
        return None
    return _ogg_damage(data)


def _ogg_damage_reason(handle) -> str | None:
    """Why a local Ogg file (libsndfile's) is damaged part-way, or None (see :func:`_ogg_damage`).

    libogg skips a page that fails its checksum, and libsndfile decodes around the gap without a
    word: depending on where the damage lies and how the file is read, a file comes out shorter
    than its last page says, or at full length with the lost audio missing inside it. Reads the
    whole file: a local file only (a URL or file object would be read a second time: not
    checked)."""
    if str(handle.format) != "OGG" or getattr(handle, "decoder", None) == "FFmpeg":
        return None
    name = getattr(handle, "name", None)
    if not isinstance(name, (str, bytes)) or not os.path.isfile(name):
        return None
    found = _ogg_file_damage(name)
    if found is None:
        return None
    return (f"damaged: {found} (a corrupted copy or download); decoders skip such pages and "
            "lose the audio in them")


_DATA_ZERO = re.compile(r"^\s*data\s*:\s*0\s*$", re.M)
_OGG_NO_END = "without an End-Of-Stream flag"


def _no_frames_reason(handle) -> str:
    """Why a file that opened holds no frames: cut short, a size field never filled in, or
    really empty."""
    truncated = _truncation_reason(handle)
    if truncated is not None:
        return truncated
    try:
        log = handle.extra_info or ""
    except Exception:  # noqa: BLE001
        log = ""
    length = _LENGTH.search(log)
    if _DATA_ZERO.search(log) and length and int(length.group(1)) > 1024:
        return (f"no audio frames: the header's 'data' chunk size is 0, yet the file is "
                f"{int(length.group(1))} bytes long (a recording whose header was never finished; "
                f"rewrite the header, e.g. sox --ignore-length IN.wav OUT.wav)")
    if _OGG_NO_END in log:  # Vorbis: libsndfile takes the length from the last page
        return ("truncated: the Ogg stream ends without its last page (a download or copy cut "
                "short), so libsndfile finds no length and reads no samples")
    return "no audio frames (the file holds a header but no samples)"


def _length_slack(handle) -> int:
    """Frames a complete file may fall short of its header's count: two MPEG frames for an MP3
    whose length is an estimate (no tag, and not counted by featurelib.mpeg: a URL), else 0."""
    if str(handle.format) == "MP3" and not getattr(handle, "length_exact", False):
        return 2 * 1152
    return 0


def no_frames_reason(path) -> str:
    """The reason :func:`load` gives for a file whose header announces no frames."""
    with _open_soundfile(path, block_size=HEADER_BLOCK_BYTES) as (handle, _):
        return _no_frames_reason(handle)


def _info_from_handle(handle, shown: str) -> AudioInfo:
    sample_rate = int(handle.samplerate)
    frames = int(handle.frames)
    return AudioInfo(
        path=shown,
        format=str(handle.format),
        subtype=str(handle.subtype),
        sample_rate=sample_rate,
        channels=int(handle.channels),
        frames=frames,
        duration=frames / sample_rate if sample_rate > 0 else 0.0,
        bit_depth=getattr(handle, "bit_depth", None) if hasattr(handle, "bit_depth")
        else _BIT_DEPTH.get(str(handle.subtype)),
    )


# ---------------------------------------------------------------- public functions


def info(path) -> AudioInfo:
    """Read the header of an audio file without decoding its samples.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        A local file, a URL that fsspec can open, or an open binary file (its position moves).

    Returns
    -------
    AudioInfo
        Format, subtype, sample rate, channels, frames, duration and bit depth.

    Raises
    ------
    AudioDecodeError
        The file is missing (:class:`~featurelib.exceptions.AudioFileNotFoundError`, also a
        ``FileNotFoundError``), a directory, empty, or not audio that libsndfile reads.

    Notes
    -----
    For a file cut short, libsndfile (and so ``info``) reports the frames the file actually
    holds; :func:`load` refuses such a file.

    The frames of a local MP3 without a length tag are counted from its frame headers
    (:mod:`featurelib.mpeg`): what :func:`load` decodes, not libsndfile's estimate.

    A URL is read in requests of 64 KiB: the header and, for formats whose length is at the
    end (Ogg) or whose chunks follow the samples (WAV), the last bytes, instead of the first
    block of the file system's default size (5 MB for HTTP and GCS, more for S3), which for
    clips of a few megabytes is the whole file.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> import featurelib
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> sf.write(path, np.zeros(8000, np.float32), 16000, subtype="PCM_24")
    >>> meta = featurelib.info(path)
    >>> meta.format, meta.subtype, meta.sample_rate, meta.channels, meta.duration, meta.bit_depth
    ('WAV', 'PCM_24', 16000, 1, 0.5, 24)
    """
    with _open_soundfile(path, block_size=HEADER_BLOCK_BYTES) as (handle, shown):
        return _info_from_handle(handle, shown)


def header_and_cut(path) -> tuple[AudioInfo, str | None]:
    """:func:`info`, and from the same opening of the file the reason :func:`load` gives for a
    file without frames or cut short (a chunk that announces more bytes than the file holds, an
    Ogg stream without its last page), else None. What the extract job's planner reads per file:
    libsndfile reports a cut file's frames as those it holds and decodes them without a word."""
    with _open_soundfile(path, block_size=HEADER_BLOCK_BYTES) as (handle, shown):
        meta = _info_from_handle(handle, shown)
        return meta, _no_frames_reason(handle) if meta.frames <= 0 else _truncation_reason(handle)


def _check_arguments(sr, offset, duration, dtype):
    if sr is not None:
        if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)):
            raise ParameterError(f"sr must be a positive number or None, not {sr!r}")
        if not (math.isfinite(sr) and sr > 0):
            raise ParameterError(f"sr must be positive, not {sr!r}")
    if isinstance(offset, bool) or not isinstance(offset, (int, float, np.integer, np.floating)) \
            or not math.isfinite(offset) or offset < 0:
        raise ParameterError(f"offset must be a number of seconds >= 0, not {offset!r}")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(
                duration, (int, float, np.integer, np.floating)) \
                or not math.isfinite(duration) or duration < 0:
            raise ParameterError(f"duration must be a number of seconds >= 0 or None, not {duration!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"dtype must be float32 or float64, not {dtype}")
    return dtype


def _read_blocks(handle, frames: int, blocksize: int = 65536, dtype: str = "float32"):
    """Yield ``(n, channels)`` blocks of what is really decoded, ``frames`` in all (``-1``: to
    the end), stopping early where the decoder does.

    ``SoundFile.blocks`` is not used: on a file cut short (an MP3 whose header announces more
    frames than it holds) it keeps yielding full-size blocks of its reused buffer, so the
    missing tail reads as stale samples and the truncation goes unseen. float32 blocks of an MP3
    join up to the samples of one whole read (:func:`featurelib._sequential.read_float32`: no
    seek between the reads).
    """
    left = frames if frames >= 0 else None
    while left is None or left > 0:
        want = blocksize if left is None else min(blocksize, left)
        if dtype == "float32":
            block = read_float32(handle, want)
        else:
            block = handle.read(want, dtype=dtype, always_2d=True)
        if block.shape[0] == 0:
            return
        yield block
        if left is not None:
            left -= block.shape[0]
        if block.shape[0] < want:
            return


# Frames an MP3 is decoded ahead of a seek target and dropped: mpg123 starts decoding a few frames
# before the target, but where a frame's bit reservoir reaches back further (low bit rates, LSF
# streams) the first frames after the seek come out wrong (silence, up to 0.5 full scale off, for
# up to 16 frames of 576 samples measured on libsndfile's own 22.05 kHz MP3s). Decoding from 32
# frames (of 1152, the longest) before the target gives the samples of a whole-file decode there.
_MP3_PREROLL = 32 * 1152


def _seek(handle, start: int) -> None:
    """Move to frame ``start``: in a codec libsndfile cannot seek in (GSM 6.10), by reading; in an
    MP3, by seeking :data:`_MP3_PREROLL` frames earlier and reading up to ``start``."""
    if str(getattr(handle, "format", "")) == "MP3" and handle.seekable() and start > 0:
        ahead = max(0, start - _MP3_PREROLL)
        handle.seek(ahead)
        read_float32(handle, start - ahead)
        return
    if handle.seekable() or getattr(handle, "exact_seek", False):
        handle.seek(start)
        return
    for _ in _read_blocks(handle, start):
        pass


def _frames_to_end(handle, position: int = 0) -> int:
    """The frame count that reads from ``position`` to the end: ``-1``, or, where libsndfile
    cannot seek (GSM 6.10) and soundfile needs a count, the header's frames left."""
    return -1 if handle.seekable() else int(handle.frames) - position


def _read(handle, shown: str, offset: float, duration, dtype) -> np.ndarray:
    """The requested window as ``(frames, channels)``, checked for truncation and NaN/inf."""
    import soundfile as sf

    native_sr = int(handle.samplerate)
    total = int(handle.frames)
    if total <= 0:
        raise AudioDecodeError(shown, _no_frames_reason(handle))
    truncated = _truncation_reason(handle) or _ogg_damage_reason(handle)
    if truncated is not None:
        raise AudioDecodeError(shown, truncated)
    start = int(offset * native_sr)  # librosa's rounding of offset and duration
    wanted = -1 if duration is None else int(duration * native_sr)
    if (start >= total and offset > 0) or wanted == 0:
        # a window at or past the end, or shorter than one sample, holds no samples: librosa
        # returns them (none), and so does load
        return np.zeros((0, int(handle.channels)), dtype=dtype)
    try:
        if start:
            _seek(handle, start)
        if wanted < 0:
            wanted = _frames_to_end(handle, start)
        block = handle.read(frames=wanted, dtype=dtype.name, always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioDecodeError(shown, part_way_reason(exc)) from None
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        raise AudioDecodeError(shown, f"decoding failed part-way ({exc})") from None
    expected = total - start if wanted < 0 else min(wanted, total - start)
    got = block.shape[0]
    slack = _length_slack(handle)
    if got < expected - slack:
        raise AudioDecodeError(shown, f"truncated: the header announces {total} frames but only "
                                      f"{start + got} decode (the file is cut short, or damaged part-way)")
    if got == 0:
        raise AudioDecodeError(shown, "no audio frames could be decoded")
    if not np.isfinite(block).all():
        raise AudioDecodeError(shown, "holds non-finite samples (NaN or infinity)")
    return block


def load(path, sr=None, mono=True, offset=0.0, duration=None, dtype=np.float32, res_type="soxr_hq"):
    """Decode an audio file to floating-point samples, optionally mixed to mono and resampled.

    The result equals :func:`librosa.load` with the same arguments (soundfile decoding, the
    channel mean for ``mono``, ``soxr`` at librosa's default ``res_type="soxr_hq"``, length
    ``ceil(n * sr / native_sr)``), except that ``sr=None`` (the native rate) is the default.
    Only the frames of the ``offset``/``duration`` window are read.

    Two exceptions, both MP3: a local Layer III file without a length tag whose frames outrun
    libsndfile's estimate of its length (a variable bit rate file) is decoded to its end, where
    librosa stops at the estimate and drops the rest (see :mod:`featurelib.mpeg`); and a window
    from an ``offset`` is that window of the whole decoded file: the decoder starts 32 frames
    ahead of it, where a bare seek (librosa's) decodes up to 16 frames after it wrong when the
    stream leans on its bit reservoir.

    Audio that libsndfile does not read (AAC in MP4/M4A, WMA, WebM, AC-3, WavPack, ...) is
    decoded with FFmpeg's decoders through PyAV (:mod:`featurelib._avfile`), as librosa decodes
    it through the ``ffmpeg`` program: the same samples, to within that program's 16-bit output.

    Parameters
    ----------
    path : str, os.PathLike, binary file object or soundfile.SoundFile
        A local file, a URL that fsspec can open, an open binary file, or a ``SoundFile`` of a
        file (read again from its path, from its start).
    sr : number > 0 or None
        Target sampling rate; ``None`` keeps the file's own rate.
    mono : bool
        Mix the channels down to one by their mean.
    offset : float >= 0
        Start reading this many seconds into the file (``int(offset * native_sr)`` frames).
    duration : float >= 0 or None
        Read at most this many seconds (``int(duration * native_sr)`` frames; 0: none, an empty
        signal as librosa gives); ``None``: to the end.
    dtype : float32 or float64
        Sample type of the result, in [-1, 1] for PCM files.
    res_type : str
        The resampler, as librosa names it: ``"soxr_hq"`` (librosa's default), ``"soxr_vhq"``,
        ``"soxr_mq"``, ``"soxr_lq"`` or ``"soxr_qq"`` (soxr's quality settings, computed here);
        any other (``"fft"``, ``"polyphase"``, ``"kaiser_best"``, ...) is ``librosa.resample``'s
        (those needing resampy or samplerate need them installed). Unused, as in librosa, where
        nothing is resampled.

    Returns
    -------
    y : np.ndarray
        ``(n,)`` for ``mono=True`` or a one-channel file, ``(channels, n)`` otherwise (librosa's
        layout).
    sr : number
        The sampling rate of ``y``.

    Raises
    ------
    AudioDecodeError
        The file is missing (:class:`~featurelib.exceptions.AudioFileNotFoundError`, also the
        ``FileNotFoundError`` that ``librosa.load`` raises), a directory, empty, not audio, cut
        short, fails to decode part-way, or holds NaN or infinite samples.
    ParameterError
        ``sr <= 0``, ``offset < 0``, ``duration < 0``, or a dtype other than float32/float64.
        (A window at or past the end of the file, or shorter than one sample, is no error: as
        librosa, ``load`` returns no samples, shape ``(0,)`` or ``(channels, 0)``.)

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> import featurelib
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo.wav")
    >>> t = np.arange(44100) / 44100
    >>> stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    >>> sf.write(path, stereo, 44100)
    >>> y, sr = featurelib.load(path)
    >>> y.shape, y.dtype, sr
    ((44100,), dtype('float32'), 44100)
    >>> y, sr = featurelib.load(path, sr=16000, mono=False, offset=0.25, duration=0.5)
    >>> y.shape, sr
    ((2, 8000), 16000)
    """
    dtype = _check_arguments(sr, offset, duration, dtype)
    if not isinstance(res_type, str):
        raise ParameterError(f"res_type={res_type!r} must be a resampler's name, e.g. 'soxr_hq' "
                             "(librosa's default)")
    with _open_soundfile(path) as (handle, shown):
        native_sr = int(handle.samplerate)
        block = _read(handle, shown, offset, duration, dtype)
    y = block.T  # (channels, n), as librosa reads it
    if y.shape[0] == 1:
        y = y[0]
    elif mono:
        y = channel_mean(block)  # librosa.to_mono
    if sr is None or sr == native_sr:
        return np.ascontiguousarray(y), (native_sr if sr is None else sr)
    if y.shape[-1] == 0:  # an empty window (at or past the end): nothing to resample
        return y, sr
    return _resample(y, native_sr, sr, res_type), sr


def channel_mean(block: np.ndarray) -> np.ndarray:
    """The mean of a ``(frames, channels)`` block over its channels: ``librosa.to_mono``.

    The very numbers of ``np.mean(block, axis=1)``, which adds the channels one after another
    and divides by their count, but computed a column at a time: NumPy's reduction over a short
    axis costs about 18 ns a frame, the column adds 2-3 ns for stereo (as much time as decoding
    an MP3 went into mixing it). Eight channels or more: NumPy's pairwise sum, so its mean.

    Examples
    --------
    >>> import numpy as np
    >>> from featurelib.io import channel_mean
    >>> channel_mean(np.array([[1.0, 0.0], [0.5, 0.25]], dtype=np.float32))
    array([0.5  , 0.375], dtype=float32)
    """
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    if channels >= 8:
        return np.mean(block, axis=1, dtype=block.dtype)
    out = block[:, 0] + block[:, 1]
    for c in range(2, channels):
        out += block[:, c]
    out /= block.dtype.type(channels)
    return out


# librosa's res_type names that soxr serves (librosa >= 0.10); the others need resampy, samplerate
# or scipy and are not what librosa.load uses by default
SOXR_RES_TYPES = ("soxr_vhq", "soxr_hq", "soxr_mq", "soxr_lq", "soxr_qq")


def _resample(y: np.ndarray, orig_sr: int, target_sr, res_type: str = "soxr_hq") -> np.ndarray:
    """librosa.resample(y, orig_sr=..., target_sr=..., res_type=...) along the last axis: soxr's
    qualities computed here, any other resampler librosa's own."""
    if res_type not in SOXR_RES_TYPES:
        import librosa

        try:
            y_hat = librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type=res_type)
        except (librosa.util.exceptions.ParameterError, ImportError) as exc:
            raise ParameterError(f"res_type={res_type!r}: {exc} (soxr's, always available: "
                                 f"{', '.join(SOXR_RES_TYPES)})") from None
        return np.ascontiguousarray(y_hat, dtype=y.dtype)
    import soxr

    ratio = float(target_sr) / orig_sr  # librosa's order of operations: ratio first, then ceil
    n_out = int(np.ceil(y.shape[-1] * ratio))
    if y.ndim == 1:
        y_hat = soxr.resample(y, orig_sr, target_sr, quality=res_type)
    else:  # soxr takes (n, channels): every channel in one call, the same numbers as one by one
        y_hat = soxr.resample(np.ascontiguousarray(y.T), orig_sr, target_sr, quality=res_type).T
    n_have = y_hat.shape[-1]
    if n_have > n_out:
        y_hat = y_hat[..., :n_out]
    elif n_have < n_out:
        pad = [(0, 0)] * (y_hat.ndim - 1) + [(0, n_out - n_have)]
        y_hat = np.pad(y_hat, pad)
    return np.ascontiguousarray(y_hat, dtype=y.dtype)
