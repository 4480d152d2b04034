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


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("data", "key", "says"), [
    # a mel norm is what librosa.filters.mel takes: 'slaney', null or a p-norm's p >= 0
    ({"features": {"melspectrogram": {"norm": True}}}, "features.melspectrogram.norm", "'slaney', null"),
    ({"features": {"melspectrogram": {"norm": "bogus"}}}, "features.melspectrogram.norm", "'slaney', null"),
    ({"features": {"melspectrogram": {"norm": -1}}}, "features.melspectrogram.norm", "'slaney', null"),
    ({"features": {"mfcc": {"mel_norm": NAN}}}, "features.mfcc.mel_norm", "finite"),
    ({"features": {"mfcc": {"mel_norm": "l2"}}}, "features.mfcc.mel_norm", "'slaney', null"),
    ({"features": {"spectral_bandwidth": {"norm": 1}}}, "features.spectral_bandwidth.norm", "true or false"),
    ({"features": {"mfcc": {"norm": True}}}, "features.mfcc.norm", "wrong type"),
    # every numeric feature argument is finite, and never a bool
    ({"features": {"melspectrogram": {"db": True, "top_db": NAN}}}, "features.melspectrogram.top_db", "finite"),
    ({"features": {"melspectrogram": {"power": NAN}}}, "features.melspectrogram.power", "finite"),
    ({"features": {"melspectrogram": {"fmin": INF}}}, "features.melspectrogram.fmin", "finite"),
    ({"features": {"mfcc": {"fmax": NAN}}}, "features.mfcc.fmax", "finite"),
    ({"features": {"mfcc": {"lifter": INF}}}, "features.mfcc.lifter", "finite"),
    ({"features": {"mfcc": {"lifter": 10**400}}}, "features.mfcc.lifter", "finite"),
    ({"features": {"mfcc": {"top_db": -INF}}}, "features.mfcc.top_db", "finite"),
    ({"features": {"spectral_flatness": {"amin": NAN}}}, "features.spectral_flatness.amin", "finite"),
    ({"features": {"spectral_bandwidth": {"p": INF}}}, "features.spectral_bandwidth.p", "finite"),
    ({"features": {"spectral_bandwidth": {"p": True}}}, "features.spectral_bandwidth.p", "wrong type"),
    ({"features": {"spectral_rolloff": {"roll_percent": NAN}}}, "features.spectral_rolloff.roll_percent", "finite"),
    ({"features": {"band_energy_ratio": {"split_frequency": NAN}}},
     "features.band_energy_ratio.split_frequency", "finite"),
    ({"features": {"zero_crossing_rate": {"threshold": INF}}}, "features.zero_crossing_rate.threshold", "finite"),
    ({"features": {"mean_frequency": {"power": False}}}, "features.mean_frequency.power", "wrong type"),
    ({"features": {"mfcc": {"n_mfcc": True}}}, "features.mfcc.n_mfcc", "integer"),
    # settings: never a bool for a number, never NaN or infinite
    # a window is checked with the config (a typo with --overwrite once cleared a finished run)
    ({"frames": {"window": "hannn"}}, "frames.window", "invalid window 'hannn'"),
    ({"frames": {"window": "kaiser"}}, "frames.window", "must have parameters"),
    ({"audio": {"sr": True}}, "audio.sr", "integer"),
    ({"frames": {"hop_length": True}}, "frames.hop_length", "integer"),
    ({"compute": {"workers": True}}, "compute.workers", "integer"),
    ({"compute": {"min_batches": False}}, "compute.min_batches", "integer"),
    ({"compute": {"batch_seconds": INF}}, "compute.batch_seconds", "finite"),
    ({"compute": {"batch_seconds": True}}, "compute.batch_seconds", "number"),
    ({"compute": {"block_seconds": INF}}, "compute.block_seconds", "finite"),
    ({"compute": {"block_seconds": "inf"}}, "compute.block_seconds", "finite"),
    ({"compute": {"hang_seconds": INF}}, "compute.hang_seconds", "finite"),
    ({"compute": {"chunk_frames": True}}, "compute.chunk_frames", "integer"),
    ({"compute": {"cluster": {"kind": "kubernetes", "kubernetes": {"n_workers": True}}}},
     "compute.cluster.kubernetes.n_workers", "integer"),
    ({"segments": {"length_s": INF}}, "segments.length_s", "finite"),
    ({"split": {"test_fraction": True}}, "split.test_fraction", "number"),
    ({"train": {"learning_rate": NAN}}, "train.learning_rate", "finite"),
    ({"train": {"cnn_widths": [16, True, 64]}}, "train.cnn_widths.1", "integer"),
    ({"score": {"threshold": NAN}}, "score.threshold", "finite"),
    # bounds on what would exhaust memory or overflow a timer, each saying the bound
    ({"audio": {"sr": 10**9}}, "audio.sr", "at most 1000000"),
    ({"frames": {"n_fft": 2**20}}, "frames.n_fft", "at most 65536"),
    ({"compute": {"hang_seconds": 1e10}}, "compute.hang_seconds", "at most 604800"),
    ({"compute": {"chunk_frames": 10**10}}, "compute.chunk_frames", "at most 65536"),
    ({"segments": {"length_s": 1e9, "hop_s": 1.0}}, "segments.length_s", "less than or equal to 3600"),
    ({"compute": {"chunk_frames": 65536}, "frames": {"n_fft": 4096},
      "features": {"melspectrogram": {"n_mels": 2000}}}, "compute.chunk_frames", "at most 256 MiB"),
    ({"frames": {"n_fft": 65536}, "features": {"melspectrogram": {"n_mels": 4096}}},
     "features.melspectrogram.n_mels", "at most 256 MiB"),
])
def test_impossible_values_name_the_key(data, key, says):
    """NaN, infinities, true/false for a number and values that run out of memory later stop here."""
    with pytest.raises(UsageError) as info:
        parse_config(data)
    message = str(info.value)
    assert message.startswith(f"{key}: "), message
    assert says in message and "\n" not in message, message


@pytest.mark.parametrize("data", [
    {"features": {"melspectrogram": {"norm": None, "fmax": None, "db": True, "top_db": None}}},
    {"features": {"melspectrogram": {"norm": 0}, "mfcc": {"mel_norm": 2.5}}},
    {"features": {"spectral_bandwidth": {"norm": False, "p": 1}}},
    {"audio": {"sr": 44100}, "compute": {"chunk_frames": 65536, "hang_seconds": 604800,
                                         "batch_seconds": 1e6, "block_seconds": 1e6}},
    {"frames": {"n_fft": 65536, "hop_length": 512}, "features": {"melspectrogram": {"n_mels": 1000}}},
])
def test_valid_edges_pass(data):
    parse_config(data)


@pytest.mark.parametrize(("line", "key"), [
    ("features: {melspectrogram: {norm: true}}", "features.melspectrogram.norm"),
    ("features: {melspectrogram: {norm: bogus}}", "features.melspectrogram.norm"),
    ("features: {mfcc: {mel_norm: .nan}}", "features.mfcc.mel_norm"),
    ("features: {melspectrogram: {db: true, top_db: .nan}}", "features.melspectrogram.top_db"),
    ("compute: {batch_seconds: .inf}", "compute.batch_seconds"),
    ("compute: {hang_seconds: .inf}", "compute.hang_seconds"),
    ("compute: {chunk_frames: 10000000000}", "compute.chunk_frames"),
    ("audio: {sr: true}", "audio.sr"),
])
def test_cli_stops_with_status_2_naming_the_key(tmp_path, capsys, line, key):
    """Through the command: exit status 2 and one line naming the key, before any work."""
    from jobs.cli import main

    config = tmp_path / "job.yaml"
    config.write_text(f"input: {tmp_path}\nout: {tmp_path / 'out'}\n{line}\n")
    assert main(["extract", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"audiofeat extract: error: {config}: {key}: "), err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


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
    # one line that still says where: line and column of the problem, and that line's text
    bad.write_text("input: [../corpus\nout: runs/x\n")
    with pytest.raises(UsageError) as caught:
        load_config(bad)
    assert str(caught.value) == (f"{bad}: not valid YAML: line 2, column 4: expected ',' or ']', "
                                 "but got ':' (parsing a flow sequence from line 1, column 8); "
                                 "the line reads 'out: runs/x'")
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


@pytest.mark.parametrize(("command", "expected"), [
    # a config file that is not UTF-8 text, or is a folder
    (lambda tmp: (tmp / "latin1.yaml").write_bytes(b"input: caf\xe9\n") and ["extract", str(tmp / "latin1.yaml")],
     "not UTF-8 text"),
    (lambda tmp: ["extract", str(tmp)], "is a folder"),
    (lambda tmp: (tmp / "dup.yaml").write_text(f"input: {tmp}\nfeatures: {{mfcc: {{}}}}\nfeatures: {{rms: {{}}}}\n")
     and ["extract", str(tmp / "dup.yaml")], "the key 'features' is given twice"),
    # empty paths, as an unset shell variable gives them
    (lambda tmp: (tmp / "j.yaml").write_text(f"input: {tmp}\nout: ''\n") and ["extract", str(tmp / "j.yaml")],
     "out: an empty path"),
    (lambda tmp: (tmp / "j.yaml").write_text(f"input: {tmp}\n") and ["extract", str(tmp / "j.yaml"), "--out", ""],
     "--out: an empty path"),
    (lambda tmp: (tmp / "j.yaml").write_text(f"input: {tmp}\n")
     and ["extract", str(tmp / "j.yaml"), "--out", str(tmp / "out"), "--input", ""], "--input: an empty path"),
    # what the cluster would refuse, before the output folder is made
    (lambda tmp: (tmp / "j.yaml").write_text(f"input: {tmp}\n")
     and ["extract", str(tmp / "j.yaml"), "--out", str(tmp / "out"), "--scheduler", "nonsense"],
     "scheduler address 'nonsense': not a valid address"),
    (lambda tmp: (tmp / "j.yaml").write_text(f"input: {tmp}\n")
     and ["extract", str(tmp / "j.yaml"), "--out", str(tmp / "out"), "--scheduler", "foo:bar"],
     "scheduler address 'foo:bar': not a valid address (its port 'bar' is not a number)"),
    (lambda tmp: (tmp / "j.yaml").write_text(f"input: {tmp}\n")
     and ["extract", str(tmp / "j.yaml"), "--out", str(tmp / "out"), "--workers", "100000"],
     "compute.workers: 100000 local worker processes"),
])
def test_bad_files_paths_and_addresses_stop_with_status_2(tmp_path, capsys, command, expected):
    from jobs.cli import main

    assert main(command(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("stages", "expected"), [
    ("score,train,extract", ["extract", "train", "score"]),
    ("extract,extract", ["extract"]),
    ("score", ["score"]),
])
def test_run_takes_each_stage_once_in_the_pipeline_s_order(tmp_path, monkeypatch, stages, expected):
    import argparse

    import jobs.pipeline as pipeline

    ran = []

    class Stage:
        @staticmethod
        def main(args):
            ran.append(args.name)
            return 0

    def fake_parser(name):
        parser = argparse.ArgumentParser()
        parser.set_defaults(name=name)
        return Stage, parser

    monkeypatch.setattr(pipeline, "_stage_parser", fake_parser)
    monkeypatch.setattr(pipeline, "stage_argv", lambda parser, args: [])
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {tmp_path}\n")
    args = argparse.Namespace(config=str(config), stages=stages)
    assert pipeline.main(args) == 0 and ran == expected
    with pytest.raises(UsageError, match="no stage named"):
        pipeline.main(argparse.Namespace(config=str(config), stages=","))
    with pytest.raises(UsageError, match="no stage named"):  # (it ran the config's stages)
        pipeline.main(argparse.Namespace(config=str(config), stages=""))
    with pytest.raises(UsageError, match="stages"):
        parse_config({"stages": []})


def test_every_command_s_help_lists_the_exit_statuses(capsys):
    from jobs.cli import COMMANDS, main

    for command in [None, *COMMANDS]:
        with pytest.raises(SystemExit) as stop:
            main(["--help"] if command is None else [command, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert "exit status:" in text and "  2    bad usage" in text, command
        if command in (None, "extract", "run"):
            assert "3    the output could not be written" in text and "rerun goes on" in text
        else:  # each says what its own statuses mean (inspect/plot/query have no OUT to resume)
            assert "rerun goes on" not in text and "failures.parquet" not in text, command


@pytest.mark.parametrize("module", ["extract", "pipeline"])
def test_input_takes_several_paths_after_one_flag_or_repeated(module):
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"jobs.{module}").add_arguments(parser)
    assert parser.parse_args(["c.yaml", "--input", "a", "b", "--input", "c"]).input == ["a", "b", "c"]
    assert parser.parse_args(["c.yaml"]).input is None


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "seed", -1, "train.seed: Input should be greater than or equal to 0"),
    ("train", "seed", 2**40, "train.seed: Input should be less than"),
    ("split", "seed", -5, "split.seed: Input should be greater than or equal to 0"),
    ("train", "hidden_units", 10**12, "train.hidden_units: Input should be less than or equal to 65536"),
    ("train", "learning_rate", 1e300, "train.learning_rate: Input should be less than or equal to 10"),
])
def test_training_values_that_failed_inside_the_fit_are_refused(section, key, value, message):
    """scikit-learn's and NumPy's errors (negative or huge seeds, a 1.1 PiB hidden layer, a
    learning rate that overflows the weights) came as tracebacks from train."""
    with pytest.raises(UsageError, match=message):
        parse_config({"input": "x", "features": {"rms": {}}, section: {key: value}})


def test_an_out_with_a_nul_character_is_refused():
    with pytest.raises(UsageError, match="out: holds a NUL character"):
        parse_config({"input": "x", "out": "a\x00b", "features": {"rms": {}}})


def test_a_config_edited_after_loading_is_checked_again_by_the_job(tmp_path):
    """A notebook sets fields on a loaded config: the jobs validate them as the YAML's (a
    negative worker count waited for workers forever; an unknown feature failed every file)."""
    from pathlib import Path

    from jobs.config import as_job_config
    from jobs.extract import run_extract
    from jobs.train import run_train

    example = Path(__file__).resolve().parents[1] / "configs" / "example.yaml"
    edits = [(lambda c: setattr(c.compute, "workers", -2), "compute.workers"),
             (lambda c: setattr(c.compute, "workers", 0), "compute.workers"),
             (lambda c: setattr(c, "features", {"mfccc": {}}), "features.mfccc"),
             (lambda c: setattr(c, "features", {"mfcc": {"n_mfcc": "twenty"}}), "features.mfcc.n_mfcc"),
             (lambda c: setattr(c.frames, "hop_length", 4096), "frames.hop_length")]
    for edit, key in edits:
        cfg = load_config(example)
        cfg.out = str(tmp_path / "run")
        edit(cfg)
        with pytest.raises(UsageError, match=key.replace(".", r"\.")):
            run_extract(cfg)
        with pytest.raises(UsageError, match=key.replace(".", r"\.")):
            run_train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # the forms a caller has at hand: a YAML path (str or Path), a mapping, Paths inside it
    loaded = load_config(example)
    assert as_job_config(str(example)) == loaded and as_job_config(example) == loaded
    assert as_job_config(loaded) == loaded
    mapping = as_job_config({"input": [tmp_path / "a", tmp_path / "b"], "out": tmp_path / "run"})
    assert mapping.input == [str(tmp_path / "a"), str(tmp_path / "b")] and mapping.out == str(tmp_path / "run")
    with pytest.raises(TypeError, match="JobConfig"):
        as_job_config(42)
    options = parse_config({"out": "s3://bucket/run", "out_storage_options": {"key": "secret"}})
    assert as_job_config(options).out_storage_options == {"key": "secret"}  # not the masked dump


def test_score_model_in_a_config_file_is_relative_to_its_folder_for_every_caller(tmp_path):
    """Like every path in the file: for the CLI, and for run_score(PATH) from another directory;
    a bare object with the sections score reads passes through (benchmarks/fsdd_eval.py)."""
    import types

    from jobs.config import as_job_config

    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "job.yaml"
    path.write_text("score: {model: models/default}\n")
    assert load_config(path).score.model == str(tmp_path / "conf" / "models" / "default")
    path.write_text("score: {model: 's3://bucket/models/default'}\n")  # a URL stays one
    assert load_config(path).score.model == "s3://bucket/models/default"
    bare = types.SimpleNamespace(score=None, train=None, compute=None, labels=None)
    assert as_job_config(bare, strict=False) is bare
    with pytest.raises(TypeError):
        as_job_config(bare)
    for wrong in (None, 42, ["configs/example.yaml"]):  # not a config, even for train and score
        with pytest.raises(TypeError, match="JobConfig"):
            as_job_config(wrong, strict=False)
