"""Reruns into a finished store after files changed on disk: a recording replaced in place is
read again (its old rows replaced), a file that failed and was fixed is retried, and a rerun
with nothing changed still does nothing."""

from __future__ import annotations

import os
import shutil
import types

import numpy as np
import pytest
import soundfile as sf
import zarr
from test_extract_support import copy_samples, read_tables, run_cli, write_config

from jobs.compute import FeatureSet, decode, file_features
from jobs.config import feature_config, load_config

FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "melspectrogram": {"n_mels": 32, "db": True}, "rms": {}}


def _replace(path: str, source: str) -> None:
    """Overwrite ``path`` with ``source``'s bytes and a later modification time (as an editor or
    a copy does; set explicitly so the test does not hang on the file system's clock)."""
    before = os.stat(path).st_mtime_ns
    shutil.copyfile(source, path)
    os.utime(path, ns=(before + 5_000_000_000, before + 5_000_000_000))


def _rows_equal_featurelib(out, cfg):
    fs = FeatureSet.from_config(feature_config(load_config(cfg)))
    store = zarr.open_group(str(out / "features.zarr"), mode="r")
    files, _ = read_tables(out)
    rows = files.to_pylist()
    for row in rows:
        assert row["size_bytes"] == os.path.getsize(row["path"]), row["path"]
        expected = file_features(decode(row["path"], sr=fs.sr), fs)
        assert row["n_frames"] == next(iter(expected.values())).shape[0], row["path"]
        for name, values in expected.items():
            got = store[name][row["frame_start"]:row["frame_stop"]]
            scale = max(float(np.abs(values).max()), 1e-6)
            assert float(np.abs(got - values).max()) / scale < 1e-4, (row["path"], name)
    return rows


def test_a_file_replaced_in_place_is_read_again(tmp_path):
    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 8)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features=FEATURES)
    assert run_cli("extract", cfg).returncode == 0
    longer = max(paths, key=os.path.getsize)
    target = min(paths, key=os.path.getsize)
    _replace(target, longer)

    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert "1 changed on disk" in result.stderr
    assert "8 inputs, 8 readable" in result.stderr
    # the progress counts the inputs: the replaced file's old rows are not counted again
    assert "8/8 files (100%)" in result.stderr and "/9 files" not in result.stderr, result.stderr
    rows = _rows_equal_featurelib(out, cfg)
    assert sorted(r["path"] for r in rows) == sorted(paths)  # once each: the old rows are gone
    again = run_cli("extract", cfg)
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr, again.stderr


def test_a_stored_file_that_breaks_moves_to_the_failures(tmp_path):
    """Its header read fails now: no batch is added, but its old rows must go and the run must
    fail (a rerun used to keep the old rows and say "nothing to do", exit 0, for good)."""
    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 4)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features=FEATURES)
    assert run_cli("extract", cfg).returncode == 0
    target = sorted(paths)[0]
    before = os.stat(target).st_mtime_ns
    with open(target, "r+b") as handle:
        handle.truncate(30)  # not even a whole header
    os.utime(target, ns=(before + 5_000_000_000, before + 5_000_000_000))

    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    assert "1 changed on disk" in result.stderr
    files, failures = read_tables(out)
    assert sorted(files.column("path").to_pylist()) == sorted(paths)[1:]
    assert failures.column("path").to_pylist() == [target]
    again = run_cli("extract", cfg)  # the same verdict, without reading anything again
    assert again.returncode == 1 and "nothing to do" in again.stdout, again.stderr
    assert read_tables(out)[0].num_rows == 3


def test_a_file_replaced_before_its_batch_ran_is_read_again(tmp_path):
    """Changed between an interrupted run's plan and its resume: read again, not failed as a
    "LengthMismatch" against the stale plan."""
    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 6)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features=FEATURES)
    assert run_cli("extract", cfg).returncode == 0
    shutil.rmtree(out / ".batches")  # as if the run had stopped before any batch committed
    (out / "manifest.json").unlink()
    target = min(paths, key=os.path.getsize)
    _replace(target, max(paths, key=os.path.getsize))
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    _, failures = read_tables(out)
    assert failures.num_rows == 0
    _rows_equal_featurelib(out, cfg)


def test_a_failed_file_that_was_fixed_is_retried(tmp_path):
    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 5)
    broken = corpus / "later.wav"
    broken.write_bytes(b"<html>not yet</html>")  # fails when its header is read
    damaged = corpus / "damaged.flac"  # a header that reads, samples that do not decode
    y = (0.3 * np.sin(np.arange(16000) / 7)).astype(np.float32)
    sf.write(str(damaged), y, 16000)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features=FEATURES)
    first = run_cli("extract", cfg)
    assert first.returncode == 1, first.stderr
    _, failures = read_tables(out)
    assert sorted(os.path.basename(p) for p in failures["path"].to_pylist()) == ["damaged.flac", "later.wav"]
    assert run_cli("extract", cfg).returncode == 1  # nothing changed: the same failures, no work

    good = tmp_path / "good.flac"
    sf.write(str(good), y, 16000)
    _replace(str(damaged), str(good))
    _replace(str(broken), paths[0])
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert "1 changed on disk" in result.stderr and "1 that failed before read again" in result.stderr
    files, failures = read_tables(out)
    assert failures.num_rows == 0
    assert sorted(files["path"].to_pylist()) == sorted([*paths, str(broken), str(damaged)])
    _rows_equal_featurelib(out, cfg)


def test_a_rerun_with_other_batching_says_the_plan_keeps_its_own(tmp_path):
    corpus = tmp_path / "corpus"
    copy_samples(corpus, 4)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features=FEATURES)
    assert run_cli("extract", cfg).returncode == 0
    smaller = write_config(tmp_path / "small.yaml", input=corpus, out=out, features=FEATURES,
                           compute={"batch_seconds": 30})
    result = run_cli("extract", smaller)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "keep their batch_seconds 600" in said and "(config: 30" in said and "nothing to do" in said


def test_a_file_gone_is_counted_once_and_unchanged_failures_are_not_read_again(tmp_path):
    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 4)
    (corpus / "broken.wav").write_bytes(b"not audio")
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=tmp_path / "out", features={"rms": {}})
    assert run_cli("extract", cfg).returncode == 1
    os.remove(paths[0])
    second = run_cli("extract", cfg)
    assert "0 new, 1 gone;" in second.stderr, second.stderr  # broken.wav unchanged: not re-read
    shutil.copyfile(paths[1], corpus / "added.wav")
    third = run_cli("extract", cfg)
    assert "1 new, 0 gone;" in third.stderr, third.stderr  # the file gone before is not gone again
    files, failures = read_tables(tmp_path / "out")
    assert files.num_rows == 4 and failures["path"].to_pylist() == [str(corpus / "broken.wav")]
    import json

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["throughput"]["files_this_run"] == 1  # the store's 4 files are not this run's
    assert 0 < manifest["throughput"]["audio_hours_this_run"] < manifest["audio_hours"]


def test_progress_audio_after_inputs_changed_is_that_of_the_inputs(tmp_path):
    """The store keeps the batches of files no longer named; the progress shows the audio of the
    inputs (two 1 s files: 0.00 h), not that of every committed batch (two minutes more)."""
    rng = np.random.default_rng(3)
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, count, seconds in ((old, 4, 30.0), (new, 2, 1.0)):
        folder.mkdir()
        for i in range(count):
            sf.write(str(folder / f"{i}.wav"), 0.1 * rng.standard_normal(int(8000 * seconds)), 8000)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=old, out=out, features={"rms": {}}, sr=8000,
                       n_fft=256, hop=80)
    assert run_cli("extract", cfg).returncode == 0
    result = run_cli("extract", cfg, "--input", str(new))
    assert result.returncode == 0, result.stderr
    assert "4 gone" in result.stderr, result.stderr
    assert "2/2 files (100%), 0.00 h audio" in result.stderr, result.stderr


def test_failed_inputs_that_leave_are_gone_and_new_when_they_return(tmp_path):
    """Inputs listed as failed count in 'gone' when they are no longer named, as planned files
    do, and in 'new' when they come back (they were counted new but never gone)."""
    rng = np.random.default_rng(5)
    corpus = tmp_path / "corpus"
    (corpus / "good").mkdir(parents=True)
    for i in range(3):
        sf.write(str(corpus / "good" / f"{i}.wav"), 0.1 * rng.standard_normal(8000), 8000)
    (corpus / "bad.wav").write_text("not audio at all " * 10)  # fails its header read
    os.symlink(tmp_path / "nowhere.wav", corpus / "broken.wav")  # fails discovery
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features={"rms": {}}, sr=8000,
                       n_fft=256, hop=80)
    assert run_cli("extract", cfg).returncode == 1
    only_good = run_cli("extract", cfg, "--input", str(corpus / "good"))
    assert "inputs changed since the last run: 0 new, 2 gone" in only_good.stderr, only_good.stderr
    assert only_good.returncode == 0
    back = run_cli("extract", cfg)
    assert "inputs changed since the last run: 2 new, 0 gone" in back.stderr, back.stderr
    assert back.returncode == 1
    _, failures = read_tables(out)
    assert sorted(failures["path"].to_pylist()) == [str(corpus / "bad.wav"), str(corpus / "broken.wav")]


def test_a_file_the_job_could_not_read_is_retried_once_it_can(tmp_path, monkeypatch):
    """Permission denied (or moved away while the job ran) says nothing about the audio: a rerun
    reads the file again once it is readable, although its size and mtime are those planned
    (chmod changes neither); a file whose audio failed is not read again."""
    from jobs import extract
    from jobs.errors import reason_kind
    from jobs.plan import Batch, Plan, probe

    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 3)
    later = corpus / "later.wav"
    later.write_bytes(open(paths[0], "rb").read())
    state = [os.path.getsize(later), os.stat(later).st_mtime_ns]  # unchanged since it failed
    batches = [Batch(batch_id=0, kind="files", region_start=0, region_stop=0, block_frames=0,
                     files=[probe(p) for p in paths])]
    plan = Plan(batches=batches, failures=[
        {"path": str(later), "stage": "probe", "error_type": "PermissionDenied",
         "message": "permission denied", "state": state},
    ], total_frames=0, chunk_frames=1)

    discovery = types.SimpleNamespace(paths=[*map(str, paths), str(later)])

    last = [{"path": paths[0], "stage": "decode", "error_type": "PermissionDenied"},
            {"path": paths[1], "stage": "decode", "error_type": "FileGone"},
            {"path": paths[2], "stage": "decode", "error_type": "NotAudio"}]
    changed, retried = extract.changed_inputs(plan, discovery, {}, last)
    assert changed == sorted(paths[:2]) and retried == [str(later)]
    monkeypatch.setattr(extract.os, "access", lambda path, mode: False)  # still not readable
    assert extract.changed_inputs(plan, discovery, {}, last) == ([], [])
    assert reason_kind("permission denied", "AudioDecodeError") == "PermissionDenied"


def test_a_file_made_unreadable_after_its_header_was_read_says_permission_denied(tmp_path, monkeypatch):
    """libsndfile's words for it are "System error": the failure names the cause instead."""
    from jobs import extract
    from jobs.plan import probe

    path = copy_samples(tmp_path / "corpus", 1)[0]
    planned = probe(path)
    assert extract._moved_since_planned(planned) is None
    monkeypatch.setattr(extract.os, "access", lambda p, mode: p != path)
    kind, message = extract._moved_since_planned(planned)
    assert kind == "PermissionDenied" and "permission denied" in message and "rerun" in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads every file: permissions cannot fail")
def test_an_unreadable_file_fails_and_is_read_once_readable(tmp_path):
    corpus = tmp_path / "corpus"
    paths = copy_samples(corpus, 4)
    os.chmod(paths[0], 0)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features=FEATURES)
    try:
        assert run_cli("extract", cfg).returncode == 1
        _, failures = read_tables(out)
        assert failures["error_type"].to_pylist() == ["PermissionDenied"]
    finally:
        os.chmod(paths[0], 0o644)
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert "1 that failed before read again" in result.stderr
    files, failures = read_tables(out)
    assert failures.num_rows == 0 and files.num_rows == 4


def test_a_resumed_long_file_split_into_parts_gets_its_workers(tmp_path):
    """A long file is one batch of several parts, each a task: a resumed run starts as many
    workers as a fresh one (it started one per pending batch: one worker for the night's file)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    sf.write(str(corpus / "night.wav"), (0.1 * rng.standard_normal(16000 * 100)).astype(np.float32), 16000)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=out, features={"rms": {}},
                       compute={"batch_seconds": 30, "block_seconds": 10})
    first = run_cli("extract", cfg)
    assert first.returncode == 0, first.stderr
    assert "on 2 workers" in first.stdout + first.stderr
    stored = zarr.open_group(str(out / "features.zarr"), mode="r")["rms"][:]
    shutil.rmtree(out / ".batches")  # as if the run had been killed before the file committed
    (out / "manifest.json").unlink()
    resumed = run_cli("extract", cfg)
    assert resumed.returncode == 0, resumed.stderr
    said = resumed.stdout + resumed.stderr
    assert "1 batch to run on 2 workers" in said, said
    np.testing.assert_array_equal(zarr.open_group(str(out / "features.zarr"), mode="r")["rms"][:], stored)
