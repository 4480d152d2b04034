"""Benchmark ``audiofeat query`` and ``open_features`` on a synthetic 100k-file run directory.

    python3 benchmarks/query_bench.py [--files 100000] [--out DIR] [--gap-every N] [--keep]

Builds a run directory like a real one: ``files.parquet`` with the real schema (facts, frame
rows, mean/std summary columns of mfcc 20, melspectrogram 40, rms, zero_crossing_rate,
spectral_centroid), ``scores/files.parquet`` (label, confidence, true_label, split) and a
``features.zarr`` written by ``jobs.store.create_store`` (the real layout and attributes; chunk
data is not written: opening must not need it). Files lie back to back in blocks padded to the
chunk length, as ``audiofeat extract`` lays them out (``--gap-every 1``: a gap after every file,
the worst case for ``open_features``). Then it times, in this process:

- typical aggregate queries through ``jobs.query`` (connect, run, write a table), target < 1 s;
- ``open_features`` (first call, with xarray/Dask imports, and again), target < 2 s, counting the
  chunk files opened (an audit hook on ``open``): must be 0;
- the whole command ``audiofeat query`` as a user runs it (a new Python process).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DIMS = {"mfcc": 20, "melspectrogram": 40, "rms": 1, "zero_crossing_rate": 1, "spectral_centroid": 1}
FEATURE_CONFIG = {
    "sr": 16000, "mono": True, "n_fft": 512, "hop_length": 160, "win_length": 512, "window": "hann",
    "features": {"mfcc": {"n_mfcc": 20, "n_mels": 40}, "melspectrogram": {"n_mels": 40, "db": True},
                 "rms": {}, "zero_crossing_rate": {"threshold": 1e-10}, "spectral_centroid": {}},
}
CHUNK_FRAMES = 2048
BLOCK_FRAMES = 60 * CHUNK_FRAMES  # about 20 minutes of audio at 100 frames/s per block

QUERIES = {
    "loudest files": "SELECT path, rms_mean FROM files ORDER BY rms_mean DESC LIMIT 10",
    "per-label counts": ("SELECT label, count(*) AS n, avg(confidence) AS mean_confidence "
                         "FROM file_scores GROUP BY label ORDER BY label"),
    "per-class mean MFCC": ("SELECT s.true_label, count(*) AS n, avg(f.mfcc_mean_0) AS mfcc0, "
                            "avg(f.mfcc_mean_1) AS mfcc1, avg(f.mfcc_mean_2) AS mfcc2 "
                            "FROM files f JOIN file_scores s USING (file_id) "
                            "GROUP BY s.true_label ORDER BY s.true_label"),
    "per-class MFCC (regex)": ("SELECT regexp_extract(path, '(\\d)_speaker', 1) AS digit, count(*) AS n, "
                               "round(avg(COLUMNS('^mfcc_mean_[0-9]+$')), 1) FROM files "
                               "GROUP BY digit ORDER BY digit"),
    "silent or clipped": ("SELECT path, rms_mean, duration_s FROM files "
                          "WHERE rms_mean < 1e-3 OR rms_mean > 0.5 ORDER BY rms_mean"),
}


def build_run(out: str, n_files: int, gap_every: int, drop: float = 0.0, seed: int = 0) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.store import create_store, files_schema, summary_columns

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "scores"), exist_ok=True)
    n_frames = rng.integers(30, 100, n_files)  # FSDD-like clips: 0.3-1 s at 100 frames/s
    starts = np.empty(n_files, np.int64)
    cursor, block_start = 0, 0
    for i, n in enumerate(n_frames):
        if cursor + n - block_start > BLOCK_FRAMES or (gap_every and i and i % gap_every == 0):
            cursor = -(-cursor // CHUNK_FRAMES) * CHUNK_FRAMES  # next block on a chunk boundary
            block_start = cursor
        starts[i] = cursor
        cursor += n
    total = -(-cursor // CHUNK_FRAMES) * CHUNK_FRAMES
    labels = rng.integers(0, 10, n_files).astype(str)
    paths = [f"/data/corpus/{lab}_speaker{i % 50:02d}_{i}.wav" for i, lab in enumerate(labels)]
    columns = {
        "file_id": [f"{i:016x}" for i in rng.permutation(n_files * 7)[:n_files]],
        "path": paths, "size_bytes": (n_frames * 160 * 2 + 44).astype(np.int64),
        "format": ["WAV"] * n_files, "subtype": ["PCM_16"] * n_files,
        "sample_rate": np.full(n_files, 8000), "channels": np.ones(n_files, np.int64),
        "duration_s": (n_frames - 1) * 0.01, "n_frames": n_frames.astype(np.int64),
        "frame_start": starts, "frame_stop": starts + n_frames,
    }
    for name in sorted(DIMS):
        for column in summary_columns(name, DIMS[name]):
            columns[column] = rng.normal(size=n_files)
    columns["rms_mean"] = rng.gamma(2.0, 0.03, n_files)
    schema = files_schema(DIMS)
    files = pa.table({f.name: columns[f.name] for f in schema}, schema=schema)
    if drop:
        files = files.filter(pa.array(rng.random(n_files) >= drop))
    pq.write_table(files, os.path.join(out, "files.parquet"))
    pq.write_table(pa.table({"path": pa.array([], pa.string()), "stage": pa.array([], pa.string()),
                             "error_type": pa.array([], pa.string()),
                             "message": pa.array([], pa.string())}),
                   os.path.join(out, "failures.parquet"))
    predicted = np.where(rng.random(n_files) < 0.85, labels, rng.integers(0, 10, n_files).astype(str))
    pq.write_table(pa.table({
        "file_id": columns["file_id"], "path": paths, "label": predicted,
        "confidence": rng.uniform(0.3, 1.0, n_files), "true_label": labels,
        "split": np.where(rng.random(n_files) < 0.2, "test", "train"),
        "n_segments": np.ones(n_files, np.int64)}), os.path.join(out, "scores", "files.parquet"))
    create_store(out, feature_config=FEATURE_CONFIG, config_hash="0" * 64, dims=DIMS,
                 total_frames=total, chunk_frames=CHUNK_FRAMES, version="bench")
    from jobs.store import consolidate

    consolidate(out)
    starts = files.column("frame_start").to_numpy()
    stops = files.column("frame_stop").to_numpy()
    return {"files": files.num_rows, "frames": int((stops - starts).sum()), "store_rows": int(total),
            "runs_of_rows": int(1 + np.count_nonzero(starts[1:] != stops[:-1]))}


class ChunkOpens:
    """Counts files opened under ``<store>/<array>/c/`` (chunk files) with an audit hook."""

    def __init__(self, store: str):
        self.prefix = os.path.abspath(store) + os.sep
        self.count = 0
        self.active = False
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if self.active and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if path.startswith(self.prefix) and f"{os.sep}c{os.sep}" in path:
                self.count += 1


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--out", help="run directory to build (default: a temporary one)")
    parser.add_argument("--gap-every", type=int, default=0,
                        help="also break the rows after every N files (1: worst case)")
    parser.add_argument("--drop", type=float, default=0.0, metavar="FRACTION",
                        help="leave this fraction of the files out of files.parquet, their rows "
                             "still in the store (files a rerun no longer names)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()

    out = args.out or tempfile.mkdtemp(prefix="audiofeat-query-bench-")
    t0 = time.perf_counter()
    facts = build_run(out, args.files, args.gap_every, drop=args.drop)
    print(f"built {out}: {facts['files']} files, {facts['frames']} frames in "
          f"{facts['store_rows']} store rows, {facts['runs_of_rows']} contiguous runs of rows "
          f"({time.perf_counter() - t0:.1f} s)")
    try:
        from jobs.query import _WRITERS, connect, open_features, run_sql

        print("\nqueries (connect + run + write a table, best of 3; target < 1 s):")
        for title, sql in QUERIES.items():
            def one_query(sql=sql):
                con = connect(out)
                sink = io.StringIO()
                _WRITERS["table"](run_sql(con, sql), sink, max_rows=20)
                con.close()
                return sink.getvalue()
            seconds, text = timed(one_query)
            rows = text.strip().splitlines()[-1]
            print(f"  {title:22s} {seconds * 1000:7.1f} ms   {rows}")

        counter = ChunkOpens(os.path.join(out, "features.zarr"))
        counter.active = True
        t0 = time.perf_counter()
        ds = open_features(out)
        first = time.perf_counter() - t0
        again, ds = timed(lambda: open_features(out))
        counter.active = False
        print(f"\nopen_features (target < 2 s, no chunk reads): first call {first:.2f} s "
              f"(with xarray/Dask imports), again {again:.2f} s; chunk files opened: {counter.count}")
        print(f"  dataset: {dict(ds.sizes)}, "
              f"{len(ds['mfcc'].data.chunks[0])} Dask chunks along frame")
        from jobs.query import features

        some_id = ds["file_id"].values[len(ds["file_id"]) // 2]
        seconds, rows = timed(lambda: features(out, some_id, "mfcc"))
        print(f"  features(out, file_id, 'mfcc'): {seconds * 1000:.1f} ms -> {rows.shape}")
        counter.count, counter.active = 0, True
        ds["rms"][:10].compute()  # positive control: a computation does open chunk files
        counter.active = False
        print(f"  (control: computing ds.rms[:10] opened {counter.count} chunk file(s))")

        sql = QUERIES["per-label counts"]
        command = [sys.executable, "-m", "jobs", "query", out, sql]
        cwd = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        seconds, _ = timed(lambda: subprocess.run(command, check=True, capture_output=True, cwd=cwd))
        print(f"\nwhole command `audiofeat query OUT \"{sql[:40]}...\"` (new process): {seconds:.2f} s")
    finally:
        if not args.keep and not args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
