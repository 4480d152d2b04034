"""Audio libsndfile cannot read (AAC/M4A, WMA, Opus in WebM, AC-3, ALAC, WavPack), decoded with
FFmpeg's decoders through PyAV: featurelib.info/load, the reasons for broken files, and the
extract job on a corpus of them.

The files are written here with PyAV's own encoders. Where the ``ffmpeg`` program is installed
(librosa reads these formats through it, via audioread), ``load`` is also checked against
``librosa.load``.
"""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
import zarr
from test_extract_support import read_tables, run_cli, write_config

import featurelib as F
from featurelib import AudioDecodeError

av = pytest.importorskip("av")

# (extension, container, codec, native rate, bit rate)
FORMATS = [
    ("m4a", "mp4", "aac", 44100, 96000),
    ("aac", "adts", "aac", 22050, 64000),
    ("wma", "asf", "wmav2", 16000, 48000),
    ("webm", "webm", "libopus", 48000, 64000),
    ("ac3", "ac3", "ac3", 32000, 96000),
    ("m4b", "mp4", "alac", 8000, None),
    ("wv", "wv", "wavpack", 11025, None),
]


def signal(seconds, sr, channels=1, seed=0):
    """A chirp over noise: every band gets energy, nothing is pure silence."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    y = 0.4 * np.sin(2 * np.pi * (200 + 0.2 * sr * t / max(seconds, 1e-9)) * t) + 0.05 * rng.standard_normal(n)
    y = y.astype(np.float32)
    return y if channels == 1 else np.stack([y, -0.5 * y], axis=1)


def write_av(path, y, sr, codec, container, bit_rate=None, sample_format=None):
    """Encode ``y`` ((n,) or (n, channels) float) with PyAV (in ``sample_format``, else the
    first of float, 16-bit and 32-bit integer that the encoder takes)."""
    y2 = y[:, None] if y.ndim == 1 else y
    layout = {1: "mono", 2: "stereo"}.get(y2.shape[1], f"{y2.shape[1]} channels")
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        offered = {f.name: f for f in stream.codec_context.codec.audio_formats}
        fmt = next(offered[name] for name in ((sample_format,) if sample_format else
                                              ("fltp", "flt", "s16p", "s16", "s32p", "s32")) if name in offered)
        if sample_format:
            stream.codec_context.format = sample_format  # else the encoder's default
        # PyAV cannot make a planar frame of more than 8 channels (it reads past FFmpeg's plane
        # array): those go in packed and FFmpeg's converter makes them planar
        via_packed = fmt.is_planar and y2.shape[1] > 8
        made = fmt.name.rstrip("p") if via_packed else fmt.name
        planar = fmt.is_planar and not via_packed
        convert = av.AudioResampler(format=fmt.name, layout=layout, rate=sr) if via_packed else None
        step = 1 << 14
        for i in range(0, y2.shape[0], step):
            chunk = y2[i:i + step]
            chunk = np.ascontiguousarray(chunk.T) if planar else chunk.reshape(1, -1)
            if made.startswith("s16"):
                chunk = np.round(chunk * 32767).astype(np.int16)
            elif made.startswith("s32"):
                chunk = np.round(chunk * 2147483647.0).astype(np.int32)
            else:
                chunk = chunk.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format=made, layout=layout)
            frame.sample_rate = sr
            for ready in (convert.resample(frame) if convert else [frame]):
                for packet in stream.encode(ready):
                    out.mux(packet)
        for ready in (convert.resample(None) if convert else []):
            for packet in stream.encode(ready):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return str(path)


def pyav_samples(path):
    """``(frames, channels)`` float32 of the first audio stream, decoded here independently."""
    blocks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            data = frame.to_ndarray()
            data = data.T if frame.format.is_planar else data.reshape(-1, len(frame.layout.channels))
            name = frame.format.name.rstrip("p")
            scale = {"s16": 1 / 32768, "s32": 1 / 2147483648}.get(name)
            blocks.append(data.astype(np.float32) * np.float32(scale) if scale else data.astype(np.float32))
    return np.concatenate(blocks)


def _encodable(codec):
    return codec in av.codecs_available


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("av")
    made = {}
    for ext, container, codec, sr, rate in FORMATS:
        if not _encodable(codec):
            continue
        channels = 2 if ext in ("m4a", "webm") else 1
        made[ext] = write_av(root / f"clip.{ext}", signal(1.7, sr, channels), sr, codec, container, rate)
    return made


def test_info_counts_the_frames_that_decode(files):
    for ext, path in files.items():
        meta = F.info(path)
        decoded = pyav_samples(path)
        assert meta.frames == decoded.shape[0], ext
        assert meta.channels == decoded.shape[1], ext
        assert meta.duration == pytest.approx(meta.frames / meta.sample_rate)
        assert abs(meta.duration - 1.7) < 0.2, ext  # the encoders' padding is at most a frame or two
    assert F.info(files["m4a"]).format == "MP4" and F.info(files["m4a"]).subtype == "AAC"
    assert F.info(files["wma"]).format == "ASF" and F.info(files["wma"]).subtype == "WMAV2"
    assert F.info(files["m4b"]).subtype == "ALAC"
    assert F.info(files["wv"]).bit_depth == 16  # lossless, decoded to 16-bit integers
    assert F.info(files["m4a"]).bit_depth is None  # a lossy codec has no bit depth


def test_load_gives_ffmpegs_samples(files):
    for ext, path in files.items():
        decoded = pyav_samples(path)
        y, sr = F.load(path, mono=False)
        assert sr == F.info(path).sample_rate
        np.testing.assert_array_equal(y.T if y.ndim == 2 else y[:, None], decoded, err_msg=ext)
        mono, _ = F.load(path)
        np.testing.assert_allclose(mono, decoded.mean(axis=1), atol=1e-7, err_msg=ext)
        part, _ = F.load(path, offset=0.3, duration=0.5)
        start = int(0.3 * sr)
        np.testing.assert_allclose(part, decoded.mean(axis=1)[start:start + int(0.5 * sr)], atol=1e-7)
        resampled, rate = F.load(path, sr=16000)
        assert rate == 16000 and resampled.shape[0] == int(np.ceil(decoded.shape[0] * 16000 / sr))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="librosa reads these formats through the ffmpeg program")
def test_load_matches_librosa_through_ffmpeg(files):
    import librosa

    for ext, path in files.items():
        for kwargs in ({"sr": None, "mono": False}, {"sr": 16000}, {"sr": None, "offset": 0.25, "duration": 1.0}):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected, rate = librosa.load(path, **kwargs)
            got, got_rate = F.load(path, **kwargs)
            assert got_rate == rate and got.shape == expected.shape, (ext, kwargs)
            # librosa takes ffmpeg's 16-bit output: within its rounding
            assert float(np.abs(got - expected).max()) < 1e-4, (ext, kwargs)


def test_broken_files_say_what_is_wrong(files, tmp_path):
    whole = open(files["m4a"], "rb").read()
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(AudioDecodeError, match=r"truncated: the MP4's '\w+' box announces"):
        F.load(str(cut))
    unfinished = tmp_path / "unfinished.m4a"  # a recorder stopped before writing its index
    ftyp = int.from_bytes(whole[:4], "big")
    unfinished.write_bytes(whole[:ftyp] + b"\x00\x00\x00\x00mdat" + bytes(4000))  # mdat to the end
    with pytest.raises(AudioDecodeError, match="no 'moov' box"):
        F.info(str(unfinished))
    page = tmp_path / "download.m4a"
    page.write_bytes(b"<!DOCTYPE html><html><body>403</body></html>")
    with pytest.raises(AudioDecodeError, match="HTML"):
        F.load(str(page))
    garbage = tmp_path / "noise.wma"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError, match="not a readable audio file"):
        F.info(str(garbage))
    wma = open(files["wma"], "rb").read()
    cut_wma = tmp_path / "cut.wma"
    cut_wma.write_bytes(wma[: len(wma) // 2])
    with pytest.raises(AudioDecodeError):
        F.load(str(cut_wma))


def test_a_wav_named_file_that_is_m4a_is_read(files, tmp_path):
    """A file under a libsndfile name whose bytes are an MP4 (a phone's memo renamed): FFmpeg
    reads it, as librosa's audioread fallback does."""
    renamed = tmp_path / "memo.wav"
    shutil.copy(files["m4a"], renamed)
    np.testing.assert_array_equal(F.load(str(renamed))[0], F.load(files["m4a"])[0])


def test_a_count_given_by_the_caller_spares_the_counting_pass(files):
    from featurelib._avfile import AVFile

    for ext, path in files.items():
        counted = AVFile(path)
        told = AVFile(path, frames=counted.frames)
        assert (told.samplerate, told.channels, told.format, told.subtype) == \
            (counted.samplerate, counted.channels, counted.format, counted.subtype), ext
        np.testing.assert_array_equal(told.read(-1, dtype="float32", always_2d=True),
                                      counted.read(-1, dtype="float32", always_2d=True), err_msg=ext)
        told.seek(100)
        counted.close()
        np.testing.assert_array_equal(told.read(50, dtype="float32", always_2d=True),
                                      pyav_samples(path)[100:150])
        told.close()


def test_extract_takes_them_like_any_audio(files, tmp_path):
    """A folder of these formats (and one long M4A, streamed in blocks and split) becomes a store
    whose rows equal featurelib on each file; a cut M4A is a failure with its reason."""
    from jobs.compute import FeatureSet, decode, file_features

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in files.values():
        shutil.copy(path, corpus / os.path.basename(path))
    long_path = write_av(corpus / "long.m4a", signal(75, 44100, channels=2, seed=3), 44100, "aac", "mp4", 96000)
    whole = open(files["m4a"], "rb").read()
    (corpus / "cut.m4a").write_bytes(whole[: len(whole) // 2])
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus), out=tmp_path / "out",
                       compute={"batch_seconds": 30, "block_seconds": 10, "workers": 2})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    files_table, failures = read_tables(tmp_path / "out")
    failures = failures.to_pylist()
    assert [os.path.basename(f["path"]) for f in failures] == ["cut.m4a"]
    assert "truncated" in failures[0]["message"]
    assert sorted(os.path.basename(p) for p in files_table["path"].to_pylist()) == sorted(
        [os.path.basename(p) for p in files.values()] + ["long.m4a"])
    from jobs.config import feature_config, load_config

    fs = FeatureSet.from_config(feature_config(load_config(cfg)))
    store = zarr.open_group(str(tmp_path / "out" / "features.zarr"), mode="r")
    for row in files_table.to_pylist():
        assert row["format"] == F.info(row["path"]).format
        expected = file_features(decode(row["path"], sr=fs.sr), fs)
        for name, values in expected.items():
            got = store[name][row["frame_start"]:row["frame_stop"]]
            scale = max(float(np.abs(values).max()), 1e-6)
            assert float(np.abs(got - values).max()) / scale < 1e-4, (row["path"], name)
    assert long_path in set(files_table["path"].to_pylist())


def test_many_counted_files_are_probed_on_the_workers():
    from jobs.config import parse_config
    from jobs.extract import CLUSTER_PROBE_MIN_COUNTED, _probes_on_workers

    cfg = parse_config({"input": "x", "out": "y", "features": {"rms": {}}})
    wavs = [f"/a/{i}.wav" for i in range(500)]
    m4as = [f"/a/{i}.M4A" for i in range(CLUSTER_PROBE_MIN_COUNTED)]
    assert not _probes_on_workers(cfg, wavs)
    assert _probes_on_workers(cfg, wavs + m4as)
    assert not _probes_on_workers(cfg, wavs + m4as[:-1])


def test_without_pyav_they_are_reported_as_unsupported(tmp_path, monkeypatch):
    """A folder of M4A where PyAV is missing is not an empty job: each file is a discover
    failure saying what to install."""
    import featurelib._avfile as avfile
    from jobs.discover import _Walker

    monkeypatch.setattr(avfile, "av_available", lambda: False)
    sf.write(str(tmp_path / "ok.flac"), np.zeros(800, np.float32), 8000)
    (tmp_path / "memo.m4a").write_bytes(b"\0" * 64)
    walker = _Walker(frozenset({".flac", ".wav"}))
    walker.walk_folder(str(tmp_path))
    assert list(walker.found) == [str(tmp_path / "ok.flac")]
    assert "pip install av" in walker.failures[str(tmp_path / "memo.m4a")]["message"]


def test_cut_containers_that_state_their_length_are_refused(files, tmp_path):
    """A WebM or WMA cut short decodes as the part that is there: the header's length (WebM) or
    file size (WMA) tells, and the file is refused like a cut WAV, never stored short."""
    for ext, words in (("webm", "header announces"), ("wma", "states a file of")):
        whole = open(files[ext], "rb").read()
        for keep in (len(whole) // 2, len(whole) * 3 // 4):
            cut = tmp_path / f"cut{keep}.{ext}"
            cut.write_bytes(whole[:keep])
            with pytest.raises(AudioDecodeError, match=f"truncated: .*{words}"):
                F.load(str(cut))


def test_a_whole_matroska_file_whose_duration_overstates_it_decodes(files, tmp_path):
    """An old muxer (linphone's Lavf55 silence.mkv) wrote a Duration 2 % past the last packet of
    a whole file: the Segment's size, all there, says the file is whole, and it decodes. A file
    cut short of its packets is still refused; one missing only its trailing index (Cues)
    decodes whole."""
    import struct

    whole = bytearray(open(files["webm"], "rb").read())
    at = whole.find(b"\x44\x89")  # the Duration element: a 4- or 8-byte float (milliseconds)
    width = whole[at + 2] & 0x0F
    fmt = ">d" if width == 8 else ">f"
    duration_ms = struct.unpack(fmt, whole[at + 3:at + 3 + width])[0]
    assert 1600 < duration_ms < 1800
    whole[at + 3:at + 3 + width] = struct.pack(fmt, duration_ms * 1.05)
    long_stated = tmp_path / "long_stated.webm"
    long_stated.write_bytes(bytes(whole))
    y, sr = F.load(str(long_stated), mono=False)
    reference, _ = F.load(files["webm"], mono=False)
    np.testing.assert_array_equal(y, reference)
    assert F.info(str(long_stated)).frames == reference.shape[-1]
    cut = tmp_path / "cut.webm"
    cut.write_bytes(bytes(whole[:len(whole) * 2 // 3]))
    with pytest.raises(AudioDecodeError, match="truncated: .*header announces"):
        F.load(str(cut))
    # no Duration at all (a Void element in its place): a cut file is told by its Segment's size
    undated = bytearray(whole)
    undated[at:at + 3 + width] = bytes([0xEC, 0x80 | (width + 1)]) + bytes(width + 1)
    undated_cut = tmp_path / "undated_cut.webm"
    undated_cut.write_bytes(bytes(undated[:len(undated) * 3 // 5]))
    with pytest.raises(AudioDecodeError, match="truncated: .*Segment of"):
        F.load(str(undated_cut))
    original = open(files["webm"], "rb").read()
    cues = original.rfind(b"\x1c\x53\xbb\x6b")  # the Cues element, after the last packet
    if cues > 0:
        no_index = tmp_path / "no_index.webm"
        no_index.write_bytes(original[:cues + 3])
        np.testing.assert_array_equal(F.load(str(no_index), mono=False)[0], reference)


def test_a_stream_damaged_part_way_says_so(files, tmp_path):
    whole = bytearray(open(files["m4a"], "rb").read())
    mdat = whole.find(b"mdat")
    middle = mdat + (len(whole) - mdat) // 2
    whole[middle:middle + 64] = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.m4a"
    damaged.write_bytes(bytes(whole))
    try:
        F.load(str(damaged))
    except AudioDecodeError as exc:  # FFmpeg may also conceal the damage: then it decodes
        assert "part-way" in str(exc) or str(exc.reason).startswith("damaged: "), str(exc)
        assert "Error number" not in str(exc).split("(", 1)[0]


@pytest.mark.skipif(not _encodable("alac"), reason="no ALAC encoder in this PyAV")
def test_a_whole_m4a_damaged_part_way_is_damaged_not_truncated(tmp_path):
    """Bytes scrambled inside an ALAC stream stop FFmpeg part-way; every box of the file is
    there, so the file is damaged (DamagedFile), not "truncated" as if a copy had been cut."""
    from jobs.errors import reason_kind

    path = write_av(tmp_path / "whole.m4a", signal(5.0, 44100), 44100, "alac", "mp4")
    data = bytearray(open(path, "rb").read())
    at = len(data) // 3
    data[at:at + 4000] = bytes((b * 7 + 13) & 255 for b in data[at:at + 4000])
    damaged = tmp_path / "damaged.m4a"
    damaged.write_bytes(bytes(data))
    with pytest.raises(AudioDecodeError) as caught:
        F.load(str(damaged))
    reason = caught.value.reason
    assert reason.startswith("damaged: decoding stopped after "), reason
    assert "frames the header announces" in reason and "FFmpeg: " in reason
    assert reason_kind(reason, "AudioDecodeError") == "DamagedFile"
    cut = tmp_path / "cut.m4a"  # the same file cut short is still truncated
    cut.write_bytes(bytes(data[:at]))
    with pytest.raises(AudioDecodeError, match="truncated: the MP4's 'mdat' box announces"):
        F.load(str(cut))


def test_the_default_audio_stream_is_read(tmp_path):
    """Of two audio streams, the one marked default (what players and ffmpeg take)."""
    path = tmp_path / "two.mka"
    with av.open(str(path), "w", format="matroska") as out:
        mono = out.add_stream("libopus", rate=48000, layout="mono")
        stereo = out.add_stream("libopus", rate=48000, layout="stereo")
        mono.disposition = 0
        stereo.disposition = av.stream.Disposition.default
        for stream, channels in ((mono, 1), (stereo, 2)):
            data = np.zeros((channels, 960), np.float32)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=stream.layout.name)
            frame.sample_rate = 48000
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
    assert F.info(str(path)).channels == 2


def test_alac_in_caf_is_read_by_ffmpeg_where_libsndfile_lacks_the_codec(tmp_path):
    path = write_av(tmp_path / "alac.caf", signal(1.0, 44100), 44100, "alac", "caf")
    with pytest.raises(sf.LibsndfileError, match="unsupported encoding"):
        sf.info(path)
    meta = F.info(path)
    assert (meta.format, meta.subtype) == ("CAF", "ALAC")
    np.testing.assert_array_equal(F.load(path)[0], pyav_samples(path)[:, 0])


def test_alac_bit_depth_comes_from_its_magic_cookie(tmp_path):
    y = signal(0.5, 44100)
    deep = write_av(tmp_path / "deep.m4a", y, 44100, "alac", "mp4", sample_format="s32p")
    shallow = write_av(tmp_path / "shallow.m4a", y, 44100, "alac", "mp4", sample_format="s16p")
    assert F.info(deep).bit_depth == 24  # decoded as 32-bit integers, stored as 24
    assert F.info(shallow).bit_depth == 16
    assert F.info(write_av(tmp_path / "lossy.m4a", y, 44100, "aac", "mp4", 96000)).bit_depth is None


def test_video_containers_are_found_in_folders():
    from featurelib.io import AUDIO_EXTENSIONS

    assert {"mkv", "mov", "m4v", "mp4", "webm", "adts"} <= AUDIO_EXTENSIONS


def test_long_ffmpeg_files_are_never_split_to_seek():
    from jobs.plan import PlannedFile, decodes_in_ranges, splits_exactly

    webm = PlannedFile(path="/a.webm", file_id="a", size_bytes=1, format="MATROSKA", subtype="OPUS",
                       sample_rate=48000, channels=1, frames=48000 * 3600, duration_s=3600.0)
    ogg = PlannedFile(path="/a.opus", file_id="b", size_bytes=1, format="OGG", subtype="OPUS",
                      sample_rate=48000, channels=1, frames=48000 * 3600, duration_s=3600.0)
    assert not splits_exactly(webm, 48000) and not decodes_in_ranges(webm)
    assert splits_exactly(ogg, 48000)


def test_plot_samples_a_long_ffmpeg_file_in_one_pass(tmp_path):
    """The sampled spectra of a long M4A: the same pieces as featurelib.load at each offset,
    from one sequential pass (each load would decode the file from its start)."""
    from jobs.plotting import _PieceReader, _seeks

    path = write_av(tmp_path / "long.m4a", signal(20, 22050, seed=5), 22050, "aac", "mp4", 64000)
    assert not _seeks(path)
    reader = _PieceReader(path, 16000)
    try:
        for offset in (0.0, 0.01, 0.015, 3.3, 3.31, 12.0, 19.9):
            expected, _ = F.load(path, sr=16000, offset=offset, duration=0.08)
            np.testing.assert_array_equal(reader.load(offset, 0.08), expected)
    finally:
        reader.close()
    from jobs.cli import main as cli_main

    assert cli_main(["plot", path, "--kind", "all", "-o", str(tmp_path / "long.png")]) == 0


@pytest.mark.skipif(not _encodable("ac3"), reason="no AC-3 encoder in this PyAV")
def test_ac3_in_wav_is_read_by_ffmpeg_where_libsndfile_calls_its_fmt_chunk_malformed(tmp_path):
    """libsndfile does not know the format tag (0x2000) and says "Malformed 'fmt ' chunk", not
    "unsupported encoding": FFmpeg was not tried, and the file was "not a readable audio file"."""
    path = write_av(tmp_path / "ac3.wav", signal(1.0, 44100), 44100, "ac3", "wav")
    with pytest.raises(sf.LibsndfileError, match="Malformed 'fmt ' chunk"):
        sf.info(path)
    np.testing.assert_array_equal(F.load(path)[0], pyav_samples(path)[:, 0])
    assert F.info(path).frames == pyav_samples(path).shape[0]


def test_a_wav_of_a_codec_nothing_here_decodes_names_it(tmp_path):
    """Ogg Vorbis in a WAV wrapper (format tag 0x674F; LMMS ships drum samples so, named .ogg)
    was "Malformed 'fmt ' chunk": the reason names the codec and says to convert it."""
    data = b"\x01\x02vorbis-packets" * 8
    fmt = (0x674F).to_bytes(2, "little") + (1).to_bytes(2, "little") + (44100).to_bytes(4, "little") \
        + (11000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (16).to_bytes(2, "little") \
        + (8).to_bytes(2, "little") + bytes(8)
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" \
        + len(data).to_bytes(4, "little") + data
    path = tmp_path / "kick04.ogg"
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    said = "a WAV file holding Ogg Vorbis audio (WAVE format tag 0x674F), which neither libsndfile nor FFmpeg"
    with pytest.raises(AudioDecodeError, match=r"\(WAVE format tag 0x674F\)") as caught:
        F.load(str(path))
    assert said in str(caught.value) and "convert it" in str(caught.value)


@pytest.mark.skipif(not _encodable("libmp3lame") and not _encodable("mp3"), reason="no MP3 encoder")
def test_mp3_in_wav_is_as_long_as_what_decodes(tmp_path):
    """libsndfile takes an MP3-in-WAV's length from its 'fact' chunk (FFmpeg wrote 46,877 for
    46,080 decoded frames): it was refused as truncated, which librosa.load reads."""
    import librosa

    codec = "libmp3lame" if _encodable("libmp3lame") else "mp3"
    path = write_av(tmp_path / "mp3.wav", signal(1.0, 44100), 44100, codec, "wav")
    decoded = sf.read(path)[0].shape[0]
    y, _ = F.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(y, librosa.load(path, sr=None)[0])
    assert y.shape[0] == decoded == F.info(path).frames
    assert run_cli("inspect", path).returncode == 0


@pytest.mark.parametrize("channels, sample_format", [(9, "s32p"), (16, "fltp")])
def test_more_than_8_planar_channels_decode(tmp_path, channels, sample_format):
    """PyAV reads a planar frame of more than 8 channels past the end of FFmpeg's plane array: a
    9-channel WavPack crashed the process (SIGSEGV) in load, inspect and plot. Read in a child
    process, so that a crash fails this test alone."""
    import subprocess
    import sys

    if not _encodable("wavpack"):
        pytest.skip("no WavPack encoder in this FFmpeg")
    y = 0.5 * np.stack([signal(0.5, 48000, seed=c) for c in range(channels)], axis=1)
    path = write_av(tmp_path / "many.wv", y, 48000, "wavpack", "wv", sample_format=sample_format)
    saved = tmp_path / "got.npy"
    code = ("import numpy as np, featurelib\n"
            f"y, sr = featurelib.load({str(path)!r}, mono=False)\n"
            f"np.save({str(saved)!r}, y)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.load(saved)
    assert got.shape == (channels, y.shape[0])
    np.testing.assert_allclose(got.T, pyav_samples_packed(path), atol=1e-6)
    np.testing.assert_allclose(got.T, y, atol=1e-6)


def pyav_samples_packed(path):
    """(frames, channels) float32 decoded through FFmpeg's converter to packed float: the one
    way PyAV reads a frame of more than 8 planar channels safely."""
    blocks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            packer = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
            for out in packer.resample(frame):
                blocks.append(out.to_ndarray().reshape(-1, len(frame.layout.channels)))
    return np.concatenate(blocks)


@pytest.mark.parametrize("codec, sample_format, layout, dtype", [
    ("pcm_f32le", "flt", "5.1", np.float32), ("pcm_f64le", "dbl", "2.1", np.float64)])
def test_wave64_of_extensible_float_is_read_by_ffmpeg(tmp_path, codec, sample_format, layout, dtype):
    """FFmpeg writes W64 of more than two channels with an extensible 'fmt ' chunk: libsndfile
    read float32 ones as 32-bit integers (a 0.3 peak came back as 0.74 of noise, stored without
    a word) and refused float64 ones; both are FFmpeg's to read."""
    channels = len(av.AudioLayout(layout).channels)
    t = np.arange(24000) / 48000
    y = np.stack([0.3 * np.sin(2 * np.pi * 300 * (c + 1) * t) for c in range(channels)], axis=1).astype(dtype)
    path = tmp_path / "multi.w64"
    with av.open(str(path), "w", format="w64") as out:
        stream = out.add_stream(codec, rate=48000, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y.reshape(1, -1)), format=sample_format,
                                           layout=layout)
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    from featurelib.wav import w64_float_extensible

    assert w64_float_extensible(path.read_bytes()[:4096])
    meta = F.info(path)
    assert (meta.format, meta.channels, meta.frames) == ("W64", channels, y.shape[0])
    got, sr = F.load(path, mono=False)
    np.testing.assert_allclose(got.T, y, atol=1e-7)
    with open(path, "rb") as handle:  # a file object too
        np.testing.assert_allclose(F.load(handle, mono=False)[0].T, y, atol=1e-7)


def test_wave64_of_plain_float_and_pcm_stays_libsndfile_s(tmp_path):
    for subtype in ("FLOAT", "PCM_24"):
        path = tmp_path / f"{subtype}.w64"
        sf.write(str(path), signal(0.2, 16000, channels=2), 16000, format="W64", subtype=subtype)
        from featurelib.wav import w64_float_extensible

        assert not w64_float_extensible(path.read_bytes()[:4096])
        assert F.info(path).subtype == subtype


def test_an_aiff_with_a_long_text_chunk_is_read(tmp_path):
    """libsndfile copies AIFF text chunks (ANNO, NAME, AUTH, COMT, '(c) ') into an 8 KiB buffer:
    a longer one (an archive's annotation) was 'not a readable audio file (libsndfile:
    Unspecified internal error)'. FFmpeg reads it; the samples are the file's."""
    plain = tmp_path / "plain.aiff"
    sf.write(str(plain), signal(0.5, 44100, channels=2), 44100, format="AIFF", subtype="PCM_16")
    data = plain.read_bytes()
    annotation = b"ANNO" + (9000).to_bytes(4, "big") + b"a" * 9000
    body = data[12:]
    long = tmp_path / "annotated.aiff"
    long.write_bytes(b"FORM" + (4 + len(annotation) + len(body)).to_bytes(4, "big") + b"AIFF"
                     + annotation + body)
    from featurelib._avfile import aiff_long_text

    assert aiff_long_text(str(long)) and not aiff_long_text(str(plain))
    assert F.info(long).frames == F.info(plain).frames
    np.testing.assert_array_equal(F.load(long, mono=False)[0], F.load(plain, mono=False)[0])
