"""The DuckDB connection of ``jobs.query.connect`` cannot touch a file, even with statements sent
on the Python connection (the CLI also refuses every non-reading statement before DuckDB sees it).

Regression: with ``allowed_paths`` set to the run's Parquet files, DuckDB let
``COPY ... TO '<run>/files.parquet' (USE_TMP_FILE false)`` overwrite the run's own index."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from train_helpers import copy_run, extracted_run

from jobs.query import connect


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return copy_run(extracted_run(tmp_path_factory), tmp_path_factory.mktemp("contain") / "run")


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1 AS a) TO '{run}/files.parquet' (USE_TMP_FILE false)",
    "COPY (SELECT 1 AS a) TO '{run}/files.parquet' (FORMAT csv, USE_TMP_FILE false, OVERWRITE)",
    "COPY files TO '{run}/copy.parquet'",
    "SELECT * FROM read_parquet('{run}/files.parquet')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH '{run}/x.duckdb'",
    "SET enable_external_access = true",
])
def test_the_python_connection_opens_no_file(run, sql):
    before = {p: p.read_bytes() for p in run.rglob("*.parquet")}
    listing = sorted(p.name for p in run.iterdir())
    con = connect(run)
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql.format(run=run))
        # the views still read the tables (through Arrow)
        assert con.execute("SELECT count(*) FROM files").fetchone()[0] == 120
    finally:
        con.close()
    assert {p: p.read_bytes() for p in run.rglob("*.parquet")} == before
    assert sorted(p.name for p in run.iterdir()) == listing
    assert len(pd.read_parquet(run / "files.parquet")) == 120
