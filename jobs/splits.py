"""Train/test splits of the labelled files.

- ``stratified``: per class, a ``test_fraction`` share of its files at random (seeded);
- ``group``: whole groups (speakers, sessions...) go to one side only, chosen so that the test
  side holds about ``test_fraction`` of the files with classes balanced as well as the groups allow;
- ``explicit``: the files whose ``group`` value is in ``test_values`` are the test set (FSDD's
  official split: recording ``index`` 0-4).

Every function returns a Series aligned with the labelled table: ``"train"`` or ``"test"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.errors import UsageError
from jobs.train_config import SplitConfig

__all__ = ["split_files", "stratified_split", "group_split", "explicit_split", "leave_one_group_out",
           "unmatched_test_values"]

TRAIN, TEST = "train", "test"


def _group_values(labelled: pd.DataFrame, group: str) -> pd.Series:
    if group not in labelled.columns:
        others = [c for c in labelled.columns if c not in ("file_id", "path", "label")]
        raise UsageError(
            f"split group {group!r} is not a label field (available: {', '.join(others) or 'none'})"
        )
    values = labelled[group]
    if values.isna().any():
        example = labelled.loc[values.isna(), "path"].iloc[0]
        raise UsageError(f"labelled file {example} has no {group!r} value")
    return values.astype(str)


def stratified_split(labels: pd.Series, test_fraction: float, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    split = pd.Series(TRAIN, index=labels.index, dtype=object)
    for label in sorted(labels.unique()):
        members = labels.index[labels == label].to_numpy()
        if len(members) < 2:
            continue  # a single example can only be learnt from
        n_test = min(len(members) - 1, max(1, int(round(test_fraction * len(members)))))
        split.loc[rng.permutation(members)[:n_test]] = TEST
    return split


def group_split(labels: pd.Series, groups: pd.Series, test_fraction: float, seed: int) -> pd.Series:
    """Whole groups to the test side, greedily: each step adds the group that keeps the test side's
    size closest to ``test_fraction`` of the files and its class mix closest to the whole (ties go
    to the seeded visiting order), and stops when one more group would overshoot more than it
    helps. A group that would take the last training files of a class stays on the training side
    (a class recorded by one speaker, or from one source, is learnt, not only tested)."""
    unique = groups.unique()
    if len(unique) < 2:
        raise UsageError(f"a group split needs at least two groups, found {len(unique)}")
    rng = np.random.default_rng(seed)
    counts = pd.crosstab(groups, labels)  # group x class
    overall = counts.sum(axis=0).to_numpy(float)
    target = test_fraction * overall.sum()
    test_groups: list = []
    test_counts = np.zeros_like(overall)
    remaining = list(rng.permutation(counts.index.to_numpy()))
    while remaining and test_counts.sum() < target and len(test_groups) < len(unique) - 1:
        best, best_cost = None, None
        for g in remaining:
            trial = test_counts + counts.loc[g].to_numpy(float)
            if ((trial >= overall) & (overall > 0)).any():
                continue  # every file of one of its classes would be on the test side
            share = trial / max(trial.sum(), 1.0)
            cost = abs(trial.sum() - target) / overall.sum() + np.abs(share - overall / overall.sum()).sum()
            if best_cost is None or cost < best_cost:
                best, best_cost = g, cost
        if best is None:
            break  # each group left holds the last training files of a class
        size = counts.loc[best].to_numpy(float).sum()
        if test_groups and abs(test_counts.sum() + size - target) >= abs(test_counts.sum() - target):
            break  # one more group would take the test side further from its target size
        remaining.remove(best)
        test_groups.append(best)
        test_counts += counts.loc[best].to_numpy(float)
    return pd.Series(np.where(groups.isin(test_groups), TEST, TRAIN), index=labels.index, dtype=object)


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return int(a) == int(b)
    except ValueError:
        return False


def unmatched_test_values(labelled: pd.DataFrame, config: SplitConfig) -> list[str]:
    """The ``split.test_values`` of an explicit split that match no labelled file's group (a
    typo shrinks the test set; a corpus that is a subset may lack some): for the train log."""
    if config.method != "explicit" or config.group not in labelled.columns:
        return []
    present = [str(v) for v in labelled.loc[labelled["label"].notna(), config.group].dropna().unique()]
    return [str(w) for w in config.test_values if not any(_same_value(v, str(w)) for v in present)]


def explicit_split(groups: pd.Series, test_values: list[str]) -> pd.Series:
    wanted = [str(v) for v in test_values]
    is_test = groups.map(lambda v: any(_same_value(v, w) for w in wanted))
    return pd.Series(np.where(is_test, TEST, TRAIN), index=groups.index, dtype=object)


def split_files(labelled: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """``train``/``test`` for each labelled row (``label`` not None) of ``labelled``."""
    if labelled.empty:
        raise UsageError("the store holds no files (every input failed, or none was found: see "
                         "failures.parquet): nothing to train on")
    labelled = labelled[labelled["label"].notna()]
    if labelled.empty:
        raise UsageError("no file has a label (check labels: in the config: a regex is matched "
                         "against file names, CSV rows must name stored files, and folder labels "
                         "are the folders below each input folder, where a file lying directly in "
                         "an input folder with subfolders has none): nothing to train on")
    labels = labelled["label"]
    if config.method == "stratified":
        split = stratified_split(labels, config.test_fraction, config.seed)
    elif config.method == "group":
        split = group_split(labels, _group_values(labelled, config.group), config.test_fraction, config.seed)
    else:
        split = explicit_split(_group_values(labelled, config.group), config.test_values)
    n_train, n_test = int((split == TRAIN).sum()), int((split == TEST).sum())
    if n_train == 0:
        raise UsageError(f"the {config.method} split leaves no file to train on")
    if n_test == 0:
        why = (f": each {config.group!r} group holds every file of some class, which would then "
               "never be trained on" if config.method == "group" else "")
        raise UsageError(f"the {config.method} split leaves no file to test on{why}")
    return split


def leave_one_group_out(labelled: pd.DataFrame, group: str):
    """Yield ``(group_value, split)`` for each group: that group is the test set."""
    labelled = labelled[labelled["label"].notna()]
    groups = _group_values(labelled, group)
    for value in sorted(groups.unique()):
        yield value, pd.Series(np.where(groups == value, TEST, TRAIN), index=labelled.index, dtype=object)
