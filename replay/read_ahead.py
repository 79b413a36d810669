"""`ReadAhead`: a producer of items on a thread of its own, a few items ahead of its consumer
(a rebuild's lanes read and decode the next chunk of history while the current one is applied)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Generic, TypeVar

__all__ = ["ReadAhead"]

T = TypeVar("T")


_END = object()


class ReadAhead(Generic[T]):
    """Runs a producer of items on a thread, `depth` items ahead of the consumer.

    Exceptions in the producer surface in the consumer; leaving the `with` block (also
    through Ctrl-C) stops the producer and closes its generator (and its connection).
    """

    def __init__(self, produce: Callable[[], Iterator[T]], depth: int = 2):
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name="replay-read", daemon=True)

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._items()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)  # unblock a producer waiting on a full queue

    def _items(self) -> Iterator[T]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _run(self, produce: Callable[[], Iterator[T]]) -> None:
        items = produce()
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(e)
        finally:
            if isinstance(items, Generator):
                items.close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
