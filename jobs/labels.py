"""A label (and optional group fields such as speaker) for each file of a run.

Sources (``labels.source`` in the config):
- ``folder``: class folders, as torchvision's ImageFolder and Keras' directory datasets take
  them: the first folder below each input folder of the run (``ROOT/dog/a.wav`` and
  ``ROOT/dog/night/b.wav`` are both ``dog``, a file lying directly in ``ROOT`` has no label),
  an input folder that holds its files directly being a class folder itself;
- ``parent``: the name of the file's own folder (``ROOT/dog/night/b.wav`` is ``night``);
- ``regex``: named groups of ``labels.pattern`` searched in the file name; ``label`` is the label,
  every other named group becomes a column (FSDD: ``speaker``, ``index``);
- ``csv``: a CSV with columns ``path,label`` and optionally ``group`` or any other columns; a path
  is absolute or relative to the CSV's folder, and may also match by file name when unique.

A file without a label keeps ``label = None``: it is scored, not trained on.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pandas as pd

from jobs.errors import UsageError
from jobs.train_config import LabelsConfig

__all__ = ["assign_labels", "corpus_root", "stored_inputs", "input_roots", "labels_from_folder", "labels_from_parent", "labels_from_regex",
           "labels_from_csv"]


def _missing(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) \
        or (isinstance(value, float) and value != value)


def _objects(table: pd.DataFrame) -> pd.DataFrame:
    """Columns of Python strings without surrounding spaces (" 3" and "3" are one class) in one
    Unicode spelling (NFC: "café" typed and "café" from a macOS file name, e and a combining
    accent, are one class, not two that print alike), with None (never NaN, "" or blanks) where
    a value is missing."""
    return pd.DataFrame(
        {c: pd.Series([None if _missing(v) else _nfc(str(v).strip()) for v in table[c]], index=table.index,
                      dtype=object)
         for c in table.columns},
        index=table.index,
    )


def corpus_root(paths) -> str | None:
    """The deepest folder holding every path (None for none, or paths that share no folder:
    local paths and URLs mixed)."""
    folders = {os.path.dirname(str(p)) for p in paths}
    if not folders:
        return None
    try:
        return os.path.commonpath(sorted(folders))
    except ValueError:
        return None


def stored_inputs(out_dir) -> list[str] | None:
    """The input folders an extract run read (its manifest's ``config.input``), or None."""
    import json

    try:
        with open(os.path.join(str(out_dir), "manifest.json"), encoding="utf-8") as handle:
            named = json.load(handle)["config"]["input"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return input_roots(named)


def input_roots(named) -> list[str]:
    """The folders among a config's ``input`` (a string or a list): :func:`_input_root` of each."""
    named = [named] if isinstance(named, str) else list(named or [])
    roots = (_input_root(p) for p in named if isinstance(p, str))
    return [r for r in roots if r is not None]


def _input_root(named: str) -> str | None:
    """The folder an input names, as its files' stored paths begin: a local folder (also as a
    ``file://`` URL, which discovery reads as the local path), or a URL prefix; None for a file,
    a glob or a list."""
    if named.startswith("file://"):
        named = named[len("file://"):]
    if "://" in named:  # an object-store prefix: its files' paths are URLs under it
        return None if any(c in named for c in "*?[") else named.rstrip("/")
    return os.path.normpath(named) if os.path.isdir(named) else None


def labels_from_folder(paths: pd.Series, inputs: list[str] | None = None) -> pd.DataFrame:
    """Class folders, as ImageFolder takes them below its root. Each input folder that the run
    read (``inputs``) is a root: a file takes the name of the first folder below it, and one
    lying in it directly has no label; an input folder whose files all lie in it directly is a
    class folder itself (``input: [data/dog, data/cat]``). Files from other inputs (globs, lists,
    files) take the first folder below their :func:`corpus_root`."""
    labels = pd.Series([None] * len(paths), index=paths.index, dtype=object)
    rest = []
    roots = sorted({r.rstrip("/") if "://" in r else os.path.normpath(r) for r in inputs or []},
                   key=len, reverse=True)
    under = {r: [] for r in roots}
    for i, p in zip(paths.index, paths):
        root = next((r for r in roots if str(p).startswith(r.rstrip(os.sep) + os.sep)), None)
        (under[root] if root is not None else rest).append((i, str(p)))
    for root, members in under.items():
        start = len(root.rstrip(os.sep)) + 1  # (paths and URLs alike: the part below the root)
        nested = [(i, p[start:].split(os.sep)) for i, p in members]
        if nested and all(len(parts) == 1 for _, parts in nested):  # a class folder named as input
            for i, _ in nested:
                labels[i] = os.path.basename(root.rstrip(os.sep)) or None
            continue
        for i, parts in nested:
            labels[i] = parts[0] if len(parts) > 1 else None
    if rest:
        top = corpus_root([p for _, p in rest])
        for i, p in rest:
            parts = os.path.relpath(p, top).split(os.sep) if top else []
            labels[i] = parts[0] if len(parts) > 1 and parts[0] not in ("", ".", "..") else (
                None if top else (Path(p).parent.name or None))
    return pd.DataFrame({"label": labels}, index=paths.index)


def labels_from_parent(paths: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"label": [Path(p).parent.name or None for p in paths]}, index=paths.index)


def labels_from_regex(paths: pd.Series, pattern: str) -> pd.DataFrame:
    compiled = re.compile(pattern)
    names = list(compiled.groupindex)
    rows = []
    for p in paths:
        match = compiled.search(Path(p).name)
        rows.append(match.groupdict() if match else dict.fromkeys(names))
    return _objects(pd.DataFrame(rows, index=paths.index, columns=names))


def labels_csv_sha256(config) -> str | None:
    """sha256 of the labels CSV's bytes when labels come from one (``source: csv``), else None:
    what a trained model and its scores depend on besides the config (train's and score's
    fingerprints)."""
    from jobs.models.onnx_model import file_sha256

    csv = getattr(config, "csv", None) if getattr(config, "source", None) == "csv" else None
    return file_sha256(csv) if csv and Path(csv).is_file() else None


def labels_from_csv(paths: pd.Series, csv_path: str | Path) -> pd.DataFrame:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UsageError(f"labels.csv: no such file: {csv_path}")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"labels.csv: {csv_path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"labels.csv: {csv_path} is empty (it needs columns path,label)") from None
    except pd.errors.ParserError as exc:
        raise UsageError(f"labels.csv: {csv_path}: {' '.join(str(exc).split())}") from None
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise UsageError(f"labels.csv: {csv_path} needs columns path,label (missing: {sorted(missing)}; "
                         f"found: {', '.join(map(repr, table.columns))})")
    if table["path"].duplicated().any():
        dup = table.loc[table["path"].duplicated(), "path"].iloc[0]
        raise UsageError(f"labels.csv: {csv_path} lists {dup!r} more than once")
    base = csv_path.resolve().parent
    extra = [c for c in table.columns if c != "path"]
    by_abs = {}
    for i, p in enumerate(table["path"]):
        q = Path(_csv_path(p))
        resolved = _nfc(str((q if q.is_absolute() else base / q).resolve()))
        if resolved in by_abs:  # one file under two spellings (relative and absolute, say)
            raise UsageError(f"labels.csv: {csv_path} lists {resolved} more than once "
                             f"(as {table['path'].iloc[by_abs[resolved]]!r} and {p!r})")
        by_abs[resolved] = i
    resolved_paths = [_nfc(str(Path(p).resolve())) for p in paths]
    exact = [by_abs.get(r) for r in resolved_paths]
    # A stored file that no row names exactly may match a row by its file name, when the name is
    # the only one of its kind both in the CSV and among the stored files, and that row named no
    # stored file itself (a CSV written elsewhere, its folders moved): never a second copy of a
    # labelled file (A/001.wav labelled, B/001.wav not in the CSV), which would leak into the test.
    names = table["path"].map(lambda p: _nfc(Path(_csv_path(p)).name))
    used = {i for i in exact if i is not None}
    unique_names = names[~names.duplicated(keep=False)]
    by_name = {name: i for name, i in zip(unique_names, unique_names.index) if i not in used}
    stored_names = pd.Series([_nfc(Path(p).name) for p in paths])
    unique_stored = set(stored_names[~stored_names.duplicated(keep=False)])
    rows = []
    for name, i in zip(stored_names, exact):
        if i is None and name in unique_stored:
            i = by_name.get(name)
            if i is not None:
                used.add(i)
        rows.append(table.loc[i, extra].to_dict() if i is not None else dict.fromkeys(extra))
    result = _objects(pd.DataFrame(rows, index=paths.index, columns=extra))
    # rows that label no stored file: a typo, a file that failed extraction, another corpus
    result.attrs["unmatched_rows"] = [p for i, p in enumerate(table["path"]) if i not in used]
    return result


def _nfc(text: str) -> str:
    """One spelling of a Unicode name (macOS writes é as e and a combining accent: NFD)."""
    return unicodedata.normalize("NFC", text)


def _csv_path(text: str) -> str:
    """A CSV path written with Windows separators (``folder\\a.wav``, no ``/``) as this
    system's; a path with both keeps its backslashes (a legal character in a POSIX name)."""
    return text.replace("\\", "/") if "\\" in text and "/" not in text and os.sep == "/" else text


def assign_labels(files: pd.DataFrame, config: LabelsConfig, inputs: list[str] | None = None) -> pd.DataFrame:
    """``file_id``, ``path``, ``label`` (str or None) and any group columns, one row per file;
    ``inputs``: the input folders the run read (folder labels, :func:`labels_from_folder`)."""
    paths = files["path"].astype(str)
    if config.source == "folder":
        found = labels_from_folder(paths, inputs)
    elif config.source == "parent":
        found = labels_from_parent(paths)
    elif config.source == "regex":
        found = labels_from_regex(paths, config.pattern)
    else:
        found = labels_from_csv(paths, config.csv)
    clash = {"file_id", "path", "split"} & set(found.columns)
    if clash:  # the training table's own columns (split: train or test, from split:)
        raise UsageError(f"labels may not define the columns {sorted(clash)} (a CSV column or regex "
                         "group of that name: rename it)")
    unmatched = found.attrs.get("unmatched_rows", [])
    found = _objects(found)
    result = pd.concat([files[["file_id", "path"]].reset_index(drop=True), found.reset_index(drop=True)], axis=1)
    result.attrs["unmatched_rows"] = unmatched  # CSV rows naming no stored file
    return result
