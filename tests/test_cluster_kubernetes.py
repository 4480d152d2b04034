"""cluster/kubernetes manifests and cluster/docker/Dockerfile, offline: structure, the operator's
own CRD schemas (shipped with dask-kubernetes), GPU limits and resources, the DaskJob command, and
what jobs.cluster hands to KubeCluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from cluster_helpers import REPO

from jobs.cluster import ClusterConfig, kubernetes_cluster_kwargs, kubernetes_gpu_group_kwargs
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
    assert int(_option(container["args"], "--nthreads")) >= 1
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


def test_kubernetes_config_to_operator_specs():
    operator = pytest.importorskip("dask_kubernetes.operator")
    cfg = parse_config({"input": "x", "features": {"rms": {}}, "compute": {"cluster": {
        "kind": "kubernetes", "worker_lifetime": "1h",
        "kubernetes": {"image": "ghcr.io/example/audiofeat:0.1.0-gpu", "n_workers": 3,
                       "gpu_workers": 2, "env": {"AUDIOFEAT_X": "1"},
                       "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}}}}})
    cluster = cfg.compute.cluster
    kwargs = kubernetes_cluster_kwargs(cluster)
    spec = operator.make_cluster_spec(
        kwargs["name"], image=kwargs["image"], n_workers=kwargs["n_workers"],
        resources=kwargs["resources"], env=kwargs["env"], worker_command=kwargs["worker_command"])
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 3
    container = worker["spec"]["containers"][0]
    assert container["args"][:4] == ["dask", "worker", "--nthreads", "1"]
    assert "--lifetime-restart" in container["args"]
    assert {**BLAS, "AUDIOFEAT_X": "1"}.items() <= _env(container).items()
    assert container["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}

    group = kubernetes_gpu_group_kwargs(cluster)
    assert group["name"] == "gpu" and group["n_workers"] == 2
    gspec = operator.make_worker_spec(image=group["image"], n_workers=group["n_workers"],
                                      resources=group["resources"], env=group["env"],
                                      worker_command=group["worker_command"])
    gcontainer = gspec["spec"]["containers"][0]
    assert gcontainer["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert _option(gcontainer["args"], "--resources") == "GPU=1"
    assert kubernetes_gpu_group_kwargs(ClusterConfig(kind="kubernetes", kubernetes={})) is None


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
