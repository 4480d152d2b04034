"""Labels from folders, file-name regexes and CSV files."""

from __future__ import annotations

import pandas as pd
import pytest
from train_helpers import FSDD_PATTERN

from jobs.errors import UsageError
from jobs.labels import assign_labels
from jobs.train_config import LabelsConfig


def _files(paths):
    return pd.DataFrame({"file_id": [f"id{i}" for i in range(len(paths))], "path": [str(p) for p in paths]})


def test_regex_named_groups_become_columns(samples_dir):
    paths = sorted(samples_dir.glob("*.wav"))
    table = assign_labels(_files(paths), LabelsConfig(source="regex", pattern=FSDD_PATTERN))
    assert list(table.columns) == ["file_id", "path", "label", "speaker", "index"]
    row = table[table["path"].str.endswith("7_lucas_30.wav")].iloc[0]
    assert (row["label"], row["speaker"], row["index"]) == ("7", "lucas", "30")
    assert table["label"].notna().all()
    assert sorted(table["label"].unique()) == [str(d) for d in range(10)]


def test_regex_without_match_leaves_file_unlabelled(tmp_path):
    files = _files([tmp_path / "3_theo_1.wav", tmp_path / "notes.wav"])
    table = assign_labels(files, LabelsConfig(source="regex", pattern=FSDD_PATTERN))
    assert table["label"].tolist() == ["3", None]
    assert table["speaker"].tolist() == ["theo", None]


def test_folder_labels(tmp_path):
    files = _files([tmp_path / "dog" / "a.wav", tmp_path / "cat" / "b.wav"])
    table = assign_labels(files, LabelsConfig(source="folder"))
    assert table["label"].tolist() == ["dog", "cat"]


def test_csv_labels_relative_absolute_and_by_name(tmp_path):
    audio = tmp_path / "audio"
    files = _files([audio / "a.wav", audio / "b.wav", audio / "c.wav", audio / "d.wav"])
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "path,label,group\n"
        "audio/a.wav,yes,s1\n"  # relative to the CSV's folder
        f"{audio / 'b.wav'},no,s2\n"  # absolute
        "elsewhere/c.wav,yes,s2\n"  # unique file name
        "audio/x.wav,no,s3\n"  # not in the store: ignored
    )
    table = assign_labels(files, LabelsConfig(source="csv", csv=str(csv)))
    assert table["label"].tolist() == ["yes", "no", "yes", None]
    assert table["group"].tolist() == ["s1", "s2", "s2", None]


def test_csv_empty_label_is_unlabelled(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.wav,\nb.wav,bird\n")
    table = assign_labels(_files([tmp_path / "a.wav", tmp_path / "b.wav"]), LabelsConfig(source="csv", csv=str(csv)))
    assert table["label"].tolist() == [None, "bird"]


@pytest.mark.parametrize(
    "content, message",
    [("file,label\na.wav,x\n", "needs columns path,label"), ("path,label\na.wav,x\na.wav,y\n", "more than once")],
)
def test_bad_csv_is_a_usage_error(tmp_path, content, message):
    csv = tmp_path / "labels.csv"
    csv.write_text(content)
    with pytest.raises(UsageError, match=message):
        assign_labels(_files([tmp_path / "a.wav"]), LabelsConfig(source="csv", csv=str(csv)))


def test_missing_csv_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        assign_labels(_files([tmp_path / "a.wav"]), LabelsConfig(source="csv", csv=str(tmp_path / "none.csv")))


def test_config_rejects_pattern_without_label_group():
    with pytest.raises(ValueError, match="named group"):
        LabelsConfig(source="regex", pattern=r"(?P<digit>\d)_")
