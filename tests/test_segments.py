"""Segments of stored frames: planning, padding, reading, and the baseline's statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from train_helpers import extracted_run

from jobs.errors import UsageError
from jobs.models.inputs import build_inputs, statistics_input_spec
from jobs.segments import open_run, plan_segments, read_block, read_patches, segment_geometry


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return open_run(extracted_run(tmp_path_factory))


def _files(n_frames):
    starts = np.concatenate([[0], np.cumsum(n_frames)[:-1]])
    return pd.DataFrame({
        "file_id": [f"f{i}" for i in range(len(n_frames))],
        "frame_start": starts,
        "frame_stop": starts + np.asarray(n_frames),
    })


def test_geometry_from_seconds():
    geometry = segment_geometry(1.0, 0.5, 100.0)
    assert (geometry.length_frames, geometry.hop_frames) == (100, 50)
    assert segment_geometry(0.001, 0.001, 100.0).length_frames == 1  # never zero frames


def test_short_files_are_padded_never_dropped():
    plan = plan_segments(_files([1, 30, 100, 101, 250]), segment_geometry(1.0, 0.5, 100.0))
    assert plan.groupby("file_id").size().to_dict() == {"f0": 1, "f1": 1, "f2": 1, "f3": 2, "f4": 4}
    f1 = plan[plan.file_id == "f1"].iloc[0]
    assert (f1.segment, f1.n_valid, f1.row_start) == (0, 30, 1)
    f3 = plan[plan.file_id == "f3"]
    assert f3.n_valid.tolist() == [100, 51] and f3.start_s.tolist() == [0.0, 0.5]
    f4 = plan[plan.file_id == "f4"]
    assert f4.row_start.tolist() == [232, 282, 332, 382] and f4.n_valid.tolist() == [100] * 4
    assert f4.end_s.tolist() == pytest.approx([1.0, 1.5, 2.0, 2.5])
    assert (plan.end_s > plan.start_s).all()


def test_patches_are_the_stored_rows_then_zeros(store):
    geometry = segment_geometry(0.3, 0.2, store.frame_rate_hz)
    plan = plan_segments(store.files, geometry)
    mfcc = store.array("mfcc")[:]
    patches = read_patches(store, plan.iloc[:50], ["mfcc"], geometry.length_frames)["mfcc"]
    for k, seg in enumerate(plan.iloc[:50].itertuples()):
        np.testing.assert_array_equal(patches[k, : seg.n_valid], mfcc[seg.row_start: seg.row_start + seg.n_valid])
        assert not patches[k, seg.n_valid:].any()
    # every frame of every file lies in some segment (the store may hold padding rows between
    # files' regions: those belong to no file)
    covered = np.zeros(len(mfcc), bool)
    for seg in plan.itertuples():
        covered[seg.row_start: seg.row_start + seg.n_valid] = True
    for f in store.files.itertuples():
        assert covered[f.frame_start: f.frame_stop].all()


def test_statistics_equal_a_direct_computation(store):
    geometry = segment_geometry(0.5, 0.25, store.frame_rate_hz)
    plan = plan_segments(store.files, geometry).iloc[:80]
    names = ["mfcc", "rms", "zero_crossing_rate"]
    spec = statistics_input_spec(names, {n: store.dim(n) for n in names}, n_parts=4)
    stats = build_inputs(read_block(store, plan, names), plan, spec)
    patches = read_patches(store, plan, names, geometry.length_frames)
    for k, seg in enumerate(plan.itertuples()):
        nv = seg.n_valid
        frames = np.concatenate(
            [np.log10(patches[n][k, :nv].astype(np.float64) + 1e-10) if n == "rms" else patches[n][k, :nv]
             for n in names], axis=1).astype(np.float64)
        bounds = [(-(-j * nv // 4), -(-(j + 1) * nv // 4)) for j in range(4)]
        parts = [frames[a:b].mean(0) if b > a else frames.mean(0) for a, b in bounds]
        delta = np.diff(frames[:, :20], axis=0)
        expected = np.concatenate([frames.mean(0), frames.std(0), *parts,
                                   delta.std(0) if len(delta) else np.zeros(20)])
        np.testing.assert_allclose(stats[k], expected, rtol=2e-4, atol=2e-3)


def test_missing_feature_is_a_usage_error(store):
    with pytest.raises(UsageError, match="not in"):
        store.array("chroma")


def test_open_run_without_store_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="run `audiofeat extract` first"):
        open_run(tmp_path)


def test_segments_config_refuses_gaps():
    from jobs.train_config import SegmentsConfig

    with pytest.raises(ValueError, match="would skip frames"):
        SegmentsConfig(length_s=0.5, hop_s=1.0)
    assert SegmentsConfig(length_s=1.0, hop_s=1.0).hop_s == 1.0
