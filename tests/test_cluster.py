"""jobs.cluster: what the product starts binds 127.0.0.1 (scheduler, workers, nannies, dashboard),
workers run one BLAS thread, `--scheduler` reaches a real scheduler, config errors name the key,
and the cluster/local scripts start and stop a working cluster."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlparse

import cloudpickle
import pandas as pd
import psutil
import pytest
from cluster_helpers import (
    REPO,
    Procs,
    listening,
    process_tree,
    quiet_env,
    run_extract,
    start_scheduler,
    start_worker,
    wait_for_file,
    wait_for_workers,
)

from jobs.cluster import (
    ClusterConfig,
    TLSConfig,
    check_client_settings,
    check_local_addresses,
    gpu_available,
    open_client,
    security_from,
)
from jobs.config import parse_config
from jobs.errors import UsageError

pytestmark = pytest.mark.timeout(180)

# functions of this module run on workers that cannot import it: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _worker_facts(dask_worker=None):
    import os

    from threadpoolctl import threadpool_info

    return {
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS")},
        "blas_threads": sorted({p["num_threads"] for p in threadpool_info()}),
        "nthreads": dask_worker.state.nthreads,
        "lifetime": dask_worker.lifetime,
        "pid": os.getpid(),
    }


# ---------------------------------------------------------------- LocalCluster


def test_local_cluster_binds_loopback_one_blas_thread(monkeypatch):
    """Even with distributed's own BLAS defaults removed and a parent that allows many BLAS
    threads, open_client's workers run one; every socket they, the nannies, the scheduler and
    the dashboard listen on is on 127.0.0.1."""
    import dask
    import distributed  # noqa: F401 - load its config defaults before overriding one

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "8")
    me = os.getpid()
    before = set(listening(process_tree(me)))
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}), \
            open_client(ClusterConfig(worker_lifetime="1h"), n_workers=2) as client:
        info = client.scheduler_info()
        assert urlparse(client.scheduler.address).hostname == "127.0.0.1"
        workers = info["workers"]
        assert len(workers) == 2
        for address, worker in workers.items():
            assert urlparse(address).hostname == "127.0.0.1", address
            assert urlparse(worker["nanny"]).hostname == "127.0.0.1", worker["nanny"]
        dashboard = urlparse(client.dashboard_link)
        assert dashboard.hostname == "127.0.0.1" and dashboard.port

        facts = client.run(_worker_facts)
        for fact in facts.values():
            assert fact["env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                   "MKL_NUM_THREADS": "1"}
            assert fact["blas_threads"] in ([], [1])
            assert fact["nthreads"] == 1
            assert 3240 <= fact["lifetime"] <= 3960  # 1h +- the default stagger (6 min)

        pids = process_tree(me)
        assert {f["pid"] for f in facts.values()} <= set(pids)
        sockets = [s for s in listening(pids) if s not in before]
        ports = {port for _, _, port in sockets}
        assert dashboard.port in ports  # the dashboard really listens here...
        assert {urlparse(a).port for a in workers} <= ports
        bad = [s for s in sockets if s[1] != "127.0.0.1"]
        assert not bad, f"listening beyond 127.0.0.1: {bad}"  # ...and nothing anywhere else


def test_no_dashboard_keeps_http_server_on_loopback():
    """dashboard_address: null turns the dashboard off; the scheduler's HTTP server (health
    routes) still starts, and must not take port 8787 on every interface."""
    me = os.getpid()
    before = set(listening(process_tree(me)))
    with open_client(ClusterConfig(dashboard_address=None), n_workers=1) as client:
        sockets = [s for s in listening(process_tree(me)) if s not in before]
        assert sockets and all(ip == "127.0.0.1" for _, ip, _ in sockets), sockets
        assert urlparse(client.dashboard_link).hostname == "127.0.0.1"


def test_a_scheduler_without_dashboard_is_said_to_have_none(tmp_path):
    """`dask scheduler --no-dashboard`: Dask still formats a dashboard link (its HTTP server keeps
    the health routes), but the page answers 404: no link is printed nor kept."""
    from jobs.extract import dashboard_line

    with Procs() as procs:
        log = tmp_path / "scheduler.log"
        sched_file = tmp_path / "scheduler.json"
        proc = procs.start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                            "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)], log=log)
        address = wait_for_file(sched_file, proc, log)["address"]
        with open_client(scheduler=address) as client:
            assert dashboard_line(client, "extract") == (
                None, "extract: dashboard: none (the scheduler serves no dashboard)")


def test_the_dashboard_line_names_the_page_and_what_it_needs():
    import importlib.util

    from jobs.extract import dashboard_line

    with open_client(ClusterConfig(), n_workers=1) as client:
        link, line = dashboard_line(client, "score")
    assert link == client.dashboard_link and line.startswith(f"score: dashboard {link}")
    assert ("need bokeh" in line) == (importlib.util.find_spec("bokeh") is None)


def _heartbeat_failure_record(message="Failed to communicate with scheduler during heartbeat."):
    import logging

    return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 0, message, None, None)


def _worker_keeps_heartbeat_failure():
    import logging

    from jobs.worker_logs import QuietClosingHeartbeat

    filters = [f for f in logging.getLogger("distributed.worker").filters
               if isinstance(f, QuietClosingHeartbeat)]
    return len(filters), all(f.filter(_heartbeat_failure_record()) for f in filters)


def test_local_workers_drop_only_a_closing_heartbeats_error():
    """A heartbeat in flight when a worker closes fails with "Stream is closed", which
    distributed logs as an ERROR with a traceback at the end of a clean job. open_client's
    workers drop that message while they close, and keep it (a scheduler really lost) while
    they run; other messages always pass."""
    from distributed import LocalCluster

    from jobs.worker_logs import QuietClosingHeartbeat

    with open_client(ClusterConfig(), n_workers=2) as client:
        assert set(client.run(_worker_keeps_heartbeat_failure).values()) == {(1, True)}
        # the filter's module is light: the plugin must not pull pydantic into every worker
        assert not any(client.run(lambda: "pydantic" in sys.modules).values())
    quiet = QuietClosingHeartbeat()
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        worker = next(iter(cluster.workers.values()))
    assert worker.status.name == "closed"  # held here, so Worker._instances still has it
    assert not quiet.filter(_heartbeat_failure_record())
    assert quiet.filter(_heartbeat_failure_record("Heartbeat to scheduler failed"))


# ---------------------------------------------------------------- --scheduler: real processes


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A `dask scheduler` and one `dask worker` subprocess on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("dask")
    with Procs() as procs:
        info = start_scheduler(procs, workdir)
        start_worker(procs, info["address"], workdir)
        wait_for_workers(info["address"], 1)
        info["procs"] = procs
        yield info


def test_scheduler_processes_listen_on_loopback(scheduler):
    pids = [p for proc in scheduler["procs"].procs for p in process_tree(proc.pid)]
    sockets = listening(pids)
    assert len(sockets) >= 4  # scheduler + its dashboard, nanny, worker (+ worker dashboard)
    assert all(ip == "127.0.0.1" for _, ip, _ in sockets), sockets


def test_extract_on_a_running_scheduler(scheduler, tmp_path):
    out = tmp_path / "run"
    result = run_extract(out, "--scheduler", scheduler["address"])
    assert result.returncode == 0, result.stderr[-3000:]
    files = pd.read_parquet(out / "files.parquet")
    assert len(files) == 3
    manifest = pd.read_json(out / "manifest.json", typ="series")
    assert manifest["cluster"]["scheduler"] == scheduler["address"]
    assert manifest["cluster"]["workers"] == 1


def test_score_with_a_relative_out_on_a_scheduler_whose_workers_run_elsewhere(scheduler, tmp_path_factory):
    """--out is the caller's (relative to its working folder), not the workers'."""
    from train_helpers import copy_run, extracted_run, write_config

    from jobs.cli import main as cli_main

    root = tmp_path_factory.mktemp("relative")
    copy_run(extracted_run(tmp_path_factory), root / "run")
    config = write_config(root / "job.yaml")
    assert cli_main(["train", str(config), "--out", str(root / "run")]) == 0
    result = subprocess.run([sys.executable, "-m", "jobs", "score", "job.yaml", "--out", "run",
                             "--scheduler", scheduler["address"]], cwd=root, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(pd.read_parquet(root / "run" / "scores" / "files.parquet")) == 120


def test_worker_of_a_running_scheduler_has_one_blas_thread(scheduler):
    with open_client(scheduler=scheduler["address"]) as client:
        facts = client.run(_worker_facts)
    assert facts
    for fact in facts.values():
        assert fact["env"]["OMP_NUM_THREADS"] == "1"
        assert fact["blas_threads"] in ([], [1])
        assert fact["nthreads"] == 1


def test_config_address_kind_and_scheduler_override(scheduler):
    cfg = ClusterConfig(kind="address", address=scheduler["address"])
    with open_client(cfg) as client:
        assert client.scheduler.address == scheduler["address"]
    # --scheduler wins over any kind (here over a slurm section that would need SLURM)
    cfg = ClusterConfig(kind="slurm", slurm={"cores": 2, "memory": "4GB"})
    with open_client(cfg, scheduler=scheduler["address"]) as client:
        assert client.scheduler.address == scheduler["address"]


def test_gpu_job_on_scheduler_without_gpu_workers_is_refused(scheduler):
    with pytest.raises(UsageError, match="GPU resource"), \
            open_client(scheduler=scheduler["address"], gpu=True):
        pass


def test_an_address_where_no_scheduler_answers_is_a_usage_error_at_once(tmp_path):
    """An HTTP server (the dashboard's port: Client waited for ever), a server that sends other
    bytes (read as a frame length: an allocation of exabytes) and a closed port: exit 2 within
    the probe's time, before the output folder is touched."""
    import socket
    import threading
    import time

    from jobs.cluster import probe_scheduler

    silent, talker = socket.socket(), socket.socket()
    for sock in (silent, talker):
        sock.bind(("127.0.0.1", 0))
        sock.listen()

    def talk():
        conn, _ = talker.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4)
        time.sleep(1)
        conn.close()

    threading.Thread(target=talk, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    for port, says in ((silent.getsockname()[1], "no Dask answer in 2 s"),
                       (talker.getsockname()[1], "bytes that are not Dask's"),
                       (closed_port, f"connection refused: nothing listened on 127.0.0.1:{closed_port}")):
        started = time.monotonic()
        with pytest.raises(UsageError, match=says):
            probe_scheduler(f"tcp://127.0.0.1:{port}", timeout=2)
        assert time.monotonic() - started < 5
    silent.close()
    talker.close()
    out = tmp_path / "run"
    result = run_extract(out, "--scheduler", f"tcp://127.0.0.1:{closed_port}")
    assert result.returncode == 2 and "is it a Dask scheduler's address" in result.stderr
    assert not out.exists()


def test_a_running_scheduler_answers_the_probe(scheduler):
    from jobs.cluster import probe_scheduler

    probe_scheduler(scheduler["address"], timeout=5)


def test_gpu_workers_that_cannot_use_a_gpu_are_refused(tmp_path):
    """Workers offering the GPU resource without CuPy or a device: every file would fail on its
    first array; the job refuses at once instead (exit 2)."""
    pytest.importorskip("distributed")
    from jobs.cluster import _worker_sees_a_gpu

    if _worker_sees_a_gpu():
        pytest.skip("this machine has a usable GPU")
    with Procs() as procs:
        info = start_scheduler(procs, tmp_path)
        start_worker(procs, info["address"], tmp_path, extra=("--resources", "GPU=1"))
        wait_for_workers(info["address"], 1)
        with pytest.raises(UsageError, match="cannot use one"), \
                open_client(scheduler=info["address"], gpu=True):
            pass


def test_tls_address_without_certificates_is_a_usage_error():
    with pytest.raises(UsageError, match="--tls-ca"), open_client(scheduler="tls://127.0.0.1:1"):
        pass


# ---------------------------------------------------------------- config


def _parse(cluster: dict):
    return parse_config({"input": "x", "features": {"rms": {}}, "compute": {"cluster": cluster}})


@pytest.mark.parametrize("cluster, message", [
    ({"bogus": 1}, "compute.cluster.bogus: unknown key"),
    ({"kind": "cloud"}, "compute.cluster.kind:"),
    ({"kind": "slurm"}, "compute.cluster.slurm: kind 'slurm' needs this section"),
    ({"kind": "kubernetes"}, "compute.cluster.kubernetes: kind 'kubernetes' needs this section"),
    ({"kind": "address"}, "compute.cluster.address: kind 'address' needs the scheduler address"),
    ({"kind": "address", "address": "10.0.0.5:8786"}, "compute.cluster.address: '10.0.0.5:8786': give the protocol"),
    ({"worker_lifetime": "soon"}, "compute.cluster.worker_lifetime: not a duration"),
    ({"worker_lifetime": "1s"}, "compute.cluster.worker_lifetime: '1s': workers would restart before"),
    ({"memory_limit": "lots"}, "compute.cluster.memory_limit: not a memory size"),
    ({"memory_limit": "1kB"}, "compute.cluster.memory_limit: '1kB' is too little for a worker"),
    ({"tls": {"ca_file": "ca.pem"}}, "compute.cluster.tls.cert: Field required"),
    ({"tls": {"ca_file": "a", "cert": "b", "key": "c", "pin": 1}}, "compute.cluster.tls.pin: unknown key"),
    ({"slurm": {"queuee": "cpu"}}, "compute.cluster.slurm.queuee: unknown key"),
    ({"slurm": {"cores": 2, "processes": 4}}, "compute.cluster.slurm.processes: processes=4 exceeds cores=2"),
    ({"slurm": {"n_workers": 2, "adaptive": {"maximum": 4}}}, "compute.cluster.slurm.adaptive: give either"),
    ({"slurm": {"adaptive": {"minimum": 5, "maximum": 4}}}, "compute.cluster.slurm.adaptive.maximum: maximum=4 is below minimum=5"),
    ({"slurm": {"cores": 4, "gpus_per_job": 1}}, "compute.cluster.slurm.gpus_per_job:"),
    ({"slurm": {"memory": "auto"}}, "compute.cluster.slurm.memory:"),
    ({"kubernetes": {"gpu_workers": -1}}, "compute.cluster.kubernetes.gpu_workers:"),
    ({"kubernetes": {"resources": {"limit": {}}}}, "compute.cluster.kubernetes.resources.limit: unknown key"),
])
def test_config_errors_name_the_key(cluster, message):
    with pytest.raises(UsageError) as err:
        _parse(cluster)
    assert message in str(err.value)


def test_config_defaults_and_valid_sections():
    cfg = _parse({}).compute.cluster
    assert cfg.kind == "local" and cfg.host == "127.0.0.1"
    assert cfg.dashboard_address == "127.0.0.1:0" and cfg.tls is None
    cfg = _parse({"kind": "slurm", "worker_lifetime": "1h",
                  "slurm": {"queue": "gpu", "cores": 4, "processes": 1, "memory": "16GB",
                            "walltime": "02:00:00", "gpus_per_job": 1,
                            "adaptive": {"maximum": 8}}}).compute.cluster
    assert cfg.slurm.adaptive.minimum == 0 and cfg.slurm.gpus_per_job == 1
    assert cfg.lifetime_args() == {"lifetime": "1h", "lifetime_stagger": "360s",
                                   "lifetime_restart": True}


# ---------------------------------------------------------------- extras, GPU, TLS flags


@pytest.mark.parametrize("kind, module, section", [
    ("slurm", "dask_jobqueue", {"slurm": {"cores": 1, "memory": "1GB"}}),
    ("kubernetes", "dask_kubernetes", {"kubernetes": {}}),
])
def test_missing_extra_is_a_usage_error(monkeypatch, kind, module, section):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    cfg = ClusterConfig(kind=kind, **section)
    with pytest.raises(UsageError) as err, open_client(cfg):
        pass
    assert str(err.value) == (f"compute.cluster.kind '{kind}' needs the '{kind}' extra: "
                              f"pip install -e '.[{kind}]'")


def test_kubernetes_with_tls_is_refused(tmp_path):
    cfg = ClusterConfig(kind="kubernetes", kubernetes={},
                        tls={"ca_file": "ca.pem", "cert": "c.pem", "key": "k.pem"})
    with pytest.raises(UsageError, match="not supported with kind 'kubernetes'"), open_client(cfg):
        pass


def test_gpu_available_never_raises(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "cupy", None)
    assert gpu_available() is False

    def broken():
        raise RuntimeError("cudaErrorNoDevice")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=broken))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert gpu_available() is False
    fake.cuda.runtime.getDeviceCount = lambda: 1
    assert gpu_available() is True


def test_cluster_module_does_not_import_cupy():
    code = "import sys, jobs.cluster, jobs.config; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_security_from_flags(tmp_path):
    assert security_from(None, None, None) is None
    with pytest.raises(UsageError, match="go together"):
        security_from(str(tmp_path / "ca.pem"), None, None)
    with pytest.raises(UsageError, match="--tls-cert: no such file"):
        (tmp_path / "ca.pem").write_text("x")
        security_from(str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


# ---------------------------------------------------------------- cluster/local scripts


def test_local_scripts_start_extract_stop(tmp_path):
    """cluster/local/start.sh 2 -> a tiny extract with --scheduler -> stop.sh; nothing left."""
    start, stop = REPO / "cluster" / "local" / "start.sh", REPO / "cluster" / "local" / "stop.sh"
    state = tmp_path / "cluster"
    env = quiet_env(AUDIOFEAT_CLUSTER_DIR=str(state))
    pids = []
    try:
        started = subprocess.run(["bash", str(start), "2"], capture_output=True, text=True,
                                 env=env, timeout=90)
        assert started.returncode == 0, started.stdout + started.stderr
        address = started.stdout.strip().splitlines()[-1]
        assert address.startswith("tcp://127.0.0.1:"), started.stdout
        pids = [int(p) for p in (state / "pids").read_text().split()]
        assert len(pids) == 3  # scheduler + 2 workers
        tree = [p for pid in pids for p in process_tree(pid)]
        sockets = listening(tree)
        assert sockets and all(ip == "127.0.0.1" for _, ip, _ in sockets), sockets

        with open_client(scheduler=address) as client:
            facts = client.run(_worker_facts)
        assert len(facts) == 2
        assert all(f["nthreads"] == 1 and f["env"]["OPENBLAS_NUM_THREADS"] == "1"
                   for f in facts.values())

        result = run_extract(tmp_path / "run", "--scheduler", address)
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(pd.read_parquet(tmp_path / "run" / "files.parquet")) == 3
    finally:
        stopped = subprocess.run(["bash", str(stop)], capture_output=True, text=True, env=env,
                                 timeout=60)
        if not pids and (state / "pids").exists():
            pids = [int(p) for p in (state / "pids").read_text().split()]
        for pid in pids:  # whatever stop.sh left (only the processes start.sh started)
            if psutil.pid_exists(pid):
                for proc in [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and
                                              psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                              for p in pids):
        time.sleep(0.2)
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running after stop.sh: {alive}"


def _gpu_env(dask_worker=None):
    import os

    return {"resources": dict(dask_worker.state.total_resources),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


def test_local_scripts_add_gpu_workers_when_nvidia_smi_lists_gpus(tmp_path):
    """The GPU branch of start.sh: a stand-in nvidia-smi lists one GPU, dask-cuda is absent, so
    one plain worker pinned to device 0 offers GPU=1 next to the CPU worker; a GPU job is refused
    on it where that device is not real, and runs where it is."""
    start, stop = REPO / "cluster" / "local" / "start.sh", REPO / "cluster" / "local" / "stop.sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: Stand-in GPU (UUID: GPU-00000000)'\n")
    fake.chmod(0o755)
    state = tmp_path / "cluster"
    env = quiet_env(AUDIOFEAT_CLUSTER_DIR=str(state), PATH=f"{bin_dir}:{os.environ['PATH']}",
                    PYTHON=sys.executable)
    try:
        started = subprocess.run(["bash", str(start), "1"], capture_output=True, text=True,
                                 env=env, timeout=90)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "1 GPU worker(s) with resource GPU=1" in started.stderr
        address = started.stdout.strip().splitlines()[-1]
        with open_client(scheduler=address) as client:
            facts = sorted(client.run(_gpu_env).values(), key=lambda f: f["resources"] != {})
        assert [f["resources"] for f in facts] == [{}, {"GPU": 1.0}]
        assert facts[1]["cuda_visible"] == "0"
        if gpu_available():  # a real GPU 0 here (seen on an H200): the pinned worker uses it
            with open_client(scheduler=address, gpu=True):
                pass
        else:  # a GPU job is refused: the stand-in GPU worker has no CuPy nor device to use
            with pytest.raises(UsageError, match="cannot use one"), open_client(scheduler=address, gpu=True):
                pass
    finally:
        subprocess.run(["bash", str(stop)], capture_output=True, text=True, env=env, timeout=60)
        if (state / "pids").exists():  # stop.sh failed: end what start.sh started, by pid
            for pid in (int(p) for p in (state / "pids").read_text().split()):
                if psutil.pid_exists(pid):
                    for proc in [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            proc.kill()
    assert not (state / "pids").exists()


def test_too_many_local_workers_is_a_usage_error_before_any_starts():
    """compute.workers: 10000 (a typo for 100) on this machine: refused, no process forked."""
    from jobs.cluster import MAX_LOCAL_WORKERS, MAX_LOCAL_WORKERS_PER_CORE, open_client
    from jobs.errors import UsageError

    limit = max(MAX_LOCAL_WORKERS, MAX_LOCAL_WORKERS_PER_CORE * (os.cpu_count() or 1))
    before = len(psutil.Process().children(recursive=True))
    with pytest.raises(UsageError, match=f"compute.workers: {limit + 1} local worker processes.*at most {limit}"):
        with open_client(n_workers=limit + 1):
            pass
    assert len(psutil.Process().children(recursive=True)) == before


def test_a_scheduler_without_workers_is_said_and_the_job_goes_on_once_one_connects(tmp_path):
    """The job used to wait for workers without a word (it looked hung)."""
    from cluster_helpers import EXAMPLE_CONFIG, SAMPLES

    with Procs() as procs:
        info = start_scheduler(procs, tmp_path)
        out = tmp_path / "run"
        argv = [sys.executable, "-m", "jobs", "extract", str(EXAMPLE_CONFIG), "--out", str(out),
                "--input", str(SAMPLES[0]), "--scheduler", info["address"]]
        log = tmp_path / "extract.log"
        with open(log, "wb") as handle:
            job = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=quiet_env(),
                                   start_new_session=True)
            try:
                deadline = time.monotonic() + 60
                while "no workers are connected" not in log.read_text() and time.monotonic() < deadline:
                    assert job.poll() is None, log.read_text()
                    time.sleep(0.2)
                text = log.read_text()
                assert f"extract: note: no workers are connected to the scheduler at {info['address']}" in text
                start_worker(procs, info["address"], tmp_path)
                assert job.wait(timeout=120) == 0, log.read_text()[-3000:]
            finally:
                if job.poll() is None:
                    job.kill()
    assert len(pd.read_parquet(out / "files.parquet")) == 1
    # the workers that came (SLURM jobs come after the start): not the none of the start
    assert json.loads((out / "manifest.json").read_text())["cluster"]["workers"] == 1


def test_a_worker_that_cannot_run_the_job_stops_it_instead_of_failing_every_file(tmp_path, monkeypatch):
    """A worker that cannot see OUT (no shared file system) or cannot use the GPU a cuda job
    asks for (SLURM and Kubernetes workers start after the job, so only their tasks can tell):
    every batch would fail, each file written down as failed. The job stops with exit 2 and
    the worker's words, and nothing is written down as failed."""
    from cluster_helpers import EXAMPLE_CONFIG, SAMPLES
    from distributed import LocalCluster

    import jobs.extract as extract
    from jobs.config import load_config
    from jobs.errors import WorkerSetupError

    def cannot(job):
        raise WorkerSetupError("the worker on node7 cannot use a GPU (ModuleNotFoundError: No "
                               "module named 'cupy'): install audiofeat[gpu]")

    monkeypatch.setattr(extract, "_worker_namespace", cannot)
    cfg = load_config(EXAMPLE_CONFIG)
    cfg.input = [str(p) for p in SAMPLES[:3]]
    cfg.out = str(tmp_path / "run")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(UsageError, match="the worker on node7 cannot use a GPU .*nothing was "
                                             "written down as failed"):
            extract.run_extract(cfg, scheduler=cluster.scheduler_address)
    assert not (tmp_path / "run" / "failures.parquet").exists()


def test_a_worker_that_cannot_see_the_output_folder_says_so(tmp_path):
    """The coordinator made OUT/features.zarr; a worker on another machine without that file
    system sees nothing there (every batch failed at its write, each file written down)."""
    from jobs.errors import WorkerSetupError
    from jobs.extract import _worker_namespace

    with pytest.raises(WorkerSetupError, match="cannot see the output folder .* must see the same "
                                               "input and out paths"):
        _worker_namespace({"out": str(tmp_path / "elsewhere"), "device": "cpu"})
    (tmp_path / "here" / "features.zarr").mkdir(parents=True)
    assert _worker_namespace({"out": str(tmp_path / "here"), "device": "cpu"}).__name__ == "numpy"


def test_a_dask_jobs_runner_waits_for_its_scheduler_to_start(tmp_path, monkeypatch, capsys):
    """The operator starts a DaskJob's runner pod and its cluster together: the scheduler may
    answer only after the runner's first probe (10 s), which then failed the job (restartPolicy
    Never). With the address the operator gives (DASK_SCHEDULER_ADDRESS) the runner waits."""
    import socket
    import threading

    import jobs.cluster
    from jobs.cluster import probe_scheduler, reach_scheduler

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(UsageError):  # another address: one probe, as before
        probe_scheduler(address, timeout=1)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    monkeypatch.setattr(jobs.cluster, "SCHEDULER_PROBE_SECONDS", 1.0)  # probes fail before it starts
    with Procs() as procs:
        argv = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                "--port", str(port), "--dashboard-address", "127.0.0.1:0"]
        later = threading.Timer(3.0, lambda: procs.start(argv, log=tmp_path / "scheduler.log"))
        later.start()
        try:
            reach_scheduler(address)
        finally:
            later.join()
    assert f"waiting for the scheduler at {address} (DASK_SCHEDULER_ADDRESS" in capsys.readouterr().err


try:
    import resource
except ImportError:  # Windows: no ulimit
    resource = None


def _with_open_files(soft: int, hard: int | None = None):
    """preexec_fn: the child's limit on open files (soft, and hard when given)."""
    def limit():
        _, current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, current_hard if hard is None else hard))
    return limit


@pytest.mark.skipif(sys.platform == "win32", reason="no ulimit")
def test_a_low_soft_limit_on_open_files_is_raised_for_the_job():
    code = ("import resource; from jobs.cluster import ensure_open_files; ensure_open_files(); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            preexec_fn=_with_open_files(16))
    assert raised.returncode == 0, raised.stderr
    assert int(raised.stdout) == (4096 if hard == resource.RLIM_INFINITY else min(4096, hard))


@pytest.mark.skipif(sys.platform == "win32", reason="no ulimit")
def test_a_hard_limit_too_low_for_a_cluster_is_one_line_not_a_hang(tmp_path):
    """At ulimit -n 16 a local cluster never started: its event loop logged "Too many open
    files" in a loop for ever (2.6 GB of stderr in 10 minutes)."""
    from test_extract_support import copy_samples, write_config

    corpus = tmp_path / "corpus"
    copy_samples(corpus, 2)
    cfg = write_config(tmp_path / "job.yaml", input=corpus, out=tmp_path / "out", features={"rms": {}})
    proc = subprocess.run([sys.executable, "-m", "jobs", "extract", str(cfg)], capture_output=True,
                          text=True, timeout=120, cwd=REPO, preexec_fn=_with_open_files(16, 16))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "may open only 16 files at once (ulimit -n)" in proc.stderr


def test_a_local_cluster_that_cannot_start_is_named_with_its_likely_limit():
    import errno

    from jobs.cluster import local_cluster_failure

    def failed(cause):
        try:
            try:
                raise cause
            except Exception as exc:
                raise RuntimeError("Nanny failed to start.") from exc
        except RuntimeError as exc:
            return local_cluster_failure(exc)

    files = failed(OSError(errno.EMFILE, "Too many open files"))
    assert files.startswith("the local cluster could not start (RuntimeError: Nanny failed to start.)")
    assert "too many open files" in files and "ulimit -n" in files
    threads = failed(RuntimeError("can't start new thread"))
    assert "may not start more threads" in threads and "ulimit -v" in threads
    assert failed(ValueError("other")) == ("the local cluster could not start its workers "
                                            "(RuntimeError: Nanny failed to start.)")


def test_missing_tls_files_are_refused_before_the_run_folder_exists(tmp_path):
    """The local cluster read compute.cluster.tls only when it started, after the plan had
    made the run folder (with .lock, the plan and features.zarr)."""
    from test_extract_support import run_cli, write_config

    cfg = write_config(tmp_path / "job.yaml", input=REPO / "data" / "samples", out=tmp_path / "out",
                       compute={"workers": 1, "cluster": {"tls": {"ca_file": "nope.pem", "cert": "nope.pem",
                                                                  "key": "nope.key"}}})
    done = run_cli("extract", cfg)
    assert done.returncode == 2, done.stderr
    assert "compute.cluster.tls.ca_file: no such file" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, message", [
    ({"host": "nosuch.invalid"}, "compute.cluster.host: 'nosuch.invalid' does not resolve"),
    ({"host": "::1"}, "compute.cluster.host: '::1': write an IPv6 address in brackets"),
    ({"host": "192.0.2.1"}, "compute.cluster.host: cannot listen on 192.0.2.1 here"),
    ({"dashboard_address": "dashboard"}, "compute.cluster.dashboard_address: 'dashboard': give host:port"),
    ({"dashboard_address": "192.0.2.1:0"}, "compute.cluster.dashboard_address: cannot listen on 192.0.2.1"),
])
def test_local_addresses_that_cannot_listen_are_refused_before_the_run_folder_exists(tmp_path, setting,
                                                                                        message):
    """The local cluster failed to start only after the plan had made the run folder, with
    'Scheduler failed to start.' or '[Errno -2] Name or service not known' for any key."""
    from test_extract_support import run_cli, write_config

    cfg = write_config(tmp_path / "job.yaml", input=REPO / "data" / "samples", out=tmp_path / "out",
                       compute={"workers": 1, "cluster": setting})
    done = run_cli("extract", cfg)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_local_addresses_that_listen_pass():
    for setting in ({}, {"host": "localhost"}, {"host": "[::1]"} if _has_ipv6() else {},
                    {"dashboard_address": ":0"}, {"dashboard_address": None}):
        check_local_addresses(ClusterConfig(**setting))


def _has_ipv6() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_tls_files_that_are_not_pem_are_refused_by_key(tmp_path):
    """Dask read them only as the cluster started (after the run folder existed), with an
    ssl error naming no file."""
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("not a certificate")
    files = [str(tmp_path / n) for n in ("ca.pem", "c.pem", "k.pem")]
    with pytest.raises(UsageError, match=r"^--tls-ca: .*ca.pem: not a PEM CA certificate"):
        security_from(*files)
    tls = TLSConfig(ca_file=files[0], cert=files[1], key=files[2])
    with pytest.raises(UsageError, match=r"^compute.cluster.tls.ca_file: .*not a PEM CA"):
        check_client_settings(ClusterConfig(tls=tls))
