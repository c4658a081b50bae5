"""Shared test setup: a persistent op/compile cache so native ops are compiled once across tests and runs."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# Compiled native ops and PyTensor's C modules are cached here between tests and between runs.
os.environ.setdefault("RETURNN_CACHE_DIR", str(REPO / ".test-cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def repo_root() -> pathlib.Path:
    """The repository root."""
    return REPO
