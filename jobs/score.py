"""``audiofeat score CONFIG.yaml``: run a trained model over a run's feature store.

Stages: check (the model's feature config must be the store's) -> plan (segments of every stored
file, cut into batches of ``score.batch_segments``) -> score (one Dask task per batch: read the
batch's rows from Zarr, build the model input, onnxruntime with one thread) -> aggregate (per
file: mean probability over its segments) -> events (runs of consecutive segments whose
probability for a class stays at or above ``score.threshold``) -> write ``OUT/scores/``:
``segments.parquet``, ``files.parquet``, ``events.parquet`` and ``score.json``.

Rerunning on an unchanged store, model and settings does nothing (and says so). Workers need
onnxruntime and NumPy only. The pipeline (``audiofeat run``) calls :func:`main`; Python callers
can use :func:`run_score`.
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs.errors import UsageError
from jobs.progress import plural

__all__ = ["add_arguments", "main", "run_score", "check_compatible", "score_batch", "find_events",
           "aggregate_files"]

SCORES_DIR = "scores"
STATE_FILE = "score.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="job config (YAML)")
    parser.add_argument("--out", metavar="DIR", help="run directory holding features.zarr (default: the config's `out`)")
    parser.add_argument("--model", metavar="DIR",
                        help="model folder (default: score.model, else OUT/models/<train.name>)")
    parser.add_argument("--scheduler", metavar="ADDR", help="address of a running Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificate for a TLS scheduler")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate for a TLS scheduler")
    parser.add_argument("--tls-key", metavar="FILE", help="client key for a TLS scheduler")


def main(args: argparse.Namespace) -> int:
    from jobs.config import load_config

    config = load_config(args.config)
    if args.out is not None and not args.out.strip():
        raise UsageError("--out: an empty path (an unset variable?); name the run folder")
    out_dir = args.out or config.out
    if not out_dir:
        raise UsageError("no run directory: give --out DIR or `out:` in the config")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers: must be at least 1")
    if args.model is not None and not args.model.strip():  # (it fell back to score.model)
        raise UsageError("--model: an empty path (an unset variable?); name the model folder")
    from jobs.cluster import security_from

    security = security_from(args.tls_ca, args.tls_cert, args.tls_key)
    return run_score(config, out_dir, model_dir=args.model, scheduler=args.scheduler,
                     workers=args.workers, security=security)


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- check


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _only_in(key: str, mine: dict, theirs: dict) -> bool:
    """Whether the flattened setting ``key`` belongs to a feature of ``mine`` absent from
    ``theirs``."""
    parts = key.split(".")
    return len(parts) >= 2 and parts[0] == "features" and parts[1] in mine and parts[1] not in theirs


def _read_settings(feature_config: dict, read: list[str]) -> dict:
    """The part of a feature config a model's input depends on: the frame and audio settings,
    and the settings of the features it reads (``read``) that the config has."""
    features = feature_config.get("features", {})
    out = {key: value for key, value in feature_config.items() if key != "features"}
    out["features"] = {name: features[name] for name in read if name in features}
    return out


def check_compatible(meta: dict, store) -> None:
    """Refuse (UsageError, exit 2) a model trained on features computed differently from the
    store's, naming every setting that differs, or one whose input features are missing.

    Only what the model reads counts: the audio and frame settings, and the features its input
    takes. A store that holds other features besides (or lacks features the model's training
    store had but the model does not read) is scored."""
    from jobs.models.inputs import input_features

    read = input_features(meta["input"])
    model_read = _read_settings(meta.get("feature_config", {}), read)
    store_read = _read_settings(store.feature_config, read)
    if meta.get("config_hash") != store.config_hash and model_read != store_read:
        model_feats, store_feats = model_read["features"], store_read["features"]
        diffs = []
        lacking = sorted(set(model_feats) - set(store_feats))
        if lacking:  # a feature only one side has is named once, not setting by setting
            diffs.append(f"the store lacks the model's features: {', '.join(lacking)}")
        model_cfg = {k: v for k, v in _flatten(model_read).items() if not _only_in(k, model_feats, store_feats)}
        store_cfg = _flatten(store_read)
        missing = object()
        for key in sorted(set(model_cfg) | set(store_cfg)):
            a, b = model_cfg.get(key, missing), store_cfg.get(key, missing)
            if a != b:
                a = "absent" if a is missing else repr(a)
                b = "absent" if b is missing else repr(b)
                diffs.append(f"{key}: model {a}, store {b}")
        detail = "; ".join(diffs) if diffs else "the settings look equal but the hashes differ"
        raise UsageError(
            f"the model was trained on features with other settings than this store "
            f"(config hash {str(meta.get('config_hash'))[:12]} vs {store.config_hash[:12]}): {detail}"
        )
    for name in read:
        store.array(name)  # UsageError naming the feature when absent
    dims = meta["input"].get("dims") or {meta["input"]["feature"]: meta["input"]["dim"]}
    for name, dim in dims.items():
        if store.dim(name) != dim:
            raise UsageError(f"feature {name!r} has {store.dim(name)} columns in the store, the model expects {dim}")


# ---------------------------------------------------------------- plan


MIN_BATCH_SEGMENTS = 256


def plan_batches(segments, batch_segments: int, n_workers: int = 1) -> list[tuple[int, int]]:
    """Slices ``[a, b)`` of the segment table (store order) of at most ``batch_segments`` rows,
    and at least two per worker where the store is big enough (batches of no fewer than
    ``MIN_BATCH_SEGMENTS``), so that every worker has work.

    A batch reads one contiguous run of store rows; a long file's segments may span batches.
    """
    import math

    n = len(segments)
    size = max(1, min(batch_segments, max(MIN_BATCH_SEGMENTS, math.ceil(n / (2 * n_workers)))))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


# ---------------------------------------------------------------- score (on workers)

_MODELS: dict = {}  # (model folder, model sha256) -> OnnxModel, one per worker process
_STORES: dict = {}  # out_dir -> RunStore


def load_worker(out_dir: str, model_dir: str, model_sha256: str):
    """The worker process's model session (one intra-op thread) and open store, cached."""
    from jobs.models.onnx_model import OnnxModel
    from jobs.segments import open_run

    key = (str(getattr(model_dir, "location", model_dir)), model_sha256)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = OnnxModel(_local_model(model_dir), threads=1)
    store = _STORES.get(out_dir)
    if store is None:
        store = _STORES[out_dir] = open_run(out_dir)
    return model, store


def _local_model(model_dir):
    """A local folder holding the model: ``model_dir`` itself, or for a model folder at a URL
    (an :class:`jobs.outdir.OutDir`) a copy in a temporary folder of this process (removed when
    the process exits)."""
    from jobs.outdir import OutDir

    if not isinstance(model_dir, OutDir):
        return model_dir
    from jobs.outdir import temporary_folder

    local = temporary_folder("audiofeat-model-") / "model"
    if not model_dir.download("", local):
        raise UsageError(f"no model folder at {model_dir.display}")
    return local


def warm_worker(out_dir: str, model_dir: str, model_sha256: str, sample) -> bool:
    """Before the first batch: load the model, open the store and score ``sample`` (a few
    segments) once, so that array metadata and onnxruntime's first-run set-up are done."""
    score_batch(out_dir, model_dir, model_sha256, sample)
    return True


def score_batch(out_dir: str, model_dir: str, model_sha256: str, segments):
    """Class probabilities ``(n, n_classes)`` float32 for one batch of segments (a worker task)."""
    from jobs.models.inputs import build_inputs, input_features
    from jobs.segments import read_block

    model, store = load_worker(out_dir, model_dir, model_sha256)
    spec = model.input_spec
    block = read_block(store, segments, input_features(spec))
    return model.predict_proba(build_inputs(block, segments, spec))


# ---------------------------------------------------------------- aggregate, events


def aggregate_files(segment_table, classes: list[str], files, truth=None):
    """Per file: ``label`` (highest mean probability over its segments), ``confidence`` (that
    mean), ``n_segments``; ``true_label`` and ``split`` where known (``truth``: a table with
    file_id, true_label, split)."""
    import numpy as np
    import pandas as pd

    columns = [f"p_{c}" for c in classes]
    means = segment_table.groupby("file_id", sort=False)[columns].mean()
    counts = segment_table.groupby("file_id", sort=False).size()
    probs = means.to_numpy()
    best = probs.argmax(axis=1)
    table = pd.DataFrame({
        "file_id": means.index.to_numpy(),
        "label": np.asarray(classes, dtype=object)[best],
        "confidence": probs[np.arange(len(best)), best].astype(np.float32),
        "n_segments": counts.reindex(means.index).to_numpy().astype(np.int32),
    })
    table = files[["file_id", "path"]].merge(table, on="file_id", how="inner")
    if truth is not None:
        table = table.merge(truth, on="file_id", how="left")
    else:
        table["true_label"] = None
        table["split"] = None
    for column in ("file_id", "path", "label", "true_label", "split"):  # typed even when empty
        table[column] = table[column].astype("string")
    return table[["file_id", "path", "label", "confidence", "true_label", "split", "n_segments"]]


def accuracy_summary(files_table, classes: list[str]) -> str:
    """``"; accuracy on N held-out|labelled files A"`` for the score line (empty without labels).

    Only files whose true label is one of the model's classes count; files labelled with a class
    the model never learned are named apart (a closed-set model cannot get them right).
    """
    truth = files_table["true_label"]
    labelled = truth.notna()
    if not labelled.any():
        return ""
    known = labelled & truth.isin(classes)
    unknown = labelled & ~known
    summary = ""
    tested = (files_table["split"] == "test").fillna(False).astype(bool)
    held_out = known & tested
    if known.any():
        pick = held_out if held_out.any() else known
        acc = float((files_table.loc[pick, "label"] == files_table.loc[pick, "true_label"]).mean())
        kind = "held-out" if held_out.any() else "labelled"
        summary = f"; accuracy on {plural(int(pick.sum()), kind + ' file')} {acc:.4f}"
    if held_out.any():  # named among the files the accuracy is of: the held-out ones
        unknown &= tested
    other = sorted(set(truth[unknown].astype(str)))
    if other:
        n_other = int(unknown.sum())
        shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
        summary += (f"; {plural(n_other, 'file')} labelled with classes the model does not know ({shown}) "
                    "are not counted")
    return summary


def find_events(segment_table, classes: list[str], threshold: float):
    """The stretches of a file that its segments scoring at or above ``threshold`` for one class
    cover: runs of consecutive such segments, joined where their spans overlap (segments longer
    than twice the hop overlap across a segment under the threshold), so that the events of one
    label never overlap. ``file_id``, ``label``, ``start_s``, ``end_s``, ``max_score``,
    ``n_segments`` (the segments at or above the threshold in it); sorted by file and start."""
    import numpy as np
    import pandas as pd

    table = segment_table.sort_values(["file_id", "segment"], kind="stable")
    file_codes = pd.factorize(table["file_id"])[0]
    segment = table["segment"].to_numpy()
    parts = []
    for cls in classes:
        p = table[f"p_{cls}"].to_numpy()
        above = p >= threshold
        if not above.any():
            continue
        rows = table[above]
        codes, seg = file_codes[above], segment[above]
        start, end = rows["start_s"].to_numpy(), rows["end_s"].to_numpy()
        # the furthest any earlier segment of the run's file reaches
        reach = pd.Series(end).groupby(codes).cummax().to_numpy()
        same_file = codes[1:] == codes[:-1]
        # a segment continues the run of the one before it (in its file) when it is the next
        # segment or starts before that run's segments end
        starts = np.ones(len(rows), dtype=bool)
        starts[1:] = ~same_file | ((seg[1:] != seg[:-1] + 1) & (start[1:] >= reach[:-1]))
        run_id = np.cumsum(starts)
        grouped = pd.DataFrame({
            "run": run_id,
            "file_id": rows["file_id"].to_numpy(),
            "start_s": start,
            "end_s": end,
            "score": p[above],
        }).groupby("run", sort=True).agg(
            file_id=("file_id", "first"), start_s=("start_s", "min"), end_s=("end_s", "max"),
            max_score=("score", "max"), n_segments=("score", "size"),
        )
        grouped.insert(1, "label", cls)
        parts.append(grouped)
    if not parts:
        return pd.DataFrame({
            "file_id": pd.Series(dtype="string"), "label": pd.Series(dtype="string"),
            "start_s": pd.Series(dtype="float64"), "end_s": pd.Series(dtype="float64"),
            "max_score": pd.Series(dtype="float32"), "n_segments": pd.Series(dtype="int32"),
        })
    events = pd.concat(parts, ignore_index=True)
    events["max_score"] = events["max_score"].astype(np.float32)
    events["n_segments"] = events["n_segments"].astype(np.int32)
    events = events[["file_id", "label", "start_s", "end_s", "max_score", "n_segments"]]
    return events.sort_values(["file_id", "start_s", "label"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- the stage


def _open_client(config, *, scheduler, security, n_workers: int):
    """The Dask client for scoring, from ``compute.cluster`` (or ``--scheduler``), as extract's."""
    from jobs.cluster import check_client_settings, open_client

    compute = getattr(config, "compute", None)  # a bare scoring config may have no compute section
    cluster = getattr(compute, "cluster", None)
    check_client_settings(cluster, n_workers=n_workers, scheduler=scheduler)  # (no sbatch: a hang)
    return open_client(cluster, n_workers=n_workers, threads_per_worker=1,
                       scheduler=scheduler, gpu=False, security=security)


def _fingerprint(store, model_folder, meta: dict, threshold: float, labels_cfg, hop_frames: int) -> dict:
    from jobs.labels import labels_csv_sha256
    from jobs.models.onnx_model import META_FILE, MODEL_FILE, file_sha256

    return {
        # (present only when it is not the model's, so that older scores stay up to date)
        **({"hop_frames": hop_frames} if hop_frames != int(meta["segments"]["hop_frames"]) else {}),
        "store_config_hash": store.config_hash,
        "files_sha256": store.files_sha256(),
        "model_onnx_sha256": file_sha256(model_folder / MODEL_FILE),
        "model_json_sha256": file_sha256(model_folder / META_FILE),
        "threshold": threshold,
        "labels": labels_cfg.model_dump() if labels_cfg is not None else None,
        # the truth columns come from the CSV's rows too: an edited CSV scores again
        "labels_csv_sha256": labels_csv_sha256(labels_cfg),
    }


def _truth_table(model_folder, store, labels_cfg):
    """file_id, true_label, split: the model's split.parquet (its files' sides), labelled as the
    config's ``labels:`` label them now where the config has that section (an edited CSV: a
    file whose row was deleted is unlabelled, not held out under its old label, as train would
    see it), else as the model was trained."""
    import pandas as pd

    from jobs.labels import assign_labels

    truth = pd.DataFrame({"file_id": pd.Series(dtype=object), "true_label": pd.Series(dtype=object),
                          "split": pd.Series(dtype=object)})
    split_path = model_folder / "split.parquet"
    if split_path.is_file():
        known = pd.read_parquet(split_path, columns=["file_id", "label", "split"])
        truth = known.rename(columns={"label": "true_label"})
    if labels_cfg is not None:  # the config's labels as they are now win (an edited CSV)
        from jobs.labels import stored_inputs

        inputs = stored_inputs(store.out_dir) if getattr(store, "out_dir", None) else None
        labelled = assign_labels(store.files, labels_cfg, inputs)
        labelled = labelled[labelled["label"].notna()]
        now = dict(zip(labelled["file_id"], labelled["label"]))
        truth["true_label"] = [now.get(f) for f in truth["file_id"]]
        labelled = labelled[~labelled["file_id"].isin(truth["file_id"])]
        extra = pd.DataFrame({"file_id": labelled["file_id"], "true_label": labelled["label"], "split": None})
        truth = pd.concat([truth, extra], ignore_index=True) if len(extra) else truth
    return truth.astype(object)


def _failed_extraction(out_dir) -> str:
    """``"; N inputs failed extraction ..."`` for the score summary of a local run folder whose
    failures.parquet has rows (those inputs have no frames, so no scores), else ``""``."""
    from pathlib import Path

    if not isinstance(out_dir, Path):
        return ""
    try:
        import pyarrow.parquet as pq

        n = pq.ParquetFile(out_dir / "failures.parquet").metadata.num_rows
    except (OSError, ValueError):  # no failures.parquet (an older or unfinished run)
        return ""
    return f"; {plural(n, 'input')} failed extraction and {'is' if n == 1 else 'are'} not scored (failures.parquet)" if n else ""


def _write_parquet(frame, path) -> None:
    import uuid

    if isinstance(path, tuple):  # (OutDir, entry): a URL run, one PUT
        import pyarrow as pa

        od, name = path
        od.write_table(pa.Table.from_pandas(frame, preserve_index=False), name)
        return
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _progress_shares(segments, batches, frame_rate_hz: float):
    """Files and audio seconds each batch completes, summing to the run's files and audio.

    A file whose segments span several batches counts once (in the batch that holds its last
    segment), and overlapping segments (hop < length) do not count their shared frames twice:
    each segment carries an equal share of its file's frames.
    """
    import numpy as np

    per_file = segments.groupby("file_id", sort=False)
    last = (~segments["file_id"].duplicated(keep="last")).to_numpy()
    n_segments = per_file["segment"].transform("size").to_numpy(np.float64)
    # a file's frames: from its first segment's row to the real end of its last segment
    n_frames = (per_file["row_start"].transform("max") - per_file["row_start"].transform("min")
                + per_file["n_valid"].transform("last")).to_numpy(np.float64)
    share = n_frames / n_segments / float(frame_rate_hz)
    files = [int(last[a:b].sum()) for a, b in batches]
    seconds = [float(share[a:b].sum()) for a, b in batches]
    return files, seconds


def run_score(config, out_dir, *, model_dir=None, scheduler: str | None = None, workers: int | None = None,
              security=None, log=None) -> int:
    """Score the store in ``out_dir`` with a model folder (``model_dir``, else ``score.model``,
    else ``OUT/models/<train.name>``) per ``config`` (a ``jobs.config.JobConfig``; its ``score``,
    ``train`` and ``labels`` sections, defaults where absent). Returns the exit status (0).

    A local run folder is locked meanwhile (``OUT/.lock``): not scored while extract or train
    rewrite what it reads, nor by two scores at once."""
    import contextlib

    from jobs.cluster import check_client_settings, one_job_at_a_time
    from jobs.config import as_job_config
    from jobs.outdir import OutDir, is_url, run_lock

    config = as_job_config(config, strict=False)  # also a YAML path or a mapping; fields set after loading checked

    # a bad --scheduler (no scheduler answers, TLS mix-up) is told at once, as extract tells it,
    # also when the scores turn out to be up to date
    check_client_settings(getattr(getattr(config, "compute", None), "cluster", None), n_workers=workers,
                          scheduler=scheduler, security=security, reach=True)
    kwargs = {"model_dir": model_dir, "scheduler": scheduler, "workers": workers,
              "security": security, "log": log}
    with one_job_at_a_time(lambda line: (log or _print)(f"score: {line}")):
        if isinstance(out_dir, OutDir) or is_url(out_dir) or not os.path.isdir(os.path.join(out_dir, "features.zarr")):
            return _run_score(config, out_dir, **kwargs)  # (no run folder: open_run says so)
        with contextlib.closing(run_lock(out_dir, "score")):
            return _run_score(config, out_dir, **kwargs)


def _run_score(config, out_dir, *, model_dir, scheduler, workers, security, log) -> int:
    import json
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from jobs.models.onnx_model import read_model_meta
    from jobs.segments import SegmentGeometry, open_run, plan_segments
    from jobs.train_config import ScoreConfig, TrainConfig

    log = log or _print
    score_cfg = getattr(config, "score", None) or ScoreConfig()
    train_cfg = getattr(config, "train", None) or TrainConfig()
    labels_cfg = getattr(config, "labels", None)
    from jobs.outdir import OutDir, is_url

    remote = None  # a URL run: scores go there through fsspec, its model is fetched from there
    worker_model = None
    if isinstance(out_dir, OutDir) or is_url(out_dir):
        remote = out_dir if isinstance(out_dir, OutDir) else OutDir(
            out_dir, getattr(config, "out_storage_options", None))
        store = open_run(remote)
        if model_dir or score_cfg.model:
            model_folder = Path(model_dir or score_cfg.model)
        else:
            worker_model = OutDir(remote.join("models", train_cfg.name), remote.storage_options)
            model_folder = Path(_local_model(worker_model))
        out_dir = remote
    else:
        # absolute: the workers of a running scheduler (--scheduler) have their own working folder
        out_dir = Path(os.path.abspath(out_dir))
        model_folder = Path(os.path.abspath(model_dir or score_cfg.model or out_dir / "models" / train_cfg.name))
        store = open_run(out_dir)

    # check
    try:
        meta = read_model_meta(model_folder)
    except UsageError as exc:  # named by where the folder came from
        source = "--model" if model_dir else "score.model" if score_cfg.model else None
        if source is None:
            raise
        raise UsageError(f"{source}: {exc}") from None
    check_compatible(meta, store)
    seg_meta = meta["segments"]
    asked = getattr(config, "segments", None)
    if asked is not None and (asked.length_s, asked.hop_s) != (
            seg_meta.get("requested_length_s", seg_meta["length_s"]), seg_meta.get("requested_hop_s", seg_meta["hop_s"])):
        log(f"score: note: segments come from the model ({seg_meta['length_s']:g} s, hop "
            f"{seg_meta['hop_s']:g} s, as it was trained); the config's segments: ({asked.length_s:g} s, "
            f"hop {asked.hop_s:g} s) apply to training")
    geometry = SegmentGeometry(int(seg_meta["length_frames"]), int(seg_meta["hop_frames"]), store.frame_rate_hz)
    if score_cfg.hop_s is not None:  # the model's segment length, scored at another hop
        hop_frames = max(1, int(round(score_cfg.hop_s * store.frame_rate_hz)))
        if hop_frames > geometry.length_frames:
            raise UsageError(f"score.hop_s {score_cfg.hop_s:g} s is longer than the model's segments "
                             f"({seg_meta['length_s']:g} s): parts of the recordings would not be scored")
        geometry = SegmentGeometry(geometry.length_frames, hop_frames, store.frame_rate_hz)
        log(f"score: segments of {seg_meta['length_s']:g} s (the model's) every "
            f"{hop_frames / store.frame_rate_hz:g} s (score.hop_s; the model was trained every "
            f"{seg_meta['hop_s']:g} s)")
    classes = list(meta["classes"])
    names = ["segments.parquet", "files.parquet", "events.parquet"]
    if remote is not None:
        scores_dir = remote.display_join(SCORES_DIR)
        outputs = [(remote, f"{SCORES_DIR}/{n}") for n in names]
    else:
        scores_dir = out_dir / SCORES_DIR
        outputs = [scores_dir / n for n in names]
    fingerprint = _fingerprint(store, model_folder, meta, score_cfg.threshold, labels_cfg, geometry.hop_frames)
    state_path = (remote, f"{SCORES_DIR}/{STATE_FILE}") if remote is not None else scores_dir / STATE_FILE

    def is_file(entry) -> bool:
        return entry[0].isfile(entry[1]) if isinstance(entry, tuple) else entry.is_file()

    earlier_model = None  # the model whose scores these replace, when another one's
    if is_file(state_path) and all(is_file(p) for p in outputs):
        try:
            text = (state_path[0].read_bytes(state_path[1]) if isinstance(state_path, tuple)
                    else state_path.read_text())
            earlier = json.loads(text)
            previous, earlier_model = earlier.get("fingerprint"), earlier.get("model")
        except (ValueError, AttributeError):
            previous = None
        if previous == fingerprint:
            log(f"score: nothing to do: {scores_dir} is up to date with this store and model "
                f"{meta['name']!r} ({meta['kind']})")
            return 0

    # plan
    segments = plan_segments(store.files, geometry)
    n_workers = max(1, workers or getattr(getattr(config, "compute", None), "workers", None) or os.cpu_count() or 1)
    batches = plan_batches(segments, score_cfg.batch_segments, n_workers)
    n_workers = min(n_workers, max(1, len(batches)))
    shown_model = worker_model.display if worker_model is not None else model_folder
    log(f"score: model {meta['name']!r} ({meta['kind']}, {len(classes)} classes) from {shown_model}")
    log(f"score: {len(segments)} segments of {len(store.files)} files in {len(batches)} "
        f"batch{'' if len(batches) == 1 else 'es'}")

    # score
    from distributed import as_completed

    from jobs.models.onnx_model import file_sha256
    from jobs.progress import Progress

    model_sha = file_sha256(model_folder / "model.onnx")
    if isinstance(earlier_model, dict) and (earlier_model.get("name"), earlier_model.get("sha256", model_sha)) \
            != (meta["name"], model_sha):  # (a model copied with its run is the same model)
        log(f"score: note: replaces the scores of model {earlier_model.get('name')!r} (from "
            f"{earlier_model.get('folder')}) in {scores_dir}; to keep both, copy that folder "
            "aside before scoring with another model")
    probabilities = np.zeros((len(segments), len(classes)), dtype=np.float32)
    files_per_batch, seconds_per_batch = _progress_shares(segments, batches, store.frame_rate_hz)
    with _open_client(config, scheduler=scheduler, security=security, n_workers=n_workers) as client:
        from jobs.extract import dashboard_line

        log(dashboard_line(client, "score")[1])
        worker_out = str(out_dir) if remote is None else remote
        worker_model = worker_model or str(model_folder)
        if len(segments):  # model, store and a first inference once per worker, before the clock
            client.run(warm_worker, worker_out, worker_model, model_sha,
                       segments.iloc[:2][["row_start", "n_valid"]])
        started = time.perf_counter()  # the stage's own time: not the cluster's start-up nor model loading
        progress = Progress(len(store.files), float(sum(seconds_per_batch)), label="score")
        token = os.urandom(4).hex()
        futures = {}
        for i, (a, b) in enumerate(batches):
            part = segments.iloc[a:b][["row_start", "n_valid"]]
            fut = client.submit(score_batch, worker_out, worker_model, model_sha, part,
                                key=f"score-batch-{i}-{token}", retries=1, pure=False)
            futures[fut] = i
        from jobs.extract import PausedWorkersWatch

        watch = PausedWorkersWatch(client, command="score", smaller="score.batch_segments",
                                   on_workers=progress.restart_clock)
        try:
            for fut in as_completed(futures):
                watch.seen()
                i = futures.pop(fut)
                a, b = batches[i]
                probabilities[a:b] = fut.result()
                progress.update(files_per_batch[i], seconds_per_batch[i])
        except Exception as exc:
            from jobs.extract import _scheduler_lost

            if not (_scheduler_lost(exc, client) or type(exc).__name__ == "CommClosedError"):
                raise
            from jobs.errors import ClusterLostError, quiet_lost_client

            quiet_lost_client()
            progress.close()
            raise ClusterLostError(f"lost the cluster's scheduler mid-run ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())}); no scores were written: run the "
                                   "same command again once the scheduler is back") from None
        finally:
            watch.stop()
        progress.close()
        wall_s = time.perf_counter() - started  # before the cluster shuts down

    # aggregate -> events
    best = probabilities.argmax(axis=1) if len(classes) else np.zeros(len(segments), int)
    segment_table = pd.DataFrame({
        "file_id": segments["file_id"].to_numpy(),
        "segment": segments["segment"].to_numpy(),
        "start_s": segments["start_s"].to_numpy(),
        "end_s": segments["end_s"].to_numpy(),
        "label": np.asarray(classes, dtype=object)[best],
        "score": probabilities[np.arange(len(segments)), best],
    })
    for j, cls in enumerate(classes):
        segment_table[f"p_{cls}"] = probabilities[:, j]
    for column in ("file_id", "label"):  # typed even when no segment was scored
        segment_table[column] = segment_table[column].astype("string")
    files_table = aggregate_files(segment_table, classes, store.files,
                                  _truth_table(model_folder, store, labels_cfg))
    events = find_events(segment_table, classes, score_cfg.threshold)

    if remote is not None:
        remote.makedirs(SCORES_DIR)
        remote.remove(state_path[1])  # outputs change below: no stale "up to date" if interrupted
    else:
        scores_dir.mkdir(parents=True, exist_ok=True)
        if state_path.exists():
            state_path.unlink()  # outputs change below: no stale "up to date" if interrupted
    _write_parquet(segment_table, outputs[0])
    _write_parquet(files_table, outputs[1])
    _write_parquet(events, outputs[2])
    rate = len(segments) / wall_s if wall_s > 0 else float("nan")
    state = {
        "fingerprint": fingerprint,
        "model": {"folder": str(shown_model), "name": meta["name"], "kind": meta["kind"], "classes": classes,
                  "sha256": model_sha},
        "threshold": score_cfg.threshold,
        "counts": {"segments": len(segments), "files": len(files_table), "events": len(events)},
        "wall_s": wall_s,
        "segments_per_s": rate,
        "workers": n_workers,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if remote is not None:
        remote.write_bytes(state_path[1], (json.dumps(state, indent=2) + "\n").encode())
    else:
        tmp = state_path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, state_path)
    summary = accuracy_summary(files_table, classes) + _failed_extraction(out_dir)
    log(f"score: {plural(len(segments), 'segment')} in {wall_s:.1f} s ({rate:,.0f} segments/s), "
        f"{plural(len(files_table), 'file')}, {plural(len(events), 'event')}{summary} -> {scores_dir}")
    return 0
