"""cluster/kubernetes manifests and cluster/docker/Dockerfile, offline: structure, the operator's
own CRD schemas (shipped with dask-kubernetes), GPU limits and resources, the DaskJob command, and
what jobs.cluster hands to KubeCluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from cluster_helpers import REPO

from jobs.cluster import ClusterConfig, kubernetes_gpu_group_kwargs, open_client
from jobs.config import parse_config

K8S = REPO / "cluster" / "kubernetes"
DOCKERFILE = REPO / "cluster" / "docker" / "Dockerfile"
API = "kubernetes.dask.org/v1"
BLAS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _one(name: str, kind: str) -> dict:
    found = [d for d in _docs(name) if d.get("kind") == kind]
    assert len(found) == 1, f"{name}: expected one {kind}"
    return found[0]


def _container(pod_spec: dict, name: str) -> dict:
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, pod_spec
    return found[0]


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _option(args: list[str], flag: str) -> str:
    assert flag in args, (flag, args)
    return args[args.index(flag) + 1]


def _check_scheduler(cluster_spec: dict, cluster_name: str) -> None:
    scheduler = cluster_spec["scheduler"]
    container = _container(scheduler["spec"], "scheduler")
    assert container["args"][:2] == ["dask", "scheduler"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    service = scheduler["service"]
    assert service["type"] == "ClusterIP"  # never exposed outside the Kubernetes cluster
    assert service["selector"] == {"dask.org/cluster-name": cluster_name,
                                   "dask.org/component": "scheduler"}
    assert {p["targetPort"] for p in service["ports"]} == {"tcp-comm", "http-dashboard"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def _check_worker(worker: dict, *, gpu: bool) -> dict:
    assert isinstance(worker["replicas"], int) and worker["replicas"] >= 1
    pod = worker["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = _container(pod, "worker")
    args = container["args"]
    assert args[:2] == ["dask", "worker"]
    assert _option(args, "--name") == "$(DASK_WORKER_NAME)"
    assert _env(container) == BLAS
    assert _option(args, "--lifetime") and "--lifetime-restart" in args
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["memory"]
    if gpu:
        assert resources["limits"]["nvidia.com/gpu"] == "1"
        assert _option(args, "--resources") == "GPU=1"
        assert container["image"].endswith("-gpu")
    else:
        assert _option(args, "--nthreads") == "1"
        assert "nvidia.com/gpu" not in resources.get("limits", {})
        assert "--resources" not in args
        assert container["image"].endswith("-cpu")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    return container


# ---------------------------------------------------------------- manifests


def test_daskcluster_manifest():
    cluster = _one("daskcluster.yaml", "DaskCluster")
    assert cluster["apiVersion"] == API
    name = cluster["metadata"]["name"]
    _check_scheduler(cluster["spec"], name)
    _check_worker(cluster["spec"]["worker"], gpu=False)


def test_gpu_workergroup_manifest():
    group = _one("gpu-workergroup.yaml", "DaskWorkerGroup")
    assert group["apiVersion"] == API
    assert group["spec"]["cluster"] == _one("daskcluster.yaml", "DaskCluster")["metadata"]["name"]
    container = _check_worker(group["spec"]["worker"], gpu=True)
    assert _option(container["args"], "--nthreads") == "1"  # one task at a time holds the GPU
    tolerations = group["spec"]["worker"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_daskjob_runs_audiofeat_against_its_cluster():
    job = _one("daskjob.yaml", "DaskJob")
    assert job["apiVersion"] == API
    name = job["metadata"]["name"]
    pod = job["spec"]["job"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = _container(pod, "job")
    argv = [*container.get("command", []), *container["args"]]
    assert argv[:2] == ["audiofeat", "run"]
    config_path = argv[2]
    assert _option(argv, "--scheduler") == "$(DASK_SCHEDULER_ADDRESS)"
    # the config comes from the ConfigMap mounted where the command reads it
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = _one("daskjob.yaml", "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    key = Path(config_path).name
    job_config = parse_config(yaml.safe_load(config_map["data"][key]))  # a valid audiofeat config
    assert job_config.input and job_config.out
    # its cluster: the scheduler service selects the cluster the operator names after the job
    _check_scheduler(job["spec"]["cluster"]["spec"], name)
    _check_worker(job["spec"]["cluster"]["spec"]["worker"], gpu=False)
    # workers and the job see the same data volume (workers write the store)
    worker_pod = job["spec"]["cluster"]["spec"]["worker"]["spec"]
    claim = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
             if "persistentVolumeClaim" in v}
    assert claim and claim <= {v["persistentVolumeClaim"]["claimName"]
                               for v in worker_pod["volumes"] if "persistentVolumeClaim" in v}


def test_images_are_pinned_and_nothing_is_exposed():
    for name in ("daskcluster.yaml", "gpu-workergroup.yaml", "daskjob.yaml"):
        text = (K8S / name).read_text()
        images = re.findall(r"image:\s*(\S+)", text)
        assert images and all(":" in i and not i.endswith(":latest") for i in images), images
        assert "LoadBalancer" not in text and "NodePort" not in text and "hostNetwork" not in text


@pytest.mark.parametrize("name, crd", [
    ("daskcluster.yaml", "daskcluster.yaml"),
    ("gpu-workergroup.yaml", "daskworkergroup.yaml"),
    ("daskjob.yaml", "daskjob.yaml"),
])
def test_manifests_match_the_operator_crd_schema(name, crd):
    jsonschema = pytest.importorskip("jsonschema")
    operator = pytest.importorskip("dask_kubernetes.operator")
    crd_path = (Path(operator.__file__).parent / "deployment" / "helm" /
                "dask-kubernetes-operator" / "crds" / crd)
    if not crd_path.exists():
        pytest.skip(f"no CRD file at {crd_path}")
    definition = yaml.safe_load(crd_path.read_text())
    version = next(v for v in definition["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]
    kind = definition["spec"]["names"]["kind"]
    manifest = _one(name, kind)
    assert manifest["apiVersion"] == f"{definition['spec']['group']}/v1"
    jsonschema.Draft7Validator(schema).validate(manifest)


# ---------------------------------------------------------------- what KubeCluster gets


def _stand_in_make_cluster_spec(name, image="ghcr.io/dask/dask:latest", n_workers=None,
                                resources=None, env=None, worker_command="dask-worker"):
    """dask-kubernetes 2026.3.0's make_cluster_spec, reduced to what jobs.cluster reads and
    edits: its scheduler starts with ``dask-scheduler`` (no such script since distributed
    2026.6)."""
    env = [{"name": k, "value": v} for k, v in (env or {}).items()]
    if isinstance(worker_command, str):
        worker_command = worker_command.split(" ")
    container = {"image": image, "env": env, "resources": resources}
    return {"apiVersion": API, "kind": "DaskCluster", "metadata": {"name": name}, "spec": {
        "idleTimeout": 0,
        "worker": {"replicas": n_workers, "spec": {"containers": [{
            "name": "worker", **container,
            "args": [*worker_command, "--name", "$(DASK_WORKER_NAME)", "--dashboard",
                     "--dashboard-address", "8788"]}]}},
        "scheduler": {"spec": {"containers": [{
            "name": "scheduler", **container, "args": ["dask-scheduler", "--host", "0.0.0.0"]}]},
            "service": {"type": "ClusterIP"}}}}


class _RecordingKubeCluster:
    """Records what it is given, and the shutdown_on_close it would resolve (the argument, else
    the library's config default); then raises ``error`` (the cluster never starts)."""

    calls: list = []
    error: Exception = RuntimeError("recorded")
    installed = None  # dask_kubernetes.operator where it is installed

    def __init__(self, **kwargs):
        import dask

        shutdown = dask.config.get("kubernetes.shutdown-on-close", default="unset",
                                   override_with=kwargs.get("shutdown_on_close"))
        type(self).calls.append({**kwargs, "resolved_shutdown_on_close": shutdown})
        raise type(self).error


@pytest.fixture
def kube(monkeypatch, tmp_path):
    """dask_kubernetes.operator with KubeCluster recording its arguments: the installed one's
    make_cluster_spec where dask-kubernetes is installed, else a stand-in of 2026.3.0's; and a
    kubeconfig file, so that the credentials check passes."""
    import enum
    import sys
    import types

    try:
        import dask_kubernetes.operator as operator

        monkeypatch.setattr(_RecordingKubeCluster, "installed", operator)
    except ImportError:
        modules = {name: types.ModuleType(name) for name in (
            "dask_kubernetes", "dask_kubernetes.operator", "dask_kubernetes.operator.kubecluster",
            "dask_kubernetes.operator.kubecluster.kubecluster")}
        modules["dask_kubernetes.operator.kubecluster.kubecluster"].CreateMode = enum.Enum(
            "CreateMode", {"CREATE_ONLY": "CREATE_ONLY", "CREATE_OR_CONNECT": "CREATE_OR_CONNECT",
                           "CONNECT_ONLY": "CONNECT_ONLY"})
        operator = modules["dask_kubernetes.operator"]
        operator.make_cluster_spec = _stand_in_make_cluster_spec
        operator.KubeCluster = None
        try:
            import httpx  # noqa: F401 - dask-kubernetes' HTTP client
        except ImportError:
            modules["httpx"] = types.ModuleType("httpx")
            modules["httpx"].TransportError = type("TransportError", (Exception,), {})
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(operator, "KubeCluster", _RecordingKubeCluster)
    monkeypatch.setattr(_RecordingKubeCluster, "calls", [])
    monkeypatch.setattr(_RecordingKubeCluster, "error", RuntimeError("recorded"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return _RecordingKubeCluster


def _kube_config(**kubernetes) -> ClusterConfig:
    return parse_config({"input": "x", "features": {"rms": {}}, "compute": {"cluster": {
        "kind": "kubernetes", "worker_lifetime": "1h", "kubernetes": kubernetes}}}).compute.cluster


def _opened(cluster: ClusterConfig, kube) -> dict:
    """What open_client handed to KubeCluster."""
    from jobs.errors import UsageError

    # (any other error of KubeCluster's is one line too: "the cluster could not be created")
    with pytest.raises(UsageError, match=r"could not be created \(RuntimeError: recorded\)"), \
            open_client(cluster):
        pass
    assert len(kube.calls) == 1
    return kube.calls.pop()


def test_kubernetes_config_to_operator_specs(kube):
    cluster = _kube_config(image="ghcr.io/example/audiofeat:0.1.0-gpu", n_workers=3, gpu_workers=2,
                           env={"AUDIOFEAT_X": "1"},
                           resources={"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}})
    kwargs = _opened(cluster, kube)
    spec = kwargs["custom_cluster_spec"]
    assert spec["metadata"]["name"] == kwargs["name"]
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 3
    container = worker["spec"]["containers"][0]
    assert container["args"][:4] == ["dask", "worker", "--nthreads", "1"]
    assert "--lifetime-restart" in container["args"]  # a pod's worker restarts in place
    assert {**BLAS, "AUDIOFEAT_X": "1"}.items() <= _env(container).items()
    assert container["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}
    assert _container(spec["spec"]["scheduler"]["spec"], "scheduler")["image"] == container["image"]

    group = kubernetes_gpu_group_kwargs(cluster)
    assert group["name"] == "gpu" and group["n_workers"] == 2
    assert group["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert group["worker_command"].split()[:2] == ["dask", "worker"]
    assert kubernetes_gpu_group_kwargs(ClusterConfig(kind="kubernetes", kubernetes={})) is None
    gworker = group["custom_spec"]  # what add_worker_group hands to the operator
    assert gworker["replicas"] == 2
    assert _container(gworker["spec"], "worker")["resources"] == group["resources"]
    assert _container(gworker["spec"], "worker")["args"][:2] == ["dask", "worker"]
    if kube.installed is not None:  # what add_worker_group would have made of the other arguments
        gspec = kube.installed.make_worker_spec(
            image=group["image"], n_workers=group["n_workers"], resources=group["resources"],
            env=group["env"], worker_command=group["worker_command"])
        gcontainer = gspec["spec"]["containers"][0]
        assert gcontainer["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert _option(gcontainer["args"], "--resources") == "GPU=1"
        assert gcontainer["args"][:2] == ["dask", "worker"]


def test_every_container_runs_without_privilege_escalation_or_capabilities(kube):
    """as the bundled manifests (two conditions of the "restricted" Pod Security Standard; the
    operator copies these specs into the pods)"""
    kwargs = _opened(_kube_config(gpu_workers=1), kube)
    spec = kwargs["custom_cluster_spec"]["spec"]
    pods = [spec["scheduler"]["spec"], spec["worker"]["spec"],
            kubernetes_gpu_group_kwargs(_kube_config(gpu_workers=1))["custom_spec"]["spec"]]
    for pod in pods:
        for container in pod["containers"]:
            assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]}}
    for name in ("daskcluster.yaml", "gpu-workergroup.yaml"):  # the same words as the manifests
        assert "allowPrivilegeEscalation: false" in (K8S / name).read_text()


def test_pods_start_the_dask_command_not_the_removed_scripts(kube):
    """distributed >= 2026.6 has no dask-scheduler / dask-worker scripts (dask/distributed#9335)
    and dask-kubernetes 2026.3.0 starts its scheduler with dask-scheduler: the pod could not
    start. What audiofeat hands to KubeCluster names neither."""
    import json

    kwargs = _opened(_kube_config(gpu_workers=1), kube)
    said = json.dumps({k: v for k, v in kwargs.items() if k != "create_mode"}, default=str)
    assert "dask-scheduler" not in said and "dask-worker" not in said
    spec = kwargs["custom_cluster_spec"]["spec"]
    scheduler = _container(spec["scheduler"]["spec"], "scheduler")
    assert scheduler["args"] == ["dask", "scheduler", "--host", "0.0.0.0"]
    assert _container(spec["worker"]["spec"], "worker")["args"][:2] == ["dask", "worker"]
    assert kwargs["worker_command"].split()[:2] == ["dask", "worker"]
    assert json.dumps(kubernetes_gpu_group_kwargs(_kube_config(gpu_workers=1))).count("dask worker") == 1


def test_the_generated_spec_matches_the_operator_crd_schema(kube):
    jsonschema = pytest.importorskip("jsonschema")
    operator = kube.installed or pytest.skip("dask-kubernetes is not installed")
    crd_path = (Path(operator.__file__).parent / "deployment" / "helm" /
                "dask-kubernetes-operator" / "crds" / "daskcluster.yaml")
    if not crd_path.exists():
        pytest.skip(f"no CRD file at {crd_path}")
    definition = yaml.safe_load(crd_path.read_text())
    version = next(v for v in definition["spec"]["versions"] if v["name"] == "v1")
    spec = _opened(_kube_config(resources={"requests": {"cpu": "1"}}), kube)["custom_cluster_spec"]
    jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(spec)


def test_each_run_creates_its_own_cluster(kube):
    """The default name is new each run, never the long-lived `audiofeat` of daskcluster.yaml
    (KubeCluster would connect to that one, ignore this config, and delete it at the end)."""
    long_lived = _one("daskcluster.yaml", "DaskCluster")["metadata"]["name"]
    first, second = (_opened(_kube_config(), kube) for _ in range(2))
    for kwargs in (first, second):
        assert re.fullmatch(r"audiofeat-job-[0-9a-f]{8}", kwargs["name"])
        assert kwargs["custom_cluster_spec"]["metadata"]["name"] == kwargs["name"]
    assert first["name"] != second["name"] and long_lived not in (first["name"], second["name"])
    named = _opened(_kube_config(name="my-run", namespace="audio"), kube)
    assert named["name"] == "my-run" and named["namespace"] == "audio"


def test_a_cluster_the_run_did_not_create_is_never_deleted(kube):
    """CREATE_ONLY: an existing cluster of that name is refused, not connected to; and
    shutdown_on_close resolves to None (KubeCluster makes it True once it has created the
    cluster), not the library's config default, true, which deleted a cluster it had found."""
    kwargs = _opened(_kube_config(name="audiofeat"), kube)
    assert kwargs["create_mode"].name == "CREATE_ONLY"
    assert kwargs["shutdown_on_close"] is None and kwargs["resolved_shutdown_on_close"] is None


@pytest.mark.parametrize("said, expected", [
    ("Cluster audiofeat already exists and create mode is 'CreateMode.CREATE_ONLY'",
     "compute.cluster.kubernetes.name: a Dask cluster 'audiofeat' exists already"),
    ("Unable to find valid credentials",
     "compute.cluster.kind: kubernetes, but no Kubernetes credentials were found here"),
    (KeyError("contexts"),  # a kubeconfig the client cannot read: its own error, one line
     "compute.cluster.kind: kubernetes: the cluster could not be created (KeyError: 'contexts')"),
])
def test_kubecluster_refusals_are_usage_errors(kube, said, expected):
    from jobs.errors import UsageError

    kube.error = said if isinstance(said, Exception) else ValueError(said)
    with pytest.raises(UsageError) as err, open_client(_kube_config(name="audiofeat")):
        pass
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_an_existing_cluster_is_left_alone_by_the_real_kubecluster(monkeypatch, tmp_path):
    """The installed KubeCluster, its Kubernetes objects stood in for: a cluster named
    `audiofeat` exists; the run stops with a usage error, and neither close nor the library's
    exit hook (reap_clusters) deletes that cluster."""
    pytest.importorskip("dask_kubernetes.operator")
    import kr8s
    from dask_kubernetes.operator.kubecluster import kubecluster as kc

    from jobs.errors import UsageError

    deleted = []

    class Missing:
        """A Kubernetes object lookup: none is found."""

        raw: dict = {}

        def __init__(self, name, namespace=None, **kwargs):
            self.name = name

        def __await__(self):
            async def ready():
                return self
            return ready().__await__()

        @classmethod
        async def get(cls, name=None, *args, **kwargs):
            raise kr8s.NotFoundError("stand-in")

    class Cluster(Missing):
        """DaskCluster: `audiofeat` exists (and says when it is deleted)."""

        async def exists(self):
            return self.name == "audiofeat"

        async def delete(self):
            deleted.append(self.name)

        @classmethod
        async def get(cls, name=None, *args, **kwargs):
            if name == "audiofeat":
                return cls(name)
            raise kr8s.NotFoundError("stand-in")

    for name, stand_in in (("DaskCluster", Cluster), ("Pod", Missing), ("Service", Missing),
                           ("DaskWorkerGroup", Missing)):
        monkeypatch.setattr(kc, name, stand_in)
    monkeypatch.setattr(kc.KubeCluster, "_instances", set())  # kept, for the exit hook to see
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    cluster = _kube_config(name="audiofeat", namespace="audio")
    with pytest.raises(UsageError, match="exists already"), open_client(cluster):
        pass
    (made,) = kc.KubeCluster._instances
    assert made.name == "audiofeat" and not made.shutdown_on_close
    kc.reap_clusters()
    assert deleted == []


def test_kubernetes_refusals_come_before_the_output(kube, monkeypatch, tmp_path):
    """No credentials, or TLS: one line, exit status 2, and nothing written (the run used to
    write its plan, then end in a traceback and 'Exception ignored in atexit callback')."""
    from jobs.cluster import check_client_settings
    from jobs.errors import UsageError
    from jobs.extract import run_extract

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "run"
    cfg = parse_config({"input": str(REPO / "data" / "samples"), "out": str(out),
                        "features": {"rms": {}},
                        "compute": {"cluster": {"kind": "kubernetes", "kubernetes": {}}}})
    with pytest.raises(UsageError, match="no Kubernetes credentials were found here"):
        run_extract(cfg)
    assert not out.exists() and kube.calls == []
    # TLS is refused naming where the certificates came from
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    for name in ("ca.pem", "node.pem", "node.key"):
        (tmp_path / name).write_text("x")
    files = [str(tmp_path / n) for n in ("ca.pem", "node.pem", "node.key")]
    from distributed.security import Security  # (security_from would refuse files that are not PEM)

    security = Security(tls_ca_file=files[0], tls_client_cert=files[1], tls_client_key=files[2],
                        require_encryption=True)
    with pytest.raises(UsageError, match=r"^--tls-ca/--tls-cert/--tls-key: TLS is not supported"):
        run_extract(cfg, security=security)
    assert not out.exists()
    tls = ClusterConfig(kind="kubernetes", kubernetes={},
                        tls={"ca_file": files[0], "cert": files[1], "key": files[2]})
    with pytest.raises(UsageError, match=r"^compute.cluster.tls: TLS is not supported"):
        check_client_settings(tls)


# ---------------------------------------------------------------- the image


def test_dockerfile_installs_the_package_with_extras():
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines and "FROM ${PYTHON_IMAGE}" in lines
    assert "ARG VARIANT=cpu" in lines
    assert "libsndfile1" in text
    assert 'pip install $index ".[$extras]"' in text  # the package itself, with its extras
    assert 'cpu) extras="slurm,kubernetes"' in text
    assert 'gpu) extras="gpu,slurm,kubernetes"' in text
    assert "COPY pyproject.toml" in text and "COPY jobs ./jobs" in text
    assert "COPY featurelib ./featurelib" in text
    # torch arrives only through the package's cnn extra (pinned there), never installed apart
    pip_lines = [line for line in lines if "pip install" in line]
    assert not any(re.search(r"\btorch\b", line) for line in pip_lines), pip_lines
    assert "USER 1000:1000" in lines  # not root
    for name, value in BLAS.items():
        assert f"{name}={value}" in text


def test_pyproject_pins_torch_in_the_cnn_extra():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert extras["cnn"] == ["torch==2.13.0"]
    assert {"gpu", "slurm", "kubernetes"} <= set(extras)
    assert not any(d.startswith("torch") for d in project["dependencies"])
