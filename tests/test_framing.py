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


@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric", "edge", "constant"])
@pytest.mark.parametrize("n_fft, hop_length", [(64, 50), (64, 33), (256, 200), (2048, 1100), (64, 16)])
def test_the_last_frames_of_a_hop_over_half_a_frame_match_librosa(pad_mode, n_fft, hop_length):
    """librosa pads its last frames from a slice of the signal's tail; with a hop over half a
    frame that slice can be shorter than the reflection needs, and NumPy reflects it again:
    featurelib pads those signals the same way (the last frame was 1.5e-4 of the peak off)."""
    import librosa

    rng = np.random.default_rng(1)
    for n in range(3 * n_fft, 3 * n_fft + hop_length + 1):  # every residue: the slice is short at one
        y = rng.standard_normal(n).astype(np.float32)
        want = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length, pad_mode=pad_mode))
        got = np.abs(F.stft(y, n_fft=n_fft, hop_length=hop_length, pad_mode=pad_mode))
        assert got.shape == want.shape
        assert float(np.max(np.abs(got - want))) < 1e-5 * float(want.max()), n


@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric"])
def test_a_one_sample_signal_is_reflected_as_numpy_reflects_it(pad_mode):
    """np.pad reflects a single sample as itself; featurelib refused the signal."""
    import warnings

    import librosa

    y = np.array([0.3], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa: n_fft too large for the signal
        want = librosa.stft(y, n_fft=4, pad_mode=pad_mode)
    np.testing.assert_allclose(F.stft(y, n_fft=4, pad_mode=pad_mode), want, atol=1e-7)
    np.testing.assert_allclose(F.rms(y=y, frame_length=4, pad_mode=pad_mode),
                               librosa.feature.rms(y=y, frame_length=4, pad_mode=pad_mode), rtol=1e-6)


ALL_PAD_MODES = ["constant", "edge", "linear_ramp", "reflect", "symmetric", "wrap", "maximum", "mean",
                 "median", "minimum"]


@pytest.mark.parametrize("xp_name", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("mode", ALL_PAD_MODES)
def test_pad_signal_pads_as_np_pad(xp_name, mode):
    from featurelib.framing import pad_signal

    xp = pytest.importorskip(xp_name)
    rng = np.random.default_rng(2)
    for n in (1, 2, 5, 17):
        for left, right in ((0, 0), (1, 0), (0, 3), (4, 4), (20, 7), (3, 24), (21, 4)):
            y = rng.standard_normal((2, n)).astype(np.float32)
            got = np.asarray(pad_signal(xp.asarray(y), left, right, mode=mode))
            np.testing.assert_allclose(got, np.pad(y, ((0, 0), (left, right)), mode=mode), atol=1e-6)


@pytest.mark.parametrize("mode", ALL_PAD_MODES)
def test_rms_takes_every_padding_librosa_takes(mode):
    """librosa's rms pads its signal with np.pad in any mode; featurelib refused all but four.
    A mode that pads with a ramp or a statistic pads the signal before it is squared."""
    import librosa

    y = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    got = F.rms(y=y, frame_length=512, hop_length=128, pad_mode=mode)
    want = librosa.feature.rms(y=y, frame_length=512, hop_length=128, pad_mode=mode)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_stft_takes_a_linear_ramp_and_refuses_what_librosa_refuses():
    import librosa

    y = np.random.default_rng(4).standard_normal(5000).astype(np.float32)
    want = np.abs(librosa.stft(y, n_fft=512, pad_mode="linear_ramp"))
    got = np.abs(F.stft(y, n_fft=512, pad_mode="linear_ramp"))
    assert float(np.max(np.abs(got - want))) < 1e-5 * float(want.max())
    for mode in ("wrap", "maximum", "mean", "median", "minimum"):
        with pytest.raises(librosa.util.exceptions.ParameterError):
            librosa.stft(y, pad_mode=mode)
        with pytest.raises(F.ParameterError, match="not supported by the STFT"):
            F.stft(y, pad_mode=mode)
        with pytest.raises(F.ParameterError, match="not supported by the STFT"):
            F.melspectrogram(y=y, pad_mode=mode)


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


def test_transposed_and_fortran_batches_equal_c_ordered_ones():
    """``sf.read(...)[0].T`` of a stereo file is a Fortran-ordered (channels, n) view: every STFT
    feature takes it (the silent-tail search viewed its mask as 8-byte words and failed)."""
    rng = np.random.default_rng(0)
    frames_first = rng.standard_normal((4000, 3)).astype(np.float32)
    for y in (frames_first.T, np.asfortranarray(frames_first.T)):
        expected = np.ascontiguousarray(y)
        np.testing.assert_array_equal(F.stft(y, n_fft=256, hop_length=64), F.stft(expected, n_fft=256, hop_length=64))
        np.testing.assert_array_equal(F.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=64, n_mels=20),
                                      F.melspectrogram(y=expected, sr=8000, n_fft=256, hop_length=64, n_mels=20))
        assert F.stft(y, n_fft=256, hop_length=64, center=False).shape == (3, 129, 59)


def test_an_empty_signal_gives_one_frame_as_librosa():
    for fn in (lambda y: F.stft(y, n_fft=256), lambda y: F.spectral_centroid(y=y, sr=8000, n_fft=256),
               lambda y: F.melspectrogram(y=y, sr=8000, n_fft=256, n_mels=20)):
        assert fn(np.zeros(0, np.float32)).shape[-1] == 1
        assert fn(np.zeros((2, 0), np.float32)).shape[0] == 2


def test_numpy_integer_hop_and_a_bad_win_length():
    y = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    for fn in (F.rms, F.zero_crossing_rate, F.amplitude_envelope, F.short_time_energy):
        assert fn(y, frame_length=512, hop_length=np.int64(128)).shape == (1, 32)
    with pytest.raises(F.ParameterError, match="win_length=0"):
        F.stft(y, n_fft=256, win_length=0)


@pytest.mark.parametrize("fn", [F.stft, lambda y: F.melspectrogram(y=y, sr=8000), lambda y: F.rms(y=y),
                                lambda y: F.zero_crossing_rate(y), lambda y: F.spectral_centroid(y=y, sr=8000),
                                lambda y: F.mfcc(y=y, sr=8000)])
def test_integer_or_scalar_audio_is_refused_as_librosa_refuses_it(fn):
    """int16 PCM samples are not audio in [-1, 1]: computing on them silently gave features
    32,768 times too large; librosa refuses them too. A 0-d value is no signal."""
    with pytest.raises(F.ParameterError, match="floating-point"):
        fn(np.zeros(4096, dtype=np.int16))
    with pytest.raises(F.ParameterError, match="at least one dimension"):
        fn(np.float32(1.0))
    assert fn(np.zeros(4096, dtype=np.float32)) is not None


def test_stft_takes_librosas_dtype():
    import librosa

    y = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    got = F.stft(y, n_fft=512, dtype=np.complex128)
    expected = librosa.stft(y, n_fft=512, dtype=np.complex128)
    assert got.dtype == expected.dtype == np.complex128
    np.testing.assert_allclose(np.abs(got), np.abs(expected), atol=1e-5 * np.abs(expected).max())
    with pytest.raises(F.ParameterError, match="not a complex type"):
        F.stft(y, dtype=np.float32)


@pytest.mark.parametrize("sr", [-1, 0, float("nan"), float("inf")])
def test_a_mel_of_no_sampling_rate_is_refused(sr):
    y = np.zeros(4000, dtype=np.float32)
    with pytest.raises(F.ParameterError, match="positive sampling rate"):
        F.melspectrogram(y=y, sr=sr)
    with pytest.raises(F.ParameterError, match="positive sampling rate"):
        F.mfcc(y=y, sr=sr)


@pytest.mark.parametrize("strict", [False, True])
def test_a_refined_frame_replaces_only_the_columns_named(strict):
    """map_stft(refine_columns=...): frames transformed again in float64 replace the judged
    columns; the others keep their float32 values (the job's non-mel features)."""
    import array_api_strict as xs

    y = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
    arr, xp = (xs.asarray(y), xs) if strict else (y, np)

    def reduce(X):
        a = xp.abs(X)
        return xp.concat([a[..., :3], a[..., :3]], axis=-1)

    plain = np.asarray(map_stft(arr, reduce, n_fft=256, hop_length=80))
    every = lambda X, R: xp.ones(R.shape[:-1], dtype=xp.bool)  # noqa: E731
    redone = np.asarray(map_stft(arr, reduce, n_fft=256, hop_length=80, refine=every, refine_columns=[0, 1, 2]))
    assert np.array_equal(redone[..., 3:], plain[..., 3:])
    assert not np.array_equal(redone[..., :3], plain[..., :3])
    assert np.allclose(redone[..., :3], plain[..., :3], rtol=1e-5, atol=1e-5)
