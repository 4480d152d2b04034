"""What a worker process logs: distributed's own noise at a clean shutdown, dropped.

Kept free of heavy imports (only distributed, which a worker has): every local worker imports
it when the job's cluster starts.

distributed's ``Worker.close`` stops the heartbeat's timer, then closes its connections, so a
heartbeat already in flight fails with "Stream is closed" and is logged as an ERROR with a
traceback (dask/distributed#7192, #9032): about one local job in eight ended its clean run with
one. Only that message, only while a worker of the process is closing, is dropped.
"""

from __future__ import annotations

import logging

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


def quiet_closing_heartbeat() -> None:
    """Install :class:`QuietClosingHeartbeat` on this process's ``distributed.worker`` logger."""
    log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, QuietClosingHeartbeat) for f in log.filters):
        log.addFilter(QuietClosingHeartbeat())


class QuietShutdown(WorkerPlugin):
    """Installs :class:`QuietClosingHeartbeat` in every worker of a cluster."""

    name = "audiofeat-quiet-shutdown"

    def setup(self, worker) -> None:
        quiet_closing_heartbeat()
