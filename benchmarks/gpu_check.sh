#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go (a GPU machine is lent for minutes, not hours):
#   bash benchmarks/gpu_check.sh FSDD_RECORDINGS_DIR OUT_DIR
# 1. featurelib's parity tests on CuPy (tests/test_featurelib_parity.py, the "cupy" namespace);
# 2. the extract job with compute.device: cuda (its store equals the CPU store) and the cluster's
#    GPU checks;
# 3. benchmarks/cupy_bench.py (featurelib on CuPy against NumPy and librosa);
# 4. `audiofeat extract` on the FSDD recordings with device cpu and cuda (twice: the first run
#    compiles CuPy's kernels), whole commands timed;
# 5. the same on 2 hours of generated 44.1 kHz recordings (6 files of 20 min) with long-signal
#    settings (n_fft 2048, hop 512, 128 mels), where the DSP weighs more than the decoding.
# Each step writes its log into OUT_DIR as it goes and has its own time limit, so a slow step
# leaves the others' results.
set -u
fsdd=${1:?FSDD recordings folder}
out=${2:?output folder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
xdist=""
$py -c "import xdist" 2>/dev/null && xdist="-n ${XDIST:-8}"

nvidia-smi -L 2>&1 | tee "$out/gpu.txt"
$py -c "import cupy, numpy, librosa, dask, zarr; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'librosa', librosa.__version__, 'dask', dask.__version__, 'zarr', zarr.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())" 2>&1 | tee -a "$out/gpu.txt"

echo "== 1. parity on CuPy"
timeout "${PARITY_S:-200}" $py -m pytest -q -p no:cacheprovider $xdist -rfE --maxfail=40 \
    tests/test_featurelib_parity.py -k cupy > "$out/parity_cupy.log" 2>&1
echo "rc=$?" >> "$out/parity_cupy.log"; tail -n 4 "$out/parity_cupy.log"

echo "== 2. extract on cuda"
timeout "${EXTRACT_S:-150}" $py -m pytest -q -p no:cacheprovider -rfEs \
    tests/test_extract_cuda.py tests/test_cluster.py -k "cuda or gpu or GPU" > "$out/extract_cuda.log" 2>&1
echo "rc=$?" >> "$out/extract_cuda.log"; tail -n 4 "$out/extract_cuda.log"

echo "== 3. cupy_bench"
timeout "${BENCH_S:-150}" $py benchmarks/cupy_bench.py --fsdd "$fsdd" --repeat 2 ${BENCH_ARGS:-} > "$out/cupy_bench.txt" 2>&1
echo "rc=$?" >> "$out/cupy_bench.txt"; cat "$out/cupy_bench.txt"

echo "== 4. audiofeat extract on FSDD, cpu and cuda"
job() {  # job NAME CONFIG INPUT: one whole `audiofeat extract`, timed, into /tmp/run-NAME
    rm -rf "/tmp/run-$1"; start=$(date +%s%N)
    timeout "${JOB_S:-90}" $py -m jobs extract "$2" --input "$3" --out "/tmp/run-$1" \
        --workers "${WORKERS:-4}" > "$out/job_$1.log" 2>&1
    rc=$?
    echo "extract $1 workers=${WORKERS:-4}: rc=$rc, $(( ($(date +%s%N) - start) / 1000000 )) ms; $(tail -n 1 "$out/job_$1.log")" | tee -a "$out/job_times.txt"
}
same() {  # same A B: the largest difference between two runs' stores, per feature
    $py - "$1" "$2" <<'PY' 2>&1 | tee -a "$out/job_times.txt"
import sys, numpy as np, zarr
a, b = (zarr.open_group(f"/tmp/run-{d}/features.zarr", mode="r") for d in sys.argv[1:3])
for name in sorted(a.array_keys()):
    x, y = a[name][:], b[name][:]
    print(f"  {name}: shape {x.shape} vs {y.shape}, max |{sys.argv[2]}-{sys.argv[1]}|/peak "
          f"{float(np.abs(x - y).max()) / max(float(np.abs(x).max()), 1e-12):.1e}")
PY
}
for device in cpu cuda; do
    sed "s/device: cpu/device: $device/" configs/fsdd.yaml > "/tmp/fsdd-$device.yaml"
done
job fsdd-cpu /tmp/fsdd-cpu.yaml "$fsdd"
job fsdd-cuda /tmp/fsdd-cuda.yaml "$fsdd"
job fsdd-cuda-again /tmp/fsdd-cuda.yaml "$fsdd"
same fsdd-cpu fsdd-cuda

echo "== 5. audiofeat extract on 2 h of 44.1 kHz audio, cpu and cuda"
mkdir -p /tmp/long
$py - <<'PY'
import numpy as np, soundfile as sf
sr, n = 44100, 20 * 60 * 44100
t = np.arange(n) / sr
for k in range(6):
    rng = np.random.default_rng(k)
    y = 0.3 * np.sin(2 * np.pi * (110 * (k + 1)) * t * (1 + 0.1 * np.sin(2 * np.pi * 0.05 * t)))
    sf.write(f"/tmp/long/long{k}.wav", (y + 0.05 * rng.standard_normal(n)).astype(np.float32), sr, subtype="FLOAT")
PY
for device in cpu cuda; do
    cat > "/tmp/long-$device.yaml" <<YAML
input: /tmp/long
out: /tmp/run-long
audio: {sr: 44100, mono: true}
frames: {n_fft: 2048, hop_length: 512}
features:
  mfcc: {n_mfcc: 20, n_mels: 128}
  melspectrogram: {n_mels: 128, db: true}
  rms: {}
  zero_crossing_rate: {}
  spectral_centroid: {}
  spectral_bandwidth: {}
  spectral_rolloff: {}
compute: {device: $device, workers: 4, batch_seconds: 600}
YAML
done
job long-cpu /tmp/long-cpu.yaml /tmp/long
job long-cuda /tmp/long-cuda.yaml /tmp/long
same long-cpu long-cuda
