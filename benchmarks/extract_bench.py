"""Benchmark: `audiofeat extract` against a naive librosa script, whole processes timed.

    python benchmarks/extract_bench.py                 # everything (several minutes)
    python benchmarks/extract_bench.py --only fsdd     # fsdd | 30k | workers | long | split
    python benchmarks/extract_bench.py naive IN OUT    # the naive script on its own

Runs, with the same features (MFCC 20 / 40 mels, log-mel 40, RMS, ZCR, spectral centroid at the
corpus's native 8 kHz, n_fft 256, hop 80):
1. naive: ``librosa.load`` + ``librosa.feature.*`` per file, joblib with 2 processes, one .npy
   per file; vs ``audiofeat extract`` with 2 workers; on the 3,000 FSDD clips;
2. the same on 30,000 files (FSDD repeated through hard links in a temporary folder);
3. ``audiofeat extract`` with 1 worker against 2 on the 30,000 files;
4. a generated 2-hour 44.1 kHz recording (resampled to 16 kHz): time and the peak RSS of the
   largest process of the job (coordinator or worker), sampled every 50 ms;
5. ``split``: a generated 2-hour recording already at the store's 16 kHz, one at 44.1 kHz
   (resampled: one task writes its 16 kHz samples to the run folder for the parts), and a 48 kHz
   FLAC (resampled, its decoding first spread over the workers in ranges), each as one task
   (``batch_seconds`` above its length) and split into parts of ``batch_seconds`` (600 s), with
   whether the two stores are the same bit for bit.
Each comparison runs both sides ``--rounds`` times (2), in alternating order, and compares their
best runs: on this machine a run right after a heavy one is often slower, which would otherwise
always fall on the same side. Every run writes a new output folder, and the outputs are deleted
only at the end (see ``_fresh``: on ext4 without a journal, a run right after a large deletion
is slowed in the kernel). Each timing is a whole process, Python start-up and cluster
start-up included. Where the time
goes inside audiofeat's tasks comes from the run's manifest.json (``task_seconds``).
CPU seconds (user + system of every process of the run, from getrusage) are printed beside the
wall times: on a shared machine they move much less than wall time. The machine this runs on
may be shared: repeat runs and read the figures as rough.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDD = Path(os.environ.get("AUDIOFEAT_FSDD", REPO.parent / "shared" / "data" / "fsdd" / "recordings"))
SR, N_FFT, HOP = 8000, 256, 80
FEATURES = {"mfcc": {"n_mfcc": 20, "n_mels": 40}, "melspectrogram": {"n_mels": 40, "db": True},
            "rms": {}, "zero_crossing_rate": {}, "spectral_centroid": {}}


# ---------------------------------------------------------------- the naive script


def _naive_one(path: str, out_dir: str, sr: int, n_fft: int, hop: int) -> None:
    import librosa
    import numpy as np

    y, _ = librosa.load(path, sr=sr, mono=True)
    kw = {"n_fft": n_fft, "hop_length": hop}
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=40, **kw)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40, **kw))
    rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)
    centroid = librosa.feature.spectral_centroid(y=y, sr=sr, **kw)
    features = np.concatenate([mfcc, mel, rms, zcr, centroid]).T.astype(np.float32)
    np.save(os.path.join(out_dir, Path(path).stem + ".npy"), features)


def naive_main(input_dir: str, out_dir: str, jobs: int = 2) -> None:
    from joblib import Parallel, delayed

    os.makedirs(out_dir, exist_ok=True)
    paths = sorted(str(p) for p in Path(input_dir).rglob("*.wav"))
    Parallel(n_jobs=jobs)(delayed(_naive_one)(p, out_dir, SR, N_FFT, HOP) for p in paths)
    print(f"naive: {len(paths)} files -> {out_dir}")


# ---------------------------------------------------------------- timing whole processes


def _tree_rss(pid: int) -> int:
    """Largest RSS (bytes) among a process and its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    best = 0
    for p in procs:
        try:
            best = max(best, p.memory_info().rss)
        except psutil.Error:
            pass
    return best


def timed(argv: list[str], *, label: str) -> dict:
    """Run a command; wall seconds and the peak RSS of its largest process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    stop.set()
    thread.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every reaped descendant, recursively
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{out}\n{err}")
    print(f"  {label:<44s} {wall:8.1f} s wall {cpu:8.1f} s CPU   peak RSS {peak[0] / 2**20:5.0f} MB",
          flush=True)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak[0] / 2**20}


def _config(path: Path, *, input: str, out: str, sr=SR, n_fft=N_FFT, hop=HOP, workers=2,
            batch_seconds=600) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "input": input, "out": out, "audio": {"sr": sr, "mono": True},
        "frames": {"n_fft": n_fft, "hop_length": hop}, "features": FEATURES,
        "compute": {"device": "cpu", "workers": workers, "batch_seconds": batch_seconds},
    }))
    return path


_RUNS = itertools.count(1)


def _fresh(out: Path) -> Path:
    """A new output folder for every timed run (``out`` with a run number); nothing is deleted
    until the benchmark ends.

    On ext4 without a journal (the VMs this was measured on), creating a file passes over every
    inode deleted in the last minutes (the kernel's ``recently_deleted()``): a run started right
    after the previous run's output was deleted paid about 0.7 ms of kernel time per file or
    folder it created (7.5 % of a 30,000-file audiofeat run's CPU in ``perf``; the naive script
    makes 30,000 files), so whichever command followed a deletion was slowed.
    """
    return out.with_name(f"{out.name}-{next(_RUNS)}")


def audiofeat(cfg: Path, out: Path, label: str, workers: int | None = None) -> dict:
    out = _fresh(out)
    argv = [sys.executable, "-m", "jobs", "extract", str(cfg), "--out", str(out)]
    if workers:
        argv += ["--workers", str(workers)]
    result = timed(argv, label=label)
    manifest = json.loads((out / "manifest.json").read_text())
    result["task_seconds"] = manifest["task_seconds"]
    result["coordinator_seconds"] = manifest.get("coordinator_seconds", {})
    result["files"] = manifest["counts"]["files"]
    result["out"] = str(out)
    return result


def naive(input_dir: Path, out: Path, label: str) -> dict:
    out = _fresh(out)
    return timed([sys.executable, __file__, "naive", str(input_dir), str(out)], label=label)


def side_by_side(first, second, rounds: int) -> tuple[dict, dict]:
    """The best run (least wall time) of each of two commands, run ``rounds`` times each in
    alternating order: on this machine the run right after a heavy one is often slower (the
    host takes back the memory the first one used), which would otherwise always fall on the
    second command."""
    runs: tuple[list, list] = ([], [])
    for r in range(rounds):
        order = ((0, first), (1, second)) if r % 2 == 0 else ((1, second), (0, first))
        for i, run in order:
            runs[i].append(run())
    return tuple(min(rs, key=lambda x: x["wall_s"]) for rs in runs)


def where_time_goes(result: dict) -> str:
    t = result["task_seconds"]
    keys = ("decode_s", "resample_s", "dsp_s", "index_s", "write_s", "commit_s")
    busy = sum(t.get(k, 0.0) for k in keys)
    parts = ", ".join(f"{k[:-2]} {t.get(k, 0.0):.1f} s" for k in keys)
    c = result.get("coordinator_seconds", {})
    coord = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in c.items())
    return (f"\n    tasks {t.get('total_s', 0):.1f} worker-s: {parts} (sum {busy:.1f})"
            f"\n    coordinator: {coord}")


def _dsp_groups(clips: int = 1000):
    """The job's own DSP input: ``clips`` FSDD recordings in length-sorted, zero-padded groups of
    at most MAX_BUFFER_FRAMES frames (``jobs.compute.buffer_groups``, as the job forms them), and the
    FeatureSet of this benchmark's config."""
    import soundfile as sf

    from jobs.compute import FeatureSet, buffer_groups, segment_buffers
    from jobs.config import feature_config, parse_config

    cfg = parse_config({"input": str(FSDD), "out": "unused", "audio": {"sr": SR},
                        "frames": {"n_fft": N_FFT, "hop_length": HOP}, "features": FEATURES})
    fs = FeatureSet.from_config(feature_config(cfg))
    fs = FeatureSet.from_config(feature_config(cfg), tables=fs.make_tables())
    signals = sorted((sf.read(p, dtype="float32")[0] for p in sorted(FSDD.glob("*.wav"))[:clips]), key=len)
    groups = [segment_buffers(group, fs) for group in buffer_groups(signals, lambda y: 1 + y.shape[0] // HOP)]
    return groups, fs


_KERNEL: dict = {}


def _run_kernel(start_at: float) -> float:
    """Seconds for five passes of the job's DSP over ``_KERNEL``'s groups, started at
    ``start_at`` (time.time) so that concurrent runs overlap fully."""
    from threadpoolctl import threadpool_limits

    from jobs.compute import compute_segments

    groups, fs = _KERNEL["groups"], _KERNEL["fs"]
    with threadpool_limits(1):
        for zbuf, ebuf, n_valid in groups[:2]:  # warm
            compute_segments(zbuf, ebuf, fs, n_valid=n_valid)
        while time.time() < start_at:
            time.sleep(0.001)
        t0 = time.perf_counter()
        for _ in range(5):
            for zbuf, ebuf, n_valid in groups:
                compute_segments(zbuf, ebuf, fs, n_valid=n_valid)
        return time.perf_counter() - t0


def machine_ceiling() -> dict:
    """How much faster two processes get through the job's DSP than one on this machine: the
    same work (five passes over 1,000 FSDD clips) timed alone, then in two forked processes at
    once. Two cores that share their host's execution units or memory bandwidth give less
    than 2x, and no job's 1 -> 2 workers speed-up can exceed it."""
    import multiprocessing as mp

    _KERNEL["groups"], _KERNEL["fs"] = _dsp_groups()
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        alone = min(pool.map(_run_kernel, [time.time() + 0.5]) for _ in range(2))[0]
    with ctx.Pool(2) as pool:
        both = min((pool.map(_run_kernel, [time.time() + 0.5] * 2, chunksize=1) for _ in range(2)),
                   key=max)
    return {"alone_s": alone, "two_at_once_s": both, "ceiling": 2 * alone / max(both)}


def link_corpus(src: Path, dest: Path, copies: int) -> int:
    """``copies`` x the files of ``src`` as hard links in ``dest`` (a new name each time)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.wav"))
    for c in range(copies):
        sub = dest / f"copy{c:02d}"
        sub.mkdir(exist_ok=True)
        for f in files:
            target = sub / f.name
            if not target.exists():
                try:
                    os.link(f, target)
                except OSError:  # another file system: a symlink still gives a new path
                    os.symlink(f, target)
    return copies * len(files)


def _same_store(a: Path, b: Path) -> bool:
    import numpy as np
    import pyarrow.parquet as pq
    import zarr

    ga, gb = zarr.open_group(str(a / "features.zarr"), mode="r"), zarr.open_group(str(b / "features.zarr"), mode="r")
    return pq.read_table(a / "files.parquet").equals(pq.read_table(b / "files.parquet")) and all(
        np.array_equal(ga[n][:], gb[n][:]) for n in ga.array_keys())


def make_long_file(path: Path, hours: float = 2.0, sr: int = 44100, *, channels: int = 1,
                   subtype: str = "PCM_16", tone: float = 0.3) -> None:
    """A long recording written block by block (never whole in memory): a slowly moving tone of
    amplitude ``tone`` over noise, independent in each channel (``tone=0``: a field recording's
    background, which a lossless codec hardly compresses)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = sr * 60
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=channels, subtype=subtype) as handle:
        for minute in range(int(hours * 60)):
            t = (np.arange(block) + minute * block) / sr
            y = tone * np.sin(2 * np.pi * (200 + 5 * minute) * t)[:, None] \
                + 0.05 * rng.standard_normal((block, channels))
            handle.write(y.astype(np.float32))


def byte_compile_project() -> str:
    """Byte-compile featurelib and jobs, as any environment has them after a first run.

    Python writes ``__pycache__`` as it imports, except where ``PYTHONDONTWRITEBYTECODE`` is set
    (this machine sets it, as many container images do): an editable install then compiles the
    job's own modules from source in every process of every run (coordinator, fork server),
    about 8 % of a 3,000-clip run (8 paired runs of whole commands: 1.86 against 1.97 s), while the
    naive script's librosa was compiled when pip installed it. Returns what was done, or ''.
    """
    import compileall

    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return ""
    root = Path(__file__).resolve().parent.parent
    for package in ("featurelib", "jobs"):
        compileall.compile_dir(str(root / package), quiet=1)
    return ("byte-compiled featurelib and jobs first (PYTHONDONTWRITEBYTECODE is set here, so "
            "imports would compile them from source in every run; librosa's came compiled)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["fsdd", "30k", "workers", "long", "split"], action="append")
    parser.add_argument("--copies", type=int, default=10, help="FSDD copies for the large corpus")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each side of a comparison, in alternating order (best of them)")
    parser.add_argument("--hours", type=float, default=2.0, help="length of the long file")
    parser.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    only = set(args.only or ["fsdd", "30k", "workers", "long", "split"])
    if not FSDD.is_dir():
        raise SystemExit(f"FSDD not found at {FSDD} (set AUDIOFEAT_FSDD)")
    scratch = Path(args.tmp or tempfile.mkdtemp(prefix="audiofeat-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"scratch: {scratch}; {os.cpu_count()} CPUs; timings are whole processes", flush=True)
    compiled = byte_compile_project()
    if compiled:
        print(f"  {compiled}", flush=True)
    report = {}
    try:
        if "fsdd" in only:
            print("FSDD, 3,000 clips:", flush=True)
            fsdd_cfg = _config(scratch / "fsdd.yaml", input=str(FSDD), out=str(scratch / "af_fsdd"))
            n, a = side_by_side(
                lambda: naive(FSDD, scratch / "naive_fsdd", "naive (librosa + joblib, 2 processes)"),
                lambda: audiofeat(fsdd_cfg, scratch / "af_fsdd", "audiofeat extract (2 workers)", workers=2),
                args.rounds)
            print(f"  ratio naive / audiofeat (best of {args.rounds} each): {n['wall_s'] / a['wall_s']:.1f}x wall, "
                  f"{n['cpu_s'] / a['cpu_s']:.1f}x CPU;  {where_time_goes(a)}")
            report["fsdd"] = {"naive": n, "audiofeat": a, "ratio": n["wall_s"] / a["wall_s"]}
        if {"30k", "workers"} & only:
            big = scratch / "fsdd_x"
            count = link_corpus(FSDD, big, args.copies)
            cfg = _config(scratch / "big.yaml", input=str(big), out=str(scratch / "af_big"))
            print(f"{count:,} files (FSDD x {args.copies} through links):", flush=True)
            if "30k" in only:
                n, a = side_by_side(
                    lambda: naive(big, scratch / "naive_big", "naive (librosa + joblib, 2 processes)"),
                    lambda: audiofeat(cfg, scratch / "af_big", "audiofeat extract (2 workers)", workers=2),
                    args.rounds)
                print(f"  ratio naive / audiofeat (best of {args.rounds} each): {n['wall_s'] / a['wall_s']:.1f}x wall, "
                      f"{n['cpu_s'] / a['cpu_s']:.1f}x CPU;  {where_time_goes(a)}")
                report["30k"] = {"naive": n, "audiofeat": a, "ratio": n["wall_s"] / a["wall_s"]}
            if "workers" in only:
                one, two = side_by_side(
                    lambda: audiofeat(cfg, scratch / "af_big", "audiofeat extract (1 worker)", workers=1),
                    lambda: audiofeat(cfg, scratch / "af_big", "audiofeat extract (2 workers)", workers=2),
                    args.rounds)
                print(f"  speed-up 1 -> 2 workers (best of {args.rounds} each): {one['wall_s'] / two['wall_s']:.2f}x;  "
                      f"2 workers: {where_time_goes(two)}")
                ceiling = machine_ceiling()
                # the part of each run outside its tasks (start-up, plan, index: wall - extract_s)
                serial = {k: r["wall_s"] - r["coordinator_seconds"].get("extract_s", 0.0)
                          for k, r in (("one", one), ("two", two))}
                bound = one["wall_s"] / (serial["two"] + (one["wall_s"] - serial["one"]) / ceiling["ceiling"])
                print(f"  this machine's ceiling for 2 processes of the job's DSP: {ceiling['ceiling']:.2f}x "
                      f"(alone {ceiling['alone_s']:.2f} s; two at once "
                      f"{' and '.join(f'{t:.2f}' for t in ceiling['two_at_once_s'])} s); outside the tasks "
                      f"the runs spent {serial['one']:.1f} s (1 worker) and {serial['two']:.1f} s (2 workers): "
                      f"the most 2 workers could give here is {bound:.2f}x", flush=True)
                report["workers"] = {"one": one, "two": two, "speedup": one["wall_s"] / two["wall_s"],
                                     "machine": ceiling, "bound": bound}
        if "long" in only:
            path = scratch / "long_44k.wav"
            if not path.exists():
                make_long_file(path, hours=args.hours)
            print(f"one {args.hours:g}-hour 44.1 kHz file ({path.stat().st_size / 2**20:.0f} MB):", flush=True)
            cfg = _config(scratch / "long.yaml", input=str(path), out=str(scratch / "af_long"),
                          sr=16000, n_fft=512, hop=160)
            a = audiofeat(cfg, scratch / "af_long", "audiofeat extract (2 workers)", workers=2)
            print(f"  peak RSS of the largest process: {a['peak_rss_mb']:.0f} MB;  {where_time_goes(a)}")
            report["long"] = a
        if "split" in only:
            report["split"] = {}
            for label, name, sr, kind in (
                    ("16 kHz, the store's rate", "long_16k.flac", 16000, {}),
                    ("44.1 kHz, resampled to 16 kHz", "long_44k.wav", 44100, {}),
                    ("48 kHz stereo 24-bit FLAC of background noise, resampled to 16 kHz (decoded "
                     "in ranges first)", "long_48k.flac", 48000,
                     {"channels": 2, "subtype": "PCM_24", "tone": 0.0})):
                path = scratch / name
                if not path.exists():
                    make_long_file(path, hours=args.hours, sr=sr, **kind)
                print(f"one {args.hours:g}-hour {label} file: one task, then parts:", flush=True)
                runs = {}
                for part, seconds in (("one", 1e9), ("parts", 600)):
                    out = scratch / f"af_{sr}_{part}"
                    cfg = _config(scratch / f"split_{sr}_{part}.yaml", input=str(path), out=str(out),
                                  sr=16000, n_fft=512, hop=160, batch_seconds=seconds)
                    runs[part] = audiofeat(cfg, out, f"audiofeat extract, {part} (2 workers)", workers=2)
                same = _same_store(Path(runs["one"]["out"]), Path(runs["parts"]["out"]))
                print(f"  speed-up from the parts: {runs['one']['wall_s'] / runs['parts']['wall_s']:.2f}x; "
                      f"the same store bit for bit: {same}")
                report["split"][sr] = {**runs, "speedup": runs["one"]["wall_s"] / runs["parts"]["wall_s"],
                                       "same": same}
        print(json.dumps(report, indent=1))
    finally:
        if args.tmp is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "naive":
        naive_main(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    else:
        main()
