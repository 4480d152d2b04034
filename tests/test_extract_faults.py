"""Faults against real processes: SIGKILL of the whole job at several moments, then a rerun; a
Dask worker killed mid-run under a real ``dask scheduler`` with two ``dask worker`` processes.
Each time the outputs must be identical to those of a clean run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from test_extract_support import (
    REPO,
    _env,
    assert_same_outputs,
    copy_samples,
    kill_group,
    run_cli,
    start_cli,
    wait_for,
    write_config,
)

FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "melspectrogram": {"n_mels": 32, "db": True},
            "zero_crossing_rate": {}, "spectral_centroid": {}}
# block_seconds and batch_seconds small enough that the long file below is split into parts
# (its own tasks, then the task that finishes it), leaving the short clips' batches as they were
COMPUTE = {"chunk_frames": 64, "min_batches": 40, "workers": 2, "block_seconds": 2.0,
           "batch_seconds": 4.0}


def _batches(out):
    root = out / ".batches"
    return len([n for n in os.listdir(root) if n.isdigit()]) if root.is_dir() else 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    copy_samples(root / "corpus", 80)
    rng = np.random.default_rng(0)
    night = 0.1 * np.sin(np.arange(20 * 16000) * 0.05) + 0.01 * rng.standard_normal(20 * 16000)
    night[6 * 16000:9 * 16000] = 0.0  # digital silence across a part boundary
    sf.write(root / "corpus" / "night.flac", night.astype(np.float32), 16000)
    clean = root / "clean"
    cfg = write_config(root / "clean.yaml", input=str(root / "corpus"), out=clean,
                       features=FEATURES, compute=COMPUTE)
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    batches = json.loads((clean / ".plan.json").read_text())["batches"]
    n_batches = len(batches)
    assert n_batches >= 20
    assert [b["part_frames"] for b in batches if b["kind"] == "long"] == [384]  # 6 parts
    return {"root": root, "clean": clean, "n_batches": n_batches}


MOMENTS = {
    "while starting": lambda out, n: False,  # killed after a fixed delay, before any plan
    "plan written": lambda out, n: (out / ".plan.json").exists(),
    "first batch committed": lambda out, n: _batches(out) >= 1,
    "half the batches": lambda out, n: _batches(out) >= n // 2,
    "all batches, while indexing": lambda out, n: _batches(out) >= n,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_rerun_equals_clean_run(corpus, moment, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus["root"] / "corpus"), out=out,
                       features=FEATURES, compute=COMPUTE)
    proc = start_cli("extract", cfg)
    try:
        if moment == "while starting":
            time.sleep(0.8)
        else:
            assert wait_for(lambda: MOMENTS[moment](out, corpus["n_batches"]) or proc.poll() is not None)
        alive = proc.poll() is None
    finally:
        kill_group(proc)
    committed = _batches(out)
    print(f"killed {moment}: alive={alive} committed={committed}/{corpus['n_batches']}")
    if moment != "all batches, while indexing":  # indexing is short: a hit there is luck
        assert alive, "the job ended before the kill"
        assert committed < corpus["n_batches"]
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert_same_outputs(corpus["clean"], out)
    assert _batches(out) == corpus["n_batches"]
    again = run_cli("extract", cfg)
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.parametrize(("signum", "to_group", "times", "said", "status"), [
    (signal.SIGINT, True, 1, "interrupted", 130),  # Ctrl-C on a terminal: the whole group
    (signal.SIGINT, True, 2, "interrupted", 130),  # and again while the job closes its cluster
    (signal.SIGTERM, False, 1, "terminated", 143),  # kill, a batch scheduler's cancel
], ids=["ctrl-c", "ctrl-c-twice", "sigterm"])
def test_a_stopped_job_ends_cleanly_and_the_rerun_goes_on(corpus, tmp_path, signum, to_group, times,
                                                          said, status):
    """Ctrl-C sends SIGINT to the job's whole process group; SIGTERM (kill, a scheduler's cancel)
    killed the job at once, leaving its cluster to die with it. Either way the job says how it
    stopped (exit 130 or 143), no process prints a traceback (each worker printed a
    KeyboardInterrupt from its event loop), none is left behind, and the same command then
    finishes from the committed batches with the outputs of a clean run."""
    import psutil

    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus["root"] / "corpus"), out=out,
                       features=FEATURES, compute=COMPUTE)
    proc = start_cli("extract", cfg)
    try:
        assert wait_for(lambda: _batches(out) >= 1 or proc.poll() is not None)
        group = [p for p in psutil.process_iter(["pid"]) if _group_of(p.pid) == proc.pid]
        if proc.poll() is not None:
            pytest.skip("the job ended before the signal")
        for _ in range(times):
            if to_group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
            time.sleep(0.1)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == status, err
    assert f"{said} (committed batches are kept" in err and "Traceback" not in err, err
    assert "ERROR" not in err, err  # nor distributed's log lines about what the stop cancelled
    assert wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                    for p in group), timeout=30)
    result = run_cli("extract", cfg)
    assert result.returncode == 0, result.stderr
    assert_same_outputs(corpus["clean"], out)


def _tmpfs(where, kib: int) -> bool:
    """Mount a tmpfs of ``kib`` KiB at ``where`` (root only); False where that cannot be done."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_a_full_disk_stops_the_job_and_the_rerun_goes_on(corpus, tmp_path):
    """The output's disk fills up part-way: every batch after that would fail, and the index
    could not be written either. The job stops at once with one line that says so (exit 3; it
    printed a Python traceback after a worker's "Compute Failed" log per batch and retry), the
    committed batches stay, and once there is room the same command finishes with the outputs
    of a clean run."""
    size = sum(f.stat().st_size for f in corpus["clean"].rglob("*") if f.is_file())
    mnt = tmp_path / "disk"
    if not _tmpfs(mnt, max(64, size // 2 // 1024)):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    try:
        out = mnt / "out"
        cfg = write_config(tmp_path / "job.yaml", input=str(corpus["root"] / "corpus"), out=out,
                           features=FEATURES, compute=COMPUTE)
        result = run_cli("extract", cfg)
        assert result.returncode == 3, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("audiofeat extract: error: no space left on the output's device"), lines
        assert "Traceback" not in result.stderr and "Compute Failed" not in result.stderr, result.stderr
        kept = _batches(out)
        assert 0 < kept < corpus["n_batches"], kept
        assert f"{kept} of {corpus['n_batches']} batches are committed and kept" in lines[-1]
        subprocess.run(["mount", "-o", f"remount,size={4 * size // 1024 + 1024}k", str(mnt)], check=True)
        result = run_cli("extract", cfg)
        assert result.returncode == 0, result.stderr
        assert_same_outputs(corpus["clean"], out)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_storage_error_reads_errors_their_chain_and_their_text():
    """A worker's exception reaches the job as its type and text: both forms are read."""
    import errno

    from jobs.errors import storage_error
    from jobs.extract import BatchError

    assert storage_error(OSError(errno.ENOSPC, "No space left on device")) == "no space left on the output's device"
    assert storage_error(OSError(errno.EDQUOT, "Disk quota exceeded")) == "the output's disk quota is exceeded"
    assert storage_error(OSError(errno.EROFS, "Read-only file system")) == "the output's file system is read-only"
    try:  # the job's own wrapping: the cause is the OSError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise BatchError("write", "OSError", "could not write") from exc
    except BatchError as wrapped:
        assert storage_error(wrapped) == "no space left on the output's device"
    assert storage_error(BatchError("write", "OSError", "[Errno 28] No space left on device")) is not None
    assert storage_error("Error writing bytes to file. Detail: [errno 28] No space left on device") is not None
    assert storage_error(OSError(errno.ENOENT, "No such file or directory")) is None
    assert storage_error(ValueError("a sample rate of 0 Hz")) is None
    assert storage_error("decoding failed part-way (flac decoder lost sync)") is None


def test_ctrl_c_in_a_client_call_leaves_no_traceback_from_distributed():
    """Ctrl-C landing in a blocking client call before its coroutine began made distributed's
    ``sync`` log "NameError: cannot access free variable 'future'" from its cancel callback
    (1 run of the ctrl-c-twice test in about 10): once the job is stopping, that record alone is
    dropped."""
    import logging

    import distributed.utils

    from jobs.cli import _QuietInterruptedSync

    source = "def sync():\n    def cancel():\n        if future is not None:\n            pass\n" \
             "    cancel()\n    future = None\n"
    namespace: dict = {}
    exec(compile(source, distributed.utils.__file__, "exec"), namespace)  # where distributed's is
    try:
        namespace["sync"]()
    except NameError as exc:
        caught = exc
    assert "free variable 'future'" in str(caught)

    def record(exc):
        return logging.LogRecord("tornado.application", logging.ERROR, __file__, 1,
                                 "Exception in callback", None, (type(exc), exc, exc.__traceback__))

    assert not _QuietInterruptedSync().filter(record(caught))
    try:
        namespace["nothing"]  # noqa: B018 - any other error is kept
    except KeyError as exc:
        assert _QuietInterruptedSync().filter(record(exc))


def test_main_called_from_python_leaves_the_signals_as_they_were(capsys):
    """``jobs.cli.main`` handles SIGINT and SIGTERM its own way only while a command runs."""
    from jobs.cli import main

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["inspect", str(REPO / "data" / "samples" / "7_theo_3.wav")]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert "7_theo_3.wav" in capsys.readouterr().out


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _spawn(args, log):
    return subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=_env())


@contextlib.contextmanager
def _job_on_a_running_scheduler(corpus, tmp_path, *, workers: int):
    """A `dask scheduler`, ``workers`` `dask worker` processes, and `audiofeat extract
    --scheduler` on the corpus, past its second committed batch: yields (scheduler, workers, out,
    config, job); every process still running is ended on exit."""
    procs = []
    log = open(tmp_path / "dask.log", "w")  # noqa: SIM115 - closed in finally
    try:
        yield _start_job_on_a_running_scheduler(corpus, tmp_path, procs, log, workers)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                kill_group(proc)
        log.close()


def _start_job_on_a_running_scheduler(corpus, tmp_path, procs: list, log, workers: int):
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                        "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)], log)
    procs.append(scheduler)
    assert wait_for(lambda: scheduler_file.exists() and scheduler_file.stat().st_size > 0, 60)
    address = json.loads(scheduler_file.read_text())["address"]
    started = [_spawn([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                       "--no-nanny", "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"], log)
               for i in range(workers)]
    procs += started
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(workers, timeout=60)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus["root"] / "corpus"), out=out,
                       features=FEATURES, compute=COMPUTE)
    job = start_cli("extract", cfg, "--scheduler", address)
    procs.append(job)
    assert wait_for(lambda: _batches(out) >= 2 or job.poll() is not None)
    return scheduler, started, out, cfg, job


def test_worker_killed_mid_run_loses_and_duplicates_nothing(corpus, tmp_path):
    with _job_on_a_running_scheduler(corpus, tmp_path, workers=2) as (_, workers, out, _, job):
        assert job.poll() is None, "the job finished before a worker could be killed"
        os.kill(workers[0].pid, signal.SIGKILL)  # one real worker process, mid-run
        workers[0].wait(timeout=30)
        stderr = job.communicate(timeout=240)[1]
        assert job.returncode == 0, stderr
        assert _batches(out) == corpus["n_batches"]
        assert_same_outputs(corpus["clean"], out)


def test_the_scheduler_lost_mid_run_stops_the_job_without_failing_its_files(corpus, tmp_path):
    """The scheduler dies: exit 4, no input is written down as failed (every batch still
    running was reported as its files' failures, exit 1), and the same command against a live
    scheduler ends with the clean run's outputs."""
    with _job_on_a_running_scheduler(corpus, tmp_path, workers=1) as (scheduler, _, out, cfg, job):
        assert job.poll() is None, "the job finished before the scheduler could be killed"
        os.killpg(scheduler.pid, signal.SIGKILL)
        stderr = job.communicate(timeout=120)[1]
        assert job.returncode == 4, stderr[-3000:]
        assert "lost the cluster's scheduler" in stderr and "committed and kept" in stderr
        # the client's reconnecting, cut short as the job stops, logs no traceback of its own
        assert "Traceback" not in stderr and "distributed.client - ERROR" not in stderr, stderr[-3000:]
        assert not (out / "failures.parquet").exists() or not pq.read_table(out / "failures.parquet").num_rows
        rerun = run_cli("extract", cfg)  # a local cluster this time
        assert rerun.returncode == 0, rerun.stderr
        assert_same_outputs(corpus["clean"], out)


def test_new_inputs_are_appended_and_gone_ones_left_out(corpus, tmp_path):
    import shutil

    import numpy as np
    import pyarrow.parquet as pq
    import zarr

    from jobs.compute import FeatureSet, decode, file_features

    src = sorted((corpus["root"] / "corpus").glob("*.wav"))
    folder = tmp_path / "grows"
    folder.mkdir()
    for path in src[:40]:
        shutil.copy(path, folder / path.name)
    (folder / "empty.wav").write_bytes(b"")  # a header failure: kept, not read again, not new
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=str(folder), out=out, features=FEATURES,
                       compute=COMPUTE)
    assert run_cli("extract", cfg).returncode == 1
    first = json.loads((out / "manifest.json").read_text())
    for path in src[40:52]:
        shutil.copy(path, folder / path.name)
    for path in src[:5]:
        (folder / path.name).unlink()
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    assert "12 new, 5 gone;" in result.stderr  # the unchanged empty.wav is not read again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["batches"] > first["counts"]["batches"]
    assert manifest["counts"]["batches_run"] == manifest["counts"]["batches"] - first["counts"]["batches"]
    files = pq.read_table(out / "files.parquet")
    assert sorted(files.column("path").to_pylist()) == sorted(str(folder / p.name) for p in src[5:52])
    starts = files.column("frame_start").to_pylist()
    assert starts == sorted(starts)  # the new inputs' rows after the others, as in the store
    group = zarr.open_group(str(out / "features.zarr"), mode="r")
    fs = FeatureSet.from_config(dict(group.attrs)["feature_config"])
    for row in files.to_pylist()[-4:]:
        ref = file_features(decode(row["path"], sr=fs.sr), fs)
        for name, expected in ref.items():
            got = group[name][row["frame_start"]:row["frame_stop"]]
            assert np.abs(got - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1e-6), name
    assert run_cli("extract", cfg).stdout.startswith("extract: nothing to do")


def test_a_file_deleted_or_replaced_while_the_job_ran_is_said_so(tmp_path):
    """Its decode failed with the decoder's words about a file that is not the one planned: a
    deleted file read as "not a readable audio file (libsndfile: System error)", one replaced by
    a shorter recording as "truncated"."""
    from jobs.compute import DecodeError, decode
    from jobs.extract import _fail_row
    from jobs.plan import probe

    paths = []
    for name, seconds in (("gone.flac", 2.0), ("replaced.flac", 2.0), ("kept.flac", 1.0)):
        path = tmp_path / name
        sf.write(str(path), np.zeros(int(16000 * seconds), np.float32), 16000)
        paths.append(path)
    planned = [probe(str(p)) for p in paths]
    os.unlink(paths[0])
    before = os.stat(paths[1]).st_mtime_ns
    sf.write(str(paths[1]), np.zeros(8000, np.float32), 16000)
    os.utime(paths[1], ns=(before + 10**9, before + 10**9))
    rows = []
    for f in planned:
        with pytest.raises(Exception) as caught:
            decode(f.path, sr=16000, expected_frames=f.frames + (0 if f is not planned[2] else 1))
        rows.append(_fail_row(f, "decode", caught.value))
    assert rows[0]["error_type"] == "FileGone" and "deleted or moved" in rows[0]["message"]
    assert rows[1]["error_type"] == "ChangedDuringRun"
    assert "changed on disk after the job read its header" in rows[1]["message"]
    assert rows[2]["error_type"] == "LengthMismatch"  # unchanged: the decoder's own reason stands
    assert isinstance(caught.value, DecodeError)


def test_ctrl_c_that_lands_in_a_gc_callback_still_stops_the_command():
    """The handler's KeyboardInterrupt, raised inside a callback whose exceptions Python ignores
    (distributed's gc callback), printed "Exception ignored" and the job ran to its end, deaf
    to further Ctrl-C: the interrupt is delivered again once the main thread is out of it."""
    import gc

    from jobs.cli import _stop_signals

    def callback(phase, info):
        if phase == "start" and callback.armed:
            callback.armed = False
            signal.raise_signal(signal.SIGINT)  # its handler runs here, inside the callback

    callback.armed = True
    unraisable = []
    previous = sys.unraisablehook
    # Python's own handler (an earlier test may have imported dask-jobqueue, which sets its own:
    # _stop_signals leaves a handler someone else set alone)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    gc.callbacks.append(callback)
    try:
        sys.unraisablehook = lambda info: unraisable.append(info)  # what the default would print
        with pytest.raises(KeyboardInterrupt), _stop_signals():
            gc.collect()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        gc.callbacks.remove(callback)
        sys.unraisablehook = previous
        signal.signal(signal.SIGINT, handler)
    assert not unraisable  # the ignored exception was ours, taken over, not printed
