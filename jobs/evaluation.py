"""An honest evaluation on the held-out files: report.json, report.md, confusion.png.

Files are the unit: a file's prediction is the class with the highest mean probability over its
segments (as ``audiofeat score`` aggregates). Segment accuracy is reported beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["evaluate", "write_report"]


def evaluate(true_labels, predicted_labels, classes: list[str], *, segment_accuracy: float | None = None,
             n_segments: int | None = None) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix
    (rows: true class, columns: predicted class, in ``classes`` order).

    A class with no held-out file that is never predicted either (a class of one labelled file,
    all of it in training) has no figures: its precision, recall and F1 are None ("n/a" in the
    report), and macro F1 averages the other classes, as scikit-learn's does by default over
    the classes present in the truth or the predictions; counted as 0 it lowered macro F1 of a
    perfect model."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    true_labels = np.asarray(true_labels, dtype=object)
    predicted_labels = np.asarray(predicted_labels, dtype=object)
    label_set = list(classes) + sorted(set(true_labels) - set(classes))  # unseen test classes count too
    precision, recall, f1, support = precision_recall_fscore_support(
        true_labels, predicted_labels, labels=label_set, zero_division=0
    )
    seen = set(true_labels) | set(predicted_labels)
    measured = [label for label in label_set if label in seen]

    def figure(values, i):
        return float(values[i]) if label_set[i] in seen else None

    report = {
        "n_files": int(len(true_labels)),
        "accuracy": float(accuracy_score(true_labels, predicted_labels)) if len(true_labels) else float("nan"),
        "macro_f1": float(f1_score(true_labels, predicted_labels, labels=measured, average="macro",
                                   zero_division=0)) if measured else float("nan"),
        "per_class": {
            label: {
                "precision": figure(precision, i),
                "recall": figure(recall, i),
                "f1": figure(f1, i),
                "support": int(support[i]),
            }
            for i, label in enumerate(label_set)
        },
        "classes_without_test_files": [label for label in label_set if label not in seen],
        "labels": label_set,
        "confusion_matrix": confusion_matrix(true_labels, predicted_labels, labels=label_set).tolist(),
    }
    if segment_accuracy is not None:
        report["segment_accuracy"] = float(segment_accuracy)
        report["n_segments"] = int(n_segments or 0)
    return report


def _markdown(report: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    lines.append(f"- held-out files: {report['n_files']}")
    lines.append(f"- accuracy: {report['accuracy']:.4f}")
    lines.append(f"- macro F1: {report['macro_f1']:.4f}")
    if "segment_accuracy" in report:
        lines.append(f"- segment accuracy: {report['segment_accuracy']:.4f} ({report['n_segments']} segments)")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"

    for label, row in report["per_class"].items():
        lines.append(f"| {label} | {cell(row['precision'])} | {cell(row['recall'])} | {cell(row['f1'])} "
                     f"| {row['support']} |")
    unmeasured = report.get("classes_without_test_files") or []
    if unmeasured:
        lines += ["", f"n/a: no held-out file of {', '.join(map(str, unmeasured))} and none predicted "
                      "as such; macro F1 averages the other classes."]
    labels = report["labels"]
    lines += ["", "Confusion matrix (rows: true, columns: predicted)", ""]
    lines.append("| true \\ predicted | " + " | ".join(labels) + " |")
    lines.append("|---|" + "---:|" * len(labels))
    for label, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _confusion_png(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report["confusion_matrix"], dtype=float)
    labels = report["labels"]
    size = max(4.0, 0.45 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=90 if len(labels) > 12 else 0)
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}", fontsize=10)
    if len(labels) <= 30:
        peak = matrix.max() if matrix.size else 0
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if matrix[i, j] > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict, folder: str | Path, title: str = "Evaluation on the held-out split") -> list[Path]:
    """Write report.json, report.md and confusion.png into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "report.json", folder / "report.md", folder / "confusion.png"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(_markdown(report, title))
    _confusion_png(report, paths[2], title)
    return paths
