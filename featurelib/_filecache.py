"""Facts about a local file that cost a read of the whole file, kept while the file is unchanged.

``featurelib.load`` of a window of an MP3 walks every frame header of the file (its exact
length), and of an Ogg file checks every page's checksum: right once per file, but a reader of
many short windows of one long file (``audiofeat plot`` samples 2,048 frames of a recording that
has too many to draw) paid it once per window, the square of the file's length. A fact is kept
per process for a path whose device, inode, size, modification and change times are those it
was found at; a file rewritten, cut or grown is read again.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict

__all__ = ["FileFacts", "per_file_state"]


def _state(path) -> tuple:
    st = os.stat(path)
    # ctime too: a rewrite of the same size that keeps the modification time (cp -p, utime, a
    # coarse clock) still changes it
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def per_file_state(maxsize: int = 32):
    """Decorator: cache ``fn(path, **options)`` per path and the file's state (LRU of ``maxsize``).

    A path that cannot be stat'ed (gone, a URL, a file object) is not cached: ``fn`` runs and
    says what it says. Exceptions are never cached.
    """

    def decorate(fn):
        cache: OrderedDict = OrderedDict()
        lock = threading.Lock()

        @functools.wraps(fn)
        def cached(path, **options):
            try:
                key = (os.fspath(path), _state(path), tuple(sorted(options.items())))
            except (OSError, TypeError, ValueError):
                return fn(path, **options)
            with lock:
                if key in cache:
                    cache.move_to_end(key)
                    return cache[key]
            value = fn(path, **options)
            with lock:
                cache[key] = value
                while len(cache) > maxsize:
                    cache.popitem(last=False)
            return value

        cached.cache_clear = cache.clear
        return cached

    return decorate


class FileFacts:
    """A fact per local file, kept while the file is unchanged (device, inode, size, modification
    and change times), for the ``maxsize`` files used last: a worker that reads millions of files
    keeps a bounded few, not one entry per file it ever read.

    ``key(source)`` is None for a source that is no local path (a file object, a URL) or cannot be
    stat'ed: nothing is kept for it.
    """

    def __init__(self, maxsize: int = 32):
        self.maxsize = maxsize
        self._facts: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(source):
        if not isinstance(source, (str, bytes, os.PathLike)):
            return None
        try:
            return os.fsdecode(os.path.abspath(source)), _state(source)
        except (OSError, ValueError):
            return None

    def get(self, key):
        if key is None:
            return None
        with self._lock:
            value = self._facts.get(key)
            if value is not None:
                self._facts.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if key is None or value is None:
            return
        with self._lock:
            self._facts[key] = value
            self._facts.move_to_end(key)
            while len(self._facts) > self.maxsize:
                self._facts.popitem(last=False)

    def __len__(self) -> int:
        return len(self._facts)

    def clear(self) -> None:
        with self._lock:
            self._facts.clear()
