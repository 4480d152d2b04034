"""Where a run's output lives: a local folder, or an fsspec URL (``s3://bucket/run``,
``gs://...``, ``file:///abs/dir``, ``memory://run``).

:class:`OutDir` maps an out location to the few operations the jobs need (join, exists, isdir,
listdir, makedirs, read, write atomically, remove) and to a Zarr store. A local path keeps the
plain ``os`` calls (``os.replace`` renames: atomic, and as fast as before); a URL goes through
fsspec, where one ``PUT`` of a whole object is the only atomic step there is (S3, GCS, Azure):
an object written in one call either exists whole or not at all. The commit protocol in
:mod:`jobs.store` is built on that.

``file://`` URLs deliberately take the fsspec path too (it is how the object-store code is tested
on a local disk); give a plain path for the local fast path.

An ``OutDir`` pickles as its location and storage options (the filesystem is made again on the
worker that unpickles it), so that Dask tasks can write to it directly. Credentials in the URL or
in the options are never part of :attr:`OutDir.display` (what messages and manifests show).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid

from jobs.errors import UsageError
from jobs.redact import redact

__all__ = ["OutDir", "is_url", "as_outdir", "run_lock"]


def temporary_folder(prefix: str = "audiofeat-"):
    """A new temporary folder (a ``Path``), removed when this process exits.

    For local copies of what lives at a URL (a model folder to load or upload). The removal is
    a ``multiprocessing`` finalizer: it runs at a normal exit of the main process and of Dask's
    worker processes (which skip ``atexit``), never in a forked child for its parent's folder.
    """
    import tempfile
    from multiprocessing import util
    from pathlib import Path

    folder = tempfile.mkdtemp(prefix=prefix)
    util.Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                  exitpriority=0)
    return Path(folder)


def is_url(location) -> bool:
    return "://" in os.fspath(location)


def as_outdir(out, storage_options: dict | None = None) -> OutDir:
    """``out`` as an :class:`OutDir` (one already is stays as it is)."""
    if isinstance(out, OutDir):
        return out
    return OutDir(out, storage_options)


def run_lock(out, command: str):
    """Hold ``OUT/.lock`` while ``command`` (extract, train, score) writes the run folder: a
    second writer of the same folder stops at once with exit status 2, naming the command that
    holds it. Returns the held lock (``.close()`` empties and releases it).

    extract rewrites the store that train and score read, train rewrites the model that score
    loads, two scores write the same tables: one writer per run folder. The lock is an
    ``flock``, released by the kernel when the process ends, however it ends. An object store
    (URL out) has no such lock: one writer per output URL.
    """
    import fcntl

    od = as_outdir(out)
    if od.is_url:
        # told here, by key, before any command reads or writes there: a wrong key or a missing
        # bucket came as a traceback from deep in the plan, with exit status 1
        try:
            od.exists()
        except Exception as exc:  # noqa: BLE001 - each store says it its own way
            raise UsageError(redact(f"out: {od.display} cannot be reached "
                                    f"({type(exc).__name__}: {exc})")) from None
        return contextlib.ExitStack()  # nothing to hold; .close() as a lock's
    folder = od.location
    try:
        os.makedirs(folder, exist_ok=True)
        handle = open(os.path.join(folder, ".lock"), "a+")  # noqa: SIM115 - held for the whole run
    except OSError as exc:  # a parent that is a file, a read-only or missing mount, no permission
        from jobs.errors import OutputError, storage_error

        if storage_error(exc):  # full, over quota or read-only: exit 3, as when it happens later
            raise OutputError(f"cannot write the output folder {folder}: {storage_error(exc)}") from None
        where = exc.filename if getattr(exc, "filename", None) else folder  # (a .lock another user owns)
        raise UsageError(f"cannot write the output folder {folder}: {exc.strerror or exc}"
                         + (f" ({where})" if os.fspath(where) != os.fspath(folder) else "")) from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read(200).partition("\n")[0].strip() or "job"  # "train (pid 123)"
        handle.close()
        raise UsageError(f"another audiofeat {holder} is writing {folder} (its .lock is held); "
                         "wait for it to end") from None
    try:  # who holds it, for the message above (a lock file another version left may be empty)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()})\n")
        handle.flush()
    except OSError:
        pass
    return _HeldLock(handle)


class _HeldLock:
    """A held ``OUT/.lock``: ``close()`` empties it (no name of a job that has ended is left
    in the folder), then releases it. The file itself stays: removing it could let a second
    writer lock a new file while a third still waits on the old one."""

    def __init__(self, handle):
        self.handle = handle

    def close(self) -> None:
        if self.handle.closed:
            return
        try:
            self.handle.seek(0)
            self.handle.truncate()
        except OSError:
            pass
        self.handle.close()


class OutDir:
    """A run's output location: a local folder or an fsspec URL (plus its storage options)."""

    def __init__(self, location, storage_options: dict | None = None):
        location = os.fspath(location)
        self.is_url = is_url(location)
        if not self.is_url:
            location = os.path.abspath(os.path.expanduser(location))
        elif storage_options is None and location.startswith("file://"):
            storage_options = {}
        self.location = location.rstrip("/") if self.is_url and not location.endswith(":///") else location
        self.storage_options = dict(storage_options or {})
        self._fs = None
        self._root = None

    # ------------------------------------------------------------ identity

    def __getstate__(self):
        return {"location": self.location, "storage_options": self.storage_options,
                "is_url": self.is_url}

    def __setstate__(self, state):
        self.location = state["location"]
        self.storage_options = state["storage_options"]
        self.is_url = state["is_url"]
        self._fs = None
        self._root = None

    def __repr__(self) -> str:  # never the options (they may hold credentials)
        return f"OutDir({self.display!r})"

    def __str__(self) -> str:
        return self.display

    def __eq__(self, other) -> bool:
        return (isinstance(other, OutDir) and self.location == other.location
                and self.storage_options == other.storage_options)

    def __hash__(self) -> int:
        return hash(self.location)

    @property
    def display(self) -> str:
        """The location with credentials masked: what messages and the manifest show."""
        return redact(self.location) if self.is_url else self.location

    # ------------------------------------------------------------ fsspec

    @property
    def fs(self):
        """The fsspec filesystem of a URL (None for a local folder)."""
        if not self.is_url:
            return None
        if self._fs is None:
            import fsspec

            options = dict(self.storage_options)
            if self.location.startswith("file://"):
                options.setdefault("auto_mkdir", True)
            try:
                self._fs, root = fsspec.core.url_to_fs(self.location, **options)
            except (ImportError, ValueError) as exc:
                raise UsageError(f"out: cannot open {self.display}: {exc}") from None
            self._root = root.rstrip("/") or "/"
        return self._fs

    @property
    def root(self) -> str:
        """The out location's path inside :attr:`fs` (the local path for a folder)."""
        if not self.is_url:
            return self.location
        self.fs  # noqa: B018 - sets _root
        return self._root

    def _path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (posix, relative to the out location)."""
        if not self.is_url:
            return os.path.join(self.location, *rel.split("/")) if rel else self.location
        root = self.root
        if not rel:
            return root
        return f"{root}/{rel}" if root != "/" else f"/{rel}"

    def join(self, *parts: str) -> str:
        """The location of a run entry, as a user would name it (a path, or a URL)."""
        rel = "/".join(p.strip("/") for p in parts if p)
        if not self.is_url:
            return os.path.join(self.location, *rel.split("/")) if rel else self.location
        return f"{self.location}/{rel}" if rel else self.location

    def __truediv__(self, part: str) -> str:
        """``out / "files.parquet"``: the entry's location as text (for messages)."""
        return self.display_join(part)

    def display_join(self, *parts: str) -> str:
        """:meth:`join` with credentials masked."""
        text = self.join(*parts)
        return redact(text) if self.is_url else text

    # ------------------------------------------------------------ queries

    def exists(self, rel: str = "") -> bool:
        if not self.is_url:
            return os.path.lexists(self._path(rel))
        return self.fs.exists(self._path(rel))

    def isdir(self, rel: str = "") -> bool:
        if not self.is_url:
            return os.path.isdir(self._path(rel))
        return self.fs.isdir(self._path(rel))

    def isfile(self, rel: str) -> bool:
        if not self.is_url:
            return os.path.isfile(self._path(rel))
        return self.fs.isfile(self._path(rel))

    def listdir(self, rel: str = "") -> list[str]:
        """Names directly under ``rel`` ([] when it does not exist)."""
        if not self.is_url:
            try:
                return os.listdir(self._path(rel))
            except (FileNotFoundError, NotADirectoryError):
                return []
        path = self._path(rel)
        try:
            entries = self.fs.ls(path, detail=False, refresh=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except TypeError:  # a filesystem without a listings cache
            entries = self.fs.ls(path, detail=False)
        base = path.rstrip("/") + "/"
        names = []
        for entry in entries:
            entry = entry.rstrip("/")
            name = entry[len(base):] if entry.startswith(base) else entry.rsplit("/", 1)[-1]
            if name and "/" not in name:
                names.append(name)
        return names

    # ------------------------------------------------------------ reading and writing

    def makedirs(self, rel: str = "") -> None:
        """Make the folder (a no-op on object stores, which have no folders)."""
        if not self.is_url:
            os.makedirs(self._path(rel), exist_ok=True)
        elif self.location.startswith(("file://", "local://")):
            self.fs.makedirs(self._path(rel), exist_ok=True)

    def read_bytes(self, rel: str) -> bytes:
        if not self.is_url:
            with open(self._path(rel), "rb") as handle:
                return handle.read()
        return self.fs.cat_file(self._path(rel))

    def open(self, rel: str, mode: str = "rb"):
        """A file object (reading; for writing use :meth:`write_bytes`, which is atomic)."""
        if not self.is_url:
            return open(self._path(rel), mode)  # noqa: SIM115 - the caller closes it
        return self.fs.open(self._path(rel), mode)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` whole, atomically: locally a temporary file renamed over it; on an
        object store one PUT (the object exists whole or not at all)."""
        if not self.is_url:
            path = self._path(rel)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return
        if self.location.startswith("file://"):  # keep even fsspec's local files atomic
            path = self._path(rel)
            parent = path.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
            return
        self.fs.pipe_file(self._path(rel), data)

    def write_table(self, table, rel: str) -> None:
        """A pyarrow table as one Parquet object, written atomically."""
        import pyarrow.parquet as pq

        if not self.is_url:
            path = self._path(rel)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            pq.write_table(table, tmp, **parquet_options(table.schema))
            os.replace(tmp, path)
            return
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **parquet_options(table.schema))
        self.write_bytes(rel, sink.getvalue().to_pybytes())

    def table_writer(self, rel: str, schema) -> TableWriter:
        """A Parquet file written a row group at a time and put in place whole by
        :meth:`TableWriter.commit` (as :meth:`write_table`): locally a partial file next to it,
        renamed over it; on an object store the compressed file in memory, then one PUT."""
        return TableWriter(self, rel, schema)

    def read_table(self, rel: str, **kwargs):
        import pyarrow.parquet as pq

        # a whole-file read goes through ParquetFile, which (unlike read_table) does not import
        # pandas: the extract job's coordinator reads plans and batches without it
        read = (lambda source: pq.ParquetFile(source).read()) if not kwargs else (
            lambda source: pq.read_table(source, **kwargs))
        if not self.is_url:
            return read(self._path(rel))
        with self.fs.open(self._path(rel), "rb") as handle:
            return read(handle)

    def remove(self, rel: str) -> None:
        """Remove a file or a whole tree (nothing when it does not exist)."""
        path = self._path(rel)
        if not self.is_url:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
            return
        fs = self.fs
        try:
            if fs.isdir(path):
                fs.rm(path, recursive=True)
            elif fs.exists(path):
                fs.rm(path)
        except FileNotFoundError:
            pass
        fs.invalidate_cache(path)

    def download(self, rel: str, dest) -> bool:
        """Copy the folder ``rel`` (every file below it) into the local folder ``dest``;
        False when there is nothing at ``rel``."""
        from pathlib import Path

        dest = Path(dest)
        if not self.is_url:
            source = Path(self._path(rel))
            if not source.is_dir():
                return False
            shutil.copytree(source, dest, dirs_exist_ok=True)
            return True
        base = self._path(rel).rstrip("/")
        try:
            found = self.fs.find(base, withdirs=False)
        except FileNotFoundError:
            return False
        if not found:
            return False
        for path in found:
            relative = path[len(base):].lstrip("/") if path.startswith(base) else path.rsplit("/", 1)[-1]
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.fs.cat_file(path))
        return True

    def upload(self, source, rel: str, *, last: str | None = None) -> None:
        """Replace the folder ``rel`` with the files of the local folder ``source`` (``last``,
        a file name, is written after all the others: readers take it as the folder's commit)."""
        from pathlib import Path

        source = Path(source)
        self.remove(rel)
        files = sorted(p for p in source.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == last)
        for path in files:
            name = "/".join((rel.strip("/"), *path.relative_to(source).parts))
            if not self.is_url:
                os.makedirs(os.path.dirname(self._path(name)), exist_ok=True)
            else:
                self.makedirs(name.rsplit("/", 1)[0])
            self.write_bytes(name, path.read_bytes())

    # ------------------------------------------------------------ Zarr

    def zarr_store(self, rel: str, *, read_only: bool = False):
        """What ``zarr.open_group`` takes for the group at ``rel``: the local path, or an
        ``FsspecStore`` on the URL (file:// and memory:// included: never a silent local copy)."""
        if not self.is_url:
            return self._path(rel)
        from zarr.storage import FsspecStore

        options = dict(self.storage_options)
        if self.location.startswith("file://"):
            options.setdefault("auto_mkdir", True)
        return FsspecStore.from_url(self.join(rel), storage_options=options or None,
                                    read_only=read_only)


def parquet_options(schema) -> dict:
    """How every table of a run is written: zstd, and dictionary pages for text columns only.

    The tables are mostly floats (per-file means and stds, class probabilities), all distinct:
    a dictionary page for them is built, overflows and is thrown away, which made pyarrow's
    default (dictionaries for every column, snappy) twice as slow; zstd halves the size (the
    30,000-row files.parquet of the extract benchmark: 0.11 -> 0.067 s, 7.1 -> 3.5 MB).
    """
    import pyarrow as pa

    text = [f.name for f in schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_dictionary(f.type)]
    return {"compression": "zstd", "use_dictionary": text}


class TableWriter:
    """See :meth:`OutDir.table_writer`: ``write(table)`` per row group, then ``commit()``."""

    def __init__(self, od: OutDir, rel: str, schema):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.od, self.rel = od, rel
        if od.is_url:
            self.sink, self.partial = pa.BufferOutputStream(), None
        else:
            self.partial = f"{od._path(rel)}.partial"
            self.sink = self.partial
        self.writer = pq.ParquetWriter(self.sink, schema, **parquet_options(schema))

    def write(self, table) -> None:
        self.writer.write_table(table)

    def commit(self) -> None:
        self.writer.close()
        if self.partial is not None:
            os.replace(self.partial, self.od._path(self.rel))
        else:
            self.od.write_bytes(self.rel, self.sink.getvalue().to_pybytes())

    def abort(self) -> None:
        """Drop what was written (a job that stops: the next run writes the table anew)."""
        try:
            self.writer.close()
        except OSError:  # a full disk fails the close too: the partial file goes anyway
            pass
        if self.partial is not None:
            with contextlib.suppress(OSError):
                os.remove(self.partial)
