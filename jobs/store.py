"""Store: the run directory on disk, and the commit protocol that makes a run resumable.

Layout (docs/architecture.md)::

    OUT/features.zarr/        Zarr v3 group, one (total_frames, dim) float32 array per feature
    OUT/files.parquet         one row per input that succeeded (frame_start/stop, summaries)
    OUT/failures.parquet      one row per input that failed (path, stage, error_type, message)
    OUT/manifest.json         config, hash, versions, times, counts, throughput
    OUT/.plan.json            the plan (batches and regions), written once, reused by reruns
    OUT/.plan.parquet         the plan's files (header facts and rows)
    OUT/.batches/NNNNNN/      one committed batch: files.parquet + failures.parquet
    OUT/.batches/NNNNNN.parquet  the same, on an object store (URL out): one object

OUT is a local folder or an fsspec URL (``s3://bucket/run``, ``file:///abs/dir``,
``memory://run``; :mod:`jobs.outdir`). Every function here takes either a path/URL string or a
:class:`jobs.outdir.OutDir` (a URL with storage options).

Commit protocol (zarr-python 3 has no locks; correctness comes from partitioning):
1. the coordinator writes the store template (array metadata) and then the plan;
2. each task owns a region of whole chunks, writes its rows there (a retry writes the same bytes
   to the same chunks), then commits its index rows:
   - local folder: writes them into a temporary folder and renames it to ``.batches/NNNNNN``;
     the rename is the commit;
   - URL: an object store has no atomic rename, but one PUT is atomic: the batch's files rows go
     into ONE object ``.batches/NNNNNN.parquet`` (its failure rows in that object's metadata),
     written after all of the batch's chunks; its existence is the commit;
3. the coordinator gathers the committed batches into files.parquet / failures.parquet (sorted
   by path), consolidates the Zarr metadata and writes manifest.json last.
A job killed at any moment and run again redoes exactly the batches without a commit.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import uuid

import numpy as np

from jobs.outdir import OutDir, as_outdir, parquet_options
from jobs.redact import redact_column

__all__ = [
    "STORE_NAME", "create_store", "store_attrs", "write_rows", "read_rows", "open_store",
    "batch_dir", "committed_batches", "commit_batch", "files_schema", "failures_schema",
    "write_parquet", "write_json", "IndexRows", "write_table", "grow_store", "read_json", "clear_run", "FilesIndex",
    "read_batch",
    "is_committed", "read_table", "make_out",
]

STORE_NAME = "features.zarr"
# "scores": a new store's file ids and rows are not the ones the old scores describe (query would
# serve them beside the new files); models stay, and score refuses one of other feature settings
_OUR_ENTRIES = (STORE_NAME, "files.parquet", "failures.parquet", "manifest.json", ".plan.json",
                ".plan.parquet", ".batches", ".parts", "files.parquet.partial", "scores")


_BATCH_OBJECT = re.compile(r"^(\d+)\.parquet$")
_FAILURES_KEY = b"audiofeat.failures"  # a URL batch object's failure rows (JSON) in its metadata


def _store_path(out):
    """What ``zarr.open_group`` takes for the run's store (a path, or an FsspecStore)."""
    return as_outdir(out).zarr_store(STORE_NAME)


def _store_ro(out):
    return as_outdir(out).zarr_store(STORE_NAME, read_only=True)


def make_out(out) -> None:
    """Make the run folder (nothing to make on an object store)."""
    as_outdir(out).makedirs()


def create_store(out: str, *, feature_config: dict, config_hash: str, dims: dict[str, int],
                 total_frames: int, chunk_frames: int, version: str) -> None:
    """Write the empty store: group attributes and one array per feature (no chunks yet)."""
    import zarr
    from zarr.codecs import BloscCodec

    # the attributes go in with the group's own zarr.json (one write): a job killed while it
    # makes the store leaves no group without its config hash, which a rerun would refuse
    group = zarr.open_group(_store_path(out), mode="w", zarr_format=3, attributes={
        "feature_config": feature_config,
        "config_hash": config_hash,
        "frame_rate_hz": feature_config["sr"] / feature_config["hop_length"],
        "dims": dims,
        "audiofeat_version": version,
        "total_frames": int(total_frames),
        "chunk_frames": int(chunk_frames),
    })
    for name, dim in dims.items():
        group.create_array(
            name, shape=(int(total_frames), int(dim)), chunks=(int(chunk_frames), int(dim)),
            dtype="float32", fill_value=0.0,
            # lz4 in Blosc: 4x the speed of zstd-1 and a smaller store on feature frames. Bit
            # shuffling at level 7 (Blosc's larger blocks): the 30,000-file FSDD store 228 -> 151 MB
            # (ratio 1.47 -> 2.23; log-mel 1.5 -> 2.6), encoding 0.17 -> 0.30 s and decoding 0.07
            # -> 0.22 s for its 336 MB, against 77 MB less to write (page-cache writes run at
            # 200-400 MB/s on the 2-core VMs measured) and to read back
            compressors=BloscCodec(cname="lz4", clevel=7, shuffle="bitshuffle"),
            attributes={"dims": ["frame", f"{name}_dim"]},
            dimension_names=("frame", f"{name}_dim"),  # what xarray.open_zarr reads
        )


def store_attrs(out: str) -> dict | None:
    """The store's group attributes, or None when there is no readable store."""
    od = as_outdir(out)
    if not od.exists(f"{STORE_NAME}/zarr.json"):
        return None  # before importing zarr (0.1-0.3 s): a first run has no store
    import zarr

    try:
        attrs = dict(zarr.open_group(_store_ro(od), mode="r").attrs)
    except Exception:  # noqa: BLE001 - a half-written template counts as no store
        return None
    # a group without its config hash is a template a killed job left half made (an earlier
    # version wrote the attributes after the group): no store either
    return attrs if "config_hash" in attrs else None


def open_store(out: str, mode: str = "r"):
    """The Zarr group of a run directory."""
    import zarr

    od = as_outdir(out)
    return zarr.open_group(od.zarr_store(STORE_NAME, read_only=mode == "r"), mode=mode)


def write_rows(out: str, arrays: dict[str, np.ndarray], start: int) -> None:
    """Write ``arrays[name]`` at rows ``[start, start + len)`` of every feature array.

    The caller owns those rows' chunks (its region starts on a chunk boundary and ends on one or
    at the end of the array), so no other task touches them.
    """
    import asyncio

    import zarr.api.asynchronous as zasync

    async def write_all():
        # fresh array metadata, never the consolidated copy (the arrays may have grown since)
        group = await zasync.open_group(store=_store_path(out), mode="r+", use_consolidated=False)
        targets = await asyncio.gather(*(group.getitem(name) for name in arrays))
        for array, (name, data) in zip(targets, arrays.items()):
            if start + data.shape[0] > array.shape[0]:
                raise IndexError(f"rows {start}:{start + data.shape[0]} lie outside {name} "
                                 f"({array.shape[0]} rows)")
        # the region's chunks are written whole whatever they hold: no scan of each chunk for
        # "all fill value" first (a quarter of the write's time); a chunk of zeros reads the same
        targets = [a.with_config({"write_empty_chunks": True}) if hasattr(a, "with_config") else a
                   for a in targets]
        # every array at once: one trip through Zarr's event loop instead of one per array
        await asyncio.gather(*(array.setitem(slice(start, start + data.shape[0]), data)
                               for array, data in zip(targets, arrays.values())))

    if as_outdir(out).is_url:  # network I/O: Zarr's own loop keeps many requests in flight
        from zarr.core.sync import sync

        sync(write_all())
    else:
        _run_inline(write_all())


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """An executor that runs each call at once, in the calling thread (it never starts one:
    a ThreadPoolExecutor starts its threads in ``submit``)."""

    def __init__(self):
        super().__init__(max_workers=1)

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        return future


def _run_inline(coro):
    """Run ``coro`` to completion in this thread, on a loop of its own whose blocking calls run
    inline (the loop is made and closed here: about 0.1 ms).

    Zarr 3.1 runs every write on its own loop thread and sends each chunk's compression and
    file write to a thread pool (``asyncio.to_thread``): some 25 thread hand-offs per batch.
    With two busy workers on two cores each hand-off waits for a time slice, which doubled the
    write time (14 -> 31 ms for 10 chunks). Run in the writing thread with those calls inline,
    it takes 7 ms, 10 ms on busy cores. (Zarr's maintainers are adding synchronous codec paths
    for the same reason: zarr-python#3721, #3885.)
    """
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        loop.set_default_executor(_InlineExecutor())
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def read_rows(out: str, name: str, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of one feature (a file's frames: its frame_start/frame_stop)."""
    return np.asarray(open_store(out)[name][start:stop])


# ---------------------------------------------------------------- batch commits


def batch_dir(out, batch_id: int) -> str:
    """A local run's commit folder of one batch."""
    return as_outdir(out).join(".batches", f"{batch_id:06d}")


def _batch_object(batch_id: int) -> str:
    return f".batches/{batch_id:06d}.parquet"


def crash_root(out) -> str | None:
    """Where a batch's attempts leave their breadcrumbs (:mod:`jobs.crashes`): the local run
    folder's ``.batches``; None on an object store."""
    od = as_outdir(out)
    return None if od.is_url else os.path.join(od.location, ".batches")


def is_committed(out, batch_id: int) -> bool:
    """Whether the batch's commit (folder, or object on a URL) exists."""
    od = as_outdir(out)
    if not od.is_url:
        return os.path.isdir(batch_dir(od, batch_id))
    od.fs.invalidate_cache(od._path(_batch_object(batch_id)))  # noqa: SLF001
    return od.exists(_batch_object(batch_id))


def committed_batches(out) -> set[int]:
    """Ids of the batches whose commit folder (or, on a URL, commit object) exists."""
    od = as_outdir(out)
    if not od.is_url:
        root = os.path.join(od.location, ".batches")
        if not os.path.isdir(root):
            return set()
        return {int(name) for name in os.listdir(root) if name.isdigit()}
    ids = set()
    for name in od.listdir(".batches"):
        match = _BATCH_OBJECT.match(name)
        if match:
            ids.add(int(match.group(1)))
    return ids


def files_schema(dims: dict[str, int]):
    """Schema of files.parquet: header facts, rows, then mean/std per feature column."""
    import pyarrow as pa

    fields = [
        ("file_id", pa.string()), ("path", pa.string()), ("size_bytes", pa.int64()),
        ("format", pa.string()), ("subtype", pa.string()), ("sample_rate", pa.int64()),
        ("channels", pa.int64()), ("duration_s", pa.float64()), ("n_frames", pa.int64()),
        ("frame_start", pa.int64()), ("frame_stop", pa.int64()),
    ]
    for name in sorted(dims):
        fields += [(c, pa.float64()) for c in summary_columns(name, dims[name])]
    return pa.schema(fields)


def summary_columns(name: str, dim: int) -> list[str]:
    if dim == 1:
        return [f"{name}_mean", f"{name}_std"]
    return [f"{name}_mean_{i}" for i in range(dim)] + [f"{name}_std_{i}" for i in range(dim)]


def failures_schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("stage", pa.string()),
                      ("error_type", pa.string()), ("message", pa.string())])


def write_parquet(rows: list[dict], schema, path: str) -> None:
    """Write rows atomically (temporary file, then rename)."""
    import pyarrow.parquet as pq

    from jobs.plan import arrow_rows

    table = arrow_rows(rows, schema)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    pq.write_table(table, tmp, **parquet_options(table.schema))
    os.replace(tmp, path)


def write_json(data: dict, path, name: str | None = None) -> None:
    """Write ``data`` atomically to ``path``, or to entry ``name`` of the run ``path``."""
    if name is not None:
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        as_outdir(path).write_bytes(name, text.encode())
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path, name: str | None = None) -> dict | None:
    """The JSON at ``path`` (or entry ``name`` of the run ``path``); None when absent or bad."""
    try:
        if name is not None:
            return json.loads(as_outdir(path).read_bytes(name))
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def read_table(out, name: str, **kwargs):
    """The Parquet entry ``name`` of a run (a local folder or a URL)."""
    return as_outdir(out).read_table(name, **kwargs)


class IndexRows:
    """The files.parquet rows of one batch, gathered column by column (fast for wide tables)."""

    _FACTS = ("file_id", "path", "size_bytes", "format", "subtype", "sample_rate", "channels",
              "duration_s", "n_frames", "frame_start", "frame_stop")

    def __init__(self, dims: dict[str, int]):
        self.dims = dims
        self.facts = {k: [] for k in self._FACTS}
        self.means = {n: [] for n in dims}
        self.stds = {n: [] for n in dims}

    def __len__(self) -> int:
        return len(self.facts["path"])

    def add(self, planned_file, means: dict, stds: dict) -> None:
        """One file: its planned facts and, per feature, mean and std per column ``(dim,)``."""
        for k in self._FACTS:
            self.facts[k].append(getattr(planned_file, k))
        for n in self.dims:
            self.means[n].append(np.asarray(means[n], dtype=np.float64).reshape(-1))
            self.stds[n].append(np.asarray(stds[n], dtype=np.float64).reshape(-1))

    def add_many(self, planned_files, means: dict, stds: dict) -> None:
        """Several files at once: ``means[name]`` and ``stds[name]`` are ``(n_files, dim)``."""
        for k in self._FACTS:
            self.facts[k].extend(getattr(f, k) for f in planned_files)
        for n in self.dims:
            self.means[n].extend(np.asarray(means[n], dtype=np.float64).reshape(len(planned_files), -1))
            self.stds[n].extend(np.asarray(stds[n], dtype=np.float64).reshape(len(planned_files), -1))

    def table(self):
        from jobs.plan import arrow_table

        schema = files_schema(self.dims)
        columns = {k: self.facts[k] for k in self._FACTS}
        for name in sorted(self.dims):
            dim = self.dims[name]
            mean = np.array(self.means[name]).reshape(len(self), dim)
            std = np.array(self.stds[name]).reshape(len(self), dim)
            names = summary_columns(name, dim)
            for i in range(dim):
                columns[names[i]] = mean[:, i]
                columns[names[dim + i]] = std[:, i]
        return arrow_table(columns, schema)


def _masked_failures(failures: list[dict]) -> list[dict]:
    """Failure rows with credentials masked in their path and message (see :mod:`jobs.redact`)."""
    from jobs.redact import redact

    return [{**row, **{k: redact(row[k]) for k in ("path", "message") if isinstance(row.get(k), str)}}
            for row in failures]


def commit_batch(out, batch_id: int, files, failures: list[dict],
                 dims: dict[str, int]) -> bool:
    """Commit a batch's index rows (an :class:`IndexRows`); False when another attempt committed
    it first. Paths and messages are committed with credentials masked, as files.parquet and
    failures.parquet hold them: the private plan alone keeps a URL whole (resuming reads it)."""
    od = as_outdir(out)
    failures = _masked_failures(failures)
    if od.is_url:
        return _commit_object(od, batch_id, files, failures)
    final = batch_dir(od, batch_id)
    if os.path.isdir(final):
        return False
    root = os.path.dirname(final)
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f"tmp-{batch_id:06d}-{uuid.uuid4().hex}")
    os.makedirs(tmp)
    try:
        from jobs.plan import arrow_rows

        # Arrow IPC, not Parquet: these are the job's own scratch rows, read back once by the
        # coordinator; writing is 5x and reading 10x faster than Parquet (measured on batches
        # of 258 FSDD rows, 137 columns: 1.1 vs 5.5 ms and 0.4 vs 4.9 ms)
        _write_arrow(redact_column(files.table(), "path"), os.path.join(tmp, "files.arrow"))
        _write_arrow(arrow_rows(failures, failures_schema()), os.path.join(tmp, "failures.arrow"))
        try:
            os.rename(tmp, final)  # atomic; fails if an earlier attempt already committed
        except OSError:
            return False
        return True
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _write_arrow(table, path: str) -> None:
    """``table`` as an Arrow IPC file (uncompressed: the rows are mostly floats)."""
    import pyarrow as pa

    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_arrow(path: str):
    import pyarrow as pa

    with pa.OSFile(path, "rb") as source:
        return pa.ipc.open_file(source).read_all()


def _commit_object(od: OutDir, batch_id: int, files, failures: list[dict]) -> bool:
    """URL commit: the batch's files rows as one Parquet object, its failure rows (JSON) in the
    object's metadata; one PUT, so the object exists whole or not at all."""
    if is_committed(od, batch_id):
        return False
    table = redact_column(files.table(), "path")
    rows = [{k: row.get(k) for k in ("path", "stage", "error_type", "message")} for row in failures]
    metadata = dict(table.schema.metadata or {})
    metadata[_FAILURES_KEY] = json.dumps(rows).encode()
    od.write_table(table.replace_schema_metadata(metadata), _batch_object(batch_id))
    return True


def _read_batch(od: OutDir, batch_id: int):
    """(files table, failures table) of one committed batch, whichever its layout."""
    import pyarrow.parquet as pq

    from jobs.plan import arrow_rows

    if not od.is_url:
        folder = batch_dir(od, batch_id)
        if os.path.exists(os.path.join(folder, "files.arrow")):
            return (_read_arrow(os.path.join(folder, "files.arrow")),
                    _read_arrow(os.path.join(folder, "failures.arrow")))
        # a run of an earlier version committed Parquet; ParquetFile.read, unlike read_table,
        # does not import pandas
        return (pq.ParquetFile(os.path.join(folder, "files.parquet")).read(),
                pq.ParquetFile(os.path.join(folder, "failures.parquet")).read())
    table = od.read_table(_batch_object(batch_id))
    rows = json.loads((table.schema.metadata or {}).get(_FAILURES_KEY, b"[]"))
    return table.replace_schema_metadata(None), arrow_rows(rows, failures_schema())


def grow_store(out, total_frames: int) -> None:
    """Lengthen every feature array to ``total_frames`` rows (metadata only; no task is running)."""

    import zarr

    group = zarr.open_group(_store_path(out), mode="r+", use_consolidated=False)
    for name in group.array_keys():
        array = group[name]
        if array.shape[0] != total_frames:
            array.resize((total_frames, array.shape[1]))
    group.attrs["total_frames"] = int(total_frames)
    consolidate(out)


def consolidate(out) -> None:
    """Write the group's consolidated metadata (readers open the store with one read)."""
    import warnings

    import zarr

    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec" (yet)
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(_store_path(out))


def read_batch(out, batch_id: int):
    """(files table, failures table) of one committed batch."""
    return _read_batch(as_outdir(out), batch_id)


class FilesIndex:
    """``files.parquet`` written as the batches commit, in batch order, and ``failures.parquet``.

    Batch order is the store's frame order (each batch owns a region, in batch order), so the
    rows of files.parquet follow ``frame_start``, and a rerun that resumes writes the same table
    as a clean run. The coordinator holds only the rows of batches that finished ahead of an
    earlier one and one row group waiting to be written (:attr:`ROW_GROUP_ROWS`), not the whole
    index: about 1 KB per file, which at millions of files was gigabytes.

    ``add(batch_id, pair)`` hands over a batch this run computed (its :func:`read_batch` pair,
    or ``None`` when it failed as a whole), ``done(batch_id)`` one to read from the store; every
    other batch of ``batch_ids`` was committed by an earlier run and is read from the store when
    its turn comes. :meth:`finish` writes what
    is left and puts both tables in place. Rows of the paths in ``drop`` (inputs no longer
    named) are left out, and those of ``superseded`` (batch id -> paths: files changed on disk,
    whose rows a later batch holds); credentials in paths and messages are masked.
    """

    ROW_GROUP_ROWS = 16384

    def __init__(self, out, batch_ids, dims: dict[str, int], *, pending=(), drop=frozenset(),
                 superseded=None):
        self.od = as_outdir(out)
        self.order = sorted(batch_ids)
        self.pending = set(pending)
        self.at = 0
        self.ready: dict = {}
        self.listed = None  # on an object store, the batches committed when first asked
        self.schema = files_schema(dims)
        self.drop = None
        if drop:
            import pyarrow as pa

            from jobs.plan import _arrow_column

            self.drop = _arrow_column(sorted(drop), pa.string())
        self.superseded = {}
        if superseded:
            import pyarrow as pa

            from jobs.plan import _arrow_column

            self.superseded = {b: _arrow_column(sorted(paths), pa.string())
                               for b, paths in superseded.items() if paths}
        self.buffer: list = []
        self.buffered = 0
        self.failures: list = []
        self.n_files = 0
        self.audio_s = 0.0
        self.writer = self.od.table_writer("files.parquet", self.schema)

    def add(self, batch_id: int, pair) -> None:
        self.ready[batch_id] = pair
        self._advance()

    def done(self, batch_id: int) -> None:
        """A batch of this run committed, to be read from the store when its turn comes."""
        self.pending.discard(batch_id)
        self._advance()

    def _advance(self, final: bool = False) -> None:
        earlier = []  # batches an earlier run committed, read side by side from an object store
        while self.at < len(self.order):
            b = self.order[self.at]
            if b in self.ready:
                pair = self.ready.pop(b)
            elif b in self.pending and not final:
                break
            else:
                earlier.append(b)
                self.at += 1
                continue
            self._read_and_take(earlier)
            earlier = []
            if pair is not None:
                self._take(*pair, batch_id=b)
            self.at += 1
        self._read_and_take(earlier)

    def _read_and_take(self, batch_ids: list[int]) -> None:
        if not batch_ids:
            return
        if self.od.is_url and len(batch_ids) > 1 and self.listed is None:  # one listing, not a
            self.listed = committed_batches(self.od)  # request per batch
        wanted = [b for b in batch_ids if b in (self.listed or ()) or is_committed(self.od, b)]
        if self.od.is_url and len(wanted) > 1:  # many small objects: read them side by side
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(16) as pool:
                for b, pair in zip(wanted, pool.map(lambda b: _read_batch(self.od, b), wanted)):
                    self._take(*pair, batch_id=b)
            return
        for b in wanted:
            self._take(*_read_batch(self.od, b), batch_id=b)

    def _keep(self, table, batch_id=None):
        if not table.num_rows:
            return table
        import pyarrow.compute as pc

        if self.drop is not None:
            table = table.filter(pc.invert(pc.is_in(table["path"], value_set=self.drop)))
        replaced = self.superseded.get(batch_id)
        if replaced is not None and table.num_rows:
            table = table.filter(pc.invert(pc.is_in(table["path"], value_set=replaced)))
        return table

    def _take(self, files, failures, batch_id=None) -> None:
        import pyarrow.compute as pc

        self.failures.append(self._keep(failures.cast(failures_schema()), batch_id))
        files = self._keep(files.cast(self.schema), batch_id)
        if not files.num_rows:
            return
        self.n_files += files.num_rows
        self.audio_s += float(pc.sum(files["duration_s"]).as_py())
        self.buffer.append(files)
        self.buffered += files.num_rows
        if self.buffered >= self.ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        import pyarrow as pa

        # credentials in URLs stay in the private plan (needed to read again), never in tables
        self.writer.write(redact_column(pa.concat_tables(self.buffer), "path"))
        self.buffer, self.buffered = [], 0

    def abort(self) -> None:
        """Stop without writing files.parquet (the job stopped; the next run indexes anew)."""
        self.writer.abort()

    def finish(self, extra_failures: list[dict]):
        """Write the rest; returns ``(files written, failures table, audio seconds)``."""
        import pyarrow as pa

        from jobs.plan import arrow_rows

        self._advance(final=True)
        self._flush()
        self.writer.commit()
        failures = pa.concat_tables([*self.failures,
                                     self._keep(arrow_rows(extra_failures, failures_schema()))])
        failures = failures.sort_by([("path", "ascending"), ("stage", "ascending")])
        failures = redact_column(redact_column(failures, "path"), "message")
        self.od.write_table(failures, "failures.parquet")
        return self.n_files, failures, self.audio_s


def write_table(table, path, name: str | None = None) -> None:
    """Write ``table`` atomically to ``path``, or to entry ``name`` of the run ``path``."""
    import pyarrow.parquet as pq

    if name is not None:
        as_outdir(path).write_table(table, name)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    pq.write_table(table, tmp, **parquet_options(table.schema))
    os.replace(tmp, path)


def clear_run(out) -> None:
    """Remove what a run wrote in ``out`` (only audiofeat's own entries)."""
    od = as_outdir(out)
    for entry in _OUR_ENTRIES:
        od.remove(entry)
