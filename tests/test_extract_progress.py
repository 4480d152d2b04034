"""Progress: a redrawn bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import io

from jobs.progress import Progress, format_duration


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_bar_is_redrawn_in_place():
    stream = _Terminal()
    progress = Progress(200, 7200.0, stream=stream)
    progress.update(50, 1800.0)
    progress.update(150, 5400.0, failed=3)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "200/200 files (100%), 3 failed" in text and "[########################]" in text
    assert "audio h/s" in text and "ETA" in text


def test_plain_lines_are_periodic():
    stream = io.StringIO()
    progress = Progress(10, 100.0, stream=stream, every_s=3600)
    for _ in range(10):
        progress.update(1, 10.0)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the first update, then the closing line
    assert lines[-1].startswith("extract: 10/10 files (100%)") and "\r" not in stream.getvalue()


def test_resumed_runs_count_what_was_done_but_not_in_the_rate():
    stream = io.StringIO()
    progress = Progress(10, 100.0, stream=stream, done_files=8, done_audio_s=80.0)
    assert progress.rate_hours_per_s() == 0.0
    progress.update(2, 20.0)
    assert "10/10 files" in progress.line()


def test_format_duration():
    assert format_duration(5) == "0:05" and format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "?"


def test_plain_closing_line_is_not_a_repeat():
    """A job whose last update already printed the end (one batch) prints it once."""
    stream = io.StringIO()
    progress = Progress(3, 30.0, stream=stream, label="score")
    progress.update(3, 30.0)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("score: 3/3 files (100%)")


def test_paused_workers_are_said_once_when_the_job_waits_on_them(capsys):
    """Dask pauses a worker past its memory threshold; the job then waited without a word."""
    import time

    from jobs.extract import PausedWorkersWatch

    class Client:
        def scheduler_info(self):
            return {"workers": {"a": {"status": "Status.paused", "memory_limit": 300 * 2**20},
                                "b": {"status": "Status.running", "memory_limit": 300 * 2**20}}}

    watch = PausedWorkersWatch(Client(), quiet_s=0.0, every_s=0.02)
    time.sleep(0.3)
    watch.stop()
    err = capsys.readouterr().err
    assert err.count("1 of 2 workers are paused by Dask for memory") == 1 and "300 MiB" in err
    busy = PausedWorkersWatch(Client(), quiet_s=60.0, every_s=0.02)  # tasks finishing: no note
    time.sleep(0.1)
    busy.stop()
    assert "paused" not in capsys.readouterr().err


class _SchedulerStandIn:
    """What PausedWorkersWatch asks of a distributed.Client: the scheduler's address and its
    workers (``workers``, a dict the test changes while the watch runs)."""

    def __init__(self, address: str, workers: dict | None = None):
        self.scheduler = type("scheduler", (), {"address": address})
        self.workers = {} if workers is None else workers

    def scheduler_info(self):
        return {"workers": dict(self.workers)}


def test_no_workers_are_said_at_once(capsys):
    import time

    from jobs.extract import PausedWorkersWatch

    watch = PausedWorkersWatch(_SchedulerStandIn("tcp://127.0.0.1:8786"), every_s=0.02, command="score")
    time.sleep(0.2)
    watch.stop()
    err = capsys.readouterr().err
    assert err.count("score: note: no workers are connected to the scheduler at tcp://127.0.0.1:8786") == 1


def test_the_rate_is_timed_from_when_workers_connect_after_a_wait(capsys):
    """A run that waited for workers: its ETA counted the wait as work time (ETA 40:46 for a run
    that ended 6 s later). The watch restarts the progress clock once workers connect."""
    import time

    from jobs.extract import PausedWorkersWatch
    from jobs.progress import Progress

    workers: dict = {}
    progress = Progress(10, 100.0, every_s=1e9)
    calls = []

    def back():
        calls.append(time.monotonic())
        progress.restart_clock()

    watch = PausedWorkersWatch(_SchedulerStandIn("tcp://127.0.0.1:8786", workers), every_s=0.02,
                               on_workers=back)
    time.sleep(1.2)  # waiting: the clock runs with nothing done
    waited_from = progress.start
    workers["w"] = {"status": "Status.running"}
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    watch.stop()
    assert len(calls) == 1 and progress.start > waited_from + 1.0
    progress.update(1, 36.0)  # 0.01 h at once: the rate is that of the time since workers came
    assert progress.rate_hours_per_s() > 0.01 / (time.monotonic() - calls[0] + 0.01)
    assert "no workers are connected" in capsys.readouterr().err


def test_workers_lost_again_are_said_again_with_how_a_slurm_clusters_come(capsys):
    """SLURM workers are jobs that queue and end at their walltime: the note says so (not
    "start them with dask worker"), and says it again when every worker is gone again."""
    import time

    from jobs.extract import PausedWorkersWatch

    workers: dict = {}
    back = []
    watch = PausedWorkersWatch(_SchedulerStandIn("tcp://10.0.0.5:8786", workers), every_s=0.02,
                               cluster_kind="slurm", on_workers=lambda: back.append(1))
    for present in (False, True, False, True):
        if present:
            workers["w"] = {"status": "Status.running"}
        else:
            workers.clear()
        time.sleep(1.3)
    watch.stop()
    err = capsys.readouterr().err
    assert err.count("no workers are connected to the scheduler at tcp://10.0.0.5:8786") == 2, err
    assert "they are SLURM jobs: queued or starting (see squeue)" in err and "dask worker" not in err
    assert len(back) == 2


def test_the_job_s_progress_counts_the_failures_its_summary_counts(tmp_path):
    """A file that failed at its header was left out of the progress: it said "2/2 files,
    1 failed" and then the summary "2 files, 2 failed" (of four inputs)."""
    from test_extract_support import run_cli, write_config

    from audio_factory import write_nan_wav, write_not_audio, write_tone

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_tone(corpus / "a.wav", 16000, 1.0)
    write_tone(corpus / "b.wav", 16000, 0.5)
    write_not_audio(corpus / "notes.wav")  # fails at its header (the plan's probe)
    write_nan_wav(corpus / "nan.wav")  # fails decoding
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=tmp_path / "out", features={"rms": {}})
    result = run_cli("extract", cfg)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    last = [line for line in lines if "/4 files" in line][-1]
    assert last.startswith("extract: 4/4 files (100%), 2 failed"), result.stderr
    assert "extract: 2 files stored, 2 failed" in result.stdout + result.stderr
