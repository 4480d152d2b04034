"""jobs.store: the feature store's writes."""

from __future__ import annotations

import threading

import numpy as np
import zarr

from jobs import store


def test_local_writes_run_in_the_writing_thread_and_read_back(tmp_path):
    """A batch's chunks are compressed and written in the task's own thread: no Zarr loop
    thread, no thread pool (their hand-offs doubled the write time on busy cores)."""
    out = str(tmp_path / "run")
    store.make_out(out)
    dims = {"mfcc": 3, "rms": 1}
    store.create_store(out, feature_config={"sr": 8000, "hop_length": 80}, config_hash="h", dims=dims,
                       total_frames=4096 * 3,
                       chunk_frames=4096, version="test")
    rng = np.random.default_rng(0)
    data = {name: rng.standard_normal((8192, d)).astype(np.float32) for name, d in dims.items()}
    before = {t.ident for t in threading.enumerate()}
    store.write_rows(out, data, 4096)
    assert {t.ident for t in threading.enumerate()} <= before
    group = zarr.open_group(str(tmp_path / "run" / store.STORE_NAME), mode="r")
    for name, values in data.items():
        np.testing.assert_array_equal(group[name][4096:], values)
        np.testing.assert_array_equal(group[name][:4096], 0.0)


def test_a_half_made_store_is_no_store(tmp_path):
    """A job killed while it made the store (an earlier version wrote the group, then its
    attributes) left a group without a config hash: the rerun must make the store again, not
    refuse it as another config's. The store is now made with its attributes in one write."""
    import json

    out = str(tmp_path)
    zarr.open_group(str(tmp_path / "features.zarr"), mode="w", zarr_format=3)
    assert store.store_attrs(out) is None
    store.create_store(out, feature_config={"sr": 16000, "hop_length": 160}, config_hash="abc",
                       dims={"rms": 1}, total_frames=128, chunk_frames=64, version="test")
    group_json = json.loads((tmp_path / "features.zarr" / "zarr.json").read_text())
    assert group_json["attributes"]["config_hash"] == "abc"
    assert store.store_attrs(out)["config_hash"] == "abc"
