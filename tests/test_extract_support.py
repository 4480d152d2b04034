"""Helpers for the extract tests: a mixed corpus written on the spot, configs, comparisons.

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
import soundfile as sf
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


def make_mixed_corpus(root: Path) -> dict:
    """Write a corpus with every awkward case; returns what a run must report for it.

    ``ok``: paths that must end in files.parquet; ``fail``: path -> stage (``None``: any stage,
    for cases where the outcome depends on libsndfile, e.g. a truncated WAV).
    """
    root.mkdir(parents=True, exist_ok=True)
    ok, fail = [], {}

    def write(rel, data, sr, **kw):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), data, sr, **kw)
        ok.append(str(path))
        return path

    write("tone_16k.wav", tone(1.0, 16000), 16000)
    write("stereo_44k.flac", tone(0.7, 44100, 1000, channels=2, seed=1), 44100)
    write("vorbis_22k.ogg", tone(0.6, 22050, 300, seed=2), 22050, format="OGG", subtype="VORBIS")
    write("float_48k_3ch.wav", tone(0.4, 48000, 2000, channels=3, seed=3), 48000, subtype="FLOAT")
    write("pcm24_8k.aiff", tone(0.8, 8000, 700, seed=4), 8000, subtype="PCM_24")
    write("UPPER CASE.WAV", tone(0.5, 16000, 900, seed=5), 16000)
    write("sub/deeper/ünïcødé name #1 (copy).wav", tone(0.3, 11025, 500, seed=6), 11025)
    write("sub/semi;colon's [x].flac", tone(0.2, 32000, 1500, seed=7), 32000)
    write("short_10.wav", tone(10 / 16000, 16000, seed=8), 16000)
    write("short_1.wav", np.array([0.25], np.float32), 8000)
    write("silent.wav", np.zeros(8000, np.float32), 16000)
    write("x.wav/inside_folder.wav", tone(0.3, 16000, 300, seed=9), 16000)
    write("mpeg.mp3", tone(0.5, 16000, 440, seed=10), 16000, format="MP3")
    (root / "notes.txt").write_text("not an input: a folder only yields audio extensions\n")
    # broken files
    (root / "empty.wav").write_bytes(b"")
    fail[str(root / "empty.wav")] = "probe"
    (root / "not_audio.wav").write_text("this is plain text, not a RIFF file\n" * 20)
    fail[str(root / "not_audio.wav")] = "probe"
    nan = tone(0.3, 16000, seed=11)
    nan[100:110] = np.nan
    sf.write(str(root / "nan_samples.wav"), nan, 16000, subtype="FLOAT")
    fail[str(root / "nan_samples.wav")] = "decode"
    good = root / "truncated.wav"
    sf.write(str(good), tone(1.0, 16000, seed=12), 16000)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2 + 1])  # odd cut: half a sample at the end
    truncated_ok = _readable_as_planned(good)
    if truncated_ok:
        ok.append(str(good))
    else:
        fail[str(good)] = None
    external = root.parent / (root.name + "_external")
    external.mkdir(exist_ok=True)
    sf.write(str(external / "outside.wav"), tone(0.25, 16000, 600, seed=13), 16000)
    os.symlink(external, root / "linked_external")  # a linked folder is followed
    ok.append(str(root / "linked_external" / "outside.wav"))
    os.symlink(root / "sub", root / "a_link_to_sub")  # a folder reached twice is searched once
    os.symlink(root, root / "sub" / "loop")  # a loop back to the root must not hang discovery
    return {"ok": sorted(ok), "fail": fail}


def _readable_as_planned(path: Path) -> bool:
    try:
        with sf.SoundFile(str(path)) as handle:
            frames = handle.frames
            data = handle.read(dtype="float32")
        return data.shape[0] == frames and frames > 0
    except Exception:  # noqa: BLE001
        return False


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
    return subprocess.Popen([sys.executable, "-m", "jobs", *map(str, argv)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=_env(env))


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


def test_mixed_corpus_is_what_it_claims(tmp_path):
    corpus = make_mixed_corpus(tmp_path / "c")
    assert len(corpus["ok"]) >= 14
    for path in corpus["ok"]:
        assert _readable_as_planned(Path(path)), path
    assert not _readable_as_planned(tmp_path / "c" / "empty.wav")
