"""``audiofeat score``: Parquet outputs, agreement with training's evaluation, refusal of a model
with other feature settings, rerun does nothing, events."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from train_helpers import SAMPLES, copy_run, extracted_run, write_config

from jobs.cli import main as cli_main
from jobs.score import find_events


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A copy of the sample run, a baseline trained on it, and one score run (exit status 0)."""
    root = tmp_path_factory.mktemp("score")
    run = copy_run(extracted_run(tmp_path_factory), root / "run")
    config = write_config(root / "job.yaml")
    assert cli_main(["train", str(config), "--out", str(run)]) == 0
    assert cli_main(["score", str(config), "--out", str(run), "--workers", "1"]) == 0
    return run, config


def test_segment_table(scored):
    run, _ = scored
    segments = pd.read_parquet(run / "scores" / "segments.parquet")
    classes = [str(d) for d in range(10)]
    assert list(segments.columns) == ["file_id", "segment", "start_s", "end_s", "label", "score",
                                      *[f"p_{c}" for c in classes]]
    assert len(segments) == 120  # every sample clip is shorter than one 1 s segment: one padded each
    probs = segments[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (segments["label"] == np.array(classes)[probs.argmax(axis=1)]).all()
    np.testing.assert_allclose(segments["score"], probs.max(axis=1))
    files = pd.read_parquet(run / "files.parquet")
    duration = segments["file_id"].map(dict(zip(files.file_id, files.duration_s)))
    assert (segments["start_s"] == 0).all() and (segments["end_s"] <= duration + 1e-9).all()


def test_file_table_matches_training_evaluation(scored):
    run, _ = scored
    table = pd.read_parquet(run / "scores" / "files.parquet")
    assert list(table.columns) == ["file_id", "path", "label", "confidence", "true_label", "split", "n_segments"]
    assert len(table) == 120 and table["true_label"].notna().all()
    assert set(table["split"]) == {"train", "test"}
    held_out = table[table["split"] == "test"]
    report = json.loads((run / "models" / "default" / "report.json").read_text())
    assert (held_out["label"] == held_out["true_label"]).mean() == pytest.approx(report["accuracy"])
    assert ((table["confidence"] > 0) & (table["confidence"] <= 1)).all()


def test_events_follow_the_threshold(scored):
    run, _ = scored
    events = pd.read_parquet(run / "scores" / "events.parquet")
    segments = pd.read_parquet(run / "scores" / "segments.parquet")
    assert list(events.columns) == ["file_id", "label", "start_s", "end_s", "max_score", "n_segments"]
    # one segment per file here: an event is exactly a segment with a class probability >= 0.5
    expected = sum(int((segments[f"p_{d}"] >= 0.5).sum()) for d in range(10))
    assert len(events) == expected and (events["max_score"] >= 0.5).all()


def test_rerun_on_unchanged_store_and_model_does_nothing(scored, capsys):
    run, config = scored
    outputs = sorted((run / "scores").glob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in outputs}
    assert cli_main(["score", str(config), "--out", str(run), "--workers", "1"]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in outputs} == before


def test_a_scheduler_that_does_not_answer_is_refused_also_when_up_to_date(scored, capsys):
    import socket

    run, config = scored
    with socket.socket() as sock:  # a closed port on loopback: nothing answers there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert cli_main(["score", str(config), "--out", str(run), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "nothing to do" not in err and f"127.0.0.1:{port}" in err


def test_changed_threshold_scores_again(scored, tmp_path, capsys):
    run, _ = scored
    private = copy_run(run, tmp_path / "run")
    config = write_config(tmp_path / "job.yaml", score={"threshold": 0.95})
    assert cli_main(["score", str(config), "--out", str(private), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "nothing to do" not in err and "replaces the scores" not in err  # (the same model)
    events = pd.read_parquet(private / "scores" / "events.parquet")
    assert (events["max_score"] >= 0.95).all()
    state = json.loads((private / "scores" / "score.json").read_text())
    assert state["threshold"] == 0.95 and state["counts"]["segments"] == 120


def test_scores_of_another_model_are_said_to_be_replaced(scored, tmp_path, capsys):
    """A run folder holds one set of scores: scoring it with another model replaced the first
    model's without a word."""
    run, _ = scored
    private = copy_run(run, tmp_path / "run")
    other = private / "models" / "other"
    shutil.copytree(private / "models" / "default", other)
    meta = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**meta, "name": "other"}))
    config = write_config(tmp_path / "job.yaml")
    assert cli_main(["score", str(config), "--out", str(private), "--model", str(other), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "score: note: replaces the scores of model 'default' (from " in err


def _five_digits_in_a_row(corpus):
    """``corpus/long.wav``: five of the sample's digits, each followed by 0.5 s of silence
    (about 5 s at 8 kHz); returns the folder."""
    import soundfile as sf

    corpus.mkdir()
    pieces = []
    for digit in range(5):
        y, sr = sf.read(SAMPLES / f"{digit}_george_30.wav", dtype="float32")
        pieces += [y, np.zeros(int(0.5 * sr), np.float32)]
    sf.write(corpus / "long.wav", np.concatenate(pieces), sr)
    return corpus


def test_score_hop_scores_the_model_s_segments_more_often(scored, tmp_path, capsys):
    """score.hop_s: the model's 1 s segments of a 5 s recording every 0.1 s instead of every
    0.5 s (a finer time grid of scores); the segments both hops share score alike, a changed hop
    scores again, and a hop longer than a segment is refused."""
    run, _ = scored
    corpus = _five_digits_in_a_row(tmp_path / "corpus")
    model = str(run / "models" / "default")
    out = tmp_path / "out"
    coarse_cfg = write_config(tmp_path / "coarse.yaml", input=str(corpus))
    assert cli_main(["extract", str(coarse_cfg), "--out", str(out), "--workers", "1"]) == 0
    assert cli_main(["score", str(coarse_cfg), "--out", str(out), "--model", model, "--workers", "1"]) == 0
    coarse = pd.read_parquet(out / "scores" / "segments.parquet")
    config = write_config(tmp_path / "fine.yaml", input=str(corpus), score={"threshold": 0.5, "hop_s": 0.1})
    capsys.readouterr()
    assert cli_main(["score", str(config), "--out", str(out), "--model", model, "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "nothing to do" not in err and "every 0.1 s (score.hop_s" in err
    fine = pd.read_parquet(out / "scores" / "segments.parquet")
    np.testing.assert_allclose(fine["start_s"], np.arange(len(fine)) * 0.1, atol=1e-9)
    assert len(fine) > 4 * len(coarse)
    # the segments both hops score (those starting at a multiple of 0.5 s) score alike (the
    # coarse hop's last one may start past the fine hop's last: each stops once the end is covered)
    fine["start_s"], coarse["start_s"] = fine["start_s"].round(6), coarse["start_s"].round(6)
    shared = fine.merge(coarse, on=["file_id", "start_s"], suffixes=("", "_coarse"))
    assert len(shared) >= len(coarse) - 1 >= 6
    np.testing.assert_allclose(shared["score"], shared["score_coarse"], atol=1e-6)
    assert cli_main(["score", str(config), "--out", str(out), "--model", model, "--workers", "1"]) == 0
    assert "nothing to do" in capsys.readouterr().err
    too_long = write_config(tmp_path / "long.yaml", input=str(corpus), score={"hop_s": 1.5})
    assert cli_main(["score", str(too_long), "--out", str(out), "--model", model, "--workers", "1"]) == 2
    assert "longer than the model's segments" in capsys.readouterr().err


def test_model_with_other_feature_settings_is_refused(scored, tmp_path, capsys):
    run, _ = scored
    # a real store of the same clips with another hop: the model's features do not fit it
    inputs = sorted(SAMPLES.glob("*_3.wav"))[:6]
    config = write_config(tmp_path / "job.yaml", input=[str(p) for p in inputs],
                          frames={"n_fft": 256, "hop_length": 160})
    other = tmp_path / "other"
    assert cli_main(["extract", str(config), "--out", str(other), "--workers", "1"]) == 0
    capsys.readouterr()
    model = run / "models" / "default"
    assert cli_main(["score", str(config), "--out", str(other), "--model", str(model), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("audiofeat score: error:") and len(err.splitlines()) == 1
    assert "hop_length: model 80, store 160" in err
    assert not (other / "scores").exists()


def test_missing_model_is_a_usage_error(tmp_path_factory, tmp_path, capsys):
    config = write_config(tmp_path / "job.yaml")
    code = cli_main(["score", str(config), "--out", str(extracted_run(tmp_path_factory)),
                     "--model", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and "--model: no trained model in" in err and "run `audiofeat train` first" in err
    in_config = write_config(tmp_path / "named.yaml", score={"model": "nope"})
    code = cli_main(["score", str(in_config), "--out", str(extracted_run(tmp_path_factory))])
    assert code == 2 and "score.model: no trained model in" in capsys.readouterr().err
    # an empty --model (an unset variable) fell back to score.model or the run's model
    code = cli_main(["score", str(in_config), "--out", str(extracted_run(tmp_path_factory)), "--model", ""])
    assert code == 2 and "--model: an empty path" in capsys.readouterr().err


def test_cnn_model_scores_through_onnxruntime(scored, tmp_path):
    pytest.importorskip("torch")
    run, _ = scored
    private = copy_run(run, tmp_path / "run")
    shutil.rmtree(private / "scores")
    config = write_config(tmp_path / "job.yaml", train={"model": "cnn", "epochs": 2, "name": "cnn", "threads": 1})
    assert cli_main(["train", str(config), "--out", str(private)]) == 0
    assert cli_main(["score", str(config), "--out", str(private), "--workers", "1"]) == 0
    state = json.loads((private / "scores" / "score.json").read_text())
    assert state["model"]["kind"] == "cnn" and state["model"]["name"] == "cnn"
    segments = pd.read_parquet(private / "scores" / "segments.parquet")
    np.testing.assert_allclose(segments[[f"p_{d}" for d in range(10)]].sum(axis=1), 1.0, atol=1e-5)


def test_find_events_joins_consecutive_segments_of_one_file():
    table = pd.DataFrame({
        "file_id": ["a"] * 6 + ["b"] * 2,
        "segment": [0, 1, 2, 3, 4, 5, 0, 1],
        "start_s": [0, 0.5, 1.0, 1.5, 2.0, 2.5, 0, 0.5],
        "end_s": [1, 1.5, 2.0, 2.5, 3.0, 3.2, 1, 1.3],
        "p_dog": [0.9, 0.8, 0.2, 0.7, 0.75, 0.1, 0.6, 0.9],
        "p_cat": [0.1, 0.2, 0.8, 0.3, 0.25, 0.9, 0.4, 0.1],
    })
    events = find_events(table, ["dog", "cat"], 0.5)
    got = [(e.file_id, e.label, e.start_s, e.end_s, round(float(e.max_score), 3), e.n_segments)
           for e in events.itertuples()]
    assert got == [
        ("a", "dog", 0.0, 1.5, 0.9, 2),
        ("a", "cat", 1.0, 2.0, 0.8, 1),
        ("a", "dog", 1.5, 3.0, 0.75, 2),
        ("a", "cat", 2.5, 3.2, 0.9, 1),
        ("b", "dog", 0.0, 1.3, 0.9, 2),  # file a's last segment does not run into file b
    ]
    assert find_events(table, ["dog", "cat"], 0.99).empty


def test_events_of_one_label_never_overlap_at_a_short_hop():
    """1 s segments every 0.1 s: two runs of a class with a segment under the threshold between
    them overlap in time. They are one event (the stretch the class's segments cover), so a
    label's events add up to no more than the file (an 8-hour night summed to 9.6 hours)."""
    rng = np.random.default_rng(0)
    n = 400
    start = np.round(np.arange(n) * 0.1, 6)
    table = pd.DataFrame({"file_id": ["a"] * n, "segment": np.arange(n), "start_s": start,
                          "end_s": np.minimum(start + 1.0, 40.0)})
    table["p_dog"] = rng.uniform(0, 1, n)
    table["p_cat"] = 1 - table["p_dog"]
    events = find_events(table, ["dog", "cat"], 0.5)
    for label, group in events.groupby("label"):
        spans = group.sort_values("start_s")[["start_s", "end_s"]].to_numpy()
        assert (spans[1:, 0] >= spans[:-1, 1]).all(), label  # disjoint
        covered = table[table[f"p_{label}"] >= 0.5]
        assert group["n_segments"].sum() == len(covered)
        # every instant an above-threshold segment covers lies in an event, and nothing else
        grid = np.arange(0, 40, 0.01) + 0.005
        inside_segment = ((grid[:, None] >= covered["start_s"].to_numpy())
                          & (grid[:, None] < covered["end_s"].to_numpy())).any(axis=1)
        inside_event = ((grid[:, None] >= spans[:, 0]) & (grid[:, None] < spans[:, 1])).any(axis=1)
        np.testing.assert_array_equal(inside_event, inside_segment)


def test_score_model_path_in_config_is_relative_to_the_config(scored, tmp_path):
    run, _ = scored
    private = copy_run(run, tmp_path / "run")
    shutil.rmtree(private / "scores")
    (private / "models" / "default").rename(private / "models" / "elsewhere")
    config = write_config(tmp_path / "job.yaml", score={"model": "run/models/elsewhere"})
    assert cli_main(["score", str(config), "--out", str(private), "--workers", "1"]) == 0
    state = json.loads((private / "scores" / "score.json").read_text())
    assert state["model"]["folder"] == str(private / "models" / "elsewhere")


def test_long_recording_gives_many_segments_and_batches_do_not_matter(scored, tmp_path):
    """A 5 s recording (five digits in a row) scored in batches of 3 segments, so that its
    segments span batches, gives the same numbers as one batch, and events over segment runs."""
    run, _ = scored
    corpus = _five_digits_in_a_row(tmp_path / "corpus")
    shutil.copy(SAMPLES / "7_theo_3.wav", corpus)
    model = str(run / "models" / "default")
    tables = {}
    for batch in (3, 4096):
        config = write_config(tmp_path / f"job{batch}.yaml", input=str(corpus),
                              score={"threshold": 0.5, "batch_segments": batch})
        out = tmp_path / f"out{batch}"
        assert cli_main(["extract", str(config), "--out", str(out), "--workers", "1"]) == 0
        assert cli_main(["score", str(config), "--out", str(out), "--model", model, "--workers", "2"]) == 0
        tables[batch] = {name: pd.read_parquet(out / "scores" / f"{name}.parquet")
                         for name in ("segments", "files", "events")}
    small, whole = tables[3], tables[4096]
    pd.testing.assert_frame_equal(small["segments"], whole["segments"])
    pd.testing.assert_frame_equal(small["events"], whole["events"])
    files = pd.read_parquet(tmp_path / "out3" / "files.parquet")
    long_row = files[files["path"].str.endswith("long.wav")].iloc[0]
    segments = small["segments"][small["segments"]["file_id"] == long_row["file_id"]]
    expected = 1 + int(np.ceil((long_row["n_frames"] - 100) / 50))
    assert segments["segment"].tolist() == list(range(expected))
    np.testing.assert_allclose(segments["start_s"], np.arange(expected) * 0.5)
    assert segments["end_s"].iloc[-1] == pytest.approx(long_row["duration_s"], abs=0.011)
    scored_files = small["files"].set_index("file_id")
    assert scored_files.loc[long_row["file_id"], "n_segments"] == expected
    # no file of this store is in the model's split; the config's labels still name the digit
    assert pd.isna(scored_files.loc[long_row["file_id"], "true_label"])
    theo = scored_files[scored_files["path"].str.endswith("7_theo_3.wav")].iloc[0]
    assert theo["true_label"] == "7" and pd.isna(theo["split"])
    events = small["events"][small["events"]["file_id"] == long_row["file_id"]]
    assert (events["end_s"] > events["start_s"]).all() and (events["n_segments"] >= 1).all()


def test_a_model_of_other_features_is_refused_with_what_differs():
    """A setting that differs is named with both values; a feature only one side has is named
    once (it was listed setting by setting, up to twenty entries for a store of rms alone, and a
    feature without settings, such as spectral_centroid, not at all)."""
    from types import SimpleNamespace

    import pytest

    from jobs.errors import UsageError
    from jobs.score import check_compatible

    model_fc = {"sr": 16000, "n_fft": 512, "features": {
        "mfcc": {"n_mfcc": 20, "n_mels": 40}, "spectral_centroid": {}, "rms": {}}}
    meta = {"config_hash": "a" * 64, "feature_config": model_fc,
            "input": {"kind": "segment_statistics", "features": ["mfcc", "spectral_centroid", "rms"],
                      "dims": {"mfcc": 20, "spectral_centroid": 1, "rms": 1}}}

    def store(fc):
        return SimpleNamespace(config_hash="b" * 64, feature_config=fc)

    with pytest.raises(UsageError, match=r"sr: model 16000, store 22050$"):
        check_compatible(meta, store({**model_fc, "sr": 22050}))
    with pytest.raises(UsageError) as caught:
        check_compatible(meta, store({"sr": 16000, "n_fft": 512, "features": {"rms": {}, "zero_crossing_rate": {}}}))
    said = str(caught.value)
    assert said.endswith("the store lacks the model's features: mfcc, spectral_centroid"), said
    assert "n_mfcc" not in said and "zero_crossing_rate" not in said  # a feature the model does not read
    with pytest.raises(UsageError, match=r"features.mfcc.n_mels: model 40, store 64$"):
        check_compatible(meta, store({**model_fc, "features": {**model_fc["features"], "mfcc": {"n_mfcc": 20, "n_mels": 64}}}))


def test_a_store_with_other_features_besides_the_model_s_is_scored():
    """The model reads mfcc and rms: a store that also holds spectral_rolloff, or lacks a
    feature the training store had that the model does not read, is scored (it was refused:
    "the store has features the model was not trained on")."""
    from types import SimpleNamespace

    from jobs.score import check_compatible

    model_fc = {"sr": 16000, "n_fft": 512, "features": {"mfcc": {"n_mfcc": 20}, "rms": {}, "melspectrogram": {"n_mels": 40}}}
    meta = {"config_hash": "a" * 64, "feature_config": model_fc,
            "input": {"kind": "segment_statistics", "features": ["mfcc", "rms"], "dims": {"mfcc": 20, "rms": 1}}}
    dims = {"mfcc": 20, "rms": 1, "spectral_rolloff": 1}
    fc = {"sr": 16000, "n_fft": 512, "features": {"mfcc": {"n_mfcc": 20}, "rms": {}, "spectral_rolloff": {}}}
    store = SimpleNamespace(config_hash="b" * 64, feature_config=fc, dim=dims.__getitem__,
                            array=lambda name: dims[name])
    check_compatible(meta, store)  # no UsageError


def test_accuracy_counts_only_files_of_the_model_s_classes():
    from jobs.score import accuracy_summary

    table = pd.DataFrame({
        "label": ["a", "b", "a", "b"],
        "true_label": pd.array(["a", "b", "other", None], dtype="string"),
        "split": pd.array([None, None, None, None], dtype="string"),
    })
    summary = accuracy_summary(table, ["a", "b"])
    assert summary.startswith("; accuracy on 2 labelled files 1.0000")
    assert "1 file labelled with classes the model does not know (other)" in summary
    assert accuracy_summary(table.assign(true_label=pd.array([None] * 4, dtype="string")), ["a", "b"]) == ""
    # with held-out files, the files of other classes named are the held-out ones (a training
    # file relabelled since is no file the accuracy could count)
    split = table.assign(true_label=pd.array(["a", "other", "other", "b"], dtype="string"),
                         split=pd.array(["test", "train", "test", None], dtype="string"))
    summary = accuracy_summary(split, ["a", "b"])
    assert summary.startswith("; accuracy on 1 held-out file 1.0000")
    assert "; 1 file labelled with classes the model does not know (other)" in summary


def test_tables_of_a_run_without_segments_have_string_columns():
    """Every input failed: the score tables are empty but typed (a strict reader or an Arrow
    concatenation with a non-empty table needs ``file_id`` and ``label`` as strings)."""
    from jobs.score import aggregate_files

    segments = pd.DataFrame({"file_id": pd.Series([], dtype="string"), "segment": [], "p_a": [], "p_b": []})
    files = pd.DataFrame({"file_id": pd.Series([], dtype=object), "path": pd.Series([], dtype=object)})
    table = aggregate_files(segments, ["a", "b"], files)
    for column in ("file_id", "path", "label", "true_label", "split"):
        assert table[column].dtype == "string", column


def test_score_and_train_wait_for_no_one_while_another_writes_the_run(scored, tmp_path, capsys):
    """OUT/.lock: a run folder that extract, train or score is writing is neither trained on nor
    scored; the refusal names the command holding it, and nothing is written."""
    from jobs.outdir import run_lock

    run, config = scored
    private = copy_run(run, tmp_path / "run")
    shutil.rmtree(private / "scores")
    held = run_lock(private, "extract")
    try:
        assert cli_main(["score", str(config), "--out", str(private), "--workers", "1"]) == 2
        assert cli_main(["train", str(config), "--out", str(private), "--name", "other"]) == 2
    finally:
        held.close()
    err = capsys.readouterr().err
    assert err.count("another audiofeat extract (pid ") == 2 and "is writing" in err
    assert not (private / "scores").exists() and not (private / "models" / "other").exists()
    # released: both run, and the lock file names no one after them
    assert (private / ".lock").read_text() == ""
    assert cli_main(["score", str(config), "--out", str(private), "--workers", "1"]) == 0
    assert (private / ".lock").read_text() == ""


def test_an_edited_labels_csv_makes_the_scores_out_of_date(scored, tmp_path):
    """true_label comes from the labels CSV's rows: its bytes are part of the score's fingerprint."""
    from jobs.score import _fingerprint
    from jobs.segments import open_run
    from jobs.train_config import LabelsConfig

    run, _ = scored
    store, model = open_run(run), run / "models" / "default"
    meta = json.loads((model / "model.json").read_text())
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nx.wav,dog\n")
    labels = LabelsConfig(source="csv", csv=str(csv))
    hop = int(meta["segments"]["hop_frames"])
    before = _fingerprint(store, model, meta, 0.5, labels, hop)
    assert _fingerprint(store, model, meta, 0.5, labels, hop) == before
    csv.write_text("path,label\nx.wav,rain\n")
    assert _fingerprint(store, model, meta, 0.5, labels, hop) != before


def test_true_labels_are_the_config_s_labels_as_they_are_now(tmp_path):
    """A row deleted from the labels CSV leaves its file unlabelled, as train sees it (score kept
    the model's old label and counted the file as held out: 6 held-out files where train saw 5);
    a file the config labels now and the model never saw is labelled, outside the split."""
    import types

    import pandas as pd

    from jobs.score import _truth_table
    from jobs.train_config import LabelsConfig

    model = tmp_path / "model"
    model.mkdir()
    pd.DataFrame({"file_id": ["a", "b", "c"], "label": ["x", "y", "x"],
                  "split": ["test", "train", "test"]}).to_parquet(model / "split.parquet")
    store = types.SimpleNamespace(out_dir=None, files=pd.DataFrame(
        {"file_id": ["a", "b", "c", "d"], "path": [str(tmp_path / f"{n}.wav") for n in "abcd"]}))
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.wav,x\nb.wav,y\nd.wav,z\n")  # c.wav's row deleted
    truth = _truth_table(model, store, LabelsConfig(source="csv", csv=str(csv))).set_index("file_id")
    truth = truth.astype(object).where(truth.notna(), None)
    assert truth["true_label"].to_dict() == {"a": "x", "b": "y", "c": None, "d": "z"}
    assert truth["split"].to_dict() == {"a": "test", "b": "train", "c": "test", "d": None}
    # no labels section: the model's own labels
    assert _truth_table(model, store, None).set_index("file_id")["true_label"].to_dict() == {
        "a": "x", "b": "y", "c": "x"}


def test_settings_a_stage_does_not_use_are_named(scored, tmp_path, capsys):
    """score takes the model's segments and train the store's features, whatever the config
    says: each says so when the config asks for others."""
    run, _ = scored
    private = copy_run(run, tmp_path / "run")
    other_features = write_config(tmp_path / "features.yaml", features={"melspectrogram": {"n_mels": 64}})
    assert cli_main(["train", str(other_features), "--out", str(private)]) == 0  # (up to date)
    assert "extracted with audio/frames/features settings other than this config's" in capsys.readouterr().err
    config = write_config(tmp_path / "job.yaml", segments={"length_s": 3.0, "hop_s": 3.0})
    assert cli_main(["score", str(config), "--out", str(private), "--workers", "1"]) == 0
    assert "segments come from the model (1 s, hop 0.5 s" in capsys.readouterr().err


def test_the_summary_counts_inputs_that_failed_extraction(tmp_path):
    """Files that failed extraction have no frames and no scores: score's summary says so."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.score import _failed_extraction

    assert _failed_extraction(tmp_path) == ""  # no failures.parquet
    rows = {"path": ["/a.wav", "/b.wav"], "stage": ["decode"] * 2, "error_type": ["NotAudio"] * 2,
            "message": ["x"] * 2}
    pq.write_table(pa.table(rows), tmp_path / "failures.parquet")
    assert _failed_extraction(tmp_path) == "; 2 inputs failed extraction and are not scored (failures.parquet)"
    pq.write_table(pa.table({k: v[:0] for k, v in rows.items()}), tmp_path / "failures.parquet")
    assert _failed_extraction(tmp_path) == ""
