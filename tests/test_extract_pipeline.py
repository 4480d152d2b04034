"""audiofeat run: every stage the config names, in order, as the commands a user would type."""

from __future__ import annotations

import yaml
from test_extract_support import copy_samples, run_cli


def _config(tmp_path, **extra):
    copy_samples(tmp_path / "corpus", 60)
    cfg = {
        "input": "corpus", "out": "out",  # relative: resolved against the config's folder
        "audio": {"sr": 8000}, "frames": {"n_fft": 256, "hop_length": 80},
        "features": {"mfcc": {"n_mfcc": 13, "n_mels": 32}, "rms": {}},
        "compute": {"workers": 2},
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_extract_train_score_in_order(tmp_path):
    cfg = _config(tmp_path, labels={"source": "regex", "pattern": r"^(?P<label>\d)_(?P<speaker>[a-z]+)_"},
                  split={"method": "group", "group": "speaker"}, train={"model": "baseline"}, score={})
    result = run_cli("run", cfg)
    assert result.returncode == 0, result.stderr
    order = [line.split()[-1] for line in result.stderr.splitlines() if line.startswith("run: stage")]
    assert order == ["extract", "train", "score"]
    out = tmp_path / "out"
    for name in ("features.zarr", "files.parquet", "manifest.json", "models", "scores/segments.parquet"):
        assert (out / name).exists(), name
    again = run_cli("run", cfg, "--stages", "extract")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_run_without_train_sections_is_extract_only(tmp_path):
    cfg = _config(tmp_path)
    result = run_cli("run", cfg, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("run: stage")] == ["run: stage extract"]
    bad = run_cli("run", cfg, "--stages", "extract,deploy")
    assert bad.returncode == 2 and "deploy" in bad.stderr
