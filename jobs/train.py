"""``audiofeat train CONFIG.yaml``: fit a classifier on a run's feature store.

Stages: labels -> segments -> split -> read inputs from the store (Dask) -> fit -> export ONNX ->
evaluate the exported model on the held-out files -> write the model folder
``OUT/models/<name>/`` (model.onnx, model.json, split.parquet, report.json, report.md,
confusion.png).

``train.model: auto`` takes the CNN when torch (the ``cnn`` extra) is installed, else the
baseline, and says which. The pipeline (``audiofeat run``) calls :func:`run_train`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from jobs.errors import UsageError
from jobs.progress import plural

__all__ = ["add_arguments", "main", "run_train", "train_model", "choose_model_kind", "TrainedModel"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="job config (YAML) with labels/segments/split/train sections")
    parser.add_argument("--out", help="run directory holding features.zarr (default: the config's `out`)")
    parser.add_argument("--model", choices=["auto", "baseline", "cnn"],
                        help="which classifier (default: train.model; auto = CNN when torch is installed)")
    parser.add_argument("--name", help="model name: the folder OUT/models/NAME (default: train.name)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: train.epochs)")
    parser.add_argument("--force", action="store_true",
                        help="train again even when the model is up to date with the store and settings")


def main(args: argparse.Namespace) -> int:
    from jobs.config import load_config

    config = load_config(args.config)
    if args.out is not None and not args.out.strip():
        raise UsageError("--out: an empty path (an unset variable?); name the run folder")
    out_dir = args.out or config.out
    if not out_dir:
        raise UsageError("no run directory: give --out DIR or `out:` in the config")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    return run_train(config, out_dir, model=args.model, name=args.name, epochs=args.epochs, force=args.force)


def run_train(config, out_dir, *, model: str | None = None, name: str | None = None,
              epochs: int | None = None, force: bool = False, log=None) -> int:
    """Train per ``config`` (a ``jobs.config.JobConfig``: its ``labels``, ``segments``, ``split``
    and ``train`` sections, defaults where absent) on the store in ``out_dir``; exit status 0.

    ``model``/``name``/``epochs`` override ``train.model``/``train.name``/``train.epochs``. A model
    already trained on the same store with the same settings is kept (said so) unless ``force``.
    """
    from jobs.config import as_job_config
    from jobs.train_config import LabelsConfig, SegmentsConfig, SplitConfig, TrainConfig

    config = as_job_config(config, strict=False)  # also a YAML path or a mapping; fields set after loading checked
    log = log or _print
    train_cfg = config.train or TrainConfig()
    updates = {k: v for k, v in {"model": model, "name": name, "epochs": epochs}.items() if v is not None}
    if updates:  # validated as the config's own values are (a --name that is no folder name)
        from pydantic import ValidationError

        try:
            train_cfg = TrainConfig.model_validate({**train_cfg.model_dump(), **updates})
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(p) for p in error["loc"])
            raise UsageError(f"--{key}: {error['msg'].removeprefix('Value error, ')}") from None
    from jobs.outdir import OutDir, is_url

    if is_url(out_dir):  # an fsspec URL: with the config's storage options
        out_dir = OutDir(out_dir, getattr(config, "out_storage_options", None))
    from jobs.outdir import run_lock

    # a local run folder is locked meanwhile (OUT/.lock): not trained on while extract rewrites
    # the store, nor while score loads the model or another train writes it (no folder: the
    # store's absence is said by train_model, before the lock would make the folder)
    lock = (run_lock(out_dir, "train") if os.path.isdir(os.path.join(str(out_dir), "features.zarr"))
            else contextlib.ExitStack())
    with contextlib.closing(lock):
        _note_other_features(config, out_dir, log)
        trained = train_model(
            out_dir,
            labels_cfg=config.labels or LabelsConfig(),
            segments_cfg=config.segments or SegmentsConfig(),
            split_cfg=config.split or SplitConfig(),
            train_cfg=train_cfg,
            log=log,
            force=force,
        )
    if trained.up_to_date:
        return 0
    report = trained.report
    # a URL run: its models/NAME, not the staging folder; a local one absolute, as extract and
    # score print theirs
    where = trained.location or Path(os.path.abspath(trained.folder))
    shown_report = f"{str(where).rstrip('/')}/report.md" if trained.location else where / "report.md"
    log(f"train: model {trained.meta['kind']} written to {where}")
    log(f"train: held-out accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f} "
        f"on {report['n_files']} files (report: {shown_report})")
    return 0


def _note_other_features(config, out_dir, log) -> None:
    """Say so when the config names features that are not the store's (``train CONFIG --out
    OTHER_RUN``): training reads the store's features, whatever the config says."""
    if "features" not in getattr(config, "model_fields_set", ()):
        return
    from jobs.config import config_hash, feature_config
    from jobs.store import store_attrs

    try:
        attrs = store_attrs(out_dir)
    except Exception:  # noqa: BLE001 - no readable store: train_model says so
        return
    if attrs and attrs.get("config_hash") != config_hash(feature_config(config)):
        log("train: note: the store was extracted with audio/frames/features settings other than "
            "this config's; training uses the store's features as stored")


# folder names that name a dataset's split, not a class
SPLIT_FOLDER_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation",
                                "dev", "eval", "evaluation", "holdout"})


def _refuse_split_folders(labelled, root: str) -> None:
    """Folder labels that are all split names (ROOT/train/dog/..., ROOT/test/dog/...): a
    classifier of train against test is never what is meant. ``root``: where they were found."""
    names = {str(v) for v in labelled["label"].dropna().unique()}
    if names and all(n.lower() in SPLIT_FOLDER_NAMES for n in names):
        raise UsageError(f"labels.source: folder takes the folders below {root} as classes, and they "
                         f"are named like dataset splits ({', '.join(sorted(names))}); use "
                         "labels.source: parent (each file's own folder), or extract one split")


def check_labels_before_extract(config) -> None:
    """What train would refuse about the labels alone, told before ``run`` extracts a corpus
    (a refusal after hours of extraction wastes them): folder classes named like splits, fewer
    than 2 classes among the files, a labels CSV that cannot be read. Labels come from the files
    discovery finds now; local inputs only (listing an object store twice costs requests)."""
    import pandas as pd

    from jobs.discover import discover
    from jobs.labels import assign_labels, input_roots
    from jobs.plan import file_id
    from jobs.train_config import LabelsConfig

    named = config.input if isinstance(config.input, list) else [config.input]
    if config.input is None or any("://" in str(n) and not str(n).startswith("file://") for n in named):
        return
    labels_cfg = config.labels or LabelsConfig()
    try:
        paths = discover(config.input).paths
    except UsageError as exc:  # an input that is not there: extract's to say, not train's
        exc.stage = "extract"
        raise
    if not paths:
        return
    inputs = input_roots(config.input)
    files = pd.DataFrame({"file_id": [file_id(p) for p in paths], "path": paths})
    labelled = assign_labels(files, labels_cfg, inputs if labels_cfg.source == "folder" else None)
    where = ", ".join(inputs) if inputs else "the corpus root"
    if labels_cfg.source == "folder":
        _refuse_split_folders(labelled, where)
    classes = sorted(labelled["label"].dropna().unique())
    if len(classes) < 2:
        hint = (f": the name of the first folder below {where}" if labels_cfg.source == "folder"
                else "")
        raise UsageError(f"the inputs' files have {plural(len(classes), 'class', 'classes')} "
                         f"({', '.join(classes) or 'none'}); "
                         f"a classifier needs at least 2 (labels come from labels.source: "
                         f"{labels_cfg.source}{hint}); nothing was extracted")


def _folder_root(inputs: list[str] | None, store) -> str:
    """Where folder labels are found, for messages: the run's input folders, else the corpus root."""
    from jobs.labels import corpus_root

    return ", ".join(inputs) if inputs else (corpus_root(store.files["path"]) or "the corpus root")


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def choose_model_kind(requested: str, input_feature: str = "melspectrogram") -> tuple[str, str]:
    """(kind, sentence saying why) for ``auto``/``baseline``/``cnn``; the CNN's input is
    ``input_feature`` (``train.input_feature``)."""
    from jobs.models.cnn import torch_available

    patches = "log-mel patches" if input_feature == "melspectrogram" else f"{input_feature} patches"

    if requested == "baseline":
        return "baseline", "model: baseline (statistics of stored features, scikit-learn MLP)"
    if requested == "cnn":
        if not torch_available():
            raise UsageError("train.model is 'cnn' but torch is not installed (pip install 'audiofeat[cnn]')")
        return "cnn", f"model: CNN on {patches} (torch)"
    if torch_available():
        return "cnn", f"model: auto -> CNN on {patches}, because torch is installed"
    return "baseline", ("model: auto -> baseline (statistics of stored features, scikit-learn MLP), "
                        "because torch is not installed (pip install 'audiofeat[cnn]' for the CNN)")


# ---------------------------------------------------------------- stages


class TrainedModel:
    def __init__(self, folder, meta: dict, report: dict, up_to_date: bool = False):
        self.folder, self.meta, self.report, self.up_to_date = folder, meta, report, up_to_date
        self.location = None  # where the model folder went when that is a URL (folder: a local copy)


def training_fingerprint(store, kind: str, labels_cfg, segments_cfg, split_cfg, train_cfg) -> str:
    """sha256 of everything a trained model depends on: the store (feature config and file
    index), the labels (and the labels CSV's bytes), segments, split and training settings."""
    import hashlib
    import json

    from jobs.labels import labels_csv_sha256
    from jobs.models.inputs import INPUTS_VERSION

    inputs = {
        "inputs_version": INPUTS_VERSION,
        "store_config_hash": store.config_hash,
        "files_sha256": store.files_sha256(),
        "kind": kind,
        "labels": labels_cfg.model_dump(),
        # folder labels changed meaning (class folders below each input, not each file's own
        # folder): a model trained under the old rule is out of date
        **({"folder_labels": "class folders below the inputs"} if labels_cfg.source == "folder" else {}),
        "labels_csv_sha256": labels_csv_sha256(labels_cfg),
        "segments": segments_cfg.model_dump(),
        "split": split_cfg.model_dump(),
        "train": train_cfg.model_dump(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _up_to_date_model(folder, fingerprint: str):
    import json

    from jobs.models.onnx_model import META_FILE, MODEL_FILE

    try:
        meta = json.loads((folder / META_FILE).read_text())
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("training_fingerprint") != fingerprint or not (folder / MODEL_FILE).is_file():
        return None
    return TrainedModel(folder, meta, report, up_to_date=True)


def _refuse_case_clashes(classes: list[str]) -> None:
    """Classes whose names differ only in letter case get one probability column in SQL (DuckDB's
    names ignore case: ``p_Chirp`` and ``p_chirp`` are the same column there): refused."""
    by_folded: dict[str, list[str]] = {}
    for cls in classes:
        by_folded.setdefault(str(cls).casefold(), []).append(str(cls))
    clashes = [names for names in by_folded.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" and ".join(repr(n) for n in names) for names in clashes)
        raise UsageError(f"labels {shown} differ only in letter case: their probability columns would be one "
                         "column in SQL (names there ignore case); give them distinct names")


def _input_spec(kind: str, store, train_cfg, geometry) -> dict:
    from jobs.models.inputs import cnn_scale, patch_pad_value, statistics_input_spec

    stored = store.feature_names
    feature_config = store.feature_config.get("features", {})
    if kind == "cnn":
        name = train_cfg.input_feature
        if name not in stored:
            raise UsageError(f"train.input_feature {name!r} is not in the store (stored: {', '.join(stored)})")
        return {
            "kind": "patch",
            "feature": name,
            "dim": store.dim(name),
            "length_frames": geometry.length_frames,
            "scale": (scale := cnn_scale(name, feature_config.get(name))),
            "pad_value": patch_pad_value(scale),
        }
    if train_cfg.features:
        missing = [f for f in train_cfg.features if f not in stored]
        if missing:
            raise UsageError(f"train.features {missing} are not in the store (stored: {', '.join(stored)})")
        features = list(train_cfg.features)
    else:
        # every stored feature; mel/STFT bands are left out when MFCCs (their summary) are there
        features = [f for f in stored if not ("mfcc" in stored and f in ("melspectrogram", "stft"))]
    return statistics_input_spec(features, {f: store.dim(f) for f in features}, n_parts=4,
                                 feature_config=feature_config)


def read_inputs(store, files, geometry, spec: dict, *, max_segments: int = 2048, log=None):
    """Model inputs for every segment of ``files``, read from the Zarr store by Dask tasks
    (one per run of about ``max_segments`` consecutive segments: several short files, or a
    piece of a long one, whose frames are then read a piece at a time; a 3-hour file read
    whole held 260 MB of frames at once). Returns ``(inputs, segments)``."""
    import dask
    import numpy as np
    import pandas as pd

    from jobs.models.inputs import build_inputs, input_features
    from jobs.segments import plan_segments, read_block

    segments = plan_segments(files, geometry)
    features = input_features(spec)

    def one_batch(batch_segments):
        return build_inputs(read_block(store, batch_segments, features), batch_segments, spec)

    parts = [segments.iloc[a:a + max_segments] for a in range(0, len(segments), max_segments)]
    tasks = [dask.delayed(one_batch)(part) for part in parts]
    if log:
        log(f"train: reading {len(segments)} segments of {len(files)} files from the store "
            f"({plural(len(tasks), 'Dask task')})")
    results = dask.compute(*tasks, scheduler="threads")
    inputs = np.concatenate(results, axis=0) if results else np.zeros((0,), np.float32)
    return inputs, pd.concat(parts, ignore_index=True) if parts else segments


def file_probabilities(segments, probabilities, classes):
    """Mean segment probability per file -> DataFrame indexed by file_id, one column per class."""
    import pandas as pd

    frame = pd.DataFrame(probabilities, columns=list(classes))
    frame["file_id"] = segments["file_id"].to_numpy()
    return frame.groupby("file_id", sort=False).mean()


def _versions(kind: str) -> dict:
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    names = ["audiofeat", "numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "zarr"]
    if kind == "cnn":
        names.append("torch")
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("audiofeat") is None:
        import jobs

        versions["audiofeat"] = jobs.__version__
    return versions


def segment_weights(file_ids, labels, balance: str):
    """Training weights of segments (their files and labels) for ``train.balance``, with mean 1:
    None for ``"segments"`` (all alike); ``"files"``: 1 / the segments of its file; ``"classes"``:
    1 / the segments of its class. Both models draw each epoch's segments in proportion to them."""
    if balance == "segments" or len(file_ids) == 0:
        return None
    import numpy as np
    import pandas as pd

    groups = pd.Series(np.asarray(file_ids if balance == "files" else labels))
    weights = 1.0 / groups.map(groups.value_counts()).to_numpy(dtype=np.float64)
    return weights * (len(weights) / weights.sum())


def fit_model(kind: str, x_train, y_train, classes: list[str], spec: dict, train_cfg, log,
              sample_weight=None):
    """Fit and export (``sample_weight``: per training segment, or None for equal weights).
    Returns ``(onnx_bytes, native_predict, settings_json, history)``."""
    import os

    if kind == "baseline":
        from jobs.models.baseline import BaselineSettings, export_baseline, train_baseline

        settings = BaselineSettings(
            hidden_units=train_cfg.hidden_units, epochs=train_cfg.epochs or 100,
            batch_size=train_cfg.batch_size or 128, learning_rate=train_cfg.learning_rate, seed=train_cfg.seed,
        )
        pipeline = train_baseline(x_train, y_train, len(classes), settings, log=log, sample_weight=sample_weight)
        onnx_bytes = export_baseline(pipeline, x_train.shape[1])
        return onnx_bytes, pipeline.predict_proba, settings.to_json(), pipeline.history
    from jobs.models.cnn import CnnSettings, default_epochs, export_cnn, predict_torch, train_cnn

    batch_size = train_cfg.batch_size or 64
    epochs = train_cfg.epochs or default_epochs(len(x_train), batch_size)
    if not train_cfg.epochs and epochs != 30:
        log(f"train: small training set ({len(x_train)} segments): {epochs} epochs instead of 30, so that "
            "the CNN gets enough optimiser steps (set train.epochs to choose)")
    settings = CnnSettings(
        n_mels=spec["dim"], length_frames=spec["length_frames"], n_classes=len(classes), scale=spec["scale"],
        widths=train_cfg.cnn_widths, epochs=epochs, batch_size=batch_size,
        learning_rate=train_cfg.learning_rate, seed=train_cfg.seed,
    )
    net = train_cnn(x_train, y_train, settings, threads=train_cfg.threads or os.cpu_count(), log=log,
                    sample_weight=sample_weight)
    onnx_bytes = export_cnn(net, settings)
    return onnx_bytes, (lambda x: predict_torch(net, x)), settings.to_json(), net.history


def _write_model_folder(folder, onnx_bytes: bytes, meta: dict, split_table, report: dict) -> None:
    """Write everything into a temporary sibling folder, then swap it in (no half-written model)."""
    import json
    import shutil
    import uuid

    from jobs.evaluation import write_report
    from jobs.models.onnx_model import META_FILE, MODEL_FILE

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / MODEL_FILE).write_bytes(onnx_bytes)
        split_table.to_parquet(tmp / "split.parquet", index=False)
        write_report(report, tmp, title=f"{meta['name']} ({meta['kind']}): held-out evaluation")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if folder.exists():
            old = folder.parent / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def train_model(out_dir, *, labels_cfg, segments_cfg, split_cfg, train_cfg, log=_print, split=None,
                folder=None, write: bool = True, force: bool = False) -> TrainedModel:
    """The whole training stage on the store in ``out_dir``.

    ``split`` (optional): a precomputed train/test Series aligned with the labelled files (the
    benchmark's leave-one-speaker-out folds); ``folder``: where the model goes (default
    ``OUT/models/<train.name>``); ``write=False`` keeps the model in memory
    (``TrainedModel.onnx_bytes``). Without ``force``, a model folder trained on the same store
    with the same settings is kept as it is.
    """
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    import numpy as np

    from jobs.evaluation import evaluate
    from jobs.labels import assign_labels
    from jobs.models.onnx_model import FORMAT, make_session, predict_with_session
    from jobs.segments import open_run, segment_geometry
    from jobs.splits import TEST, TRAIN, split_files

    started = time.perf_counter()
    custom_split = split is not None
    store = open_run(out_dir)
    kind, why = choose_model_kind(train_cfg.model, train_cfg.input_feature)
    name = train_cfg.name
    remote = None  # a URL run: the model is made in a local folder, then uploaded to OUT/models/NAME
    if folder:
        folder = Path(folder)
    elif not isinstance(store.out_dir, Path):
        from jobs.outdir import temporary_folder

        remote = store.out_dir
        folder = temporary_folder("audiofeat-model-") / name
        remote.download(f"models/{name}", folder)  # an earlier model, to see if it is up to date
    else:
        folder = Path(out_dir) / "models" / name
    shown = remote.display_join("models", name) if remote is not None else folder
    fingerprint = training_fingerprint(store, kind, labels_cfg, segments_cfg, split_cfg, train_cfg)
    if write and not custom_split and not force:
        existing = _up_to_date_model(folder, fingerprint)
        if existing is not None:
            existing.location = remote and shown
            log(f"train: nothing to do: model {name!r} ({kind}) in {shown} is up to date with this store "
                f"and these settings (held-out accuracy {existing.report['accuracy']:.4f}; --force trains again)")
            return existing
    log(f"train: {why}")

    # labels -> split
    from jobs.labels import stored_inputs

    inputs = stored_inputs(out_dir) if labels_cfg.source == "folder" and remote is None else None
    labelled = assign_labels(store.files, labels_cfg, inputs)
    folder_root = _folder_root(inputs, store) if labels_cfg.source == "folder" else None
    if folder_root is not None:
        _refuse_split_folders(labelled, folder_root)
    unmatched = labelled.attrs.get("unmatched_rows") or []
    if unmatched:
        shown_rows = ", ".join(repr(p) for p in unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
        log(f"train: note: {len(unmatched)} row{'s' if len(unmatched) > 1 else ''} of the labels CSV "
            f"name{'' if len(unmatched) > 1 else 's'} no file of the store ({shown_rows}): a path is "
            "absolute or relative to the CSV's folder (or a file name unique on both sides); a file "
            "that failed extraction is in failures.parquet")
    known = labelled[labelled["label"].notna()]
    n_unlabelled = len(labelled) - len(known)
    if split is None:
        split = split_files(labelled, split_cfg)
    known = known.assign(split=split.reindex(known.index).to_numpy())
    classes = sorted(known.loc[known["split"] == TRAIN, "label"].unique())
    if len(classes) < 2:
        hint = ""
        if folder_root is not None:
            hint = (f": the name of the first folder below {folder_root}, where a file lying "
                    "directly in an input folder with subfolders has none; labels.source: parent, "
                    "regex or csv label otherwise")
        raise UsageError(
            f"the training files have {plural(len(classes), 'class', 'classes')} "
            f"({', '.join(classes) or 'none'}); a classifier "
            f"needs at least 2 (labels come from labels.source: {labels_cfg.source}{hint})"
        )
    _refuse_case_clashes(classes)
    from jobs.splits import unmatched_test_values

    unmatched = unmatched_test_values(labelled, split_cfg) if not custom_split else []
    if unmatched:
        log(f"train: note: split.test_values {unmatched} match no labelled file's group "
            f"({split_cfg.group}): the test set is the files of the other values")
    unseen = sorted(set(known.loc[known["split"] == TEST, "label"]) - set(classes))
    source = {"folder": f"the folders below {folder_root} (class folders)",
              "parent": "each file's parent folder name", "regex": "labels.pattern on file names",
              "csv": f"the CSV {labels_cfg.csv}"}[labels_cfg.source]
    shown_classes = ", ".join(map(str, classes[:8])) + (", ..." if len(classes) > 8 else "")
    log(f"train: {plural(len(known), 'labelled file')} ({(known['split'] == TRAIN).sum()} train, "
        f"{(known['split'] == TEST).sum()} test), {len(classes)} classes ({shown_classes}), labels from {source}"
        + (f", {plural(n_unlabelled, 'unlabelled file')} left out" if n_unlabelled else "")
        + (f"; test classes never seen in training: {unseen}" if unseen else ""))
    sizes = known["label"].value_counts()
    lonely = sorted(str(label) for label in sizes[sizes < 2].index)
    if lonely:
        log(f"train: note: {plural(len(lonely), 'class has', 'classes have')} one labelled file "
            f"({', '.join(lonely[:5])}"
            f"{', ...' if len(lonely) > 5 else ''}): it cannot be both trained on and tested, so the "
            "report has no test figures for it; give each class several files")
    tested = set(known.loc[known["split"] == TEST, "label"].astype(str))
    untested = sorted(str(c) for c in classes if str(c) not in tested and str(c) not in lonely)
    if untested:
        log(f"train: note: the {split_cfg.method} split holds no test file of "
            f"{plural(len(untested), 'class', 'classes')} ({', '.join(untested[:5])}"
            f"{', ...' if len(untested) > 5 else ''}): the report cannot say how well "
            f"{'it is' if len(untested) == 1 else 'they are'} recognised")

    # segments -> inputs (through Dask, from the store)
    geometry = segment_geometry(segments_cfg.length_s, segments_cfg.hop_s, store.frame_rate_hz)
    for key, asked, frames in (("length_s", segments_cfg.length_s, geometry.length_frames),
                               ("hop_s", segments_cfg.hop_s, geometry.hop_frames)):
        rate = store.frame_rate_hz
        if asked * rate < 1:
            log(f"train: note: segments.{key} {asked:g} s is under one frame of the store "
                f"({1 / rate:g} s): {frames} frame is used")
        elif abs(frames - asked * rate) > 1e-6 * asked * rate:  # not a whole number of frames
            log(f"train: note: segments.{key} {asked:g} s is {asked * rate:.4g} frames of the store "
                f"({rate:g} frames/s): {plural(frames, 'frame')} ({frames / rate:.6g} s) are used")
    spec = _input_spec(kind, store, train_cfg, geometry)
    if kind != "cnn":  # which stored features the baseline summarises (train.features: null)
        log(f"train: baseline inputs: statistics of {', '.join(spec['features'])} per segment"
            + ("" if train_cfg.features else " (train.features: null: every stored feature, a "
               "mel or STFT left out where the MFCC is stored)" if "mfcc" in store.feature_names
               and set(store.feature_names) & {"melspectrogram", "stft"} else ""))
    files = store.files[store.files["file_id"].isin(known["file_id"])]
    inputs, segments = read_inputs(store, files, geometry, spec, log=log)
    label_of = dict(zip(known["file_id"], known["label"]))
    split_of = dict(zip(known["file_id"], known["split"]))
    seg_split = segments["file_id"].map(split_of).to_numpy()
    index_of = {c: i for i, c in enumerate(classes)}
    seg_labels = segments["file_id"].map(label_of).to_numpy()
    train_rows = seg_split == TRAIN
    y_train = np.array([index_of[label] for label in seg_labels[train_rows]], dtype=np.int64)

    # fit -> export
    weights = segment_weights(segments["file_id"].to_numpy()[train_rows], seg_labels[train_rows],
                              train_cfg.balance)
    balanced = {"files": "; each file weighs the same", "classes": "; each class weighs the same"}
    log(f"train: fitting on {int(train_rows.sum())} segments{balanced.get(train_cfg.balance, '')}")
    fit_started = time.perf_counter()
    onnx_bytes, native_predict, settings_json, history = fit_model(
        kind, inputs[train_rows], y_train, classes, spec, train_cfg, log, sample_weight=weights
    )
    fit_seconds = time.perf_counter() - fit_started

    # evaluate the exported model (what scoring will run) on the held-out files
    test_rows = seg_split == TEST
    session = make_session(onnx_bytes, threads=1)
    test_probs = predict_with_session(session, inputs[test_rows], len(classes))
    native_probs = np.asarray(native_predict(inputs[test_rows]), dtype=np.float32)
    onnx_diff = float(np.abs(test_probs - native_probs).max()) if test_rows.any() else 0.0
    if onnx_diff > 1e-4:
        log(f"train: warning: ONNX and the trained model differ by up to {onnx_diff:.2e}")
    test_segments = segments[test_rows]
    per_file = file_probabilities(test_segments, test_probs, classes)
    predicted = per_file.to_numpy().argmax(axis=1)
    segment_accuracy = (
        float((np.asarray(classes, dtype=object)[test_probs.argmax(axis=1)] == seg_labels[test_rows]).mean())
        if test_rows.any() else float("nan")
    )
    report = evaluate(
        [label_of[f] for f in per_file.index], [classes[i] for i in predicted], classes,
        segment_accuracy=segment_accuracy, n_segments=int(test_rows.sum()),
    )

    # the model folder
    split_table = known[["file_id", "path", "label", "split"] + [c for c in known.columns
                                                                 if c not in ("file_id", "path", "label", "split")]]
    split_table = split_table.astype({c: "string" for c in split_table.columns})
    test_groups = None
    if split_cfg.group and split_cfg.group in known.columns:
        test_groups = sorted(known.loc[known["split"] == TEST, split_cfg.group].astype(str).unique())
    meta = {
        "format": FORMAT,
        "name": name,
        "kind": kind,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_fingerprint": None if custom_split else fingerprint,
        "classes": classes,
        "feature_config": store.feature_config,
        "config_hash": store.config_hash,
        "frame_rate_hz": store.frame_rate_hz,
        "segments": {**geometry.to_json(), "requested_length_s": segments_cfg.length_s,
                     "requested_hop_s": segments_cfg.hop_s},
        "input": spec,
        "onnx": {"input": session.get_inputs()[0].name, "output": "probabilities",
                 "input_shape": [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape]},
        "labels": labels_cfg.model_dump(),
        "split": {
            **split_cfg.model_dump(),
            "n_train_files": int((known["split"] == TRAIN).sum()),
            "n_test_files": int((known["split"] == TEST).sum()),
            "test_groups": test_groups,
            "files": "split.parquet",
        },
        "training": {
            "settings": settings_json,
            "n_train_segments": int(train_rows.sum()),
            "fit_seconds": fit_seconds,
            "total_seconds": time.perf_counter() - started,
            "history": history,
        },
        "metrics": {
            "accuracy": report["accuracy"],
            "macro_f1": report["macro_f1"],
            "segment_accuracy": report.get("segment_accuracy"),
            "n_test_files": report["n_files"],
            "onnx_max_abs_diff": onnx_diff,
        },
        "versions": _versions(kind),
    }
    if write:
        _write_model_folder(folder, onnx_bytes, meta, split_table, report)
        if remote is not None:
            from jobs.models.onnx_model import META_FILE

            remote.upload(folder, f"models/{name}", last=META_FILE)
    trained = TrainedModel(folder, meta, report)
    trained.location = remote and shown
    trained.onnx_bytes = onnx_bytes
    return trained
