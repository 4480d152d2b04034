"""The held-out evaluation's figures: a class without held-out files is n/a, not a zero."""

from __future__ import annotations

import json

from jobs.evaluation import evaluate, write_report


def test_a_class_with_no_test_file_is_not_counted_as_f1_zero(tmp_path):
    truth = ["dog", "dog", "rain", "rain"]
    report = evaluate(truth, truth, ["bird", "dog", "rain"])
    assert report["accuracy"] == 1.0 and report["macro_f1"] == 1.0
    assert report["per_class"]["bird"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert report["classes_without_test_files"] == ["bird"]
    write_report(report, tmp_path)
    assert "| bird | n/a | n/a | n/a | 0 |" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["per_class"]["bird"]["f1"] is None


def test_a_class_predicted_but_never_true_counts_against_macro_f1():
    report = evaluate(["dog", "rain"], ["dog", "bird"], ["bird", "dog", "rain"])
    assert report["per_class"]["bird"]["precision"] == 0.0 and report["per_class"]["rain"]["recall"] == 0.0
    assert abs(report["macro_f1"] - (0 + 1 + 0) / 3) < 1e-12 and not report["classes_without_test_files"]
