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


def _commit(out, batch_id: int, paths: list[str], failed: list[str] = ()) -> None:
    from jobs.plan import PlannedFile

    dims = {"rms": 1}
    rows = store.IndexRows(dims)
    for i, path in enumerate(paths):
        f = PlannedFile(path=path, file_id=f"id{batch_id}-{i}", size_bytes=10, format="WAV",
                        subtype="PCM_16", sample_rate=8000, channels=1, frames=80, duration_s=0.5,
                        n_frames=2, frame_start=100 * batch_id + 2 * i, frame_stop=100 * batch_id + 2 * i + 2)
        rows.add(f, {"rms": np.full(1, float(batch_id))}, {"rms": np.zeros(1)})
    fails = [{"path": p, "stage": "decode", "error_type": "E", "message": "bad"} for p in failed]
    assert store.commit_batch(str(out), batch_id, rows, fails, dims)


def test_files_index_writes_in_batch_order_whatever_order_batches_finish(tmp_path, monkeypatch):
    """Batches committed by an earlier run, batches of this run finishing out of order, one
    failing as a whole, a path no longer named: files.parquet lists the files in batch order
    (the store's), a few row groups at a time, and failures.parquet sorted by path."""
    import pyarrow.parquet as pq

    out = tmp_path / "run"
    store.make_out(str(out))
    monkeypatch.setattr(store.FilesIndex, "ROW_GROUP_ROWS", 3)
    _commit(out, 0, ["/c/0a.wav", "/c/0b.wav"])  # an earlier run's
    _commit(out, 2, ["/c/2a.wav"], failed=["/c/2x.wav"])  # an earlier run's
    index = store.FilesIndex(str(out), [0, 1, 2, 3, 4, 5, 6], {"rms": 1}, pending=[1, 3, 4, 5, 6],
                             drop={"/c/4b.wav"})
    for batch_id, paths in [(4, ["/c/4a.wav", "/c/4b.wav"]), (3, ["/c/3a.wav"]), (1, ["/c/1a.wav"])]:
        _commit(out, batch_id, paths)
        index.add(batch_id, store.read_batch(str(out), batch_id))
        if batch_id == 4:  # batch 1 has not finished: nothing after batch 0 can be written yet
            assert [b for b in index.ready] == [4]
    index.add(5, None)  # failed as a whole: not committed, its files are failures elsewhere
    _commit(out, 6, ["/c/6a.wav"])  # committed, but the coordinator could not read it then
    index.done(6)
    n, failures, audio_s = index.finish([{"path": "/c/9.wav", "stage": "probe", "error_type": "E",
                                          "message": None}])
    files = pq.read_table(out / "files.parquet")
    assert files.column("path").to_pylist() == ["/c/0a.wav", "/c/0b.wav", "/c/1a.wav", "/c/2a.wav",
                                                "/c/3a.wav", "/c/4a.wav", "/c/6a.wav"]
    assert n == 7 and audio_s == 3.5
    assert pq.ParquetFile(out / "files.parquet").metadata.num_row_groups == 3
    assert failures.column("path").to_pylist() == ["/c/2x.wav", "/c/9.wav"]
    assert not (out / "files.parquet.partial").exists()
