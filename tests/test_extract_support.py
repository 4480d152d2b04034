"""Helpers for the extract tests: the mixed corpus plus folder links, configs, processes.

Imported by the other ``test_extract*`` modules (``from test_extract_support import ...``); the
tests here check the helpers themselves.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"

FEATURES = {
    "mfcc": {"n_mfcc": 13, "n_mels": 32},
    "melspectrogram": {"n_mels": 32, "db": True},
    "rms": {},
    "zero_crossing_rate": {},
    "spectral_centroid": {},
    "spectral_bandwidth": {},
    "spectral_rolloff": {},
    "spectral_flatness": {},
    "median_frequency": {},
    "band_energy_ratio": {"split_frequency": 1000},
}


def tone(seconds, sr, freq=440.0, amp=0.5, channels=1, seed=0):
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    y = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(n)
    y = y.astype(np.float32)
    if channels > 1:
        y = np.stack([y * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return y


def make_corpus(root: Path) -> dict:
    """The shared mixed corpus (tests/audio_factory.py) plus what a folder walk must survive: a
    linked folder outside the tree (followed), a second link to a folder inside it (searched
    once), and a link looping back to the root.

    Returns ``{"ok": [paths], "fail": {path: stage}}`` (absolute paths, sorted).
    """
    from audio_factory import make_mixed_corpus, write_tone

    corpus = make_mixed_corpus(root)
    ok, fail = list(corpus["good"]), dict(corpus["bad"])
    external = root.parent / (root.name + "_external")
    write_tone(external / "outside.wav", 16000, 0.25, freq=600.0)
    os.symlink(external, root / "linked_external")
    ok.append(str(root / "linked_external" / "outside.wav"))
    os.symlink(root / "nested", root / "a_link_to_nested")
    os.symlink(root, root / "nested" / "loop")
    return {"ok": sorted(ok), "fail": fail}


def copy_samples(dest: Path, n: int) -> list[str]:
    """The first ``n`` bundled FSDD clips copied into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(SAMPLES.glob("*.wav"))[:n]:
        shutil.copy(src, dest / src.name)
        out.append(str(dest / src.name))
    return out


def write_config(path: Path, *, input, out, features=None, sr=16000, n_fft=512, hop=160,
                 compute=None) -> Path:
    cfg = {
        "input": input if isinstance(input, (list, str)) else str(input),
        "out": str(out),
        "audio": {"sr": sr, "mono": True},
        "frames": {"n_fft": n_fft, "hop_length": hop},
        "features": features or FEATURES,
        "compute": {"device": "cpu", "workers": 2, "batch_seconds": 600, **(compute or {})},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_cli(*argv, timeout=240, env=None) -> subprocess.CompletedProcess:
    """``python -m jobs ARGV`` in a new process group; killed whole if it hangs."""
    proc = subprocess.Popen([sys.executable, "-m", "jobs", *map(str, argv)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=_env(env))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out: {argv}\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def start_cli(*argv, env=None) -> subprocess.Popen:
    """``python -m jobs ARGV`` in a new process group, with Ctrl-C's default handling (a shell
    without job control starts background commands with SIGINT ignored)."""
    return subprocess.Popen([sys.executable, "-m", "jobs", *map(str, argv)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=_env(env),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started and everything in its process group (its Dask workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for(predicate, timeout=120.0, interval=0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def read_tables(out: Path):
    files = pq.read_table(out / "files.parquet")
    failures = pq.read_table(out / "failures.parquet")
    return files, failures


def assert_same_outputs(a: Path, b: Path) -> None:
    """files.parquet, failures.parquet and every file's feature rows are identical."""
    import zarr

    fa, xa = read_tables(a)
    fb, xb = read_tables(b)
    assert fa.equals(fb), "files.parquet differ"
    assert xa.equals(xb), "failures.parquet differ"
    ga, gb = zarr.open_group(str(a / "features.zarr"), mode="r"), zarr.open_group(str(b / "features.zarr"), mode="r")
    assert sorted(ga.array_keys()) == sorted(gb.array_keys())
    for name in ga.array_keys():
        assert ga[name].shape == gb[name].shape
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)


# ---------------------------------------------------------------- tests of the helpers


def test_corpus_walk_finds_what_the_factory_promises(tmp_path):
    from jobs.discover import discover

    corpus = make_corpus(tmp_path / "c")
    found = discover(str(tmp_path / "c"))
    assert found.paths == sorted([*corpus["ok"], *corpus["fail"]])
