"""fsspec URLs: a corpus served over HTTP on 127.0.0.1 is discovered, probed, decoded and stored
with its URLs as paths, with the same features as the same files read from disk."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest
import zarr
from test_extract_support import copy_samples, read_tables, run_cli, wait_for, write_config

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
    for name, source in (("local", str(corpus)), ("http", url)):
        cfg = write_config(tmp_path / f"{name}.yaml", input=source, out=tmp_path / name,
                           features=FEATURES, sr=8000, n_fft=256, hop=80, compute={"workers": 1})
        result = run_cli("extract", cfg)
        assert result.returncode == 0, result.stderr
        outs[name] = tmp_path / name
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
