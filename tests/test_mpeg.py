"""MP3s without a length tag: featurelib.mpeg walks their frame headers, and info, load and the
extract job get the length that really decodes, to the end of the stream.

libsndfile takes an untagged stream's length from an estimate (file size over the first frame's
bit rate) and stops decoding there; on a variable bit rate file that loses most of the audio
(librosa.load loses it too). Every test writes its own MP3s with libsndfile (LAME) and removes
the Xing/Info tag that LAME writes, as older encoders and stream rippers leave it out.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

import featurelib as F
from featurelib import mpeg

from audio_factory import mp3_writable

pytestmark = pytest.mark.skipif(not mp3_writable(), reason="this libsndfile cannot write MP3")


def _signal(sr: int, seconds: float, channels: int) -> np.ndarray:
    """A tone, then noise: a variable bit rate encoder spends few bits on the first half."""
    n = int(sr * seconds)
    t = np.arange(n) / sr
    rng = np.random.default_rng(sr + channels)
    y = 0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + 0.2 * rng.standard_normal((n, channels)) * (t >= seconds / 2)[:, None]
    return y.astype(np.float32) if channels > 1 else y[:, 0].astype(np.float32)


def _mp3(path, sr=44100, seconds=3.0, channels=1, mode="VARIABLE"):
    sf.write(str(path), _signal(sr, seconds, channels), sr, format="MP3", bitrate_mode=mode)
    return path


def _untagged(path, out):
    """A copy of ``path`` whose Xing/Info tag is blanked: the tag frame stays, as plain audio."""
    data = bytearray(path.read_bytes())
    for tag in (b"Xing", b"Info"):
        at = data.find(tag)
        if at >= 0:
            data[at:at + 4] = b"\0\0\0\0"
    out.write_bytes(bytes(data))
    return out


def _xing_frames(path) -> int:
    data = path.read_bytes()
    at = max(data.find(b"Xing"), data.find(b"Info"))
    flags = struct.unpack(">I", data[at + 4:at + 8])[0]
    assert flags & 1
    return struct.unpack(">I", data[at + 8:at + 12])[0]


@pytest.mark.parametrize("sr, spf", [(8000, 576), (22050, 576), (44100, 1152), (48000, 1152)])
@pytest.mark.parametrize("channels", [1, 2])
def test_scan_counts_the_frames_the_tag_counts(tmp_path, sr, spf, channels):
    """MPEG-2.5, -2 and -1 Layer III, mono and stereo: walking the headers finds the frames the
    encoder's tag announces, and one more (the tag frame) once the tag is blanked."""
    tagged = _mp3(tmp_path / "a.mp3", sr, 1.3, channels)
    frames = _xing_frames(tagged)
    stream = mpeg.scan(tagged)
    assert (stream.tagged, stream.frames, stream.samples_per_frame, stream.sample_rate, stream.layer) == \
        (True, frames, spf, sr, 3)
    assert mpeg.scan(tagged, walk_tagged=True).frames == frames
    bare = mpeg.scan(_untagged(tagged, tmp_path / "b.mp3"))
    assert (bare.tagged, bare.frames) == (False, frames + 1)


def test_scan_skips_id3_tags_and_trailing_junk(tmp_path):
    tagged = _mp3(tmp_path / "a.mp3", 44100, 1.0)
    frames = _xing_frames(tagged)
    body = _untagged(tagged, tmp_path / "b.mp3").read_bytes()
    id3 = b"ID3\x04\x00\x00" + bytes((0, 0, 1, 0)) + b"\x00" * 128  # a 128-byte ID3v2 tag
    trailer = b"TAG" + b"\x00" * 125  # ID3v1
    stream = mpeg.scan_bytes(id3 + body + trailer)
    assert stream.first_frame == len(id3) and stream.frames == frames + 1


def test_scan_of_something_else_finds_no_stream(tmp_path):
    assert mpeg.scan_bytes(b"RIFF" + bytes(4000)) is None
    assert mpeg.scan_bytes(b"\xff\xfb" + bytes(10)) is None  # one header, nothing after it


def test_an_untagged_vbr_mp3_decodes_to_its_end(tmp_path):
    """libsndfile alone stops at its estimate; featurelib decodes every frame, and the audio
    matches the tagged file's, shifted by the encoder delay that only the tag records."""
    tagged = _mp3(tmp_path / "a.mp3", 44100, 3.0)
    bare = _untagged(tagged, tmp_path / "b.mp3")
    estimate = sf.info(str(bare)).frames
    stream = mpeg.scan(bare)
    assert stream.samples > estimate + 44100  # libsndfile would lose more than a second
    meta = F.info(bare)
    y, sr = F.load(bare, sr=None)
    assert meta.frames == y.shape[0] == stream.samples - 529  # mpg123's decoder delay
    reference, _ = sf.read(str(tagged), dtype="float32")
    assert y.shape[0] > reference.shape[0]
    # the decoded audio is the tagged file's, shifted by LAME's encoder delay
    shift = y.shape[0] - reference.shape[0]
    errors = {d: float(np.max(np.abs(y[d:d + reference.size] - reference))) for d in range(shift + 1)}
    best = min(errors, key=errors.get)
    assert errors[best] < 1e-4, errors[best]


def test_an_untagged_mp3_reports_what_decodes(tmp_path):
    """Where libsndfile's estimate overshoots (a constant bit rate file, tag frame included),
    info and load agree on the frames that really decode: what the job plans from."""
    sf.write(str(tmp_path / "c.mp3"), _signal(44100, 5.0, 1), 44100, format="MP3",
             bitrate_mode="CONSTANT", compression_level=0.5)
    bare = _untagged(tmp_path / "c.mp3", tmp_path / "d.mp3")
    stream = mpeg.scan(bare)
    meta = F.info(bare)
    y, _ = F.load(bare, sr=None)
    assert meta.frames == y.shape[0]
    assert sf.info(str(bare)).frames >= stream.samples and meta.frames == stream.samples


def test_tagged_stream_reads_and_seeks_across_its_parts(tmp_path):
    bare = _untagged(_mp3(tmp_path / "a.mp3"), tmp_path / "b.mp3")
    stream = mpeg.scan(bare)
    view = mpeg.TaggedStream(bare, stream)
    whole = view.read()
    tag = mpeg.xing_frame(stream)
    body = bare.read_bytes()
    assert whole == body[:stream.first_frame] + tag + body[stream.first_frame:]
    view.seek(len(tag) - 5)
    assert view.read(10) == whole[len(tag) - 5:len(tag) + 5]
    assert view.seek(-3, 2) == len(whole) - 3 and view.read(100) == whole[-3:]
    view.close()
    assert view.closed


def test_extract_stores_untagged_mp3s_whole(tmp_path):
    """The job plans each untagged MP3 at the length that decodes: no file fails, and the
    stored features are featurelib's on the same whole file."""
    import zarr
    from test_extract_support import read_tables, run_cli, write_config

    from jobs.compute import FeatureSet, decode, file_features

    corpus = tmp_path / "in"
    corpus.mkdir()
    _untagged(_mp3(tmp_path / "v.mp3", 44100, 3.0), corpus / "vbr.mp3")
    sf.write(str(tmp_path / "c.mp3"), _signal(22050, 2.0, 2), 22050, format="MP3",
             bitrate_mode="CONSTANT", compression_level=0.5)
    _untagged(tmp_path / "c.mp3", corpus / "cbr.mp3")
    _mp3(corpus / "tagged.mp3", 16000, 1.0)
    out = tmp_path / "out"
    result = run_cli("extract", write_config(tmp_path / "job.yaml", input=str(corpus), out=out))
    assert result.returncode == 0, result.stderr
    files, failures = read_tables(out)
    assert failures is None or failures.num_rows == 0
    rows = {row["path"]: row for row in files.to_pylist()}
    assert sorted(rows) == sorted(str(p) for p in corpus.iterdir())
    assert abs(rows[str(corpus / "vbr.mp3")]["duration_s"] - 3.0) < 0.1  # not libsndfile's 1.3 s
    group = zarr.open_group(str(out / "features.zarr"), mode="r")
    fs = FeatureSet.from_config(dict(group.attrs)["feature_config"])
    for path, row in rows.items():
        y, _ = F.load(path, sr=fs.sr)
        np.testing.assert_array_equal(decode(path, sr=fs.sr), y)
        for name, expected in file_features(y, fs).items():
            got = group[name][row["frame_start"]:row["frame_stop"]]
            scale = max(float(np.abs(expected).max()), 1e-6)
            assert float(np.abs(got - expected).max()) / scale < 1e-4, (name, path)


def _quiet_stretches(sr: int, seconds: int) -> np.ndarray:
    """A tone over noise with a near-silent second in every three: frames whose bit reservoir
    reaches back far, where a seek inside the stream decodes differently."""
    n = sr * seconds
    t = np.arange(n) / sr
    rng = np.random.default_rng(0)
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    for s in range(1, seconds, 3):
        y[s * sr:(s + 1) * sr] = 1e-6 * rng.standard_normal(sr)
    return y.astype(np.float32)


@pytest.mark.parametrize("block", [4000, 5777, 1 << 14])
def test_block_reads_join_up_to_one_whole_read(tmp_path, monkeypatch, block):
    """soundfile seeks to its own position after every read, which in an MP3 decodes about one
    frame again, differently; featurelib's sequential reads and the job's stream do not seek, so
    a file read in blocks gives the samples of one whole read (what featurelib.load returns)."""
    import jobs.compute
    from featurelib._sequential import read_float32
    from jobs.compute import ResampledStream, decode

    path = str(tmp_path / "quiet.mp3")
    sf.write(path, _quiet_stretches(44100, 6), 44100, format="MP3")
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    with sf.SoundFile(path) as handle:
        parts = []
        while (part := read_float32(handle, block)).shape[0]:
            parts.append(part)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    monkeypatch.setattr(jobs.compute, "STREAM_CHUNK_FRAMES", block)
    expected = decode(path, sr=16000)
    np.testing.assert_array_equal(expected, F.load(path, sr=16000)[0])
    with ResampledStream(path, sr=16000, expected_frames=whole.shape[0]) as stream:
        streamed = np.concatenate([stream.read(10_000) for _ in range(expected.shape[0] // 10_000 + 2)])
    np.testing.assert_array_equal(streamed, expected)


def _sweep_mp3(path, sr=22050, seconds=10, channels=1):
    """A sweep at libsndfile's default MP3 settings: its frames lean on the bit reservoir, so the
    frames right after a bare seek decode wrong (silence, half full scale off)."""
    from audio_factory import chirp

    y = chirp(sr, float(seconds), channels=channels)
    sf.write(str(path), y, sr, format="MP3")
    return str(path)


@pytest.mark.parametrize("sr, channels", [(22050, 1), (44100, 2), (8000, 1)])
def test_a_window_from_an_offset_is_that_window_of_the_whole_file(tmp_path, sr, channels):
    """load(offset=o, duration=d) is the window [o, o + d) of load(): mpg123 seeks to a frame
    whose bit reservoir is not there and gets up to 16 frames wrong (librosa.load too); the
    decoder is started 32 frames ahead and those samples dropped."""
    path = _sweep_mp3(tmp_path / "sweep.mp3", sr, channels=channels)
    whole, _ = F.load(path, mono=False)
    for offset in (0.05, 1.0, 2.5, 4.321, 9.0):
        piece, _ = F.load(path, mono=False, offset=offset, duration=0.5)
        start = int(offset * sr)
        np.testing.assert_allclose(piece, whole[..., start:start + piece.shape[-1]], rtol=0, atol=1e-6,
                                   err_msg=f"offset {offset}")


def test_inspect_levels_of_an_mp3_are_those_of_the_whole_decode(tmp_path):
    """inspect streams a file in blocks; an MP3's blocks join up to the whole decode (soundfile
    re-seeking after each read got a frame after every block boundary wrong)."""
    from jobs.inspection import BLOCK_FRAMES, inspect_file

    path = _sweep_mp3(tmp_path / "sweep.mp3", 22050, seconds=3 * BLOCK_FRAMES // 22050 + 1)
    whole, _ = sf.read(path, dtype="float32")
    facts = inspect_file(path)
    rms = float(np.sqrt(np.mean(whole.astype(np.float64) ** 2)))
    assert facts["rms_dbfs"] == pytest.approx(20 * np.log10(rms), abs=1e-4)
    assert facts["peak_dbfs"] == pytest.approx(20 * np.log10(np.abs(whole).max()), abs=1e-4)
