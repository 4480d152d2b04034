"""compute.device: cuda runs featurelib on CuPy inside workers with the Dask resource GPU.

Skipped without CuPy and a CUDA device; on a GPU machine the store must equal the CPU store.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_extract_support import copy_samples, read_tables, run_cli, write_config

cupy = pytest.importorskip("cupy")
try:
    HAS_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # noqa: BLE001 - no driver, no device
    HAS_GPU = False

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")]

FEATURES = {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "melspectrogram": {"n_mels": 32, "db": True},
            "rms": {}, "zero_crossing_rate": {}, "spectral_centroid": {}, "spectral_bandwidth": {}}


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
