"""Every FSDD recording, fed to featurelib as the extract job feeds it (length-sorted, zero-padded
batches), against librosa called once per clip. Skips when ../shared/data/fsdd is absent."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf

import featurelib as F
from featurelib.framing import n_frames

SR, N_FFT, HOP, N_MELS, N_MFCC = 8000, 256, 80, 40, 20


@pytest.fixture(scope="module")
def clips(fsdd_dir):
    paths = sorted(fsdd_dir.glob("*.wav"))
    assert len(paths) >= 3000
    return [sf.read(p, dtype="float32")[0] for p in paths]


def _batches(clips, size=256):
    order = np.argsort([c.size for c in clips], kind="stable")
    for start in range(0, len(order), size):
        idx = order[start:start + size]
        buf = np.zeros((len(idx), max(clips[i].size for i in idx)), dtype=np.float32)
        for row, i in enumerate(idx):
            buf[row, :clips[i].size] = clips[i]
        yield idx, buf


@pytest.fixture(params=["auto", "double", "single"])
def fft_precision(request):
    previous = F.set_fft_precision(request.param)
    yield request.param
    F.set_fft_precision(previous)


def test_all_fsdd_batched_equals_librosa_per_clip(clips, fft_precision):
    worst = {"mel": 0.0, "logmel": 0.0, "mfcc": 0.0, "centroid": 0.0, "rms": 0.0}
    for idx, buf in _batches(clips):
        mel = F.melspectrogram(y=buf, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
        logmel = F.power_to_db(mel, top_db=None)
        centroid = F.spectral_centroid(buf, sr=SR, n_fft=N_FFT, hop_length=HOP)
        rms = F.rms(y=buf, frame_length=N_FFT, hop_length=HOP)
        for row, i in enumerate(idx):
            y = clips[i]
            t = n_frames(y.size, frame_length=N_FFT, hop_length=HOP)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref_mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
                ref_mfcc = librosa.feature.mfcc(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, n_mfcc=N_MFCC)
                ref_cent = librosa.feature.spectral_centroid(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP)
                ref_rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP)
            assert ref_mel.shape[-1] == t
            m = mel[row, :, :t]
            big = ref_mel > 1e-6 * ref_mel.max()
            worst["mel"] = max(worst["mel"], float((np.abs(m - ref_mel)[big] / ref_mel[big]).max()))
            # per-file top_db clamp, as the job applies it to a batch of unrelated files
            db = logmel[row, :, :t]
            db = np.maximum(db, db.max() - 80.0)
            worst["logmel"] = max(worst["logmel"], float(np.abs(db - librosa.power_to_db(ref_mel)).max()))
            worst["mfcc"] = max(worst["mfcc"], float(np.abs(F.mfcc(S=db, n_mfcc=N_MFCC) - ref_mfcc).max()))
            c = centroid[row, :, :t]
            ok = ref_cent > 0
            worst["centroid"] = max(worst["centroid"], float((np.abs(c - ref_cent)[ok] / ref_cent[ok]).max()))
            r = rms[row, :, :t]
            ok = ref_rms > 1e-6 * ref_rms.max()
            worst["rms"] = max(worst["rms"], float((np.abs(r - ref_rms)[ok] / ref_rms[ok]).max()))
    assert worst["mel"] < 1e-4, worst
    assert worst["logmel"] < 2e-3, worst
    assert worst["mfcc"] < 5e-3, worst
    assert worst["centroid"] < 1e-3, worst
    assert worst["rms"] < 1e-3, worst
