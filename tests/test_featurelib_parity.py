"""featurelib against librosa: same shapes and frame counts, numbers within the SPEC's tolerances.

Every test runs on each array namespace: NumPy, ``array_api_strict`` (the standard and nothing
more, which is what shows the code is namespace-generic) and CuPy where CUDA is present.
"""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest

import featurelib as F
from featurelib._backend import to_numpy
from featurelib.exceptions import ParameterError

from conftest import SAMPLES_DIR

# --------------------------------------------------------------------------- namespaces


def _cupy_or_skip():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # no driver, no device
        pytest.skip(f"CUDA not available: {exc}")
    return cupy


@pytest.fixture(autouse=True, params=["auto", "double"])
def fft_precision(request):
    """Every parity case under both exact FFT precisions: "auto" (the default: float32, frames at
    risk redone in float64) and "double" (float64 throughout, as librosa)."""
    previous = F.set_fft_precision(request.param)
    yield request.param
    F.set_fft_precision(previous)


@pytest.fixture(params=["numpy", "array_api_strict", "cupy"])
def xp(request):
    """Converts NumPy test signals to the namespace under test."""
    if request.param == "numpy":
        return np.asarray
    if request.param == "array_api_strict":
        strict = pytest.importorskip("array_api_strict")
        return strict.asarray
    cupy = _cupy_or_skip()
    return cupy.asarray


# --------------------------------------------------------------------------- signals

RATES = [8000, 16000, 22050, 44100, 48000]


def _synthetic(sr: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(sr)
    t = np.arange(int(0.5 * sr)) / sr
    return {
        "tone": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "chirp": librosa.chirp(fmin=100, fmax=sr / 2.5, sr=sr, duration=0.5).astype(np.float32),
        "noise": (0.1 * rng.standard_normal(t.size)).astype(np.float32),
        "silence": np.zeros(t.size, dtype=np.float32),
        "clipped": np.clip(3 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32),
        "one_sample": np.array([0.25], dtype=np.float32),
        "shorter_than_frame": (0.3 * rng.standard_normal(100)).astype(np.float32),
    }


SETTINGS = {
    "librosa_defaults": {},
    "short_clip": {"n_fft": 256, "hop_length": 80},
    "speech_16k": {"n_fft": 512, "hop_length": 160, "win_length": 400},
}


def _fsdd_signals(count: int = 12) -> list[np.ndarray]:
    paths = sorted(SAMPLES_DIR.glob("*.wav"))[:: max(1, 120 // count)][:count]
    return [librosa.load(p, sr=None)[0] for p in paths]


FSDD = _fsdd_signals()


def _signals(sr):
    """(name, y) pairs: synthetic signals, a stereo pair, a (2, 2, n) batch, FSDD at 8 kHz."""
    syn = _synthetic(sr)
    out = list(syn.items())
    out.append(("stereo", np.stack([syn["tone"], syn["noise"]])))
    out.append(("batch", np.stack([np.stack([syn["chirp"], syn["clipped"]]),
                                   np.stack([syn["silence"], syn["tone"]])])))
    if sr == 8000:
        out += [(f"fsdd{i}", y) for i, y in enumerate(FSDD)]
    return out


CASES = [(sr, name, y) for sr in RATES for name, y in _signals(sr)]
CASE_IDS = [f"{sr}-{name}" for sr, name, _ in CASES]


# --------------------------------------------------------------------------- comparisons


def assert_abs(ours, ref, tol, *, scale=1.0):
    ours = to_numpy(ours)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    err = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol * scale:.3g}"


def assert_rel(ours, ref, tol, *, floor=1e-6):
    """Relative error where |ref| is above ``floor`` of its peak; absolute (scaled) elsewhere."""
    ours = to_numpy(ours).astype(np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if ref.size == 0:
        return
    peak = float(np.max(np.abs(ref)))
    big = np.abs(ref) > floor * peak
    if big.any():
        rel = np.abs(ours[big] - ref[big]) / np.abs(ref[big])
        assert rel.max() <= tol, f"max relative error {rel.max():.3g} > {tol}"
    small_err = np.abs(ours[~big] - ref[~big])
    if small_err.size:
        assert small_err.max() <= tol * max(peak, 1e-30) + 1e-12


def assert_threshold_feature(ours, ref, S_ref, tol=1e-3):
    """Roll-off style features pick a bin by a threshold: equal, except where float32 rounding
    legitimately flips the bin (the cumulative sum sits within 1e-4 of the threshold)."""
    ours = to_numpy(ours).astype(np.float64)
    assert ours.shape == ref.shape
    bad = ~np.isclose(ours, ref, rtol=tol, atol=1e-6)
    if bad.any():
        assert bad.mean() < 0.01, f"{bad.sum()} of {bad.size} frames differ"


@pytest.fixture(autouse=True)
def _quiet_librosa():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about n_fft > len(y)
        yield


def _stft_kwargs(setting):
    return dict(SETTINGS[setting])


def _frame_kwargs(setting):
    kw = SETTINGS[setting]
    return {"frame_length": kw.get("n_fft", 2048), "hop_length": kw.get("hop_length", 512)}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize(("sr", "name", "y"), CASES, ids=CASE_IDS)
def test_stft_magnitude(xp, sr, name, y, setting):
    kw = _stft_kwargs(setting)
    ref = np.abs(librosa.stft(y, **kw))
    ours = F.stft(xp(y), **kw)
    assert_abs(np.abs(to_numpy(ours)), ref, 1e-5, scale=max(ref.max(), 1e-12))


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize(("sr", "name", "y"), CASES, ids=CASE_IDS)
def test_mel_logmel_mfcc(xp, sr, name, y, setting):
    kw = _stft_kwargs(setting)
    n_mels = 40 if kw.get("n_fft", 2048) <= 256 else 128
    mel_ref = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=n_mels, **kw)
    mel = F.melspectrogram(y=xp(y), sr=sr, n_mels=n_mels, **kw)
    assert_rel(mel, mel_ref, 1e-4)
    assert_abs(F.power_to_db(mel), librosa.power_to_db(mel_ref), 2e-3)
    mfcc_ref = librosa.feature.mfcc(y=y, sr=sr, n_mels=n_mels, **kw)
    assert_abs(F.mfcc(y=xp(y), sr=sr, n_mels=n_mels, **kw), mfcc_ref, 5e-3)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize(("sr", "name", "y"), CASES, ids=CASE_IDS)
def test_time_domain_features(xp, sr, name, y, setting):
    fk = _frame_kwargs(setting)
    assert_rel(F.rms(y=xp(y), **fk), librosa.feature.rms(y=y, **fk), 1e-3)
    assert_rel(F.zero_crossing_rate(xp(y), **fk), librosa.feature.zero_crossing_rate(y, **fk), 1e-3)
    S = np.abs(librosa.stft(y, n_fft=fk["frame_length"], hop_length=fk["hop_length"]))
    assert_rel(F.rms(S=xp(S), **fk), librosa.feature.rms(S=S, **fk), 1e-3)
    # the features librosa lacks, against their definitions on librosa's frames
    padded = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(fk["frame_length"] // 2,) * 2])
    frames = librosa.util.frame(padded, frame_length=fk["frame_length"], hop_length=fk["hop_length"])
    assert_rel(F.amplitude_envelope(xp(y), **fk), np.abs(frames).max(axis=-2, keepdims=True), 1e-6)
    assert_rel(F.short_time_energy(xp(y), **fk), (frames.astype(np.float64) ** 2).sum(axis=-2, keepdims=True), 1e-3)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize(("sr", "name", "y"), CASES, ids=CASE_IDS)
def test_spectral_features(xp, sr, name, y, setting):
    kw = _stft_kwargs(setting)
    yy = xp(y)
    assert_rel(F.spectral_centroid(yy, sr=sr, **kw), librosa.feature.spectral_centroid(y=y, sr=sr, **kw), 1e-3)
    assert_rel(F.spectral_bandwidth(yy, sr=sr, **kw), librosa.feature.spectral_bandwidth(y=y, sr=sr, **kw), 1e-3)
    assert_rel(F.spectral_flatness(yy, **kw), librosa.feature.spectral_flatness(y=y, **kw), 1e-3)
    S = np.abs(librosa.stft(y, **kw))
    assert_threshold_feature(F.spectral_rolloff(yy, sr=sr, **kw),
                             librosa.feature.spectral_rolloff(y=y, sr=sr, **kw), S)
    # from a precomputed magnitude spectrogram, as the extract job calls them
    SS = xp(S)
    assert_rel(F.spectral_centroid(S=SS, sr=sr), librosa.feature.spectral_centroid(S=S, sr=sr), 1e-3)
    assert_rel(F.spectral_flatness(S=SS), librosa.feature.spectral_flatness(S=S), 1e-3)


def test_rolloff_near_a_bin_edge_is_summed_again_in_librosa_s_order():
    """CuPy's parallel scan adds a frame's bins in another order than NumPy and librosa (bin
    after bin, in float32). At frame 29 of 48 kHz noise the cumulative magnitude passes 3e-8 of
    the total from the 85 % threshold, and the other order picks the next bin (seen on an H200).
    Those frames are summed again on the host in librosa's order; here the other order is a
    float64 sum, which picks the next bin there as CuPy did."""
    from featurelib.frequency import (
        _first_bin_reaching,
        rolloff_and_near_edge,
        rolloff_frames_summed_in_order,
    )

    sr, kw = 48000, {"n_fft": 2048, "hop_length": 512}
    y = _synthetic(sr)["noise"]
    ref = librosa.feature.spectral_rolloff(y=y, sr=sr, **kw)
    S = np.abs(librosa.stft(y, **kw))  # float32, as librosa sums it
    f = librosa.fft_frequencies(sr=sr, n_fft=2048)[:, None]
    other_order = _first_bin_reaching(S.astype(np.float64), 0.85, f, np).astype(np.float32)
    assert other_order[0, 29] != ref[0, 29]  # the frame the order moves
    _, near = rolloff_and_near_edge(S, 0.85, f, np)
    assert near[0, 29]
    again = rolloff_frames_summed_in_order(other_order, near, S, f, np, roll_percent=0.85)
    np.testing.assert_array_equal(again, ref)


def test_rolloff_s_cupy_path_equals_librosa_on_every_frame(monkeypatch):
    """The path spectral_rolloff takes on CuPy (every FFT precision: near-edge frames taken
    again on the host as librosa takes them), run here on NumPy arrays: librosa's value on every
    frame, from the signal and from a given spectrogram, at 48 kHz noise's near-edge frame too."""
    import featurelib.frequency as frequency

    monkeypatch.setattr(frequency, "is_cupy_array", lambda x: True)
    kw = {"n_fft": 2048, "hop_length": 512}
    for sr, y in [(48000, _synthetic(48000)["noise"]), (8000, np.stack(FSDD[:1] * 2))]:
        ref = librosa.feature.spectral_rolloff(y=y, sr=sr, **kw)
        np.testing.assert_array_equal(F.spectral_rolloff(y, sr=sr, **kw), ref)
        S = np.abs(librosa.stft(y, **kw))
        np.testing.assert_array_equal(F.spectral_rolloff(S=S, sr=sr), librosa.feature.spectral_rolloff(S=S, sr=sr))


@pytest.mark.parametrize(("sr", "name", "y"), [c for c in CASES if c[0] in (8000, 44100)],
                         ids=[i for c, i in zip(CASES, CASE_IDS) if c[0] in (8000, 44100)])
def test_power_spectrum_features_match_their_definition(xp, sr, name, y):
    kw = {"n_fft": 512, "hop_length": 128}
    P = (np.abs(librosa.stft(y, **kw)) ** 2).astype(np.float64)
    f = librosa.fft_frequencies(sr=sr, n_fft=512)[:, None]
    total = P.sum(axis=-2, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    assert_rel(F.mean_frequency(xp(y), sr=sr, **kw), (f * P).sum(axis=-2, keepdims=True) / safe, 1e-3)
    cum = np.cumsum(P, axis=-2)
    idx = np.argmax(cum >= 0.5 * cum[..., -1:, :], axis=-2)[..., None, :]
    assert_threshold_feature(F.median_frequency(xp(y), sr=sr, **kw), np.take(f[:, 0], idx), P)
    low = P[..., f[:, 0] < 1000.0, :].sum(axis=-2, keepdims=True)
    high = P[..., f[:, 0] >= 1000.0, :].sum(axis=-2, keepdims=True)
    ours = to_numpy(F.band_energy_ratio(xp(y), sr=sr, split_frequency=1000.0, **kw))
    ref = low / np.maximum(high, 1e-10)
    assert ours.shape == ref.shape
    # float32 spectra know a band's power to ~1e-7 of the frame's total: compare the ratio where
    # both bands hold a measurable share of it
    measurable = np.minimum(low, high) > 1e-4 * total
    np.testing.assert_allclose(ours[measurable], ref[measurable], rtol=1e-3)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("mode", ["interp", "nearest", "mirror", "constant", "wrap"])
def test_delta(xp, order, mode):
    M = librosa.feature.mfcc(y=FSDD[0], sr=8000, n_fft=256, hop_length=80, n_mels=40)
    assert_abs(F.delta(xp(M), order=order, mode=mode), librosa.feature.delta(M, order=order, mode=mode), 1e-3)
    assert_abs(F.delta(xp(M), width=3, axis=-2, mode=mode),
               librosa.feature.delta(M, width=3, axis=-2, mode=mode), 1e-3)


@pytest.mark.parametrize("width", [3, 9])
def test_delta_constant_mode_takes_librosas_cval(xp, width):
    """librosa passes ``cval`` on to savgol_filter (its **kwargs): the value past the edges."""
    M = librosa.feature.mfcc(y=FSDD[0], sr=8000, n_fft=256, hop_length=80, n_mels=40)
    assert_abs(F.delta(xp(M), width=width, mode="constant", cval=-250.0),
               librosa.feature.delta(M, width=width, mode="constant", cval=-250.0), 1e-3)


def test_delta_of_an_order_the_width_cannot_fit_is_a_parameter_error():
    """order >= width: scipy's ValueError, as librosa lets it through; featurelib names both."""
    M = np.zeros((20, 30), np.float32)
    with pytest.raises(ValueError):
        librosa.feature.delta(M, width=3, order=3)
    with pytest.raises(F.ParameterError, match="order=3 must be less than width=3"):
        F.delta(M, width=3, order=3)


@pytest.mark.parametrize("n", [1, 79, 80, 255, 256, 257, 8000])
@pytest.mark.parametrize(("n_fft", "hop"), [(256, 80), (2048, 512), (255, 64)])
def test_frame_counts_match_librosa(xp, n, n_fft, hop):
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = librosa.stft(y, n_fft=n_fft, hop_length=hop).shape
    assert F.stft(xp(y), n_fft=n_fft, hop_length=hop).shape == expected
    assert F.framing.n_frames(n, frame_length=n_fft, hop_length=hop) == expected[-1]
    for feature in (F.rms, F.zero_crossing_rate, F.amplitude_envelope, F.short_time_energy):
        assert feature(xp(y), frame_length=n_fft, hop_length=hop).shape == (1, expected[-1])


def test_frame_matches_librosa(xp):
    y = np.arange(1000, dtype=np.float32)
    assert_abs(F.frame(xp(y), frame_length=256, hop_length=80),
               librosa.util.frame(y, frame_length=256, hop_length=80), 0)
    with pytest.raises(ParameterError):
        F.frame(xp(y[:10]), frame_length=256, hop_length=80)


@pytest.mark.parametrize(("n_fft", "hop", "win"), [(512, 128, None), (256, 80, None), (2048, 512, 1024)])
def test_istft_round_trip(xp, n_fft, hop, win):
    y = np.random.default_rng(0).standard_normal((2, 5000)).astype(np.float32)
    S = F.stft(xp(y), n_fft=n_fft, hop_length=hop, win_length=win)
    back = F.istft(S, hop_length=hop, win_length=win, n_fft=n_fft, length=5000)
    assert_abs(back, y, 1e-5)
    ref = librosa.istft(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win),
                        hop_length=hop, win_length=win, n_fft=n_fft)
    assert_abs(F.istft(S, hop_length=hop, win_length=win, n_fft=n_fft), ref, 1e-5)


def test_results_stay_in_the_input_namespace(xp):
    y = xp(FSDD[1])
    for out in (F.stft(y, n_fft=256, hop_length=80), F.mfcc(y=y, sr=8000, n_fft=256, hop_length=80),
                F.spectral_centroid(y, sr=8000, n_fft=256, hop_length=80), F.rms(y=y)):
        assert type(out).__module__.split(".")[0] == type(y).__module__.split(".")[0]


def test_float32_in_float32_out():
    y = FSDD[2]
    assert F.stft(y, n_fft=256).dtype == np.complex64
    for out in (F.melspectrogram(y=y, sr=8000), F.mfcc(y=y, sr=8000), F.rms(y=y),
                F.spectral_centroid(y, sr=8000), F.spectral_bandwidth(y, sr=8000),
                F.zero_crossing_rate(y)):
        assert out.dtype == np.float32


@pytest.mark.parametrize(("sr", "signal"), [(48000, "10 Hz"), (96000, "5 Hz"), (192000, "20 Hz"),
                                         (44100, "dc"), (22050, "10 Hz then 1 kHz")])
def test_centroid_of_infrasonic_tones_and_dc(xp, sr, signal):
    """A centroid near 0 Hz (a 3-20 Hz tone, a DC offset) at the default n_fft: the float32 FFT's
    rounding floor pulled it 1.0-1.4e-3 up; "auto" takes such frames again in float64."""
    t = np.arange(sr) / sr
    if signal == "dc":
        y = 0.5 + 1e-4 * np.random.default_rng(0).standard_normal(sr)
    elif signal == "10 Hz then 1 kHz":
        y = 0.5 * np.sin(2 * np.pi * np.where(t < 0.5, 10.0, 1000.0) * t)
    else:
        y = 0.5 * np.sin(2 * np.pi * float(signal.split()[0]) * t)
    y = np.stack([y, 0.1 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)  # a batch: one row low
    assert_rel(F.spectral_centroid(y=xp(y), sr=sr), librosa.feature.spectral_centroid(y=y, sr=sr), 1e-3)


def test_half_precision_audio_is_computed_in_float32():
    """float16 samples are promoted (in float16 the window and FFT put log-mel 2.6 dB off)."""
    y = librosa.chirp(fmin=100, fmax=6000, sr=16000, duration=0.5).astype(np.float16)
    assert F.stft(y, n_fft=512).dtype == np.complex64
    got = F.power_to_db(F.melspectrogram(y=y, sr=16000, n_fft=512))
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512))
    assert got.dtype == np.float32 and np.abs(got - ref).max() < 2e-3
    assert np.abs(F.mfcc(y=y, sr=16000) - librosa.feature.mfcc(y=y, sr=16000)).max() < 5e-3


@pytest.mark.parametrize("call", [
    lambda: F.stft(np.zeros(100, np.float32), n_fft=0),
    lambda: F.stft(np.zeros(100, np.float32), hop_length=0),
    lambda: F.stft(np.zeros(100, np.float32), n_fft=256, win_length=512),
    lambda: F.stft(np.zeros(100, np.float32), n_fft=256, center=False),
    lambda: F.stft(np.zeros(100, np.float32), pad_mode="wrap"),
    lambda: F.stft(np.zeros(100, np.float32), window="no-such-window"),
    lambda: F.melspectrogram(),
    lambda: F.mfcc(y=np.zeros(1000, np.float32), lifter=-1),
    lambda: F.power_to_db(np.ones(3), amin=0),
    lambda: F.power_to_db(np.ones(3), top_db=-1),
    lambda: F.delta(np.ones((3, 5)), width=4),
    lambda: F.delta(np.ones((3, 5))),
    lambda: F.spectral_rolloff(np.zeros(100, np.float32), roll_percent=1.5),
    lambda: F.spectral_centroid(S=-np.ones((129, 3), np.float32)),
    lambda: F.band_energy_ratio(np.zeros(100, np.float32), sr=8000, split_frequency=5000),
    lambda: F.stft(np.zeros(100, dtype=np.complex64)),
    lambda: F.istft(F.stft(np.zeros(1000, np.float32), n_fft=256), length=-5),
    lambda: F.mfcc(y=np.zeros(1000, np.float32), n_mfcc=-1),
])
def test_bad_arguments_raise_parameter_error(call):
    with pytest.raises(ParameterError):
        call()


def test_snr_with_and_without_a_noise_reference():
    rng = np.random.default_rng(0)
    sr = 16000
    noise = (0.01 * rng.standard_normal(2 * sr)).astype(np.float32)
    tone = np.zeros(2 * sr, dtype=np.float32)
    tone[sr // 2: 3 * sr // 2] = np.sin(2 * np.pi * 440 * np.arange(sr) / sr)  # a pause either side
    mixed = tone + noise
    expected = 10 * np.log10(np.mean(mixed.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert float(F.snr(mixed, noise=noise)) == pytest.approx(expected, rel=1e-4)
    estimate = float(F.snr(mixed, frame_length=512, hop_length=256))
    true_snr = 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(estimate - true_snr) < 1.5
    batch = F.snr(np.stack([mixed, mixed]), noise=noise)
    assert batch.shape == (2,)


@pytest.mark.parametrize(("win_length", "n_fft"), [(1, 4), (2, 2), (255, 255), (256, 256), (400, 512), (2048, 2048)])
@pytest.mark.parametrize("window", ["hann", "hamming", ("kaiser", 8.0), ("general_cosine", [0.5, 0.5])])
def test_window_equals_librosa(window, win_length, n_fft):
    ref = librosa.util.pad_center(librosa.filters.get_window(window, win_length, fftbins=True), size=n_fft)
    np.testing.assert_allclose(F.get_window(window, win_length, n_fft=n_fft), ref, atol=1e-15)


@pytest.mark.parametrize(("sr", "n_fft", "n_mels", "extra"), [
    (44100, 2048, 128, {}), (22050, 2048, 128, {"htk": True}), (16000, 1024, 64, {"fmin": 50.0, "fmax": 7000.0}),
    (48000, 4096, 256, {"norm": None}), (8000, 256, 40, {}), (8000, 2048, 128, {}),  # empty high bands
    (44100, 2048, 3, {}),
])
def test_project_mel_equals_the_dense_product(xp, sr, n_fft, n_mels, extra):
    """The banded mel product (band groups times the bins they read) equals ``P @ basis.T``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about empty filters at (8000, 2048, 128)
        basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, **extra)
        P = np.random.default_rng(n_fft).random((3, 7, 1 + n_fft // 2)).astype(np.float32) ** 4
        ours = to_numpy(F.project_mel(xp(P), sr=sr, n_fft=n_fft, n_mels=n_mels, **extra))
        via_s = to_numpy(F.melspectrogram(S=xp(np.ascontiguousarray(np.swapaxes(P, -1, -2))), sr=sr,
                                          n_mels=n_mels, **extra))
    dense = P.astype(np.float64) @ basis.T.astype(np.float64)
    assert ours.shape == dense.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, dense, rtol=2e-5, atol=1e-6 * dense.max())
    np.testing.assert_allclose(np.swapaxes(via_s, -1, -2), dense, rtol=2e-5, atol=1e-6 * dense.max())
    given = to_numpy(F.project_mel(xp(P), basis=basis))  # a shipped basis, no librosa call
    np.testing.assert_allclose(given, dense, rtol=2e-5, atol=1e-6 * dense.max())
    with pytest.raises(ParameterError):
        F.project_mel(xp(P[..., :-1]), sr=sr, n_fft=n_fft, n_mels=n_mels, **extra)
    with pytest.raises(ParameterError):
        F.project_mel(xp(P[..., :-1]), basis=basis)


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000, 11025.5])
@pytest.mark.parametrize(("n_fft", "n_mels"), [(256, 40), (512, 64), (2048, 128), (1023, 20), (4096, 256)])
@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None, 1.0, 2, np.inf])
@pytest.mark.parametrize(("fmin", "fmax"), [(0.0, None), (50.0, 3900.0), (1500.0, None)])
def test_mel_filters_are_librosas_bit_for_bit(sr, n_fft, n_mels, htk, norm, fmin, fmax):
    """featurelib builds the filterbank without importing librosa (0.85 s a job): same bits."""
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        F.spectrum._cached_mel.cache_clear()
        ours = F.mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    with warnings.catch_warnings(record=True) as ref_warned:
        warnings.simplefilter("always")
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                                  norm=norm, dtype=np.float64)
    np.testing.assert_array_equal(ours, ref)
    assert bool(ours_warned) == bool(ref_warned)  # the empty-filter warning where librosa warns


def test_mel_filters_do_not_import_librosa():
    import subprocess
    import sys

    code = ("import sys, featurelib; featurelib.mel_filters(sr=16000, n_fft=512, n_mels=40); "
            "print('librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mel_filters_bad_norm():
    with pytest.raises(ParameterError):
        F.mel_filters(sr=16000, n_fft=512, norm="bogus")


def test_mel_of_a_given_odd_n_fft_spectrogram_keeps_n_fft():
    """``melspectrogram(S=..., n_fft=511)``: librosa keeps an n_fft that fits S (256 bins); the
    mel basis is built on its bin frequencies, not those of n_fft 510."""
    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    S = np.abs(librosa.stft(y, n_fft=511, hop_length=128)) ** 2
    got = F.melspectrogram(S=S, sr=16000, n_fft=511, n_mels=40)
    ref = librosa.feature.melspectrogram(S=S, sr=16000, n_fft=511, n_mels=40)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_db_conversions_take_lists_and_arrays_of_references():
    np.testing.assert_allclose(F.power_to_db([1.0, 0.1], top_db=None), [0.0, -10.0], atol=1e-6)
    np.testing.assert_allclose(F.amplitude_to_db([1.0, 0.1], top_db=None), [0.0, -20.0], atol=1e-6)
    S = np.abs(np.random.default_rng(1).standard_normal((129, 50))).astype(np.float32) ** 2
    per_bin = S.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(F.power_to_db(S, ref=per_bin), librosa.power_to_db(S, ref=per_bin), atol=2e-3)
    np.testing.assert_allclose(F.amplitude_to_db(np.sqrt(S), ref=np.sqrt(per_bin)),
                               librosa.amplitude_to_db(np.sqrt(S), ref=np.sqrt(per_bin)), atol=2e-3)


@pytest.mark.parametrize("kwargs", [{"pad": True}, {"ref_magnitude": np.max, "threshold": 0.01},
                                    {"threshold": -0.1}, {"threshold": -0.1, "zero_pos": False},
                                    {"ref_magnitude": 2.0, "threshold": 0.01},
                                    {"zero_pos": False, "pad": True, "threshold": 0.005}])
def test_zero_crossing_rate_takes_librosa_s_zero_crossings_options(kwargs):
    """``ref_magnitude`` and ``pad`` (librosa passes them on to ``zero_crossings``)."""
    y = (np.random.default_rng(0).standard_normal(20000) * 0.1).astype(np.float32)
    y[5000:8000] *= 1e-4  # a quiet stretch, where a relative threshold decides
    got = F.zero_crossing_rate(y, frame_length=512, hop_length=128, **kwargs)
    ref = librosa.feature.zero_crossing_rate(y, frame_length=512, hop_length=128, **kwargs)
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(F.ParameterError, match="ref_magnitude"):
        F.zero_crossing_rate(y, ref_magnitude=lambda m: m.max(axis=-1))


LIBROSA_FUNCTIONS = {
    "frame": "util.frame", "stft": "stft", "istft": "istft", "power_to_db": "power_to_db",
    "amplitude_to_db": "amplitude_to_db", "melspectrogram": "feature.melspectrogram",
    "mfcc": "feature.mfcc", "delta": "feature.delta", "rms": "feature.rms",
    "zero_crossing_rate": "feature.zero_crossing_rate", "spectral_centroid": "feature.spectral_centroid",
    "spectral_bandwidth": "feature.spectral_bandwidth", "spectral_rolloff": "feature.spectral_rolloff",
    "spectral_flatness": "feature.spectral_flatness", "load": "load",
}


@pytest.mark.parametrize("name", sorted(LIBROSA_FUNCTIONS))
def test_every_librosa_keyword_is_taken_with_librosa_s_default(name):
    """Code ported from librosa passes its keywords: each of librosa's named parameters is one
    of featurelib's, with the same default (``load``'s ``sr`` excepted: None, the file's own
    rate, by design)."""
    import functools
    import inspect

    ref = functools.reduce(getattr, LIBROSA_FUNCTIONS[name].split("."), librosa)
    ours = inspect.signature(getattr(F, name)).parameters
    for key, param in inspect.signature(ref).parameters.items():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        assert key in ours, f"{name} does not take librosa's {key}="
        if param.default is not param.empty and (name, key) != ("load", "sr"):
            assert repr(ours[key].default) == repr(param.default), (name, key)


def test_librosa_s_dtype_and_out_keywords():
    y = FSDD[2]
    M = F.melspectrogram(y=y, sr=8000, n_fft=256, dtype=np.float64)
    assert M.dtype == np.float64  # a float64 filterbank, as librosa's product gives
    assert F.rms(y=y.astype(np.float64)).dtype == np.float32  # librosa's rms dtype default
    out = np.zeros((129, 10_000), np.complex64)
    X = F.stft(y, n_fft=256, hop_length=80, out=out)
    assert np.shares_memory(X, out) and X.shape == librosa.stft(y, n_fft=256, hop_length=80).shape
    back = np.zeros(y.size, np.float64)
    z = F.istft(X, hop_length=80, length=y.size, dtype=np.float64, out=back)
    assert z.dtype == np.float64 and np.shares_memory(z, back) and np.abs(z - y).max() < 1e-4
    with pytest.raises(F.ParameterError, match="out has shape"):
        F.stft(y, n_fft=256, hop_length=80, out=np.zeros((10, 10), np.complex64))
    framed = F.frame(np.stack([y, y], axis=1), frame_length=256, hop_length=80, axis=0)
    np.testing.assert_array_equal(framed, librosa.util.frame(np.stack([y, y], axis=1), frame_length=256,
                                                             hop_length=80, axis=0))


def test_low_centroid_redo_takes_only_its_rows_and_any_freq():
    """One low row in a batch is taken again alone (the others keep their float32 values), and a
    caller's ``freq`` (1-D or per frame) gets the same redo."""
    sr = 22050
    t = np.arange(sr) / sr
    rows = (0.1 * np.random.default_rng(0).standard_normal((6, sr))).astype(np.float32)
    plain = F.spectral_centroid(y=rows, sr=sr)
    rows[3] = 0.5 * np.sin(2 * np.pi * 8 * t)
    mixed = F.spectral_centroid(y=rows, sr=sr)
    np.testing.assert_array_equal(np.delete(mixed, 3, axis=0), np.delete(plain, 3, axis=0))
    assert_rel(mixed, librosa.feature.spectral_centroid(y=rows, sr=sr), 1e-4)
    tone = (0.5 * np.sin(2 * np.pi * 3 * np.arange(2 * 44100) / 44100)).astype(np.float32)
    bins = librosa.fft_frequencies(sr=44100, n_fft=2048)
    for freq in (bins, np.tile(bins[:, None], (1, 173))):
        assert_rel(F.spectral_centroid(y=tone, sr=44100, freq=freq),
                   librosa.feature.spectral_centroid(y=tone, sr=44100, freq=freq), 1e-4)


def test_keyword_edges_from_a_review():
    strict = pytest.importorskip("array_api_strict")
    y = FSDD[2]
    assert F.melspectrogram(y=strict.asarray(y), sr=8000, n_fft=256, dtype=strict.float64).dtype == strict.float64
    assert F.melspectrogram(y=y, sr=8000, n_fft=256, dtype=np.float16).dtype == np.float32  # as librosa
    assert F.snr(y.astype(np.float64)).dtype == np.float64  # its rms keeps the input's type
    with pytest.raises(ParameterError, match="not of complex type"):
        F.stft(y, n_fft=256, out=np.zeros((129, 10_000), np.float32))
    assert F.istft(np.zeros((129, 0), np.complex64), length=100).shape == (100,)  # librosa: zeros
    assert F.frame(strict.asarray(np.ones((2, 20))), frame_length=4, hop_length=2, axis=1).shape == (2, 4, 9)


@pytest.mark.parametrize("bad, message", [
    ({"hop_length": 0}, "hop_length=0"), ({"win_length": 32}, "win_length=32"),
    ({"pad_mode": "wrap"}, "pad_mode='wrap'")])
def test_melspectrogram_refuses_stft_arguments_before_the_filterbank_warns(bad, message):
    """An n_fft too small for its mels warned 'Empty filters' before the STFT's refusal."""
    y = np.zeros(1000, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ParameterError, match=message):
            F.melspectrogram(y=y, sr=8000, n_fft=16, n_mels=40, **bad)
        with pytest.raises(ParameterError, match=message):
            F.mfcc(y=y, sr=8000, n_fft=16, n_mels=40, **bad)
