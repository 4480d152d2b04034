"""featurelib against librosa, timed in the same run: a table of ratios per function.

Two settings (issue 3):
- short clips: every FSDD recording (8 kHz, n_fft 256, hop 80, 40 mels, 20 MFCC). librosa is
  called once per clip, as its users write it; featurelib gets length-sorted, zero-padded batches,
  as the extract job feeds it. Also librosa on the very same padded batches.
- long signals: 44.1 kHz, 60 s, n_fft 2048, hop 512, 128 mels; both batched.

Run:  python benchmarks/featurelib_bench.py [--fsdd DIR] [--threads 1|2] [--processes 2] [--repeat 3]

Each featurelib row is timed three times, once per FFT precision (featurelib.set_fft_precision):
``"auto"`` (the default: float32 FFT, frames where float32 rounding could break parity redone in
float64), ``"double"`` (every frame in float64, as librosa) and ``"single"`` (every frame in
float32, within tolerance on recorded audio but not on pure tones and chirps).

BLAS is held to one thread for both libraries (threadpoolctl). ``--threads 2`` deals
featurelib's batches out to two Python threads (NumPy's FFT and matmul release the GIL), which is
how a 2-core machine runs it in one process. ``--processes 2`` (the default; 0 skips it) also
deals them out to two forked single-threaded processes, which is how the extract job runs
featurelib (one single-threaded worker per core): the batches reach the children through fork
before the clock starts, each child works through its share, and only the compute is timed, as
for the threads. librosa runs on one thread throughout, as its users call it.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

import featurelib as F

HERE = Path(__file__).resolve().parent
DEFAULT_FSDD = HERE.parent.parent / "shared" / "data" / "fsdd" / "recordings"


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def load_clips(folder: Path):
    clips = []
    for path in sorted(folder.glob("*.wav")):
        y, _ = sf.read(path, dtype="float32")
        clips.append(y)
    return clips


def padded_batches(clips, batch_size=256):
    """Length-sorted, zero-padded batches ``(B, n_max)`` with the true lengths."""
    order = np.argsort([c.size for c in clips], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        n_max = max(clips[i].size for i in idx)
        buf = np.zeros((len(idx), n_max), dtype=np.float32)
        for row, i in enumerate(idx):
            buf[row, :clips[i].size] = clips[i]
        batches.append((buf, np.array([clips[i].size for i in idx])))
    return batches


def run_batches(fn, batches, threads):
    if threads == 1:
        for buf, _ in batches:
            fn(buf)
        return
    # deal the length-sorted batches out to the threads in turn, each thread working through its
    # own list (measured faster than splitting every batch's rows between the threads: fewer,
    # larger calls, and no thread waits on the other between batches)
    if len(batches) >= 4 * threads:
        shares = [[b for b, _ in batches[i::threads]] for i in range(threads)]
    else:  # a few large batches (long signals): each thread takes a contiguous block of rows
        shares = [[b[i * -(-len(b) // threads):(i + 1) * -(-len(b) // threads)] for b, _ in batches]
                  for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda share: [fn(b) for b in share], shares))


# --processes: one forked worker process per core, as the extract job runs featurelib (one
# single-threaded worker per core). The function and the batches reach the children through
# fork (copy-on-write, set before the pool starts, outside the timed region); each child works
# through its share of whole batches and returns nothing, as the threads do.
_JOB: dict = {}


def _run_share(i):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        for b in _JOB["shares"][i]:
            _JOB["fn"](b)
    return i


class ProcessRunner:
    """A pool of ``n`` forked processes, each ready to run ``fn`` over its share of ``batches``."""

    def __init__(self, fn, batches, n):
        import multiprocessing as mp

        _JOB.update(fn=fn, shares=[[b for b, _ in batches[i::n]] for i in range(n)])
        self.n = n
        self.pool = mp.get_context("fork").Pool(n)
        self.pool.map(_run_share, [], chunksize=1)  # the children are up

    def run(self):
        self.pool.map(_run_share, range(self.n), chunksize=1)

    def close(self):
        self.pool.close()
        self.pool.join()


def time_processes(fn, batches, n, repeat):
    """Best time of ``fn`` over ``batches`` dealt out to ``n`` forked processes."""
    runner = ProcessRunner(fn, batches, n)
    try:
        return best_of(runner.run, repeat)
    finally:
        runner.close()


def short_clip_functions(sr):
    kw = dict(n_fft=256, hop_length=80)
    fk = dict(frame_length=256, hop_length=80)
    return {
        "stft (magnitude)": (lambda y: np.abs(librosa.stft(y, **kw)), lambda y: np.abs(F.stft(y, **kw))),
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


def long_signal_functions(sr):
    kw = dict(n_fft=2048, hop_length=512)
    return {
        "stft (magnitude)": (lambda y: np.abs(librosa.stft(y, **kw)), lambda y: np.abs(F.stft(y, **kw))),
        "melspectrogram": (lambda y: librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128, **kw),
                           lambda y: F.melspectrogram(y=y, sr=sr, n_mels=128, **kw)),
        "mfcc": (lambda y: librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=128, **kw),
                 lambda y: F.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=128, **kw)),
        "spectral_centroid": (lambda y: librosa.feature.spectral_centroid(y=y, sr=sr, **kw),
                              lambda y: F.spectral_centroid(y, sr=sr, **kw)),
    }


def table(title, rows, headers):
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--processes", type=int, default=2,
                    help="also time featurelib on this many forked processes (0: skip)")
    # the extract job computes buffers of at most 8,192 frames (jobs/compute.py MAX_BUFFER_FRAMES):
    # about 80 FSDD clips; 64 length-sorted rows pad 7 % of the frames, 256 rows pad 25 %
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--long-seconds", type=float, default=60.0)
    ap.add_argument("--long-batch", type=int, default=4)
    args = ap.parse_args()

    with threadpool_limits(1):
        clips = load_clips(args.fsdd)
        sr = 8000
        batches = padded_batches(clips, args.batch_size)
        print(f"short clips: {len(clips)} FSDD files from {args.fsdd}, {sum(c.size for c in clips) / sr / 60:.1f} "
              f"audio-minutes, {len(batches)} padded batches of <= {args.batch_size}; featurelib on "
              f"{args.threads} thread(s), BLAS 1 thread")
        rows = []
        for name, (ref, ours) in short_clip_functions(sr).items():
            for fn in (ref, ours):  # warm caches (mel basis, windows, numba in librosa)
                fn(clips[0])
            # best of --repeat, as every featurelib time: one noisy run would move the ratio
            t_ref = best_of(lambda ref=ref: [ref(c) for c in clips], args.repeat)
            t_ref_batched = best_of(lambda ref=ref: [ref(b) for b, _ in batches], args.repeat)
            for precision in ("auto", "double", "single"):
                F.set_fft_precision(precision)
                t1 = best_of(lambda ours=ours: run_batches(ours, batches, 1), args.repeat)
                tn = best_of(lambda ours=ours: run_batches(ours, batches, args.threads), args.repeat)
                row = [name, precision, f"{t_ref:.3f}", f"{t_ref_batched:.3f}", f"{t1:.3f}", f"{tn:.3f}",
                       f"{t_ref / t1:.1f}x", f"{t_ref / tn:.1f}x", f"{t_ref_batched / tn:.1f}x"]
                if args.processes:  # forked after set_fft_precision: the children inherit it
                    tp = time_processes(ours, batches, args.processes, args.repeat)
                    row += [f"{tp:.3f}", f"{t_ref / tp:.1f}x"]
                rows.append(row)
            F.set_fft_precision("auto")
        headers = ["function", "fft", "librosa per-clip", "librosa batched", "featurelib 1 thr",
                   f"featurelib {args.threads} thr", "vs per-clip (1 thr)", f"vs per-clip ({args.threads} thr)",
                   f"vs librosa batched ({args.threads} thr)"]
        if args.processes:
            headers += [f"featurelib {args.processes} proc", f"vs per-clip ({args.processes} proc)"]
        table("Short clips (seconds; ratio = librosa time / featurelib time)", rows, headers)

        sr = 44100
        rng = np.random.default_rng(0)
        n = int(args.long_seconds * sr)
        t = np.arange(n) / sr
        long_batch = np.stack([
            (0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
            for k in range(args.long_batch)])
        print(f"\nlong signals: {args.long_batch} x {args.long_seconds:.0f} s at 44.1 kHz")
        rows = []
        for name, (ref, ours) in long_signal_functions(sr).items():
            t_ref = best_of(lambda ref=ref: ref(long_batch), args.repeat)
            for precision in ("auto", "double", "single"):
                F.set_fft_precision(precision)
                t1 = best_of(lambda ours=ours: run_batches(ours, [(long_batch, None)], 1), args.repeat)
                tn = best_of(lambda ours=ours: run_batches(ours, [(long_batch, None)], args.threads), args.repeat)
                row = [name, precision, f"{t_ref:.3f}", f"{t1:.3f}", f"{tn:.3f}",
                       f"{t_ref / t1:.1f}x", f"{t_ref / tn:.1f}x"]
                if args.processes:  # each process takes a contiguous block of the signals
                    step = -(-len(long_batch) // args.processes)
                    blocks = [(long_batch[i:i + step], None) for i in range(0, len(long_batch), step)]
                    tp = time_processes(ours, blocks, args.processes, args.repeat)
                    row += [f"{tp:.3f}", f"{t_ref / tp:.1f}x"]
                rows.append(row)
            F.set_fft_precision("auto")
        headers = ["function", "fft", "librosa", "featurelib 1 thr", f"featurelib {args.threads} thr",
                   "ratio (1 thr)", f"ratio ({args.threads} thr)"]
        if args.processes:
            headers += [f"featurelib {args.processes} proc", f"ratio ({args.processes} proc)"]
        table("Long signals (seconds; both batched)", rows, headers)


if __name__ == "__main__":
    main()
