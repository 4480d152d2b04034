"""Build a run directory exactly per docs/architecture.md from librosa features.

Used by the train/score tests (and the FSDD benchmark when ``audiofeat extract`` is not
available) so that training and scoring can be tested on a real store of real audio features
without depending on the extract stage.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE_CONFIG = {
    "audio": {"sr": 8000},
    "frames": {"n_fft": 256, "hop_length": 80},
    "features": {
        "melspectrogram": {"n_mels": 40},
        "mfcc": {"n_mfcc": 20, "n_mels": 40},
        "rms": {},
        "zero_crossing_rate": {},
        "spectral_centroid": {},
    },
}


def store_feature_config(sections: dict | None = None) -> tuple[dict, str]:
    """(feature_config, config_hash) exactly as ``audiofeat extract`` records them."""
    from jobs.config import config_hash, feature_config, parse_config

    fc = feature_config(parse_config(sections or SAMPLE_CONFIG))
    return fc, config_hash(fc)


def _features(path: Path, feature_config: dict) -> dict[str, np.ndarray]:
    import librosa

    sr = feature_config["sr"]
    n_fft = feature_config["n_fft"]
    hop = feature_config["hop_length"]
    spec = feature_config["features"]
    y, _ = librosa.load(path, sr=sr, mono=True)
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=spec["melspectrogram"]["n_mels"])
    out = {"melspectrogram": mel}
    if "mfcc" in spec:
        out["mfcc"] = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=spec["mfcc"]["n_mfcc"])
    if "rms" in spec:
        out["rms"] = librosa.feature.rms(S=np.sqrt(power), frame_length=n_fft, hop_length=hop)
    if "zero_crossing_rate" in spec:
        out["zero_crossing_rate"] = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)
    if "spectral_centroid" in spec:
        out["spectral_centroid"] = librosa.feature.spectral_centroid(S=np.sqrt(power), sr=sr)
    return {name: np.ascontiguousarray(v.T, dtype=np.float32) for name, v in out.items()}


def build_store(audio_paths, out_dir, sections: dict | None = None, chunk_frames: int = 4096) -> Path:
    """Write ``out_dir/features.zarr`` and ``out_dir/files.parquet`` for ``audio_paths``, with
    the features of ``sections`` (``audio``/``frames``/``features`` config sections; default
    :data:`SAMPLE_CONFIG`: melspectrogram, mfcc, rms, zero_crossing_rate, spectral_centroid)."""
    import soundfile as sf
    import zarr

    feature_config, hash_ = store_feature_config(sections)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_file = []
    rows = []
    start = 0
    for path in sorted(Path(p).resolve() for p in audio_paths):
        feats = _features(path, feature_config)
        n = next(iter(feats.values())).shape[0]
        info = sf.info(str(path))
        row = {
            "file_id": hashlib.sha1(str(path).encode()).hexdigest()[:16],
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "format": info.format,
            "subtype": info.subtype,
            "sample_rate": info.samplerate,
            "channels": info.channels,
            "duration_s": info.duration,
            "n_frames": n,
            "frame_start": start,
            "frame_stop": start + n,
        }
        for name, v in feats.items():
            if v.shape[1] == 1:
                row[f"{name}_mean"], row[f"{name}_std"] = float(v.mean()), float(v.std())
            else:
                for i in range(v.shape[1]):
                    row[f"{name}_mean_{i}"] = float(v[:, i].mean())
                    row[f"{name}_std_{i}"] = float(v[:, i].std())
        rows.append(row)
        per_file.append(feats)
        start += n
    group = zarr.open_group(str(out_dir / "features.zarr"), mode="w", zarr_format=3)
    dims = {}
    for name in per_file[0]:
        data = np.concatenate([f[name] for f in per_file], axis=0)
        dims[name] = int(data.shape[1])
        arr = group.create_array(name, shape=data.shape, dtype="float32", chunks=(chunk_frames, data.shape[1]))
        arr[:] = data
    sr, hop = feature_config["sr"], feature_config["hop_length"]
    group.attrs.update(
        {
            "feature_config": feature_config,
            "config_hash": hash_,
            "frame_rate_hz": sr / hop,
            "dims": dims,
            "audiofeat_version": "0.1.0",
        }
    )
    pd.DataFrame(rows).to_parquet(out_dir / "files.parquet", index=False)
    return out_dir
