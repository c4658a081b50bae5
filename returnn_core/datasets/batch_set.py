"""The batches of an epoch as RETURNN's ``BatchSetGenerator`` hands them out: iterate, or peek and advance."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from returnn_core.datasets.batching import Batch


class BatchSetGenerator:
    """An iterator over batches that can also look ahead (``peek_next_n``, ``has_more``) and skip (``advance``)."""

    def __init__(self, batches: Iterable[Batch]) -> None:
        self._source: Iterator[Batch] = iter(batches)
        self._ahead: deque[Batch] = deque()  # batches peeked at but not yet handed out

    def __iter__(self) -> BatchSetGenerator:
        return self

    def __next__(self) -> Batch:
        return self._ahead.popleft() if self._ahead else next(self._source)

    def peek_next_n(self, n: int) -> list[Batch]:
        """The next ``n`` batches (fewer at the end of the epoch), without consuming them."""
        while len(self._ahead) < n:
            batch = next(self._source, None)
            if batch is None:
                break
            self._ahead.append(batch)
        return list(self._ahead)[:n]

    def has_more(self) -> bool:
        """Whether another batch follows."""
        return bool(self.peek_next_n(1))

    def advance(self, n: int) -> None:
        """Skip the next ``n`` batches."""
        if len(self.peek_next_n(n)) < n:
            raise IndexError(f"advance({n}): the epoch has {len(self._ahead)} batch(es) left")
        for _ in range(n):
            self._ahead.popleft()
