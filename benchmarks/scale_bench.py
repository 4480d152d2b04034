"""Scale: many short files through ``audiofeat extract`` on 2 workers, per-process peak memory.

Builds corpora of N files by hard-linking the FSDD recordings (no extra disk), starts a real
``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, runs ``audiofeat extract
--scheduler`` against them, and samples the resident memory of the scheduler, the client (the
``audiofeat`` process) and each worker every 0.2 s. Prints, per corpus size: wall time, files per
second, the per-file cost, the number of tasks in the graph (one per batch) and the peak RSS of
each process. The issue's targets: per-file cost at 100k no worse than at 3k; scheduler < 1 GB.

Run:  python benchmarks/scale_bench.py --sizes 3000 100000 [--fsdd DIR] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
DEFAULT_FSDD = HERE.parent.parent / "shared" / "data" / "fsdd" / "recordings"

CONFIG = """\
input: {corpus}
out: {out}
audio: {{sr: 8000, mono: true}}
frames: {{n_fft: 256, hop_length: 80}}
features:
  mfcc: {{n_mfcc: 20, n_mels: 40}}
  melspectrogram: {{n_mels: 40, db: true}}
  rms: {{}}
  zero_crossing_rate: {{}}
  spectral_centroid: {{}}
compute: {{device: cpu, workers: 2, batch_seconds: 600}}
"""


def build_corpus(fsdd: Path, root: Path, n: int) -> Path:
    """``n`` hard links to the FSDD files, 1,000 per folder, named uniquely."""
    sources = sorted(fsdd.glob("*.wav"))
    corpus = root / f"corpus_{n}"
    if corpus.is_dir() and sum(1 for _ in corpus.rglob("*.wav")) == n:
        return corpus
    shutil.rmtree(corpus, ignore_errors=True)
    for i in range(n):
        folder = corpus / f"{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        src = sources[i % len(sources)]
        os.link(src, folder / f"{i:07d}_{src.name}")
    return corpus


class PeakRSS(threading.Thread):
    """Samples the RSS of named processes until stopped; keeps each one's peak (bytes)."""

    def __init__(self, processes: dict[str, int], interval: float = 0.2):
        super().__init__(daemon=True)
        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.peak = dict.fromkeys(processes, 0)
        self.interval = interval
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            for name, proc in self.processes.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


def start_cluster(workdir: Path, n_workers: int):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    sched_file = workdir / "scheduler.json"
    sched_file.unlink(missing_ok=True)
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sched_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if sched_file.exists() and sched_file.stat().st_size:
            break
        time.sleep(0.1)
    address = json.loads(sched_file.read_text())["address"]
    workers = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
         "--local-directory", str(workdir / f"worker{i}")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n_workers)]
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(n_workers, timeout=120)
    return address, scheduler, workers


def run_size(fsdd: Path, workdir: Path, n: int, n_workers: int) -> dict:
    corpus = build_corpus(fsdd, workdir, n)
    out = workdir / f"run_{n}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = workdir / f"scale_{n}.yaml"
    cfg.write_text(CONFIG.format(corpus=corpus, out=out))
    address, scheduler, workers = start_cluster(workdir, n_workers)
    try:
        t0 = time.perf_counter()
        client = subprocess.Popen([sys.executable, "-m", "jobs", "extract", str(cfg), "--scheduler", address],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        names = {"scheduler": scheduler.pid, "client": client.pid}
        names.update({f"worker{i}": w.pid for i, w in enumerate(workers)})
        sampler = PeakRSS(names)
        sampler.start()
        log, _ = client.communicate()
        wall = time.perf_counter() - t0
        sampler.stop()
    finally:
        for proc in [*workers, scheduler]:
            proc.terminate()
        for proc in [*workers, scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    if client.returncode not in (0, 1):
        raise SystemExit(f"extract failed (exit {client.returncode}):\n{log[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {"files": n, "wall_s": wall, "files_per_s": n / wall, "ms_per_file": 1000 * wall / n,
            "tasks": manifest["counts"]["batches"], "done": manifest["counts"]["files"],
            "failed": manifest["counts"]["failures"], "peak_rss_mb": {k: v / 2**20 for k, v in sampler.peak.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[3000, 100000])
    ap.add_argument("--fsdd", type=Path, default=DEFAULT_FSDD)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="audiofeat-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"scale benchmark in {workdir} ({psutil.cpu_count()} cores, {args.workers} workers)")
    results = [run_size(args.fsdd, workdir, n, args.workers) for n in args.sizes]
    head = (f"{'files':>8} {'wall s':>8} {'files/s':>8} {'ms/file':>8} {'tasks':>6} {'failed':>6} "
            f"{'sched MB':>9} {'client MB':>9} " + " ".join(f"{'w' + str(i) + ' MB':>8}" for i in range(args.workers)))
    print(head)
    print("-" * len(head))
    for r in results:
        rss = r["peak_rss_mb"]
        print(f"{r['files']:>8} {r['wall_s']:>8.1f} {r['files_per_s']:>8.0f} {r['ms_per_file']:>8.2f} "
              f"{r['tasks']:>6} {r['failed']:>6} {rss['scheduler']:>9.0f} {rss['client']:>9.0f} "
              + " ".join(f"{rss[f'worker{i}']:>8.0f}" for i in range(args.workers)))
    if len(results) > 1:
        small, big = results[0], results[-1]
        print(f"per-file cost at {big['files']} vs {small['files']}: {big['ms_per_file'] / small['ms_per_file']:.2f}x "
              f"(target <= 1.0); scheduler peak {big['peak_rss_mb']['scheduler']:.0f} MB (target < 1024)")
    (workdir / "scale_results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
