"""Fixtures for core tests: a fresh plugin manager with the toy plugin."""

from __future__ import annotations

import pytest

from returnn_core.plugin import PluginManager


@pytest.fixture
def manager() -> PluginManager:
    """A manager with only the core and the toy plugin (no installed entry points)."""
    from toy_plugin import ToyPlugin

    pm = PluginManager(strict=False, disabled=())
    pm.register(ToyPlugin(), "toy", distribution="returnn-toy", version="0.1")
    return pm
