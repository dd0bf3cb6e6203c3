"""Shared test set-up: offline, no global RNG, paths to the repo and the optional real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Test models are tiny: one thread each is fastest, and keeps 2-core CI machines from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The tiny random-weight diffusion model with busi and udiat adapters, written once per session
    (tens of seconds on a loaded machine) for every diffusion test module."""
    from busforge.models.tiny import write_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    write_tiny_model(out, ["busi", "udiat"])
    return out
