"""Per-core cost of each extract stage, per second of audio: the inputs of docs/scaling.md.

Measures on one thread (BLAS 1 thread), for a 10-second clip (AudioSet's length) and a batch of
them: decoding by format (16-bit WAV, FLAC, MP3, Ogg Vorbis at 44.1 kHz stereo), mixing to mono
and resampling 44.1 kHz -> 16 kHz (soxr HQ, librosa's default), the DSP of the example config
(16 kHz, n_fft 512, hop 160: MFCC 20 / 40 mels, log-mel 40, RMS, ZCR, centroid) in padded
batches, and the compressed Zarr write of the resulting frames.

Run:  python benchmarks/stage_costs.py [--clips 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from threadpoolctl import threadpool_limits

import featurelib as F


def best(fn, repeat=3):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=64)
    args = ap.parse_args()
    sr_in, sr, seconds = 44100, 16000, 10.0
    rng = np.random.default_rng(0)
    t = np.arange(int(sr_in * seconds)) / sr_in
    music = np.stack([0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size),
                      0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)], axis=1)
    audio_s = seconds
    rows = []
    with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {
            "WAV PCM_16": (tmp / "c.wav", {}),
            "FLAC": (tmp / "c.flac", {}),
            "MP3": (tmp / "c.mp3", {"format": "MP3"}),
            "Ogg Vorbis": (tmp / "c.ogg", {"format": "OGG", "subtype": "VORBIS"}),
        }
        for name, (path, kw) in files.items():
            sf.write(path, music.astype(np.float32), sr_in, **kw)
            dt = best(lambda path=path: F.load(path, mono=False))
            rows.append((f"decode {name} 44.1 kHz stereo", dt / audio_s))
        y = music.astype(np.float32).T
        dt = best(lambda: soxr.resample(y.mean(axis=0), sr_in, sr, quality="soxr_hq"))
        rows.append(("mono mix + resample 44.1k -> 16k (soxr HQ)", dt / audio_s))

        clip = soxr.resample(y.mean(axis=0), sr_in, sr, quality="soxr_hq").astype(np.float32)
        batch = np.stack([np.roll(clip, k * 997) for k in range(args.clips)])
        kw = dict(n_fft=512, hop_length=160)

        def dsp():
            mel = F.melspectrogram(y=batch, sr=sr, n_mels=40, **kw)
            db = F.power_to_db(mel, top_db=None)
            F.mfcc(S=db, n_mfcc=20)
            F.rms(y=batch, frame_length=512, hop_length=160)
            F.zero_crossing_rate(batch, frame_length=512, hop_length=160)
            F.spectral_centroid(batch, sr=sr, **kw)

        for precision in ("auto", "double", "single"):
            F.set_fft_precision(precision)
            dsp()
            rows.append((f"DSP, example features, fft {precision}", best(dsp) / (audio_s * args.clips)))
        F.set_fft_precision("auto")

        import zarr

        frames = 1 + clip.size // 160
        feats = rng.standard_normal((frames * args.clips, 20 + 40 + 3)).astype(np.float32)
        store = zarr.open_group(tmp / "f.zarr", mode="w")
        arr = store.create_array("x", shape=feats.shape, chunks=(4096, feats.shape[1]), dtype="float32")

        def write():
            arr[:] = feats

        rows.append(("Zarr write (63 floats/frame, default codec)", best(write) / (audio_s * args.clips)))

    print(f"one core, per second of audio (10 s clips; DSP and write over {args.clips} clips)")
    width = max(len(r[0]) for r in rows)
    for name, cost in rows:
        print(f"{name:<{width}}  {cost * 1e3:8.3f} ms   ({1 / cost:8.0f} x real time)")


if __name__ == "__main__":
    main()
