"""``audiofeat plot`` for real: every kind on short, long, silent and stereo files, the
run-directory form on a real extract + train + score run, and bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import featurelib
from jobs import plotting
from jobs.cli import main as cli_main

from audio_factory import (
    write_audio,
    write_chirp,
    write_empty,
    write_nan_wav,
    write_noise,
    write_not_audio,
    write_silence,
)

REPO = Path(__file__).resolve().parents[1]
KINDS = ["waveform", "spectrum", "spectrogram", "mel", "mfcc", "all"]
WIDTH = 640  # small images keep the suite quick


def expected_size(n_panels, width=WIDTH):
    return width, plotting.PANEL_HEIGHT_PX * n_panels + 60


def check_png(path: Path, size) -> np.ndarray:
    """A valid PNG of the given size whose pixels are not all alike; returns its pixels."""
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10.0, "blank image"
    return pixels


def plot(*argv) -> int:
    return cli_main(["plot", *map(str, argv)])


@pytest.fixture(scope="module")
def audio(tmp_path_factory, samples_dir):
    root = tmp_path_factory.mktemp("plot-audio")
    return {
        "short": samples_dir / "3_theo_3.wav",
        # ten minutes: the waveform is streamed and the spectral views are sampled
        "long": write_noise(root / "ten minutes.wav", 8000, 600.0, amplitude=0.6),
        "silent": write_silence(root / "silent.flac", 16000, 1.0),
        "stereo": write_chirp(root / "stereo.wav", 44100, 2.0, channels=2),
        "one sample": write_audio(root / "one.wav", np.array([0.25], np.float32), 16000),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["short", "long", "silent", "stereo", "one sample"])
def test_every_kind_renders(audio, tmp_path, which, kind):
    out = tmp_path / f"{which}_{kind}.png"
    assert plot(audio[which], "--kind", kind, "-o", out, "--width", WIDTH) == 0
    n_panels = 5 if kind == "all" else 1
    pixels = check_png(out, expected_size(n_panels))
    # more than the axes and text: a drawn view has many distinct colours
    if kind not in ("waveform", "spectrum") and which not in ("silent", "one sample"):
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100


def test_every_panel_of_all_holds_a_drawing(audio, tmp_path):
    out = tmp_path / "all.png"
    assert plot(audio["stereo"], "-o", out, "--width", WIDTH) == 0  # --kind all is the default
    pixels = check_png(out, expected_size(5))
    band = plotting.PANEL_HEIGHT_PX
    for k in range(5):
        panel = pixels[60 + k * band + 40: 60 + (k + 1) * band - 60, 80:WIDTH - 100]
        assert panel.std() > 10.0, f"panel {k} is blank"


def test_size_window_and_analysis_options(audio, tmp_path):
    out = tmp_path / "window.png"
    status = plot(audio["long"], "--kind", "all", "-o", out, "--offset", "123.4", "--duration", "2.5",
                  "--sr", "16000", "--n-fft", "512", "--hop-length", "128", "--n-mels", "64",
                  "--n-mfcc", "13", "--width", "1000", "--height", "900")
    assert status == 0
    check_png(out, (1000, 900))


def test_long_file_in_a_subprocess_is_quick_and_quiet(audio, tmp_path):
    out = tmp_path / "long.png"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "jobs", "plot", str(audio["long"]), "--kind", "all",
                           "-o", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    check_png(out, expected_size(5, plotting.DEFAULT_WIDTH_PX))


# ---------------------------------------------------------------- the numbers behind the views


def test_streamed_envelope_equals_the_whole_file_envelope(tmp_path):
    path = write_noise(tmp_path / "n.wav", 22050, 30.0, channels=3, subtype="PCM_24")
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    start, count = 12345, 500_000
    lo, hi = plotting._envelope_streamed(path, start, count, 777)
    ref_lo, ref_hi = plotting._envelope_from_array(data[start:start + count].T, 777)
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)


def test_full_analysis_is_featurelib(samples_dir):
    path = samples_dir / "5_lucas_30.wav"
    a = plotting.FileAnalysis(path, kinds=plotting.FILE_KINDS, sr=None, offset=0.0, duration=None,
                              n_fft=256, hop_length=64, n_mels=40, n_mfcc=13, n_cols=600)
    y, sr = featurelib.load(path)
    np.testing.assert_allclose(a.magnitude, np.abs(featurelib.stft(y, n_fft=256, hop_length=64)),
                               rtol=0, atol=1e-6)
    mel = featurelib.melspectrogram(y=y, sr=sr, n_fft=256, hop_length=64, n_mels=40)
    np.testing.assert_allclose(a.mfcc, featurelib.mfcc(S=featurelib.power_to_db(mel), n_mfcc=13),
                               rtol=0, atol=1e-3)
    assert a.frame_times[1] - a.frame_times[0] == pytest.approx(64 / sr)


@pytest.mark.parametrize("name", ["c.wav", "c.ogg", "c.mp3"])
def test_sampled_frames_are_the_frames_of_the_whole_signal(tmp_path, monkeypatch, name):
    """Past MAX_FRAMES each frame is decoded on its own (an MP3's, in one pass over the file);
    it equals the same frame of the whole decoded signal (native rate, so no resampler edge)."""
    if name.endswith(".mp3") and "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    path = write_chirp(tmp_path / name, 8000, 20.0, channels=2,
                       subtype="PCM_16" if name.endswith(".wav") else None)
    monkeypatch.setattr(plotting, "MAX_FRAMES", 50)
    a = plotting.FileAnalysis(path, kinds=["spectrogram"], sr=None, offset=1.0, duration=15.0,
                              n_fft=512, hop_length=128, n_mels=40, n_mfcc=13, n_cols=600)
    assert a.sampled and a.magnitude.shape == (257, 50)
    y, sr = featurelib.load(path)
    padded = np.pad(y, 256)
    window = featurelib.get_window("hann", 512)
    for k, centre in enumerate(a.frame_times):
        c = int(round(centre * sr))
        frame = padded[c:c + 512] * window
        np.testing.assert_allclose(a.magnitude[:, k], np.abs(np.fft.rfft(frame)), rtol=0, atol=1e-4)


@pytest.mark.parametrize("seconds", [0.01, 600.0])  # every sample drawn / a min-max envelope
def test_samples_past_full_scale_stay_in_the_waveform(tmp_path, seconds):
    """An MP3's overshoot or a float file's loud peak (1.6 here) is drawn, not cut off at the
    full-scale axis, and full scale is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(8000 * seconds)
    y = (0.5 * np.sin(2 * np.pi * 50 * np.arange(n) / 8000)).astype(np.float32)
    y[n // 3] = 1.6
    path = write_audio(tmp_path / "loud.wav", y, 8000, subtype="FLOAT")
    a = plotting.FileAnalysis(path, kinds=["waveform"], sr=None, offset=0.0, duration=None,
                              n_fft=256, hop_length=64, n_mels=40, n_mfcc=13, n_cols=600)
    fig, ax = plt.subplots()
    try:
        plotting.draw_waveform(ax, a)
        low, high = ax.get_ylim()
        assert high >= 1.6 and low <= -1.6
        assert {round(line.get_ydata()[0], 6) for line in ax.get_lines()} >= {-1.0, 1.0}
    finally:
        plt.close(fig)


def test_silence_draws_the_floor(audio):
    a = plotting.FileAnalysis(audio["silent"], kinds=plotting.FILE_KINDS, sr=None, offset=0.0,
                              duration=None, n_fft=512, hop_length=128, n_mels=40, n_mfcc=13,
                              n_cols=600)
    assert np.all(np.isfinite(a.spectrogram_db)) and np.all(np.isfinite(a.mfcc))
    assert float(a.spectrogram_db.max()) == pytest.approx(-100.0)  # amplitude_to_db's floor


def test_mfcc_of_silence_is_drawn_plain_not_as_rounding_stripes(audio):
    """Digital silence has MFCCs 1 and up of about 1e-4 (rounding): the colour range must not
    stretch that noise over the whole scale."""
    import matplotlib.pyplot as plt

    a = plotting.FileAnalysis(audio["silent"], kinds=["mfcc"], sr=None, offset=0.0, duration=None,
                              n_fft=512, hop_length=128, n_mels=40, n_mfcc=13, n_cols=600)
    fig, ax = plt.subplots()
    try:
        plotting.draw_mfcc(fig, ax, a)
        low, high = ax.images[0].get_clim()
    finally:
        plt.close(fig)
    assert float(np.abs(a.mfcc[1:]).max()) < 1e-2
    assert (low, high) == (-plotting.MFCC_MIN_COLOUR_RANGE, plotting.MFCC_MIN_COLOUR_RANGE)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("writer", [write_not_audio, write_empty, write_nan_wav])
def test_bad_file_exit_1_one_line(tmp_path, capsys, writer):
    path = writer(tmp_path / "bad.wav")
    out = tmp_path / "bad.png"
    assert plot(path, "--kind", "all", "-o", out) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ")
    assert not out.exists()


def test_bad_file_in_a_subprocess_has_no_traceback(tmp_path):
    path = write_not_audio(tmp_path / "text.wav")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "jobs", "plot", str(path), "-o", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{path}: not a readable audio file (libsndfile: Format not recognised)"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--kind", "chroma"], "--kind chroma"),
        (["--offset", "-1"], "--offset"),
        (["--duration", "0"], "--duration"),
        (["--n-fft", "0"], "--n-fft"),
        (["--offset", "99"], "past the end"),
        (["--file-id", "abc"], "--file-id goes with a run directory"),
        (["--height", "200"], "5 panels need at least 510 pixels"),
    ],
)
def test_usage_errors_exit_2(samples_dir, tmp_path, capsys, argv, message):
    status = plot(samples_dir / "0_george_3.wav", "-o", tmp_path / "new" / "x.png", *argv)
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "new").exists()  # a refused picture leaves no folder behind


def test_output_folders_are_made_when_the_picture_is_saved(samples_dir, tmp_path, capsys):
    out = tmp_path / "a" / "b" / "x.png"
    assert plot(samples_dir / "0_george_3.wav", "--kind", "waveform", "-o", out) == 0
    assert out.stat().st_size > 0
    (tmp_path / "file").write_text("")
    assert plot(samples_dir / "0_george_3.wav", "-o", tmp_path / "file" / "x.png") == 2
    assert "is not a folder" in capsys.readouterr().err


def test_missing_path_bad_output_and_plain_folder_exit_2(samples_dir, tmp_path, capsys):
    assert plot(tmp_path / "nope.wav", "-o", tmp_path / "x.png") == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert plot(samples_dir / "0_george_3.wav", "-o", tmp_path / "x.jpg2") == 2
    assert "must end in .png" in capsys.readouterr().err
    assert plot(samples_dir, "-o", tmp_path / "x.png") == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("--offset", "nan"), "--offset must be a number of seconds >= 0, not nan"),
    (("--duration", "nan"), "--duration must be a number of seconds > 0, not nan"),
    (("--n-mels", "100000"), "--n-mels must be at most 1024"),
    (("--width", "10000000"), "--width must be at most 20000"),
    (("--sr", "100000000"), "--sr must be at most 1000000"),
    (("--n-fft", "1073741824"), "--n-fft must be at most 65536"),
])
def test_values_that_failed_late_or_hung_are_refused(samples_dir, tmp_path, capsys, args, message):
    """NaN seconds gave a traceback; huge sizes a MemoryError, matplotlib's error or a hang."""
    assert plot(samples_dir / "0_george_3.wav", "-o", tmp_path / "x.png", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- a run directory


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    """A real run: audiofeat extract, train and score on the bundled sample."""
    from train_helpers import write_config

    root = tmp_path_factory.mktemp("plot-run")
    config = write_config(root / "job.yaml")
    out = root / "run"
    assert cli_main(["extract", str(config), "--out", str(out), "--workers", "1"]) == 0
    assert cli_main(["train", str(config), "--out", str(out)]) == 0
    assert cli_main(["score", str(config), "--out", str(out)]) == 0
    return out


def _first_file(run: Path) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(run / "files.parquet").slice(0, 1).to_pylist()[0]


@pytest.mark.parametrize("kind, n_panels", [("mel", 1), ("mfcc", 1), ("rms", 1), ("spectral_centroid", 1),
                                            ("all", 5)])
def test_run_directory_kinds(scored_run, tmp_path, kind, n_panels):
    row = _first_file(scored_run)
    out = tmp_path / f"{kind}.png"
    assert plot(scored_run, "--file-id", row["file_id"], "--kind", kind, "-o", out, "--width", WIDTH) == 0
    check_png(out, expected_size(n_panels))


def test_run_directory_reads_the_stored_rows(scored_run, tmp_path, monkeypatch):
    """The form decodes nothing: it works with the audio gone."""
    import zarr

    row = _first_file(scored_run)
    moved = tmp_path / "moved"
    shutil.copytree(scored_run, moved)
    monkeypatch.setattr(featurelib, "load", None)  # any decode would fail loudly
    assert plot(moved, "--file-id", row["file_id"], "--kind", "mfcc", "-o", tmp_path / "m.png") == 0
    stored = zarr.open_group(str(moved / "features.zarr"), mode="r")["mfcc"]
    assert stored.shape[0] >= row["frame_stop"] > row["frame_start"]


def test_run_directory_events_are_shaded(scored_run, tmp_path):
    import pyarrow.parquet as pq

    events = pq.read_table(scored_run / "scores" / "events.parquet").to_pylist()
    assert events, "the scored sample has events"
    file_id = events[0]["file_id"]
    with_events = tmp_path / "with.png"
    assert plot(scored_run, "--file-id", file_id, "--kind", "rms", "-o", with_events) == 0
    bare = tmp_path / "bare"
    shutil.copytree(scored_run, bare, ignore=shutil.ignore_patterns("scores"))
    without = tmp_path / "without.png"
    assert plot(bare, "--file-id", file_id, "--kind", "rms", "-o", without) == 0
    a = check_png(with_events, expected_size(1, plotting.DEFAULT_WIDTH_PX))
    b = check_png(without, expected_size(1, plotting.DEFAULT_WIDTH_PX))
    assert np.abs(a - b).sum() > 0


def test_only_the_events_a_picture_can_show_are_drawn():
    """A night scored at a short hop holds tens of thousands of events: those outside the window
    are left out, those inside cut to it, and those of one label under a pixel apart joined."""
    events = [{"label": "snore", "start_s": 10.0 * i, "end_s": 10.0 * i + 6.0} for i in range(3000)]
    events += [{"label": "talk", "start_s": 103.0, "end_s": 104.0},
               {"label": "talk", "start_s": 103.5, "end_s": 105.0}]  # overlapping: one span
    shown = plotting._events_in_view(events, 100.0, 120.0, 1000)
    assert shown == [{"label": "snore", "start_s": 100.0, "end_s": 106.0, "edges": [106.0]},
                     {"label": "snore", "start_s": 110.0, "end_s": 116.0, "edges": [110.0, 116.0]},
                     {"label": "talk", "start_s": 103.0, "end_s": 105.0, "edges": [103.0, 105.0]}]
    whole = plotting._events_in_view(events, 0.0, 30000.0, 1000)  # 30 s a pixel: 4 s gaps vanish
    assert [(e["label"], e["start_s"], e["end_s"]) for e in whole] == [("snore", 0.0, 29996.0),
                                                                       ("talk", 103.0, 105.0)]
    assert plotting._events_in_view(events, 40000.0, 40010.0, 1000) == []


def test_run_directory_by_path_and_window(scored_run, tmp_path):
    row = _first_file(scored_run)
    out = tmp_path / "by_path.png"
    assert plot(scored_run, "--file-id", row["path"], "--kind", "mel", "-o", out,
                "--offset", "0.1", "--duration", "0.2", "--width", WIDTH) == 0
    check_png(out, expected_size(1))


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--file-id"),
        (["--file-id", "0000000000000000"], "not in"),
        (["--file-id", "FIRST", "--kind", "chroma"], "not stored in this run"),
        (["--file-id", "FIRST", "--offset", "100"], "past the end"),
    ],
)
def test_run_directory_usage_errors(scored_run, tmp_path, capsys, argv, message):
    row = _first_file(scored_run)
    argv = [row["file_id"] if a == "FIRST" else a for a in argv]
    assert plot(scored_run, "-o", tmp_path / "x.png", *argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err


def test_default_fft_length_follows_the_rate():
    assert [plotting.default_n_fft(sr) for sr in (4000, 8000, 16000, 22050, 44100, 96000)] == [
        256, 512, 1024, 2048, 2048, 2048]


def test_library_warnings_become_one_note_line(audio, tmp_path, capsys):
    out = tmp_path / "narrow.png"
    assert plot(audio["stereo"], "--kind", "mel", "--n-fft", "256", "--n-mels", "128", "-o", out) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("audiofeat plot: note: Empty filters")
    check_png(out, expected_size(1, plotting.DEFAULT_WIDTH_PX))


def test_default_mel_bands_leave_none_empty(audio, tmp_path, capsys):
    """128 bands, unless the FFT's bins are too coarse for that many (a short FFT, or 384 kHz
    with its 2,048-point default): then as many as leave no band empty, and no note."""
    assert plotting.fitting_n_mels(16000, 1024) == 128
    assert plotting.fitting_n_mels(384000, 2048) == 64 and plotting.fitting_n_mels(192000, 2048) == 114
    out = tmp_path / "narrow.png"
    assert plot(audio["stereo"], "--kind", "mel", "--n-fft", "256", "-o", out) == 0
    assert capsys.readouterr().err == ""
    import warnings

    import featurelib

    sr = featurelib.info(audio["stereo"]).sample_rate
    n = plotting.fitting_n_mels(sr, 256)
    assert n < 128
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's own check lets an empty first band pass
        for bands, empty in ((n, False), (n + 1, True)):
            basis = np.asarray(featurelib.mel_filters(sr=sr, n_fft=256, n_mels=bands))
            assert bool((basis.max(axis=1) == 0).any()) is empty, bands


def test_unseekable_codec_plots_from_an_offset(tmp_path):
    """GSM 6.10 WAV cannot seek: a window from an offset is reached by reading up to it."""
    import soundfile as sf

    from jobs.cli import main as cli_main

    path = tmp_path / "gsm.wav"
    t = np.arange(8000) / 8000
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000, subtype="GSM610")
    out = tmp_path / "gsm.png"
    assert cli_main(["plot", str(path), "-o", str(out), "--offset", "0.25", "--duration", "0.5"]) == 0
    assert out.stat().st_size > 1000


def test_stored_frames_of_a_long_file_are_reduced_while_read(monkeypatch):
    """More frames than the picture has columns: read a stretch at a time (here 64 frames) and
    reduced per column, the max of a spectrum, the mean of others, the range of one number."""
    monkeypatch.setattr(plotting, "READ_FRAMES", 64)
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((1003, 3)).astype(np.float32)
    times = np.arange(1003) * 0.01
    for how, reduce in (("max", np.max), ("mean", np.mean)):
        data, low, centres, step = plotting._stored_columns(frames, 0, 1003, 100, how, times, 0.01)
        assert data.shape == low.shape == (3, 100) and centres.shape == (100,)
        edges = plotting._envelope_columns(1003, 100)
        for c in (0, 37, 99):
            column = frames[edges[c]:edges[c + 1]]
            np.testing.assert_allclose(data[:, c], reduce(column, axis=0), rtol=1e-6)
            np.testing.assert_array_equal(low[:, c], column.min(axis=0))
        assert step == pytest.approx(0.1003) and centres[0] == pytest.approx((edges[1] - 1) / 2 * 0.01)
    few, low, shown, step = plotting._stored_columns(frames, 10, 60, 100, "max", times[10:60], 0.01)
    assert low is None and few.shape == (3, 50) and step == 0.01  # as stored


def test_a_thinned_one_number_feature_is_drawn_as_a_line(tmp_path, monkeypatch):
    """With one to two frames per column, each column's range is empty: the feature drew as
    faint scattered ticks. Its middle is drawn as a line too."""
    import matplotlib.pyplot as plt
    from train_helpers import write_config

    import jobs.plotting as plotting

    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(10 * 16000) / 16000
    sf.write(str(audio / "long.wav"), (0.3 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
             16000)
    config = write_config(tmp_path / "job.yaml")
    out = tmp_path / "run"
    assert cli_main(["extract", str(config), "--input", str(audio), "--out", str(out), "--workers", "1"]) == 0
    row = _first_file(out)
    figures = []
    monkeypatch.setattr(plotting, "_save", lambda fig, output: figures.append(fig))
    assert plot(out, "--file-id", row["file_id"], "--kind", "rms", "--width", "300", "-o", tmp_path / "r.png") == 0
    (ax,) = figures[0].axes
    lines = [line for line in ax.get_lines() if len(line.get_ydata()) > 100]
    assert lines and np.ptp(lines[0].get_ydata()) > 0.1  # the envelope's swing, visible
    plt.close(figures[0])
