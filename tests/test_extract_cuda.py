"""compute.device: cuda runs featurelib on CuPy inside workers with the Dask resource GPU.

On a GPU machine the store must equal the CPU store (skipped elsewhere); without one, ``cuda``
is refused with exit 2 and ``auto`` runs on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_extract_support import copy_samples, read_tables, run_cli, write_config

from jobs.cluster import gpu_available

HAS_GPU = gpu_available()

FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "melspectrogram": {"n_mels": 32, "db": True},
            "rms": {}, "zero_crossing_rate": {}, "spectral_centroid": {}, "spectral_bandwidth": {}}


@pytest.mark.skipif(HAS_GPU, reason="checks the machine without a GPU")
def test_without_a_gpu_cuda_is_refused_and_auto_runs_on_cpu(tmp_path):
    copy_samples(tmp_path / "corpus", 4)
    cfg = write_config(tmp_path / "cuda.yaml", input=str(tmp_path / "corpus"), out=tmp_path / "a",
                       features={"rms": {}}, compute={"device": "cuda", "workers": 1})
    result = run_cli("extract", cfg)
    assert result.returncode == 2 and "compute.device: cuda" in result.stderr
    cfg = write_config(tmp_path / "auto.yaml", input=str(tmp_path / "corpus"), out=tmp_path / "b",
                       features={"rms": {}}, compute={"device": "auto", "workers": 1})
    assert run_cli("extract", cfg).returncode == 0


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU and CuPy")
def test_cuda_store_equals_cpu_store(tmp_path):
    import zarr

    copy_samples(tmp_path / "corpus", 40)
    outs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        cfg = write_config(tmp_path / f"{device}.yaml", input=str(tmp_path / "corpus"), out=out,
                           features=FEATURES, compute={"device": device, "workers": 1})
        result = run_cli("extract", cfg)
        assert result.returncode == 0, result.stderr
        outs[device] = out
    cpu_files, _ = read_tables(outs["cpu"])
    gpu_files, _ = read_tables(outs["cuda"])
    assert cpu_files.column("path").equals(gpu_files.column("path"))
    a = zarr.open_group(str(outs["cpu"] / "features.zarr"), mode="r")
    b = zarr.open_group(str(outs["cuda"] / "features.zarr"), mode="r")
    for name in FEATURES:
        x, y = a[name][:], b[name][:]
        scale = max(float(np.abs(x).max()), 1e-6)
        assert float(np.abs(x - y).max()) / scale < 1e-3, name


ALL_FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "melspectrogram": {"n_mels": 32, "db": True},
                "rms": {}, "zero_crossing_rate": {}, "spectral_centroid": {}, "spectral_bandwidth": {},
                "spectral_rolloff": {}, "spectral_flatness": {}, "mean_frequency": {},
                "median_frequency": {}, "band_energy_ratio": {}, "amplitude_envelope": {},
                "short_time_energy": {}}


@pytest.mark.parametrize("n_fft, precision", [(512, "auto"), (512, "single"), (4096, "auto"), (512, "double")])
def test_the_job_s_dsp_runs_on_a_strict_array_namespace(n_fft, precision):
    """What the workers run on CuPy, run on array_api_strict (which, like CuPy, refuses NumPy
    operands and has only the array API's functions): every feature equals the NumPy path,
    the deferred (clamped per file) ones too. The bare ``cupy`` module lacks functions the
    job calls (``matrix_transpose``): the job takes array_api_compat's namespace for it."""
    strict = pytest.importorskip("array_api_strict")
    from jobs.compute import FeatureSet, clamped_db_features, compute_segments, segment_buffers
    from jobs.config import feature_config, parse_config

    fc = feature_config(parse_config({"input": "/tmp", "audio": {"sr": 16000}, "features": ALL_FEATURES,
                                      "frames": {"n_fft": n_fft, "hop_length": n_fft // 4,
                                                 "fft_precision": precision}}))
    fs = FeatureSet.from_config(fc)
    rng = np.random.default_rng(0)
    rows = [(0.1 * rng.standard_normal(5000)).astype(np.float32),
            (0.5 * np.sin(2 * np.pi * 440 * np.arange(3000) / 16000)).astype(np.float32)]
    z, e, n_valid = segment_buffers(rows, fs)
    with fs.precision():
        expected = compute_segments(z, e, fs, n_valid=n_valid, xp=np)
        got = compute_segments(z, e, fs, n_valid=n_valid, xp=strict)
        deferred = {}
        compute_segments(z, e, fs, n_valid=n_valid, xp=strict, deferred=deferred)
        clamped = clamped_db_features({k: v[0] for k, v in deferred.items()},
                                      {k: v[1] for k, v in deferred.items()}, fs, xp=strict)
    for name, value in expected.items():
        scale = max(float(np.max(np.abs(value))), 1e-6)
        assert float(np.max(np.abs(np.asarray(got[name]) - value))) / scale < 1e-4, name
    for name, value in clamped.items():
        scale = max(float(np.max(np.abs(expected[name]))), 1e-6)
        assert float(np.max(np.abs(np.asarray(value) - expected[name]))) / scale < 1e-4, name


def test_cuda_namespace_is_array_api_compat_s():
    pytest.importorskip("cupy")
    import array_api_compat.cupy

    from jobs.compute import array_namespace_for

    assert array_namespace_for("cuda") is array_api_compat.cupy


@pytest.mark.parametrize("cluster, expected", [
    ({"kind": "slurm", "slurm": {"cores": 2, "memory": "4GB", "gpus_per_job": 1, "processes": 1}}, "cuda"),
    ({"kind": "slurm", "slurm": {"cores": 2, "memory": "4GB"}}, "cpu"),
    ({"kind": "kubernetes", "kubernetes": {"gpu_workers": 2}}, "cuda"),
    ({"kind": "kubernetes", "kubernetes": {}}, "cpu"),
])
def test_auto_on_a_batch_cluster_follows_the_gpus_its_config_asks_for(cluster, expected):
    """A SLURM or Kubernetes job is started from a login node or a runner pod without a GPU:
    ``auto`` used to look there and run GPU jobs' work on their CPUs without a word."""
    from jobs.config import parse_config
    from jobs.extract import _resolve_device

    cfg = parse_config({"input": "x", "compute": {"device": "auto", "cluster": cluster}})
    assert _resolve_device("auto", cfg.compute.cluster, None) == expected
    assert _resolve_device("cpu", cfg.compute.cluster, None) == "cpu"
