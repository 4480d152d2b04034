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
  SIGILL, SIGABRT), or the task's time limit (``compute.hang_seconds`` plus the batch's audio
  duration: a decoder stuck in a loop on a damaged file), which then ends the worker process:
  a worker killed from outside (SIGKILL, the nanny's restart, a lost node) writes none, and its
  file is then read again, not blamed.

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
import threading
import time

__all__ = ["CrashGuard", "ProbeGuard", "DECODER_CRASH", "restart_or_wait"]

DECODER_CRASH = "DecoderCrash"
_HEADER = 64  # bytes of the breadcrumb file before faulthandler's report
_IDLE = (1 << 63) - 1  # the breadcrumb between files


def _mapped(path: str, size: int, head: bytes = b""):
    """A new file of ``size`` bytes at ``path`` starting with ``head``: ``(open file, its
    shared memory map)``, the map's writes outliving the process."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    handle = open(path, "r+b")  # noqa: SIM115 - the caller closes it (_unmapped)
    return handle, mmap.mmap(handle.fileno(), size)


def _unmapped(path: str, handle, mapped) -> None:
    """Close what :func:`_mapped` opened and remove the file."""
    mapped.close()
    handle.close()
    with contextlib.suppress(OSError):
        os.remove(path)


class CrashGuard:
    """Guards one attempt at a batch's files (see the module). ``crashed`` maps the path of each
    file that crashed an earlier attempt to its reason; :meth:`reading` marks the file about to
    be read; leaving the ``with`` block (without a crash) removes the breadcrumb."""

    def __init__(self, root: str | None, batch_id: int | str, paths: list[str], *,
                 time_limit: float | None = None):
        self.time_limit = time_limit
        self.crashed: dict[str, str] = {}
        self._map = None
        self._report = None
        self._previous = None
        self._crumb = self._list = None
        if root is None:
            return
        name = f"{batch_id:06d}" if isinstance(batch_id, int) else batch_id  # a task of a batch
        self._crumb = os.path.join(root, f"reading-{name}")
        self._list = os.path.join(root, f"crashed-{name}")
        os.makedirs(root, exist_ok=True)
        self._learn(paths)

    def _learn(self, paths: list[str]) -> None:
        """Read what an earlier attempt left: its breadcrumb and, if it crashed, the report."""
        try:
            with open(self._crumb, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            data = b""
        report = data[_HEADER:].decode("utf-8", "replace") if len(data) > _HEADER else ""
        index = int.from_bytes(data[:8], "little") if len(data) >= 8 else _IDLE
        what = None
        if "Fatal Python error" in report:
            what = next((f"crashed ({line.split(':', 1)[1].strip()})" for line in report.splitlines()
                         if line.startswith("Fatal Python error:")), "crashed (a fatal signal)")
        elif report.startswith("Timeout ("):  # faulthandler.dump_traceback_later: the time limit
            limit = report[len("Timeout ("):].split(")", 1)[0]
            what = f"did not finish (its task was stopped after {limit})"
        if what is not None and 0 <= index < len(paths):
            with open(self._list, "a", encoding="utf-8") as handle:
                handle.write(f"{index}\t{what}\n")
        try:
            with open(self._list, encoding="utf-8") as handle:
                for line in handle:
                    index, _, what = line.rstrip("\n").partition("\t")
                    if index.isdigit() and int(index) < len(paths):
                        self.crashed[paths[int(index)]] = (
                            f"the decoder {what} on this file, in its C code, and took its worker "
                            "process with it: left out (the files around it are not)")
        except FileNotFoundError:
            pass

    def __enter__(self):
        if self._crumb is None:
            return self
        # a fresh breadcrumb for this attempt; faulthandler writes its report after it
        self._report, self._map = _mapped(self._crumb, _HEADER, _IDLE.to_bytes(8, "little"))
        self._report.seek(_HEADER)
        if faulthandler.is_enabled():
            self._previous = sys.stderr
        faulthandler.enable(file=self._report, all_threads=False)
        if self.time_limit is not None:  # a decoder stuck in a loop: report, then end the process
            faulthandler.dump_traceback_later(self.time_limit, file=self._report, exit=True)
        return self

    def reading(self, index: int | None) -> None:
        """The file at ``index`` in the batch is read next, until the next call (None: no
        file; a crash then blames none)."""
        if self._map is not None:
            self._map[0:8] = (_IDLE if index is None else index).to_bytes(8, "little")

    def __exit__(self, *exc) -> None:
        if self._map is None:
            return
        if self.time_limit is not None:
            faulthandler.cancel_dump_traceback_later()
        faulthandler.disable()
        if self._previous is not None:
            with contextlib.suppress(Exception):
                faulthandler.enable(file=self._previous)
        _unmapped(self._crumb, self._report, self._map)
        self._map = self._report = None

    def failure(self, path: str) -> dict:
        """The failure row of a file that crashed an earlier attempt (one of :attr:`crashed`)."""
        return {"path": path, "stage": "decode", "error_type": DECODER_CRASH,
                "message": self.crashed[path]}

    def done(self) -> None:
        """The batch is committed: its list of crashed files has served."""
        if self._list is not None:
            with contextlib.suppress(OSError):
                os.remove(self._list)


class ProbeGuard:
    """The plan's header reads in the job's own process, guarded the same way: while libsndfile
    opens a file, the probing thread's slot in a shared memory map (``OUT/.probing``) holds its
    path. A job that dies while probing (a crash in libsndfile's header parsing, or a kill)
    leaves the file; the next run's :meth:`suspects` reads the paths that were being opened and
    removes it, and those few are probed each in a child process first
    (:func:`jobs.plan.probe_all`): one that crashes its child is left out as a failure, the
    others are probed as usual. No report is needed: a child's death is the proof.

    A decoder stuck in a loop on a header holds its thread for ever, where no exception can
    reach it. With ``hang_seconds``, a watchdog thread calls ``on_stuck(path, seconds)`` once
    when one file's header has been read that long; the slot still names the file, so a run
    started again (:func:`restart_or_wait`) probes it in a child process first, with that time
    limit."""

    SLOTS = 16  # probing threads (jobs.plan.probe_all uses at most 8)
    SLOT_BYTES = 4096

    def __init__(self, out_dir: str | None, *, hang_seconds: float | None = None, on_stuck=None):
        self._path = None if out_dir is None else os.path.join(out_dir, ".probing")
        self._map = None
        self._handle = None
        self._slots = threading.local()
        self._next = 0
        self._lock = threading.Lock()
        self.hang_seconds, self._on_stuck = hang_seconds, on_stuck
        self._since: dict[int, tuple[str, float]] = {}  # slot -> (path, when its read began)
        self._stop = threading.Event()
        self._watchdog = None

    def suspects(self) -> list[str]:
        """The paths a run that died while probing was opening (and the file is removed)."""
        if self._path is None:
            return []
        try:
            with open(self._path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return []
        with contextlib.suppress(OSError):
            os.remove(self._path)
        found = []
        for i in range(0, len(data), self.SLOT_BYTES):
            name = data[i:i + self.SLOT_BYTES].split(b"\0", 1)[0]
            if name:
                found.append(os.fsdecode(name))
        return found

    def __enter__(self):
        if self._path is None:
            return self
        self._handle, self._map = _mapped(self._path, self.SLOTS * self.SLOT_BYTES)
        if self.hang_seconds is not None and self._on_stuck is not None:
            self._stop.clear()
            self._watchdog = threading.Thread(target=self._watch, name="probe-watchdog", daemon=True)
            self._watchdog.start()
        return self

    def _watch(self) -> None:
        told = set()
        while not self._stop.wait(min(5.0, self.hang_seconds / 4)):
            now = time.monotonic()
            for path, since in list(self._since.values()):
                if now - since >= self.hang_seconds and path not in told:
                    told.add(path)
                    self._on_stuck(path, now - since)

    def reading(self, path: str | None) -> None:
        """This thread opens ``path`` next (None: nothing)."""
        if self._map is None:
            return
        slot = getattr(self._slots, "index", None)
        if slot is None:
            with self._lock:
                slot = self._slots.index = self._next % self.SLOTS
                self._next += 1
        start = slot * self.SLOT_BYTES
        name = b"" if path is None else os.fsencode(path)[:self.SLOT_BYTES - 1]
        self._map[start:start + len(name) + 1] = name + b"\0"
        if self._watchdog is not None:
            if path is None:
                self._since.pop(slot, None)
            else:
                self._since[slot] = (path, time.monotonic())

    def __exit__(self, *exc) -> None:
        if self._map is None:
            return
        if self._watchdog is not None:
            self._stop.set()
            self._watchdog.join()
            self._watchdog = None
        _unmapped(self._path, self._handle, self._map)
        self._map = self._handle = None


# The command line of this process when it is the ``audiofeat`` command (set by jobs.cli): a run
# whose plan is stuck on a header starts itself again (restart_or_wait)
RESTART_COMMAND: list[str] | None = None
MAX_RESTARTS = 3  # a run stuck on this many headers in a row stops instead
_RESTARTS_VARIABLE = "AUDIOFEAT_STUCK_HEADER_RESTARTS"


def restart_or_wait(path: str, seconds: float, say) -> None:
    """``on_stuck`` of the plan's :class:`ProbeGuard`: a header read stuck for ``seconds``.

    Run as the ``audiofeat`` command, the process stops its cluster's processes and starts its
    own command line again (``os.execv``): that run finds the file in ``OUT/.probing``, probes it
    in a child process with the same time limit and leaves it out ("DecoderCrash"), and goes on
    with the others; after :data:`MAX_RESTARTS` such starts in a row it stops (exit 1) instead.
    Called from Python (``jobs.extract.run_extract``), where ending the process could end the
    caller's session, it only says so: stopping it and calling again does the same.
    """
    from jobs.redact import redact

    where = f"reading the header of {redact(path)} has not finished in {seconds:.0f} s (a decoder stuck on a damaged file?)"
    restarts = int(os.environ.get(_RESTARTS_VARIABLE, "0") or 0)
    if RESTART_COMMAND is None:
        say(f"extract: {where}; stop this run and start it again: that file is then read in a "
            "child process first, and left out if it is stuck again")
        return
    stop = restarts >= MAX_RESTARTS
    # a closed output stream must not end this thread before the process is ended or restarted:
    # the job would then stay stuck for ever
    with contextlib.suppress(OSError, ValueError):
        if stop:
            say(f"extract: {where}; this run has already started again {restarts} times for "
                "stuck headers: stopping. Run the same command again to go on (that file is then "
                "read in a child process first)")
        else:
            say(f"extract: {where}: starting again, that file read in a child process first")
    _end_children()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if stop:
        os._exit(1)
    os.environ[_RESTARTS_VARIABLE] = str(restarts + 1)
    os.execv(sys.executable, RESTART_COMMAND)


def _end_children() -> None:
    """Kill this process's children (a local cluster starting beside the plan), at once."""
    import psutil

    with contextlib.suppress(Exception):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(Exception):
                child.kill()
