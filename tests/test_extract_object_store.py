"""Output to an fsspec URL (the object-store code path) instead of a local folder.

- ``file:///...``: the fsspec path on a local disk (never silently turned into a plain path),
  with real worker processes; equal to a run into a local folder.
- ``memory://``: a filesystem that lives in one process, so the job runs on an in-process Dask
  cluster (``LocalCluster(processes=False)``) reached with ``scheduler=``.
- commits: one object per batch (``.batches/NNNNNN.parquet``); a rerun does nothing, a lost
  commit object is redone alone.
- query, train/score reading, and credentials never printed or stored.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from test_extract_support import copy_samples, read_tables, run_cli, write_config

from jobs.outdir import OutDir

SMALL = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "rms": {}, "zero_crossing_rate": {}}
COMPUTE = {"workers": 2, "chunk_frames": 64, "min_batches": 6}


def _url(path) -> str:
    return "file://" + str(path)


def _batch_objects(root) -> list[str]:
    folder = root / ".batches"
    return sorted(n for n in os.listdir(folder) if n.endswith(".parquet")) if folder.is_dir() else []


def _assert_same_store(local_root, other_group, other_files):
    """files.parquet rows and every array equal to the local run's."""
    files, _ = read_tables(local_root)
    assert other_files.equals(files), "files.parquet differ"
    a = zarr.open_group(str(local_root / "features.zarr"), mode="r")
    assert sorted(a.array_keys()) == sorted(other_group.array_keys())
    assert dict(a.attrs)["config_hash"] == dict(other_group.attrs)["config_hash"]
    for name in a.array_keys():
        np.testing.assert_array_equal(a[name][:], other_group[name][:], err_msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same corpus extracted into a local folder and into a file:// URL."""
    root = tmp_path_factory.mktemp("objstore")
    copy_samples(root / "corpus", 24)
    (root / "corpus" / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really")
    out = {}
    for name, location in (("local", str(root / "local")), ("url", _url(root / "url"))):
        cfg = write_config(root / f"{name}.yaml", input=str(root / "corpus"), out=location,
                           features=SMALL, compute=COMPUTE)
        result = run_cli("extract", cfg)
        assert result.returncode == 1, result.stderr  # broken.wav fails
        out[name] = {"cfg": cfg, "result": result}
    return {"root": root, **out}


def test_file_url_output_equals_local_folder(runs):
    root = runs["root"]
    files, failures = read_tables(root / "url")
    assert files.num_rows == 24 and failures.num_rows == 1
    group = zarr.open_group(str(root / "url" / "features.zarr"), mode="r")
    _assert_same_store(root / "local", group, files)
    _, local_failures = read_tables(root / "local")
    assert failures.equals(local_failures)


def test_file_url_output_took_the_object_store_path(runs):
    root = runs["root"]
    # object-store commits (one object per batch), no lock file; the local run keeps its folders
    objects = _batch_objects(root / "url")
    plan = json.loads((root / "url" / ".plan.json").read_text())
    assert len(objects) == len(plan["batches"]) >= 2
    assert not (root / "url" / ".lock").exists()
    assert (root / "local" / ".lock").exists()
    local = root / "local" / ".batches"
    assert all(n.isdigit() for n in os.listdir(local)) and len(os.listdir(local)) == len(objects)
    manifest = json.loads((root / "url" / "manifest.json").read_text())
    assert manifest["config"]["out"] == _url(root / "url") and manifest["complete"]
    assert _url(root / "url") in runs["url"]["result"].stdout


def test_rerun_on_url_does_nothing_and_says_so(runs):
    root = runs["root"]
    before = {p: os.stat(root / "url" / p).st_mtime_ns
              for p in ("files.parquet", "failures.parquet", "manifest.json")}
    result = run_cli("extract", runs["url"]["cfg"])
    assert result.returncode == 1, result.stderr
    assert "nothing to do" in result.stdout
    assert before == {p: os.stat(root / "url" / p).st_mtime_ns for p in before}


def test_lost_commit_object_redoes_only_that_batch(runs, tmp_path):
    """A crash after a batch's chunks but before its commit object: the rerun redoes that batch
    alone, and the outputs equal a clean run."""
    import shutil

    root = runs["root"]
    copy = tmp_path / "copy"
    shutil.copytree(root / "url", copy)
    objects = _batch_objects(copy)
    os.remove(copy / ".batches" / objects[-1])
    os.remove(copy / "manifest.json")  # the crash came before the index
    cfg = write_config(tmp_path / "copy.yaml", input=str(root / "corpus"), out=_url(copy),
                       features=SMALL, compute=COMPUTE)
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    assert f"1 batch to run on 1 worker ({len(objects) - 1} already committed)" in result.stderr
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["counts"]["batches_run"] == 1 and manifest["complete"]
    assert _batch_objects(copy) == objects
    files, _ = read_tables(copy)
    _assert_same_store(root / "local", zarr.open_group(str(copy / "features.zarr"), mode="r"), files)


def test_query_over_a_file_url(runs):
    from jobs.query import connect, features, open_features

    root = runs["root"]
    url = _url(root / "url")
    con = connect(url)
    try:
        n, = con.execute("SELECT count(*) FROM files").fetchone()
        fails, = con.execute("SELECT count(*) FROM failures").fetchone()
    finally:
        con.close()
    assert (n, fails) == (24, 1)
    files, _ = read_tables(root / "local")
    fid = files.column("file_id")[3].as_py()
    np.testing.assert_array_equal(features(url, fid, "mfcc"), features(root / "local", fid, "mfcc"))
    assert open_features(url)["mfcc"].shape == open_features(root / "local")["mfcc"].shape
    result = run_cli("query", url, "SELECT count(*) AS n FROM files", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["n", "24"]


def test_query_of_a_missing_url_is_a_clear_error(tmp_path):
    result = run_cli("query", _url(tmp_path / "nothing"), "SELECT 1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "no such run directory" in result.stderr


# ---------------------------------------------------------------- memory:// (one process)


@pytest.fixture
def in_process_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tcp://", scheduler_kwargs={"dashboard": False,
                                                           "dashboard_address": "127.0.0.1:0"}) as cluster:
        yield cluster.scheduler_address


def _memory_cfg(corpus, out, **extra):
    from jobs.config import parse_config

    return parse_config({"input": str(corpus), "out": out, "audio": {"sr": 16000},
                         "frames": {"n_fft": 512, "hop_length": 160}, "features": SMALL,
                         "compute": {"device": "cpu", **COMPUTE}, **extra})


def test_memory_url_output_on_an_in_process_cluster(runs, in_process_cluster, capsys):
    import fsspec

    from jobs.extract import run_extract
    from jobs.query import connect, features

    root = runs["root"]
    url = "memory://audiofeat-test/run"
    fs = fsspec.filesystem("memory")
    if fs.exists("/audiofeat-test"):
        fs.rm("/audiofeat-test", recursive=True)
    try:
        status = run_extract(_memory_cfg(root / "corpus", url), scheduler=in_process_cluster)
        assert status == 1
        od = OutDir(url)
        assert od.isfile("files.parquet") and od.isfile("manifest.json")
        files = od.read_table("files.parquet")
        group = zarr.open_group(od.zarr_store("features.zarr", read_only=True), mode="r")
        _assert_same_store(root / "local", group, files)
        assert len([n for n in od.listdir(".batches") if n.endswith(".parquet")]) >= 2
        # rerun: nothing to do
        capsys.readouterr()
        assert run_extract(_memory_cfg(root / "corpus", url), scheduler=in_process_cluster) == 1
        assert "nothing to do" in capsys.readouterr().out
        # a lost commit object: that batch alone is redone; log= takes the job's messages (a
        # notebook's logger), as run_train's and run_score's do
        last = sorted(n for n in od.listdir(".batches") if n.endswith(".parquet"))[-1]
        od.remove(f".batches/{last}")
        od.remove("manifest.json")
        lines = []
        assert run_extract(_memory_cfg(root / "corpus", url), scheduler=in_process_cluster,
                           log=lines.append) == 1
        said = capsys.readouterr()
        assert any("1 batch to run" in line for line in lines), lines
        assert any("24 files stored" in line for line in lines), lines
        assert "stored" not in said.out and "batch to run" not in said.err
        manifest = json.loads(od.read_bytes("manifest.json"))
        assert manifest["counts"]["batches_run"] == 1 and manifest["complete"]
        _assert_same_store(root / "local", group, od.read_table("files.parquet"))
        # query reads a memory:// run through fsspec
        con = connect(url)
        try:
            assert con.execute("SELECT count(*) FROM files").fetchone() == (24,)
        finally:
            con.close()
        fid = files.column("file_id")[0].as_py()
        np.testing.assert_array_equal(features(url, fid, "rms"), features(root / "local", fid, "rms"))
    finally:
        if fs.exists("/audiofeat-test"):
            fs.rm("/audiofeat-test", recursive=True)


def test_memory_url_train_and_score(runs, in_process_cluster):
    """train reads features from a memory:// store and score writes its tables there."""
    import fsspec

    from jobs.extract import run_extract
    from jobs.score import run_score
    from jobs.train import train_model

    root = runs["root"]
    url = "memory://audiofeat-train/run"
    fs = fsspec.filesystem("memory")
    try:
        extra = {"labels": {"source": "regex", "pattern": r"(?P<label>\d)_(?P<speaker>[a-z]+)_"},
                 "segments": {"length_s": 1.0, "hop_s": 0.5},
                 "train": {"model": "baseline", "name": "digits", "epochs": 5}}
        cfg = _memory_cfg(root / "corpus", url, **extra)
        assert run_extract(cfg, scheduler=in_process_cluster) == 1
        train_model(url, labels_cfg=cfg.labels, segments_cfg=cfg.segments or _default("segments"),
                    split_cfg=cfg.split or _default("split"), train_cfg=cfg.train,
                    log=lambda *_: None)
        od = OutDir(url)
        assert od.isfile("models/digits/model.onnx")
        assert run_score(cfg, url, scheduler=in_process_cluster, log=lambda *_: None) == 0
        scores = od.read_table("scores/files.parquet")
        assert scores.num_rows == 24
    finally:
        if fs.exists("/audiofeat-train"):
            fs.rm("/audiofeat-train", recursive=True)


def test_run_command_extract_train_score_on_a_file_url(runs, tmp_path):
    """`audiofeat run` (extract, train, score) with a file:// out URL, worker processes."""
    import yaml

    root = runs["root"]
    out = tmp_path / "pipeline"
    cfg = write_config(tmp_path / "run.yaml", input=str(root / "corpus"), out=_url(out),
                       features=SMALL, compute=COMPUTE)
    data = yaml.safe_load(cfg.read_text())
    data.update({"labels": {"source": "regex", "pattern": r"(?P<label>\d)_(?P<speaker>[a-z]+)_"},
                 "segments": {"length_s": 1.0, "hop_s": 0.5},
                 "train": {"model": "baseline", "name": "digits", "epochs": 5},
                 "score": {"threshold": 0.5}})
    cfg.write_text(yaml.safe_dump(data))
    result = run_cli("run", cfg, timeout=400)
    assert result.returncode == 1, result.stderr  # broken.wav
    assert (out / "models" / "digits" / "model.json").is_file()
    # the report named where it is, not the staging folder the URL run uploaded it from
    assert f"(report: {_url(out)}/models/digits/report.md)" in result.stderr
    assert pq.read_table(out / "scores" / "files.parquet").num_rows == 24
    again = run_cli("run", cfg, timeout=400)
    assert again.returncode == 1, again.stderr
    assert "extract: nothing to do" in again.stdout
    assert "train: nothing to do" in again.stderr and "score: nothing to do" in again.stderr


def _default(section):
    from jobs.train_config import SegmentsConfig, SplitConfig

    return {"segments": SegmentsConfig, "split": SplitConfig}[section]()


# ---------------------------------------------------------------- credentials


def test_storage_options_never_printed_or_stored(runs, tmp_path):
    """A file:// out URL whose storage options hold a secret: the secret reaches neither
    stdout, stderr nor manifest.json (the manifest keeps the option names, values masked)."""
    import yaml

    root = runs["root"]
    out = tmp_path / "secret"
    cfg = write_config(tmp_path / "secret.yaml", input=str(root / "corpus"), out=_url(out),
                       features=SMALL, compute=COMPUTE)
    data = yaml.safe_load(cfg.read_text())
    data["out_storage_options"] = {"auto_mkdir": True, "client_secret": "SUPERSECRET"}
    cfg.write_text(yaml.safe_dump(data))
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    manifest = (out / "manifest.json").read_text()
    assert json.loads(manifest)["config"]["out_storage_options"] == {"auto_mkdir": "***",
                                                                     "client_secret": "***"}
    for text in (result.stdout, result.stderr, manifest):
        assert "SUPERSECRET" not in text


def test_url_credentials_never_printed_or_stored(runs, in_process_cluster, capfd):
    """An out URL carrying a password and a token: messages and the manifest show it masked."""
    import fsspec

    from jobs.extract import run_extract

    root = runs["root"]
    url = "memory://alice:s3cr3tPW@audiofeat-cred/run"
    fs = fsspec.filesystem("memory")
    try:
        cfg = _memory_cfg(root / "corpus", url, out_storage_options={"token": "T0K3N"})
        assert run_extract(cfg, scheduler=in_process_cluster) == 1
        assert run_extract(cfg, scheduler=in_process_cluster) == 1  # nothing to do
        captured = capfd.readouterr()
        od = OutDir(url, {"token": "T0K3N"})
        manifest = od.read_bytes("manifest.json").decode()
        assert json.loads(manifest)["config"]["out"] == "memory://alice:***@audiofeat-cred/run"
        assert "memory://alice:***@audiofeat-cred/run" in captured.out
        for text in (captured.out, captured.err, manifest):
            assert "s3cr3tPW" not in text and "T0K3N" not in text
    finally:
        for path in fs.ls("/", detail=False):
            if "audiofeat-cred" in path:
                fs.rm(path, recursive=True)


def test_outdir_basics(tmp_path):
    od = OutDir(_url(tmp_path / "x"))
    assert od.is_url and od.root == str(tmp_path / "x")
    od.write_bytes("a/b.json", b"{}")
    assert od.isfile("a/b.json") and od.listdir("a") == ["b.json"] and od.read_bytes("a/b.json") == b"{}"
    od.remove("a")
    assert not od.exists("a") and od.listdir("a") == []
    secret = OutDir("s3://k:v@bucket/run?X-Amz-Signature=abc", {"secret": "zzz"})
    assert "v@" not in secret.display and "abc" not in secret.display
    assert "zzz" not in repr(secret) and "zzz" not in str(secret)
    import pickle

    again = pickle.loads(pickle.dumps(OutDir("memory://p/q")))
    assert again == OutDir("memory://p/q") and again.root == "/p/q"
    local = OutDir(str(tmp_path / "y"))
    assert not local.is_url and local.zarr_store("features.zarr") == str(tmp_path / "y" / "features.zarr")


def test_memory_url_with_worker_processes_is_a_clear_usage_error(runs, tmp_path):
    cfg = write_config(tmp_path / "mem.yaml", input=str(runs["root"] / "corpus"),
                       out="memory://audiofeat-cli/run", features=SMALL, compute=COMPUTE)
    result = run_cli("extract", cfg)
    assert result.returncode == 2
    assert "memory://" in result.stderr and "in-process cluster" in result.stderr
    assert "Traceback" not in result.stderr
