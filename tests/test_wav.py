"""WAV files over 4 GiB: featurelib.wav reads them to their real end.

A RIFF size field has 32 bits. Tools that write a longer WAV anyway (a night's sleep recording at
48 kHz stereo passes 4 GiB after 6 h 12 min) leave the data chunk's size wrapped around 2^32 or
a placeholder, and libsndfile (with it librosa) reads the first ``size mod 4 GiB`` bytes: a 6 h
recording read as 1 minute, without a word. The tests write such files sparse (a header, some
samples at the start and near the end, a hole of zeros between), so they cost no disk space and
no time; a file system without holes skips them.
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
import soundfile as sf

import featurelib
from featurelib.wav import (
    FOUR_GIB,
    PLACEHOLDER_SIZES,
    chunks,
    data_chunk,
    file_chunks,
    riff_order,
    true_data_size,
)

SR = 48000


def _header(channels: int, bits: int, data_size: int, *, tag: int = 1) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, SR, SR * align, align, bits)
    return (b"RIFF" + struct.pack("<I", (36 + data_size) % FOUR_GIB) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size % FOUR_GIB))


def _sparse(path, header: bytes, size: int, pieces: dict[int, bytes]):
    """``header``, then ``size`` bytes of samples, zeros but for ``pieces`` (offset -> bytes)."""
    with open(path, "wb") as handle:
        handle.write(header)
        for offset, data in pieces.items():
            handle.seek(len(header) + offset)
            handle.write(data)
        handle.truncate(len(header) + size)
    if os.stat(path).st_blocks * 512 > 64 << 20:
        os.remove(path)
        pytest.skip("this file system does not keep holes: a 4 GiB test file would be written whole")
    return path


def _tone(freq: float, amplitude: float, channels: int) -> np.ndarray:
    t = np.arange(SR) / SR
    return np.repeat((amplitude * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1)


def _pcm16(y: np.ndarray) -> bytes:
    return (np.clip(y, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()


def test_the_chunk_walk_of_a_wave_file():
    """One walk for every RIFF reader: chunks in file order with their body offsets and the sizes
    their headers give, an odd-sized chunk's pad byte skipped; a body that runs past the bytes
    read ends nothing but the walk's reach; RIFX sizes are big-endian."""
    head = (b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"LIST" + struct.pack("<I", 3) + b"abc\0"
            + b"fmt " + struct.pack("<I", 16) + bytes(16) + b"data" + struct.pack("<I", 1000) + bytes(8))
    expected = [(b"LIST", 20, 3), (b"fmt ", 32, 16), (b"data", 56, 1000)]
    assert riff_order(head) == "little"
    assert list(chunks(head)) == expected
    assert list(file_chunks(io.BytesIO(head))) == expected
    assert list(chunks(head[:40])) == expected[:2]  # the data chunk's header lies past the bytes
    big = b"RIFX" + head[4:12] + b"fmt " + struct.pack(">I", 16) + bytes(16)
    assert riff_order(big) == "big" and list(chunks(big, "big")) == [(b"fmt ", 20, 16)]
    assert riff_order(b"RIFF\0\0\0\0AVI ") is None and riff_order(b"RIFF") is None


def test_true_data_size():
    gib = 1 << 30
    assert true_data_size(3 * gib, 44, 3 * gib - 44) is None  # under 4 GiB: the header holds
    assert true_data_size(5 * gib, 44, 5 * gib - 44 - FOUR_GIB) == 5 * gib - 44  # wrapped once
    assert true_data_size(9 * gib, 44, 9 * gib - 44 - 2 * FOUR_GIB) == 9 * gib - 44  # twice
    # wrapped, then a LIST chunk after the samples: the chunk is not audio
    assert true_data_size(5 * gib + 300, 44, gib - 44) == 5 * gib - 44
    for placeholder in (0, *PLACEHOLDER_SIZES):  # a streaming writer's (sox, arecord, ...)
        assert true_data_size(5 * gib, 44, placeholder) == 5 * gib - 44
        # a placeholder that happens to sit whole 4 GiB and under 1 MiB from the file's end is
        # no wrapped size: the samples still run to the end
        assert true_data_size(placeholder + FOUR_GIB + 44 + 1000, 44, placeholder) == placeholder + FOUR_GIB + 1000
    # wrapped, then cut short: the samples run to the end of the file
    assert true_data_size(5 * gib - 7 * 2**20, 44, gib - 44) == 5 * gib - 7 * 2**20 - 44
    # a whole data chunk of 4 GiB - 1 KiB and a few chunks after it: the header holds
    assert true_data_size(FOUR_GIB + 2**20, 44, FOUR_GIB - 1024) is None


def test_a_wav_over_4gib_reads_to_its_end(tmp_path):
    """info, load (windows at both ends) and the job's probe get 6 h 13 min, not 1 minute."""
    from jobs.plan import probe

    channels, frames = 2, FOUR_GIB // 4 + 60 * SR  # 6 h 12 min + 1 min of 16-bit stereo
    start, end = _tone(440, 0.5, channels), _tone(1000, 0.25, channels)
    last = (frames - 2 * SR) * 4
    path = _sparse(tmp_path / "night.wav", _header(channels, 16, frames * 4), frames * 4,
                   {0: _pcm16(start), last: _pcm16(end)})
    assert sf.info(str(path)).frames == 60 * SR  # what libsndfile (and librosa) would read

    meta = featurelib.info(str(path))
    assert (meta.format, meta.subtype, meta.channels, meta.frames) == ("WAV", "PCM_16", 2, frames)
    head, _ = featurelib.load(str(path), sr=None, mono=False, duration=1.0)
    expected = np.frombuffer(_pcm16(start), "<i2").reshape(-1, 2).T / 32768
    assert np.array_equal(head, expected.astype(np.float32))
    tail, _ = featurelib.load(str(path), sr=None, mono=False, offset=(frames - 2 * SR) / SR, duration=1.0)
    expected = np.frombuffer(_pcm16(end), "<i2").reshape(-1, 2).T / 32768
    assert np.array_equal(tail, expected.astype(np.float32))
    silence, _ = featurelib.load(str(path), sr=None, offset=(frames - SR) / SR)  # to the very end
    assert silence.shape == (SR,) and not silence.any()
    planned = probe(str(path))
    assert (planned.format, planned.subtype, planned.frames) == ("WAV", "PCM_16", frames)


def test_a_wav_over_4gib_with_a_chunk_after_its_samples(tmp_path):
    """24-bit mono, wrapped, then a LIST chunk: the chunk's bytes are not read as samples."""
    frames = FOUR_GIB // 3 + SR
    size = frames * 3
    trailer = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"audiofeat test"
    header = _header(1, 24, size)
    path = _sparse(tmp_path / "field.wav", header, size + len(trailer), {size: trailer})
    assert featurelib.info(str(path)).frames == frames


def test_an_adpcm_wav_over_4gib_is_refused(tmp_path):
    """IMA ADPCM is stored in blocks, which featurelib cannot read past the header's size: the
    file is refused with the reason (libsndfile would read its first part)."""
    from jobs.plan import probe

    small = tmp_path / "small.wav"
    sf.write(str(small), np.zeros(SR, np.float32), SR, subtype="IMA_ADPCM")
    offset, declared = data_chunk(str(small))
    path = tmp_path / "memo.wav"
    with open(path, "wb") as handle:  # the same header and blocks, then 4 GiB more
        handle.write(small.read_bytes())
        handle.truncate(offset + declared + FOUR_GIB)
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("this file system does not keep holes")
    for read in (featurelib.load, probe):
        with pytest.raises(featurelib.AudioDecodeError, match="a WAV file over 4 GiB"):
            read(str(path))


@pytest.mark.parametrize("declared", [0xC0000000, 0x7FFF8000, 0x90000000])
def test_a_recording_of_2_to_4_gib_cut_short_is_refused_by_load_and_by_extract(tmp_path, declared):
    """A data size of 2-4 GiB is a promise, not a streaming writer's placeholder (only
    0xFFFFFFFF, 0x7FFFFFFF, sox's 0x7FFFF000 and arecord's 0x80000000 and 0x7FFFFF00 are): cut
    short, the file is refused, by
    featurelib.load and by the extract job's own header check alike."""
    from jobs.compute import wav_declared_frames

    path = _sparse(tmp_path / "night.wav", _header(2, 16, declared), 0x40010000, {0: bytes(4000)})
    assert wav_declared_frames(str(path)) == declared // 4
    with pytest.raises(featurelib.AudioDecodeError, match="truncated"):
        featurelib.load(path, duration=0.01)
    for placeholder in (0x7FFFF000, 0xFFFFFFFF, 0x80000000, 0x7FFFFF00):  # sox, pipes, arecord
        streamed = _sparse(tmp_path / f"streamed{placeholder:x}.wav", _header(2, 16, placeholder), 40000, {})
        assert wav_declared_frames(str(streamed)) is None
        assert featurelib.load(streamed)[0].shape == (10000,)
