"""Audio the product had not seen before: regressions from a black-box sweep over odd corpora.

Every test writes its own small input (truncated MP3s, denormal-quiet files, dangling links,
...) and checks one behaviour a user sees: a failure named with a reason, a finite level, every
input accounted for, progress that adds up.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audio_factory import mp3_writable, noise, tone, write_audio, write_tone

needs_mp3 = pytest.mark.skipif(not mp3_writable(), reason="this libsndfile cannot write MP3")


def _truncated_mp3(tmp_path):
    """A 1 s stereo MP3 cut in half: its Xing header still announces every frame."""
    whole = write_tone(tmp_path / "whole.mp3", 44100, 1.0, channels=2)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    return whole, cut


# ---------------------------------------------------------------- reading in blocks


@needs_mp3
def test_read_blocks_stops_where_a_truncated_mp3_stops(tmp_path):
    """SoundFile.blocks pads a short decode with its stale buffer; _read_blocks does not."""
    from featurelib.io import _read_blocks

    _, cut = _truncated_mp3(tmp_path)
    with sf.SoundFile(str(cut)) as handle:
        announced = handle.frames
        got = sum(b.shape[0] for b in _read_blocks(handle, -1, 4096))
    with sf.SoundFile(str(cut)) as handle:
        decoded = handle.read(dtype="float32").shape[0]
    assert got == decoded < announced - 2 * 1152


def test_read_blocks_counts_and_window(tmp_path):
    from featurelib.io import _read_blocks

    path = write_tone(tmp_path / "t.wav", 8000, 1.0, channels=2, subtype="FLOAT")
    whole, _ = sf.read(str(path), dtype="float32", always_2d=True)
    with sf.SoundFile(str(path)) as handle:
        blocks = list(_read_blocks(handle, -1, 3000))
    assert [b.shape[0] for b in blocks] == [3000, 3000, 2000]
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    with sf.SoundFile(str(path)) as handle:
        handle.seek(100)
        part = np.concatenate(list(_read_blocks(handle, 5000, 3000)))
    np.testing.assert_array_equal(part, whole[100:5100])


@needs_mp3
def test_inspect_reports_a_truncated_mp3(tmp_path, capsys):
    from jobs.cli import main as cli_main

    whole, cut = _truncated_mp3(tmp_path)
    status = cli_main(["inspect", str(whole), str(cut), "--json"])
    out, err = capsys.readouterr()
    assert status == 1
    assert f"{cut}: truncated" in err
    import json

    rows = {os.path.basename(r["path"]): r for r in json.loads(out)}
    assert "error" in rows["cut.mp3"] and "truncated" in rows["cut.mp3"]["error"]
    assert "error" not in rows["whole.mp3"]


# ---------------------------------------------------------------- levels of denormal audio


def test_inspect_rms_of_denormal_quiet_audio_is_finite(tmp_path):
    """A 1e-30 sine: peak -600 dBFS, RMS 3 dB under it, not -inf (float32 squares underflow)."""
    from jobs.inspection import inspect_file

    t = np.arange(8000) / 16000
    path = write_audio(tmp_path / "tiny.wav", (1e-30 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
                       16000, subtype="FLOAT")
    row = inspect_file(str(path))
    assert row["peak_dbfs"] == pytest.approx(-600.0, abs=0.01)
    assert math.isfinite(row["rms_dbfs"])
    assert row["rms_dbfs"] == pytest.approx(-603.01, abs=0.05)


# ---------------------------------------------------------------- dangling links


def _folder_with_dangling_link(tmp_path):
    root = tmp_path / "corpus"
    good = write_tone(root / "good.wav", 16000, 0.2)
    os.symlink(root / "gone.wav", root / "dangling.wav")
    os.symlink(tmp_path / "gone.txt", root / "dangling.txt")  # not an audio name: passed over
    return root, good


def test_discover_reports_a_dangling_link_with_an_audio_name(tmp_path):
    from jobs.discover import discover

    root, good = _folder_with_dangling_link(tmp_path)
    found = discover(str(root))
    assert found.paths == [str(good)]
    assert [(f["path"], f["stage"], f["error_type"]) for f in found.failures] == [
        (str(root / "dangling.wav"), "discover", "BrokenLink")]
    assert "broken symbolic link" in found.failures[0]["message"]


def test_inspect_folder_names_a_dangling_link(tmp_path, capsys):
    from jobs.cli import main as cli_main

    root, _ = _folder_with_dangling_link(tmp_path)
    status = cli_main(["inspect", str(root)])
    out, err = capsys.readouterr()
    assert status == 1
    assert "dangling.wav: broken symbolic link" in err
    assert "good.wav" in out and "dangling.txt" not in out + err


def test_inspect_of_a_folder_names_what_extract_accounts_for(tmp_path, capsys):
    """inspect of a folder shows every entry extract's discovery accounts for: the audio files,
    and each audio name it cannot read (a named pipe, a phone's M4A memo cut short)
    with its reason, exit 1; it passed those over without a word."""
    from jobs.cli import main as cli_main
    from jobs.discover import discover

    root = tmp_path / "corpus"
    good = write_tone(root / "good.wav", 16000, 0.2)
    os.mkfifo(root / "pipe.wav")
    (root / "memo.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom")
    found = discover(str(root))
    assert found.paths == [str(good), str(root / "memo.m4a")]  # M4A is audio FFmpeg reads
    assert [f["path"] for f in found.failures] == [str(root / "pipe.wav")]
    status = cli_main(["inspect", str(root)])
    out, err = capsys.readouterr()
    assert status == 1
    assert "good.wav" in out
    assert "pipe.wav: not a regular file" in err
    assert "memo.m4a: truncated: the MP4's 'ftyp' box announces 32 bytes" in err  # 28 written


# ---------------------------------------------------------------- files that are not what they say


def _odd_files(tmp_path):
    """Files whose header and contents disagree, each with the words its reason must hold."""
    root = tmp_path / "odd"
    root.mkdir()
    from test_extract_wav_variants import _chunk, _fmt_pcm, _pcm16, _riff  # 16 kHz, mono

    pcm = _pcm16(0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000))
    fmt = _chunk(b"fmt ", _fmt_pcm(1))
    (root / "cut_after_header.wav").write_bytes(_riff(fmt + _chunk(b"data", pcm))[:44])
    (root / "size_never_written.wav").write_bytes(_riff(fmt + _chunk(b"data", pcm, size=0)))
    os.symlink("loop_b.wav", root / "loop_a.wav")
    os.symlink("loop_a.wav", root / "loop_b.wav")
    os.mkfifo(root / "pipe.wav")
    return root, {
        "cut_after_header.wav": "truncated: the header announces 32000 bytes",
        "size_never_written.wav": "'data' chunk size is 0, yet the file is 32044 bytes",
        "loop_a.wav": "symbolic link loop",
        "loop_b.wav": "symbolic link loop",
        "pipe.wav": "not a regular file",
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_load_inspect_and_extract_name_what_is_wrong(tmp_path, capsys):
    """The same reason from featurelib.load, inspect, and the job's discovery or probe."""
    import featurelib
    from jobs.cli import main as cli_main
    from jobs.discover import discover
    from jobs.plan import probe_all

    root, reasons = _odd_files(tmp_path)
    for name, words in reasons.items():
        with pytest.raises(featurelib.AudioDecodeError, match=words.replace("(", r"\(")):
            featurelib.load(root / name)
    assert cli_main(["inspect", *(str(root / n) for n in reasons)]) == 1
    _, err = capsys.readouterr()
    lines = {os.path.basename(line.split(": ", 1)[0]): line for line in err.splitlines()}
    for name, words in reasons.items():
        assert words in lines[name], lines[name]
    found = discover(str(root))
    _, probe_failures = probe_all(found.paths)
    said = {os.path.basename(f["path"]): f["message"] for f in found.failures + probe_failures}
    assert sorted(said) == sorted(reasons)
    for name, words in reasons.items():
        assert words in said[name], (name, said[name])


@needs_mp3
def test_an_mp3_cut_by_a_few_bytes_is_truncated_for_load_inspect_and_extract(tmp_path, capsys):
    """Its tag gives the exact length, so a shortfall under two MPEG frames is a cut too."""
    import featurelib
    from jobs.cli import main as cli_main
    from jobs.compute import decode

    whole = write_tone(tmp_path / "whole.mp3", 24000, 1.0, subtype=None)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[:-100])
    frames = featurelib.info(cut).frames
    with pytest.raises(featurelib.AudioDecodeError, match="truncated"):
        featurelib.load(cut)
    assert cli_main(["inspect", str(cut)]) == 1
    assert "truncated" in capsys.readouterr().err
    with pytest.raises(Exception, match="truncated: the header announces .* cut short, or damaged"):
        decode(str(cut), sr=24000, expected_frames=frames)


def test_a_damaged_flac_fails_its_decode_with_a_reason(tmp_path):
    from jobs.compute import DecodeError, decode

    path = write_tone(tmp_path / "t.flac", 16000, 2.0)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    frames = sf.info(str(path)).frames
    with pytest.raises(DecodeError) as caught:
        decode(str(path), sr=16000, expected_frames=frames)
    assert caught.value.error_type == "DecodeFailed"
    assert str(caught.value).startswith("decoding failed part-way (libsndfile: ")


# ---------------------------------------------------------------- score progress


def test_score_progress_counts_each_file_once_and_its_audio_once():
    """A long file spread over several batches, segments overlapping by half: the progress
    shares add up to the files and audio seconds of the run, never past 100 %."""
    from jobs.score import _progress_shares, plan_batches
    from jobs.segments import SegmentGeometry, plan_segments

    n_frames = np.array([5000, 1, 37, 100, 250])
    files = pd.DataFrame({
        "file_id": [f"f{i}" for i in range(len(n_frames))],
        "frame_start": np.concatenate([[0], np.cumsum(n_frames)[:-1]]),
        "frame_stop": np.cumsum(n_frames),
    })
    segments = plan_segments(files, SegmentGeometry(100, 50, 100.0))
    batches = plan_batches(segments, 16, 2)
    assert len(batches) > 3
    per_batch_files, per_batch_seconds = _progress_shares(segments, batches, 100.0)
    assert sum(per_batch_files) == len(files)
    assert sum(per_batch_seconds) == pytest.approx(n_frames.sum() / 100.0)


# ---------------------------------------------------------------- quiet and band-limited audio


def test_store_equals_featurelib_on_denormal_quiet_and_band_limited_audio(tmp_path):
    """A -600 dBFS tone (its float32 power spectrum underflows) and a 2 kHz-rate recording
    resampled to 16 kHz (nothing above 1 kHz: the band energy ratio divides by rounding noise)
    give the same spectral features in the store as featurelib on the same file."""
    from test_extract_support import read_tables, run_cli, write_config

    import featurelib
    from jobs.compute import FeatureSet, file_features
    from jobs.config import feature_config, load_config

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    t = np.arange(8000) / 16000
    write_audio(corpus / "quiet.wav", (1e-30 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000,
                subtype="FLOAT")
    t2 = np.arange(2000) / 2000
    low = 0.3 * np.sin(2 * np.pi * 300 * t2) + 0.05 * np.random.default_rng(1).standard_normal(t2.size)
    write_audio(corpus / "low_rate.wav", low.astype(np.float32), 2000, subtype="FLOAT")
    features = {"spectral_centroid": {}, "spectral_rolloff": {}, "band_energy_ratio": {},
                "melspectrogram": {"n_mels": 40, "db": True}}
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=tmp_path / "out", features=features)
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    fs = FeatureSet.from_config(feature_config(load_config(cfg)))
    import zarr

    group = zarr.open_group(str(tmp_path / "out" / "features.zarr"), mode="r")
    files, _ = read_tables(tmp_path / "out")
    assert files.num_rows == 2
    for row in files.to_pylist():
        y, _ = featurelib.load(row["path"], sr=16000)
        with fs.precision():
            expected = file_features(y, fs)
        for name in ("spectral_centroid", "spectral_rolloff", "band_energy_ratio"):
            got = group[name][row["frame_start"]:row["frame_stop"]]
            ref = expected[name]
            assert np.all(np.isfinite(got)), (name, row["path"])
            err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-6)))
            assert err < 1e-3, (name, row["path"], err)
        if "quiet" in row["path"]:  # not the zeros an underflowed power spectrum gives
            centroid = group["spectral_centroid"][row["frame_start"]:row["frame_stop"]]
            assert float(np.median(centroid)) > 300


# ---------------------------------------------------------------- libmpg123's console notes


def test_decoder_notes_are_held_back_and_other_stderr_kept(capfd):
    from featurelib._decoder_notes import quiet_decoder_notes

    with quiet_decoder_notes():
        with quiet_decoder_notes():  # nested and overlapping uses share one redirection
            os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 1.\n")
        os.write(2, b"[src/libmpg123/parse.c:1042] warning: junk\nsomething else the user must see\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "something else the user must see\nafter\n"
    with quiet_decoder_notes():  # the capture file is reused: only this window's lines come back
        os.write(2, b"Note: Trying to resync...\nsecond\n")
    assert capfd.readouterr().err == "second\n"


@needs_mp3
def test_damaged_mp3s_give_reasons_and_no_decoder_notes(tmp_path):
    """A text file named .mp3 and an MP3 with zeros in its middle: libmpg123 writes "Note: ..."
    lines to descriptor 2 for both; inspect and extract show one reason per file and nothing else."""
    import subprocess
    import sys

    whole = write_tone(tmp_path / "in" / "whole.mp3", 44100, 1.0, channels=2)
    data = whole.read_bytes()
    (tmp_path / "in" / "text.mp3").write_text("hello, not audio\n")
    (tmp_path / "in" / "holed.mp3").write_bytes(data[:3000] + b"\0" * 3000 + data[6000:])
    proc = subprocess.run([sys.executable, "-m", "jobs", "inspect", str(tmp_path / "in")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Note:" not in proc.stderr and "mpg123" not in proc.stderr
    assert f"{tmp_path / 'in' / 'text.mp3'}: not a readable audio file (libsndfile: Format not recognised)" \
        in proc.stderr


@needs_mp3
def test_extract_decode_of_a_holed_mp3_fails_without_decoder_notes(tmp_path, capfd):
    from jobs.compute import DecodeError, decode

    whole = write_tone(tmp_path / "whole.mp3", 44100, 1.0, channels=2)
    data = whole.read_bytes()
    holed = tmp_path / "holed.mp3"
    holed.write_bytes(data[:3000] + b"\0" * 3000 + data[6000:])
    with pytest.raises(DecodeError):
        decode(str(holed), sr=16000)
    assert "Note:" not in capfd.readouterr().err


# ---------------------------------------------------------------- file names that are not UTF-8


def _odd_names(folder):
    """A clip under a Latin-1 name (not UTF-8), one with a newline in its name, and a plain one."""
    import shutil

    from test_extract_support import copy_samples

    (plain,) = copy_samples(folder, 1)
    latin1 = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.wav")
    try:
        shutil.copy(plain, latin1)
    except (OSError, UnicodeError):  # a file system that stores UTF-8 names only
        pytest.skip("this file system cannot hold a name that is not UTF-8")
    newline = str(folder / "two\nlines.wav")
    shutil.copy(plain, newline)
    return plain, latin1, newline


def test_extract_reports_a_name_that_is_not_utf8_and_goes_on(tmp_path):
    """Parquet strings are UTF-8: such a name once crashed the whole job in the plan table. It is
    now a discover failure with its bytes shown as \\xNN, and every other file is extracted."""
    from test_extract_support import read_tables, run_cli, write_config

    plain, latin1, newline = _odd_names(tmp_path / "corpus")
    cfg = write_config(tmp_path / "job.yaml", input=str(tmp_path / "corpus"), out=tmp_path / "out",
                       features={"rms": {}})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    files, failures = read_tables(tmp_path / "out")
    assert sorted(files.column("path").to_pylist()) == sorted([plain, newline])
    (row,) = failures.to_pylist()
    assert row["path"] == str(tmp_path / "corpus") + "/caf\\xe9.wav"
    assert row["stage"] == "discover" and row["error_type"] == "UndecodableFileName"
    assert "UTF-8" in row["message"]


def test_load_and_inspect_read_a_name_that_is_not_utf8(tmp_path, capsys):
    import json

    import featurelib as F
    from jobs.cli import main as cli_main

    plain, latin1, newline = _odd_names(tmp_path)
    y, sr = F.load(latin1)
    np.testing.assert_array_equal(y, F.load(plain)[0])
    assert cli_main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "caf\\xe9.wav" in out and "two\\nlines.wav" in out and len(out.splitlines()) == 4
    assert cli_main(["inspect", "--json", str(tmp_path)]) == 0
    paths = sorted(r["path"] for r in json.loads(capsys.readouterr().out))
    assert paths == sorted([plain, newline, str(tmp_path) + "/caf\\xe9.wav"])


def test_extract_of_a_folder_without_audio_says_so(tmp_path):
    from test_extract_support import read_tables, run_cli, write_config

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "notes.txt").write_text("no audio here\n")
    cfg = write_config(tmp_path / "job.yaml", input=str(tmp_path / "corpus"), out=tmp_path / "out",
                       features={"rms": {}})
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert f"no audio files found in {tmp_path / 'corpus'}" in result.stderr
    files, failures = read_tables(tmp_path / "out")
    assert files.num_rows == 0 and failures.num_rows == 0


def test_plot_titles_a_name_that_is_not_utf8(tmp_path):
    """matplotlib cannot draw the surrogates Python keeps for such bytes: the title shows \\xNN."""
    from jobs.cli import main as cli_main

    plain, latin1, newline = _odd_names(tmp_path)
    for path, png in ((latin1, tmp_path / "latin1.png"), (newline, tmp_path / "newline.png")):
        assert cli_main(["plot", path, "--kind", "waveform", "-o", str(png)]) == 0
        assert png.stat().st_size > 0


# ---------------------------------------------------------------- files under audio names that are not audio

_NOT_AUDIO = {  # name -> (first bytes, words of the reason)
    "pointer.wav": (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 91234\n",
                    "a Git LFS pointer"),
    "forbidden.mp3": (b"<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n", "HTML"),
    "voice-memo.wav": (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(64),
                       "an MP4/M4A container"),
    "never-written.flac": (bytes(4096), "only zero bytes"),
    "._take1.wav": (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64),
                    "AppleDouble"),
    "aac-as.mp3": (b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(range(200)), "a raw AAC stream"),
    "memo.wav": (b"#!AMR\n" + bytes(range(200)), "an AMR voice recording"),
    "tune.wav": (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0" + bytes(100), "a MIDI file"),
    "album.flac": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(200)), "an archive"),
    "take.wav": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes(range(200)), "a compressed file"),
}


def test_a_file_that_is_not_audio_is_named_for_what_it_is(tmp_path, capsys):
    """load, inspect and the job's probe say what the file is when its first bytes tell."""
    import featurelib
    from jobs.cli import main as cli_main
    from jobs.plan import probe_all

    paths = []
    for name, (head, _) in _NOT_AUDIO.items():
        (tmp_path / name).write_bytes(head)
        paths.append(str(tmp_path / name))
    for path, (_, words) in zip(paths, _NOT_AUDIO.values()):
        with pytest.raises(featurelib.AudioDecodeError, match=words):
            featurelib.load(path)
    assert cli_main(["inspect", *paths]) == 1  # named explicitly: each is an input
    err = capsys.readouterr().err
    for name, (_, words) in _NOT_AUDIO.items():
        assert any(line.startswith(str(tmp_path / name)) and words in line
                   for line in err.splitlines()), (name, err)
    _, failures = probe_all(paths)
    said = {os.path.basename(f["path"]): f["message"] for f in failures}
    for name, (_, words) in _NOT_AUDIO.items():
        assert words in said[name], (name, said[name])


def test_a_folder_search_passes_over_macos_appledouble_files(tmp_path, capsys):
    """A corpus copied from a Mac (or unzipped with its __MACOSX folder) holds a '._NAME'
    companion beside every file: passed over by extract and inspect, and said so."""
    import json

    from test_extract_support import read_tables, run_cli, write_config

    from jobs.cli import main as cli_main

    corpus = tmp_path / "corpus"
    (corpus / "__MACOSX").mkdir(parents=True)
    write_tone(corpus / "take1.wav", 16000, 0.5)
    apple_double = _NOT_AUDIO["._take1.wav"][0]
    (corpus / "._take1.wav").write_bytes(apple_double)
    (corpus / "__MACOSX" / "._take1.wav").write_bytes(apple_double)
    (corpus / "._notes.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")  # a '._' name, not AppleDouble
    assert cli_main(["inspect", "--json", str(corpus)]) == 1
    captured = capsys.readouterr()
    assert "passed over 2 macOS metadata files" in captured.err
    assert sorted(os.path.basename(r["path"]) for r in json.loads(captured.out)) == [
        "._notes.wav", "take1.wav"]
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus), out=tmp_path / "out",
                       features={"rms": {}})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    assert "passed over 2 macOS metadata files" in result.stderr
    files, failures = read_tables(tmp_path / "out")
    assert [os.path.basename(p) for p in files.column("path").to_pylist()] == ["take1.wav"]
    assert [os.path.basename(p) for p in failures.column("path").to_pylist()] == ["._notes.wav"]


# ---------------------------------------------------------------- a FLAC without its length


def _flac_without_length(path, y, sr):
    """``y`` as FLAC with STREAMINFO's total-samples field 0 ("unknown"), as an encoder writing
    to a pipe leaves it: libsndfile then reports 2**63 - 1 frames and cannot seek to the end."""
    sf.write(str(path), y, sr, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, at byte 8
    data[8 + 13] &= 0xF0  # the 36-bit count: the low 4 bits of byte 13, then bytes 14-17
    data[8 + 14:8 + 18] = bytes(4)
    path.write_bytes(bytes(data))
    return path


def _noise_tone(seconds, sr, seed=0):
    return (tone(sr, seconds, freq=330.0, amplitude=0.3)
            + noise(sr, seconds, amplitude=0.06, seed=seed)).astype(np.float32)


def test_a_flac_without_its_length_is_read_whole(tmp_path, capsys):
    """info counts the frames of a FLAC whose header does not give them (it read 2**63 - 1);
    load reads it (its first read failed: "Internal psf_fseek() failed"), with an offset and
    resampled too, and gives the samples of the same audio written whole; inspect reports it."""
    import featurelib
    from jobs.cli import main

    y = _noise_tone(2.5, 16000)
    whole = tmp_path / "whole.flac"
    sf.write(str(whole), y, 16000)
    piped = _flac_without_length(tmp_path / "piped.flac", y, 16000)
    assert sf.info(str(piped)).frames > 1 << 62
    meta = featurelib.info(str(piped))
    assert (meta.frames, meta.duration, meta.subtype) == (y.size, 2.5, "PCM_16")
    for kwargs in ({}, {"sr": 22050}, {"offset": 0.7, "duration": 1.1}):
        got, _ = featurelib.load(str(piped), **kwargs)
        ref, _ = featurelib.load(str(whole), **kwargs)
        assert got.shape == ref.shape and np.array_equal(got, ref), kwargs
    with open(piped, "rb") as handle:  # a file object: counted, then read from its start again
        got, _ = featurelib.load(handle)
    assert np.array_equal(got, featurelib.load(str(whole))[0])
    assert main(["inspect", str(piped)]) == 0
    assert "2.500 s" in capsys.readouterr().out
    # counted once per process (a plot opens the file for each of its sampled spectra), and
    # read from inside by seeking, which lands on the very samples
    from featurelib._decoder_notes import _COUNTED

    assert _COUNTED.get(_COUNTED.key(str(piped))) == y.size
    from featurelib._decoder_notes import open_quietly

    handle, _ = open_quietly(str(piped), str(piped))
    with handle:
        assert handle.exact_seek and not handle.seekable()
        handle.seek(30000)
        assert np.array_equal(handle.read(500, dtype="float32"), sf.read(str(whole), dtype="float32")[0][30000:30500])


def test_extract_of_flacs_without_their_length_equals_the_whole_files(tmp_path):
    """The job planned 2**63 - 1 frames for such a file (160 billion hours) and never ended.
    Now a short one, and long ones split into parts (at the store's rate; resampled from
    44.1 kHz), give the very features of the same audio written with its length."""
    import zarr
    from test_extract_support import read_tables, run_cli, write_config

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, seconds, sr in (("short", 3.0, 16000), ("long16k", 50.0, 16000), ("long44k", 50.0, 44100)):
        y = _noise_tone(seconds, sr, seed=len(name))
        sf.write(str(corpus / f"{name}_whole.flac"), y, sr)
        _flac_without_length(corpus / f"{name}_piped.flac", y, sr)
    features = {"mfcc": {"n_mfcc": 13, "n_mels": 40}, "zero_crossing_rate": {}}
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=tmp_path / "out", features=features,
                       compute={"batch_seconds": 20, "block_seconds": 10})
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    files, failures = read_tables(tmp_path / "out")
    assert failures.num_rows == 0 and files.num_rows == 6
    group = zarr.open_group(str(tmp_path / "out" / "features.zarr"), mode="r")
    rows = {os.path.basename(r["path"]): r for r in files.to_pylist()}
    for name in ("short", "long16k", "long44k"):
        whole, piped = rows[f"{name}_whole.flac"], rows[f"{name}_piped.flac"]
        assert piped["duration_s"] == whole["duration_s"] and piped["n_frames"] == whole["n_frames"]
        for feature in features:
            a = group[feature][whole["frame_start"]:whole["frame_stop"]]
            b = group[feature][piped["frame_start"]:piped["frame_stop"]]
            assert np.array_equal(a, b), (name, feature)


def test_an_ogg_vorbis_cut_short_is_called_truncated(tmp_path):
    """libsndfile takes an Ogg Vorbis file's length from its last page: one cut before any page
    with a sample position reads as 0 frames, which was reported as "the file holds a header
    but no samples". (Cut later, it reads up to its last whole page, as libsndfile does.)"""
    import featurelib
    from jobs.plan import probe

    whole = tmp_path / "whole.ogg"
    sf.write(str(whole), _noise_tone(3.0, 16000), 16000, format="OGG", subtype="VORBIS")
    cut = tmp_path / "cut.ogg"
    for fraction in (0.5, 0.4, 0.3, 0.2):  # a cut before the first page with a sample position
        cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * fraction)])
        if sf.info(str(cut)).frames == 0:
            break
    else:
        pytest.skip("libvorbis paged this file so that every cut keeps a sample position")
    for read in (featurelib.load, probe):
        with pytest.raises(featurelib.AudioDecodeError, match="truncated: the Ogg stream"):
            read(str(cut))


@pytest.mark.parametrize(("subtype", "sr", "channels"), [
    ("OPUS", 48000, 1), ("OPUS", 48000, 2), ("VORBIS", 44100, 2)])
def test_an_ogg_stream_cut_after_some_pages_is_refused(tmp_path, subtype, sr, channels):
    """Cut after some of its pages, an Opus file opened with the length of its last whole page
    and decoded that part without a word (a 5 s clip cut to 60 % stored as 2 s); a Vorbis one
    read no samples. Its last whole page lacks the end-of-stream flag: every reader now refuses
    it, and bytes after a finished stream (a tag) still leave it readable."""
    import featurelib
    from jobs.plan import probe

    y = np.stack([_noise_tone(3.0, sr)] * channels, axis=-1)
    whole = tmp_path / "whole.ogg"
    sf.write(str(whole), y, sr, format="OGG", subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / "cut.ogg"
    for fraction in (0.5, 0.75, 0.99):
        cut.write_bytes(data[: int(len(data) * fraction)])
        for read in (featurelib.load, probe):
            with pytest.raises(featurelib.AudioDecodeError, match="truncated: the Ogg stream's last page"):
                read(str(cut))
        with open(cut, "rb") as handle:  # a file object: read from it, and left where it was
            with pytest.raises(featurelib.AudioDecodeError, match="truncated: the Ogg stream's last page"):
                featurelib.load(handle)
    tagged = tmp_path / "tagged.ogg"
    tagged.write_bytes(data + b"TAG" + bytes(125))
    assert featurelib.load(str(tagged), sr=None, mono=False)[0].shape[-1] == y.shape[0]
    assert probe(str(tagged)).frames == y.shape[0]


def _ogg_pages(data: bytes) -> list[int]:
    """Byte offsets of an Ogg file's pages."""
    at, pages = 0, []
    while at < len(data):
        assert data[at:at + 4] == b"OggS"
        pages.append(at)
        segments = data[at + 26]
        at += 27 + segments + sum(data[at + 27:at + 27 + segments])
    return pages


def _write_ogg_in_blocks(path, y, sr, subtype):
    with sf.SoundFile(str(path), "w", sr, 1, format="OGG", subtype=subtype) as handle:
        for i in range(0, y.shape[0], 8192):  # (libsndfile's Vorbis encoder, fed all at once, may crash)
            handle.write(y[i:i + 8192])


@pytest.mark.parametrize(("subtype", "sr"), [("VORBIS", 44100), ("OPUS", 48000)])
def test_an_ogg_file_damaged_part_way_is_refused_by_every_reader(tmp_path, subtype, sr):
    """libogg drops a page that fails its checksum and libsndfile decodes around it without a
    word: a 3 s clip damaged near its start was stored as 1.8 s (the length libsndfile then
    reports), and one damaged mid-way was refused or stored at full length depending on whether
    it was read whole or in blocks (inspect and extract disagreed; a long file, streamed in
    blocks, was stored). Every reader now checks the pages' checksums."""
    import featurelib
    from jobs.cli import main as cli_main
    from jobs.compute import DecodeError, decode

    whole = tmp_path / "whole.ogg"
    _write_ogg_in_blocks(whole, _noise_tone(3.0, sr), sr, subtype)
    data = whole.read_bytes()
    pages = _ogg_pages(data)
    for n, page in enumerate(pages[2:-1]):  # past the headers, before the last page
        damaged = bytearray(data)
        at = page + 40 + n  # inside the page's body
        damaged[at:at + 4] = bytes(b ^ 0x5A for b in damaged[at:at + 4])
        path = tmp_path / f"damaged{n}.ogg"
        path.write_bytes(bytes(damaged))
        with pytest.raises(featurelib.AudioDecodeError, match=f"damaged: the Ogg page at byte {page:,} "):
            featurelib.load(str(path))
        with pytest.raises(DecodeError, match="fails its checksum") as caught:
            decode(str(path), sr=16000, expected_frames=sf.info(str(path)).frames)
        assert caught.value.error_type == "DamagedFile"
        assert cli_main(["inspect", str(path)]) == 1
        if n == 3:
            break
    # whole streams are not: two chained, and one with a tag after its last page
    chained = tmp_path / "chained.ogg"
    chained.write_bytes(data + data)
    tagged = tmp_path / "tagged.ogg"
    tagged.write_bytes(data + b"TAG" + bytes(125))
    for path in (whole, chained, tagged):
        assert featurelib.load(str(path), sr=None)[0].shape[0] == sf.info(str(whole)).frames


def test_extract_refuses_damaged_ogg_files_short_and_streamed_in_parts(tmp_path):
    """A 150 s file is streamed in blocks and split across tasks: it was stored at full length
    with the damaged page's audio lost; the same damage in a short clip failed."""
    import pyarrow.parquet as pq

    from jobs.cli import main as cli_main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, seconds, subtype, sr in (("short.ogg", 3.0, "VORBIS", 44100), ("long.opus", 150.0, "OPUS", 48000),
                                       ("long.ogg", 150.0, "VORBIS", 44100)):
        whole = corpus / f"whole_{name}"
        _write_ogg_in_blocks(whole, _noise_tone(seconds, sr, seed=len(name)), sr, subtype)
        data = bytearray(whole.read_bytes())
        at = len(data) // 2
        data[at:at + 8] = bytes(b ^ 0x5A for b in data[at:at + 8])
        (corpus / f"damaged_{name}").write_bytes(bytes(data))
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {corpus}\nout: {tmp_path / 'out'}\naudio: {{sr: 16000}}\n"
                      "frames: {n_fft: 512, hop_length: 160}\nfeatures: {rms: {}}\n"
                      "compute: {workers: 2, batch_seconds: 60, block_seconds: 30}\n")
    assert cli_main(["extract", str(config)]) == 1
    files = pq.read_table(tmp_path / "out" / "files.parquet").to_pandas()
    failures = pq.read_table(tmp_path / "out" / "failures.parquet").to_pandas()
    assert sorted(os.path.basename(p) for p in files["path"]) == ["whole_long.ogg", "whole_long.opus",
                                                                  "whole_short.ogg"]
    assert sorted(os.path.basename(p) for p in failures["path"]) == ["damaged_long.ogg", "damaged_long.opus",
                                                                     "damaged_short.ogg"]
    assert set(failures["error_type"]) == {"DamagedFile"}
    assert failures["message"].str.contains("fails its checksum").all()


@pytest.mark.parametrize(("offset", "field", "said"), [
    (24, "<I", "a sample rate of 0 Hz"), (22, "<H", "0 channels")])
def test_a_wav_header_with_a_zero_rate_or_no_channels_says_so(tmp_path, offset, field, said):
    """libsndfile refuses such a header with "Internal error : SF_INFO struct incomplete"."""
    import struct

    import featurelib
    from jobs.plan import probe

    path = tmp_path / "damaged.wav"
    sf.write(str(path), _noise_tone(0.5, 16000), 16000)
    data = bytearray(path.read_bytes())
    struct.pack_into(field, data, offset, 0)
    path.write_bytes(bytes(data))
    for read in (featurelib.load, featurelib.info, probe):
        with pytest.raises(featurelib.AudioDecodeError, match=f"a WAV header that gives {said}"):
            read(str(path))


def test_an_mp3_that_is_only_an_id3_tag_says_so(tmp_path):
    """An ID3 tag and nothing after it (a tagger's placeholder, a download cut after the tag):
    libsndfile says "Format not recognised"."""
    import featurelib
    from jobs.plan import probe

    path = tmp_path / "tag_only.mp3"
    frame = b"TIT2" + (5).to_bytes(4, "big") + b"\x00\x00" + b"\x03abcd"
    path.write_bytes(b"ID3\x04\x00\x00" + len(frame).to_bytes(4, "big") + frame)
    for read in (featurelib.load, probe):
        with pytest.raises(featurelib.AudioDecodeError, match="an ID3 tag with no MPEG audio frames"):
            read(str(path))


def test_load_and_extract_agree_on_files_cut_short_and_damaged_float_samples(tmp_path):
    """A file cut short in its sample data (AIFF, AU, W64, ADPCM and GSM WAV) was refused by
    featurelib.load ("the header announces N bytes ... the file holds M") yet stored by the job
    as the part libsndfile read; a float WAV with a few damaged bytes (a sample of 8.5e37) was
    stored with inf and NaN features (and a RuntimeWarning in the job's output). Now the job
    refuses both, the first in its probe like load, and keeps float audio at +-32768 scale."""
    from test_extract_support import read_tables, run_cli, write_config

    import featurelib

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    y = _noise_tone(1.5, 16000)
    refused = {}
    for name, fmt, subtype in (("cut.aiff", "AIFF", "PCM_16"), ("cut.au", "AU", "PCM_16"),
                               ("cut.w64", "W64", "PCM_24"), ("cut_ima.wav", "WAV", "IMA_ADPCM"),
                               ("cut_ms.wav", "WAV", "MS_ADPCM")):
        path = corpus / name
        sf.write(str(path), y, 16000, format=fmt, subtype=subtype)
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.7)])
        refused[name] = "probe"
    path = corpus / "cut_gsm.wav"
    sf.write(str(path), _noise_tone(1.5, 8000), 8000, subtype="GSM610")
    path.write_bytes(path.read_bytes()[:-500])
    refused[path.name] = "probe"
    damaged = y.copy()
    damaged[1000] = 8.5e37
    sf.write(str(corpus / "damaged_float.wav"), damaged, 16000, subtype="FLOAT")
    refused["damaged_float.wav"] = "decode"
    sf.write(str(corpus / "loud_float.wav"), 32768 * y, 16000, subtype="FLOAT")  # a tool's scale
    sf.write(str(corpus / "whole.aiff"), y, 16000, format="AIFF")

    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=tmp_path / "out",
                       features={"melspectrogram": {"n_mels": 40}, "rms": {}})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    files, failures = read_tables(tmp_path / "out")
    stages = {os.path.basename(p): s for p, s in zip(failures.column("path").to_pylist(),
                                                      failures.column("stage").to_pylist())}
    assert stages == refused, failures.to_pandas()
    messages = dict(zip(map(os.path.basename, failures.column("path").to_pylist()),
                        failures.column("message").to_pylist()))
    assert messages["damaged_float.wav"].startswith("samples reach 8.5e+37")
    assert sorted(map(os.path.basename, files.column("path").to_pylist())) == ["loud_float.wav", "whole.aiff"]
    for name, stage in refused.items():
        if stage == "probe":  # the reason load gives, word for word
            with pytest.raises(featurelib.AudioDecodeError) as caught:
                featurelib.load(str(corpus / name))
            assert messages[name] == caught.value.reason


def _pages_after_the_end(data: bytes, extra: int = 6, step: int = 1024) -> bytes:
    """``data`` (one Ogg stream) with ``extra`` pages of its stream appended after its
    end-of-stream page, each flagged end-of-stream and ``step`` granules further on: what a
    game's music files hold (Wesnoth's northerners.ogg: 8 such pages, 5,806 frames past the
    end libvorbis decodes to)."""
    import struct

    from featurelib.io import _ogg_page_crc

    last = _ogg_pages(data)[-1]
    page = bytearray(data[last:])
    granule, seq = struct.unpack_from("<q", page, 6)[0], struct.unpack_from("<I", page, 18)[0]
    out = bytearray(data)
    for n in range(1, extra + 1):
        page[5] = 0x04
        struct.pack_into("<q", page, 6, granule + n * step)
        struct.pack_into("<I", page, 18, seq + n)
        struct.pack_into("<I", page, 22, 0)
        struct.pack_into("<I", page, 22, _ogg_page_crc(bytes(page)))
        out += page
    return bytes(out)


@pytest.mark.parametrize(("subtype", "sr"), [("VORBIS", 44100), ("OPUS", 48000)])
def test_an_ogg_stream_with_pages_after_its_end_decodes_to_its_end(tmp_path, subtype, sr):
    """libsndfile took the length from the last page, past the end-of-stream page where the
    decoders stop: every reader refused such a file as truncated, which librosa.load reads (to
    that end, as players do). Its length is now what decodes, as librosa's."""
    import librosa

    import featurelib
    from jobs.cli import main as cli_main

    whole = tmp_path / "whole.ogg"
    _write_ogg_in_blocks(whole, _noise_tone(2.0, sr), sr, subtype)
    longer = tmp_path / "longer.ogg"
    longer.write_bytes(_pages_after_the_end(whole.read_bytes()))
    assert sf.info(str(longer)).frames == sf.info(str(whole)).frames + 6 * 1024  # (libsndfile's)
    y, _ = featurelib.load(str(longer), sr=None)
    reference, _ = librosa.load(str(longer), sr=None)
    np.testing.assert_array_equal(y, reference)
    assert featurelib.info(str(longer)).frames == y.shape[0] == sf.info(str(whole)).frames
    tail, _ = featurelib.load(str(longer), sr=None, offset=1.5)
    np.testing.assert_array_equal(tail, librosa.load(str(longer), sr=None, offset=1.5)[0])
    assert cli_main(["inspect", str(longer)]) == 0
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {longer}\nout: {tmp_path / 'out'}\naudio: {{sr: 16000}}\n"
                      "features: {rms: {}}\ncompute: {workers: 1}\n")
    assert cli_main(["extract", str(config)]) == 0
