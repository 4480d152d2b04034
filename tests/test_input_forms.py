"""The forms of input a notebook passes to featurelib: Python lists and buffers, integer PCM by
mistake, precomputed spectrograms of the wrong shape, a non-finite sample in one signal of a
batch, (n_samples, channels) arrays; and the memory of spectral_flatness on a long signal."""

from __future__ import annotations

import array
import tracemalloc
import warnings

import librosa
import numpy as np
import pytest

import featurelib
from featurelib import ParameterError

SR = 8000
SHORT = dict(n_fft=256, hop_length=80)


@pytest.fixture(scope="module")
def speech():
    """A second of a windowed tone in noise (any signal will do)."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(SR) + 0.01 * rng.standard_normal(SR)).astype(np.float32)


@pytest.mark.parametrize("values, words", [
    ((np.arange(4000) % 200 - 100).tolist(), "not int64"),  # integer PCM as a list: 90 dB too loud
    ([True, False] * 2000, "not bool"),
    (array.array("h", [1, -1] * 2000), "not int16"),
    ([[0.1, 0.2], [0.3]], "not a rectangular array"),
    (["a", "b"], "must hold numbers"),
])
def test_lists_and_buffers_that_are_not_audio_are_refused(values, words):
    with pytest.raises(ParameterError, match=words):
        featurelib.melspectrogram(y=values, sr=SR, **SHORT)
    with pytest.raises(ParameterError, match=words):
        featurelib.rms(y=values)


def test_lists_buffers_and_matrices_of_floats_are_computed_as_arrays(speech):
    expected = featurelib.melspectrogram(y=speech, sr=SR, **SHORT)
    for form in (speech.tolist(), array.array("f", speech), memoryview(speech)):
        got = featurelib.melspectrogram(y=form, sr=SR, **SHORT)
        assert got.dtype == np.float32 and np.array_equal(got, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # NumPy's, on np.matrix
        matrix = np.matrix(speech)
    as_matrix = featurelib.melspectrogram(y=matrix, sr=SR, **SHORT)
    assert as_matrix.shape == (1, *expected.shape) and np.array_equal(as_matrix[0], expected)


def test_an_unsupported_array_type_is_a_parameter_error():
    with pytest.raises(ParameterError, match="NumPy or CuPy"):
        featurelib.rms(y=object())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_one_non_finite_signal_does_not_spoil_the_others_of_a_batch(speech, bad):
    batch = np.stack([speech, speech[::-1], 0.5 * speech])
    batch[1, 1000] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's, on the bad row
        got = featurelib.mfcc(y=batch, sr=SR, n_mels=40, **SHORT)
    clean = featurelib.mfcc(y=batch[[0, 2]], sr=SR, n_mels=40, **SHORT)
    assert np.isfinite(got[[0, 2]]).all()
    np.testing.assert_allclose(got[[0, 2]], clean, atol=1e-4)
    assert not np.isfinite(got[1]).all()


def test_empty_batches_and_arrays_keep_their_shapes():
    assert featurelib.mfcc(y=np.zeros((0, 4000), np.float32), sr=SR, n_mels=40, **SHORT).shape == (0, 20, 51)
    assert featurelib.power_to_db(np.zeros((0, 5))).shape == (0, 5)
    assert featurelib.amplitude_to_db(np.zeros((3, 0))).shape == (3, 0)


def test_spectrogram_arguments_are_checked(speech):
    magnitude = np.abs(librosa.stft(speech, **SHORT))  # (Fortran order: the list is C order)
    np.testing.assert_allclose(featurelib.spectral_centroid(S=magnitude.tolist(), sr=SR, n_fft=256),
                               featurelib.spectral_centroid(S=magnitude, sr=SR, n_fft=256), rtol=1e-6)
    np.testing.assert_allclose(featurelib.rms(S=magnitude.tolist(), frame_length=256),
                               featurelib.rms(S=magnitude, frame_length=256), rtol=1e-6)
    for call in (lambda S: featurelib.spectral_centroid(S=S, sr=SR),
                 lambda S: featurelib.melspectrogram(S=S, sr=SR),
                 lambda S: featurelib.spectral_rolloff(S=S, sr=SR)):
        with pytest.raises(ParameterError, match=r"shape \(\.\.\., frequency bins, frames\)"):
            call(magnitude[:, 0])  # one frame's spectrum, 1-D
        with pytest.raises(ParameterError, match="1 row of frequency bins"):
            call(magnitude[:1])
    with pytest.raises(ParameterError, match="0 rows of mel bands"):
        featurelib.mfcc(S=np.zeros((0, 20), np.float32))


def test_rolloff_and_median_frequency_of_a_non_finite_frame_are_nan(speech):
    y = speech.copy()
    y[4000] = np.nan
    y[:800] = 0.0  # silent frames: 0 Hz, as librosa
    for feature in (featurelib.spectral_rolloff, featurelib.median_frequency):
        values = feature(y=y, sr=SR, **SHORT)[0]
        assert np.isnan(values[49:52]).all() and np.isfinite(np.delete(values, range(49, 52))).all()
        assert values[2] == 0.0


def test_samples_by_channels_warns_and_a_batch_does_not(speech):
    with pytest.warns(UserWarning, match=r"\(n_samples, channels\).*pass y\.T") as caught:
        featurelib.stft(speech[:, None])
    assert caught[0].filename == __file__  # points at the caller's line, not into featurelib
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        featurelib.melspectrogram(y=np.stack([speech] * 3), sr=SR, **SHORT)
        featurelib.stft(speech[None, :300], n_fft=2048)  # one short signal: librosa warns, not us


def test_spectral_flatness_of_a_long_signal_is_taken_a_chunk_at_a_time():
    y = (0.1 * np.random.default_rng(1).standard_normal(22050 * 60)).astype(np.float32)
    magnitude = np.abs(librosa.stft(y.astype(np.float64)))
    featurelib.spectral_flatness(y=y[:5000])  # window and caches
    tracemalloc.start()
    try:
        got = featurelib.spectral_flatness(y=y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the float64 copy of y and its padded frames, not the float64 spectrogram (21 MB) and its
    # three temporaries as large (91 MB in all before)
    assert peak < 8 * y.nbytes, peak / 2**20
    np.testing.assert_allclose(got, featurelib.spectral_flatness(S=magnitude), rtol=1e-5)
    np.testing.assert_allclose(got, librosa.feature.spectral_flatness(y=y), rtol=1e-3)
