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
