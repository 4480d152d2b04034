"""WAV files as recorders and editors really write them, through the extract job's fast paths.

The job reads WAV headers and 16-bit PCM samples with its own stdlib parser (faster than
libsndfile for millions of short clips). These files are built byte by byte with the layouts that
trip such parsers: chunks before and after ``data``, odd-sized chunks with their pad byte,
WAVE_FORMAT_EXTENSIBLE, RF64, a ``data`` size that overruns the file or is 0xFFFFFFFF (streaming
recorders), a partial last frame, big-endian RIFX, 8/24/32-bit and float formats. Whatever the
layout, the job must agree with featurelib.load (libsndfile plus its truncation checks): a file it
reads is in files.parquet with exactly its samples and features; a file it refuses is in
failures.parquet. A RIFF size that is merely wrong (the data chunk is whole) is not truncation.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf
import zarr
from test_extract_support import read_tables, run_cli, write_config

import featurelib
from jobs.compute import FeatureSet, decode, file_features

SR = 16000


def _signal(n=4000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    y = 0.4 * np.sin(2 * np.pi * 523 * t)[:, None] + 0.05 * rng.standard_normal((n, channels))
    return y.astype(np.float32)


def _pcm16(y):
    return (np.clip(y, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()


def _chunk(tag: bytes, payload: bytes, *, size: int | None = None, big=False) -> bytes:
    fmt = ">I" if big else "<I"
    body = tag + struct.pack(fmt, len(payload) if size is None else size) + payload
    return body + (b"\0" if len(payload) % 2 else b"")  # RIFF pads odd chunks to even length


def _fmt_pcm(channels, bits=16, tag=1, big=False):
    e = ">" if big else "<"
    align = channels * bits // 8
    return struct.pack(e + "HHIIHH", tag, channels, SR, SR * align, align, bits)


def _riff(chunks: bytes, *, size: int | None = None, big=False) -> bytes:
    head = b"RIFX" if big else b"RIFF"
    fmt = ">I" if big else "<I"
    return head + struct.pack(fmt, 4 + len(chunks) if size is None else size) + b"WAVE" + chunks


def _variants(root):
    y1, y2 = _signal(), _signal(3001, channels=2, seed=1)
    d1, d2 = _pcm16(y1), _pcm16(y2)
    fmt1, fmt2 = _chunk(b"fmt ", _fmt_pcm(1)), _chunk(b"fmt ", _fmt_pcm(2))
    info = _chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"test\0\0")
    files = {
        "plain.wav": _riff(fmt1 + _chunk(b"data", d1)),
        "list_before_data.wav": _riff(fmt1 + info + _chunk(b"data", d1)),
        "list_after_data.wav": _riff(fmt1 + _chunk(b"data", d1) + info),
        "odd_junk_chunk.wav": _riff(fmt1 + _chunk(b"junk", b"abc") + _chunk(b"data", d1)),
        "fact_and_bext.wav": _riff(fmt1 + _chunk(b"fact", struct.pack("<I", len(y1)))
                                   + _chunk(b"bext", bytes(602)) + _chunk(b"data", d1)),
        "stereo.wav": _riff(fmt2 + _chunk(b"data", d2)),
        "partial_last_frame.wav": _riff(fmt2 + _chunk(b"data", d2 + b"\x01\x02")),
        "odd_data_size.wav": _riff(fmt1 + _chunk(b"data", d1 + b"\x7f")),
        "data_overruns_file.wav": _riff(fmt1 + b"data" + struct.pack("<I", len(d1) + 8000) + d1),
        "streaming_sizes.wav": b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + fmt1
                               + b"data" + struct.pack("<I", 0xFFFFFFFF) + d1,
        # sox and other streaming writers leave 0x7FFFF000 ("length unknown") in both sizes
        "sox_streaming_sizes.wav": b"RIFF" + struct.pack("<I", 0x7FFFF000) + b"WAVE" + fmt1
                                   + b"data" + struct.pack("<I", 0x7FFFF000) + d1,
        "sox_streaming_stereo.wav": b"RIFF" + struct.pack("<I", 0x7FFFF000) + b"WAVE" + fmt2
                                    + b"data" + struct.pack("<I", 0x7FFFF000) + d2,
        "riff_size_wrong.wav": _riff(fmt1 + _chunk(b"data", d1), size=12345),
        "trailing_garbage.wav": _riff(fmt1 + _chunk(b"data", d1)) + b"\x00garbage-bytes",
        "big_endian.wav": _riff(_chunk(b"fmt ", _fmt_pcm(1, big=True), big=True)
                                + _chunk(b"data", (np.clip(y1, -1, 1 - 2**-15) * 32768)
                                         .astype(">i2").tobytes(), big=True), big=True),
        "no_data_chunk.wav": _riff(fmt1 + info),
        "zero_channels.wav": _riff(_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 0, SR, 0, 0, 16))
                                   + _chunk(b"data", d1)),
        # headers the fast paths used to judge otherwise than libsndfile
        "two_data_chunks.wav": _riff(fmt1 + _chunk(b"data", d1[:1000]) + _chunk(b"data", d1)),
        "two_data_chunks_apart.wav": _riff(fmt1 + _chunk(b"data", d1[:1000]) + info + _chunk(b"data", d1)),
        "two_wavs_joined.wav": _riff(fmt1 + _chunk(b"data", d1)) * 2,
        "rate_4294967295.wav": _riff(_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 0xFFFFFFFF, 0, 2, 16))
                                     + _chunk(b"data", d1)),
        "bits12_align1.wav": _riff(_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, SR, SR, 1, 12))
                                   + _chunk(b"data", d1)),  # libsndfile: 2 bytes a sample
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    # formats libsndfile writes itself: extensible, RF64, other sample widths, float
    sf.write(str(root / "wavex_pcm16.wav"), y2, SR, subtype="PCM_16", format="WAVEX")
    sf.write(str(root / "rf64_pcm16.wav"), y1, SR, subtype="PCM_16", format="RF64")
    sf.write(str(root / "pcm_u8.wav"), y1, SR, subtype="PCM_U8")
    sf.write(str(root / "pcm_24.wav"), y2, SR, subtype="PCM_24")
    sf.write(str(root / "pcm_32.wav"), y1, SR, subtype="PCM_32")
    sf.write(str(root / "double.wav"), y1, SR, subtype="DOUBLE")
    sf.write(str(root / "pcm16_8k.wav"), y1, 8000, subtype="PCM_16")  # resampled to 16 kHz
    for subtype in ("ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM", "GSM610"):  # GSM 6.10: not seekable
        sf.write(str(root / f"{subtype.lower()}.wav"), y1, 8000, subtype=subtype)
    return sorted(str(p) for p in root.iterdir())


def _featurelib_reads(path: str) -> bool:
    try:
        featurelib.load(path)
    except featurelib.AudioDecodeError:
        return False
    return True


# what featurelib (libsndfile plus its truncation and finiteness checks) decides, spelled out
EXPECTED_FAILURES = {"data_overruns_file.wav", "no_data_chunk.wav", "zero_channels.wav",
                     "two_data_chunks.wav", "two_data_chunks_apart.wav", "two_wavs_joined.wav",
                     "rate_4294967295.wav"}


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wav_variants")
    (root / "corpus").mkdir()
    paths = _variants(root / "corpus")
    out = root / "out"
    cfg = write_config(root / "job.yaml", input=str(root / "corpus"), out=out)
    result = run_cli("extract", cfg)
    return {"paths": paths, "out": out, "result": result}


def test_every_variant_lands_where_libsndfile_says(variant_run):
    files, failures = read_tables(variant_run["out"])
    ok = set(files.column("path").to_pylist())
    failed = dict(zip(failures.column("path").to_pylist(), failures.column("message").to_pylist()))
    assert ok | set(failed) == set(variant_run["paths"]), variant_run["result"].stderr
    assert not ok & set(failed)
    assert {p.rsplit("/", 1)[-1] for p in failed} == EXPECTED_FAILURES, failed
    for path in variant_run["paths"]:
        if _featurelib_reads(path):
            assert path in ok, (path, failed.get(path))
        else:
            assert path in failed, path
            assert failed[path], path  # a reason, not an empty message


def test_variant_samples_and_features_equal_featurelib(variant_run):
    files, _ = read_tables(variant_run["out"])
    group = zarr.open_group(str(variant_run["out"] / "features.zarr"), mode="r")
    fs = FeatureSet.from_config(dict(group.attrs)["feature_config"])
    assert files.num_rows >= 15
    for row in files.to_pylist():
        path = row["path"]
        y, _ = featurelib.load(path, sr=fs.sr, mono=True)
        np.testing.assert_array_equal(decode(path, sr=fs.sr), y, err_msg=path)
        info = sf.info(path)
        assert row["sample_rate"] == info.samplerate and row["channels"] == info.channels, path
        assert row["n_frames"] == 1 + y.shape[0] // fs.hop_length, path
        ref = file_features(y, fs)
        for name, expected in ref.items():
            got = group[name][row["frame_start"]:row["frame_stop"]]
            assert got.shape == expected.shape, (name, path)
            scale = max(float(np.abs(expected).max()), 1e-6)
            assert float(np.abs(got - expected).max()) / scale < 1e-4, (name, path)
