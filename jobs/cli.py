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
import sys

from jobs.errors import EXIT_USAGE, UsageError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiofeat",
        description="Turn audio collections into a queryable feature store and classifier scores.",
    )
    parser.add_argument("--version", action="version", version="audiofeat 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
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


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _stop_cleanly_on_sigterm():
    """Inside the block SIGTERM raises :class:`Terminated` in the main thread, where nothing
    else handles it; the default comes back after (``main`` called from other Python code)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"audiofeat {args.command}: not available in this build", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(args._module)
    try:
        with _stop_cleanly_on_sigterm():
            status = int(module.main(args) or 0)
        if argv is None and getattr(module, "FAST_EXIT", False) \
                and sys.getprofile() is None and sys.gettrace() is None:  # no profiler/coverage
            _exit_now(status)
        return status
    except UsageError as exc:
        print(f"audiofeat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        note = " (committed batches are kept: the same command goes on from them)" \
            if args.command == "extract" else ""
        how, status = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"audiofeat {args.command}: {how}{note}", file=sys.stderr)
        return status


if __name__ == "__main__":
    raise SystemExit(main())
