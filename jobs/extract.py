"""``audiofeat extract CONFIG.yaml``: a corpus of audio files -> a Zarr feature store.

The recipe, one small stage each::

    discover  inputs -> sorted audio paths                        (jobs.discover)
    plan      headers -> batches with chunk-aligned store regions  (jobs.plan), stored in OUT
    extract   per batch on a Dask worker: decode, resample, one STFT, every feature (jobs.compute)
    write     the batch's rows into its own region of every array, then commit its index rows
    index     committed batches -> files.parquet, failures.parquet, manifest.json   (jobs.store)

A rerun redoes only the batches without a commit; a finished run does nothing and says so.
Exit status: 0 every input done, 1 some inputs failed (see failures.parquet), 2 bad usage/config.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from jobs.errors import EXIT_OK, EXIT_SOME_FAILED, UsageError
from jobs.progress import plural

__all__ = [
    "add_arguments", "main", "run_extract", "stage_discover", "stage_plan", "extract_batch",
    "extract_part", "file_maxima", "clamp_part", "finish_parts", "decode_native_range",
    "stage_extract", "stage_index", "BatchError",
]

VERSION = "0.1.0"
FAST_EXIT = True  # the command line ends the process without interpreter teardown (jobs.cli)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="job config (YAML)")
    parser.add_argument("--input", action="extend", nargs="+", metavar="PATH",
                        help="input folder, glob, list file or URL (several after one --input, or "
                             "--input repeated; replaces the config's)")
    parser.add_argument("--out", metavar="DIR", help="run directory (replaces the config's)")
    parser.add_argument("--scheduler", metavar="ADDR",
                        help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing store made with a different feature config "
                             "(changed inputs need none: new files are added, gone ones dropped)")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificate for a TLS scheduler")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate for a TLS scheduler")
    parser.add_argument("--tls-key", metavar="FILE", help="client key for a TLS scheduler")


def main(args) -> int:
    from jobs.config import load_config

    cfg = load_config(args.config)
    apply_overrides(cfg, args)
    return run_extract(cfg, overwrite=args.overwrite, scheduler=args.scheduler,
                       security=security_from_args(args))


def apply_overrides(cfg, args) -> None:
    """Command-line values replace the config's (paths relative to the working directory)."""
    inputs, out = getattr(args, "input", None), getattr(args, "out", None)
    if inputs is not None and any(not p.strip() for p in inputs):
        raise UsageError("--input: an empty path (an unset variable?); name a file, folder, glob or list")
    if out is not None and not out.strip():
        raise UsageError("--out: an empty path (an unset variable?); name the run folder")
    if out is not None and "\x00" in out:
        raise UsageError("--out: holds a NUL character: no folder can be named so")
    if inputs:
        cfg.input = [os.path.abspath(p) if "://" not in p else p for p in inputs]
    if out:
        cfg.out = os.path.abspath(out) if "://" not in out else out
    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise UsageError("--workers: must be at least 1")
        cfg.compute.workers = args.workers


def security_from_args(args):
    """The client's TLS settings from --tls-ca/--tls-cert/--tls-key (None without them)."""
    from jobs.cluster import security_from

    return security_from(getattr(args, "tls_ca", None), getattr(args, "tls_cert", None),
                         getattr(args, "tls_key", None))


# run_extract's ``log`` while its job runs (one extract at a time in a process: one_job_at_a_time)
_LOG: dict = {"fn": None}


def _print_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _say(message: str) -> None:
    """A message of the running job: to its ``log``, else to stderr."""
    (_LOG["fn"] or _print_stderr)(message)


def _result(message: str) -> None:
    """The job's outcome (files stored, nothing to do): to its ``log``, else to stdout."""
    (_LOG["fn"] or print)(message)


# ================================================================ stages


def stage_discover(cfg):
    """Stage 1: the configured inputs -> sorted audio paths (+ discover failures)."""
    from jobs.discover import discover

    return discover(cfg.input)


def _plan_id(config_hash: str, discovery) -> str:
    import hashlib

    h = hashlib.sha256(config_hash.encode())
    for path in discovery.paths:
        h.update(b"\0" + path.encode("utf-8", "surrogateescape"))
    h.update(b"\1")
    for failure in discovery.failures:
        h.update(b"\0" + failure["path"].encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def config_differences(stored, now, shown: int = 4) -> str:
    """What differs between two feature configs, in words: ``"sr 8000 -> 16000,
    features.mfcc added"`` (the first ``shown``, then how many more); "" when unknown."""
    import json

    said: list[str] = []

    def compare(before, after, prefix):
        for key in [*before, *(k for k in after if k not in before)]:
            name = f"{prefix}{key}"
            if key not in after:
                said.append(f"{name} removed")
            elif key not in before:
                said.append(f"{name} added")
            elif isinstance(before[key], dict) and isinstance(after[key], dict):
                compare(before[key], after[key], f"{name}.")
            elif before[key] != after[key]:
                said.append(f"{name} {json.dumps(before[key])} -> {json.dumps(after[key])}")

    if isinstance(stored, dict):
        compare(json.loads(json.dumps(stored)), json.loads(json.dumps(now)), "")
    more = f" and {len(said) - shown} more" if len(said) > shown else ""
    return ", ".join(said[:shown]) + more


def stored_plan(cfg, discovery, *, config_hash: str, overwrite: bool = False):
    """The plan an earlier run stored in OUT for this config, or None (then make a new one).

    Refuses (exit 2) a store of another feature config unless ``overwrite``. When the inputs
    changed, the stored plan is extended (:func:`extend_plan`). Returns ``(plan, meta)``.
    """
    from jobs import store
    from jobs.plan import plan_from_tables

    out = _out(cfg)
    meta = store.read_json(out, ".plan.json")
    attrs = store.store_attrs(out)
    if overwrite:
        return None
    if attrs is not None and attrs.get("config_hash") != config_hash:
        from jobs.config import feature_config

        differences = config_differences(attrs.get("feature_config"), feature_config(cfg))
        said = f": {differences}" if differences else ""
        raise UsageError(f"{out} holds a store made with a different feature config{said} "
                         f"(hash {str(attrs.get('config_hash'))[:12]}, now {config_hash[:12]}); "
                         "pass --overwrite to replace it, or choose another --out")
    if meta is None or meta.get("config_hash") != config_hash or attrs is None:
        return None
    table = store.read_table(out, ".plan.parquet")
    plan = plan_from_tables(table, meta["batches"], meta["failures"], meta["total_frames"],
                            meta["chunk_frames"])
    _note_batching_kept(cfg, meta)
    changed, retried = changed_inputs(plan, discovery, meta, _last_failures(out))
    if meta.get("plan_id") != _plan_id(config_hash, discovery) or changed or retried:
        plan, meta = extend_plan(cfg, discovery, plan, meta, config_hash=config_hash, changed=changed,
                                 retried=retried)
    return plan, meta


_BATCHING = ("batch_seconds", "min_batches", "block_seconds")


def _note_batching_kept(cfg, meta) -> None:
    """Say so when the config's batching differs from the stored plan's: the planned batches
    keep theirs (files added now take the config's)."""
    differ = [f"{k} {meta.get(k)} (config: {getattr(cfg.compute, k)})" for k in _BATCHING
              if meta.get(k) is not None and meta.get(k) != getattr(cfg.compute, k)]
    if differ:
        _say("extract: note: the stored plan's batches keep their " + ", ".join(differ)
             + "; files added now take the config's; --overwrite plans every batch anew")


def _file_state(path: str):
    """``(size, mtime_ns)`` of a local file, None for a URL or a file that cannot be stat'ed."""
    if "://" in path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _superseded(meta) -> dict[int, set[str]]:
    """batch id -> paths whose rows in that batch a later batch replaced (the file changed)."""
    out: dict[int, set[str]] = {}
    for batch_id, path in meta.get("superseded", ()):
        out.setdefault(int(batch_id), set()).add(path)
    return out


def _live_files(plan, meta) -> list:
    """The plan's files still named and not replaced by a later batch (a file changed on disk)."""
    superseded, dropped = _superseded(meta), set(meta.get("dropped", ()))
    return [f for f in plan.files if f.path not in dropped and f.path not in superseded.get(f.batch_id, ())]


def dashboard_line(client, command: str) -> tuple[str | None, str]:
    """``(link, line to print)`` for the cluster's dashboard, asked of the page itself (1 s at
    most): a scheduler started with ``--no-dashboard`` still has ``client.dashboard_link`` (its
    HTTP server keeps the health routes) but answers 404 there: None and "none"; one without
    bokeh answers that it needs bokeh: the link and how to get it."""
    import urllib.error
    import urllib.request

    link = client.dashboard_link
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through http_proxy
    try:
        with direct.open(link, timeout=1.0) as page:
            needs_bokeh = b"needs bokeh" in page.read(400)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None, f"{command}: dashboard: none (the scheduler serves no dashboard)"
        needs_bokeh = False
    except Exception:  # noqa: BLE001 - not reachable from here (a remote cluster's address)
        needs_bokeh = False
    note = " (its pages need bokeh on the scheduler: pip install 'bokeh>=3.1')" if needs_bokeh else ""
    return link, f"{command}: dashboard {link}{note}"


def changed_inputs(plan, discovery, meta, read_failures=None) -> tuple[list[str], list[str]]:
    """What a rerun reads again although its path was planned before: ``(changed, retried)``.

    ``changed``: local files still named whose size or modification time differ from when their
    header was read (a recording replaced in place: its old rows are superseded); ``retried``:
    local files that failed their header read and changed since (fixed, or replaced). A file
    that failed later (decoding) is planned, so it is ``changed`` when it changes. A file that
    failed because the job could not get at it (permission denied, moved away while the job
    ran) is read again once it is readable, in either list (``read_failures``: the last run's
    failures.parquet rows). URLs are not checked (no cheap stat)."""
    superseded = _superseded(meta)
    current = set(discovery.paths)
    latest = {}
    for f in plan.files:
        if f.path in current and f.path not in superseded.get(f.batch_id, ()):
            latest[f.path] = f
    changed = {p for p, f in latest.items()
               if f.mtime_ns and _file_state(p) not in (None, (f.size_bytes, f.mtime_ns))}
    # planned files the last run could not get at (RETRIED_WHEN_READABLE), readable now
    changed |= {p for p in _readable_again(read_failures or ()) if p in latest}
    retried = {f["path"] for f in plan.failures
               if f["stage"] == "probe" and f.get("state") and f["path"] in current
               and _file_state(f["path"]) not in (None, tuple(f["state"]))}
    retried |= {p for p in _readable_again(f for f in plan.failures if f["stage"] == "probe")
                if p in current}
    return sorted(changed), sorted(retried)


def _readable_again(failures) -> list[str]:
    """The paths of ``failures`` (rows of failures.parquet, or the plan's) whose type says the
    job could not get at the file (``jobs.errors.RETRIED_WHEN_READABLE``; for a URL also a
    server that did not answer or said "not found" then: ``RETRIED_WHEN_REACHABLE``) and that
    it may read now."""
    from jobs.errors import RETRIED_WHEN_REACHABLE, RETRIED_WHEN_READABLE

    again = []
    for f in failures:
        path, kind = f["path"], f.get("error_type")
        if "://" not in path:
            if kind in RETRIED_WHEN_READABLE and os.access(path, os.R_OK):
                again.append(path)
        elif kind in RETRIED_WHEN_READABLE | RETRIED_WHEN_REACHABLE and _url_exists(path):
            again.append(path)
    return again


def _url_exists(url: str) -> bool:
    """Whether the object at ``url`` answers now (fsspec, the environment's credentials)."""
    try:
        import fsspec

        fs, inner = fsspec.core.url_to_fs(url)
        return bool(fs.exists(inner))
    except Exception:  # noqa: BLE001 - unreachable still: failed as before
        return False


def _last_failures(out) -> list[dict]:
    """The rows of the last finished run's failures.parquet (none when there is none)."""
    from jobs import store

    try:
        table = store.read_table(out, "failures.parquet", columns=["path", "stage", "error_type"])
    except Exception:  # noqa: BLE001 - no table yet (a first run that was stopped), or unreadable
        return []
    return table.to_pylist() if table is not None else []


def _with_file_state(failures: list[dict]) -> list[dict]:
    """Probe failures stamped with their file's ``(size, mtime_ns)``: a rerun reads one again
    when that changed (:func:`changed_inputs`)."""
    for f in failures:
        if f.get("stage") == "probe":
            state = _file_state(f["path"])
            if state is not None:
                f["state"] = list(state)
    return failures


def extend_plan(cfg, discovery, plan, meta, *, config_hash: str, changed=(), retried=()):
    """The inputs changed since the stored plan: new inputs get new batches after the old regions
    (the arrays grow), inputs that went away are left out of the tables, files replaced in place
    (``changed``: :func:`changed_inputs`) are read again into new batches and their old rows are
    left out; nothing else done is redone.

    Crash-safe like a new plan: the arrays grow first, the plan file is written last, and the
    same inputs always give the same extension.
    """
    from jobs import store
    from jobs.plan import make_batches, plan_to_tables

    out = _out(cfg)
    superseded = _superseded(meta)
    planned = {f.path for f in plan.files if f.path not in superseded.get(f.batch_id, ())}
    failed_before = {f["path"] for f in plan.failures if f["stage"] == "probe"}
    listed_failed = {f["path"] for f in plan.failures}  # the inputs the last run listed as failed
    current = set(discovery.paths) | {f["path"] for f in discovery.failures}
    changed = set(changed)
    stale = [f for f in plan.files if f.path in changed and f.path not in superseded.get(f.batch_id, ())]
    replaced = [[f.batch_id, f.path] for f in stale]
    latest_state = {f.path: (f.size_bytes, f.mtime_ns) for f in stale}
    # a header that failed is read again when its file changed (retried), or when the failure
    # holds no file state to tell (a URL): not every time another input changes
    unchanged_failures = {f["path"] for f in plan.failures if f["stage"] == "probe" and f.get("state")} \
        - set(retried)
    new_paths = [p for p in discovery.paths
                 if (p not in planned and p not in unchanged_failures) or p in changed]
    files, probe_failures = _guarded_probe(out, new_paths, cfg.compute.hang_seconds)
    _with_file_state(probe_failures)
    old_probe_failures = [f for f in plan.failures if f["stage"] == "probe" and f["path"] in current
                          and f["path"] not in set(new_paths)]
    extra = make_batches(files, sr=cfg.audio.sr, hop_length=cfg.frames.hop_length,
                         batch_seconds=cfg.compute.batch_seconds, min_batches=cfg.compute.min_batches,
                         block_seconds=cfg.compute.block_seconds, chunk_frames=meta["chunk_frames"],
                         first_batch_id=len(plan.batches), first_frame=plan.total_frames,
                         part_seconds=cfg.compute.batch_seconds, scratch_parts=not out.is_url)
    plan.batches += extra.batches
    plan.total_frames = extra.total_frames if extra.batches else plan.total_frames
    failures = {f["path"]: f for f in [*old_probe_failures, *probe_failures, *extra.failures,
                                       *discovery.failures]}
    plan.failures = [failures[p] for p in sorted(failures)]
    dropped = sorted(planned - current)  # every planned file no longer named (the tables skip them)
    # inputs gone since the last run: files it planned, and inputs it listed as failed (those
    # leave the failures table; a planned file leaves the tables through ``dropped``)
    gone = len(set(dropped) - set(meta.get("dropped", ()))) + len(listed_failed - current - planned)
    # inputs that fail before planning (a broken link) and were not listed: new as well
    new_failed = {f["path"] for f in discovery.failures} - listed_failed - planned
    store.grow_store(out, plan.total_frames)
    table, batches = plan_to_tables(plan)
    store.write_table(table, out, ".plan.parquet")
    meta = {**meta, **{k: getattr(cfg.compute, k) for k in _BATCHING},
            "plan_id": _plan_id(config_hash, discovery), "n_inputs": len(current),
            "batches": batches, "failures": plan.failures, "total_frames": plan.total_frames,
            "dropped": dropped, "superseded": [*meta.get("superseded", ()), *replaced],
            # the tables must be written again even when no batch was added (a changed file
            # that now fails its header read): a manifest of an earlier revision is out of date
            "plan_revision": meta.get("plan_revision", 0) + 1}
    store.write_json(meta, out, ".plan.json")  # the extension's commit
    # files planned before and read again without a change on disk: the job could not get at
    # them then (changed_inputs), they failed, and they count with the failures read again
    unreachable = {p for p in changed if _file_state(p) == latest_state.get(p)}
    again = sum(p in failed_before for p in new_paths) + len(unreachable)
    moved = len(changed) - len(unreachable)
    _say(f"extract: inputs changed since the last run: "
         f"{len(new_paths) - again - moved + len(new_failed)} new, "
         f"{gone} gone"
         + (f", {moved} changed on disk (read again, their old rows replaced)" if moved else "")
         + (f", {again} that failed before read again" if again else "")
         + f"; {plural(len(extra.batches), 'batch', 'batches')} added")
    return plan, meta


def new_plan(cfg, discovery, *, feature_cfg: dict, config_hash: str, client=None):
    """Stage 2: probe the headers, make batches and regions, write the store template and the
    plan (the plan file last: it is the plan's commit). Returns ``(plan, meta)``.

    With ``client`` the headers are read on its workers (``jobs.plan.probe_on_cluster``), else
    here (``jobs.plan.probe_all``).
    """
    from jobs import store
    from jobs.config import feature_dims
    from jobs.plan import make_batches, plan_batches, probe_on_cluster

    out = _out(cfg)
    store.clear_run(out)  # what an earlier run of another config or input set left
    store.make_out(out)
    t0 = time.perf_counter()
    if client is not None:
        files, probe_failures = probe_on_cluster(client, discovery.paths)
    else:
        files, probe_failures = _guarded_probe(out, discovery.paths, cfg.compute.hang_seconds)
    _with_file_state(probe_failures)
    compute = cfg.compute
    plan = make_batches(files, sr=cfg.audio.sr, hop_length=cfg.frames.hop_length,
                        batch_seconds=compute.batch_seconds, min_batches=compute.min_batches,
                        block_seconds=compute.block_seconds, chunk_frames=compute.chunk_frames,
                        failures=discovery.failures + probe_failures,
                        part_seconds=compute.batch_seconds, scratch_parts=not out.is_url)
    chunk = plan.chunk_frames  # compute.chunk_frames, or the plan's pick for its batch size
    probe_s = time.perf_counter() - t0
    dims = feature_dims(cfg.features)
    store.create_store(out, feature_config=feature_cfg, config_hash=config_hash, dims=dims,
                       total_frames=plan.total_frames, chunk_frames=chunk, version=VERSION)
    meta = {
        "plan_id": _plan_id(config_hash, discovery), "config_hash": config_hash,
        "n_inputs": len(discovery.paths) + len(discovery.failures),
        "batches": plan_batches(plan), "failures": plan.failures,
        "total_frames": plan.total_frames,
        "chunk_frames": chunk, "batch_seconds": compute.batch_seconds,
        "min_batches": compute.min_batches, "block_seconds": compute.block_seconds,
        "dims": dims, "probe_s": probe_s, "probed_on": "coordinator" if client is None else "workers",
    }
    commit_plan(out, plan, meta)
    return plan, meta


def _guarded_probe(out, paths: list[str], hang_seconds: float):
    """``jobs.plan.probe_all`` in this process, each libsndfile header read marked in the run
    folder (``jobs.crashes.ProbeGuard``): the files a run that died while probing was opening
    are probed in child processes first, so that one that crashes libsndfile ends no run twice.
    A header read stuck for ``hang_seconds`` (``compute.hang_seconds``) starts the command again
    (``jobs.crashes.restart_or_wait``), which then probes that file in a child process."""
    from jobs.crashes import ProbeGuard, restart_or_wait
    from jobs.outdir import as_outdir
    from jobs.plan import probe_all, watching

    od = as_outdir(out)
    guard = ProbeGuard(None if od.is_url else od.location, hang_seconds=hang_seconds,
                       on_stuck=lambda path, seconds: restart_or_wait(path, seconds, _say))
    suspects = guard.suspects()
    if suspects:
        _say(f"extract: an earlier run ended while reading the header of {len(suspects)} "
             f"file{'s' if len(suspects) > 1 else ''}: probed in a child process first")
    with guard, watching(guard):
        return probe_all(paths, suspects=suspects, time_limit=hang_seconds)


def commit_plan(out, plan, meta: dict) -> None:
    """Write the plan's files: its table, then ``.plan.json`` (the plan's commit)."""
    from jobs import store
    from jobs.plan import plan_to_tables

    table, _ = plan_to_tables(plan)
    store.write_table(table, out, ".plan.parquet")
    store.write_json(meta, out, ".plan.json")


# a corpus of at least this many URLs has its headers read on the workers (compute.probe: auto)
CLUSTER_PROBE_MIN_URLS = 1000
# ... and one of at least this many files that FFmpeg decodes (AAC/M4A, WMA, ...), whose frames
# are counted by decoding them (featurelib._avfile): CPU work that the workers share
CLUSTER_PROBE_MIN_COUNTED = 32


def _probes_on_workers(cfg, paths: list[str]) -> bool:
    """``compute.probe``: "workers", "coordinator", or (auto) workers for many URLs or many
    files whose length is counted by decoding."""
    mode = cfg.compute.probe
    if mode != "auto" or not paths:
        return mode == "workers" and bool(paths)
    if len(paths) >= CLUSTER_PROBE_MIN_URLS and sum("://" in p for p in paths) >= CLUSTER_PROBE_MIN_URLS:
        return True
    from featurelib._avfile import AV_EXTENSIONS

    counted = sum(os.path.splitext(p)[1].lower().lstrip(".") in AV_EXTENSIONS for p in paths)
    return counted >= CLUSTER_PROBE_MIN_COUNTED


def stage_plan(cfg, discovery, *, feature_cfg: dict, config_hash: str, overwrite: bool = False):
    """Stage 2: the stored plan when it matches, else a new one. Returns ``(plan, meta, reused)``."""
    found = stored_plan(cfg, discovery, config_hash=config_hash, overwrite=overwrite)
    if found is not None:
        return (*found, True)
    return (*new_plan(cfg, discovery, feature_cfg=feature_cfg, config_hash=config_hash), False)


# ---------------------------------------------------------------- one batch (runs on a worker)


class BatchError(Exception):
    """A whole batch failed (e.g. its rows could not be written); ``stage`` says where."""

    def __init__(self, stage: str, error_type: str, message: str):
        self.stage, self.error_type = stage, error_type
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.stage, self.error_type, str(self)))


def _fail_row(f, stage: str, exc: BaseException) -> dict:
    error_type = getattr(exc, "error_type", None) or type(exc).__name__
    message = " ".join(str(exc).split()) or error_type
    moved = _moved_since_planned(f)
    if moved is not None:  # the decoder's words would blame a file that is not the one planned
        error_type, message = moved
    return {"path": f.path, "stage": stage, "error_type": error_type, "message": message}


def _moved_since_planned(f) -> tuple[str, str] | None:
    """``(error_type, message)`` for a local file deleted, made unreadable or changed on disk
    after its header was read (while the job ran), else None. A deleted or unreadable file read
    as "not a readable audio file (libsndfile: System error)", one replaced by a shorter
    recording as "truncated"."""
    if "://" in f.path or not getattr(f, "mtime_ns", 0):
        return None
    try:
        st = os.stat(f.path)
    except FileNotFoundError:
        return ("FileGone", "the file was deleted or moved after the job read its header (a rerun "
                "counts it as gone)")
    except OSError:
        return None
    if not os.access(f.path, os.R_OK):  # libsndfile says "System error"
        return ("PermissionDenied", "permission denied: the job may not read the file (since it "
                "read its header); a rerun reads it again once it may")
    if (st.st_size, st.st_mtime_ns) == (f.size_bytes, f.mtime_ns):
        return None
    size = f" ({f.size_bytes:,} -> {st.st_size:,} bytes)" if st.st_size != f.size_bytes else ""
    return ("ChangedDuringRun", f"the file changed on disk after the job read its header{size}: a "
            "rerun reads it again")


def _write(out, arrays, start, timings):
    from jobs import store

    t0 = time.perf_counter()
    try:
        store.write_rows(out, arrays, start)
    except Exception as exc:  # noqa: BLE001 - the whole batch fails, with its stage
        raise BatchError("write", type(exc).__name__, str(exc)) from exc
    timings["write_s"] += time.perf_counter() - t0


def _extract_files(batch, job, fs, xp, timings, guard=None):
    """A batch of whole files: decode each, compute in padded groups, fill the region.

    ``guard`` (a :class:`jobs.crashes.CrashGuard`) leaves out the files that crashed an earlier
    attempt and marks each file while it is decoded."""
    import numpy as np

    from jobs.compute import (
        buffer_groups,
        compute_segments,
        decode,
        packed_moments,
        segment_buffers,
    )
    from jobs.store import IndexRows

    dims = job["dims"]
    region = {n: np.zeros((batch.region_stop - batch.region_start, d), np.float32) for n, d in dims.items()}
    rows, failures = IndexRows(dims), []

    def run_group(group):
        if not group:
            return
        signals = [y for _, y in group]
        t0 = time.perf_counter()
        try:
            zbuf, ebuf, n_valid = segment_buffers(signals, fs)
            parts = [(list(range(len(group))), n_valid,
                      compute_segments(zbuf, ebuf, fs, n_valid=n_valid, xp=xp))]
        except Exception:  # noqa: BLE001 - find the file that breaks the group, keep the rest
            parts = []
            for i, (f, y) in enumerate(group):
                try:
                    zb, eb, nv = segment_buffers([y], fs)
                    parts.append(([i], nv, compute_segments(zb, eb, fs, n_valid=nv, xp=xp)))
                except Exception as exc:  # noqa: BLE001
                    failures.append(_fail_row(f, "compute", exc))
        timings["dsp_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for members, n_valid, feats in parts:
            files = [group[i][0] for i in members]
            nv = np.asarray(n_valid)
            T = next(iter(feats.values())).shape[1]
            valid = np.arange(T)[None, :] < nv[:, None]  # (B, T): each row's own frames
            starts = np.array([f.frame_start - batch.region_start for f in files])
            total = int(nv.sum())
            if starts[-1] - starts[0] == total - nv[-1]:  # no failed file between: one block
                dest = slice(int(starts[0]), int(starts[0]) + total)
            else:
                dest = np.repeat(starts - (np.cumsum(nv) - nv), nv) + np.arange(total)
            means, stds = {}, {}
            for name, data in feats.items():
                packed = data[valid]  # each file's own frames, one file after the other
                region[name][dest] = packed
                means[name], stds[name] = packed_moments(packed, nv)
            rows.add_many(files, means, stds)
        timings["index_s"] += time.perf_counter() - t0

    crashed = guard.crashed if guard is not None else {}

    def decoded():  # (file, samples) of each file that decodes, in the batch's (length) order
        for i, f in enumerate(batch.files):
            if f.path in crashed:
                failures.append(guard.failure(f.path))
                continue
            t0, r0 = time.perf_counter(), timings["resample_s"]
            if guard is not None:
                guard.reading(i)
            try:
                y = decode(f.path, sr=fs.sr, expected_frames=f.frames, timings=timings, subtype=f.subtype)
                if y.shape[0] != f.n_samples:
                    raise BatchError("decode", "LengthMismatch",
                                     f"planned {f.n_samples} samples, decoded {y.shape[0]}")
            except Exception as exc:  # noqa: BLE001 - one bad file never stops its batch
                failures.append(_fail_row(f, "decode", exc))
                continue
            finally:  # decode_s excludes the resampling, counted apart
                timings["decode_s"] += time.perf_counter() - t0 - (timings["resample_s"] - r0)
                if guard is not None:
                    guard.reading(None)
            yield f, y

    for group in buffer_groups(decoded(), lambda item: 1 + item[1].shape[0] // fs.hop_length):
        run_group(group)
    _write(job["out"], region, batch.region_start, timings)
    return rows, failures


def _pieces(f0: int, f1: int, size: int):
    """``[f0, f1)`` in consecutive pieces of at most ``size`` frames."""
    return [(a, min(a + size, f1)) for a in range(f0, f1, size)]


class _DbSpill:
    """Per mel, a long file's unclamped dB frames in an unlinked temporary file: written in
    order during the one decoding pass, read back by frame ranges for the top_db clamp."""

    def __init__(self, keys, widths: dict):
        import tempfile

        self.files = {key: tempfile.TemporaryFile(prefix="audiofeat-db-") for key in keys}
        self.widths = widths

    def append(self, key, frames) -> None:
        import numpy as np

        self.files[key].write(np.ascontiguousarray(frames, dtype=np.float32).tobytes())

    def read(self, key, f0: int, f1: int):
        import numpy as np

        handle, width = self.files[key], self.widths[key]
        handle.seek(f0 * width * 4)
        data = np.fromfile(handle, dtype=np.float32, count=(f1 - f0) * width)
        return data.reshape(f1 - f0, width)

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def _write_block(batch, job, parts: dict, b0: int, b1: int, timings) -> None:
    """Frames ``[b0, b1)`` of a long file's features (name -> list of pieces) into its rows; the
    last block also fills the region's padding."""
    import numpy as np

    f = batch.files[0]
    if b1 == f.n_frames:
        for name in parts:
            parts[name].append(np.zeros((batch.region_stop - batch.region_start - b1,
                                         job["dims"][name]), np.float32))
    _write(job["out"], {n: np.concatenate(p) for n, p in parts.items()}, batch.region_start + b0, timings)


def _spill_keys(fs):
    """The features clamped with top_db (name -> mel key) and their mel keys, in a fixed order."""
    later = fs.db_mels()
    return later, sorted(set(later.values()), key=repr)


def _mel_widths(fs, keys) -> dict:
    """Mel bands per spilled mel key: the width of its dB frames."""
    return {key: fs.table("mel", key).shape[0] for key in keys}


def _stream_frames(batch, job, fs, xp, timings, p0: int, p1: int, spill, moments: dict, maxima: dict,
                   scratch: str | None = None):
    """Frames ``[p0, p1)`` of a batch's long file (a multiple of its blocks), decoded once from
    the samples they reach (or read from ``scratch``, the file's samples at the store's rate
    that :func:`resample_part_source` wrote): computed in pieces of at most MAX_BUFFER_FRAMES
    frames, the features not clamped with top_db written in blocks of whole chunks (each block's
    moments appended to ``moments[name]``, see :func:`_file_moments`), the clamped ones' mels'
    unclamped dB appended to ``spill`` and each mel's maximum kept in ``maxima``."""
    import numpy as np

    from jobs.compute import (
        MAX_BUFFER_FRAMES,
        BlockReader,
        Moments,
        ResampledStream,
        ScratchStream,
        compute_segments,
    )

    (f,) = batch.files
    later, _ = _spill_keys(fs)
    start = BlockReader.first_sample(fs, p0)
    opened = (ScratchStream(scratch, n_samples=f.n_samples, start=start) if scratch is not None
              else ResampledStream(f.path, sr=fs.sr, expected_frames=f.frames, start=start))
    with opened as stream:
        reader = BlockReader(stream, fs, first_frame=p0)
        for b0, b1 in _pieces(p0, p1, batch.block_frames):
            parts = {n: [] for n in job["dims"] if n not in later}
            block = {n: Moments(job["dims"][n]) for n in parts}
            for f0, f1 in _pieces(b0, b1, MAX_BUFFER_FRAMES):
                t0 = time.perf_counter()
                zrow, erow = reader.block(f0, f1)
                t1 = time.perf_counter()
                timings["decode_s"] += t1 - t0
                deferred = {} if later else None
                feats = compute_segments(zrow[None], None if erow is None else erow[None], fs,
                                         n_valid=[f1 - f0], xp=xp, deferred=deferred)
                for key, (db, row_max) in (deferred or {}).items():
                    spill.append(key, db[0, :f1 - f0])
                    maxima[key] = np.maximum(maxima[key], row_max) if key in maxima else row_max
                timings["dsp_s"] += time.perf_counter() - t1
                for name, data in feats.items():
                    block[name].add(data[0, :f1 - f0])
                    parts[name].append(data[0, :f1 - f0])
            for name, m in block.items():
                moments.setdefault(name, []).append((m.n, m.mean, m.m2))
            if parts:
                _write_block(batch, job, parts, b0, b1, timings)
        timings["decode_s"] -= stream.resample_s
        timings["resample_s"] += stream.resample_s


def _clamp_frames(batch, job, fs, xp, timings, read_db, maxima: dict, moments: dict,
                  p0: int = 0, p1: int | None = None) -> None:
    """The second pass over frames ``[p0, p1)`` of a long file (default: all): its top_db-clamped
    features from its mels' unclamped dB (``read_db(key, f0, f1)``) and the file's maxima,
    written block by block (same arithmetic as a whole pass: the clamp is an elementwise
    maximum), each block's moments appended to ``moments[name]``."""
    from jobs.compute import MAX_BUFFER_FRAMES, Moments, clamped_db_features

    later, keys = _spill_keys(fs)
    p1 = batch.files[0].n_frames if p1 is None else p1
    for b0, b1 in _pieces(p0, p1, batch.block_frames) if later else ():
        parts = {n: [] for n in later}
        block = {n: Moments(job["dims"][n]) for n in later}
        for f0, f1 in _pieces(b0, b1, MAX_BUFFER_FRAMES):
            t0 = time.perf_counter()
            db = {key: read_db(key, f0, f1)[None] for key in keys}
            for name, data in clamped_db_features(db, maxima, fs, xp).items():
                block[name].add(data[0])
                parts[name].append(data[0])
            timings["dsp_s"] += time.perf_counter() - t0
        for name, m in block.items():
            moments.setdefault(name, []).append((m.n, m.mean, m.m2))
        _write_block(batch, job, parts, b0, b1, timings)


def _file_moments(blocks: dict, dims: dict) -> tuple[dict, dict]:
    """A long file's (means, stds) per feature from its blocks' moments, merged in file order:
    the same numbers whether one task or several computed the blocks."""
    from jobs.compute import Moments

    total = {n: Moments(d) for n, d in dims.items()}
    for name, parts in blocks.items():
        for count, mean, m2 in parts:
            total[name].merge(count, mean, m2)
    return {n: m.mean for n, m in total.items()}, {n: m.std for n, m in total.items()}


def _long_failure(f, exc: BaseException) -> dict:
    import soundfile as sf

    from featurelib.io import part_way_reason
    from jobs.compute import DecodeError

    if isinstance(exc, sf.LibsndfileError):  # a damaged stream, as jobs.compute.decode says it
        exc = DecodeError("DecodeFailed", part_way_reason(exc))
    stage = "decode" if isinstance(exc, (DecodeError, OSError, RuntimeError)) else "compute"
    return _fail_row(f, stage, exc)


def _extract_long(batch, job, fs, xp, timings, guard=None):
    """One long file in one task, streamed: computed in pieces of at most MAX_BUFFER_FRAMES
    frames, written in blocks of whole chunks.

    The file is decoded once. Features clamped with ``top_db`` need the file's maximum first:
    their mels' unclamped dB go to a temporary file on that pass (4 bytes per mel band per
    frame: 115 MB for 2 hours of 40 bands at 100 frames/s, on disk, not in memory), and a
    second pass over that file clamps them and writes them. The numbers are those of a whole
    pass (the clamp is an elementwise maximum).
    """
    from jobs.store import IndexRows

    (f,) = batch.files
    dims = job["dims"]
    if guard is not None and f.path in guard.crashed:
        return IndexRows(dims), [guard.failure(f.path)]
    later, keys = _spill_keys(fs)
    spill = None
    if guard is not None:
        guard.reading(0)  # the whole task reads this one file
    try:
        moments: dict = {}
        maxima: dict = {}
        if later:
            spill = _DbSpill(keys, _mel_widths(fs, keys))
        _stream_frames(batch, job, fs, xp, timings, 0, f.n_frames, spill, moments, maxima)
        _clamp_frames(batch, job, fs, xp, timings, spill.read if spill else None, maxima, moments)
    except BatchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the file fails, with the stage it failed in
        return IndexRows(dims), [_long_failure(f, exc)]
    finally:
        if spill is not None:
            spill.close()
    index = IndexRows(dims)
    index.add(f, *_file_moments(moments, dims))
    return index, []


# ---------------------------------------------------------------- a long file split across tasks


def _parts_dir(batch_id: int) -> str:
    return f".parts/{batch_id:06d}"


class _PartSpill(_DbSpill):
    """:class:`_DbSpill` for one part of a file split across tasks, written only: the part's mels'
    unclamped dB in the run's folder (``.parts/BATCH/PART-K.f32``, a local folder or an object
    store), where the part's clamp task reads them (:class:`_PartSpillReader`), whichever worker
    it runs on."""

    def __init__(self, od, batch_id: int, part: int, keys):  # files in the run folder, not temporary
        od.makedirs(_parts_dir(batch_id))
        self.files = {key: od.open(f"{_parts_dir(batch_id)}/{part:04d}-{k}.f32", "wb")
                      for k, key in enumerate(keys)}


class _PartSpillReader:
    """Reads back frame ranges of the parts' spills (a range never crosses a part: parts are
    whole blocks and ranges lie within blocks)."""

    def __init__(self, od, batch, keys, widths: dict):
        self.od, self.batch, self.widths = od, batch, widths
        self.index = {key: k for k, key in enumerate(keys)}
        self.ranges = batch.part_ranges()
        self.handles: dict = {}

    def read(self, key, f0: int, f1: int):
        import numpy as np

        part = f0 // self.batch.part_frames
        p0, p1 = self.ranges[part]
        assert p0 <= f0 and f1 <= p1, (f0, f1, p0, p1)
        name = f"{_parts_dir(self.batch.batch_id)}/{part:04d}-{self.index[key]}.f32"
        if name not in self.handles:
            self.handles[name] = self.od.open(name, "rb")
        handle, width = self.handles[name], self.widths[key]
        handle.seek((f0 - p0) * width * 4)
        data = np.frombuffer(handle.read((f1 - f0) * width * 4), dtype=np.float32)
        return data.reshape(f1 - f0, width)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


@contextlib.contextmanager
def _worker_dsp(job: dict):
    """``(FeatureSet, array namespace)`` of a job's task, inside one BLAS thread and the feature
    config's FFT precision (what every task that computes features runs under)."""
    from jobs.compute import FeatureSet, keep_freed_memory, one_blas_thread

    keep_freed_memory()
    xp = _worker_namespace(job)
    with one_blas_thread():
        fs = FeatureSet.from_config(job["feature_config"], tables=job.get("tables"))
        with fs.precision():
            yield fs, xp


def _worker_namespace(job: dict):
    """The array namespace of the job's device on this worker, after checking that the worker
    can run the job at all (:class:`jobs.errors.WorkerSetupError` otherwise): it sees the output
    folder (a local one: the coordinator made it), and it has the GPU a cuda job asks for."""
    import socket

    from jobs.compute import array_namespace_for
    from jobs.errors import WorkerSetupError
    from jobs.outdir import as_outdir

    where = f"the worker on {socket.gethostname()}"
    od = as_outdir(job["out"])
    if not od.is_url and not os.path.isdir(os.path.join(od.location, "features.zarr")):
        raise WorkerSetupError(
            f"{where} cannot see the output folder {od.location} (no features.zarr there): the "
            "machine running audiofeat and every worker must see the same input and out paths (a "
            "shared file system), or use object-store URLs")
    try:
        xp = array_namespace_for(job["device"])
        if job["device"] == "cuda":
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
    except Exception as exc:  # noqa: BLE001 - no CuPy, no driver, no device
        raise WorkerSetupError(
            f"{where} cannot use a GPU ({type(exc).__name__}: {' '.join(str(exc).split())}): "
            "install audiofeat[gpu] (CuPy) where the workers run and give them a GPU, or set "
            "compute.device: cpu") from None
    return xp


def _timings() -> dict:
    return {"decode_s": 0.0, "resample_s": 0.0, "dsp_s": 0.0, "index_s": 0.0, "write_s": 0.0,
            "commit_s": 0.0}


def _scratch_path(job: dict, batch_id: int) -> str:
    """Where a split file's samples at the store's rate wait for its parts (a local run folder)."""
    from jobs.outdir import as_outdir

    return as_outdir(job["out"]).join(_parts_dir(batch_id), "signal.f32")


def _crash_guard(job: dict, batch, audio_seconds: float, task: str | None = None):
    """The :class:`jobs.crashes.CrashGuard` of a batch's task (``task`` names one of the tasks
    of a split long file), with the time limit of the audio it reads."""
    from jobs import store
    from jobs.crashes import CrashGuard

    name = batch.batch_id if task is None else f"{batch.batch_id:06d}-{task}"
    return CrashGuard(store.crash_root(job["out"]), name, [f.path for f in batch.files],
                      time_limit=job.get("hang_seconds", 600.0) + audio_seconds)


def _scratch_task(batch, job: dict, path_of):
    """The start of a task that writes a split file's samples to ``path_of(batch_id)`` in the
    run folder: ``(batch, its one file, result, path)``, the file None when the batch is
    committed already (nothing to do)."""
    from jobs import store
    from jobs.plan import as_batch

    batch = as_batch(batch)
    result = {"failure": None, "timings": _timings()}
    if store.is_committed(job["out"], batch.batch_id):
        return batch, None, result, None
    (f,) = batch.files
    path = path_of(batch.batch_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return batch, f, result, path


def _native_range_path(job: dict, batch_id: int, index: int) -> str:
    """Where one range of a split file's mono samples at its own rate waits for the resampling."""
    from jobs.outdir import as_outdir

    return as_outdir(job["out"]).join(_parts_dir(batch_id), f"native-{index:04d}.f32")


# What decoding in ranges trades, measured on FLAC (2-core machine, 2026-12-02): decoding costs
# about 7.5 ns per byte of the file (mono 16-bit speech-like or stereo 24-bit noise alike), and
# the ranges' copy of the mono samples (written by the ranges, read by the resampling pass,
# through the page cache) about 10 ns per sample. A 2-hour 48 kHz mono 16-bit FLAC (1.6 bytes a
# frame) lost on 2 workers (11.3 s one task, 11.7 s in ranges); a 3-hour stereo 24-bit one
# (4.6 bytes a frame) gained (24.6 s in one pass, 22.1 s in ranges and one resampling pass).
DECODE_NS_PER_BYTE = 7.5
RANGE_COPY_NS_PER_FRAME = 10.0


def _native_range_count(batch, workers: int, fs, scratch_left: int) -> int:
    """How many ranges :func:`decode_native_range` tasks decode a split file in: one per worker,
    each at least a part's length of audio, when its codec is worth it
    (``jobs.plan.decodes_in_ranges``), the decoding that the ranges spread out costs more than
    their copy of the samples (:data:`DECODE_NS_PER_BYTE`, :data:`RANGE_COPY_NS_PER_FRAME`),
    and the copy fits in ``scratch_left`` bytes; 1 (decoded by the resampling pass itself)
    otherwise."""
    from jobs.plan import decodes_in_ranges

    (f,) = batch.files
    if workers < 2 or not decodes_in_ranges(f) or 4 * f.frames > scratch_left:
        return 1
    part_native = batch.part_frames * fs.hop_length * f.sample_rate / fs.sr
    count = int(max(1, min(workers, f.frames // max(1.0, part_native))))
    saved = DECODE_NS_PER_BYTE * f.size_bytes * (1 - 1 / count)
    return count if saved > RANGE_COPY_NS_PER_FRAME * f.frames else 1


def decode_native_range(batch, job: dict, index: int, start: int, stop: int) -> dict:
    """Decode frames ``[start, stop)`` of a long file split across tasks, mixed to mono, into
    the run's ``.parts/`` folder (``native-NNNN.f32``), for :func:`resample_part_source` to
    resample in one pass: the decoding of a file whose codec costs more than its resampling
    (FLAC, Opus, ALAC) and that seeks to the very samples, spread over the workers. Stops early
    at the end of a file cut short (what it wrote says how far it got). Returns its timings,
    or the file's failure. Idempotent.
    """
    from featurelib._decoder_notes import open_quietly, quiet_decoder_notes
    from featurelib._sequential import read_float32
    from jobs.compute import STREAM_CHUNK_FRAMES, _check_finite, _source, _to_mono, check_undamaged

    t_start = time.perf_counter()
    batch, f, result, path = _scratch_task(batch, job, lambda b: _native_range_path(job, b, index))
    if f is None:
        return result
    guard = _crash_guard(job, batch, (stop - start) / f.sample_rate, f"decode{index}")
    if f.path in guard.crashed:
        result["failure"] = guard.failure(f.path)
        return result
    source = _source(f.path)
    try:
        with guard:
            guard.reading(0)  # from the opening on: libsndfile parses the header there
            handle, quiet = open_quietly(source, f.path, frames=f.frames)
            with handle, quiet_decoder_notes(quiet), open(f"{path}.partial", "wb") as out:
                if index == 0:
                    check_undamaged(handle)
                handle.seek(start)
                left = stop - start
                while left > 0:
                    block = read_float32(handle, min(left, STREAM_CHUNK_FRAMES))
                    if block.shape[0] == 0:
                        break
                    y = _to_mono(block)
                    _check_finite(y, f.path)
                    y.astype("<f4", copy=False).tofile(out)
                    left -= block.shape[0]
        os.replace(f"{path}.partial", path)
    except BatchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the file fails, with the stage it failed in
        result["failure"] = _long_failure(f, exc)
    finally:
        if source is not f.path:
            source.close()
    result["timings"]["total_s"] = result["timings"]["decode_s"] = time.perf_counter() - t_start
    return result


def resample_part_source(batch, job: dict, *ranges: dict) -> dict:
    """The first task of a long file split across tasks that cannot seek exactly (resampled, or
    an encoding whose seeks are not sample-exact): decodes and resamples it in one pass, as one
    task would, and writes the samples (float32, 4 bytes each: 460 MB for 2 hours at 16 kHz) to
    the run's ``.parts/`` folder, where its parts read their ranges (``ScratchStream``). Returns
    its timings, or the file's failure (which its parts and :func:`finish_parts` pass on).
    Idempotent: a retry writes the file again.

    After ``ranges`` (the results of :func:`decode_native_range` over the whole file, in order,
    as :func:`native_ranges` cut it) it resamples their samples instead of decoding: the same
    blocks in the same order, so the same samples; the range files go once it is done.
    """
    from jobs.compute import STREAM_CHUNK_FRAMES, NativeScratch, ResampledStream
    from jobs.plan import native_ranges

    t_start = time.perf_counter()
    batch, f, result, path = _scratch_task(batch, job, lambda b: _scratch_path(job, b))
    if f is None:
        return result
    if os.path.isfile(path) and os.path.getsize(path) == 4 * f.n_samples:
        # put in place whole by an earlier run of this task (its result lost with a worker, or
        # a job killed before the commit): the same samples; and the ranges' copies are gone
        return result
    timings = result["timings"]
    # the ranges' decoding counts as this file's, once (part 0 passes this task's timings on)
    ranges_total = sum(r["timings"]["total_s"] for r in ranges)
    ranges_decode = sum(r["timings"]["decode_s"] for r in ranges)
    failed = [r["failure"] for r in ranges if r["failure"] is not None]
    if failed:
        result["failure"] = failed[0]
        timings["decode_s"] = ranges_decode
        timings["total_s"] = ranges_total + time.perf_counter() - t_start
        return result
    native = None
    if ranges:
        bounds = native_ranges(f, len(ranges))
        native = NativeScratch([(_native_range_path(job, batch.batch_id, i), b - a)
                                for i, (a, b) in enumerate(bounds)],
                               samplerate=f.sample_rate, format=f.format)
    guard = _crash_guard(job, batch, f.duration_s, "source")
    if f.path in guard.crashed:
        result["failure"] = guard.failure(f.path)
        return result
    with _worker_dsp(job) as (fs, _), guard:
        guard.reading(0)
        try:
            with ResampledStream(f.path, sr=fs.sr, expected_frames=f.frames, handle=native) as stream, \
                    open(f"{path}.partial", "wb") as out:
                left = stream.n_samples
                while left > 0:
                    block = stream.read(min(left, STREAM_CHUNK_FRAMES))
                    block.astype("<f4", copy=False).tofile(out)
                    left -= block.shape[0]
            os.replace(f"{path}.partial", path)
            timings["resample_s"] += stream.resample_s
        except BatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - the file fails, with the stage it failed in
            result["failure"] = _long_failure(f, exc)
        finally:
            for i in range(len(ranges)):  # the native samples are resampled now (or useless)
                with contextlib.suppress(OSError):
                    os.remove(_native_range_path(job, batch.batch_id, i))
    own = time.perf_counter() - t_start
    timings["total_s"] = ranges_total + own
    timings["decode_s"] = ranges_decode + own - timings["resample_s"]
    return result


def extract_part(batch, job: dict, part: int, source: dict | None = None) -> dict:
    """One part of a long file split across tasks (``batch.part_frames``), on a worker.

    Decodes the part's frames from the samples they reach (resampling from a little earlier, see
    ``ResampledStream(start=...)``), or, after a ``source`` task (:func:`resample_part_source`),
    reads them from the samples it wrote; writes the features not clamped with top_db to their
    rows and the clamped ones' unclamped mel dB to the run's ``.parts/`` folder. Returns its mel
    maxima (for :func:`file_maxima`), its blocks' moments (count, mean, M2 per feature, for
    :func:`finish_parts`), or its failure. Idempotent: a retry rewrites the same rows and files.
    """
    from jobs import store
    from jobs.outdir import as_outdir
    from jobs.plan import as_batch

    t_start = time.perf_counter()
    batch = as_batch(batch)
    result = {"part": part, "moments": {}, "maxima": {}, "failure": None, "timings": _timings()}
    if store.is_committed(job["out"], batch.batch_id):
        return result
    if source is not None:
        if part == 0:  # the source task's time, counted once
            result["timings"] = dict(source["timings"])
        if source["failure"] is not None:
            result["failure"] = source["failure"]
            return result
    p0, p1 = batch.part_ranges()[part]
    f = batch.files[0]
    guard = _crash_guard(job, batch, f.duration_s * (p1 - p0) / max(1, f.n_frames), f"part{part}")
    if f.path in guard.crashed:
        result["failure"] = guard.failure(f.path)
        return result
    with _worker_dsp(job) as (fs, xp), guard:
        guard.reading(None if source is not None else 0)  # after a source: reads its samples
        later, keys = _spill_keys(fs)
        spill = None
        try:
            if later:
                spill = _PartSpill(as_outdir(job["out"]), batch.batch_id, part, keys)
            scratch = _scratch_path(job, batch.batch_id) if source is not None else None
            _stream_frames(batch, job, fs, xp, result["timings"], p0, p1, spill,
                           result["moments"], result["maxima"], scratch=scratch)
        except BatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - the file fails, with the stage it failed in
            result["failure"] = _long_failure(batch.files[0], exc)
        finally:
            if spill is not None:
                spill.close()
    result["timings"]["total_s"] = result["timings"].get("total_s", 0.0) + time.perf_counter() - t_start
    return result


def file_maxima(*parts: dict) -> dict:
    """A split file's mel maxima, the largest of its parts' (:func:`extract_part`), for its
    clamp tasks; or its first failed part's failure."""
    import numpy as np

    parts = sorted(parts, key=lambda p: p["part"])
    failed = [p["failure"] for p in parts if p["failure"] is not None]
    if failed or not parts:
        return {"maxima": {}, "failure": failed[0] if failed else None}
    return {"maxima": {key: np.max([p["maxima"][key] for p in parts], axis=0) for key in parts[0]["maxima"]},
            "failure": None}


def clamp_part(batch, job: dict, part: int, file: dict) -> dict:
    """The second pass over one part of a split file, once the file's maxima are known
    (:func:`file_maxima`): its top_db-clamped features from the dB the part spilled, written to
    its rows. Returns its blocks' moments, or its failure."""
    from jobs import store
    from jobs.outdir import as_outdir
    from jobs.plan import as_batch

    t_start = time.perf_counter()
    batch = as_batch(batch)
    result = {"part": part, "moments": {}, "failure": None, "timings": _timings()}
    if file["failure"] is not None or store.is_committed(job["out"], batch.batch_id):
        return result
    p0, p1 = batch.part_ranges()[part]
    with _worker_dsp(job) as (fs, xp):
        _, keys = _spill_keys(fs)
        reader = _PartSpillReader(as_outdir(job["out"]), batch, keys, _mel_widths(fs, keys))
        try:
            _clamp_frames(batch, job, fs, xp, result["timings"], reader.read, file["maxima"],
                          result["moments"], p0, p1)
        except BatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - the file fails, with the stage it failed in
            result["failure"] = _long_failure(batch.files[0], exc)
        finally:
            reader.close()
    result["timings"]["total_s"] = time.perf_counter() - t_start
    return result


def finish_parts(batch, job: dict, *results: dict) -> dict:
    """The last task of a file split across tasks: the file's moments merged from its blocks',
    in file order (the numbers of one task), its index row, the batch's commit as
    :func:`extract_batch` (whose summary it returns), and its spilled dB removed. ``results``
    are its parts' (:func:`extract_part`) and, with top_db-clamped features, its clamp tasks'
    (:func:`clamp_part`); a failure in any fails the file."""
    from jobs import store
    from jobs.outdir import as_outdir
    from jobs.plan import as_batch
    from jobs.store import IndexRows

    batch = as_batch(batch)
    t_start = time.perf_counter()
    timings = _timings()
    for result in results:
        for name in timings:
            timings[name] += result["timings"][name]
    summary = {"batch_id": batch.batch_id, "files": 1, "ok": 0, "failed": 0,
               "audio_s": batch.audio_seconds, "committed": False, "timings": timings}
    if store.is_committed(job["out"], batch.batch_id):
        return summary
    dims = job["dims"]
    results = sorted(results, key=lambda r: r["part"])  # stable: parts before clamps of a part
    failures = [r["failure"] for r in results if r["failure"] is not None][:1]
    rows = IndexRows(dims)
    if not failures:
        moments: dict = {}  # name -> every block's moments, in file order (a name is either
        for result in results:  # the parts' or the clamp tasks')
            for name, blocks in result["moments"].items():
                moments.setdefault(name, []).extend(blocks)
        rows.add(batch.files[0], *_file_moments(moments, dims))
    t0 = time.perf_counter()
    summary["committed"] = store.commit_batch(job["out"], batch.batch_id, rows, failures, dims)
    timings["commit_s"] += time.perf_counter() - t0
    as_outdir(job["out"]).remove(_parts_dir(batch.batch_id))  # the spilled dB, once committed
    timings["total_s"] = sum(r["timings"].get("total_s", 0.0) for r in results) + time.perf_counter() - t_start
    summary["ok"], summary["failed"] = len(rows), len(failures)
    summary["rss_mb"] = _peak_rss_mb()
    return summary


def extract_batch(batch, job: dict) -> dict:
    """Stages 3-4 for one batch on a worker: extract, write its region, commit its index rows.

    ``batch`` is a :class:`~jobs.plan.Batch` or, as the job sends it, a
    :class:`~jobs.plan.PackedBatch`.

    Idempotent: a batch already committed returns at once; a retry rewrites the same bytes to
    the same chunks. Returns a small summary (counts, audio seconds, timings).
    """
    from jobs import store
    from jobs.plan import as_batch

    t_start = time.perf_counter()
    batch = as_batch(batch)  # as stage_extract sends it: packed
    timings = _timings()
    summary = {"batch_id": batch.batch_id, "files": len(batch.files), "ok": 0, "failed": 0,
               "audio_s": batch.audio_seconds, "committed": False, "timings": timings}
    if store.is_committed(job["out"], batch.batch_id):
        return summary
    guard = _crash_guard(job, batch, batch.audio_seconds)
    with _worker_dsp(job) as (fs, xp), guard:
        if batch.kind == "long":
            rows, failures = _extract_long(batch, job, fs, xp, timings, guard)
        else:
            rows, failures = _extract_files(batch, job, fs, xp, timings, guard)
    t0 = time.perf_counter()
    summary["committed"] = store.commit_batch(job["out"], batch.batch_id, rows, failures, job["dims"])
    guard.done()
    timings["commit_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    summary["ok"], summary["failed"] = len(rows), len(failures)
    summary["rss_mb"] = _peak_rss_mb()
    return summary


# ---------------------------------------------------------------- the cluster


def _open_client(cfg, *, scheduler, security, n_workers: int, gpu: bool):
    """A Dask client (jobs.cluster): a LocalCluster on 127.0.0.1 by default, the scheduler at
    ``--scheduler``, or the cluster ``compute.cluster`` describes (SLURM, Kubernetes)."""
    from jobs.cluster import open_client

    return open_client(cfg.compute.cluster, n_workers=n_workers, threads_per_worker=1,
                       resources={"GPU": 1} if gpu else None, scheduler=scheduler, gpu=gpu,
                       security=security, preload=WORKER_MODULES)


# what a batch imports on a worker: local workers fork from a server that imported these once
# (pyarrow stays out: it starts a thread at import, and a process with threads must not fork)
WORKER_MODULES = ("jobs.extract", "jobs.compute", "jobs.store", "threadpoolctl", "soundfile", "soxr",
                  "zarr", "scipy.fft", "featurelib.framing", "featurelib.spectrum",
                  "featurelib.temporal", "featurelib.frequency")


def _resolve_device(device: str, cluster=None, scheduler: str | None = None) -> str:
    """``auto``: cuda where the job's workers have GPUs. A SLURM or Kubernetes cluster that the
    job starts asks for them in its config (the machine running audiofeat, a login node, has
    none to look at); otherwise they are this machine's (a local cluster, or a running
    scheduler's workers, which the job then checks)."""
    if device != "auto":
        return device
    if scheduler is None and cluster is not None and cluster.kind == "slurm" and cluster.slurm:
        return "cuda" if cluster.slurm.gpus_per_job else "cpu"
    if scheduler is None and cluster is not None and cluster.kind == "kubernetes" and cluster.kubernetes:
        return "cuda" if cluster.kubernetes.gpu_workers else "cpu"
    from jobs.cluster import gpu_available

    return "cuda" if gpu_available() else "cpu"


def warm_worker(n_fft: int) -> float:
    """Import what the tasks use (featurelib, scipy.fft, Zarr, Arrow, soundfile, soxr) on one
    worker while the coordinator plans, so that the first batch does not pay for it."""
    import numpy as np

    import featurelib.frequency  # noqa: F401
    import featurelib.temporal  # noqa: F401
    from featurelib.framing import stft_frames
    from jobs.compute import keep_freed_memory, one_blas_thread

    keep_freed_memory()
    t0 = time.perf_counter()
    with one_blas_thread():
        stft_frames(np.zeros(2 * n_fft, np.float32), n_fft=n_fft, hop_length=n_fft,
                    window=np.ones(n_fft), center=False)
        import pyarrow.ipc  # noqa: F401 - batch commits (Arrow tables built from buffers: no pandas)
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
        import zarr  # noqa: F401
    return time.perf_counter() - t0


def start_warm_up(client, n_fft: int) -> list:
    """One :func:`warm_worker` task per worker, not waited for (it overlaps with planning)."""
    workers = list(client.scheduler_info().get("workers", {}))
    return [client.submit(warm_worker, n_fft, workers=[w], allow_other_workers=False,
                          pure=False, key=f"warm-{i}-{os.urandom(4).hex()}")
            for i, w in enumerate(workers)]


def _scheduler_lost(exc: BaseException, client) -> bool:
    """Whether a task's error is the client's connection to the scheduler going away (Dask
    cancels every pending future then: ``FutureCancelledError``, reason
    ``scheduler-connection-lost``), not anything a file did."""
    import concurrent.futures

    if "scheduler-connection-lost" in str(exc):
        return True
    return isinstance(exc, concurrent.futures.CancelledError) and getattr(client, "status", "") != "running"


def stage_extract(client, plan, pending, job: dict, on_submitted=None, index=None, live=None):
    """Stages 3-4 on the cluster: one task per pending batch, with progress. ``on_submitted()``
    runs once every task is submitted, while they run; ``index`` (a :class:`jobs.store.FilesIndex`)
    receives each finished batch's committed rows, written while the other tasks run (stage 5).

    Returns ``(summaries, batch_failures)``; ``batch_failures`` are failure rows for the files of
    batches that failed as a whole (not committed, so a rerun tries them again).
    """

    from jobs.compute import FeatureSet
    from jobs.plan import MAX_SCRATCH_BYTES, PackedBatch, native_ranges, splits_exactly
    from jobs.progress import Progress

    pending_ids = {b.batch_id for b in pending}
    done = [b for b in plan.batches if b.batch_id not in pending_ids]
    workers = len(client.scheduler_info().get("workers", {}))
    _say(f"extract: {plural(len(pending), 'batch', 'batches')} to run on {plural(workers, 'worker')} "
         f"({len(done)} already committed)")
    # files counted: ``live`` (the plan's files still named and not replaced since: see
    # _live_files), so that a rerun after files went away or changed counts up to the inputs
    counted = None if live is None else {(f.batch_id, f.path) for f in live}

    def n_files(b) -> int:
        return len(b.files) if counted is None else sum((b.batch_id, f.path) in counted for f in b.files)

    def audio_s(b) -> float:  # the audio of its counted files (a committed batch keeps gone ones)
        return b.audio_seconds if counted is None else sum(
            f.duration_s for f in b.files if (b.batch_id, f.path) in counted)

    # inputs that failed before any batch (their header, or not found) count as done and failed
    # from the start: the progress's count of failures is then the summary's
    unread = len(plan.failures)
    progress = Progress((len(plan.files) if counted is None else len(counted)) + unread,
                        sum(audio_s(b) for b in plan.batches),
                        done_files=sum(n_files(b) for b in done) + unread,
                        done_audio_s=sum(audio_s(b) for b in done))
    progress.failed = unread
    token = os.urandom(4).hex()
    resources = {"GPU": 1} if job["device"] == "cuda" else None
    feature_set = FeatureSet.from_config(job["feature_config"], tables=job.get("tables"))
    clamped = any(b.part_frames for b in pending) and bool(feature_set.db_mels())
    futures = {}
    scratch_left = MAX_SCRATCH_BYTES  # for the native samples of files decoded in ranges
    part_audio = {}  # a split file's part -> (its batch id, its audio seconds), for the progress
    for batch in pending:  # plan order: long files first, so that they do not finish last
        packed, key = PackedBatch(batch), f"extract-batch-{batch.batch_id}-{token}"
        options = {"retries": 2, "pure": False, "resources": resources}
        ranges = batch.part_ranges() if batch.kind == "long" and batch.part_frames else []
        if len(ranges) > 1:  # a long file split across tasks
            name = f"{batch.batch_id}-{token}"
            source = ()  # a file that cannot seek exactly: one pass writes its samples first
            if not splits_exactly(batch.files[0], feature_set.sr):
                decoded = []  # a costly codec that seeks exactly: decoded in ranges first
                count = _native_range_count(batch, workers, feature_set, scratch_left)
                if count > 1:
                    scratch_left -= 4 * batch.files[0].frames
                    decoded = [client.submit(decode_native_range, packed, job, i, a, b,
                                             key=f"extract-decode-{name}-{i}", **options)
                               for i, (a, b) in enumerate(native_ranges(batch.files[0], count))]
                source = (client.submit(resample_part_source, packed, job, *decoded,
                                        key=f"extract-source-{name}", **options),)
            parts = [client.submit(extract_part, packed, job, i, *source, key=f"extract-part-{name}-{i}",
                                   **options) for i in range(len(ranges))]
            clamps = []
            if clamped:  # the file's maxima, then each part's second pass
                maxima = client.submit(file_maxima, *parts, key=f"extract-maxima-{name}", **options)
                clamps = [client.submit(clamp_part, packed, job, i, maxima, key=f"extract-clamp-{name}-{i}",
                                        **options) for i in range(len(ranges))]
            future = client.submit(finish_parts, packed, job, *parts, *clamps, key=key, **options)
            n = batch.files[0].n_frames
            part_audio.update({part: (batch.batch_id, batch.audio_seconds * (p1 - p0) / n)
                               for part, (p0, p1) in zip(parts, ranges)})
        else:
            future = client.submit(extract_batch, packed, job, key=key, **options)
        futures[future] = batch
    if on_submitted is not None:
        on_submitted()
    summaries, batch_failures, credited = [], [], {}
    watch = PausedWorkersWatch(client, on_workers=progress.restart_clock,
                               cluster_kind=job.get("cluster_kind"))
    try:
        return _collect(client, plan, job, futures, part_audio, done, progress, index, summaries,
                        batch_failures, credited, watch, n_files, audio_s)
    finally:
        watch.stop()


class PausedWorkersWatch:
    """Says once when the job waits on workers that run nothing: none connected to the scheduler
    (looked at once at the start, then every ``every_s`` seconds: a running scheduler whose
    workers were not started, or all died), or workers paused by Dask for memory while no task finished for ``quiet_s`` seconds
    (past its pause threshold they run nothing). Without a word, the job looked hung.
    ``seen()`` marks progress; ``command`` starts the note ("extract", "score"), ``smaller`` names
    the setting that makes tasks smaller."""

    # how a cluster's workers come, for the note that the job waits for them
    WORKERS_COME = {
        None: "start them with `dask worker ADDRESS`",
        "slurm": "they are SLURM jobs: queued or starting (see squeue), or ended at their walltime",
        "kubernetes": "they are pods: starting (see kubectl get pods), or gone",
    }

    def __init__(self, client, *, quiet_s: float = 60.0, every_s: float = 15.0, command: str = "extract",
                 smaller: str = "compute.batch_seconds", on_workers=None, cluster_kind=None):
        import threading

        self.client, self.quiet_s, self.last = client, quiet_s, time.monotonic()
        # called when workers connect after the job waited for them (the progress then times
        # its rate from there: the wait made the first ETAs hours long)
        self.on_workers = on_workers
        self.command, self.smaller = command, smaller
        self.workers_come = self.WORKERS_COME.get(cluster_kind, self.WORKERS_COME[None])
        self.said = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True,
                                        name="paused-workers")
        self._thread.start()

    def seen(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, every_s: float) -> None:
        first = True
        while first or not self._stop.wait(1.0 if "none" in self.said else every_s):
            first = False
            try:
                workers = self.client.scheduler_info().get("workers", {})
            except Exception:  # noqa: BLE001 - the cluster going away is said elsewhere
                continue
            if workers and "none" in self.said:  # back: said again if they all go again
                self.said.discard("none")
                if self.on_workers is not None:
                    self.on_workers()
            if not workers:
                if "none" not in self.said:
                    address = getattr(getattr(self.client, "scheduler", None), "address", None)
                    _say(f"{self.command}: note: no workers are connected to the scheduler"
                         + (f" at {address}" if address else "") + ": the job waits until one "
                         f"connects ({self.workers_come}; or stop with Ctrl-C: "
                         + ("what is committed is kept)" if self.command == "extract"
                            else "nothing is written)"))
                    self.said.add("none")
                continue
            if "paused" in self.said or time.monotonic() - self.last < self.quiet_s:
                continue
            paused = [w for w in workers.values() if str(w.get("status", "")).endswith("paused")]
            if paused:
                limit = max((w.get("memory_limit") or 0) for w in paused) / 2**20
                _say(f"{self.command}: note: {len(paused)} of {len(workers)} workers are paused by "
                     f"Dask for memory (over its pause threshold of a {limit:,.0f} MiB limit): they "
                     "run nothing until it falls, and the job waits for them; give workers more "
                     f"memory (--memory-limit, compute.cluster.memory_limit) or lower {self.smaller}")
                self.said.add("paused")


def _collect(client, plan, job, futures, part_audio, done, progress, index, summaries, batch_failures,
             credited, watch, n_files=len, audio_s=lambda b: b.audio_seconds):
    """The finished tasks of :func:`stage_extract`, as they come."""
    from distributed import as_completed

    from jobs.errors import OutputError, storage_error

    for future in as_completed([*futures, *part_audio]):
        watch.seen()
        if future in part_audio:  # a part of a split file: its audio shows now, the file at its commit
            batch_id, seconds = part_audio.pop(future)
            if future.status == "finished":
                credited[batch_id] = credited.get(batch_id, 0.0) + seconds
                progress.update(0, seconds)
            continue
        batch = futures.pop(future)
        audio_left = max(0.0, audio_s(batch) - credited.pop(batch.batch_id, 0.0))
        try:
            summary = future.result()
        except Exception as exc:  # noqa: BLE001 - the batch's files become failures
            if type(exc).__name__ == "WorkerSetupError":  # no file's fault: stop, lose nothing
                from jobs.errors import UsageError

                client.cancel([*futures, *part_audio])
                progress.close()
                raise UsageError(f"{exc}; nothing was written down as failed (run the same "
                                 "command again once the workers can run it)") from None
            full = storage_error(exc)
            lost = full is None and _scheduler_lost(exc, client)
            if full is not None or lost:  # no file's fault: stop, lose nothing, go on later
                from jobs.errors import ClusterLostError, quiet_lost_client

                client.cancel([*futures, *part_audio])
                progress.close()
                kept = sum(1 for s in summaries if s.get("committed")) + len(done)
                said = " ".join(str(exc).split())
                kept = f"{kept} of {len(plan.batches)} batches are committed and kept"
                if lost:
                    quiet_lost_client()
                    raise ClusterLostError(
                        f"lost the cluster's scheduler {client.scheduler.address} mid-run "
                        f"({type(exc).__name__}: {said}); {kept}. Run the same command again once "
                        "the scheduler is back: it goes on from them") from None
                raise OutputError(f"{full} ({said}): the job stopped; {kept}. Free space (or choose "
                                  "another --out) and run the same command again: it goes on from "
                                  "them") from exc
            stage = getattr(exc, "stage", "compute")
            if type(exc).__name__ == "KilledWorker":  # Dask's words name a task and a worker
                exc = BatchError(stage, "KilledWorker", "every worker process that ran this "
                                 "file's batch died (a crash in a decoder's C code, or out of "
                                 "memory), and it was given up; see the workers' logs")
            batch_failures += [_fail_row(f, stage, exc) for f in batch.files]
            progress.update(n_files(batch), audio_left, failed=n_files(batch))
            if index is not None:
                index.add(batch.batch_id, None)
            continue
        summaries.append(summary)
        progress.update(n_files(batch), audio_left, failed=min(summary["failed"], n_files(batch)))
        if index is not None:  # the coordinator waits anyway: index the batch's rows now
            from jobs import store

            try:
                pair = store.read_batch(job["out"], batch.batch_id)
            except Exception:  # noqa: BLE001 - its turn in the index reads it again and reports
                index.done(batch.batch_id)
            else:
                index.add(batch.batch_id, pair)
    del future  # hold no result: the workers may go
    progress.close()
    return summaries, batch_failures, progress.rate_hours_per_s()


def _redacted(value):
    """A JSON-able value with credentials masked in every string (URLs in `input`, ...)."""
    from jobs.redact import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def files_index(cfg, plan, meta, pending):
    """Stage 5's writer, made before the batches run: see :class:`jobs.store.FilesIndex`."""
    from jobs import store

    return store.FilesIndex(_out(cfg), [b.batch_id for b in plan.batches], meta["dims"],
                            pending=[b.batch_id for b in pending], drop=set(meta.get("dropped", ())),
                            superseded=_superseded(meta))


def stage_index(cfg, plan, meta, *, feature_cfg, config_hash, extra_failures, started, summaries,
                cluster_info, timeline, t_start, index):
    """Stage 5: the rest of files.parquet (``index``, fed as the batches committed), the
    failures table and the manifest."""
    from jobs import store

    out = _out(cfg)
    committed = store.committed_batches(out) & {b.batch_id for b in plan.batches}
    n_files, failures, audio_s = index.finish(plan.failures + extra_failures)
    store.consolidate(out)
    wall_s = time.perf_counter() - t_start
    run_audio_s = sum(s.get("audio_s", 0.0) for s in summaries)
    run_files = sum(s.get("ok", 0) for s in summaries)
    totals = {}
    for s in summaries:
        for k, v in s["timings"].items():
            totals[k] = totals.get(k, 0.0) + v
    manifest = {
        "audiofeat_version": VERSION,
        "config": _redacted(cfg.model_dump(mode="json")),
        "feature_config": feature_cfg,
        "config_hash": config_hash,
        "plan_id": meta["plan_id"],
        "plan_revision": meta.get("plan_revision", 0),
        "versions": _versions(),
        "started": started,
        "finished": _now(),
        "complete": len(committed) == len(plan.batches),
        "counts": {"inputs": meta["n_inputs"], "files": n_files,
                   "failures": failures.num_rows, "batches": len(plan.batches),
                   "batches_run": len(summaries), "total_frames": plan.total_frames},
        "audio_hours": audio_s / 3600.0,
        "wall_s": wall_s,
        # what this run did per second of its own wall time (a resumed run ran only some batches:
        # the store's totals over its time overstated it)
        "throughput": {"audio_hours_per_s": run_audio_s / 3600.0 / wall_s if wall_s > 0 else None,
                       "files_per_s": run_files / wall_s if wall_s > 0 else None,
                       "audio_hours_this_run": run_audio_s / 3600.0, "files_this_run": run_files},
        "task_seconds": totals,
        "peak_rss_mb": {"coordinator": _peak_rss_mb(),
                        "largest_worker": max((s.get("rss_mb", 0.0) for s in summaries), default=None)},
        "coordinator_seconds": timeline,
        "cluster": cluster_info,
        "plan": {k: meta[k] for k in ("chunk_frames", "batch_seconds", "min_batches",
                                      "block_seconds", "total_frames")},
    }
    store.write_json(manifest, out, "manifest.json")
    if manifest["complete"]:
        from jobs.outdir import as_outdir

        as_outdir(out).remove(".parts")  # split files' spills: each was removed at its commit
    return n_files, failures, manifest


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "zarr", "dask", "distributed", "soundfile", "soxr", "librosa",
                 "pyarrow", "numcodecs"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _tables(fc: dict) -> dict:
    """Window and mel bases for the tasks; a window featurelib does not know is a usage error."""
    from featurelib import ParameterError
    from featurelib.framing import get_window
    from jobs.compute import FeatureSet

    try:
        get_window(fc["window"], fc["win_length"], n_fft=fc["n_fft"])
    except ParameterError as exc:
        raise UsageError(f"frames.window: {exc}") from None
    fs = FeatureSet.from_config(fc)
    try:
        fs.tables = fs.make_tables()
    except Exception as exc:  # featurelib's or librosa's ParameterError: a mel setting
        if type(exc).__name__ != "ParameterError":  # that jobs.config let through
            raise
        raise UsageError(f"features: {exc}") from None
    for name, empty in fs.empty_mel_bands().items():
        _say(f"extract: note: {empty} of the {fs.features[name]['n_mels']} mel bands of {name} are empty "
             f"(no FFT bin at {fs.sr} Hz with n_fft {fs.n_fft} falls in them; they are always 0): "
             "fewer n_mels, or a larger n_fft, give every band a bin")
    return fs.tables


def _out(cfg):
    """The run's output location (:class:`jobs.outdir.OutDir`: a folder or an fsspec URL)."""
    from jobs.outdir import OutDir

    return OutDir(cfg.out, getattr(cfg, "out_storage_options", None))


# ================================================================ the whole job


def run_extract(cfg, *, overwrite: bool = False, scheduler: str | None = None, security=None,
                log=None) -> int:
    """discover -> plan -> extract -> write -> index; returns the exit status.

    ``cfg``: a :class:`jobs.config.JobConfig`, the path of a YAML config, or a mapping of its
    sections (validated here, also after a notebook edited the loaded config). ``log``: a
    callable given each message line, as ``run_train`` and ``run_score`` take (default: notes
    to stderr, the outcome to stdout); the live progress lines still go to stderr.

    The cluster starts (and its workers warm up) while the coordinator probes the headers.
    """

    from jobs.config import as_job_config, config_hash, feature_config

    cfg = as_job_config(cfg)  # also a YAML path or a mapping; fields set after loading checked
    if cfg.input is None:
        raise UsageError("input: no input given (set `input:` in the config or pass --input)")
    if cfg.out is None:
        raise UsageError("out: no run directory given (set `out:` in the config or pass --out)")
    started, t_start = _now(), time.perf_counter()
    fc = feature_config(cfg)
    chash = config_hash(fc)
    device = _resolve_device(cfg.compute.device, cfg.compute.cluster, scheduler)
    if device == "cuda" and scheduler is None and cfg.compute.cluster.kind == "local":
        from jobs.cluster import gpu_available

        if not gpu_available():
            raise UsageError("compute.device: cuda, but CuPy sees no CUDA GPU on this machine "
                             "(use device: auto or cpu, or --scheduler with GPU workers)")
    out = _out(cfg)
    if out.location.startswith("memory://") and scheduler is None and cfg.compute.cluster.kind == "local":
        raise UsageError("out: a memory:// filesystem lives in one process, which the local "
                         "cluster's worker processes do not share; use --scheduler with an "
                         "in-process cluster (LocalCluster(processes=False)), or another URL")
    from jobs.cluster import check_client_settings
    from jobs.discover import check_inputs

    check_inputs(cfg.input)  # (before the run folder: a typo left .lock and an empty store)
    # what the cluster would refuse, told before the output is touched (a bad address, too
    # many local workers: a store planned for nothing would then refuse the corrected command)
    check_client_settings(cfg.compute.cluster, n_workers=cfg.compute.workers, scheduler=scheduler,
                          security=security, reach=True)
    say = log or _print_stderr
    if cfg.compute.workers and (scheduler or cfg.compute.cluster.kind == "address"):
        say(f"extract: note: compute.workers / --workers ({cfg.compute.workers}) apply to the local "
            "cluster; a running scheduler's workers are what they are (start more to add them)")
    from jobs.cluster import one_job_at_a_time
    from jobs.outdir import run_lock

    with one_job_at_a_time(lambda line: say(f"extract: {line}")):
        started, t_start = _now(), time.perf_counter()  # (a wait for another job's end not counted)
        _LOG["fn"] = log
        try:
            lock = run_lock(out, "extract")
            try:
                return _run_locked(cfg, overwrite=overwrite, scheduler=scheduler, security=security,
                                   started=started, t_start=t_start, fc=fc, chash=chash, device=device)
            finally:
                lock.close()
        finally:
            _LOG["fn"] = None


def _run_locked(cfg, *, overwrite, scheduler, security, started, t_start, fc, chash, device) -> int:
    import contextvars

    from jobs import store

    out = _out(cfg)
    timeline = {}

    def mark(name, t0):
        timeline[name] = round(time.perf_counter() - t0, 3)
        return time.perf_counter()

    t = time.perf_counter()
    discovery = stage_discover(cfg)
    if discovery.skipped:
        from jobs.discover import skipped_note

        _say(f"extract: {skipped_note(discovery.skipped)}")
    t = mark("discover_s", t)
    found = stored_plan(cfg, discovery, config_hash=chash, overwrite=overwrite)
    if found is not None:
        plan, meta = found
        pending = [b for b in plan.batches if b.batch_id not in store.committed_batches(out)]
        manifest = store.read_json(out, "manifest.json")
        if (not pending and manifest and manifest.get("plan_id") == meta["plan_id"]
                and manifest.get("plan_revision", 0) == meta.get("plan_revision", 0) and manifest.get("complete")):
            counts = manifest["counts"]
            _result(f"extract: nothing to do: {out} is complete ({counts['files']} files, "
                  f"{counts['failures']} failed)")
            return EXIT_SOME_FAILED if counts["failures"] else EXIT_OK
    if scheduler is None and discovery.paths and (found is None or pending):
        from jobs.cluster import prestart_local_workers

        # local workers fork from a server that imports their modules on the other core now,
        # while this process probes and plans (a rerun with nothing to do has returned above,
        # without starting it; finding no stored plan costs no import)
        prestart_local_workers(cfg.compute.cluster, preload=WORKER_MODULES)
    from concurrent.futures import ThreadPoolExecutor

    stack = contextlib.ExitStack()
    summaries, batch_failures, cluster_info, index = [], [], {}, None
    client, warming, starting = None, [], None
    # the client is entered in the starting thread and left here: both in one context (its
    # "current client" is a context variable)
    cluster_context = contextvars.copy_context()
    try:
        if found is None or pending:
            n_workers = cfg.compute.workers or os.cpu_count() or 1
            if found is not None:  # no more workers than tasks (a split long file's parts count)
                n_workers = min(n_workers, sum(b.n_tasks for b in pending))
            t_cluster = time.perf_counter()

            def start_cluster():
                # in a thread: the cluster starts (and its workers warm up) while this thread
                # probes the headers and writes the plan
                c = stack.enter_context(_open_client(cfg, scheduler=scheduler, security=security,
                                                     n_workers=n_workers, gpu=device == "cuda"))
                timeline["cluster_start_s"] = round(time.perf_counter() - t_cluster, 3)
                return c, start_warm_up(c, fc["n_fft"])

            starter = ThreadPoolExecutor(1, thread_name_prefix="cluster")
            starting = starter.submit(cluster_context.run, start_cluster)
            starter.shutdown(wait=False)
        if found is None:
            prober = None
            if starting is not None and _probes_on_workers(cfg, discovery.paths):
                prober, _ = starting.result()  # the headers are read on the cluster once it is up
            plan, meta = new_plan(cfg, discovery, feature_cfg=fc, config_hash=chash, client=prober)
            pending = list(plan.batches)
            t = mark("plan_s", t)
        # the window and mel tables import librosa (0.7 CPU-s): after the plan, while the
        # workers start and warm up (in a thread beside the plan, the import and the probe
        # slowed each other down through the GIL)
        tables = None
        if found is None or pending:
            tables = _tables(fc)
            t = mark("tables_s", t)
        if starting is not None:
            client, warming = starting.result()
            dashboard, shown = dashboard_line(client, "extract")
            cluster_info = {"scheduler": client.scheduler.address, "dashboard": dashboard,
                            "workers": len(client.scheduler_info().get("workers", {}))}
            _say(shown)
            t = mark("cluster_wait_s", t)  # what planning did not hide of the cluster's start
        live = _live_files(plan, meta)
        _say(f"extract: {len(live) + len(plan.failures)} inputs, {len(live)} readable, "
             f"{sum(f.duration_s for f in live) / 3600:.2f} h of audio in "
             f"{plural(len(plan.batches), 'batch', 'batches')}" + (" (plan reused from an earlier run)" if found else ""))
        if not plan.files and not plan.failures:
            from jobs.redact import redact

            named = cfg.input if isinstance(cfg.input, list) else [cfg.input]
            _say(f"extract: note: no audio files found in {', '.join(redact(str(i)) for i in named)} "
                 "(a folder is searched for the extensions libsndfile reads: .wav, .flac, .ogg, "
                 ".opus, .mp3, .aiff, ...)")
        if pending:
            job = {"out": out, "feature_config": fc, "dims": meta["dims"], "device": device,
                   "cluster_kind": None if scheduler else cfg.compute.cluster.kind,
                   "tables": tables, "hang_seconds": cfg.compute.hang_seconds}
            index = files_index(cfg, plan, meta, pending)
            try:
                summaries, batch_failures, rate = stage_extract(client, plan, pending, job, index=index,
                                                                live=live)
            except BaseException:  # stopped (a full disk, Ctrl-C): no half-written index left
                index.abort()
                raise
            cluster_info["audio_hours_per_s"] = rate
            with contextlib.suppress(Exception):  # batch-queue workers come after the start
                cluster_info["workers"] = max(cluster_info["workers"],
                                              len(client.scheduler_info().get("workers", {})))
            del warming
            t = mark("extract_s", t)
    finally:
        t = time.perf_counter()
        if starting is not None and client is None:  # planning failed: wait, then close it
            import concurrent.futures

            concurrent.futures.wait([starting])
        cluster_context.run(stack.close)
        if client is not None:
            mark("cluster_stop_s", t)
    if index is None:  # nothing ran: every batch was committed by an earlier run
        index = files_index(cfg, plan, meta, [])
    n_files, failures, manifest = stage_index(
        cfg, plan, meta, feature_cfg=fc, config_hash=chash, extra_failures=batch_failures,
        started=started, summaries=summaries, cluster_info=cluster_info, timeline=timeline,
        t_start=t_start, index=index)
    _result(f"extract: {plural(n_files, 'file')} stored, {failures.num_rows} failed, "
          f"{manifest['audio_hours']:.2f} h of audio in {time.perf_counter() - t_start:.1f} s -> {out}")
    if failures.num_rows:
        _result(f"extract: failures listed in {out.display_join('failures.parquet')}")
    return EXIT_SOME_FAILED if failures.num_rows else EXIT_OK
