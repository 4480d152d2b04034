"""Long files: streamed decoding and blocks of whole frames equal the whole-file computation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from jobs.compute import (
    BlockReader,
    FeatureSet,
    Moments,
    ResampledStream,
    clamped_db_features,
    compute_segments,
    decode,
    file_features,
)
from jobs.config import feature_config, parse_config

FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "melspectrogram": {"n_mels": 32, "db": True},
            "rms": {}, "zero_crossing_rate": {}, "spectral_centroid": {}, "spectral_flatness": {},
            "spectral_bandwidth": {}, "amplitude_envelope": {}, "mean_frequency": {}}


def _signal(n, sr, seed=0):
    rng = np.random.default_rng(seed)
    y = 1e-5 * rng.standard_normal(n)
    a, b = n // 3, n // 3 + n // 6
    y[a:b] += 0.7 * np.sin(2 * np.pi * 700 * np.arange(b - a) / sr)
    y[0] = 0.3  # a first sample that edge padding must repeat
    y[-1] = -0.2
    return y.astype(np.float32)


def _features_by_blocks(path, fs, frames, block_frames):
    """As the job streams a long file: one pass of blocks, the top_db-clamped features
    deferred until the file's max is known, then clamped."""
    n_frames = 1 + ResampledStream(path, sr=fs.sr, expected_frames=frames).n_samples // fs.hop_length
    blocks = [(f0, min(f0 + block_frames, n_frames)) for f0 in range(0, n_frames, block_frames)]
    parts, db, maxima = {}, {}, {}
    with ResampledStream(path, sr=fs.sr, expected_frames=frames) as stream:
        reader = BlockReader(stream, fs)
        for f0, f1 in blocks:
            z, e = reader.block(f0, f1)
            deferred = {}
            out = compute_segments(z[None], e[None], fs, n_valid=[f1 - f0], deferred=deferred)
            for name, data in out.items():
                parts.setdefault(name, []).append(data[0, : f1 - f0])
            for key, (values, row_max) in deferred.items():
                db.setdefault(key, []).append(values[:, : f1 - f0])
                maxima[key] = np.maximum(maxima[key], row_max) if key in maxima else row_max
    assert set(fs.db_mels()) and not set(fs.db_mels()) & set(parts)
    db = {key: np.concatenate(v, axis=1) for key, v in db.items()}
    for name, data in clamped_db_features(db, maxima, fs).items():
        parts[name] = [data[0]]
    return {name: np.concatenate(p) for name, p in parts.items()}, len(blocks)


@pytest.mark.parametrize(("native", "sr", "channels", "block_frames"), [
    (44100, 16000, 1, 100), (44100, 16000, 2, 257), (16000, 16000, 1, 64), (8000, 16000, 1, 201),
])
def test_blocks_equal_whole_file(tmp_path, native, sr, channels, block_frames):
    n = int(6.3 * native) + 17
    y = _signal(n, native)
    data = y if channels == 1 else np.stack([y, 0.5 * y], axis=1)
    path = str(tmp_path / "long.wav")
    sf.write(path, data, native, subtype="FLOAT")
    fs = FeatureSet.from_config(feature_config(parse_config(
        {"audio": {"sr": sr}, "frames": {"n_fft": 512, "hop_length": 160}, "features": FEATURES})))
    whole = file_features(decode(path, sr=sr), fs)
    blocked, n_blocks = _features_by_blocks(path, fs, n, block_frames)
    assert n_blocks >= 3
    for name, expected in whole.items():
        assert blocked[name].shape == expected.shape, name
        scale = max(float(np.abs(expected).max()), 1e-6)
        assert float(np.abs(blocked[name] - expected).max()) / scale < 1e-4, name


@pytest.mark.parametrize(("n_fft", "hop"), [(512, 400), (256, 256), (400, 333)])
def test_hop_longer_than_half_a_frame_keeps_every_length(n_fft, hop):
    """With a hop above n_fft / 2 + 1 a file can end more than half a frame after its last
    frame's start: its samples there reach no frame (librosa's count, 1 + n // hop, stands), and
    the whole-file buffers must not try to hold them (they failed such files)."""
    import librosa

    from jobs.compute import segment_buffers

    sr = 16000
    fs = FeatureSet.from_config(feature_config(parse_config(
        {"audio": {"sr": sr}, "frames": {"n_fft": n_fft, "hop_length": hop}, "features": FEATURES})))
    rows = [_signal(n, sr, seed=n) for n in (16000 + hop - 1, 16000 + n_fft // 2 + 1, 16000, 182, 1)]
    z, e, n_valid = segment_buffers(rows, fs)
    out = compute_segments(z, e, fs, n_valid=n_valid)
    for i, y in enumerate(rows):
        expected = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0]
        assert n_valid[i] == expected.shape[0] == 1 + y.shape[0] // hop
        np.testing.assert_allclose(out["rms"][i, :n_valid[i], 0], expected, rtol=1e-4, atol=1e-9)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)[0]
        np.testing.assert_allclose(out["zero_crossing_rate"][i, :n_valid[i], 0], zcr, atol=1e-6)
        for name, expected in file_features(y, fs).items():  # the same file alone
            scale = max(float(np.abs(expected).max()), 1e-6)
            assert float(np.abs(out[name][i, :n_valid[i]] - expected).max()) / scale < 1e-4, name


@pytest.mark.parametrize("precision", ["auto", "double"])
def test_float64_magnitude_features_by_spans_equal_the_whole_spectrogram(monkeypatch, precision):
    """Bandwidth, flatness, band energy ratio (and under some settings centroid and mean
    frequency) come from a float64 magnitude taken a span of frames at a time, so that a long
    block's whole float64 spectrogram (170 MB for 2 minutes at 44.1 kHz, n_fft 2048) and its
    temporaries never exist at once: spans of one frame give the very numbers of one span."""
    import jobs.compute as compute

    sr = 16000
    features = {**FEATURES, "band_energy_ratio": {}}
    fs = FeatureSet.from_config(feature_config(parse_config(
        {"audio": {"sr": sr}, "frames": {"n_fft": 512, "hop_length": 160, "fft_precision": precision},
         "features": features})))
    from jobs.compute import segment_buffers

    rows = [_signal(n, sr, seed=n) for n in (20000, 9000, 300)]
    z, e, n_valid = segment_buffers(rows, fs)
    whole = compute_segments(z, e, fs, n_valid=n_valid)
    seen = []
    real = compute._stft_frames
    monkeypatch.setattr(compute, "_stft_frames", lambda buf, fs, xp: seen.append(buf.shape) or real(buf, fs, xp))
    monkeypatch.setattr(compute, "FLOAT64_SPAN_BYTES", 1)  # one frame a span
    spans = compute_segments(z, e, fs, n_valid=n_valid)
    frames = 1 + (z.shape[-1] - 512) // 160
    assert sum(shape[-1] == 512 for shape in seen) >= frames  # a span of one frame each
    for name in features:
        np.testing.assert_array_equal(spans[name], whole[name], err_msg=name)


def test_stream_equals_one_shot_decode(tmp_path):
    path = str(tmp_path / "x.flac")
    y = _signal(3 * 44100 + 5, 44100)
    sf.write(path, np.stack([y, -y * 0.3], axis=1), 44100)
    whole = decode(path, sr=16000)
    with ResampledStream(path, sr=16000, expected_frames=y.shape[0]) as stream:
        parts = [stream.read(1000) for _ in range(whole.shape[0] // 1000 + 2)]
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    np.testing.assert_array_equal(streamed, whole)


def test_moments_combine_exactly():
    rng = np.random.default_rng(0)
    rows = rng.normal(1000.0, 3.0, size=(1003, 4))
    m = Moments(4)
    for start in range(0, 1003, 97):
        m.add(rows[start:start + 97])
    np.testing.assert_allclose(m.mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.std, rows.std(0), rtol=1e-9)


@pytest.mark.parametrize("features", [
    FEATURES,
    # only clamped features, of two different mels, with two top_db
    {"mfcc": {"n_mfcc": 13, "n_mels": 24}, "melspectrogram": {"n_mels": 32, "db": True, "top_db": 60.0}},
])
def test_long_file_task_in_pieces_smaller_than_blocks(tmp_path, monkeypatch, features):
    """extract_batch in this process: pieces of 70 frames inside blocks of 256, read back."""
    import zarr

    import jobs.compute
    from jobs.config import config_hash
    from jobs.discover import discover
    from jobs.extract import _tables, extract_batch, new_plan

    path = str(tmp_path / "long.flac")
    sf.write(path, np.stack([_signal(7 * 22050 + 3, 22050), _signal(7 * 22050 + 3, 22050, 1)], 1), 22050)
    cfg = parse_config({"input": path, "out": str(tmp_path / "out"), "audio": {"sr": 16000},
                        "frames": {"n_fft": 512, "hop_length": 160}, "features": features,
                        "compute": {"block_seconds": 2.0, "chunk_frames": 128}})
    fc = feature_config(cfg)
    plan, meta = new_plan(cfg, discover(cfg.input), feature_cfg=fc, config_hash=config_hash(fc))
    (batch,) = plan.batches
    assert batch.kind == "long" and batch.block_frames == 256
    monkeypatch.setattr(jobs.compute, "MAX_BUFFER_FRAMES", 70)
    opened = []
    stream = jobs.compute.ResampledStream
    monkeypatch.setattr(jobs.compute, "ResampledStream",
                        lambda *a, **k: (opened.append(a[0]), stream(*a, **k))[1])
    job = {"out": cfg.out, "feature_config": fc, "dims": meta["dims"], "device": "cpu",
           "tables": _tables(fc)}
    summary = extract_batch(batch, job)
    assert summary["committed"] and summary["ok"] == 1
    # decoded once, though the MFCC and log-mel are clamped 80 dB under the file's maximum
    assert opened == [path] and FeatureSet.from_config(fc).db_mels()
    group = zarr.open_group(str(tmp_path / "out" / "features.zarr"), mode="r")
    f = batch.files[0]
    fs = FeatureSet.from_config(fc)
    whole = file_features(decode(path, sr=16000), fs)
    for name, expected in whole.items():
        got = group[name][f.frame_start:f.frame_stop]
        scale = max(float(np.abs(expected).max()), 1e-6)
        assert float(np.abs(got - expected).max()) / scale < 1e-4, name
    assert not group["mfcc"][f.frame_stop:batch.region_stop].any()  # padding rows stay zero


# ---------------------------------------------------------------- a long file split across tasks


@pytest.mark.parametrize(("native", "ext"), [(16000, "flac"), (44100, "wav"), (22050, "ogg")])
def test_stream_started_inside_the_file(tmp_path, native, ext):
    """A part's stream: from its start on, the samples of a pass from the file's start; bit for
    bit without resampling, within float32 rounding after soxr restarted (the reason such files
    stay one task)."""
    n = 9 * native + 11
    y = _signal(n, native)
    path = str(tmp_path / f"x.{ext}")
    sf.write(path, np.stack([y, 0.5 * y], axis=1), native)
    whole = decode(path, sr=16000)
    for start in (1, 16000 * 4 + 37, whole.shape[0] - 5):
        with ResampledStream(path, sr=16000, expected_frames=n, start=start) as stream:
            got = np.concatenate([stream.read(7000) for _ in range(whole.shape[0] // 7000 + 2)])
        assert got.shape[0] == whole.shape[0] - start
        if native == 16000:
            np.testing.assert_array_equal(got, whole[start:])
        else:
            assert float(np.abs(got - whole[start:]).max()) < 1e-6


def _split_config(tmp_path, name, corpus, batch_seconds, features=FEATURES):
    from test_extract_support import write_config

    return write_config(tmp_path / f"{name}.yaml", input=str(corpus), out=tmp_path / name,
                        features=features, compute={"block_seconds": 2.0, "batch_seconds": batch_seconds,
                                                    "chunk_frames": 64, "workers": 2})


def _long_corpus(root):
    """A 16 kHz long file with digital silence across a part boundary (where the zero-crossing
    rate and centroid turn on the last bit), beside short files."""
    root.mkdir()
    y = _signal(23 * 16000 + 123, 16000)
    y[5 * 16000:9 * 16000] = 0.0
    sf.write(root / "night.flac", np.stack([y, 0.25 * y], axis=1), 16000, subtype="PCM_24")
    sf.write(root / "short.wav", _signal(16000, 16000, seed=1), 16000)
    return root / "night.flac"


def _one_task_and_parts(tmp_path, corpus):
    """The corpus extracted twice, its long file in one task ("one") and in parts of 4 s
    ("parts"): ``(run folders, stored plans' batches)`` by name."""
    import json

    from test_extract_support import run_cli

    runs = {}
    for name, batch_seconds in (("one", 600.0), ("parts", 4.0)):
        result = run_cli("extract", _split_config(tmp_path, name, corpus, batch_seconds))
        assert result.returncode == 0, result.stderr
        runs[name] = tmp_path / name
    plans = {name: json.loads((out / ".plan.json").read_text())["batches"] for name, out in runs.items()}
    return runs, plans


def test_split_long_file_equals_one_task(tmp_path):
    """Parts on two real workers, then the task that clamps and commits: the store, files.parquet
    and failures.parquet are those of the file in one task, bit for bit, and the spilled dB go."""

    from test_extract_support import assert_same_outputs, run_cli

    corpus = _long_corpus(tmp_path / "corpus").parent
    runs, plans = _one_task_and_parts(tmp_path, corpus)
    (long_one,) = [b for b in plans["one"] if b["kind"] == "long"]
    (long_parts,) = [b for b in plans["parts"] if b["kind"] == "long"]
    assert long_one["part_frames"] == 0 and long_parts["part_frames"] == 384  # 6 parts
    assert_same_outputs(runs["one"], runs["parts"])
    assert not (runs["parts"] / ".parts").exists()
    again = run_cli("extract", _split_config(tmp_path, "parts", corpus, 4.0))
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_split_long_file_cut_short_fails_once(tmp_path):
    """A file cut inside its last part: one failure row (decode), no files row, and the other
    files are there."""
    from test_extract_support import read_tables, run_cli

    path = _long_corpus(tmp_path / "corpus")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    result = run_cli("extract", _split_config(tmp_path, "cut", path.parent, 4.0))
    assert result.returncode == 1, result.stderr
    files, failures = read_tables(tmp_path / "cut")
    assert [p.rsplit("/", 1)[1] for p in files.column("path").to_pylist()] == ["short.wav"]
    assert failures.num_rows == 1 and failures.column("path").to_pylist() == [str(path)]
    assert failures.column("stage").to_pylist() == ["decode"]


def test_split_file_progress_counts_its_parts_audio_once(tmp_path, monkeypatch):
    """Progress shows a split file's audio part by part (no file yet), then the file at its
    commit, and counts every audio second once."""
    from distributed import Client, LocalCluster

    import jobs.progress
    from jobs.config import config_hash
    from jobs.discover import discover
    from jobs.extract import _tables, new_plan, stage_extract

    corpus = _long_corpus(tmp_path / "corpus").parent
    cfg = parse_config({"input": str(corpus), "out": str(tmp_path / "out"), "audio": {"sr": 16000},
                        "frames": {"n_fft": 512, "hop_length": 160}, "features": FEATURES,
                        "compute": {"block_seconds": 2.0, "batch_seconds": 4.0, "chunk_frames": 64}})
    fc = feature_config(cfg)
    plan, meta = new_plan(cfg, discover(cfg.input), feature_cfg=fc, config_hash=config_hash(fc))
    updates = []

    class Recorded(jobs.progress.Progress):
        def update(self, files, audio_s, failed=0):
            updates.append((files, audio_s))
            super().update(files, audio_s, failed)

    monkeypatch.setattr(jobs.progress, "Progress", Recorded)
    job = {"out": cfg.out, "feature_config": fc, "dims": meta["dims"], "device": "cpu",
           "tables": _tables(fc)}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tcp://", scheduler_kwargs={"dashboard": False,
                                                           "dashboard_address": "127.0.0.1:0"}) as cluster, \
            Client(cluster) as client:
        summaries, failures, _ = stage_extract(client, plan, plan.batches, job)
    assert not failures and len(summaries) == 2
    total = sum(b.audio_seconds for b in plan.batches)
    assert sum(a for _, a in updates) == pytest.approx(total)
    assert sum(f for f, _ in updates) == 2
    assert sum(1 for f, a in updates if f == 0 and a > 0) == 6  # the long file's parts


_SEEK_CASES = [("WAV", "PCM_16"), ("WAV", "PCM_U8"), ("AIFF", "PCM_S8"), ("WAV", "PCM_24"),
               ("WAV", "PCM_32"), ("WAV", "FLOAT"), ("WAV", "DOUBLE"), ("WAV", "ULAW"), ("WAV", "ALAW"),
               ("WAV", "IMA_ADPCM"), ("WAV", "MS_ADPCM"), ("OGG", "OPUS"),
               ("CAF", "ALAC_16"), ("CAF", "ALAC_20"), ("CAF", "ALAC_24"), ("CAF", "ALAC_32"),
               ("FLAC", "PCM_16")]


def test_the_split_encodings_are_all_tested_here():
    from jobs.plan import _EXACT_SEEK_SUBTYPES

    assert _EXACT_SEEK_SUBTYPES == {sub for _, sub in _SEEK_CASES}


@pytest.mark.parametrize(("fmt", "subtype"), _SEEK_CASES)
def test_split_encodings_seek_to_the_samples_of_one_pass(tmp_path, fmt, subtype):
    """A part of a split file seeks to its first sample: for every encoding the plan splits,
    the samples after a seek are those of a pass from the start, bit for bit."""
    sr = 48000 if subtype == "OPUS" else 8000
    y = _signal(20 * sr + 77, sr)
    path = tmp_path / f"x.{fmt.lower()}"
    with sf.SoundFile(path, "w", sr, 2, format=fmt, subtype=subtype) as handle:
        for i in range(0, y.shape[0], sr):  # a second at a time (libvorbis and long writes)
            handle.write(np.stack([y[i:i + sr], 0.5 * y[i:i + sr]], axis=1))
    whole, _ = sf.read(path, dtype="float32")
    with sf.SoundFile(path) as handle:
        for start in (1, 3 * sr + 5, 11 * sr + 1234, whole.shape[0] - 3 * sr):
            handle.seek(start)
            np.testing.assert_array_equal(handle.read(2 * sr, dtype="float32"), whole[start:start + 2 * sr])


@pytest.mark.parametrize(("native", "ext", "subtype"), [(22050, "wav", "PCM_16"), (16000, "ogg", "VORBIS"),
                                                      (22050, "flac", "PCM_24")])
def test_split_file_that_cannot_seek_exactly_equals_one_task(tmp_path, native, ext, subtype):
    """A long file resampled to the store's rate (soxr restarted inside it would not give the
    samples of one pass), or in an encoding whose seeks are inexact: one task decodes it into
    the run folder, its parts read their ranges from there, and the store, files.parquet and
    failures.parquet are those of the file in one task, bit for bit; the samples go at the end."""

    from test_extract_support import assert_same_outputs

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    y = _signal(23 * native + 123, native)
    y[5 * native:9 * native] = 0.0  # digital silence across a part boundary
    sf.write(corpus / f"night.{ext}", np.stack([y, 0.25 * y], axis=1), native, subtype=subtype)
    sf.write(corpus / "short.wav", _signal(16000, 16000, seed=1), 16000)
    runs, plans = _one_task_and_parts(tmp_path, corpus)
    assert [b["part_frames"] for b in plans["one"] if b["kind"] == "long"] == [0]
    assert [b["part_frames"] for b in plans["parts"] if b["kind"] == "long"] == [384]  # 6 parts
    assert_same_outputs(runs["one"], runs["parts"])
    assert not (runs["parts"] / ".parts").exists()


def test_split_resampled_file_cut_short_fails_once(tmp_path):
    """A long WAV cut in its sample data, which would be split and resampled: its header
    announces more data than the file holds, so it fails once, in the plan's probe (as
    featurelib.load refuses it), no part is computed, and the other files are there. (A file
    cut after the plan is found by the pass that writes its samples: the FLAC test below.)"""
    from test_extract_support import read_tables, run_cli

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    path = corpus / "night.wav"
    sf.write(path, _signal(23 * 22050, 22050), 22050, subtype="PCM_16")
    sf.write(corpus / "short.wav", _signal(16000, 16000, seed=1), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    result = run_cli("extract", _split_config(tmp_path, "cut", corpus, 4.0))
    assert result.returncode == 1, result.stderr
    files, failures = read_tables(tmp_path / "cut")
    assert [p.rsplit("/", 1)[1] for p in files.column("path").to_pylist()] == ["short.wav"]
    assert failures.column("path").to_pylist() == [str(path)]
    assert failures.column("stage").to_pylist() == ["probe"]
    assert failures.column("message")[0].as_py().startswith("truncated: the header announces")


def _resampled_flac_plan(tmp_path, seconds=23, cut=None, noise=0.0):
    """A plan whose long file is a 22.05 kHz stereo 24-bit FLAC split into parts of 4 s, and its
    job; ``noise`` adds independent noise of that level to each channel (a file that compresses
    as field recordings do: little)."""
    from jobs.config import config_hash
    from jobs.discover import discover
    from jobs.extract import _tables, new_plan

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    y = _signal(seconds * 22050 + 123, 22050)
    y[5 * 22050:9 * 22050] = 0.0
    path = corpus / "night.flac"
    stereo = np.stack([y, 0.25 * y], axis=1)
    stereo += noise * np.random.default_rng(7).standard_normal(stereo.shape).astype(np.float32)
    sf.write(path, stereo, 22050, subtype="PCM_24")
    cfg = parse_config({"input": str(corpus), "out": str(tmp_path / "out"), "audio": {"sr": 16000},
                        "frames": {"n_fft": 512, "hop_length": 160}, "features": FEATURES,
                        "compute": {"block_seconds": 2.0, "batch_seconds": 4.0, "chunk_frames": 64}})
    fc = feature_config(cfg)
    plan, meta = new_plan(cfg, discover(cfg.input), feature_cfg=fc, config_hash=config_hash(fc))
    if cut is not None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
    job = {"out": cfg.out, "feature_config": fc, "dims": meta["dims"], "device": "cpu",
           "tables": _tables(fc)}
    (batch,) = [b for b in plan.batches if b.kind == "long"]
    return batch, job


def test_a_costly_codec_is_decoded_in_ranges_then_resampled_as_one_pass(tmp_path):
    """A split FLAC that is resampled: decoded in ranges (one per worker), then resampled in one
    pass over them: the samples of a pass over the file, bit for bit; the ranges go after."""
    from jobs.compute import FeatureSet
    from jobs.extract import (
        _native_range_count,
        _native_range_path,
        _scratch_path,
        decode_native_range,
        resample_part_source,
    )
    from jobs.plan import MAX_SCRATCH_BYTES, native_ranges

    (tmp_path / "quiet").mkdir()
    quiet, _ = _resampled_flac_plan(tmp_path / "quiet")
    batch, job = _resampled_flac_plan(tmp_path, noise=0.05)
    fs = FeatureSet.from_config(job["feature_config"])
    (f,) = batch.files
    assert f.size_bytes > 4 * f.frames > 2 * quiet.files[0].size_bytes  # noise hardly compresses
    assert batch.part_frames and _native_range_count(batch, 1, fs, MAX_SCRATCH_BYTES) == 1
    assert _native_range_count(batch, 3, fs, MAX_SCRATCH_BYTES) == 3
    assert _native_range_count(batch, 3, fs, 4 * f.frames - 1) == 1  # no room for the copy
    # a file that compresses well decodes fast: its copy would cost more than the ranges save
    assert _native_range_count(quiet, 3, fs, MAX_SCRATCH_BYTES) == 1
    assert resample_part_source(batch, job)["failure"] is None
    whole = open(_scratch_path(job, batch.batch_id), "rb").read()
    ranges = [decode_native_range(batch, job, i, a, b)
              for i, (a, b) in enumerate(native_ranges(f, 3))]
    assert all(r["failure"] is None and r["timings"]["decode_s"] > 0 for r in ranges)
    os.remove(_scratch_path(job, batch.batch_id))
    result = resample_part_source(batch, job, *ranges)
    assert result["failure"] is None
    assert result["timings"]["decode_s"] >= sum(r["timings"]["decode_s"] for r in ranges)
    assert open(_scratch_path(job, batch.batch_id), "rb").read() == whole
    assert not any(os.path.exists(_native_range_path(job, batch.batch_id, i)) for i in range(3))
    # run again (its result lost with a worker): the samples it wrote stand, though the ranges'
    # copies are gone
    again = resample_part_source(batch, job, *ranges)
    assert again["failure"] is None
    assert open(_scratch_path(job, batch.batch_id), "rb").read() == whole


def test_a_file_cut_short_fails_in_ranges_as_in_one_pass(tmp_path):
    from jobs.extract import decode_native_range, resample_part_source
    from jobs.plan import native_ranges

    batch, job = _resampled_flac_plan(tmp_path, cut=0.6)
    one = resample_part_source(batch, job)["failure"]
    ranges = [decode_native_range(batch, job, i, a, b)
              for i, (a, b) in enumerate(native_ranges(batch.files[0], 3))]
    both = resample_part_source(batch, job, *ranges)["failure"]
    assert one is not None and both is not None
    assert (both["stage"], both["error_type"]) == (one["stage"], one["error_type"]), (one, both)
