"""Discovery: folders, links, globs, list files, URLs, letter case, missing inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from jobs.discover import check_inputs, discover
from jobs.errors import UsageError


def _wav(path, seconds=0.1):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(8000 * seconds), np.float32), 8000)
    return str(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    files = [_wav(root / "a.wav"), _wav(root / "B.WAV"), _wav(root / "sub" / "c.Flac"),
             _wav(root / "sub" / "deep" / "d e.wav"), _wav(root / "x.wav" / "inside.wav")]
    (root / "readme.txt").write_text("hello")
    (root / "data.csv").write_text("a,b")
    return root, sorted(files)


def test_folder_recursive_case_insensitive(tree):
    root, files = tree
    found = discover(str(root))
    assert found.paths == files
    assert not found.failures


def test_symlinked_folders_followed_loops_cut(tree, tmp_path):
    root, files = tree
    outside = tmp_path / "outside"
    extra = _wav(outside / "e.wav")
    os.symlink(outside, root / "linked")
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "sub", root / "again")
    found = discover(str(root))
    assert found.paths == sorted([*files, extra.replace(str(outside), str(root / "linked"))])


def test_glob_list_file_and_explicit_paths(tree, tmp_path):
    root, files = tree
    # glob matching is case-sensitive (B.WAV is left out); the folder x.wav matches and is searched
    assert discover(str(root / "**" / "*.wav")).paths == sorted(
        [str(root / "a.wav"), str(root / "sub" / "deep" / "d e.wav"), str(root / "x.wav" / "inside.wav")])
    globbed = discover(str(root / "sub" / "**" / "*")).paths
    assert globbed == sorted(p for p in files if "/sub/" in p)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# comment\n\n{files[0]}\nroot/sub\nroot/missing.wav\n")
    found = discover(str(listing))
    assert found.paths == sorted([files[0], *[p for p in files if "/sub/" in p]])
    assert [f["path"] for f in found.failures] == [str(tmp_path / "root" / "missing.wav")]
    assert found.failures[0]["stage"] == "discover"
    odd = tmp_path / "recording.bin"
    odd.write_bytes(b"\0" * 10)
    assert discover([str(odd)]).paths == [str(odd)]  # a file named explicitly is always an input


def test_list_files_as_windows_editors_write_them(tree, tmp_path):
    """A UTF-8 byte-order mark (Notepad) or UTF-16 (PowerShell's >) with CRLF lines reads as
    plain UTF-8; a list in another encoding is one failure saying so."""
    root, files = tree
    text = f"{files[0]}\r\n{files[1]}\r\n"
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "u16.txt").write_text(text.replace("\r\n", "\n"), encoding="utf-16")
    for name in ("bom.txt", "u16.txt"):
        found = discover(str(tmp_path / name))
        assert found.paths == sorted(files[:2]) and not found.failures, name
    (tmp_path / "latin1.txt").write_bytes(f"{files[0]}\n".encode() + b"caf\xe9.wav\n")
    found = discover(str(tmp_path / "latin1.txt"))
    assert not found.paths and len(found.failures) == 1
    assert found.failures[0]["error_type"] == "UnreadableList" and "UTF-8" in found.failures[0]["message"]


def test_duplicates_collapse_and_lists_combine(tree):
    root, files = tree
    assert discover([str(root), files[0], str(root / "sub")]).paths == files


def test_missing_top_level_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file or folder"):
        discover(str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="matches nothing"):
        discover(str(tmp_path / "*.wav"))
    with pytest.raises(UsageError, match="input"):
        discover([])


def test_check_inputs_refuses_what_discover_would_without_walking(tmp_path):
    for bad, message in ((str(tmp_path / "nowhere"), "no such file or folder"),
                         (str(tmp_path / "*.wav"), "matches nothing"),
                         (f"file://{tmp_path}/nowhere", "no such file or folder"), ([], "no input")):
        with pytest.raises(UsageError, match=message):
            check_inputs(bad)
        with pytest.raises(UsageError, match=message):
            discover(bad)
    (tmp_path / "a.wav").write_bytes(b"")
    check_inputs([str(tmp_path), str(tmp_path / "*.wav"), tmp_path.as_uri(), "s3://bucket/x"])


def test_fsspec_urls(tree):
    root, files = tree
    assert discover("file://" + str(root)).paths == files
    found = discover("file://" + files[0])
    assert found.paths == [files[0]]
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a.wav", open(files[0], "rb").read())
    fs.pipe("/corpus/n/b.WAV", open(files[1], "rb").read())
    fs.pipe("/corpus/n/skip.txt", b"x")
    assert discover("memory://corpus").paths == ["memory:///corpus/a.wav", "memory:///corpus/n/b.WAV"]
    # a pattern in a URL is expanded as a local one is (it was "nothing found at ...")
    assert discover("memory://corpus/*.wav").paths == ["memory:///corpus/a.wav"]
    assert discover("memory://corpus/**/*.[wW][aA][vV]").paths == ["memory:///corpus/a.wav",
                                                                     "memory:///corpus/n/b.WAV"]
    with pytest.raises(UsageError, match="the pattern memory://corpus/\\*.flac matches nothing"):
        discover("memory://corpus/*.flac")


def test_audio_that_ffmpeg_reads_is_found_and_audio_nothing_reads_is_a_reported_failure(tmp_path):
    """.m4a/.wma/.webm are audio (FFmpeg decodes them through PyAV); a folder of audio neither
    libsndfile nor FFmpeg reads here (.ra, .spx) is not an empty job: each such file is a discover
    failure saying why."""
    root = tmp_path / "music"
    (root / "album").mkdir(parents=True)
    sf.write(str(root / "ok.flac"), np.zeros(800, np.float32), 8000)
    for name in ("album/01 Song.m4a", "voice.WMA", "clip.webm", "old.ra", "talk.SPX"):
        (root / name).write_bytes(b"\0" * 64)
    (root / "cover.jpg").write_bytes(b"\xff\xd8")  # not audio at all: passed over
    found = discover(str(root))
    assert found.paths == sorted(str(root / n) for n in ("album/01 Song.m4a", "clip.webm", "ok.flac", "voice.WMA"))
    failed = {f["path"]: f for f in found.failures}
    assert sorted(failed) == sorted(str(root / n) for n in ("old.ra", "talk.SPX"))
    for row in failed.values():
        assert row["stage"] == "discover" and row["error_type"] == "UnsupportedFormat"
        assert "convert it to FLAC or WAV" in row["message"]
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/unsupported/a.ra", b"\0" * 16)
    fs.pipe("/unsupported/b.wav", (root / "ok.flac").read_bytes())
    fs.pipe("/unsupported/c.m4a", b"\0" * 16)
    url = discover("memory://unsupported")
    assert url.paths == ["memory:///unsupported/b.wav", "memory:///unsupported/c.m4a"]
    assert [f["path"] for f in url.failures] == ["memory:///unsupported/a.ra"]


def test_a_named_fifo_or_broken_link_is_an_input_that_fails_for_what_it_is(tmp_path):
    """Named explicitly or in a list, a FIFO and a dangling link are inputs (accounted for as
    failures saying what they are), not "no such file"."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling.wav"
    os.symlink(tmp_path / "gone.wav", dangling)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{fifo}\n{dangling}\n")
    for inputs in ([str(fifo), str(dangling)], str(listing)):
        found = discover(inputs)
        assert found.paths == []
        reasons = {f["path"]: (f["error_type"], f["message"]) for f in found.failures}
        assert reasons[str(fifo)][0] == "NotARegularFile" and "named pipe" in reasons[str(fifo)][1]
        assert reasons[str(dangling)][0] == "BrokenLink"


def test_file_uris_with_escapes_name_their_files(tmp_path):
    """``Path.as_uri()`` writes a space as %20; a name that really holds "%20" is kept."""
    spaced = _wav(tmp_path / "a b.wav")
    literal = _wav(tmp_path / "c%20d.wav")
    found = discover([(tmp_path / "a b.wav").as_uri(), f"file://{literal}"])
    assert sorted(found.paths) == sorted([spaced, literal]) and not found.failures


def test_headerless_telephony_audio_is_found_by_the_names_libsndfile_reads(tmp_path):
    """libsndfile reads header-less GSM 6.10 (``.gsm``) and Dialogic VOX ADPCM (``.vox``,
    ``.vox8``; ``.vox6`` at 6 kHz) from their names alone, as Asterisk's music-on-hold and prompts
    ship them: a folder of them is a corpus, not an empty job."""
    import featurelib

    root = tmp_path / "moh"
    root.mkdir()
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    written = {}
    for name, subtype, sr in [("tune.gsm", "GSM610", 8000), ("prompt.VOX", "VOX_ADPCM", 8000),
                              ("beep.vox8", "VOX_ADPCM", 8000), ("slow.vox6", "VOX_ADPCM", 6000)]:
        sf.write(str(root / name), y, sr, format="RAW", subtype=subtype)
        written[str(root / name)] = (subtype, sr)
    (root / "notes.raw").write_bytes(bytes(100))  # raw PCM names no encoding: not an input
    found = discover(str(root))
    assert found.paths == sorted(written) and not found.failures
    for path, (subtype, sr) in written.items():
        meta = featurelib.info(path)
        assert (meta.format, meta.subtype, meta.sample_rate, meta.frames) == ("RAW", subtype, sr, 8000)
        ref, _ = sf.read(path, dtype="float32")
        np.testing.assert_array_equal(featurelib.load(path)[0], ref)
    # any bytes decode as header-less audio: what is clearly something else is refused, not
    # read as noise (a MagicaVoxel model, notes, a Git LFS pointer)
    others = {"model.vox": b"VOX \x96\x00\x00\x00" + bytes(range(256)) * 8,
              "notes.gsm": "Session notes: mic 2 failed at 01:32 — re-take.\n".encode() * 40,
              "pointer.gsm": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\n"}
    for name, data in others.items():
        (root / name).write_bytes(data)
        with pytest.raises(featurelib.AudioDecodeError, match="not a readable audio file"):
            featurelib.load(root / name)
    # ... but ADPCM bytes may start like an ADTS header or a JSON document, and a quiet tone at
    # the Nyquist frequency encodes to printable characters: audio all the same
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    audio_bytes = {"adts_like.vox": b"\xff\xf8\x01\x80" + noise, "json_like.vox": b'{"\x12' + noise}
    nyquist = 0.01 * np.sign(np.sin(np.pi * np.arange(8000) + 0.3))
    sf.write(str(root / "nyquist.vox"), nyquist.astype(np.float32), 8000, format="RAW", subtype="VOX_ADPCM")
    for name, data in audio_bytes.items():
        (root / name).write_bytes(data)
    for name in (*audio_bytes, "nyquist.vox"):
        ref, _ = sf.read(str(root / name), dtype="float32")
        np.testing.assert_array_equal(featurelib.load(root / name)[0], ref)


def test_broadcast_wav_and_mpeg_layer_ii_names_are_found(tmp_path):
    """``.bwf`` (Broadcast WAV, a field recorder's takes) and ``.mp2``/``.mpa`` (MPEG layer II,
    broadcast audio) are audio libsndfile decodes; in a folder they were passed over unsaid."""
    import featurelib

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MPEG support")
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.float32)
    sf.write(str(tmp_path / "take1.BWF"), y, 48000, format="WAV")
    av = pytest.importorskip("av")  # an MPEG layer II encoder (libsndfile's writes layer III)
    with av.open(str(tmp_path / "clip.mp2"), "w", format="mp2") as out:
        stream = out.add_stream("mp2", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.round(y * 32767).astype(np.int16)[None, :], format="s16",
                                           layout="mono")
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    (tmp_path / "clip.mpa").write_bytes((tmp_path / "clip.mp2").read_bytes())
    found = discover([str(tmp_path)])
    assert sorted(os.path.basename(p) for p in found.paths) == ["clip.mp2", "clip.mpa", "take1.BWF"]
    for path in found.paths:
        assert featurelib.info(path).frames > 40000
