"""A label (and optional group fields such as speaker) for each file of a run.

Sources (``labels.source`` in the config):
- ``folder``: the name of the file's parent folder;
- ``regex``: named groups of ``labels.pattern`` searched in the file name; ``label`` is the label,
  every other named group becomes a column (FSDD: ``speaker``, ``index``);
- ``csv``: a CSV with columns ``path,label`` and optionally ``group`` or any other columns; a path
  is absolute or relative to the CSV's folder, and may also match by file name when unique.

A file without a label keeps ``label = None``: it is scored, not trained on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from jobs.errors import UsageError
from jobs.train_config import LabelsConfig

__all__ = ["assign_labels", "labels_from_folder", "labels_from_regex", "labels_from_csv"]


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)


def _objects(table: pd.DataFrame) -> pd.DataFrame:
    """Columns of Python strings, with None (never NaN or "") where a value is missing."""
    return pd.DataFrame(
        {c: pd.Series([None if _missing(v) else str(v) for v in table[c]], index=table.index, dtype=object)
         for c in table.columns},
        index=table.index,
    )


def labels_from_folder(paths: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"label": [Path(p).parent.name or None for p in paths]}, index=paths.index)


def labels_from_regex(paths: pd.Series, pattern: str) -> pd.DataFrame:
    compiled = re.compile(pattern)
    names = list(compiled.groupindex)
    rows = []
    for p in paths:
        match = compiled.search(Path(p).name)
        rows.append(match.groupdict() if match else dict.fromkeys(names))
    return _objects(pd.DataFrame(rows, index=paths.index, columns=names))


def labels_from_csv(paths: pd.Series, csv_path: str | Path) -> pd.DataFrame:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UsageError(f"labels CSV not found: {csv_path}")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise UsageError(f"labels CSV {csv_path} needs columns path,label (missing: {sorted(missing)})")
    if table["path"].duplicated().any():
        dup = table.loc[table["path"].duplicated(), "path"].iloc[0]
        raise UsageError(f"labels CSV {csv_path} lists {dup!r} more than once")
    base = csv_path.resolve().parent
    extra = [c for c in table.columns if c != "path"]
    by_abs = {}
    for i, p in enumerate(table["path"]):
        q = Path(p)
        by_abs[str((q if q.is_absolute() else base / q).resolve())] = i
    names = table["path"].map(lambda p: Path(p).name)
    unique_names = names[~names.duplicated(keep=False)]
    by_name = dict(zip(unique_names, unique_names.index))
    rows = []
    for p in paths:
        i = by_abs.get(str(Path(p).resolve()))
        if i is None:
            i = by_name.get(Path(p).name)
        rows.append(table.loc[i, extra].to_dict() if i is not None else dict.fromkeys(extra))
    return _objects(pd.DataFrame(rows, index=paths.index, columns=extra))


def assign_labels(files: pd.DataFrame, config: LabelsConfig) -> pd.DataFrame:
    """``file_id``, ``path``, ``label`` (str or None) and any group columns, one row per file."""
    paths = files["path"].astype(str)
    if config.source == "folder":
        found = labels_from_folder(paths)
    elif config.source == "regex":
        found = labels_from_regex(paths, config.pattern)
    else:
        found = labels_from_csv(paths, config.csv)
    clash = {"file_id", "path"} & set(found.columns)
    if clash:
        raise UsageError(f"labels may not define the columns {sorted(clash)}")
    found = _objects(found)
    result = pd.concat([files[["file_id", "path"]].reset_index(drop=True), found.reset_index(drop=True)], axis=1)
    return result
