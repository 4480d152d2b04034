"""``audiofeat query``: SQL (DuckDB) over a run's tables, and the Python side of a run's features.

Command line::

    audiofeat query OUT_DIR... "SQL" [--format table|csv|json|parquet] [-o FILE] [--max-rows N]

The last positional argument is the SQL; the ones before it are run directories, globs
(``runs/*``) or fsspec URLs of runs (``s3://bucket/run``, ``file:///abs/run``; no globs there,
credentials from the environment as fsspec reads them). The statement sees these views, each only
where its file exists:

    files        files.parquet            one row per input that succeeded (+ summary columns)
    failures     failures.parquet         one row per input that failed
    segments     scores/segments.parquet  one row per scored segment
    file_scores  scores/files.parquet     per file: label, confidence, true_label, split
    events       scores/events.parquet    stretches covered by segments above the threshold

With more than one run directory, or with a glob, every view is the ``UNION ALL BY NAME`` of the
runs' tables with a leading ``run`` column (the run directory's name; its path where two names
clash), so that runs can be compared.

The connection is read-only and contained: only reading statements run (SELECT, WITH, FROM,
DESCRIBE, SHOW, SUMMARIZE, VALUES, EXPLAIN of those). The run's Parquet files reach DuckDB as Arrow
datasets (read by Arrow, not by DuckDB), then ``enable_external_access = false`` and
``lock_configuration``: DuckDB itself can open no file at all, so no statement, not even one sent
on the Python connection, can write a file (COPY ... TO the run's own files.parquet included) or
read one outside the runs. (``allowed_paths`` would not do: it lets COPY overwrite those paths.)

Python::

    from jobs.query import connect, open_features, features
    con = connect("runs/example")                         # a duckdb connection with the views
    con.sql("SELECT path, rms_mean FROM files ORDER BY rms_mean DESC LIMIT 5").df()
    ds = open_features("runs/example")                    # xarray.Dataset over Dask arrays
    mfcc = features("runs/example", file_id, "mfcc")      # (n_frames, 20) numpy array
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import re
import sys
import uuid
import warnings
from dataclasses import dataclass

from jobs.errors import EXIT_OK, UsageError

__all__ = ["add_arguments", "main", "connect", "open_features", "features", "run_sql",
           "resolve_runs", "Run", "VIEWS", "FORMATS", "UnknownFeatureData"]

# view name -> the run's file it reads
VIEWS = {
    "files": "files.parquet",
    "failures": "failures.parquet",
    "segments": os.path.join("scores", "segments.parquet"),
    "file_scores": os.path.join("scores", "files.parquet"),
    "events": os.path.join("scores", "events.parquet"),
}
FORMATS = ("table", "csv", "json", "parquet")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_MAX_ROWS = 100  # rows a table shows before it says how many more there were
_MAX_CELL = 60  # characters of one table cell before it is cut with an ellipsis
_BATCH_ROWS = 65_536


class UnknownFeatureData(UsageError, KeyError):
    """An unknown file_id or feature name (a UsageError for the CLI, a KeyError for Python)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="OUT_DIR",
                        help="run directory, a glob such as 'runs/*', or a URL (several: a run column)")
    parser.add_argument("sql", metavar="SQL",
                        help="one reading SQL statement (DuckDB) over the views "
                             + ", ".join(VIEWS))
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: table, or the -o file's suffix: "
                             ".csv, .json, .parquet)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the result to FILE instead of standard output")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                        help=f"rows a table shows at most (default {DEFAULT_MAX_ROWS}; 0: all); "
                             "csv, json and parquet always hold every row")


def main(args) -> int:
    run_specs, sql = args.runs, args.sql
    fmt = args.format
    suffix = os.path.splitext(args.output or "")[1].lower()
    if fmt is None:
        fmt = _SUFFIX_FORMATS.get(suffix, "table")
    elif _SUFFIX_FORMATS.get(suffix, fmt) != fmt:  # a .parquet file that would hold CSV, say
        raise UsageError(f"-o {args.output} names a {_SUFFIX_FORMATS[suffix]} file but --format is "
                         f"{fmt}: drop --format (the suffix decides) or name the file .{fmt}")
    if fmt == "parquet" and not args.output and sys.stdout.isatty():
        raise UsageError("--format parquet needs -o FILE or a redirected standard output "
                         "(Parquet is not written to a terminal)")
    if args.max_rows < 0:
        raise UsageError(f"--max-rows must be 0 (all) or more, not {args.max_rows}")
    con = connect(run_specs)
    try:
        reader = run_sql(con, sql)
        _write(reader, fmt, args.output, max_rows=args.max_rows)
    finally:
        con.close()
    return EXIT_OK


# ---------------------------------------------------------------- runs and the connection


@dataclass(frozen=True)
class Run:
    """One run directory: the name its rows carry in the ``run`` column, and its path."""

    name: str
    path: str  # absolute, or an fsspec URL (file://, s3://, memory://, ...)

    @property
    def is_url(self) -> bool:
        return "://" in self.path

    def has(self, relative: str) -> bool:
        """Whether the run holds the file ``relative`` (``files.parquet``, ``scores/...``)."""
        if not self.is_url:
            return os.path.isfile(os.path.join(self.path, relative))
        return _url_run(self.path).isfile(relative.replace(os.sep, "/"))


def _url_run(url: str):
    from jobs.outdir import OutDir

    return OutDir(url)


def _resolve_url(spec: str) -> tuple[str, str]:
    """(as given, URL) of a run at an fsspec URL; a clear UsageError when it is not one."""
    from jobs.redact import redact

    od = _url_run(spec)
    shown = redact(spec)
    try:
        if not od.isdir():
            raise UsageError(f"{shown}: no such run directory")
        if not od.isfile(VIEWS["files"]):
            raise UsageError(f"{shown}: not a run directory (no files.parquet; "
                             "run `audiofeat extract` into it first)")
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a missing fsspec backend, no access, ...
        raise UsageError(f"{shown}: cannot read the run: {_first_line(exc)}") from None
    return od.location, od.location


def _display_width(text: str) -> int:
    """Terminal columns of ``text``: two for East Asian wide and full-width characters, none
    for combining marks."""
    import unicodedata

    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def resolve_runs(specs) -> tuple[list[Run], bool]:
    """The run directories that ``specs`` (paths or globs) name, and whether a ``run`` column is
    wanted (several runs named, or a glob)."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    specs = [os.fspath(s) for s in specs]
    if not specs:
        raise UsageError("no run directory given")
    found: list[tuple[str, str]] = []  # (as given, absolute)
    used_glob = False
    for spec in specs:
        if "://" in spec:  # an fsspec URL (globs are not expanded there)
            found.append(_resolve_url(spec))
            continue
        expanded = os.path.expanduser(spec)
        if glob.has_magic(expanded):
            used_glob = True
            matches = [m for m in sorted(glob.glob(expanded))
                       if os.path.isfile(os.path.join(m, VIEWS["files"]))]
            if not matches:
                raise UsageError(f"no run directory (a folder with files.parquet) matches {spec!r}")
            found += [(os.path.normpath(m), os.path.abspath(m)) for m in matches]
            continue
        if not os.path.isdir(expanded):
            raise UsageError(f"{spec}: no such run directory")
        if not os.path.isfile(os.path.join(expanded, VIEWS["files"])):
            raise UsageError(f"{spec}: not a run directory (no files.parquet; "
                             "run `audiofeat extract` into it first)")
        found.append((os.path.normpath(expanded), os.path.abspath(expanded)))
    runs: list[tuple[str, str]] = []
    seen = set()
    for given, absolute in found:
        key = absolute if "://" in absolute else os.path.realpath(absolute)
        if key not in seen:
            seen.add(key)
            runs.append((given, absolute))
    names = [absolute.rstrip("/").rsplit("/", 1)[-1] if "://" in absolute
             else os.path.basename(absolute) for _, absolute in runs]
    clash = {n for n in names if names.count(n) > 1}
    result = [Run(given if name in clash else name, absolute)
              for name, (given, absolute) in zip(names, runs)]
    # several runs named (even one named twice, which is read once) or a glob: a run column, so
    # that a query written for several runs works whatever they resolve to
    return result, used_glob or len(specs) > 1


def connect(out_dir_or_dirs, *, run_column: bool | None = None):
    """An in-memory DuckDB connection with the views ``files``, ``failures``, ``segments``,
    ``file_scores`` and ``events`` (those whose file exists) over one run directory or several
    (paths or globs), locked so that a statement can read only those files and write nothing.

    ``run_column``: add the ``run`` column (default: with several runs or a glob).
    """
    import duckdb
    import pyarrow as pa

    runs, wanted = resolve_runs(out_dir_or_dirs)
    with_run = wanted if run_column is None else run_column
    con = duckdb.connect(":memory:")
    try:
        for view, relative in VIEWS.items():
            try:
                present = [run for run in runs if run.has(relative)]
                if not present:
                    continue
                if any(run.is_url for run in present):
                    dataset = _arrow_table_view(present, relative, with_run=with_run)
                else:
                    found = [(run.name, os.path.join(run.path, relative)) for run in present]
                    dataset = _arrow_view(found, with_run=with_run)
            except (OSError, pa.ArrowException) as exc:
                raise UsageError(f"cannot read the run's {relative}: {_first_line(exc)}") from None
            con.register(view, dataset)
        # check every view now: an unreadable file is one clear line here, not a query error later
        for (view,) in con.execute("SELECT view_name FROM duckdb_views() "
                                   "WHERE NOT internal ORDER BY view_name").fetchall():
            con.execute(f"SELECT * FROM {view} LIMIT 0")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        con.close()
        raise UsageError(f"cannot read the run's tables: {_first_line(exc)}") from None
    except BaseException:
        con.close()
        raise
    return con


def _arrow_view(found: list[tuple[str, str]], *, with_run: bool):
    """One Arrow dataset over the runs' copies of a table: Arrow reads the files, DuckDB gets no
    path it could open. Columns are matched by name (missing ones are null, types promoted); with
    ``with_run`` a leading ``run`` column carries each file's run name."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    paths = [path for _, path in found]
    schema = pa.unify_schemas([pq.read_schema(p) for p in paths],
                              promote_options="permissive").remove_metadata()
    partitions = None
    if with_run:
        schema = schema.insert(0, pa.field("run", pa.string()))
        partitions = [pc.field("run") == name for name, _ in found]
    return pads.FileSystemDataset.from_paths(
        paths, schema=schema, format=pads.ParquetFileFormat(),
        filesystem=pafs.LocalFileSystem(), partitions=partitions)


def _arrow_table_view(runs: list[Run], relative: str, *, with_run: bool):
    """:func:`_arrow_view` for runs of which some live at fsspec URLs: Arrow reads each table
    whole (through fsspec) and DuckDB gets the tables in memory (still no path it could open)."""
    import pyarrow as pa

    tables = []
    for run in runs:
        if run.is_url:
            table = _url_run(run.path).read_table(relative.replace(os.sep, "/"))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(os.path.join(run.path, relative))
        tables.append(table.replace_schema_metadata(None))
    schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    conformed = []
    for run, table in zip(runs, tables):
        columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                   else pa.nulls(table.num_rows, f.type) for f in schema]
        table = pa.Table.from_arrays(columns, schema=schema)
        if with_run:
            table = table.add_column(0, pa.field("run", pa.string()),
                                     pa.array([run.name] * table.num_rows, pa.string()))
        conformed.append(table)
    return pa.concat_tables(conformed)


def view_names(con) -> list[str]:
    """The views a connection made by :func:`connect` has."""
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    present = {r[0] for r in rows}
    return [v for v in VIEWS if v in present]


_READING = ("SELECT",)  # DuckDB statement types that only read (DESCRIBE, SHOW, SUMMARIZE,
# FROM-first and VALUES are SELECT statements too)
_EXPLAIN_PREFIX = re.compile(r"^\s*explain\s+(?:\([^)]*\)\s*)?(?:analy[sz]e\s+)?", re.IGNORECASE)


def _statement_kind(statement) -> str:
    return statement.type.name


def check_read_only(con, sql: str):
    """The one statement of ``sql``, if it only reads; else a UsageError naming what it is."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"SQL error: {_first_line(exc)}") from None
    if not statements:
        raise UsageError("the SQL holds no statement")
    if len(statements) > 1:
        raise UsageError(f"give one SQL statement, not {len(statements)}")
    statement = statements[0]
    kind = _statement_kind(statement)
    if kind == "EXPLAIN":
        # EXPLAIN ANALYZE runs its statement: allow it only in front of a reading one
        inner_sql = _EXPLAIN_PREFIX.sub("", statement.query, count=1)
        try:
            inner = con.extract_statements(inner_sql) if inner_sql != statement.query else []
        except duckdb.Error:
            inner = []
        if len(inner) != 1 or _statement_kind(inner[0]) not in _READING:
            raise UsageError("refused: EXPLAIN is allowed only in front of a SELECT "
                             "(the run's tables are read-only)")
        return statement
    if kind not in _READING:
        if kind == "MULTI":  # DuckDB creates an ENUM type first, then selects
            raise UsageError("refused: a PIVOT without an IN list creates types; name the "
                             "values: PIVOT t ON col IN ('a', 'b') USING count(*)")
        if kind == "LOAD" and re.match(r"\s*(?:FORCE\s+)?INSTALL\b", statement.query, re.I):
            kind = "INSTALL"  # DuckDB files INSTALL under its LOAD statement type
        raise UsageError(f"refused: {kind} statements are not allowed; only reading statements "
                         "(SELECT, WITH, DESCRIBE, SUMMARIZE, EXPLAIN) run on a run's tables, "
                         "which are read-only")
    return statement


def run_sql(con, sql: str):
    """Run one reading statement on a :func:`connect` connection: a ``pyarrow.RecordBatchReader``
    over its result. Anything else, bad SQL or a refused file access is a UsageError."""
    import duckdb

    statement = check_read_only(con, sql)
    try:
        return con.sql(statement.query).to_arrow_reader(_BATCH_ROWS)
    except duckdb.PermissionException as exc:
        raise UsageError("refused: the statement reaches outside the run's tables "
                         f"({_first_line(exc)})") from None
    except duckdb.CatalogException as exc:
        raise UsageError(f"SQL error: {_first_line(exc)} (views here: "
                         f"{', '.join(view_names(con)) or 'none'}; files outside the run "
                         "directories cannot be read)") from None
    except duckdb.Error as exc:
        raise UsageError(f"SQL error: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------- output


def _write(reader, fmt: str, output: str | None, *, max_rows: int) -> None:
    import duckdb

    if output is None:
        stream = sys.stdout
        try:
            if fmt == "parquet":  # to a pipe or a file (the terminal was refused)
                stream.flush()
                _write_parquet(reader, stream.buffer)
            else:
                _WRITERS[fmt](reader, stream, max_rows=max_rows)
            stream.flush()
        except duckdb.Error as exc:  # an error met while the result streams
            raise UsageError(f"SQL error: {_first_line(exc)}") from None
        except BrokenPipeError:  # `audiofeat query ... | head`: the reader has what it wanted
            _silence_stdout()
        return
    directory = os.path.dirname(os.path.abspath(output))
    try:  # a missing folder is made, as plot -o and extract --out make theirs
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:  # a part of the path is a file, no permission, a read-only disk
        raise UsageError(f"-o {output}: cannot make the folder {directory}: {exc.strerror or exc}") from None
    # a file is written beside and renamed over it (no half-written table); /dev/null, a named
    # pipe or another device is written into: renaming over it replaced the device itself
    special = _is_special_file(output)
    tmp = output if special else os.path.join(directory, f".{os.path.basename(output)}.tmp-{uuid.uuid4().hex}")
    try:
        if fmt == "parquet":
            _write_parquet(reader, tmp)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as stream:
                _WRITERS[fmt](reader, stream, max_rows=max_rows)
        if not special:
            os.replace(tmp, output)
    except duckdb.Error as exc:
        raise UsageError(f"SQL error: {_first_line(exc)}") from None
    except OSError as exc:
        from jobs.errors import OutputError, storage_error

        if storage_error(exc):  # full, over quota or read-only: exit 3
            raise OutputError(f"-o {output}: {storage_error(exc)}") from None
        raise UsageError(f"-o {output}: {exc.strerror or exc}") from None
    finally:
        if not special and os.path.exists(tmp):
            os.remove(tmp)


def _is_special_file(path: str) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (a device such as
    /dev/null, a named pipe, a socket)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that Python's flush at exit does not fail again on
    the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


def _write_parquet(reader, path: str) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _write_csv(reader, stream, *, max_rows: int) -> None:
    import csv

    import pyarrow as pa

    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(reader.schema.names)
    nested = [pa.types.is_nested(f.type) for f in reader.schema]
    for batch in reader:
        batch = _shortest_floats(batch)
        columns = [_csv_column(batch.column(i), nested[i]) for i in range(batch.num_columns)]
        writer.writerows(zip(*columns))


def _shortest_floats(batch):
    """The batch with its float32 columns as float64 holding each value's shortest decimal
    (0.826, not 0.8259999752044678), so that CSV and JSON show what was stored."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = list(batch.columns)
    changed = False
    for i, column in enumerate(columns):
        if pa.types.is_float32(column.type) or pa.types.is_float16(column.type):
            text = pc.cast(column, pa.string()).to_pylist()
            columns[i] = pa.array([None if t is None else float(t) for t in text], pa.float64())
            changed = True
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names) if changed else batch


def _csv_column(array, nested: bool) -> list:
    values = array.to_pylist()
    if nested:
        return [None if v is None else _json_text(v) for v in values]
    return values


def _write_json(reader, stream, *, max_rows: int) -> None:
    """JSON records: ``[{"column": value, ...}, ...]`` (NaN and infinities as null)."""
    stream.write("[")
    first = True
    for batch in reader:
        for row in _shortest_floats(batch).to_pylist():
            stream.write("\n" if first else ",\n")
            stream.write(_json_text(row))
            first = False
    stream.write("\n]\n" if not first else "]\n")


def _json_text(value) -> str:
    import json

    return json.dumps(_json_safe(value), default=str, ensure_ascii=False)


def _json_safe(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _write_table(reader, stream, *, max_rows: int) -> None:
    """Aligned columns for a person: numbers right-aligned, at most ``max_rows`` rows (0: all),
    then a line saying how many rows were left out."""
    import pyarrow as pa

    names = reader.schema.names
    if names == ["explain_key", "explain_value"]:  # EXPLAIN: the plans as DuckDB draws them
        for batch in reader:
            for key, plan in zip(*(batch.column(i).to_pylist() for i in range(2))):
                stream.write(f"{key}:\n{plan}\n")
        return
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_decimal(f.type) for f in reader.schema]
    rows: list[list[str]] = []
    total = 0
    for batch in reader:
        total += batch.num_rows
        room = batch.num_rows if max_rows == 0 else max(0, max_rows - len(rows))
        if room:
            part = batch.slice(0, room)
            columns = [[_cell(v) for v in part.column(i).to_pylist()]
                       for i in range(part.num_columns)]
            rows.extend(map(list, zip(*columns)) if columns else [[] for _ in range(part.num_rows)])
    widths = [_display_width(n) for n in names]
    for row in rows:
        widths = [max(w, _display_width(c)) for w, c in zip(widths, row)]

    def line(cells, header=False):
        out = []
        for cell, width, right in zip(cells, widths, numeric):
            pad = " " * (width - _display_width(cell))  # wide (East Asian) characters take two columns
            out.append(pad + cell if right and not header else cell + pad)
        return "  ".join(out).rstrip()

    stream.write(line(names, header=True) + "\n")
    stream.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        stream.write(line(row) + "\n")
    shown = len(rows)
    if total > shown:
        stream.write(f"... {total - shown} more rows not shown ({total} in all; "
                     "--max-rows 0 shows every row, --format csv|json|parquet writes them all)\n")
    else:
        stream.write(f"({total} row{'s' if total != 1 else ''})\n")


def _cell(value) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = _json_text(value)
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= _MAX_CELL else text[:_MAX_CELL - 1] + "…"


_WRITERS = {"table": _write_table, "csv": _write_csv, "json": _write_json}


# ---------------------------------------------------------------- features (xarray / numpy)


def _run_dir(out_dir):
    """The run directory's path (checked), or an :class:`jobs.outdir.OutDir` for a URL."""
    path = os.fspath(out_dir)
    if "://" in path:
        _resolve_url(path)
        od = _url_run(path)
        if not od.isfile("features.zarr/zarr.json"):
            raise UsageError(f"{od.display}: the run has no feature store (features.zarr)")
        return od
    if not os.path.isdir(path):
        raise UsageError(f"{path}: no such run directory")
    if not os.path.isfile(os.path.join(path, VIEWS["files"])):
        raise UsageError(f"{path}: not a run directory (no files.parquet)")
    if not os.path.isfile(os.path.join(path, "features.zarr", "zarr.json")):
        raise UsageError(f"{path}: the run has no feature store (features.zarr)")
    return path


def _open_group(path):
    import warnings

    import zarr

    with warnings.catch_warnings():  # consolidated metadata is not (yet) part of the v3 spec
        warnings.simplefilter("ignore")
        if not isinstance(path, str):  # a URL's OutDir
            return zarr.open_group(path.zarr_store("features.zarr", read_only=True), mode="r")
        return zarr.open_group(os.path.join(path, "features.zarr"), mode="r")


def _file_rows(path, columns=("file_id", "frame_start", "frame_stop"), filters=None):
    import pyarrow.parquet as pq

    if not isinstance(path, str):  # a URL's OutDir
        return path.read_table(VIEWS["files"], columns=list(columns), filters=filters)
    return pq.read_table(os.path.join(path, VIEWS["files"]), columns=list(columns),
                         filters=filters)


def open_features(out_dir):
    """The run's feature store as an ``xarray.Dataset`` over Dask arrays; no chunk is read.

    - dimension ``frame``: every frame that belongs to a file in files.parquet, in store order
      (the rows of one file are contiguous); padding rows between batches and rows of files no
      longer in the run are left out;
    - one variable per feature: ``(frame, <name>_dim)`` for vector features (``mfcc``,
      ``melspectrogram``), ``(frame,)`` for scalar ones (``rms``, ``zero_crossing_rate``...);
      Dask chunks follow the store's chunks;
    - coordinates ``file_id`` (per frame) and ``time_s`` (per frame: ``k * hop_length / sr`` for
      frame ``k`` of its file, the frame's centre);
    - attrs: the store's ``feature_config`` (sr, hop_length, n_fft, per-feature kwargs),
      ``config_hash``, ``frame_rate_hz``, ``sr``, ``hop_length``, ``audiofeat_version``.

    ``ds.where(ds.file_id == fid, drop=True)`` or ``ds.groupby("file_id")`` select per file.
    """
    import dask.array as da
    import numpy as np
    import xarray as xr

    path = _run_dir(out_dir)
    group = _open_group(path)
    attrs = dict(group.attrs)
    config = attrs.get("feature_config") or {}
    sr, hop = config.get("sr"), config.get("hop_length")
    if not sr or not hop:
        raise UsageError(f"{path}: the feature store's attributes lack feature_config sr/hop_length")

    table = _file_rows(path)
    starts = table.column("frame_start").to_numpy().astype(np.int64, copy=False)
    stops = table.column("frame_stop").to_numpy().astype(np.int64, copy=False)
    ids = np.asarray(table.column("file_id").to_numpy(zero_copy_only=False), dtype=object)
    order = np.argsort(starts, kind="stable")
    starts, stops, ids = starts[order], stops[order], ids[order]
    lengths = stops - starts
    keep = lengths > 0
    starts, stops, ids, lengths = starts[keep], stops[keep], ids[keep], lengths[keep]
    if len(starts) > 1 and (starts[1:] < stops[:-1]).any():
        raise UsageError(f"{path}: files.parquet has files whose frame rows overlap")
    n_frames = int(lengths.sum())
    file_id = np.repeat(ids, lengths)
    first_frame = np.repeat(np.cumsum(lengths) - lengths, lengths)
    time_s = (np.arange(n_frames, dtype=np.int64) - first_frame) * (float(hop) / float(sr))

    data_vars = {}
    selections: dict[tuple, _RowSelection] = {}  # (store rows, row chunks) -> covered rows
    for name in sorted(group.array_keys()):
        array = group[name]
        if len(stops) and int(stops[-1]) > array.shape[0]:
            raise UsageError(f"{path}: files.parquet names rows beyond the end of {name} "
                             f"({array.shape[0]} rows)")
        lazy = da.from_zarr(array)
        key = (array.shape[0], lazy.chunks[0])
        if key not in selections:
            selections[key] = _RowSelection(starts, stops, lazy.chunks[0])
        selected = selections[key].select(lazy)
        dim = array.shape[1] if array.ndim == 2 else 1
        var_attrs = {"feature": name, **(config.get("features", {}).get(name) or {})}
        if array.ndim == 2 and dim == 1:
            data_vars[name] = xr.Variable(("frame",), selected[:, 0], attrs=var_attrs)
        else:
            data_vars[name] = xr.Variable(("frame", f"{name}_dim"), selected, attrs=var_attrs)
    ds_attrs = {
        "feature_config": config,
        "config_hash": attrs.get("config_hash"),
        "frame_rate_hz": attrs.get("frame_rate_hz", float(sr) / float(hop)),
        "sr": sr,
        "hop_length": hop,
        "audiofeat_version": attrs.get("audiofeat_version"),
    }
    with _object_strings_kept():
        return xr.Dataset(data_vars,
                          coords={"file_id": ("frame", file_id), "time_s": ("frame", time_s)},
                          attrs=ds_attrs)


@contextlib.contextmanager
def _object_strings_kept():
    """xarray passes an object array of strings through pandas, which (pandas >= 3) infers its
    string dtype and converts every element there and back: about 1 s for the 6M file_id values
    of a 100k-file store. With inference off (while it can still be turned off) the array stays
    as it is."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infer_string.*")
        try:
            context = pd.option_context("future.infer_string", False)
            context.__enter__()
        except (KeyError, ValueError, AttributeError, pd.errors.OptionError):
            context = None
    try:
        yield
    finally:
        if context is not None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*infer_string.*")
                context.__exit__(None, None, None)


def _take_rows(block, keep):
    return block[keep]


class _RowSelection:
    """The store rows that belong to a file (``[frame_start, frame_stop)`` of some row of
    files.parquet), per chunk of the store's arrays."""

    def __init__(self, starts, stops, row_chunks: tuple[int, ...]):
        import numpy as np

        n_rows = int(sum(row_chunks))
        edges = np.zeros(n_rows + 1, np.int32)
        np.add.at(edges, starts, 1)
        np.add.at(edges, stops, -1)
        self.covered = np.cumsum(edges[:-1], dtype=np.int32) > 0
        self.row_chunks = tuple(int(c) for c in row_chunks)
        offsets = np.r_[0, np.cumsum(self.row_chunks)[:-1]].astype(np.int64)
        self.counts = (np.add.reduceat(self.covered, offsets, dtype=np.int64) if n_rows
                       else np.zeros(len(self.row_chunks), np.int64))
        self.everything = bool(self.counts.sum() == n_rows)
        self._mask = None

    def select(self, lazy):
        """The covered rows of a Dask array over the store: one task per store chunk (it reads
        the chunk and keeps its covered rows); chunks that hold no covered row are left out."""
        import dask.array as da
        import numpy as np

        if self.everything:
            return lazy
        if self._mask is None:
            self._mask = da.from_array(self.covered, chunks=(self.row_chunks,), name=False)
        index = "ij"[:lazy.ndim]
        selected = da.blockwise(_take_rows, index, lazy, index, self._mask, "i",
                                adjust_chunks={"i": tuple(int(c) for c in self.counts)},
                                dtype=lazy.dtype, meta=np.empty((0,) * lazy.ndim, lazy.dtype))
        nonempty = np.flatnonzero(self.counts)
        if len(nonempty) < len(self.counts):
            selected = selected.blocks[nonempty.tolist()] if len(nonempty) else selected[:0]
        return selected


def features(out_dir, file_id: str, name: str):
    """One file's frames of one feature: rows ``[frame_start, frame_stop)`` of the store's array
    ``name``, a float32 ``numpy.ndarray`` of shape ``(n_frames, dim)`` (dim 1 for scalar features).

    An unknown ``file_id`` or feature raises :class:`UnknownFeatureData` (a ``KeyError`` and a
    ``UsageError``) that names what exists.
    """
    import numpy as np
    import pyarrow.compute as pc

    path = _run_dir(out_dir)
    group = _open_group(path)
    names = sorted(group.array_keys())
    if name not in names:
        raise UnknownFeatureData(f"no feature {name!r} in {path} (features: {', '.join(names)})")
    table = _file_rows(path, filters=pc.field("file_id") == str(file_id))
    if table.num_rows == 0:
        raise UnknownFeatureData(f"no file with file_id {file_id!r} in {path}/files.parquet")
    start = int(table.column("frame_start")[0].as_py())
    stop = int(table.column("frame_stop")[0].as_py())
    return np.asarray(group[name][start:stop])
