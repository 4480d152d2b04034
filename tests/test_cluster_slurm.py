"""SLURM, offline: the job scripts that cluster/slurm/{cpu,gpu}.yaml produce through the same
code path as open_client (slurm_cluster_kwargs -> dask_jobqueue.SLURMCluster), open_client's
scaling calls, and jobs replaced when they end (dask-jobqueue's local job class standing in for
sbatch). An opt-in test (AUDIOFEAT_TEST_SLURM=1, a working one-node SLURM) submits real jobs."""

from __future__ import annotations

import os
import re
import shutil

import pytest
import yaml
from cluster_helpers import EXAMPLE_CONFIG, REPO, SAMPLES

from jobs.cluster import ClusterConfig, open_client, slurm_cluster_kwargs, slurm_walltime_seconds
from jobs.config import parse_config
from jobs.errors import UsageError

jobqueue = pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.timeout(120)

SLURM_DIR = REPO / "cluster" / "slurm"


def _merged(snippet: str, **cluster_overrides):
    """The example job config with a cluster/slurm snippet merged in, validated like any config."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    extra = yaml.safe_load((SLURM_DIR / snippet).read_text())
    data["compute"].update({k: v for k, v in extra["compute"].items() if k != "cluster"})
    data["compute"]["cluster"] = {**extra["compute"]["cluster"], **cluster_overrides}
    return parse_config(data, base_dir=EXAMPLE_CONFIG.parent)


def _job_script(cluster: ClusterConfig) -> str:
    with jobqueue.SLURMCluster(**slurm_cluster_kwargs(cluster)) as slurm:
        assert slurm.scheduler_address.startswith("tcp://127.0.0.1:")
        return slurm.job_script()


def _sbatch(script: str) -> list[str]:
    return [line[len("#SBATCH "):].strip() for line in script.splitlines()
            if line.startswith("#SBATCH ")]


def _worker_line(script: str) -> str:
    lines = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    assert len(lines) == 1, script
    return lines[0]


def test_cpu_snippet_job_script():
    cfg = _merged("cpu.yaml")
    cluster = cfg.compute.cluster
    assert cluster.kind == "slurm" and cluster.slurm.n_workers == 4
    script = _job_script(cluster)
    sbatch = _sbatch(script)
    assert "-p cpu" in sbatch and "-A my-account" in sbatch
    assert "-t 02:00:00" in sbatch
    assert "--cpus-per-task=8" in sbatch
    assert any(re.fullmatch(r"--mem=1[45]G", s) for s in sbatch), sbatch  # 16 GB as GiB
    assert "--output=logs/dask-%j.out" in sbatch
    assert not any(s.startswith("--gres") for s in sbatch)
    worker = _worker_line(script)
    assert "--nthreads 1" in worker and "--nworkers 8" in worker
    assert "--resources" not in worker
    # the workers retire 5 to 15 minutes before the 2 h walltime, and their job ends with them
    assert "--lifetime 6600s" in worker and "--lifetime-stagger 300s" in worker
    assert "--lifetime-restart" not in worker
    assert "--local-directory /tmp" in worker
    # one BLAS/OpenMP thread per worker, set before the worker starts
    body = script.split("#SBATCH")[-1]
    prologue = body[:body.index("distributed.cli.dask_worker")]
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        assert f"export {name}=1" in prologue


def test_gpu_snippet_job_script():
    cfg = _merged("gpu.yaml")
    assert cfg.compute.device == "cuda"
    cluster = cfg.compute.cluster
    script = _job_script(cluster)
    sbatch = _sbatch(script)
    assert "-p gpu" in sbatch and "-A my-account" in sbatch and "-t 04:00:00" in sbatch
    assert "--gres=gpu:1" in sbatch
    worker = _worker_line(script)
    assert "--resources GPU=1" in worker
    # every extract task holds GPU=1, so a GPU worker runs one task at a time: one thread
    assert "--cpus-per-task=1" in sbatch and "--nthreads 1" in worker
    assert "--nworkers" not in worker  # one process per job
    assert "--lifetime-restart" not in worker and "--lifetime 13800s" in worker
    assert "export OMP_NUM_THREADS=1" in script


@pytest.mark.parametrize("slurm, message", [
    # nothing gives each worker process its own device: all would use the job's first GPU
    ({"cores": 8, "processes": 2, "gpus_per_job": 2}, "2 GPUs per job are not supported"),
    ({"cores": 8, "processes": 1, "gpus_per_job": 2}, "2 GPUs per job are not supported"),
    ({"cores": 8, "processes": 2, "gpus_per_job": 1}, "gpus_per_job: 1 needs one worker process"),
    ({"cores": 4, "gpus_per_job": 1}, "set slurm.processes: 1"),
])
def test_more_than_one_gpu_per_job_is_refused(slurm, message):
    data = {"input": "x", "compute": {"cluster": {"kind": "slurm", "slurm": {"memory": "8GB", **slurm}}}}
    with pytest.raises(UsageError) as err:
        parse_config(data)
    assert str(err.value).startswith("compute.cluster.slurm.gpus_per_job: ")
    assert message in str(err.value)


def test_no_slurm_jobs_is_refused():
    """n_workers: 0 started no job, and the run waited for workers for ever."""
    data = {"input": "x", "compute": {"cluster": {"kind": "slurm",
                                                  "slurm": {"memory": "8GB", "n_workers": 0}}}}
    with pytest.raises(UsageError, match=r"compute\.cluster\.slurm\.n_workers: .*greater than or equal to 1"):
        parse_config(data)


@pytest.mark.parametrize("walltime, seconds", [
    ("02:00:00", 7200), ("90", 5400), ("5:30", 330), ("1-12", 129600), ("1-2:03", 93780),
    ("1-00:00:01", 86401), ("UNLIMITED", None), ("infinite", None), ("0", None),
])
def test_slurm_walltime_formats(walltime, seconds):
    assert slurm_walltime_seconds(walltime) == seconds


def test_a_walltime_slurm_does_not_read_is_refused():
    with pytest.raises(UsageError, match=r"compute.cluster.slurm.walltime: not a SLURM time limit: '2h'"):
        parse_config({"input": "x", "compute": {"cluster": {"kind": "slurm", "slurm": {"walltime": "2h"}}}})


@pytest.mark.parametrize("cluster, lifetime", [
    ({"slurm": {"walltime": "01:00:00"}}, ["--lifetime", "3000s", "--lifetime-stagger", "300s"]),
    ({"slurm": {"walltime": "10"}}, ["--lifetime", "480s", "--lifetime-stagger", "60s"]),
    ({"worker_lifetime": "30m", "slurm": {"walltime": "01:00:00"}},
     ["--lifetime", "30m", "--lifetime-stagger", "180s"]),
    ({"worker_lifetime": "1h", "worker_lifetime_stagger": "5m", "slurm": {"walltime": "UNLIMITED"}},
     ["--lifetime", "1h", "--lifetime-stagger", "5m"]),
    ({"slurm": {"walltime": "UNLIMITED"}}, []),
])
def test_workers_end_their_job_before_the_walltime(cluster, lifetime):
    """dask-jobqueue's advice: --lifetime shorter than the walltime, staggered, and no
    --lifetime-restart (a restarted worker would be killed at the walltime mid-task): the job
    ends and adapt submits another."""
    cfg = ClusterConfig(kind="slurm", **{**cluster, "slurm": {"memory": "1GB", **cluster["slurm"]}})
    args = slurm_cluster_kwargs(cfg)["worker_extra_args"]
    assert args == lifetime
    # local workers keep restarting in place
    if cfg.worker_lifetime:
        assert cfg.lifetime_args()["lifetime_restart"] is True


@pytest.mark.parametrize("lifetime, stagger", [("2h", None), ("55m", "5m"), ("1h", None)])
def test_a_worker_lifetime_past_the_walltime_is_refused(lifetime, stagger):
    cluster = {"kind": "slurm", "worker_lifetime": lifetime, "slurm": {"walltime": "01:00:00"}}
    if stagger:
        cluster["worker_lifetime_stagger"] = stagger
    with pytest.raises(UsageError) as err:
        parse_config({"input": "x", "compute": {"cluster": cluster}})
    said = str(err.value)
    assert said.startswith("compute.cluster.slurm: worker_lifetime ")
    assert "does not end before walltime 01:00:00" in said


def test_user_prologue_and_worker_args_follow_ours():
    cluster = ClusterConfig(kind="slurm", slurm={
        "cores": 2, "memory": "4GB", "job_script_prologue": ["module load python/3.11"],
        "worker_extra_args": ["--memory-limit", "1GB"], "python": "/opt/venv/bin/python",
        "interface": "lo"})
    kwargs = slurm_cluster_kwargs(cluster)
    assert kwargs["job_script_prologue"][-1] == "module load python/3.11"
    assert kwargs["job_script_prologue"][0] == "export OMP_NUM_THREADS=1"
    assert kwargs["interface"] == "lo" and "host" not in kwargs["scheduler_options"]
    script = _job_script(cluster)
    assert script.index("export OMP_NUM_THREADS=1") < script.index("module load python/3.11")
    assert "/opt/venv/bin/python -m distributed.cli.dask_worker" in script
    assert "--interface lo" in script


def test_dashboard_and_scheduler_stay_on_loopback():
    kwargs = slurm_cluster_kwargs(ClusterConfig(kind="slurm", slurm={"memory": "1GB"}))
    assert kwargs["scheduler_options"] == {"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"}
    with jobqueue.SLURMCluster(**kwargs) as slurm:
        assert slurm.dashboard_link.startswith("http://127.0.0.1:")
    kwargs = slurm_cluster_kwargs(ClusterConfig(kind="slurm", dashboard_address=None,
                                                slurm={"memory": "1GB"}))
    # no dashboard, and the scheduler's HTTP server not on jobqueue's default :8787 either
    assert kwargs["scheduler_options"] == {"dashboard": False, "dashboard_address": "127.0.0.1:0",
                                           "host": "127.0.0.1"}


class _RecordingSLURMCluster(jobqueue.SLURMCluster):
    """A real SLURMCluster (real scheduler) that records scaling instead of calling sbatch."""

    calls: list = []

    def scale(self, n=None, jobs=0, memory=None, cores=None):
        type(self).calls.append(("scale", jobs))

    def adapt(self, *args, **kwargs):
        type(self).calls.append(("adapt", kwargs))


@pytest.mark.parametrize("slurm, expected", [
    # a fixed number of jobs is kept by adapt, which replaces a job that ends (scale(jobs=n)
    # submits n once: dask/dask-jobqueue#122)
    ({"memory": "1GB", "n_workers": 3}, ("adapt", {"minimum_jobs": 3, "maximum_jobs": 3})),
    ({"memory": "1GB"}, ("adapt", {"minimum_jobs": 1, "maximum_jobs": 1})),
    ({"memory": "1GB", "adaptive": {"minimum": 1, "maximum": 5}},
     ("adapt", {"minimum_jobs": 1, "maximum_jobs": 5})),
])
def test_open_client_scales_the_slurm_cluster(monkeypatch, slurm, expected):
    monkeypatch.setattr(jobqueue, "SLURMCluster", _RecordingSLURMCluster)
    _RecordingSLURMCluster.calls = []
    with open_client(ClusterConfig(kind="slurm", slurm=slurm)) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert _RecordingSLURMCluster.calls[0] == expected  # (closing then scales to 0)


def test_a_loopback_scheduler_gets_a_note(monkeypatch, capsys):
    """Workers on other nodes cannot reach a scheduler on 127.0.0.1: one note says which setting
    to change; none when slurm.interface picks the network."""
    monkeypatch.setattr(jobqueue, "SLURMCluster", _RecordingSLURMCluster)
    with open_client(ClusterConfig(kind="slurm", slurm={"memory": "1GB"})):
        pass
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("audiofeat: note: ")]
    assert len(notes) == 1, err
    assert "127.0.0.1 (compute.cluster.host)" in notes[0] and "compute.cluster.slurm.interface" in notes[0]
    with open_client(ClusterConfig(kind="slurm", slurm={"memory": "1GB", "interface": "lo"})):
        pass
    assert "audiofeat: note:" not in capsys.readouterr().err


class _SLURMAsLocalJobs(pytest.importorskip("dask_jobqueue.local").LocalCluster):
    """SLURMCluster's arguments, jobs run as local processes (dask-jobqueue's own stand-in,
    which runs the worker command alone: no account, no prologue)."""

    def __init__(self, *, account=None, job_script_prologue=None, **kwargs):
        super().__init__(**kwargs)


def test_a_job_that_ends_is_replaced(monkeypatch):
    """A job whose workers reach their lifetime (here 7 to 9 s, a 10 s walltime's) ends, and a
    new job takes its place: n_workers stays n (with scale(jobs=n) the run stalled without
    workers)."""
    import time

    import dask

    monkeypatch.setattr(jobqueue, "SLURMCluster", _SLURMAsLocalJobs)
    cfg = ClusterConfig(kind="slurm", slurm={"memory": "1GB", "walltime": "0:10", "n_workers": 1})
    assert slurm_cluster_kwargs(cfg)["worker_extra_args"] == ["--lifetime", "8s", "--lifetime-stagger", "1s"]
    job_ids = set()  # (not the Job objects: the cluster checks at its close that those it
    # still knows of, weakly, are closed, and dask-jobqueue never marks them so)
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "0.5s"}), \
            open_client(cfg) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(job_ids) < 2:
            job_ids |= {job.job_id for job in client.cluster.workers.values() if job.job_id}
            time.sleep(0.2)
        assert len(job_ids) >= 2, f"no job replaced the first: {job_ids}"
        client.wait_for_workers(1, timeout=30)


def test_gpu_job_without_gpus_per_job_is_a_usage_error():
    from jobs.errors import UsageError

    with pytest.raises(UsageError, match="gpus_per_job"), \
            open_client(ClusterConfig(kind="slurm", slurm={"memory": "1GB"}), gpu=True):
        pass


# ---------------------------------------------------------------- opt-in: a real one-node SLURM


@pytest.fixture
def real_slurm(tmp_path_factory):
    """A running SLURM: the one SLURM_CONF / sinfo already reach, else a one-node SLURM started
    with cluster/slurm/one-node.sh (root, slurm-wlm and munge installed) and stopped after."""
    import subprocess

    if not shutil.which("sbatch"):
        pytest.skip("sbatch not found (apt-get install slurmctld slurmd slurm-client munge)")
    probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=30)
    if probe.returncode == 0 and probe.stdout.strip():
        yield os.environ.get("SLURM_CONF")
        return
    script = SLURM_DIR / "one-node.sh"
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "AUDIOFEAT_SLURM_DIR": str(state)}
    started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True,
                             env=env, timeout=60)
    try:
        if started.returncode != 0:
            pytest.skip(f"could not start a one-node SLURM: {started.stderr[-500:]}")
        yield str(state / "slurm.conf")
    finally:
        subprocess.run(["bash", str(script), "stop"], capture_output=True, env=env, timeout=60)


@pytest.mark.slurm
@pytest.mark.timeout(600)
@pytest.mark.skipif(os.environ.get("AUDIOFEAT_TEST_SLURM") != "1",
                    reason="opt-in: AUDIOFEAT_TEST_SLURM=1 (a running SLURM, or root with "
                           "slurm-wlm and munge for cluster/slurm/one-node.sh)")
def test_real_slurm_job_runs_extract(real_slurm, tmp_path):
    """A real extract with compute.cluster.kind slurm: audiofeat submits one SLURM job
    (partition AUDIOFEAT_SLURM_QUEUE, default `debug`); its worker joins and does the work."""
    import subprocess
    import sys

    import pandas as pd

    queue = os.environ.get("AUDIOFEAT_SLURM_QUEUE", "debug")
    logs = tmp_path / "logs"
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["input"] = [str(p) for p in SAMPLES[:3]]
    config["out"] = str(tmp_path / "run")
    config["compute"]["cluster"] = {"kind": "slurm", "slurm": {
        "queue": queue, "cores": 1, "memory": "1GB", "walltime": "00:10:00", "n_workers": 1,
        "python": sys.executable, "log_directory": str(logs)}}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    if real_slurm:
        env["SLURM_CONF"] = real_slurm
    result = subprocess.run([sys.executable, "-m", "jobs", "extract", str(job)],
                            capture_output=True, text=True, timeout=540, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pd.read_parquet(tmp_path / "run" / "files.parquet")) == 3
    # the work ran in a SLURM job: its worker log shows it joining the scheduler
    job_logs = sorted(logs.glob("dask-worker-*.err"))
    assert job_logs, list(logs.iterdir()) if logs.exists() else "no log directory"
    text = "\n".join(p.read_text() for p in job_logs)
    assert "Registered to" in text, text[-2000:]


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="sbatch is installed here")
def test_without_sbatch_the_job_stops_at_once_saying_so(tmp_path):
    """kind slurm where sbatch is missing: exit 2 before any output (score waited for workers
    for ever), and dask-jobqueue is imported in the main thread (imported first in the thread
    that starts the cluster, it failed on its signal handler: 'signal only works in main
    thread')."""
    import subprocess
    import sys

    config = tmp_path / "job.yaml"
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["input"], data["out"] = [str(p) for p in SAMPLES], str(tmp_path / "run")
    data["compute"] = {"cluster": {"kind": "slurm", "slurm": {"cores": 2, "memory": "4GB"}}}
    config.write_text(yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "-m", "jobs", "extract", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "sbatch is not on this machine's PATH" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    from jobs.config import load_config
    from jobs.errors import UsageError
    from jobs.score import _open_client

    with pytest.raises(UsageError, match="sbatch is not on this machine's PATH"):
        _open_client(load_config(config), scheduler=None, security=None, n_workers=1)
