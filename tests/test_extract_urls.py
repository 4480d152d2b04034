"""fsspec URLs: a corpus served over HTTP on 127.0.0.1 is discovered, probed, decoded and stored
with its URLs as paths, with the same features as the same files read from disk."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import zarr
from test_extract_support import (
    assert_same_outputs,
    copy_samples,
    read_tables,
    run_cli,
    wait_for,
    write_config,
)

pytest.importorskip("aiohttp")  # fsspec's HTTP file system

FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "zero_crossing_rate": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    corpus = tmp_path / "corpus"
    copy_samples(corpus, 16)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=corpus, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_for(up, 30)
        yield corpus, f"http://127.0.0.1:{port}/"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_http_corpus_equals_local_corpus(served, tmp_path):
    corpus, url = served
    outs = {}
    for name, source, probe in (("local", str(corpus), "auto"), ("http", url, "auto"),
                                ("http-probed-on-workers", url, "workers")):
        cfg = write_config(tmp_path / f"{name}.yaml", input=source, out=tmp_path / name,
                           features=FEATURES, sr=8000, n_fft=256, hop=80,
                           compute={"workers": 2 if probe == "workers" else 1, "probe": probe})
        result = run_cli("extract", cfg)
        assert result.returncode == 0, result.stderr
        outs[name] = tmp_path / name
    # compute.probe: workers reads the headers in probe tasks on the cluster: the same plan
    probed = {name: json.loads((out / ".plan.json").read_text())["probed_on"] for name, out in outs.items()}
    assert probed == {"local": "coordinator", "http": "coordinator", "http-probed-on-workers": "workers"}
    assert_same_outputs(outs["http"], outs["http-probed-on-workers"])
    local, _ = read_tables(outs["local"])
    remote, _ = read_tables(outs["http"])
    assert remote.num_rows == local.num_rows == 16
    assert all(p.startswith(url) for p in remote.column("path").to_pylist())
    names = [p.rsplit("/", 1)[1] for p in remote.column("path").to_pylist()]
    assert names == [p.rsplit("/", 1)[1] for p in local.column("path").to_pylist()]
    a = zarr.open_group(str(outs["local"] / "features.zarr"), mode="r")
    b = zarr.open_group(str(outs["http"] / "features.zarr"), mode="r")
    for la, rb in zip(local.to_pylist(), remote.to_pylist()):
        assert la["n_frames"] == rb["n_frames"] and la["size_bytes"] == rb["size_bytes"]
        for feature in FEATURES:
            np.testing.assert_array_equal(a[feature][la["frame_start"]:la["frame_stop"]],
                                          b[feature][rb["frame_start"]:rb["frame_stop"]])


def test_credentials_in_urls_are_never_printed_or_stored(served, tmp_path):
    corpus, url = served
    secret_url = url.replace("http://", "http://alice:s3cr3t@")
    names = sorted(p.name for p in corpus.glob("*.wav"))[:3]
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join([f"{secret_url}{n}?token=T0K3N" for n in names]
                                 + [f"{secret_url}missing.wav?X-Amz-Signature=S1GN"]) + "\n")
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "secret.yaml", input=str(listing), out=out, features=FEATURES,
                       sr=8000, n_fft=256, hop=80, compute={"workers": 1})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr  # the missing object is a failure
    files, failures = read_tables(out)
    assert files.num_rows == 3 and failures.num_rows == 1
    shown = [result.stdout, result.stderr, (out / "manifest.json").read_text(),
             *map(str, files.column("path").to_pylist()), *map(str, failures.to_pylist())]
    for text in shown:
        for secret in ("s3cr3t", "T0K3N", "S1GN"):
            assert secret not in text
    assert all(p.startswith(url.replace("http://", "http://alice:***@")) for p in files.column("path").to_pylist())
    # nor in any file of the run but its private plan (.plan.parquet and .plan.json: resuming
    # reads the URLs from it): the committed batches' rows held them too
    for path in out.rglob("*"):
        if path.is_file() and not path.name.startswith(".plan."):
            data = path.read_bytes()
            for secret in (b"s3cr3t", b"T0K3N", b"S1GN"):
                assert secret not in data, path
    # a top-level URL that cannot be listed: exit 2, one line, no password in it
    bad = run_cli("extract", cfg, "--input", "http://alice:s3cr3t@127.0.0.1:9/x.wav", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "s3cr3t" not in bad.stderr + bad.stdout


def test_where_headers_are_read_follows_compute_probe():
    """auto: on the workers for a corpus of 1,000 URLs or more, else in the coordinator."""
    from jobs.config import parse_config
    from jobs.extract import CLUSTER_PROBE_MIN_URLS, _probes_on_workers

    def cfg(probe):
        return parse_config({"input": "x", "out": "y", "compute": {"probe": probe}})

    urls = [f"s3://bucket/clip{i}.wav" for i in range(CLUSTER_PROBE_MIN_URLS)]
    local = [f"/data/clip{i}.wav" for i in range(CLUSTER_PROBE_MIN_URLS)]
    assert _probes_on_workers(cfg("auto"), urls)
    assert not _probes_on_workers(cfg("auto"), urls[:-1])
    assert not _probes_on_workers(cfg("auto"), local)
    assert _probes_on_workers(cfg("workers"), local[:3])
    assert not _probes_on_workers(cfg("workers"), [])
    assert not _probes_on_workers(cfg("coordinator"), urls)


def test_members_of_a_zip_through_a_chained_url(tmp_path):
    """``zip://folder/::file:///a.zip`` lists the archive's members with the chain kept in each
    URL, and each member decodes (the archive stays open while libsndfile reads it)."""
    import zipfile

    import pyarrow.parquet as pq

    from jobs.compute import FeatureSet, decode, file_features

    corpus = tmp_path / "corpus"
    names = [p.rsplit("/", 1)[-1] for p in copy_samples(corpus, 3)]
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in names:
            z.write(corpus / name, f"x/{name}")
    chain = f"::file://{archive}"
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=f"zip://x/{chain}", out=out, features=FEATURES)
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert "seek of closed file" not in result.stderr
    files = pq.read_table(out / "files.parquet").to_pylist()
    assert sorted(r["path"] for r in files) == sorted(f"zip://x/{n}{chain}" for n in names)
    group = zarr.open_group(str(out / "features.zarr"), mode="r")
    fs = FeatureSet.from_config(dict(group.attrs)["feature_config"])
    for row in files:
        local = str(corpus / row["path"].split("::")[0].rsplit("/", 1)[-1])
        np.testing.assert_array_equal(decode(row["path"], sr=fs.sr), decode(local, sr=fs.sr))
        expected = file_features(decode(local, sr=fs.sr), fs)["mfcc"]
        np.testing.assert_allclose(group["mfcc"][row["frame_start"]:row["frame_stop"]], expected, atol=1e-3)


def test_a_server_without_range_requests_is_named_as_the_reason(served, tmp_path):
    """``python -m http.server`` answers every read from the file's start: fsspec reads past its
    first block (5 MB) fail. The file fails as ReadFailed with fsspec's reason, not as a damaged
    file, and no callback traceback reaches stderr."""
    import soundfile as sf

    corpus, url = served
    long = corpus / "long.wav"  # 3 min of 16-bit 16 kHz: 5.8 MB
    noise = np.random.default_rng(0).standard_normal(180 * 16000).astype(np.float32) * 1e-2
    sf.write(str(long), noise, 16000, subtype="PCM_16")
    cfg = write_config(tmp_path / "job.yaml", input=f"{url}long.wav", out=tmp_path / "out",
                       features=FEATURES, compute={"workers": 1})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    _, failures = read_tables(tmp_path / "out")
    (row,) = failures.to_pylist()
    assert row["error_type"] == "ReadFailed" and "range requests" in row["message"], row
    assert "Exception ignored" not in result.stderr


def test_url_inputs_the_server_did_not_serve_are_read_again_once_it_does(served):
    """A server that went away mid-run failed its files as "not found" (what fsspec's HTTP says
    of a refused connection), and every rerun said "nothing to do": a rerun now reads such a
    URL again where it answers; one still missing, or a file that is not audio, stays failed."""
    from jobs.extract import _readable_again

    corpus, url = served
    name = sorted(p.name for p in corpus.iterdir())[0]
    rows = [{"path": url + name, "error_type": "FileNotFoundError"},
            {"path": url + name, "error_type": "ReadFailed"},
            {"path": url + "gone.wav", "error_type": "FileNotFoundError"},
            {"path": url + name, "error_type": "NotAudio"},
            {"path": "http://127.0.0.1:9/x.wav", "error_type": "ReadFailed"}]  # nobody listens
    assert _readable_again(rows) == [url + name, url + name]
