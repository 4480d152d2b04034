"""featurelib.framing: frames past a row's last sound are not transformed, yet come out the same."""

from __future__ import annotations

import numpy as np
import pytest

import featurelib as F
from featurelib._backend import signal_ends
from featurelib.framing import map_stft

from conftest import SAMPLES_DIR


def _power(X):
    return X.real ** 2 + X.imag ** 2


def _log_power(X):  # a reduction whose value on a silent frame is not zero
    return np.log(X.real ** 2 + X.imag ** 2 + 1e-10)


def _padded_speech():
    """Length-sorted recorded clips zero-padded to the longest, plus a silent row."""
    import soundfile as sf

    clips = [sf.read(p, dtype="float32")[0] for p in sorted(SAMPLES_DIR.glob("*.wav"))[:12]]
    clips.sort(key=len)
    clips.append(np.zeros(300, dtype=np.float32))
    buf = np.zeros((len(clips), max(map(len, clips)) + 1000), dtype=np.float32)
    for row, y in enumerate(clips):
        buf[row, :len(y)] = y
    return buf


@pytest.mark.parametrize("center, pad_mode", [(True, "constant"), (False, "constant"),
                                              (True, "reflect")])
@pytest.mark.parametrize("reduce", [None, _power, _log_power])
def test_a_padded_batch_equals_each_row_transformed_alone(center, pad_mode, reduce):
    buf = _padded_speech()
    kw = dict(n_fft=256, hop_length=80, center=center, pad_mode=pad_mode)
    with F.fft_precision("single"):
        batch = map_stft(buf, reduce, **kw)
        for row in range(buf.shape[0]):
            alone = map_stft(buf[row:row + 1].copy(), reduce, **kw)[0]
            np.testing.assert_array_equal(batch[row], alone)


def test_a_long_row_with_a_silent_tail_matches_librosa():
    import librosa

    rng = np.random.default_rng(3)
    y = np.zeros(22050 * 30, dtype=np.float32)
    y[:22050 * 4] = rng.standard_normal(22050 * 4).astype(np.float32) * 0.1
    ours = F.melspectrogram(y=y, sr=22050)
    ref = librosa.feature.melspectrogram(y=y, sr=22050)
    assert ours.shape == ref.shape
    assert np.all(ours[:, 22050 * 4 // 512 + 5:] == 0)
    big = ref > 1e-6 * ref.max()
    assert np.max(np.abs(ours[big] - ref[big]) / ref[big]) < 1e-4


@pytest.mark.parametrize("xp_name", ["numpy", "array_api_strict"])
def test_signal_ends_bound_the_last_sound_within_eight_samples(xp_name):
    xp = pytest.importorskip(xp_name)
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 63, 200):
        y = np.zeros((40, n), dtype=np.float32)
        last = rng.integers(0, n + 1, size=40)  # 0: a silent row
        for row, end in enumerate(last):
            if end:
                y[row, rng.integers(0, end)] = 0.5
                y[row, end - 1] = -1.0
        ends = signal_ends(xp.asarray(y))
        assert np.all(ends >= last) and np.all(ends - last < 8)
        assert np.all((ends == 0) == (last == 0))
        assert np.all(ends <= n)
