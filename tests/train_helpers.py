"""Shared set-up for the train/score tests: one real ``audiofeat extract`` run of the bundled
sample (120 FSDD clips), made once per test process and copied where a test changes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from jobs.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
FSDD_PATTERN = r"(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav"


def sample_config(**sections) -> dict:
    """The bundled sample's job config; keyword arguments replace whole sections."""
    config = {
        "input": str(SAMPLES),
        "audio": {"sr": 8000},
        "frames": {"n_fft": 256, "hop_length": 80},
        "features": {
            "mfcc": {"n_mfcc": 20, "n_mels": 40},
            "melspectrogram": {"n_mels": 40},
            "rms": {},
            "zero_crossing_rate": {},
            "spectral_centroid": {},
        },
        "compute": {"workers": 1},
        "labels": {"source": "regex", "pattern": FSDD_PATTERN},
        # the sample has recording index 3 (test) and 30 (train) of every digit and speaker
        "split": {"method": "explicit", "group": "index", "test_values": ["3"]},
        "segments": {"length_s": 1.0, "hop_s": 0.5},
        "train": {"model": "baseline", "epochs": 30},
        "score": {"threshold": 0.5},
    }
    config.update(sections)
    return {k: v for k, v in config.items() if v is not None}


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sample_config(**sections), sort_keys=False))
    return path


_CACHE: dict[str, Path] = {}


def extracted_run(tmp_path_factory) -> Path:
    """A run directory holding the sample's feature store, made by ``audiofeat extract``."""
    if "run" not in _CACHE:
        root = tmp_path_factory.mktemp("sample-run")
        config = write_config(root / "job.yaml")
        out = root / "run"
        assert cli_main(["extract", str(config), "--out", str(out), "--workers", "1"]) == 0
        _CACHE["run"] = out
    return _CACHE["run"]


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run directory (for tests that train or score into it)."""
    shutil.copytree(run, dest)
    return dest
