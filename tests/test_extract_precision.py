"""``frames.fft_precision``: the float32-FFT trade-off, chosen per store and kept with it."""

from __future__ import annotations

import json

import numpy as np
import yaml
import zarr
from test_extract_support import copy_samples, read_tables, run_cli, write_config

import featurelib
from jobs.compute import FeatureSet, file_features
from jobs.config import config_hash, feature_config, load_config


def _with_precision(path, precision):
    cfg = yaml.safe_load(path.read_text())
    cfg["frames"]["fft_precision"] = precision
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_default_precision_keeps_the_store_hash(tmp_path):
    cfg = write_config(tmp_path / "job.yaml", input=tmp_path, out=tmp_path / "out")
    fc = feature_config(load_config(cfg))
    assert "fft_precision" not in fc  # stores written before the option keep their hash
    single = feature_config(load_config(_with_precision(cfg, "single")))
    assert single["fft_precision"] == "single" and config_hash(single) != config_hash(fc)
    double = feature_config(load_config(_with_precision(cfg, "double")))
    assert double["fft_precision"] == "double" and config_hash(double) != config_hash(fc)
    bad = run_cli("extract", _with_precision(cfg, "half"))
    assert bad.returncode == 2 and "fft_precision" in bad.stderr


def test_single_precision_store(tmp_path):
    copy_samples(tmp_path / "clips", 12)
    out = tmp_path / "out"
    cfg = _with_precision(write_config(tmp_path / "job.yaml", input=tmp_path / "clips", out=out,
                                       sr=8000, n_fft=256, hop=80), "single")
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    group = zarr.open_group(str(out / "features.zarr"), mode="r")
    fc = dict(group.attrs)["feature_config"]
    assert fc["fft_precision"] == "single"
    assert json.loads((out / "manifest.json").read_text())["config"]["frames"]["fft_precision"] == "single"
    fs = FeatureSet.from_config(fc)
    assert featurelib.get_fft_precision() == "auto"  # the reference restores the setting
    files, _ = read_tables(out)
    for row in files.to_pylist():
        y, _ = featurelib.load(row["path"], sr=8000)
        ref = file_features(y, fs)  # computed with the store's single-precision FFT
        for name, expected in ref.items():
            got = group[name][row["frame_start"]:row["frame_stop"]]
            scale = max(float(np.abs(expected).max()), 1e-6)
            assert float(np.abs(got - expected).max()) / scale < 1e-4, (name, row["path"])
    assert featurelib.get_fft_precision() == "auto"
    # the same store asked for double precision is a changed config: refused without --overwrite
    again = run_cli("extract", _with_precision(cfg, "double"))
    assert again.returncode == 2, again.stderr


def test_the_job_s_centroid_of_a_very_low_tone_keeps_parity(tmp_path):
    """The job's spectral pass is float32 under "auto"; rows with a centroid near 0 Hz (a 10 Hz
    tone, DC) are taken again in float64, as featurelib does (1.0e-3 relative off otherwise)."""
    import librosa

    from jobs.compute import compute_segments, segment_buffers

    path = write_config(tmp_path / "job.yaml", input=tmp_path, out=tmp_path / "out", sr=48000,
                        n_fft=2048, hop=512)
    cfg = yaml.safe_load(path.read_text())
    cfg["features"] = {"spectral_centroid": {}}
    path.write_text(yaml.safe_dump(cfg))
    fs = FeatureSet.from_config(feature_config(load_config(path)))
    t = np.arange(48000) / 48000
    signals = [(0.5 * np.sin(2 * np.pi * 10 * t)).astype(np.float32),
               (0.1 * np.random.default_rng(0).standard_normal(30000)).astype(np.float32)]
    zbuf, ebuf, n_valid = segment_buffers(signals, fs)
    got = compute_segments(zbuf, ebuf, fs, n_valid=n_valid, xp=np)["spectral_centroid"]
    for row, (y, n) in enumerate(zip(signals, n_valid)):
        ref = librosa.feature.spectral_centroid(y=y, sr=48000, n_fft=2048, hop_length=512)[0]
        assert n == ref.size
        assert np.max(np.abs(got[row, :n, 0] - ref) / ref) < 1e-4


def test_the_job_s_liftered_mfcc_keeps_parity(tmp_path):
    """A lifter grows the decibels' float32 rounding in the coefficients (22: up to 12x): the
    job tightens its float32 check as featurelib's mfcc does, so its MFCCs stay within parity
    of librosa's (a chirp at n_fft 64: 6.4e-3 off before, against the 5e-3 allowed)."""
    import librosa

    from jobs.compute import compute_segments, segment_buffers

    path = write_config(tmp_path / "job.yaml", input=tmp_path, out=tmp_path / "out", sr=16000,
                        n_fft=64, hop=16)
    cfg = yaml.safe_load(path.read_text())
    cfg["features"] = {"mfcc": {"n_mfcc": 20, "n_mels": 20, "lifter": 22}}
    path.write_text(yaml.safe_dump(cfg))
    fs = FeatureSet.from_config(feature_config(load_config(path)))
    signals = [librosa.chirp(fmin=100, fmax=7000, sr=16000, duration=d).astype(np.float32) for d in (1.0, 0.6)]
    zbuf, ebuf, n_valid = segment_buffers(signals, fs)
    got = compute_segments(zbuf, ebuf, fs, n_valid=n_valid, xp=np)["mfcc"]
    for row, (y, n) in enumerate(zip(signals, n_valid)):
        ref = librosa.feature.mfcc(y=y, sr=16000, n_fft=64, hop_length=16, n_mfcc=20, n_mels=20, lifter=22)
        assert n == ref.shape[1]
        assert np.max(np.abs(got[row, :n].T - ref)) < 5e-3


def test_a_feature_does_not_depend_on_a_mel_configured_beside_it(tmp_path):
    """Frames redone in float64 for a mel's sake fed every output of the spectral pass: the
    median frequency of a two-tone (DTMF) frame, which sits in the flat gap between the tones,
    moved by a quarter of its value when a melspectrogram was configured too."""
    from jobs.compute import compute_segments, segment_buffers

    t = np.arange(4 * 22050) / 22050
    y = (0.4 * np.sin(2 * np.pi * 697 * t) + 0.4 * np.sin(2 * np.pi * 1209 * t)).astype(np.float32)
    spectral = {"median_frequency": {}, "spectral_rolloff": {"roll_percent": 0.5}, "spectral_bandwidth": {},
                "spectral_flatness": {}}
    results = []
    for extra in ({}, {"melspectrogram": {"n_mels": 128, "db": True}}):
        path = write_config(tmp_path / "job.yaml", input=tmp_path, out=tmp_path / "out", sr=22050,
                            n_fft=2048, hop=512, features={**spectral, **extra})
        fs = FeatureSet.from_config(feature_config(load_config(path)))
        zbuf, ebuf, n_valid = segment_buffers([y], fs)
        results.append(compute_segments(zbuf, ebuf, fs, n_valid=n_valid, xp=np))
    kw = {"sr": 22050, "n_fft": 2048, "hop_length": 512}
    alone = featurelib.median_frequency(y=y, **kw)[0]
    for name in spectral:
        assert np.array_equal(results[0][name], results[1][name]), name
    assert np.array_equal(results[1]["median_frequency"][0, :alone.size, 0], alone)


def test_the_job_s_rolloff_near_a_bin_edge_equals_librosa(tmp_path):
    """The job's spectral pass takes the frames whose roll-off float32 rounding could move by a
    bin again in float64, as featurelib does (one frame was 2.1e-3 relative off librosa)."""
    import librosa
    from test_fft_precision import _bandpassed_speech_like

    from jobs.compute import compute_segments, segment_buffers

    y = _bandpassed_speech_like()
    path = write_config(tmp_path / "job.yaml", input=tmp_path, out=tmp_path / "out", sr=22050, n_fft=2048,
                        hop=512, features={"spectral_rolloff": {"roll_percent": 0.95},
                                           "melspectrogram": {"n_mels": 64, "db": True}})
    fs = FeatureSet.from_config(feature_config(load_config(path)))
    zbuf, ebuf, n_valid = segment_buffers([y, y[:100000]], fs)
    got = compute_segments(zbuf, ebuf, fs, n_valid=n_valid, xp=np)["spectral_rolloff"]
    for row, signal in enumerate((y, y[:100000])):
        ref = librosa.feature.spectral_rolloff(y=signal, sr=22050, n_fft=2048, hop_length=512, roll_percent=0.95)[0]
        assert np.array_equal(got[row, :ref.size, 0], ref)
