"""Waking the SSE streams of one server the moment the ledger moves: one blocking read for all.

Each stream reads its events itself (memledger/http/event_tail.py, scoped to its key); what it
needs is to know *when* to read. While at least one stream is open, one thread per server
waits on every partition's stream at once (a blocking XREAD of at most one entry each, via the
ledger role's `wait_entries`) and, when partitions move, hands their new heads to the event
loop, which wakes the streams reading those partitions. The heads are positions only, never
shown to a client; each stream still reads what is its own through its own scoped App.

Stopping: the wait blocks `BLOCK_MS` at most, so the thread notices within that time that the
last stream has gone, closes its App (its own connections) and ends. An idle server then
holds nothing. (`App.follow` is no help here: it returns only on a matching event, so on an
idle ledger it could never be stopped.)
"""

from __future__ import annotations

import asyncio
import threading

from ledger import Settings
from ledger.errors import LedgerError
from memledger.app import App
from memledger.log_reader import EventFilter

__all__ = ["HeadWatch"]

#: Longest one blocking read lasts: how soon the thread sees it should stop.
BLOCK_MS = 250
#: Seconds to wait before reading again after the ledger could not be read.
RETRY_S = 1.0


class HeadWatch:
    """Wakes subscribed streams when their partitions move (call it from the event loop's thread)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.latest: dict[int, str] = {}  # the newest heads seen, by partition
        self._subscribers: dict[asyncio.Event, frozenset[int]] = {}
        self._stop: threading.Event | None = None

    def subscribe(self, partitions: frozenset[int]) -> asyncio.Event:
        """An event set whenever one of `partitions` gains entries."""
        wake = asyncio.Event()
        self._subscribers[wake] = partitions
        if self._stop is None:
            self._stop = threading.Event()
            loop = asyncio.get_running_loop()
            threading.Thread(target=self._watch, args=(loop, self._stop), name="sse-head-watch", daemon=True).start()
        return wake

    def unsubscribe(self, wake: asyncio.Event) -> None:
        self._subscribers.pop(wake, None)
        if not self._subscribers and self._stop is not None:
            self._stop.set()  # that thread ends within BLOCK_MS; a new subscriber starts another
            self._stop = None

    def heads(self, partitions: frozenset[int]) -> dict[int, str] | None:
        """The newest heads seen of `partitions` (None until each was seen)."""
        if not partitions <= self.latest.keys():
            return None
        return {p: self.latest[p] for p in partitions}

    def _moved(self, heads: dict[int, str]) -> None:
        self.latest.update(heads)
        for wake, partitions in self._subscribers.items():
            if partitions & heads.keys():
                wake.set()

    def _watch(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        app = App(self.settings)
        try:
            heads: dict[int, str] | None = None
            while not stop.is_set():
                try:
                    if heads is None:
                        heads = app.heads(EventFilter())
                        loop.call_soon_threadsafe(self._moved, dict(heads))
                    moved = app.wait_moved(heads, BLOCK_MS)
                except LedgerError:
                    app.close()  # reopened by the next call
                    heads = None
                    stop.wait(RETRY_S)
                    continue
                if moved:
                    heads.update(moved)
                    loop.call_soon_threadsafe(self._moved, moved)
        except RuntimeError:
            pass  # the event loop closed under us: the server is gone, and so are its streams
        finally:
            app.close()
