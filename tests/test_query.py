"""``audiofeat query`` and ``jobs.query``: views over a real run (made here by ``audiofeat run``),
output formats, several runs, the read-only lock, bad input, and the features as xarray/numpy."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dask.array as da
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from train_helpers import REPO, copy_run, write_config

from jobs.cli import main as cli_main
from jobs.errors import UsageError
from jobs.query import VIEWS, connect, features, open_features, run_sql
from jobs.store import read_rows, store_attrs


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real run of the bundled sample: extract, train and score (``audiofeat run``)."""
    root = tmp_path_factory.mktemp("query")
    config = write_config(root / "job.yaml")
    out = root / "runs" / "sample"
    assert cli_main(["run", str(config), "--out", str(out), "--workers", "1"]) == 0
    for relative in VIEWS.values():
        assert (out / relative).is_file(), relative
    return out


@pytest.fixture(scope="module")
def two_runs(run, tmp_path_factory) -> Path:
    """A folder with two run directories (the sample run and a copy), for globs and ``run``."""
    root = tmp_path_factory.mktemp("two-runs")
    copy_run(run, root / "first")
    copy_run(run, root / "second")
    return root


def query(capsys, *argv) -> tuple[int, str, str]:
    status = cli_main(["query", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("audiofeat query: error: ") and "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- views


def test_every_view_matches_its_parquet_file(run):
    con = connect(run)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == set(VIEWS)
    for view, relative in VIEWS.items():
        expected = pq.read_table(run / relative).to_pandas()
        got = con.sql(f"SELECT * FROM {view}").df()
        assert list(got.columns) == list(expected.columns), view
        key = list(expected.columns[:2])
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                      expected.sort_values(key).reset_index(drop=True),
                                      check_dtype=False)


def test_only_the_tables_that_exist_become_views(run, tmp_path):
    extract_only = copy_run(run, tmp_path / "extract-only")
    shutil.rmtree(extract_only / "scores")
    con = connect(extract_only)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == {"files", "failures"}
    assert con.execute("SELECT count(*) FROM files").fetchone()[0] == 120


def test_a_joined_aggregate(run):
    con = connect(run)
    rows = con.execute("""
        SELECT s.true_label, count(*) AS n, avg(f.duration_s) AS mean_duration
        FROM files f JOIN file_scores s USING (file_id)
        GROUP BY s.true_label ORDER BY s.true_label""").fetchall()
    files = pd.read_parquet(run / "files.parquet")
    scores = pd.read_parquet(run / "scores" / "files.parquet")
    expected = files.merge(scores, on="file_id").groupby("true_label")["duration_s"].agg(["count", "mean"])
    assert [r[0] for r in rows] == list(expected.index)
    assert [r[1] for r in rows] == list(expected["count"])
    np.testing.assert_allclose([r[2] for r in rows], expected["mean"])


# ---------------------------------------------------------------- output formats


SQL_LOUDEST = "SELECT file_id, path, rms_mean FROM files ORDER BY rms_mean DESC, file_id LIMIT 5"


def _loudest(run) -> pd.DataFrame:
    files = pd.read_parquet(run / "files.parquet")
    return files.sort_values(["rms_mean", "file_id"], ascending=[False, True]).head(5)


def test_table_format_is_aligned_text(run, capsys):
    status, out, err = query(capsys, run, SQL_LOUDEST)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["file_id", "path", "rms_mean"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[-1] == "(5 rows)" and len(lines) == 8
    expected = _loudest(run)
    assert [line.split()[0] for line in lines[2:7]] == list(expected["file_id"])
    # numbers are right-aligned: every value ends in the same column
    assert len({len(line) for line in lines[2:7]}) == 1


def test_table_format_says_how_many_rows_were_cut(run, capsys):
    status, out, _ = query(capsys, run, "SELECT file_id FROM files", "--max-rows", 7)
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 2 + 7 + 1
    assert lines[-1].startswith("... 113 more rows not shown (120 in all")
    status, out, _ = query(capsys, run, "SELECT file_id FROM files", "--max-rows", 0)
    assert out.splitlines()[-1] == "(120 rows)"


def test_csv_format(run, capsys):
    status, out, _ = query(capsys, run, SQL_LOUDEST, "--format", "csv")
    assert status == 0
    got = pd.read_csv(io.StringIO(out))
    expected = _loudest(run)
    assert list(got.columns) == ["file_id", "path", "rms_mean"]
    assert list(got["path"]) == list(expected["path"])
    np.testing.assert_array_equal(got["rms_mean"], expected["rms_mean"])  # repr: exact round trip


def test_json_format_is_records(run, capsys):
    status, out, _ = query(capsys, run, SQL_LOUDEST, "--format", "json")
    assert status == 0
    records = json.loads(out)
    expected = _loudest(run)
    assert records == [{"file_id": r.file_id, "path": r.path, "rms_mean": r.rms_mean}
                       for r in expected.itertuples()]
    status, out, _ = query(capsys, run, "SELECT * FROM files WHERE false", "--format", "json")
    assert json.loads(out) == []
    status, out, _ = query(capsys, run, "SELECT 'nan'::DOUBLE AS x, [1, 2] AS l", "--format", "json")
    assert json.loads(out) == [{"x": None, "l": [1, 2]}]
    # float32 columns (scores) are written as their shortest decimal, in JSON and CSV
    status, out, _ = query(capsys, run, "SELECT 0.826::REAL AS x", "--format", "json")
    assert json.loads(out) == [{"x": 0.826}]
    status, out, _ = query(capsys, run, "SELECT 0.826::REAL AS x", "--format", "csv")
    assert out == "x\n0.826\n"


def test_parquet_format_needs_an_output_file_or_a_redirection(run, capsys, tmp_path, monkeypatch):
    import subprocess
    import sys

    with monkeypatch.context() as patch:
        patch.setattr(sys.stdout, "isatty", lambda: True)  # a terminal: refused
        status, _, err = query(capsys, run, SQL_LOUDEST, "--format", "parquet")
    assert status == 2 and "-o FILE" in one_error_line(err)
    piped = subprocess.run([sys.executable, "-m", "jobs", "query", str(run), "SELECT * FROM files",
                            "--format", "parquet"], capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    import io

    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(piped.stdout)), pd.read_parquet(run / "files.parquet"))
    target = tmp_path / "loudest.parquet"
    status, out, _ = query(capsys, run, "SELECT * FROM files", "--format", "parquet", "-o", target)
    assert status == 0 and out == ""
    pd.testing.assert_frame_equal(pd.read_parquet(target), pd.read_parquet(run / "files.parquet"),
                                  check_like=False)
    assert [p.name for p in tmp_path.iterdir()] == ["loudest.parquet"]  # no temporary left


def test_an_output_that_is_a_named_pipe_or_device_is_written_into_not_replaced(run, capsys, tmp_path):
    """-o was written beside and renamed over its target: `-o /dev/null` replaced the device
    node with a regular file (as root), and every later write to /dev/null landed in it."""
    import stat
    import threading

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    status, out, _ = query(capsys, run, SQL_LOUDEST, "-o", fifo, "--format", "csv")
    reader.join(timeout=30)
    assert status == 0 and out == ""
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the pipe
    assert received and received[0].splitlines()[0].startswith("file_id")
    assert len(received[0].splitlines()) == 6  # the header and five rows
    assert [p.name for p in tmp_path.iterdir()] == ["pipe.csv"]  # no temporary file left


def test_output_file_and_format_from_its_suffix(run, capsys, tmp_path):
    status, out, _ = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "loudest.csv")
    assert status == 0 and out == ""
    assert list(pd.read_csv(tmp_path / "loudest.csv")["file_id"]) == list(_loudest(run)["file_id"])
    status, _, _ = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "loudest.json")
    assert len(json.loads((tmp_path / "loudest.json").read_text())) == 5
    status, _, _ = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "loudest.txt")
    assert (tmp_path / "loudest.txt").read_text().splitlines()[-1] == "(5 rows)"
    status, _, _ = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "new" / "folder" / "x.csv")
    assert status == 0 and len(pd.read_csv(tmp_path / "new" / "folder" / "x.csv")) == 5
    status, _, err = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "loudest.csv" / "x.csv")
    assert status == 2 and "cannot make the folder" in one_error_line(err)
    # a --format that contradicts the file's suffix is refused, and nothing is written
    status, _, err = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "out.parquet", "--format", "csv")
    assert status == 2 and "names a parquet file but --format is csv" in one_error_line(err)
    assert not (tmp_path / "out.parquet").exists()
    status, _, _ = query(capsys, run, SQL_LOUDEST, "-o", tmp_path / "out.txt", "--format", "csv")
    assert status == 0 and len(pd.read_csv(tmp_path / "out.txt")) == 5  # no format of its own


# ---------------------------------------------------------------- several runs


def test_several_runs_get_a_run_column(two_runs, capsys):
    status, out, _ = query(capsys, two_runs / "first", two_runs / "second",
                           "SELECT run, count(*) AS n FROM files GROUP BY run ORDER BY run",
                           "--format", "json")
    assert status == 0
    assert json.loads(out) == [{"run": "first", "n": 120}, {"run": "second", "n": 120}]
    con = connect([two_runs / "first", two_runs / "second"])
    for view in VIEWS:
        columns = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
        assert columns[0] == "run", view


def test_a_glob_names_several_runs(two_runs, capsys):
    sql = "SELECT run, label, count(*) AS n FROM file_scores GROUP BY ALL ORDER BY run, label"
    status, out, _ = query(capsys, str(two_runs / "*"), sql, "--format", "csv")
    assert status == 0
    table = pd.read_csv(io.StringIO(out), dtype={"label": str})
    assert set(table["run"]) == {"first", "second"}
    first = table[table.run == "first"].drop(columns="run").reset_index(drop=True)
    second = table[table.run == "second"].drop(columns="run").reset_index(drop=True)
    pd.testing.assert_frame_equal(first, second)
    assert first["n"].sum() == 120
    # a glob that matches one run still adds the column (the user asked for runs)
    con = connect(str(two_runs / "fir*"))
    assert con.execute("SELECT DISTINCT run FROM files").fetchall() == [("first",)]


def test_runs_with_the_same_name_are_told_apart_by_path(run, tmp_path):
    copy_run(run, tmp_path / "elsewhere" / "sample")
    con = connect([run, tmp_path / "elsewhere" / "sample"])
    names = sorted(r[0] for r in con.execute("SELECT DISTINCT run FROM files").fetchall())
    assert names == sorted([str(run), str(tmp_path / "elsewhere" / "sample")])


def test_the_same_run_named_twice_counts_once(run):
    con = connect([run, run / ".." / run.name])
    assert con.execute("SELECT count(*) FROM files").fetchone()[0] == 120


# ---------------------------------------------------------------- read-only and contained


@pytest.mark.parametrize("sql", [
    "COPY files TO '{tmp}/copy.csv'",
    "COPY (SELECT * FROM files) TO '{run}/files.parquet' (USE_TMP_FILE false)",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{run}/files.parquet' (USE_TMP_FILE false)",
    "CREATE TABLE t AS SELECT * FROM files",
    "CREATE VIEW v AS SELECT 1",
    "INSERT INTO files SELECT * FROM files",
    "DROP VIEW files",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "PRAGMA enable_profiling",
    "EXPORT DATABASE '{tmp}/export'",
    "PIVOT file_scores ON label USING count(*)",
])
def test_statements_that_write_are_refused(run, capsys, tmp_path, sql):
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.parquet")}
    status, out, err = query(capsys, run, sql.format(tmp=tmp_path, run=run))
    assert status == 2 and out == ""
    assert "refused" in one_error_line(err)
    first = sql.split()[0].upper()
    if first in ("INSTALL", "LOAD", "COPY", "ATTACH", "PIVOT", "SET"):  # named as typed
        assert f"refused: {first} " in one_error_line(err) or first == "PIVOT"
    assert list(tmp_path.iterdir()) == []
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.parquet")} == before


@pytest.mark.parametrize("sql", [
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_parquet('{run}/../*/files.parquet')",
    "SELECT * FROM read_json('{run}/manifest.json')",
    "SELECT * FROM glob('/*')",
])
def test_files_outside_the_tables_cannot_be_read(run, capsys, sql):
    status, out, err = query(capsys, run, sql.format(run=run))
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert "root:" not in line


def test_reading_statements_run(run, capsys):
    for sql in ["DESCRIBE files", "SUMMARIZE file_scores", "FROM events LIMIT 1",
                "WITH t AS (SELECT label FROM segments) SELECT count(*) FROM t",
                "EXPLAIN SELECT avg(rms_mean) FROM files", "SELECT 42;",
                "PIVOT file_scores ON split IN ('train', 'test') USING count(*) GROUP BY label"]:
        status, out, err = query(capsys, run, sql)
        assert status == 0 and err == "" and out, sql


def test_the_connection_is_locked(run):
    con = connect(run)
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(UsageError, match="refused"):
        run_sql(con, "COPY files TO 'x.csv'")


# ---------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_exit_2(run, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        ([tmp_path / "missing", "SELECT 1"], "no such run directory"),
        ([tmp_path / "empty", "SELECT 1"], "not a run directory"),
        ([str(tmp_path / "nothing-*"), "SELECT 1"], "no run directory"),
        ([run, "SELEC path FROM files"], "Parser Error"),
        ([run, "SELECT nope FROM files"], "nope"),
        ([run, "SELECT * FROM nonesuch"], "views here: files, failures, segments, file_scores, events"),
        ([run, "SELECT 'a'::INTEGER"], "Conversion Error"),
        ([run, "SELECT 1; SELECT 2"], "one SQL statement"),
        ([run, "   "], "no statement"),
        ([run, "SELECT 1", "--max-rows", "-1"], "--max-rows"),
    ]
    for argv, needle in cases:
        status, out, err = query(capsys, *argv)
        assert status == 2 and out == "", argv
        assert needle in one_error_line(err), (argv, err)


def test_the_sql_is_required(capsys):
    with pytest.raises(SystemExit) as exit_status:  # argparse: usage and one error line
        cli_main(["query", "SELECT 1"])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "audiofeat query: error: the following arguments are required: SQL"


def test_the_installed_command_prints_no_traceback(run):
    result = subprocess.run([sys.executable, "-m", "jobs", "query", str(run), "SELECT * FROM x y z"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and result.stdout == ""
    one_error_line(result.stderr)


def test_a_reader_that_stops_early_gets_no_traceback(run):
    """``audiofeat query ... | head -1``: the closed pipe ends the command quietly."""
    sql = "SELECT * FROM segments, range(500)"
    process = subprocess.Popen([sys.executable, "-m", "jobs", "query", str(run), sql, "--format", "csv"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert process.stdout.readline().startswith(b"file_id,segment,")
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and stderr == ""


# ---------------------------------------------------------------- features


def test_open_features_matches_the_store(run):
    files = pd.read_parquet(run / "files.parquet")
    attrs = store_attrs(str(run))
    config = attrs["feature_config"]
    ds = open_features(run)
    assert ds.sizes["frame"] == files["n_frames"].sum()
    assert set(ds.data_vars) == set(attrs["dims"])
    assert ds["mfcc"].dims == ("frame", "mfcc_dim") and ds.sizes["mfcc_dim"] == 20
    assert ds["rms"].dims == ("frame",)
    assert all(isinstance(ds[name].data, da.Array) for name in ds.data_vars)
    assert ds.attrs["feature_config"] == config and ds.attrs["config_hash"] == attrs["config_hash"]
    assert ds.attrs["frame_rate_hz"] == config["sr"] / config["hop_length"]
    per_file = pd.Series(ds["file_id"].values).value_counts()
    assert per_file.to_dict() == dict(zip(files["file_id"], files["n_frames"]))
    for row in files.sample(5, random_state=0).itertuples():
        mask = ds["file_id"].values == row.file_id
        np.testing.assert_allclose(ds["time_s"].values[mask],
                                   np.arange(row.n_frames) * config["hop_length"] / config["sr"])
        for name in ("mfcc", "melspectrogram", "rms"):
            stored = read_rows(str(run), name, row.frame_start, row.frame_stop)
            got = ds[name].values[mask]
            np.testing.assert_array_equal(got.reshape(stored.shape), stored)
    # per-file means from the frames agree with the summary columns of files.parquet
    means = ds["rms"].groupby("file_id").mean().to_series()
    np.testing.assert_allclose(means[files["file_id"]].to_numpy(), files["rms_mean"], rtol=1e-5)


def test_xarray_opens_the_store_itself(run):
    """xarray.open_zarr reads the raw arrays (Zarr v3 dimension names): every row, padding
    between batches included, equal to the store; open_features is the view by file."""
    import xarray as xr

    attrs = store_attrs(str(run))
    raw = xr.open_zarr(run / "features.zarr")
    assert raw["mfcc"].dims == ("frame", "mfcc_dim")
    assert raw.sizes["frame"] == attrs["total_frames"]
    files = pd.read_parquet(run / "files.parquet")
    row = files.iloc[0]
    np.testing.assert_array_equal(raw["mfcc"][row.frame_start:row.frame_stop].values,
                                  read_rows(str(run), "mfcc", row.frame_start, row.frame_stop))


def test_open_features_reads_no_chunk(run, tmp_path):
    """Opening works on a copy whose chunk files are gone: only metadata and files.parquet."""
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "files.parquet", bare / "files.parquet")
    shutil.copytree(run / "features.zarr", bare / "features.zarr",
                    ignore=lambda folder, names: [n for n in names if n == "c"])
    assert not list((bare / "features.zarr").rglob("c"))
    ds = open_features(bare)
    assert ds.sizes == open_features(run).sizes


class ChunkOpens:
    """Counts files opened under a store's chunk folders (``<array>/c/...``): an audit hook."""

    def __init__(self):
        self.prefix, self.opened = None, []
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if self.prefix and event == "open" and isinstance(args[0], (str, bytes, Path)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(self.prefix) and f"{os.sep}c{os.sep}" in path:
                self.opened.append(path)

    def watch(self, store: Path):
        self.prefix, self.opened = os.path.realpath(store) + os.sep, []
        return self


_CHUNK_OPENS = ChunkOpens()


def test_open_features_opens_no_chunk_file(run):
    watch = _CHUNK_OPENS.watch(run / "features.zarr")
    try:
        ds = open_features(run)
        assert watch.opened == []
        ds["mfcc"][:5].compute()  # the hook sees chunk reads when there are some
        assert len(watch.opened) == 1
    finally:
        watch.prefix = None


def test_open_features_leaves_out_rows_of_no_file(run, tmp_path):
    """Rows that belong to no file in files.parquet (padding, files no longer in the run) are
    not frames of the dataset."""
    trimmed = copy_run(run, tmp_path / "trimmed")
    files = pd.read_parquet(run / "files.parquet").sort_values("frame_start")
    dropped = files.iloc[[3, 50]]
    kept = files.drop(dropped.index)
    kept.to_parquet(trimmed / "files.parquet", index=False)
    ds = open_features(trimmed)
    assert ds.sizes["frame"] == kept["n_frames"].sum()
    assert not set(dropped["file_id"]) & set(ds["file_id"].values)
    rows = np.concatenate([np.arange(r.frame_start, r.frame_stop) for r in kept.itertuples()])
    stored = read_rows(str(run), "mfcc", 0, int(files["frame_stop"].max()))
    np.testing.assert_array_equal(ds["mfcc"].values, stored[rows])
    assert len(ds["mfcc"].data.chunks[0]) >= 3  # slices of the store's chunks, no copy


def test_features_of_one_file(run):
    files = pd.read_parquet(run / "files.parquet")
    row = files.iloc[7]
    mfcc = features(run, row.file_id, "mfcc")
    assert mfcc.shape == (row.n_frames, 20) and mfcc.dtype == np.float32
    np.testing.assert_array_equal(mfcc, read_rows(str(run), "mfcc", row.frame_start, row.frame_stop))
    assert features(run, row.file_id, "rms").shape == (row.n_frames, 1)
    np.testing.assert_allclose(features(run, row.file_id, "rms").mean(), row.rms_mean, rtol=1e-5)


def test_features_names_what_is_unknown(run, tmp_path):
    file_id = pd.read_parquet(run / "files.parquet")["file_id"].iloc[0]
    with pytest.raises(KeyError, match="no file with file_id 'nope'"):
        features(run, "nope", "mfcc")
    with pytest.raises(UsageError, match=r"no feature 'chroma' .*features: melspectrogram, mfcc"):
        features(run, file_id, "chroma")
    with pytest.raises(UsageError, match="no such run directory"):
        open_features(tmp_path / "missing")
    with pytest.raises(UsageError, match="no such run directory"):
        features(tmp_path / "missing", file_id, "mfcc")


# ---------------------------------------------------------------- the documented examples


def _documented_commands():
    """(command, its documented output lines) for each ``$ audiofeat query`` in docs/analytics.md
    and in README.md's Analytics section."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    analytics = readme[readme.index("## Analytics"):readme.index("\n## ", readme.index("## Analytics") + 3)]
    text = (REPO / "docs" / "analytics.md").read_text() + "\n" + analytics
    found = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines, i = block.splitlines(), 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command, i = lines[i][2:], i + 1
            while True:  # a command goes on until its quotes close
                try:
                    argv = shlex.split(command)
                    break
                except ValueError:
                    command, i = command + "\n" + lines[i], i + 1
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            if argv[:2] == ["audiofeat", "query"]:
                found.append((argv[2:], output))
    return found


def test_the_documented_examples_run(run, two_runs, tmp_path, capsys, monkeypatch):
    """Every query in docs/analytics.md runs on this test's run (made with other audio settings,
    so the numbers differ) with the documented exit status and the documented header line."""
    commands = _documented_commands()
    assert len(commands) >= 14  # ten and more in docs/analytics.md, four in the README
    monkeypatch.chdir(tmp_path)
    for argv, documented in commands:
        argv = [str(two_runs / "*") if a == "runs/*" else str(run) if a == "runs/example" else a
                for a in argv]
        status, out, err = query(capsys, *argv)
        if documented and documented[0].startswith("audiofeat query: error:"):
            assert status == 2 and out == "", argv
            one_error_line(err)
            continue
        assert status == 0 and err == "", (argv, err)
        if documented:
            assert out.splitlines()[0].split() == documented[0].split(), argv


def test_one_run_named_twice_keeps_the_run_column(two_runs, capsys):
    """Named twice it is read once, but the query was written for several runs."""
    status, out, _ = query(capsys, two_runs / "first", two_runs / "first",
                           "SELECT run, count(*) AS n FROM files GROUP BY run", "--format", "json")
    assert status == 0 and json.loads(out) == [{"run": "first", "n": 120}]


def test_table_columns_line_up_with_wide_characters():
    from jobs.query import _display_width

    assert _display_width("abc") == 3 and _display_width("音声") == 4 and _display_width("é") == 1
    assert _display_width("e\u0301") == 1  # a combining accent takes no column
