"""featurelib on CuPy (a CUDA GPU) against featurelib on NumPy and librosa, timed in one run.

The same two settings as ``featurelib_bench.py`` (issue 3): every FSDD recording (8 kHz, n_fft 256,
hop 80, 40 mels, 20 MFCC) in length-sorted, zero-padded batches, and 44.1 kHz signals of 60 s
(n_fft 2048, hop 512, 128 mels). Per function it prints:

- librosa: per clip (short clips, as its users call it) or batched (long signals), one thread;
- featurelib on NumPy, batched, one thread;
- featurelib on CuPy, batched, twice: with the batches already on the GPU ("resident": what a
  job that keeps its audio there pays), and from host memory back to host memory ("host→host":
  the copy to the GPU and the result's copy back included, what the extract job pays per buffer);
- the largest difference between the CuPy and the NumPy result, relative to the NumPy result's
  peak (parity: the same code on two namespaces must give the same numbers).

Every GPU time waits for the device (``synchronize``) and is the best of ``--repeat`` after a warm-up
call (CuPy compiles each kernel on first use). Needs CuPy and a CUDA device; exits 0 with a line
saying so where there is none.

Run:  python benchmarks/cupy_bench.py [--fsdd DIR] [--batch-size 256] [--repeat 3] [--only mfcc]
      [--profile melspectrogram]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import librosa
import numpy as np
from featurelib_bench import DEFAULT_FSDD, load_clips, padded_batches, table
from threadpoolctl import threadpool_limits

import featurelib as F


def gpu():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return None


def best_of(fn, repeat, sync=lambda: None):
    fn()
    sync()  # warm-up: kernels compiled, caches (mel basis, window) filled
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def short_functions(sr):
    kw = dict(n_fft=256, hop_length=80)
    fk = dict(frame_length=256, hop_length=80)
    return {
        "stft (magnitude)": (lambda y: np.abs(librosa.stft(y, **kw)), lambda y: abs(F.stft(y, **kw))),
        "melspectrogram": (lambda y: librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40, **kw),
                           lambda y: F.melspectrogram(y=y, sr=sr, n_mels=40, **kw)),
        "log-mel (power_to_db)": (
            lambda y: librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40, **kw)),
            lambda y: F.power_to_db(F.melspectrogram(y=y, sr=sr, n_mels=40, **kw))),
        "mfcc": (lambda y: librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=40, **kw),
                 lambda y: F.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=40, **kw)),
        "rms": (lambda y: librosa.feature.rms(y=y, **fk), lambda y: F.rms(y=y, **fk)),
        "zero_crossing_rate": (lambda y: librosa.feature.zero_crossing_rate(y, **fk),
                               lambda y: F.zero_crossing_rate(y, **fk)),
        "spectral_centroid": (lambda y: librosa.feature.spectral_centroid(y=y, sr=sr, **kw),
                              lambda y: F.spectral_centroid(y, sr=sr, **kw)),
        "spectral_rolloff": (lambda y: librosa.feature.spectral_rolloff(y=y, sr=sr, **kw),
                             lambda y: F.spectral_rolloff(y, sr=sr, **kw)),
    }


def long_functions(sr):
    kw = dict(n_fft=2048, hop_length=512)
    return {
        "stft (magnitude)": (lambda y: np.abs(librosa.stft(y, **kw)), lambda y: abs(F.stft(y, **kw))),
        "melspectrogram": (lambda y: librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128, **kw),
                           lambda y: F.melspectrogram(y=y, sr=sr, n_mels=128, **kw)),
        "mfcc": (lambda y: librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=128, **kw),
                 lambda y: F.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=128, **kw)),
        "spectral_centroid": (lambda y: librosa.feature.spectral_centroid(y=y, sr=sr, **kw),
                              lambda y: F.spectral_centroid(y, sr=sr, **kw)),
    }


def compare(cupy, ours, host_batches, device_batches, repeat, t_ref):
    """One table row's figures: NumPy time, CuPy resident and host→host times, parity."""
    sync = cupy.cuda.Device().synchronize
    t_np = best_of(lambda: [ours(b) for b in host_batches], repeat)
    t_res = best_of(lambda: [ours(b) for b in device_batches], repeat, sync)
    t_h2h = best_of(lambda: [cupy.asnumpy(ours(cupy.asarray(b))) for b in host_batches], repeat, sync)
    worst = 0.0
    for hb, db in zip(host_batches, device_batches):
        a = np.asarray(ours(hb), dtype=np.float64)
        b = cupy.asnumpy(ours(db)).astype(np.float64)
        if a.shape != b.shape:
            return t_np, t_res, t_h2h, f"shape {a.shape} != {b.shape}"
        worst = max(worst, float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-12))
    return t_np, t_res, t_h2h, f"{worst:.1e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--long-seconds", type=float, default=60.0)
    ap.add_argument("--long-batch", type=int, default=4)
    ap.add_argument("--only", action="append", default=[], metavar="FUNCTION",
                    help="time only this function (repeatable; e.g. --only mfcc)")
    ap.add_argument("--profile", metavar="FUNCTION",
                    help="also print where featurelib on CuPy spends the time of FUNCTION on one "
                         "short-clip batch (cProfile, cumulative)")
    args = ap.parse_args()

    def wanted(name):
        return not args.only or name in args.only

    cupy = gpu()
    if cupy is None:
        print("cupy_bench: no CuPy or no CUDA device here; nothing to time")
        return 0
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"GPU: {props['name'].decode()}, CuPy {cupy.__version__}, CUDA runtime "
          f"{cupy.cuda.runtime.runtimeGetVersion()}")
    headers_tail = ["featurelib NumPy", "CuPy resident", "CuPy host→host", "vs librosa (resident)",
                    "vs librosa (host→host)", "vs NumPy (host→host)", "max |CuPy-NumPy|/peak"]

    with threadpool_limits(1):
        clips = load_clips(args.fsdd)
        sr = 8000
        batches = [b for b, _ in padded_batches(clips, args.batch_size)]
        on_gpu = [cupy.asarray(b) for b in batches]
        print(f"short clips: {len(clips)} FSDD files, {sum(c.size for c in clips) / sr / 60:.1f} "
              f"audio-minutes, {len(batches)} padded batches of <= {args.batch_size}")
        rows = []
        for name, (ref, ours) in short_functions(sr).items():
            if not wanted(name):
                continue
            t_ref = best_of(lambda ref=ref: [ref(c) for c in clips], 1)
            for precision in ("auto", "single"):
                F.set_fft_precision(precision)
                t_np, t_res, t_h2h, diff = compare(cupy, ours, batches, on_gpu, args.repeat, t_ref)
                rows.append([name, precision, f"{t_ref:.3f}", f"{t_np:.3f}", f"{t_res:.4f}", f"{t_h2h:.4f}",
                             f"{t_ref / t_res:.0f}x", f"{t_ref / t_h2h:.0f}x", f"{t_np / t_h2h:.1f}x", diff])
            F.set_fft_precision("auto")
        table("Short clips (seconds)", rows, ["function", "fft", "librosa per-clip"] + headers_tail)

        sr = 44100
        rng = np.random.default_rng(0)
        n = int(args.long_seconds * sr)
        t = np.arange(n) / sr
        long_batch = np.stack([
            (0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
            for k in range(args.long_batch)])
        print(f"\nlong signals: {args.long_batch} x {args.long_seconds:.0f} s at 44.1 kHz")
        rows = []
        for name, (ref, ours) in long_functions(sr).items():
            if not wanted(name):
                continue
            t_ref = best_of(lambda ref=ref: ref(long_batch), 1)
            for precision in ("auto", "single"):
                F.set_fft_precision(precision)
                t_np, t_res, t_h2h, diff = compare(cupy, ours, [long_batch], [cupy.asarray(long_batch)],
                                                   args.repeat, t_ref)
                rows.append([name, precision, f"{t_ref:.3f}", f"{t_np:.3f}", f"{t_res:.4f}", f"{t_h2h:.4f}",
                             f"{t_ref / t_res:.0f}x", f"{t_ref / t_h2h:.0f}x", f"{t_np / t_h2h:.1f}x", diff])
            F.set_fft_precision("auto")
        table("Long signals (seconds; librosa batched)", rows, ["function", "fft", "librosa"] + headers_tail)
        if args.profile:
            profile(cupy, short_functions(8000)[args.profile][1], on_gpu[len(on_gpu) // 2])
    return 0


def profile(cupy, ours, batch):
    import cProfile
    import pstats

    for precision in ("auto", "single"):
        F.set_fft_precision(precision)
        ours(batch)
        cupy.cuda.Device().synchronize()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            ours(batch)
        cupy.cuda.Device().synchronize()
        prof.disable()
        print(f"\nprofile: 5 calls on a batch of {batch.shape}, fft precision {precision}")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
    F.set_fft_precision("auto")


if __name__ == "__main__":
    sys.exit(main())
