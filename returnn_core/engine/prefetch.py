"""Batches made in a thread while the backend runs the previous step."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_DONE = object()
#: how long the producer waits on a full queue before it looks whether the consumer has stopped
_POLL_S = 0.05


class Prefetcher(Generic[T]):
    """Iterates ``make(item)`` for the items of ``source``, produced up to ``depth`` ahead in one thread.

    A backend's step runs outside Python's GIL (TF's executor), so reading and padding the next batch overlaps
    with it. Order, values and errors are those of the plain loop: an exception of the source or of ``make``
    is raised by ``next`` at the same position, with its traceback. Leaving the loop early (an error, a stop
    signal) stops the thread after the item it is making; the dataset is then the caller's again.
    """

    def __init__(self, source: Iterable[Any], make: Callable[[Any], T], *, depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(source, make), name="returnn-batch-prefetch",
                                        daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, source: Iterable[Any], make: Callable[[Any], T]) -> None:
        try:
            for item in source:
                if not self._put((make(item), None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_DONE, exc))
            return
        self._put((_DONE, None))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        value, error = self._queue.get()
        if value is _DONE:
            self._queue.put((_DONE, error))  # later calls end the same way
            if error is not None:
                raise error
            raise StopIteration
        return value

    def close(self) -> None:
        """Stop the thread (after the item it is making) and wait for it."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
