"""From padded segments of stored frames to model inputs (NumPy only).

Training and scoring build inputs with the same functions, driven by the ``input`` section of
``model.json``, so a scoring worker reproduces exactly what the model was trained on.

- ``segment_statistics`` (baseline): per feature, over the real frames of a segment only: mean and
  standard deviation, the means of ``n_parts`` equal consecutive parts (coarse temporal shape),
  and for MFCC-like features the standard deviation of the frame-to-frame delta. Power-like
  features (mel power, RMS, energy...) are taken in log first.
- ``patch`` (CNN): the segment's frames of one feature, ``(n, 1, dim, length_frames)``, padded
  with zeros; the CNN's ONNX graph does its own log scaling.
"""

from __future__ import annotations

import numpy as np

from jobs.segments import FrameBlock, patches_from_block

__all__ = ["LOG_FEATURES", "DELTA_FEATURES", "statistics_input_spec", "segment_statistics", "build_inputs"]

# features whose values are powers/amplitudes: their statistics are taken on log10(x + floor)
LOG_FEATURES = frozenset(
    {"melspectrogram", "stft", "spectrogram", "rms", "short_time_energy", "amplitude_envelope"}
)
LOG_FLOOR = 1e-10
# features whose frame-to-frame change is informative (cepstra)
DELTA_FEATURES = frozenset({"mfcc"})


def statistics_input_spec(features: list[str], dims: dict[str, int], n_parts: int = 3) -> dict:
    """The ``input`` section of model.json for the statistics baseline."""
    return {
        "kind": "segment_statistics",
        "features": list(features),
        "dims": {name: int(dims[name]) for name in features},
        "n_parts": int(n_parts),
        "log_features": sorted(set(features) & LOG_FEATURES),
        "delta_features": sorted(set(features) & DELTA_FEATURES),
    }


def _prefix_sums(x: np.ndarray) -> np.ndarray:
    """``(D, R)`` -> ``(D, R + 1)`` float64 running sums along the rows (axis 1), starting at 0.

    Frames run along the last axis so that the running sum walks contiguous memory (three
    times faster than along axis 0 of a ``(R, D)`` array).
    """
    out = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x, axis=1, out=out[:, 1:])
    return out


def _range_means(prefix: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(D, n)``: mean of the rows ``[lo, hi)`` for each of the n pairs, from prefix sums."""
    return (prefix[:, hi] - prefix[:, lo]) / np.maximum(hi - lo, 1)


def _std(x: np.ndarray, prefix: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    mean_sq = _range_means(_prefix_sums(x * x), lo, hi)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def segment_statistics(block: FrameBlock, segments, spec: dict) -> np.ndarray:
    """``(n_segments, n_statistics)`` float32 per ``spec`` (see :func:`statistics_input_spec`).

    Computed from the contiguous store rows of ``block`` with running sums, so a segment's
    padding costs nothing and overlapping segments share the work. Columns, for all features
    side by side in ``spec["features"]`` order: mean, std, the mean of each of the ``n_parts``
    parts, then the delta std of the delta features. Only a segment's real frames count.
    """
    names = spec["features"]
    rows_of = []
    for name in names:
        x = block.arrays[name].T.astype(np.float64)  # (dim, R)
        if name in spec["log_features"]:
            x = np.log10(np.maximum(x, 0.0) + LOG_FLOOR)
        rows_of.append(x)
    x = np.concatenate(rows_of, axis=0)  # (D, R)
    start = segments["row_start"].to_numpy(np.int64) - block.row_offset
    n_valid = np.maximum(segments["n_valid"].to_numpy(np.int64), 1)
    stop = start + n_valid
    prefix = _prefix_sums(x)
    mean = _range_means(prefix, start, stop)
    columns = [mean, _std(x, prefix, mean, start, stop)]
    n_parts = spec["n_parts"]
    for k in range(n_parts):
        # part k: the real frames with floor(step * n_parts / n_valid) == k
        lo = start - ((-k * n_valid) // n_parts)
        hi = start - ((-(k + 1) * n_valid) // n_parts)
        part = _range_means(prefix, lo, hi)
        empty = hi <= lo  # fewer real frames than parts: the part takes the segment's mean
        part[:, empty] = mean[:, empty]
        columns.append(part)
    delta_names = spec["delta_features"]
    if delta_names:
        offsets = np.cumsum([0] + [spec["dims"][name] for name in names])
        picks = np.concatenate(
            [np.arange(offsets[i], offsets[i + 1]) for i, name in enumerate(names) if name in delta_names]
        )
        d = x[picks]
        # delta row r = frame r+1 - frame r; a segment's deltas are rows [start, stop - 1)
        delta = d[:, 1:] - d[:, :-1] if d.shape[1] > 1 else np.zeros((len(picks), 0))
        delta_stop = np.maximum(stop - 1, start)
        delta_prefix = _prefix_sums(delta)
        delta_mean = _range_means(delta_prefix, start, delta_stop)
        columns.append(_std(delta, delta_prefix, delta_mean, start, delta_stop))
    return np.concatenate(columns, axis=0).T.astype(np.float32)


def build_inputs(block: FrameBlock, segments, spec: dict) -> np.ndarray:
    """The model input for a batch of ``segments`` whose rows are in ``block``, as described by
    model.json's ``input`` section."""
    if spec["kind"] == "segment_statistics":
        return segment_statistics(block, segments, spec)
    if spec["kind"] == "patch":
        x = patches_from_block(block, segments, spec["feature"], spec["length_frames"])  # (n, L, dim)
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None, :, :])
    raise ValueError(f"unknown model input kind {spec['kind']!r}")


def input_features(spec: dict) -> list[str]:
    """The stored features a model reads."""
    if spec["kind"] == "segment_statistics":
        return list(spec["features"])
    return [spec["feature"]]
