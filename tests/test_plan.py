"""The plan: frame counts from headers, balanced batches, chunk-aligned disjoint regions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf

from jobs.compute import decode
from jobs.plan import PlannedFile, frame_count, make_batches, n_resampled, probe, probe_all


@pytest.mark.parametrize(("n", "native", "sr"), [
    (1, 8000, 16000), (7, 22050, 16000), (44101, 44100, 16000), (123457, 22050, 16000),
    (4800, 48000, 16000), (3308, 11025, 16000), (16000, 16000, 16000), (999, 32000, 8000),
])
def test_planned_length_is_the_decoded_length(tmp_path, n, native, sr):
    path = tmp_path / "x.wav"
    sf.write(str(path), np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32), native)
    planned = probe(str(path))
    assert planned.frames == n
    y = decode(str(path), sr=sr)
    assert y.shape[0] == n_resampled(n, native, sr)
    import librosa

    assert y.shape[0] == librosa.load(str(path), sr=sr)[0].shape[0]


def test_frame_count_matches_featurelib():
    import featurelib

    for n in (1, 159, 160, 161, 16000):
        y = np.zeros(n, np.float32)
        assert featurelib.rms(y, frame_length=512, hop_length=160).shape[-1] == frame_count(n, 160)


def test_probe_failures(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("hello" * 100)
    (tmp_path / "dir.wav").mkdir()
    sf.write(str(tmp_path / "ok.wav"), np.zeros(100, np.float32), 8000)
    paths = [str(tmp_path / n) for n in ("dir.wav", "empty.wav", "ok.wav", "text.wav")]
    files, failures = probe_all(paths)
    assert [f.path for f in files] == [paths[2]]
    assert [f["path"] for f in failures] == [paths[0], paths[1], paths[3]]
    assert all(f["stage"] == "probe" and f["message"] for f in failures)


def _fake(path, seconds, sr=8000):
    frames = int(seconds * sr)
    return PlannedFile(path=path, file_id=path, size_bytes=frames * 2, format="WAV",
                       subtype="PCM_16", sample_rate=sr, channels=1, frames=frames,
                       duration_s=frames / sr)


def _corpus():
    rng = np.random.default_rng(0)
    files = [_fake(f"/c/{i:04d}.wav", float(s)) for i, s in enumerate(rng.uniform(0.05, 3.0, 400))]
    files += [_fake("/c/long1.wav", 50.0), _fake("/c/long2.wav", 33.3, sr=44100)]
    return files


def _plan(files, **kw):
    args = {"sr": 16000, "hop_length": 160, "batch_seconds": 30.0, "min_batches": 8,
            "block_seconds": 20.0, "chunk_frames": 256}
    args.update(kw)
    return make_batches(files, **args)


def test_batches_cover_every_file_once_in_aligned_disjoint_regions():
    plan = _plan(_corpus())
    chunk = plan.chunk_frames
    seen, stop = [], 0
    for b in plan.batches:
        assert b.region_start == stop and b.region_start % chunk == 0 and b.region_stop % chunk == 0
        cursor = b.region_start
        for f in b.files:
            assert f.frame_start == cursor and f.frame_stop == cursor + f.n_frames
            assert f.batch_id == b.batch_id
            cursor = f.frame_stop
            seen.append(f.path)
        assert cursor <= b.region_stop and b.region_stop - cursor < chunk
        stop = b.region_stop
    assert plan.total_frames == stop
    assert sorted(seen) == sorted(f.path for f in _corpus())


def test_long_files_are_their_own_batches_with_whole_chunk_blocks():
    plan = _plan(_corpus())
    longs = [b for b in plan.batches if b.kind == "long"]
    assert [b.files[0].path for b in longs] == ["/c/long1.wav", "/c/long2.wav"]
    for b in longs:
        assert b.block_frames % plan.chunk_frames == 0 and b.block_frames > 0
        assert len(b.files) == 1
    assert all(b.kind == "files" and b.audio_seconds <= 20.0 * len(b.files) for b in plan.batches[2:])


def test_balanced_by_duration_and_at_least_min_batches():
    files = _corpus()
    plan = _plan(files, batch_seconds=1e9, min_batches=8)
    short = [b for b in plan.batches if b.kind == "files"]
    assert len(short) >= 7  # about min_batches (the last one takes what is left)
    seconds = [b.audio_seconds for b in short[:-1]]
    assert max(seconds) < 1.5 * min(seconds)
    capped = _plan(files, batch_seconds=10.0, min_batches=1)
    assert all(b.audio_seconds <= 10.0 + 3.0 + 256 / 100 for b in capped.batches if b.kind == "files")


def test_plan_is_deterministic_whatever_the_input_order():
    a = _plan(_corpus())
    shuffled = _corpus()
    random.Random(1).shuffle(shuffled)
    b = _plan(shuffled)
    key = [(f.path, f.batch_id, f.frame_start, f.frame_stop) for f in a.files]
    assert key == [(f.path, f.batch_id, f.frame_start, f.frame_stop) for f in b.files]
    assert [(x.region_start, x.region_stop) for x in a.batches] == [
        (x.region_start, x.region_stop) for x in b.batches]
