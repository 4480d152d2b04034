"""The ``audiofeat`` command line.

Each sub-command lives in its own module, which provides ``add_arguments(parser)`` and
``main(args) -> int`` (an exit status). Command modules keep their top-level imports light (argparse
only) and import Dask, Zarr, scikit-learn... inside ``main``, so
``audiofeat inspect`` does not pay for Dask or scikit-learn.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

from jobs.errors import (
    EXIT_CLUSTER_LOST,
    EXIT_OUTPUT,
    EXIT_USAGE,
    ClusterLostError,
    OutputError,
    UsageError,
    storage_error,
)

# command name -> (module, one-line help)
COMMANDS = {
    "inspect": ("jobs.inspection", "print the audio facts of files (format, rate, duration, levels)"),
    "plot": ("jobs.plotting", "draw waveform, spectrum, spectrogram, mel or MFCC to a PNG"),
    "extract": ("jobs.extract", "extract features from a corpus into a Zarr store (Dask)"),
    "train": ("jobs.train", "train a classifier on a feature store"),
    "score": ("jobs.score", "score a feature store with a trained model"),
    "query": ("jobs.query", "run SQL (DuckDB) over a run's tables"),
    "run": ("jobs.pipeline", "run every stage a config names, in order"),
}



EXIT_STATUSES = """exit status:
  0    every input done
  1    finished, some inputs failed (listed in OUT/failures.parquet)
  2    bad usage or configuration (one line names the problem)
  3    the output could not be written (disk full, quota, read-only); nothing is lost
  4    the cluster's scheduler was lost mid-run; a rerun goes on where it stopped
  130  stopped by Ctrl-C (143 by SIGTERM); a rerun goes on where it stopped"""

# what each command's exit statuses mean (extract and run: EXIT_STATUSES)
_USAGE = "  2    bad usage or configuration (one line names the problem)"
_STOPPED = "  130  stopped by Ctrl-C (143 by SIGTERM)"
COMMAND_EXIT_STATUSES = {
    "inspect": "\n".join(["exit status:", "  0    every file inspected",
                          "  1    some files could not be read (one line each on stderr, the others reported)",
                          "  2    bad usage, or a PATH that matches nothing", _STOPPED]),
    "plot": "\n".join(["exit status:", "  0    the picture was written",
                       "  1    the recording could not be read (one line says why)", _USAGE,
                       "  3    the picture could not be written (disk full, quota, read-only)", _STOPPED]),
    "train": "\n".join(["exit status:", "  0    the model was written, or is up to date", _USAGE,
                        "  3    the model could not be written (disk full, quota, read-only)",
                        "  130  stopped by Ctrl-C (143 by SIGTERM); no partial model is left"]),
    "score": "\n".join(["exit status:", "  0    the scores were written, or are up to date", _USAGE,
                        "  3    the scores could not be written (disk full, quota, read-only)",
                        "  4    the cluster's scheduler was lost mid-run; no scores were written",
                        _STOPPED]),
    "query": "\n".join(["exit status:", "  0    the result was written",
                        "  2    bad usage, an SQL error, or a folder that is not a run",
                        "  3    -o could not be written (disk full, quota, read-only)", _STOPPED]),
}

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiofeat",
        description="Turn audio collections into a queryable feature store and classifier scores.",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="audiofeat 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=COMMAND_EXIT_STATUSES.get(name, EXIT_STATUSES),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:  # a command whose module has not landed yet
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def _exit_now(status: int) -> None:
    """End the process without tearing the interpreter down module by module.

    After a Dask/Zarr/Arrow/librosa job that teardown alone takes about 0.3 s. Every output is
    written and closed by then; the exit handlers (logging, multiprocessing, the cluster's) run
    first, output streams are flushed, then the process ends with ``status``.
    """
    import atexit
    import os

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's cancel or time limit, a pod deleted), raised in the main
    thread so that the job stops as on Ctrl-C: its cluster closed, what is committed kept."""


class _QuietInterruptedSync(logging.Filter):
    """Drops the traceback distributed's ``sync`` leaves when Ctrl-C lands in a blocking client
    call before the call's coroutine has begun: its ``cancel`` callback then reads a variable
    not yet bound and the event loop logs ``NameError: cannot access free variable 'future'``
    (distributed 2026.8, ``distributed.utils.sync``). Nothing was running to cancel; the job
    stops as it should and says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, NameError) or "'future'" not in str(exc):
            return True
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code if tb is not None else None
        return not (code is not None and code.co_name == "cancel"
                    and code.co_filename.replace("\\", "/").endswith("distributed/utils.py"))


class _QuietStoppedGather(logging.Filter):
    """Once the job is stopping: drops the scheduler's "Couldn't gather keys" for the results
    the stopped job no longer waits for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Couldn't gather keys")


def _quiet_stopping_logs() -> None:
    """The log records a stopped job's own clean-up causes in this process, dropped."""
    for name, kind in (("tornado.application", _QuietInterruptedSync),
                       ("distributed.scheduler", _QuietStoppedGather)):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())


@contextlib.contextmanager
def _stop_signals(*, to_the_end: bool = False):
    """Inside the block Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` and SIGTERM
    :class:`Terminated` in the main thread, the first time: while the job closes its cluster
    after that, another is ignored (a second Ctrl-C used to break that clean-up with a traceback)
    and a line says that Ctrl-\\ quits at once. Handlers someone else set are left alone, and
    the previous ones come back after the block (``main`` called from Python code, tests), or
    with ``to_the_end`` (the ``audiofeat`` command) after a stop, further ones stay ignored until
    the process exits with its status."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    mine = [s for s, default in ours.items() if signal.getsignal(s) == default]
    stopping: list = []

    def stop(signum, frame):
        _quiet_stopping_logs()
        if stopping:
            if len(stopping) == 1:
                stopping.append(signum)
                try:
                    print("audiofeat: stopping: closing the cluster (Ctrl-\\ quits at once)",
                          file=sys.stderr, flush=True)
                except RuntimeError:  # the main thread was writing to stderr itself
                    pass
            return
        stopping.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous_hook = sys.unraisablehook
    resent: list = []  # the stops sent again (see swallowed)

    def swallowed(info):
        # the stop's exception, raised where Python ignores exceptions (a gc callback of
        # distributed's, a __del__): it printed "Exception ignored" and the job ran on, deaf to
        # more Ctrl-C. The signal is sent again from another thread a moment later, once the
        # main thread is out of that context (sent from here, or at once, the handler ran inside
        # it again)
        if stopping and isinstance(info.exc_value, KeyboardInterrupt) and s_mine(stopping[0]):
            import _thread

            signum = stopping[0]
            stopping.clear()
            again = threading.Timer(0.05, _thread.interrupt_main, args=(signum,))
            again.daemon = True
            resent.append(again)
            again.start()
            return
        previous_hook(info)

    def s_mine(signum) -> bool:
        return signum in mine and signal.getsignal(signum) is stop

    for s in mine:
        signal.signal(s, stop)
    sys.unraisablehook = swallowed
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for again in resent:  # a stop sent again and not yet arrived is moot: the block ended
            again.cancel()
        if resent and not stopping:  # (and counts as the stop, for what follows the block)
            stopping.append(resent[0].args[0])
        for s in mine:
            signal.signal(s, signal.SIG_IGN if stopping and to_the_end else ours[s])


# the commands that start a Dask cluster (and need open files for its connections)
_CLUSTER_COMMANDS = ("extract", "train", "score", "run")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"audiofeat {args.command}: not available in this build", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(args._module)
    if argv is None:  # the audiofeat command itself: a run stuck on a header may start again
        from jobs import crashes

        crashes.RESTART_COMMAND = list(sys.orig_argv)
    try:
        if args.command in _CLUSTER_COMMANDS:
            from jobs.cluster import ensure_open_files

            ensure_open_files()
        with _stop_signals(to_the_end=argv is None):
            status = int(module.main(args) or 0)
        if argv is None and getattr(module, "FAST_EXIT", False) \
                and sys.getprofile() is None and sys.gettrace() is None:  # no profiler/coverage
            _exit_now(status)
        return status
    except UsageError as exc:
        print(f"audiofeat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as exc:
        print(f"audiofeat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except ClusterLostError as exc:
        print(f"audiofeat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_CLUSTER_LOST
    except OSError as exc:  # a full or read-only output anywhere else: one line, not a traceback
        full = storage_error(exc)
        if full is None:
            raise
        print(f"audiofeat {args.command}: error: {full} ({exc}){_kept(args.command)}", file=sys.stderr)
        return EXIT_OUTPUT
    except KeyboardInterrupt as exc:
        how, status = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"audiofeat {args.command}: {how}{_kept(args.command)}", file=sys.stderr)
        return status


def _kept(command: str) -> str:
    """What a stopped ``command`` leaves, said after its last line (extract keeps its batches)."""
    return " (committed batches are kept: the same command goes on from them)" \
        if command == "extract" else ""


if __name__ == "__main__":
    raise SystemExit(main())
