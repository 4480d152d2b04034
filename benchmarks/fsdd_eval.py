"""FSDD benchmark for ``audiofeat train`` / ``audiofeat score``.

    python benchmarks/fsdd_eval.py [--fsdd ../shared/data/fsdd/recordings] [--out /tmp/audiofeat-fsdd]

1. ``audiofeat extract configs/fsdd.yaml`` over the 3,000 clips (nothing to do when the store is
   already there);
2. the official split (recording index 0-4 is test): train and evaluate the baseline and the CNN
   (targets: baseline >= 98.5 %, CNN >= 99.0 % file accuracy);
3. leave-one-speaker-out: six folds per model, accuracy per held-out speaker and the mean
   (target: CNN >= 85 %);
4. scoring throughput through onnxruntime reading from the store, in segments per second:
   in one process with one thread (read rows from Zarr -> model input -> onnxruntime), and the
   real ``audiofeat score`` Dask stage with two worker processes (targets: baseline >= 20,000,
   CNN >= 5,000).

Prints a summary and writes it as JSON (``--json``). Timings depend on the machine's load: the
load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs.cli import main as cli_main  # noqa: E402
from jobs.train_config import (  # noqa: E402
    LabelsConfig,
    ScoreConfig,
    SegmentsConfig,
    SplitConfig,
    TrainConfig,
)

FSDD_PATTERN = r"(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav"
TARGETS = {
    "baseline": {"official": 0.985, "segments_per_s": 20000},
    "cnn": {"official": 0.990, "loso": 0.85, "segments_per_s": 5000},
}


def quiet(_message: str) -> None:
    pass


def say(message: str) -> None:
    print(message, flush=True)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def sections(kind: str, epochs: int | None = None, name: str | None = None):
    return dict(
        labels_cfg=LabelsConfig(source="regex", pattern=FSDD_PATTERN),
        segments_cfg=SegmentsConfig(length_s=1.0, hop_s=0.5),
        split_cfg=SplitConfig(method="explicit", group="index", test_values=["0", "1", "2", "3", "4"]),
        train_cfg=TrainConfig(model=kind, name=name or f"{kind}-official", epochs=epochs),
    )


def official(out: Path, kind: str, epochs: int | None) -> dict:
    from jobs.train import train_model

    say(f"\n== official split, {kind}")
    started = time.perf_counter()
    trained = train_model(out, **sections(kind, epochs), log=say, force=True)
    report = trained.report
    say(f"{kind}: official split accuracy {report['accuracy']:.4f} (macro F1 {report['macro_f1']:.4f}, "
        f"{report['n_files']} test files) in {time.perf_counter() - started:.0f} s")
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n_test_files": report["n_files"],
            "fit_seconds": trained.meta["training"]["fit_seconds"], "folder": str(trained.folder),
            "onnx_max_abs_diff": trained.meta["metrics"]["onnx_max_abs_diff"]}


def leave_one_speaker_out(out: Path, kind: str, epochs: int | None) -> dict:
    from jobs.labels import assign_labels
    from jobs.segments import open_run
    from jobs.splits import leave_one_group_out
    from jobs.train import train_model

    say(f"\n== leave one speaker out, {kind}")
    args = sections(kind, epochs, name=f"{kind}-loso")
    labelled = assign_labels(open_run(out).files, args["labels_cfg"])
    per_speaker = {}
    for speaker, split in leave_one_group_out(labelled, "speaker"):
        started = time.perf_counter()
        trained = train_model(out, **args, split=split, write=False, log=quiet)
        per_speaker[speaker] = trained.report["accuracy"]
        say(f"{kind}: held-out speaker {speaker}: accuracy {per_speaker[speaker]:.4f} "
            f"({time.perf_counter() - started:.0f} s)")
    mean = sum(per_speaker.values()) / len(per_speaker)
    say(f"{kind}: leave-one-speaker-out mean accuracy {mean:.4f}")
    return {"per_speaker": per_speaker, "mean": mean}


def throughput_in_process(out: Path, folder: str, repeats: int = 5, batch: int = 4096) -> dict:
    """Read rows from Zarr -> model input -> onnxruntime (1 thread), all segments, best of N."""
    import numpy as np

    from jobs.models.inputs import build_inputs, input_features
    from jobs.models.onnx_model import OnnxModel
    from jobs.segments import SegmentGeometry, open_run, plan_segments, read_block

    model = OnnxModel(folder, threads=1)
    store = open_run(out)
    seg = model.meta["segments"]
    segments = plan_segments(store.files, SegmentGeometry(seg["length_frames"], seg["hop_frames"], store.frame_rate_hz))
    spec = model.input_spec
    features = input_features(spec)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for a in range(0, len(segments), batch):
            part = segments.iloc[a:a + batch]
            model.predict_proba(build_inputs(read_block(store, part, features), part, spec))
        times.append(time.perf_counter() - started)
    best = min(times)
    return {"segments": len(segments), "best_s": best, "median_s": float(np.median(times)),
            "segments_per_s": len(segments) / best, "segments_per_s_median": len(segments) / float(np.median(times))}


def throughput_dask(out: Path, folder: str, workers: int = 2) -> dict:
    """The real score stage (Dask, ``workers`` processes, onnxruntime with one thread each)."""
    from jobs.score import run_score

    config = SimpleNamespace(score=ScoreConfig(), train=None, compute=None,
                             labels=LabelsConfig(source="regex", pattern=FSDD_PATTERN))
    started = time.perf_counter()
    assert run_score(config, out, model_dir=folder, workers=workers, log=say) == 0
    total = time.perf_counter() - started
    state = json.loads((out / "scores" / "score.json").read_text())
    return {"segments": state["counts"]["segments"], "stage_s": state["wall_s"],
            "segments_per_s": state["segments_per_s"], "with_cluster_start_s": total, "workers": workers}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd" / "recordings"))
    parser.add_argument("--out", default="/tmp/audiofeat-fsdd")
    parser.add_argument("--models", default="baseline,cnn")
    parser.add_argument("--epochs", type=int, help="epochs for every fit (default: each model's own)")
    parser.add_argument("--loso-epochs", type=int, help="epochs for the leave-one-speaker-out fits")
    parser.add_argument("--skip-loso", action="store_true")
    parser.add_argument("--reuse-models", action="store_true",
                        help="measure with the official-split models already in OUT/models (no training)")
    parser.add_argument("--json", help="write the summary here too")
    args = parser.parse_args(argv)
    out = Path(args.out)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]

    say(f"machine: {os.cpu_count()} cores, load average {load()} (shared machine: timings are noisy)")
    code = cli_main(["extract", str(REPO / "configs" / "fsdd.yaml"), "--input", args.fsdd, "--out", str(out),
                     "--workers", "2"])
    if code:
        return code
    results = {"machine": {"cores": os.cpu_count(), "load_before": load()}, "models": {}}
    for kind in kinds:
        res = results["models"][kind] = {}
        if args.reuse_models:
            report = json.loads((out / "models" / f"{kind}-official" / "report.json").read_text())
            res["official"] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "reused": True,
                               "n_test_files": report["n_files"], "folder": str(out / "models" / f"{kind}-official")}
        else:
            res["official"] = official(out, kind, args.epochs)
        res["throughput_in_process"] = throughput_in_process(out, res["official"]["folder"])
        say(f"{kind}: in-process scoring (1 thread): {res['throughput_in_process']['segments_per_s']:,.0f} "
            f"segments/s (best of 5; median {res['throughput_in_process']['segments_per_s_median']:,.0f})")
        res["throughput_dask"] = throughput_dask(out, res["official"]["folder"])
        say(f"{kind}: audiofeat score stage (2 workers): {res['throughput_dask']['segments_per_s']:,.0f} segments/s")
    if not args.skip_loso:
        for kind in kinds:
            results["models"][kind]["loso"] = leave_one_speaker_out(out, kind, args.loso_epochs or args.epochs)
    results["machine"]["load_after"] = load()

    say("\n== summary (FSDD, 3,000 clips, 8 kHz; segments 1 s, hop 0.5 s)")
    for kind, res in results["models"].items():
        target = TARGETS.get(kind, {})
        line = (f"{kind:8s} official {res['official']['accuracy'] * 100:.2f}% (target {target.get('official', 0) * 100:.1f}%)"
                f" | scoring {res['throughput_in_process']['segments_per_s']:,.0f} seg/s in-process 1 thread,"
                f" {res['throughput_dask']['segments_per_s']:,.0f} seg/s Dask stage 2 workers"
                f" (target {target.get('segments_per_s', 0):,})")
        if "loso" in res:
            per = ", ".join(f"{s} {a * 100:.1f}" for s, a in res["loso"]["per_speaker"].items())
            line += f"\n{'':8s} leave-one-speaker-out mean {res['loso']['mean'] * 100:.2f}% ({per})"
        say(line)
    say(f"load average after: {results['machine']['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
