"""A file that crashes the decoder: left out alone, its batch kept (jobs.crashes).

A decoder crash (a segmentation fault in libsndfile or a codec it uses) killed the worker on
every attempt at the batch; Dask then gave it up as KilledWorker and every file of the batch
failed, with those of other batches queued on the dying workers: 80 of 121 files for one bad
file. The job's crash is simulated where a real one happens, inside libsndfile's read, by a
``sitecustomize`` that the test puts on the workers' path: reading a file whose name holds
"segfault" dereferences a null pointer (the file's own name: the test's folder may hold the
words too).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf
from test_extract_support import REPO, copy_samples, read_tables, run_cli, write_config

from jobs.crashes import CrashGuard

CRASH_HOOK = textwrap.dedent('''
    import os
    if os.environ.get("AUDIOFEAT_TEST_CRASH"):
        import soundfile

        _read = soundfile.SoundFile.read

        def read(self, *args, **kwargs):
            if "segfault" in os.path.basename(str(getattr(self, "name", ""))):
                import ctypes

                ctypes.string_at(0)  # a segmentation fault, as in a decoder's C code
            return _read(self, *args, **kwargs)

        soundfile.SoundFile.read = read
        _init = soundfile.SoundFile.__init__

        def init(self, file, *args, **kwargs):
            if "headercrash" in os.path.basename(str(file)):
                import ctypes

                ctypes.string_at(0)  # as a crash in libsndfile's header parsing
            if "headerloop" in os.path.basename(str(file)):
                import time

                time.sleep(3600)  # as libsndfile looping on a damaged header
            return _init(self, file, *args, **kwargs)

        soundfile.SoundFile.__init__ = init
        _plain_read = soundfile.SoundFile.read

        def stuck_read(self, *args, **kwargs):
            if "stuck" in os.path.basename(str(getattr(self, "name", ""))):
                import time

                time.sleep(3600)  # as a decoder looping on a damaged file
            return _plain_read(self, *args, **kwargs)

        soundfile.SoundFile.read = stuck_read
''')


@pytest.fixture
def crash_env(tmp_path):
    """The environment of a job whose processes run :data:`CRASH_HOOK` (a ``sitecustomize`` on
    their path)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    return {"AUDIOFEAT_TEST_CRASH": "1", "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)])}


def test_a_crash_is_learned_and_a_kill_is_not(tmp_path):
    """A process that dies of a segmentation fault while its breadcrumb names file 1 leaves a
    report; the next attempt leaves file 1 out. A process killed from outside leaves none:
    nothing is blamed."""
    root = tmp_path / "batches"
    paths = ["a.wav", "b.flac", "c.ogg"]
    script = textwrap.dedent(f'''
        import ctypes, os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from jobs.crashes import CrashGuard
        with CrashGuard({str(root)!r}, 7, {paths!r}) as guard:
            guard.reading(0)
            guard.reading(1)
            if sys.argv[1] == "crash":
                ctypes.string_at(0)
            os.kill(os.getpid(), signal.SIGKILL)
    ''')
    killed = subprocess.run([sys.executable, "-c", script, "kill"], capture_output=True)
    assert killed.returncode == -9
    assert CrashGuard(str(root), 7, paths).crashed == {}
    crashed = subprocess.run([sys.executable, "-c", script, "crash"], capture_output=True)
    assert crashed.returncode != 0
    learned = CrashGuard(str(root), 7, paths).crashed
    assert list(learned) == ["b.flac"] and "Segmentation fault" in learned["b.flac"]
    with CrashGuard(str(root), 7, paths) as guard:  # an attempt that ends well
        guard.reading(2)
        assert guard.crashed == learned
    assert not (root / "reading-000007").exists()
    guard.done()
    assert CrashGuard(str(root), 7, paths).crashed == {}


def test_a_decoder_crash_fails_its_file_and_keeps_the_rest(tmp_path, crash_env):
    """Five crashing files of one length among 40 clips (side by side in one batch of
    length-sorted clips: five worker deaths for that batch, past Dask's default of three): each
    is left out with the reason, every other file is extracted, and the job ends as a job with
    failures does (exit 1), without Dask's words or multiprocessing's warnings."""
    corpus = tmp_path / "corpus"
    copy_samples(corpus, 40)
    rng = np.random.default_rng(0)
    crashing = [f"segfault-{i}.flac" for i in range(5)]
    for name in crashing:
        sf.write(corpus / name, (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    sf.write(corpus / "fine.flac", (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus), out=tmp_path / "out",
                       features={"mfcc": {"n_mfcc": 13}, "rms": {}}, compute={"workers": 2})
    result = run_cli("extract", cfg, env=crash_env)
    assert result.returncode == 1, result.stderr
    assert "KilledWorker" not in result.stderr + result.stdout
    assert "Warning" not in result.stderr, result.stderr
    files, failures = read_tables(tmp_path / "out")
    failed = dict(zip([p.rsplit("/", 1)[1] for p in failures.column("path").to_pylist()],
                      failures.column("error_type").to_pylist()))
    assert failed == dict.fromkeys(crashing, "DecoderCrash")
    assert files.num_rows == 41
    message = failures.column("message")[0].as_py()
    assert message.startswith("the decoder crashed (Segmentation fault) on this file")


def _corpus_with_a_bad_header(tmp_path, bad_name: str, clips: int, **compute):
    """``clips`` sample clips, ``bad_name`` (silence, which the hook makes crash or hang when its
    header is read) and a fine FLAC; a one-worker RMS job over them: ``(corpus, out, config)``."""
    corpus = tmp_path / "corpus"
    copy_samples(corpus, clips)
    for name, level in ((bad_name, 0.0), ("fine.flac", 0.1)):
        sf.write(corpus / name, np.full(8000, level, np.float32), 8000)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus), out=out,
                       features={"rms": {}}, compute={"workers": 1, **compute})
    return corpus, out, cfg


def _assert_only_left_out(out, bad_path, reason: str, *, files: int):
    """``bad_path`` is the run's one failure, a DecoderCrash for ``reason``; ``files`` files were
    extracted, and the probe guard's file is gone."""
    extracted, failures = read_tables(out)
    assert failures.column("path").to_pylist() == [str(bad_path)]
    assert failures.column("error_type").to_pylist() == ["DecoderCrash"]
    assert reason in failures.column("message")[0].as_py()
    assert extracted.num_rows == files and not (out / ".probing").exists()


def test_a_header_that_crashes_the_plan_ends_one_run_not_the_next(tmp_path, crash_env):
    """libsndfile crashing on a file's header, in the plan's probe, kills the job itself (no
    worker to retry it): that run ends with the signal; the next run probes the file it was
    opening in a child process first, leaves it out ("DecoderCrash") and extracts the rest."""
    corpus, out, cfg = _corpus_with_a_bad_header(tmp_path, "headercrash.flac", 20)
    first = run_cli("extract", cfg, env=crash_env)
    assert first.returncode < 0, (first.returncode, first.stderr)  # killed by the signal
    assert (out / ".probing").exists()
    again = run_cli("extract", cfg, env=crash_env)
    assert again.returncode == 1, again.stderr
    assert "an earlier run ended while reading the header of 1 file" in again.stdout + again.stderr
    _assert_only_left_out(out, corpus / "headercrash.flac", "crashed (SIGSEGV)", files=21)


def test_a_header_read_that_never_ends_starts_the_job_again_without_that_file(tmp_path, crash_env):
    """libsndfile stuck in a loop on a file's header held the plan, and the job, for ever (no
    exception reaches a thread inside C code). After ``compute.hang_seconds`` the command says
    so and starts itself again; that run probes the file in a child process, which is stopped
    at the same limit, leaves it out ("DecoderCrash") and extracts the rest: one command, one
    result, exit 1 as for any failed file."""
    corpus, out, cfg = _corpus_with_a_bad_header(tmp_path, "headerloop.flac", 12, hang_seconds=2)
    result = run_cli("extract", cfg, env=crash_env, timeout=180)
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "reading the header of" in said and "starting again" in said, said
    assert "an earlier run ended while reading the header of 1 file" in said
    _assert_only_left_out(out, corpus / "headerloop.flac", "did not finish in 2 s", files=13)


def test_a_header_read_that_never_ends_called_from_python_is_only_reported(tmp_path):
    """Called from Python (no command line to start again), a stuck header read is said once,
    with what to do, and the process is left running."""
    from jobs.crashes import ProbeGuard, restart_or_wait

    said = []
    guard = ProbeGuard(str(tmp_path), hang_seconds=0.2,
                       on_stuck=lambda path, seconds: restart_or_wait(path, seconds, said.append))
    with guard:
        guard.reading(str(tmp_path / "slow.mp3"))
        time.sleep(1.0)
        guard.reading(None)
    assert len(said) == 1 and "slow.mp3" in said[0] and "start it again" in said[0], said
    assert not (tmp_path / ".probing").exists()


def test_a_decoder_stuck_on_a_file_is_stopped_and_the_file_left_out(tmp_path, crash_env):
    """A decoder that loops on a damaged file instead of crashing held its worker, and the job,
    for ever. The task's time limit (``compute.hang_seconds`` plus its audio's duration) ends
    its worker with a report; the next attempt leaves the file out and keeps the rest."""
    corpus = tmp_path / "corpus"
    copy_samples(corpus, 6)
    sf.write(corpus / "stuck.flac", np.full(4000, 0.1, np.float32), 8000)
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus), out=tmp_path / "out",
                       features={"rms": {}}, compute={"workers": 1, "hang_seconds": 2})
    result = run_cli("extract", cfg, env=crash_env, timeout=120)
    assert result.returncode == 1, result.stderr
    files, failures = read_tables(tmp_path / "out")
    assert failures.column("path").to_pylist() == [str(corpus / "stuck.flac")]
    assert failures.column("error_type").to_pylist() == ["DecoderCrash"]
    message = failures.column("message")[0].as_py()
    assert message.startswith("the decoder did not finish (its task was stopped after 0:00:0"), message
    assert files.num_rows == 6


def test_a_crash_in_a_split_long_file_fails_that_file_only(tmp_path, crash_env):
    """A long file split into parts (their own tasks, one of them decoding the whole file when
    it is resampled): each task that crashes on it leaves it out on its next attempt, and the
    file fails once, the short clips beside it extracted."""
    corpus = tmp_path / "corpus"
    copy_samples(corpus, 4)
    rng = np.random.default_rng(3)
    for name, sr in (("night-segfault.flac", 16000), ("resampled-segfault.flac", 22050)):
        sf.write(corpus / name, (0.1 * rng.standard_normal(30 * sr)).astype(np.float32), sr)
    cfg = write_config(tmp_path / "job.yaml", input=str(corpus), out=tmp_path / "out",
                       features={"rms": {}},
                       compute={"workers": 2, "batch_seconds": 8.0, "block_seconds": 2.0})
    result = run_cli("extract", cfg, env=crash_env, timeout=180)
    assert result.returncode == 1, result.stderr
    files, failures = read_tables(tmp_path / "out")
    failed = dict(zip([p.rsplit("/", 1)[1] for p in failures.column("path").to_pylist()],
                      failures.column("error_type").to_pylist()))
    assert failed == {"night-segfault.flac": "DecoderCrash", "resampled-segfault.flac": "DecoderCrash"}
    assert files.num_rows == 4
