"""Fixtures of the returnn-datasets tests: a plugin manager holding just this plugin (strict, so errors surface)."""

from __future__ import annotations

import pytest
import returnn_datasets._hooks

from returnn_core.plugin import PluginManager


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    """Only returnn-datasets, registered through its entry-point module as installed."""
    m = PluginManager(strict=True, disabled=())
    m.register(returnn_datasets._hooks, "datasets", distribution="returnn-datasets")
    return m
