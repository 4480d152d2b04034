"""A file cut short is refused in every container whose header gives its length (W64, RF64, CAF
PCM and ALAC, NIST, VOC, MAT4/MAT5, AVR, MPC2K, WVE, SDS), which libsndfile reads as the part
that is there; in IRCAM, PAF and PVF (no length in the header) a partial last frame is. And no
whole file of any format and subtype this libsndfile writes is refused."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
import soundfile as sf

import featurelib
from featurelib import AudioDecodeError
from featurelib.io import _caf_cut, _caf_packet_bytes, _FileBytes, header_and_cut

_W64_DATA = b"data\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_EXT = {"W64": "w64", "RF64": "rf64", "CAF": "caf", "NIST": "nist", "VOC": "voc", "MAT5": "mat",
        "MAT4": "mat", "AVR": "avr", "MPC2K": "mpc", "SDS": "sds", "WVE": "wve", "IRCAM": "sf",
        "PAF": "paf", "PVF": "pvf"}
_WIDTH = {"PCM_S8": 1, "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
          "FLOAT": 4, "DOUBLE": 8}


def _encoded(fmt, subtype, channels, frames=16000, sr=16000):
    rng = np.random.default_rng(len(fmt) * 7 + channels)
    y = (0.3 * rng.standard_normal((frames, channels))).clip(-1, 1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _audio_span(data: bytes, fmt: str, subtype: str, frames: int, channels: int):
    """(first byte, end) of the encoded samples in a file libsndfile wrote."""
    if fmt == "CAF":
        at = data.index(b"data")
        return at + 16, at + 12 + int.from_bytes(data[at + 4:at + 12], "big")
    if fmt == "W64":
        at = data.index(_W64_DATA)
        return at + 24, at + int.from_bytes(data[at + 16:at + 24], "little")
    if fmt == "RF64":
        at = data.index(b"data", 12)
        return at + 8, at + 8 + int.from_bytes(data[28:36], "little")  # ds64's data size
    if fmt == "VOC":  # a type-9 (12 bytes of format) or type-1 (2) block; the terminator byte
        return 26 + 4 + (12 if data[26] == 9 else 2), len(data) - 1
    if fmt == "SDS":
        return 21, len(data)
    return len(data) - frames * channels * _WIDTH[subtype], len(data)


CUT_CASES = [
    ("W64", "PCM_16", 1), ("W64", "PCM_16", 2), ("W64", "FLOAT", 2), ("W64", "IMA_ADPCM", 2),
    ("RF64", "PCM_24", 1), ("RF64", "PCM_24", 2), ("RF64", "FLOAT", 2),
    ("CAF", "PCM_16", 1), ("CAF", "PCM_16", 2), ("CAF", "DOUBLE", 1),
    ("CAF", "ALAC_16", 1), ("CAF", "ALAC_16", 2), ("CAF", "ALAC_24", 2),
    ("NIST", "PCM_16", 1), ("NIST", "PCM_24", 2), ("NIST", "ULAW", 2),
    ("VOC", "PCM_16", 2), ("VOC", "PCM_U8", 1), ("MAT5", "PCM_16", 2), ("MAT5", "DOUBLE", 1), ("MAT4", "FLOAT", 2),
    ("AVR", "PCM_16", 2), ("MPC2K", "PCM_16", 2), ("SDS", "PCM_16", 1), ("WVE", "ALAW", 1),
]


@pytest.mark.parametrize("fmt, subtype, channels", CUT_CASES)
def test_a_cut_in_a_container_with_a_length_is_refused(tmp_path, fmt, subtype, channels):
    sr = 8000 if fmt == "WVE" else 16000
    data = _encoded(fmt, subtype, channels, sr=sr)
    path = tmp_path / f"whole.{_EXT[fmt]}"
    path.write_bytes(data)
    y, got_sr = featurelib.load(path, mono=False)  # the whole file: read, and as soundfile reads it
    ref, _ = sf.read(str(path), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(y.T if y.ndim == 2 else y[:, None], ref)
    assert got_sr == sf.info(str(path)).samplerate and header_and_cut(str(path))[1] is None

    start, end = _audio_span(data, fmt, subtype, 16000, channels)
    keeps = {"one byte": end - 1, "part of a frame": end - 3, "half": start + (end - start) // 2,
             "just after the header": start}
    for what, keep in keeps.items():
        cut = tmp_path / f"cut.{_EXT[fmt]}"
        cut.write_bytes(data[:keep])
        with pytest.raises(AudioDecodeError) as caught:
            featurelib.load(cut)
        assert caught.value.reason.startswith("truncated: "), (what, caught.value.reason)
        # header_and_cut, which the extract job's planner reads, gives load's reason; info
        # reports the frames the file holds (it reads no samples)
        try:
            meta, reason = header_and_cut(str(cut))
        except AudioDecodeError as exc:  # libsndfile opens no such file (a CAF cut by 10 bytes or more)
            meta, reason = None, exc.reason
        assert reason == caught.value.reason, what
        if meta is not None:
            assert featurelib.info(cut).frames == meta.frames <= featurelib.info(path).frames


@pytest.mark.parametrize("fmt, subtype, frame_bytes, header", [
    ("IRCAM", "PCM_16", 4, 1024), ("IRCAM", "FLOAT", 8, 1024), ("PAF", "PCM_16", 4, 2048),
    ("PAF", "PCM_24", 64, 2048), ("PVF", "PCM_32", 8, 16),
])
def test_a_header_without_a_length_shows_only_a_partial_last_frame(tmp_path, fmt, subtype,
                                                                   frame_bytes, header):
    data = _encoded(fmt, subtype, 2, frames=16000)
    path = tmp_path / f"x.{_EXT[fmt]}"
    for keep in (len(data) - 1, len(data) - frame_bytes + 1, header + frame_bytes // 2):
        path.write_bytes(data[:keep])
        with pytest.raises(AudioDecodeError, match="truncated: the file ends part-way through"):
            featurelib.load(path)
    # a cut on a frame boundary leaves a shorter whole file: nothing can tell
    path.write_bytes(data[:len(data) - 10 * frame_bytes])
    assert featurelib.load(path)[0].shape == (16000 - 10 * (10 if subtype == "PCM_24" else 1),)
    path.write_bytes(data[:header - 10])  # inside the header
    with pytest.raises(AudioDecodeError):
        featurelib.load(path)


def test_a_cut_file_object_is_refused_and_left_where_it_was():
    data = _encoded("RF64", "PCM_24", 2, frames=1000)
    with pytest.raises(AudioDecodeError, match="truncated: the header announces 6000 bytes"):
        featurelib.load(io.BytesIO(data[:-5]))
    assert featurelib.load(io.BytesIO(data), mono=False)[0].shape == (2, 1000)
    buffer = io.BytesIO(data[:-5])
    with sf.SoundFile(buffer) as handle:
        position = buffer.tell()
        assert featurelib.io._truncation_reason(handle).startswith("truncated")
        assert buffer.tell() == position
        assert handle.read(10).shape == (10, 2)


def test_w64_with_an_oversized_riff_size_and_whole_data_is_not_cut(tmp_path):
    data = bytearray(_encoded("W64", "FLOAT", 2, frames=1000))
    data[16:24] = (len(data) + 5000).to_bytes(8, "little")
    path = tmp_path / "x.w64"
    path.write_bytes(bytes(data))
    assert featurelib.load(path, mono=False)[0].shape == (2, 1000)


def test_the_repro_alac_cut_that_lost_a_quarter_of_the_audio(tmp_path):
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, y, 16000, format="CAF", subtype="ALAC_16")
    for cut in range(2, 8):
        path = tmp_path / f"cut{cut}.caf"
        path.write_bytes(buffer.getvalue()[:-cut])
        with pytest.raises(AudioDecodeError, match="truncated"):
            featurelib.load(path)


def _caf_to_end_of_file(subtype, frames):
    """A CAF whose 'data' chunk size is -1 ("to the end of the file"), as a recorder writes it
    (libsndfile 1.2 opens no such file; featurelib judges it from its header all the same)."""
    data = bytearray(_encoded("CAF", subtype, 2, frames=frames))
    at = data.index(b"data")
    size = int.from_bytes(data[at + 4:at + 12], "big")
    data[at + 4:at + 12] = (-1).to_bytes(8, "big", signed=True)
    return bytes(data[:at + 12 + size])


@pytest.mark.parametrize("subtype, frames", [("PCM_16", 1000), ("ALAC_16", 16000), ("ALAC_24", 441)])
def test_a_caf_running_to_the_end_of_the_file(subtype, frames):
    data = _caf_to_end_of_file(subtype, frames)

    def verdict(keep):
        handle = types.SimpleNamespace(name=io.BytesIO(data[:keep]), frames=frames, format="CAF",
                                       subtype=subtype, channels=2)
        source = _FileBytes(handle.name)
        try:
            return _caf_cut(source, handle)
        finally:
            source.close()

    assert verdict(len(data)) is None
    for cut in (1, 2, 3, 5):
        assert verdict(len(data) - cut).startswith("truncated: "), cut
    if subtype == "PCM_16":
        assert verdict(len(data) - 4) is None  # a whole frame less: a shorter whole file


def test_caf_packet_table_sizes():
    # 5, 300 (0x82 0x2C) and 16384 (0x81 0x80 0x00): variable-length integers
    table = bytes([5, 0x82, 0x2C, 0x81, 0x80, 0x00])
    assert _caf_packet_bytes(table, 3, 1) == 5 + 300 + 16384
    assert _caf_packet_bytes(table, 2, 1) == 305
    assert _caf_packet_bytes(table, 4, 1) is None  # fewer entries than packets: damaged
    assert _caf_packet_bytes(bytes([7, 1, 9, 1]), 2, 2) == 16  # (bytes, frames) pairs


# ---------------------------------------------------------------- no false alarm


def _writable():
    for fmt in sorted(sf.available_formats()):
        if fmt == "RAW":
            continue
        subtypes = [s for s in sf.available_subtypes(fmt) if sf.check_format(fmt, s)]
        if subtypes:
            yield fmt, subtypes


@pytest.mark.parametrize("fmt, subtypes", list(_writable()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_whole_file_of_any_format_is_refused(tmp_path, fmt, subtypes):
    ext = (featurelib.io._EXTENSIONS_OF_FORMAT.get(fmt) or (fmt.lower(),))[0]
    checked = 0
    for subtype in subtypes:
        for channels in (1, 2):
            for frames, sr in ((16000, 16000), (160, 16000), (441, 44100)):
                path = tmp_path / f"{subtype}-{channels}-{frames}.{ext}"
                rng = np.random.default_rng(frames + channels)
                y = (0.3 * rng.standard_normal((frames, channels))).astype(np.float32)
                try:
                    sf.write(str(path), y, sr, format=fmt, subtype=subtype)
                    ref, _ = sf.read(str(path), dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError):
                    continue  # this libsndfile writes or reads no such file (mono-only formats)
                meta, reason = header_and_cut(str(path))
                assert reason is None, (subtype, channels, frames, reason)
                got, _ = featurelib.load(path, mono=False)
                got = got.T if got.ndim == 2 else got[:, None]
                assert got.shape == ref.shape, (subtype, channels, frames)
                if fmt == "MP3":  # featurelib reads MP3 as librosa does: within a float32 step
                    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
                else:
                    np.testing.assert_array_equal(got, ref, err_msg=f"{subtype} {channels} {frames}")
                checked += 1
    assert checked  # (MP3 layers I and II, listed, are not written by libsndfile 1.2)
