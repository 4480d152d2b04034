"""A trained model folder, ``model.onnx`` + ``model.json``, run with onnxruntime.

This is all a scoring worker needs: onnxruntime, NumPy and :mod:`jobs.models.inputs` (no torch,
no scikit-learn, no training code). Nothing is ever pickled: the ONNX file holds the whole model
and model.json says how to build its input from the store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from jobs.errors import UsageError

__all__ = ["MODEL_FILE", "META_FILE", "read_model_meta", "file_sha256", "OnnxModel", "make_session"]

MODEL_FILE = "model.onnx"
META_FILE = "model.json"
FORMAT = "audiofeat-model/1"
OUTPUT_NAME = "probabilities"


def read_model_meta(folder: str | Path) -> dict:
    """model.json of a model folder; a missing or foreign folder is a :class:`UsageError`."""
    folder = Path(folder)
    meta_path, onnx_path = folder / META_FILE, folder / MODEL_FILE
    if not meta_path.is_file() or not onnx_path.is_file():
        raise UsageError(f"no trained model in {folder} (expected {MODEL_FILE} and {META_FILE}; run `audiofeat train` first)")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise UsageError(f"{meta_path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise UsageError(f"{meta_path} is not an audiofeat model (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_session(model: bytes | str | Path, threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads (1 in Dask workers, so that
    workers do not fight over cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """A loaded model folder: ``predict_proba(inputs) -> (n, n_classes)`` float32."""

    def __init__(self, folder: str | Path, threads: int = 1, batch_size: int = 256):
        self.folder = Path(folder)
        self.meta = read_model_meta(self.folder)
        self.session = make_session(self.folder / MODEL_FILE, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.batch_size = batch_size  # small ONNX batches stay in cache (measured faster than 1024+)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_spec(self) -> dict:
        return self.meta["input"]

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        return predict_with_session(self.session, inputs, len(self.classes), self.batch_size, self.input_name)


def predict_with_session(session, inputs: np.ndarray, n_classes: int, batch_size: int = 256,
                         input_name: str | None = None) -> np.ndarray:
    """Class probabilities from an onnxruntime session, ``batch_size`` rows per call."""
    input_name = input_name or session.get_inputs()[0].name
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    out = np.empty((len(inputs), n_classes), dtype=np.float32)
    for i in range(0, len(inputs), batch_size):
        (probs,) = session.run([OUTPUT_NAME], {input_name: inputs[i:i + batch_size]})
        out[i:i + batch_size] = probs
    return out
