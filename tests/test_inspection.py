"""``audiofeat inspect`` run for real: the CLI in a subprocess and in process, on written files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jobs.cli import main as cli_main

from audio_factory import (
    make_mixed_corpus,
    write_audio,
    write_clipping,
    write_empty,
    write_nan_wav,
    write_noise,
    write_not_audio,
    write_silence,
    write_tone,
    write_truncated,
)

REPO = Path(__file__).resolve().parents[1]


def run_inspect(*argv, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "jobs", "inspect", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def inspect_json(capsys, *argv):
    status = cli_main(["inspect", "--json", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


def test_bundled_samples_as_a_table_in_a_subprocess(samples_dir):
    proc = run_inspect(samples_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["path", "format", "subtype", "rate"]
    assert len(lines) == 1 + len(list(samples_dir.glob("*.wav")))
    # aligned: every column header starts where its cells start
    start = lines[0].index("format")
    assert all(line[start:start + 4] == "WAV " for line in lines[1:])
    assert "Traceback" not in proc.stdout + proc.stderr


def test_json_values_are_the_files_facts(tmp_path, capsys):
    tone = write_tone(tmp_path / "tone.wav", 16000, 1.5, channels=2, subtype="PCM_24", amplitude=0.5)
    status, rows, err = inspect_json(capsys, tone)
    assert status == 0 and err == ""
    (row,) = rows
    assert list(row) == ["path", "format", "subtype", "sample_rate", "channels", "frames",
                         "duration_s", "bit_depth", "min", "max", "peak_dbfs", "rms_dbfs"]
    data, _ = sf.read(str(tone), dtype="float32")
    assert row["path"] == str(tone)
    assert (row["format"], row["subtype"], row["sample_rate"], row["channels"]) == ("WAV", "PCM_24", 16000, 2)
    assert (row["frames"], row["duration_s"], row["bit_depth"]) == (24000, 1.5, 24)
    assert row["min"] == pytest.approx(float(data.min())) and row["max"] == pytest.approx(float(data.max()))
    peak = float(np.abs(data).max())
    rms = float(np.sqrt(np.mean(data.astype(np.float64) ** 2)))
    assert row["peak_dbfs"] == pytest.approx(20 * math.log10(peak), abs=1e-6)
    assert row["rms_dbfs"] == pytest.approx(20 * math.log10(rms), abs=1e-6)
    # channel 0 is a 0.5 sine, channel 1 a 0.375 sine: peak -6.02 dB, RMS of both -10.10 dB
    assert row["peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
    assert row["rms_dbfs"] == pytest.approx(10 * math.log10((0.5 ** 2 / 2 + 0.375 ** 2 / 2) / 2), abs=0.01)


def test_levels_of_silence_clipping_and_float(tmp_path, capsys):
    silent = write_silence(tmp_path / "silent.flac", 22050, 1.0)
    clipped = write_clipping(tmp_path / "clipped.wav", 44100, 0.5)
    hot = write_audio(tmp_path / "hot.wav", np.array([0.0, 2.0, -0.5], np.float32), 8000, subtype="FLOAT")
    status, rows, _ = inspect_json(capsys, silent, clipped, hot)
    assert status == 0
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["silent.flac"]["peak_dbfs"] is None and by_name["silent.flac"]["rms_dbfs"] is None
    assert by_name["silent.flac"]["min"] == 0.0 == by_name["silent.flac"]["max"]
    assert by_name["clipped.wav"]["peak_dbfs"] == pytest.approx(0.0, abs=1e-3)
    assert by_name["clipped.wav"]["min"] == -1.0
    assert by_name["hot.wav"]["peak_dbfs"] == pytest.approx(20 * math.log10(2.0))  # above full scale
    assert by_name["hot.wav"]["bit_depth"] == 32
    cli_main(["inspect", str(silent)])
    table = capsys.readouterr().out
    assert table.splitlines()[1].split()[-2:] == ["-inf", "-inf"]


def test_long_file_is_streamed_in_blocks(tmp_path, capsys):
    """A file many blocks long gives the same levels as reading it whole."""
    path = write_noise(tmp_path / "long.wav", 48000, 20.0, channels=2, subtype="PCM_16")
    status, (row,), _ = inspect_json(capsys, path)
    assert status == 0
    data, _ = sf.read(str(path), dtype="float32")
    assert data.shape[0] > 10 * (1 << 16)
    rms = float(np.sqrt(np.mean(data.astype(np.float64) ** 2)))
    assert row["rms_dbfs"] == pytest.approx(20 * math.log10(rms), abs=1e-5)
    assert row["min"] == float(data.min()) and row["max"] == float(data.max())
    cli_main(["inspect", str(path)])
    assert "20.000 s" in capsys.readouterr().out


def test_folder_search_is_recursive_case_blind_and_sorted(tmp_path, capsys):
    corpus = make_mixed_corpus(tmp_path / "corpus")
    status, rows, err = inspect_json(capsys, tmp_path / "corpus")
    assert status == 1  # the corpus has broken files
    good = [r["path"] for r in rows if "error" not in r]
    bad = {r["path"]: r["error"] for r in rows if "error" in r}
    assert good == sorted(good)
    assert sorted(good) == sorted(corpus["good"])
    assert set(bad) == set(corpus["bad"])
    assert any(p.endswith("UPPER.WAV") for p in good)
    assert any("/x.wav/" in p for p in good)  # a folder named x.wav is searched, not inspected
    assert not any(p.endswith("notes.txt") for p in good + list(bad))
    # one stderr line per bad file, each "path: reason"
    err_lines = err.splitlines()
    assert len(err_lines) == len(corpus["bad"])
    for line in err_lines:
        path, _, reason = line.partition(": ")
        assert path in corpus["bad"] and reason == bad[path]


def test_bad_files_one_line_each_and_exit_1(tmp_path):
    good = write_tone(tmp_path / "good.wav", 8000, 0.5)
    bad = {
        write_empty(tmp_path / "empty.wav"): "empty",
        write_not_audio(tmp_path / "text.wav"): "not a readable audio file",
        write_truncated(tmp_path / "cut.wav"): "truncated",
        write_truncated(tmp_path / "cut_header.wav", where="header"): "not a readable audio file",
        write_nan_wav(tmp_path / "nan.wav"): "non-finite",
    }
    (tmp_path / "folder.wav").mkdir()
    proc = run_inspect(good, *bad, tmp_path / "folder.wav" / ".." / "missing.wav")
    assert proc.returncode == 2  # a PATH that matches nothing outranks the bad files
    proc = run_inspect(good, *bad)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(bad)
    for line, (path, reason) in zip(lines, bad.items()):
        assert line.startswith(f"{path}: ") and reason in line
    table = proc.stdout.splitlines()
    assert len(table) == 2 and table[1].startswith(str(good))


def test_paths_that_match_nothing_exit_2(tmp_path):
    proc = run_inspect(tmp_path / "nope.wav")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"audiofeat inspect: {tmp_path / 'nope.wav'}: no such file or folder"
    proc = run_inspect(tmp_path / "*.flac")
    assert proc.returncode == 2 and "the pattern matches nothing" in proc.stderr
    proc = run_inspect(tmp_path / "nope.wav", "--json")  # no "[]" on stdout for nothing named
    assert proc.returncode == 2 and proc.stdout == ""
    (tmp_path / "readme.txt").write_text("hi")
    proc = run_inspect(tmp_path / "*.txt")
    assert proc.returncode == 2 and "matches no audio files" in proc.stderr
    (tmp_path / "empty_folder").mkdir()
    proc = run_inspect(tmp_path / "empty_folder")
    assert proc.returncode == 2 and "no audio files in this folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_globs_and_recursive(tmp_path, capsys):
    write_tone(tmp_path / "a.wav", 8000, 0.1)
    write_tone(tmp_path / "B.FLAC", 8000, 0.1)
    write_tone(tmp_path / "sub" / "c.wav", 8000, 0.1)
    status, rows, _ = inspect_json(capsys, tmp_path / "*")  # files and the folder "sub"
    assert status == 0
    assert [Path(r["path"]).name for r in rows] == ["B.FLAC", "a.wav", "c.wav"]
    # ** matches any number of folders, none too, as in extract's globs (inspect shows what
    # extract takes: without -r it showed 20 of the 40 files extract stored)
    for flags in ((), ("--recursive",)):
        status, rows, _ = inspect_json(capsys, *flags, tmp_path / "**" / "*.wav")
        assert [Path(r["path"]).name for r in rows] == ["a.wav", "c.wav"]
    from jobs.discover import discover

    assert sorted(Path(p).name for p in discover([str(tmp_path / "**" / "*.wav")]).paths) == ["a.wav", "c.wav"]


def test_relative_paths_print_as_given(samples_dir):
    proc = run_inspect("samples/0_george_3.wav", cwd=samples_dir.parent)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[1].startswith("samples/0_george_3.wav ")


def test_compressed_and_multichannel_formats(tmp_path, capsys):
    paths = [
        write_tone(tmp_path / "v.ogg", 22050, 0.5, channels=2),
        write_noise(tmp_path / "six.w64", 48000, 0.3, channels=6, subtype="FLOAT"),
        write_tone(tmp_path / "a.aiff", 44100, 0.3, subtype="PCM_24"),
    ]
    status, rows, _ = inspect_json(capsys, *paths)
    assert status == 0
    assert [(r["format"], r["channels"], r["bit_depth"]) for r in rows] == [
        ("OGG", 2, None), ("W64", 6, 32), ("AIFF", 1, 24)]


def test_fsspec_urls(samples_dir, tmp_path, capsys):
    fsspec = pytest.importorskip("fsspec")
    source = samples_dir / "0_george_3.wav"
    fs = fsspec.filesystem("memory")
    fs.pipe("/inspect-test/clip.wav", source.read_bytes())
    fs.pipe("/inspect-test/text.wav", b"not audio at all" * 10)
    try:
        status, rows, err = inspect_json(capsys, "memory://inspect-test/clip.wav",
                                         "memory://inspect-test/text.wav", f"file://{source}")
    finally:
        fs.rm("/inspect-test", recursive=True)
    assert status == 1
    assert rows[0]["path"] == "memory://inspect-test/clip.wav"
    assert rows[0]["frames"] == rows[2]["frames"] == sf.info(str(source)).frames
    assert rows[0]["rms_dbfs"] == rows[2]["rms_dbfs"]
    assert "not a readable audio file" in rows[1]["error"]
    assert err.splitlines() == [f"memory://inspect-test/text.wav: {rows[1]['error']}"]


def test_unseekable_codec_is_inspected(tmp_path, capsys):
    """GSM 6.10 WAV: libsndfile cannot seek in it; its levels are still read."""
    gsm = write_tone(tmp_path / "gsm.wav", 8000, 1.0, subtype="GSM610")
    status, rows, err = inspect_json(capsys, gsm)
    assert status == 0 and err == ""
    (row,) = rows
    with sf.SoundFile(str(gsm)) as handle:
        data = handle.read(handle.frames, dtype="float32")
    assert row["subtype"] == "GSM610" and row["frames"] == data.shape[0]
    assert row["max"] == pytest.approx(float(data.max()))


def test_a_name_that_is_not_utf8_is_inspected_with_a_note(tmp_path, capsys):
    folder = tmp_path / "c"
    folder.mkdir()
    write_tone(folder / "tone.wav", 8000, 0.5)  # (soundfile cannot write to such a name)
    os.rename(folder / "tone.wav", os.path.join(os.fsencode(folder), b"bad\xff.wav"))
    status, rows, err = inspect_json(capsys, folder)
    assert status == 0 and rows[0]["path"].endswith("bad\\xff.wav") and rows[0]["sample_rate"] > 0
    assert "not valid UTF-8" in err and "extract leaves it out" in err


def test_the_table_stays_aligned_after_decomposed_and_wide_names():
    from jobs.inspection import _COLUMNS, _width, format_table

    row = {"path": "x", "format": "WAV", "subtype": "PCM_16", "sample_rate": 8000, "channels": 1,
           "frames": 8000, "duration_s": 1.0, "bit_depth": 16, "min": -0.5, "max": 0.5,
           "peak_dbfs": -6.0, "rms_dbfs": -9.0}
    names = ["Bjo\u0308rk e\u0301.flac", "Björk é.flac", "録音.wav"]
    lines = format_table([{**row, "path": n} for n in names]).splitlines()
    assert len({_width(line) for line in lines}) == 1, lines
    assert len(_COLUMNS) > 1


def test_audio_nothing_here_decodes_gets_extracts_reason(tmp_path, capsys):
    """A .spx (Speex) in a folder: inspect gives the reason and advice extract records
    (UnsupportedFormat), not libsndfile's "Format not recognised"."""
    from jobs.discover import discover

    (tmp_path / "memo.spx").write_bytes(b"Speex   " + bytes(200))
    assert cli_main(["inspect", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    found = discover(str(tmp_path))
    assert [f["error_type"] for f in found.failures] == ["UnsupportedFormat"]
    assert err == f"{tmp_path / 'memo.spx'}: {found.failures[0]['message']}"
