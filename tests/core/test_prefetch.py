"""The batch prefetcher gives the plain loop's items and errors in order, and stops its thread when left early."""

from __future__ import annotations

import threading

import pytest

from returnn_core.engine.prefetch import Prefetcher


def test_items_in_order_then_the_end_again() -> None:
    with Prefetcher(range(50), lambda x: x * x, depth=3) as items:
        assert list(items) == [x * x for x in range(50)]
        assert list(items) == []


def test_an_error_of_the_source_comes_at_its_position() -> None:
    def source():
        yield 1
        yield 2
        raise KeyError("seq 3 is broken")

    got = []
    with pytest.raises(KeyError, match="seq 3 is broken"), Prefetcher(source(), lambda x: x) as items:
        for item in items:
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_thread_and_reads_no_further() -> None:
    made = []

    def make(x: int) -> int:
        made.append(x)
        return x

    before = threading.active_count()
    with Prefetcher(range(1000), make, depth=2) as items:
        assert next(items) == 0
    assert threading.active_count() == before
    assert len(made) <= 4  # the one taken, the queue's two, the one being made when asked to stop
