"""A read-only file object spliced from ranges of a file and bytes held in memory.

What libsndfile reads instead of a file whose header would make it decode the wrong length:
an MP3 without a length tag gets a Xing frame put before its first frame
(:class:`featurelib.mpeg.TaggedStream`), a WAV over 4 GiB is read as headerless samples from its
data chunk (:func:`featurelib.wav.past_4gib`). Reads go straight to the file with ``os.pread``.
"""

from __future__ import annotations

import io
import os


class SplicedFile(io.RawIOBase):
    """Read-only, seekable view made of ``parts``: ``(length, source)`` in order, ``source``
    an offset into the file at ``path`` or the bytes themselves."""

    def __init__(self, path, parts: list[tuple[int, int | bytes]]):
        super().__init__()
        self.name = os.fsdecode(path)
        self._fd = os.open(path, os.O_RDONLY)
        self._parts, start = [], 0  # (start in this view, length, file offset or bytes)
        for length, source in parts:
            self._parts.append((start, length, source))
            start += length
        self._size = start
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            start, length, source = next(p for p in self._parts if p[0] <= self._pos < p[0] + p[1])
            inside = self._pos - start
            count = min(len(view) - done, length - inside)
            if isinstance(source, bytes):
                chunk = source[inside:inside + count]
            else:
                chunk = os.pread(self._fd, count, source + inside)
                if not chunk:
                    break
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
            self._pos += len(chunk)
        return done

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
