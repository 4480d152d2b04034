"""A FLAC file behind an ID3v2 tag, given to libsndfile as the FLAC stream it holds.

Taggers that treat every audio file as an MP3 put an ID3v2 tag (cover art: megabytes) in front
of a FLAC stream. libsndfile steps over it to open the file and decodes it whole, but its seeks
land short by the tag's length: a window from an offset failed ("Internal psf_fseek() failed")
within the tag's length of the end, and the extract job, which reads a long file in parts,
failed the whole file. Given a view of the file that starts at its ``fLaC`` marker, libsndfile
opens a plain FLAC stream and seeks in it as in any other.
"""

from __future__ import annotations

import io
import os

__all__ = ["OffsetFile", "flac_after_id3"]


def _id3_length(header: bytes) -> int | None:
    """Bytes of the ID3v2 tag whose 10-byte header is ``header`` (footer included), or None."""
    if len(header) < 10 or not header.startswith(b"ID3") or any(b & 0x80 for b in header[6:10]):
        return None
    size = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
    return 10 + size + (10 if header[5] & 0x10 else 0)


def flac_after_id3(path) -> int | None:
    """Where the FLAC stream (its ``fLaC`` marker) starts in a local file that begins with one
    or more ID3v2 tags; None for any other file."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return None
    try:
        with open(path, "rb") as handle:
            position = 0
            for _ in range(4):  # a tag or a few, written by taggers one after another
                handle.seek(position)
                length = _id3_length(handle.read(10))
                if length is None:
                    break
                position += length
            if position == 0:
                return None
            handle.seek(position)
            return position if handle.read(4) == b"fLaC" else None
    except OSError:
        return None


class OffsetFile(io.RawIOBase):
    """The bytes of the file ``path`` from ``start`` on, as a seekable binary file object."""

    def __init__(self, path, start: int):
        super().__init__()
        self.name = os.fsdecode(path)
        self._file = open(path, "rb")  # noqa: SIM115 - closed with this object
        self._start = start
        self._file.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            offset += self._start
        position = self._file.seek(offset, whence)
        if position < self._start:  # before the stream: at its start, as a file's start
            position = self._file.seek(self._start)
        return position - self._start

    def tell(self) -> int:
        return self._file.tell() - self._start

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()
