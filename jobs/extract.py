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
import os
import sys
import time

from jobs.errors import EXIT_OK, EXIT_SOME_FAILED, UsageError

__all__ = [
    "add_arguments", "main", "run_extract", "stage_discover", "stage_plan", "extract_batch",
    "stage_extract", "stage_index", "BatchError",
]

VERSION = "0.1.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="job config (YAML)")
    parser.add_argument("--input", action="append", metavar="PATH",
                        help="input folder, glob, list file or URL (repeatable; replaces the config's)")
    parser.add_argument("--out", metavar="DIR", help="run directory (replaces the config's)")
    parser.add_argument("--scheduler", metavar="ADDR",
                        help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing store made with a different config or inputs")
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
    if getattr(args, "input", None):
        cfg.input = [os.path.abspath(p) if "://" not in p else p for p in args.input]
    if getattr(args, "out", None):
        cfg.out = os.path.abspath(args.out)
    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise UsageError("--workers: must be at least 1")
        cfg.compute.workers = args.workers


def security_from_args(args):
    files = [getattr(args, k, None) for k in ("tls_ca", "tls_cert", "tls_key")]
    if not any(files):
        return None
    if not all(files):
        raise UsageError("--tls-ca, --tls-cert and --tls-key go together")
    for name, path in zip(("--tls-ca", "--tls-cert", "--tls-key"), files):
        if not os.path.isfile(path):
            raise UsageError(f"{name}: no such file: {path}")
    from distributed.security import Security

    return Security(tls_ca_file=files[0], tls_client_cert=files[1], tls_client_key=files[2],
                    require_encryption=True)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def stage_plan(cfg, discovery, *, feature_cfg: dict, config_hash: str, overwrite: bool = False):
    """Stage 2: headers -> batches and regions; reuse the plan stored in OUT when it matches.

    Returns ``(plan, plan_meta, reused)``. Writes the store template and the plan when new.
    """
    from jobs import store
    from jobs.config import feature_dims
    from jobs.plan import (
        DEFAULT_CHUNK_FRAMES,
        make_batches,
        plan_from_tables,
        plan_to_tables,
        probe_all,
    )

    out = cfg.out
    plan_id = _plan_id(config_hash, discovery)
    meta = store.read_json(os.path.join(out, ".plan.json"))
    attrs = store.store_attrs(out)
    if attrs is not None and attrs.get("config_hash") != config_hash and not overwrite:
        raise UsageError(f"{out} holds a store made with a different feature config "
                         f"(hash {str(attrs.get('config_hash'))[:12]}, now {config_hash[:12]}); "
                         "pass --overwrite to replace it, or choose another --out")
    if meta is not None and meta.get("config_hash") == config_hash and not overwrite:
        if meta.get("plan_id") != plan_id:
            raise UsageError(f"the inputs differ from those of the run in {out} "
                             f"({meta.get('n_inputs')} inputs then, "
                             f"{len(discovery.paths) + len(discovery.failures)} now); "
                             "pass --overwrite to start over, or choose another --out")
        if attrs is not None:
            import pyarrow.parquet as pq

            table = pq.read_table(os.path.join(out, ".plan.parquet"))
            plan = plan_from_tables(table, meta["batches"], meta["failures"], meta["total_frames"],
                                    meta["chunk_frames"])
            return plan, meta, True
    # a new plan: clear what an earlier run of another config or input set left
    if overwrite or meta is not None or attrs is not None:
        store.clear_run(out)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    files, probe_failures = probe_all(discovery.paths)
    compute = cfg.compute
    chunk = compute.chunk_frames or DEFAULT_CHUNK_FRAMES
    plan = make_batches(files, sr=cfg.audio.sr, hop_length=cfg.frames.hop_length,
                        batch_seconds=compute.batch_seconds, min_batches=compute.min_batches,
                        block_seconds=compute.block_seconds, chunk_frames=chunk,
                        failures=discovery.failures + probe_failures)
    probe_s = time.perf_counter() - t0
    dims = feature_dims(cfg.features)
    store.create_store(out, feature_config=feature_cfg, config_hash=config_hash, dims=dims,
                       total_frames=plan.total_frames, chunk_frames=chunk, version=VERSION)
    table, batches = plan_to_tables(plan)
    store.write_table(table, os.path.join(out, ".plan.parquet"))
    meta = {
        "plan_id": plan_id, "config_hash": config_hash, "n_inputs": len(discovery.paths) + len(discovery.failures),
        "batches": batches, "failures": plan.failures, "total_frames": plan.total_frames,
        "chunk_frames": chunk, "batch_seconds": compute.batch_seconds,
        "min_batches": compute.min_batches, "block_seconds": compute.block_seconds,
        "dims": dims, "probe_s": probe_s,
    }
    store.write_json(meta, os.path.join(out, ".plan.json"))  # the plan's commit
    return plan, meta, False


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
    return {"path": f.path, "stage": stage, "error_type": error_type, "message": message}


def _file_row(f, moments: dict) -> dict:
    row = {"file_id": f.file_id, "path": f.path, "size_bytes": f.size_bytes, "format": f.format,
           "subtype": f.subtype, "sample_rate": f.sample_rate, "channels": f.channels,
           "duration_s": f.duration_s, "n_frames": f.n_frames, "frame_start": f.frame_start,
           "frame_stop": f.frame_stop}
    for name in sorted(moments):
        m = moments[name]
        mean, std = m.mean.tolist(), m.std.tolist()
        if len(mean) == 1:
            row[f"{name}_mean"], row[f"{name}_std"] = mean[0], std[0]
        else:
            row.update({f"{name}_mean_{i}": v for i, v in enumerate(mean)})
            row.update({f"{name}_std_{i}": v for i, v in enumerate(std)})
    return row


def _write(out, arrays, start, timings):
    from jobs import store

    t0 = time.perf_counter()
    try:
        store.write_rows(out, arrays, start)
    except Exception as exc:  # noqa: BLE001 - the whole batch fails, with its stage
        raise BatchError("write", type(exc).__name__, str(exc)) from exc
    timings["write_s"] += time.perf_counter() - t0


def _extract_files(batch, job, fs, xp, timings):
    """A batch of whole files: decode each, compute in padded groups, fill the region."""
    import numpy as np

    from jobs.compute import MAX_BUFFER_FRAMES, Moments, compute_segments, decode, segment_buffers

    dims = job["dims"]
    region = {n: np.zeros((batch.region_stop - batch.region_start, d), np.float32) for n, d in dims.items()}
    rows, failures = [], []

    def run_group(group):
        if not group:
            return
        signals = [y for _, y in group]
        t0 = time.perf_counter()
        try:
            zbuf, ebuf, n_valid = segment_buffers(signals, fs)
            feats = compute_segments(zbuf, ebuf, fs, maxima=None, n_valid=n_valid, xp=xp)
            results = [({n: a[i] for n, a in feats.items()}, n_valid[i]) for i in range(len(group))]
        except Exception:  # noqa: BLE001 - find the file that breaks the group, keep the rest
            results = []
            for _, y in group:
                try:
                    zb, eb, nv = segment_buffers([y], fs)
                    one = compute_segments(zb, eb, fs, maxima=None, n_valid=nv, xp=xp)
                    results.append(({n: a[0] for n, a in one.items()}, nv[0]))
                except Exception as exc:  # noqa: BLE001
                    results.append((exc, 0))
        timings["dsp_s"] += time.perf_counter() - t0
        for (f, _), (feats_i, nv) in zip(group, results):
            if isinstance(feats_i, BaseException):
                failures.append(_fail_row(f, "compute", feats_i))
                continue
            off = f.frame_start - batch.region_start
            moments = {}
            for name, data in feats_i.items():
                region[name][off:off + f.n_frames] = data[:nv]
                moments[name] = Moments(data.shape[-1])
                moments[name].add(data[:nv])
            rows.append(_file_row(f, moments))

    group, longest = [], 0
    for f in batch.files:  # sorted by length
        t0, r0 = time.perf_counter(), timings["resample_s"]
        try:
            y = decode(f.path, sr=fs.sr, expected_frames=f.frames, timings=timings)
            if y.shape[0] != f.n_samples:
                raise BatchError("decode", "LengthMismatch",
                                 f"planned {f.n_samples} samples, decoded {y.shape[0]}")
        except Exception as exc:  # noqa: BLE001 - one bad file never stops its batch
            failures.append(_fail_row(f, "decode", exc))
            continue
        finally:  # decode_s excludes the resampling, counted apart
            timings["decode_s"] += time.perf_counter() - t0 - (timings["resample_s"] - r0)
        n_frames = 1 + y.shape[0] // fs.hop_length
        if group and (len(group) + 1) * max(longest, n_frames) > MAX_BUFFER_FRAMES:
            run_group(group)
            group, longest = [], 0
        group.append((f, y))
        longest = max(longest, n_frames)
    run_group(group)
    _write(job["out"], region, batch.region_start, timings)
    return rows, failures


def _extract_long(batch, job, fs, xp, timings):
    """One long file streamed in blocks of whole chunks (two passes when top_db needs its max)."""
    import numpy as np

    from jobs.compute import BlockReader, Moments, ResampledStream, compute_segments, mel_maxima

    (f,) = batch.files
    dims, out = job["dims"], job["out"]
    step = batch.block_frames
    blocks = [(f0, min(f0 + step, f.n_frames)) for f0 in range(0, f.n_frames, step)]
    try:
        maxima = None
        if fs.db_mels():
            maxima = {}
            with ResampledStream(f.path, sr=fs.sr, expected_frames=f.frames) as stream:
                reader = BlockReader(stream, fs)
                for f0, f1 in blocks:
                    t0 = time.perf_counter()
                    zrow, _ = reader.block(f0, f1)
                    t1 = time.perf_counter()
                    for key, value in mel_maxima(zrow[None], [f1 - f0], fs, xp).items():
                        maxima[key] = max(maxima.get(key, value), value)
                    timings["decode_s"] += t1 - t0
                    timings["dsp_s"] += time.perf_counter() - t1
        moments = {n: Moments(d) for n, d in dims.items()}
        with ResampledStream(f.path, sr=fs.sr, expected_frames=f.frames) as stream:
            reader = BlockReader(stream, fs)
            for f0, f1 in blocks:
                t0 = time.perf_counter()
                zrow, erow = reader.block(f0, f1)
                t1 = time.perf_counter()
                timings["decode_s"] += t1 - t0
                feats = compute_segments(zrow[None], None if erow is None else erow[None], fs,
                                         maxima=maxima, n_valid=[f1 - f0], xp=xp)
                timings["dsp_s"] += time.perf_counter() - t1
                arrays = {}
                for name, data in feats.items():
                    rows_ = data[0, :f1 - f0]
                    moments[name].add(rows_)
                    if f1 == f.n_frames:  # the last block also fills the region's padding
                        pad = batch.region_stop - batch.region_start - f1
                        rows_ = np.concatenate([rows_, np.zeros((pad, rows_.shape[1]), np.float32)])
                    arrays[name] = rows_
                _write(out, arrays, batch.region_start + f0, timings)
    except BatchError:
        raise
    except Exception as exc:  # noqa: BLE001
        from jobs.compute import DecodeError

        stage = "decode" if isinstance(exc, (DecodeError, OSError, RuntimeError)) and not isinstance(
            exc, MemoryError) else "compute"
        return [], [_fail_row(f, stage, exc)]
    return [_file_row(f, moments)], []


def extract_batch(batch, job: dict) -> dict:
    """Stages 3-4 for one batch on a worker: extract, write its region, commit its index rows.

    Idempotent: a batch already committed returns at once; a retry rewrites the same bytes to
    the same chunks. Returns a small summary (counts, audio seconds, timings).
    """
    from threadpoolctl import threadpool_limits

    from jobs import store
    from jobs.compute import FeatureSet, array_namespace_for

    t_start = time.perf_counter()
    timings = {"decode_s": 0.0, "resample_s": 0.0, "dsp_s": 0.0, "write_s": 0.0, "commit_s": 0.0}
    summary = {"batch_id": batch.batch_id, "files": len(batch.files), "ok": 0, "failed": 0,
               "audio_s": batch.audio_seconds, "committed": False, "timings": timings}
    if os.path.isdir(store.batch_dir(job["out"], batch.batch_id)):
        return summary
    with threadpool_limits(1):
        fs = FeatureSet.from_config(job["feature_config"])
        xp = array_namespace_for(job["device"])
        if batch.kind == "long":
            rows, failures = _extract_long(batch, job, fs, xp, timings)
        else:
            rows, failures = _extract_files(batch, job, fs, xp, timings)
    t0 = time.perf_counter()
    summary["committed"] = store.commit_batch(job["out"], batch.batch_id, rows, failures, job["dims"])
    timings["commit_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    summary["ok"], summary["failed"] = len(rows), len(failures)
    return summary


# ---------------------------------------------------------------- the cluster


def _open_client(cfg, *, scheduler, security, n_workers: int, gpu: bool):
    """A Dask client: jobs.cluster.open_client when present, else a LocalCluster on 127.0.0.1."""
    try:
        from jobs.cluster import open_client
    except ImportError:
        open_client = None
    if open_client is not None:
        import inspect

        kwargs = {"n_workers": n_workers, "threads_per_worker": 1, "scheduler": scheduler,
                  "gpu": gpu}
        if security is not None:
            kwargs["security"] = security
        params = inspect.signature(open_client).parameters
        if "resources" in params and gpu:
            kwargs["resources"] = {"GPU": 1}
        kwargs = {k: v for k, v in kwargs.items() if k in params or any(
            p.kind is p.VAR_KEYWORD for p in params.values())}
        return open_client(cfg.compute.cluster, **kwargs)
    return _local_client(scheduler=scheduler, security=security, n_workers=n_workers, gpu=gpu)


def _local_client(*, scheduler, security, n_workers, gpu):
    import contextlib

    from distributed import Client, LocalCluster

    @contextlib.contextmanager
    def manager():
        if scheduler:
            with Client(scheduler, security=security, timeout="30s") as client:
                yield client
            return
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address="127.0.0.1:0",
                          resources={"GPU": 1} if gpu else None) as cluster, Client(cluster) as client:
            yield client

    return manager()


def _resolve_device(device: str) -> str:
    if device == "auto":
        try:
            from jobs.cluster import gpu_available
        except ImportError:
            return "cpu"
        return "cuda" if gpu_available() else "cpu"
    return device


def stage_extract(cfg, plan, pending, job: dict, *, scheduler=None, security=None):
    """Stage 3-4 on the cluster: one task per pending batch, with progress.

    Returns ``(summaries, batch_failures, cluster_info)``; ``batch_failures`` are failure rows for
    the files of batches that failed as a whole (not committed, so a rerun tries them again).
    """
    from distributed import as_completed

    from jobs.progress import Progress

    gpu = job["device"] == "cuda"
    n_workers = cfg.compute.workers or os.cpu_count() or 1
    n_workers = max(1, min(n_workers, len(pending)))
    total_files = len(plan.files)
    pending_ids = {b.batch_id for b in pending}
    done_files = sum(len(b.files) for b in plan.batches if b.batch_id not in pending_ids)
    done_audio = sum(b.audio_seconds for b in plan.batches if b.batch_id not in pending_ids)
    summaries, batch_failures = [], []
    with _open_client(cfg, scheduler=scheduler, security=security, n_workers=n_workers,
                      gpu=gpu) as client:
        info = {"scheduler": client.scheduler.address, "dashboard": client.dashboard_link,
                "workers": len(client.scheduler_info().get("workers", {}))}
        _say(f"extract: dashboard {client.dashboard_link}")
        _say(f"extract: {len(pending)} batches to run on {info['workers'] or '?'} workers "
             f"({len(plan.batches) - len(pending)} already committed)")
        progress = Progress(total_files, sum(b.audio_seconds for b in plan.batches),
                            done_files=done_files, done_audio_s=done_audio)
        token = os.urandom(4).hex()
        resources = {"GPU": 1} if gpu else None
        futures = {}
        for batch in pending:  # long files first (plan order), so they do not finish last
            fut = client.submit(extract_batch, batch, job, key=f"extract-batch-{batch.batch_id}-{token}",
                                retries=2, pure=False, resources=resources)
            futures[fut] = batch
        for fut in as_completed(futures):
            batch = futures[fut]
            try:
                summary = fut.result()
            except Exception as exc:  # noqa: BLE001 - the batch's files become failures
                stage = getattr(exc, "stage", "compute")
                for f in batch.files:
                    batch_failures.append(_fail_row(f, stage, exc))
                progress.update(len(batch.files), batch.audio_seconds, failed=len(batch.files))
                continue
            summaries.append(summary)
            progress.update(len(batch.files), batch.audio_seconds, failed=summary["failed"])
        progress.close()
        info["audio_hours_per_s"] = progress.rate_hours_per_s()
    return summaries, batch_failures, info


def stage_index(cfg, plan, meta, *, feature_cfg, config_hash, extra_failures, started, summaries,
                cluster_info, wall_s):
    """Stage 5: gather the committed batches into files/failures tables and the manifest."""
    from jobs import store

    out = cfg.out
    committed = sorted(store.committed_batches(out) & {b.batch_id for b in plan.batches})
    files, failures = store.gather(out, committed, meta["dims"], plan.failures + extra_failures)
    store.write_table(files, os.path.join(out, "files.parquet"))
    store.write_table(failures, os.path.join(out, "failures.parquet"))
    import warnings

    import zarr

    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec" (yet)
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(os.path.join(out, store.STORE_NAME))
    audio_s = float(sum(files.column("duration_s").to_pylist())) if files.num_rows else 0.0
    totals = {}
    for s in summaries:
        for k, v in s["timings"].items():
            totals[k] = totals.get(k, 0.0) + v
    manifest = {
        "audiofeat_version": VERSION,
        "config": cfg.model_dump(mode="json"),
        "feature_config": feature_cfg,
        "config_hash": config_hash,
        "plan_id": meta["plan_id"],
        "versions": _versions(),
        "started": started,
        "finished": _now(),
        "complete": len(committed) == len(plan.batches),
        "counts": {"inputs": meta["n_inputs"], "files": files.num_rows,
                   "failures": failures.num_rows, "batches": len(plan.batches),
                   "batches_run": len(summaries), "total_frames": plan.total_frames},
        "audio_hours": audio_s / 3600.0,
        "wall_s": wall_s,
        "throughput": {"audio_hours_per_s": audio_s / 3600.0 / wall_s if wall_s > 0 else None,
                       "files_per_s": files.num_rows / wall_s if wall_s > 0 else None},
        "task_seconds": totals,
        "cluster": cluster_info,
        "plan": {k: meta[k] for k in ("chunk_frames", "batch_seconds", "min_batches",
                                      "block_seconds", "total_frames")},
    }
    store.write_json(manifest, os.path.join(out, "manifest.json"))
    return files, failures, manifest


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


def _check_window(cfg) -> None:
    from featurelib import ParameterError
    from featurelib.framing import get_window

    try:
        get_window(cfg.frames.window, cfg.frames.win_length or cfg.frames.n_fft, n_fft=cfg.frames.n_fft)
    except ParameterError as exc:
        raise UsageError(f"frames.window: {exc}") from None


# ================================================================ the whole job


def run_extract(cfg, *, overwrite: bool = False, scheduler: str | None = None, security=None) -> int:
    """discover -> plan -> extract -> write -> index; returns the exit status."""
    from jobs import store
    from jobs.config import config_hash, feature_config

    if cfg.input is None:
        raise UsageError("input: no input given (set `input:` in the config or pass --input)")
    if cfg.out is None:
        raise UsageError("out: no run directory given (set `out:` in the config or pass --out)")
    started, t0 = _now(), time.perf_counter()
    _check_window(cfg)
    fc = feature_config(cfg)
    chash = config_hash(fc)
    device = _resolve_device(cfg.compute.device)

    discovery = stage_discover(cfg)
    plan, meta, reused = stage_plan(cfg, discovery, feature_cfg=fc, config_hash=chash,
                                    overwrite=overwrite)
    out = cfg.out
    committed = store.committed_batches(out)
    pending = [b for b in plan.batches if b.batch_id not in committed]
    manifest = store.read_json(os.path.join(out, "manifest.json"))
    if not pending and manifest and manifest.get("plan_id") == meta["plan_id"] and manifest.get("complete"):
        counts = manifest["counts"]
        print(f"extract: nothing to do: {out} is complete ({counts['files']} files, "
              f"{counts['failures']} failed)")
        return EXIT_SOME_FAILED if counts["failures"] else EXIT_OK
    n_files = len(plan.files)
    _say(f"extract: {n_files + len(plan.failures)} inputs, {n_files} readable, "
         f"{sum(b.audio_seconds for b in plan.batches) / 3600:.2f} h of audio in "
         f"{len(plan.batches)} batches" + (" (plan reused from an earlier run)" if reused else ""))
    summaries, batch_failures, cluster_info = [], [], {}
    if pending:
        job = {"out": out, "feature_config": fc, "dims": meta["dims"], "device": device}
        summaries, batch_failures, cluster_info = stage_extract(
            cfg, plan, pending, job, scheduler=scheduler, security=security)
    files, failures, manifest = stage_index(
        cfg, plan, meta, feature_cfg=fc, config_hash=chash, extra_failures=batch_failures,
        started=started, summaries=summaries, cluster_info=cluster_info,
        wall_s=time.perf_counter() - t0)
    print(f"extract: {files.num_rows} files, {failures.num_rows} failed, "
          f"{manifest['audio_hours']:.2f} h of audio in {manifest['wall_s']:.1f} s -> {out}")
    if failures.num_rows:
        print(f"extract: failures listed in {os.path.join(out, 'failures.parquet')}")
    return EXIT_SOME_FAILED if failures.num_rows else EXIT_OK
