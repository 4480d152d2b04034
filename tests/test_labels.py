"""Labels from folders, file-name regexes and CSV files."""

from __future__ import annotations

import os

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


def test_folder_labels_are_the_folders_below_the_corpus_root(tmp_path):
    """As ImageFolder: a nested folder's files take their class folder's name; a file lying in
    the corpus root itself has no label (it was a class named after the root). ``parent`` keeps
    each file's own folder."""
    root = tmp_path / "corpus"
    files = _files([root / "dog" / "a.wav", root / "rain" / "b.wav", root / "rain" / "heavy" / "c.wav",
                    root / "loose.wav"])
    assert assign_labels(files, LabelsConfig(source="folder"))["label"].tolist() == ["dog", "rain", "rain", None]
    assert assign_labels(files, LabelsConfig(source="parent"))["label"].tolist() == ["dog", "rain", "heavy", "corpus"]
    # class folders named as inputs one by one: their common folder is the root
    spoken = _files([root / "speakers" / "ann" / "s1" / "a.wav", root / "speakers" / "bob" / "s2" / "b.wav"])
    assert assign_labels(spoken, LabelsConfig(source="folder"))["label"].tolist() == ["ann", "bob"]


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
    assert table.attrs["unmatched_rows"] == ["audio/x.wav"]


def test_csv_paths_in_windows_or_macos_spelling_match(tmp_path):
    """``audio\\a.wav`` (Windows separators) and a decomposed é (macOS, NFD) name the stored file."""
    import unicodedata

    audio = tmp_path / "audio"
    files = _files([audio / "sub" / "a.wav", audio / "dog récording.wav"])
    csv = tmp_path / "labels.csv"
    nfd = unicodedata.normalize("NFD", "audio/dog récording.wav")
    csv.write_text(f"path,label\naudio\\sub\\a.wav,x\n{nfd},y\n", encoding="utf-8")
    table = assign_labels(files, LabelsConfig(source="csv", csv=str(csv)))
    assert table["label"].tolist() == ["x", "y"] and table.attrs["unmatched_rows"] == []


def test_a_label_in_two_unicode_spellings_is_one_class(tmp_path):
    """'café' typed (NFC) and 'café' from a macOS name (NFD: e and a combining accent) were two
    classes that print alike (two p_café columns, accuracy halved): one class, NFC, from a CSV,
    a regex or folders."""
    import unicodedata

    nfc, nfd = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    files = _files([tmp_path / n for n in ("a.wav", "b.wav", "c.wav")])
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label,speaker\na.wav,{nfc},{nfd}\nb.wav,{nfd},{nfc}\nc.wav,noise,x\n", encoding="utf-8")
    table = assign_labels(files, LabelsConfig(source="csv", csv=str(csv)))
    assert table["label"].tolist() == [nfc, nfc, "noise"] and table["speaker"].tolist() == [nfc, nfc, "x"]
    named = _files([tmp_path / nfd / "a.wav", tmp_path / nfc / "b.wav"])
    assert assign_labels(named, LabelsConfig(source="parent"))["label"].tolist() == [nfc, nfc]


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
    with pytest.raises(UsageError, match=f"^labels.csv: .*{message}"):  # (named by its key)
        assign_labels(_files([tmp_path / "a.wav"]), LabelsConfig(source="csv", csv=str(csv)))


def test_missing_csv_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="^labels.csv: no such file: "):
        assign_labels(_files([tmp_path / "a.wav"]), LabelsConfig(source="csv", csv=str(tmp_path / "none.csv")))


def test_config_rejects_pattern_without_label_group():
    with pytest.raises(ValueError, match="named group"):
        LabelsConfig(source="regex", pattern=r"(?P<digit>\d)_")


def _csv(tmp_path, text: bytes | str):
    path = tmp_path / "labels.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return LabelsConfig(source="csv", csv=str(path))


def test_csv_labels_lose_surrounding_spaces_and_blank_ones_are_missing(tmp_path):
    a, b, c = (str(tmp_path / n) for n in ("a.wav", "b.wav", "c.wav"))
    cfg = _csv(tmp_path, f"path,label\n{a}, 3\n{b},3\n{c},  \n")
    assert assign_labels(_files([a, b, c]), cfg)["label"].tolist() == ["3", "3", None]


@pytest.mark.parametrize("text, message", [
    (b"path,label\n/x/z\xe9ro.wav,0\n", "not UTF-8 text"),
    (b"", "is empty"),
    ("path,label\n/x/a.wav,1\n/x/b.wav,2,extra,more\n", "Expected 2 fields"),
    ("path\tlabel\n/x/a.wav\t1\n", "missing: .'label', 'path'.; found: 'path"),  # a TSV
    ("path,label,split\n/x/a.wav,1,test\n", "may not define the columns ['split']"),
])
def test_a_csv_that_cannot_be_read_as_labels_is_a_usage_error(tmp_path, text, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        assign_labels(_files(["/x/a.wav"]), _csv(tmp_path, text))


def test_one_file_under_two_spellings_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    a = tmp_path / "sub" / "a.wav"
    cfg = _csv(tmp_path, f"path,label\n{a},0\nsub/../sub/a.wav,9\n")
    with pytest.raises(UsageError, match="more than once"):
        assign_labels(_files([str(a)]), cfg)


def test_a_second_copy_of_a_listed_file_gets_no_label_by_its_name(tmp_path):
    """A/001.wav is in the CSV, B/001.wav is not: the name fallback (for CSVs written where the
    folders were elsewhere) must not label the copy, which could land on the other split."""
    listed, copy, moved = tmp_path / "A" / "001.wav", tmp_path / "B" / "001.wav", tmp_path / "C" / "002.wav"
    cfg = _csv(tmp_path, f"path,label\n{listed},x\n/elsewhere/002.wav,y\n")
    labels = assign_labels(_files([str(listed), str(copy), str(moved)]), cfg)["label"].tolist()
    assert labels == ["x", None, "y"]  # 002.wav, listed under a folder that moved, still matches


def test_folder_labels_that_name_splits_are_refused(tmp_path):
    from jobs.train import _refuse_split_folders

    root = tmp_path / "corpus"
    files = _files([root / "train" / "dog" / "a.wav", root / "test" / "cat" / "b.wav"])
    labelled = assign_labels(files, LabelsConfig(source="folder"))
    with pytest.raises(UsageError, match="named like dataset splits \\(test, train\\).*labels.source: parent"):
        _refuse_split_folders(labelled, str(root))
    assert assign_labels(files, LabelsConfig(source="parent"))["label"].tolist() == ["dog", "cat"]


def test_folder_labels_below_each_input_folder(tmp_path):
    """Each input folder the run read is a root; an input folder holding its files directly is a
    class folder itself (input: [esc50/dog, urban/siren] labelled esc50 and urban by the
    corpus root alone)."""
    import json

    from jobs.labels import labels_from_folder, stored_inputs

    leaves = _files([tmp_path / "esc50" / "dog" / "a.wav", tmp_path / "urban" / "siren" / "b.wav"])
    inputs = [str(tmp_path / "esc50" / "dog"), str(tmp_path / "urban" / "siren")]
    assert labels_from_folder(leaves["path"], inputs)["label"].tolist() == ["dog", "siren"]
    splits = _files([tmp_path / "s1" / "dog" / "a.wav", tmp_path / "s2" / "cat" / "b.wav", tmp_path / "s1" / "x.wav"])
    assert labels_from_folder(splits["path"], [str(tmp_path / "s1"), str(tmp_path / "s2")])["label"].tolist() == [
        "dog", "cat", None]
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": {"input": inputs + [str(tmp_path / "gone")]}}))
    for folder in inputs:
        os.makedirs(folder, exist_ok=True)
    assert stored_inputs(run) == inputs  # folders that exist, as the run named them


def test_folder_labels_of_input_folders_named_as_urls(tmp_path):
    """An input class folder named as a file:// URL (read by discovery as the local path) was not
    a root: its class was silently missing; an object-store prefix is a root too."""
    import json

    from jobs.labels import labels_from_folder, stored_inputs

    dog, cat = tmp_path / "dc" / "dog", tmp_path / "dc" / "cat"
    for folder in (dog, cat):
        folder.mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    named = [f"file://{dog}", str(cat), "s3://bucket/corpus/", "s3://bucket/other/*.wav"]
    (run / "manifest.json").write_text(json.dumps({"config": {"input": named}}))
    inputs = stored_inputs(run)
    assert inputs == [str(dog), str(cat), "s3://bucket/corpus"]
    paths = pd.Series([str(dog / "a.wav"), str(cat / "b.wav"), "s3://bucket/corpus/rain/x.wav",
                       "s3://bucket/corpus/wind/deep/y.wav"])
    assert labels_from_folder(paths, inputs)["label"].tolist() == ["dog", "cat", "rain", "wind"]
