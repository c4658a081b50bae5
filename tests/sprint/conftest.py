"""Fixtures for the Sprint tests."""

from __future__ import annotations

import sys

import pytest
from sprint_helpers import FAKE_SPRINT, live_children, make_corpus


@pytest.fixture
def corpus(tmp_path) -> str:
    """A 12-seq corpus for the stand-in Sprint."""
    return make_corpus(tmp_path / "corpus.npz")


@pytest.fixture
def sprint_exec() -> list[str]:
    """The stand-in Sprint as an argv prefix."""
    return [sys.executable, FAKE_SPRINT]


@pytest.fixture(autouse=True)
def no_leaked_children():
    """Every test must reap the Sprint children it started."""
    before = live_children()
    yield
    leaked = live_children() - before
    assert not leaked, f"child processes left behind: {leaked}"
