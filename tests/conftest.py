"""Shared fixtures. Public data lives beside the repository in ../shared/data (override: RLVR_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    return Path(os.environ.get("RLVR_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_path()
    if not (path / "gsm8k_train.jsonl").exists():
        pytest.fail(f"public data not found at {path}; set RLVR_DATA_DIR to the folder of gsm8k_train.jsonl")
    return path
