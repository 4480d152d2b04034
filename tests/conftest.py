"""Shared test fixtures: where the real audio lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO / "data" / "samples"
FSDD_DIR = Path(os.environ.get("AUDIOFEAT_FSDD", REPO.parent / "shared" / "data" / "fsdd" / "recordings"))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The 120 bundled FSDD recordings (always present)."""
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """The full FSDD corpus beside the repo (../shared); tests that need it skip without it."""
    if not FSDD_DIR.is_dir():
        pytest.skip(f"FSDD not found at {FSDD_DIR}")
    return FSDD_DIR
