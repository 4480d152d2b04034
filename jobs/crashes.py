"""Files that crash the process decoding them: found, left out, and the rest of their batch kept.

A decoder written in C (libsndfile with libFLAC, libvorbis, libopus, mpg123) can crash on a
damaged or crafted file (a segmentation fault, an abort) instead of returning an error. The
worker process dies with it; Dask runs the task again on a new worker, where it dies again, and
after three deaths gives the batch up as ``KilledWorker``: every file of the batch (about 600 s
of audio, a thousand short clips) was lost for one bad file, and other batches that were queued
on the dying workers with it.

:class:`CrashGuard` keeps two things in the run folder beside the batch's commit, where the
task's next attempt finds them whichever worker it runs on:

- a breadcrumb: the position in the batch of the file being read, written into a shared memory
  map before each file (a memory write, no system call: the page outlives the process);
- Python's ``faulthandler`` report, which only a fatal signal writes (SIGSEGV, SIGBUS, SIGFPE,
  SIGILL, SIGABRT): a worker killed from outside (SIGKILL, the nanny's restart, a lost node)
  writes none, and its file is then read again, not blamed.

The next attempt adds the file the crash happened in to the batch's list of crashed files, and
leaves those out as failures ("DecoderCrash"); each crash costs one of the worker deaths Dask
allows a task (``distributed.scheduler.allowed-failures``: 3 by default, 10 in the job's own
local clusters, :data:`jobs.cluster.ALLOWED_WORKER_DEATHS`), so up to nine crashing files per
batch are isolated before Dask gives it up. Local run folders only (on an object store a crash
still fails its batch as ``KilledWorker``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import mmap
import os
import sys

__all__ = ["CrashGuard", "DECODER_CRASH"]

DECODER_CRASH = "DecoderCrash"
_HEADER = 64  # bytes of the breadcrumb file before faulthandler's report
_IDLE = (1 << 63) - 1  # the breadcrumb between files


class CrashGuard:
    """Guards one attempt at a batch's files (see the module). ``crashed`` maps the path of each
    file that crashed an earlier attempt to its reason; :meth:`reading` marks the file about to
    be read; leaving the ``with`` block (without a crash) removes the breadcrumb."""

    def __init__(self, root: str | None, batch_id: int, paths: list[str]):
        self.crashed: dict[str, str] = {}
        self._map = None
        self._report = None
        self._previous = None
        if root is None:
            return
        self._crumb = os.path.join(root, f"reading-{batch_id:06d}")
        self._list = os.path.join(root, f"crashed-{batch_id:06d}")
        os.makedirs(root, exist_ok=True)
        self._learn(paths)

    def _learn(self, paths: list[str]) -> None:
        """Read what an earlier attempt left: its breadcrumb and, if it crashed, the report."""
        try:
            with open(self._crumb, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            data = b""
        if len(data) > _HEADER and b"Fatal Python error" in data[_HEADER:]:
            index = int.from_bytes(data[:8], "little")
            if 0 <= index < len(paths):
                report = data[_HEADER:].decode("utf-8", "replace")
                what = next((line.split(":", 1)[1].strip() for line in report.splitlines()
                             if line.startswith("Fatal Python error:")), "a fatal signal")
                with open(self._list, "a", encoding="utf-8") as handle:
                    handle.write(f"{index}\t{what}\n")
        try:
            with open(self._list, encoding="utf-8") as handle:
                for line in handle:
                    index, _, what = line.rstrip("\n").partition("\t")
                    if index.isdigit() and int(index) < len(paths):
                        self.crashed[paths[int(index)]] = (
                            f"the worker process crashed ({what}) while decoding this file, in "
                            "the decoder's C code: left out (the rest of its batch was extracted)")
        except FileNotFoundError:
            pass

    def __enter__(self):
        if not hasattr(self, "_crumb"):
            return self
        with open(self._crumb, "wb") as handle:  # a fresh breadcrumb for this attempt
            handle.write(_IDLE.to_bytes(8, "little") + bytes(_HEADER - 8))
        self._report = open(self._crumb, "r+b")  # noqa: SIM115 - lives until __exit__
        self._map = mmap.mmap(self._report.fileno(), _HEADER)
        self._report.seek(_HEADER)
        if faulthandler.is_enabled():
            self._previous = sys.stderr
        faulthandler.enable(file=self._report, all_threads=False)
        return self

    def reading(self, index: int | None) -> None:
        """The file at ``index`` in the batch is read next, until the next call (None: no
        file; a crash then blames none)."""
        if self._map is not None:
            self._map[0:8] = (_IDLE if index is None else index).to_bytes(8, "little")

    def __exit__(self, *exc) -> None:
        if self._map is None:
            return
        faulthandler.disable()
        if self._previous is not None:
            with contextlib.suppress(Exception):
                faulthandler.enable(file=self._previous)
        self._map.close()
        self._report.close()
        self._map = self._report = None
        with contextlib.suppress(OSError):
            os.remove(self._crumb)

    def done(self) -> None:
        """The batch is committed: its list of crashed files has served."""
        if hasattr(self, "_list"):
            with contextlib.suppress(OSError):
                os.remove(self._list)
