"""Where the Dask work runs: the ``compute.cluster`` config section and :func:`open_client`.

```yaml
compute:
  cluster:
    kind: local            # local | address | slurm | kubernetes
    host: 127.0.0.1        # what the scheduler (and local workers) bind to
    dashboard_address: 127.0.0.1:0
    worker_lifetime: 1h    # restart worker processes now and then (memory creep in long runs)
    tls: {ca_file: ca.pem, cert: node.pem, key: node.key}
    slurm: {queue: cpu, account: lab, cores: 8, memory: 32GB, walltime: "04:00:00", n_workers: 4}
    kubernetes: {image: "audiofeat:0.1.0-cpu", n_workers: 4}
```

- ``local`` (default): a :class:`distributed.LocalCluster` of worker processes on this machine,
  one thread and one BLAS/OpenMP thread each, everything bound to 127.0.0.1 (dashboard too).
- ``address``: a running scheduler at ``address`` (``--scheduler`` on the command line wins over
  any kind).
- ``slurm``: a dask-jobqueue ``SLURMCluster`` (the ``slurm`` extra); the job script comes from
  :func:`slurm_cluster_kwargs`. Its jobs are kept at their number by ``adapt``, which submits a
  new job for each that ends; workers retire before the walltime (:func:`slurm_lifetime_args`).
- ``kubernetes``: a dask-kubernetes operator ``KubeCluster`` (the ``kubernetes`` extra) that this
  run creates (a new name each run by default) and deletes at its end; the ``DaskCluster`` comes
  from :func:`kubernetes_cluster_spec`.

TLS comes from ``--tls-ca/--tls-cert/--tls-key`` (:func:`security_from`) or ``compute.cluster.tls``
(:func:`security_from_tls`); with TLS every connection needs a certificate signed by the CA.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from jobs.errors import UsageError

__all__ = [
    "ClusterConfig", "TLSConfig", "SlurmConfig", "AdaptiveConfig", "KubernetesConfig",
    "KubernetesResources", "open_client", "gpu_available", "security_from", "security_from_tls",
    "slurm_cluster_kwargs", "slurm_lifetime_args", "slurm_walltime_seconds",
    "kubernetes_cluster_kwargs", "kubernetes_cluster_spec", "kubernetes_gpu_group_kwargs",
    "prestart_local_workers", "BLAS_ENV", "LOOPBACK",
]

LOOPBACK = "127.0.0.1"
# One BLAS/OpenMP thread per worker process (FIELD-NOTES: oversubscription hangs or slows workers).
BLAS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_EXTRA_HINT = "compute.cluster.kind {kind!r} needs the {extra!r} extra: pip install -e '.[{extra}]'"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_timedelta(value):
    if value is None:
        return value
    from dask.utils import parse_timedelta

    try:
        seconds = parse_timedelta(value)
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"not a duration: {value!r} (e.g. '1h', '30m', '3600s')") from None
    if seconds is None or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return value


MIN_WORKER_MEMORY = 512 * 2**20  # bytes: a local worker's memory_limit at the least
# seconds: a worker_lifetime at the least (under it workers restart faster than a batch runs,
# and a long job makes no progress)
MIN_WORKER_LIFETIME = 60


def _check_bytes(value):
    if value is None or value == "auto":
        return value
    from dask.utils import parse_bytes

    try:
        parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"not a memory size: {value!r} (e.g. '4GB', '16GiB')") from None
    return value


def _default_stagger(lifetime: str, stagger: str | None) -> str:
    """``stagger``, or a tenth of ``lifetime`` (at least a second)."""
    if stagger is not None:
        return stagger
    from dask.utils import parse_timedelta

    return f"{max(1, int(parse_timedelta(lifetime) / 10))}s"


_SLURM_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def slurm_walltime_seconds(value: str) -> float | None:
    """Seconds of a SLURM time limit (``#SBATCH -t``): ``minutes``, ``minutes:seconds``,
    ``hours:minutes:seconds``, ``days-hours``, ``days-hours:minutes`` or
    ``days-hours:minutes:seconds``; None for no limit (``UNLIMITED``, ``INFINITE``, ``-1``, ``0``).

    >>> slurm_walltime_seconds("02:00:00"), slurm_walltime_seconds("1-12"), slurm_walltime_seconds("90")
    (7200, 129600, 5400)
    """
    text = str(value).strip()
    if text.lower() in ("unlimited", "infinite", "-1"):
        return None
    match = _SLURM_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a SLURM time limit: {value!r} (e.g. '04:00:00', '1-00:00:00', "
                         "'90' for minutes)")
    days, *parts = match.groups()
    numbers = [int(p) for p in parts if p is not None]
    if days is not None:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = [*numbers, 0, 0][:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(numbers) == 3:
        total = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    elif len(numbers) == 2:
        total = numbers[0] * 60 + numbers[1]
    else:
        total = numbers[0] * 60
    return total or None  # SLURM: a limit of 0 is none


# ---------------------------------------------------------------- config


class TLSConfig(_Section):
    """Certificates for a TLS cluster: one CA, and the certificate + key this side presents."""

    ca_file: str = Field(description="CA certificate (PEM) that signed every node's certificate")
    cert: str = Field(description="certificate (PEM) presented by the scheduler/workers/client")
    key: str = Field(description="private key (PEM) of `cert`")
    require_encryption: bool = True


class AdaptiveConfig(_Section):
    """SLURM jobs scale between ``minimum`` and ``maximum`` with the work waiting."""

    minimum: int = Field(default=0, ge=0)
    maximum: int = Field(ge=1)

    @field_validator("maximum")
    @classmethod
    def _max_ge_min(cls, value, info: ValidationInfo):
        minimum = info.data.get("minimum")
        if minimum is not None and value < minimum:
            raise ValueError(f"maximum={value} is below minimum={minimum}")
        return value


class SlurmConfig(_Section):
    """A dask-jobqueue SLURMCluster: each SLURM job runs ``processes`` worker processes."""

    queue: str | None = Field(default=None, description="partition (#SBATCH -p)")
    account: str | None = Field(default=None, description="account (#SBATCH -A)")
    cores: int = Field(default=1, ge=1, description="CPU cores per job (#SBATCH --cpus-per-task)")
    processes: int | None = Field(
        default=None, ge=1,
        description="worker processes per job (default: cores, i.e. one thread per worker)")
    memory: str = Field(default="4GB", description="memory per job (#SBATCH --mem)")
    walltime: str = Field(
        default="01:00:00",
        description="#SBATCH -t; workers retire before it and a new job replaces theirs")
    job_extra_directives: list[str] = Field(default_factory=list, description="more #SBATCH lines")
    worker_extra_args: list[str] = Field(default_factory=list, description="more `dask worker` args")
    job_script_prologue: list[str] = Field(default_factory=list,
                                           description="shell lines run before the workers start")
    local_directory: str | None = Field(default=None, description="worker scratch (node-local disk)")
    log_directory: str | None = None
    python: str | None = Field(default=None, description="python on the nodes (default: this one)")
    interface: str | None = Field(default=None, description="network interface (e.g. ib0)")
    n_workers: int | None = Field(default=None, ge=1, description="number of SLURM jobs (kept: one that ends is replaced)")
    adaptive: AdaptiveConfig | None = Field(default=None, description="or: adapt jobs to the load")
    gpus_per_job: int = Field(default=0, ge=0,
                              description="0, or 1: --gres=gpu:1 and the worker resource GPU=1")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value):
        if value == "auto":
            raise ValueError("give a size for a SLURM job, e.g. '16GB'")
        return _check_bytes(value)

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value):
        slurm_walltime_seconds(value)
        return value

    @field_validator("processes")
    @classmethod
    def _processes(cls, value, info: ValidationInfo):
        cores = info.data.get("cores")
        if value is not None and cores is not None and value > cores:
            raise ValueError(f"processes={value} exceeds cores={cores} (each worker needs a core)")
        return value

    @field_validator("adaptive")
    @classmethod
    def _one_scaling(cls, value, info: ValidationInfo):
        if value is not None and info.data.get("n_workers") is not None:
            raise ValueError("give either n_workers (a fixed number of jobs) or adaptive, not both")
        return value

    @field_validator("gpus_per_job")
    @classmethod
    def _one_gpu(cls, value, info: ValidationInfo):
        if value > 1:  # no per-process CUDA_VISIBLE_DEVICES: every worker would use device 0
            raise ValueError(
                f"{value} GPUs per job are not supported (every worker process would use the "
                "job's first GPU); use gpus_per_job: 1 with processes: 1, and more jobs "
                "(n_workers or adaptive.maximum)")
        if value:
            processes = info.data.get("processes") or info.data.get("cores") or 1
            if processes != 1:
                raise ValueError(
                    f"gpus_per_job: 1 needs one worker process per job, not {processes}; set "
                    "slurm.processes: 1 (processes defaults to cores)")
        return value


class KubernetesResources(_Section):
    """Pod resources; quantities are strings ("2", "4Gi"), as the operator's CRDs require."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities(cls, value):
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value


# a DaskCluster's name: a lowercase RFC 1123 label that leaves room for "-scheduler" (63 in all)
_KUBE_NAME = re.compile(r"(?=.{1,53}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class KubernetesConfig(_Section):
    """A dask-kubernetes operator KubeCluster: CPU workers, optionally a GPU worker group."""

    name: str | None = Field(
        default=None,
        description="DaskCluster name; default audiofeat-job-<8 hex>, new each run. The run "
                    "creates it and deletes it at its end: a name already in use is refused")
    namespace: str | None = None
    image: str = Field(default="audiofeat:0.1.0-cpu", description="built from cluster/docker/Dockerfile")
    n_workers: int = Field(default=2, ge=0)
    resources: KubernetesResources = Field(default_factory=KubernetesResources)
    gpu_workers: int = Field(default=0, ge=0, description="workers in the `gpu` group, 1 GPU each")
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        if value is not None and not _KUBE_NAME.fullmatch(value):
            raise ValueError(f"{value!r}: lowercase letters, digits and '-', at most 53 "
                             "characters, starting and ending with a letter or digit")
        return value


class ClusterConfig(_Section):
    """The ``compute.cluster`` section: where the Dask scheduler and workers come from."""

    kind: Literal["local", "address", "slurm", "kubernetes"] = "local"
    address: str | None = Field(
        default=None, validate_default=True,
        description="scheduler address for kind address (--scheduler wins)")
    host: str = Field(default=LOOPBACK, description="interface the scheduler/local workers bind")
    dashboard_address: str | None = Field(default=f"{LOOPBACK}:0",
                                          description="host:port of the dashboard; null: none")
    worker_lifetime: str | None = Field(
        default=None,
        description="restart workers after this (SLURM: end the job's workers after this, "
                    "default shortly before the walltime; a new job replaces them)")
    worker_lifetime_stagger: str | None = Field(
        default=None, description="spread of the restarts (default: a tenth of the lifetime)")
    memory_limit: str = Field(default="auto", description="per local worker ('auto': RAM / workers)")
    start_method: Literal["auto", "forkserver", "spawn"] = Field(
        default="auto",
        description="how local worker processes start: forkserver (forked from one process that "
                    "imported the task modules once; 'auto' where the platform has it) or spawn "
                    "(a fresh interpreter each)")
    tls: TLSConfig | None = None
    slurm: SlurmConfig | None = Field(default=None, validate_default=True)
    kubernetes: KubernetesConfig | None = Field(default=None, validate_default=True)

    @field_validator("address")
    @classmethod
    def _address(cls, value, info: ValidationInfo):
        if info.data.get("kind") == "address" and not value:
            raise ValueError("kind 'address' needs the scheduler address (e.g. tcp://10.0.0.5:8786)")
        if value is not None and "://" not in value:
            raise ValueError(f"{value!r}: give the protocol, e.g. tcp://{value} or tls://{value}")
        return value

    @field_validator("worker_lifetime", "worker_lifetime_stagger")
    @classmethod
    def _durations(cls, value, info: ValidationInfo):
        value = _check_timedelta(value)
        if info.field_name == "worker_lifetime" and value is not None:
            from dask.utils import parse_timedelta

            if parse_timedelta(value) < MIN_WORKER_LIFETIME:
                raise ValueError(f"{value!r}: workers would restart before their batches end "
                                 f"(at least {MIN_WORKER_LIFETIME}s; null: never)")
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value):
        value = _check_bytes(value)
        if value not in (None, "auto"):
            from dask.utils import parse_bytes

            # a worker is a Python process with NumPy, Dask and the job's modules (about 200 MB):
            # under this its nanny kills it at once, again and again, and the job waits for ever
            if parse_bytes(value) < MIN_WORKER_MEMORY:
                raise ValueError(f"{value!r} is too little for a worker process (at least "
                                 f"{MIN_WORKER_MEMORY >> 20}MiB)")
        return value

    @field_validator("slurm")
    @classmethod
    def _slurm(cls, value, info: ValidationInfo):
        if info.data.get("kind") == "slurm" and value is None:
            raise ValueError("kind 'slurm' needs this section (queue, account, cores, memory, "
                             "walltime, n_workers or adaptive); see cluster/slurm/cpu.yaml")
        lifetime = info.data.get("worker_lifetime")
        if info.data.get("kind") == "slurm" and lifetime:
            _check_slurm_lifetime(lifetime, info.data.get("worker_lifetime_stagger"), value.walltime)
        return value

    @field_validator("kubernetes")
    @classmethod
    def _kubernetes(cls, value, info: ValidationInfo):
        if info.data.get("kind") == "kubernetes" and value is None:
            raise ValueError("kind 'kubernetes' needs this section (image, n_workers, ...); "
                             "see cluster/README.md")
        return value

    def lifetime_args(self) -> dict:
        """``{lifetime, lifetime_stagger, lifetime_restart}`` for workers, or ``{}``."""
        if not self.worker_lifetime:
            return {}
        stagger = _default_stagger(self.worker_lifetime, self.worker_lifetime_stagger)
        return {"lifetime": self.worker_lifetime, "lifetime_stagger": stagger,
                "lifetime_restart": True}


def _check_slurm_lifetime(lifetime: str, stagger: str | None, walltime: str) -> None:
    """A ValueError when workers could outlive their SLURM job: it would kill them mid-task."""
    from dask.utils import parse_timedelta

    wall = slurm_walltime_seconds(walltime)
    stagger = _default_stagger(lifetime, stagger)
    if wall is not None and parse_timedelta(lifetime) + parse_timedelta(stagger) >= wall:
        raise ValueError(
            f"worker_lifetime {lifetime} (stagger {stagger}) does not end before walltime "
            f"{walltime}: SLURM would kill the workers mid-task; shorten worker_lifetime, or "
            "leave it unset (workers then retire shortly before the walltime)")


# ---------------------------------------------------------------- TLS


def _check_files(pairs) -> None:
    for name, path in pairs:
        if not os.path.isfile(path):
            raise UsageError(f"{name}: no such file: {path}")


def _check_pem(names: tuple[str, str, str], ca: str, cert: str, key: str) -> None:
    """A usage error naming the key when the CA, the certificate or its key does not load as
    PEM (Dask would fail only as the cluster starts, after the run folder exists)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise UsageError(f"{names[0]}: {ca}: not a PEM CA certificate "
                         f"({getattr(exc, 'reason', None) or exc})") from None
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise UsageError(f"{names[1]}, {names[2]}: {cert}, {key}: not a PEM certificate and its "
                         f"private key ({getattr(exc, 'reason', None) or exc})") from None


def security_from(tls_ca: str | None, tls_cert: str | None, tls_key: str | None, *,
                  require_encryption: bool = True):
    """A client :class:`~distributed.security.Security` from ``--tls-ca/--tls-cert/--tls-key``.

    None when none is given; a UsageError when only some are, or a file is missing.
    """
    files = [tls_ca, tls_cert, tls_key]
    if not any(files):
        return None
    if not all(files):
        raise UsageError("--tls-ca, --tls-cert and --tls-key go together")
    _check_files(zip(("--tls-ca", "--tls-cert", "--tls-key"), files))
    _check_pem(("--tls-ca", "--tls-cert", "--tls-key"), tls_ca, tls_cert, tls_key)
    from distributed.security import Security

    return Security(tls_ca_file=tls_ca, tls_client_cert=tls_cert, tls_client_key=tls_key,
                    require_encryption=require_encryption)


def _full_security(ca: str, cert: str, key: str, require_encryption: bool = True):
    """One certificate for every role (scheduler, worker, client): what a cluster we start uses."""
    from distributed.security import Security

    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key,
                    tls_worker_cert=cert, tls_worker_key=key,
                    require_encryption=require_encryption)


def security_from_tls(tls: TLSConfig | None, *, role: Literal["client", "all"] = "client"):
    """A Security from ``compute.cluster.tls``: the client's, or every role's (``"all"``)."""
    if tls is None:
        return None
    names = ("compute.cluster.tls.ca_file", "compute.cluster.tls.cert", "compute.cluster.tls.key")
    _check_files(zip(names, (tls.ca_file, tls.cert, tls.key)))
    _check_pem(names, tls.ca_file, tls.cert, tls.key)
    if role == "all":
        return _full_security(tls.ca_file, tls.cert, tls.key, tls.require_encryption)
    return security_from(tls.ca_file, tls.cert, tls.key, require_encryption=tls.require_encryption)


def _cluster_security(cluster: ClusterConfig, security):
    """Security for a cluster this process starts: the CLI files (``--tls-*``) for every role,
    else ``compute.cluster.tls``, else none."""
    if security is not None and getattr(security, "tls_client_cert", None):
        return _full_security(security.tls_ca_file, security.tls_client_cert,
                              security.tls_client_key, security.require_encryption)
    if cluster.tls is not None:
        return security_from_tls(cluster.tls, role="all")
    return None


# ---------------------------------------------------------------- GPU


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device; never raises."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "no GPU"
        return False


# ---------------------------------------------------------------- open_client


def _cluster_and_address(cluster, scheduler: str | None) -> tuple[ClusterConfig, str | None]:
    """``cluster`` as a :class:`ClusterConfig` (None: the default; a dict: validated) and the
    scheduler address to connect to, if any (``scheduler``, the --scheduler option, wins)."""
    if cluster is None:
        cluster = ClusterConfig()
    elif isinstance(cluster, dict):
        cluster = ClusterConfig.model_validate(cluster)
    if scheduler is not None and not scheduler.strip():  # not a silent local cluster instead
        raise UsageError("--scheduler: an empty address (an unset variable?); e.g. tcp://10.0.0.5:8786")
    return cluster, scheduler or (cluster.address if cluster.kind == "address" else None)


# One job's Dask client at a time in a process: two jobs started from two threads (a notebook's
# ThreadPoolExecutor) share distributed's process-wide state (the default client, the dashboard
# import, the scheduler's logging) and one of them waited forever now and then, its worker idle.
_ONE_JOB = threading.RLock()


@contextlib.contextmanager
def one_job_at_a_time(say) -> Iterator[None]:
    """Run the ``with`` body when no other thread of this process runs a job (reentrant: ``run``
    runs its stages in one thread); ``say(line)`` tells a caller that waits."""
    if not _ONE_JOB.acquire(blocking=False):
        say("note: another audiofeat job runs in this process (another thread); this one starts "
            "when it ends (one job at a time per process)")
        _ONE_JOB.acquire()
    try:
        yield
    finally:
        _ONE_JOB.release()


def open_client(cluster: ClusterConfig | None = None, *, n_workers: int | None = None,
                threads_per_worker: int = 1, resources: dict | None = None,
                scheduler: str | None = None, gpu: bool = False, security=None,
                preload: tuple[str, ...] | list[str] = ()):
    """A context manager yielding a :class:`distributed.Client` for ``cluster``.

    ``scheduler`` (``--scheduler``) wins over the config; ``security`` (``--tls-*``) over
    ``cluster.tls``. ``preload``: modules the tasks import, imported once by the fork server
    that local workers start from (see ``ClusterConfig.start_method``). Clusters this function starts are closed on exit; a scheduler given by
    address is left running.
    """
    cluster, address = _cluster_and_address(cluster, scheduler)
    if address:
        if security is None and cluster.tls is not None:
            security = security_from_tls(cluster.tls)
        return _address_client(address, security=security, gpu=gpu)
    if cluster.kind == "slurm":
        return _slurm_client(cluster, security=security, gpu=gpu)
    if cluster.kind == "kubernetes":
        return _kubernetes_client(cluster, gpu=gpu, security=security)
    return _local_client(cluster, n_workers=n_workers, threads_per_worker=threads_per_worker,
                         resources=resources, gpu=gpu, security=security, preload=tuple(preload))


def _connect_error(address: str, exc: BaseException) -> UsageError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return UsageError(f"scheduler {address}: cannot connect ({type(exc).__name__}: {text})")


def check_scheduler_address(address: str) -> None:
    """A usage error for an address distributed cannot parse (``nonsense``, ``127.0.0.1`` without
    its port, ``http://...``), before anything is written or connected to."""
    from distributed.comm import parse_address
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(address)
        if scheme not in backends:
            raise ValueError(f"unknown address scheme {scheme!r} (tcp://, tls://, ucx://, inproc://)")
        if scheme in ("tcp", "tls"):
            from distributed.comm.addressing import parse_host_port

            parse_host_port(location)
    except ValueError as exc:
        said = str(exc)
        if said.startswith("invalid literal for int()"):  # the port
            said = f"its port {said.rsplit(':', 1)[-1].strip()} is not a number"
        raise UsageError(f"scheduler address {address!r}: not a valid address ({said}); e.g. "
                         "tcp://10.0.0.5:8786") from None


@contextlib.contextmanager
def _address_client(address: str, *, security, gpu: bool) -> Iterator:
    from distributed import Client

    if address.startswith("tls://") and security is None:
        raise UsageError(f"scheduler {address} uses TLS: give --tls-ca, --tls-cert and --tls-key "
                         "(or compute.cluster.tls)")
    if security is not None and getattr(security, "require_encryption", False) \
            and not address.startswith("tls://"):
        raise UsageError(f"scheduler {address}: TLS certificates given, so the address must "
                         "start with tls://")
    check_scheduler_address(address)
    reach_scheduler(address, security)
    try:
        client = Client(address, security=security, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise _connect_error(address, exc) from None
    with client:
        if gpu:
            _check_gpu_workers(client, address)
        yield client


SCHEDULER_PROBE_SECONDS = 10.0


def _probe_hint(address: str, exc: BaseException) -> str:
    """What a failed connection says, with the likely TLS mix-up named."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    said = f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
    if address.startswith("tls://") and ("SSL" in said or "FatalCommClosed" in said):
        return f"{said}; no TLS handshake completed: a plain tcp:// scheduler, or certificates it refuses"
    if address.startswith("tcp://") and ("reset" in said.lower() or "CommClosed" in said):
        return f"{said}; the server closed a plain connection: a scheduler started with TLS needs tls://"
    return said


def _refused(address: str) -> str | None:
    """``host:port`` of a tcp:// or tls:// address whose port refuses a plain connection now,
    else None (it accepts, is unreachable, or is no such address)."""
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return None
        host, port = parse_host_port(location)
        socket.create_connection((host, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return f"{host}:{port}"
    except (OSError, ValueError):
        pass
    return None


# how long a DaskJob's runner pod waits for its scheduler (the operator starts both at once; the
# scheduler's pod may still be pulling its image)
RUNNER_SCHEDULER_WAIT_S = 600.0


def reach_scheduler(address: str, security=None) -> None:
    """:func:`probe_scheduler`, waiting (up to :data:`RUNNER_SCHEDULER_WAIT_S`) for a scheduler
    that is still starting when the address is the one the Dask operator gives a DaskJob's runner
    pod (``DASK_SCHEDULER_ADDRESS``): there the job and its cluster start together."""
    import sys
    import time

    started = address == os.environ.get("DASK_SCHEDULER_ADDRESS")
    deadline = time.monotonic() + RUNNER_SCHEDULER_WAIT_S
    said = False
    while True:
        try:
            return probe_scheduler(address, security, timeout=SCHEDULER_PROBE_SECONDS)
        except UsageError:
            if not started or time.monotonic() >= deadline:
                raise
        if not said:
            print(f"audiofeat: note: waiting for the scheduler at {address} (DASK_SCHEDULER_ADDRESS: "
                  f"the cluster of this Dask job is still starting), up to {RUNNER_SCHEDULER_WAIT_S:g} s",
                  file=sys.stderr, flush=True)
            said = True
        time.sleep(2.0)


def probe_scheduler(address: str, security=None, timeout: float = SCHEDULER_PROBE_SECONDS) -> None:
    """A usage error unless a Dask scheduler answers at ``address`` within ``timeout`` seconds:
    one connection and an ``identity`` call, whole under the time limit. ``Client`` waits its
    full timeout on a refused port, never gives up on a server that accepts and stays silent
    (an HTTP server: the dashboard's port), and on one that sends other bytes reads them as a
    frame length (an allocation of exabytes)."""
    import asyncio

    from distributed.comm import connect

    async def identity():
        args = security.get_connection_args("client") if security is not None else {}
        comm = await connect(address, timeout=0.8 * timeout, **args)  # its own error first
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    hint = ""
    try:
        answer = asyncio.run(asyncio.wait_for(identity(), timeout))
    except (asyncio.TimeoutError, TimeoutError):
        answer, hint = None, f"no Dask answer in {timeout:g} s"
    except MemoryError:  # other bytes read as a Dask frame's length
        answer, hint = None, "it answered with bytes that are not Dask's"
    except Exception as exc:  # noqa: BLE001 - refused, reset, TLS mismatch
        answer, hint = None, _probe_hint(address, exc)
    if isinstance(answer, dict) and answer.get("type") == "Scheduler":
        return
    if answer is None and "Timed out" in hint:  # Dask retries a refused port until its time is up
        refused = _refused(address)
        if refused:
            hint = f"connection refused: nothing listened on {refused} for {0.8 * timeout:g} s"
    if isinstance(answer, dict):
        hint = f"it is a Dask {answer.get('type', 'server')}, not a scheduler"
    elif answer is not None:
        hint = "not a Dask scheduler"
    tls = address.startswith("tls://")
    advice = "is it a Dask scheduler's address (port 8786 by default; 8787 is its dashboard)?"
    if "TLS" not in hint:
        advice += (" Does that scheduler use TLS, with these certificates?" if tls else
                   " A scheduler started with TLS needs tls:// and --tls-* options.")
    raise UsageError(f"scheduler {address}: cannot connect ({hint}): {advice}")


def _check_gpu_workers(client, address: str) -> None:
    workers = client.scheduler_info().get("workers", {})
    gpu_workers = [a for a, w in workers.items() if w.get("resources", {}).get("GPU")]
    if workers and not gpu_workers:
        raise UsageError(f"compute.device: cuda, but no worker of the scheduler at {address} "
                         "offers the GPU resource (start GPU workers with --resources GPU=1 or "
                         "`dask cuda worker`, see cluster/README.md)")
    if gpu_workers:
        seen = client.run(_worker_sees_a_gpu, workers=gpu_workers)
        if not any(seen.values()):  # every task would fail on its first array, file by file
            raise UsageError(f"compute.device: cuda, but the workers of the scheduler at {address} "
                             "that offer the GPU resource cannot use one (CuPy is not installed "
                             "there or sees no CUDA device: pip install 'audiofeat[gpu]' on them)")


def _worker_sees_a_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return False


@contextlib.contextmanager
def _blas_env_for_nannies() -> Iterator:
    """Worker processes spawned inside this block start with one BLAS/OpenMP thread.

    A Nanny reads ``distributed.nanny.pre-spawn-environ`` when it is made, but lets this
    process's environment override it, so a shell with ``OMP_NUM_THREADS=32`` (common on HPC
    login nodes) would oversubscribe every worker. Both are set to 1 while the nannies are
    made (they keep the values for restarts), then this process's environment is restored.
    """
    import dask
    import distributed  # noqa: F401 - its config defaults must be loaded before we set one

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(BLAS_ENV)
    with _environ(BLAS_ENV), dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        yield


@contextlib.contextmanager
def _environ(values: dict) -> Iterator:
    """``os.environ`` updated with ``values`` inside the block, restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _forkserver_available() -> bool:
    import multiprocessing

    return "forkserver" in multiprocessing.get_all_start_methods()


def _stop_forkserver() -> None:
    """Stop this process's fork server and reap it (with it, the CPU time of the workers it
    forked counts as this process's children's, as spawned workers' does)."""
    import signal

    try:
        from multiprocessing import forkserver

        server = forkserver._forkserver
        if server._forkserver_pid is not None:
            # it holds nothing to clean up, and its interpreter's teardown (numpy, scipy, zarr,
            # distributed...) kept the job's exit waiting 0.15 s: end it at once, then reap it
            os.kill(server._forkserver_pid, signal.SIGTERM)
        server._stop()
    except Exception:  # noqa: BLE001 - a private helper; without it the server ends with us
        pass


@contextlib.contextmanager
def _worker_start_method(cluster: ClusterConfig, preload: tuple[str, ...]) -> Iterator:
    """Local worker processes inside this block start from a fork server (``start_method``).

    Each spawned worker is a fresh interpreter that imports distributed and then the task's
    modules (about 1 CPU-second each, and all workers at once on a small machine). A fork server
    imports them once (``preload``) and forks every worker from that state, so a worker is
    ready in milliseconds. The server starts with this process's environment inside
    :func:`_blas_env_for_nannies` (one BLAS thread); nothing it preloads starts a thread
    (pyarrow does, jemalloc's: keep it out of ``preload``). ``spawn`` keeps distributed's
    default.
    """
    import dask

    if not _use_forkserver(cluster):
        yield  # spawn, or a method the user configured for Dask: theirs
        return
    _start_forkserver(preload)
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield


def _wants_forkserver(cluster: ClusterConfig) -> bool:
    """``start_method`` resolved: ``auto`` is forkserver where the platform has one."""
    method = cluster.start_method
    if method == "auto":
        method = "forkserver" if _forkserver_available() else "spawn"
    return method == "forkserver"


def _use_forkserver(cluster: ClusterConfig) -> bool:
    import dask

    return _wants_forkserver(cluster) and \
        dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "spawn"


# multiprocessing's resource tracker (started with the first worker process) warns at the job's
# end about the semaphores of worker processes that died without releasing them (a decoder
# crash: jobs.crashes); it releases them itself, and the job reports the crash
_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def _quiet_resource_tracker() -> None:
    """Start the resource tracker, when this process starts it, without that warning."""
    import sys

    if _QUIET_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(_QUIET_TRACKER)  # passed to the tracker's interpreter as -W


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while the block starts processes (they inherit it through exec, and Python
    then installs no KeyboardInterrupt handler in them); as it was after. Only in the main
    thread (elsewhere the disposition cannot change: the block runs as it is)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _start_forkserver(preload: tuple[str, ...]) -> None:
    """Set the fork server's preload list (once per process) and start it, not waiting for it."""
    import atexit
    import multiprocessing
    import sys
    from multiprocessing import forkserver

    _quiet_resource_tracker()

    if "distributed.utils" in sys.modules:
        import distributed.utils

        ours = not getattr(distributed.utils, "_forkserver_preload_set", True)
    else:
        ours = True  # distributed sets its list only when it first makes a process
    if ours:
        # distributed would preload its own list (pandas among it) into this process and the
        # server; ours is the list the tasks need
        multiprocessing.get_context("forkserver").set_forkserver_preload(["distributed", *preload])
        atexit.register(_stop_forkserver)
    with _sigint_ignored():
        # the server and the workers it forks ignore Ctrl-C (this process closes them): one in
        # the server's imports printed a KeyboardInterrupt traceback, and each nanny waiting on
        # it an EOFError, above the job's own "interrupted"
        forkserver.ensure_running()
    if ours:
        # imported after the server started (0.25 s): the server imports its preload on the
        # other core meanwhile; then distributed is told the list is set
        import distributed.utils

        distributed.utils._forkserver_preload_set = True


def prestart_local_workers(cluster: ClusterConfig | None = None, *,
                           preload: tuple[str, ...] | list[str] = ()) -> None:
    """Start the fork server that local workers will fork from, now, so that its imports
    (``preload``) run on another core while this process reads its inputs and plans. Does
    nothing where :func:`open_client` would not use one."""
    if cluster is None:
        cluster = ClusterConfig()
    if cluster.kind != "local" or not _may_use_forkserver(cluster):
        return
    try:
        with _environ(BLAS_ENV):  # the server, and the workers it forks, get one BLAS thread
            _start_forkserver(tuple(preload))
    except Exception:  # noqa: BLE001 - only a head start: the cluster starts its own way
        pass


def _may_use_forkserver(cluster: ClusterConfig) -> bool:
    """:func:`_use_forkserver` without importing dask (0.1 s before the server could start):
    only the environment's Dask setting is seen; a method set in a Dask config file leaves the
    head-started server unused, which costs nothing but its imports on an idle core."""
    configured = os.environ.get("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "spawn")
    return _wants_forkserver(cluster) and configured.strip("'\"") == "spawn"


def _dashboard_options(cluster: ClusterConfig) -> dict:
    """Scheduler options for the dashboard. Without one, the scheduler's HTTP server (health and
    metrics routes) still starts, by default on port 8787 of every interface: keep it on host."""
    if cluster.dashboard_address:
        return {"dashboard_address": cluster.dashboard_address}
    return {"dashboard": False, "dashboard_address": f"{cluster.host}:0"}


def _quiet_workers(client) -> None:
    """Every worker of ``client`` (this job's local cluster) drops its closing heartbeat's error."""
    from jobs.worker_logs import QuietShutdown

    try:
        client.register_plugin(QuietShutdown())
    except Exception:  # noqa: BLE001 - only log noise is at stake; never stop a job for it
        pass


# Worker deaths a task may cause before Dask gives it up (KilledWorker; Dask's default: 3), in
# the clusters whose scheduler the job starts in its own process (local, SLURM). A
# file that crashes its decoder kills one worker, and the batch's next attempt leaves it out
# (jobs.crashes): a batch of length-sorted clips can hold several such files of one damaged
# kind side by side, each costing one death.
ALLOWED_WORKER_DEATHS = 10


@contextlib.contextmanager
def _allowed_deaths():
    """The scheduler made inside the block gives a task :data:`ALLOWED_WORKER_DEATHS`, unless
    the user's Dask config already allows more."""
    import dask

    key = "distributed.scheduler.allowed-failures"
    with dask.config.set({key: max(int(dask.config.get(key, 3)), ALLOWED_WORKER_DEATHS)}):
        yield


# a local cluster's processes: more than this (a typo, 10000 for 100) would fork until the machine
# stalls; a job that wants many workers for slow network reads still gets 8 per core
MAX_LOCAL_WORKERS = 64
MAX_LOCAL_WORKERS_PER_CORE = 8


def check_local_workers(n_workers: int | None) -> None:
    """A usage error for more local worker processes than this machine should fork."""
    cores = os.cpu_count() or 1
    limit = max(MAX_LOCAL_WORKERS, MAX_LOCAL_WORKERS_PER_CORE * cores)
    if n_workers and n_workers > limit:
        raise UsageError(f"compute.workers: {n_workers} local worker processes on a machine with {cores} "
                         f"cores: at most {limit} here; for more, run them on a cluster (compute.cluster)")


def _check_listen(key: str, host: str, port: int = 0) -> None:
    """A usage error naming ``key`` when this machine cannot listen on ``host`` (a name that
    does not resolve, an address of no interface here, an IPv6 address without brackets)."""
    import socket

    if host.count(":") > 1 and not host.startswith("["):
        raise UsageError(f"{key}: {host!r}: write an IPv6 address in brackets, e.g. [{host}]")
    bare = host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(bare or None, port,
                                                             type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"{key}: {host!r} does not resolve on this machine "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:  # Dask takes another port for a busy one
                return
            raise UsageError(f"{key}: cannot listen on {host} here ({exc.strerror or exc})") from None


def check_local_addresses(cluster: ClusterConfig) -> None:
    """A usage error naming the key when a local cluster could not listen where it is told to
    (``host``, ``dashboard_address``): Dask would fail only as the cluster starts, after the
    run folder exists."""
    _check_listen("compute.cluster.host", cluster.host)
    if cluster.dashboard_address:
        from distributed.comm.addressing import parse_host_port

        text = cluster.dashboard_address
        try:
            host, port = parse_host_port(text)
        except ValueError:
            raise UsageError(f"compute.cluster.dashboard_address: {text!r}: give host:port "
                             "(e.g. 127.0.0.1:8787, or :0 for any free port)") from None
        _check_listen("compute.cluster.dashboard_address", host, port)


def check_client_settings(cluster=None, *, n_workers: int | None = None, scheduler: str | None = None,
                          security=None, reach: bool = False) -> None:
    """What :func:`open_client` would refuse that can be told before the command writes its
    output: an address that does not parse, too many local workers, a SLURM cluster without
    ``sbatch``, a Kubernetes cluster with TLS or without credentials, and (``reach``) a
    scheduler address where no Dask scheduler answers."""
    cluster, address = _cluster_and_address(cluster, scheduler)
    if not address and cluster.kind == "kubernetes":  # refuses TLS whatever its files hold
        _check_kubernetes(cluster, security)
    if cluster.tls is not None:  # its files, named by key (a local cluster read them only once
        security_from_tls(cluster.tls)  # it started, after the plan had made the run folder)
    if address:
        check_scheduler_address(address)
        if reach:
            if security is None and cluster.tls is not None:
                security = security_from_tls(cluster.tls)
            if address.startswith("tls://") and security is None:
                raise UsageError(f"scheduler {address} uses TLS: give --tls-ca, --tls-cert and "
                                 "--tls-key (or compute.cluster.tls)")
            if getattr(security, "require_encryption", False) and not address.startswith("tls://"):
                raise UsageError(f"scheduler {address}: TLS certificates given, so the address "
                                 "must start with tls://")
            reach_scheduler(address, security)
    elif cluster.kind == "local":
        check_local_workers(n_workers)
        check_local_addresses(cluster)
    elif cluster.kind == "slurm":
        import shutil

        # imported here, in the main thread: dask-jobqueue sets a signal handler when imported,
        # which fails in the thread that starts the cluster while the plan is made
        _need_extra("dask_jobqueue", "slurm", "slurm")
        if shutil.which("sbatch") is None:  # dask-jobqueue would wait for workers for ever
            raise UsageError("compute.cluster.kind: slurm, but sbatch is not on this machine's PATH "
                             "(run the command on a SLURM login node)")


@contextlib.contextmanager
def _local_client(cluster: ClusterConfig, *, n_workers, threads_per_worker, resources, gpu,
                  security, preload: tuple[str, ...] = ()) -> Iterator:
    from distributed import Client, LocalCluster

    check_local_workers(n_workers)
    if gpu and not resources:
        resources = {"GPU": 1}
    sec = _cluster_security(cluster, security)
    kwargs = dict(
        processes=True, host=cluster.host, dashboard_address=cluster.dashboard_address,
        scheduler_kwargs=_dashboard_options(cluster),
        n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker or 1,
        memory_limit=cluster.memory_limit, resources=resources or None,
        silence_logs=logging.ERROR, **cluster.lifetime_args())
    if sec is not None:
        kwargs.update(security=sec, protocol="tls://")
    _quiet_resource_tracker()
    try:
        with _blas_env_for_nannies(), _worker_start_method(cluster, preload), _allowed_deaths(), \
                _quiet_start_logs():
            local = LocalCluster(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Dask's own tracebacks say nothing more
        # (and its note at exit of the worker processes it reaps, "stray" after the failure)
        logging.getLogger("distributed.process").setLevel(logging.WARNING)
        raise UsageError(local_cluster_failure(exc)) from None
    with local, Client(local, security=sec) as client:
        _quiet_workers(client)
        yield client


@contextlib.contextmanager
def _quiet_start_logs():
    """While a local cluster starts, the nannies' logs of a worker that failed to start (a
    traceback each) stay unsaid: the failure ends the start, in one line
    (:func:`local_cluster_failure`)."""
    loggers = [logging.getLogger(name) for name in ("distributed.nanny", "distributed.process")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def local_cluster_failure(exc: BaseException) -> str:
    """One line for a local cluster that could not start, with the limit most likely behind it
    (a process limit set with ``ulimit``: open files, threads, memory)."""
    words = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:  # the deepest cause names the limit
        seen.add(id(cause))
        text = str(cause)
        if (isinstance(cause, OSError) and cause.errno == errno.EMFILE) or "Too many open files" in text:
            return (f"the local cluster could not start ({words}): too many open files; raise "
                    f"this shell's limit (ulimit -n, now {open_files_limit()})")
        if "can't start new thread" in text or isinstance(cause, MemoryError):
            return (f"the local cluster could not start ({words}): the process may not start "
                    "more threads or take more memory; raise this shell's limits (ulimit -v, "
                    "ulimit -u) or use fewer workers")
        cause = cause.__cause__ or cause.__context__
    return f"the local cluster could not start its workers ({words})"


# the open files a job needs at least: its cluster's connections (a few per worker) and the
# files it reads and writes at once
MIN_OPEN_FILES = 64
# what the job raises a lower soft limit to, when the hard limit allows
WANTED_OPEN_FILES = 4096


def open_files_limit() -> int | None:
    """The soft limit on open files (None where there is none, or no ``resource`` module)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def ensure_open_files(least: int = MIN_OPEN_FILES, wanted: int = WANTED_OPEN_FILES) -> None:
    """Raise this process's soft limit on open files towards ``wanted`` (within the hard limit;
    local workers inherit it), and refuse to start (:class:`UsageError`) under ``least``: at
    ``ulimit -n 16`` a local cluster never started and its event loop logged the failure in a
    loop for ever."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft != resource.RLIM_INFINITY and soft < least:
        raise UsageError(f"this process may open only {soft} files at once (ulimit -n), and the "
                         f"job needs at least {least} (its cluster's connections and the files it "
                         f"reads): raise the limit (ulimit -n {WANTED_OPEN_FILES})")


# ---------------------------------------------------------------- SLURM


def _need_extra(module: str, kind: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(_EXTRA_HINT.format(kind=kind, extra=extra)) from None


# a SLURM job's workers retire this long (at most) before its walltime, give or take as much
SLURM_LIFETIME_MARGIN_S = 300


def slurm_lifetime_args(cluster: ClusterConfig) -> list[str]:
    """The ``dask worker`` options that end a SLURM job's workers before its walltime.

    dask-jobqueue's advice for walltimes: ``--lifetime`` shorter than the walltime, with
    ``--lifetime-stagger`` so that the jobs do not all end at once, and no
    ``--lifetime-restart``: the workers retire (their tasks go elsewhere), the job ends, and the
    cluster's ``adapt`` submits a new one in its place (a worker restarted inside the job would
    be killed at the walltime mid-task). The lifetime is ``worker_lifetime`` when set, else the
    walltime less twice a margin (a tenth of the walltime, at most
    :data:`SLURM_LIFETIME_MARGIN_S`), staggered by that margin; none without a time limit.
    """
    if cluster.worker_lifetime:
        life = cluster.lifetime_args()
        return ["--lifetime", life["lifetime"], "--lifetime-stagger", life["lifetime_stagger"]]
    wall = slurm_walltime_seconds(cluster.slurm.walltime)
    if wall is None:
        return []
    margin = min(wall / 10, SLURM_LIFETIME_MARGIN_S)
    return ["--lifetime", f"{int(wall - 2 * margin)}s", "--lifetime-stagger", f"{int(margin)}s"]


def slurm_cluster_kwargs(cluster: ClusterConfig, *, security=None) -> dict:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for this config (no SLURM needed).

    Every worker process runs one thread (``processes`` defaults to ``cores``) with one
    BLAS/OpenMP thread; ``gpus_per_job: 1`` adds ``--gres=gpu:1`` and the worker resource
    ``GPU=1``; the workers end before the walltime (:func:`slurm_lifetime_args`).
    """
    s = cluster.slurm
    if s is None:
        raise UsageError("compute.cluster.slurm: kind 'slurm' needs this section")
    processes = s.processes or s.cores
    directives = list(s.job_extra_directives)
    worker_args = list(s.worker_extra_args)  # jobqueue adds --nthreads cores // processes
    if s.gpus_per_job:  # 1 (SlurmConfig), owned by the job's one worker process
        directives.append(f"--gres=gpu:{s.gpus_per_job}")
        worker_args += ["--resources", "GPU=1"]
    worker_args += slurm_lifetime_args(cluster)
    prologue = [f"export {k}={v}" for k, v in BLAS_ENV.items()] + list(s.job_script_prologue)
    kwargs = dict(
        queue=s.queue, account=s.account, cores=s.cores, processes=processes, memory=s.memory,
        walltime=s.walltime, job_extra_directives=directives, worker_extra_args=worker_args,
        job_script_prologue=prologue, local_directory=s.local_directory,
        log_directory=s.log_directory, python=s.python, silence_logs="error")
    # jobqueue takes the scheduler's own options here; the dashboard stays on cluster.host
    options = _dashboard_options(cluster)
    if s.interface:
        kwargs["interface"] = s.interface
    else:
        options["host"] = cluster.host
    kwargs["scheduler_options"] = options
    sec = _cluster_security(cluster, security)
    if sec is not None:
        kwargs.update(security=sec, protocol="tls://")
    return {k: v for k, v in kwargs.items() if v is not None}


@contextlib.contextmanager
def _slurm_client(cluster: ClusterConfig, *, security, gpu: bool) -> Iterator:
    jobqueue = _need_extra("dask_jobqueue", "slurm", "slurm")
    from distributed import Client

    s = cluster.slurm
    if gpu and not s.gpus_per_job:
        raise UsageError("compute.device: cuda needs compute.cluster.slurm.gpus_per_job: 1 "
                         "(see cluster/slurm/gpu.yaml)")
    _note_slurm_loopback(cluster)
    with _blas_env_for_nannies(), _allowed_deaths():  # its scheduler runs in this process
        slurm = jobqueue.SLURMCluster(**slurm_cluster_kwargs(cluster, security=security))
    with slurm:
        if s.adaptive is not None:
            slurm.adapt(minimum_jobs=s.adaptive.minimum, maximum_jobs=s.adaptive.maximum)
        else:
            # a fixed number of jobs, kept: adapt submits a new job for each that ends (at its
            # walltime); scale(jobs=n) submits n once (dask/dask-jobqueue#122)
            n = 1 if s.n_workers is None else s.n_workers
            slurm.adapt(minimum_jobs=n, maximum_jobs=n)
        with Client(slurm, security=slurm.security) as client:
            yield client


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _note_slurm_loopback(cluster: ClusterConfig) -> None:
    """A note on standard error when the SLURM jobs' workers could not reach the scheduler:
    it listens on a loopback address, which only a one-node SLURM's workers share."""
    import sys

    if cluster.slurm.interface or not _is_loopback(cluster.host):
        return
    print(f"audiofeat: note: the scheduler listens on {cluster.host} (compute.cluster.host): "
          "workers in SLURM jobs on other nodes cannot reach it, only a one-node SLURM's can; set "
          "compute.cluster.host to this node's address on the cluster network, or "
          "compute.cluster.slurm.interface (e.g. ib0)", file=sys.stderr)


# ---------------------------------------------------------------- Kubernetes

# where kr8s (dask-kubernetes' Kubernetes client) finds credentials inside a pod
_KUBE_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_NO_KUBE_CREDENTIALS = (
    "compute.cluster.kind: kubernetes, but no Kubernetes credentials were found here (no "
    "kubeconfig at $KUBECONFIG or ~/.kube/config, no in-cluster service account): run the "
    "command where kubectl works, or use --scheduler with a running cluster")


def _worker_command(cluster: ClusterConfig, gpus: int = 0) -> str:
    parts = ["dask", "worker", "--nthreads", "1"]
    if gpus:
        parts += ["--resources", f"GPU={gpus}"]
    life = cluster.lifetime_args()
    if life:
        parts += ["--lifetime", life["lifetime"], "--lifetime-stagger", life["lifetime_stagger"],
                  "--lifetime-restart"]
    return " ".join(parts)


def _kubernetes_name(k: KubernetesConfig) -> str:
    """The DaskCluster's name: ``name``, else ``audiofeat-job-<8 hex>``, new each run (never
    ``audiofeat``, the long-lived cluster of cluster/kubernetes/daskcluster.yaml)."""
    import secrets

    return k.name or f"audiofeat-job-{secrets.token_hex(4)}"


def _dask_cli(args: list[str]) -> list[str]:
    """``dask-scheduler ...`` / ``dask-worker ...`` as ``dask scheduler ...`` / ``dask worker ...``:
    distributed >= 2026.6 has only the ``dask`` command (dask/distributed#9335), and
    dask-kubernetes' templates still start the scheduler with ``dask-scheduler``."""
    if args and args[0] in ("dask-scheduler", "dask-worker"):
        return ["dask", args[0].split("-", 1)[1], *args[1:]]
    return list(args)


def kubernetes_cluster_spec(cluster: ClusterConfig, name: str) -> dict:
    """The ``DaskCluster`` resource ``name`` that :func:`kubernetes_cluster_kwargs` hands to
    ``KubeCluster`` (``custom_cluster_spec``): dask-kubernetes' own template
    (``make_cluster_spec``) with this config's image, CPU workers, resources and environment,
    every container started with the ``dask`` command."""
    k = cluster.kubernetes
    if k is None:
        raise UsageError("compute.cluster.kubernetes: kind 'kubernetes' needs this section")
    operator = _need_extra("dask_kubernetes.operator", "kubernetes", "kubernetes")
    spec = operator.make_cluster_spec(
        name, image=k.image, n_workers=k.n_workers,
        resources=k.resources.model_dump(exclude_defaults=True), env={**BLAS_ENV, **k.env},
        worker_command=_worker_command(cluster))
    for role in ("scheduler", "worker"):
        _harden(spec["spec"][role]["spec"])
    return spec


# what every container of a run's pods may not do (as in cluster/kubernetes/*.yaml; Dask needs
# neither): two of the "restricted" Pod Security Standard's conditions (its others, a non-root
# user and a seccomp profile, depend on the image and the nodes)
_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _harden(pod_spec: dict) -> None:
    """Each container of ``pod_spec``: started with the ``dask`` command, without privilege
    escalation or Linux capabilities."""
    for container in pod_spec["containers"]:
        container["args"] = _dask_cli(container.get("args") or [])
        container["securityContext"] = {**_CONTAINER_SECURITY, **container.get("securityContext", {})}


def kubernetes_cluster_kwargs(cluster: ClusterConfig) -> dict:
    """Keyword arguments of ``dask_kubernetes.operator.KubeCluster``: a cluster this run creates
    (:func:`kubernetes_cluster_spec`, named by ``name`` or new each run) and deletes at its end.

    ``create_mode`` CREATE_ONLY: a cluster of that name that exists already is refused, never
    connected to (its image, workers and resources are not this config's). ``shutdown_on_close``
    None: KubeCluster sets it to True once it has created the cluster, and leaves it (no
    deletion, by ``close`` or its exit hook) when it stops before; :func:`_kubernetes_client`
    keeps the library's config default (true, which would delete a cluster of that name) out.
    """
    k = cluster.kubernetes
    if k is None:
        raise UsageError("compute.cluster.kubernetes: kind 'kubernetes' needs this section")
    _need_extra("dask_kubernetes", "kubernetes", "kubernetes")
    from dask_kubernetes.operator.kubecluster.kubecluster import CreateMode

    name = _kubernetes_name(k)
    spec = kubernetes_cluster_spec(cluster, name)
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    kwargs = dict(name=name, custom_cluster_spec=spec, create_mode=CreateMode.CREATE_ONLY,
                  shutdown_on_close=None, image=k.image, n_workers=k.n_workers,
                  resources=worker["resources"], env={**BLAS_ENV, **k.env},
                  worker_command=_worker_command(cluster))
    if k.namespace is not None:
        kwargs["namespace"] = k.namespace
    return kwargs


def kubernetes_gpu_group_kwargs(cluster: ClusterConfig) -> dict | None:
    """``KubeCluster.add_worker_group`` arguments of the ``gpu`` group (None without one)."""
    k = cluster.kubernetes
    if k is None or not k.gpu_workers:
        return None
    resources = k.resources.model_dump()
    resources["limits"] = {**resources.get("limits", {}), "nvidia.com/gpu": "1"}  # the CRDs type quantities as strings
    kwargs = dict(name="gpu", n_workers=k.gpu_workers, image=k.image, resources=resources,
                  env={**BLAS_ENV, **k.env}, worker_command=_worker_command(cluster, gpus=1))
    # the group's worker spec from dask-kubernetes' own template, as the CPU workers' (custom_spec:
    # add_worker_group would make the same one, without the containers' security context)
    operator = _need_extra("dask_kubernetes.operator", "kubernetes", "kubernetes")
    template = operator.make_cluster_spec("gpu", image=k.image, n_workers=k.gpu_workers,
                                          resources=resources, env=kwargs["env"],
                                          worker_command=kwargs["worker_command"])
    worker = template["spec"]["worker"]
    _harden(worker["spec"])
    return {**kwargs, "custom_spec": worker}


def _kubernetes_credentials() -> bool:
    """Whether kr8s would find credentials: a kubeconfig file (``$KUBECONFIG``, else
    ``~/.kube/config``) or a pod's service account. Files only: nothing is contacted."""
    paths = os.environ.get("KUBECONFIG") or "~/.kube/config"
    if any(os.path.isfile(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p):
        return True
    return os.path.isdir(_KUBE_SERVICE_ACCOUNT) and "KUBERNETES_SERVICE_HOST" in os.environ


def _check_kubernetes(cluster: ClusterConfig, security=None) -> None:
    """What kind kubernetes refuses before anything is written or started: TLS (from
    ``--tls-*``, ``security``, or ``compute.cluster.tls``), a missing extra, no credentials."""
    source = ("--tls-ca/--tls-cert/--tls-key" if security is not None
              else "compute.cluster.tls" if cluster.tls is not None else None)
    if source:
        raise UsageError(f"{source}: TLS is not supported with kind 'kubernetes' (run the "
                         "DaskJob inside the cluster, or connect with --scheduler tls://... to a "
                         "TLS scheduler you deployed)")
    _need_extra("dask_kubernetes", "kubernetes", "kubernetes")
    if not _kubernetes_credentials():
        raise UsageError(_NO_KUBE_CREDENTIALS)


def _kubernetes_usage_error(exc: Exception, name: str) -> UsageError:
    """KubeCluster's error while it creates the cluster, as one line: no connection, no
    credentials, a name in use, or anything else the client says (a kubeconfig it cannot read)."""
    import httpx  # dask-kubernetes' (kr8s') HTTP client

    said = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, httpx.TransportError):
        return UsageError(f"compute.cluster.kind: kubernetes: cannot reach the Kubernetes API "
                          f"server ({type(exc).__name__}: {said}); does `kubectl get pods` work "
                          "here?")
    if "Unable to find valid credentials" in said:  # kr8s: a kubeconfig without a usable context
        return UsageError(_NO_KUBE_CREDENTIALS)
    if "already exists" in said:  # CREATE_ONLY
        return UsageError(
            f"compute.cluster.kubernetes.name: a Dask cluster {name!r} exists already; the job "
            "creates its own cluster and deletes it at its end: leave name unset (a new name "
            "each run), or run on that cluster with --scheduler (cluster/README.md)")
    return UsageError(f"compute.cluster.kind: kubernetes: the cluster could not be created "
                      f"({type(exc).__name__}: {said}); does `kubectl get pods` work here?")


@contextlib.contextmanager
def _kubernetes_client(cluster: ClusterConfig, *, gpu: bool, security=None) -> Iterator:
    _check_kubernetes(cluster, security)
    import dask
    from dask_kubernetes.operator import KubeCluster
    from distributed import Client

    group = kubernetes_gpu_group_kwargs(cluster)
    if gpu and group is None:
        raise UsageError("compute.device: cuda needs compute.cluster.kubernetes.gpu_workers >= 1")
    kwargs = kubernetes_cluster_kwargs(cluster)
    try:
        # shutdown_on_close=None means "True if it created the cluster" only while the
        # library's config default (true) does not override it
        with dask.config.set({"kubernetes.shutdown-on-close": None}):
            kube = KubeCluster(**kwargs)
    except Exception as exc:  # noqa: BLE001 - every refusal of the client's is one line
        raise _kubernetes_usage_error(exc, kwargs["name"]) from None
    with kube:
        if group is not None:
            kube.add_worker_group(**group)
        with Client(kube) as client:
            yield client
