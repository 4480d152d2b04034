"""The "auto" FFT precision: float32 where float32 rounding cannot break librosa parity, float64
for the frames where it could (featurelib.set_fft_precision)."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest

import featurelib as F
from featurelib.spectrum import mel_float32_check

from conftest import SAMPLES_DIR


@pytest.fixture
def precision():
    previous = F.get_fft_precision()
    yield F.set_fft_precision
    F.set_fft_precision(previous)


def _mel(y, sr, n_fft, hop, n_mels):
    return F.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)


def test_auto_is_the_default():
    assert F.get_fft_precision() == "auto"


def test_bad_precision_is_a_parameter_error(precision):
    with pytest.raises(F.ParameterError, match="precision"):
        precision("half")


def test_a_pure_tone_is_redone_in_float64(precision):
    """Every frame of a pure tone has bands 100 dB under its peak: auto gives the float64 numbers."""
    sr = 44100
    y = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    precision("double")
    double = _mel(y, sr, 2048, 512, 128)
    precision("auto")
    auto = _mel(y, sr, 2048, 512, 128)
    precision("single")
    single = _mel(y, sr, 2048, 512, 128)
    scale = np.maximum(double, 1e-8 * double.max())
    assert float(np.max(np.abs(auto - double) / scale)) < 1e-6
    assert float(np.max(np.abs(single - double) / scale)) > 1e-5  # what auto avoided


def test_chirp_log_mel_within_parity(precision):
    """A 16 kHz n_fft-256 chirp: an all-float32 FFT moves its quiet bands by 1.3e-3 dB (of the
    2e-3 dB allowed); auto redoes those frames and stays near float64 (1e-5 dB)."""
    sr = 16000
    y = librosa.chirp(fmin=50, fmax=7000, sr=sr, duration=2.0).astype(np.float32)
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=256, hop_length=80,
                                                             n_mels=40))
    precision("auto")
    got = F.power_to_db(_mel(y, sr, 256, 80, 40))
    assert float(np.max(np.abs(got - ref))) < 2e-4


@pytest.mark.parametrize("window", [("kaiser", 14.0), "blackmanharris", "nuttall"])
@pytest.mark.parametrize("top_db, ref", [(None, 1.0), (120.0, np.max)])
def test_log_mel_of_a_pure_tone_keeps_parity_below_80_db(precision, window, top_db, ref):
    """melspectrogram cannot know the top_db its caller takes later: under auto it keeps the
    decibels of bands deeper than 80 dB under the loudest too, down to power_to_db's amin (a
    1 kHz tone through a low-sidelobe window was 0.43 dB off 130 dB down, where float32
    rounding is all there is)."""
    t = np.arange(2 * 22050) / 22050
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    precision("auto")
    got = F.power_to_db(F.melspectrogram(y=y, window=window), ref=ref, top_db=top_db)
    want = librosa.power_to_db(librosa.feature.melspectrogram(y=y, window=window), ref=ref, top_db=top_db)
    assert float(np.max(np.abs(got - want))) < 2e-3


@pytest.mark.parametrize("top_db", [None, 120.0])
def test_mfcc_without_the_80_db_floor_keeps_parity(precision, top_db):
    """The auto check keeps bands to 80 dB under the loudest; an MFCC whose dB go deeper (no
    ``top_db``, or a larger one) is computed in float64 and stays within parity of librosa's (a
    16-bit 1 kHz tone resampled from 44.1 kHz: 0.049 off with float32 frames below 80 dB)."""
    import soxr

    tone = np.round(0.3 * np.sin(2 * np.pi * 1000 * np.arange(44100) / 44100) * 32767) / 32767
    y = soxr.resample(tone.astype(np.float32), 44100, 16000, quality="HQ").astype(np.float32)
    kwargs = dict(sr=16000, n_fft=512, hop_length=160, n_mels=128)
    precision("auto")
    got = F.mfcc(y=y, n_mfcc=20, top_db=top_db, **kwargs)
    assert F.get_fft_precision() == "auto"  # only the mel inside went to float64
    ref = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(y=y, **kwargs),
                                                     top_db=top_db), n_mfcc=20)
    assert float(np.max(np.abs(got - ref))) < 5e-3


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", ("kaiser", 8.0)])
@pytest.mark.parametrize("n_fft", [16, 32, 64, 128, 256])
def test_short_transforms_keep_log_mel_parity(precision, window, n_fft):
    """Under n_fft 256 a float32 FFT's rounding is spread over fewer bins and weighs more at
    the same band level (3.5e-3 dB at n_fft 32, hop 1, on an 11.025 kHz chirp, against the
    2e-3 allowed): the check's levels rise as (256 / n_fft) ** 2 and auto keeps the margin it
    has at 256 (there 7.3e-4 dB and 4.2e-5 relative at worst on this chirp)."""
    sr = 11025
    y = librosa.chirp(fmin=200, fmax=4000, sr=sr, duration=0.4).astype(np.float32)
    kw = dict(n_fft=n_fft, hop_length=max(1, n_fft // 16), window=window, n_mels=min(64, n_fft))
    precision("auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # more mel bands than FFT bins: empty filters
        got = F.melspectrogram(y=y, sr=sr, **kw)
        want = librosa.feature.melspectrogram(y=y, sr=sr, **kw)
    assert float(np.max(np.abs(F.power_to_db(got) - librosa.power_to_db(want)))) < 1.2e-3
    loud = want >= 1e-6 * want.max()
    assert float(np.max(np.abs(got - want)[loud] / want[loud])) < 6e-5


def test_mel_power_of_a_tone_outside_the_mel_range_keeps_parity(precision):
    """Every mel band far below its frame's energy (a 26 kHz tone at 96 kHz, mels to 4 kHz, n_fft
    32): the loudest band was 1.4e-4 off librosa, the bound is 1e-4 relative."""
    sr = 96000
    y = (0.5 * np.sin(2 * np.pi * 26111 * np.arange(3503) / sr + 1.0)).astype(np.float32)
    kw = dict(sr=sr, n_fft=32, center=False, fmax=4000.0)
    precision("auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got, want = F.melspectrogram(y=y, **kw), librosa.feature.melspectrogram(y=y, **kw)
    loud = want >= 1e-6 * want.max()
    assert float(np.max(np.abs(got - want)[loud] / want[loud])) < 5e-5


@pytest.mark.parametrize("kw", [
    dict(n_fft=32, hop_length=26, n_mels=128, htk=True, lifter=100.0),  # was 1.2e-2 off
    dict(n_fft=512, hop_length=160, n_mels=128, lifter=22.0),  # HTK's and Kaldi's lifter
    dict(n_fft=512, hop_length=160, n_mels=128, n_mfcc=40, norm=None),
    dict(n_fft=256, hop_length=80, n_mels=40, n_mfcc=40, dct_type=3, lifter=60.0),
], ids=["lifter100-nfft32", "lifter22", "norm-none", "dct3-lifter60"])
def test_mfcc_whose_dct_grows_the_errors_keeps_parity(precision, kw):
    """A lifter (up to 1 + lifter / 2) or an unnormalised DCT (about sqrt(2 n_mels)) grows the
    decibels' float32 rounding in the coefficients: mfcc tightens the check by that gain
    squared, and auto stays near float64 while single precision would not."""
    sr = 16000
    y = librosa.chirp(fmin=100, fmax=sr / 2.2, sr=sr, duration=0.5).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        want = librosa.feature.mfcc(y=y, sr=sr, **kw)
        precision("double")
        double = F.mfcc(y=y, sr=sr, **kw)
        precision("auto")
        got = F.mfcc(y=y, sr=sr, **kw)
    scale = max(1.0, float(np.abs(want).max()) / 1000)  # (norm=None: coefficients in the thousands)
    assert float(np.max(np.abs(got - want))) < 5e-3 * scale
    assert float(np.max(np.abs(got - double))) < 2.5e-3 * scale


def test_a_refused_mfcc_leaves_melspectrogram_s_check_as_it_was(precision):
    """mfcc narrows the check for the mel it takes (to 80 dB): a call refused for a bad DCT
    argument must not leave it narrowed for the next melspectrogram in the thread, whose
    decibels below 80 dB would then be float32 rounding (0.07 dB off 110 dB down)."""
    t = np.arange(2 * 22050) / 22050
    y = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    precision("auto")
    with pytest.raises(F.ParameterError):
        F.mfcc(y=y, dct_type=7)
    got = F.power_to_db(F.melspectrogram(y=y, window=("kaiser", 14.0)), top_db=None)
    want = librosa.power_to_db(librosa.feature.melspectrogram(y=y, window=("kaiser", 14.0)), top_db=None)
    assert float(np.max(np.abs(got - want))) < 2e-3


@pytest.mark.parametrize("n_mels", [0, -3])
def test_mfcc_of_no_mel_band_is_melspectrogram_s_parameter_error(n_mels):
    """The DCT's gain is taken before the mel: a bad n_mels must still be the mel's
    ParameterError naming it (it became scipy's or NumPy's ValueError)."""
    y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    with pytest.raises(F.ParameterError, match=f"n_mels={n_mels} must be positive"):
        F.mfcc(y=y, sr=8000, n_fft=256, n_mels=n_mels)


def test_mfcc_db_gain():
    from featurelib.spectrum import mfcc_db_gain

    assert mfcc_db_gain(20, 40) == pytest.approx(1.0)  # orthonormal rows
    assert mfcc_db_gain(20, 128, lifter=22.0) == pytest.approx(12.0, rel=1e-3)  # 1 + 22 / 2 at row 11
    assert mfcc_db_gain(40, 128, norm=None) == pytest.approx(2 * np.sqrt(128))  # row 0: 2 x sqrt(n)
    assert mfcc_db_gain(0, 40) == 1.0


def test_the_job_tightens_the_check_for_its_mfcc():
    from jobs.compute import FeatureSet

    def gains(mfcc):
        fc = {"sr": 16000, "n_fft": 512, "hop_length": 160, "win_length": 512, "window": "hann",
              "features": {"mfcc": {"n_mfcc": 20, "dct_type": 2, "norm": "ortho", "lifter": 0.0,
                                    "top_db": 80.0, "n_mels": 40, "fmin": 0.0, "fmax": None,
                                    "htk": False, "mel_norm": "slaney", **mfcc},
                           "melspectrogram": {"n_mels": 40, "fmin": 0.0, "fmax": None, "htk": False,
                                              "norm": "slaney", "power": 2.0, "db": True, "top_db": 80.0}}}
        return list(FeatureSet.from_config(fc).mel_db_gains().values())

    assert gains({}) == [pytest.approx(1.0)]
    assert gains({"lifter": 22.0}) == [pytest.approx(12.0, rel=1e-3)]  # the mel both share


def test_the_job_computes_mels_in_db_below_80_db_in_float64():
    from jobs.compute import FeatureSet, _mel_refine

    def refine(features):
        fc = {"sr": 16000, "n_fft": 512, "hop_length": 160, "win_length": 512, "window": "hann",
              "features": features}
        fs = FeatureSet.from_config(fc)
        key = next(iter(fs.mel_keys()))
        return _mel_refine(fs, [(("mel", key, 2.0), 128, None)], {}, np.zeros(4, np.float32), np)

    mel = {"n_mels": 128, "fmin": 0.0, "fmax": None, "htk": False, "norm": "slaney", "power": 2.0}
    assert callable(refine({"melspectrogram": {**mel, "db": True, "top_db": 80.0}}))
    assert refine({"melspectrogram": {**mel, "db": True, "top_db": None}}) == "double"
    assert refine({"melspectrogram": {**mel, "db": True, "top_db": 100.0}}) == "double"
    assert callable(refine({"melspectrogram": {**mel, "db": False, "top_db": None}}))  # power: no dB


def test_recorded_speech_stays_mostly_in_float32():
    """On speech the check flags only the frames with bands in float32's rounding floor."""
    import scipy.fft
    import soundfile as sf

    basis = F.mel_filters(sr=8000, n_fft=256, n_mels=40).astype(np.float32)
    window = F.get_window("hann", 256).astype(np.float32)
    flagged = total = 0
    for path in sorted(SAMPLES_DIR.glob("*.wav"))[:40]:
        y, _ = sf.read(path, dtype="float32")
        frames = F.frame(np.pad(y, 128), frame_length=256, hop_length=80)  # (256, t)
        X = scipy.fft.rfft(frames.T * window, axis=-1)[None]
        P = (X.real ** 2 + X.imag ** 2).astype(np.float32)
        redo = mel_float32_check(basis, P)(P, P @ basis.T)
        flagged += int(redo.sum())
        total += redo.size
    assert 0 < flagged < 0.05 * total


def _band_by_band_flags(basis, P, M, deep=False):
    """The rule of mel_float32_check written out plainly: every band of every frame."""
    weights = basis.astype(np.float64).sum(axis=-1)
    energy = P.sum(axis=-1, keepdims=True)
    loudest = M.max(axis=(-2, -1), keepdims=True)
    strict = (M < energy * 3e-7 * weights) & (M >= loudest * 1e-6)
    floor = np.minimum(loudest * 1e-8, 1e-10) if deep else loudest * 1e-8
    decibels = (M < energy * 3e-8 * weights) & (M >= floor)
    return np.any(strict | decibels, axis=-1)


@pytest.mark.parametrize("xp_name", ["numpy", "array_api_strict"])
def test_the_check_flags_what_the_band_by_band_rule_flags(xp_name):
    """The check looks band by band only at frames loud enough to be flagged, gathered; its
    flags equal those of the plain rule on rows that mix speech, silence, a tone and noise."""
    import scipy.fft
    import soundfile as sf

    xp = pytest.importorskip(xp_name)
    basis = F.mel_filters(sr=8000, n_fft=256, n_mels=40).astype(np.float32)
    window = F.get_window("hann", 256).astype(np.float32)
    rng = np.random.default_rng(5)
    n = 16000
    rows = [np.zeros(n, np.float32) for _ in range(5)]
    for row, path in zip(rows, sorted(SAMPLES_DIR.glob("*.wav"))):  # speech, then silence
        clip = sf.read(path, dtype="float32")[0][:n]
        row[:clip.size] = clip
    rows += [np.zeros(n, np.float32), (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / 8000)).astype(np.float32),
             (1e-3 * rng.standard_normal(n)).astype(np.float32)]
    frames = np.stack([F.frame(np.pad(r, 128), frame_length=256, hop_length=80).T for r in rows])
    X = scipy.fft.rfft(frames * window, axis=-1)
    P = (X.real ** 2 + X.imag ** 2).astype(np.float32)
    M = P @ basis.T
    expected = _band_by_band_flags(basis, P, M)
    for deep in (False, True):
        rule = _band_by_band_flags(basis, P, M, deep=deep)
        for a, b in [(0, len(rows)), (0, 5), (5, 6), (6, 7)]:  # mixed, mostly quiet, silent, all loud
            check = mel_float32_check(basis, xp.asarray(P[:1]), deep=deep)
            got = check(xp.asarray(P[a:b]), xp.asarray(M[a:b]))
            np.testing.assert_array_equal(np.asarray(got), rule[a:b])
    assert 0 < expected[:5].sum() < 0.1 * expected[:5].size  # speech: a few frames, gathered
    assert expected[6].mean() > 0.9 and not expected[5].any()  # the tone: nearly all; silence: none


@pytest.mark.parametrize("seconds", [1, 12])  # one chunk per row; many chunks per row
def test_flagged_frames_are_redone_together_at_their_places(precision, monkeypatch, seconds):
    """Rows of tones (every frame flagged) beside noise (none): the float64 numbers land at the
    right rows and frames, and the flagged frames are transformed a full budget at a time, not
    chunk by chunk."""
    import featurelib._backend as backend

    sr = 22050
    t = np.arange(seconds * sr) / sr
    rng = np.random.default_rng(3)
    y = np.stack([0.1 * rng.standard_normal(t.size), 0.5 * np.sin(2 * np.pi * 700 * t),
                  0.1 * rng.standard_normal(t.size), 0.5 * np.sin(2 * np.pi * 3100 * t)]).astype(np.float32)
    precision("double")
    double = _mel(y, sr, 2048, 512, 128)
    calls = []
    flush = backend.FrameRedo.flush
    monkeypatch.setattr(backend.FrameRedo, "flush",
                        lambda self, out: (calls.append(self.waiting >= self.budget) if self.parts
                                           else None, flush(self, out))[1])
    precision("auto")
    auto = _mel(y, sr, 2048, 512, 128)
    scale = np.maximum(double, 1e-8 * double.max(axis=(-2, -1), keepdims=True))
    assert float(np.max((np.abs(auto - double) / scale)[[1, 3]])) < 1e-6
    assert float(np.max((np.abs(auto - double) / scale)[[0, 2]])) < 1e-4
    assert calls and all(calls[:-1])  # each transform but the last took a full budget of frames
    if seconds == 1:  # two chunks (two rows each), their flagged frames in one transform
        assert len(calls) == 1


def test_no_mel_means_no_check_and_float32(precision):
    """Plain STFT values stay float32 under auto: within 1e-5 of the peak magnitude either way."""
    sr = 22050
    y = np.random.default_rng(0).standard_normal(sr).astype(np.float32)
    precision("auto")
    auto = np.abs(F.stft(y, n_fft=1024, hop_length=256))
    precision("single")
    single = np.abs(F.stft(y, n_fft=1024, hop_length=256))
    np.testing.assert_array_equal(auto, single)
    ref = np.abs(librosa.stft(y, n_fft=1024, hop_length=256))
    assert float(np.max(np.abs(auto - ref))) < 1e-5 * float(ref.max())


def test_fft_precision_context_holds_in_its_thread_only(precision):
    """Two threads computing side by side, one in float64 and one in float32, each get their own
    numbers (a threaded Dask worker may run batches of stores with different precisions)."""
    import threading

    sr = 16000
    y = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    precision("double")
    reference = {p: np.asarray(F.stft(y, n_fft=512)) for p in ("double",)}
    precision("single")
    reference["single"] = np.asarray(F.stft(y, n_fft=512))
    precision("auto")
    assert not np.array_equal(reference["double"], reference["single"])
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def work(p):
        try:
            with F.fft_precision(p):
                barrier.wait()
                for _ in range(20):
                    assert F.get_fft_precision() == p
                    results[p] = np.asarray(F.stft(y, n_fft=512))
                    np.testing.assert_array_equal(results[p], reference[p])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in ("double", "single")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert F.get_fft_precision() == "auto"  # the process-wide setting never moved
    with pytest.raises(F.ParameterError):
        with F.fft_precision("half"):
            pass


def test_one_blas_thread_survives_overlapping_batches(monkeypatch):
    """threadpoolctl limits are process-wide: overlapping batches in threads must not restore the
    default under each other. The first batch in sets one thread, the last one out restores.
    (A recording stand-in for threadpoolctl, whose OpenBLAS limits only the controlling thread
    may change: counts read across threads would not show the order of events.)"""
    import threading

    import threadpoolctl

    from jobs.compute import one_blas_thread

    events = []

    class Limiter:
        def __init__(self, limits):
            events.append(("limit", limits))

        def restore_original_limits(self):
            events.append(("restore",))

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", Limiter)
    inside, left = threading.Event(), threading.Event()

    def long_batch():
        with one_blas_thread():
            inside.set()
            left.wait(10)

    t = threading.Thread(target=long_batch)
    t.start()
    inside.wait(10)
    with one_blas_thread():  # a short batch beside it, finishing first
        pass
    assert events == [("limit", 1)]  # nothing restored under the long batch
    left.set()
    t.join()
    assert events == [("limit", 1), ("restore",)]
    with one_blas_thread():  # the next batch sets the limit again
        pass
    assert events == [("limit", 1), ("restore",), ("limit", 1), ("restore",)]


def test_one_blas_thread_limits_blas_from_a_worker_thread():
    """threadpoolctl lets only one thread set OpenBLAS's limits: once the main thread has set one
    outside a ``with`` block, a worker thread's limits were silently ignored, BLAS split the
    products of an in-process worker across threads, and some MFCCs moved by an ulp."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    from jobs.compute import one_blas_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    np.ones((2, 2)) @ np.ones((2, 2))  # OpenBLAS loaded
    if not blas_threads() or max(blas_threads()) < 2:
        pytest.skip("BLAS runs one thread here already")
    threadpool_limits(1).restore_original_limits()  # the main thread now "controls" OpenBLAS
    before = blas_threads()
    seen = []

    def batch():
        with one_blas_thread():
            seen.append(blas_threads())

    t = threading.Thread(target=batch)
    t.start()
    t.join()
    assert seen == [[1] * len(before)]
    assert blas_threads() == before
    with threadpool_limits(1):  # and the main thread can still set limits afterwards
        assert blas_threads() == [1] * len(before)


def test_empty_mel_bands_raise_no_warning_in_the_check(precision):
    """128 bands from 3 kHz at 8 kHz / n_fft 256: half get no FFT bin (librosa warns of that
    when the basis is built); the float32 check must not divide by their zero weights."""
    import warnings

    y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the basis's own "Empty filters" warning
        warnings.simplefilter("error", RuntimeWarning)
        precision("auto")
        auto = F.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=80, n_mels=128, fmin=3000)
        precision("double")
        double = F.melspectrogram(y=y, sr=8000, n_fft=256, hop_length=80, n_mels=128, fmin=3000)
    empty = double.max(axis=-1) == 0
    assert 0 < empty.sum() < 128 and not auto[empty].any()
    np.testing.assert_allclose(auto[~empty], double[~empty], rtol=1e-4)


def test_the_job_names_empty_mel_bands_once():
    from jobs.compute import FeatureSet

    mel = {"n_mels": 128, "fmin": 3000.0, "fmax": None, "htk": False, "norm": "slaney", "power": 2.0,
           "db": False, "top_db": 80.0}
    fs = FeatureSet.from_config({"sr": 8000, "n_fft": 256, "hop_length": 80, "win_length": 256,
                                 "window": "hann", "features": {"melspectrogram": mel}})
    assert fs.empty_mel_bands() == {"melspectrogram": 66}


@pytest.mark.parametrize("n_fft", [4096, 16384])
def test_weighted_means_of_long_frames_keep_parity_on_low_tones(precision, n_fft):
    """A 20 Hz tone at 48 kHz: float32 rounding in thousands of bins moved its centroid by
    0.9-2.2e-3; under auto, frames over 2,048 points take these means from a float64 FFT."""
    sr = 48000
    y = (0.5 * np.sin(2 * np.pi * 20 * np.arange(3 * sr) / sr)).astype(np.float32)
    precision("auto")
    kwargs = dict(sr=sr, n_fft=n_fft, hop_length=n_fft // 4)
    got = F.spectral_centroid(y=y, **kwargs)
    ref = librosa.feature.spectral_centroid(y=y, **kwargs)
    assert got.dtype == np.float32 and float(np.max(np.abs(got - ref) / ref)) < 1e-5
    mean = F.mean_frequency(y=y, power=1.0, **kwargs)
    np.testing.assert_allclose(mean, got, rtol=1e-5)  # the centroid of |X|, by definition


def test_the_job_takes_long_frames_weighted_means_from_float64(tmp_path):
    from jobs.compute import FeatureSet, compute_segments, segment_buffers

    sr, n_fft = 48000, 8192
    y = (0.5 * np.sin(2 * np.pi * 20 * np.arange(3 * sr) / sr)).astype(np.float32)
    features = {"spectral_centroid": {}, "mean_frequency": {"power": 1.0}}
    fs = FeatureSet.from_config({"sr": sr, "n_fft": n_fft, "hop_length": n_fft // 4,
                                 "win_length": n_fft, "window": "hann", "features": features})
    z, e, n_valid = segment_buffers([y], fs)
    with fs.precision():
        out = compute_segments(z, e, fs, n_valid=n_valid)
    ref = librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=n_fft, hop_length=n_fft // 4)[0]
    for name in features:
        got = out[name][0, :n_valid[0], 0]
        assert float(np.max(np.abs(got - ref) / ref)) < 1e-5, name


def test_mfcc_of_a_deep_db_floor_keeps_parity():
    """A quiet 96 kHz recording, 128 bands, a 120 dB floor and a lifter: the DCT's terms reach
    thousands of dB, where a float32 product missed librosa by more than the 5e-3 parity bound;
    under "auto" it runs in float64 then (the result stays float32)."""
    import scipy.fft

    sr = 48000
    rng = np.random.default_rng(3)
    y = (3e-5 * rng.standard_normal(2 * sr)).astype(np.float32)  # about -90 dBFS
    kwargs = {"n_fft": 4096, "hop_length": 1024, "n_mels": 128, "top_db": 120}
    got = F.mfcc(y=y, sr=sr, n_mfcc=40, dct_type=1, lifter=5, **kwargs)
    assert got.dtype == np.float32
    S = F.power_to_db(F.melspectrogram(y=y.astype(np.float64), sr=sr, n_fft=4096, hop_length=1024,
                                       n_mels=128), top_db=120)
    truth = scipy.fft.dct(S, axis=-2, type=1, norm="ortho")[:40]
    truth *= (1 + 2.5 * np.sin(np.pi * np.arange(1, 41) / 5))[:, None]
    assert float(np.abs(truth).max()) > 1000
    assert float(np.abs(got - truth).max()) < 4e-4  # a float32 product: 1.0e-3


def _bandpassed_speech_like(seconds=60):
    """Band-passed noise under a syllable-like envelope, written as 16-bit and read back at
    22.05 kHz: a float32 FFT chooses the neighbouring roll-off bin on one of its frames."""
    import io

    import soundfile as sf
    from scipy.signal import butter, lfilter

    sr = 16000
    t = np.arange(sr * seconds) / sr
    x = np.random.default_rng(6).standard_normal(t.size)
    b, a = butter(2, [300 / 8000, 3400 / 8000], "band")
    y = lfilter(b, a, x) * np.clip(np.sin(2 * np.pi * 4 * t) * np.sin(2 * np.pi * 0.3 * t), 0, None)
    buffer = io.BytesIO()
    sf.write(buffer, y / np.abs(y).max() * 0.5, sr, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    return F.load(buffer, sr=22050)[0]


def test_rolloff_frames_near_a_bin_edge_are_taken_again_in_float64():
    """The roll-off is a step function of the spectrum: on a frame whose cumulative magnitude
    passes within float32 rounding of the threshold, a float32 FFT chose the neighbouring bin
    (2.1e-3 relative off librosa). Under "auto" those frames are taken again from librosa's
    float64 FFT: every frame equals librosa's."""
    y = _bandpassed_speech_like()
    kw = dict(sr=22050, n_fft=2048, hop_length=512, roll_percent=0.95)
    ref = librosa.feature.spectral_rolloff(y=y, **kw)
    with F.fft_precision("single"):
        single = F.spectral_rolloff(y=y, **kw)
    assert not np.array_equal(single, ref)  # the case is there
    assert np.array_equal(F.spectral_rolloff(y=y, **kw), ref)
    batch = np.stack([y[:200000], y[200000:400000]])
    assert np.array_equal(F.spectral_rolloff(y=batch, **kw), librosa.feature.spectral_rolloff(y=batch, **kw))
