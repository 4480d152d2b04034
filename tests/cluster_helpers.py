"""Real `dask scheduler` / `dask worker` subprocesses on 127.0.0.1 for the cluster and TLS tests.

Every process started here is stopped by :meth:`Procs.stop` (used as a context manager), with a
bounded wait and a kill as the last resort.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "configs" / "example.yaml"
SAMPLES = sorted((REPO / "data" / "samples").glob("*.wav"))


def quiet_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "error", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Procs:
    """The subprocesses a test started; stopped (children too) on exit, whatever happened."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, argv, *, log: Path, env=None) -> subprocess.Popen:
        handle = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env or quiet_env(),
                                start_new_session=True)
        proc._log_handle = handle  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, timeout: float = 10.0) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_tree(proc.pid)
                proc.wait(timeout=5)
            proc._log_handle.close()  # type: ignore[attr-defined]
        self.procs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for child in parent.children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        parent.kill()
    except psutil.NoSuchProcess:
        pass


def wait_for_file(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> dict:
    """The JSON a scheduler writes to its --scheduler-file, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scheduler exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"no scheduler file after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def start_scheduler(procs: Procs, workdir: Path, *, tls_args=(), protocol: str = "tcp") -> dict:
    """``dask scheduler`` on 127.0.0.1 (random ports, dashboard on 127.0.0.1); its info JSON."""
    sched_file = workdir / "scheduler.json"
    log = workdir / "scheduler.log"
    host = "127.0.0.1" if protocol == "tcp" else f"{protocol}://127.0.0.1"
    proc = procs.start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
                        "--port", "0", "--dashboard-address", "127.0.0.1:0",
                        "--scheduler-file", str(sched_file), *tls_args], log=log)
    info = wait_for_file(sched_file, proc, log)
    info["pid"] = proc.pid
    return info


def start_worker(procs: Procs, address: str, workdir: Path, *, name: str = "w0", tls_args=(),
                 extra=()) -> subprocess.Popen:
    log = workdir / f"worker-{name}.log"
    return procs.start([sys.executable, "-m", "distributed.cli.dask_worker", address,
                        "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                        "--dashboard-address", "127.0.0.1:0", "--name", name,
                        "--local-directory", str(workdir / f"dask-{name}"), *tls_args, *extra],
                       log=log)


def wait_for_workers(address: str, n: int, *, security=None, timeout: float = 60.0) -> None:
    from distributed import Client

    with Client(address, security=security, timeout="30s") as client:
        client.wait_for_workers(n, timeout=timeout)


def run_extract(out: Path, *extra: str, n_files: int = 3, timeout: float = 120.0):
    """``audiofeat extract configs/example.yaml --input <a few samples> --out OUT`` as a subprocess."""
    argv = [sys.executable, "-m", "jobs", "extract", str(EXAMPLE_CONFIG), "--out", str(out)]
    for path in SAMPLES[:n_files]:
        argv += ["--input", str(path)]
    argv += list(extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=quiet_env(),
                          cwd=str(out.parent))


def listening(pids) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening inet socket of these processes."""
    found = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def process_tree(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    return [pid, *(c.pid for c in proc.children(recursive=True))]
