"""From padded segments of stored frames to model inputs (NumPy only).

Training and scoring build inputs with the same functions, driven by the ``input`` section of
``model.json``, so a scoring worker reproduces exactly what the model was trained on.

- ``segment_statistics`` (baseline): per feature, over the real frames of a segment only: mean and
  standard deviation, the means of ``n_parts`` equal consecutive parts (coarse temporal shape),
  and for MFCC-like features the standard deviation of the frame-to-frame delta. Power-like
  features (mel power, RMS, energy...) are taken in log first.
- ``patch`` (CNN): the segment's frames of one feature, ``(n, 1, dim, length_frames)``, padded
  with the spec's ``pad_value`` (:func:`patch_pad_value`: zeros, or far under any decibel for a
  feature stored in dB); the CNN's ONNX graph does its own log scaling.
"""

from __future__ import annotations

import numpy as np

from jobs.segments import FrameBlock, patches_from_block

__all__ = ["LOG_FEATURES", "DELTA_FEATURES", "INPUTS_VERSION", "DB_PATCH_PAD", "LINEAR_PATCH_PAD",
           "LINEAR_PAD_BELOW", "stored_in_db", "cnn_scale",
           "patch_pad_value", "statistics_input_spec", "segment_statistics", "build_inputs"]

# features whose values are powers/amplitudes: their statistics are taken on log10(x + floor)
LOG_FEATURES = frozenset(
    {"melspectrogram", "stft", "spectrogram", "rms", "short_time_energy", "amplitude_envelope"}
)
LOG_FLOOR = 1e-10
# how model inputs are built from stored frames; part of a model's training fingerprint, so that
# a model made by an older version is trained again (2: features stored in dB are not logged again;
# 3: a CNN patch of a feature stored in dB is padded far under its floor, not with 0 dB, and the
# CNN takes powers down to -300 dB, not -100: padding reads as the floor at any recording level;
# 4: a CNN patch standardised per patch (MFCC and the like) is padded with a marker its scaling
# leaves out of the mean and variance, not with 0.0, a value that moved every real frame of a
# padded patch with the recording's level)
INPUTS_VERSION = 4
# what pads a CNN patch of a feature stored in dB after its real frames: far under any stored
# decibel (power_to_db's amin puts them at -100 dB or more), so that the CNN's log scaling, which
# floors each patch 80 dB under its peak, reads the padding as that floor, as it reads a power
# patch's zeros; 0.0 was 0 dB, a loud block (or the peak of a quiet clip), so a padded segment's
# probabilities moved with the recording's level (siren 0.93 at 0 dB, 0.47 at -30 dB)
DB_PATCH_PAD = -1.0e4
# what pads a CNN patch standardised per patch ("linear": MFCC, spectral shape) after its real
# frames: a marker under LINEAR_PAD_BELOW, which the CNN's scaling leaves out of the patch's mean
# and variance and sets to 0 (the mean). Padded with 0.0, the zeros counted in the mean and
# variance: an MFCC's c0 (hundreds under 0, and moving with the level) made every real frame of a
# padded segment depend on the recording's level and on how much of the segment was padding
LINEAR_PATCH_PAD = -1.0e30
LINEAR_PAD_BELOW = -1.0e29
# features whose frame-to-frame change is informative (cepstra)
DELTA_FEATURES = frozenset({"mfcc"})


def stored_in_db(name: str, kwargs: dict | None) -> bool:
    """Whether the store holds feature ``name`` (with its config ``kwargs``) already in decibels:
    ``melspectrogram`` with ``db: true``. Such values are logs already (and <= 0 dB): taking their
    log again would make them a constant."""
    return bool((kwargs or {}).get("db")) and name in LOG_FEATURES


def cnn_scale(name: str, kwargs: dict | None) -> str:
    """How the CNN scales a patch of stored feature ``name``: ``"db"`` (stored in dB: relative
    to the patch's peak), ``"power"`` (a power or amplitude: to dB first) or ``"linear"`` (any
    other feature, e.g. MFCC or spectral shape: standardised per patch)."""
    if stored_in_db(name, kwargs):
        return "db"
    return "power" if name in LOG_FEATURES else "linear"


def patch_pad_value(scale: str) -> float:
    """What pads a CNN patch of scale ``scale`` (:func:`cnn_scale`) after its real frames: a
    value its log scaling reads as the floor (:data:`DB_PATCH_PAD` in dB, 0 for a power), or
    for a feature standardised per patch a marker its scaling leaves out
    (:data:`LINEAR_PATCH_PAD`)."""
    if scale == "db":
        return DB_PATCH_PAD
    return LINEAR_PATCH_PAD if scale == "linear" else 0.0


def statistics_input_spec(features: list[str], dims: dict[str, int], n_parts: int = 3,
                          feature_config: dict | None = None) -> dict:
    """The ``input`` section of model.json for the statistics baseline.

    ``feature_config`` (the store's ``features`` section) tells which power-like features are
    stored in dB already: those are not taken in log again.
    """
    feature_config = feature_config or {}
    in_db = {name for name in features if stored_in_db(name, feature_config.get(name))}
    return {
        "kind": "segment_statistics",
        "features": list(features),
        "dims": {name: int(dims[name]) for name in features},
        "n_parts": int(n_parts),
        "log_features": sorted((set(features) & LOG_FEATURES) - in_db),
        "delta_features": sorted(set(features) & DELTA_FEATURES),
    }


def _interval_sums(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sums of ``x (D, R)`` over consecutive column intervals.

    ``bounds (n, k + 1)`` holds, per segment, k + 1 increasing boundaries, each ``< R``; the
    result ``(D, n, k)`` holds the sums over ``[bounds[:, j], bounds[:, j + 1])``. One
    ``np.add.reduceat`` pass over the interleaved boundaries (segments may overlap: each
    segment's run of intervals is reduced on its own); an empty interval sums to 0.
    """
    n, k1 = bounds.shape
    sums = np.add.reduceat(x, bounds.reshape(-1), axis=1).reshape(x.shape[0], n, k1)[:, :, :-1]
    empty = bounds[:, 1:] <= bounds[:, :-1]  # reduceat gives x[b] there, not 0
    if empty.any():
        sums[:, empty] = 0.0
    return sums


def segment_statistics(block: FrameBlock, segments, spec: dict) -> np.ndarray:
    """``(n_segments, n_statistics)`` float32 per ``spec`` (see :func:`statistics_input_spec`).

    Computed from the contiguous store rows of ``block`` with interval sums (``reduceat``), so a
    segment's padding costs nothing. Columns, for all features side by side in
    ``spec["features"]`` order: mean, std, the mean of each of the ``n_parts`` parts, then the
    delta std of the delta features. Only a segment's real frames count.

    Arithmetic is float32 on values centred by each column's block mean (so that squares and
    sums keep their precision), with float64 for the centring itself.
    """
    names = spec["features"]
    dims = [int(spec["dims"][name]) for name in names]
    n_rows = len(block.arrays[names[0]])
    # (D, R + 1): frames along the contiguous axis, plus one zero column so that every interval
    # boundary (up to R) is a valid reduceat index
    x = np.zeros((sum(dims), n_rows + 1), dtype=np.float32)
    row = 0
    for name, dim in zip(names, dims):
        target = x[row:row + dim, :n_rows]
        target[...] = block.arrays[name].T
        if name in spec["log_features"]:
            np.log10(np.maximum(target, 0.0) + np.float32(LOG_FLOOR), out=target)
        row += dim
    centre = x[:, :n_rows].mean(axis=1, dtype=np.float64).astype(np.float32) if n_rows else np.zeros(len(x), np.float32)
    x[:, :n_rows] -= centre[:, None]
    start = segments["row_start"].to_numpy(np.int64) - block.row_offset
    n_valid = np.maximum(segments["n_valid"].to_numpy(np.int64), 1)
    n_parts = spec["n_parts"]
    # part j: the real frames with floor(step * n_parts / n_valid) == j, i.e. steps in
    # [ceil(j * n_valid / n_parts), ceil((j + 1) * n_valid / n_parts))
    j = np.arange(n_parts + 1)
    bounds = start[:, None] - ((-j[None, :] * n_valid[:, None]) // n_parts)
    part_sums = _interval_sums(x, bounds)  # (D, n, P)
    part_sizes = np.diff(bounds, axis=1)  # (n, P)
    centred_mean = part_sums.sum(axis=2) / n_valid
    whole = np.stack([start, start + n_valid], axis=1)
    mean_sq = _interval_sums(x * x, whole)[:, :, 0] / n_valid
    std = np.sqrt(np.maximum(mean_sq - centred_mean * centred_mean, 0.0))
    mean = centred_mean + centre[:, None]
    columns = [mean, std]
    part_means = part_sums / np.maximum(part_sizes, 1) + centre[:, None, None]
    empty = part_sizes == 0  # fewer real frames than parts: the part takes the segment's mean
    for p in range(n_parts):
        part = part_means[:, :, p]
        part[:, empty[:, p]] = mean[:, empty[:, p]]
        columns.append(part)
    if spec["delta_features"]:
        offsets = np.cumsum([0, *dims])
        picks = np.concatenate([np.arange(offsets[i], offsets[i + 1])
                                for i, name in enumerate(names) if name in spec["delta_features"]])
        d = x[picks]
        # delta column c = frame c+1 - frame c (the last one reaches the zero column and is never
        # used); a segment's deltas are columns [start, start + n_valid - 1)
        delta = np.subtract(d[:, 1:], d[:, :-1]) if n_rows else np.zeros((len(picks), 0), np.float32)
        n_delta = n_valid - 1
        delta_bounds = np.minimum(np.stack([start, start + n_delta], axis=1), max(delta.shape[1] - 1, 0))
        if delta.shape[1]:
            delta_mean = _interval_sums(delta, delta_bounds)[:, :, 0] / np.maximum(n_delta, 1)
            delta_sq = _interval_sums(delta * delta, delta_bounds)[:, :, 0] / np.maximum(n_delta, 1)
            columns.append(np.sqrt(np.maximum(delta_sq - delta_mean * delta_mean, 0.0)))
        else:
            columns.append(np.zeros((len(picks), len(start)), np.float32))
    return np.ascontiguousarray(np.concatenate(columns, axis=0).T, dtype=np.float32)


def build_inputs(block: FrameBlock, segments, spec: dict) -> np.ndarray:
    """The model input for a batch of ``segments`` whose rows are in ``block``, as described by
    model.json's ``input`` section."""
    if spec["kind"] == "segment_statistics":
        return segment_statistics(block, segments, spec)
    if spec["kind"] == "patch":
        # (a model.json without pad_value was trained on zero-padded patches: scored as such)
        x = patches_from_block(block, segments, spec["feature"], spec["length_frames"],
                               pad_value=spec.get("pad_value", 0.0))  # (n, L, dim)
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None, :, :])
    raise ValueError(f"unknown model input kind {spec['kind']!r}")


def input_features(spec: dict) -> list[str]:
    """The stored features a model reads."""
    if spec["kind"] == "segment_statistics":
        return list(spec["features"])
    return [spec["feature"]]
