"""audiofeat extract end to end: a real LocalCluster on a mixed corpus, read back and checked."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import zarr
from test_extract_support import (
    FEATURES,
    REPO,
    make_corpus,
    read_tables,
    run_cli,
    tone,
    write_config,
)

from jobs.compute import FeatureSet, decode, file_features

LONG_SR = 44100


def _long_signal(seconds=7.0):
    """Very quiet noise with one loud burst: the -80 dB clamp bites far from the file's max."""
    n = int(seconds * LONG_SR)
    rng = np.random.default_rng(42)
    y = 1e-5 * rng.standard_normal(n)
    burst = slice(int(4.2 * LONG_SR), int(5.0 * LONG_SR))
    y[burst] += tone(0.8, LONG_SR, 1200, amp=0.8)[: burst.stop - burst.start]
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    corpus = make_corpus(root / "corpus")
    long_path = root / "corpus" / "long_44k.wav"
    sf.write(str(long_path), _long_signal(), LONG_SR, subtype="FLOAT")
    corpus["ok"] = sorted([*corpus["ok"], str(long_path)])
    out = root / "out"
    cfg = write_config(root / "job.yaml", input=str(root / "corpus"), out=out,
                       compute={"block_seconds": 2.0, "chunk_frames": 128, "min_batches": 4})
    result = run_cli("extract", cfg)
    return {"root": root, "corpus": corpus, "out": out, "cfg": cfg, "result": result,
            "long": str(long_path)}


def test_exit_status_and_output_layout(mixed_run):
    result = mixed_run["result"]
    assert result.returncode == 1, result.stderr  # some inputs failed: exit 1, the rest went on
    out = mixed_run["out"]
    for name in ("features.zarr", "files.parquet", "failures.parquet", "manifest.json"):
        assert (out / name).exists(), name
    assert "dashboard" in result.stderr
    assert "files" in result.stderr and "audio h/s" in result.stderr  # plain progress lines


def test_every_input_accounted_for_exactly_once(mixed_run):
    files, failures = read_tables(mixed_run["out"])
    ok, fail = mixed_run["corpus"]["ok"], mixed_run["corpus"]["fail"]
    file_paths = files.column("path").to_pylist()
    fail_paths = failures.column("path").to_pylist()
    assert len(file_paths) == len(set(file_paths))
    assert len(fail_paths) == len(set(fail_paths))
    assert not set(file_paths) & set(fail_paths)
    assert sorted(file_paths) == ok
    assert sorted(fail_paths) == sorted(fail)
    stages = dict(zip(fail_paths, failures.column("stage").to_pylist()))
    for path, stage in fail.items():
        if stage is not None:
            assert stages[path] == stage, path
    for row in failures.to_pylist():
        assert row["error_type"] and row["message"]
    assert not any(os.path.basename(p) in ("notes.txt", "x.wav") for p in file_paths + fail_paths)
    starts = files.column("frame_start").to_pylist()
    assert starts == sorted(starts)  # the store's order: batch by batch, as the regions lie


def test_features_read_back_equal_featurelib_per_file(mixed_run):
    import librosa

    import featurelib

    files, _ = read_tables(mixed_run["out"])
    group = zarr.open_group(str(mixed_run["out"] / "features.zarr"), mode="r")
    fs = FeatureSet.from_config(dict(group.attrs)["feature_config"])
    assert set(group.array_keys()) == set(FEATURES)
    for row in files.to_pylist():
        y, _ = featurelib.load(row["path"], sr=fs.sr, mono=True)  # featurelib decodes on its own
        np.testing.assert_array_equal(decode(row["path"], sr=fs.sr), y, err_msg=row["path"])
        ref_y, _ = librosa.load(row["path"], sr=fs.sr, mono=True)
        assert y.shape == ref_y.shape, row["path"]
        np.testing.assert_allclose(y, ref_y, atol=1e-4, err_msg=row["path"])
        assert row["n_frames"] == 1 + y.shape[0] // fs.hop_length
        assert row["frame_stop"] - row["frame_start"] == row["n_frames"]
        ref = file_features(y, fs)
        for name, expected in ref.items():
            got = group[name][row["frame_start"]:row["frame_stop"]]
            assert got.shape == expected.shape, (name, row["path"])
            scale = max(float(np.abs(expected).max()), 1e-6)
            err = float(np.abs(got - expected).max()) / scale
            assert err < 1e-4, (name, row["path"], err)


def test_long_file_was_streamed_in_blocks_and_matches_whole_file(mixed_run):
    out = mixed_run["out"]
    plan = json.loads((out / ".plan.json").read_text())
    long_batches = [b for b in plan["batches"] if b["kind"] == "long"]
    assert len(long_batches) == 1
    files, _ = read_tables(out)
    row = next(r for r in files.to_pylist() if r["path"] == mixed_run["long"])
    assert row["n_frames"] > 2 * long_batches[0]["block_frames"]  # at least three blocks
    group = zarr.open_group(str(out / "features.zarr"), mode="r")
    fs = FeatureSet.from_config(dict(group.attrs)["feature_config"])
    ref = file_features(decode(row["path"], sr=fs.sr), fs)
    for name in ("mfcc", "melspectrogram", "zero_crossing_rate", "spectral_centroid"):
        got = group[name][row["frame_start"]:row["frame_stop"]]
        np.testing.assert_allclose(got, ref[name], atol=1e-4 * float(np.abs(ref[name]).max()),
                                   err_msg=name)
    # the dB clamp is relative to the whole file's max, not the block's
    mel = group["melspectrogram"][row["frame_start"]:row["frame_stop"]]
    assert float(mel.min()) == pytest.approx(float(mel.max()) - 80.0, abs=1e-3)


def test_regions_are_chunk_aligned_and_disjoint(mixed_run):
    out = mixed_run["out"]
    plan = json.loads((out / ".plan.json").read_text())
    chunk = plan["chunk_frames"]
    previous_stop = 0
    for b in plan["batches"]:
        assert b["region_start"] % chunk == 0 and b["region_stop"] % chunk == 0
        assert b["region_start"] == previous_stop
        previous_stop = b["region_stop"]
    files, _ = read_tables(out)
    spans = sorted((r["frame_start"], r["frame_stop"]) for r in files.to_pylist())
    for (_, a1), (b0, _) in zip(spans, spans[1:]):
        assert a1 <= b0


def test_summary_statistics(mixed_run):
    files, _ = read_tables(mixed_run["out"])
    group = zarr.open_group(str(mixed_run["out"] / "features.zarr"), mode="r")
    for row in files.to_pylist()[:6] + [r for r in files.to_pylist() if r["path"] == mixed_run["long"]]:
        rows = group["mfcc"][row["frame_start"]:row["frame_stop"]].astype(np.float64)
        np.testing.assert_allclose([row[f"mfcc_mean_{i}"] for i in range(13)], rows.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose([row[f"mfcc_std_{i}"] for i in range(13)], rows.std(0), rtol=1e-6, atol=1e-7)
        r = group["rms"][row["frame_start"]:row["frame_stop"]].astype(np.float64)
        assert row["rms_mean"] == pytest.approx(r.mean(), rel=1e-9, abs=1e-12)


def test_store_attributes_and_manifest(mixed_run):
    out = mixed_run["out"]
    attrs = dict(zarr.open_group(str(out / "features.zarr"), mode="r").attrs)
    assert attrs["feature_config"]["sr"] == 16000 and attrs["frame_rate_hz"] == 100.0
    assert len(attrs["config_hash"]) == 64
    assert attrs["dims"]["mfcc"] == 13 and attrs["dims"]["rms"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    files, failures = read_tables(out)
    assert manifest["config_hash"] == attrs["config_hash"]
    assert manifest["counts"]["files"] == files.num_rows
    assert manifest["counts"]["failures"] == failures.num_rows
    assert manifest["counts"]["inputs"] == files.num_rows + failures.num_rows
    assert manifest["complete"] and manifest["audio_hours"] > 0
    assert {"numpy", "zarr", "dask"} <= set(manifest["versions"])
    assert manifest["throughput"]["files_this_run"] == files.num_rows  # a first run did them all


def test_rerun_of_a_finished_job_does_nothing(mixed_run):
    out = mixed_run["out"]
    before = {p: os.stat(out / p).st_mtime_ns for p in ("files.parquet", "failures.parquet", "manifest.json")}
    result = run_cli("extract", mixed_run["cfg"])
    assert result.returncode == 1  # the failures are still failures
    assert "nothing to do" in result.stdout
    after = {p: os.stat(out / p).st_mtime_ns for p in before}
    assert before == after


def test_changed_feature_config_is_refused_unless_overwrite(mixed_run, tmp_path):
    root = mixed_run["root"]
    out = tmp_path / "out"
    shutil.copytree(mixed_run["out"], out, symlinks=True)
    changed = write_config(tmp_path / "changed.yaml", input=str(root / "corpus"), out=out,
                           features={"mfcc": {"n_mfcc": 13, "n_mels": 32}, "rms": {}},
                           compute={"block_seconds": 2.0, "chunk_frames": 128})
    result = run_cli("extract", changed)
    assert result.returncode == 2
    assert "different feature config" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # what changed, in the config's own names: the features left out, the first four said
    assert ("different feature config: features.band_energy_ratio removed, "
            "features.median_frequency removed, features.melspectrogram removed, "
            "features.spectral_bandwidth removed and 4 more (hash") in result.stderr, result.stderr
    (out / "scores").mkdir()  # scores of the old store: stale once it is replaced
    (out / "scores" / "files.parquet").write_bytes(b"old")
    result = run_cli("extract", changed, "--overwrite", "--input", str(root / "corpus" / "tone_8k_mono.wav"))
    assert result.returncode == 0, result.stderr
    assert not (out / "scores").exists()
    files = pq.read_table(out / "files.parquet")
    assert files.num_rows == 1
    group = zarr.open_group(str(out / "features.zarr"), mode="r")
    assert set(group.array_keys()) == {"mfcc", "rms"}
    # same config, other inputs: the new one is appended, the one no longer named left out
    result = run_cli("extract", changed, "--input", str(root / "corpus" / "silent.wav"))
    assert result.returncode == 0, result.stderr
    assert "1 new, 1 gone" in result.stderr
    assert pq.read_table(out / "files.parquet").column("path").to_pylist() == [
        str(root / "corpus" / "silent.wav")]


def test_bad_config_exits_2_and_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: x\nout: y\nframes: {n_fft: 256, hop_length: 512}\n")
    result = run_cli("extract", bad)
    assert result.returncode == 2
    assert "frames.hop_length" in result.stderr
    bad.write_text("input: x\nout: y\nfeatures: {mfcc: {n_mfcc: 20, n_mel: 40}}\n")
    result = run_cli("extract", bad)
    assert result.returncode == 2 and "features.mfcc.n_mel" in result.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"input: {tmp_path / 'nowhere'}\nout: {tmp_path / 'o'}\n")
    result = run_cli("extract", missing)
    assert result.returncode == 2 and "no such file or folder" in result.stderr
    assert not (tmp_path / "o").exists()  # (it made the run folder, .lock and an empty store)
    missing.write_text(f"input: {tmp_path / '*.wav'}\nout: {tmp_path / 'o'}\n")
    result = run_cli("extract", missing)
    assert result.returncode == 2 and "matches nothing" in result.stderr
    assert not (tmp_path / "o").exists()


def test_an_output_folder_that_cannot_be_made_is_a_usage_error(tmp_path):
    """--out under a file (or a missing mount): exit 2 with one line, not a traceback."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    result = run_cli("extract", REPO / "configs" / "example.yaml", "--out", a_file / "run")
    assert result.returncode == 2, result.stderr
    assert "cannot write the output folder" in result.stderr and "Traceback" not in result.stderr


def test_run_command_on_the_example_config(tmp_path):
    result = run_cli("run", "configs/example.yaml", "--out", tmp_path / "example")
    assert result.returncode == 0, result.stderr
    files, failures = read_tables(tmp_path / "example")
    assert files.num_rows == 120 and failures.num_rows == 0


def test_a_second_job_on_the_same_folder_stops_at_once(tmp_path):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    cfg = write_config(tmp_path / "job.yaml", input=REPO / "data" / "samples", out=out)
    with open(out / ".lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("extract", cfg)
    assert result.returncode == 2 and "another audiofeat job is writing" in result.stderr
