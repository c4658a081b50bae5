"""PyTensor runs these unit tests in FAST_COMPILE (same ops, no C compilation), except tests marked ``c_linker``.

Compiling every small graph's C code took most of this session's time on a cold cache; the C path itself is
covered by the tests marked here and by the end-to-end theano training tests, which run in the default mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "c_linker: run with RETURNN's default PyTensor mode (C VM)")


@pytest.fixture(autouse=True)
def _fast_compile(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("c_linker"):
        yield
        return
    from returnn_theano.pytensor_setup import import_pytensor

    with import_pytensor().config.change_flags(mode="FAST_COMPILE"):
        yield
