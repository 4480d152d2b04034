"""``audiofeat train`` on a real extract run of the bundled sample: model folder, report, ONNX
round trip, model choice."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from train_helpers import REPO, copy_run, extracted_run, write_config

from jobs.cli import main as cli_main
from jobs.models.onnx_model import make_session, predict_with_session
from jobs.segments import open_run, segment_geometry
from jobs.splits import TRAIN
from jobs.train import read_inputs


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    """A copy of the sample run with a baseline trained by the CLI."""
    root = tmp_path_factory.mktemp("train")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    config = write_config(root / "job.yaml")
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    return run


def test_model_folder_holds_onnx_json_split_and_report(baseline_run):
    folder = baseline_run / "models" / "default"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["confusion.png", "model.json", "model.onnx", "report.json", "report.md", "split.parquet"]
    assert (folder / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((folder / "model.json").read_text())
    store = open_run(baseline_run)
    assert meta["kind"] == "baseline" and meta["classes"] == [str(d) for d in range(10)]
    assert meta["config_hash"] == store.config_hash and meta["feature_config"] == store.feature_config
    assert meta["segments"]["length_frames"] == 100 and meta["segments"]["hop_frames"] == 50
    assert meta["input"]["kind"] == "segment_statistics"
    assert meta["input"]["features"] == ["mfcc", "rms", "spectral_centroid", "zero_crossing_rate"]
    assert meta["split"]["method"] == "explicit" and meta["split"]["test_groups"] == ["3"]
    assert meta["split"]["n_train_files"] == 60 and meta["split"]["n_test_files"] == 60
    assert meta["versions"]["onnxruntime"] and meta["versions"]["scikit-learn"]
    assert len(meta["training"]["history"]) == 30
    assert meta["metrics"]["onnx_max_abs_diff"] < 1e-5
    split = pd.read_parquet(folder / "split.parquet")
    assert len(split) == 120 and set(split["split"]) == {"train", "test"}
    assert (split.loc[split["split"] == "test", "index"] == "3").all()


def test_report_is_an_honest_held_out_evaluation(baseline_run):
    folder = baseline_run / "models" / "default"
    report = json.loads((folder / "report.json").read_text())
    assert report["n_files"] == 60
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 60
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / 60)
    assert report["accuracy"] > 0.6  # 30 files of 10 digits to learn from: well above chance (0.1)
    assert set(report["per_class"]["7"]) == {"precision", "recall", "f1", "support"}
    assert 0 < report["macro_f1"] <= 1
    text = (folder / "report.md").read_text()
    assert "accuracy" in text and "macro F1" in text and "| 9 |" in text


@pytest.mark.parametrize("kind", ["baseline", "cnn"])
def test_inputs_read_in_runs_of_segments_equal_one_read(tmp_path_factory, kind):
    """A long file's segments are read a run of segments at a time (a 3-hour file read whole
    held 260 MB of frames in one task): the same inputs, to the float32 rounding of a std taken
    as mean of squares less squared mean after centring on each read's mean (3e-4 seen)."""
    from jobs.train import _input_spec
    from jobs.train_config import TrainConfig

    store = open_run(extracted_run(tmp_path_factory))
    geometry = segment_geometry(0.2, 0.1, store.frame_rate_hz)  # several segments per file
    spec = _input_spec(kind, store, TrainConfig(), geometry)
    whole, segments = read_inputs(store, store.files, geometry, spec, max_segments=10**9)
    pieces, again = read_inputs(store, store.files, geometry, spec, max_segments=3)
    assert segments.equals(again) and len(segments) > 3 * len(store.files)
    np.testing.assert_allclose(pieces, whole, rtol=1e-3, atol=1e-3)


def _sample_inputs(tmp_path_factory, spec_kind):
    from jobs.train import _input_spec
    from jobs.train_config import TrainConfig

    store = open_run(extracted_run(tmp_path_factory))
    geometry = segment_geometry(1.0, 0.5, store.frame_rate_hz)
    spec = _input_spec(spec_kind, store, TrainConfig(), geometry)
    inputs, segments = read_inputs(store, store.files, geometry, spec, max_segments=50)
    labels = segments["file_id"].map(dict(zip(store.files.file_id, store.files.path))).str.extract(
        r"/(\d)_")[0].astype(int).to_numpy()
    return spec, inputs, labels


def test_baseline_onnx_round_trip(tmp_path_factory):
    from jobs.models.baseline import BaselineSettings, export_baseline, train_baseline

    spec, inputs, labels = _sample_inputs(tmp_path_factory, "baseline")
    assert inputs.shape == (120, 4 * (20 + 1 + 1 + 1) + 20 + 2 * 23)  # mean, std, 4 parts, delta std
    pipeline = train_baseline(inputs, labels, 10, BaselineSettings(epochs=20), log=lambda _: None)
    session = make_session(export_baseline(pipeline, inputs.shape[1]))
    np.testing.assert_allclose(predict_with_session(session, inputs, 10), pipeline.predict_proba(inputs), atol=1e-5)


def test_segment_weights_balance_files_or_classes():
    from jobs.train import segment_weights

    files = ["a", "a", "a", "b"]
    labels = ["x", "x", "y", "y"]
    assert segment_weights(files, labels, "segments") is None
    np.testing.assert_allclose(segment_weights(files, labels, "files"), [2 / 3, 2 / 3, 2 / 3, 2])
    np.testing.assert_allclose(segment_weights(files, labels, "classes"), [1, 1, 1, 1])
    np.testing.assert_allclose(segment_weights(files, ["x", "x", "x", "y"], "classes"), [2 / 3, 2 / 3, 2 / 3, 2])
    assert segment_weights([], [], "files") is None


def test_sample_weights_steer_both_models(tmp_path_factory):
    """A class whose segments weigh (almost) nothing is hardly learnt: the weights reach the
    baseline's MLP and the CNN's loss."""
    from jobs.models.baseline import BaselineSettings, train_baseline

    spec, inputs, labels = _sample_inputs(tmp_path_factory, "baseline")
    weights = np.where(labels == 3, 1e-6, 1.0)
    settings = BaselineSettings(epochs=30)
    plain = train_baseline(inputs, labels, 10, settings, log=lambda _: None)
    weighted = train_baseline(inputs, labels, 10, settings, log=lambda _: None, sample_weight=weights)
    threes = labels == 3
    assert plain.predict_proba(inputs[threes])[:, 3].mean() > 0.5
    assert weighted.predict_proba(inputs[threes])[:, 3].mean() < 0.5 * plain.predict_proba(inputs[threes])[:, 3].mean()
    pytest.importorskip("torch")
    from jobs.models.cnn import CnnSettings, train_cnn

    spec, inputs, labels = _sample_inputs(tmp_path_factory, "cnn")
    settings = CnnSettings(n_mels=40, length_frames=100, n_classes=10, scale=spec["scale"], epochs=1)
    plain = train_cnn(inputs, labels, settings, threads=1, log=lambda _: None)
    weighted = train_cnn(inputs, labels, settings, threads=1, log=lambda _: None,
                         sample_weight=np.where(labels == 3, 1e-6, 1.0))
    assert plain.history[0]["loss"] != weighted.history[0]["loss"]


def test_cnn_onnx_round_trip(tmp_path_factory):
    pytest.importorskip("torch")
    from jobs.models.cnn import CnnSettings, export_cnn, predict_torch, train_cnn

    spec, inputs, labels = _sample_inputs(tmp_path_factory, "cnn")
    assert inputs.shape == (120, 1, 40, 100)
    settings = CnnSettings(n_mels=40, length_frames=100, n_classes=10, scale=spec["scale"], epochs=2)
    lines = []
    net = train_cnn(inputs, labels, settings, threads=1, log=lines.append)
    assert [line.split(":")[0].strip() for line in lines] == ["epoch 1/2", "epoch 2/2"]
    session = make_session(export_cnn(net, settings))
    onnx_probs = predict_with_session(session, inputs, 10)
    np.testing.assert_allclose(onnx_probs, predict_torch(net, inputs), atol=1e-5)
    np.testing.assert_allclose(onnx_probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("scale", ["db", "power"])
def test_a_padded_patch_does_not_depend_on_loudness(scale):
    """A clip shorter than its segment (and a file's last segment) is padded after its real
    frames. The CNN's log scaling reads each patch relative to its peak, so the same clip 30 dB
    quieter must give the same scaled patch: a dB patch padded with 0.0 (0 dB) did not (the
    padding was a loud block, or the peak of a quiet clip), and a 0 dB and a -30 dB copy of
    one siren scored 0.93 and 0.47."""
    pytest.importorskip("torch")
    import torch

    from jobs.models.cnn import CnnSettings, _modules
    from jobs.models.inputs import build_inputs, patch_pad_value
    from jobs.segments import FrameBlock

    rng = np.random.default_rng(0)
    power = (10.0 ** rng.uniform(-6, 0, (60, 40))).astype(np.float32)  # 60 real frames, 40 bands
    segments = pd.DataFrame({"row_start": [0], "n_valid": [60]})
    spec = {"kind": "patch", "feature": "mel", "dim": 40, "length_frames": 100, "scale": scale,
            "pad_value": patch_pad_value(scale)}
    DigitCnn, _ = _modules(CnnSettings(n_mels=40, length_frames=100, n_classes=2, scale=scale))
    log_scale = DigitCnn().log_scale
    scaled = []
    for gain_db in (0.0, -30.0):
        frames = power * np.float32(10 ** (gain_db / 10))
        if scale == "db":
            frames = (10 * np.log10(np.maximum(frames, 1e-10))).astype(np.float32)
        x = build_inputs(FrameBlock(0, {"mel": frames}), segments, spec)
        with torch.no_grad():
            scaled.append(log_scale(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(scaled[0], scaled[1], atol=1e-5)
    assert np.all(scaled[0][..., 60:] == 0.0)  # the padding reads as the floor
    assert scaled[0][..., :60].max() == pytest.approx(1.0)  # the peak is a real frame's


def test_a_patch_standardised_per_patch_leaves_its_padding_out(tmp_path):
    """An MFCC patch (scale "linear") was padded with 0.0 and standardised with its zeros: c0,
    hundreds under 0 and moving with the level, shifted every real frame of a padded segment
    with the recording's level and with how much of it was padding. The real frames of a
    padded patch now scale as the same frames alone do, the padding reads as 0, and so in the
    exported ONNX graph."""
    pytest.importorskip("torch")
    import torch

    from jobs.models.cnn import CnnSettings, _modules
    from jobs.models.inputs import build_inputs, patch_pad_value
    from jobs.segments import FrameBlock

    rng = np.random.default_rng(1)
    mfcc = rng.normal(0, 20, (60, 20)).astype(np.float32)
    mfcc[:, 0] -= 400  # c0 of a quiet recording
    spec = {"kind": "patch", "feature": "mfcc", "dim": 20, "length_frames": 100, "scale": "linear",
            "pad_value": patch_pad_value("linear")}
    DigitCnn, _ = _modules(CnnSettings(n_mels=20, length_frames=100, n_classes=2, scale="linear"))
    log_scale = DigitCnn().log_scale
    padded = build_inputs(FrameBlock(0, {"mfcc": mfcc}), pd.DataFrame({"row_start": [0], "n_valid": [60]}),
                          spec)
    alone = np.ascontiguousarray(mfcc.T[None, None])  # (1, 1, 20, 60): the real frames only
    with torch.no_grad():
        scaled_padded = log_scale(torch.from_numpy(padded)).numpy()
        scaled_alone = log_scale(torch.from_numpy(alone)).numpy()
    np.testing.assert_allclose(scaled_padded[..., :60], scaled_alone, atol=1e-5)
    assert np.all(scaled_padded[..., 60:] == 0.0)
    assert abs(scaled_alone.mean()) < 1e-5 and abs(scaled_alone.std() - 1) < 1e-3

    # the same through ONNX (torch.where and the masked sums export)
    import onnxruntime

    path = tmp_path / "scale.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(log_scale, torch.from_numpy(padded), str(path), input_names=["x"],
                          output_names=["y"], dynamo=False, opset_version=17)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": padded})[0], scaled_padded, atol=1e-5)


def test_auto_takes_the_cnn_when_torch_is_installed(tmp_path_factory, capsys):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("auto-cnn")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    config = write_config(root / "job.yaml", train={"model": "auto", "epochs": 2, "threads": 1})
    assert cli_main(["train", str(config), "--out", str(run), "--name", "auto"]) == 0
    assert "auto -> CNN" in capsys.readouterr().err
    meta = json.loads((run / "models" / "auto" / "model.json").read_text())
    assert meta["kind"] == "cnn" and meta["versions"]["torch"]
    assert meta["input"] == {"kind": "patch", "feature": "melspectrogram", "dim": 40,
                             "length_frames": 100, "scale": "power", "pad_value": 0.0}
    assert meta["metrics"]["onnx_max_abs_diff"] < 1e-5


def test_auto_takes_the_baseline_without_torch(tmp_path_factory):
    """In a process where torch cannot be imported, auto trains the baseline and says why."""
    root = tmp_path_factory.mktemp("auto-baseline")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    config = write_config(root / "job.yaml", train={"model": "auto", "epochs": 5})
    code = (
        "import sys\n"
        "class NoTorch:\n"  # import torch -> ImportError, as without the cnn extra
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('No module named torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from jobs.cli import main\n"
        f"raise SystemExit(main(['train', {str(config)!r}, '--out', {str(run)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "auto -> baseline" in done.stderr and "torch is not installed" in done.stderr
    assert json.loads((run / "models" / "default" / "model.json").read_text())["kind"] == "baseline"


def test_the_log_says_where_labels_come_from_and_names_one_file_classes(tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("lonely-class")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    files = pd.read_parquet(run / "files.parquet")
    rows = [f"{p},{'solo' if i == 0 else p.rsplit('/', 1)[1][0]},{p.rsplit('_', 1)[1].split('.')[0]}"
            for i, p in enumerate(files["path"])]
    (root / "labels.csv").write_text("path,label,index\n" + "\n".join(rows) + "\n")
    config = write_config(root / "job.yaml", labels={"source": "csv", "csv": "labels.csv"})
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert "labels from the CSV" in said
    assert "1 class has one labelled file (solo)" in said


def test_segments_that_are_no_whole_number_of_frames_are_noted(tmp_path_factory, capsys):
    """100 frames/s: 0.3333 s becomes 33 frames (0.33 s); 0.25 s is 25 frames exactly."""
    root = tmp_path_factory.mktemp("segment-grid")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    config = write_config(root / "job.yaml", segments={"length_s": 0.3333, "hop_s": 0.25})
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    said = capsys.readouterr().err
    assert ("train: note: segments.length_s 0.3333 s is 33.33 frames of the store (100 frames/s): "
            "33 frames (0.33 s) are used") in said, said
    assert "segments.hop_s" not in said


def test_unlabelled_files_are_not_trained_on(tmp_path_factory):
    root = tmp_path_factory.mktemp("partial-labels")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    files = pd.read_parquet(run / "files.parquet")
    keep = files[~files["path"].str.contains("_theo_")]  # theo's 20 files get no label
    rows = [f"{p},{p.rsplit('/', 1)[1][0]},{'test' if p.endswith('_3.wav') else 'train'}" for p in keep["path"]]
    (root / "labels.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n")
    config = write_config(root / "job.yaml", labels={"source": "csv", "csv": "labels.csv"},
                          split={"method": "explicit", "group": "group", "test_values": ["test"]})
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    split = pd.read_parquet(run / "models" / "default" / "split.parquet")
    assert len(split) == 100 and not split["path"].str.contains("_theo_").any()
    meta = json.loads((run / "models" / "default" / "model.json").read_text())
    assert meta["split"]["n_train_files"] == 50 and (split["split"] == TRAIN).sum() == 50


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"train": {"model": "cnn", "input_feature": "chroma", "epochs": 1}}, "input_feature 'chroma' is not in the store"),
        ({"labels": {"source": "regex", "pattern": r"(?P<label>x)y"}}, "no file has a label"),
        ({"split": {"method": "explicit", "group": "speaker", "test_values": ["nobody"]}}, "no file to test on"),
    ],
)
def test_bad_settings_exit_2_with_one_line(tmp_path_factory, capsys, sections, message):
    if sections.get("train", {}).get("model") == "cnn":
        pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("bad")
    config = write_config(root / "job.yaml", **sections)
    assert cli_main(["train", str(config), "--out", str(extracted_run(tmp_path_factory))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("audiofeat train: error:")


def test_no_store_is_a_usage_error(tmp_path, capsys):
    config = write_config(tmp_path / "job.yaml")
    assert cli_main(["train", str(config), "--out", str(tmp_path / "nothing")]) == 2
    assert "run `audiofeat extract` first" in capsys.readouterr().err


def test_rerun_keeps_an_up_to_date_model_and_force_trains_again(baseline_run, tmp_path, capsys):
    run = copy_run(baseline_run, tmp_path / "run")
    config = write_config(tmp_path / "job.yaml")
    onnx = run / "models" / "default" / "model.onnx"
    before = onnx.stat().st_mtime_ns
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    assert "nothing to do" in capsys.readouterr().err and onnx.stat().st_mtime_ns == before
    assert cli_main(["train", str(config), "--out", str(run), "--epochs", "31"]) == 0  # other settings
    assert "nothing to do" not in capsys.readouterr().err and onnx.stat().st_mtime_ns != before
    again = onnx.stat().st_mtime_ns
    assert cli_main(["train", str(config), "--out", str(run), "--epochs", "31", "--force"]) == 0
    assert onnx.stat().st_mtime_ns != again


def test_features_stored_in_db_are_not_taken_in_log_again():
    """A mel stored with ``db: true`` holds logs already (all <= 0 dB): the baseline takes its
    statistics as they are, and the CNN scales it as decibels; other features as they are."""
    from jobs.models.inputs import cnn_scale, statistics_input_spec

    dims = {"melspectrogram": 40, "rms": 1, "mfcc": 20}
    in_db = statistics_input_spec(list(dims), dims, feature_config={"melspectrogram": {"db": True}})
    assert in_db["log_features"] == ["rms"]
    as_power = statistics_input_spec(list(dims), dims, feature_config={"melspectrogram": {"db": False}})
    assert as_power["log_features"] == ["melspectrogram", "rms"]
    assert cnn_scale("melspectrogram", {"db": True}) == "db"
    assert cnn_scale("melspectrogram", {}) == "power"
    assert cnn_scale("mfcc", {"n_mfcc": 20}) == "linear"  # cepstra can be negative: no log


def test_baseline_learns_from_a_mel_stored_in_db(tmp_path_factory):
    """Quiet clips (-40 dBFS) with a dB mel as the only input: the inputs keep what tells the
    digits apart (before the fix every dB value became one log floor, a constant input)."""
    root = tmp_path_factory.mktemp("db-mel")
    config = write_config(root / "job.yaml", features={"melspectrogram": {"n_mels": 40, "db": True}},
                          train={"model": "baseline", "epochs": 30, "features": ["melspectrogram"]})
    run = root / "run"
    assert cli_main(["extract", str(config), "--out", str(run), "--workers", "1"]) == 0
    store = open_run(run)
    geometry = segment_geometry(1.0, 0.5, store.frame_rate_hz)
    from jobs.train import _input_spec
    from jobs.train_config import TrainConfig

    spec = _input_spec("baseline", store, TrainConfig(features=["melspectrogram"]), geometry)
    assert spec["log_features"] == []
    inputs, _ = read_inputs(store, store.files, geometry, spec, max_segments=50)
    assert np.median(inputs.std(axis=0)) > 1.0  # dB statistics vary across clips
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    report = json.loads((run / "models" / "default" / "report.json").read_text())
    assert report["accuracy"] > 0.5  # 10 digits: chance is 0.1


@pytest.mark.parametrize("n_mels, length_frames", [(1, 100), (40, 3), (1, 1), (6, 6)])
def test_cnn_takes_inputs_smaller_than_its_poolings(n_mels, length_frames):
    """A one-dimensional feature or segments of a few frames: padded up to what the network's
    stride and poolings need, trained and exported like any other."""
    pytest.importorskip("torch")
    from jobs.models.cnn import CnnSettings, export_cnn, predict_torch, train_cnn

    rng = np.random.default_rng(0)
    x = rng.random((16, 1, n_mels, length_frames), dtype=np.float32)
    y = np.arange(16) % 2
    settings = CnnSettings(n_mels=n_mels, length_frames=length_frames, n_classes=2, scale="power", epochs=1)
    net = train_cnn(x, y, settings, threads=1, log=lambda _: None)
    probs = predict_with_session(make_session(export_cnn(net, settings)), x, 2)
    np.testing.assert_allclose(probs, predict_torch(net, x), atol=1e-5)


def test_labels_differing_only_in_case_are_refused(tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("case-labels")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    files = pd.read_parquet(run / "files.parquet")
    # digit 1 is "One", digit 2 "one": two classes that SQL would see as one probability column
    names = {"1": "One", "2": "one"}
    rows = [f"{p},{names.get(p.rsplit('/', 1)[1][0], p.rsplit('/', 1)[1][0])}" for p in files["path"]]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    config = write_config(root / "job.yaml", labels={"source": "csv", "csv": "labels.csv"},
                          split={"method": "stratified", "test_fraction": 0.2})
    assert cli_main(["train", str(config), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'One' and 'one' differ only in letter case" in err


@pytest.mark.parametrize("name", ["", ".", "..", "../../sibling", "a/b", "/abs"])
def test_a_model_name_that_is_no_plain_folder_name_is_refused(tmp_path_factory, capsys, name):
    """``--name ''`` would make OUT/models itself the model's folder (and replace every other
    model); ``../..`` a folder outside the run. Refused before anything is written."""
    root = tmp_path_factory.mktemp("names")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    (root / "sibling").mkdir()
    (root / "sibling" / "data").write_text("keep")
    config = write_config(root / "job.yaml")
    assert cli_main(["train", str(config), "--out", str(run), "--name", name, "--force"]) == 2
    assert "is not a plain folder name" in capsys.readouterr().err
    assert not (run / "models").exists() and (root / "sibling" / "data").read_text() == "keep"


def test_run_refuses_labels_train_would_refuse_before_extracting(tmp_path, capsys):
    """Split-named class folders, or a single class, were refused by train after the whole
    corpus had been extracted."""
    import shutil

    from train_helpers import SAMPLES

    samples = sorted(SAMPLES.glob("*.wav"))
    corpus = tmp_path / "corpus"
    for split, files in (("train", samples[:4]), ("test", samples[4:6])):
        (corpus / split).mkdir(parents=True)
        for f in files:
            shutil.copy(f, corpus / split / f.name)
    out = tmp_path / "run"
    config = write_config(tmp_path / "job.yaml", input=str(corpus), labels={"source": "folder"},
                          split={"method": "stratified"})
    assert cli_main(["run", str(config), "--out", str(out)]) == 2
    assert "named like dataset splits (test, train)" in capsys.readouterr().err
    assert not out.exists()
    one = tmp_path / "one" / "dog"
    one.mkdir(parents=True)
    shutil.copy(samples[0], one / samples[0].name)
    assert cli_main(["run", str(config), "--input", str(tmp_path / "one"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 class (dog)" in err and "nothing was extracted" in err and not out.exists()
    # an input that is not there is extract's error, not train's (it said "train: input: ...")
    assert cli_main(["run", str(config), "--input", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert f"error: extract: input: no such file or folder: {tmp_path / 'nope'}" in capsys.readouterr().err


def test_the_log_names_classes_the_split_does_not_test(tmp_path_factory, capsys):
    """An explicit split whose test values hold no file of a class: the log says which, as it
    says for a class of one file (the report showed its recall as 0.000, or n/a, unexplained)."""
    root = tmp_path_factory.mktemp("untested-class")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    files = pd.read_parquet(run / "files.parquet")
    rows = []
    for p in files["path"]:
        digit, index = p.rsplit("/", 1)[1][0], p.rsplit("_", 1)[1].split(".")[0]
        rows.append(f"{p},{digit},{'99' if digit == '9' else index}")  # no 9 among the test values
    (root / "labels.csv").write_text("path,label,index\n" + "\n".join(rows) + "\n")
    config = write_config(root / "job.yaml", labels={"source": "csv", "csv": "labels.csv"})
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    said = "".join(capsys.readouterr())
    assert "split holds no test file of 1 class (9)" in said
