"""The plan: frame counts from headers, balanced batches, chunk-aligned disjoint regions."""

from __future__ import annotations

import os
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


def test_a_few_hundred_urls_are_probed_several_at_a_time(monkeypatch):
    """Each URL probe waits on a server: 208 URLs went in one chunk, one request at a time
    (5 minutes behind a server answering in 0.3 s). Every probe thread gets a share; the
    results keep the order of the paths."""
    import threading
    import time

    import jobs.plan

    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def slow_probe(path):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return _fake(path, 1.0)

    monkeypatch.setattr(jobs.plan, "probe", slow_probe)
    urls = [f"https://example.org/corpus/{i:03d}.wav" for i in range(208)]
    files, failures = probe_all(urls)
    assert [f.path for f in files] == urls and not failures
    assert state["most"] > 1


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


def test_long_files_at_the_store_rate_are_split_into_parts_of_whole_blocks(monkeypatch):
    """With ``part_seconds`` (the job passes batch_seconds) a long file becomes several tasks
    when its parts give the samples of one pass: already at the store's rate and not MP3."""
    from jobs.plan import Batch, plan_batches, plan_from_tables, plan_to_tables

    files = [_fake("/c/a.wav", 95.0, sr=16000), _fake("/c/b.wav", 95.0, sr=44100),
             _fake("/c/c.wav", 20.3, sr=16000), _fake("/c/short.wav", 3.0, sr=16000)]
    files[1].subtype = "PCM_16"
    mp3 = _fake("/c/d.mp3", 95.0, sr=16000)
    mp3.format, mp3.subtype = "MP3", "MPEG_LAYER_III"
    gsm = _fake("/c/e.wav", 95.0, sr=16000)
    gsm.subtype = "GSM610"  # libsndfile: "Seek attempted on unseekable file type"
    plan = _plan([*files, mp3, gsm], part_seconds=30.0)
    by_path = {b.files[0].path: b for b in plan.batches}
    split = by_path["/c/a.wav"]
    assert split.kind == "long" and split.part_frames % split.block_frames == 0
    assert split.part_frames == (30 * 100 // split.block_frames) * split.block_frames
    ranges = split.part_ranges()
    assert len(ranges) > 1 and ranges[0][0] == 0 and ranges[-1][1] == split.files[0].n_frames
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # resampled (soxr restarted inside a file is not bit-exact), MP3 (inexact seeks), GSM 6.10
    # (no seeks), or short enough for one part: one task
    for path in ("/c/b.wav", "/c/d.mp3", "/c/e.wav", "/c/c.wav"):
        assert by_path[path].part_frames == 0 and len(by_path[path].part_ranges()) == 1
    assert all(b.part_frames == 0 for b in _plan(files).batches)  # no part_seconds: no parts
    # the plan keeps its parts; a plan stored before parts existed reads as unsplit
    table, batches = plan_to_tables(plan)
    back = plan_from_tables(table, batches, [], plan.total_frames, plan.chunk_frames)
    assert [b.part_frames for b in back.batches] == [b.part_frames for b in plan.batches]
    old = [{k: v for k, v in b.items() if k != "part_frames"} for b in plan_batches(plan)]
    assert all(b.part_frames == 0 for b in plan_from_tables(table, old, [], plan.total_frames,
                                                            plan.chunk_frames).batches)
    assert Batch(0, "files", 0, 0, 0).part_frames == 0
    # with a run folder on a local disk (scratch_parts), the others are split too: one task
    # decodes them there for their parts (jobs.extract.resample_part_source)
    scratch = _plan([*files, mp3, gsm], part_seconds=30.0, scratch_parts=True)
    by_path = {b.files[0].path: b for b in scratch.batches}
    for path in ("/c/a.wav", "/c/b.wav", "/c/d.mp3", "/c/e.wav"):
        assert by_path[path].part_frames == split.part_frames
    assert by_path["/c/c.wav"].part_frames == 0  # one part's worth: one task
    # ... unless there are enough long files to keep the workers busy whole: 16 files of 95 s
    # over min_batches 8 is 190 s a task, more than each file
    many = [_fake(f"/c/n{i:02d}.wav", 95.0, sr=44100) for i in range(16)]
    assert all(b.part_frames == 0 for b in _plan(many, part_seconds=30.0, scratch_parts=True).batches)
    # and the copies fit the disk budget, the longest files first
    import jobs.plan

    monkeypatch.setattr(jobs.plan, "MAX_SCRATCH_BYTES", 4 * 95 * 16000 + 4 * 100 * 16000)
    two = [_fake("/c/x.wav", 95.0, sr=44100), _fake("/c/y.wav", 100.0, sr=44100),
           *(_fake(f"/c/s{i}.wav", 3.0, sr=16000) for i in range(40))]
    split = {b.files[0].path for b in _plan(two, part_seconds=30.0, scratch_parts=True).batches
             if b.part_frames}
    assert split == {"/c/x.wav", "/c/y.wav"}
    monkeypatch.setattr(jobs.plan, "MAX_SCRATCH_BYTES", 4 * 100 * 16000 + 4 * 16000)
    split = {b.files[0].path for b in _plan(two, part_seconds=30.0, scratch_parts=True).batches
             if b.part_frames}
    assert split == {"/c/y.wav"}


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


def test_a_packed_batch_pickles_as_columns_and_unpacks_to_the_same_batch():
    import pickle

    from jobs.plan import PackedBatch

    plan = _plan(_corpus())
    for batch in (plan.batches[0], plan.batches[-1]):  # a long file, then a batch of short ones
        packed = pickle.loads(pickle.dumps(PackedBatch(batch)))
        assert all(isinstance(column, tuple) for column in packed.columns)
        assert packed.unpack() == batch  # every field of the batch and of each of its files
    empty = type(plan.batches[0])(batch_id=7, kind="files", region_start=0, region_stop=0,
                                  block_frames=0)
    assert PackedBatch(empty).unpack() == empty


# ---------------------------------------------------------------- the stdlib WAV header probe


def _wav_variants(tmp_path):
    """Files wav_header takes (plain PCM / float WAV) and files it must leave to libsndfile."""
    import struct

    rng = np.random.default_rng(1)
    paths = []
    for fmt, subtypes in (("WAV", ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE",
                                   "ULAW", "IMA_ADPCM")), ("WAVEX", ("PCM_16",)), ("RF64", ("PCM_16",))):
        for subtype in subtypes:
            for channels, n in ((1, 1), (2, 1001), (3, 4099)):
                path = tmp_path / f"{fmt}_{subtype}_{channels}_{n}.wav"
                try:
                    sf.write(str(path), rng.uniform(-0.5, 0.5, (n, channels)).astype(np.float32),
                             8000 + n, format=fmt, subtype=subtype)
                except sf.LibsndfileError:  # a combination libsndfile does not write
                    continue
                paths.append(path)
    raw = (tmp_path / "WAV_PCM_16_2_1001.wav").read_bytes()
    at = raw.find(b"data")
    listed = raw[:at] + b"LIST" + struct.pack("<I", 2000) + b"x" * 2000 + raw[at:]
    variants = {
        "cut.wav": raw[:-3], "head_only.wav": raw[:at + 8], "trailing.wav": raw + b"junk!",
        "list_before_data.wav": listed[:4] + struct.pack("<I", len(listed) - 8) + listed[8:],
        "odd_size.wav": raw[:at + 4] + struct.pack("<I", struct.unpack_from("<I", raw, at + 4)[0] - 1) + raw[at + 8:],
        "empty.wav": b"", "text.wav": b"not audio " * 50,
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


def test_wav_header_agrees_with_featurelib_info(tmp_path):
    from featurelib.exceptions import AudioDecodeError
    from featurelib.io import info
    from jobs.plan import wav_header

    taken = 0
    for path in _wav_variants(tmp_path):
        fast = wav_header(str(path))
        if fast is None:
            continue
        taken += 1
        try:
            ref = info(str(path))
        except AudioDecodeError:
            pytest.fail(f"wav_header read {path.name}, libsndfile refuses it")
        assert (fast.format, fast.subtype, fast.sample_rate, fast.channels, fast.frames) == \
            (ref.format, ref.subtype, ref.sample_rate, ref.channels, ref.frames), path.name
        assert fast.size_bytes == path.stat().st_size
        assert fast.duration_s == ref.duration
    assert taken >= 6 * 3 + 2  # every plain PCM/float variant, trailing bytes, a LIST chunk
    for name in ("cut.wav", "head_only.wav", "odd_size.wav", "empty.wav", "text.wav"):
        assert wav_header(str(tmp_path / name)) is None, name


def test_auto_chunk_frames():
    from jobs.plan import auto_chunk_frames

    assert [auto_chunk_frames(n) for n in (1, 2048, 4095, 4096, 8191, 8192, 40000, 10**7)] == \
        [2048, 2048, 2048, 4096, 4096, 8192, 8192, 8192]
    plan = make_batches(_corpus(), sr=8000, hop_length=80, batch_seconds=600, min_batches=2,
                        chunk_frames=None)
    assert plan.chunk_frames == 8192
    assert all(b.region_start % 8192 == 0 for b in plan.batches)


@pytest.mark.parametrize("seconds, chunk", [(0.45, 4096), (60.0, 2048)])
def test_auto_chunk_is_long_unless_whole_files_would_pad_the_regions(seconds, chunk):
    """Clips of 45 frames fill a batch's last chunk almost whole: 4096-frame chunks (the batch
    target is about 4,100 frames). Clips of 6,000 frames, one per batch, would pad their
    8192-frame regions (two 4096 chunks) by 36 %: the plan takes 2048 (2 %)."""
    files = [_fake(f"/c/{i:05d}.wav", seconds) for i in range(int(3000 * 0.45 / seconds))]
    plan = make_batches(files, sr=8000, hop_length=80, batch_seconds=600, min_batches=32,
                        chunk_frames=None)
    assert plan.chunk_frames == chunk
    used = sum(f.n_frames for f in plan.files)
    assert plan.total_frames - used <= 0.05 * used


def test_packed_moments_equal_row_moments():
    from jobs.compute import packed_moments, row_moments

    rng = np.random.default_rng(2)
    n_valid = [1, 5, 17, 17, 40]
    data = rng.normal(size=(len(n_valid), 40, 3)).astype(np.float32)
    packed = np.concatenate([data[i, :n] for i, n in enumerate(n_valid)])
    mean, std = packed_moments(packed, n_valid)
    count, ref_mean, m2 = row_moments(data, n_valid)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, np.sqrt(m2 / count[:, None]), rtol=1e-12, atol=1e-15)


def test_buffer_groups_bound_each_padded_buffer():
    """Length-sorted files go into consecutive groups whose padded buffer (rows x longest) stays
    within the limit; one file longer than the limit is a group of its own; nothing is lost or
    reordered, and the items are asked for one at a time (decoded as they come)."""
    from jobs.compute import buffer_groups

    frames = [1, 3, 3, 4, 10, 10, 25, 40]
    asked = []

    def items():
        for i, n in enumerate(frames):
            asked.append(i)
            yield n

    groups = buffer_groups(items(), lambda n: n, limit=20)
    first = next(groups)
    assert first == [1, 3, 3, 4] and asked == [0, 1, 2, 3, 4]  # the fifth did not fit
    rest = list(groups)
    assert rest == [[10, 10], [25], [40]]
    assert all(len(g) * max(g) <= 20 or len(g) == 1 for g in [first, *rest])
    assert list(buffer_groups([], len)) == []


def test_index_rows_and_batch_commits_never_import_pandas(tmp_path):
    """Arrow tables built from buffers, batches committed as Arrow IPC: pyarrow imports
    pandas (0.2-0.3 CPU-s) on its first conversion of Python values, which every worker and
    the coordinator would pay while the batches run."""
    import subprocess
    import sys

    script = f"""
import sys
import numpy as np
from jobs import store
from jobs.plan import PlannedFile
out = {str(tmp_path / "run")!r}
store.make_out(out)
dims = {{"mfcc": 3, "rms": 1}}
rows = store.IndexRows(dims)
f = PlannedFile(path="/a b/ü.wav", file_id="f1", size_bytes=10, format="WAV", subtype="PCM_16",
                sample_rate=8000, channels=1, frames=80, duration_s=0.01, n_frames=2,
                frame_start=0, frame_stop=2)
rows.add(f, {{"mfcc": np.ones(3), "rms": np.ones(1)}}, {{"mfcc": np.zeros(3), "rms": np.zeros(1)}})
fails = [{{"path": "/x.wav", "stage": "decode", "error_type": "AudioDecodeError", "message": "bad"}}]
assert store.commit_batch(out, 0, rows, fails, dims)
index = store.FilesIndex(out, [0], dims)
n, failures, _ = index.finish([{{"path": "/y.wav", "stage": "probe", "error_type": "E", "message": None}}])
files = store.read_table(out, "files.parquet")
assert n == 1
assert files.column("path").to_pylist() == ["/a b/ü.wav"], files
assert files.column("mfcc_mean_2").to_pylist() == [1.0]
assert failures.column("path").to_pylist() == ["/x.wav", "/y.wav"]
assert failures.column("message").to_pylist() == ["bad", None]
print("pandas" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_batches_committed_as_parquet_by_an_earlier_version_still_read(tmp_path):
    """Local batch commits are Arrow IPC files now; a run directory from a version that
    committed Parquet resumes: its batches read back the same."""
    import pyarrow.parquet as pq

    from jobs import store
    from jobs.plan import PlannedFile, arrow_rows

    out = str(tmp_path / "run")
    store.make_out(out)
    dims = {"mfcc": 2, "rms": 1}
    rows = store.IndexRows(dims)
    f = PlannedFile(path="/a.wav", file_id="f1", size_bytes=10, format="WAV", subtype="PCM_16",
                    sample_rate=8000, channels=1, frames=80, duration_s=0.01, n_frames=2,
                    frame_start=0, frame_stop=2)
    rows.add(f, {"mfcc": np.ones(2), "rms": np.ones(1)}, {"mfcc": np.zeros(2), "rms": np.zeros(1)})
    fails = [{"path": "/x.wav", "stage": "decode", "error_type": "AudioDecodeError", "message": "bad"}]
    assert store.commit_batch(out, 0, rows, fails, dims)
    folder = store.batch_dir(out, 0)
    assert sorted(os.listdir(folder)) == ["failures.arrow", "files.arrow"]
    new_files, new_failures = store.read_batch(out, 0)
    # the earlier layout: the same rows as Parquet files in the batch's folder
    old = store.batch_dir(out, 1)
    os.makedirs(old)
    pq.write_table(new_files, os.path.join(old, "files.parquet"))
    pq.write_table(arrow_rows(fails, store.failures_schema()), os.path.join(old, "failures.parquet"))
    old_files, old_failures = store.read_batch(out, 1)
    assert old_files.equals(new_files) and old_failures.equals(new_failures)
    assert store.committed_batches(out) == {0, 1}


def test_auto_chunk_of_long_files_is_long():
    """A corpus of long files alone (no short batch target) still gets long chunks, unless they
    would pad the regions more than MAX_PADDING."""
    hours = make_batches([_fake("/c/night.wav", 7200.0, sr=16000)], sr=16000, hop_length=160,
                         batch_seconds=600, chunk_frames=None)
    assert hours.chunk_frames == 8192
    short_long = make_batches([_fake(f"/c/{i}.wav", 121.0, sr=16000) for i in range(3)], sr=16000,
                              hop_length=160, batch_seconds=600, chunk_frames=None)
    used = sum(f.n_frames for f in short_long.files)  # 12,101 frames each: 8192 would pad 35 %
    assert short_long.chunk_frames == 4096 and short_long.total_frames - used <= 0.05 * used


def test_a_rate_too_low_to_resample_is_a_probe_failure():
    """A header that claims 2 Hz (or any rate under the store's / 64) is not planned: its
    frames upsampled would make years of audio from a damaged header."""
    files = [_fake("/c/ok.wav", 1.0, sr=8000), _fake("/c/slow.wav", 2000.0, sr=2),
             _fake("/c/edge.wav", 10.0, sr=250)]
    plan = _plan(files, failures=[{"path": "/c/x.wav", "stage": "discover",
                                   "error_type": "BrokenLink", "message": "gone"}])
    assert sorted(f.path for f in plan.files) == ["/c/edge.wav", "/c/ok.wav"]  # 250 x 64 = 16000
    (bad,) = [f for f in plan.failures if f["path"] == "/c/slow.wav"]
    assert bad["stage"] == "probe" and bad["error_type"] == "ImplausibleSampleRate"
    assert "2 Hz" in bad["message"] and "8000x" in bad["message"]
    assert len(plan.failures) == 2


def test_a_rate_too_high_for_sound_is_a_probe_failure():
    """A header announcing 2**31 - 1 Hz is damaged, not an ultrasound recording (768 kHz)."""
    files = [_fake("/c/bat.wav", 1.0, sr=768_000), _fake("/c/damaged.wav", 0.001, sr=2**31 - 1)]
    plan = _plan(files)
    assert [f.path for f in plan.files] == ["/c/bat.wav"]
    (bad,) = plan.failures
    assert bad["error_type"] == "ImplausibleSampleRate" and "too high" in bad["message"]


def test_header_failures_are_typed_as_the_decode_stage_types_them(tmp_path):
    """A cut WAV failed its header read as "AudioDecodeError" and its decode as "TruncatedFile":
    one query could not group the same fault."""
    whole = tmp_path / "whole.wav"
    sf.write(str(whole), np.zeros(16000, np.float32), 16000, subtype="PCM_24")
    (tmp_path / "cut.wav").write_bytes(whole.read_bytes()[:20000])
    (tmp_path / "text.wav").write_text("not audio at all, just words")
    (tmp_path / "empty.flac").write_bytes(b"")
    _, failures = probe_all([str(tmp_path / n) for n in ("cut.wav", "text.wav", "empty.flac")])
    kinds = {os.path.basename(f["path"]): f["error_type"] for f in failures}
    assert kinds["cut.wav"] == "TruncatedFile" and kinds["text.wav"] == "NotAudio", failures
