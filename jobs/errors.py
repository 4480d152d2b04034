"""Errors that the command line turns into exit statuses."""

from __future__ import annotations

import errno
import re

__all__ = ["UsageError", "OutputError", "ClusterLostError", "WorkerSetupError", "quiet_lost_client", "storage_error", "EXIT_OK", "EXIT_SOME_FAILED",
           "EXIT_USAGE", "EXIT_OUTPUT", "EXIT_CLUSTER_LOST"]

EXIT_OK = 0  # every input done
EXIT_SOME_FAILED = 1  # finished, but some inputs failed (see failures.parquet)
EXIT_USAGE = 2  # bad usage or configuration
EXIT_OUTPUT = 3  # the output could not be written (disk full, quota, read-only): nothing is lost
EXIT_CLUSTER_LOST = 4  # the cluster's scheduler went away mid-run: committed batches kept


class UsageError(Exception):
    """Bad usage, configuration or state: the CLI prints the message on one line and exits 2."""


class OutputError(Exception):
    """The run's output cannot be written (its disk is full, a quota is reached, it turned
    read-only): no file's fault, so the job stops rather than fail every file; the CLI prints
    the message on one line and exits 3."""


class WorkerSetupError(Exception):
    """A worker cannot run the job's tasks at all, whatever the file: it does not see the
    output folder, or cannot use the GPU the job asks for. The job stops (exit 2) instead of
    writing every input down as failed."""


def quiet_lost_client() -> None:
    """Silence ``distributed.client`` before a job stops on a lost scheduler: closing a client
    while it tries to reconnect logs a raw traceback (or "Failed to reconnect") under the job's
    own message, which says it better."""
    import logging

    logging.getLogger("distributed.client").setLevel(logging.CRITICAL)


class ClusterLostError(Exception):
    """The connection to the cluster's scheduler was lost mid-run: no file's fault, so the
    batches still running are neither failures nor lost (the committed ones are kept, a rerun
    does the rest); the CLI prints the message on one line and exits 4."""


# what a full or read-only output looks like, as an OSError or as the text of one that crossed
# a process boundary (a worker's exception reaches the job as its type and message only)
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the output's device",
                   errno.EDQUOT: "the output's disk quota is exceeded",
                   errno.EROFS: "the output's file system is read-only"}
_STORAGE_TEXT = re.compile(r"errno (28|122|30)\b|No space left on device|Disk quota exceeded|"
                           r"Read-only file system", re.IGNORECASE)
_TEXT_ERRNO = {"28": errno.ENOSPC, "122": errno.EDQUOT, "30": errno.EROFS,
               "no space left on device": errno.ENOSPC, "disk quota exceeded": errno.EDQUOT,
               "read-only file system": errno.EROFS}


# the type of a file's failure, from the start of featurelib's reason: one name per fault,
# whether the header read (jobs.plan) or the decoding (jobs.compute) met it
_REASON_KINDS = (("truncated", "TruncatedFile"), ("damaged", "DamagedFile"),
                 ("not a readable audio file", "NotAudio"), ("no audio frames", "EmptyAudio"),
                 ("permission denied", "PermissionDenied"))

# failures that say nothing about the file's audio, only that the job could not get at it: a rerun
# reads such an input again once it can (permissions fixed, a file moved back), although its size
# and modification time did not change (jobs.extract.changed_inputs)
RETRIED_WHEN_READABLE = frozenset({"PermissionDenied", "FileGone"})
# failure types of a URL input whose server was away (a connection refused reads as "not
# found" through fsspec's HTTP): a rerun reads it again where it answers now
RETRIED_WHEN_REACHABLE = frozenset({"FileNotFoundError", "ReadFailed"})


def reason_kind(reason: str, default: str) -> str:
    """The failure type of a featurelib reason (``default`` when its start names none)."""
    return next((kind for start, kind in _REASON_KINDS if reason.startswith(start)), default)


def storage_error(exc: BaseException | str | None) -> str | None:
    """Why ``exc`` (an exception, its chain, or an error's text) says that the output cannot be
    written, in words; None when it says something else."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            return _STORAGE_ERRNOS[exc.errno]
        found = _STORAGE_TEXT.search(str(exc))
        if found:
            key = (found.group(1) or found.group(0)).lower()
            return _STORAGE_ERRNOS[_TEXT_ERRNO[key]]
        if isinstance(exc, str):
            return None
        exc = exc.__cause__ or exc.__context__
    return None
