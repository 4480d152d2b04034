"""What a local worker process says and does at the end of a job: distributed's own noise
dropped, and Ctrl-C left to the job.

Kept free of heavy imports (only distributed, which a worker has): every local worker imports
it when the job's cluster starts.

- distributed's ``Worker.close`` stops the heartbeat's timer, then closes its connections, so a
  heartbeat already in flight fails with "Stream is closed" and is logged as an ERROR with a
  traceback (dask/distributed#7192, #9032): about one local job in eight ended its clean run
  with one. Only that message, only while a worker of the process is closing, is dropped.
- A batch that cannot be written because the output's disk is full (or over quota, or
  read-only) fails with that error in every worker, each time logged as "Compute Failed" with a
  traceback, before and while the job stops with one line that says so (exit 3): those
  messages are dropped; any other failed task is still logged.
- Ctrl-C on a terminal sends SIGINT to the whole process group: each worker process printed a
  KeyboardInterrupt traceback from its event loop while the job itself stopped cleanly ("audiofeat
  extract: interrupted", the cluster closed, committed batches kept). The workers ignore it; the
  job that owns them closes them.
"""

from __future__ import annotations

import logging
import signal
import threading

from distributed.diagnostics.plugin import WorkerPlugin

CLOSING_HEARTBEAT = "Failed to communicate with scheduler during heartbeat"


def a_worker_is_closing() -> bool:
    """Whether a ``distributed.Worker`` of this process is closing or closed."""
    try:  # Worker._instances is distributed's own registry: if it goes, keep every message
        from distributed import Worker
        from distributed.core import Status

        closing = {Status.closing, Status.closed, Status.closing_gracefully, Status.failed}
        return any(w.status in closing for w in list(Worker._instances))
    except Exception:  # noqa: BLE001 - a logging filter must never raise
        return False


class QuietClosingHeartbeat(logging.Filter):
    """Drops a worker's heartbeat failure while the worker is closing (and nothing else)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(CLOSING_HEARTBEAT):
            return True
        return not a_worker_is_closing()


def _install(kind: type[logging.Filter]) -> None:
    """A ``kind`` filter on this process's ``distributed.worker`` logger, once."""
    log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, kind) for f in log.filters):
        log.addFilter(kind())


def quiet_closing_heartbeat() -> None:
    """Install :class:`QuietClosingHeartbeat` on this process's ``distributed.worker`` logger."""
    _install(QuietClosingHeartbeat)


class QuietStorageFailures(logging.Filter):
    """Drops "Compute Failed" for a task that failed because the output is full or read-only
    (``jobs.errors.storage_error``): the job reports it, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed"):
            return True
        try:
            from jobs.errors import storage_error

            return storage_error(record.getMessage()) is None
        except Exception:  # noqa: BLE001 - a logging filter must never raise
            return True


def quiet_storage_failures() -> None:
    """Install :class:`QuietStorageFailures` on this process's ``distributed.worker`` logger."""
    _install(QuietStorageFailures)


def leave_interrupts_to_the_job() -> None:
    """Ignore SIGINT in this (worker) process, from its main thread; elsewhere do nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class QuietShutdown(WorkerPlugin):
    """In every worker of a job's local cluster: :class:`QuietClosingHeartbeat`,
    :class:`QuietStorageFailures` and :func:`leave_interrupts_to_the_job`."""

    name = "audiofeat-quiet-shutdown"

    def setup(self, worker) -> None:
        quiet_closing_heartbeat()
        quiet_storage_failures()
        leave_interrupts_to_the_job()
