"""Shared fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def fast_pytensor_compile() -> Iterator[None]:
    """PyTensor's FAST_COMPILE mode for a module: the same ops, run without C compilation.

    Comparing small graphs across backends is dominated by compiling each graph's C code (minutes on a cold
    cache); the numbers compared are the same either way.
    """
    pytest.importorskip("returnn_theano")
    from returnn_theano.pytensor_setup import import_pytensor

    with import_pytensor().config.change_flags(mode="FAST_COMPILE"):
        yield
