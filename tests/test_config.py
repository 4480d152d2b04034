"""The job config: validation messages name the key; defaults, paths and the hash."""

from __future__ import annotations

import pytest

from jobs.config import config_hash, feature_config, load_config, parse_config
from jobs.errors import UsageError


@pytest.mark.parametrize(("data", "key"), [
    ({"bogus": 1}, "bogus"),
    ({"audio": {"sr": 16000, "rate": 8000}}, "audio.rate"),
    ({"audio": {"sr": None}}, "audio.sr"),
    ({"audio": {"sr": -5}}, "audio.sr"),
    ({"audio": {"mono": False}}, "audio.mono"),
    ({"frames": {"n_fft": 256, "hop_length": 512}}, "frames.hop_length"),
    ({"frames": {"n_fft": 512, "win_length": 1024}}, "frames.win_length"),
    ({"frames": {"n_fft": "big"}}, "frames.n_fft"),
    ({"features": {"mfcc": {"n_mfcc": 50, "n_mels": 40}}}, "features.mfcc.n_mfcc"),
    ({"features": {"melspectrogram": {"n_mels": 300}}}, "features.melspectrogram.n_mels"),
    ({"features": {"mfcc": {"n_mel": 40}}}, "features.mfcc.n_mel"),
    ({"features": {"mfcc": {"n_mfcc": 2.5}}}, "features.mfcc.n_mfcc"),
    ({"features": {"chroma": {}}}, "features.chroma"),
    ({"features": {"spectral_rolloff": {"roll_percent": 1.5}}}, "features.spectral_rolloff.roll_percent"),
    ({"features": {"band_energy_ratio": {"split_frequency": 9000}}}, "features.band_energy_ratio.split_frequency"),
    ({"features": {"mfcc": {"fmax": 12000}}}, "features.mfcc.fmax"),
    ({"features": {}}, "features"),
    ({"compute": {"device": "tpu"}}, "compute.device"),
    ({"compute": {"workers": 0}}, "compute.workers"),
    ({"compute": {"batch_seconds": 0}}, "compute.batch_seconds"),
    ({"stages": ["extract", "deploy"]}, "stages"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"input": []}, "input"),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(UsageError) as info:
        parse_config(data)
    message = str(info.value)
    assert message.startswith(key), message
    assert "\n" not in message


def test_every_bad_feature_is_named_at_once():
    """Three wrong features: one message names the three keys, not the first only."""
    with pytest.raises(UsageError) as info:
        parse_config({"features": {"mfcc": {"n_mels": 400}, "rms": {},
                                   "spectral_rolloff": {"roll_percent": 1.5}, "chroma": {}}})
    message = str(info.value)
    assert message.startswith("features.mfcc.n_mels: n_mels=400 exceeds"), message
    for key in ("features.spectral_rolloff.roll_percent: must lie in (0, 1)",
                "features.chroma: unknown feature"):
        assert f"; {key}" in message, message
    assert "features.rms" not in message and "\n" not in message


def test_defaults_and_normalised_features():
    cfg = parse_config({"features": {"mfcc": None, "rms": {}}})
    assert cfg.audio.sr == 16000 and cfg.audio.mono
    assert cfg.compute.device == "cpu"
    assert cfg.features["mfcc"]["n_mfcc"] == 20 and cfg.features["mfcc"]["top_db"] == 80.0
    assert cfg.stage_list == ["extract"]


def test_stages_default_follow_the_sections():
    cfg = parse_config({"train": {}, "score": {}})
    assert cfg.stage_list == ["extract", "train", "score"]
    assert parse_config({"stages": ["extract"], "train": {}}).stage_list == ["extract"]


def test_hash_ignores_spelled_out_defaults_and_layout_but_not_features():
    a = parse_config({"features": {"mfcc": {}}})
    b = parse_config({"features": {"mfcc": {"n_mfcc": 20, "top_db": 80}},
                      "compute": {"batch_seconds": 10, "workers": 1}})
    c = parse_config({"features": {"mfcc": {"n_mfcc": 13}}})
    d = parse_config({"features": {"mfcc": {}}, "audio": {"sr": 8000}})
    h = [config_hash(feature_config(x)) for x in (a, b, c, d)]
    assert h[0] == h[1]
    assert len(set(h[1:])) == 3 and len(h[0]) == 64


def test_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "cfgs").mkdir()
    path = tmp_path / "cfgs" / "job.yaml"
    path.write_text("input: [../data, s3://bucket/prefix, /abs/x.wav]\nout: ../runs/x\n")
    cfg = load_config(path)
    assert cfg.input == [str(tmp_path / "data"), "s3://bucket/prefix", "/abs/x.wav"]
    assert cfg.out == str(tmp_path / "runs" / "x")


def test_yaml_errors_and_missing_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(UsageError, match="mapping"):
        load_config(bad)


def test_shipped_configs_are_valid():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    example = load_config(repo / "configs" / "example.yaml")
    assert example.input == str(repo / "data" / "samples")
    assert example.out == str(repo / "runs" / "example")
    fsdd = load_config(repo / "configs" / "fsdd.yaml")
    assert fsdd.input.endswith("shared/data/fsdd/recordings")
